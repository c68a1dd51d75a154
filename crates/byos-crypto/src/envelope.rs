//! Envelope encryption of customer data at rest.
//!
//! ```text
//! root key (data dir) --seals--> account key-encryption key (KEK)
//! KEK --wraps--> data key (DEK), one per stored segment (a Put Blob body or a staged block)
//! DEK --encrypts--> the segment, in fixed-size chunks (AES-256-GCM)
//! ```
//!
//! Segment object format (`version 1`):
//!
//! ```text
//! "BYOC" | version (1) | chunk size (u32 BE) | chunk 0 | chunk 1 | ...
//! chunk i := AES-256-GCM(DEK, nonce = 0u32 || i as u64 BE, aad = segment AAD || i as u64 BE)
//! ```
//!
//! Each DEK encrypts one segment only, so the chunk index is a safe nonce. The AAD binds every chunk
//! to its segment's identity (account, container, blob, segment id) and its position, so chunks
//! cannot be swapped between positions, segments or blobs. A range read decrypts only the chunks it
//! touches. Rotating the KEK re-wraps DEKs; no data is re-encrypted.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::{CryptoError, random_bytes};

pub const SEGMENT_MAGIC: &[u8; 4] = b"BYOC";
pub const SEGMENT_VERSION: u8 = 1;
pub const SEGMENT_HEADER_LEN: u64 = 9;
pub const TAG_LEN: usize = 16;
/// Plaintext bytes per chunk: small enough that a range read decrypts little, large enough that
/// the 16-byte tag costs nothing.
pub const CHUNK_SIZE: usize = 64 * 1024;

const WRAP_MAGIC: &[u8; 4] = b"BYWK";
const WRAP_VERSION: u8 = 1;

/// A 256-bit key that wraps data keys (an account's KEK).
pub struct Kek {
    key: LessSafeKey,
}

/// A data key: encrypts one segment. Zeroized on drop.
pub struct DataKey {
    bytes: Zeroizing<[u8; 32]>,
    key: LessSafeKey,
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::Key("aes-256 key".into()))?))
}

impl Kek {
    /// A fresh random KEK and its raw bytes (for sealing under the root key).
    pub fn generate() -> Result<(Self, Zeroizing<Vec<u8>>), CryptoError> {
        let bytes = Zeroizing::new(random_bytes::<32>()?.to_vec());
        Ok((Self::from_bytes(&bytes)?, bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(Kek { key: aead_key(bytes)? })
    }

    /// Wraps a data key: `"BYWK" | v1 | nonce | AES-256-GCM(dek)`, with `context` as AAD.
    pub fn wrap(&self, dek: &DataKey, context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.seal_value(dek.bytes.as_slice(), context)
    }

    /// Encrypts a small value (e.g. blob metadata) directly under the KEK, bound to `context`.
    pub fn seal_value(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        crate::sealed_box::seal(&self.key, WRAP_MAGIC, WRAP_VERSION, context, plaintext)
    }

    /// Decrypts a value sealed by [`Kek::seal_value`] or [`Kek::wrap`] under the same context.
    pub fn open_value(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        crate::sealed_box::open(&self.key, WRAP_MAGIC, WRAP_VERSION, context, sealed)
    }

    pub fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> Result<DataKey, CryptoError> {
        let plain = self.open_value(wrapped, context)?;
        if plain.len() != 32 {
            return Err(CryptoError::Unseal);
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&plain);
        DataKey::from_bytes(bytes)
    }
}

impl DataKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Self::from_bytes(Zeroizing::new(random_bytes::<32>()?))
    }

    fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Result<Self, CryptoError> {
        let key = aead_key(bytes.as_slice())?;
        Ok(DataKey { bytes, key })
    }

    /// Encrypts chunk `index` in place where it lies (inside a larger buffer); returns its tag.
    pub fn seal_chunk_in(
        &self,
        segment_aad: &[u8],
        index: u64,
        chunk: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(chunk_nonce(index), chunk_aad(segment_aad, index), chunk)
            .map_err(|_| CryptoError::Unseal)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts chunk `index` (ciphertext + tag) in place; returns the plaintext length.
    pub fn open_chunk(&self, segment_aad: &[u8], index: u64, chunk: &mut [u8]) -> Result<usize, CryptoError> {
        Ok(self
            .key
            .open_in_place(chunk_nonce(index), chunk_aad(segment_aad, index), chunk)
            .map_err(|_| CryptoError::Unseal)?
            .len())
    }
}

fn chunk_nonce(index: u64) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

fn chunk_aad(segment_aad: &[u8], index: u64) -> Aad<Vec<u8>> {
    let mut aad = Vec::with_capacity(segment_aad.len() + 8);
    aad.extend_from_slice(segment_aad);
    aad.extend_from_slice(&index.to_be_bytes());
    Aad::from(aad)
}

/// The segment header for `chunk_size`.
pub fn segment_header(chunk_size: usize) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..4].copy_from_slice(SEGMENT_MAGIC);
    header[4] = SEGMENT_VERSION;
    header[5..].copy_from_slice(&(chunk_size as u32).to_be_bytes());
    header
}

/// Parses a segment header; returns the chunk size.
pub fn parse_segment_header(header: &[u8]) -> Result<usize, CryptoError> {
    if header.len() < SEGMENT_HEADER_LEN as usize || &header[..4] != SEGMENT_MAGIC {
        return Err(CryptoError::Unseal);
    }
    if header[4] != SEGMENT_VERSION {
        return Err(CryptoError::UnknownVersion(header[4]));
    }
    let size = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
    if size == 0 {
        return Err(CryptoError::Unseal);
    }
    Ok(size)
}

/// Where plaintext chunk `index` lives in a segment object with `chunk_size` chunks.
pub fn chunk_offset(chunk_size: usize, index: u64) -> u64 {
    SEGMENT_HEADER_LEN + index * (chunk_size + TAG_LEN) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed chunk as stored: ciphertext followed by its tag.
    fn sealed(dek: &DataKey, aad: &[u8], index: u64, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut chunk = plaintext.to_vec();
        let tag = dek.seal_chunk_in(aad, index, &mut chunk)?;
        chunk.extend_from_slice(&tag);
        Ok(chunk)
    }

    #[test]
    fn chunks_round_trip_and_are_bound_to_position_and_segment() -> Result<(), CryptoError> {
        let dek = DataKey::generate()?;
        let mut chunk = sealed(&dek, b"acct/c/b/seg", 3, b"customer data")?;
        let mut moved = chunk.clone();
        assert!(dek.open_chunk(b"acct/c/b/seg", 4, &mut moved).is_err(), "another position must not decrypt");
        let mut other = chunk.clone();
        assert!(dek.open_chunk(b"acct/c/other/seg", 3, &mut other).is_err(), "another blob must not decrypt");
        let n = dek.open_chunk(b"acct/c/b/seg", 3, &mut chunk)?;
        assert_eq!(&chunk[..n], b"customer data");
        Ok(())
    }

    #[test]
    fn wrapped_data_keys_need_the_same_kek_and_context() -> Result<(), CryptoError> {
        let (kek, _) = Kek::generate()?;
        let dek = DataKey::generate()?;
        let wrapped = kek.wrap(&dek, b"ctx")?;
        let back = kek.unwrap(&wrapped, b"ctx")?;
        let mut chunk = sealed(&dek, b"s", 0, b"x")?;
        assert!(back.open_chunk(b"s", 0, &mut chunk).is_ok());
        assert!(kek.unwrap(&wrapped, b"other").is_err());
        assert!(Kek::generate()?.0.unwrap(&wrapped, b"ctx").is_err());
        Ok(())
    }

    #[test]
    fn headers() -> Result<(), CryptoError> {
        assert_eq!(parse_segment_header(&segment_header(CHUNK_SIZE))?, CHUNK_SIZE);
        assert!(parse_segment_header(b"BYOC\x02\0\0\0\x01").is_err());
        assert_eq!(chunk_offset(10, 2), SEGMENT_HEADER_LEN + 52);
        Ok(())
    }
}
