//! Blob requests: parameters from headers, query and body; answers in Azure's headers and XML.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use byos_core::{ApiError, OrInternal};
use byos_http::Failure;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use super::{BlobRequest, max_results, metadata_headers, metadata_xml, respond, xml_response};
use crate::StorageService;
use crate::blob::blobs::{
    self as domain, BLOCK_PREFIX, BlobListing, ContentStream, Listed, NewBlob, OpenBlob, ReadStream, SentChecksums, b64,
};
use crate::blob::data::{self, BlobRecord, ContentHeaders};
use crate::blob::errors::{bad_request, err, invalid_header, invalid_query};
use crate::blob::ops::Permit;
use crate::blob::structured;
use crate::blob::xml::{self, Conditions, escape};

const MAX_BLOCK_LIST_BODY: usize = 8 * 1024 * 1024;

/// The largest range Azure returns a checksum of.
const MAX_CHECKSUMMED_RANGE: u64 = 4 * 1024 * 1024;

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

/// The checksums the client sent with the body (`Content-MD5`, `x-ms-content-crc64`).
fn sent_checksums(request: &BlobRequest) -> Result<SentChecksums, ApiError> {
    let crc64 = match request.header("x-ms-content-crc64") {
        Some(text) => Some(parse_crc64(text)?),
        None => None,
    };
    Ok(SentChecksums { md5: request.header("content-md5").map(str::to_owned), crc64 })
}

/// `x-ms-content-crc64`: base64 of the CRC's 8 little-endian bytes.
fn parse_crc64(text: &str) -> Result<u64, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).ok().and_then(|b| <[u8; 8]>::try_from(b).ok());
    bytes.map(u64::from_le_bytes).ok_or_else(|| invalid_header("x-ms-content-crc64"))
}

fn incomplete_body() -> ApiError {
    bad_request("IncompleteBody", "The request body is incomplete.")
}

/// The request body's content: as sent, or unframed when it is a structured message (each
/// segment's CRC checked as it arrives, the whole message's at its end).
fn content_stream(request: &BlobRequest) -> Result<ContentStream, ApiError> {
    let decoder = structured::decoder_for(&request.headers)?;
    let frames = request.take_body().into_data_stream();
    let Some(decoder) = decoder else {
        return Ok(Box::pin(frames.map(|frame| frame.map_err(|_| incomplete_body()))));
    };
    let unframed = futures_util::stream::try_unfold((frames, Some(decoder)), |(mut frames, decoder)| async move {
        let Some(mut decoder) = decoder else { return Ok::<_, ApiError>(None) };
        match frames.next().await {
            Some(frame) => {
                let frame = frame.map_err(|_| incomplete_body())?;
                let pieces: Vec<Bytes> = decoder.feed(&frame)?.into_iter().map(|p| frame.slice_ref(p)).collect();
                Ok(Some((futures_util::stream::iter(pieces.into_iter().map(Ok)), (frames, Some(decoder)))))
            }
            None => {
                decoder.finish()?;
                Ok(None)
            }
        }
    });
    Ok(Box::pin(unframed.try_flatten()))
}

/// The checksum headers of a write response, for the checksums that were computed.
fn checksum_headers(computed: &data::Computed) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    headers.extend(computed.md5.map(|m| ("content-md5".to_owned(), b64(&m))));
    headers.extend(computed.crc64.map(|c| ("x-ms-content-crc64".to_owned(), b64(&c.to_le_bytes()))));
    headers
}

fn write_stamp(record: &BlobRecord) -> Vec<(String, String)> {
    vec![
        ("etag".into(), record.etag.clone()),
        ("last-modified".into(), xml::http_date_nanos(record.last_modified)),
        ("x-ms-request-server-encrypted".into(), "true".into()),
    ]
}

pub async fn put(service: &StorageService, request: &BlobRequest, permit: &Permit) -> Result<Response, Failure> {
    // `recognise` admits a Put Blob only with `x-ms-blob-type: BlockBlob`.
    let new = NewBlob {
        sent: sent_checksums(request)?,
        headers: content_headers(request, true),
        metadata: xml::metadata_from_headers(&request.headers)?,
        conditions: Conditions::from_headers(&request.headers),
        content: content_stream(request)?,
    };
    let (record, computed) = domain::put(service, permit, new).await?;
    let mut headers = write_stamp(&record);
    headers.extend(checksum_headers(&computed));
    Ok(respond(StatusCode::CREATED, headers))
}

pub async fn put_block(service: &StorageService, request: &BlobRequest, permit: &Permit) -> Result<Response, Failure> {
    let id = domain::parse_block_id(request.param("blockid"))?;
    let sent = sent_checksums(request)?;
    let computed = domain::put_block(service, permit, &id, content_stream(request)?, &sent).await?;
    let mut headers = vec![("x-ms-request-server-encrypted".to_owned(), "true".to_owned())];
    headers.extend(checksum_headers(&computed));
    Ok(respond(StatusCode::CREATED, headers))
}

pub async fn put_block_list(
    service: &StorageService,
    request: &BlobRequest,
    permit: &Permit,
) -> Result<Response, Failure> {
    let body = request.small_body(MAX_BLOCK_LIST_BODY).await?;
    let entries = xml::parse_block_list(&body)?;
    let metadata = xml::metadata_from_headers(&request.headers)?;
    let conditions = Conditions::from_headers(&request.headers);
    let record =
        domain::put_block_list(service, permit, &entries, content_headers(request, false), &metadata, &conditions)
            .await?;
    Ok(respond(StatusCode::CREATED, write_stamp(&record)))
}

pub async fn get_block_list(
    service: &StorageService,
    request: &BlobRequest,
    permit: &Permit,
) -> Result<Response, Failure> {
    let kind = request.param("blocklisttype").unwrap_or("committed").to_ascii_lowercase();
    if !["committed", "uncommitted", "all"].contains(&kind.as_str()) {
        return Err(Failure::from(invalid_query("blocklisttype")));
    }
    let list = domain::block_list(service, permit).await?;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    if kind != "uncommitted" {
        out.push_str("<CommittedBlocks>");
        let committed = list.committed.iter().flat_map(|e| e.segments.iter());
        for s in committed.filter(|s| s.segment_id.starts_with(BLOCK_PREFIX)) {
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
        for (id, block) in &list.staged {
            out.push_str(&format!("<Block><Name>{}</Name><Size>{}</Size></Block>", escape(id), block.segment.len));
        }
        out.push_str("</UncommittedBlocks>");
    }
    out.push_str("</BlockList>");
    let mut headers = vec![("content-type".to_owned(), "application/xml".to_owned())];
    if let Some(e) = &list.committed {
        headers.extend([
            ("etag".to_owned(), e.etag.clone()),
            ("last-modified".to_owned(), xml::http_date_nanos(e.last_modified)),
            ("x-ms-blob-content-length".to_owned(), e.size.to_string()),
        ]);
    }
    let mut response = respond(StatusCode::OK, headers);
    *response.body_mut() = Body::from(out);
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
fn blob_headers(open: &OpenBlob) -> Vec<(String, String)> {
    let record = &open.record;
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
    headers.extend(metadata_headers(&open.metadata));
    headers
}

fn invalid_range(size: u64) -> ApiError {
    err(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
        .with_header("content-range", format!("bytes */{size}"))
}

pub async fn get(
    service: &StorageService,
    request: &BlobRequest,
    permit: &Permit,
    with_body: bool,
) -> Result<Response, Failure> {
    let open = domain::open(service, permit, &Conditions::from_headers(&request.headers)).await?;
    let record = &open.record;
    let mut headers = blob_headers(&open);
    let range =
        if with_body { parse_range(request.header("x-ms-range").or_else(|| request.header("range"))) } else { None };
    let range_checksums = if with_body { range_checksums_asked(request, range.is_some())? } else { Default::default() };
    let (status, start, end) = match range {
        Some((start, _)) if start >= record.size => return Err(Failure::from(invalid_range(record.size))),
        Some((start, end)) => {
            let end = end.map(|e| e.min(record.size - 1)).unwrap_or(record.size - 1);
            if end < start {
                return Err(Failure::from(invalid_range(record.size)));
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
    let content = if with_body && end > start { Some(open.read(service, permit, start, end)?) } else { None };
    let body = if structured {
        // The range's content framed with CRC64s, for clients that validate downloads.
        headers.push((structured::HEADER.into(), structured::V1_CRC64.into()));
        headers.push((structured::LENGTH_HEADER.into(), (end - start).to_string()));
        headers.push(("content-length".into(), structured::encoded_len(end - start).to_string()));
        let content: ReadStream = content.unwrap_or_else(|| Box::pin(futures_util::stream::empty()));
        Body::from_stream(structured::encode(end - start, content)?)
    } else if range_checksums.any() {
        // At most 4 MiB: read it whole, so its checksums can precede it.
        let bytes = match content {
            Some(stream) => stream.map_ok(|b| b.to_vec()).try_concat().await.or_internal()?,
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
        Some(_) => Err(invalid_header(name)),
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

pub async fn metadata(service: &StorageService, permit: &Permit) -> Result<Response, Failure> {
    let open = domain::metadata(service, permit).await?;
    let mut headers = vec![
        ("etag".to_owned(), open.record.etag.clone()),
        ("last-modified".to_owned(), xml::http_date_nanos(open.record.last_modified)),
    ];
    headers.extend(metadata_headers(&open.metadata));
    Ok(respond(StatusCode::OK, headers))
}

pub async fn set_metadata(
    service: &StorageService,
    request: &BlobRequest,
    permit: &Permit,
) -> Result<Response, Failure> {
    let metadata = xml::metadata_from_headers(&request.headers)?;
    let conditions = Conditions::from_headers(&request.headers);
    let record = domain::set_metadata(service, permit, &metadata, &conditions).await?;
    Ok(respond(StatusCode::OK, write_stamp(&record)))
}

pub async fn set_properties(
    service: &StorageService,
    request: &BlobRequest,
    permit: &Permit,
) -> Result<Response, Failure> {
    let conditions = Conditions::from_headers(&request.headers);
    let record = domain::set_properties(service, permit, content_headers(request, false), &conditions).await?;
    Ok(respond(StatusCode::OK, write_stamp(&record)))
}

pub async fn delete(service: &StorageService, request: &BlobRequest, permit: &Permit) -> Result<Response, Failure> {
    domain::delete(service, permit, &Conditions::from_headers(&request.headers)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub async fn list(service: &StorageService, request: &BlobRequest, permit: &Permit) -> Result<Response, Failure> {
    let listing = BlobListing {
        prefix: request.param("prefix").unwrap_or_default().to_owned(),
        delimiter: request.param("delimiter").filter(|d| !d.is_empty()).map(str::to_owned),
        marker: request.param("marker").filter(|m| !m.is_empty()).map(str::to_owned),
        max: max_results(request)?,
        include_metadata: request.param("include").is_some_and(|i| i.split(',').any(|p| p == "metadata")),
    };
    let page = domain::list(service, permit, &listing).await?;
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}\" ContainerName=\"{}\"><Prefix>{}</Prefix>",
        escape(&service.endpoint(&permit.account().name)),
        escape(permit.container()),
        escape(&listing.prefix)
    );
    if let Some(m) = &listing.marker {
        out.push_str(&format!("<Marker>{}</Marker>", escape(m)));
    }
    if request.param("maxresults").is_some() {
        out.push_str(&format!("<MaxResults>{}</MaxResults>", listing.max));
    }
    if let Some(d) = &listing.delimiter {
        out.push_str(&format!("<Delimiter>{}</Delimiter>", escape(d)));
    }
    out.push_str("<Blobs>");
    for item in &page.items {
        match item {
            Listed::Prefix(p) => out.push_str(&format!("<BlobPrefix><Name>{}</Name></BlobPrefix>", escape(p))),
            Listed::Blob(b, metadata) => out.push_str(&blob_xml(b, metadata.as_ref())),
        }
    }
    out.push_str("</Blobs>");
    out.push_str(&format!(
        "<NextMarker>{}</NextMarker></EnumerationResults>",
        escape(page.next.as_deref().unwrap_or_default())
    ));
    Ok(xml_response(out))
}

fn blob_xml(b: &BlobRecord, metadata: Option<&BTreeMap<String, String>>) -> String {
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
    if let Some(metadata) = metadata {
        out.push_str(&metadata_xml(metadata));
    }
    out.push_str("</Blob>");
    out
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
}
