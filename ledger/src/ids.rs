//! Keys, signatures and community ids: ed25519 keys that sign as RFC 8032
//! says (ed25519-dalek), and one rule for everybody that checks them
//! (docs/PROTOCOL.md §3): a key may be registered when its encoding is
//! canonical and is not that of a point of small order, checked from its
//! bytes alone; a signature is valid when the key and `R` are canonical encodings, `R` is not
//! of small order, `S < ℓ` and the cofactored equation holds, which
//! ed25519-zebra checks after the encoding checks here.

use borsh::{BorshDeserialize, BorshSerialize};
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::Signer;

/// An ed25519 public key: an account, a meter, a registrar or a validator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// An account is its public key.
pub type AccountId = PublicKey;
/// A meter is its device key.
pub type MeterId = PublicKey;

/// An ed25519 signature. Ordered by its bytes (consensus keeps signatures in
/// ordered sets); the order has no other meaning.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

/// The id of a community: part of every signed and hashed message.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct CommunityId(pub [u8; 32]);

/// p = 2^255 − 19, the field's modulus, little-endian.
pub const FIELD_MODULUS_LE: [u8; 32] =
    hex_32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");

/// ℓ = 2^252 + 27742317777372353535851937790883648493, the order of the base
/// point, little-endian.
pub const GROUP_ORDER_LE: [u8; 32] =
    hex_32("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");

/// The canonical encodings of the eight points of small order (order 1, 2,
/// 4 and 8: the identity, (0, −1), (±√−1, 0) and four points of order 8).
/// An `R` among them is refused: comparing bytes is all it takes, because a
/// canonical encoding is the only encoding of its point.
pub const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
    hex_32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex_32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex_32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex_32("0000000000000000000000000000000000000000000000000000000000000080"),
    hex_32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex_32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    hex_32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex_32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
];

/// y = 1 and y = p − 1 (little-endian, sign bit clear): the two values of y
/// whose point has x = 0, which therefore has no negative twin.
const Y_ONE_LE: [u8; 32] = hex_32("0100000000000000000000000000000000000000000000000000000000000000");
const Y_MINUS_ONE_LE: [u8; 32] = hex_32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");

/// Why a public key is not valid (docs/PROTOCOL.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("its encoding is not canonical (y is not below 2^255 - 19, or x = 0 with the sign bit set)")]
    NotCanonical,
    #[error("it is not the encoding of a point of the curve")]
    NotOnCurve,
    #[error("it is a point of small order, whose signatures anybody can forge")]
    SmallOrder,
}

/// Why a signature's own bytes are refused before any equation is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedSignature {
    #[error("R is not a canonical encoding (y is not below 2^255 - 19, or x = 0 with the sign bit set)")]
    RNotCanonical,
    #[error("R is not the encoding of a point of the curve")]
    RNotOnCurve,
    #[error("R is a point of small order")]
    RSmallOrder,
    #[error("S is not below the group order (not canonical)")]
    SNotBelowGroupOrder,
}

/// Why a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("{key} is not a valid ed25519 public key: {reason}")]
    BadKey { key: PublicKey, reason: KeyError },
    #[error("the signature of {key} is malformed: {reason}")]
    Malformed { key: PublicKey, reason: MalformedSignature },
    #[error("the signature of {0} does not verify")]
    Invalid(PublicKey),
}

impl PublicKey {
    /// Checks that the key may be registered (an account, a meter) or named
    /// in a genesis (a validator, a registrar), from its bytes alone
    /// (docs/PROTOCOL.md §3.3): a canonical encoding as far as bytes tell
    /// (y below p, no sign bit on x = 0) that is none of the eight encodings
    /// of points of small order, for which anybody can make signatures. The
    /// point is not decoded: bytes that are no point can sign nothing (a
    /// signature check decodes the key), and decoding would cost a square
    /// root per registration, as would telling mixed order from prime order
    /// a scalar multiplication; mixed order is allowed, as for `R`.
    pub fn validate(&self) -> Result<(), KeyError> {
        if !encoding_is_canonical(&self.0) {
            return Err(KeyError::NotCanonical);
        }
        if SMALL_ORDER_ENCODINGS.contains(&self.0) {
            return Err(KeyError::SmallOrder);
        }
        Ok(())
    }

    /// Verifies `signature` on `message` under the protocol's one rule
    /// (docs/PROTOCOL.md §3). Single and batch verification ([`crate::tx::verify_batch`])
    /// agree under it. Whether the key is of small order is not checked
    /// here: registration did.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        self.check_encodings(signature)?;
        let key = ed25519_zebra::VerificationKey::try_from(self.0)
            .map_err(|_| SignatureError::BadKey { key: *self, reason: KeyError::NotOnCurve })?;
        key.verify(&ed25519_zebra::Signature::from(signature.0), message).map_err(|_| {
            // Only a failure pays for decoding R again, to say why.
            let r = signature_r(signature);
            if CompressedEdwardsY(r).decompress().is_none() {
                SignatureError::Malformed { key: *self, reason: MalformedSignature::RNotOnCurve }
            } else {
                SignatureError::Invalid(*self)
            }
        })
    }

    /// The checks of the rule that need no curve arithmetic, made per
    /// signature before it is verified alone or queued in a batch: the key
    /// and `R` are canonical as far as their bytes tell (whether they decode
    /// at all, the verifier finds out), `R` is none of the small-order
    /// points, and `S < ℓ`. ed25519-zebra decodes any encoding of a point
    /// (ZIP-215), so without these it would admit what RFC 8032's own
    /// verifiers refuse. Passing them is necessary, not sufficient: only
    /// [`PublicKey::verify`] or a batch says a signature is valid.
    pub fn check_encodings(&self, signature: &Signature) -> Result<(), SignatureError> {
        if !encoding_is_canonical(&self.0) {
            return Err(SignatureError::BadKey { key: *self, reason: KeyError::NotCanonical });
        }
        let malformed = |reason| Err(SignatureError::Malformed { key: *self, reason });
        let r = signature_r(signature);
        if !encoding_is_canonical(&r) {
            return malformed(MalformedSignature::RNotCanonical);
        }
        if SMALL_ORDER_ENCODINGS.contains(&r) {
            return malformed(MalformedSignature::RSmallOrder);
        }
        if !less_than_le(&signature_s(signature), &GROUP_ORDER_LE) {
            return malformed(MalformedSignature::SNotBelowGroupOrder);
        }
        Ok(())
    }
}

/// Whether a point encoding is canonical as far as its bytes tell: y (the
/// low 255 bits) is below p, and the sign bit is not set on a point with
/// x = 0 (y = 1 or y = p − 1). Whether x exists for y is the decoder's part.
fn encoding_is_canonical(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    let sign_bit_set = bytes[31] & 0x80 != 0;
    less_than_le(&y, &FIELD_MODULUS_LE) && !(sign_bit_set && (y == Y_ONE_LE || y == Y_MINUS_ONE_LE))
}

/// `a < b` for 256-bit little-endian integers.
fn less_than_le(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

fn signature_r(signature: &Signature) -> [u8; 32] {
    let mut r = [0_u8; 32];
    r.copy_from_slice(&signature.0[..32]);
    r
}

fn signature_s(signature: &Signature) -> [u8; 32] {
    let mut s = [0_u8; 32];
    s.copy_from_slice(&signature.0[32..]);
    s
}

/// 32 bytes from 64 hex digits, at compile time (a bad constant fails the
/// build).
const fn hex_32(text: &str) -> [u8; 32] {
    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let text = text.as_bytes();
    assert!(text.len() == 64, "not 64 hex digits");
    let mut bytes = [0_u8; 32];
    let mut index = 0;
    while index < 32 {
        bytes[index] = digit(text[2 * index]) << 4 | digit(text[2 * index + 1]);
        index += 1;
    }
    bytes
}

/// A signing key. Only tests, the dev-mode validator and the CLI hold them;
/// the node never holds a household's key.
pub struct Keypair(ed25519_dalek::SigningKey);

impl Keypair {
    /// The key with this 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The secret seed, for keystores.
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "Keypair({:?})", self.public())
    }
}

macro_rules! hex_display {
    ($type:ident) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($type), hex::encode(self.0))
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
    };
}

hex_display!(PublicKey);
hex_display!(Signature);
hex_display!(CommunityId);

impl std::str::FromStr for PublicKey {
    type Err = String;

    fn from_str(text: &str) -> Result<PublicKey, String> {
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|error| format!("`{text}` is not a 64-digit hex public key: {error}"))?;
        Ok(PublicKey(bytes))
    }
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::Scalar;
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::edwards::EdwardsPoint;

    use super::*;

    #[test]
    fn signs_and_verifies() {
        let keypair = Keypair::from_seed([7; 32]);
        assert_eq!(keypair.public().validate(), Ok(()));
        let signature = keypair.sign(b"offer");
        assert_eq!(keypair.public().verify(b"offer", &signature), Ok(()));
        assert_eq!(
            keypair.public().verify(b"offers", &signature),
            Err(SignatureError::Invalid(keypair.public()))
        );
        let other = Keypair::from_seed([8; 32]).public();
        assert!(other.verify(b"offer", &signature).is_err());
        let mut flipped = signature;
        flipped.0[10] ^= 1;
        assert!(keypair.public().verify(b"offer", &flipped).is_err());
    }

    #[test]
    fn garbage_keys_are_errors_not_panics() {
        // y = 2^255 - 1 is not below p.
        let bad = PublicKey([0xff; 32]);
        assert_eq!(
            bad.verify(b"x", &Signature([0; 64])),
            Err(SignatureError::BadKey { key: bad, reason: KeyError::NotCanonical })
        );
        assert_eq!(bad.validate(), Err(KeyError::NotCanonical));
        assert!(PublicKey([0; 32]).verify(b"x", &Signature([0xff; 64])).is_err());
        assert_eq!(PublicKey([0; 32]).validate(), Err(KeyError::SmallOrder));
    }

    #[test]
    fn the_constants_are_the_curve_s() {
        // ℓ − 1 is the largest canonical scalar, ℓ is not canonical.
        let mut order_minus_one = GROUP_ORDER_LE;
        order_minus_one[0] -= 1;
        assert_eq!((Scalar::ZERO - Scalar::ONE).to_bytes(), order_minus_one);
        assert!(bool::from(Scalar::from_canonical_bytes(GROUP_ORDER_LE).is_none()));
        // p: y = p − 1 is a point (of order 2) and the encoding of y = p + 1
        // decodes to the identity, as y = 1 does.
        assert_eq!(Y_MINUS_ONE_LE[0], FIELD_MODULUS_LE[0] - 1);
        assert_eq!(Y_MINUS_ONE_LE[1..], FIELD_MODULUS_LE[1..]);
        let mut p_plus_one = FIELD_MODULUS_LE;
        p_plus_one[0] += 1;
        assert_eq!(CompressedEdwardsY(p_plus_one).decompress(), Some(EdwardsPoint::default()));
        // The small-order list is the compressed 8-torsion subgroup.
        let mut torsion: Vec<[u8; 32]> =
            EIGHT_TORSION.iter().map(|point| point.compress().to_bytes()).collect();
        let mut listed = SMALL_ORDER_ENCODINGS.to_vec();
        torsion.sort();
        listed.sort();
        assert_eq!(torsion, listed);
    }

    /// The byte check refuses exactly the points of small order among
    /// canonical encodings of points, and takes mixed order and bytes that
    /// are no point (which can sign nothing).
    #[test]
    fn the_key_check_refuses_exactly_small_order() {
        let prime = ED25519_BASEPOINT_POINT * Scalar::from(1_234_567_u64);
        for (index, torsion) in EIGHT_TORSION.iter().enumerate() {
            for point in [prime + torsion, *torsion] {
                let key = PublicKey(point.compress().to_bytes());
                let expected = if point.is_small_order() { Err(KeyError::SmallOrder) } else { Ok(()) };
                assert_eq!(key.validate(), expected, "torsion point {index}");
            }
        }
        assert_eq!(PublicKey(prime.compress().to_bytes()).validate(), Ok(()));
        // y = 2 is no point: registrable, and nothing verifies under it.
        let mut no_point = [0; 32];
        no_point[0] = 2;
        assert_eq!(CompressedEdwardsY(no_point).decompress(), None);
        assert_eq!(PublicKey(no_point).validate(), Ok(()));
        assert_eq!(
            PublicKey(no_point).verify(b"x", &Keypair::from_seed([7; 32]).sign(b"x")),
            Err(SignatureError::BadKey { key: PublicKey(no_point), reason: KeyError::NotOnCurve })
        );
    }

    #[test]
    fn canonical_encodings_by_their_bytes() {
        assert!(less_than_le(&[0; 32], &[1; 32]));
        assert!(!less_than_le(&[1; 32], &[1; 32]));
        let mut high = [0_u8; 32];
        high[31] = 1;
        // 2^248 − 1 < 2^248: the last byte is the most significant.
        let mut just_below = [0xff_u8; 32];
        just_below[31] = 0;
        assert!(less_than_le(&just_below, &high) && !less_than_le(&high, &just_below));
        // y < p, from either side of p, sign bit clear and set.
        for sign in [0, 0x80] {
            let mut y = FIELD_MODULUS_LE;
            y[31] |= sign;
            assert!(!encoding_is_canonical(&y), "p itself");
            let mut below = Y_MINUS_ONE_LE;
            below[0] -= 1;
            below[31] |= sign;
            assert!(encoding_is_canonical(&below), "p − 2");
        }
        // x = 0 exactly for y = 1 and y = p − 1: their sign bit must be clear.
        for y in [Y_ONE_LE, Y_MINUS_ONE_LE] {
            assert!(encoding_is_canonical(&y));
            let mut negative_zero = y;
            negative_zero[31] |= 0x80;
            assert!(!encoding_is_canonical(&negative_zero));
            assert_eq!(PublicKey(negative_zero).validate(), Err(KeyError::NotCanonical));
            let point = CompressedEdwardsY(y).decompress().unwrap_or_default();
            assert_eq!(point.compress().to_bytes(), y);
        }
        // A canonical encoding decodes and compresses back to itself.
        let base = ED25519_BASEPOINT_POINT.compress().to_bytes();
        assert_eq!(
            CompressedEdwardsY(base).decompress().map(|point| point.compress().to_bytes()),
            Some(base)
        );
    }
}
