//! The one sealed-box layout byos uses for small secrets: `magic | version | nonce | AES-256-GCM(plaintext)`.
//! The root key (magic `BYOS`) and account KEKs (magic `BYWK`) both seal with it.

use aws_lc_rs::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use zeroize::Zeroizing;

use crate::{CryptoError, random_bytes};

/// Encrypts `plaintext` under `key` with a fresh random nonce.
pub fn seal(
    key: &LessSafeKey,
    magic: &[u8; 4],
    version: u8,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let nonce = random_bytes::<NONCE_LEN>()?;
    let mut body = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
        .map_err(|_| CryptoError::Unseal)?;
    let mut out = Vec::with_capacity(magic.len() + 1 + NONCE_LEN + body.len());
    out.extend_from_slice(magic);
    out.push(version);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decrypts a box made by [`seal`] with the same key, magic, version and AAD.
pub fn open(
    key: &LessSafeKey,
    magic: &[u8; 4],
    version: u8,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let rest = sealed.strip_prefix(magic.as_slice()).ok_or(CryptoError::Unseal)?;
    let (&found, rest) = rest.split_first().ok_or(CryptoError::Unseal)?;
    if found != version {
        return Err(CryptoError::UnknownVersion(found));
    }
    if rest.len() < NONCE_LEN {
        return Err(CryptoError::Unseal);
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unseal)?;
    let mut body = Zeroizing::new(body.to_vec());
    let len = key.open_in_place(nonce, Aad::from(aad), &mut body).map_err(|_| CryptoError::Unseal)?.len();
    body.truncate(len);
    Ok(body)
}
