//! The keystore: named ed25519 keys (accounts, meters, registrars,
//! validators), one JSON file each, secrets encrypted at rest with a
//! passphrase (argon2id, then ChaCha20-Poly1305), or in plain text only when
//! asked for explicitly (testnets).

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use gridshare_ledger::ids::{Keypair, PublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

/// The environment variable a passphrase is read from in scripts.
pub const PASSPHRASE_ENV: &str = "GRIDSHARE_PASSPHRASE";
/// The environment variable that points at another keystore directory.
pub const KEYSTORE_ENV: &str = "GRIDSHARE_KEYSTORE";
/// argon2id cost: 64 MiB, 3 passes, one lane (the RFC 9106 second choice).
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_PASSES: u32 = 3;
const NAME_LEN_MAX: usize = 32;

/// What a key is for. Shown next to it everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Account,
    Meter,
    Registrar,
    Validator,
    /// A distribution system operator's: sets zone limits.
    Dso,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Account => "account",
            Role::Meter => "meter",
            Role::Registrar => "registrar",
            Role::Validator => "validator",
            Role::Dso => "dso",
        }
    }
}

/// How a key's secret is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Secret {
    /// argon2id(passphrase, salt) is the ChaCha20-Poly1305 key; the name,
    /// role and public key are authenticated with the seed.
    Argon2idChacha20poly1305 {
        memory_kib: u32,
        passes: u32,
        salt_hex: String,
        nonce_hex: String,
        ciphertext_hex: String,
    },
    /// The seed in the clear: for testnets only.
    Plaintext { seed_hex: String },
}

/// One key file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub name: String,
    pub role: Role,
    pub public_key: String,
    pub secret: Secret,
}

impl KeyFile {
    pub fn public_key(&self) -> Result<PublicKey, KeystoreError> {
        self.public_key.parse().map_err(|reason| KeystoreError::Damaged { name: self.name.clone(), reason })
    }

    pub fn is_encrypted(&self) -> bool {
        matches!(self.secret, Secret::Argon2idChacha20poly1305 { .. })
    }
}

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("`{0}` is not a key name: use 1 to 32 of a-z, 0-9, - and _")]
    BadName(String),
    #[error("no key named `{name}` in {dir}")]
    Unknown { name: String, dir: PathBuf },
    #[error("a key named `{name}` already exists in {dir}")]
    Exists { name: String, dir: PathBuf },
    #[error("wrong passphrase for key `{0}` (or its file was altered)")]
    WrongPassphrase(String),
    #[error("the key file of `{name}` is damaged: {reason}")]
    Damaged { name: String, reason: String },
    #[error(
        "no passphrase: set {PASSPHRASE_ENV} or run in a terminal (or use --insecure-plaintext for testnets)"
    )]
    NoPassphrase,
    #[error("the passphrases do not match")]
    PassphraseMismatch,
    #[error("cannot read the passphrase file {path}: {reason}")]
    PassphraseFile { path: PathBuf, reason: String },
    #[error("an empty passphrase protects nothing: choose one, or use --insecure-plaintext for testnets")]
    EmptyPassphrase,
    #[error("a secret key is 64 hex digits (32 bytes): {0}")]
    BadSeed(String),
    #[error("no keystore directory: set {KEYSTORE_ENV} or HOME")]
    NoDirectory,
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

/// Where passphrases come from.
#[derive(Debug, Clone)]
pub enum PassphraseSource {
    /// A fixed passphrase (from the environment, or tests).
    Given(String),
    /// Ask on the terminal.
    Prompt,
}

impl PassphraseSource {
    /// The environment's passphrase if set, else a prompt.
    pub fn from_env() -> PassphraseSource {
        match std::env::var(PASSPHRASE_ENV) {
            Ok(passphrase) => PassphraseSource::Given(passphrase),
            Err(_) => PassphraseSource::Prompt,
        }
    }

    /// The first line of `file` (an unattended process's passphrase file,
    /// such as a systemd credential) if one is given, else
    /// [`PassphraseSource::from_env`].
    pub fn from_file_or_env(file: Option<&Path>) -> Result<PassphraseSource, KeystoreError> {
        let Some(file) = file else { return Ok(PassphraseSource::from_env()) };
        let text = std::fs::read_to_string(file).map_err(|error| KeystoreError::PassphraseFile {
            path: file.to_path_buf(),
            reason: error.to_string(),
        })?;
        Ok(PassphraseSource::Given(text.lines().next().unwrap_or_default().to_string()))
    }

    fn get(&self, prompt: &str, confirm: bool) -> Result<String, KeystoreError> {
        match self {
            PassphraseSource::Given(passphrase) => Ok(passphrase.clone()),
            PassphraseSource::Prompt => {
                let first = rpassword::prompt_password(prompt).map_err(|_| KeystoreError::NoPassphrase)?;
                if confirm {
                    let second = rpassword::prompt_password("Repeat the passphrase: ")
                        .map_err(|_| KeystoreError::NoPassphrase)?;
                    if first != second {
                        return Err(KeystoreError::PassphraseMismatch);
                    }
                }
                Ok(first)
            }
        }
    }
}

/// A directory of key files.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
}

impl Keystore {
    /// `$GRIDSHARE_KEYSTORE`, else the user's data directory's `gridshare/keys`.
    pub fn default_dir() -> Result<PathBuf, KeystoreError> {
        if let Some(dir) = std::env::var_os(KEYSTORE_ENV) {
            return Ok(dir.into());
        }
        dirs::data_dir().map(|dir| dir.join("gridshare").join("keys")).ok_or(KeystoreError::NoDirectory)
    }

    pub fn new(dir: impl Into<PathBuf>) -> Keystore {
        Keystore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf, KeystoreError> {
        let valid = !name.is_empty()
            && name.len() <= NAME_LEN_MAX
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(KeystoreError::BadName(name.to_string()));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Creates a key from a fresh random seed.
    pub fn generate(
        &self,
        name: &str,
        role: Role,
        passphrase: Option<&PassphraseSource>,
    ) -> Result<KeyFile, KeystoreError> {
        let mut seed = [0_u8; 32];
        OsRng.fill_bytes(&mut seed);
        self.import(name, role, seed, passphrase)
    }

    /// Stores a key with this seed; `passphrase` `None` stores it in plain text.
    pub fn import(
        &self,
        name: &str,
        role: Role,
        seed: [u8; 32],
        passphrase: Option<&PassphraseSource>,
    ) -> Result<KeyFile, KeystoreError> {
        let path = self.path(name)?;
        if path.exists() {
            return Err(KeystoreError::Exists { name: name.into(), dir: self.dir.clone() });
        }
        let public_key = Keypair::from_seed(seed).public().to_string();
        let secret = match passphrase {
            None => Secret::Plaintext { seed_hex: hex::encode(seed) },
            Some(source) => {
                let passphrase = source.get(&format!("New passphrase for `{name}`: "), true)?;
                if passphrase.is_empty() {
                    return Err(KeystoreError::EmptyPassphrase);
                }
                let mut salt = [0_u8; 16];
                let mut nonce = [0_u8; 12];
                OsRng.fill_bytes(&mut salt);
                OsRng.fill_bytes(&mut nonce);
                let key = derive_key(&passphrase, &salt, ARGON2_MEMORY_KIB, ARGON2_PASSES, name)?;
                let aad = associated_data(name, role, &public_key);
                let ciphertext = ChaCha20Poly1305::new(Key::from_slice(&key))
                    .encrypt(Nonce::from_slice(&nonce), Payload { msg: &seed, aad: &aad })
                    .map_err(|_| KeystoreError::Damaged {
                        name: name.into(),
                        reason: "encryption failed".into(),
                    })?;
                Secret::Argon2idChacha20poly1305 {
                    memory_kib: ARGON2_MEMORY_KIB,
                    passes: ARGON2_PASSES,
                    salt_hex: hex::encode(salt),
                    nonce_hex: hex::encode(nonce),
                    ciphertext_hex: hex::encode(ciphertext),
                }
            }
        };
        let file = KeyFile { name: name.into(), role, public_key, secret };
        let json = serde_json::to_vec_pretty(&file).expect("key files serialize");
        std::fs::create_dir_all(&self.dir)
            .map_err(|error| KeystoreError::Io { path: self.dir.clone(), error })?;
        write_private(&path, &json)?;
        Ok(file)
    }

    /// Reads a key file without decrypting it.
    pub fn get(&self, name: &str) -> Result<KeyFile, KeystoreError> {
        let path = self.path(name)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeystoreError::Unknown { name: name.into(), dir: self.dir.clone() });
            }
            Err(error) => return Err(KeystoreError::Io { path, error }),
        };
        let file: KeyFile = serde_json::from_slice(&bytes)
            .map_err(|error| KeystoreError::Damaged { name: name.into(), reason: error.to_string() })?;
        if file.name != name {
            return Err(KeystoreError::Damaged {
                name: name.into(),
                reason: format!("it names `{}`", file.name),
            });
        }
        file.public_key()?;
        Ok(file)
    }

    /// Every key, by name.
    pub fn list(&self) -> Result<Vec<KeyFile>, KeystoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(KeystoreError::Io { path: self.dir.clone(), error }),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
            .collect();
        names.sort();
        names.iter().map(|name| self.get(name)).collect()
    }

    /// Decrypts a key for signing.
    pub fn unlock(&self, name: &str, passphrase: &PassphraseSource) -> Result<Keypair, KeystoreError> {
        let file = self.get(name)?;
        let seed = match &file.secret {
            Secret::Plaintext { seed_hex } => parse_seed(seed_hex)
                .map_err(|_| KeystoreError::Damaged { name: name.into(), reason: "bad seed".into() })?,
            Secret::Argon2idChacha20poly1305 { memory_kib, passes, salt_hex, nonce_hex, ciphertext_hex } => {
                let damaged = |what: &str| KeystoreError::Damaged { name: name.into(), reason: what.into() };
                let salt = hex::decode(salt_hex).map_err(|_| damaged("bad salt"))?;
                let nonce = hex::decode(nonce_hex)
                    .ok()
                    .filter(|n| n.len() == 12)
                    .ok_or_else(|| damaged("bad nonce"))?;
                let ciphertext = hex::decode(ciphertext_hex).map_err(|_| damaged("bad ciphertext"))?;
                // Bounds so a tampered file cannot ask for gigabytes or hours.
                if *memory_kib > 1 << 21 || *passes > 16 {
                    return Err(damaged("argon2 cost out of bounds"));
                }
                let passphrase = passphrase.get(&format!("Passphrase for `{name}`: "), false)?;
                let key = derive_key(&passphrase, &salt, *memory_kib, *passes, name)?;
                let aad = associated_data(name, file.role, &file.public_key);
                let plain = ChaCha20Poly1305::new(Key::from_slice(&key))
                    .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &aad })
                    .map_err(|_| KeystoreError::WrongPassphrase(name.into()))?;
                plain.as_slice().try_into().map_err(|_| damaged("the secret is not 32 bytes"))?
            }
        };
        let keypair = Keypair::from_seed(seed);
        if keypair.public() != file.public_key()? {
            return Err(KeystoreError::Damaged {
                name: name.into(),
                reason: "the secret does not match the public key".into(),
            });
        }
        Ok(keypair)
    }
}

/// Parses a 64-digit hex seed.
pub fn parse_seed(text: &str) -> Result<[u8; 32], KeystoreError> {
    let mut seed = [0_u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)
        .map_err(|error| KeystoreError::BadSeed(error.to_string()))?;
    Ok(seed)
}

fn derive_key(
    passphrase: &str,
    salt: &[u8],
    memory_kib: u32,
    passes: u32,
    name: &str,
) -> Result<[u8; 32], KeystoreError> {
    let damaged = |reason: String| KeystoreError::Damaged { name: name.into(), reason };
    let params = Params::new(memory_kib, passes, 1, Some(32)).map_err(|error| damaged(error.to_string()))?;
    let mut key = [0_u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut key)
        .map_err(|error| damaged(error.to_string()))?;
    Ok(key)
}

/// What the encryption authenticates besides the seed: a file renamed or
/// given another role or key does not decrypt.
fn associated_data(name: &str, role: Role, public_key: &str) -> Vec<u8> {
    format!("gridshare-keystore/1\0{name}\0{}\0{public_key}", role.as_str()).into_bytes()
}

/// Writes a new file readable by its owner only, failing if it exists.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let io = |error| KeystoreError::Io { path: path.into(), error };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(passphrase: &str) -> PassphraseSource {
        PassphraseSource::Given(passphrase.into())
    }

    #[test]
    fn encrypted_keys_round_trip_and_refuse_a_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let store = Keystore::new(dir.path());
        let file = store.generate("alice", Role::Account, Some(&given("correct horse"))).unwrap();
        assert!(file.is_encrypted());
        let text = std::fs::read_to_string(dir.path().join("alice.json")).unwrap();
        assert!(!text.contains("seed_hex"), "{text}");
        let keypair = store.unlock("alice", &given("correct horse")).unwrap();
        assert_eq!(keypair.public(), file.public_key().unwrap());
        assert!(matches!(store.unlock("alice", &given("wrong")), Err(KeystoreError::WrongPassphrase(_))));
        // A file renamed to another key does not decrypt under its new name.
        let mut renamed = file.clone();
        renamed.name = "bob".into();
        std::fs::write(dir.path().join("bob.json"), serde_json::to_vec(&renamed).unwrap()).unwrap();
        assert!(matches!(
            store.unlock("bob", &given("correct horse")),
            Err(KeystoreError::WrongPassphrase(_))
        ));
    }

    #[test]
    fn plaintext_keys_damaged_files_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Keystore::new(dir.path());
        let seed = [9_u8; 32];
        let file = store.import("meter-1", Role::Meter, seed, None).unwrap();
        assert!(!file.is_encrypted());
        assert_eq!(store.unlock("meter-1", &given("")).unwrap().seed(), seed);
        assert!(matches!(
            store.import("meter-1", Role::Meter, seed, None),
            Err(KeystoreError::Exists { .. })
        ));
        assert!(matches!(store.get("nobody"), Err(KeystoreError::Unknown { .. })));
        for bad in ["", "Alice", "a/b", "../x", &"x".repeat(33)] {
            assert!(matches!(store.get(bad), Err(KeystoreError::BadName(_))), "{bad:?}");
        }
        std::fs::write(dir.path().join("broken.json"), b"{ not json").unwrap();
        assert!(matches!(store.get("broken"), Err(KeystoreError::Damaged { .. })));
        // A secret that does not match the public key.
        let mut wrong = file.clone();
        wrong.name = "wrong".into();
        wrong.secret = Secret::Plaintext { seed_hex: hex::encode([8_u8; 32]) };
        std::fs::write(dir.path().join("wrong.json"), serde_json::to_vec(&wrong).unwrap()).unwrap();
        let error = store.unlock("wrong", &given("")).unwrap_err().to_string();
        assert!(error.contains("does not match the public key"), "{error}");
        assert!(matches!(
            store.generate("empty", Role::Account, Some(&given(""))),
            Err(KeystoreError::EmptyPassphrase)
        ));
    }
}
