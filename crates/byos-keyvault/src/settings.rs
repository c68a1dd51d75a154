//! Vault properties byos stores and enforces.

use byos_arm::network::NetworkAcls;
use byos_authz::Firewall;
use byos_authz::guard::KEY_VAULT_TRUSTED_SERVICES;
use byos_core::{ApiError, Caller};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Every key permission an access policy may grant.
pub const KEY_PERMISSIONS: [&str; 21] = [
    "all",
    "encrypt",
    "decrypt",
    "wrapKey",
    "unwrapKey",
    "sign",
    "verify",
    "get",
    "list",
    "create",
    "update",
    "import",
    "delete",
    "backup",
    "restore",
    "recover",
    "purge",
    "release",
    "rotate",
    "getrotationpolicy",
    "setrotationpolicy",
];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Permissions {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub certificates: Vec<String>,
    #[serde(default)]
    pub storage: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    pub tenant_id: Uuid,
    pub object_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    pub permissions: Permissions,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultSettings {
    pub v: u32,
    pub tenant_id: Uuid,
    pub sku: Value,
    pub access_policies: Vec<AccessPolicy>,
    pub soft_delete_retention_in_days: u32,
    pub enable_purge_protection: bool,
    pub enable_rbac_authorization: bool,
    #[serde(default)]
    pub network_acls: Option<NetworkAcls>,
    pub public_network_access: String,
    /// The port of the vault's listener (its `vaultUri`); internal.
    pub port: u16,
}

/// A vault's `networkAcls` as Key Vault shows it (ip rules have only a value; no resource rules).
fn vault_acls_wire(acls: &NetworkAcls) -> Value {
    json!({
        "bypass": acls.bypass,
        "defaultAction": acls.default_action,
        "ipRules": acls.ip_rules.iter().map(|r| json!({"value": r.value})).collect::<Vec<_>>(),
        "virtualNetworkRules": acls.virtual_network_rules,
    })
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("BadRequest", message)
}

/// Azure's rule: 3-24 letters, digits and hyphens, starting with a letter, ending with a letter or
/// digit, no consecutive hyphens.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = (3..=24).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "VaultNameNotValid",
            format!(
                "The vault name '{name}' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens."
            ),
        ))
    }
}

fn parse_policies(value: &Value) -> Result<Vec<AccessPolicy>, ApiError> {
    let policies: Vec<AccessPolicy> =
        serde_json::from_value(value.clone()).map_err(|e| bad(format!("The access policies are invalid: {e}.")))?;
    for policy in &policies {
        if let Some(p) =
            policy.permissions.keys.iter().find(|p| !KEY_PERMISSIONS.iter().any(|k| k.eq_ignore_ascii_case(p)))
        {
            return Err(bad(format!("The key permission '{p}' is not valid.")));
        }
    }
    Ok(policies)
}

/// `softDeleteRetentionInDays` when present (7 to 90).
fn retention_days(props: &Map<String, Value>) -> Result<Option<u32>, ApiError> {
    let Some(days) = props.get("softDeleteRetentionInDays").filter(|d| !d.is_null()) else { return Ok(None) };
    days.as_u64()
        .filter(|d| (7..=90).contains(d))
        .and_then(|d| u32::try_from(d).ok())
        .map(Some)
        .ok_or_else(|| bad("softDeleteRetentionInDays must be between 7 and 90."))
}

fn bool_prop(props: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(format!("The property '{name}' must be true or false, not {other}."))),
    }
}

impl AccessPolicy {
    /// Whether this entry speaks for `caller`: its tenant and object id, and, for a compound
    /// identity (`applicationId` set), only when the caller acts through that application (the
    /// token's `appid`); the object id alone does not get a compound entry's permissions.
    pub fn applies_to(&self, caller: &Caller) -> bool {
        let (Some(oid), Some(tid)) = (caller.object_id(), caller.tenant_id()) else { return false };
        let application_matches = match self.application() {
            None => true,
            Some(app) => caller.client_id().is_some_and(|c| c.to_string().eq_ignore_ascii_case(app)),
        };
        self.tenant_id == tid && self.object_id.eq_ignore_ascii_case(&oid.to_string()) && application_matches
    }

    /// The entry's application (compound identity), if any; an empty value names none.
    fn application(&self) -> Option<&str> {
        self.application_id.as_deref().filter(|a| !a.is_empty())
    }

    /// Whether `other` names the same identity (tenant, object, application): edits address entries by it.
    fn same_identity(&self, other: &AccessPolicy) -> bool {
        self.tenant_id == other.tenant_id
            && self.object_id.eq_ignore_ascii_case(&other.object_id)
            && match (self.application(), other.application()) {
                (None, None) => true,
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            }
    }
}

impl VaultSettings {
    /// Settings of a new vault from a PUT's `properties` (tenantId and sku required).
    pub fn create(props: &Map<String, Value>) -> Result<Self, ApiError> {
        let tenant_id = props
            .get("tenantId")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("The property 'tenantId' is required and must be a GUID."))?;
        let sku =
            props.get("sku").filter(|s| !s.is_null()).cloned().ok_or_else(|| bad("The property 'sku' is required."))?;
        let mut settings = VaultSettings {
            v: 1,
            tenant_id,
            sku,
            access_policies: vec![],
            soft_delete_retention_in_days: retention_days(props)?.unwrap_or(90),
            enable_purge_protection: false,
            enable_rbac_authorization: false,
            network_acls: None,
            public_network_access: "Enabled".into(),
            port: 0,
        };
        settings.apply(props)?;
        Ok(settings)
    }

    /// Applies present properties (PUT on an existing vault, PATCH).
    pub fn apply(&mut self, props: &Map<String, Value>) -> Result<(), ApiError> {
        if bool_prop(props, "enableSoftDelete")? == Some(false) {
            return Err(bad(
                "Soft delete cannot be disabled: it is always on for byos vaults, as for new Azure vaults.",
            ));
        }
        match bool_prop(props, "enablePurgeProtection")? {
            Some(false) if self.enable_purge_protection => {
                return Err(bad("Purge protection cannot be disabled once it is enabled."));
            }
            Some(on) => self.enable_purge_protection = on,
            None => {}
        }
        if let Some(rbac) = bool_prop(props, "enableRbacAuthorization")? {
            self.enable_rbac_authorization = rbac;
        }
        // The retention is fixed at creation (Azure): lowering it would shorten what purge
        // protection promises for keys deleted later.
        if retention_days(props)?.is_some_and(|days| days != self.soft_delete_retention_in_days) {
            return Err(bad(
                "The property \"softDeleteRetentionInDays\" has been set already and it can't be modified.",
            ));
        }
        if let Some(policies) = props.get("accessPolicies").filter(|p| !p.is_null()) {
            self.access_policies = parse_policies(policies)?;
        }
        if let Some(sku) = props.get("sku").filter(|s| !s.is_null()) {
            self.sku = sku.clone();
        }
        if let Some(acls) = props.get("networkAcls") {
            self.network_acls = if acls.is_null() { None } else { Some(NetworkAcls::parse(acls)?) };
        }
        if let Some(access) = props.get("publicNetworkAccess").filter(|a| !a.is_null()) {
            self.public_network_access = match access.as_str() {
                Some(a) if a.eq_ignore_ascii_case("Enabled") => "Enabled".into(),
                Some(a) if a.eq_ignore_ascii_case("Disabled") => "Disabled".into(),
                _ => {
                    return Err(bad(format!(
                        "The property 'publicNetworkAccess' must be Enabled or Disabled, not {access}."
                    )));
                }
            };
        }
        Ok(())
    }

    /// Edits the access policies (`add`, `replace`, `remove`), per object id.
    pub fn edit_policies(&mut self, kind: &str, value: &Value) -> Result<(), ApiError> {
        let edits = parse_policies(value)?;
        for edit in edits {
            let existing = self.access_policies.iter_mut().find(|p| p.same_identity(&edit));
            match (kind.to_ascii_lowercase().as_str(), existing) {
                ("add", Some(p)) => {
                    for k in edit.permissions.keys {
                        if !p.permissions.keys.iter().any(|e| e.eq_ignore_ascii_case(&k)) {
                            p.permissions.keys.push(k);
                        }
                    }
                }
                ("add", None) | ("replace", None) => self.access_policies.push(edit),
                ("replace", Some(p)) => p.permissions = edit.permissions,
                ("remove", _) => self.access_policies.retain(|p| !p.same_identity(&edit)),
                (other, _) => {
                    return Err(bad(format!(
                        "The access policy operation '{other}' is not one of add, replace, remove."
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn to_wire(&self, uri: &str) -> Value {
        json!({
            "tenantId": self.tenant_id,
            "sku": self.sku,
            "accessPolicies": self.access_policies,
            "vaultUri": uri,
            "enabledForDeployment": false,
            "enabledForDiskEncryption": false,
            "enabledForTemplateDeployment": false,
            "enableSoftDelete": true,
            "softDeleteRetentionInDays": self.soft_delete_retention_in_days,
            "enableRbacAuthorization": self.enable_rbac_authorization,
            "enablePurgeProtection": if self.enable_purge_protection { json!(true) } else { Value::Null },
            "networkAcls": self.network_acls.as_ref().map(vault_acls_wire),
            "publicNetworkAccess": self.public_network_access,
            "provisioningState": "Succeeded",
        })
    }

    /// The vault's firewall for the door (storage accounts, as trusted services, pass it with
    /// `bypass: AzureServices`); `(public network disabled, firewall)`.
    pub fn network(&self) -> (bool, Option<Firewall>) {
        let disabled = self.public_network_access == "Disabled";
        let firewall = match &self.network_acls {
            Some(acls) => acls.firewall(disabled, KEY_VAULT_TRUSTED_SERVICES),
            None => disabled.then(Firewall::default),
        };
        (disabled, firewall)
    }

    /// The key permissions the caller's access policy entries grant, as data-action patterns.
    pub fn policy_permits(&self, caller: &Caller) -> Vec<String> {
        self.access_policies
            .iter()
            .filter(|p| p.applies_to(caller))
            .flat_map(|p| p.permissions.keys.iter())
            .flat_map(|permission| permission_actions(permission).iter())
            .map(|action| (*action).to_owned())
            .collect()
    }
}

/// The data actions a key permission of an access policy stands for.
fn permission_actions(permission: &str) -> &'static [&'static str] {
    match permission.to_ascii_lowercase().as_str() {
        "all" => &["Microsoft.KeyVault/vaults/keys/*", "Microsoft.KeyVault/vaults/keyrotationpolicies/*"],
        "get" | "list" => &["Microsoft.KeyVault/vaults/keys/read"],
        "create" => &["Microsoft.KeyVault/vaults/keys/create/action"],
        "update" => &["Microsoft.KeyVault/vaults/keys/update/action"],
        "import" => &["Microsoft.KeyVault/vaults/keys/import/action"],
        "delete" => &["Microsoft.KeyVault/vaults/keys/delete"],
        "recover" => &["Microsoft.KeyVault/vaults/keys/recover/action"],
        "purge" => &["Microsoft.KeyVault/vaults/keys/purge/action"],
        "encrypt" => &["Microsoft.KeyVault/vaults/keys/encrypt/action"],
        "decrypt" => &["Microsoft.KeyVault/vaults/keys/decrypt/action"],
        "wrapkey" => &["Microsoft.KeyVault/vaults/keys/wrap/action"],
        "unwrapkey" => &["Microsoft.KeyVault/vaults/keys/unwrap/action"],
        "sign" => &["Microsoft.KeyVault/vaults/keys/sign/action"],
        "verify" => &["Microsoft.KeyVault/vaults/keys/verify/action"],
        "backup" => &["Microsoft.KeyVault/vaults/keys/backup/action"],
        "restore" => &["Microsoft.KeyVault/vaults/keys/restore/action"],
        "rotate" => &["Microsoft.KeyVault/vaults/keys/rotate/action"],
        "getrotationpolicy" => &["Microsoft.KeyVault/vaults/keyrotationpolicies/read"],
        "setrotationpolicy" => &["Microsoft.KeyVault/vaults/keyrotationpolicies/write"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["kv1", "my-vault-01", &format!("a{}", "b".repeat(23))] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "1vault", "vault-", "va--ult", "va_ult", &"a".repeat(25)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn soft_delete_and_purge_protection_are_one_way() -> Result<(), ApiError> {
        let props = json!({"tenantId": Uuid::new_v4(), "sku": {"family": "A", "name": "standard"}, "enablePurgeProtection": true});
        let mut s = VaultSettings::create(props.as_object().unwrap_or(&Map::new()))?;
        assert!(s.apply(json!({"enablePurgeProtection": false}).as_object().unwrap_or(&Map::new())).is_err());
        assert!(s.apply(json!({"enableSoftDelete": false}).as_object().unwrap_or(&Map::new())).is_err());
        Ok(())
    }

    fn principal(oid: Uuid, tenant: Uuid, app: Uuid) -> Caller {
        let principal = byos_core::PrincipalRef {
            object_id: oid,
            client_id: app,
            tenant_id: tenant,
            kind: byos_core::PrincipalKind::ServicePrincipal,
        };
        Caller::bearer(principal, byos_core::NetworkOrigin::local_socket())
    }

    #[test]
    fn access_policy_edits() -> Result<(), ApiError> {
        let tenant = Uuid::new_v4();
        let oid = Uuid::new_v4();
        let caller = principal(oid, tenant, Uuid::new_v4());
        let mut s = VaultSettings::create(json!({"tenantId": tenant, "sku": {}}).as_object().unwrap_or(&Map::new()))?;
        let entry = |keys: &[&str]| json!([{"tenantId": tenant, "objectId": oid, "permissions": {"keys": keys}}]);
        s.edit_policies("add", &entry(&["get"]))?;
        s.edit_policies("add", &entry(&["unwrapKey"]))?;
        assert_eq!(
            s.policy_permits(&caller),
            ["Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/unwrap/action"]
        );
        s.edit_policies("replace", &entry(&["sign"]))?;
        assert_eq!(s.policy_permits(&caller), ["Microsoft.KeyVault/vaults/keys/sign/action"]);
        s.edit_policies("remove", &entry(&[]))?;
        assert!(s.policy_permits(&caller).is_empty());
        assert!(s.edit_policies("add", &entry(&["fly"])).is_err());
        Ok(())
    }

    #[test]
    fn regression_f19_compound_identity_entries_apply_only_through_their_application() -> Result<(), ApiError> {
        let (tenant, oid, app, other_app) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut s = VaultSettings::create(json!({"tenantId": tenant, "sku": {}}).as_object().unwrap_or(&Map::new()))?;
        let compound =
            json!([{"tenantId": tenant, "objectId": oid, "applicationId": app, "permissions": {"keys": ["get"]}}]);
        s.edit_policies("add", &compound)?;
        assert!(s.policy_permits(&principal(oid, tenant, other_app)).is_empty(), "the object id alone");
        assert_eq!(s.policy_permits(&principal(oid, tenant, app)), ["Microsoft.KeyVault/vaults/keys/read"]);
        let plain = json!([{"tenantId": tenant, "objectId": oid, "permissions": {"keys": ["sign"]}}]);
        s.edit_policies("add", &plain)?;
        assert_eq!(s.access_policies.len(), 2, "a compound entry and the object's own entry are distinct");
        assert_eq!(
            s.policy_permits(&principal(oid, tenant, other_app)),
            ["Microsoft.KeyVault/vaults/keys/sign/action"]
        );
        s.edit_policies("remove", &compound)?;
        assert_eq!(s.policy_permits(&principal(oid, tenant, app)), ["Microsoft.KeyVault/vaults/keys/sign/action"]);
        Ok(())
    }

    #[test]
    fn regression_f12_soft_delete_retention_is_fixed_at_creation() -> Result<(), ApiError> {
        let props = json!({"tenantId": Uuid::new_v4(), "sku": {}, "softDeleteRetentionInDays": 30});
        let mut s = VaultSettings::create(props.as_object().unwrap_or(&Map::new()))?;
        assert_eq!(s.soft_delete_retention_in_days, 30);
        assert!(s.apply(json!({"softDeleteRetentionInDays": 30}).as_object().unwrap_or(&Map::new())).is_ok());
        let lowered = s.apply(json!({"softDeleteRetentionInDays": 7}).as_object().unwrap_or(&Map::new()));
        assert!(lowered.is_err_and(|e| e.status == 400 && e.message.contains("can't be modified")));
        assert_eq!(s.soft_delete_retention_in_days, 30);
        Ok(())
    }
}
