//! What a resource adds to a data-plane decision: its network rules and which ways of
//! authenticating it accepts. The resource's owner (e.g. a storage account) builds a
//! [`ResourceGuard`]; the door evaluates it for the caller, before any permission check.

use std::net::IpAddr;

use byos_core::{AuthMethod, Caller, PrincipalKind};
use ipnet::IpNet;
use uuid::Uuid;

use crate::matching::Pattern;

/// Resource types whose system-assigned identities count as trusted Azure services when a storage
/// account's firewall has `bypass: AzureServices` (Azure's "trusted access based on managed identity").
pub const STORAGE_TRUSTED_SERVICES: &[&str] = &[
    "microsoft.cognitiveservices/accounts",
    "microsoft.machinelearningservices/workspaces",
    "microsoft.search/searchservices",
    "microsoft.datafactory/factories",
    "microsoft.synapse/workspaces",
    "microsoft.streamanalytics/streamingjobs",
    "microsoft.apimanagement/service",
    "microsoft.eventgrid/topics",
    "microsoft.logic/workflows",
];

/// The resource types a key vault's firewall admits with `bypass: AzureServices`: Azure Storage
/// (encryption at rest with customer-managed keys) and the services that use vault keys the same way.
pub const KEY_VAULT_TRUSTED_SERVICES: &[&str] = &[
    "microsoft.storage/storageaccounts",
    "microsoft.machinelearningservices/workspaces",
    "microsoft.datafactory/factories",
    "microsoft.synapse/workspaces",
    "microsoft.apimanagement/service",
];

/// A firewall (`networkAcls` with `defaultAction: Deny`).
#[derive(Clone, Debug, Default)]
pub struct Firewall {
    pub ip_rules: Vec<IpNet>,
    pub bypass_azure_services: bool,
    /// `resourceAccessRules`: (tenant, resource id pattern; `*` wildcards allowed).
    pub resource_rules: Vec<(Uuid, String)>,
    /// The resource types `bypass_azure_services` admits (which services Azure trusts depends on
    /// the resource behind the firewall).
    pub trusted_services: &'static [&'static str],
}

/// The resource-side inputs of an access decision.
#[derive(Clone, Debug, Default)]
pub struct ResourceGuard {
    /// `publicNetworkAccess: Disabled` admits only resource instances named in the rules.
    pub public_network_disabled: bool,
    /// `None` when the default action is Allow.
    pub firewall: Option<Firewall>,
    /// `allowSharedKeyAccess`: key-based credentials (account keys, account and service SAS).
    pub allow_key_based: bool,
    /// `allowBlobPublicAccess` (and the like): whether anonymous access can be allowed at all.
    pub allow_public_access: bool,
    /// What anonymous callers may do here (from a container's public access level).
    pub anonymous_permits: Vec<String>,
    /// Set when the resource authorizes data actions by its own access policy instead of RBAC (a
    /// Key Vault without `enableRbacAuthorization`): the actions the caller's entry grants.
    pub policy_permits: Option<Vec<String>>,
}

/// Why the network refused a caller.
pub fn network_refusal(guard: &ResourceGuard, caller: &Caller) -> Option<String> {
    let instance = resource_instance_match(guard, caller);
    if guard.public_network_disabled {
        return (!instance).then(|| {
            "publicNetworkAccess is Disabled and the caller is not a resource instance named in resourceAccessRules"
                .to_owned()
        });
    }
    let firewall = guard.firewall.as_ref()?;
    if instance {
        return None;
    }
    if firewall.bypass_azure_services && is_trusted_service(firewall, caller) {
        return None;
    }
    match caller.origin().ip {
        Some(ip) if ip_allowed(firewall, ip) => None,
        Some(ip) => Some(format!("firewall: ip {ip} not in ipRules")),
        None => Some("firewall: the caller has no network address that an ipRule could admit".to_owned()),
    }
}

fn ip_allowed(firewall: &Firewall, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    firewall.ip_rules.iter().any(|net| net.contains(&ip))
}

/// The resource a caller acts for as a trusted service: only a byos service working in-process for
/// a resource. A bearer token of a resource's managed identity does not qualify, whoever presents
/// it: Azure's trusted-service exception covers the service's own backend calls, and here any local
/// process can fetch such a token (`/msi/token`, IMDS).
fn caller_resource(caller: &Caller) -> Option<&str> {
    match caller.auth() {
        AuthMethod::ServiceIdentity => caller.acting_for(),
        _ => None,
    }
}

/// The resource instance a caller is, for `resourceAccessRules`: a byos service acting for it, or
/// a bearer token of its system-assigned identity. A resource-instance rule names one resource the
/// customer chose, unlike the trusted-service bypass, which admits every resource of a type.
fn caller_instance(caller: &Caller) -> Option<&str> {
    match (caller.kind(), caller.auth()) {
        (_, AuthMethod::ServiceIdentity) => caller.acting_for(),
        (Some(PrincipalKind::ManagedIdentity { resource_id }), AuthMethod::BearerToken) => Some(resource_id),
        _ => None,
    }
}

fn resource_instance_match(guard: &ResourceGuard, caller: &Caller) -> bool {
    let (Some(resource), Some(firewall)) = (caller_instance(caller), guard.firewall.as_ref()) else {
        return false;
    };
    let resource = resource.to_ascii_lowercase();
    firewall
        .resource_rules
        .iter()
        .any(|(tenant, pattern)| Some(*tenant) == caller.tenant_id() && Pattern::new(pattern).matches(&resource))
}

fn is_trusted_service(firewall: &Firewall, caller: &Caller) -> bool {
    caller_resource(caller).is_some_and(|resource| {
        let folded = resource.to_ascii_lowercase();
        firewall.trusted_services.iter().any(|t| {
            folded
                .split("/providers/")
                .nth(1)
                .is_some_and(|rest| rest.starts_with(t) && rest[t.len()..].matches('/').count() == 1)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use byos_core::{NetworkOrigin, PrincipalKind, PrincipalRef};

    fn from(ip: &str) -> Caller {
        Caller::shared_key(NetworkOrigin { ip: ip.parse().ok(), tls: true })
    }

    fn identity_of(resource: &str, tenant: Uuid) -> PrincipalRef {
        PrincipalRef {
            object_id: Uuid::new_v4(),
            client_id: Uuid::new_v4(),
            tenant_id: tenant,
            kind: PrincipalKind::ManagedIdentity { resource_id: resource.into() },
        }
    }

    /// A byos service acting in-process for `resource`, as its system-assigned identity.
    fn acting_as(resource: &str, tenant: Uuid) -> Caller {
        Caller::service_identity(identity_of(resource, tenant), resource.into())
    }

    /// A client presenting a bearer token of `resource`'s system-assigned identity.
    fn token_of(resource: &str, tenant: Uuid) -> Caller {
        Caller::bearer(identity_of(resource, tenant), NetworkOrigin { ip: "10.1.1.1".parse().ok(), tls: true })
    }

    fn guard(firewall: Firewall) -> ResourceGuard {
        ResourceGuard { firewall: Some(firewall), ..ResourceGuard::default() }
    }

    #[test]
    fn firewall_matrix() {
        let tenant = Uuid::new_v4();
        let speech = "/subscriptions/s/resourceGroups/g/providers/Microsoft.CognitiveServices/accounts/speech1";
        let other = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/other";
        let ips = Firewall {
            ip_rules: vec![
                "127.0.0.2/32".parse().unwrap_or_else(|_| unreachable!()),
                "127.0.1.0/24".parse().unwrap_or_else(|_| unreachable!()),
            ],
            ..Firewall::default()
        };
        let trusted =
            Firewall { bypass_azure_services: true, trusted_services: STORAGE_TRUSTED_SERVICES, ..Firewall::default() };
        let instances = Firewall {
            resource_rules: vec![(
                tenant,
                "/subscriptions/s/resourceGroups/*/providers/Microsoft.Storage/storageAccounts/other".into(),
            )],
            ..Firewall::default()
        };
        let table: Vec<(&str, ResourceGuard, Caller, bool)> = vec![
            ("listed ip", guard(ips.clone()), from("127.0.0.2"), true),
            ("ip in cidr", guard(ips.clone()), from("127.0.1.77"), true),
            ("unlisted ip", guard(ips.clone()), from("127.0.0.3"), false),
            ("trusted service with bypass", guard(trusted.clone()), acting_as(speech, tenant), true),
            (
                "trusted service without bypass",
                guard(Firewall { trusted_services: STORAGE_TRUSTED_SERVICES, ..Firewall::default() }),
                acting_as(speech, tenant),
                false,
            ),
            (
                "service trusted elsewhere",
                guard(Firewall {
                    bypass_azure_services: true,
                    trusted_services: KEY_VAULT_TRUSTED_SERVICES,
                    ..Firewall::default()
                }),
                acting_as(speech, tenant),
                false,
            ),
            (
                "byos service acting for a trusted resource",
                guard(Firewall {
                    bypass_azure_services: true,
                    trusted_services: KEY_VAULT_TRUSTED_SERVICES,
                    ..Firewall::default()
                }),
                Caller::service_identity(
                    identity_of(
                        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u",
                        tenant,
                    ),
                    other.into(),
                ),
                true,
            ),
            ("untrusted resource with bypass", guard(trusted), acting_as(other, tenant), false),
            ("resource instance rule", guard(instances.clone()), acting_as(other, tenant), true),
            ("resource instance, wrong tenant", guard(instances.clone()), acting_as(other, Uuid::new_v4()), false),
            (
                "public network disabled, instance",
                ResourceGuard {
                    public_network_disabled: true,
                    firewall: Some(instances.clone()),
                    ..ResourceGuard::default()
                },
                acting_as(other, tenant),
                true,
            ),
            (
                "public network disabled, listed ip",
                ResourceGuard { public_network_disabled: true, firewall: Some(ips), ..ResourceGuard::default() },
                from("127.0.0.2"),
                false,
            ),
            ("no firewall", ResourceGuard::default(), from("192.0.2.1"), true),
        ];
        for (name, guard, caller, admitted) in table {
            assert_eq!(network_refusal(&guard, &caller).is_none(), admitted, "{name}");
        }
    }

    #[test]
    fn regression_f13_a_managed_identity_bearer_token_is_not_a_trusted_service() {
        let tenant = Uuid::new_v4();
        let storage = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct";
        let vault_firewall = Firewall {
            bypass_azure_services: true,
            trusted_services: KEY_VAULT_TRUSTED_SERVICES,
            ..Firewall::default()
        };
        let disabled = ResourceGuard {
            public_network_disabled: true,
            firewall: Some(vault_firewall.clone()),
            ..ResourceGuard::default()
        };
        assert!(network_refusal(&guard(vault_firewall.clone()), &acting_as(storage, tenant)).is_none());
        assert!(network_refusal(&guard(vault_firewall), &token_of(storage, tenant)).is_some(), "bypass: AzureServices");
        assert!(network_refusal(&disabled, &token_of(storage, tenant)).is_some(), "public network disabled");
    }
}
