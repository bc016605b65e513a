//! The key and signature rule of docs/PROTOCOL.md §3 against crafted vectors
//! (`tests/vectors/signatures.txt`): single and batch verification, the
//! audit, registration and the genesis agree with the verdicts written by
//! hand below, and so do ed25519-zebra (ZIP-215) and ed25519-dalek's
//! `verify_strict` (cofactorless) where the vectors say what they answer.
//! Regenerate the file with
//! `UPDATE_EXPECT=1 cargo test -p gridshare-ledger --test signatures`: it is
//! written from the cases and their hand-written verdicts, never from what
//! the code answers.
//!
//! How the crafted cases are made (with curve25519-dalek): a scalar named
//! `label` is `SHA-512("gridshare signature vectors: " ‖ label) mod ℓ`; `B`
//! is the base point and `T` the point of order 8 `EIGHT_TORSION[1]`
//! (encoded `c7176a70…92ac037a`); `k = SHA-512(R ‖ A ‖ M) mod ℓ` over the
//! bytes of `R` and `A` as they appear in the vector; and `S = r + k·a` for
//! the scalars `r` and `a` the case names. Only `valid`, `s-plus-order`
//! and `equation-fails` are made by the ledger's own signer (RFC 8032).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use curve25519_dalek::Scalar;
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use expect_test::expect_file;
use gridshare_ledger::audit::audit_export;
use gridshare_ledger::block::{CertifiedBlock, CommitCertificate};
use gridshare_ledger::execute::{Rejection, Signatures, admit, build_block};
use gridshare_ledger::export::ExportWriter;
use gridshare_ledger::genesis::{Genesis, Validator};
use gridshare_ledger::ids::{
    FIELD_MODULUS_LE, GROUP_ORDER_LE, KeyError, Keypair, MalformedSignature, PublicKey,
    SMALL_ORDER_ENCODINGS, Signature, SignatureError,
};
use gridshare_ledger::state::State;
use gridshare_ledger::testkit::{LocalValidator, TestCommunity, derived_key, test_market};
use gridshare_ledger::tx::{SignatureCheck, SignedTx, Tx, verify_batch};
use proptest::prelude::*;
use sha2::{Digest, Sha512};

const T0: u64 = 1_000_000;

/// A scalar named by `label`: `SHA-512("gridshare signature vectors: " ‖ label) mod ℓ`.
fn scalar(label: &str) -> Scalar {
    let digest: [u8; 64] =
        Sha512::new().chain_update(b"gridshare signature vectors: ").chain_update(label).finalize().into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// `k = SHA-512(R ‖ A ‖ M) mod ℓ`, the challenge of RFC 8032 §5.1.7.
fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let digest: [u8; 64] =
        Sha512::new().chain_update(r).chain_update(a).chain_update(message).finalize().into();
    Scalar::from_bytes_mod_order_wide(&digest)
}

/// The signature `(R, S)` with `R` given by its bytes and `S = r + k·a`.
fn signature(r_bytes: [u8; 32], r: Scalar, a_bytes: [u8; 32], a: Scalar, message: &[u8]) -> [u8; 64] {
    let s = r + challenge(&r_bytes, &a_bytes, message) * a;
    let mut bytes = [0_u8; 64];
    bytes[..32].copy_from_slice(&r_bytes);
    bytes[32..].copy_from_slice(&s.to_bytes());
    bytes
}

fn base_times(scalar: Scalar) -> EdwardsPoint {
    EdwardsPoint::mul_base(&scalar)
}

/// The point of order 8 the crafted cases add.
fn torsion() -> EdwardsPoint {
    EIGHT_TORSION[1]
}

/// The encoding of y = `y_plus_p` + p with the sign bit clear: a second,
/// non-canonical encoding of the point with y = `y_plus_p` (for y < 19).
fn y_plus_p(y: u8) -> [u8; 32] {
    let mut bytes = FIELD_MODULUS_LE;
    bytes[0] += y;
    bytes
}

/// The identity encoded as x = 0 with the sign bit set: y = 1, sign 1.
fn negative_zero_identity() -> [u8; 32] {
    let mut bytes = [0_u8; 32];
    bytes[0] = 1;
    bytes[31] = 0x80;
    bytes
}

/// A y with no x on the curve (2: `(y² − 1)/(d·y² + 1)` is not a square).
fn not_a_point() -> [u8; 32] {
    let mut bytes = [0_u8; 32];
    bytes[0] = 2;
    bytes
}

/// The key of prime order of the crafted cases: `A = [a]B`.
fn prime_key() -> ([u8; 32], Scalar) {
    let a = scalar("key");
    (base_times(a).compress().to_bytes(), a)
}

/// The ledger's own key of the cases signed with RFC 8032.
fn keypair() -> Keypair {
    Keypair::from_seed(*blake3::hash(b"gridshare signature vectors: keypair").as_bytes())
}

/// A key and a signature (`R ‖ S`) on a message.
type Signed = ([u8; 32], [u8; 64]);

/// One kind of signature, how it is made, and its verdicts, written by hand.
struct Kind {
    name: &'static str,
    about: &'static str,
    /// The key and the signature on a message. The key does not depend on
    /// the message.
    craft: fn(&[u8]) -> Signed,
    key_check: &'static str,
    signature_check: &'static str,
    zip215: bool,
    cofactorless: bool,
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "valid",
            about: "an RFC 8032 signature by a key of prime order",
            craft: |message| (keypair().public().0, keypair().sign(message).0),
            key_check: "valid",
            signature_check: "valid",
            zip215: true,
            cofactorless: true,
        },
        Kind {
            name: "s-plus-order",
            about: "the valid signature with S + l in place of S (the same S modulo l, not canonical)",
            craft: |message| {
                let mut bytes = keypair().sign(message).0;
                let mut carry = 0_u16;
                for (byte, order) in bytes[32..].iter_mut().zip(GROUP_ORDER_LE) {
                    let sum = u16::from(*byte) + u16::from(order) + carry;
                    *byte = sum.to_le_bytes()[0];
                    carry = sum >> 8;
                }
                assert_eq!(carry, 0, "S + l < 2^256");
                (keypair().public().0, bytes)
            },
            key_check: "valid",
            signature_check: "s-not-below-order",
            zip215: false,
            cofactorless: false,
        },
        Kind {
            name: "r-non-canonical-y",
            about: "R = the identity encoded with y = 1 + p; S = k*a, so both equations hold for the point R decodes to",
            craft: |message| {
                let (a_bytes, a) = prime_key();
                (a_bytes, signature(y_plus_p(1), Scalar::ZERO, a_bytes, a, message))
            },
            key_check: "valid",
            signature_check: "r-not-canonical",
            zip215: true,
            cofactorless: false,
        },
        Kind {
            name: "r-non-canonical-sign",
            about: "R = the identity encoded as x = 0 with the sign bit set; S = k*a, so both equations hold for the point R decodes to",
            craft: |message| {
                let (a_bytes, a) = prime_key();
                (a_bytes, signature(negative_zero_identity(), Scalar::ZERO, a_bytes, a, message))
            },
            key_check: "valid",
            signature_check: "r-not-canonical",
            zip215: true,
            cofactorless: false,
        },
        Kind {
            name: "r-small-order",
            about: "R = T, of order 8, canonical; S = k*a: the cofactored equation holds, the cofactorless one does not",
            craft: |message| {
                let (a_bytes, a) = prime_key();
                (a_bytes, signature(torsion().compress().to_bytes(), Scalar::ZERO, a_bytes, a, message))
            },
            key_check: "valid",
            signature_check: "r-small-order",
            zip215: true,
            cofactorless: false,
        },
        Kind {
            name: "r-mixed-order",
            about: "R = [r]B + T; S = r + k*a: the cofactored equation holds, the cofactorless one does not",
            craft: |message| {
                let (a_bytes, a) = prime_key();
                let r = scalar("r-mixed-order nonce");
                let r_bytes = (base_times(r) + torsion()).compress().to_bytes();
                (a_bytes, signature(r_bytes, r, a_bytes, a, message))
            },
            key_check: "valid",
            signature_check: "valid",
            zip215: true,
            cofactorless: false,
        },
        Kind {
            name: "r-not-on-curve",
            about: "R = y = 2, which no point has; S = k*a",
            craft: |message| {
                let (a_bytes, a) = prime_key();
                (a_bytes, signature(not_a_point(), Scalar::ZERO, a_bytes, a, message))
            },
            key_check: "valid",
            signature_check: "r-not-on-curve",
            zip215: false,
            cofactorless: false,
        },
        Kind {
            name: "equation-fails",
            about: "an RFC 8032 signature by the valid key on another message",
            craft: |message| {
                let mut other = message.to_vec();
                other.push(0);
                (keypair().public().0, keypair().sign(&other).0)
            },
            key_check: "valid",
            signature_check: "equation-fails",
            zip215: false,
            cofactorless: false,
        },
        Kind {
            name: "a-small-order",
            about: "A = T, of order 8; R = [r]B, S = r: the cofactored equation holds for any message (a forgery without a secret)",
            craft: |message| {
                let a_bytes = torsion().compress().to_bytes();
                let r = scalar("a-small-order nonce");
                (a_bytes, signature(base_times(r).compress().to_bytes(), r, a_bytes, Scalar::ZERO, message))
            },
            key_check: "small-order",
            signature_check: "valid",
            zip215: true,
            cofactorless: false,
        },
        Kind {
            name: "a-non-canonical",
            about: "A = the identity encoded with y = 1 + p; R = [r]B, S = r: a forgery ZIP-215 accepts",
            craft: |message| {
                let a_bytes = y_plus_p(1);
                let r = scalar("a-non-canonical nonce");
                (a_bytes, signature(base_times(r).compress().to_bytes(), r, a_bytes, Scalar::ZERO, message))
            },
            key_check: "not-canonical",
            signature_check: "key-not-canonical",
            zip215: true,
            cofactorless: false,
        },
        Kind {
            name: "a-mixed-order",
            about: "A = [a]B + T; R = [r]B, S = r + k*a: the cofactored equation holds; the cofactorless one only if 8 divides k (not here)",
            craft: |message| {
                let a = scalar("mixed-order key");
                let a_bytes = (base_times(a) + torsion()).compress().to_bytes();
                let r = scalar("a-mixed-order nonce");
                (a_bytes, signature(base_times(r).compress().to_bytes(), r, a_bytes, a, message))
            },
            key_check: "valid",
            signature_check: "valid",
            zip215: true,
            cofactorless: false,
        },
        Kind {
            name: "a-not-on-curve",
            about: "A = y = 2, which no point has; R = [r]B, S = r",
            craft: |message| {
                let a_bytes = not_a_point();
                let r = scalar("a-not-on-curve nonce");
                (a_bytes, signature(base_times(r).compress().to_bytes(), r, a_bytes, Scalar::ZERO, message))
            },
            key_check: "valid",
            signature_check: "key-not-on-curve",
            zip215: false,
            cofactorless: false,
        },
    ]
}

fn message_of(kind: &Kind) -> Vec<u8> {
    format!("gridshare signature vector {}", kind.name).into_bytes()
}

fn verdict(accepts: bool) -> &'static str {
    if accepts { "accept" } else { "reject" }
}

const HEADER: &str = "\
# Signature vectors of the Gridshare protocol (docs/PROTOCOL.md section 3).
# Written by ledger/tests/signatures.rs, which says how each case is crafted;
# the verdicts are written by hand there and checked against the ledger,
# ed25519-zebra and ed25519-dalek.
#
# key, message and signature (R then S) are hex. For each case:
#   key-check        the key rule (registration, genesis), from the key's bytes:
#                    valid, not-canonical or small-order
#   signature-check  the signature rule alone: valid, key-not-canonical,
#                    key-not-on-curve, r-not-canonical, r-not-on-curve,
#                    r-small-order, s-not-below-order or equation-fails
#   ledger           accept when both checks say valid
#   zip215           what ZIP-215 (ed25519-zebra 4) answers: any encoding of a
#                    point, S < l, the cofactored equation
#   cofactorless     what ed25519-dalek 2's verify_strict answers: S < l,
#                    small-order A and R refused, [S]B - [k]A must encode to
#                    the bytes of R
";

fn render() -> String {
    let mut out = String::from(HEADER);
    for kind in kinds() {
        let message = message_of(&kind);
        let (key, signature) = (kind.craft)(&message);
        let ledger = kind.key_check == "valid" && kind.signature_check == "valid";
        out.push_str(&format!(
            "\n== {}\nabout            {}\nkey              {}\nmessage          {}\nsignature        {}\n\
             key-check        {}\nsignature-check  {}\nledger           {}\nzip215           {}\n\
             cofactorless     {}\n",
            kind.name,
            kind.about,
            hex::encode(key),
            hex::encode(&message),
            hex::encode(signature),
            kind.key_check,
            kind.signature_check,
            verdict(ledger),
            verdict(kind.zip215),
            verdict(kind.cofactorless),
        ));
    }
    out
}

/// One case as the vectors file has it.
#[derive(Debug)]
struct Vector {
    name: String,
    key: PublicKey,
    message: Vec<u8>,
    signature: Signature,
    key_check: String,
    signature_check: String,
    ledger: String,
    zip215: String,
    cofactorless: String,
}

/// Reads the vectors file as an implementation in another language would.
fn parse(text: &str) -> Vec<Vector> {
    let mut vectors = Vec::new();
    for block in text.split("\n== ").skip(1) {
        let mut lines = block.lines();
        let name = lines.next().unwrap().to_string();
        let fields: std::collections::BTreeMap<&str, &str> = lines
            .filter_map(|line| line.split_once(' '))
            .map(|(field, value)| (field, value.trim()))
            .collect();
        let field = |name: &str| fields.get(name).unwrap_or_else(|| panic!("no {name}")).to_string();
        let mut key = [0_u8; 32];
        hex::decode_to_slice(field("key"), &mut key).unwrap();
        let mut signature = [0_u8; 64];
        hex::decode_to_slice(field("signature"), &mut signature).unwrap();
        vectors.push(Vector {
            name,
            key: PublicKey(key),
            message: hex::decode(field("message")).unwrap(),
            signature: Signature(signature),
            key_check: field("key-check"),
            signature_check: field("signature-check"),
            ledger: field("ledger"),
            zip215: field("zip215"),
            cofactorless: field("cofactorless"),
        });
    }
    vectors
}

fn vectors() -> Vec<Vector> {
    parse(include_str!("vectors/signatures.txt"))
}

fn key_check(key: &PublicKey) -> &'static str {
    match key.validate() {
        Ok(()) => "valid",
        Err(KeyError::NotCanonical) => "not-canonical",
        Err(KeyError::NotOnCurve) => "not-on-curve",
        Err(KeyError::SmallOrder) => "small-order",
    }
}

fn signature_check(result: &Result<(), SignatureError>) -> &'static str {
    match result {
        Ok(()) => "valid",
        Err(SignatureError::BadKey { reason: KeyError::NotCanonical, .. }) => "key-not-canonical",
        Err(SignatureError::BadKey { reason: KeyError::NotOnCurve, .. }) => "key-not-on-curve",
        // The signature check never looks at the key's order.
        Err(SignatureError::BadKey { reason, .. }) => panic!("verify checked the key's order: {reason}"),
        Err(SignatureError::Malformed { reason, .. }) => match reason {
            MalformedSignature::RNotCanonical => "r-not-canonical",
            MalformedSignature::RNotOnCurve => "r-not-on-curve",
            MalformedSignature::RSmallOrder => "r-small-order",
            MalformedSignature::SNotBelowGroupOrder => "s-not-below-order",
        },
        Err(SignatureError::Invalid(_)) => "equation-fails",
    }
}

fn zip215_accepts(key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    ed25519_zebra::VerificationKey::try_from(key.0)
        .and_then(|key| key.verify(&ed25519_zebra::Signature::from(signature.0), message))
        .is_ok()
}

fn cofactorless_accepts(vector: &Vector) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(&vector.key.0)
        .and_then(|key| {
            key.verify_strict(&vector.message, &ed25519_dalek::Signature::from_bytes(&vector.signature.0))
        })
        .is_ok()
}

#[test]
fn the_vectors_file_holds_the_crafted_cases_and_their_verdicts() {
    expect_file!["vectors/signatures.txt"].assert_eq(&render());
}

#[test]
fn the_ledger_zebra_and_dalek_agree_with_the_vectors() {
    let vectors = vectors();
    assert_eq!(vectors.len(), kinds().len());
    for vector in &vectors {
        let name = &vector.name;
        let verified = vector.key.verify(&vector.message, &vector.signature);
        assert_eq!(key_check(&vector.key), vector.key_check, "{name}: key check");
        assert_eq!(
            signature_check(&verified),
            vector.signature_check,
            "{name}: signature check ({verified:?})"
        );
        let ledger = vector.key.validate().is_ok() && verified.is_ok();
        assert_eq!(verdict(ledger), vector.ledger, "{name}: ledger");
        let zip215 = zip215_accepts(&vector.key, &vector.message, &vector.signature);
        assert_eq!(verdict(zip215), vector.zip215, "{name}: zip215");
        assert_eq!(verdict(cofactorless_accepts(vector)), vector.cofactorless, "{name}: cofactorless");
        // A signature the ledger admits is one every cofactored verifier
        // admits: the ledger is never more permissive than ZIP-215.
        assert!(zip215 || verified.is_err(), "{name}: the ledger admits what ZIP-215 refuses");
    }
}

/// Three good signatures by three keys, and a check of `vector` among them.
fn batch_around(vector: &Vector) -> Vec<SignatureCheck> {
    let good = |index: u32| {
        let key = derived_key(99, 3, index);
        let message = format!("good {index}").into_bytes();
        SignatureCheck { key: key.public(), signature: key.sign(&message), message }
    };
    let case =
        SignatureCheck { key: vector.key, message: vector.message.clone(), signature: vector.signature };
    vec![good(0), good(1), case, good(2)]
}

#[test]
fn batch_verification_agrees_with_the_vectors() {
    for vector in &vectors() {
        let single = vector.key.verify(&vector.message, &vector.signature);
        let checks = batch_around(vector);
        // The batch's coefficients are random: a cofactorless batch would
        // accept a mixed-order R in one run of eight. Several runs each.
        for run in 0..16 {
            let batch = verify_batch(&checks);
            assert_eq!(batch, single, "{}: batch run {run}", vector.name);
            assert_eq!(verify_batch(std::iter::once(&checks[2])), single, "{}: batch of one", vector.name);
        }
    }
}

/// A community whose first registrar is the vector's key, and an export of
/// one block whose first transaction is a registration signed with the
/// vector's kind of signature (over the transaction's own bytes), among
/// good ones from a second registrar.
fn export_signed_by(kind: &Kind) -> (Genesis, Vec<u8>) {
    let mut community = TestCommunity::new(31, 0, test_market(), T0);
    let (key, _) = (kind.craft)(b"");
    let registrar = PublicKey(key);
    let good = derived_key(31, 1, 1);
    community.genesis.registrars = vec![registrar, good.public()];
    let genesis = community.genesis.clone();
    let id = genesis.community_id;
    let account = |index| derived_key(31, 3, index).public();
    let tx = Tx::RegisterAccount { registrar, nonce: 1, account: account(0), credit_limit_nano: 0 };
    let (_, signature) = (kind.craft)(&tx.signing_bytes(&id));
    let mut transactions = vec![SignedTx { tx, signature: Signature(signature) }];
    for nonce in 1..=3 {
        let tx = Tx::RegisterAccount {
            registrar: good.public(),
            nonce,
            account: account(u32::try_from(nonce).unwrap()),
            credit_limit_nano: 0,
        };
        transactions.push(SignedTx::sign(tx, &good, &id));
    }
    let proposer = community.validator.public();
    // Built without verifying: the audit is the one that checks.
    let built = build_block(
        &genesis,
        &State::genesis(&genesis),
        transactions,
        T0 + 100,
        proposer,
        Signatures::AlreadyVerified,
    )
    .unwrap();
    assert!(built.left_out.is_empty(), "{}: {:?}", kind.name, built.left_out);
    let certificate = CommitCertificate::sign(&built.block.header, 0, &[&community.validator]);
    let mut bytes = Vec::new();
    let mut writer = ExportWriter::new(&mut bytes, &genesis).unwrap();
    writer.block(&CertifiedBlock { block: built.block, certificate }).unwrap();
    writer.finish().unwrap();
    (genesis, bytes)
}

#[test]
fn the_audit_agrees_with_the_vectors() {
    for kind in kinds() {
        let (genesis, export) = export_signed_by(&kind);
        let report = audit_export(export.as_slice(), |_| ()).unwrap();
        let name = kind.name;
        let registrar = genesis.registrars[0];
        let signature_findings: Vec<_> =
            report.findings.iter().filter(|finding| finding.object.starts_with("transaction")).collect();
        if kind.signature_check == "valid" {
            assert!(signature_findings.is_empty(), "{name}: {:?}", report.findings);
        } else {
            assert_eq!(signature_findings.len(), 1, "{name}: {:?}", report.findings);
            assert_eq!(signature_findings[0].object, "transaction 0 (register-account)", "{name}");
            let tx = Tx::RegisterAccount {
                registrar,
                nonce: 1,
                account: derived_key(31, 3, 0).public(),
                credit_limit_nano: 0,
            };
            let message = tx.signing_bytes(&genesis.community_id);
            let (_, signature) = (kind.craft)(&message);
            let error = registrar.verify(&message, &Signature(signature)).unwrap_err();
            assert_eq!(signature_findings[0].message, error.to_string(), "{name}");
            assert_eq!(signature_check(&Err(error)), kind.signature_check, "{name}");
        }
        let genesis_findings: Vec<_> =
            report.findings.iter().filter(|finding| finding.object == "genesis").collect();
        if kind.key_check == "valid" {
            assert!(genesis_findings.is_empty(), "{name}: {:?}", report.findings);
        } else {
            assert_eq!(genesis_findings.len(), 1, "{name}: {:?}", report.findings);
            assert!(
                genesis_findings[0].message.contains(&format!("registrar {registrar} is not a valid key")),
                "{name}: {}",
                genesis_findings[0].message
            );
        }
        let accepted = kind.key_check == "valid" && kind.signature_check == "valid";
        assert_eq!(report.passed(), accepted, "{name}: {:?}", report.findings);
        assert_eq!(report.executed_height, u64::from(accepted), "{name}");
        assert_eq!(report.signatures_verified, 5, "{name}: four transactions and one certificate signature");
    }
}

/// Every kind of key that must not be registered, with the reason.
fn bad_keys() -> Vec<([u8; 32], KeyError)> {
    let mut keys = vec![
        (y_plus_p(0), KeyError::NotCanonical),
        (y_plus_p(1), KeyError::NotCanonical),
        (y_plus_p(3), KeyError::NotCanonical),
        (negative_zero_identity(), KeyError::NotCanonical),
        ([0xff; 32], KeyError::NotCanonical),
    ];
    // y = p − 1 (the point of order 2) with the sign bit set.
    let mut negative_zero_order_two = SMALL_ORDER_ENCODINGS[1];
    negative_zero_order_two[31] |= 0x80;
    keys.push((negative_zero_order_two, KeyError::NotCanonical));
    keys.extend(SMALL_ORDER_ENCODINGS.iter().map(|&bytes| (bytes, KeyError::SmallOrder)));
    keys
}

#[test]
fn registration_and_the_genesis_refuse_every_bad_key() {
    let mut community = TestCommunity::new(32, 1, test_market(), T0);
    let validator = LocalValidator { keypair: Keypair::from_seed(community.validator.seed()) };
    let registrations = community.registrations();
    let genesis = community.genesis.clone();
    let (_, built) = validator.produce(&genesis, &State::genesis(&genesis), registrations, T0 + 100).unwrap();
    let state = built.state;
    let owner = community.households[0].account.public();
    let nonce = state.registrar_nonces[&community.registrar.public()] + 1;
    let refused = |tx: Tx| {
        let signed = SignedTx::sign(tx, &community.registrar, &genesis.community_id);
        let mut after = state.clone();
        let rejection = admit(&genesis, &mut after, T0 + 200, &signed).unwrap_err();
        assert_eq!(after, state, "a rejected transaction changes nothing");
        rejection
    };
    let registrar = community.registrar.public();
    for (bytes, reason) in bad_keys() {
        let key = PublicKey(bytes);
        assert_eq!(key.validate(), Err(reason), "{key}");
        let account = Tx::RegisterAccount { registrar, nonce, account: key, credit_limit_nano: 0 };
        let rejection = refused(account);
        assert_eq!(rejection, Rejection::InvalidKey { key, reason });
        assert_eq!(rejection.code(), "invalid_key");
        assert!(rejection.to_string().contains(&key.to_string()), "{rejection}");
        let meter = Tx::RegisterMeter {
            registrar,
            nonce,
            meter: key,
            owner,
            max_import_w: 1,
            max_export_w: 1,
            zone: "main".into(),
        };
        assert_eq!(refused(meter), Rejection::InvalidKey { key, reason });

        let mut as_validator = genesis.clone();
        as_validator.validators.push(Validator { key, voting_power: 1 });
        let error = as_validator.validate().unwrap_err().to_string();
        assert_eq!(error, format!("invalid genesis: validator {key} is not a valid key: {reason}"));
        let mut as_registrar = genesis.clone();
        as_registrar.registrars.push(key);
        let error = as_registrar.validate().unwrap_err().to_string();
        assert_eq!(error, format!("invalid genesis: registrar {key} is not a valid key: {reason}"));
    }
    // The same registrations with a real key are admitted.
    let key = derived_key(32, 3, 1).public();
    let mut after = state.clone();
    let tx = Tx::RegisterAccount { registrar, nonce, account: key, credit_limit_nano: 0 };
    admit(&genesis, &mut after, T0 + 200, &SignedTx::sign(tx, &community.registrar, &genesis.community_id))
        .unwrap();
    let tx = Tx::RegisterMeter {
        registrar,
        nonce: nonce + 1,
        meter: derived_key(32, 4, 1).public(),
        owner: key,
        max_import_w: 1,
        max_export_w: 1,
        zone: "main".into(),
    };
    admit(&genesis, &mut after, T0 + 200, &SignedTx::sign(tx, &community.registrar, &genesis.community_id))
        .unwrap();
}

#[test]
fn the_keys_of_tests_the_dev_node_and_the_testnet_are_valid() {
    // The dev node's community (`gridshare-node run --dev`) and the
    // households the test kit makes.
    let dev = TestCommunity::new(1, 2, test_market(), 0);
    let mut keys = vec![dev.registrar.public(), dev.validator.public()];
    keys.extend(dev.households.iter().flat_map(|h| [h.account.public(), h.meter.public()]));
    // The testnet's keys: `derived_key(seed, role, index)`, role 1
    // registrar, 2 validators, 3 accounts, 4 meters.
    for seed in [0, 1, 7, 42, u64::MAX] {
        for role in 1..=4 {
            keys.extend((0..32).map(|index| derived_key(seed, role, index).public()));
        }
    }
    for key in keys {
        assert_eq!(key.validate(), Ok(()), "{key}");
    }
    assert_eq!(dev.genesis.validate(), Ok(()));
}

proptest! {
    /// Every key an RFC 8032 signer derives from a seed is a point of prime
    /// order: the keystore's random keys are valid.
    #[test]
    fn keys_from_any_seed_are_valid(seed in any::<[u8; 32]>()) {
        prop_assert_eq!(Keypair::from_seed(seed).public().validate(), Ok(()));
    }

    /// Random bytes as a key, R and S: no panic, single and batch agree, and
    /// what verifies has the encodings the rule asks for.
    #[test]
    fn random_signatures_never_panic_and_batches_agree(
        key in any::<[u8; 32]>(),
        signature in prop::collection::vec(any::<u8>(), 64),
        message in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let key = PublicKey(key);
        let signature = Signature(signature.try_into().unwrap());
        let _ = key.validate();
        let single = key.verify(&message, &signature);
        let check = SignatureCheck { key, message, signature };
        prop_assert_eq!(verify_batch([&check]), single);
    }
}

#[test]
fn a_small_order_r_is_refused_in_every_encoding_and_a_canonical_one_only_by_the_list() {
    // Every canonical encoding of a point of small order is on the list, and
    // the list is the points of small order: comparing bytes is the check.
    for bytes in SMALL_ORDER_ENCODINGS {
        let point = CompressedEdwardsY(bytes).decompress().unwrap();
        assert!(point.is_small_order());
        assert_eq!(point.compress().to_bytes(), bytes, "canonical");
    }
    // Each of them as R of a signature whose cofactored equation holds.
    let (a_bytes, a) = prime_key();
    let key = PublicKey(a_bytes);
    for r_bytes in SMALL_ORDER_ENCODINGS {
        let signed = Signature(signature(r_bytes, Scalar::ZERO, a_bytes, a, b"m"));
        assert!(
            zip215_accepts(&key, b"m", &signed),
            "{}: the cofactored equation holds",
            hex::encode(r_bytes)
        );
        assert_eq!(
            key.verify(b"m", &signed),
            Err(SignatureError::Malformed { key, reason: MalformedSignature::RSmallOrder })
        );
    }
}
