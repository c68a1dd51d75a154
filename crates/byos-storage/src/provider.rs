//! The `Microsoft.Storage` ARM provider: storage accounts, their keys and blob service properties.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::Method;
use byos_arm::ArmReply;
use byos_arm::groups::{method_not_allowed, unknown_resource_type};
use byos_arm::managed_identity::plan_identity;
use byos_arm::records::{
    self, RESOURCES, ResourceRecord, encode, resource_key, resource_not_found, store_error, validate_tags,
};
use byos_arm::{Arm, ArmRequest, Provider};
use byos_authz::Action;
use byos_core::{ApiError, OrInternal, ResourceId, Scope};
use byos_http::Failure;
use byos_store::Batch;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::account::{
    AccountSecrets, AccountSettings, CMK_SETTINGS_VERSION, CmkSettings, EncryptionRequest, parse_encryption,
    validate_name,
};
use crate::blob::cors;
use crate::cmk;
use crate::{ACCOUNT_TYPE, Account, BLOB_SERVICES, NAMES, SECRETS, StorageService};

const NAMESPACE: &str = "Microsoft.Storage";
const READ: Action = Action::control("Microsoft.Storage/storageAccounts/read");
const WRITE: Action = Action::control("Microsoft.Storage/storageAccounts/write");
const DELETE: Action = Action::control("Microsoft.Storage/storageAccounts/delete");
const LIST_KEYS: Action = Action::control("Microsoft.Storage/storageAccounts/listKeys/action");
const REGENERATE_KEY: Action = Action::control("Microsoft.Storage/storageAccounts/regenerateKey/action");
const REVOKE_USER_DELEGATION_KEYS: Action =
    Action::control("Microsoft.Storage/storageAccounts/revokeUserDelegationKeys/action");
const CHECK_NAME: Action = Action::control("Microsoft.Storage/checkNameAvailability/read");
const BLOB_SERVICE_READ: Action = Action::control("Microsoft.Storage/storageAccounts/blobServices/read");
const BLOB_SERVICE_WRITE: Action = Action::control("Microsoft.Storage/storageAccounts/blobServices/write");

/// The provider, holding the storage service it keeps in step.
pub struct StorageProvider(pub Arc<StorageService>);

#[derive(Deserialize)]
struct AccountBody {
    location: Option<String>,
    #[serde(default)]
    tags: Option<Map<String, Value>>,
    #[serde(default)]
    sku: Option<Value>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    identity: Option<Value>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

#[async_trait]
impl Provider for StorageProvider {
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
            (None, [action]) if is(action, "checkNameAvailability") => self.check_name(arm, request, &sub).await,
            (_, [t]) if is(t, "storageAccounts") => self.list(arm, request, &sub, group).await,
            (Some(group), [t, name, tail @ ..]) if is(t, "storageAccounts") => {
                let id = ResourceId::new(&sub, group, NAMESPACE, "storageAccounts", name);
                match tail {
                    [] => self.account_op(arm, request, &id).await,
                    [op] if is(op, "listKeys") => self.list_keys(arm, request, &id).await,
                    [op] if is(op, "regenerateKey") => self.regenerate_key(arm, request, &id).await,
                    [op] if is(op, "revokeUserDelegationKeys") => {
                        self.revoke_user_delegation_keys(arm, request, &id).await
                    }
                    [s] if is(s, "blobServices") => self.blob_services(arm, request, &id, true).await,
                    [s, d] if is(s, "blobServices") && is(d, "default") => {
                        self.blob_services(arm, request, &id, false).await
                    }
                    _ => Err(unknown_resource_type(NAMESPACE, rest)),
                }
            }
            _ => Err(unknown_resource_type(NAMESPACE, rest)),
        }
    }

    async fn delete_ops(&self, _arm: &Arm, resource: &ResourceRecord, batch: Batch) -> Result<Batch, ApiError> {
        self.data_delete_ops(resource, batch).await
    }

    async fn deleted(&self, resource: &ResourceRecord) {
        self.0.forget(&resource.name);
        crate::blob::data::delete_account_objects(&self.0, &resource.name).await;
    }
}

impl StorageProvider {
    fn service(&self) -> &StorageService {
        &self.0
    }

    /// The account as ARM returns it.
    fn wire(&self, record: &ResourceRecord) -> Result<Value, ApiError> {
        let settings: AccountSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
        let mut wire = record.to_wire();
        let vault = settings.cmk.as_ref().and_then(|cmk| self.service().cmk_vault_now(cmk));
        wire["properties"] = settings.to_wire(
            &self.service().endpoint(&record.name),
            &record.location,
            vault.as_ref().map(|v| v.uri.as_str()),
        );
        Ok(wire)
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
                Ok(ArmReply::json(200, self.wire(&self.require(arm, id).await?)?))
            }
            Method::PUT | Method::PATCH => {
                request.authorize(arm, &WRITE, &id.scope())?;
                self.put(arm, request, id).await
            }
            Method::DELETE => {
                request.authorize(arm, &DELETE, &id.scope())?;
                self.delete(arm, &request.caller, id).await
            }
            ref other => Err(method_not_allowed(other)),
        }
    }

    async fn put(&self, arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
        validate_name(&id.name)?;
        let body: AccountBody = request.json()?;
        if let Some(tags) = &body.tags {
            validate_tags(tags)?;
        }
        let _guard = arm.write_guard().await;
        let group = arm.require_group(&id.subscription_id, &id.resource_group).await?;
        let current = arm.resource(&id.to_string()).await?;
        if current.is_none() && request.method == Method::PATCH {
            return Err(Failure::from(resource_not_found(ACCOUNT_TYPE, &id.name, &id.resource_group)));
        }
        let key = resource_key(&id.to_string());
        let name_owner = self.service().store.get(NAMES, &id.name).await.map_err(store_error)?;
        if current.is_none() && name_owner.is_some() {
            return Err(Failure::from(ApiError::conflict(
                "StorageAccountAlreadyTaken",
                format!("The storage account named {} is already taken.", id.name),
            )));
        }
        let mut settings: AccountSettings = match &current {
            Some(record) => serde_json::from_value(record.properties.clone()).or_internal()?,
            None => AccountSettings::default(),
        };
        let props = body.properties.clone().unwrap_or_default();
        settings.apply(&props)?;
        self.service().migrate_cmk(&mut settings).await;
        let encryption = parse_encryption(&props)?;
        let plan =
            plan_identity(arm, &request.caller, &id.to_string(), body.identity.as_ref(), current.as_ref()).await?;
        if let (None, Some(cmk)) = (&encryption, &settings.cmk) {
            require_encryption_identity(cmk, &plan)?;
        }
        let fresh = current.is_none().then(AccountSecrets::generate).transpose()?;
        let secrets = match &encryption {
            Some(request) => Some(self.apply_encryption(id, &mut settings, &plan, request, fresh).await?),
            None => fresh,
        };
        let mut extra = current.as_ref().map(|r| r.extra.clone()).unwrap_or_default();
        if let Some(sku) = body.sku.clone() {
            let name = sku.get("name").and_then(Value::as_str).unwrap_or("Standard_LRS").to_owned();
            let tier = if name.starts_with("Premium") { "Premium" } else { "Standard" };
            extra.insert("sku".into(), json!({"name": name, "tier": tier}));
        }
        extra.entry("sku").or_insert_with(|| json!({"name": "Standard_LRS", "tier": "Standard"}));
        if let Some(kind) = body.kind.clone() {
            extra.insert("kind".into(), json!(kind));
        }
        extra.entry("kind").or_insert_with(|| json!("StorageV2"));
        let record = ResourceRecord {
            v: records::RECORD_VERSION,
            id: id.to_string(),
            name: id.name.clone(),
            resource_type: ACCOUNT_TYPE.into(),
            location: current
                .as_ref()
                .map(|r| r.location.clone())
                .or(body.location.filter(|l| !l.is_empty()))
                .unwrap_or(group.location),
            tags: body.tags.or_else(|| current.as_ref().map(|r| r.tags.clone())).unwrap_or_default(),
            properties: serde_json::to_value(&settings).or_internal()?,
            identity: plan.wire.clone(),
            owned_principals: plan.owned.clone(),
            created_on: current.as_ref().map(|r| r.created_on.clone()).unwrap_or_else(byos_core::time::rfc3339_now),
            extra,
        };
        let mut batch = Batch::new().put(RESOURCES, key.clone(), encode(&key, &record)?);
        if current.is_none() {
            batch =
                batch.expect_absent(NAMES, id.name.clone()).put(NAMES, id.name.clone(), id.to_string().into_bytes());
        }
        if let Some(secrets) = &secrets {
            batch = batch.put(SECRETS, key.clone(), secrets.seal(&self.service().root)?);
        }
        batch = plan.ops(arm, batch)?;
        self.service().store.commit(batch).await.map_err(store_error)?;
        plan.applied(arm);
        self.service().refresh(&record).await?;
        tracing::info!(account = %record.id, created = current.is_none(), "storage account written");
        let mut reply = ArmReply::json(200, self.wire(&record)?);
        if let Some(warning) = encryption.as_ref().and_then(|_| self.cross_region_key(&settings, &record.location)) {
            tracing::warn!(account = %record.id, %warning, "customer-managed key in another region");
            reply = reply.with_header("x-byos-warning", warning);
        }
        Ok(reply)
    }

    /// A warning when the account's customer key lives in a vault of another region (allowed, as in
    /// Azure, but every data access then depends on that region).
    fn cross_region_key(&self, settings: &AccountSettings, location: &str) -> Option<String> {
        let cmk = settings.cmk.as_ref()?;
        let vault = self.service().cmk_vault_now(cmk)?;
        (!vault.location.eq_ignore_ascii_case(location)).then(|| {
            format!(
                "cross-region customer-managed key: the key vault '{}' is in {}, the account in {location}",
                vault.name, vault.location
            )
        })
    }

    /// Switches the account's KEK protection as `request` asks; returns the secrets to store.
    /// `fresh` is the secrets of an account being created (`None` for an existing account).
    async fn apply_encryption(
        &self,
        id: &ResourceId,
        settings: &mut AccountSettings,
        plan: &byos_arm::managed_identity::IdentityPlan,
        request: &EncryptionRequest,
        fresh: Option<AccountSecrets>,
    ) -> Result<AccountSecrets, ApiError> {
        let live = self.service().account(&id.name);
        let EncryptionRequest::CustomerManaged { key_name, key_version, key_vault_uri, identity } = request else {
            let (_, base) = self.root_protected(live.as_deref(), fresh, None).await?;
            settings.cmk = None;
            return Ok(base);
        };
        let vault = self
            .service()
            .protector
            .customer_vault(key_vault_uri)
            .map_err(|e| e.to_api_error("wrap the account key"))?;
        let caller = self.encryption_caller(&id.to_string(), plan, identity.as_deref())?;
        let (kek, base) = self.root_protected(live.as_deref(), fresh, Some(&caller)).await?;
        let (wrap, _) = cmk::wrap(self.service(), &caller, &vault.uri, key_name, key_version.as_deref(), &kek).await?;
        settings.cmk = Some(CmkSettings {
            v: CMK_SETTINGS_VERSION,
            key_name: key_name.clone(),
            key_version: key_version.clone(),
            vault_id: vault.id.clone(),
            key_vault_uri: String::new(),
            identity: identity.clone(),
            current_key_id: wrap.key_id.clone(),
            last_rotation: byos_core::time::rfc3339_now(),
        });
        tracing::info!(account = %id, key = %wrap.key_id, "account key now protected by a customer-managed key");
        base.with_customer_key(wrap)
    }

    /// The account's KEK bytes and its secrets with the KEK under the root key. A KEK protected by
    /// a customer key is unwrapped as `new_identity` (the identity an update switches to) or else
    /// as the account's identity now.
    async fn root_protected(
        &self,
        live: Option<&Account>,
        fresh: Option<AccountSecrets>,
        new_identity: Option<&byos_core::Caller>,
    ) -> Result<(zeroize::Zeroizing<Vec<u8>>, AccountSecrets), ApiError> {
        match (fresh, live) {
            (Some(secrets), _) => Ok((secrets.root_kek_bytes().or_internal()?, secrets)),
            (None, Some(account)) => {
                let kek = match account.secrets.root_kek_bytes() {
                    Some(bytes) => bytes,
                    None => cmk::customer_kek_bytes(self.service(), account, new_identity).await?,
                };
                let base = account.secrets.with_service_key(&kek)?;
                Ok((kek, base))
            }
            (None, None) => Err(ApiError::internal()),
        }
    }

    /// The identity that will use the customer key, from the identity the account will have: the
    /// named user-assigned identity (which must be attached) or the system-assigned one.
    fn encryption_caller(
        &self,
        account_id: &str,
        plan: &byos_arm::managed_identity::IdentityPlan,
        identity: Option<&str>,
    ) -> Result<byos_core::Caller, ApiError> {
        let user = plan.user_identities();
        if let Some(uami) = identity
            && !user.iter().any(|k| k.eq_ignore_ascii_case(uami))
        {
            return Err(ApiError::bad_request(
                "InvalidIdentity",
                format!(
                    "The identity '{uami}' must be attached to the account (identity.userAssignedIdentities) to use it for encryption."
                ),
            ));
        }
        let identities =
            byos_identity::AttachedIdentities { resource_id: account_id, system: plan.system_principal(), user: &user };
        self.service().directory.act_as(&identities, identity).ok_or_else(|| {
            ApiError::bad_request(
                "InvalidIdentity",
                "A customer-managed key needs a managed identity: enable the account's system-assigned identity or name an attached user-assigned identity in encryption.identity.",
            )
        })
    }

    async fn delete(&self, arm: &Arm, caller: &byos_core::Caller, id: &ResourceId) -> Result<ArmReply, Failure> {
        let guard = arm.write_guard().await;
        let Some(record) = arm.resource(&id.to_string()).await? else {
            return Ok(ArmReply::empty(204));
        };
        arm.delete_resource(&guard, caller, &record).await?;
        tracing::info!(account = %record.id, "storage account deleted");
        Ok(ArmReply::empty(200))
    }

    /// Everything byos keeps for an account besides its ARM record.
    async fn data_delete_ops(&self, record: &ResourceRecord, batch: Batch) -> Result<Batch, ApiError> {
        let key = record.id.to_ascii_lowercase();
        let batch = batch.delete(NAMES, record.name.clone()).delete(SECRETS, key.clone()).delete(BLOB_SERVICES, key);
        crate::blob::data::account_metadata_delete_ops(&self.0, &record.name, batch).await
    }

    async fn list(&self, arm: &Arm, request: &ArmRequest, sub: &str, group: Option<&str>) -> Result<ArmReply, Failure> {
        let records = arm.readable_resources(request, sub, group, ACCOUNT_TYPE, &READ).await?;
        let value = records.iter().map(|r| self.wire(r)).collect::<Result<Vec<_>, _>>()?;
        Ok(ArmReply::json(200, json!({"value": value})))
    }

    async fn check_name(&self, arm: &Arm, request: &ArmRequest, sub: &str) -> Result<ArmReply, Failure> {
        request.authorize(arm, &CHECK_NAME, &Scope::subscription(sub))?;
        #[derive(Deserialize)]
        struct Check {
            name: String,
        }
        let check: Check = request.json()?;
        let answer = match validate_name(&check.name) {
            Err(e) => json!({"nameAvailable": false, "reason": "AccountNameInvalid", "message": e.message}),
            Ok(()) if self.service().store.get(NAMES, &check.name).await.map_err(store_error)?.is_some() => {
                json!({"nameAvailable": false, "reason": "AlreadyExists", "message": format!("The storage account named {} is already taken.", check.name)})
            }
            Ok(()) => json!({"nameAvailable": true}),
        };
        Ok(ArmReply::json(200, answer))
    }

    fn keys_wire(&self, secrets: &AccountSecrets, created: &str) -> Value {
        json!({"keys": [
            {"creationTime": created, "keyName": "key1", "value": secrets.keys[0].as_str(), "permissions": "FULL"},
            {"creationTime": created, "keyName": "key2", "value": secrets.keys[1].as_str(), "permissions": "FULL"},
        ]})
    }

    async fn list_keys(&self, arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
        request.require_method(&Method::POST)?;
        request.authorize(arm, &LIST_KEYS, &id.scope())?;
        let record = self.require(arm, id).await?;
        let account = self.service().account(&record.name).or_internal()?;
        Ok(ArmReply::json(200, self.keys_wire(&account.secrets, &record.created_on)))
    }

    async fn regenerate_key(&self, arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
        request.require_method(&Method::POST)?;
        request.authorize(arm, &REGENERATE_KEY, &id.scope())?;
        let index = request.key_to_regenerate()?;
        let _guard = arm.write_guard().await;
        let record = self.require(arm, id).await?;
        let account = self.service().account(&record.name).or_internal()?;
        let secrets = account.secrets.with_new_key(index)?;
        self.store_secrets(&record, &secrets).await?;
        tracing::info!(account = %record.id, key = index + 1, "account key regenerated");
        Ok(ArmReply::json(200, self.keys_wire(&secrets, &record.created_on)))
    }

    /// Replaces an account's sealed secrets (under the ARM write guard) and reloads the account.
    async fn store_secrets(&self, record: &ResourceRecord, secrets: &AccountSecrets) -> Result<(), ApiError> {
        let key = record.id.to_ascii_lowercase();
        self.service()
            .store
            .commit(Batch::new().put(SECRETS, key, secrets.seal(&self.service().root)?))
            .await
            .map_err(store_error)?;
        self.service().refresh(record).await?;
        Ok(())
    }

    /// `POST .../revokeUserDelegationKeys`: a new user-delegation root, so that every user
    /// delegation key issued before, and every SAS signed with one, stops working. 200, no body.
    async fn revoke_user_delegation_keys(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        id: &ResourceId,
    ) -> Result<ArmReply, Failure> {
        if request.method != Method::POST {
            return Err(method_not_allowed(&request.method));
        }
        request.authorize(arm, &REVOKE_USER_DELEGATION_KEYS, &id.scope())?;
        let _guard = arm.write_guard().await;
        let record = self.require(arm, id).await?;
        let account = self.service().account(&record.name).or_internal()?;
        self.store_secrets(&record, &account.secrets.with_new_delegation_root()?).await?;
        tracing::info!(account = %record.id, "user delegation keys revoked");
        Ok(ArmReply::empty(200))
    }

    async fn blob_services(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        id: &ResourceId,
        list: bool,
    ) -> Result<ArmReply, Failure> {
        let scope = id.scope().child("blobServices/default");
        let record = match request.method {
            Method::GET => {
                request.authorize(arm, &BLOB_SERVICE_READ, &scope)?;
                self.require(arm, id).await?
            }
            Method::PUT | Method::PATCH if !list => {
                request.authorize(arm, &BLOB_SERVICE_WRITE, &scope)?;
                let body: Value = request.json()?;
                let rules = cors::rules_from_arm(body.pointer("/properties/cors"))?;
                let _guard = arm.write_guard().await;
                let record = self.require(arm, id).await?;
                let key = record.id.to_ascii_lowercase();
                self.service()
                    .store
                    .commit(Batch::new().put(BLOB_SERVICES, key, cors::encode_rules(&rules)?))
                    .await
                    .map_err(store_error)?;
                self.service().refresh(&record).await?;
                record
            }
            ref other => return Err(method_not_allowed(other)),
        };
        let account = self.service().account(&record.name).or_internal()?;
        let service = json!({
            "id": format!("{}/blobServices/default", record.id),
            "name": "default",
            "type": "Microsoft.Storage/storageAccounts/blobServices",
            "sku": record.extra.get("sku"),
            "properties": {"cors": {"corsRules": cors::rules_to_arm(&account.cors)}, "deleteRetentionPolicy": {"enabled": false}},
        });
        Ok(ArmReply::json(200, if list { json!({"value": [service]}) } else { service }))
    }
}

/// Refuses an identity change that would take away the identity the account's customer key is
/// used as (the key, and so the data, would become unreachable).
fn require_encryption_identity(
    cmk: &CmkSettings,
    plan: &byos_arm::managed_identity::IdentityPlan,
) -> Result<(), ApiError> {
    let kept = match cmk.identity.as_deref() {
        None => !plan.owned.is_empty(),
        Some(uami) => plan.user_identities().iter().any(|k| k.eq_ignore_ascii_case(uami)),
    };
    if kept {
        return Ok(());
    }
    let used_as = match cmk.identity.as_deref() {
        None => "the account's system-assigned identity (properties.encryption.identity is not set)".to_owned(),
        Some(uami) => {
            format!("the user-assigned identity '{uami}' (properties.encryption.identity.userAssignedIdentity)")
        }
    };
    Err(ApiError::bad_request(
        "InvalidValuesForRequestParameters",
        format!(
            "Values for request parameters are invalid: identity. The customer-managed key '{}' (properties.encryption.keySource Microsoft.Keyvault) is used as {used_as}; removing that identity would leave the key and the account's data unreachable. Point properties.encryption at another identity, or back to Microsoft.Storage, first or in the same request.",
            cmk.key_name
        ),
    ))
}

/// Records that the account's KEK is now wrapped by a newer key version (automatic rotation),
/// guarded on the record and secrets it replaces.
pub(crate) async fn record_rotation(
    service: &StorageService,
    watch: &byos_core::Caller,
    account: &crate::Account,
    wrap: byos_keyvault::protector::WrappedKek,
    used: &byos_keyvault::keys::KeyUsed,
) -> Result<(), ApiError> {
    let scope = Scope::parse(&account.id).or_internal()?;
    service.door.authorize(watch, &WRITE, &scope).map_err(|denial| denial.to_api_error())?;
    let key = resource_key(&account.id);
    let record_bytes = service.store.get(RESOURCES, &key).await.map_err(store_error)?.or_internal()?;
    let secrets_bytes = service.store.get(SECRETS, &key).await.map_err(store_error)?.or_internal()?;
    let mut record: ResourceRecord = records::decode(&key, &record_bytes)?;
    let mut settings: AccountSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
    // The account may have been re-pointed or pinned since the watch unwrapped its KEK: then this
    // re-wrap is stale and must not replace what the update wrote.
    let replaced = account.settings.cmk.as_ref().map(|c| c.current_key_id.as_str());
    let cmk = settings
        .cmk
        .as_mut()
        .filter(|c| c.key_version.is_none() && Some(c.current_key_id.as_str()) == replaced)
        .ok_or_else(|| ApiError::conflict("Conflict", "The account's encryption changed during the key rotation."))?;
    cmk.current_key_id = used.kid.clone();
    cmk.last_rotation = byos_core::time::rfc3339_now();
    record.properties = serde_json::to_value(&settings).or_internal()?;
    let secrets = AccountSecrets::open(&service.root, &secrets_bytes)?.with_customer_key(wrap)?;
    let batch = Batch::new()
        .expect_unchanged(RESOURCES, key.clone(), Some(record_bytes))
        .expect_unchanged(SECRETS, key.clone(), Some(secrets_bytes))
        .put(RESOURCES, key.clone(), encode(&key, &record)?)
        .put(SECRETS, key, secrets.seal(&service.root)?);
    service.store.commit(batch).await.map_err(store_error)?;
    service.refresh(&record).await?;
    Ok(())
}
