//! `byos doctor`: checks an AI-services account against every hardening step of the BYOS seed
//! (`byos-speech-resource-setup.md`) and says, for each, pass / fail / warn with the az command
//! that fixes it.
//!
//! - [`gather`](gather::gather) reads what the rules need into [`Facts`]: the account and its storage account from
//!   the services' live state and the ARM records, the role assignments the door holds, the vault of
//!   a customer-managed key. Where a rule is about what the account's identity may do, it asks the
//!   door for a decision (`Door::authorize`), which is a question, not an access: nothing is read or
//!   written in anyone's name, and nothing changes.
//! - [`rules::check`] is a pure function of the facts: one [`Check`] per rule.
//! - [`route::operator_router`]: `GET /operator/doctor?account=<id>[&textToSpeech=true]` on the
//!   control socket, for the operator only.
//!
//! An account without BYOS fails `account.byos` (the seed is about BYOS accounts) and every
//! storage check is reported as a warn whose detail says it was skipped: nothing was checked, and
//! the report says so instead of passing it.

mod gather;
mod route;
mod rules;

use byos_arm::network::NetworkAcls;
use byos_core::ResourceId;
use byos_storage::blob::cors::CorsRule;
use serde::Serialize;
use uuid::Uuid;

use crate::account::Kind;

pub use gather::{Sources, gather};
pub use route::operator_router;
pub use rules::check;

/// The outcome of one rule.
/// Ordered by severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works, but not as the seed sets it up (or could not be checked): worth a look, not a failure.
    Warn,
    Fail,
}

/// One rule's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable and dotted: `account.*` for the AI account, `storage.*` for its storage account.
    pub id: &'static str,
    pub title: &'static str,
    pub status: Status,
    /// What was found, with the names and values that decided it.
    pub detail: String,
    /// The az command (or commands, joined by `&&`) that makes the rule pass, with the real names.
    pub fix: Option<String>,
}

/// Every verdict on one account.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub account: String,
    pub text_to_speech: bool,
    /// No check failed (warns do not fail).
    pub ok: bool,
    pub summary: Summary,
    pub checks: Vec<Check>,
}

#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
}

impl Report {
    pub fn new(account: &str, text_to_speech: bool, checks: Vec<Check>) -> Self {
        let count = |status| checks.iter().filter(|c| c.status == status).count();
        let summary = Summary { pass: count(Status::Pass), warn: count(Status::Warn), fail: count(Status::Fail) };
        Report { account: account.to_owned(), text_to_speech, ok: summary.fail == 0, summary, checks }
    }
}

/// What the rules look at, read from the deployment at one moment.
#[derive(Clone, Debug)]
pub struct Facts {
    /// The deployment's tenant (resource instance rules name it).
    pub tenant_id: Uuid,
    pub account: AccountFacts,
    pub storage: StorageState,
    /// The operator says the account serves text to speech (`--text-to-speech`): the seed's
    /// relaxed firewall rule applies instead of the speech-to-text one.
    pub text_to_speech: bool,
}

#[derive(Clone, Debug)]
pub struct AccountFacts {
    pub id: ResourceId,
    pub kind: Kind,
    pub sku: String,
    pub location: String,
    /// The system-assigned identity, when the account has one that exists now.
    pub identity: Option<Uuid>,
    /// The customer-managed key of the account's service-held data (`None`: service keys).
    pub cmk: Option<CmkFacts>,
}

/// The storage account the account is bound to (`properties.userOwnedStorage`).
#[derive(Clone, Debug)]
pub enum StorageState {
    /// No binding: BYOS is off.
    Unbound,
    /// Bound to a storage account that does not exist (any more).
    Missing(ResourceId),
    Found(Box<StorageFacts>),
}

#[derive(Clone, Debug)]
pub struct StorageFacts {
    pub id: ResourceId,
    pub location: String,
    pub allow_blob_public_access: bool,
    pub allow_shared_key_access: bool,
    pub network: NetworkFacts,
    /// The Blob service's CORS rules.
    pub cors: Vec<CorsRule>,
    /// `None` when the account has no identity that could hold a role.
    pub role: Option<RoleFacts>,
    /// `None` with Microsoft-managed keys.
    pub cmk: Option<CmkFacts>,
}

/// The storage account's firewall as it concerns the AI account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkFacts {
    pub public_network_disabled: bool,
    pub default_deny: bool,
    /// `bypass` includes `AzureServices`: AI accounts pass as trusted services.
    pub trusted_services: bool,
    /// A `resourceAccessRules` entry admits this account (its id, the deployment's tenant).
    pub instance_rule: bool,
    pub ip_rules: usize,
}

impl NetworkFacts {
    /// The facts of `acls` for the account `account_id` of tenant `tenant`: a rule admits the
    /// account as the door matches it (tenant equal, the resource id pattern with `*` wildcards).
    pub fn of(acls: &NetworkAcls, public_network_access: &str, account_id: &str, tenant: Uuid) -> Self {
        let account = account_id.to_ascii_lowercase();
        NetworkFacts {
            public_network_disabled: public_network_access.eq_ignore_ascii_case("Disabled"),
            default_deny: acls.default_action.eq_ignore_ascii_case("Deny"),
            trusted_services: acls.bypass.split(',').any(|b| b.trim().eq_ignore_ascii_case("AzureServices")),
            instance_rule: acls
                .resource_access_rules
                .iter()
                .any(|rule| rule.tenant_id == tenant && byos_authz::Pattern::new(&rule.resource_id).matches(&account)),
            ip_rules: acls.ip_rules.len(),
        }
    }
}

/// What the account's identity holds on the storage account.
#[derive(Clone, Debug)]
pub struct RoleFacts {
    pub principal: Uuid,
    /// The identity's role assignments whose scope covers the storage account.
    pub held: Vec<HeldRole>,
    /// The actions BYOS needs that the door would refuse the identity at the storage account.
    pub missing: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct HeldRole {
    pub role_id: Uuid,
    pub role_name: String,
    pub custom: bool,
    pub scope: String,
    /// Assigned at the storage account itself (not a broader scope).
    pub at_storage: bool,
}

/// A customer-managed key and what it depends on.
#[derive(Clone, Debug)]
pub struct CmkFacts {
    /// Whose key it is.
    pub subject: CmkSubject,
    pub key_name: String,
    /// The key version the subject's key-encryption key is wrapped with now.
    pub current_version: Option<String>,
    /// How the subject names its vault (resource id, or the URI of an older record).
    pub vault_named: String,
    /// `None` when no vault of that name is served.
    pub vault: Option<VaultFacts>,
}

/// The resource a customer-managed key protects: it names the checks and the fix commands.
#[derive(Clone, Debug)]
pub enum CmkSubject {
    StorageAccount(ResourceId),
    /// The AI account itself: the key of the data byos keeps for it.
    AiAccount(ResourceId),
}

#[derive(Clone, Debug)]
pub struct VaultFacts {
    pub id: ResourceId,
    pub purge_protection: bool,
    pub soft_delete_days: u32,
    /// RBAC authorization (else access policies).
    pub rbac: bool,
    /// The vault holds the key version the subject's key is wrapped with.
    pub holds_current_version: bool,
    pub access: KeyAccess,
}

/// Whether the identity the subject uses its key as would be admitted to it.
#[derive(Clone, Debug)]
pub enum KeyAccess {
    /// The identity does not exist now (or, user-assigned, is not attached).
    NoIdentity { user_assigned: Option<String> },
    Decided {
        principal: Uuid,
        /// The vault's network rules refuse the subject's service.
        network_refusal: Option<String>,
        /// Key permissions (get, wrapKey, unwrapKey) the door would refuse.
        missing: Vec<&'static str>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_fails_on_a_fail_and_not_on_a_warn() {
        let checked = |status| Check { id: "x", title: "x", status, detail: String::new(), fix: None };
        let warned = Report::new("a", false, vec![checked(Status::Pass), checked(Status::Warn)]);
        assert!(warned.ok);
        assert_eq!(warned.summary, Summary { pass: 1, warn: 1, fail: 0 });
        assert!(!Report::new("a", false, vec![checked(Status::Warn), checked(Status::Fail)]).ok);
    }

    #[test]
    fn resource_instance_rules_match_as_the_door_matches_them() -> Result<(), byos_core::ApiError> {
        let tenant = Uuid::from_u128(1);
        let account = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/Speech";
        let acls = |rules: serde_json::Value| {
            NetworkAcls::parse(&serde_json::json!({"defaultAction": "Deny", "bypass": "Logging, AzureServices",
                                                   "resourceAccessRules": rules}))
        };
        let wildcard = acls(serde_json::json!([{"tenantId": tenant,
            "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/*"}]))?;
        let facts = NetworkFacts::of(&wildcard, "Enabled", account, tenant);
        assert!(facts.instance_rule && facts.default_deny && facts.trusted_services && !facts.public_network_disabled);
        assert!(!NetworkFacts::of(&wildcard, "Disabled", account, Uuid::from_u128(2)).instance_rule);
        let other = acls(serde_json::json!([{"tenantId": tenant,
            "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/other"}]))?;
        assert!(!NetworkFacts::of(&other, "Enabled", account, tenant).instance_rule);
        Ok(())
    }
}
