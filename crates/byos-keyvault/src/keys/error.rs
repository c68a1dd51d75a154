//! What can go wrong with a key operation, in domain terms. The HTTP layer (`keys::http`) turns
//! these into Key Vault's status codes and error bodies; other callers match on them.

use byos_authz::Denial;

use super::Unusable;

/// Why a key operation was not done.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The vault is no longer served (deleted since the request was routed to it).
    #[error("the vault is not served")]
    VaultNotFound,
    /// The door refused: the vault's network rules, its RBAC or its access policy
    /// (`refusal.denial.kind` says which).
    #[error("{}", .0.denial.reason)]
    Denied(Box<Refusal>),
    /// No live key of that name, or not that version of it.
    #[error("the key {name} (version {version:?}) does not exist")]
    KeyNotFound { name: String, version: Option<String> },
    /// No soft-deleted key of that name.
    #[error("no deleted key {0}")]
    DeletedKeyNotFound(String),
    /// The name belongs to a soft-deleted key: it can only be recovered or purged.
    #[error("the key {0} is deleted but recoverable")]
    DeletedButRecoverable(String),
    /// A restore names a key that exists (live or soft-deleted).
    #[error("a key named {0} already exists")]
    NameTaken(String),
    /// A concurrent change to the same key won; the request may be retried.
    #[error("a concurrent change conflicted")]
    ConcurrentChange,
    /// Purge protection keeps the deleted key until its retention ends.
    #[error("purge protection keeps the key until its retention ends")]
    PurgeProtected,
    /// The key version cannot serve `operation` now (disabled, outside its validity, or an
    /// operation its `key_ops` do not allow).
    #[error("the key cannot serve {operation}: {}", .reason.inner_code())]
    Unusable { reason: Unusable, operation: &'static str },
    /// The request's parameters are invalid (the message says how, for the client).
    #[error("{0}")]
    BadParameter(String),
    /// byos's own failure (store, sealing, a record that does not decode); details are in the log.
    #[error("internal error")]
    Internal,
}

/// A refusal by the door, with what Key Vault's answer names: the action and its access policy
/// permission, the resource and the vault.
#[derive(Debug)]
pub struct Refusal {
    pub denial: Box<Denial>,
    pub action: &'static str,
    /// The access policy permission the action needs (`get`, `wrapKey`, ...).
    pub permission: &'static str,
    /// The scope asked for: the vault's id, or `{vault id}/keys/{name}`.
    pub resource: String,
    pub vault: String,
    pub location: String,
    /// Whether the vault refuses public network access (a network denial then says so).
    pub public_network_disabled: bool,
}

impl KeyError {
    pub(crate) fn bad_parameter(message: impl Into<String>) -> Self {
        KeyError::BadParameter(message.into())
    }
}

impl From<byos_store::StoreError> for KeyError {
    fn from(e: byos_store::StoreError) -> Self {
        match e {
            byos_store::StoreError::Conflict { .. } => KeyError::ConcurrentChange,
            byos_store::StoreError::Backend(detail) => {
                tracing::error!(%detail, "metadata store failure");
                KeyError::Internal
            }
        }
    }
}

/// [`byos_core::OrInternal`] for key operations: logs where byos failed, answers [`KeyError::Internal`].
pub(crate) trait OrKeyInternal<T> {
    fn or_key_internal(self) -> Result<T, KeyError>;
}

impl<T, R: byos_core::OrInternal<T>> OrKeyInternal<T> for R {
    #[track_caller]
    fn or_key_internal(self) -> Result<T, KeyError> {
        self.or_internal().map_err(|_| KeyError::Internal)
    }
}
