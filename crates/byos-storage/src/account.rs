//! Storage account settings (the ARM `properties` byos enforces), their validation, and the
//! account's secrets: two shared keys, the key-encryption key, the user-delegation root.

use byos_arm::network::NetworkAcls;
use byos_authz::ResourceGuard;
use byos_authz::guard::STORAGE_TRUSTED_SERVICES;
use byos_core::ApiError;
use byos_core::OrInternal;
use byos_crypto::envelope::Kek;
use byos_crypto::{MacKey, RootKey, SealPurpose, b64url, b64url_decode};
use byos_keyvault::protector::{Protection, WrappedKek};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

/// Azure's rule: 3-24 lowercase letters and digits.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    if (3..=24).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "AccountNameInvalid",
            format!(
                "{name} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only."
            ),
        ))
    }
}

/// The account properties byos stores and enforces.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettings {
    pub v: u32,
    pub allow_blob_public_access: bool,
    pub allow_shared_key_access: bool,
    pub public_network_access: String,
    pub network_acls: NetworkAcls,
    pub minimum_tls_version: String,
    pub supports_https_traffic_only: bool,
    pub access_tier: String,
    pub creation_time: String,
    /// `Some` when the account's key-encryption key is protected by a customer-managed key.
    #[serde(default)]
    pub cmk: Option<CmkSettings>,
}

/// The current format of [`CmkSettings`].
pub const CMK_SETTINGS_VERSION: u32 = 2;

/// Customer-managed key settings of an account (`encryption.keySource: Microsoft.Keyvault`).
///
/// Version 2 names the vault by its resource id (its URI is resolved at each use, so a vault whose
/// port moved is followed) and no principal: the identity that uses the key is resolved from the
/// account's identity at each use. Version 1 records (a vault URI and the principal id the identity
/// had at setup) are read as they are: the URI is resolved at use and the principal is ignored;
/// they are written back as version 2.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CmkSettings {
    /// 1 when absent (records written before versioning).
    #[serde(default = "legacy_cmk_version")]
    pub v: u32,
    pub key_name: String,
    /// A pinned version; `None` follows the key's current version (automatic rotation).
    pub key_version: Option<String>,
    /// The vault's resource id (empty in version 1 records).
    #[serde(default)]
    pub vault_id: String,
    /// Version 1 only: the vault's URI at setup (what such a record is resolved by).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_vault_uri: String,
    /// The user-assigned identity used with the key; `None` means the system-assigned one.
    pub identity: Option<String>,
    /// The key version the KEK is wrapped with now (`{vault}keys/{name}/{version}`; only the name
    /// and version are meaningful, the vault is `vault_id`).
    pub current_key_id: String,
    pub last_rotation: String,
}

fn legacy_cmk_version() -> u32 {
    1
}

impl CmkSettings {
    /// The key version the KEK is wrapped with now.
    pub fn current_version(&self) -> Option<&str> {
        split_key_id(&self.current_key_id).map(|(_, _, version)| version)
    }
}

/// Splits `{vault}keys/{name}/{version}`.
pub fn split_key_id(key_id: &str) -> Option<(&str, &str, &str)> {
    let (vault, rest) = key_id.split_once("keys/")?;
    let (name, version) = rest.split_once('/')?;
    Some((vault, name, version))
}

/// What an update asks of the account's encryption.
#[derive(Clone, Debug, PartialEq)]
pub enum EncryptionRequest {
    ServiceManaged,
    CustomerManaged { key_name: String, key_version: Option<String>, key_vault_uri: String, identity: Option<String> },
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            v: 1,
            allow_blob_public_access: false,
            allow_shared_key_access: true,
            public_network_access: "Enabled".into(),
            network_acls: NetworkAcls::default(),
            minimum_tls_version: "TLS1_2".into(),
            supports_https_traffic_only: true,
            access_tier: "Hot".into(),
            creation_time: byos_core::time::rfc3339_now(),
            cmk: None,
        }
    }
}

fn invalid(property: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "InvalidRequestPropertyValue",
        format!("The value of property '{property}' is invalid: {why}."),
    )
}

fn bool_prop(props: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(name, format!("expected true or false, got {other}"))),
    }
}

fn one_of(props: &Map<String, Value>, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(s))
            .map(|a| Some((*a).to_owned()))
            .ok_or_else(|| invalid(name, format!("'{s}' is not one of {allowed:?}"))),
        Some(other) => Err(invalid(name, format!("expected a string, got {other}"))),
    }
}

impl AccountSettings {
    /// Applies the `properties` of a PUT or PATCH: present fields replace, absent ones stay.
    pub fn apply(&mut self, props: &Map<String, Value>) -> Result<(), ApiError> {
        if let Some(b) = bool_prop(props, "allowBlobPublicAccess")? {
            self.allow_blob_public_access = b;
        }
        // `allowSharedKeyAccess: null` means true, as in Azure.
        if props.contains_key("allowSharedKeyAccess") {
            self.allow_shared_key_access = bool_prop(props, "allowSharedKeyAccess")?.unwrap_or(true);
        }
        if let Some(v) = one_of(props, "publicNetworkAccess", &["Enabled", "Disabled"])? {
            self.public_network_access = v;
        }
        if let Some(v) = one_of(props, "minimumTlsVersion", &["TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3"])? {
            self.minimum_tls_version = v;
        }
        if let Some(v) = one_of(props, "accessTier", &["Hot", "Cool", "Cold", "Premium"])? {
            self.access_tier = v;
        }
        if let Some(b) = bool_prop(props, "supportsHttpsTrafficOnly")? {
            self.supports_https_traffic_only = b;
        }
        match props.get("networkAcls") {
            None | Some(Value::Null) => {}
            Some(acls) => self.network_acls = NetworkAcls::parse(acls)?,
        }
        Ok(())
    }

    /// The ARM `properties` as returned to clients; `vault_uri` is the live URI of the vault that
    /// holds the customer key (if any), resolved by the caller.
    pub fn to_wire(&self, blob_endpoint: &str, location: &str, vault_uri: Option<&str>) -> Value {
        json!({
            "provisioningState": "Succeeded",
            "creationTime": self.creation_time,
            "primaryEndpoints": {"blob": blob_endpoint},
            "primaryLocation": location,
            "statusOfPrimary": "available",
            "allowBlobPublicAccess": self.allow_blob_public_access,
            "allowSharedKeyAccess": self.allow_shared_key_access,
            "publicNetworkAccess": self.public_network_access,
            "minimumTlsVersion": self.minimum_tls_version,
            "supportsHttpsTrafficOnly": self.supports_https_traffic_only,
            "accessTier": self.access_tier,
            "networkAcls": self.network_acls,
            "encryption": self.encryption_wire(vault_uri),
        })
    }

    fn encryption_wire(&self, vault_uri: Option<&str>) -> Value {
        let mut encryption = json!({
            "keySource": "Microsoft.Storage",
            "requireInfrastructureEncryption": false,
            "services": {"blob": {"enabled": true, "keyType": "Account", "lastEnabledTime": self.creation_time}},
        });
        if let Some(cmk) = &self.cmk {
            // The vault is named by resource id; what clients see is where it is served now.
            let uri = vault_uri.unwrap_or(&cmk.key_vault_uri);
            let current = match cmk.current_version() {
                Some(version) if !uri.is_empty() => format!("{uri}keys/{}/{version}", cmk.key_name),
                _ => cmk.current_key_id.clone(),
            };
            encryption["keySource"] = json!("Microsoft.Keyvault");
            encryption["keyvaultproperties"] = json!({
                "keyname": cmk.key_name,
                "keyversion": cmk.key_version.clone().unwrap_or_default(),
                "keyvaulturi": uri,
                "currentVersionedKeyIdentifier": current,
                "lastKeyRotationTimestamp": cmk.last_rotation,
            });
            if let Some(identity) = &cmk.identity {
                encryption["identity"] = json!({"userAssignedIdentity": identity});
            }
        }
        encryption
    }

    /// The resource-side inputs of the door for this account.
    pub fn guard(&self, anonymous_permits: Vec<String>) -> ResourceGuard {
        let public_network_disabled = self.public_network_access == "Disabled";
        let firewall = self.network_acls.firewall(public_network_disabled, STORAGE_TRUSTED_SERVICES);
        ResourceGuard {
            public_network_disabled,
            firewall,
            allow_key_based: self.allow_shared_key_access,
            allow_public_access: self.allow_blob_public_access,
            anonymous_permits,
            policy_permits: None,
        }
    }
}

/// The encryption change a PUT or PATCH asks for, if any.
pub fn parse_encryption(props: &Map<String, Value>) -> Result<Option<EncryptionRequest>, ApiError> {
    let Some(encryption) = props.get("encryption").filter(|e| !e.is_null()) else { return Ok(None) };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let source = text(encryption.get("keySource")).unwrap_or_else(|| "Microsoft.Storage".into());
    if source.eq_ignore_ascii_case("Microsoft.Storage") {
        return Ok(Some(EncryptionRequest::ServiceManaged));
    }
    if !source.eq_ignore_ascii_case("Microsoft.Keyvault") {
        return Err(invalid(
            "encryption.keySource",
            format!("'{source}' is not Microsoft.Storage or Microsoft.Keyvault"),
        ));
    }
    let kv = encryption
        .get("keyvaultproperties")
        .or_else(|| encryption.get("keyVaultProperties"))
        .cloned()
        .unwrap_or(Value::Null);
    let key_name = text(kv.get("keyname").or_else(|| kv.get("keyName"))).ok_or_else(|| {
        invalid("encryption.keyvaultproperties.keyname", "a key name is required with Microsoft.Keyvault")
    })?;
    let key_vault_uri = text(kv.get("keyvaulturi").or_else(|| kv.get("keyVaultUri"))).ok_or_else(|| {
        invalid("encryption.keyvaultproperties.keyvaulturi", "a vault URI is required with Microsoft.Keyvault")
    })?;
    Ok(Some(EncryptionRequest::CustomerManaged {
        key_name,
        key_version: text(kv.get("keyversion").or_else(|| kv.get("keyVersion"))),
        key_vault_uri,
        identity: text(encryption.get("identity").and_then(|i| i.get("userAssignedIdentity"))),
    }))
}

/// An account's secrets. Stored only sealed under the root key; with a customer-managed key the
/// KEK itself is not among them, only its wrapped form.
pub struct AccountSecrets {
    pub keys: [Zeroizing<String>; 2],
    pub kek: Protection,
    /// Derives user delegation keys (so byos need not store them).
    pub delegation: MacKey,
    raw: SecretsRecord,
}

#[derive(Serialize, Deserialize, Clone)]
struct SecretsRecord {
    v: u32,
    key1: String,
    key2: String,
    /// The KEK (base64url) when service-managed; empty with a customer-managed key.
    #[serde(default)]
    kek: String,
    delegation: String,
    #[serde(default)]
    cmk: Option<WrappedKek>,
}

impl Drop for SecretsRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key1.zeroize();
        self.key2.zeroize();
        self.kek.zeroize();
        self.delegation.zeroize();
    }
}

/// A fresh shared key: 64 random bytes, base64 (as Azure's account keys).
pub fn new_shared_key() -> Result<String, ApiError> {
    use base64::Engine;
    let bytes = byos_crypto::random_bytes::<64>().or_internal()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl AccountSecrets {
    pub fn generate() -> Result<Self, ApiError> {
        let record = SecretsRecord {
            v: 1,
            key1: new_shared_key()?,
            key2: new_shared_key()?,
            kek: b64url(&byos_crypto::random_bytes::<32>().or_internal()?),
            delegation: b64url(&byos_crypto::random_bytes::<32>().or_internal()?),
            cmk: None,
        };
        Self::from_record(record)
    }

    fn from_record(raw: SecretsRecord) -> Result<Self, ApiError> {
        let delegation = Zeroizing::new(b64url_decode(&raw.delegation).or_internal()?);
        let kek = match &raw.cmk {
            Some(wrap) => Protection::Customer(wrap.clone()),
            None => {
                let bytes = Zeroizing::new(b64url_decode(&raw.kek).or_internal()?);
                Protection::Root(std::sync::Arc::new(Kek::from_bytes(&bytes).or_internal()?))
            }
        };
        Ok(AccountSecrets {
            keys: [Zeroizing::new(raw.key1.clone()), Zeroizing::new(raw.key2.clone())],
            kek,
            delegation: MacKey::new(&delegation),
            raw,
        })
    }

    /// The same secrets with key `index` (0 or 1) replaced.
    pub fn with_new_key(&self, index: usize) -> Result<Self, ApiError> {
        let mut raw = self.raw.clone();
        if index == 0 {
            raw.key1 = new_shared_key()?;
        } else {
            raw.key2 = new_shared_key()?;
        }
        Self::from_record(raw)
    }

    /// The service-managed KEK's bytes (`None` with a customer-managed key).
    pub fn root_kek_bytes(&self) -> Option<Zeroizing<Vec<u8>>> {
        (self.raw.cmk.is_none()).then(|| b64url_decode(&self.raw.kek).map(Zeroizing::new)).flatten()
    }

    /// The same secrets with a new user-delegation root: every user delegation key (and so every
    /// user delegation SAS) derived from the old one stops being valid.
    pub fn with_new_delegation_root(&self) -> Result<Self, ApiError> {
        let mut raw = self.raw.clone();
        raw.delegation = b64url(&byos_crypto::random_bytes::<32>().or_internal()?);
        Self::from_record(raw)
    }

    /// The same secrets with the KEK protected by a customer's key: the KEK leaves the record.
    pub fn with_customer_key(&self, wrap: WrappedKek) -> Result<Self, ApiError> {
        let mut raw = self.raw.clone();
        raw.kek = String::new();
        raw.cmk = Some(wrap);
        Self::from_record(raw)
    }

    /// The same secrets with the KEK (unwrapped by the caller) back under the root key.
    pub fn with_service_key(&self, kek: &[u8]) -> Result<Self, ApiError> {
        let mut raw = self.raw.clone();
        raw.kek = b64url(kek);
        raw.cmk = None;
        Self::from_record(raw)
    }

    pub fn seal(&self, root: &RootKey) -> Result<Vec<u8>, ApiError> {
        let json = Zeroizing::new(serde_json::to_vec(&self.raw).or_internal()?);
        root.seal(SealPurpose::AccountSecrets, &json).or_internal()
    }

    pub fn open(root: &RootKey, sealed: &[u8]) -> Result<Self, ApiError> {
        let json = root.open(SealPurpose::AccountSecrets, sealed).map_err(|e| {
            tracing::error!(error = %e, "cannot open account secrets");
            ApiError::internal()
        })?;
        let raw: SecretsRecord = serde_json::from_slice(&json).or_internal()?;
        Self::from_record(raw)
    }

    /// The decoded bytes of shared key `index`, for HMAC.
    pub fn key_bytes(&self, index: usize) -> Option<Zeroizing<Vec<u8>>> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(self.keys.get(index)?.as_bytes()).ok().map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["abc", "acct123", &"a".repeat(24)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "Abc", "a-b", &"a".repeat(25), "ünï"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_merge_and_validate() {
        let mut s = AccountSettings::default();
        let props = json!({"allowSharedKeyAccess": false, "networkAcls": {"defaultAction": "Deny", "ipRules": [{"value": "127.0.0.0/30"}]}});
        assert!(s.apply(props.as_object().unwrap_or(&Map::new())).is_ok());
        assert!(!s.allow_shared_key_access);
        let guard = s.guard(vec![]);
        assert!(guard.firewall.is_some_and(|f| f.ip_rules.len() == 1 && f.bypass_azure_services));
        assert!(s.apply(json!({"allowSharedKeyAccess": null}).as_object().unwrap_or(&Map::new())).is_ok());
        assert!(s.allow_shared_key_access, "null means true");
        for bad in [
            json!({"networkAcls": {"defaultAction": "Maybe"}}),
            json!({"networkAcls": {"ipRules": [{"value": "300.0.0.1"}]}}),
            json!({"allowBlobPublicAccess": "yes"}),
        ] {
            assert!(s.clone().apply(bad.as_object().unwrap_or(&Map::new())).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_seal_and_rotate() -> Result<(), ApiError> {
        let root = RootKey::ephemeral().map_err(|_| ApiError::internal())?;
        let secrets = AccountSecrets::generate()?;
        let opened = AccountSecrets::open(&root, &secrets.seal(&root)?)?;
        assert_eq!(opened.keys[0].as_str(), secrets.keys[0].as_str());
        let rotated = secrets.with_new_key(0)?;
        assert_ne!(rotated.keys[0].as_str(), secrets.keys[0].as_str());
        assert_eq!(rotated.keys[1].as_str(), secrets.keys[1].as_str());
        assert_eq!(rotated.key_bytes(0).map(|k| k.len()), Some(64));
        Ok(())
    }
}
