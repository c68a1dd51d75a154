//! The `networkAcls` + `publicNetworkAccess` building block of resources with a firewall (storage
//! accounts, key vaults): the wire shape, its validation, and the network half of the door's
//! `ResourceGuard`.

use byos_authz::{Firewall, IpNet};
use byos_core::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IpRule {
    pub value: String,
    #[serde(default = "allow")]
    pub action: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAccessRule {
    pub tenant_id: Uuid,
    pub resource_id: String,
}

fn allow() -> String {
    "Allow".into()
}

fn azure_services() -> String {
    "AzureServices".into()
}

/// `networkAcls`, as storage accounts and key vaults carry it (vaults have no resource rules).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAcls {
    #[serde(default = "azure_services")]
    pub bypass: String,
    #[serde(default = "allow")]
    pub default_action: String,
    #[serde(default)]
    pub ip_rules: Vec<IpRule>,
    #[serde(default)]
    pub virtual_network_rules: Vec<Value>,
    #[serde(default)]
    pub resource_access_rules: Vec<ResourceAccessRule>,
}

impl Default for NetworkAcls {
    fn default() -> Self {
        NetworkAcls {
            bypass: azure_services(),
            default_action: allow(),
            ip_rules: vec![],
            virtual_network_rules: vec![],
            resource_access_rules: vec![],
        }
    }
}

fn invalid(property: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(
        "InvalidRequestPropertyValue",
        format!("The value of property '{property}' is invalid: {why}."),
    )
}

/// An IPv4 address or CIDR range of an `ipRules` entry.
pub fn parse_ip_rule(value: &str) -> Result<IpNet, ApiError> {
    let net = if value.contains('/') {
        value.parse::<IpNet>().ok()
    } else {
        value.parse::<std::net::IpAddr>().ok().map(IpNet::from)
    };
    net.filter(|n| n.addr().is_ipv4())
        .ok_or_else(|| ApiError::bad_request("NetworkAclsValidationFailure", format!("Values for request parameters are invalid: networkAcls.ipRule[*].value '{value}' is not an IPv4 address or CIDR range.")))
}

impl NetworkAcls {
    /// Parses and validates a request's `networkAcls`.
    pub fn parse(value: &Value) -> Result<Self, ApiError> {
        let acls: NetworkAcls = serde_json::from_value(value.clone()).map_err(|e| invalid("networkAcls", e))?;
        if !["Allow", "Deny"].iter().any(|a| a.eq_ignore_ascii_case(&acls.default_action)) {
            return Err(invalid("networkAcls.defaultAction", "expected Allow or Deny"));
        }
        for part in acls.bypass.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !["None", "Logging", "Metrics", "AzureServices"].iter().any(|a| a.eq_ignore_ascii_case(part)) {
                return Err(invalid(
                    "networkAcls.bypass",
                    format!("'{part}' is not one of None, Logging, Metrics, AzureServices"),
                ));
            }
        }
        for rule in &acls.ip_rules {
            parse_ip_rule(&rule.value)?;
        }
        for rule in &acls.resource_access_rules {
            byos_core::Scope::parse(&rule.resource_id)
                .map_err(|e| invalid("networkAcls.resourceAccessRules.resourceId", e))?;
        }
        Ok(acls)
    }

    /// The firewall the door enforces: `None` when the default action is Allow and public network
    /// access is on. With public network access disabled only resource-instance rules still admit.
    /// `trusted_services` are the resource types `bypass: AzureServices` admits for this resource.
    pub fn firewall(
        &self,
        public_network_disabled: bool,
        trusted_services: &'static [&'static str],
    ) -> Option<Firewall> {
        let resource_rules =
            || self.resource_access_rules.iter().map(|r| (r.tenant_id, r.resource_id.clone())).collect();
        if self.default_action.eq_ignore_ascii_case("Deny") {
            return Some(Firewall {
                ip_rules: self.ip_rules.iter().filter_map(|r| parse_ip_rule(&r.value).ok()).collect(),
                bypass_azure_services: self.bypass.split(',').any(|b| b.trim().eq_ignore_ascii_case("AzureServices")),
                resource_rules: resource_rules(),
                trusted_services,
            });
        }
        public_network_disabled.then(|| Firewall { resource_rules: resource_rules(), ..Firewall::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_validates_and_fills_azure_defaults() {
        let acls =
            NetworkAcls::parse(&serde_json::json!({"defaultAction": "Deny", "ipRules": [{"value": "127.0.0.0/8"}]}))
                .unwrap_or_default();
        assert_eq!((acls.bypass.as_str(), acls.ip_rules[0].action.as_str()), ("AzureServices", "Allow"));
        let firewall = acls.firewall(false, &["microsoft.storage/storageaccounts"]);
        assert!(
            firewall.is_some_and(|f| f.bypass_azure_services && f.ip_rules.len() == 1 && f.trusted_services.len() == 1)
        );
        for bad in [
            serde_json::json!({"defaultAction": "Maybe"}),
            serde_json::json!({"bypass": "Everyone"}),
            serde_json::json!({"ipRules": [{"value": "::1"}]}),
            serde_json::json!({"ipRules": [{"value": "300.0.0.1"}]}),
        ] {
            assert!(NetworkAcls::parse(&bad).is_err(), "{bad}");
        }
        assert!(NetworkAcls::default().firewall(false, &[]).is_none());
        assert!(
            NetworkAcls::default()
                .firewall(true, &[])
                .is_some_and(|f| f.ip_rules.is_empty() && !f.bypass_azure_services)
        );
    }
}
