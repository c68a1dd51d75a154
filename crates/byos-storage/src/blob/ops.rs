//! The Blob operations byos serves: how each is recognised, which RBAC action and SAS permission
//! it needs, which public access level admits it, and where it is executed.

use axum::http::Method;
use axum::response::Response;
use byos_authz::{Action, ActionKind};
use byos_core::{ApiError, AuthMethod, Caller, OrInternal, SignatureKind};
use byos_http::Failure;

use super::auth::{Authenticated, Sas};
use super::errors::{bad_request, denied, invalid_header};
use super::{BlobRequest, blob_scope, blobs, container_scope, containers, service};
use crate::StorageService;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    ListContainers,
    GetUserDelegationKey,
    GetServiceProperties,
    CreateContainer,
    DeleteContainer,
    GetContainerProperties,
    GetContainerMetadata,
    SetContainerMetadata,
    GetContainerAcl,
    SetContainerAcl,
    ListBlobs,
    PutBlob,
    PutBlock,
    PutBlockList,
    GetBlockList,
    GetBlob,
    GetBlobProperties,
    GetBlobMetadata,
    SetBlobMetadata,
    SetBlobProperties,
    DeleteBlob,
}

/// Which level of a SAS's `srt` an operation is at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Service,
    Container,
    Object,
}

/// The anonymous (public) access level that admits an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Public {
    Never,
    Blob,
    Container,
}

struct Descriptor {
    action: &'static str,
    kind: ActionKind,
    /// SAS permission letters, any of which allows the operation ("" = no SAS may).
    letters: &'static str,
    level: Level,
    public: Public,
}

impl Op {
    /// Every operation, for tests that must cover them all (the unauthorized-coverage test walks
    /// each with an unprivileged caller; its exhaustive `match` breaks when a variant is added).
    pub const ALL: [Op; 21] = [
        Op::ListContainers,
        Op::GetUserDelegationKey,
        Op::GetServiceProperties,
        Op::CreateContainer,
        Op::DeleteContainer,
        Op::GetContainerProperties,
        Op::GetContainerMetadata,
        Op::SetContainerMetadata,
        Op::GetContainerAcl,
        Op::SetContainerAcl,
        Op::ListBlobs,
        Op::PutBlob,
        Op::PutBlock,
        Op::PutBlockList,
        Op::GetBlockList,
        Op::GetBlob,
        Op::GetBlobProperties,
        Op::GetBlobMetadata,
        Op::SetBlobMetadata,
        Op::SetBlobProperties,
        Op::DeleteBlob,
    ];

    /// Recognises the operation from method, `restype`, `comp` and path depth. A request that
    /// selects anything byos does not implement ([`UNIMPLEMENTED`]) is refused first, whatever
    /// operation it would otherwise look like.
    pub fn of(request: &BlobRequest) -> Result<Op, ApiError> {
        refuse_unimplemented(request)?;
        let op = Op::recognise(request)?;
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

    fn descriptor(self) -> Descriptor {
        use ActionKind::{Control, Data};
        let d = |action, kind, letters, level, public| Descriptor { action, kind, letters, level, public };
        match self {
            Op::ListContainers => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/read",
                Control,
                "l",
                Level::Service,
                Public::Never,
            ),
            Op::GetUserDelegationKey => d(
                "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
                Control,
                "",
                Level::Service,
                Public::Never,
            ),
            Op::GetServiceProperties => {
                d("Microsoft.Storage/storageAccounts/blobServices/read", Control, "r", Level::Service, Public::Never)
            }
            Op::CreateContainer => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/write",
                Control,
                "cw",
                Level::Container,
                Public::Never,
            ),
            Op::DeleteContainer => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
                Control,
                "d",
                Level::Container,
                Public::Never,
            ),
            Op::GetContainerProperties | Op::GetContainerMetadata => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/read",
                Control,
                "r",
                Level::Container,
                Public::Container,
            ),
            Op::GetContainerAcl => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/read",
                Control,
                "r",
                Level::Container,
                Public::Never,
            ),
            Op::SetContainerMetadata | Op::SetContainerAcl => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/write",
                Control,
                "w",
                Level::Container,
                Public::Never,
            ),
            Op::ListBlobs => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                Data,
                "l",
                Level::Container,
                Public::Container,
            ),
            Op::PutBlob => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
                Data,
                "cw",
                Level::Object,
                Public::Never,
            ),
            Op::PutBlock | Op::PutBlockList | Op::SetBlobMetadata | Op::SetBlobProperties => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
                Data,
                "w",
                Level::Object,
                Public::Never,
            ),
            Op::GetBlockList | Op::GetBlob | Op::GetBlobProperties | Op::GetBlobMetadata => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                Data,
                "r",
                Level::Object,
                Public::Blob,
            ),
            Op::DeleteBlob => d(
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
                Data,
                "d",
                Level::Object,
                Public::Never,
            ),
        }
    }
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

/// Whether a verified SAS carries the permission and resource type the operation needs.
fn sas_allows(sas: &Sas, op: Op, d: &Descriptor) -> bool {
    let letter = d.letters.chars().any(|l| sas.permissions.contains(l));
    let level = match (sas.kind, d.level) {
        (SignatureKind::Account, Level::Service) => sas.resource.contains('s'),
        (SignatureKind::Account, Level::Container) => sas.resource.contains('c'),
        (SignatureKind::Account, Level::Object) => sas.resource.contains('o'),
        // Service and delegation SAS grant blob operations only: on the container itself they
        // allow List Blobs and nothing else (Azure: a container SAS cannot read or write the
        // container's properties, metadata or ACL, nor delete it; those need the account key,
        // an account SAS or RBAC). The door checks the signed scope.
        (_, Level::Service) => false,
        (_, Level::Container) => op == Op::ListBlobs,
        (_, Level::Object) => true,
    };
    letter && level
}

/// Builds the caller's grant for this operation and asks the door.
pub async fn authorize(
    service: &StorageService,
    request: &BlobRequest,
    op: Op,
    authenticated: Authenticated,
) -> Result<Caller, Failure> {
    let d = op.descriptor();
    let action = Action { name: d.action.into(), kind: d.kind };
    let account = &request.account;
    let scope = match (&request.container, &request.blob) {
        (Some(c), Some(b)) => blob_scope(account, c, b),
        (Some(c), None) => container_scope(account, c),
        _ => byos_core::Scope::parse(&account.id).or_internal()?,
    };
    let caller = match &authenticated.sas {
        Some(sas) => {
            let permits = if sas_allows(sas, op, &d) { vec![d.action.to_owned()] } else { vec![] };
            let signed_scope = match &sas.path {
                Some((c, Some(b))) => blob_scope(account, c, b).as_str().to_owned(),
                Some((c, None)) => container_scope(account, c).as_str().to_owned(),
                None => account.id.clone(),
            };
            super::sas::for_operation(&authenticated.caller, permits, signed_scope)
        }
        None => authenticated.caller,
    };
    let anonymous_permits =
        if caller.auth() == AuthMethod::Anonymous { public_permits(service, request, &d).await? } else { vec![] };
    let guard = account.settings.guard(anonymous_permits);
    match service.door.authorize_access(&caller, &action, &scope, Some(&guard)) {
        Ok(_) => Ok(caller),
        Err(denial) => {
            // The full explanation always reaches the log; the response carries it only for
            // callers that may read it (errors::denied).
            tracing::info!(account = %account.name, ?op, caller = %denial.caller, check = ?denial.kind, action = %denial.action.name, scope = %denial.scope.as_str(), reason = %denial.reason, "blob request denied");
            Err(Failure::from(denied(&denial)))
        }
    }
}

/// What an anonymous caller may do here, from the container's public access level.
async fn public_permits(
    service: &StorageService,
    request: &BlobRequest,
    d: &Descriptor,
) -> Result<Vec<String>, ApiError> {
    let Some(container) = &request.container else { return Ok(vec![]) };
    let level = containers::public_access(service, &request.account, container).await?;
    let admitted = matches!(
        (d.public, level.as_deref()),
        (Public::Blob, Some("blob" | "container")) | (Public::Container, Some("container"))
    );
    Ok(if admitted { vec![d.action.to_owned()] } else { vec![] })
}

pub async fn execute(
    service: &StorageService,
    request: BlobRequest,
    op: Op,
    caller: &Caller,
) -> Result<Response, Failure> {
    match op {
        Op::ListContainers => containers::list(service, &request).await,
        Op::GetUserDelegationKey => service::user_delegation_key(service, &request, caller).await,
        Op::GetServiceProperties => service::properties(&request),
        Op::CreateContainer => containers::create(service, &request).await,
        Op::DeleteContainer => containers::delete(service, &request).await,
        Op::GetContainerProperties | Op::GetContainerMetadata => containers::properties(service, &request).await,
        Op::SetContainerMetadata => containers::set_metadata(service, &request).await,
        Op::GetContainerAcl => containers::get_acl(service, &request).await,
        Op::SetContainerAcl => containers::set_acl(service, &request).await,
        Op::ListBlobs => blobs::list(service, &request).await,
        Op::PutBlob => blobs::put(service, &request).await,
        Op::PutBlock => blobs::put_block(service, &request).await,
        Op::PutBlockList => blobs::put_block_list(service, &request).await,
        Op::GetBlockList => blobs::get_block_list(service, &request).await,
        Op::GetBlob => blobs::get(service, &request, true).await,
        Op::GetBlobProperties => blobs::get(service, &request, false).await,
        Op::GetBlobMetadata => blobs::metadata(service, &request).await,
        Op::SetBlobMetadata => blobs::set_metadata(service, &request).await,
        Op::SetBlobProperties => blobs::set_properties(service, &request).await,
        Op::DeleteBlob => blobs::delete(service, &request).await,
    }
}
