//! Client secrets: generated with 256 bits of entropy, stored only as salted hashes.
//!
//! A salted SHA-256 is enough here because byos generates every secret itself from the CSPRNG:
//! there is no low-entropy password to stretch, and a slow hash would only slow token issuance.

use crate::{CryptoError, b64url, constant_time_eq, random_bytes, sha256};

/// A stored secret hash: `v1$<salt b64url>$<sha256(salt || secret) b64url>`.
pub struct SecretHash(pub String);

/// A fresh client secret in the character set Entra uses for generated secrets.
pub fn generate() -> Result<String, CryptoError> {
    Ok(b64url(&random_bytes::<32>()?))
}

/// Hashes `secret` with a fresh random salt.
pub fn hash(secret: &str) -> Result<SecretHash, CryptoError> {
    let salt = random_bytes::<16>()?;
    Ok(SecretHash(format!("v1${}${}", b64url(&salt), b64url(&salted_digest(&salt, secret)))))
}

/// Checks `secret` against a stored hash in constant time; malformed hashes never match.
pub fn verify(secret: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("v1"), Some(salt), Some(digest), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    match (crate::b64url_decode(salt), crate::b64url_decode(digest)) {
        (Some(salt), Some(digest)) => constant_time_eq(&salted_digest(&salt, secret), &digest),
        _ => false,
    }
}

fn salted_digest(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut input = zeroize::Zeroizing::new(Vec::with_capacity(salt.len() + secret.len()));
    input.extend_from_slice(salt);
    input.extend_from_slice(secret.as_bytes());
    sha256(&input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_same_secret() -> Result<(), CryptoError> {
        let secret = generate()?;
        let stored = hash(&secret)?.0;
        assert!(verify(&secret, &stored));
        assert!(!verify("wrong", &stored));
        assert!(!stored.contains(&secret));
        assert_ne!(hash(&secret)?.0, stored, "salt must differ per hash");
        assert!(!verify(&secret, "v1$bad"));
        Ok(())
    }
}
