//! Block blobs: Put Blob, Put Block, Put Block List, Get Block List, Get Blob (ranges), properties,
//! metadata, delete, and List Blobs (prefix, delimiter, marker, metadata). HTTP-free: each
//! operation takes the door's [`Permit`] (which names its target) and typed parameters, and
//! returns records or a [`BlobError`]; `http::blobs` parses requests and renders answers.
//!
//! Writes stream the content through a [`SegmentWriter`] (bounded memory), make the segment
//! durable, then commit the metadata record; only then is the write acknowledged. Replaced
//! segments are removed after the commit that stops referencing them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use byos_core::ApiError;
use byos_crypto::envelope::Kek;
use byos_store::Batch;
use bytes::Bytes;
use futures_util::StreamExt;

use super::containers;
use super::data::{
    self, BLOBS, BLOCKS, BlobRecord, BlockRecord, ContentHeaders, Segment, SegmentWriter, blob_key, block_key, decode,
    encode, store_err,
};
use super::errors::{BlobError, bad_request, blob_not_found, err};
use super::ops::Permit;
use super::xml::{self, Access, BlockSource, Conditions, Current};
use crate::{Account, StorageService};

/// Azure's limits: a Put Blob body and a single block.
pub const MAX_PUT_BLOB: u64 = 5000 * 1024 * 1024;
pub const MAX_BLOCK: u64 = 4000 * 1024 * 1024;
pub const BLOCK_PREFIX: &str = "block:";
/// Azure's block counts: committed blocks in one blob (and entries of a Put Block List), and
/// uncommitted blocks staged for one blob.
const MAX_COMMITTED_BLOCKS: usize = 50_000;
const MAX_UNCOMMITTED_BLOCKS: usize = 100_000;

/// The content of a write, already unframed (the HTTP layer decodes structured messages).
pub type ContentStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, ApiError>> + Send>>;

/// The plaintext of a range being read.
pub type ReadStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// The blob a domain operation acts on.
#[derive(Clone, Copy)]
pub struct BlobTarget<'a> {
    pub account: &'a Account,
    pub container: &'a str,
    pub blob: &'a str,
}

/// Checksums a client sent with content, verified once it is received.
#[derive(Clone, Debug, Default)]
pub struct SentChecksums {
    /// `Content-MD5`, base64.
    pub md5: Option<String>,
    /// `x-ms-content-crc64`.
    pub crc64: Option<u64>,
}

/// A whole new version of a blob (Put Blob).
pub struct NewBlob {
    pub content: ContentStream,
    pub sent: SentChecksums,
    pub headers: ContentHeaders,
    pub metadata: BTreeMap<String, String>,
    pub conditions: Conditions,
}

/// A blob's committed version and its staged blocks (Get Block List).
pub struct BlockList {
    pub committed: Option<BlobRecord>,
    pub staged: Vec<(String, BlockRecord)>,
}

/// A blob opened for reading: its record and its metadata, in the clear.
pub struct OpenBlob {
    pub record: BlobRecord,
    pub metadata: BTreeMap<String, String>,
    kek: Arc<Kek>,
}

/// What List Blobs asks for.
#[derive(Clone, Debug, Default)]
pub struct BlobListing {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub marker: Option<String>,
    /// 1..=5000.
    pub max: usize,
    pub include_metadata: bool,
}

/// One entry of a listing page.
pub enum Listed {
    Blob(Box<BlobRecord>, Option<BTreeMap<String, String>>),
    Prefix(String),
}

/// One page of a listing, and the marker of the next page.
pub struct BlobPage {
    pub items: Vec<Listed>,
    pub next: Option<String>,
}

fn validate_blob_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > 1024 || name.chars().any(|c| c.is_control()) {
        return Err(bad_request("InvalidResourceName", "The specified resource name contains invalid characters."));
    }
    Ok(())
}

async fn load(
    service: &StorageService,
    account: &Account,
    container: &str,
    blob: &str,
) -> Result<Option<BlobRecord>, ApiError> {
    match service.store.get(BLOBS, &blob_key(&account.name, container, blob)).await.map_err(store_err)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The blob, or `BlobNotFound` / `ContainerNotFound` as Azure tells them apart.
async fn require(service: &StorageService, target: BlobTarget<'_>) -> Result<BlobRecord, ApiError> {
    match load(service, target.account, target.container, target.blob).await? {
        Some(record) => Ok(record),
        None => Err(missing(service, target).await),
    }
}

/// Why a blob is not there: its container is missing, or only the blob is.
async fn missing(service: &StorageService, target: BlobTarget<'_>) -> ApiError {
    containers::require(service, target.account, target.container).await.err().unwrap_or_else(blob_not_found)
}

fn current(record: &Option<BlobRecord>) -> Option<Current<'_>> {
    record.as_ref().map(version)
}

fn version(record: &BlobRecord) -> Current<'_> {
    Current { etag: &record.etag, last_modified_nanos: record.last_modified }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Streams `content` into a new segment, enforcing `limit` and the checksums the client sent.
///
/// Nothing is computed that the client did not send: Azure computes an MD5 for every Put Blob, but
/// it cost a third of the CPU of a durable 1 MiB PUT here (see BENCHMARKS.md), and the clients
/// validate content by sending their own checksums.
async fn receive_segment(
    service: &StorageService,
    permit: &Permit,
    mut content: ContentStream,
    sent: &SentChecksums,
    segment_id: &str,
    limit: u64,
) -> Result<(Segment, data::Computed), ApiError> {
    let checksums = data::Checksums { md5: sent.md5.is_some(), crc64: sent.crc64.is_some() };
    let kek = permit.kek(service).await.map_err(ApiError::from)?;
    let target = permit.target();
    let mut writer =
        SegmentWriter::create(service, target.account, &kek, target.container, target.blob, segment_id, checksums)
            .await?;
    while let Some(piece) = content.next().await {
        let piece = piece?;
        if writer.written() + piece.len() as u64 > limit {
            return Err(err(
                413,
                "RequestBodyTooLarge",
                format!("The request body is too large and exceeds the maximum permissible limit of {limit} bytes."),
            ));
        }
        writer.push(&piece).await?;
    }
    let (segment, computed) = writer.finish().await?;
    if let Some(error) = checksum_mismatch(sent, &computed) {
        data::delete_objects(service, [segment.object.clone()]).await;
        return Err(error);
    }
    Ok((segment, computed))
}

/// Azure's error when the content did not hash to what the client sent.
fn checksum_mismatch(sent: &SentChecksums, computed: &data::Computed) -> Option<ApiError> {
    if sent.md5.is_some() && sent.md5 != computed.md5.map(|m| b64(&m)) {
        Some(bad_request(
            "Md5Mismatch",
            "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
        ))
    } else if sent.crc64.is_some() && sent.crc64 != computed.crc64 {
        Some(bad_request(
            "Crc64Mismatch",
            "The CRC64 value specified in the request did not match with the CRC64 value calculated by the server.",
        ))
    } else {
        None
    }
}

/// Objects referenced by `old` but not by `new`.
fn orphaned(old: &[Segment], new: &[Segment]) -> Vec<String> {
    let kept: HashSet<&str> = new.iter().map(|s| s.object.as_str()).collect();
    let mut seen = HashSet::new();
    old.iter()
        .filter(|s| !kept.contains(s.object.as_str()) && seen.insert(s.object.clone()))
        .map(|s| s.object.clone())
        .collect()
}

/// Staged blocks of a blob: (block id, record).
async fn staged_blocks(
    service: &StorageService,
    target: BlobTarget<'_>,
) -> Result<Vec<(String, BlockRecord)>, ApiError> {
    Ok(staged_blocks_raw(service, target).await?.into_iter().map(|(id, _, block)| (id, block)).collect())
}

/// Staged blocks of a blob with their stored bytes (for guards).
async fn staged_blocks_raw(
    service: &StorageService,
    target: BlobTarget<'_>,
) -> Result<Vec<(String, Vec<u8>, BlockRecord)>, ApiError> {
    let prefix = format!("{}{}", blob_key(&target.account.name, target.container, target.blob), data::BLOCK_SEPARATOR);
    let rows = service.store.scan(BLOCKS, &prefix).await.map_err(store_err)?;
    rows.into_iter().map(|(k, v)| Ok((k[prefix.len()..].to_owned(), v.clone(), decode::<BlockRecord>(&v)?))).collect()
}

/// Commits a new version of a blob, built by `build` from the current version and the staged
/// blocks; removes the staged blocks, and afterwards the objects nothing references any more.
///
/// Guards: the container (a deletion in between wins), every staged block consumed or discarded
/// (two block-list commits cannot both take them), and the previous version when the request was
/// conditional or the new version reuses its blocks. Unconditional writes otherwise race as in
/// Azure (last writer wins); the commit reports the version it really replaced, so racing writers
/// each remove exactly the objects of their own predecessor.
async fn commit_blob<F>(
    service: &StorageService,
    target: BlobTarget<'_>,
    conditions: &Conditions,
    started: &data::ContainerRecord,
    build: F,
) -> Result<BlobRecord, ApiError>
where
    F: Fn(Option<&BlobRecord>, &[(String, Vec<u8>, BlockRecord)]) -> Result<BlobRecord, ApiError>,
{
    let BlobTarget { account, container, blob } = target;
    let key = blob_key(&account.name, container, blob);
    let ((record, mut garbage), replaced) =
        data::optimistic_reporting(service, Some((BLOBS, key.as_str())), || async {
            let parent = containers::read_same_container(service, account, started).await?;
            let old: data::Read<BlobRecord> = data::read(service, BLOBS, &key).await?;
            conditions.check(current(&old.record), Access::Write)?;
            let staged = staged_blocks_raw(service, target).await?;
            let record = build(old.record.as_ref(), &staged)?;
            let reuses_old = old
                .record
                .as_ref()
                .is_some_and(|o| o.segments.iter().any(|s| record.segments.iter().any(|n| n.object == s.object)));
            let mut batch = Batch::new().expect_unchanged(
                data::CONTAINERS,
                data::container_key(&account.name, container),
                parent.bytes,
            );
            if reuses_old || conditions.is_set() {
                batch = batch.expect_unchanged(BLOBS, key.clone(), old.bytes.clone());
            }
            batch = batch.put(BLOBS, key.clone(), encode(&record)?);
            let mut garbage = Vec::new();
            for (id, bytes, block) in staged {
                let block_key = block_key(&account.name, container, blob, &id);
                batch = batch.expect_unchanged(BLOCKS, block_key.clone(), Some(bytes)).delete(BLOCKS, block_key);
                if !record.segments.iter().any(|s| s.object == block.segment.object) {
                    garbage.push(block.segment.object);
                }
            }
            Ok((batch, (record, garbage)))
        })
        .await?;
    if let Some(replaced) = replaced.as_deref().map(decode::<BlobRecord>).transpose()? {
        garbage.extend(orphaned(&replaced.segments, &record.segments));
    }
    data::delete_objects(service, garbage).await;
    Ok(record)
}

/// Put Blob: the new version, and the checksums computed of its content.
pub async fn put(
    service: &StorageService,
    permit: &Permit,
    new: NewBlob,
) -> Result<(BlobRecord, data::Computed), BlobError> {
    let target = permit.target();
    validate_blob_name(target.blob)?;
    let started = containers::require(service, target.account, target.container).await?;
    let existing = load(service, target.account, target.container, target.blob).await?;
    new.conditions.check(current(&existing), Access::Write)?;
    let segment_id = format!("put:{}", uuid::Uuid::new_v4().simple());
    let (segment, checksums) =
        receive_segment(service, permit, new.content, &new.sent, &segment_id, MAX_PUT_BLOB).await?;
    let mut content = new.headers;
    content.content_md5 = content.content_md5.or_else(|| checksums.md5.map(|m| b64(&m)));
    let kek = permit.kek(service).await?;
    let now = xml::now_nanos();
    let record = async {
        let sealed_metadata =
            data::seal_metadata(target.account, &kek, target.container, Some(target.blob), &new.metadata)?;
        commit_blob(service, target, &new.conditions, &started, |old, _| {
            Ok(BlobRecord {
                v: data::RECORD_VERSION,
                name: target.blob.to_owned(),
                size: segment.len,
                etag: data::new_etag(),
                created: old.map(|e| e.created).unwrap_or(now),
                last_modified: now,
                content: content.clone(),
                sealed_metadata: sealed_metadata.clone(),
                segments: vec![segment.clone()],
            })
        })
        .await
    }
    .await;
    match record {
        Ok(record) => Ok((record, checksums)),
        Err(e) => {
            data::delete_objects(service, [segment.object.clone()]).await;
            Err(e.into())
        }
    }
}

/// A block id: base64 of at most 64 bytes.
pub fn parse_block_id(id: Option<&str>) -> Result<String, ApiError> {
    let invalid =
        || bad_request("InvalidBlockId", "The specified block ID is invalid. The block ID must be Base64-encoded.");
    let id = id.filter(|i| !i.is_empty()).ok_or_else(invalid)?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(id).map_err(|_| invalid())?;
    if decoded.is_empty() || decoded.len() > 64 {
        return Err(invalid());
    }
    Ok(id.to_owned())
}

/// Put Block: stages block `id` (a valid [`parse_block_id`]); the checksums computed of it.
pub async fn put_block(
    service: &StorageService,
    permit: &Permit,
    id: &str,
    content: ContentStream,
    sent: &SentChecksums,
) -> Result<data::Computed, BlobError> {
    let target = permit.target();
    let BlobTarget { account, container, blob } = target;
    validate_blob_name(blob)?;
    let started = containers::require(service, account, container).await?;
    let (segment, checksums) =
        receive_segment(service, permit, content, sent, &format!("{BLOCK_PREFIX}{id}"), MAX_BLOCK).await?;
    let key = block_key(&account.name, container, blob, id);
    let new_object = segment.object.clone();
    let record = encode(&BlockRecord { v: data::RECORD_VERSION, segment, created: byos_core::time::unix_now() })?;
    let staged = data::optimistic(service, || async {
        // Guarded on the container the request began in, as blob commits are: a container deleted
        // (or deleted and re-created) while the body streamed makes this fail instead of leaving a
        // ghost block.
        let parent = containers::read_same_container(service, account, &started).await?;
        let old: data::Read<BlockRecord> = data::read(service, BLOCKS, &key).await?;
        if old.record.is_none() {
            check_uncommitted_limit(service, target).await?;
        }
        let batch = Batch::new()
            .expect_unchanged(data::CONTAINERS, data::container_key(&account.name, container), parent.bytes)
            .expect_unchanged(BLOCKS, key.clone(), old.bytes)
            .put(BLOCKS, key.clone(), record.clone());
        Ok((batch, old.record))
    })
    .await;
    let replaced = match staged {
        Ok(replaced) => replaced,
        Err(e) => {
            data::delete_objects(service, [new_object]).await;
            return Err(e.into());
        }
    };
    if let Some(old) = replaced {
        // The staged block may also be part of the committed blob; keep its object then.
        let committed = load(service, account, container, blob)
            .await?
            .is_some_and(|b| b.segments.iter().any(|s| s.object == old.segment.object));
        if !committed {
            data::delete_objects(service, [old.segment.object]).await;
        }
    }
    Ok(checksums)
}

/// Azure keeps at most 100,000 uncommitted blocks per blob. Racing Put Blocks of new ids can each
/// pass this check, so the bound holds up to the number of concurrent requests.
async fn check_uncommitted_limit(service: &StorageService, target: BlobTarget<'_>) -> Result<(), ApiError> {
    let prefix = format!("{}{}", blob_key(&target.account.name, target.container, target.blob), data::BLOCK_SEPARATOR);
    let staged = service.store.scan_page(BLOCKS, &prefix, None, MAX_UNCOMMITTED_BLOCKS).await.map_err(store_err)?;
    if staged.len() >= MAX_UNCOMMITTED_BLOCKS {
        return Err(err(
            409,
            "BlockCountExceedsLimit",
            "The uncommitted block count cannot exceed the maximum limit of 100,000 blocks.",
        ));
    }
    Ok(())
}

/// Put Block List: commits the listed blocks as the blob's new version.
pub async fn put_block_list(
    service: &StorageService,
    permit: &Permit,
    entries: &[(BlockSource, String)],
    content: ContentHeaders,
    metadata: &BTreeMap<String, String>,
    conditions: &Conditions,
) -> Result<BlobRecord, BlobError> {
    let target = permit.target();
    validate_blob_name(target.blob)?;
    if entries.len() > MAX_COMMITTED_BLOCKS {
        return Err(bad_request("BlockListTooLong", "The block list may not contain more than 50,000 blocks.").into());
    }
    let kek = permit.kek(service).await?;
    let sealed_metadata = data::seal_metadata(target.account, &kek, target.container, Some(target.blob), metadata)?;
    let now = xml::now_nanos();
    let started = containers::require(service, target.account, target.container).await?;
    let record = commit_blob(service, target, conditions, &started, |old, staged| {
        let segments = resolve_block_list(entries, old, staged)?;
        Ok(BlobRecord {
            v: data::RECORD_VERSION,
            name: target.blob.to_owned(),
            size: segments.iter().map(|s| s.len).sum(),
            etag: data::new_etag(),
            created: old.map(|e| e.created).unwrap_or(now),
            last_modified: now,
            content: content.clone(),
            sealed_metadata: sealed_metadata.clone(),
            segments,
        })
    })
    .await?;
    Ok(record)
}

/// The segments a block list names, from the staged and the committed blocks.
fn resolve_block_list(
    entries: &[(BlockSource, String)],
    old: Option<&BlobRecord>,
    staged: &[(String, Vec<u8>, BlockRecord)],
) -> Result<Vec<Segment>, ApiError> {
    // Indexed once: a list of n entries is resolved in O(n), not O(n x blocks).
    let staged_by_id: HashMap<&str, &Segment> = staged.iter().map(|(id, _, b)| (id.as_str(), &b.segment)).collect();
    let committed_by_id: HashMap<&str, &Segment> = old
        .iter()
        .flat_map(|o| o.segments.iter())
        .filter_map(|s| s.segment_id.strip_prefix(BLOCK_PREFIX).map(|id| (id, s)))
        .collect();
    let find_staged = |id: &str| staged_by_id.get(id).map(|s| (*s).clone());
    let find_committed = |id: &str| committed_by_id.get(id).map(|s| (*s).clone());
    entries
        .iter()
        .map(|(source, id)| {
            let found = match source {
                BlockSource::Uncommitted => find_staged(id),
                BlockSource::Committed => find_committed(id),
                BlockSource::Latest => find_staged(id).or_else(|| find_committed(id)),
            };
            found.ok_or_else(|| bad_request("InvalidBlockList", "The specified block list is invalid."))
        })
        .collect()
}

/// Get Block List: the committed version (if any) and the staged blocks.
pub async fn block_list(service: &StorageService, permit: &Permit) -> Result<BlockList, BlobError> {
    let target = permit.target();
    let committed = load(service, target.account, target.container, target.blob).await?;
    let staged = staged_blocks(service, target).await?;
    if committed.is_none() && staged.is_empty() {
        return Err(missing(service, target).await.into());
    }
    Ok(BlockList { committed, staged })
}

/// Opens the blob for reading (Get Blob / Get Blob Properties), checking `conditions`.
pub async fn open(service: &StorageService, permit: &Permit, conditions: &Conditions) -> Result<OpenBlob, BlobError> {
    let target = permit.target();
    let record = require(service, target).await?;
    conditions.check(Some(version(&record)), Access::Read)?;
    let kek = permit.kek(service).await?;
    let metadata = data::open_metadata(
        target.account,
        &kek,
        target.container,
        Some(&record.name),
        record.sealed_metadata.as_deref(),
    )?;
    Ok(OpenBlob { record, metadata, kek })
}

impl OpenBlob {
    /// The plaintext of `[start, end)`, which must lie within the blob.
    pub fn read(
        &self,
        service: &StorageService,
        permit: &Permit,
        start: u64,
        end: u64,
    ) -> Result<ReadStream, BlobError> {
        let stream = data::read_range(
            service,
            permit.account(),
            &self.kek,
            permit.container(),
            &self.record.name,
            &self.record.segments,
            start,
            end,
        )?;
        Ok(Box::pin(stream))
    }
}

/// Get Blob Metadata.
pub async fn metadata(service: &StorageService, permit: &Permit) -> Result<OpenBlob, BlobError> {
    open(service, permit, &Conditions::default()).await
}

/// Changes a blob's record (not its data), guarded on the version the conditions were checked on.
async fn update_record(
    service: &StorageService,
    target: BlobTarget<'_>,
    conditions: &Conditions,
    change: impl Fn(&mut BlobRecord),
) -> Result<BlobRecord, BlobError> {
    let key = blob_key(&target.account.name, target.container, target.blob);
    let record = data::optimistic(service, || async {
        let read: data::Read<BlobRecord> = data::read(service, BLOBS, &key).await?;
        let Some(mut record) = read.record else {
            return Err(missing(service, target).await);
        };
        conditions.check(Some(version(&record)), Access::Write)?;
        change(&mut record);
        record.etag = data::new_etag();
        record.last_modified = xml::now_nanos();
        let batch =
            Batch::new().expect_unchanged(BLOBS, key.clone(), read.bytes).put(BLOBS, key.clone(), encode(&record)?);
        Ok((batch, record))
    })
    .await?;
    Ok(record)
}

/// Set Blob Metadata.
pub async fn set_metadata(
    service: &StorageService,
    permit: &Permit,
    metadata: &BTreeMap<String, String>,
    conditions: &Conditions,
) -> Result<BlobRecord, BlobError> {
    let target = permit.target();
    let kek = permit.kek(service).await?;
    let sealed = data::seal_metadata(target.account, &kek, target.container, Some(target.blob), metadata)?;
    update_record(service, target, conditions, |r| r.sealed_metadata = sealed.clone()).await
}

/// Set Blob Properties (the content headers).
pub async fn set_properties(
    service: &StorageService,
    permit: &Permit,
    content: ContentHeaders,
    conditions: &Conditions,
) -> Result<BlobRecord, BlobError> {
    update_record(service, permit.target(), conditions, |r| r.content = content.clone()).await
}

/// Delete Blob, with its staged blocks.
pub async fn delete(service: &StorageService, permit: &Permit, conditions: &Conditions) -> Result<(), BlobError> {
    let target = permit.target();
    let BlobTarget { account, container, blob } = target;
    let key = blob_key(&account.name, container, blob);
    let garbage = data::optimistic(service, || async {
        let read: data::Read<BlobRecord> = data::read(service, BLOBS, &key).await?;
        let Some(record) = read.record else {
            return Err(missing(service, target).await);
        };
        conditions.check(Some(version(&record)), Access::Write)?;
        let mut batch = Batch::new().expect_unchanged(BLOBS, key.clone(), read.bytes).delete(BLOBS, key.clone());
        let mut garbage = orphaned(&record.segments, &[]);
        for (id, block) in staged_blocks(service, target).await? {
            batch = batch.delete(BLOCKS, block_key(&account.name, container, blob, &id));
            garbage.push(block.segment.object);
        }
        Ok((batch, garbage))
    })
    .await?;
    data::delete_objects(service, garbage).await;
    Ok(())
}

/// List Blobs: one page.
pub async fn list(service: &StorageService, permit: &Permit, listing: &BlobListing) -> Result<BlobPage, BlobError> {
    let (account, container) = (permit.account(), permit.container());
    containers::require(service, account, container).await?;
    let prefix = listing.prefix.as_str();
    let delimiter = listing.delimiter.as_deref().filter(|d| !d.is_empty());
    let marker = listing.marker.as_deref().filter(|m| !m.is_empty());
    let base = format!("{}/", data::container_key(&account.name, container));
    let key_prefix = format!("{base}{prefix}");
    let mut after = marker.map(|m| format!("{base}{m}"));
    let mut items: Vec<Listed> = Vec::new();
    let mut more = false;
    'scan: loop {
        let rows = service.store.scan_page(BLOBS, &key_prefix, after.as_deref(), 1000).await.map_err(store_err)?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        for (key, bytes) in &rows {
            let name = &key[base.len()..];
            if marker.is_some_and(|m| delimiter.is_some_and(|d| m.ends_with(d)) && name.starts_with(m)) {
                continue;
            }
            let collapsed = delimiter
                .and_then(|d| name[prefix.len()..].find(d).map(|at| name[..prefix.len() + at + d.len()].to_owned()));
            let item = match collapsed {
                Some(p) if matches!(items.last(), Some(Listed::Prefix(last)) if *last == p) => continue,
                Some(p) => Listed::Prefix(p),
                None => Listed::Blob(Box::new(decode(bytes)?), None),
            };
            if items.len() == listing.max {
                more = true;
                break 'scan;
            }
            items.push(item);
        }
    }
    if listing.include_metadata {
        let kek = permit.kek(service).await?;
        for item in &mut items {
            if let Listed::Blob(b, metadata) = item {
                *metadata =
                    Some(data::open_metadata(account, &kek, container, Some(&b.name), b.sealed_metadata.as_deref())?);
            }
        }
    }
    let next = if more {
        items.last().map(|i| match i {
            Listed::Blob(b, _) => b.name.clone(),
            Listed::Prefix(p) => p.clone(),
        })
    } else {
        None
    };
    Ok(BlobPage { items, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids() {
        assert!(parse_block_id(Some("QUFB")).is_ok());
        assert!(parse_block_id(Some("%%%notbase64")).is_err());
        assert!(parse_block_id(Some("")).is_err());
    }
}
