//! The service root key and the sealed-blob format.
//!
//! The root key is 32 random bytes in `keys/root.key` (mode 0600) inside the data dir, behind a
//! magic and a version byte. Everything else byos must keep secret is stored sealed under it:
//!
//! ```text
//! sealed := "BYOS" | version (1) | nonce (12) | AES-256-GCM(ciphertext || tag)
//! AAD    := "byos-seal-v1:" | purpose label
//! ```
//!
//! The purpose label binds a blob to what it is for, so a sealed CA key cannot be swapped in where a
//! token-signing key is expected.

use std::fs;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use zeroize::Zeroizing;

use crate::{CryptoError, random_bytes};

const FILE_MAGIC: &[u8; 8] = b"BYOSRK\x00\x01";
const SEAL_MAGIC: &[u8; 4] = b"BYOS";
const SEAL_VERSION: u8 = 1;
const KEY_LEN: usize = 32;

/// What a sealed blob holds; part of its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealPurpose {
    TokenSigningKey,
    CaKey,
    IdentityHeaderKey,
    /// A secret byos must hand out again on every start (the bootstrap admin's client secret).
    BootstrapSecret,
    /// A storage account's key-encryption key and shared keys.
    AccountSecrets,
    /// A Key Vault key's private material.
    VaultKey,
    /// A Key Vault key backup (restorable only into this deployment).
    KeyBackup,
    /// The key that authenticates the heads of the key-usage audit logs.
    AuditHeadKey,
    /// An AI-services account's keys and the KEK of its service-held data.
    CognitiveAccountSecrets,
    /// The SAS URLs a background job of an AI-services account reads from and writes to.
    JobCredentials,
}

impl SealPurpose {
    fn label(self) -> &'static str {
        match self {
            SealPurpose::TokenSigningKey => "token-signing-key",
            SealPurpose::CaKey => "ca-key",
            SealPurpose::IdentityHeaderKey => "identity-header-key",
            SealPurpose::BootstrapSecret => "bootstrap-secret",
            SealPurpose::AccountSecrets => "account-secrets",
            SealPurpose::VaultKey => "vault-key",
            SealPurpose::KeyBackup => "key-backup",
            SealPurpose::AuditHeadKey => "audit-head-key",
            SealPurpose::CognitiveAccountSecrets => "cognitive-account-secrets",
            SealPurpose::JobCredentials => "job-credentials",
        }
    }
}

/// The service root key. Its bytes are zeroized when dropped.
pub struct RootKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(..)")
    }
}

impl RootKey {
    /// Loads the root key from `path`, creating it (mode 0600, written atomically) if absent.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let file_err = |source| CryptoError::RootKeyFile { path: path.display().to_string(), source };
        match fs::read(path) {
            Ok(bytes) => Self::from_file_bytes(&Zeroizing::new(bytes), path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Zeroizing::new(random_bytes::<KEY_LEN>()?);
                write_key_file(path, key.as_slice()).map_err(file_err)?;
                Self::from_bytes(key.as_slice())
            }
            Err(e) => Err(file_err(e)),
        }
    }

    fn from_file_bytes(bytes: &[u8], path: &Path) -> Result<Self, CryptoError> {
        match bytes.strip_prefix(FILE_MAGIC.as_slice()) {
            Some(key) if key.len() == KEY_LEN => Self::from_bytes(key),
            _ => Err(CryptoError::RootKeyFormat(path.display().to_string())),
        }
    }

    /// A root key held only in memory (tests, benchmarks).
    pub fn ephemeral() -> Result<Self, CryptoError> {
        Self::from_bytes(Zeroizing::new(random_bytes::<KEY_LEN>()?).as_slice())
    }

    fn from_bytes(key: &[u8]) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::Key("root key".into()))?;
        Ok(RootKey { key: LessSafeKey::new(unbound) })
    }

    /// Encrypts `plaintext` for storage; see the module docs for the format.
    pub fn seal(&self, purpose: SealPurpose, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        crate::sealed_box::seal(&self.key, SEAL_MAGIC, SEAL_VERSION, &aad(purpose), plaintext)
    }

    /// Decrypts a blob produced by [`RootKey::seal`] for the same purpose.
    pub fn open(&self, purpose: SealPurpose, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        crate::sealed_box::open(&self.key, SEAL_MAGIC, SEAL_VERSION, &aad(purpose), sealed)
    }
}

fn aad(purpose: SealPurpose) -> Vec<u8> {
    format!("byos-seal-v1:{}", purpose.label()).into_bytes()
}

/// Writes the key file through a temporary file and a rename, readable by the owner only.
fn write_key_file(path: &Path, key: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    let mut contents = Zeroizing::new(FILE_MAGIC.to_vec());
    contents.extend_from_slice(key);
    file.write_all(&contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_purpose_binding() -> Result<(), CryptoError> {
        let root = RootKey::ephemeral()?;
        let sealed = root.seal(SealPurpose::CaKey, b"secret material")?;
        assert_eq!(root.open(SealPurpose::CaKey, &sealed)?.as_slice(), b"secret material");
        assert!(root.open(SealPurpose::TokenSigningKey, &sealed).is_err(), "purpose must be bound");
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "plaintext must not appear");
        Ok(())
    }

    #[test]
    fn tampering_and_other_keys_are_rejected() -> Result<(), CryptoError> {
        let root = RootKey::ephemeral()?;
        let mut sealed = root.seal(SealPurpose::CaKey, b"x")?;
        assert!(RootKey::ephemeral()?.open(SealPurpose::CaKey, &sealed).is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(root.open(SealPurpose::CaKey, &sealed).is_err());
        assert!(matches!(root.open(SealPurpose::CaKey, b"BYOS\x09rest"), Err(CryptoError::UnknownVersion(9))));
        Ok(())
    }

    #[test]
    fn key_file_persists_with_owner_only_mode() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("root.key");
        let sealed = RootKey::load_or_create(&path)?.seal(SealPurpose::CaKey, b"persisted")?;
        let reopened = RootKey::load_or_create(&path)?;
        assert_eq!(reopened.open(SealPurpose::CaKey, &sealed)?.as_slice(), b"persisted");
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        fs::write(&path, b"garbage")?;
        assert!(matches!(RootKey::load_or_create(&path), Err(CryptoError::RootKeyFormat(_))));
        Ok(())
    }
}
