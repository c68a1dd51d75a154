//! The seed's hardening rules as a pure function of [`Facts`]: one [`Check`] per rule, each with
//! the az command that fixes it, built from the real names and ids.

use byos_authz::builtin::STORAGE_BLOB_DATA_CONTRIBUTOR;
use byos_core::ResourceId;
use byos_storage::blob::cors::CorsRule;
use uuid::Uuid;

use super::{
    AccountFacts, Check, CmkFacts, CmkSubject, Facts, HeldRole, KeyAccess, RoleFacts, Status, StorageFacts,
    StorageState, VaultFacts,
};

/// Speech Studio's record, as the seed's "Configure Cross-Origin Resource Sharing (CORS)" sets it:
/// the origin without a trailing slash (with one, Studio does not show datasets and model tests).
const STUDIO_ORIGIN: &str = "https://speech.microsoft.com";
const STUDIO_METHODS: [&str; 2] = ["GET", "OPTIONS"];
const STUDIO_HEADERS: &str = "*";
const STUDIO_MAX_AGE: u32 = 1000;
/// The role the seed assigns the account's identity on the storage account ("Assign resource access role").
const SEED_ROLE: &str = "Storage Blob Data Contributor";
/// The built-in role that grants get, wrapKey and unwrapKey on a vault's keys.
const KEY_ROLE: &str = "Key Vault Crypto Service Encryption User";

/// A rule's name in the report.
#[derive(Clone, Copy)]
struct Rule {
    id: &'static str,
    title: &'static str,
}

impl Rule {
    fn verdict(self, status: Status, detail: String, fix: Option<String>) -> Check {
        Check { id: self.id, title: self.title, status, detail, fix }
    }

    fn pass(self, detail: String) -> Check {
        self.verdict(Status::Pass, detail, None)
    }

    fn warn(self, detail: String, fix: Option<String>) -> Check {
        self.verdict(Status::Warn, detail, fix)
    }

    fn fail(self, detail: String, fix: Option<String>) -> Check {
        self.verdict(Status::Fail, detail, fix)
    }

    /// Not checked: a warn, so that the report never passes what it did not look at.
    fn skipped(self, why: &str) -> Check {
        self.warn(format!("skipped: {why}"), None)
    }
}

const BYOS: Rule = Rule { id: "account.byos", title: "BYOS on: the account keeps its data in the customer's storage" };
const IDENTITY: Rule = Rule { id: "account.identity", title: "System-assigned identity present" };
const STORAGE_EXISTS: Rule = Rule { id: "storage.exists", title: "The bound storage account exists" };
const ROLE: Rule = Rule { id: "storage.role", title: "Storage Blob Data Contributor for the account's identity" };
const PUBLIC_ACCESS: Rule = Rule { id: "storage.public-access", title: "Blob public access off" };
const SHARED_KEY: Rule = Rule { id: "storage.shared-key", title: "Storage account key access off" };
const FIREWALL: Rule = Rule { id: "storage.firewall", title: "Firewall admits the account and denies the rest" };
const CORS: Rule = Rule { id: "storage.cors", title: "Speech Studio CORS rule" };
const REGION: Rule = Rule { id: "storage.region", title: "Account and storage in the same region" };

/// The checks of one resource's customer-managed key: off, or the three preconditions when on.
struct CmkRules {
    off: Rule,
    vault: Rule,
    key: Rule,
    access: Rule,
}

const ACCOUNT_CMK: CmkRules = CmkRules {
    off: Rule { id: "account.cmk", title: "Customer-managed key of the account's own data (optional)" },
    vault: Rule { id: "account.cmk.vault", title: "Customer-managed key: vault soft delete and purge protection" },
    key: Rule { id: "account.cmk.key", title: "Customer-managed key: the RSA key version in use is in the vault" },
    access: Rule { id: "account.cmk.access", title: "Customer-managed key: the identity may get, wrap and unwrap it" },
};

const STORAGE_CMK: CmkRules = CmkRules {
    off: Rule { id: "storage.cmk", title: "Customer-managed key (optional)" },
    vault: Rule { id: "storage.cmk.vault", title: "Customer-managed key: vault soft delete and purge protection" },
    key: Rule { id: "storage.cmk.key", title: "Customer-managed key: the RSA key version in use is in the vault" },
    access: Rule { id: "storage.cmk.access", title: "Customer-managed key: the identity may get, wrap and unwrap it" },
};

/// The storage checks in report order, for reporting them skipped together.
const STORAGE_RULES: [Rule; 8] =
    [STORAGE_EXISTS, ROLE, PUBLIC_ACCESS, SHARED_KEY, FIREWALL, CORS, STORAGE_CMK.off, REGION];

/// Every rule of the seed, evaluated on `facts`.
pub fn check(facts: &Facts) -> Vec<Check> {
    let mut checks = vec![byos_enabled(facts), identity(&facts.account)];
    checks.extend(cmk(&ACCOUNT_CMK, facts.account.cmk.as_ref()));
    match &facts.storage {
        StorageState::Unbound => {
            let why = "the account has no storage of its own (userOwnedStorage is empty)";
            checks.extend(STORAGE_RULES.iter().map(|rule| rule.skipped(why)));
        }
        StorageState::Missing(id) => {
            checks.push(storage_missing(&facts.account, id));
            let why = "the bound storage account does not exist";
            checks.extend(STORAGE_RULES[1..].iter().map(|rule| rule.skipped(why)));
        }
        StorageState::Found(storage) => {
            checks.push(STORAGE_EXISTS.pass(format!("{} exists", storage.id)));
            checks.extend(storage_checks(facts, storage));
        }
    }
    checks
}

fn storage_checks(facts: &Facts, storage: &StorageFacts) -> Vec<Check> {
    let mut checks =
        vec![role(storage), public_access(storage), shared_key(storage), firewall(facts, storage), cors(storage)];
    checks.extend(cmk(&STORAGE_CMK, storage.cmk.as_ref()));
    checks.push(region(facts, storage));
    checks
}

// ---- the account -------------------------------------------------------------------------------

fn byos_enabled(facts: &Facts) -> Check {
    let account = &facts.account;
    let bound = match &facts.storage {
        StorageState::Unbound => None,
        StorageState::Missing(id) => Some(id),
        StorageState::Found(storage) => Some(&storage.id),
    };
    match bound {
        Some(id) => BYOS.pass(format!("bound to the storage account {id}")),
        None if !account.kind.offers_user_owned_storage() => BYOS.fail(
            format!(
                "the account is of kind {}, which cannot be bound to customer storage: BYOS is for Speech resources",
                account.kind.name()
            ),
            None,
        ),
        None => BYOS.fail(
            "the account keeps no storage of its own (userOwnedStorage is empty), and BYOS is chosen at creation only: \
             create a BYOS account (replace NEW_NAME and STORAGE_ID)"
                .into(),
            Some(create_byos_account(account)),
        ),
    }
}

fn identity(account: &AccountFacts) -> Check {
    match account.identity {
        Some(principal) => {
            IDENTITY.pass(format!("system-assigned identity {principal}: BYOS reaches the storage account as it"))
        }
        None => IDENTITY.fail(
            "the account has no system-assigned identity, and BYOS reaches the storage account only as that identity"
                .into(),
            Some(assign_account_identity(&account.id)),
        ),
    }
}

fn storage_missing(account: &AccountFacts, id: &ResourceId) -> Check {
    STORAGE_EXISTS.fail(
        format!(
            "the bound storage account {id} does not exist; the binding cannot be changed, so only a storage account \
             with this id brings it back"
        ),
        Some(format!(
            "az storage account create -n {} -g {} -l {} --sku Standard_LRS --kind StorageV2 --allow-blob-public-access false --allow-shared-key-access false",
            word(&id.name),
            word(&id.resource_group),
            word(&account.location)
        )),
    )
}

// ---- the storage account -----------------------------------------------------------------------

fn role(storage: &StorageFacts) -> Check {
    let Some(role) = &storage.role else {
        return ROLE
            .fail("the account has no system-assigned identity to hold the role (see account.identity)".into(), None);
    };
    let fix = Some(assign_role(role.principal, SEED_ROLE, &storage.id.to_string()));
    if !role.missing.is_empty() {
        let detail = format!(
            "the identity {} may not {} on the storage account; it holds {}",
            role.principal,
            role.missing.join(", "),
            held_roles(&role.held)
        );
        return ROLE.fail(detail, fix);
    }
    if role.held.iter().any(|h| h.role_id == STORAGE_BLOB_DATA_CONTRIBUTOR && h.at_storage) {
        return ROLE.pass(format!("the identity {} holds {SEED_ROLE} on the storage account", role.principal));
    }
    ROLE.warn(seed_role_missing(role), fix)
}

/// Granted, but not as the seed grants it (a custom role, another role, a broader scope).
fn seed_role_missing(role: &RoleFacts) -> String {
    format!(
        "the identity {} may do what BYOS needs through {}, not through {SEED_ROLE} on the storage account as the seed assigns it",
        role.principal,
        held_roles(&role.held)
    )
}

fn held_roles(held: &[HeldRole]) -> String {
    if held.is_empty() {
        return "no role at or above the storage account".into();
    }
    let named: Vec<String> = held
        .iter()
        .map(|h| {
            let kind = if h.custom { "custom role" } else { "built-in role" };
            format!("{kind} '{}' at {}", h.role_name, h.scope)
        })
        .collect();
    named.join(", ")
}

fn public_access(storage: &StorageFacts) -> Check {
    if !storage.allow_blob_public_access {
        return PUBLIC_ACCESS.pass("allowBlobPublicAccess is false: no container can be made public".into());
    }
    PUBLIC_ACCESS.fail(
        "allowBlobPublicAccess is true: containers can be opened to anonymous readers".into(),
        Some(update_storage(&storage.id, "--allow-blob-public-access false")),
    )
}

fn shared_key(storage: &StorageFacts) -> Check {
    if !storage.allow_shared_key_access {
        return SHARED_KEY.pass("allowSharedKeyAccess is false: account keys and key-signed SAS are refused".into());
    }
    SHARED_KEY.fail(
        "allowSharedKeyAccess is true: anyone with an account key or a key-signed SAS bypasses the identity and its role"
            .into(),
        Some(update_storage(&storage.id, "--allow-shared-key-access false")),
    )
}

fn firewall(facts: &Facts, storage: &StorageFacts) -> Check {
    if facts.text_to_speech {
        firewall_for_text_to_speech(storage)
    } else {
        firewall_for_speech_to_text(facts, storage)
    }
}

/// The seed's speech-to-text rule: deny by default, admit the Speech resource (a resource instance
/// rule, or trusted services).
fn firewall_for_speech_to_text(facts: &Facts, storage: &StorageFacts) -> Check {
    let network = &storage.network;
    let add_rule = add_instance_rule(storage, &facts.account.id, facts.tenant_id);
    let others = match network.ip_rules {
        0 => String::new(),
        n => format!("; {n} IP rule(s) admit other addresses (the seed allows them, e.g. for Speech Studio users)"),
    };
    if network.public_network_disabled {
        if network.instance_rule {
            return FIREWALL
                .pass("publicNetworkAccess is Disabled and a resource instance rule admits the account".into());
        }
        return FIREWALL.fail(
            "publicNetworkAccess is Disabled and no resource instance rule names the account: it is refused".into(),
            Some(add_rule),
        );
    }
    if !network.default_deny {
        let mut steps = Vec::new();
        if !network.instance_rule {
            steps.push(add_rule);
        }
        steps.push(update_storage(&storage.id, "--default-action Deny --bypass None"));
        return FIREWALL.fail(
            "the firewall admits every network (defaultAction Allow); the seed denies by default and admits the Speech \
             resource only (for text to speech, run with --text-to-speech)"
                .into(),
            Some(steps.join(" && ")),
        );
    }
    if network.instance_rule {
        return FIREWALL.pass(format!("defaultAction Deny; a resource instance rule admits the account{others}"));
    }
    if network.trusted_services {
        return FIREWALL.pass(format!(
            "defaultAction Deny; the account passes as a trusted Azure service (bypass AzureServices){others}"
        ));
    }
    FIREWALL.fail(
        format!(
            "defaultAction Deny with neither a resource instance rule for the account nor trusted services: the account is refused{others}"
        ),
        Some(add_rule),
    )
}

/// The seed's text-to-speech rule: all networks (custom neural voice reads training data through
/// user delegation SAS, from outside).
fn firewall_for_text_to_speech(storage: &StorageFacts) -> Check {
    let network = &storage.network;
    if !network.public_network_disabled && !network.default_deny {
        return FIREWALL.pass(
            "enabled from all networks: the seed's rule for text to speech (custom neural voice reads training data \
             through user delegation SAS)"
                .into(),
        );
    }
    let mut args = "--default-action Allow".to_owned();
    if network.public_network_disabled {
        args.push_str(" --public-network-access Enabled");
    }
    FIREWALL.warn(
        "stricter than the seed's text-to-speech rule (enabled from all networks): custom neural voice's reads through \
         user delegation SAS will be refused"
            .into(),
        Some(update_storage(&storage.id, &args)),
    )
}

fn cors(storage: &StorageFacts) -> Check {
    let fix = Some(add_studio_cors(&storage.id));
    let best = storage
        .cors
        .iter()
        .filter(|rule| rule.allowed_origins.iter().any(|o| o == STUDIO_ORIGIN))
        .map(studio_rule)
        .min_by_key(|(status, _)| *status);
    if let Some((status, detail)) = best {
        let fix = (status != Status::Pass).then_some(fix).flatten();
        return CORS.verdict(status, detail, fix);
    }
    let slashed = format!("{STUDIO_ORIGIN}/");
    if storage.cors.iter().any(|rule| rule.allowed_origins.contains(&slashed)) {
        return CORS.fail(
            format!(
                "the Blob CORS rule names {slashed} with a trailing slash, which matches no request: Speech Studio \
                 cannot show datasets and model tests (the origin must be {STUDIO_ORIGIN})"
            ),
            fix,
        );
    }
    CORS.fail(
        format!(
            "no Blob CORS rule allows {STUDIO_ORIGIN}: Speech Studio cannot show the datasets and model tests kept in the storage account"
        ),
        fix,
    )
}

/// How a rule for Studio's origin compares with the seed's record: methods and allowed headers
/// decide whether Studio's requests pass at all; exposed headers and max age only differ.
fn studio_rule(rule: &CorsRule) -> (Status, String) {
    let mut broken: Vec<String> = STUDIO_METHODS
        .iter()
        .filter(|m| !rule.allowed_methods.iter().any(|a| a.eq_ignore_ascii_case(m)))
        .map(|m| format!("method {m} is not allowed"))
        .collect();
    if !rule.allowed_headers.iter().any(|h| h == STUDIO_HEADERS) {
        broken.push(format!("allowed headers are {:?}, not {STUDIO_HEADERS}", rule.allowed_headers));
    }
    let mut differs = Vec::new();
    if !rule.exposed_headers.iter().any(|h| h == STUDIO_HEADERS) {
        differs.push(format!("exposed headers are {:?}, not {STUDIO_HEADERS}", rule.exposed_headers));
    }
    if rule.max_age_in_seconds != STUDIO_MAX_AGE {
        differs.push(format!("max age is {}, not {STUDIO_MAX_AGE}", rule.max_age_in_seconds));
    }
    let seed = format!("{STUDIO_ORIGIN}, GET and OPTIONS, headers *, max age {STUDIO_MAX_AGE}");
    match (broken.is_empty(), differs.is_empty()) {
        (true, true) => (Status::Pass, format!("a Blob CORS rule allows {seed}, as the seed sets it")),
        (true, false) => {
            (Status::Warn, format!("the rule for {STUDIO_ORIGIN} differs from the seed's: {}", differs.join("; ")))
        }
        (false, _) => (
            Status::Fail,
            format!(
                "the rule for {STUDIO_ORIGIN} does not let Speech Studio through: {}",
                broken.into_iter().chain(differs).collect::<Vec<_>>().join("; ")
            ),
        ),
    }
}

fn region(facts: &Facts, storage: &StorageFacts) -> Check {
    let (account, store) = (&facts.account.location, &storage.location);
    let fold = |l: &str| l.replace(' ', "").to_ascii_lowercase();
    if fold(account) == fold(store) {
        return REGION.pass(format!("both in {account}"));
    }
    let public = if facts.text_to_speech {
        "; for text to speech, the operations with user delegation SAS then go over the public internet"
    } else {
        ""
    };
    REGION.warn(
        format!(
            "the account is in {account} and its storage account in {store}: the seed recommends one region (latency){public}; \
             the binding cannot be moved"
        ),
        None,
    )
}

// ---- customer-managed keys ---------------------------------------------------------------------

fn cmk(rules: &CmkRules, cmk: Option<&CmkFacts>) -> Vec<Check> {
    let Some(cmk) = cmk else {
        return vec![rules.off.pass("Microsoft-managed keys; customer-managed keys are optional in the seed".into())];
    };
    vec![cmk_vault(rules, cmk), cmk_key(rules, cmk), cmk_access(rules, cmk)]
}

fn cmk_vault(rules: &CmkRules, cmk: &CmkFacts) -> Check {
    let Some(vault) = &cmk.vault else {
        let detail = format!(
            "the key vault {} that holds key '{}' is not found: the {} cannot unwrap its key",
            cmk.vault_named,
            cmk.key_name,
            cmk.subject.label()
        );
        return rules.vault.fail(detail, None);
    };
    if !vault.purge_protection {
        return rules.vault.fail(
            format!(
                "vault {} keeps deleted keys {} days but purge protection is off: a purged key makes the data unreadable for good",
                vault.id.name, vault.soft_delete_days
            ),
            Some(format!(
                "az keyvault update -n {} -g {} --enable-purge-protection true",
                word(&vault.id.name),
                word(&vault.id.resource_group)
            )),
        );
    }
    rules
        .vault
        .pass(format!("vault {}: soft delete ({} days) and purge protection on", vault.id.name, vault.soft_delete_days))
}

fn cmk_key(rules: &CmkRules, cmk: &CmkFacts) -> Check {
    let Some(vault) = &cmk.vault else { return rules.key.skipped("the key vault is not found") };
    let Some(version) = &cmk.current_version else {
        return rules.key.fail(format!("no version of key '{}' is recorded as in use", cmk.key_name), None);
    };
    if !vault.holds_current_version {
        let detail = format!(
            "version {version} of key '{}', which the {}'s key is wrapped with, is not in vault {}: the data cannot be unwrapped",
            cmk.key_name,
            cmk.subject.label(),
            vault.id.name
        );
        return rules.key.fail(detail, None);
    }
    rules.key.pass(format!(
        "version {version} of key '{}' in vault {} wraps the {}'s key with RSA-OAEP-256, so it is an RSA key \
         (whether it is enabled and unexpired shows only when it is used)",
        cmk.key_name,
        vault.id.name,
        cmk.subject.label()
    ))
}

fn cmk_access(rules: &CmkRules, cmk: &CmkFacts) -> Check {
    let Some(vault) = &cmk.vault else { return rules.access.skipped("the key vault is not found") };
    let subject = cmk.subject.label();
    match &vault.access {
        KeyAccess::NoIdentity { user_assigned: None } => rules.access.fail(
            format!("the {subject} has no system-assigned identity now, and its key is used as that identity"),
            cmk.subject.assign_identity(None),
        ),
        KeyAccess::NoIdentity { user_assigned: Some(uami) } => rules.access.fail(
            format!("the user-assigned identity {uami} the key is used as is not attached to the {subject} (or no longer exists)"),
            cmk.subject.assign_identity(Some(uami)),
        ),
        KeyAccess::Decided { network_refusal: Some(why), .. } => rules.access.fail(
            format!("the vault's network rules refuse the {subject}: {why}"),
            Some(format!(
                "az keyvault update -n {} -g {} --bypass AzureServices",
                word(&vault.id.name),
                word(&vault.id.resource_group)
            )),
        ),
        KeyAccess::Decided { principal, missing, .. } if !missing.is_empty() => rules.access.fail(
            format!("the identity {principal} may not {} key '{}' in vault {}", missing.join(", "), cmk.key_name, vault.id.name),
            Some(grant_key_use(vault, *principal)),
        ),
        KeyAccess::Decided { principal, .. } => rules.access.pass(format!(
            "the identity {principal} may get, wrapKey and unwrapKey key '{}' in vault {}",
            cmk.key_name, vault.id.name
        )),
    }
}

/// The role on an RBAC vault, the access policy entry otherwise.
fn grant_key_use(vault: &VaultFacts, principal: Uuid) -> String {
    if vault.rbac {
        return assign_role(principal, KEY_ROLE, &vault.id.to_string());
    }
    format!(
        "az keyvault set-policy -n {} -g {} --object-id {principal} --key-permissions get wrapKey unwrapKey",
        word(&vault.id.name),
        word(&vault.id.resource_group)
    )
}

impl CmkSubject {
    fn label(&self) -> String {
        match self {
            CmkSubject::StorageAccount(id) => format!("storage account {}", id.name),
            CmkSubject::AiAccount(id) => format!("AI account {}", id.name),
        }
    }

    /// Gives the subject the identity its key is used as (az has no command that attaches a
    /// user-assigned identity to an AI account).
    fn assign_identity(&self, user_assigned: Option<&str>) -> Option<String> {
        match (self, user_assigned) {
            (CmkSubject::StorageAccount(id), None) => Some(update_storage(id, "--assign-identity")),
            (CmkSubject::StorageAccount(id), Some(uami)) => {
                Some(update_storage(id, &format!("--identity-type UserAssigned --user-identity-id {}", word(uami))))
            }
            (CmkSubject::AiAccount(id), None) => Some(assign_account_identity(id)),
            (CmkSubject::AiAccount(_), Some(_)) => None,
        }
    }
}

// ---- the fix commands --------------------------------------------------------------------------

/// A value as one shell word: quoted only when it needs to be (resource group names may hold
/// parentheses).
fn word(value: &str) -> String {
    let plain = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c));
    if plain { value.to_owned() } else { format!("'{}'", value.replace('\'', r"'\''")) }
}

fn update_storage(storage: &ResourceId, args: &str) -> String {
    format!("az storage account update -n {} -g {} {args}", word(&storage.name), word(&storage.resource_group))
}

fn assign_role(principal: Uuid, role: &str, scope: &str) -> String {
    format!(
        "az role assignment create --assignee-object-id {principal} --assignee-principal-type ServicePrincipal --role \"{role}\" --scope {}",
        word(scope)
    )
}

fn add_instance_rule(storage: &StorageFacts, account: &ResourceId, tenant: Uuid) -> String {
    format!(
        "az storage account network-rule add -g {} --account-name {} --resource-id {} --tenant-id {tenant}",
        word(&storage.id.resource_group),
        word(&storage.id.name),
        word(&account.to_string())
    )
}

/// Through the resource manager (`blobServices/default`), which works with shared key access off.
fn add_studio_cors(storage: &ResourceId) -> String {
    format!(
        "az storage account blob-service-properties cors-rule add --account-name {} --resource-group {} \
         --allowed-origins {STUDIO_ORIGIN} --allowed-methods {} --allowed-headers '{STUDIO_HEADERS}' \
         --exposed-headers '{STUDIO_HEADERS}' --max-age {STUDIO_MAX_AGE}",
        word(&storage.name),
        word(&storage.resource_group),
        STUDIO_METHODS.join(" ")
    )
}

fn assign_account_identity(account: &ResourceId) -> String {
    format!(
        "az cognitiveservices account identity assign -n {} -g {}",
        word(&account.name),
        word(&account.resource_group)
    )
}

/// The seed's creation command with this account's group, SKU and region; the new name and the
/// storage account are the operator's choice.
fn create_byos_account(account: &AccountFacts) -> String {
    format!(
        "az cognitiveservices account create -n NEW_NAME -g {} --assign-identity --kind SpeechServices --sku {} -l {} --yes \
         --storage '[{{\"resourceId\": \"STORAGE_ID\"}}]'",
        word(&account.id.resource_group),
        word(&account.sku),
        word(&account.location)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Kind;
    use crate::doctor::NetworkFacts;

    const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
    const TENANT: Uuid = Uuid::from_u128(0x7e);
    const PRINCIPAL: Uuid = Uuid::from_u128(0x51);
    const STORAGE_ID: &str = "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/data";
    const ACCOUNT_ID: &str = "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/speech";

    fn studio_rule() -> CorsRule {
        CorsRule {
            allowed_origins: vec![STUDIO_ORIGIN.into()],
            allowed_methods: vec!["GET".into(), "OPTIONS".into()],
            allowed_headers: vec!["*".into()],
            exposed_headers: vec!["*".into()],
            max_age_in_seconds: 1000,
        }
    }

    fn held(role_id: Uuid, name: &str, custom: bool, scope: &str) -> HeldRole {
        HeldRole { role_id, role_name: name.into(), custom, scope: scope.into(), at_storage: scope == STORAGE_ID }
    }

    /// The seed's speech-to-text deployment, every step done.
    fn hardened() -> Facts {
        let storage = StorageFacts {
            id: ResourceId::new(SUB, "rg", "Microsoft.Storage", "storageAccounts", "data"),
            location: "eastus".into(),
            allow_blob_public_access: false,
            allow_shared_key_access: false,
            network: NetworkFacts {
                public_network_disabled: false,
                default_deny: true,
                trusted_services: false,
                instance_rule: true,
                ip_rules: 0,
            },
            cors: vec![studio_rule()],
            role: Some(RoleFacts {
                principal: PRINCIPAL,
                held: vec![held(STORAGE_BLOB_DATA_CONTRIBUTOR, SEED_ROLE, false, STORAGE_ID)],
                missing: vec![],
            }),
            cmk: None,
        };
        Facts {
            tenant_id: TENANT,
            account: AccountFacts {
                id: ResourceId::new(SUB, "rg", "Microsoft.CognitiveServices", "accounts", "speech"),
                kind: Kind::SpeechServices,
                sku: "S0".into(),
                location: "eastus".into(),
                identity: Some(PRINCIPAL),
                cmk: None,
            },
            storage: StorageState::Found(Box::new(storage)),
            text_to_speech: false,
        }
    }

    fn with_storage(change: impl FnOnce(&mut StorageFacts)) -> Facts {
        let mut facts = hardened();
        if let StorageState::Found(storage) = &mut facts.storage {
            change(storage);
        }
        facts
    }

    fn verdict(facts: &Facts, id: &str) -> Check {
        let checks = check(facts);
        checks.iter().find(|c| c.id == id).cloned().unwrap_or_else(|| Rule { id: "missing", title: "" }.pass(id.into()))
    }

    fn status(facts: &Facts, id: &str) -> Status {
        verdict(facts, id).status
    }

    fn fix(facts: &Facts, id: &str) -> String {
        verdict(facts, id).fix.unwrap_or_default()
    }

    #[test]
    fn the_hardened_deployment_passes_every_rule() {
        let checks = check(&hardened());
        let ids: Vec<&str> = checks.iter().map(|c| c.id).collect();
        assert_eq!(
            ids,
            [
                "account.byos",
                "account.identity",
                "account.cmk",
                "storage.exists",
                "storage.role",
                "storage.public-access",
                "storage.shared-key",
                "storage.firewall",
                "storage.cors",
                "storage.cmk",
                "storage.region"
            ]
        );
        for check in &checks {
            assert_eq!(check.status, Status::Pass, "{check:?}");
            assert_eq!(check.fix, None, "{check:?}");
        }
    }

    #[test]
    fn an_account_without_byos_fails_and_its_storage_checks_are_skipped() {
        let mut facts = hardened();
        facts.storage = StorageState::Unbound;
        let checks = check(&facts);
        let byos = verdict(&facts, "account.byos");
        assert_eq!(byos.status, Status::Fail);
        assert!(byos.fix.unwrap_or_default().starts_with(
            "az cognitiveservices account create -n NEW_NAME -g rg --assign-identity --kind SpeechServices --sku S0 -l eastus --yes --storage"
        ));
        let storage: Vec<&Check> = checks.iter().filter(|c| c.id.starts_with("storage.")).collect();
        assert_eq!(storage.len(), STORAGE_RULES.len());
        assert!(
            storage.iter().all(|c| c.status == Status::Warn && c.detail.starts_with("skipped:") && c.fix.is_none())
        );

        facts.account.kind = Kind::FormRecognizer;
        let byos = verdict(&facts, "account.byos");
        assert_eq!((byos.status, byos.fix), (Status::Fail, None));
        assert!(byos.detail.contains("FormRecognizer"));
    }

    #[test]
    fn a_missing_storage_account_fails_and_skips_the_rest() {
        let mut facts = hardened();
        facts.storage =
            StorageState::Missing(ResourceId::new(SUB, "rg", "Microsoft.Storage", "storageAccounts", "data"));
        assert_eq!(status(&facts, "account.byos"), Status::Pass);
        assert_eq!(status(&facts, "storage.exists"), Status::Fail);
        assert!(fix(&facts, "storage.exists").starts_with("az storage account create -n data -g rg -l eastus"));
        assert_eq!(status(&facts, "storage.role"), Status::Warn);
        assert!(verdict(&facts, "storage.firewall").detail.starts_with("skipped:"));
    }

    #[test]
    fn a_missing_identity_fails_with_the_assign_command() {
        let mut facts = with_storage(|s| s.role = None);
        facts.account.identity = None;
        assert_eq!(status(&facts, "account.identity"), Status::Fail);
        assert_eq!(fix(&facts, "account.identity"), "az cognitiveservices account identity assign -n speech -g rg");
        assert_eq!(status(&facts, "storage.role"), Status::Fail);
    }

    #[test]
    fn the_role_passes_as_the_seed_assigns_it_warns_otherwise_and_fails_without_a_grant() {
        let grant = format!(
            "az role assignment create --assignee-object-id {PRINCIPAL} --assignee-principal-type ServicePrincipal --role \"Storage Blob Data Contributor\" --scope {STORAGE_ID}"
        );
        let no_grant = with_storage(|s| {
            if let Some(role) = &mut s.role {
                role.held.clear();
                role.missing = vec!["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write".into()];
            }
        });
        assert_eq!(status(&no_grant, "storage.role"), Status::Fail);
        assert_eq!(fix(&no_grant, "storage.role"), grant);
        assert!(verdict(&no_grant, "storage.role").detail.contains("blobs/write"));

        let custom = with_storage(|s| {
            if let Some(role) = &mut s.role {
                role.held = vec![held(Uuid::from_u128(9), "BYOS writer", true, STORAGE_ID)];
            }
        });
        let verdict_custom = verdict(&custom, "storage.role");
        assert_eq!(verdict_custom.status, Status::Warn);
        assert!(verdict_custom.detail.contains("custom role 'BYOS writer'"));
        assert_eq!(verdict_custom.fix.as_deref(), Some(grant.as_str()));

        let broader = with_storage(|s| {
            if let Some(role) = &mut s.role {
                let group = format!("/subscriptions/{SUB}/resourceGroups/rg");
                role.held = vec![held(STORAGE_BLOB_DATA_CONTRIBUTOR, SEED_ROLE, false, &group)];
            }
        });
        assert_eq!(status(&broader, "storage.role"), Status::Warn);
    }

    #[test]
    fn public_access_and_shared_key_fail_with_their_updates() {
        let open = with_storage(|s| s.allow_blob_public_access = true);
        assert_eq!(status(&open, "storage.public-access"), Status::Fail);
        assert_eq!(
            fix(&open, "storage.public-access"),
            "az storage account update -n data -g rg --allow-blob-public-access false"
        );
        let keyed = with_storage(|s| s.allow_shared_key_access = true);
        assert_eq!(status(&keyed, "storage.shared-key"), Status::Fail);
        assert_eq!(
            fix(&keyed, "storage.shared-key"),
            "az storage account update -n data -g rg --allow-shared-key-access false"
        );
    }

    #[test]
    fn the_speech_to_text_firewall_denies_by_default_and_admits_the_account() {
        let add_rule = format!(
            "az storage account network-rule add -g rg --account-name data --resource-id {ACCOUNT_ID} --tenant-id {TENANT}"
        );
        let open = with_storage(|s| {
            s.network.default_deny = false;
            s.network.instance_rule = false;
        });
        assert_eq!(status(&open, "storage.firewall"), Status::Fail);
        assert_eq!(
            fix(&open, "storage.firewall"),
            format!("{add_rule} && az storage account update -n data -g rg --default-action Deny --bypass None")
        );
        let trusted = with_storage(|s| {
            s.network.instance_rule = false;
            s.network.trusted_services = true;
        });
        assert_eq!(status(&trusted, "storage.firewall"), Status::Pass);
        let shut = with_storage(|s| s.network.instance_rule = false);
        assert_eq!(
            (status(&shut, "storage.firewall"), fix(&shut, "storage.firewall")),
            (Status::Fail, add_rule.clone())
        );
        let private = with_storage(|s| s.network.public_network_disabled = true);
        assert_eq!(status(&private, "storage.firewall"), Status::Pass);
        let private_shut = with_storage(|s| {
            s.network.public_network_disabled = true;
            s.network.instance_rule = false;
        });
        assert_eq!(fix(&private_shut, "storage.firewall"), add_rule);
    }

    #[test]
    fn text_to_speech_takes_the_relaxed_rule() {
        let mut open = with_storage(|s| s.network.default_deny = false);
        open.text_to_speech = true;
        assert_eq!(status(&open, "storage.firewall"), Status::Pass);
        let mut strict = hardened();
        strict.text_to_speech = true;
        assert_eq!(status(&strict, "storage.firewall"), Status::Warn);
        assert_eq!(fix(&strict, "storage.firewall"), "az storage account update -n data -g rg --default-action Allow");
    }

    #[test]
    fn the_studio_cors_rule_is_the_seeds_record() {
        let cors_add = "az storage account blob-service-properties cors-rule add --account-name data --resource-group rg \
                        --allowed-origins https://speech.microsoft.com --allowed-methods GET OPTIONS --allowed-headers '*' \
                        --exposed-headers '*' --max-age 1000";
        let none = with_storage(|s| s.cors.clear());
        assert_eq!((status(&none, "storage.cors"), fix(&none, "storage.cors")), (Status::Fail, cors_add.to_owned()));
        let slashed = with_storage(|s| s.cors[0].allowed_origins = vec![format!("{STUDIO_ORIGIN}/")]);
        assert_eq!(status(&slashed, "storage.cors"), Status::Fail);
        assert!(verdict(&slashed, "storage.cors").detail.contains("trailing slash"));
        let no_options = with_storage(|s| s.cors[0].allowed_methods = vec!["GET".into()]);
        assert_eq!(status(&no_options, "storage.cors"), Status::Fail);
        assert!(verdict(&no_options, "storage.cors").detail.contains("OPTIONS"));
        let longer = with_storage(|s| s.cors[0].max_age_in_seconds = 3600);
        assert_eq!(
            (status(&longer, "storage.cors"), fix(&longer, "storage.cors")),
            (Status::Warn, cors_add.to_owned())
        );
        let one_good = with_storage(|s| {
            let mut bad = studio_rule();
            bad.allowed_methods = vec!["PUT".into()];
            s.cors.insert(0, bad);
        });
        assert_eq!(status(&one_good, "storage.cors"), Status::Pass);
    }

    #[test]
    fn another_region_warns() {
        let mut apart = with_storage(|s| s.location = "West Europe".into());
        assert_eq!(verdict(&apart, "storage.region").status, Status::Warn);
        apart.text_to_speech = true;
        assert!(verdict(&apart, "storage.region").detail.contains("public internet"));
        let spelled = with_storage(|s| s.location = "East US".into());
        assert_eq!(status(&spelled, "storage.region"), Status::Pass);
    }

    fn cmk_on(change: impl FnOnce(&mut CmkFacts)) -> Facts {
        let mut cmk = CmkFacts {
            subject: CmkSubject::StorageAccount(ResourceId::new(
                SUB,
                "rg",
                "Microsoft.Storage",
                "storageAccounts",
                "data",
            )),
            key_name: "cmk".into(),
            current_version: Some("v1".into()),
            vault_named: "vault".into(),
            vault: Some(VaultFacts {
                id: ResourceId::new(SUB, "keys", "Microsoft.KeyVault", "vaults", "kv"),
                purge_protection: true,
                soft_delete_days: 90,
                rbac: true,
                holds_current_version: true,
                access: KeyAccess::Decided { principal: PRINCIPAL, network_refusal: None, missing: vec![] },
            }),
        };
        change(&mut cmk);
        with_storage(|s| s.cmk = Some(cmk))
    }

    fn change_vault(change: impl FnOnce(&mut VaultFacts)) -> Facts {
        cmk_on(|cmk| {
            if let Some(vault) = &mut cmk.vault {
                change(vault);
            }
        })
    }

    #[test]
    fn customer_managed_keys_are_checked_when_on() {
        let good = cmk_on(|_| {});
        for id in ["storage.cmk.vault", "storage.cmk.key", "storage.cmk.access"] {
            assert_eq!(status(&good, id), Status::Pass, "{id}");
        }
        assert!(check(&good).iter().all(|c| c.id != "storage.cmk"));

        let purgeable = change_vault(|v| v.purge_protection = false);
        assert_eq!(status(&purgeable, "storage.cmk.vault"), Status::Fail);
        assert_eq!(
            fix(&purgeable, "storage.cmk.vault"),
            "az keyvault update -n kv -g keys --enable-purge-protection true"
        );

        let gone = cmk_on(|c| c.vault = None);
        assert_eq!(status(&gone, "storage.cmk.vault"), Status::Fail);
        assert_eq!(status(&gone, "storage.cmk.key"), Status::Warn);
        assert_eq!(status(&gone, "storage.cmk.access"), Status::Warn);

        let lost_version = change_vault(|v| v.holds_current_version = false);
        assert_eq!(status(&lost_version, "storage.cmk.key"), Status::Fail);
    }

    #[test]
    fn the_key_identity_must_reach_and_use_the_key() {
        let firewalled = change_vault(|v| {
            v.access =
                KeyAccess::Decided { principal: PRINCIPAL, network_refusal: Some("firewall".into()), missing: vec![] }
        });
        assert_eq!(fix(&firewalled, "storage.cmk.access"), "az keyvault update -n kv -g keys --bypass AzureServices");

        let ungranted = |rbac| {
            change_vault(|v| {
                v.rbac = rbac;
                v.access =
                    KeyAccess::Decided { principal: PRINCIPAL, network_refusal: None, missing: vec!["unwrapKey"] };
            })
        };
        assert_eq!(status(&ungranted(true), "storage.cmk.access"), Status::Fail);
        assert_eq!(
            fix(&ungranted(true), "storage.cmk.access"),
            format!(
                "az role assignment create --assignee-object-id {PRINCIPAL} --assignee-principal-type ServicePrincipal --role \"Key Vault Crypto Service Encryption User\" --scope /subscriptions/{SUB}/resourceGroups/keys/providers/Microsoft.KeyVault/vaults/kv"
            )
        );
        assert_eq!(
            fix(&ungranted(false), "storage.cmk.access"),
            format!(
                "az keyvault set-policy -n kv -g keys --object-id {PRINCIPAL} --key-permissions get wrapKey unwrapKey"
            )
        );

        let no_identity = change_vault(|v| v.access = KeyAccess::NoIdentity { user_assigned: None });
        assert_eq!(
            fix(&no_identity, "storage.cmk.access"),
            "az storage account update -n data -g rg --assign-identity"
        );
    }

    #[test]
    fn the_accounts_own_key_is_checked_with_account_commands() {
        let mut facts = change_vault(|v| v.access = KeyAccess::NoIdentity { user_assigned: None });
        if let StorageState::Found(storage) = &mut facts.storage {
            facts.account.cmk = storage
                .cmk
                .take()
                .map(|cmk| CmkFacts { subject: CmkSubject::AiAccount(facts.account.id.clone()), ..cmk });
        }
        let checks = check(&facts);
        assert!(checks.iter().any(|c| c.id == "storage.cmk" && c.status == Status::Pass));
        assert_eq!(status(&facts, "account.cmk.vault"), Status::Pass);
        assert_eq!(fix(&facts, "account.cmk.access"), "az cognitiveservices account identity assign -n speech -g rg");
        if let Some(cmk) = &mut facts.account.cmk {
            cmk.vault = cmk
                .vault
                .take()
                .map(|v| VaultFacts { access: KeyAccess::NoIdentity { user_assigned: Some("uami".into()) }, ..v });
        }
        assert_eq!(verdict(&facts, "account.cmk.access").fix, None);
    }

    #[test]
    fn values_that_are_not_plain_words_are_quoted() {
        assert_eq!(word("rg-1.a_b"), "rg-1.a_b");
        assert_eq!(word("my (rg)"), "'my (rg)'");
        assert_eq!(word("it's"), r"'it'\''s'");
    }
}
