//! Key Vault key material: RSA keys generated, used and kept only inside byos (stored sealed under
//! the root key as PKCS#8). Operations take the algorithm names Key Vault uses on the wire.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey, PrivateDecryptingKey, PublicKeyComponents,
};
use aws_lc_rs::signature::{self, KeyPair as _, RsaEncoding, UnparsedPublicKey, VerificationAlgorithm};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Key Vault's key-encryption algorithms for RSA keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaEncryption {
    Oaep,
    Oaep256,
    Pkcs1,
}

impl RsaEncryption {
    pub fn parse(alg: &str) -> Option<Self> {
        match alg {
            "RSA-OAEP" => Some(Self::Oaep),
            "RSA-OAEP-256" => Some(Self::Oaep256),
            "RSA1_5" => Some(Self::Pkcs1),
            _ => None,
        }
    }
}

/// Key Vault's RSA signature algorithms (over a digest the caller computed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsaSignature {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
}

impl RsaSignature {
    pub fn parse(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Self::Rs256),
            "RS384" => Some(Self::Rs384),
            "RS512" => Some(Self::Rs512),
            "PS256" => Some(Self::Ps256),
            "PS384" => Some(Self::Ps384),
            "PS512" => Some(Self::Ps512),
            _ => None,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            Self::Rs256 | Self::Ps256 => &digest::SHA256,
            Self::Rs384 | Self::Ps384 => &digest::SHA384,
            Self::Rs512 | Self::Ps512 => &digest::SHA512,
        }
    }

    fn encoding(self) -> &'static dyn RsaEncoding {
        match self {
            Self::Rs256 => &signature::RSA_PKCS1_SHA256,
            Self::Rs384 => &signature::RSA_PKCS1_SHA384,
            Self::Rs512 => &signature::RSA_PKCS1_SHA512,
            Self::Ps256 => &signature::RSA_PSS_SHA256,
            Self::Ps384 => &signature::RSA_PSS_SHA384,
            Self::Ps512 => &signature::RSA_PSS_SHA512,
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Self::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Self::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Self::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }

    pub fn digest_len(self) -> usize {
        self.digest_algorithm().output_len()
    }
}

/// An RSA private key held for Key Vault operations, parsed once for signing and decrypting.
pub struct RsaKey {
    pkcs8: Zeroizing<Vec<u8>>,
    pair: KeyPair,
    decrypting: PrivateDecryptingKey,
}

fn key_err(e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Key(e.to_string())
}

impl RsaKey {
    /// Generates a key of `bits` (2048, 3072 or 4096).
    pub fn generate(bits: usize) -> Result<Self, CryptoError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(CryptoError::Key(format!("unsupported RSA key size {other}"))),
        };
        let pair = KeyPair::generate(size).map_err(key_err)?;
        let der = pair.as_der().map_err(key_err)?;
        Self::from_pkcs8(Zeroizing::new(der.as_ref().to_vec()))
    }

    pub fn from_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<Self, CryptoError> {
        let pair = KeyPair::from_pkcs8(&pkcs8).map_err(key_err)?;
        let decrypting = PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(key_err)?;
        Ok(RsaKey { pkcs8, pair, decrypting })
    }

    /// The private key as PKCS#8, only ever to be sealed.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    fn pair(&self) -> Result<&KeyPair, CryptoError> {
        Ok(&self.pair)
    }

    fn decrypting(&self) -> Result<PrivateDecryptingKey, CryptoError> {
        Ok(self.decrypting.clone())
    }

    /// Modulus and exponent (big-endian bytes) for the JWK.
    pub fn public_components(&self) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        let components = PublicKeyComponents::<Vec<u8>>::from(self.pair()?.public_key());
        Ok((components.n, components.e))
    }

    pub fn bits(&self) -> Result<usize, CryptoError> {
        Ok(self.pair()?.public_modulus_len() * 8)
    }

    /// The ciphertext length every decryption must be given.
    pub fn modulus_len(&self) -> Result<usize, CryptoError> {
        Ok(self.pair()?.public_modulus_len())
    }

    pub fn encrypt(&self, alg: RsaEncryption, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let public = self.decrypting()?.public_key();
        let mut out = vec![0u8; public.key_size_bytes()];
        let len = match alg {
            RsaEncryption::Oaep | RsaEncryption::Oaep256 => {
                let oaep = if alg == RsaEncryption::Oaep { &OAEP_SHA1_MGF1SHA1 } else { &OAEP_SHA256_MGF1SHA256 };
                OaepPublicEncryptingKey::new(public)
                    .map_err(key_err)?
                    .encrypt(oaep, plaintext, &mut out, None)
                    .map_err(key_err)?
                    .len()
            }
            RsaEncryption::Pkcs1 => Pkcs1PublicEncryptingKey::new(public)
                .map_err(key_err)?
                .encrypt(plaintext, &mut out)
                .map_err(key_err)?
                .len(),
        };
        out.truncate(len);
        Ok(out)
    }

    /// Decrypts; any failure (wrong key, tampered or malformed input) is the same error.
    pub fn decrypt(&self, alg: RsaEncryption, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let private = self.decrypting()?;
        let mut out = Zeroizing::new(vec![0u8; private.key_size_bytes()]);
        let len = match alg {
            RsaEncryption::Oaep | RsaEncryption::Oaep256 => {
                let oaep = if alg == RsaEncryption::Oaep { &OAEP_SHA1_MGF1SHA1 } else { &OAEP_SHA256_MGF1SHA256 };
                OaepPrivateDecryptingKey::new(private)
                    .map_err(key_err)?
                    .decrypt(oaep, ciphertext, &mut out, None)
                    .map_err(|_| CryptoError::Unseal)?
                    .len()
            }
            RsaEncryption::Pkcs1 => Pkcs1PrivateDecryptingKey::new(private)
                .map_err(key_err)?
                .decrypt(ciphertext, &mut out)
                .map_err(|_| CryptoError::Unseal)?
                .len(),
        };
        out.truncate(len);
        Ok(out)
    }

    /// Signs a digest the caller computed (its length must match the algorithm).
    pub fn sign_digest(&self, alg: RsaSignature, digest_bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let digest =
            digest::Digest::import_less_safe(digest_bytes, alg.digest_algorithm()).map_err(|_| CryptoError::Sign)?;
        let pair = self.pair()?;
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign_digest(alg.encoding(), &digest, &mut sig).map_err(|_| CryptoError::Sign)?;
        Ok(sig)
    }

    pub fn verify_digest(&self, alg: RsaSignature, digest_bytes: &[u8], sig: &[u8]) -> Result<bool, CryptoError> {
        let Ok(digest) = digest::Digest::import_less_safe(digest_bytes, alg.digest_algorithm()) else {
            return Ok(false);
        };
        let pair = self.pair()?;
        Ok(UnparsedPublicKey::new(alg.verification(), pair.public_key().as_ref()).verify_digest(&digest, sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_decrypt_sign_verify() -> Result<(), CryptoError> {
        let key = RsaKey::from_pkcs8(Zeroizing::new(RsaKey::generate(2048)?.pkcs8().to_vec()))?;
        for alg in [RsaEncryption::Oaep, RsaEncryption::Oaep256, RsaEncryption::Pkcs1] {
            let ct = key.encrypt(alg, b"a data key")?;
            assert_eq!(ct.len(), 256);
            assert_eq!(key.decrypt(alg, &ct)?.as_slice(), b"a data key");
        }
        assert!(key.decrypt(RsaEncryption::Oaep256, &[0u8; 256]).is_err());
        let digest = crate::sha256(b"message");
        for alg in [RsaSignature::Rs256, RsaSignature::Ps256] {
            let sig = key.sign_digest(alg, &digest)?;
            assert!(key.verify_digest(alg, &digest, &sig)?);
            assert!(!key.verify_digest(alg, &crate::sha256(b"other"), &sig)?);
        }
        assert!(key.sign_digest(RsaSignature::Rs256, b"short").is_err());
        Ok(())
    }
}

/// An EC P-256 private key held for Key Vault ES256 signatures.
pub struct EcKey {
    pkcs8: Zeroizing<Vec<u8>>,
    pair: aws_lc_rs::signature::EcdsaKeyPair,
}

impl EcKey {
    pub fn generate() -> Result<Self, CryptoError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 =
            aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(key_err)?;
        Self::from_pkcs8(Zeroizing::new(pkcs8.as_ref().to_vec()))
    }

    pub fn from_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<Self, CryptoError> {
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(key_err)?;
        Ok(EcKey { pkcs8, pair })
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public point's coordinates (32 bytes each) for the JWK.
    pub fn public_xy(&self) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
        let point = self.pair.public_key().as_ref();
        match point {
            [0x04, rest @ ..] if rest.len() == 64 => Ok((rest[..32].to_vec(), rest[32..].to_vec())),
            _ => Err(CryptoError::Key("unexpected EC public key encoding".into())),
        }
    }

    /// ES256 over a SHA-256 digest the caller computed: the fixed `r || s` form JWS uses.
    pub fn sign_digest(&self, digest_bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let digest = digest::Digest::import_less_safe(digest_bytes, &digest::SHA256).map_err(|_| CryptoError::Sign)?;
        Ok(self.pair.sign_digest(&digest).map_err(|_| CryptoError::Sign)?.as_ref().to_vec())
    }

    pub fn verify_digest(&self, digest_bytes: &[u8], sig: &[u8]) -> bool {
        let Ok(digest) = digest::Digest::import_less_safe(digest_bytes, &digest::SHA256) else { return false };
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify_digest(&digest, sig)
            .is_ok()
    }
}

#[cfg(test)]
mod ec_tests {
    use super::*;

    #[test]
    fn es256_sign_and_verify_over_a_digest() -> Result<(), CryptoError> {
        let key = EcKey::from_pkcs8(Zeroizing::new(EcKey::generate()?.pkcs8().to_vec()))?;
        let digest = crate::sha256(b"message");
        let sig = key.sign_digest(&digest)?;
        assert_eq!(sig.len(), 64);
        assert!(key.verify_digest(&digest, &sig));
        assert!(!key.verify_digest(&crate::sha256(b"other"), &sig));
        let (x, y) = key.public_xy()?;
        assert_eq!((x.len(), y.len()), (32, 32));
        Ok(())
    }
}
