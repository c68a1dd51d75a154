//! Block blobs: Put Blob, Put Block, Put Block List, Get Block List, Get Blob (ranges), properties,
//! metadata, delete, and List Blobs (prefix, delimiter, marker, metadata).
//!
//! Writes stream the body through a [`SegmentWriter`] (bounded memory), make the segment durable,
//! then commit the metadata record; only then is the request acknowledged. Replaced segments are
//! removed after the commit that stops referencing them.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use byos_core::{ApiError, OrInternal};
use byos_crypto::envelope::Kek;
use byos_http::Failure;
use byos_store::Batch;
use futures_util::{StreamExt, TryStreamExt};

use super::containers::{self, metadata_xml, xml_response};
use super::data::{
    self, BLOBS, BLOCKS, BlobRecord, BlockRecord, ContentHeaders, Segment, SegmentWriter, blob_key, block_key, decode,
    encode, store_err,
};
use super::errors::{bad_request, blob_not_found, err};
use super::xml::{self, Access, BlockSource, Current, escape};
use super::{BlobRequest, respond, structured};
use crate::{Account, StorageService};

/// Azure's limits: a Put Blob body and a single block.
const MAX_PUT_BLOB: u64 = 5000 * 1024 * 1024;
const MAX_BLOCK: u64 = 4000 * 1024 * 1024;
const MAX_BLOCK_LIST_BODY: usize = 8 * 1024 * 1024;
const BLOCK_PREFIX: &str = "block:";
/// Azure's block counts: committed blocks in one blob (and entries of a Put Block List), and
/// uncommitted blocks staged for one blob.
const MAX_COMMITTED_BLOCKS: usize = 50_000;
const MAX_UNCOMMITTED_BLOCKS: usize = 100_000;

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
async fn require(service: &StorageService, request: &BlobRequest) -> Result<BlobRecord, ApiError> {
    match load(service, &request.account, request.container(), request.blob()).await? {
        Some(record) => Ok(record),
        None => {
            containers::require(service, &request.account, request.container()).await?;
            Err(blob_not_found())
        }
    }
}

fn current(record: &Option<BlobRecord>) -> Option<Current<'_>> {
    record.as_ref().map(|r| Current { etag: &r.etag, last_modified_nanos: r.last_modified })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Content headers of a write: the `x-ms-blob-*` forms win over the request's own headers.
fn content_headers(request: &BlobRequest, from_request_headers: bool) -> ContentHeaders {
    let pick = |blob_header: &str, plain: &str| {
        request
            .header(blob_header)
            .or_else(|| if from_request_headers { request.header(plain) } else { None })
            .map(str::to_owned)
    };
    ContentHeaders {
        content_type: pick("x-ms-blob-content-type", "content-type"),
        content_encoding: pick("x-ms-blob-content-encoding", "content-encoding"),
        content_language: pick("x-ms-blob-content-language", "content-language"),
        content_md5: request.header("x-ms-blob-content-md5").map(str::to_owned),
        content_disposition: pick("x-ms-blob-content-disposition", "content-disposition"),
        cache_control: pick("x-ms-blob-cache-control", "cache-control"),
    }
}

/// Streams the request body into a new segment, enforcing `limit` and the checksums the client sent
/// (`Content-MD5`, `x-ms-content-crc64`).
///
/// Nothing is computed that the client did not send: Azure computes an MD5 for every Put Blob, but
/// it cost a third of the CPU of a durable 1 MiB PUT here (see BENCHMARKS.md), and the clients
/// validate content by sending their own checksums.
async fn receive_segment(
    service: &StorageService,
    request: &BlobRequest,
    segment_id: &str,
    limit: u64,
) -> Result<(Segment, data::Computed), ApiError> {
    let sent_md5 = request.header("content-md5").map(str::to_owned);
    let sent_crc64 = match request.header("x-ms-content-crc64") {
        Some(text) => Some(parse_crc64(text)?),
        None => None,
    };
    let checksums = data::Checksums { md5: sent_md5.is_some(), crc64: sent_crc64.is_some() };
    let mut decoder = structured::decoder_for(&request.headers)?;
    let kek = request.kek(service).await?;
    let mut writer = SegmentWriter::create(
        service,
        &request.account,
        &kek,
        request.container(),
        request.blob(),
        segment_id,
        checksums,
    )
    .await?;
    let mut stream = request.take_body().into_data_stream();
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|_| bad_request("IncompleteBody", "The request body is incomplete."))?;
        let pieces = match decoder.as_mut() {
            Some(decoder) => decoder.feed(&frame)?,
            None => vec![&frame[..]],
        };
        for piece in pieces {
            if writer.written() + piece.len() as u64 > limit {
                return Err(err(
                    413,
                    "RequestBodyTooLarge",
                    format!(
                        "The request body is too large and exceeds the maximum permissible limit of {limit} bytes."
                    ),
                ));
            }
            writer.push(piece).await?;
        }
    }
    if let Some(decoder) = &decoder {
        decoder.finish()?;
    }
    let (segment, computed) = writer.finish().await?;
    let mismatch = if sent_md5.is_some() && sent_md5 != computed.md5.map(|m| b64(&m)) {
        Some(bad_request(
            "Md5Mismatch",
            "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
        ))
    } else if sent_crc64.is_some() && sent_crc64 != computed.crc64 {
        Some(bad_request(
            "Crc64Mismatch",
            "The CRC64 value specified in the request did not match with the CRC64 value calculated by the server.",
        ))
    } else {
        None
    };
    if let Some(error) = mismatch {
        data::delete_objects(service, [segment.object.clone()]).await;
        return Err(error);
    }
    Ok((segment, computed))
}

/// `x-ms-content-crc64`: base64 of the CRC's 8 little-endian bytes.
fn parse_crc64(text: &str) -> Result<u64, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok().and_then(|b| <[u8; 8]>::try_from(b).ok());
    bytes.map(u64::from_le_bytes).ok_or_else(|| super::errors::invalid_header("x-ms-content-crc64"))
}

/// The checksum headers of a write response, for the checksums that were computed.
fn checksum_headers(computed: &data::Computed) -> Vec<(&'static str, String)> {
    let mut headers = Vec::new();
    headers.extend(computed.md5.map(|m| ("content-md5", b64(&m))));
    headers.extend(computed.crc64.map(|c| ("x-ms-content-crc64", b64(&c.to_le_bytes()))));
    headers
}

fn write_stamp(record: &BlobRecord) -> Vec<(&'static str, String)> {
    vec![
        ("etag", record.etag.clone()),
        ("last-modified", xml::http_date_nanos(record.last_modified)),
        ("x-ms-request-server-encrypted", "true".into()),
    ]
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
    account: &Account,
    container: &str,
    blob: &str,
) -> Result<Vec<(String, BlockRecord)>, ApiError> {
    let prefix = format!("{}{}", blob_key(&account.name, container, blob), data::BLOCK_SEPARATOR);
    let rows = service.store.scan(BLOCKS, &prefix).await.map_err(store_err)?;
    rows.into_iter().map(|(k, v)| Ok((k[prefix.len()..].to_owned(), decode::<BlockRecord>(&v)?))).collect()
}

/// Staged blocks of a blob with their stored bytes (for guards).
async fn staged_blocks_raw(
    service: &StorageService,
    account: &Account,
    container: &str,
    blob: &str,
) -> Result<Vec<(String, Vec<u8>, BlockRecord)>, ApiError> {
    let prefix = format!("{}{}", blob_key(&account.name, container, blob), data::BLOCK_SEPARATOR);
    let rows = service.store.scan(BLOCKS, &prefix).await.map_err(store_err)?;
    rows.into_iter().map(|(k, v)| Ok((k[prefix.len()..].to_owned(), v.clone(), decode::<BlockRecord>(&v)?))).collect()
}

/// The blob a domain operation acts on.
#[derive(Clone, Copy)]
pub struct BlobTarget<'a> {
    pub account: &'a Account,
    pub container: &'a str,
    pub blob: &'a str,
}

impl BlobRequest {
    /// The blob this request addresses.
    fn target(&self) -> BlobTarget<'_> {
        BlobTarget { account: &self.account, container: self.container(), blob: self.blob() }
    }
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
    conditions: &xml::Conditions,
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
            let staged = staged_blocks_raw(service, account, container, blob).await?;
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

pub async fn put(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    validate_blob_name(request.blob())?;
    // `Op::of` admits a Put Blob only with `x-ms-blob-type: BlockBlob`.
    let started = containers::require(service, &request.account, request.container()).await?;
    let existing = load(service, &request.account, request.container(), request.blob()).await?;
    xml::check_conditions(&request.headers, current(&existing), Access::Write)?;
    let segment_id = format!("put:{}", uuid::Uuid::new_v4().simple());
    let (segment, checksums) = receive_segment(service, request, &segment_id, MAX_PUT_BLOB).await?;
    let metadata = xml::metadata_from_headers(&request.headers)?;
    let mut content = content_headers(request, true);
    content.content_md5 = content.content_md5.or_else(|| checksums.md5.map(|m| b64(&m)));
    let sealed_metadata = data::seal_metadata(
        &request.account,
        &*request.kek(service).await?,
        request.container(),
        Some(request.blob()),
        &metadata,
    )?;
    let now = xml::now_nanos();
    let conditions = xml::Conditions::from_headers(&request.headers);
    let record = commit_blob(service, request.target(), &conditions, &started, |old, _| {
        Ok(BlobRecord {
            v: data::RECORD_VERSION,
            name: request.blob().to_owned(),
            size: segment.len,
            etag: data::new_etag(),
            created: old.map(|e| e.created).unwrap_or(now),
            last_modified: now,
            content: content.clone(),
            sealed_metadata: sealed_metadata.clone(),
            segments: vec![segment.clone()],
        })
    })
    .await;
    let record = match record {
        Ok(record) => record,
        Err(e) => {
            data::delete_objects(service, [segment.object.clone()]).await;
            return Err(Failure::from(e));
        }
    };
    let mut headers = write_stamp(&record);
    headers.extend(checksum_headers(&checksums));
    Ok(respond(StatusCode::CREATED, headers))
}

/// A block id: base64 of at most 64 bytes.
fn parse_block_id(id: Option<&str>) -> Result<String, ApiError> {
    let invalid =
        || bad_request("InvalidBlockId", "The specified block ID is invalid. The block ID must be Base64-encoded.");
    let id = id.filter(|i| !i.is_empty()).ok_or_else(invalid)?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(id).map_err(|_| invalid())?;
    if decoded.is_empty() || decoded.len() > 64 {
        return Err(invalid());
    }
    Ok(id.to_owned())
}

pub async fn put_block(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    validate_blob_name(request.blob())?;
    let id = parse_block_id(request.param("blockid"))?;
    let started = containers::require(service, &request.account, request.container()).await?;
    let (segment, checksums) = receive_segment(service, request, &format!("{BLOCK_PREFIX}{id}"), MAX_BLOCK).await?;
    let (account, container, blob) = (&request.account, request.container(), request.blob());
    let key = block_key(&account.name, container, blob, &id);
    let new_object = segment.object.clone();
    let record = encode(&BlockRecord { v: data::RECORD_VERSION, segment, created: byos_core::time::unix_now() })?;
    let staged = data::optimistic(service, || async {
        // Guarded on the container the request began in, as blob commits are: a container deleted
        // (or deleted and re-created) while the body streamed makes this fail instead of leaving a
        // ghost block.
        let parent = containers::read_same_container(service, account, &started).await?;
        let old: data::Read<BlockRecord> = data::read(service, BLOCKS, &key).await?;
        if old.record.is_none() {
            check_uncommitted_limit(service, account, container, blob).await?;
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
            return Err(Failure::from(e));
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
    let mut headers = vec![("x-ms-request-server-encrypted", "true".to_owned())];
    headers.extend(checksum_headers(&checksums));
    Ok(respond(StatusCode::CREATED, headers))
}

/// Azure keeps at most 100,000 uncommitted blocks per blob. Racing Put Blocks of new ids can each
/// pass this check, so the bound holds up to the number of concurrent requests.
async fn check_uncommitted_limit(
    service: &StorageService,
    account: &Account,
    container: &str,
    blob: &str,
) -> Result<(), ApiError> {
    let prefix = format!("{}{}", blob_key(&account.name, container, blob), data::BLOCK_SEPARATOR);
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

pub async fn put_block_list(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    validate_blob_name(request.blob())?;
    let body = request.small_body(MAX_BLOCK_LIST_BODY).await?;
    let entries = xml::parse_block_list(&body)?;
    if entries.len() > MAX_COMMITTED_BLOCKS {
        return Err(Failure::from(bad_request(
            "BlockListTooLong",
            "The block list may not contain more than 50,000 blocks.",
        )));
    }
    let (account, container, blob) = (&request.account, request.container(), request.blob());
    let metadata = xml::metadata_from_headers(&request.headers)?;
    let sealed_metadata =
        data::seal_metadata(account, &*request.kek(service).await?, container, Some(blob), &metadata)?;
    let content = content_headers(request, false);
    let now = xml::now_nanos();
    let started = containers::require(service, account, container).await?;
    let conditions = xml::Conditions::from_headers(&request.headers);
    let record = commit_blob(service, request.target(), &conditions, &started, |old, staged| {
        // Indexed once: a list of n entries is resolved in O(n), not O(n x blocks).
        let staged_by_id: HashMap<&str, &Segment> = staged.iter().map(|(id, _, b)| (id.as_str(), &b.segment)).collect();
        let committed_by_id: HashMap<&str, &Segment> = old
            .iter()
            .flat_map(|o| o.segments.iter())
            .filter_map(|s| s.segment_id.strip_prefix(BLOCK_PREFIX).map(|id| (id, s)))
            .collect();
        let find_staged = |id: &str| staged_by_id.get(id).map(|s| (*s).clone());
        let find_committed = |id: &str| committed_by_id.get(id).map(|s| (*s).clone());
        let mut segments = Vec::with_capacity(entries.len());
        for (source, id) in &entries {
            let found = match source {
                BlockSource::Uncommitted => find_staged(id),
                BlockSource::Committed => find_committed(id),
                BlockSource::Latest => find_staged(id).or_else(|| find_committed(id)),
            };
            segments
                .push(found.ok_or_else(|| bad_request("InvalidBlockList", "The specified block list is invalid."))?);
        }
        Ok(BlobRecord {
            v: data::RECORD_VERSION,
            name: blob.to_owned(),
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
    Ok(respond(StatusCode::CREATED, write_stamp(&record)))
}

pub async fn get_block_list(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let (account, container, blob) = (&request.account, request.container(), request.blob());
    let kind = request.param("blocklisttype").unwrap_or("committed").to_ascii_lowercase();
    if !["committed", "uncommitted", "all"].contains(&kind.as_str()) {
        return Err(Failure::from(super::errors::invalid_query("blocklisttype")));
    }
    let existing = load(service, account, container, blob).await?;
    let staged = staged_blocks(service, account, container, blob).await?;
    if existing.is_none() && staged.is_empty() {
        return Err(Failure::from(require(service, request).await.err().unwrap_or_else(blob_not_found)));
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    if kind != "uncommitted" {
        out.push_str("<CommittedBlocks>");
        for s in existing.iter().flat_map(|e| e.segments.iter()).filter(|s| s.segment_id.starts_with(BLOCK_PREFIX)) {
            out.push_str(&format!(
                "<Block><Name>{}</Name><Size>{}</Size></Block>",
                escape(&s.segment_id[BLOCK_PREFIX.len()..]),
                s.len
            ));
        }
        out.push_str("</CommittedBlocks>");
    }
    if kind != "committed" {
        out.push_str("<UncommittedBlocks>");
        for (id, block) in &staged {
            out.push_str(&format!("<Block><Name>{}</Name><Size>{}</Size></Block>", escape(id), block.segment.len));
        }
        out.push_str("</UncommittedBlocks>");
    }
    out.push_str("</BlockList>");
    let mut response = xml_response(out);
    if let Some(e) = &existing {
        for (name, value) in [
            ("etag", e.etag.clone()),
            ("last-modified", xml::http_date_nanos(e.last_modified)),
            ("x-ms-blob-content-length", e.size.to_string()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
    }
    Ok(response)
}

/// Parses `bytes=a-b` / `bytes=a-`; `None` for an absent or unparseable range (Azure then serves
/// the whole blob).
fn parse_range(text: Option<&str>) -> Option<(u64, Option<u64>)> {
    let spec = text?.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = end.trim();
    if end.is_empty() {
        return Some((start, None));
    }
    Some((start, Some(end.parse().ok()?)))
}

/// Properties every GET / HEAD of a blob carries.
fn blob_headers(
    account: &Account,
    kek: &Kek,
    container: &str,
    record: &BlobRecord,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut headers: Vec<(String, String)> = vec![
        ("etag".into(), record.etag.clone()),
        ("last-modified".into(), xml::http_date_nanos(record.last_modified)),
        ("x-ms-creation-time".into(), xml::http_date_nanos(record.created)),
        ("x-ms-blob-type".into(), "BlockBlob".into()),
        ("accept-ranges".into(), "bytes".into()),
        ("x-ms-server-encrypted".into(), "true".into()),
        ("x-ms-lease-state".into(), "available".into()),
        ("x-ms-lease-status".into(), "unlocked".into()),
        (
            "content-type".into(),
            record.content.content_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
        ),
    ];
    let c = &record.content;
    for (name, value) in [
        ("content-encoding", &c.content_encoding),
        ("content-language", &c.content_language),
        ("content-disposition", &c.content_disposition),
        ("cache-control", &c.cache_control),
    ] {
        if let Some(v) = value {
            headers.push((name.into(), v.clone()));
        }
    }
    let committed = record.segments.iter().filter(|s| s.segment_id.starts_with(BLOCK_PREFIX)).count();
    if committed > 0 {
        headers.push(("x-ms-blob-committed-block-count".into(), committed.to_string()));
    }
    for (name, value) in
        data::open_metadata(account, kek, container, Some(&record.name), record.sealed_metadata.as_deref())?
    {
        headers.push((format!("x-ms-meta-{name}"), value));
    }
    Ok(headers)
}

pub async fn get(service: &StorageService, request: &BlobRequest, with_body: bool) -> Result<Response, Failure> {
    let record = require(service, request).await?;
    xml::check_conditions(
        &request.headers,
        Some(Current { etag: &record.etag, last_modified_nanos: record.last_modified }),
        Access::Read,
    )?;
    let (account, container) = (&request.account, request.container());
    let kek = request.kek(service).await?;
    let mut headers = blob_headers(account, &kek, container, &record)?;
    let range =
        if with_body { parse_range(request.header("x-ms-range").or_else(|| request.header("range"))) } else { None };
    let range_checksums = if with_body { range_checksums_asked(request, range.is_some())? } else { Default::default() };
    let (status, start, end) = match range {
        Some((start, _)) if start >= record.size => {
            return Err(Failure::from(
                err(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
                    .with_header("content-range", format!("bytes */{}", record.size)),
            ));
        }
        Some((start, end)) => {
            let end = end.map(|e| e.min(record.size - 1)).unwrap_or(record.size - 1);
            if end < start {
                return Err(Failure::from(
                    err(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
                        .with_header("content-range", format!("bytes */{}", record.size)),
                ));
            }
            headers.push(("content-range".into(), format!("bytes {start}-{end}/{}", record.size)));
            if let Some(md5) = &record.content.content_md5 {
                headers.push(("x-ms-blob-content-md5".into(), md5.clone()));
            }
            if range_checksums.any() && end + 1 - start > MAX_CHECKSUMMED_RANGE {
                return Err(Failure::from(bad_request(
                    "InvalidRange",
                    "A range checksum (x-ms-range-get-content-md5 / -crc64) is computed only for ranges of at most 4 MiB.",
                )));
            }
            (StatusCode::PARTIAL_CONTENT, start, end + 1)
        }
        None => {
            if let Some(md5) = &record.content.content_md5 {
                headers.push(("content-md5".into(), md5.clone()));
            }
            (StatusCode::OK, 0, record.size)
        }
    };
    let structured = with_body && structured::requested(&request.headers)?;
    let content = if with_body && end > start {
        Some(data::read_range(service, account, &kek, container, &record.name, &record.segments, start, end)?)
    } else {
        None
    };
    let body = if structured {
        // The range's content framed with CRC64s, for clients that validate downloads.
        headers.push((structured::HEADER.into(), structured::V1_CRC64.into()));
        headers.push((structured::LENGTH_HEADER.into(), (end - start).to_string()));
        headers.push(("content-length".into(), structured::encoded_len(end - start).to_string()));
        let content: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>> =
            match content {
                Some(stream) => Box::pin(stream),
                None => Box::pin(futures_util::stream::empty()),
            };
        Body::from_stream(structured::encode(end - start, content)?)
    } else if range_checksums.any() {
        // At most 4 MiB: read it whole, so its checksums can precede it.
        let bytes = match content {
            Some(stream) => {
                futures_util::TryStreamExt::try_concat(stream.map_ok(|b| b.to_vec())).await.or_internal()?
            }
            None => Vec::new(),
        };
        headers.extend(range_checksums.headers(&bytes));
        headers.push(("content-length".into(), bytes.len().to_string()));
        Body::from(bytes)
    } else {
        headers.push(("content-length".into(), (end - start).to_string()));
        content.map(Body::from_stream).unwrap_or_else(Body::empty)
    };
    let mut response = respond(status, headers);
    *response.body_mut() = body;
    Ok(response)
}

/// The largest range Azure returns a checksum of.
const MAX_CHECKSUMMED_RANGE: u64 = 4 * 1024 * 1024;

/// Which checksums of the range a Get Blob asked for (`x-ms-range-get-content-md5` /
/// `x-ms-range-get-content-crc64: true`, as the SDKs send with `validate_content`).
#[derive(Default)]
struct RangeChecksums {
    md5: bool,
    crc64: bool,
}

impl RangeChecksums {
    fn any(&self) -> bool {
        self.md5 || self.crc64
    }

    fn headers(&self, bytes: &[u8]) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if self.md5 {
            headers.push(("content-md5".to_owned(), b64(&<md5::Md5 as md5::Digest>::digest(bytes))));
        }
        if self.crc64 {
            headers.push(("x-ms-content-crc64".to_owned(), b64(&data::CRC64.checksum(bytes).to_le_bytes())));
        }
        headers
    }
}

/// The range checksums asked for; without a range, asking is a bad request, as in Azure.
fn range_checksums_asked(request: &BlobRequest, has_range: bool) -> Result<RangeChecksums, ApiError> {
    let flag = |name: &'static str| match request.header(name) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(super::errors::invalid_header(name)),
    };
    let asked =
        RangeChecksums { md5: flag("x-ms-range-get-content-md5")?, crc64: flag("x-ms-range-get-content-crc64")? };
    if asked.any() && !has_range {
        return Err(bad_request(
            "InvalidHeaderValue",
            "x-ms-range-get-content-md5 and x-ms-range-get-content-crc64 need a Range (or x-ms-range) header.",
        ));
    }
    Ok(asked)
}

pub async fn metadata(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let record = require(service, request).await?;
    let mut headers = vec![
        ("etag".to_owned(), record.etag.clone()),
        ("last-modified".to_owned(), xml::http_date_nanos(record.last_modified)),
    ];
    let kek = request.kek(service).await?;
    for (name, value) in data::open_metadata(
        &request.account,
        &kek,
        request.container(),
        Some(&record.name),
        record.sealed_metadata.as_deref(),
    )? {
        headers.push((format!("x-ms-meta-{name}"), value));
    }
    Ok(respond(StatusCode::OK, headers))
}

/// Changes a blob's record (not its data), guarded on the version the conditions were checked on.
async fn update_record(
    service: &StorageService,
    request: &BlobRequest,
    change: impl Fn(&mut BlobRecord),
) -> Result<Response, Failure> {
    let key = blob_key(&request.account.name, request.container(), request.blob());
    let record = data::optimistic(service, || async {
        let read: data::Read<BlobRecord> = data::read(service, BLOBS, &key).await?;
        let Some(mut record) = read.record else {
            return Err(require(service, request).await.err().unwrap_or_else(blob_not_found));
        };
        xml::check_conditions(
            &request.headers,
            Some(Current { etag: &record.etag, last_modified_nanos: record.last_modified }),
            Access::Write,
        )?;
        change(&mut record);
        record.etag = data::new_etag();
        record.last_modified = xml::now_nanos();
        let batch =
            Batch::new().expect_unchanged(BLOBS, key.clone(), read.bytes).put(BLOBS, key.clone(), encode(&record)?);
        Ok((batch, record))
    })
    .await?;
    Ok(respond(StatusCode::OK, write_stamp(&record)))
}

pub async fn set_metadata(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let metadata = xml::metadata_from_headers(&request.headers)?;
    let sealed = data::seal_metadata(
        &request.account,
        &*request.kek(service).await?,
        request.container(),
        Some(request.blob()),
        &metadata,
    )?;
    update_record(service, request, |r| r.sealed_metadata = sealed.clone()).await
}

pub async fn set_properties(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let content = content_headers(request, false);
    update_record(service, request, |r| r.content = content.clone()).await
}

pub async fn delete(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let (account, container, blob) = (&request.account, request.container(), request.blob());
    let key = blob_key(&account.name, container, blob);
    let garbage = data::optimistic(service, || async {
        let read: data::Read<BlobRecord> = data::read(service, BLOBS, &key).await?;
        let Some(record) = read.record else {
            return Err(require(service, request).await.err().unwrap_or_else(blob_not_found));
        };
        xml::check_conditions(
            &request.headers,
            Some(Current { etag: &record.etag, last_modified_nanos: record.last_modified }),
            Access::Write,
        )?;
        let mut batch = Batch::new().expect_unchanged(BLOBS, key.clone(), read.bytes).delete(BLOBS, key.clone());
        let mut garbage = orphaned(&record.segments, &[]);
        for (id, block) in staged_blocks(service, account, container, blob).await? {
            batch = batch.delete(BLOCKS, block_key(&account.name, container, blob, &id));
            garbage.push(block.segment.object);
        }
        Ok((batch, garbage))
    })
    .await?;
    data::delete_objects(service, garbage).await;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// One entry of a listing page.
enum Listed {
    Blob(Box<BlobRecord>),
    Prefix(String),
}

pub async fn list(service: &StorageService, request: &BlobRequest) -> Result<Response, Failure> {
    let (account, container) = (&request.account, request.container());
    containers::require(service, account, container).await?;
    let prefix = request.param("prefix").unwrap_or_default();
    let delimiter = request.param("delimiter").filter(|d| !d.is_empty());
    let marker = request.param("marker").filter(|m| !m.is_empty());
    let max = containers::max_results(request)?;
    let include_metadata = request.param("include").is_some_and(|i| i.split(',').any(|p| p == "metadata"));
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
                None => Listed::Blob(Box::new(decode(bytes)?)),
            };
            if items.len() == max {
                more = true;
                break 'scan;
            }
            items.push(item);
        }
    }
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}\" ContainerName=\"{}\"><Prefix>{}</Prefix>",
        escape(&service.endpoint(&account.name)),
        escape(container),
        escape(prefix)
    );
    if let Some(m) = marker {
        out.push_str(&format!("<Marker>{}</Marker>", escape(m)));
    }
    if request.param("maxresults").is_some() {
        out.push_str(&format!("<MaxResults>{max}</MaxResults>"));
    }
    if let Some(d) = delimiter {
        out.push_str(&format!("<Delimiter>{}</Delimiter>", escape(d)));
    }
    out.push_str("<Blobs>");
    let kek = if include_metadata { Some(request.kek(service).await?) } else { None };
    for item in &items {
        match item {
            Listed::Prefix(p) => out.push_str(&format!("<BlobPrefix><Name>{}</Name></BlobPrefix>", escape(p))),
            Listed::Blob(b) => out.push_str(&blob_xml(account, kek.as_deref(), container, b)?),
        }
    }
    out.push_str("</Blobs>");
    let next = if more {
        items.last().map(|i| match i {
            Listed::Blob(b) => b.name.clone(),
            Listed::Prefix(p) => p.clone(),
        })
    } else {
        None
    };
    out.push_str(&format!("<NextMarker>{}</NextMarker></EnumerationResults>", escape(&next.unwrap_or_default())));
    Ok(xml_response(out))
}

fn blob_xml(account: &Account, kek: Option<&Kek>, container: &str, b: &BlobRecord) -> Result<String, ApiError> {
    let c = &b.content;
    let opt = |tag: &str, v: &Option<String>| format!("<{tag}>{}</{tag}>", escape(v.as_deref().unwrap_or_default()));
    let mut out = format!(
        "<Blob><Name>{}</Name><Properties><Creation-Time>{}</Creation-Time><Last-Modified>{}</Last-Modified><Etag>{}</Etag><Content-Length>{}</Content-Length><Content-Type>{}</Content-Type>{}{}{}{}{}<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted></Properties>",
        escape(&b.name),
        xml::http_date_nanos(b.created),
        xml::http_date_nanos(b.last_modified),
        escape(&b.etag),
        b.size,
        escape(c.content_type.as_deref().unwrap_or("application/octet-stream")),
        opt("Content-Encoding", &c.content_encoding),
        opt("Content-Language", &c.content_language),
        opt("Content-MD5", &c.content_md5),
        opt("Cache-Control", &c.cache_control),
        opt("Content-Disposition", &c.content_disposition),
    );
    if let Some(kek) = kek {
        let metadata: BTreeMap<String, String> =
            data::open_metadata(account, kek, container, Some(&b.name), b.sealed_metadata.as_deref())?;
        out.push_str(&metadata_xml(&metadata));
    }
    out.push_str("</Blob>");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=0-99")), Some((0, Some(99))));
        assert_eq!(parse_range(Some("bytes=5-")), Some((5, None)));
        assert_eq!(parse_range(Some("bytes=100-50")), Some((100, Some(50))));
        assert_eq!(parse_range(Some("items=0-1")), None);
        assert_eq!(parse_range(None), None);
    }

    #[test]
    fn block_ids() {
        assert!(parse_block_id(Some("QUFB")).is_ok());
        assert!(parse_block_id(Some("%%%notbase64")).is_err());
        assert!(parse_block_id(Some("")).is_err());
    }
}
