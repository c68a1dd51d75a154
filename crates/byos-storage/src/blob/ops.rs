//! The Blob operations byos serves: how each is recognised, which RBAC action and SAS permission
//! it needs, which public access level admits it, and where it is executed.

use axum::http::Method;
use axum::response::Response;
use byos_authz::{Action, ActionKind};
use byos_core::{ApiError, AuthMethod, Caller, SignatureKind};
use byos_http::Failure;

use super::auth::{Authenticated, Sas};
use super::errors::{bad_request, denied};
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
    /// Recognises the operation from method, `restype`, `comp` and path depth.
    pub fn of(request: &BlobRequest) -> Result<Op, ApiError> {
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
fn sas_allows(sas: &Sas, d: &Descriptor) -> bool {
    let letter = d.letters.chars().any(|l| sas.permissions.contains(l));
    let level = match (sas.kind, d.level) {
        (SignatureKind::Account, Level::Service) => sas.resource.contains('s'),
        (SignatureKind::Account, Level::Container) => sas.resource.contains('c'),
        (SignatureKind::Account, Level::Object) => sas.resource.contains('o'),
        // Service and delegation SAS reach the container (sr=c) or one blob (sr=b); the door
        // checks the scope.
        (_, Level::Service) => false,
        (_, _) => true,
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
        _ => byos_core::Scope::parse(&account.id).map_err(|_| ApiError::internal())?,
    };
    let mut caller = authenticated.caller;
    if let (Some(sas), Some(signed)) = (&authenticated.sas, caller.signed.as_mut()) {
        signed.permits = if sas_allows(sas, &d) { vec![d.action.to_owned()] } else { vec![] };
        signed.scope = match &sas.path {
            Some((c, Some(b))) => blob_scope(account, c, b).as_str().to_owned(),
            Some((c, None)) => container_scope(account, c).as_str().to_owned(),
            None => account.id.clone(),
        };
    }
    let anonymous_permits =
        if caller.auth == AuthMethod::Anonymous { public_permits(service, request, &d).await? } else { vec![] };
    let guard = account.settings.guard(anonymous_permits);
    match service.door.authorize_access(&caller, &action, &scope, Some(&guard)) {
        Ok(_) => Ok(caller),
        Err(denial) => {
            tracing::info!(account = %account.name, ?op, caller = %denial.caller, reason = %denial.reason, "blob request denied");
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
