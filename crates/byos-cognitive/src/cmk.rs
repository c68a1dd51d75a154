//! Customer-managed keys of AI-services accounts, on the key protector
//! (`byos_keyvault::protector`): the KEK of the account's service-held data is wrapped by the
//! customer's key and unwrapped only as the account's identity now, cached at most
//! `--cmk-cache-seconds`; revoking the key, the access or the identity makes the data unreadable
//! within that time. Changing the key re-wraps the KEK only; nothing is re-encrypted.

use std::sync::Arc;

use byos_core::{ApiError, Caller};
use byos_crypto::envelope::Kek;
use byos_identity::{AttachedIdentities, Directory};
use byos_keyvault::protector::{CustomerKey, KeyProtector, Protection, ProtectorError, WrappedKek, key_failure};
use byos_keyvault::{KeyVaultService, Vault};
use zeroize::Zeroizing;

use crate::LiveAccount;
use crate::account::CmkSettings;

/// AI accounts' customer keys must be RSA 2048 (the seed).
pub const REQUIRED_RSA_BITS: usize = 2048;

/// Why an account's customer key cannot be used now.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyUnavailable(pub String);

/// The customer keys of every AI account.
pub struct CustomerKeys {
    pub(crate) protector: KeyProtector,
    keyvault: Arc<KeyVaultService>,
}

impl CustomerKeys {
    pub fn new(keyvault: Arc<KeyVaultService>, directory: Arc<Directory>, ttl: std::time::Duration) -> Self {
        let protector = KeyProtector::new(Arc::clone(&keyvault), directory, ttl);
        CustomerKeys { protector, keyvault }
    }

    /// The vault a customer key lives in, served now.
    pub fn vault(&self, settings: &CmkSettings) -> Option<Arc<Vault>> {
        self.keyvault.vault_by_id(&settings.vault_id)
    }

    fn customer_key<'a>(
        account: &'a LiveAccount,
        settings: &'a CmkSettings,
        vault: Option<&'a Vault>,
    ) -> CustomerKey<'a> {
        CustomerKey {
            resource: AttachedIdentities {
                resource_id: &account.id,
                system: account.system_identity,
                user: &account.user_identities,
            },
            identity: settings.identity.as_deref(),
            vault_uri: vault.map(|v| v.uri.as_str()),
        }
    }

    /// The KEK of the account's service-held data: as it is under the root key; under a customer
    /// key from the protector's short cache, else unwrapped now as the account's identity.
    pub async fn kek(&self, account: &LiveAccount) -> Result<Arc<Kek>, KeyUnavailable> {
        let settings = match (&account.protection, &account.settings.cmk) {
            (Protection::Root(kek), _) => return Ok(Arc::clone(kek)),
            (Protection::Customer(_), Some(settings)) => settings,
            (Protection::Customer(_), None) => {
                return Err(KeyUnavailable("the account's key settings are missing".into()));
            }
        };
        let vault = self.vault(settings);
        let key = Self::customer_key(account, settings, vault.as_deref());
        self.protector.kek(&account.id, &account.protection, &key).await.map_err(|e| {
            tracing::info!(account = %account.id, reason = %e, "customer-managed key unavailable");
            KeyUnavailable(match e {
                ProtectorError::NoIdentity => "the identity that uses the key no longer exists or is detached".into(),
                ProtectorError::Corrupt => "the wrapped key is unreadable".into(),
                ProtectorError::Key(cause) => cause.to_string(),
            })
        })
    }

    /// The KEK's bytes while a customer key protects it (to re-wrap it with another key or take
    /// it back under the root key): unwrapped as `new_identity` (what a change switches to) if
    /// given and able, else as the account's identity now.
    pub async fn customer_kek_bytes(
        &self,
        account: &LiveAccount,
        new_identity: Option<&Caller>,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let (Protection::Customer(wrapped), Some(settings)) = (&account.protection, &account.settings.cmk) else {
            return Err(ApiError::internal());
        };
        let vault = self.vault(settings);
        let key = Self::customer_key(account, settings, vault.as_deref());
        if let Some(caller) = new_identity
            && let Ok(unwrapped) = self.protector.unwrap_as(caller.clone(), key.vault_uri, wrapped).await
        {
            return Ok(unwrapped.kek);
        }
        let caller = self.protector.acting(&key).map_err(|_| {
            ApiError::bad_request(
                "InvalidIdentity",
                "The identity that protects the account's key no longer exists: name an identity that can unwrap the key.",
            )
        })?;
        match self.protector.unwrap_as(caller, key.vault_uri, wrapped).await {
            Ok(unwrapped) => Ok(unwrapped.kek),
            Err(ProtectorError::Key(cause)) => Err(key_failure(&cause, "unwrap the account's current key")),
            Err(_) => Err(ApiError::internal()),
        }
    }

    /// Wraps `kek` with the customer's key as `caller` (proving the identity can unwrap it).
    pub async fn wrap(
        &self,
        caller: &Caller,
        vault: &Vault,
        key_name: &str,
        key_version: Option<&str>,
        kek: &[u8],
    ) -> Result<WrappedKek, ApiError> {
        let (wrapped, _) = self
            .protector
            .wrap_requiring(caller, &vault.uri, key_name, key_version, kek, Some(REQUIRED_RSA_BITS))
            .await
            .map_err(|e| e.to_api_error("wrap the account's key"))?;
        Ok(wrapped)
    }

    /// Drops the account's cached KEK (its key changed, or the account is gone).
    pub fn forget(&self, account_id: &str) {
        self.protector.forget(account_id);
    }
}
