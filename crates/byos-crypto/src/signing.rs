//! RS256 token-signing keys, parsed once and reused for every signature and verification.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey};
use zeroize::Zeroizing;

use crate::{CryptoError, b64url, sha256};

/// An RSA-2048 private key that signs tokens.
pub struct SigningKey {
    pair: KeyPair,
    kid: String,
}

impl SigningKey {
    pub fn generate() -> Result<Self, CryptoError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| CryptoError::Key("rsa generate".into()))?;
        Ok(Self::from_pair(pair))
    }

    /// Loads a key from PKCS#8 DER (as produced by [`SigningKey::to_pkcs8`]).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CryptoError> {
        let pair = KeyPair::from_pkcs8(der).map_err(|e| CryptoError::Key(e.to_string()))?;
        Ok(Self::from_pair(pair))
    }

    fn from_pair(pair: KeyPair) -> Self {
        let kid = b64url(&sha256(pair.public_key().as_ref())[..20]);
        SigningKey { pair, kid }
    }

    /// The private key as PKCS#8 DER, zeroized on drop; only ever stored sealed.
    pub fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let der = self.pair.as_der().map_err(|_| CryptoError::Key("pkcs8 encode".into()))?;
        Ok(Zeroizing::new(der.as_ref().to_vec()))
    }

    /// The key id (`kid`) published in the JWKS: a thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`).
    pub fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig).map_err(|_| CryptoError::Sign)?;
        Ok(sig)
    }

    /// The matching verifier, parsed once.
    pub fn verifying_key(&self) -> Result<VerifyingKey, CryptoError> {
        let components = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        let parsed = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, self.pair.public_key().as_ref())
            .map_err(|e| CryptoError::Key(e.to_string()))?;
        Ok(VerifyingKey { parsed, kid: self.kid.clone(), n: b64url(&components.n), e: b64url(&components.e) })
    }
}

/// A parsed RS256 public key with its JWK fields.
pub struct VerifyingKey {
    parsed: ParsedPublicKey,
    pub kid: String,
    /// Modulus, base64url.
    pub n: String,
    /// Public exponent, base64url.
    pub e: String,
}

impl VerifyingKey {
    pub fn verify_rs256(&self, message: &[u8], sig: &[u8]) -> bool {
        self.parsed.verify_sig(message, sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_survive_pkcs8_round_trip() -> Result<(), CryptoError> {
        let key = SigningKey::generate()?;
        let sig = key.sign_rs256(b"header.payload")?;
        let reloaded = SigningKey::from_pkcs8(&key.to_pkcs8()?)?;
        let verifier = reloaded.verifying_key()?;
        assert_eq!(reloaded.kid(), key.kid());
        assert!(verifier.verify_rs256(b"header.payload", &sig));
        assert!(!verifier.verify_rs256(b"header.payloaX", &sig));
        assert_eq!(verifier.e, "AQAB");
        Ok(())
    }
}
