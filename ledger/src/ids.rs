//! Keys, signatures and community ids: ed25519 keys signed with
//! ed25519-dalek and verified under one rule for everybody, ZIP-215 through
//! ed25519-zebra (docs/PROTOCOL.md §3).

use borsh::{BorshDeserialize, BorshSerialize};
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

/// Why a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("{0} is not a valid ed25519 public key")]
    BadKey(PublicKey),
    #[error("the signature of {0} does not verify")]
    Invalid(PublicKey),
}

impl PublicKey {
    /// Verifies `signature` on `message` under ZIP-215 rules, the one rule of
    /// the protocol: single and batch verification agree under it.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key =
            ed25519_zebra::VerificationKey::try_from(self.0).map_err(|_| SignatureError::BadKey(*self))?;
        key.verify(&ed25519_zebra::Signature::from(signature.0), message)
            .map_err(|_| SignatureError::Invalid(*self))
    }
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
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let keypair = Keypair::from_seed([7; 32]);
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
        // Not a point on the curve.
        let bad = PublicKey([0xff; 32]);
        assert!(bad.verify(b"x", &Signature([0; 64])).is_err());
        assert!(PublicKey([0; 32]).verify(b"x", &Signature([0xff; 64])).is_err());
    }
}
