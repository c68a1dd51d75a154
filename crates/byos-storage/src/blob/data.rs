//! Blob metadata records and encrypted segments.
//!
//! Metadata lives in three tables keyed by `{account}/{container}[/{blob}]`: containers, blobs, and
//! staged (uncommitted) blocks. Data lives in the object store as encrypted segments (see
//! `byos_crypto::envelope`): a Put Blob body is one segment, a staged block is one segment, and a
//! committed blob is an ordered list of segments. Customer metadata values are sealed under the
//! account KEK; names are kept in the clear because listing needs them.

use std::collections::BTreeMap;

use byos_core::ApiError;
use byos_core::OrInternal;
use byos_crypto::envelope::{
    CHUNK_SIZE, DataKey, Kek, SEGMENT_HEADER_LEN, TAG_LEN, chunk_offset, parse_segment_header, segment_header,
};
use byos_crypto::{b64url, b64url_decode};
use byos_store::{Batch, ObjectWriter, Table};
use bytes::Bytes;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::errors::internal;
use crate::{Account, StorageService};

pub const CONTAINERS: Table = Table("blob_containers");
pub const BLOBS: Table = Table("blobs");
pub const BLOCKS: Table = Table("blob_blocks");
pub const RECORD_VERSION: u32 = 1;
/// Separates a blob's key from a staged block's id (blob names cannot contain control characters).
pub const BLOCK_SEPARATOR: char = '\u{1}';
/// Plaintext handed to the object store per write, and produced per read step of a download.
const IO_CHUNKS: usize = 16;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Segment {
    pub object: String,
    pub wrapped_dek: String,
    pub len: u64,
    pub chunk_size: u32,
    pub segment_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub v: u32,
    pub name: String,
    #[serde(default)]
    pub public_access: Option<String>,
    #[serde(default)]
    pub sealed_metadata: Option<String>,
    pub etag: String,
    pub last_modified: i64,
    /// Set while the container is being deleted: it then counts as gone, and the change makes
    /// every in-flight blob commit into it fail its guard.
    #[serde(default)]
    pub deleting: bool,
    /// Random at creation: a container deleted and created again under its name is another one,
    /// and a write that began in the first never lands in the second (F9). Empty for containers
    /// created before it existed, which only a re-creation replaces.
    #[serde(default)]
    pub incarnation: String,
    /// Stored access policies (signed identifiers) that service SAS can name with `si`.
    #[serde(default)]
    pub policies: Vec<StoredPolicy>,
}

/// A stored access policy: a service SAS naming it takes the fields it leaves out from here, so
/// changing or removing the policy changes or revokes every such SAS at once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub id: String,
    pub start: Option<String>,
    pub expiry: Option<String>,
    pub permission: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ContentHeaders {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub content_md5: Option<String>,
    pub content_disposition: Option<String>,
    pub cache_control: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlobRecord {
    pub v: u32,
    pub name: String,
    pub size: u64,
    pub etag: String,
    pub created: i64,
    pub last_modified: i64,
    pub content: ContentHeaders,
    #[serde(default)]
    pub sealed_metadata: Option<String>,
    /// In order; segments of committed blocks have ids `block:{block id}`.
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockRecord {
    pub v: u32,
    pub segment: Segment,
    pub created: i64,
}

pub fn container_key(account: &str, container: &str) -> String {
    format!("{account}/{container}")
}

pub fn blob_key(account: &str, container: &str, blob: &str) -> String {
    format!("{account}/{container}/{blob}")
}

pub fn block_key(account: &str, container: &str, blob: &str, block_id: &str) -> String {
    format!("{}{BLOCK_SEPARATOR}{block_id}", blob_key(account, container, blob))
}

/// How often a read-check-write is retried when concurrent writers keep changing its inputs.
const MAX_ATTEMPTS: usize = 32;

/// Runs a read-check-write until its guarded batch commits: `attempt` reads what it needs, checks,
/// and returns a batch whose `expect_unchanged` guards name everything it read, plus its result.
/// A conflict means another writer got in between; the attempt then runs again on fresh state.
/// Nothing is locked, so writers never wait for each other's fsync (commits are grouped).
pub async fn optimistic<T, F, Fut>(service: &StorageService, attempt: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Batch, T), ApiError>>,
{
    Ok(optimistic_reporting(service, None, attempt).await?.0)
}

/// [`optimistic`], also returning what `report` held just before the winning commit applied.
pub async fn optimistic_reporting<T, F, Fut>(
    service: &StorageService,
    report: Option<(Table, &str)>,
    mut attempt: F,
) -> Result<(T, Option<Vec<u8>>), ApiError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Batch, T), ApiError>>,
{
    for _ in 0..MAX_ATTEMPTS {
        let (batch, out) = attempt().await?;
        match service.store.commit_reporting(batch, report).await {
            Ok(replaced) => return Ok((out, replaced)),
            Err(byos_store::StoreError::Conflict { .. }) => tokio::task::yield_now().await,
            Err(e) => return Err(store_err(e)),
        }
    }
    Err(super::errors::err(
        409,
        "OperationConflict",
        "The resource kept changing during the operation; retry the request.",
    ))
}

/// A record with the exact bytes it was read from (for `expect_unchanged` guards).
pub struct Read<T> {
    pub record: Option<T>,
    pub bytes: Option<Vec<u8>>,
}

pub async fn read<T: for<'de> Deserialize<'de>>(
    service: &StorageService,
    table: Table,
    key: &str,
) -> Result<Read<T>, ApiError> {
    let bytes = service.store.get(table, key).await.map_err(store_err)?;
    let record = bytes.as_deref().map(decode).transpose()?;
    Ok(Read { record, bytes })
}

pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(record).or_internal_with(internal)
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        tracing::error!(error = %e, "stored blob record is corrupt");
        internal()
    })
}

pub fn store_err(e: byos_store::StoreError) -> ApiError {
    match e {
        byos_store::StoreError::Conflict { .. } => super::errors::err(
            409,
            "OperationConflict",
            "A concurrent operation changed the resource; retry the request.",
        ),
        byos_store::StoreError::Backend(detail) => {
            tracing::error!(%detail, "metadata store failure");
            internal()
        }
    }
}

fn object_err(e: byos_store::ObjectError) -> ApiError {
    tracing::error!(error = %e, "object store failure");
    internal()
}

/// Azure Storage's CRC64 (the NVMe polynomial, reflected; sent as 8 little-endian bytes).
pub static CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_NVME);

/// Which checksums a segment writer computes (the ones the client sent, to check them).
#[derive(Clone, Copy, Default)]
pub struct Checksums {
    pub md5: bool,
    pub crc64: bool,
}

/// What a finished segment's plaintext hashed to, for the checksums that were asked for.
#[derive(Clone, Copy, Default)]
pub struct Computed {
    pub md5: Option<[u8; 16]>,
    pub crc64: Option<u64>,
}

/// A fresh ETag in Azure's style.
pub fn new_etag() -> String {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let salt = u16::from_be_bytes(byos_crypto::random_bytes::<2>().unwrap_or([0, 0]));
    format!("\"0x8D{:X}{:04X}\"", nanos as u64 & 0xFFFF_FFFF_FFFF, salt)
}

fn segment_context(kind: &str, account: &str, container: &str, blob: &str, segment_id: &str) -> Vec<u8> {
    format!("byos-{kind}-v1|{account}|{container}|{blob}|{segment_id}").into_bytes()
}

fn metadata_context(account: &str, container: &str, blob: Option<&str>) -> Vec<u8> {
    format!("byos-meta-v1|{account}|{container}|{}", blob.unwrap_or("")).into_bytes()
}

/// Seals `metadata` (name -> value) under the account KEK, bound to its container or blob.
pub fn seal_metadata(
    account: &Account,
    kek: &Kek,
    container: &str,
    blob: Option<&str>,
    metadata: &BTreeMap<String, String>,
) -> Result<Option<String>, ApiError> {
    if metadata.is_empty() {
        return Ok(None);
    }
    let json = zeroize::Zeroizing::new(serde_json::to_vec(metadata).or_internal_with(internal)?);
    let sealed = kek.seal_value(&json, &metadata_context(&account.name, container, blob)).or_internal_with(internal)?;
    Ok(Some(b64url(&sealed)))
}

pub fn open_metadata(
    account: &Account,
    kek: &Kek,
    container: &str,
    blob: Option<&str>,
    sealed: Option<&str>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(sealed) = sealed else { return Ok(BTreeMap::new()) };
    let bytes = b64url_decode(sealed).or_internal_with(internal)?;
    let json = kek.open_value(&bytes, &metadata_context(&account.name, container, blob)).or_internal_with(internal)?;
    serde_json::from_slice(&json).or_internal_with(internal)
}

/// Streams plaintext into one encrypted segment; bounded memory (one I/O unit of chunks).
///
/// Plaintext is appended straight into the output buffer and each full chunk is sealed where it
/// lies, so data is copied once on its way from the request to the object store.
pub struct SegmentWriter {
    writer: Box<dyn ObjectWriter>,
    dek: DataKey,
    aad: Vec<u8>,
    /// Sealed chunks, then the plaintext of the chunk being filled (from `open_chunk`).
    buffer: Vec<u8>,
    open_chunk: usize,
    index: u64,
    len: u64,
    /// Only when the client sent a Content-MD5 to check.
    md5: Option<Md5>,
    /// Only when the client sent an `x-ms-content-crc64` to check.
    crc64: Option<crc::Digest<'static, u64>>,
    object: String,
    wrapped_dek: String,
    segment_id: String,
}

const UNIT: usize = IO_CHUNKS * (CHUNK_SIZE + TAG_LEN);

impl SegmentWriter {
    pub async fn create(
        service: &StorageService,
        account: &Account,
        kek: &Kek,
        container: &str,
        blob: &str,
        segment_id: &str,
        checksums: Checksums,
    ) -> Result<Self, ApiError> {
        let object = uuid::Uuid::new_v4().simple().to_string();
        let dek = DataKey::generate().or_internal_with(internal)?;
        let wrap_context = segment_context("dek", &account.name, container, blob, segment_id);
        let wrapped = kek.wrap(&dek, &wrap_context).or_internal_with(internal)?;
        let writer = service.objects.create(&object).await.map_err(object_err)?;
        let mut buffer = Vec::with_capacity(UNIT + SEGMENT_HEADER_LEN as usize);
        buffer.extend_from_slice(&segment_header(CHUNK_SIZE));
        let open_chunk = buffer.len();
        Ok(SegmentWriter {
            writer,
            dek,
            aad: segment_context("seg", &account.name, container, blob, segment_id),
            buffer,
            open_chunk,
            index: 0,
            len: 0,
            md5: checksums.md5.then(Md5::new),
            crc64: checksums.crc64.then(|| CRC64.digest()),
            object,
            wrapped_dek: b64url(&wrapped),
            segment_id: segment_id.to_owned(),
        })
    }

    pub async fn push(&mut self, mut data: &[u8]) -> Result<(), ApiError> {
        if let Some(md5) = self.md5.as_mut() {
            md5.update(data);
        }
        if let Some(crc) = self.crc64.as_mut() {
            crc.update(data);
        }
        self.len += data.len() as u64;
        while !data.is_empty() {
            let filled = self.buffer.len() - self.open_chunk;
            let take = (CHUNK_SIZE - filled).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() - self.open_chunk == CHUNK_SIZE {
                self.seal_open_chunk()?;
                if self.buffer.len() >= UNIT {
                    let full = std::mem::replace(&mut self.buffer, Vec::with_capacity(UNIT));
                    self.open_chunk = 0;
                    self.writer.write(full).await.map_err(object_err)?;
                }
            }
        }
        Ok(())
    }

    fn seal_open_chunk(&mut self) -> Result<(), ApiError> {
        let tag = self
            .dek
            .seal_chunk_in(&self.aad, self.index, &mut self.buffer[self.open_chunk..])
            .or_internal_with(internal)?;
        self.buffer.extend_from_slice(&tag);
        self.open_chunk = self.buffer.len();
        self.index += 1;
        Ok(())
    }

    /// Makes the segment durable; returns it with the checksums that were asked for.
    pub async fn finish(mut self) -> Result<(Segment, Computed), ApiError> {
        if self.buffer.len() > self.open_chunk {
            self.seal_open_chunk()?;
        }
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            self.writer.write(rest).await.map_err(object_err)?;
        }
        self.writer.finish().await.map_err(object_err)?;
        let computed = Computed { md5: self.md5.map(|m| m.finalize().into()), crc64: self.crc64.map(|c| c.finalize()) };
        Ok((
            Segment {
                object: self.object,
                wrapped_dek: self.wrapped_dek,
                len: self.len,
                chunk_size: CHUNK_SIZE as u32,
                segment_id: self.segment_id,
            },
            computed,
        ))
    }

    /// Plaintext bytes written so far.
    pub fn written(&self) -> u64 {
        self.len
    }
}

/// One segment a read touches: where it starts in the blob, with its opened data key.
struct OpenSegment {
    start: u64,
    segment: Segment,
    dek: DataKey,
    aad: Vec<u8>,
}

/// Where a read is in the segments it touches.
struct ReadState {
    objects: byos_store::SharedObjects,
    segments: Vec<OpenSegment>,
    /// The segment holding `position` (reads move forward only).
    cursor: usize,
    /// Next plaintext offset to produce, and the end (exclusive), in blob coordinates.
    position: u64,
    end: u64,
}

/// Opens the data keys of the segments that `[start, end)` touches, and only those: a range read
/// of a blob of many blocks unwraps one or two keys, not one per block (fails if the account's key
/// cannot unwrap them, before any byte is sent).
fn open_segments(
    account: &str,
    kek: &Kek,
    (container, blob): (&str, &str),
    segments: &[Segment],
    (start, end): (u64, u64),
) -> Result<Vec<OpenSegment>, ApiError> {
    let mut offset = 0u64;
    let mut touched = Vec::new();
    for s in segments {
        let segment_start = offset;
        offset += s.len;
        if offset <= start || s.len == 0 {
            continue;
        }
        if segment_start >= end {
            break;
        }
        let wrapped = b64url_decode(&s.wrapped_dek).or_internal_with(internal)?;
        let dek = kek
            .unwrap(&wrapped, &segment_context("dek", account, container, blob, &s.segment_id))
            .or_internal_with(internal)?;
        let aad = segment_context("seg", account, container, blob, &s.segment_id);
        touched.push(OpenSegment { start: segment_start, segment: s.clone(), dek, aad });
    }
    Ok(touched)
}

/// The plaintext of `[start, end)` of a blob, as a stream of decrypted pieces.
#[allow(clippy::too_many_arguments)]
pub fn read_range(
    service: &StorageService,
    account: &Account,
    kek: &Kek,
    container: &str,
    blob: &str,
    segments: &[Segment],
    start: u64,
    end: u64,
) -> Result<impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, ApiError> {
    let state = ReadState {
        objects: service.objects.clone(),
        segments: open_segments(&account.name, kek, (container, blob), segments, (start, end))?,
        cursor: 0,
        position: start,
        end,
    };
    let pieces = futures_util::stream::try_unfold(state, |mut state| async move {
        if state.position >= state.end {
            return Ok(None);
        }
        let pieces = next_pieces(&mut state).await.map_err(|e| std::io::Error::other(e.message))?;
        Ok::<_, std::io::Error>(Some((futures_util::stream::iter(pieces.into_iter().map(Ok)), state)))
    });
    Ok(futures_util::TryStreamExt::try_flatten(pieces))
}

/// Reads and decrypts up to `IO_CHUNKS` chunks from the segment holding `state.position`; returns
/// the plaintext of each chunk as a slice of the one buffer read from the object.
async fn next_pieces(state: &mut ReadState) -> Result<Vec<Bytes>, ApiError> {
    while let Some(open) = state.segments.get(state.cursor) {
        let OpenSegment { start: segment_start, segment, dek, aad } = open;
        let segment_start = *segment_start;
        let segment_end = segment_start + segment.len;
        if state.position >= segment_end {
            state.cursor += 1;
            continue;
        }
        let chunk_size = segment.chunk_size as u64;
        let local = state.position - segment_start;
        let local_end = (state.end - segment_start).min(segment.len);
        let first = local / chunk_size;
        let last = ((local_end - 1) / chunk_size).min(first + IO_CHUNKS as u64 - 1);
        // Reading from the start includes the header, which is checked in the same read.
        let header_len = if first == 0 { SEGMENT_HEADER_LEN as usize } else { 0 };
        let offset = chunk_offset(segment.chunk_size as usize, first) - header_len as u64;
        // Exactly the sealed chunks wanted: the last chunk of a segment is usually short.
        let plain_in_span = ((last + 1) * chunk_size).min(segment.len) - first * chunk_size;
        let span = header_len + plain_in_span as usize + (last - first + 1) as usize * TAG_LEN;
        let mut raw = state.objects.read_at(&segment.object, offset, span).await.map_err(object_err)?;
        if header_len > 0 && parse_segment_header(&raw).or_internal_with(internal)? != segment.chunk_size as usize {
            return Err(internal());
        }
        // Decrypt each chunk in place; the pieces are slices of the buffer, no further copy.
        let mut ranges = Vec::with_capacity((last - first + 1) as usize);
        let mut at = header_len;
        for index in first..=last {
            let plain_len = (segment.len - index * chunk_size).min(chunk_size) as usize;
            let sealed = raw.get_mut(at..at + plain_len + TAG_LEN).ok_or_else(|| {
                tracing::error!(object = %segment.object, "encrypted segment is truncated");
                internal()
            })?;
            let n = dek.open_chunk(aad, index, sealed).map_err(|_| {
                tracing::error!(object = %segment.object, chunk = index, "chunk failed authentication");
                internal()
            })?;
            // Only the wanted part of the first and last chunk is returned.
            let chunk_start = segment_start + index * chunk_size;
            let from = state.position.max(chunk_start) - chunk_start;
            let to = (state.end.min(chunk_start + n as u64) - chunk_start) as usize;
            ranges.push(at + from as usize..at + to);
            at += plain_len + TAG_LEN;
        }
        let buffer = Bytes::from(raw);
        let pieces: Vec<Bytes> = ranges.into_iter().filter(|r| !r.is_empty()).map(|r| buffer.slice(r)).collect();
        state.position += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
        return Ok(pieces);
    }
    Err(internal())
}

/// Adds the deletion of every container, blob and staged block of `account` to `batch`, and notes
/// their objects for [`delete_account_objects`].
pub async fn account_metadata_delete_ops(
    service: &StorageService,
    account: &str,
    batch: Batch,
) -> Result<Batch, ApiError> {
    let (batch, objects) = account_rows(service, account, batch).await?;
    service.pending_object_deletes.lock().unwrap_or_else(|e| e.into_inner()).insert(account.to_owned(), objects);
    Ok(batch)
}

/// The deletions of `account`'s container, blob and block rows, added to `batch`, and the objects
/// they reference.
async fn account_rows(
    service: &StorageService,
    account: &str,
    mut batch: Batch,
) -> Result<(Batch, Vec<String>), ApiError> {
    let prefix = format!("{account}/");
    let mut objects = Vec::new();
    for (key, _) in service.store.scan(CONTAINERS, &prefix).await.map_err(store_err)? {
        batch = batch.delete(CONTAINERS, key);
    }
    for (key, bytes) in service.store.scan(BLOBS, &prefix).await.map_err(store_err)? {
        let record: BlobRecord = decode(&bytes)?;
        objects.extend(record.segments.into_iter().map(|s| s.object));
        batch = batch.delete(BLOBS, key);
    }
    for (key, bytes) in service.store.scan(BLOCKS, &prefix).await.map_err(store_err)? {
        let record: BlockRecord = decode(&bytes)?;
        objects.push(record.segment.object);
        batch = batch.delete(BLOCKS, key);
    }
    Ok((batch, objects))
}

/// After an account's deletion committed: removes its objects, and then any container, blob or
/// block that a request under way committed between the deletion's scan and its commit (F9: they
/// would resurface in a new account of that name). Nothing can commit after the deletion: blob and
/// block commits guard on their container record, container creation on the account's name record.
pub async fn delete_account_objects(service: &StorageService, account: &str) {
    let mut objects =
        service.pending_object_deletes.lock().unwrap_or_else(|e| e.into_inner()).remove(account).unwrap_or_default();
    match account_rows(service, account, Batch::new()).await {
        Ok((batch, late)) if !batch.is_empty() => match service.store.commit(batch).await {
            Ok(()) => {
                tracing::info!(account, objects = late.len(), "removed data committed while the account was deleted");
                objects.extend(late);
            }
            Err(e) => {
                tracing::warn!(account, error = %e, "could not remove data committed during the account's deletion")
            }
        },
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(account, error = %e.message, "could not look for data committed during the account's deletion")
        }
    }
    delete_objects(service, objects).await;
}

/// Best-effort removal of objects no committed record references any more.
pub async fn delete_objects(service: &StorageService, objects: impl IntoIterator<Item = String>) {
    for object in objects {
        if let Err(e) = service.objects.delete(&object).await {
            tracing::warn!(object, error = %e, "could not delete an unreferenced object");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment of `len` bytes whose data key is wrapped for it, or (`valid` false) garbage that
    /// no key unwraps.
    fn segment(kek: &Kek, id: &str, len: u64, valid: bool) -> Result<Segment, ApiError> {
        let wrapped = if valid {
            let dek = DataKey::generate().or_internal()?;
            kek.wrap(&dek, &segment_context("dek", "a", "c", "b", id)).or_internal()?
        } else {
            vec![0; 40]
        };
        Ok(Segment {
            object: id.into(),
            wrapped_dek: b64url(&wrapped),
            len,
            chunk_size: CHUNK_SIZE as u32,
            segment_id: id.into(),
        })
    }

    /// A range read unwraps the keys of the segments it touches, and no other.
    #[test]
    fn a_range_opens_only_the_segments_it_touches() -> Result<(), ApiError> {
        let kek = Kek::from_bytes(&[9; 32]).or_internal()?;
        let segments =
            [segment(&kek, "s0", 100, false)?, segment(&kek, "s1", 100, true)?, segment(&kek, "s2", 100, false)?];
        let opened = open_segments("a", &kek, ("c", "b"), &segments, (120, 180))?;
        assert_eq!(opened.iter().map(|o| (o.start, o.segment.segment_id.as_str())).collect::<Vec<_>>(), [(100, "s1")]);
        assert!(
            open_segments("a", &kek, ("c", "b"), &segments, (150, 250)).is_err(),
            "s2 is touched and cannot be opened"
        );
        assert!(open_segments("a", &kek, ("c", "b"), &segments, (300, 300))?.is_empty());
        Ok(())
    }
}
