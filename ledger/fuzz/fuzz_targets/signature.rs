//! Fuzz target: a key, a signature and a message as arbitrary bytes, to the
//! key check (`PublicKey::validate`) and the signature check
//! (`PublicKey::verify`, `verify_batch`). Neither panics; both agree with a
//! second implementation of docs/PROTOCOL.md §3 written here from the text
//! (curve25519-dalek's decoding and small-order check, SHA-512, the cofactored
//! equation); and a batch agrees with single verification, alone and among
//! good signatures.
//!
//! Input: `key (32 bytes) ‖ R (32) ‖ S (32) ‖ message`.

#![no_main]

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use gridshare_ledger::ids::{FIELD_MODULUS_LE, PublicKey, Signature};
use gridshare_ledger::tx::{SignatureCheck, verify_batch};
use gridshare_ledger_fuzz::fixed;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha512};

/// A canonical encoding decodes, and re-encodes to the same bytes.
fn decode_canonical(bytes: [u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(bytes).decompress()?;
    (point.compress().to_bytes() == bytes).then_some(point)
}

/// The key rule of §3.3 from the text: y below p, no sign bit on x = 0, and
/// not a point of small order; bytes that are no point are valid (they can
/// sign nothing).
fn key_is_valid(key: [u8; 32]) -> bool {
    let mut y = key;
    y[31] &= 0x7f;
    if y.iter().rev().cmp(FIELD_MODULUS_LE.iter().rev()) != std::cmp::Ordering::Less {
        return false;
    }
    match CompressedEdwardsY(key).decompress() {
        None => true,
        Some(point) => point.compress().to_bytes() == key && !point.is_small_order(),
    }
}

fn signature_is_valid(key: [u8; 32], signature: &[u8; 64], message: &[u8]) -> bool {
    let (r_bytes, s_bytes) = signature.split_at(32);
    let r_bytes: [u8; 32] = r_bytes.try_into().expect("32 bytes");
    let s_bytes: [u8; 32] = s_bytes.try_into().expect("32 bytes");
    let (Some(a), Some(r)) = (decode_canonical(key), decode_canonical(r_bytes)) else { return false };
    if r.is_small_order() {
        return false;
    }
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else { return false };
    let digest: [u8; 64] =
        Sha512::new().chain_update(r_bytes).chain_update(key).chain_update(message).finalize().into();
    let k = Scalar::from_bytes_mod_order_wide(&digest);
    (EdwardsPoint::mul_base(&s) - r - a * k).mul_by_cofactor().is_identity()
}

fuzz_target!(|bytes: &[u8]| {
    let Some((head, message)) = bytes.split_first_chunk::<96>() else { return };
    let key = PublicKey(head[..32].try_into().expect("32 bytes"));
    let signature = Signature(head[32..].try_into().expect("64 bytes"));

    assert_eq!(key.validate().is_ok(), key_is_valid(key.0), "the key check disagrees with the reference");
    let single = key.verify(message, &signature);
    assert_eq!(
        single.is_ok(),
        signature_is_valid(key.0, &signature.0, message),
        "the signature check disagrees with the reference: {single:?}"
    );

    let check = SignatureCheck { key, message: message.to_vec(), signature };
    assert_eq!(verify_batch([&check]), single, "a batch of one disagrees with single verification");
    let (community, block) = fixed();
    let id = community.genesis.community_id;
    let mut checks: Vec<SignatureCheck> =
        block.block.transactions.iter().take(2).flat_map(|tx| tx.signature_checks(&id)).collect();
    checks.insert(checks.len() / 2, check);
    let expected = checks.iter().try_for_each(SignatureCheck::verify);
    assert_eq!(verify_batch(&checks), expected, "a batch disagrees with single verification");
});
