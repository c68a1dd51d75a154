//! The Blob operations byos serves: which RBAC action and SAS permission each needs, which public
//! access level admits it, and the door every one of them passes: [`permit`] is the only way to
//! a [`Permit`], and every function that reads or changes containers and blobs takes one and acts
//! on the target it names, so none can run without the door's decision for that very target.

use std::sync::Arc;

use byos_authz::{Action, ActionKind};
use byos_core::{ApiError, AuthMethod, Caller, OrInternal, Scope};
use byos_crypto::envelope::Kek;

use super::errors::BlobError;
use super::{blob_scope, blobs::BlobTarget, container_scope, containers};
use crate::{Account, StorageService};

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
pub(crate) enum Level {
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

pub(crate) struct Descriptor {
    pub(crate) action: &'static str,
    kind: ActionKind,
    /// SAS permission letters, any of which allows the operation ("" = no SAS may).
    pub(crate) letters: &'static str,
    pub(crate) level: Level,
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

    pub(crate) fn descriptor(self) -> Descriptor {
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

/// The door's admission of one caller to one operation on one target. Fields are private and
/// [`permit`] is the only constructor: holding one is the proof that the door said yes.
pub struct Permit {
    op: Op,
    caller: Caller,
    account: Arc<Account>,
    container: Option<String>,
    blob: Option<String>,
    /// The account's KEK, fetched once per operation by the steps that touch customer data.
    kek: tokio::sync::OnceCell<Arc<Kek>>,
}

impl Permit {
    pub fn op(&self) -> Op {
        self.op
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    pub fn container(&self) -> &str {
        self.container.as_deref().unwrap_or_default()
    }

    pub fn blob(&self) -> &str {
        self.blob.as_deref().unwrap_or_default()
    }

    /// The blob this permit admits to.
    pub fn target(&self) -> BlobTarget<'_> {
        BlobTarget { account: &self.account, container: self.container(), blob: self.blob() }
    }

    /// The account's KEK (for a customer-managed key: possibly through Key Vault, which can refuse).
    pub async fn kek(&self, service: &StorageService) -> Result<Arc<Kek>, BlobError> {
        Ok(self.kek.get_or_try_init(|| service.kek(&self.account)).await.cloned()?)
    }
}

/// The RBAC scope an operation on this target is decided at.
fn scope_of(account: &Account, container: Option<&str>, blob: Option<&str>) -> Result<Scope, ApiError> {
    match (container, blob) {
        (Some(c), Some(b)) => Ok(blob_scope(account, c, b)),
        (Some(c), None) => Ok(container_scope(account, c)),
        _ => Scope::parse(&account.id).or_internal(),
    }
}

/// Asks the door whether `caller` may perform `op` on the target: the account's network rules
/// and locks, what the credential permits (a SAS caller carries its per-operation grant), the
/// container's public level for an anonymous caller, and RBAC.
pub async fn permit(
    service: &StorageService,
    caller: Caller,
    op: Op,
    account: Arc<Account>,
    container: Option<String>,
    blob: Option<String>,
) -> Result<Permit, BlobError> {
    let d = op.descriptor();
    let action = Action { name: d.action.into(), kind: d.kind };
    let scope = scope_of(&account, container.as_deref(), blob.as_deref())?;
    // Read before the door: an anonymous request is decided on the container's public level.
    let anonymous_permits = match (&container, caller.auth()) {
        (Some(c), AuthMethod::Anonymous) => public_permits(service, &account, c, &d).await?,
        _ => vec![],
    };
    let guard = account.settings.guard(anonymous_permits);
    match service.door.authorize_access(&caller, &action, &scope, Some(&guard)) {
        Ok(_) => Ok(Permit { op, caller, account, container, blob, kek: tokio::sync::OnceCell::new() }),
        Err(denial) => {
            // The full explanation always reaches the log; the response carries it only for
            // callers that may read it (errors::denied).
            tracing::info!(account = %account.name, ?op, caller = %denial.caller, check = ?denial.kind, action = %denial.action.name, scope = %denial.scope.as_str(), reason = %denial.reason, "blob request denied");
            Err(BlobError::Denied(denial))
        }
    }
}

/// What an anonymous caller may do here, from the container's public access level.
async fn public_permits(
    service: &StorageService,
    account: &Account,
    container: &str,
    d: &Descriptor,
) -> Result<Vec<String>, BlobError> {
    let level = containers::public_access(service, account, container).await?;
    let admitted = matches!(
        (d.public, level.as_deref()),
        (Public::Blob, Some("blob" | "container")) | (Public::Container, Some("container"))
    );
    Ok(if admitted { vec![d.action.to_owned()] } else { vec![] })
}
