//! The `Microsoft.CognitiveServices` ARM provider: accounts, their keys and SKUs, availability
//! checks, the BYOS binding (fixed at creation), and soft delete with restore and purge.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::Method;
use byos_arm::groups::{method_not_allowed, unknown_resource_type};
use byos_arm::managed_identity::{IdentityPlan, plan_identity};
use byos_arm::records::{self, RESOURCES, ResourceRecord, encode, resource_key, resource_not_found, validate_tags};
use byos_arm::{Arm, ArmReply, ArmRequest, Provider};
use byos_authz::Action;
use byos_core::{ApiError, OrInternal, ResourceId, Scope};
use byos_http::Failure;
use byos_store::Batch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::LiveAccount;
use crate::account::{
    AccountKeys, AccountSettings, CmkSettings, EncryptionRequest, Kind, UserOwnedStorage, parse_encryption,
    same_storage, sku_tier, validate_name, validate_sku, validate_subdomain,
};
use crate::{ACCOUNT_TYPE, CognitiveService, DELETED, DOMAINS, KEYS, NAMESPACE};

const READ: Action = Action::control("Microsoft.CognitiveServices/accounts/read");
const WRITE: Action = Action::control("Microsoft.CognitiveServices/accounts/write");
const DELETE: Action = Action::control("Microsoft.CognitiveServices/accounts/delete");
const LIST_KEYS: Action = Action::control("Microsoft.CognitiveServices/accounts/listKeys/action");
const REGENERATE_KEY: Action = Action::control("Microsoft.CognitiveServices/accounts/regenerateKey/action");
const ACCOUNT_SKUS: Action = Action::control("Microsoft.CognitiveServices/accounts/skus/read");
const USAGES: Action = Action::control("Microsoft.CognitiveServices/accounts/usages/read");
const MODELS: Action = Action::control("Microsoft.CognitiveServices/accounts/models/read");
const DELETED_READ: Action =
    Action::control("Microsoft.CognitiveServices/locations/resourceGroups/deletedAccounts/read");
const PURGE: Action = Action::control("Microsoft.CognitiveServices/locations/resourceGroups/deletedAccounts/delete");
const CHECK_DOMAIN: Action = Action::control("Microsoft.CognitiveServices/checkDomainAvailability/action");
const CHECK_SKU: Action = Action::control("Microsoft.CognitiveServices/locations/checkSkuAvailability/action");
const SKUS: Action = Action::control("Microsoft.CognitiveServices/skus/read");
/// Binding an account to the customer's storage lets the service act on that storage, so Azure
/// requires the creator to be able to grant roles at the subscription (an Owner).
const ROLE_ASSIGNMENT_WRITE: Action = Action::control("Microsoft.Authorization/roleAssignments/write");
const STORAGE_READ: Action = Action::control("Microsoft.Storage/storageAccounts/read");
const STORAGE_TYPE: &str = "Microsoft.Storage/storageAccounts";
/// The subscription feature that gates BYOS, as in Azure.
const BYOS_FEATURE: &str = "byoxPreview";
/// How long a deleted account can be restored before it is purged (Azure: 48 hours).
const SOFT_DELETE_RETENTION: time::Duration = time::Duration::hours(48);

/// The provider, holding the service whose listeners it keeps in step.
pub struct CognitiveProvider(pub Arc<CognitiveService>);

/// What an encryption change needs to know about the account being written.
struct EncryptionChange<'a> {
    id: &'a ResourceId,
    location: &'a str,
    plan: &'a IdentityPlan,
    /// The account as it is now (`None` while it is being created).
    live: Option<&'a LiveAccount>,
    creating: bool,
}

#[derive(Deserialize)]
struct AccountBody {
    location: Option<String>,
    #[serde(default)]
    tags: Option<Map<String, Value>>,
    #[serde(default)]
    sku: Option<SkuBody>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    identity: Option<Value>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct SkuBody {
    name: String,
}

/// A soft-deleted account: its last record, restorable until `scheduled_purge_date`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletedAccount {
    v: u32,
    record: ResourceRecord,
    deletion_date: String,
    scheduled_purge_date: String,
}

#[async_trait]
impl Provider for CognitiveProvider {
    fn namespace(&self) -> &'static str {
        NAMESPACE
    }

    async fn handle(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        group: Option<&str>,
        rest: &[String],
    ) -> Result<ArmReply, Failure> {
        let sub = arm.deployment.subscription_id.clone();
        let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
        let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        match (group, parts.as_slice()) {
            (_, [t]) if is(t, "accounts") => self.list(arm, request, &sub, group).await,
            (Some(group), [t, name, tail @ ..]) if is(t, "accounts") => {
                let id = ResourceId::new(&sub, group, NAMESPACE, "accounts", name);
                self.account_route(arm, request, &id, tail).await
            }
            (None, [t]) if is(t, "deletedAccounts") => self.list_deleted(arm, request, &sub).await,
            (None, [l, location, g, group, d, name])
                if is(l, "locations") && is(g, "resourceGroups") && is(d, "deletedAccounts") =>
            {
                let id = ResourceId::new(&sub, group, NAMESPACE, "accounts", name);
                self.deleted_account(arm, request, location, &id).await
            }
            (None, [action]) if is(action, "checkDomainAvailability") => self.check_domain(arm, request, &sub).await,
            (None, [l, _, action]) if is(l, "locations") && is(action, "checkSkuAvailability") => {
                self.check_skus(arm, request, &sub).await
            }
            (None, [t]) if is(t, "skus") => self.resource_skus(arm, request, &sub),
            _ => Err(unknown_resource_type(NAMESPACE, rest)),
        }
    }

    async fn delete_ops(&self, _arm: &Arm, resource: &ResourceRecord, batch: Batch) -> Result<Batch, ApiError> {
        soft_delete_ops(resource, batch)
    }

    async fn deleted(&self, resource: &ResourceRecord) {
        self.0.close(&resource.id);
    }
}

/// Keeps a deleted account restorable: its record moves to the deleted accounts; its keys and
/// subdomain stay reserved until it is purged.
fn soft_delete_ops(record: &ResourceRecord, batch: Batch) -> Result<Batch, ApiError> {
    let now = time::OffsetDateTime::now_utc();
    let deleted = DeletedAccount {
        v: 1,
        record: record.clone(),
        deletion_date: byos_core::time::rfc3339(now),
        scheduled_purge_date: byos_core::time::rfc3339(now + SOFT_DELETE_RETENTION),
    };
    let key = resource_key(&record.id);
    Ok(batch.put(DELETED, key.clone(), encode(&key, &deleted)?))
}

fn settings_of(record: &ResourceRecord) -> Result<AccountSettings, ApiError> {
    serde_json::from_value(record.properties.clone()).or_internal()
}

/// The account as ARM returns it.
fn wire(service: &CognitiveService, record: &ResourceRecord) -> Result<Value, ApiError> {
    let settings = settings_of(record)?;
    let mut wire = record.to_wire();
    let vault = settings.cmk.as_ref().and_then(|cmk| service.cmk.vault(cmk));
    wire["properties"] =
        settings.to_wire(&CognitiveService::endpoint(settings.port), vault.as_ref().map(|v| v.uri.as_str()));
    Ok(wire)
}

fn user_owned_storage(props: &Map<String, Value>) -> Result<Option<Vec<UserOwnedStorage>>, ApiError> {
    match props.get("userOwnedStorage") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value.clone()).map(Some).map_err(|e| {
            ApiError::bad_request("InvalidUserOwnedStorage", format!("The userOwnedStorage property is invalid: {e}."))
        }),
    }
}

impl CognitiveProvider {
    fn service(&self) -> &Arc<CognitiveService> {
        &self.0
    }

    async fn account_route(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        id: &ResourceId,
        tail: &[&str],
    ) -> Result<ArmReply, Failure> {
        let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        match tail {
            [] => self.account_op(arm, request, id).await,
            [op] if is(op, "listKeys") => self.list_keys(arm, request, id).await,
            [op] if is(op, "regenerateKey") => self.regenerate_key(arm, request, id).await,
            [op] if is(op, "skus") => self.account_skus(arm, request, id).await,
            [op] if is(op, "usages") => self.empty_list(arm, request, id, &USAGES).await,
            [op] if is(op, "models") => self.empty_list(arm, request, id, &MODELS).await,
            _ => Err(unknown_resource_type(NAMESPACE, &tail.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())),
        }
    }

    async fn require(&self, arm: &Arm, id: &ResourceId) -> Result<ResourceRecord, ApiError> {
        arm.resource(&id.to_string())
            .await?
            .ok_or_else(|| resource_not_found(ACCOUNT_TYPE, &id.name, &id.resource_group))
    }

    async fn account_op(&self, arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
        match request.method {
            Method::GET => {
                request.authorize(arm, &READ, &id.scope())?;
                Ok(ArmReply::ok(wire(self.service(), &self.require(arm, id).await?)?))
            }
            Method::PUT | Method::PATCH => {
                request.authorize(arm, &WRITE, &id.scope())?;
                self.put(arm, request, id).await
            }
            Method::DELETE => {
                request.authorize(arm, &DELETE, &id.scope())?;
                let guard = arm.write_guard().await;
                let Some(record) = arm.resource(&id.to_string()).await? else {
                    return Ok(ArmReply::empty(204));
                };
                arm.delete_resource(&guard, &request.caller, &record).await?;
                tracing::info!(account = %record.id, "AI-services account soft-deleted");
                Ok(ArmReply::empty(200))
            }
            ref other => Err(method_not_allowed(other)),
        }
    }

    async fn load_deleted(&self, id: &ResourceId) -> Result<Option<DeletedAccount>, ApiError> {
        let key = resource_key(&id.to_string());
        match self.service().store.get(DELETED, &key).await.map_err(records::store_error)? {
            Some(bytes) => Ok(Some(records::decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    async fn put(&self, arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
        validate_name(&id.name)?;
        let body: AccountBody = request.json()?;
        if let Some(tags) = &body.tags {
            validate_tags(tags)?;
        }
        let props = body.properties.clone().unwrap_or_default();
        let _guard = arm.write_guard().await;
        let group = arm.require_group(&id.subscription_id, &id.resource_group).await?;
        let current = arm.resource(&id.to_string()).await?;
        if current.is_none() && request.method == Method::PATCH {
            return Err(Failure::from(resource_not_found(ACCOUNT_TYPE, &id.name, &id.resource_group)));
        }
        let restore = props.get("restore").and_then(Value::as_bool) == Some(true);
        let deleted = match current {
            Some(_) => None,
            None => self.load_deleted(id).await?,
        };
        match (&deleted, restore) {
            (Some(deleted), true) => return self.restore(arm, request, deleted, &body).await,
            (Some(_), false) => return Err(Failure::from(restore_flag_required(id))),
            (None, true) if current.is_none() => return Err(Failure::from(nothing_to_restore(id))),
            _ => {}
        }
        let mut settings = match &current {
            Some(record) => self.updated_settings(record, &body)?,
            None => self.new_settings(&body)?,
        };
        settings.apply(&props)?;
        let encryption = parse_encryption(&props)?;
        self.check_free_tier(arm, id, &settings, current.as_ref()).await?;
        let domain = self.claim_subdomain(id, &mut settings, &props, current.is_none()).await?;
        let storage = self.bind_storage(arm, request, id, &mut settings, &props, current.is_none()).await?;
        let requested_identity = match (&body.identity, current.is_none() && !settings.user_owned_storage.is_empty()) {
            (None, true) => Some(json!({"type": "SystemAssigned"})),
            (requested, _) => requested.clone(),
        };
        let plan =
            plan_identity(arm, &request.caller, &id.to_string(), requested_identity.as_ref(), current.as_ref()).await?;
        require_byos_identity(&settings, &plan)?;
        let created = current.is_none();
        let location = location_of(current.as_ref(), &body, &group);
        let live = self.service().account(&resource_key(&id.to_string()));
        let fresh = created.then(AccountKeys::generate).transpose()?;
        let change =
            EncryptionChange { id, location: &location, plan: &plan, live: live.as_deref(), creating: created };
        let keys = match &encryption {
            Some(request) => Some(self.apply_encryption(&change, &mut settings, request, fresh).await?),
            None => fresh,
        };
        require_cmk_identity(&settings, &plan)?;
        if created {
            settings.port = self.service().serve(&id.to_string(), 0).await?;
        }
        let record = self.record(id, &body, settings, &plan, current.as_ref(), location)?;
        let mut batch = Batch::new().put(RESOURCES, resource_key(&record.id), encode(&record.id, &record)?);
        if let Some(keys) = &keys {
            let key = resource_key(&record.id);
            if created {
                batch = batch.expect_absent(KEYS, key.clone());
            }
            batch = batch.put(KEYS, key, keys.seal(&self.service().root)?);
        }
        if let Some(domain) = domain {
            batch = batch.expect_absent(DOMAINS, domain.clone()).put(DOMAINS, domain, record.id.clone().into_bytes());
        }
        batch = plan.ops(arm, batch)?;
        if let Err(e) = self.service().store.commit(batch).await {
            if created {
                self.service().close(&record.id);
            }
            return Err(Failure::from(records::store_error(e)));
        }
        plan.applied(arm);
        self.service().cmk.forget(&record.id);
        self.service().refresh(&record).await?;
        tracing::info!(account = %record.id, created, "AI-services account written");
        let mut reply = ArmReply::json(if created { 201 } else { 200 }, wire(self.service(), &record)?);
        if let Some(warning) = storage.and_then(|s| cross_region_warning(&s, &record.location)) {
            tracing::warn!(account = %record.id, %warning, "BYOS storage account in another region");
            reply = reply.with_header("x-byos-warning", warning);
        }
        Ok(reply)
    }

    /// The settings of a new account: kind and SKU are required.
    fn new_settings(&self, body: &AccountBody) -> Result<AccountSettings, ApiError> {
        let kind = Kind::parse(body.kind.as_deref().ok_or_else(|| {
            ApiError::bad_request(
                "InvalidApiSetId",
                "The account's kind is required (SpeechServices, FormRecognizer or CognitiveServices).",
            )
        })?)?;
        let sku = body.sku.as_ref().ok_or_else(|| {
            ApiError::bad_request(
                "InvalidSkuId",
                format!("The account's sku is required: one of {}.", kind.skus().join(", ")),
            )
        })?;
        AccountSettings::new(kind, validate_sku(kind, &sku.name)?)
    }

    /// An existing account's settings with the request's SKU; its kind cannot change.
    fn updated_settings(&self, record: &ResourceRecord, body: &AccountBody) -> Result<AccountSettings, ApiError> {
        let mut settings = settings_of(record)?;
        if let Some(kind) = body.kind.as_deref()
            && !kind.eq_ignore_ascii_case(settings.kind.name())
        {
            return Err(ApiError::bad_request(
                "KindChangeNotAllowed",
                format!(
                    "The kind of account '{}' is {} and cannot be changed to '{kind}'.",
                    record.name,
                    settings.kind.name()
                ),
            ));
        }
        if let Some(sku) = &body.sku {
            settings.sku = validate_sku(settings.kind, &sku.name)?.to_owned();
        }
        Ok(settings)
    }

    /// Azure allows one free (F0) account per kind in a subscription.
    async fn check_free_tier(
        &self,
        arm: &Arm,
        id: &ResourceId,
        settings: &AccountSettings,
        current: Option<&ResourceRecord>,
    ) -> Result<(), ApiError> {
        let was_free = current.map(settings_of).transpose()?.is_some_and(|s| s.sku == "F0");
        if settings.sku != "F0" || was_free {
            return Ok(());
        }
        for other in arm.resources_under(&format!("/subscriptions/{}/", id.subscription_id)).await? {
            if !other.resource_type.eq_ignore_ascii_case(ACCOUNT_TYPE) || other.id.eq_ignore_ascii_case(&id.to_string())
            {
                continue;
            }
            let theirs = settings_of(&other)?;
            if theirs.kind == settings.kind && theirs.sku == "F0" {
                return Err(ApiError::conflict(
                    "CanNotCreateMultipleFreeAccounts",
                    format!(
                        "Operation failed. Only one free account is allowed for account type '{}'; '{}' is one.",
                        settings.kind.name(),
                        other.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Validates and reserves a new `customSubDomainName`; returns the key to claim in the batch.
    /// Once set it cannot change (the endpoint's name would move under its users).
    async fn claim_subdomain(
        &self,
        id: &ResourceId,
        settings: &mut AccountSettings,
        props: &Map<String, Value>,
        creating: bool,
    ) -> Result<Option<String>, ApiError> {
        let Some(requested) = props.get("customSubDomainName").and_then(Value::as_str) else {
            return Ok(None);
        };
        match &settings.custom_sub_domain_name {
            Some(existing) if existing.eq_ignore_ascii_case(requested) => return Ok(None),
            Some(existing) if !creating => {
                return Err(ApiError::bad_request(
                    "CustomSubDomainNameCannotBeChanged",
                    format!(
                        "The custom subdomain name of account '{}' is '{existing}' and cannot be changed.",
                        id.name
                    ),
                ));
            }
            _ => {}
        }
        validate_subdomain(requested)?;
        let key = requested.to_ascii_lowercase();
        if self.service().store.get(DOMAINS, &key).await.map_err(records::store_error)?.is_some() {
            return Err(domain_in_use(requested));
        }
        settings.custom_sub_domain_name = Some(requested.to_owned());
        Ok(Some(key))
    }

    /// Applies every BYOS rule of the seed to `userOwnedStorage`: only at creation, only for kinds
    /// that offer it, only with the subscription's `byoxPreview` feature registered, only by a
    /// caller who may grant roles at the subscription, and only to an existing storage account the
    /// caller can see. Returns the bound storage account (for the region check).
    async fn bind_storage(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        id: &ResourceId,
        settings: &mut AccountSettings,
        props: &Map<String, Value>,
        creating: bool,
    ) -> Result<Option<ResourceRecord>, Failure> {
        let Some(requested) = user_owned_storage(props)? else {
            return Ok(None);
        };
        if !creating {
            if same_storage(&requested, &settings.user_owned_storage) {
                return Ok(None);
            }
            return Err(Failure::from(ApiError::bad_request(
                "UserOwnedStorageCanOnlyBeAttachedWhileCreation",
                "User owned storage can only be attached at account creation time; it cannot be added, changed or removed afterwards.",
            )));
        }
        if requested.is_empty() {
            return Ok(None);
        }
        if !settings.kind.offers_user_owned_storage() {
            return Err(Failure::from(ApiError::bad_request(
                "BringOwnFeatureNotEnabled",
                format!(
                    "Accounts of kind '{}' cannot bring their own storage (userOwnedStorage); only SpeechServices accounts can.",
                    settings.kind.name()
                ),
            )));
        }
        if requested.len() > 1 {
            return Err(Failure::from(ApiError::bad_request(
                "InvalidUserOwnedStorage",
                "An account can be bound to one storage account (userOwnedStorage has one entry).",
            )));
        }
        require_byos_feature(arm, &id.subscription_id).await?;
        request.authorize(arm, &ROLE_ASSIGNMENT_WRITE, &Scope::subscription(&id.subscription_id))?;
        let storage = self.require_storage(arm, request, &requested[0].resource_id).await?;
        settings.user_owned_storage = vec![UserOwnedStorage {
            resource_id: storage.id.clone(),
            identity_client_id: requested[0].identity_client_id.clone(),
        }];
        Ok(Some(storage))
    }

    async fn require_storage(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        storage_id: &str,
    ) -> Result<ResourceRecord, Failure> {
        let parsed = ResourceId::parse(storage_id)
            .ok()
            .filter(|r| r.full_type().eq_ignore_ascii_case(STORAGE_TYPE))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidUserOwnedStorage",
                    format!("'{storage_id}' is not the resource id of a storage account (/subscriptions/{{sub}}/resourceGroups/{{group}}/providers/Microsoft.Storage/storageAccounts/{{name}})."),
                )
            })?;
        request.authorize(arm, &STORAGE_READ, &parsed.scope())?;
        Ok(arm.resource(storage_id).await?.ok_or_else(|| {
            ApiError::not_found(
                "StorageAccountNotFound",
                format!("The storage account '{storage_id}' of userOwnedStorage does not exist."),
            )
        })?)
    }

    /// Applies `properties.encryption`: back to service-managed keys (the KEK is unwrapped once
    /// more and sealed under the root key), or a customer key with the seed's preconditions (S0, an
    /// identity that exists already, a vault in the account's region with purge protection, an RSA
    /// 2048 key the identity may get, wrap and unwrap). Returns the account's secrets to store.
    async fn apply_encryption(
        &self,
        change: &EncryptionChange<'_>,
        settings: &mut AccountSettings,
        request: &EncryptionRequest,
        fresh: Option<AccountKeys>,
    ) -> Result<AccountKeys, ApiError> {
        let cmk = &self.service().cmk;
        let EncryptionRequest::Customer { key_name, key_version, key_vault_uri, identity_client_id } = request else {
            let Some(live) = change.live.filter(|_| settings.cmk.is_some()) else {
                return fresh.or_else(|| change.live.map(|l| l.keys.clone())).ok_or_else(ApiError::internal);
            };
            let kek = cmk.customer_kek_bytes(live, None).await?;
            settings.cmk = None;
            tracing::info!(account = %change.id, "account key back under service-managed keys");
            return Ok(live.keys.with_service_key(&kek));
        };
        if settings.sku != "S0" {
            return Err(cmk_refused(format!(
                "customer-managed keys need the S0 pricing tier; this account is {}",
                settings.sku
            )));
        }
        let identity = cmk_identity(change, identity_client_id.as_deref())?;
        let vault =
            cmk.protector.customer_vault(key_vault_uri).map_err(|e| e.to_api_error("wrap the account's key"))?;
        if !vault.location.eq_ignore_ascii_case(change.location) {
            return Err(cmk_refused(format!(
                "the key vault '{}' is in {}, the account in {}: the vault must be in the account's region",
                vault.name, vault.location, change.location
            )));
        }
        let user = change.plan.user_identities();
        let identities = byos_identity::AttachedIdentities {
            resource_id: &change.id.to_string(),
            system: change.plan.system_principal(),
            user: &user,
        };
        let caller = self.service().directory.act_as(&identities, identity.as_deref()).ok_or_else(|| {
            ApiError::bad_request(
                "InvalidIdentity",
                "The identity named for the customer-managed key is not the account's.",
            )
        })?;
        let base = match (fresh, change.live) {
            (Some(keys), _) => keys,
            (None, Some(live)) if live.keys.root_kek_bytes().is_none() => {
                live.keys.with_service_key(&cmk.customer_kek_bytes(live, Some(&caller)).await?)
            }
            (None, Some(live)) => live.keys.clone(),
            (None, None) => return Err(ApiError::internal()),
        };
        let kek = base.root_kek_bytes().ok_or_else(ApiError::internal)?;
        let wrapped = cmk.wrap(&caller, &vault, key_name, key_version.as_deref(), kek).await?;
        settings.cmk = Some(CmkSettings {
            vault_id: vault.id.clone(),
            key_name: key_name.clone(),
            key_version: key_version.clone(),
            identity,
            identity_client_id: identity_client_id.clone(),
            key_id: wrapped.key_id.clone(),
        });
        tracing::info!(account = %change.id, key = %wrapped.key_id, "account key now protected by a customer-managed key");
        Ok(base.with_customer_key(wrapped))
    }

    fn record(
        &self,
        id: &ResourceId,
        body: &AccountBody,
        settings: AccountSettings,
        plan: &IdentityPlan,
        current: Option<&ResourceRecord>,
        location: String,
    ) -> Result<ResourceRecord, ApiError> {
        let mut extra = Map::new();
        extra.insert("kind".into(), json!(settings.kind.name()));
        extra.insert("sku".into(), json!({"name": settings.sku, "tier": sku_tier(&settings.sku)}));
        Ok(ResourceRecord {
            v: records::RECORD_VERSION,
            id: current.map_or_else(|| id.to_string(), |r| r.id.clone()),
            name: current.map_or_else(|| id.name.clone(), |r| r.name.clone()),
            resource_type: ACCOUNT_TYPE.into(),
            location,
            tags: body.tags.clone().or_else(|| current.map(|r| r.tags.clone())).unwrap_or_default(),
            properties: serde_json::to_value(&settings).or_internal()?,
            identity: plan.wire.clone(),
            owned_principals: plan.owned.clone(),
            created_on: current.map(|r| r.created_on.clone()).unwrap_or_else(byos_core::time::rfc3339_now),
            extra,
        })
    }

    /// PUT with `properties.restore: true` on a soft-deleted account: the account comes back with
    /// its settings, keys, subdomain and storage binding. Its system-assigned identity was deleted
    /// with it (and with it every role assignment), so it gets a new one: role assignments must be
    /// made again, as for a re-created resource.
    async fn restore(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        deleted: &DeletedAccount,
        body: &AccountBody,
    ) -> Result<ArmReply, Failure> {
        let old = &deleted.record;
        let requested = body.identity.clone().or_else(|| old.identity.as_ref().map(identity_request));
        let plan = plan_identity(arm, &request.caller, &old.id, requested.as_ref(), None).await?;
        let mut settings = settings_of(old)?;
        require_byos_identity(&settings, &plan)?;
        settings.port = self.service().serve(&old.id, settings.port).await?;
        let record = ResourceRecord {
            properties: serde_json::to_value(&settings).or_internal()?,
            identity: plan.wire.clone(),
            owned_principals: plan.owned.clone(),
            tags: body.tags.clone().unwrap_or_else(|| old.tags.clone()),
            ..old.clone()
        };
        let key = resource_key(&record.id);
        let batch = Batch::new()
            .expect_absent(RESOURCES, key.clone())
            .put(RESOURCES, key.clone(), encode(&key, &record)?)
            .delete(DELETED, key);
        let batch = plan.ops(arm, batch)?;
        if let Err(e) = self.service().store.commit(batch).await {
            self.service().close(&record.id);
            return Err(Failure::from(records::store_error(e)));
        }
        plan.applied(arm);
        self.service().cmk.forget(&record.id);
        self.service().refresh(&record).await?;
        tracing::info!(account = %record.id, "AI-services account restored");
        Ok(ArmReply::json(201, wire(self.service(), &record)?))
    }

    async fn list(&self, arm: &Arm, request: &ArmRequest, sub: &str, group: Option<&str>) -> Result<ArmReply, Failure> {
        let records = arm.readable_resources(request, sub, group, ACCOUNT_TYPE, &READ).await?;
        Ok(ArmReply::list(records.iter().map(|r| wire(self.service(), r)).collect::<Result<Vec<_>, _>>()?))
    }

    async fn keys_of(&self, record: &ResourceRecord) -> Result<AccountKeys, ApiError> {
        let key = resource_key(&record.id);
        let sealed = self.service().store.get(KEYS, &key).await.map_err(records::store_error)?.or_internal()?;
        AccountKeys::open(&self.service().root, &sealed)
    }

    async fn list_keys(&self, arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
        request.require_method(&Method::POST)?;
        request.authorize(arm, &LIST_KEYS, &id.scope())?;
        let record = self.require(arm, id).await?;
        Ok(ArmReply::ok(self.keys_of(&record).await?.to_wire()))
    }

    async fn regenerate_key(&self, arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
        request.require_method(&Method::POST)?;
        request.authorize(arm, &REGENERATE_KEY, &id.scope())?;
        let index = request.key_to_regenerate()?;
        let _guard = arm.write_guard().await;
        let record = self.require(arm, id).await?;
        let keys = self.keys_of(&record).await?.regenerated(index)?;
        let key = resource_key(&record.id);
        let batch = Batch::new().put(KEYS, key, keys.seal(&self.service().root)?);
        self.service().store.commit(batch).await.map_err(records::store_error)?;
        self.service().refresh(&record).await?;
        tracing::info!(account = %record.id, key = index + 1, "account key regenerated");
        Ok(ArmReply::ok(keys.to_wire()))
    }

    async fn account_skus(&self, arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
        request.require_method(&Method::GET)?;
        request.authorize(arm, &ACCOUNT_SKUS, &id.scope())?;
        let settings = settings_of(&self.require(arm, id).await?)?;
        let value = settings
            .kind
            .skus()
            .iter()
            .map(|sku| json!({"resourceType": ACCOUNT_TYPE, "sku": {"name": sku, "tier": sku_tier(sku)}}))
            .collect();
        Ok(ArmReply::list(value))
    }

    /// Usages and models: byos meters nothing and deploys no models, so both lists are empty.
    async fn empty_list(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        id: &ResourceId,
        read: &Action,
    ) -> Result<ArmReply, Failure> {
        request.require_method(&Method::GET)?;
        request.authorize(arm, read, &id.scope())?;
        self.require(arm, id).await?;
        Ok(ArmReply::list(Vec::new()))
    }

    fn deleted_wire(&self, deleted: &DeletedAccount) -> Result<Value, ApiError> {
        let record = &deleted.record;
        let id = ResourceId::parse(&record.id).or_internal()?;
        let mut wire = wire(self.service(), record)?;
        wire["id"] = json!(format!(
            "/subscriptions/{}/providers/{NAMESPACE}/locations/{}/resourceGroups/{}/deletedAccounts/{}",
            id.subscription_id, record.location, id.resource_group, record.name
        ));
        wire["type"] = json!("Microsoft.CognitiveServices/deletedAccounts");
        wire["properties"]["deletionDate"] = json!(deleted.deletion_date);
        wire["properties"]["scheduledPurgeDate"] = json!(deleted.scheduled_purge_date);
        Ok(wire)
    }

    async fn list_deleted(&self, arm: &Arm, request: &ArmRequest, sub: &str) -> Result<ArmReply, Failure> {
        request.require_method(&Method::GET)?;
        request.authorize(arm, &DELETED_READ, &Scope::subscription(sub))?;
        let prefix = format!("/subscriptions/{sub}/").to_ascii_lowercase();
        let rows = self.service().store.scan(DELETED, &prefix).await.map_err(records::store_error)?;
        let mut value = Vec::new();
        for (key, bytes) in rows {
            value.push(self.deleted_wire(&records::decode(&key, &bytes)?)?);
        }
        Ok(ArmReply::list(value))
    }

    /// GET (read) or DELETE (purge) of `locations/{location}/resourceGroups/{group}/deletedAccounts/{name}`.
    async fn deleted_account(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        location: &str,
        id: &ResourceId,
    ) -> Result<ArmReply, Failure> {
        let scope = Scope::subscription(&id.subscription_id);
        let action = match request.method {
            Method::GET => &DELETED_READ,
            Method::DELETE => &PURGE,
            ref other => return Err(method_not_allowed(other)),
        };
        request.authorize(arm, action, &scope)?;
        let _guard = arm.write_guard().await;
        let deleted = self
            .load_deleted(id)
            .await?
            .filter(|d| d.record.location.eq_ignore_ascii_case(location))
            .ok_or_else(|| deleted_not_found(id, location))?;
        if request.method == Method::GET {
            return Ok(ArmReply::ok(self.deleted_wire(&deleted)?));
        }
        purge(self.service(), &deleted).await?;
        Ok(ArmReply::empty(200))
    }

    async fn check_domain(&self, arm: &Arm, request: &ArmRequest, sub: &str) -> Result<ArmReply, Failure> {
        request.require_method(&Method::POST)?;
        request.authorize(arm, &CHECK_DOMAIN, &Scope::subscription(sub))?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Check {
            subdomain_name: String,
            #[serde(rename = "type", default)]
            resource_type: Option<String>,
            #[serde(default)]
            kind: Option<String>,
        }
        let check: Check = request.json()?;
        let reason = match validate_subdomain(&check.subdomain_name) {
            Err(e) => Some(e.message),
            Ok(()) => {
                let key = check.subdomain_name.to_ascii_lowercase();
                let taken = self.service().store.get(DOMAINS, &key).await.map_err(records::store_error)?.is_some();
                taken.then(|| format!("Sub domain name '{}' is already used.", check.subdomain_name))
            }
        };
        Ok(ArmReply::ok(json!({
            "isSubdomainAvailable": reason.is_none(),
            "reason": reason,
            "subdomainName": check.subdomain_name,
            "type": check.resource_type.unwrap_or_else(|| ACCOUNT_TYPE.to_owned()),
            "kind": check.kind,
        })))
    }

    async fn check_skus(&self, arm: &Arm, request: &ArmRequest, sub: &str) -> Result<ArmReply, Failure> {
        request.require_method(&Method::POST)?;
        request.authorize(arm, &CHECK_SKU, &Scope::subscription(sub))?;
        #[derive(Deserialize)]
        struct Check {
            skus: Option<Vec<String>>,
            kind: String,
            #[serde(rename = "type", default)]
            resource_type: Option<String>,
        }
        let check: Check = request.json()?;
        let skus = check.skus.ok_or_else(|| {
            ApiError::bad_request("BadRequest", "Value cannot be null. (Parameter 'requestObject.Skus')")
        })?;
        let kind = Kind::parse(&check.kind);
        let value = skus
            .iter()
            .map(|sku| {
                let verdict = kind.as_ref().map_err(Clone::clone).and_then(|k| validate_sku(*k, sku));
                json!({
                    "kind": check.kind, "type": check.resource_type.as_deref().unwrap_or(ACCOUNT_TYPE), "skuName": sku,
                    "skuAvailable": verdict.is_ok(),
                    "reason": verdict.as_ref().err().map(|e| e.code.clone()),
                    "message": verdict.err().map(|e| e.message),
                })
            })
            .collect();
        Ok(ArmReply::list(value))
    }

    /// `GET /subscriptions/{sub}/providers/Microsoft.CognitiveServices/skus`: every kind and SKU
    /// byos offers, in the deployment's region (what `az cognitiveservices account list-kinds` and
    /// `list-skus --kind` read).
    fn resource_skus(&self, arm: &Arm, request: &ArmRequest, sub: &str) -> Result<ArmReply, Failure> {
        request.require_method(&Method::GET)?;
        request.authorize(arm, &SKUS, &Scope::subscription(sub))?;
        let location = &arm.deployment.location;
        let value = Kind::ALL
            .iter()
            .flat_map(|kind| {
                kind.skus().iter().map(move |sku| {
                    json!({"resourceType": "accounts", "name": sku, "tier": sku_tier(sku), "kind": kind.name(),
                           "locations": [location], "restrictions": []})
                })
            })
            .collect();
        Ok(ArmReply::list(value))
    }
}

/// Removes a soft-deleted account for good: its record, keys, subdomain, datasets and service-held
/// artifacts (its BYOS storage is the customer's and stays).
async fn purge(service: &CognitiveService, deleted: &DeletedAccount) -> Result<(), ApiError> {
    let key = resource_key(&deleted.record.id);
    let mut batch = Batch::new().delete(DELETED, key.clone()).delete(KEYS, key);
    if let Some(domain) = settings_of(&deleted.record)?.custom_sub_domain_name {
        batch = batch.delete(DOMAINS, domain.to_ascii_lowercase());
    }
    let batch = service.datasets_purge_ops(&deleted.record.id, batch).await?;
    let batch = service.transcriptions_purge_ops(&deleted.record.id, batch).await?;
    let batch = service.batch_syntheses_purge_ops(&deleted.record.id, batch).await?;
    let batch = service.endpoints_purge_ops(&deleted.record.id, batch).await?;
    let batch = service.models_purge_ops(&deleted.record.id, batch).await?;
    let batch = service.evaluations_purge_ops(&deleted.record.id, batch).await?;
    let (batch, objects) = service.artifacts.purge_ops(&deleted.record.id, batch).await?;
    service.store.commit(batch).await.map_err(records::store_error)?;
    service.artifacts.purged(objects).await;
    tracing::info!(account = %deleted.record.id, "soft-deleted AI-services account purged");
    Ok(())
}

/// Purges the soft-deleted accounts whose 48 hours have passed, as `purger` (the soft-delete
/// watch), which the door must admit for each; returns how many went.
pub async fn purge_expired_accounts(service: &CognitiveService, purger: &byos_core::Caller) -> Result<usize, ApiError> {
    let mut purged = 0;
    for (key, bytes) in service.store.scan(DELETED, "").await.map_err(records::store_error)? {
        let deleted: DeletedAccount = records::decode(&key, &bytes)?;
        let due = byos_core::time::has_passed(&deleted.scheduled_purge_date);
        if due {
            let scope = Scope::subscription(&ResourceId::parse(&deleted.record.id).or_internal()?.subscription_id);
            service.door.authorize(purger, &PURGE, &scope).map_err(|denial| denial.to_api_error())?;
            purge(service, &deleted).await?;
            purged += 1;
        }
    }
    Ok(purged)
}

/// Purges soft-deleted accounts past their retention every `interval`, until the service is dropped.
pub fn spawn_purge_watch(service: Arc<CognitiveService>, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(&service);
    drop(service);
    let purger = byos_core::Caller::actor(byos_core::Actor::SoftDeletePurge);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(service) = weak.upgrade() else { return };
            match purge_expired_accounts(&service, &purger).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "purged soft-deleted AI-services accounts past their retention"),
                Err(e) => tracing::warn!(error = %e, "purging expired soft-deleted AI-services accounts failed"),
            }
        }
    })
}

/// A BYOS account reaches its storage as its system-assigned identity: an identity change that
/// would take that identity away is refused rather than leaving the binding silently broken.
fn require_byos_identity(settings: &AccountSettings, plan: &IdentityPlan) -> Result<(), ApiError> {
    if settings.user_owned_storage.is_empty() || plan.system_principal().is_some() {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "InvalidIdentity",
        format!(
            "This account is bound to the storage account '{}' (userOwnedStorage), which it reaches as its system-assigned identity: the identity type must include SystemAssigned.",
            settings.user_owned_storage[0].resource_id
        ),
    ))
}

async fn require_byos_feature(arm: &Arm, sub: &str) -> Result<(), ApiError> {
    use byos_arm::features::{FeatureState, feature_state};
    match feature_state(arm, sub, NAMESPACE, BYOS_FEATURE).await? {
        FeatureState::Registered => Ok(()),
        state => Err(ApiError::bad_request(
            "BringOwnFeatureNotEnabled",
            format!(
                "Bringing your own storage needs the subscription feature {NAMESPACE}/{BYOS_FEATURE}, which is {state:?}. Register it with 'az feature register --namespace {NAMESPACE} --name {BYOS_FEATURE}'; an operator then approves it with 'byos feature approve --namespace {NAMESPACE} --name {BYOS_FEATURE}'."
            ),
        )),
    }
}

/// A 400 naming why a customer key cannot protect the account.
fn cmk_refused(why: String) -> ApiError {
    ApiError::bad_request("InvalidEncryptionSettings", format!("The customer-managed key cannot be used: {why}."))
}

/// The identity that will use the customer key: the attached user-assigned identity with
/// `identityClientId`, else the system-assigned one, which must exist already (it cannot have been
/// granted the key before the account existed).
fn cmk_identity(change: &EncryptionChange<'_>, client_id: Option<&str>) -> Result<Option<String>, ApiError> {
    let wire = change.plan.wire.as_ref();
    if let Some(client_id) = client_id {
        let attached = wire.and_then(|w| w.get("userAssignedIdentities")).and_then(Value::as_object);
        let found = attached.and_then(|m| {
            m.iter().find(|(_, v)| v["clientId"].as_str().is_some_and(|c| c.eq_ignore_ascii_case(client_id)))
        });
        return match found {
            Some((id, _)) => Ok(Some(id.clone())),
            None => Err(ApiError::bad_request(
                "InvalidIdentity",
                format!(
                    "No user-assigned identity with client id '{client_id}' is attached to the account (identityClientId)."
                ),
            )),
        };
    }
    if change.plan.system_principal().is_none() {
        return Err(ApiError::bad_request(
            "InvalidIdentity",
            "A customer-managed key needs a managed identity: enable the account's system-assigned identity, or attach a user-assigned one and name it in keyVaultProperties.identityClientId.",
        ));
    }
    if change.creating {
        return Err(cmk_refused(
            "with a system-assigned identity it can be turned on only after the account is created (grant the new identity get, wrapKey and unwrapKey on the key, then update the account)".into(),
        ));
    }
    Ok(None)
}

/// An identity change must not take away the identity the customer key is used as: the data would
/// be unreadable with no way back but re-pointing the key.
fn require_cmk_identity(settings: &AccountSettings, plan: &IdentityPlan) -> Result<(), ApiError> {
    let Some(cmk) = &settings.cmk else { return Ok(()) };
    let kept = match &cmk.identity {
        None => plan.system_principal().is_some(),
        Some(uami) => plan.user_identities().iter().any(|attached| attached.eq_ignore_ascii_case(uami)),
    };
    if kept {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "InvalidIdentity",
        "The customer-managed key of this account (encryption.keyVaultProperties) is used as the identity this change removes: point the encryption at another identity first, or return to Microsoft.CognitiveServices keys.",
    ))
}

/// Where a written account is: where it is already, else where the request says, else its group's region.
fn location_of(current: Option<&ResourceRecord>, body: &AccountBody, group: &records::GroupRecord) -> String {
    current
        .map(|r| r.location.clone())
        .or(body.location.clone().filter(|l| !l.is_empty()))
        .unwrap_or_else(|| group.location.clone())
}

/// The request that gives a restored account the identity types (and user-assigned identities) it had.
fn identity_request(identity: &Value) -> Value {
    let user: Map<String, Value> = identity
        .get("userAssignedIdentities")
        .and_then(Value::as_object)
        .map(|attached| attached.keys().map(|id| (id.clone(), json!({}))).collect())
        .unwrap_or_default();
    json!({"type": identity["type"], "userAssignedIdentities": user})
}

fn restore_flag_required(id: &ResourceId) -> ApiError {
    ApiError::conflict(
        "FlagMustBeSetForRestore",
        format!(
            "An existing resource with ID '{id}' has been soft-deleted. To restore the resource, you must specify 'restore' to be 'true' in the property. If you don't want to restore existing resource, please purge it first."
        ),
    )
}

fn nothing_to_restore(id: &ResourceId) -> ApiError {
    ApiError::not_found("ResourceNotFound", format!("There is no soft-deleted account '{id}' to restore."))
}

fn deleted_not_found(id: &ResourceId, location: &str) -> ApiError {
    ApiError::not_found(
        "ResourceNotFound",
        format!(
            "The soft-deleted account '{}' in resource group '{}' and location '{location}' was not found.",
            id.name, id.resource_group
        ),
    )
}

fn domain_in_use(name: &str) -> ApiError {
    ApiError::conflict(
        "CustomDomainInUse",
        format!(
            "The subdomain name '{name}' is already used by another account, or by an account deleted within the last 48 hours (purge that one to free it)."
        ),
    )
}

/// A BYOS storage account in another region is allowed (as in Azure) and reported: every artifact
/// then leaves the account's region.
fn cross_region_warning(storage: &ResourceRecord, location: &str) -> Option<String> {
    (!storage.location.eq_ignore_ascii_case(location)).then(|| {
        format!(
            "cross-region user-owned storage: the storage account {} is in {}, the AI-services account in {location}",
            storage.id, storage.location
        )
    })
}
