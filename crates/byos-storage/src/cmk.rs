//! Customer-managed keys: the account's KEK wrapped by the customer's Key Vault key, used only as
//! the account's managed identity, through the door, as an ordinary key operation.
//!
//! - Enable / change key: the KEK is wrapped with the key (RSA-OAEP-256) and removed from the
//!   root-sealed secrets; the wrap is tested by an unwrap, so a missing permission fails the update.
//! - Use: the unwrapped KEK is cached for `cmk_cache_ttl` (≤ 60 s); after that every data operation
//!   unwraps again, so a revoked key or identity makes the data unreadable within that time.
//! - Identity: resolved from the account's current identity at every use, never pinned at setup.
//! - Rotation: when the key's current version changes (and no version is pinned), the background
//!   watch re-wraps the KEK with the new version (data reads never write records). Data keys and
//!   blobs are never re-encrypted.
//! - Disable: the KEK goes back under the root key, again without touching data.

use std::sync::Arc;
use std::time::Instant;

use byos_authz::DenialKind;
use byos_core::{Actor, ApiError, Caller, OrInternal};
use byos_crypto::envelope::Kek;
use byos_crypto::{b64url, b64url_decode};
use byos_identity::AttachedIdentities;
use byos_keyvault::keys::{KeyUse, KeyUseError, KeyUsed};
use zeroize::Zeroizing;

use crate::account::{CmkSettings, CmkWrap, KekSource, split_key_id};
use crate::blob::errors::err;
use crate::{Account, StorageService};

impl Account {
    /// The managed identities the account has now: the identity that uses its customer key is
    /// resolved from them at every use (nothing about a KEK depends on a principal id copied at setup).
    pub fn identities(&self) -> AttachedIdentities<'_> {
        AttachedIdentities { resource_id: &self.id, system: self.system_identity, user: &self.user_identities }
    }
}

/// The caller that uses the account's customer key now: its identity acting in-process for the
/// account (network rules see it as the account, a trusted service for key vaults). `None`: that
/// identity is gone or no longer attached.
fn acting_caller(service: &StorageService, account: &Account, settings: &CmkSettings) -> Option<Caller> {
    service.directory.act_as(&account.identities(), settings.identity.as_deref())
}

/// What ARM says when a customer key cannot be set up.
fn setup_error(cause: &KeyUseError, what: &str) -> ApiError {
    let reason = match cause {
        KeyUseError::Denied(denial) if denial.kind == DenialKind::Network => {
            "the key vault's network rules do not admit the storage service (allow trusted Microsoft services: networkAcls.bypass AzureServices)"
        }
        KeyUseError::Denied(_) => "the identity does not have permission (get, wrapKey, unwrapKey) on the key",
        KeyUseError::Unusable(_) | KeyUseError::NotRsa(_) | KeyUseError::Rejected(_) => {
            "the key is disabled, expired or not usable for wrapKey/unwrapKey"
        }
        KeyUseError::VaultNotFound(_) | KeyUseError::KeyNotFound(_) => {
            "the key vault or the key (version) was not found"
        }
        KeyUseError::Internal => "the key could not be used",
    };
    ApiError::bad_request(
        "KeyVaultAuthenticationFailure",
        format!("Cannot {what} with the customer-managed key: {reason} ({cause})."),
    )
}

/// Wraps `kek` with key `key_name` (`version`, else its current version) of the vault served at
/// `vault_uri`, as `caller`, then proves the identity can unwrap it.
pub async fn wrap(
    service: &StorageService,
    caller: &Caller,
    vault_uri: &str,
    key_name: &str,
    version: Option<&str>,
    kek: &[u8],
) -> Result<(CmkWrap, KeyUsed), ApiError> {
    let kv = &service.keyvault;
    let wrapped = kv
        .use_key(caller, vault_uri, key_name, version, KeyUse::Wrap(kek.to_vec()))
        .await
        .map_err(|e| setup_error(&e, "wrap the account key"))?;
    let check = kv
        .use_key(caller, vault_uri, key_name, Some(&wrapped.version), KeyUse::Unwrap(wrapped.output.to_vec()))
        .await
        .map_err(|e| setup_error(&e, "unwrap the account key"))?;
    if check.output.as_slice() != kek {
        return Err(ApiError::internal());
    }
    Ok((CmkWrap { key_id: wrapped.kid.clone(), wrapped: b64url(&wrapped.output) }, wrapped))
}

/// Why the current wrapped KEK could not be unwrapped.
enum UnwrapFailure {
    /// The stored wrap or settings are unreadable.
    Corrupt,
    /// The identity that protects the key no longer exists.
    NoIdentity,
    /// Key Vault refused (the key, its version, or the identity's access).
    Key(KeyUseError),
}

/// The current KEK, unwrapped through Key Vault as the account's identity.
struct Unwrapped {
    caller: Caller,
    /// The vault's URI now.
    vault_uri: String,
    /// The key version the KEK is wrapped with.
    version: String,
    kek: Zeroizing<Vec<u8>>,
}

/// Unwraps the account's KEK, as `caller`, with the customer key version it is wrapped with.
async fn unwrap_as(service: &StorageService, account: &Account, caller: Caller) -> Result<Unwrapped, UnwrapFailure> {
    let (KekSource::Customer(wrap), Some(settings)) = (&account.secrets.kek, account.settings.cmk.as_ref()) else {
        return Err(UnwrapFailure::Corrupt);
    };
    let (_, name, version) = split_key_id(&wrap.key_id).ok_or(UnwrapFailure::Corrupt)?;
    let wrapped = b64url_decode(&wrap.wrapped).ok_or(UnwrapFailure::Corrupt)?;
    let vault = service.cmk_vault(settings).await.ok_or_else(|| {
        UnwrapFailure::Key(KeyUseError::VaultNotFound(format!("the vault that holds the key '{name}'")))
    })?;
    let used = service
        .keyvault
        .use_key(&caller, &vault.uri, name, Some(version), KeyUse::Unwrap(wrapped))
        .await
        .map_err(UnwrapFailure::Key)?;
    Ok(Unwrapped { caller, vault_uri: vault.uri.clone(), version: version.to_owned(), kek: used.output })
}

/// Unwraps the account's KEK as the identity that uses its key now.
async fn unwrap_current(service: &StorageService, account: &Account) -> Result<Unwrapped, UnwrapFailure> {
    let settings = account.settings.cmk.as_ref().ok_or(UnwrapFailure::Corrupt)?;
    let caller = acting_caller(service, account, settings).ok_or(UnwrapFailure::NoIdentity)?;
    unwrap_as(service, account, caller).await
}

/// The KEK's bytes of an account protected by a customer key (to re-wrap it or take it back under
/// the root key). `new_identity` (the identity an update switches to) is tried first, so that
/// re-pointing works without the identity being replaced; then the account's identity now.
pub async fn customer_kek_bytes(
    service: &StorageService,
    account: &Account,
    new_identity: Option<&Caller>,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let mut first_failure = None;
    if let Some(caller) = new_identity {
        match unwrap_as(service, account, caller.clone()).await {
            Ok(unwrapped) => return Ok(unwrapped.kek),
            Err(failure) => first_failure = Some(failure),
        }
    }
    let failure = match unwrap_current(service, account).await {
        Ok(unwrapped) => return Ok(unwrapped.kek),
        Err(failure) => first_failure.unwrap_or(failure),
    };
    Err(match failure {
        UnwrapFailure::Corrupt => ApiError::internal(),
        UnwrapFailure::NoIdentity => ApiError::bad_request(
            "InvalidIdentity",
            "The identity that protects the account key no longer exists: name an identity that can unwrap the key (identity and encryption.identity).",
        ),
        UnwrapFailure::Key(e) => setup_error(&e, "unwrap the current account key"),
    })
}

/// The blob error for a customer key that cannot be used now.
fn unavailable(cause: &KeyUseError) -> ApiError {
    let (code, message) = match cause {
        KeyUseError::VaultNotFound(_) => ("KeyVaultVaultNotFound", "The key vault is not found for encryption."),
        KeyUseError::Denied(denial) if denial.kind == DenialKind::Network => (
            "KeyVaultAccessTokenCannotBeAcquired",
            "The key vault access token cannot be acquired: the key vault's network rules do not admit the storage service.",
        ),
        KeyUseError::Denied(_) => (
            "KeyVaultAccessTokenCannotBeAcquired",
            "The key vault access token cannot be acquired: the account's identity has no access to the key.",
        ),
        _ => ("KeyVaultEncryptionKeyNotFound", "The key vault key is not found to unwrap the encryption key."),
    };
    err(403, code, message).with_header(
        "x-byos-denial",
        crate::blob::errors::header_safe(&format!("customer-managed key unavailable: {cause}")),
    )
}

impl StorageService {
    /// The account's KEK: from memory for service-managed keys; for customer-managed keys from
    /// a short cache, else unwrapped now through Key Vault as the account's identity. Never writes.
    pub async fn kek(&self, account: &Account) -> Result<Arc<Kek>, ApiError> {
        if let KekSource::Root(kek) = &account.secrets.kek {
            return Ok(Arc::clone(kek));
        }
        if let Some((kek, at)) = self.cmk_cache.lock().unwrap_or_else(|e| e.into_inner()).get(&account.name)
            && at.elapsed() < self.cmk_cache_ttl
        {
            return Ok(Arc::clone(kek));
        }
        self.unwrap_and_cache(account).await.map(|(kek, _)| kek)
    }

    /// Unwraps a customer-protected KEK now and caches it (or drops the cached one on failure).
    async fn unwrap_and_cache(&self, account: &Account) -> Result<(Arc<Kek>, Unwrapped), ApiError> {
        let unwrapped = match unwrap_current(self, account).await {
            Ok(unwrapped) => unwrapped,
            Err(failure) => {
                self.cmk_cache.lock().unwrap_or_else(|e| e.into_inner()).remove(&account.name);
                return Err(match failure {
                    UnwrapFailure::Corrupt => crate::blob::errors::internal(),
                    UnwrapFailure::NoIdentity => err(
                        403,
                        "KeyVaultAccessTokenCannotBeAcquired",
                        "The key vault access token cannot be acquired: the account's identity no longer exists.",
                    )
                    .with_header("x-byos-denial", "customer-managed key unavailable: the identity was removed"),
                    UnwrapFailure::Key(e) => {
                        tracing::info!(account = %account.name, reason = %e, "customer-managed key unavailable");
                        unavailable(&e)
                    }
                });
            }
        };
        let kek = Arc::new(Kek::from_bytes(&unwrapped.kek).or_internal_with(crate::blob::errors::internal)?);
        self.cmk_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(account.name.clone(), (Arc::clone(&kek), Instant::now()));
        Ok((kek, unwrapped))
    }

    /// One tick of the rotation watch for an account that follows its key's current version:
    /// refreshes the cached KEK and, when the key has a newer current version, re-wraps the KEK
    /// with it and records that (the only place a key rotation writes the account's records).
    async fn follow_rotation(&self, watch: &Caller, account: &Account) {
        let Some(settings) = account.settings.cmk.as_ref().filter(|s| s.key_version.is_none()) else { return };
        // A failure here is what data requests report too; nothing to do until access returns.
        let Ok((_, unwrapped)) = self.unwrap_and_cache(account).await else { return };
        let kv = &self.keyvault;
        let latest =
            match kv.use_key(&unwrapped.caller, &unwrapped.vault_uri, &settings.key_name, None, KeyUse::Get).await {
                Ok(latest) if latest.version != unwrapped.version => latest,
                _ => return,
            };
        let rewrapped = wrap(
            self,
            &unwrapped.caller,
            &unwrapped.vault_uri,
            &settings.key_name,
            Some(&latest.version),
            &unwrapped.kek,
        )
        .await;
        match rewrapped {
            Ok((wrap, used)) => {
                if let Err(e) = crate::provider::record_rotation(self, watch, account, wrap, &used).await {
                    tracing::warn!(account = %account.name, error = %e, "could not record the key rotation");
                } else {
                    tracing::info!(account = %account.name, key = %used.kid, "account key re-wrapped with the new key version");
                }
            }
            Err(e) => {
                tracing::warn!(account = %account.name, error = %e, "could not re-wrap the account key with the new key version")
            }
        }
    }
}

/// Follows key rotation in the background: every `interval`, each account on a customer key that
/// follows the key's current version refreshes its KEK, which re-wraps it when the key rotated.
pub fn spawn_rotation_watch(
    service: Arc<StorageService>,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(&service);
    drop(service);
    let watch = Caller::actor(Actor::CmkRotationWatch);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(service) = weak.upgrade() else { return };
            for account in service.accounts_following_rotation() {
                service.follow_rotation(&watch, &account).await;
            }
        }
    })
}

impl StorageService {
    fn accounts_following_rotation(&self) -> Vec<Arc<Account>> {
        self.accounts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|a| a.settings.cmk.as_ref().is_some_and(|c| c.key_version.is_none()))
            .cloned()
            .collect()
    }
}
