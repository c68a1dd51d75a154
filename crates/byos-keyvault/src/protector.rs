//! Key protection: the master-key backend of envelope encryption, for every resource that keeps data
//! under its own key-encryption key (KEK): storage accounts now, AI accounts next.
//!
//! A KEK is protected one of two ways ([`Protection`]):
//! - **root-sealed** (service-managed keys): the resource keeps it among its secrets, sealed under
//!   the service root key; it is usable at once.
//! - **customer key**: wrapped (RSA-OAEP-256) by a key in the customer's vault. It is unwrapped
//!   only as the resource's managed identity, resolved from the resource's identities *now*
//!   (`Directory::act_as`), through Key Vault's door, as an ordinary, audited key operation. The
//!   unwrapped KEK is cached for at most `ttl`; after that a revoked key, a removed permission or a
//!   deleted identity makes the data unreadable.
//!
//! Rotation re-wraps the KEK with the key's new version ([`KeyProtector::rewrap_if_rotated`]);
//! nothing encrypted under the KEK is touched. What a resource records about its key (the wrapped
//! form, which vault) stays the resource's own business; this module reads and writes no table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use byos_authz::DenialKind;
use byos_core::{ApiError, Caller};
use byos_crypto::envelope::Kek;
use byos_crypto::{b64url, b64url_decode};
use byos_identity::{AttachedIdentities, Directory};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{KeyUse, KeyUseError, KeyUsed};
use crate::{KeyVaultService, Vault};

/// A KEK wrapped by one version of a customer's key, as a resource stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKek {
    /// `{vault}keys/{name}/{version}`: only the name and version are meaningful; the vault is
    /// resolved by the resource at each use.
    pub key_id: String,
    /// base64url of the wrapped bytes.
    pub wrapped: String,
}

impl WrappedKek {
    /// The key's name and the version the KEK is wrapped with.
    pub fn key_version(&self) -> Option<(&str, &str)> {
        let (_, rest) = self.key_id.split_once("keys/")?;
        rest.split_once('/')
    }
}

/// How a resource's KEK is protected.
pub enum Protection {
    /// Sealed under the root key with the resource's secrets; here already opened.
    Root(Arc<Kek>),
    /// Wrapped by a customer's key.
    Customer(WrappedKek),
}

/// Who uses a resource's customer key, and where the key is, as the resource says now.
pub struct CustomerKey<'a> {
    /// The resource and the identities it has now.
    pub resource: AttachedIdentities<'a>,
    /// The user-assigned identity used with the key (its resource id); `None`: the system-assigned one.
    pub identity: Option<&'a str>,
    /// The vault that holds the key, resolved now (`None`: it is gone).
    pub vault_uri: Option<&'a str>,
}

/// Why a protected KEK cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum ProtectorError {
    #[error("the identity that uses the key is no longer the resource's")]
    NoIdentity,
    #[error("the wrapped key is unreadable")]
    Corrupt,
    /// Key Vault refused (the vault, the key or its version, the identity's access), or failed.
    #[error(transparent)]
    Key(#[from] KeyUseError),
}

/// A customer-protected KEK, unwrapped now.
pub struct Unwrapped {
    /// The identity it was unwrapped as (the one to re-wrap with).
    pub caller: Caller,
    pub vault_uri: String,
    pub key_name: String,
    /// The key version it is wrapped with.
    pub version: String,
    pub kek: Zeroizing<Vec<u8>>,
}

/// Wraps and unwraps KEKs with customer keys, and caches unwrapped KEKs briefly (memory only).
pub struct KeyProtector {
    keyvault: Arc<KeyVaultService>,
    directory: Arc<Directory>,
    ttl: Duration,
    /// Unwrapped KEKs by the resource's cache key, with when they were unwrapped.
    cache: Mutex<HashMap<String, (Arc<Kek>, Instant)>>,
}

impl KeyProtector {
    pub fn new(keyvault: Arc<KeyVaultService>, directory: Arc<Directory>, ttl: Duration) -> Self {
        KeyProtector { keyvault, directory, ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// The caller that uses the key for the resource now: its identity acting in-process for it
    /// (network rules see it as the resource, a trusted service for key vaults).
    pub fn acting(&self, key: &CustomerKey<'_>) -> Result<Caller, ProtectorError> {
        self.directory.act_as(&key.resource, key.identity).ok_or(ProtectorError::NoIdentity)
    }

    /// The resource's KEK: a root-sealed one as it is; a customer-protected one from the cache
    /// (younger than `ttl`), else unwrapped now as the resource's identity. Never writes.
    pub async fn kek(
        &self,
        cache_key: &str,
        protection: &Protection,
        key: &CustomerKey<'_>,
    ) -> Result<Arc<Kek>, ProtectorError> {
        let wrapped = match protection {
            Protection::Root(kek) => return Ok(Arc::clone(kek)),
            Protection::Customer(wrapped) => wrapped,
        };
        if let Some(kek) = self.cached(cache_key) {
            return Ok(kek);
        }
        self.unwrap_and_cache(cache_key, wrapped, key).await.map(|(kek, _)| kek)
    }

    fn cached(&self, cache_key: &str) -> Option<Arc<Kek>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(cache_key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(kek, _)| Arc::clone(kek))
    }

    /// Unwraps now, as the resource's identity, and caches the KEK (or drops the cached one when
    /// the unwrap fails, so access ends at once for every caller).
    pub async fn unwrap_and_cache(
        &self,
        cache_key: &str,
        wrapped: &WrappedKek,
        key: &CustomerKey<'_>,
    ) -> Result<(Arc<Kek>, Unwrapped), ProtectorError> {
        let outcome = match self.acting(key) {
            Ok(caller) => self.unwrap_as(caller, key.vault_uri, wrapped).await,
            Err(e) => Err(e),
        };
        let unwrapped = match outcome {
            Ok(unwrapped) => unwrapped,
            Err(e) => {
                self.forget(cache_key);
                return Err(e);
            }
        };
        let kek = Arc::new(Kek::from_bytes(&unwrapped.kek).map_err(|_| ProtectorError::Corrupt)?);
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key.to_owned(), (Arc::clone(&kek), Instant::now()));
        Ok((kek, unwrapped))
    }

    /// Unwraps the KEK as `caller` (an identity a change is switching to, or the current one).
    pub async fn unwrap_as(
        &self,
        caller: Caller,
        vault_uri: Option<&str>,
        wrapped: &WrappedKek,
    ) -> Result<Unwrapped, ProtectorError> {
        let (name, version) = wrapped.key_version().ok_or(ProtectorError::Corrupt)?;
        let bytes = b64url_decode(&wrapped.wrapped).ok_or(ProtectorError::Corrupt)?;
        let vault_uri =
            vault_uri.ok_or_else(|| KeyUseError::VaultNotFound(format!("the vault that holds the key '{name}'")))?;
        let used = self.keyvault.use_key(&caller, vault_uri, name, Some(version), KeyUse::Unwrap(bytes)).await?;
        Ok(Unwrapped {
            caller,
            vault_uri: vault_uri.to_owned(),
            key_name: name.to_owned(),
            version: version.to_owned(),
            kek: used.output,
        })
    }

    /// Wraps `kek` with key `key_name` (`version`, else its current version) as `caller`, then
    /// proves the identity can unwrap it again (so a missing permission fails the change, not a
    /// later read).
    pub async fn wrap(
        &self,
        caller: &Caller,
        vault_uri: &str,
        key_name: &str,
        version: Option<&str>,
        kek: &[u8],
    ) -> Result<(WrappedKek, KeyUsed), WrapError> {
        let kv = &self.keyvault;
        let wrapped = kv
            .use_key(caller, vault_uri, key_name, version, KeyUse::Wrap(kek.to_vec()))
            .await
            .map_err(WrapError::Wrap)?;
        let check = kv
            .use_key(caller, vault_uri, key_name, Some(&wrapped.version), KeyUse::Unwrap(wrapped.output.to_vec()))
            .await
            .map_err(WrapError::Unwrap)?;
        if check.output.as_slice() != kek {
            return Err(WrapError::Unwrap(KeyUseError::Internal));
        }
        Ok((WrappedKek { key_id: wrapped.kid.clone(), wrapped: b64url(&wrapped.output) }, wrapped))
    }

    /// When the key's current version is newer than the one the KEK is wrapped with, re-wraps the
    /// KEK with it (as the identity that unwrapped it); the resource records the new wrap.
    pub async fn rewrap_if_rotated(&self, unwrapped: &Unwrapped) -> Result<Option<(WrappedKek, KeyUsed)>, WrapError> {
        let kv = &self.keyvault;
        let latest = kv
            .use_key(&unwrapped.caller, &unwrapped.vault_uri, &unwrapped.key_name, None, KeyUse::Get)
            .await
            .map_err(WrapError::Wrap)?;
        if latest.version == unwrapped.version {
            return Ok(None);
        }
        let caller = &unwrapped.caller;
        let (name, uri) = (&unwrapped.key_name, &unwrapped.vault_uri);
        self.wrap(caller, uri, name, Some(&latest.version), &unwrapped.kek).await.map(Some)
    }

    /// The vault a resource's `keyVaultUri` names, if it may hold customer-managed keys (soft
    /// delete is always on in byos; purge protection must be on too).
    pub fn customer_vault(&self, uri: &str) -> Result<Arc<Vault>, SetupError> {
        let vault = self.keyvault.vault_named_by(uri).ok_or_else(|| SetupError::VaultNotFound(uri.to_owned()))?;
        if !vault.settings.enable_purge_protection {
            return Err(SetupError::NoPurgeProtection(vault.name.clone()));
        }
        Ok(vault)
    }

    /// [`KeyProtector::wrap`], after checking that the key version is an RSA key of `rsa_bits`
    /// bits when the resource requires a size.
    pub async fn wrap_requiring(
        &self,
        caller: &Caller,
        vault_uri: &str,
        key_name: &str,
        version: Option<&str>,
        kek: &[u8],
        rsa_bits: Option<usize>,
    ) -> Result<(WrappedKek, KeyUsed), SetupError> {
        if let Some(required) = rsa_bits {
            let got = self
                .keyvault
                .use_key(caller, vault_uri, key_name, version, KeyUse::Get)
                .await
                .map_err(|e| SetupError::Wrap(WrapError::Wrap(e)))?;
            if got.rsa_bits != Some(required) {
                return Err(SetupError::KeySize { bits: got.rsa_bits, required });
            }
        }
        self.wrap(caller, vault_uri, key_name, version, kek).await.map_err(SetupError::Wrap)
    }

    /// Drops the resource's cached KEK (its key changed, or the resource is gone).
    pub fn forget(&self, cache_key: &str) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(cache_key);
    }
}

/// Which step of a wrap Key Vault refused.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    #[error("wrapping the key failed: {0}")]
    Wrap(KeyUseError),
    #[error("unwrapping the wrapped key failed: {0}")]
    Unwrap(KeyUseError),
}

impl WrapError {
    pub fn cause(&self) -> &KeyUseError {
        match self {
            WrapError::Wrap(e) | WrapError::Unwrap(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Ctx;
    use crate::keys::tests::{bearer, install_policy_vault, rsa_key, service_on};
    use byos_store::MemStore;

    /// The building block on its own, with no storage code: a KEK wrapped by a customer key is
    /// unwrapped only through Key Vault, re-wrapped when the key rotates, and unavailable when the
    /// resource's identity is gone; a root-sealed KEK needs no key use at all.
    #[tokio::test]
    async fn customer_keys_wrap_unwrap_and_follow_rotation() -> Result<(), Box<dyn std::error::Error>> {
        let (service, tenant) = service_on(Arc::new(MemStore::new())).await?;
        let user = uuid::Uuid::new_v4();
        let vault = install_policy_vault(&service, tenant, user, &["create", "get", "wrapKey", "unwrapKey", "rotate"])?;
        let caller = bearer(user, tenant);
        Ctx::new(&service, &vault, &caller).create("cmk", Ok(rsa_key())).await?;
        let protector =
            KeyProtector::new(Arc::clone(&service), Arc::clone(&service.directory), Duration::from_secs(60));
        let kek = [7u8; 32];

        let (wrapped, used) = protector.wrap(&caller, &vault.uri, "cmk", None, &kek).await?;
        assert_eq!(wrapped.key_version(), Some(("cmk", used.version.as_str())));
        assert_ne!(b64url_decode(&wrapped.wrapped).as_deref(), Some(&kek[..]), "the stored form is not the KEK");
        let unwrapped = protector.unwrap_as(caller.clone(), Some(&vault.uri), &wrapped).await?;
        assert_eq!(unwrapped.kek.as_slice(), &kek);
        assert!(protector.rewrap_if_rotated(&unwrapped).await?.is_none(), "the key has not rotated");

        Ctx::new(&service, &vault, &caller).rotate("cmk").await?;
        let (rewrapped, rotated) = protector.rewrap_if_rotated(&unwrapped).await?.ok_or("no re-wrap after rotation")?;
        assert_ne!(rotated.version, used.version);
        let again = protector.unwrap_as(caller.clone(), Some(&vault.uri), &rewrapped).await?;
        assert_eq!(again.kek.as_slice(), &kek, "the re-wrapped KEK is the same KEK");

        let gone = CustomerKey {
            resource: AttachedIdentities { resource_id: "/subscriptions/s/x", system: None, user: &[] },
            identity: None,
            vault_uri: Some(&vault.uri),
        };
        let customer = Protection::Customer(rewrapped.clone());
        assert!(matches!(protector.kek("r", &customer, &gone).await, Err(ProtectorError::NoIdentity)));
        let root = Arc::new(Kek::from_bytes(&kek)?);
        assert!(Arc::ptr_eq(&protector.kek("r", &Protection::Root(Arc::clone(&root)), &gone).await?, &root));
        let vault_gone = protector.unwrap_as(caller, None, &rewrapped).await;
        assert!(matches!(vault_gone, Err(ProtectorError::Key(KeyUseError::VaultNotFound(_)))));
        Ok(())
    }
}

/// Why a customer key cannot be set up for a resource.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the key vault '{0}' was not found")]
    VaultNotFound(String),
    #[error("the key vault '{0}' does not have purge protection")]
    NoPurgeProtection(String),
    #[error("the key is not an RSA key of {required} bits")]
    KeySize { bits: Option<usize>, required: usize },
    #[error(transparent)]
    Wrap(WrapError),
}

impl SetupError {
    /// The ARM error for a change that needed the key to `what` (e.g. "wrap the account key").
    pub fn to_api_error(&self, what: &str) -> ApiError {
        match self {
            SetupError::VaultNotFound(uri) => ApiError::bad_request(
                "KeyVaultNotFound",
                format!(
                    "The key vault '{uri}' was not found (byos serves each vault at its own https://127.0.0.1:port/, also named https://{{vault name}}.vault.azure.net/)."
                ),
            ),
            SetupError::NoPurgeProtection(name) => ApiError::bad_request(
                "KeyVaultPolicyError",
                format!(
                    "The key vault '{name}' must have soft delete and purge protection enabled to hold customer-managed keys."
                ),
            ),
            SetupError::KeySize { bits, required } => ApiError::bad_request(
                "KeyVaultKeyNotSupported",
                format!(
                    "The key must be an RSA key of {required} bits; this one is {}.",
                    bits.map_or_else(|| "not an RSA key".to_owned(), |b| format!("{b} bits"))
                ),
            ),
            SetupError::Wrap(WrapError::Wrap(cause)) => key_failure(cause, what),
            SetupError::Wrap(WrapError::Unwrap(cause)) => key_failure(cause, &format!("{what} back")),
        }
    }
}

/// What ARM says when Key Vault refused a key use during a change.
pub fn key_failure(cause: &KeyUseError, what: &str) -> ApiError {
    let reason = match cause {
        KeyUseError::Denied(denial) if denial.kind == DenialKind::Network => {
            "the key vault's network rules do not admit the byos service (allow trusted Microsoft services: networkAcls.bypass AzureServices)"
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
