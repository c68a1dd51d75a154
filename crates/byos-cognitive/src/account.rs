//! What byos keeps about an AI-services account: its kind and SKU, the settings an ARM request may
//! change (validated here, with Azure's error codes), and its sealed keys.

use std::sync::Arc;

use byos_arm::network::NetworkAcls;
use byos_core::{ApiError, OrInternal};
use byos_crypto::envelope::Kek;
use byos_crypto::{RootKey, SealPurpose};
use byos_keyvault::protector::{Protection, WrappedKek};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

/// The version of [`AccountSettings`] records written now.
pub const SETTINGS_VERSION: u32 = 1;

/// The account kinds byos serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    SpeechServices,
    FormRecognizer,
    /// The multi-service account: Speech and Document Intelligence on one endpoint and key.
    CognitiveServices,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::SpeechServices, Kind::FormRecognizer, Kind::CognitiveServices];

    /// Whether accounts of this kind serve the Speech APIs.
    pub fn serves_speech(self) -> bool {
        matches!(self, Kind::SpeechServices | Kind::CognitiveServices)
    }

    /// The kind a request names (case-insensitively, stored as Azure spells it); any other is
    /// Azure's `InvalidApiSetId`.
    pub fn parse(text: &str) -> Result<Kind, ApiError> {
        Kind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(text)).ok_or_else(|| {
            ApiError::bad_request(
                "InvalidApiSetId",
                format!(
                    "The account type '{text}' is either invalid or unavailable in given region. byos offers SpeechServices, FormRecognizer and CognitiveServices."
                ),
            )
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::SpeechServices => "SpeechServices",
            Kind::FormRecognizer => "FormRecognizer",
            Kind::CognitiveServices => "CognitiveServices",
        }
    }

    /// The SKUs Azure offers for the kind (the multi-service account has no free tier).
    pub fn skus(self) -> &'static [&'static str] {
        match self {
            Kind::SpeechServices | Kind::FormRecognizer => &["F0", "S0"],
            Kind::CognitiveServices => &["S0"],
        }
    }

    /// Whether the kind can be bound to a storage account the customer owns (`userOwnedStorage`):
    /// Speech only, as in Azure (Document Intelligence reads private storage through its managed
    /// identity instead).
    pub fn offers_user_owned_storage(self) -> bool {
        self == Kind::SpeechServices
    }

    fn capabilities(self) -> Vec<Value> {
        let mut names = vec!["DynamicThrottling", "VirtualNetworks", "CustomerManagedKey", "Container"];
        if self.offers_user_owned_storage() {
            names.push("CustomerManagedStorage");
        }
        names.into_iter().map(|name| json!({"name": name})).collect()
    }

    /// `properties.endpoints`: the APIs the account serves, each at its one endpoint.
    fn endpoints(self, endpoint: &str) -> Map<String, Value> {
        let speech = ["Speech Services Speech to Text", "Speech Services Text to Speech", "Token"];
        let names: Vec<&str> = match self {
            Kind::SpeechServices => speech.to_vec(),
            Kind::FormRecognizer => vec!["FormRecognizer"],
            Kind::CognitiveServices => speech.into_iter().chain(["FormRecognizer"]).collect(),
        };
        names.into_iter().chain(["Container"]).map(|name| (name.to_owned(), json!(endpoint))).collect()
    }
}

/// A SKU of `kind`, canonically spelled; any other is Azure's `SpecialFeatureOrQuotaIdRequired`.
pub fn validate_sku(kind: Kind, name: &str) -> Result<&'static str, ApiError> {
    kind.skus().iter().copied().find(|sku| sku.eq_ignore_ascii_case(name)).ok_or_else(|| {
        ApiError::bad_request(
            "SpecialFeatureOrQuotaIdRequired",
            format!(
                "The subscription does not have QuotaId/Feature required by SKU '{name}' from kind '{}'. Available SKUs: {}.",
                kind.name(),
                kind.skus().join(", ")
            ),
        )
    })
}

/// The tier ARM reports for a SKU.
pub fn sku_tier(sku: &str) -> &'static str {
    if sku == "F0" { "Free" } else { "Standard" }
}

/// Azure's rule for account names: 2-64 characters, letters, digits, `_`, `.` and `-`, starting
/// with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = (2..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "InvalidAccountName",
        format!(
            "Account name '{name}' is invalid: it must be 2 to 64 characters of letters, digits, '_', '.' and '-', starting with a letter or digit."
        ),
    ))
}

/// A custom subdomain is one DNS label: 2-64 letters, digits and hyphens, starting and ending with a
/// letter or digit.
pub fn validate_subdomain(name: &str) -> Result<(), ApiError> {
    let ok = (2..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        return Ok(());
    }
    Err(ApiError::bad_request("CustomDomainInvalid", format!("Sub domain name '{name}' is not valid.")))
}

/// One entry of `properties.userOwnedStorage`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserOwnedStorage {
    pub resource_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_client_id: Option<String>,
}

/// Whether two storage bindings name the same accounts (ids compare case-insensitively).
pub fn same_storage(a: &[UserOwnedStorage], b: &[UserOwnedStorage]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.resource_id.eq_ignore_ascii_case(&y.resource_id))
}

/// An account's settings as stored in its ARM record's `properties`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettings {
    pub v: u32,
    pub kind: Kind,
    pub sku: String,
    pub internal_id: String,
    pub date_created: String,
    #[serde(default)]
    pub custom_sub_domain_name: Option<String>,
    #[serde(default)]
    pub network_acls: Option<NetworkAcls>,
    #[serde(default)]
    pub public_network_disabled: bool,
    #[serde(default)]
    pub disable_local_auth: bool,
    /// Fixed at creation (the BYOS binding).
    #[serde(default)]
    pub user_owned_storage: Vec<UserOwnedStorage>,
    #[serde(default)]
    pub restrict_outbound_network_access: bool,
    #[serde(default)]
    pub allowed_fqdn_list: Vec<String>,
    /// The port of the account's data-plane listener.
    pub port: u16,
    /// `Some` when the KEK of the account's service-held data is protected by a customer key.
    #[serde(default)]
    pub cmk: Option<CmkSettings>,
}

/// An account's customer-managed key (`encryption.keySource: Microsoft.KeyVault`). The vault is
/// named by its resource id (its URI is resolved at each use); the identity that uses the key is
/// resolved from the account's identities at each use, never a principal id copied at setup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CmkSettings {
    pub vault_id: String,
    pub key_name: String,
    #[serde(default)]
    pub key_version: Option<String>,
    /// The user-assigned identity that uses the key (resource id); `None`: the system-assigned one.
    #[serde(default)]
    pub identity: Option<String>,
    /// `identityClientId` as the request gave it.
    #[serde(default)]
    pub identity_client_id: Option<String>,
    /// The key version the KEK is wrapped with now.
    pub key_id: String,
}

/// What a request asks of `properties.encryption`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncryptionRequest {
    /// `keySource: Microsoft.CognitiveServices`: service-managed keys.
    Service,
    /// `keySource: Microsoft.KeyVault` with its `keyVaultProperties`.
    Customer {
        key_name: String,
        key_version: Option<String>,
        key_vault_uri: String,
        identity_client_id: Option<String>,
    },
}

/// Parses `properties.encryption`, if the request has one.
pub fn parse_encryption(props: &Map<String, Value>) -> Result<Option<EncryptionRequest>, ApiError> {
    let Some(encryption) = props.get("encryption").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let source = text(encryption.get("keySource")).unwrap_or_else(|| "Microsoft.CognitiveServices".into());
    if source.eq_ignore_ascii_case("Microsoft.CognitiveServices") {
        return Ok(Some(EncryptionRequest::Service));
    }
    if !source.eq_ignore_ascii_case("Microsoft.KeyVault") {
        return Err(invalid("encryption.keySource", "expected Microsoft.CognitiveServices or Microsoft.KeyVault"));
    }
    let kv = encryption.get("keyVaultProperties").cloned().unwrap_or(Value::Null);
    let key_name = text(kv.get("keyName")).ok_or_else(|| {
        invalid("encryption.keyVaultProperties.keyName", "a key name is required with Microsoft.KeyVault")
    })?;
    let key_vault_uri = text(kv.get("keyVaultUri")).ok_or_else(|| {
        invalid("encryption.keyVaultProperties.keyVaultUri", "a vault URI is required with Microsoft.KeyVault")
    })?;
    Ok(Some(EncryptionRequest::Customer {
        key_name,
        key_version: text(kv.get("keyVersion")),
        key_vault_uri,
        identity_client_id: text(kv.get("identityClientId")),
    }))
}

fn invalid(property: &str, why: &str) -> ApiError {
    ApiError::bad_request(
        "InvalidRequestPropertyValue",
        format!("The value of property '{property}' is invalid: {why}."),
    )
}

fn boolean(props: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(name, "expected true or false")),
    }
}

impl AccountSettings {
    /// The settings of a new account.
    pub fn new(kind: Kind, sku: &str) -> Result<Self, ApiError> {
        let internal_id: String =
            byos_crypto::random_bytes::<16>().or_internal()?.iter().map(|b| format!("{b:02x}")).collect();
        Ok(AccountSettings {
            v: SETTINGS_VERSION,
            kind,
            sku: sku.to_owned(),
            internal_id,
            date_created: byos_core::time::rfc3339_now(),
            custom_sub_domain_name: None,
            network_acls: None,
            public_network_disabled: false,
            disable_local_auth: false,
            user_owned_storage: Vec::new(),
            restrict_outbound_network_access: false,
            allowed_fqdn_list: Vec::new(),
            port: 0,
            cmk: None,
        })
    }

    /// Applies the properties of a PUT or PATCH that byos keeps as they are sent (the subdomain,
    /// storage and encryption are checked by the provider, which needs the store for them).
    pub fn apply(&mut self, props: &Map<String, Value>) -> Result<(), ApiError> {
        if let Some(acls) = props.get("networkAcls").filter(|v| !v.is_null()) {
            self.network_acls = Some(NetworkAcls::parse(acls)?);
        }
        match props.get("publicNetworkAccess") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.eq_ignore_ascii_case("Enabled") => self.public_network_disabled = false,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("Disabled") => self.public_network_disabled = true,
            Some(_) => return Err(invalid("publicNetworkAccess", "expected Enabled or Disabled")),
        }
        if let Some(disable) = boolean(props, "disableLocalAuth")? {
            self.disable_local_auth = disable;
        }
        if let Some(restrict) = boolean(props, "restrictOutboundNetworkAccess")? {
            self.restrict_outbound_network_access = restrict;
        }
        if let Some(list) = props.get("allowedFqdnList").filter(|v| !v.is_null()) {
            self.allowed_fqdn_list = serde_json::from_value(list.clone())
                .map_err(|_| invalid("allowedFqdnList", "expected a list of host names"))?;
        }
        Ok(())
    }

    /// `properties` as ARM returns them (`vault_uri`: where the customer key's vault is served now).
    pub fn to_wire(&self, endpoint: &str, vault_uri: Option<&str>) -> Value {
        let mut wire = json!({
            "provisioningState": "Succeeded",
            "endpoint": endpoint,
            "endpoints": self.kind.endpoints(endpoint),
            "internalId": self.internal_id,
            "dateCreated": self.date_created,
            "capabilities": self.kind.capabilities(),
            "isMigrated": false,
            "privateEndpointConnections": [],
            "publicNetworkAccess": if self.public_network_disabled { "Disabled" } else { "Enabled" },
        });
        if let Some(subdomain) = &self.custom_sub_domain_name {
            wire["customSubDomainName"] = json!(subdomain);
        }
        if let Some(acls) = &self.network_acls {
            wire["networkAcls"] = json!(acls);
        }
        if self.disable_local_auth {
            wire["disableLocalAuth"] = json!(true);
        }
        if !self.user_owned_storage.is_empty() {
            wire["userOwnedStorage"] = json!(self.user_owned_storage);
        }
        if self.restrict_outbound_network_access {
            wire["restrictOutboundNetworkAccess"] = json!(true);
            wire["allowedFqdnList"] = json!(self.allowed_fqdn_list);
        }
        if let Some(cmk) = &self.cmk {
            wire["encryption"] = json!({"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
                "keyName": cmk.key_name, "keyVersion": cmk.key_version, "keyVaultUri": vault_uri,
                "identityClientId": cmk.identity_client_id,
            }});
        }
        wire
    }
}

/// An account's secrets, sealed under the root key in their own table (never in the ARM record):
/// its two keys, and the key-encryption key of the data byos keeps for it (service-managed
/// artifacts), which customer-managed keys will protect instead of the root key.
#[derive(Clone)]
pub struct AccountKeys {
    keys: [Zeroizing<String>; 2],
    /// The root-protected KEK; empty while a customer key protects it.
    kek: Zeroizing<Vec<u8>>,
    /// The KEK wrapped by the customer's key.
    cmk: Option<WrappedKek>,
}

#[derive(Serialize, Deserialize)]
struct KeysRecord {
    v: u32,
    key1: String,
    key2: String,
    /// base64url of the 32-byte KEK (empty with a customer key).
    kek: String,
    #[serde(default)]
    cmk: Option<WrappedKek>,
}

impl Drop for KeysRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key1.zeroize();
        self.key2.zeroize();
        self.kek.zeroize();
    }
}

/// A fresh account key: 32 hex digits of 16 random bytes, as Azure's.
fn new_key() -> Result<Zeroizing<String>, ApiError> {
    let bytes = Zeroizing::new(byos_crypto::random_bytes::<16>().or_internal()?);
    Ok(Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect()))
}

impl AccountKeys {
    pub fn generate() -> Result<Self, ApiError> {
        let kek = Zeroizing::new(byos_crypto::random_bytes::<32>().or_internal()?.to_vec());
        Ok(AccountKeys { keys: [new_key()?, new_key()?], kek, cmk: None })
    }

    /// Key 1 or 2 (`index` 0 or 1).
    pub fn key(&self, index: usize) -> &str {
        self.keys[index.min(1)].as_str()
    }

    /// How the KEK of the account's service-held data is protected.
    pub fn protection(&self) -> Result<Protection, ApiError> {
        match &self.cmk {
            Some(wrapped) => Ok(Protection::Customer(wrapped.clone())),
            None => Ok(Protection::Root(Arc::new(Kek::from_bytes(&self.kek).or_internal()?))),
        }
    }

    /// The KEK's bytes while the root key protects it.
    pub fn root_kek_bytes(&self) -> Option<&[u8]> {
        self.cmk.is_none().then_some(self.kek.as_slice())
    }

    /// The same secrets with the KEK protected by a customer key: the KEK leaves the record.
    pub fn with_customer_key(&self, wrapped: WrappedKek) -> Self {
        AccountKeys { keys: self.keys.clone(), kek: Zeroizing::new(Vec::new()), cmk: Some(wrapped) }
    }

    /// The same secrets with the KEK (unwrapped by the caller) back under the root key.
    pub fn with_service_key(&self, kek: &[u8]) -> Self {
        AccountKeys { keys: self.keys.clone(), kek: Zeroizing::new(kek.to_vec()), cmk: None }
    }

    /// The same secrets with key `index` (0 or 1) replaced: the old one stops working at once.
    pub fn regenerated(&self, index: usize) -> Result<Self, ApiError> {
        let mut keys = self.keys.clone();
        keys[index.min(1)] = new_key()?;
        Ok(AccountKeys { keys, kek: self.kek.clone(), cmk: self.cmk.clone() })
    }

    pub fn seal(&self, root: &RootKey) -> Result<Vec<u8>, ApiError> {
        let record = KeysRecord {
            v: 1,
            key1: self.keys[0].to_string(),
            key2: self.keys[1].to_string(),
            kek: byos_crypto::b64url(&self.kek),
            cmk: self.cmk.clone(),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&record).or_internal()?);
        root.seal(SealPurpose::CognitiveAccountSecrets, &plain).or_internal()
    }

    pub fn open(root: &RootKey, sealed: &[u8]) -> Result<Self, ApiError> {
        let plain = root.open(SealPurpose::CognitiveAccountSecrets, sealed).or_internal()?;
        let record: KeysRecord = serde_json::from_slice(&plain).or_internal()?;
        let kek = Zeroizing::new(byos_crypto::b64url_decode(&record.kek).or_internal()?);
        let keys = [Zeroizing::new(record.key1.clone()), Zeroizing::new(record.key2.clone())];
        Ok(AccountKeys { keys, kek, cmk: record.cmk.clone() })
    }

    /// `{"key1", "key2"}`, as listKeys and regenerateKey answer.
    pub fn to_wire(&self) -> Value {
        json!({"key1": self.key(0), "key2": self.key(1)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_skus_and_names_follow_azure() {
        assert_eq!(Kind::parse("speechservices").map(Kind::name).ok(), Some("SpeechServices"));
        assert_eq!(Kind::parse("Emotion").err().map(|e| e.code), Some("InvalidApiSetId".to_owned()));
        assert_eq!(validate_sku(Kind::FormRecognizer, "f0").ok(), Some("F0"));
        assert!(validate_sku(Kind::CognitiveServices, "F0").is_err());
        assert!(validate_name("a").is_err() && validate_name("-ab").is_err() && validate_name("a/b").is_err());
        assert!(validate_name("speech_1.eu-west").is_ok());
        assert!(validate_subdomain("my-speech").is_ok() && validate_subdomain("my-").is_err());
        assert!(Kind::SpeechServices.offers_user_owned_storage() && !Kind::FormRecognizer.offers_user_owned_storage());
    }

    #[test]
    fn keys_seal_open_and_regenerate_one_at_a_time() -> Result<(), ApiError> {
        let root = RootKey::ephemeral().or_internal()?;
        let keys = AccountKeys::generate()?;
        assert_eq!(keys.key(0).len(), 32);
        let opened = AccountKeys::open(&root, &keys.seal(&root)?)?;
        assert_eq!((opened.key(0), opened.key(1)), (keys.key(0), keys.key(1)));
        let regenerated = keys.regenerated(1)?;
        assert_eq!(regenerated.key(0), keys.key(0));
        assert_ne!(regenerated.key(1), keys.key(1));
        assert_eq!(opened.root_kek_bytes(), keys.root_kek_bytes());
        assert_eq!(regenerated.root_kek_bytes(), keys.root_kek_bytes());
        let wrapped = WrappedKek { key_id: "https://v/keys/k/1".into(), wrapped: "AAAA".into() };
        let customer = AccountKeys::open(&root, &keys.with_customer_key(wrapped.clone()).seal(&root)?)?;
        assert!(
            customer.root_kek_bytes().is_none()
                && matches!(customer.protection()?, Protection::Customer(w) if w == wrapped)
        );
        let back = customer.with_service_key(keys.root_kek_bytes().or_internal()?);
        assert_eq!(back.root_kek_bytes(), keys.root_kek_bytes());
        Ok(())
    }
}
