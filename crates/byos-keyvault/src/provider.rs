//! The `Microsoft.KeyVault` ARM provider: vaults, soft-deleted vaults, access policy edits.

use std::sync::Arc;

use async_trait::async_trait;
use axum::http::Method;
use byos_arm::ArmReply;
use byos_arm::groups::{method_not_allowed, unknown_resource_type};
use byos_arm::records::{
    self, RESOURCES, ResourceRecord, encode, resource_key, resource_not_found, store_error, validate_tags,
};
use byos_arm::{Arm, ArmRequest, Provider};
use byos_authz::Action;
use byos_core::{ApiError, OrInternal, ResourceId, Scope};
use byos_http::Failure;
use byos_store::Batch;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::settings::{VaultSettings, validate_name};
use crate::{DELETED_VAULTS, KeyVaultService, NAMES, VAULT_TYPE};

const NAMESPACE: &str = "Microsoft.KeyVault";
const READ: Action = Action::control("Microsoft.KeyVault/vaults/read");
const WRITE: Action = Action::control("Microsoft.KeyVault/vaults/write");
const DELETE: Action = Action::control("Microsoft.KeyVault/vaults/delete");
const POLICY_WRITE: Action = Action::control("Microsoft.KeyVault/vaults/accessPolicies/write");
const DELETED_READ: Action = Action::control("Microsoft.KeyVault/locations/deletedVaults/read");
const PURGE: Action = Action::control("Microsoft.KeyVault/locations/deletedVaults/purge/action");
/// Changing a vault's permission model (`enableRbacAuthorization`) moves who may grant key access,
/// so Azure requires the right to grant roles (Owner, User Access Administrator) besides vaults/write.
const ROLE_ASSIGNMENT_WRITE: Action = Action::control("Microsoft.Authorization/roleAssignments/write");

/// The provider, holding the service whose listeners it keeps in step.
pub struct KeyVaultProvider(pub Arc<KeyVaultService>);

/// A soft-deleted vault: its last record, kept until purged or recovered.
#[derive(Serialize, Deserialize)]
struct DeletedVault {
    v: u32,
    record: ResourceRecord,
    deletion_date: String,
    scheduled_purge_date: String,
}

#[derive(Deserialize)]
struct VaultBody {
    location: Option<String>,
    #[serde(default)]
    tags: Option<Map<String, Value>>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

#[async_trait]
impl Provider for KeyVaultProvider {
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
            (_, [t]) if is(t, "vaults") => self.list(arm, request, &sub, group).await,
            (None, [t]) if is(t, "deletedVaults") => self.list_deleted(arm, request, &sub).await,
            (None, [l, _, d, name]) if is(l, "locations") && is(d, "deletedVaults") => {
                self.get_deleted(arm, request, &sub, name).await
            }
            (None, [l, _, d, name, p]) if is(l, "locations") && is(d, "deletedVaults") && is(p, "purge") => {
                self.purge(arm, request, &sub, name).await
            }
            (Some(group), [t, name]) if is(t, "vaults") => {
                let id = ResourceId::new(&sub, group, NAMESPACE, "vaults", name);
                match request.method {
                    Method::GET => {
                        request.authorize(arm, &READ, &id.scope())?;
                        let record = arm
                            .resource(&id.to_string())
                            .await?
                            .ok_or_else(|| resource_not_found(VAULT_TYPE, name, group))?;
                        Ok(ArmReply::json(200, self.wire(&record)?))
                    }
                    Method::PUT | Method::PATCH => {
                        request.authorize(arm, &WRITE, &id.scope())?;
                        self.put(arm, request, &id).await
                    }
                    Method::DELETE => {
                        request.authorize(arm, &DELETE, &id.scope())?;
                        self.delete(arm, &request.caller, &id).await
                    }
                    ref other => Err(method_not_allowed(other)),
                }
            }
            (Some(group), [t, name, a, kind]) if is(t, "vaults") && is(a, "accessPolicies") => {
                let id = ResourceId::new(&sub, group, NAMESPACE, "vaults", name);
                request.authorize(arm, &POLICY_WRITE, &id.scope())?;
                self.edit_policies(arm, request, &id, kind).await
            }
            _ => Err(unknown_resource_type(NAMESPACE, rest)),
        }
    }

    async fn delete_ops(&self, _arm: &Arm, resource: &ResourceRecord, batch: Batch) -> Result<Batch, ApiError> {
        soft_delete_ops(resource, batch)
    }

    async fn deleted(&self, resource: &ResourceRecord) {
        self.0.forget(&resource.name);
    }
}

/// Moves a vault's record to the soft-deleted table (its keys stay where they are).
fn soft_delete_ops(record: &ResourceRecord, batch: Batch) -> Result<Batch, ApiError> {
    let settings: VaultSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
    let now = time::OffsetDateTime::now_utc();
    let deleted = DeletedVault {
        v: 1,
        record: record.clone(),
        deletion_date: byos_core::time::rfc3339(now),
        scheduled_purge_date: byos_core::time::rfc3339(
            now + time::Duration::days(settings.soft_delete_retention_in_days.into()),
        ),
    };
    let key = record.name.to_ascii_lowercase();
    Ok(batch.put(DELETED_VAULTS, key.clone(), encode(&key, &deleted)?))
}

impl KeyVaultProvider {
    fn wire(&self, record: &ResourceRecord) -> Result<Value, ApiError> {
        let settings: VaultSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
        let mut wire = record.to_wire();
        wire["properties"] = settings.to_wire(&KeyVaultService::uri(settings.port));
        Ok(wire)
    }

    async fn put(&self, arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
        validate_name(&id.name)?;
        let body: VaultBody = request.json()?;
        if let Some(tags) = &body.tags {
            validate_tags(tags)?;
        }
        let props = body.properties.clone().unwrap_or_default();
        let _guard = arm.write_guard().await;
        let group = arm.require_group(&id.subscription_id, &id.resource_group).await?;
        let current = arm.resource(&id.to_string()).await?;
        if current.is_none() && request.method == Method::PATCH {
            return Err(Failure::from(resource_not_found(VAULT_TYPE, &id.name, &id.resource_group)));
        }
        let name_key = id.name.to_ascii_lowercase();
        let recover =
            props.get("createMode").and_then(Value::as_str).is_some_and(|m| m.eq_ignore_ascii_case("recover"));
        let deleted = self.0.store.get(DELETED_VAULTS, &name_key).await.map_err(store_error)?;
        if current.is_none() && recover {
            let bytes = deleted.ok_or_else(|| {
                ApiError::not_found(
                    "ResourceNotFound",
                    format!("There is no soft-deleted vault named '{}' to recover.", id.name),
                )
            })?;
            let deleted: DeletedVault = records::decode(&name_key, &bytes)?;
            return self.recover(arm, id, deleted).await;
        }
        let name_owner = self.0.store.get(NAMES, &name_key).await.map_err(store_error)?;
        if current.is_none() && (name_owner.is_some() || deleted.is_some()) {
            return Err(Failure::from(ApiError::conflict(
                "VaultAlreadyExists",
                format!("The vault name '{}' is already in use (possibly by a soft-deleted vault).", id.name),
            )));
        }
        let mut settings = match &current {
            Some(record) => {
                let mut s: VaultSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
                let rbac_before = s.enable_rbac_authorization;
                s.apply(&props)?;
                if s.enable_rbac_authorization != rbac_before {
                    request.authorize(arm, &ROLE_ASSIGNMENT_WRITE, &id.scope())?;
                }
                s
            }
            None => VaultSettings::create(&props)?,
        };
        if settings.tenant_id != arm.directory.tenant_id() {
            return Err(Failure::from(ApiError::bad_request(
                "BadRequest",
                "The vault's tenantId must be this deployment's tenant.",
            )));
        }
        if current.is_none() {
            settings.port = self.0.serve(&id.name, 0).await?;
        }
        let record = ResourceRecord {
            v: records::RECORD_VERSION,
            id: id.to_string(),
            name: id.name.clone(),
            resource_type: VAULT_TYPE.into(),
            location: current
                .as_ref()
                .map(|r| r.location.clone())
                .or(body.location.filter(|l| !l.is_empty()))
                .unwrap_or(group.location),
            tags: body.tags.or_else(|| current.as_ref().map(|r| r.tags.clone())).unwrap_or_default(),
            properties: serde_json::to_value(&settings).or_internal()?,
            identity: None,
            owned_principals: vec![],
            created_on: current.as_ref().map(|r| r.created_on.clone()).unwrap_or_else(byos_core::time::rfc3339_now),
            extra: Map::new(),
        };
        let key = resource_key(&record.id);
        let mut batch = Batch::new().put(RESOURCES, key.clone(), encode(&key, &record)?);
        if current.is_none() {
            batch = batch.expect_absent(NAMES, name_key.clone()).put(NAMES, name_key, record.id.clone().into_bytes());
        }
        if let Err(e) = self.0.store.commit(batch).await {
            if current.is_none() {
                self.0.forget(&id.name);
            }
            return Err(Failure::from(store_error(e)));
        }
        self.0.install(&record, settings);
        tracing::info!(vault = %record.id, created = current.is_none(), "key vault written");
        Ok(ArmReply::json(if current.is_none() { 201 } else { 200 }, self.wire(&record)?))
    }

    async fn recover(&self, arm: &Arm, id: &ResourceId, deleted: DeletedVault) -> Result<ArmReply, Failure> {
        let mut record = deleted.record;
        if !record.id.eq_ignore_ascii_case(&id.to_string()) {
            return Err(Failure::from(ApiError::bad_request(
                "BadRequest",
                format!("The soft-deleted vault '{}' belongs to '{}'; recover it there.", id.name, record.id),
            )));
        }
        let mut settings: VaultSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
        settings.port = self.0.serve(&id.name, settings.port).await?;
        record.properties = serde_json::to_value(&settings).or_internal()?;
        let key = resource_key(&record.id);
        let name_key = id.name.to_ascii_lowercase();
        let batch = Batch::new().put(RESOURCES, key.clone(), encode(&key, &record)?).delete(DELETED_VAULTS, name_key);
        arm.store.commit(batch).await.map_err(store_error)?;
        self.0.install(&record, settings);
        tracing::info!(vault = %record.id, "key vault recovered");
        Ok(ArmReply::json(200, self.wire(&record)?))
    }

    async fn delete(&self, arm: &Arm, caller: &byos_core::Caller, id: &ResourceId) -> Result<ArmReply, Failure> {
        let guard = arm.write_guard().await;
        let Some(record) = arm.resource(&id.to_string()).await? else {
            return Ok(ArmReply::empty(204));
        };
        arm.delete_resource(&guard, caller, &record).await?;
        tracing::info!(vault = %record.id, "key vault soft-deleted");
        Ok(ArmReply::empty(200))
    }

    async fn edit_policies(
        &self,
        arm: &Arm,
        request: &ArmRequest,
        id: &ResourceId,
        kind: &str,
    ) -> Result<ArmReply, Failure> {
        if request.method != Method::PUT {
            return Err(method_not_allowed(&request.method));
        }
        let body: Value = request.json()?;
        let policies = body.pointer("/properties/accessPolicies").cloned().unwrap_or(Value::Array(vec![]));
        let _guard = arm.write_guard().await;
        let mut record = arm
            .resource(&id.to_string())
            .await?
            .ok_or_else(|| resource_not_found(VAULT_TYPE, &id.name, &id.resource_group))?;
        let mut settings: VaultSettings = serde_json::from_value(record.properties.clone()).or_internal()?;
        settings.edit_policies(kind, &policies)?;
        record.properties = serde_json::to_value(&settings).or_internal()?;
        let key = resource_key(&record.id);
        arm.store
            .commit(Batch::new().put(RESOURCES, key.clone(), encode(&key, &record)?))
            .await
            .map_err(store_error)?;
        self.0.install(&record, settings.clone());
        Ok(ArmReply::json(
            200,
            json!({
                "id": format!("{}/accessPolicies/{}", record.id, kind.to_ascii_lowercase()),
                "name": kind.to_ascii_lowercase(),
                "type": "Microsoft.KeyVault/vaults/accessPolicies",
                "location": record.location,
                "properties": {"accessPolicies": settings.access_policies},
            }),
        ))
    }

    async fn list(&self, arm: &Arm, request: &ArmRequest, sub: &str, group: Option<&str>) -> Result<ArmReply, Failure> {
        let records = arm.readable_resources(request, sub, group, VAULT_TYPE, &READ).await?;
        let value = records.iter().map(|r| self.wire(r)).collect::<Result<Vec<_>, _>>()?;
        Ok(ArmReply::json(200, json!({"value": value})))
    }

    fn deleted_wire(&self, sub: &str, deleted: &DeletedVault) -> Value {
        let settings: Option<VaultSettings> = serde_json::from_value(deleted.record.properties.clone()).ok();
        json!({
            "id": format!("/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{}/deletedVaults/{}", deleted.record.location, deleted.record.name),
            "name": deleted.record.name,
            "type": "Microsoft.KeyVault/deletedVaults",
            "properties": {
                "vaultId": deleted.record.id,
                "location": deleted.record.location,
                "deletionDate": deleted.deletion_date,
                "scheduledPurgeDate": deleted.scheduled_purge_date,
                "tags": deleted.record.tags,
                "purgeProtectionEnabled": settings.is_some_and(|s| s.enable_purge_protection),
            },
        })
    }

    async fn load_deleted(&self, name: &str) -> Result<DeletedVault, ApiError> {
        let key = name.to_ascii_lowercase();
        let bytes = self.0.store.get(DELETED_VAULTS, &key).await.map_err(store_error)?;
        let bytes = bytes.ok_or_else(|| {
            ApiError::not_found("ResourceNotFound", format!("The deleted vault '{name}' was not found."))
        })?;
        records::decode(&key, &bytes)
    }

    async fn list_deleted(&self, arm: &Arm, request: &ArmRequest, sub: &str) -> Result<ArmReply, Failure> {
        request.authorize(arm, &DELETED_READ, &Scope::subscription(sub))?;
        let mut value = Vec::new();
        for (key, bytes) in self.0.store.scan(DELETED_VAULTS, "").await.map_err(store_error)? {
            value.push(self.deleted_wire(sub, &records::decode(&key, &bytes)?));
        }
        Ok(ArmReply::json(200, json!({"value": value})))
    }

    async fn get_deleted(&self, arm: &Arm, request: &ArmRequest, sub: &str, name: &str) -> Result<ArmReply, Failure> {
        request.authorize(arm, &DELETED_READ, &Scope::subscription(sub))?;
        Ok(ArmReply::json(200, self.deleted_wire(sub, &self.load_deleted(name).await?)))
    }

    /// Purges a soft-deleted vault and its keys, unless purge protection keeps it until retention ends.
    async fn purge(&self, arm: &Arm, request: &ArmRequest, sub: &str, name: &str) -> Result<ArmReply, Failure> {
        if request.method != Method::POST {
            return Err(method_not_allowed(&request.method));
        }
        request.authorize(arm, &PURGE, &Scope::subscription(sub))?;
        let _guard = arm.write_guard().await;
        let deleted = self.load_deleted(name).await?;
        let protected = serde_json::from_value::<VaultSettings>(deleted.record.properties.clone())
            .is_ok_and(|s| s.enable_purge_protection);
        let due = byos_core::time::has_passed(&deleted.scheduled_purge_date);
        if protected && !due {
            return Err(Failure::from(ApiError::conflict(
                "VaultPurgeProtected",
                format!(
                    "The vault '{name}' has purge protection; it can be purged only after {}.",
                    deleted.scheduled_purge_date
                ),
            )));
        }
        purge_vault(&self.0, name).await?;
        Ok(ArmReply::json(200, json!({})))
    }
}

/// Removes a soft-deleted vault for good: its record, its name, its keys.
async fn purge_vault(service: &KeyVaultService, name: &str) -> Result<(), ApiError> {
    let key = name.to_ascii_lowercase();
    let batch = crate::keys::vault_keys_delete_ops(
        service,
        &key,
        Batch::new().delete(DELETED_VAULTS, key.clone()).delete(NAMES, key.clone()),
    )
    .await?;
    service.store.commit(batch).await.map_err(store_error)?;
    tracing::info!(vault = name, "key vault purged");
    Ok(())
}

/// Purges soft-deleted vaults whose retention has ended (the watcher's tick), as Azure does.
pub async fn purge_expired_vaults(service: &KeyVaultService, purger: &byos_core::Caller) -> Result<usize, ApiError> {
    let mut purged = 0;
    for (key, bytes) in service.store.scan(DELETED_VAULTS, "").await.map_err(store_error)? {
        let deleted: DeletedVault = records::decode(&key, &bytes)?;
        let due = byos_core::time::has_passed(&deleted.scheduled_purge_date);
        if due {
            let scope = Scope::subscription(&ResourceId::parse(&deleted.record.id).or_internal()?.subscription_id);
            service.door.authorize(purger, &PURGE, &scope).map_err(|denial| denial.to_api_error())?;
            purge_vault(service, &deleted.record.name).await?;
            purged += 1;
        }
    }
    Ok(purged)
}
