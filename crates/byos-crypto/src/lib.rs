//! Every cryptographic primitive byos uses, built on aws-lc-rs and nothing else.
//!
//! - [`RootKey`]: the service root key in the data dir; [`RootKey::seal`] / [`RootKey::open`] wrap any
//!   key material byos keeps (token-signing keys, the CA key, managed-identity secrets) so that no key
//!   leaves memory unencrypted.
//! - [`secret`]: generation, salted hashing and constant-time checking of client secrets.
//! - [`envelope`]: per-segment data keys wrapped by an account KEK, chunked AES-256-GCM at rest.
//! - [`signing`]: RSA token-signing keys (RS256) with their JWK form, parsed once and reused.

pub mod envelope;
pub mod root;
mod sealed_box;
pub mod secret;
pub mod signing;
pub mod vault_keys;

pub use root::{RootKey, SealPurpose};
pub use signing::{SigningKey, VerifyingKey};

use thiserror::Error;

/// Failures of cryptographic operations. Deliberately vague about *why* an open failed, so that a
/// tampered blob and a wrong key look alike to any caller.
#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("random number generation failed")]
    Random,
    #[error("sealed data is malformed or was not produced by this root key")]
    Unseal,
    #[error("sealed data has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("key generation or parsing failed: {0}")]
    Key(String),
    #[error("signing failed")]
    Sign,
    #[error("root key file {path}: {source}")]
    RootKeyFile { path: String, source: std::io::Error },
    #[error("root key file {0} is not a byos root key")]
    RootKeyFormat(String),
}

/// Fills a fresh buffer with `N` random bytes from the system CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    #[allow(deprecated)]
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// base64url without padding, as JWTs and JWKs use it.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` on malformed input.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// An HMAC-SHA256 key, for values byos derives and later checks (identity headers).
pub struct MacKey(aws_lc_rs::hmac::Key);

impl MacKey {
    pub fn new(key: &[u8]) -> Self {
        MacKey(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key))
    }

    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        aws_lc_rs::hmac::sign(&self.0, data).as_ref().to_vec()
    }

    /// Checks `tag` in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        aws_lc_rs::hmac::verify(&self.0, data, tag).is_ok()
    }
}
