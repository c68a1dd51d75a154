//! Reading the [`Facts`] the rules need, read-only: the services' live state and ARM records, the
//! door's role assignments, and, for what the account's identity may do, the door's decision for
//! that identity (asked, never acted on: no blob, key or record is touched).

use std::sync::Arc;

use byos_arm::Arm;
use byos_arm::records::resource_key;
use byos_authz::{Action, DenialKind, Door, ResourceGuard, RoleType};
use byos_core::{ApiError, Caller, OrInternal, ResourceId, Scope};
use byos_identity::{AttachedIdentities, Directory};
use byos_keyvault::protector::Protection;
use byos_keyvault::{KeyVaultService, Vault};
use byos_storage::{Account, StorageService};

use super::{
    AccountFacts, CmkFacts, CmkSubject, Facts, HeldRole, KeyAccess, NetworkFacts, RoleFacts, StorageFacts,
    StorageState, VaultFacts,
};
use crate::{CognitiveService, LiveAccount};

/// What BYOS asks of the storage account as the account's identity: containers created and read,
/// artifacts kept, read, listed and deleted (the artifact store), and user delegation keys (text
/// to speech hands out user delegation SAS). All of it is in Storage Blob Data Contributor.
const BYOS_ACTIONS: [Action; 6] = [
    Action::control("Microsoft.Storage/storageAccounts/blobServices/containers/read"),
    Action::control("Microsoft.Storage/storageAccounts/blobServices/containers/write"),
    Action::control("Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"),
    Action::data("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"),
    Action::data("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write"),
    Action::data("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"),
];

/// The key permissions a customer-managed key is used with, and the data action each stands for.
const KEY_PERMISSIONS: [(&str, &str); 3] = [
    ("get", "Microsoft.KeyVault/vaults/keys/read"),
    ("wrapKey", "Microsoft.KeyVault/vaults/keys/wrap/action"),
    ("unwrapKey", "Microsoft.KeyVault/vaults/keys/unwrap/action"),
];

/// The services the doctor reads.
pub struct Sources {
    pub arm: Arc<Arm>,
    pub cognitive: Arc<CognitiveService>,
    pub storage: Arc<StorageService>,
    pub keyvault: Arc<KeyVaultService>,
}

/// The facts about the account `account_id` (404 when there is no such AI-services account).
pub async fn gather(sources: &Sources, account_id: &str, text_to_speech: bool) -> Result<Facts, ApiError> {
    let live = sources.cognitive.account(&resource_key(account_id)).ok_or_else(|| unknown_account(account_id))?;
    let caller = account_identity(&sources.arm.directory, &live);
    let id = ResourceId::parse(&live.id).or_internal()?;
    let account = AccountFacts {
        cmk: account_cmk(sources, &live, &id).await?,
        id,
        kind: live.settings.kind,
        sku: live.settings.sku.clone(),
        location: live.location.clone(),
        identity: caller.as_ref().and_then(Caller::object_id),
    };
    let storage = storage_state(sources, &live, caller.as_ref()).await?;
    Ok(Facts { tenant_id: sources.arm.directory.tenant_id(), account, storage, text_to_speech })
}

fn unknown_account(account_id: &str) -> ApiError {
    ApiError::not_found(
        "ResourceNotFound",
        format!("No AI-services account has the id '{account_id}' (give its full resource id)."),
    )
}

/// The account's system-assigned identity as BYOS uses it: resolved now, as the artifact store does.
fn account_identity(directory: &Directory, live: &LiveAccount) -> Option<Caller> {
    directory.act_as(&attached(live), None)
}

/// The identities the account has now.
fn attached(live: &LiveAccount) -> AttachedIdentities<'_> {
    AttachedIdentities { resource_id: &live.id, system: live.system_identity, user: &live.user_identities }
}

async fn storage_state(
    sources: &Sources,
    live: &LiveAccount,
    caller: Option<&Caller>,
) -> Result<StorageState, ApiError> {
    let Some(bound) = live.settings.user_owned_storage.first() else { return Ok(StorageState::Unbound) };
    let id = ResourceId::parse(&bound.resource_id).or_internal()?;
    let record = sources.arm.resource(&bound.resource_id).await?;
    let account = sources.storage.account(&id.name).filter(|a| a.id.eq_ignore_ascii_case(&bound.resource_id));
    let (Some(record), Some(account)) = (record, account) else { return Ok(StorageState::Missing(id)) };
    let scope = Scope::parse(&account.id).or_internal()?;
    let settings = &account.settings;
    let tenant = sources.arm.directory.tenant_id();
    Ok(StorageState::Found(Box::new(StorageFacts {
        network: NetworkFacts::of(&settings.network_acls, &settings.public_network_access, &live.id, tenant),
        role: caller.map(|c| role_facts(&sources.arm.door, c, &scope)).transpose()?,
        cmk: storage_cmk(sources, &account, &id).await?,
        id,
        location: record.location,
        allow_blob_public_access: settings.allow_blob_public_access,
        allow_shared_key_access: settings.allow_shared_key_access,
        cors: account.cors.clone(),
    })))
}

/// The identity's roles at or above the storage account, and what of BYOS's needs the door would
/// refuse it there.
fn role_facts(door: &Door, caller: &Caller, storage: &Scope) -> Result<RoleFacts, ApiError> {
    let principal = caller.object_id().or_internal()?;
    let missing = BYOS_ACTIONS
        .iter()
        .filter(|action| door.authorize(caller, action, storage).is_err())
        .map(|action| action.name.to_string())
        .collect();
    let mut held: Vec<HeldRole> = door
        .assignments()
        .into_iter()
        .filter(|a| a.principal_id == principal)
        .filter_map(|a| {
            let scope = Scope::parse(&a.scope).ok().filter(|s| s.covers(storage))?;
            let role = door.definition(a.role_definition_id);
            Some(HeldRole {
                role_id: a.role_definition_id,
                role_name: role.as_ref().map_or_else(|| a.role_definition_id.to_string(), |r| r.role_name.clone()),
                custom: role.is_some_and(|r| r.role_type == RoleType::CustomRole),
                at_storage: scope == *storage,
                scope: a.scope,
            })
        })
        .collect();
    held.sort_by(|a, b| (&a.scope, &a.role_name).cmp(&(&b.scope, &b.role_name)));
    Ok(RoleFacts { principal, held, missing })
}

/// A customer-managed key as the rules see it, from whichever resource it protects.
struct CustomerKeyRef<'a> {
    subject: CmkSubject,
    /// The resource's identities now, and the user-assigned one the key is used as (`None`: the
    /// system-assigned one).
    identities: AttachedIdentities<'a>,
    identity: Option<&'a str>,
    key_name: &'a str,
    current_version: Option<&'a str>,
    vault_named: &'a str,
    vault: Option<Arc<Vault>>,
}

/// The storage account's own customer-managed key (`None` with Microsoft-managed keys).
async fn storage_cmk(sources: &Sources, account: &Account, id: &ResourceId) -> Result<Option<CmkFacts>, ApiError> {
    let Some(settings) = account.settings.cmk.as_ref() else { return Ok(None) };
    let key = CustomerKeyRef {
        subject: CmkSubject::StorageAccount(id.clone()),
        identities: account.identities(),
        identity: settings.identity.as_deref(),
        key_name: &settings.key_name,
        current_version: settings.current_version(),
        vault_named: if settings.vault_id.is_empty() { &settings.key_vault_uri } else { &settings.vault_id },
        vault: sources.storage.cmk_vault(settings).await,
    };
    cmk_facts(sources, key).await.map(Some)
}

/// The AI account's customer-managed key, which protects the data byos keeps for it (`None` with
/// service keys).
async fn account_cmk(sources: &Sources, live: &LiveAccount, id: &ResourceId) -> Result<Option<CmkFacts>, ApiError> {
    let Some(settings) = live.settings.cmk.as_ref() else { return Ok(None) };
    let current_version = match &live.protection {
        Protection::Customer(wrapped) => wrapped.key_version().map(|(_, version)| version),
        Protection::Root(_) => None,
    };
    let key = CustomerKeyRef {
        subject: CmkSubject::AiAccount(id.clone()),
        identities: attached(live),
        identity: settings.identity.as_deref(),
        key_name: &settings.key_name,
        current_version,
        vault_named: &settings.vault_id,
        vault: sources.cognitive.cmk.vault(settings),
    };
    cmk_facts(sources, key).await.map(Some)
}

async fn cmk_facts(sources: &Sources, key: CustomerKeyRef<'_>) -> Result<CmkFacts, ApiError> {
    let vault = match &key.vault {
        Some(vault) => Some(vault_facts(sources, vault, &key).await?),
        None => None,
    };
    Ok(CmkFacts {
        subject: key.subject,
        key_name: key.key_name.to_owned(),
        current_version: key.current_version.map(str::to_owned),
        vault_named: key.vault_named.to_owned(),
        vault,
    })
}

async fn vault_facts(sources: &Sources, vault: &Vault, key: &CustomerKeyRef<'_>) -> Result<VaultFacts, ApiError> {
    let holds_current_version = match key.current_version {
        Some(version) => sources
            .keyvault
            .vault_holding_key_version(key.key_name, version)
            .await
            .is_some_and(|holder| holder.id.eq_ignore_ascii_case(&vault.id)),
        None => false,
    };
    Ok(VaultFacts {
        id: ResourceId::parse(&vault.id).or_internal()?,
        purge_protection: vault.settings.enable_purge_protection,
        soft_delete_days: vault.settings.soft_delete_retention_in_days,
        rbac: vault.settings.enable_rbac_authorization,
        holds_current_version,
        access: key_access(&sources.arm, vault, key)?,
    })
}

/// Whether the door would let the key's identity use it: the vault's network rules (which admit
/// the byos service acting for the resource as a trusted service), then RBAC or the access policy,
/// exactly as a key use is decided.
fn key_access(arm: &Arm, vault: &Vault, key: &CustomerKeyRef<'_>) -> Result<KeyAccess, ApiError> {
    let Some(caller) = arm.directory.act_as(&key.identities, key.identity) else {
        return Ok(KeyAccess::NoIdentity { user_assigned: key.identity.map(str::to_owned) });
    };
    let principal = caller.object_id().or_internal()?;
    let scope = Scope::parse(&format!("{}/keys/{}", vault.id, key.key_name)).or_internal()?;
    let settings = &vault.settings;
    let (public_network_disabled, firewall) = settings.network();
    let guard = ResourceGuard {
        public_network_disabled,
        firewall,
        policy_permits: (!settings.enable_rbac_authorization).then(|| settings.policy_permits(&caller)),
        ..ResourceGuard::default()
    };
    let mut network_refusal = None;
    let mut missing = Vec::new();
    for (permission, action) in KEY_PERMISSIONS {
        match arm.door.authorize_access(&caller, &Action::data(action), &scope, Some(&guard)) {
            Ok(_) => {}
            Err(denial) if denial.kind == DenialKind::Network => network_refusal = Some(denial.reason),
            Err(_) => missing.push(permission),
        }
    }
    Ok(KeyAccess::Decided { principal, network_refusal, missing })
}
