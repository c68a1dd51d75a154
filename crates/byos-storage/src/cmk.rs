//! Customer-managed keys: the account's KEK wrapped by the customer's Key Vault key, used only as
//! the account's managed identity, through the door, as an ordinary key operation.
//!
//! - Enable / change key: the KEK is wrapped with the key (RSA-OAEP-256) and removed from the
//!   root-sealed secrets; the wrap is tested by an unwrap, so a missing permission fails the update.
//! - Use: the unwrapped KEK is cached for `cmk_cache_ttl` (≤ 60 s) by the key protector
//!   (`byos_keyvault::protector`, shared with every service that keeps data under its own KEK);
//!   after that every data operation unwraps again, so a revoked key or identity makes the data
//!   unreadable within that time.
//! - Identity: resolved from the account's current identity at every use, never pinned at setup.
//! - Rotation: when the key's current version changes (and no version is pinned), the background
//!   watch re-wraps the KEK with the new version (data reads never write records). Data keys and
//!   blobs are never re-encrypted.
//! - Disable: the KEK goes back under the root key, again without touching data.

use std::sync::Arc;

use byos_authz::DenialKind;
use byos_core::{Actor, ApiError, Caller};
use byos_crypto::envelope::Kek;
use byos_identity::AttachedIdentities;
use byos_keyvault::Vault;
use byos_keyvault::keys::{KeyUseError, KeyUsed};
use byos_keyvault::protector::{CustomerKey, Protection, ProtectorError, WrapError, WrappedKek, key_failure};
use zeroize::Zeroizing;

use crate::account::CmkSettings;
use crate::blob::errors::err;
use crate::{Account, StorageService};

impl Account {
    /// The managed identities the account has now: the identity that uses its customer key is
    /// resolved from them at every use (nothing about a KEK depends on a principal id copied at setup).
    pub fn identities(&self) -> AttachedIdentities<'_> {
        AttachedIdentities { resource_id: &self.id, system: self.system_identity, user: &self.user_identities }
    }

    /// Who uses the account's customer key and in which vault, as the account says now.
    fn customer_key<'a>(&'a self, settings: &'a CmkSettings, vault: Option<&'a Vault>) -> CustomerKey<'a> {
        CustomerKey {
            resource: self.identities(),
            identity: settings.identity.as_deref(),
            vault_uri: vault.map(|v| v.uri.as_str()),
        }
    }
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
) -> Result<(WrappedKek, KeyUsed), ApiError> {
    service.protector.wrap(caller, vault_uri, key_name, version, kek).await.map_err(|e| wrap_error(&e))
}

fn wrap_error(e: &WrapError) -> ApiError {
    match e {
        WrapError::Wrap(cause) => key_failure(cause, "wrap the account key"),
        WrapError::Unwrap(cause) => key_failure(cause, "unwrap the account key"),
    }
}

/// The KEK's bytes of an account protected by a customer key (to re-wrap it or take it back under
/// the root key). `new_identity` (the identity an update switches to) is tried first, so that
/// re-pointing works without the identity being replaced; then the account's identity now.
pub async fn customer_kek_bytes(
    service: &StorageService,
    account: &Account,
    new_identity: Option<&Caller>,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let (Protection::Customer(wrapped), Some(settings)) = (&account.secrets.kek, account.settings.cmk.as_ref()) else {
        return Err(ApiError::internal());
    };
    let vault = service.cmk_vault(settings).await;
    let key = account.customer_key(settings, vault.as_deref());
    let protector = &service.protector;
    let mut first_failure = None;
    if let Some(caller) = new_identity {
        match protector.unwrap_as(caller.clone(), key.vault_uri, wrapped).await {
            Ok(unwrapped) => return Ok(unwrapped.kek),
            Err(failure) => first_failure = Some(failure),
        }
    }
    let now = match protector.acting(&key) {
        Ok(caller) => protector.unwrap_as(caller, key.vault_uri, wrapped).await,
        Err(e) => Err(e),
    };
    let failure = match now {
        Ok(unwrapped) => return Ok(unwrapped.kek),
        Err(failure) => first_failure.unwrap_or(failure),
    };
    Err(match failure {
        ProtectorError::Corrupt => ApiError::internal(),
        ProtectorError::NoIdentity => ApiError::bad_request(
            "InvalidIdentity",
            "The identity that protects the account key no longer exists: name an identity that can unwrap the key (identity and encryption.identity).",
        ),
        ProtectorError::Key(e) => key_failure(&e, "unwrap the current account key"),
    })
}

/// The blob error for a customer key that cannot be used now.
fn unavailable(account: &Account, failure: ProtectorError) -> ApiError {
    let cause = match failure {
        ProtectorError::Corrupt => return crate::blob::errors::internal(),
        ProtectorError::NoIdentity => {
            return err(
                403,
                "KeyVaultAccessTokenCannotBeAcquired",
                "The key vault access token cannot be acquired: the account's identity no longer exists.",
            )
            .with_header("x-byos-denial", "customer-managed key unavailable: the identity was removed");
        }
        ProtectorError::Key(cause) => cause,
    };
    tracing::info!(account = %account.name, reason = %cause, "customer-managed key unavailable");
    let (code, message) = match &cause {
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
    /// the protector's short cache, else unwrapped now through Key Vault as the account's
    /// identity. Never writes.
    pub async fn kek(&self, account: &Account) -> Result<Arc<Kek>, ApiError> {
        let settings = match (&account.secrets.kek, account.settings.cmk.as_ref()) {
            (Protection::Root(kek), _) => return Ok(Arc::clone(kek)),
            (Protection::Customer(_), Some(settings)) => settings,
            (Protection::Customer(_), None) => return Err(crate::blob::errors::internal()),
        };
        let vault = self.cmk_vault(settings).await;
        let key = account.customer_key(settings, vault.as_deref());
        self.protector.kek(&account.name, &account.secrets.kek, &key).await.map_err(|e| unavailable(account, e))
    }

    /// One tick of the rotation watch for an account that follows its key's current version:
    /// refreshes the cached KEK and, when the key has a newer current version, re-wraps the KEK
    /// with it and records that (the only place a key rotation writes the account's records).
    async fn follow_rotation(&self, watch: &Caller, account: &Account) {
        let Some(settings) = account.settings.cmk.as_ref().filter(|s| s.key_version.is_none()) else { return };
        let Protection::Customer(wrapped) = &account.secrets.kek else { return };
        let vault = self.cmk_vault(settings).await;
        let key = account.customer_key(settings, vault.as_deref());
        // A failure here is what data requests report too; nothing to do until access returns.
        let Ok((_, unwrapped)) = self.protector.unwrap_and_cache(&account.name, wrapped, &key).await else { return };
        match self.protector.rewrap_if_rotated(&unwrapped).await {
            Ok(None) => {}
            Ok(Some((wrap, used))) => {
                if let Err(e) = crate::provider::record_rotation(self, watch, account, wrap, &used).await {
                    tracing::warn!(account = %account.name, error = %e, "could not record the key rotation");
                } else {
                    tracing::info!(account = %account.name, key = %used.kid, "account key re-wrapped with the new key version");
                }
            }
            Err(e) => {
                tracing::warn!(account = %account.name, error = %wrap_error(&e), "could not re-wrap the account key with the new key version")
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
