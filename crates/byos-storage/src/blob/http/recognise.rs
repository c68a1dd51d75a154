//! Which blob operation a request asks for, from its method, `restype`, `comp`, path depth and
//! headers; and the refusal of everything byos does not implement.

use axum::http::Method;
use byos_core::ApiError;

use super::BlobRequest;
use crate::blob::errors::{bad_request, invalid_header};
use crate::blob::ops::Op;

/// Recognises the operation from method, `restype`, `comp` and path depth. A request that
/// selects anything byos does not implement ([`UNIMPLEMENTED`]) is refused first, whatever
/// operation it would otherwise look like.
pub fn operation(request: &BlobRequest) -> Result<Op, ApiError> {
    refuse_unimplemented(request)?;
    let op = recognise(request)?;
    if op == Op::PutBlob {
        require_block_blob(request)?;
    }
    Ok(op)
}

fn recognise(request: &BlobRequest) -> Result<Op, ApiError> {
    let restype = request.param("restype").unwrap_or_default();
    let comp = request.param("comp").unwrap_or_default();
    let m = &request.method;
    let get = *m == Method::GET || *m == Method::HEAD;
    let op = match (request.container.is_some(), request.blob.is_some()) {
        (false, _) => match (m.as_str(), restype, comp) {
            ("GET", _, "list") => Op::ListContainers,
            ("POST", "service", "userdelegationkey") => Op::GetUserDelegationKey,
            ("GET", "service", "properties") => Op::GetServiceProperties,
            _ => return Err(unsupported(request)),
        },
        (true, false) if restype == "container" => match (m.as_str(), comp) {
            ("PUT", "") => Op::CreateContainer,
            ("DELETE", "") => Op::DeleteContainer,
            (_, "") if get => Op::GetContainerProperties,
            (_, "metadata") if get => Op::GetContainerMetadata,
            ("PUT", "metadata") => Op::SetContainerMetadata,
            (_, "acl") if get => Op::GetContainerAcl,
            ("PUT", "acl") => Op::SetContainerAcl,
            ("GET", "list") => Op::ListBlobs,
            _ => return Err(unsupported(request)),
        },
        (true, false) => return Err(unsupported(request)),
        (true, true) => match (m.as_str(), comp) {
            ("PUT", "") => Op::PutBlob,
            ("PUT", "block") => Op::PutBlock,
            ("PUT", "blocklist") => Op::PutBlockList,
            ("GET", "blocklist") => Op::GetBlockList,
            ("GET", "") => Op::GetBlob,
            ("HEAD", "") => Op::GetBlobProperties,
            (_, "metadata") if get => Op::GetBlobMetadata,
            ("PUT", "metadata") => Op::SetBlobMetadata,
            ("PUT", "properties") => Op::SetBlobProperties,
            ("DELETE", "") => Op::DeleteBlob,
            _ => return Err(unsupported(request)),
        },
    };
    Ok(op)
}

/// What part of a request selects a feature.
enum Selector {
    /// `comp={value}` (compared case-insensitively).
    Comp(&'static str),
    /// A query parameter, whatever its value.
    Query(&'static str),
    /// A request header, whatever its value.
    Header(&'static str),
    /// A request header with this value (compared case-insensitively).
    HeaderValue(&'static str, &'static str),
}

/// Everything a client can select by header or query that byos does not implement. Serving such a
/// request as the neighbouring operation would silently do something else (a Copy Blob became an
/// empty Put Blob and truncated its destination; `?snapshot=` acted on the live blob), so each is
/// refused before anything is read or changed. A new feature removes its rows here.
const UNIMPLEMENTED: &[(Selector, &str)] = &[
    (Selector::Query("snapshot"), "Blob snapshots (snapshot)"),
    (Selector::Query("versionid"), "Blob versions (versionid)"),
    (Selector::Query("prevsnapshot"), "Page blob ranges diff (prevsnapshot)"),
    (Selector::Comp("copy"), "Abort Copy Blob (comp=copy)"),
    (Selector::Comp("incrementalcopy"), "Incremental Copy Blob (comp=incrementalcopy)"),
    (Selector::Comp("lease"), "Leases (comp=lease)"),
    (Selector::Comp("snapshot"), "Snapshot Blob (comp=snapshot)"),
    (Selector::Comp("tier"), "Access tiers (comp=tier)"),
    (Selector::Comp("tags"), "Blob index tags (comp=tags)"),
    (Selector::Comp("blobs"), "Find Blobs by Tags (comp=blobs)"),
    (Selector::Comp("appendblock"), "Append blobs (comp=appendblock)"),
    (Selector::Comp("seal"), "Append blobs (comp=seal)"),
    (Selector::Comp("page"), "Page blobs (comp=page)"),
    (Selector::Comp("pagelist"), "Page blobs (comp=pagelist)"),
    (Selector::Comp("undelete"), "Soft delete (comp=undelete)"),
    (Selector::Comp("expiry"), "Blob expiry (comp=expiry)"),
    (Selector::Comp("immutabilitypolicies"), "Immutability policies (comp=immutabilityPolicies)"),
    (Selector::Comp("legalhold"), "Legal hold (comp=legalhold)"),
    (Selector::Comp("query"), "Query Blob Contents (comp=query)"),
    (Selector::Comp("rename"), "Rename Container (comp=rename)"),
    (Selector::Comp("batch"), "Blob Batch (comp=batch)"),
    (Selector::Header("x-ms-copy-source"), "Copy Blob, Put Blob/Block From URL (x-ms-copy-source)"),
    (Selector::Header("x-ms-copy-action"), "Abort Copy Blob (x-ms-copy-action)"),
    (Selector::Header("x-ms-lease-id"), "Leases (x-ms-lease-id)"),
    (Selector::Header("x-ms-lease-action"), "Leases (x-ms-lease-action)"),
    (Selector::Header("x-ms-access-tier"), "Access tiers (x-ms-access-tier)"),
    (Selector::Header("x-ms-rehydrate-priority"), "Access tiers (x-ms-rehydrate-priority)"),
    (Selector::Header("x-ms-tags"), "Blob index tags (x-ms-tags)"),
    (Selector::Header("x-ms-if-tags"), "Blob index tag conditions (x-ms-if-tags)"),
    (Selector::Header("x-ms-blob-content-length"), "Page blobs (x-ms-blob-content-length)"),
    (Selector::Header("x-ms-blob-sequence-number"), "Page blobs (x-ms-blob-sequence-number)"),
    (Selector::Header("x-ms-sequence-number-action"), "Page blobs (x-ms-sequence-number-action)"),
    (Selector::Header("x-ms-if-sequence-number-le"), "Page blobs (x-ms-if-sequence-number-le)"),
    (Selector::Header("x-ms-if-sequence-number-lt"), "Page blobs (x-ms-if-sequence-number-lt)"),
    (Selector::Header("x-ms-if-sequence-number-eq"), "Page blobs (x-ms-if-sequence-number-eq)"),
    (Selector::Header("x-ms-blob-condition-maxsize"), "Append blobs (x-ms-blob-condition-maxsize)"),
    (Selector::Header("x-ms-blob-condition-appendpos"), "Append blobs (x-ms-blob-condition-appendpos)"),
    (
        Selector::Header("x-ms-immutability-policy-until-date"),
        "Immutability policies (x-ms-immutability-policy-until-date)",
    ),
    (Selector::Header("x-ms-immutability-policy-mode"), "Immutability policies (x-ms-immutability-policy-mode)"),
    (Selector::Header("x-ms-legal-hold"), "Legal hold (x-ms-legal-hold)"),
    (Selector::Header("x-ms-expiry-option"), "Blob expiry (x-ms-expiry-option)"),
    (Selector::Header("x-ms-encryption-key"), "Customer-provided keys (x-ms-encryption-key)"),
    (Selector::Header("x-ms-encryption-scope"), "Encryption scopes (x-ms-encryption-scope)"),
    (Selector::Header("x-ms-default-encryption-scope"), "Encryption scopes (x-ms-default-encryption-scope)"),
    // Deleting "only" the snapshots must not delete the base blob; "include" is exact today.
    (Selector::HeaderValue("x-ms-delete-snapshots", "only"), "Blob snapshots (x-ms-delete-snapshots: only)"),
];

/// Refuses a request that selects a feature of [`UNIMPLEMENTED`], naming it.
fn refuse_unimplemented(request: &BlobRequest) -> Result<(), ApiError> {
    let comp = request.param("comp").unwrap_or_default();
    let selected = |selector: &Selector| match *selector {
        Selector::Comp(value) => comp.eq_ignore_ascii_case(value),
        Selector::Query(name) => request.param(name).is_some(),
        Selector::Header(name) => request.headers.contains_key(name),
        Selector::HeaderValue(name, value) => {
            request.header(name).is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
        }
    };
    let Some((selector, feature)) = UNIMPLEMENTED.iter().find(|(selector, _)| selected(selector)) else {
        return Ok(());
    };
    Err(match selector {
        Selector::Comp(_) | Selector::Query(_) => bad_request(
            "UnsupportedQueryParameter",
            format!(
                "One of the query parameters specified in the request URI is not supported. byos does not implement {feature}; nothing was changed."
            ),
        ),
        Selector::Header(_) | Selector::HeaderValue(..) => bad_request(
            "UnsupportedHeader",
            format!(
                "One of the HTTP headers specified in the request is not supported. byos does not implement {feature}; nothing was changed."
            ),
        ),
    })
}

/// Put Blob must say which kind of blob it creates (Azure: 400 `MissingRequiredHeader`); byos
/// stores block blobs only, so an append or page blob is refused rather than created as one.
fn require_block_blob(request: &BlobRequest) -> Result<(), ApiError> {
    match request.header("x-ms-blob-type").map(str::trim) {
        Some(kind) if kind.eq_ignore_ascii_case("BlockBlob") => Ok(()),
        Some(kind) if kind.eq_ignore_ascii_case("AppendBlob") || kind.eq_ignore_ascii_case("PageBlob") => {
            Err(bad_request(
                "UnsupportedHeader",
                format!(
                    "One of the HTTP headers specified in the request is not supported. byos stores block blobs only; x-ms-blob-type {kind} is not implemented and nothing was changed."
                ),
            ))
        }
        Some(_) => Err(invalid_header("x-ms-blob-type")),
        None => Err(bad_request(
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified. Header: x-ms-blob-type",
        )),
    }
}

fn unsupported(request: &BlobRequest) -> ApiError {
    bad_request(
        "UnsupportedHttpVerb",
        format!(
            "The resource doesn't support the specified HTTP verb or query ({} with comp={:?}).",
            request.method,
            request.param("comp").unwrap_or_default()
        ),
    )
}
