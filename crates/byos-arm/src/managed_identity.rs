//! `Microsoft.ManagedIdentity/userAssignedIdentities`, and the `identity` property building block
//! that every identity-bearing resource (storage accounts, vaults, AI accounts) uses.
//!
//! A user-assigned identity is a resource that owns one principal. A system-assigned identity is a
//! principal owned by the resource it is enabled on: created with it, deleted with it (or when
//! disabled), after which its role assignments grant nothing because no token names it any more.

use crate::ArmReply;
use async_trait::async_trait;
use axum::http::Method;
use byos_authz::Action;
use byos_core::{ApiError, Caller, OrInternal, ResourceId};
use byos_http::Failure;
use byos_identity::Principal;
use byos_store::Batch;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::groups::method_not_allowed;
use crate::records::{self, RESOURCES, ResourceRecord, resource_key, resource_not_found, validate_tags};
use crate::{Arm, ArmRequest, Provider};

const NAMESPACE: &str = "Microsoft.ManagedIdentity";
const TYPE: &str = "userAssignedIdentities";
const FULL_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";
const READ: Action = Action::control("Microsoft.ManagedIdentity/userAssignedIdentities/read");
const WRITE: Action = Action::control("Microsoft.ManagedIdentity/userAssignedIdentities/write");
const DELETE: Action = Action::control("Microsoft.ManagedIdentity/userAssignedIdentities/delete");
const ASSIGN: Action = Action::control("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action");

/// The `Microsoft.ManagedIdentity` provider.
pub struct UserAssignedIdentities;

#[derive(Deserialize)]
struct IdentityBody {
    location: Option<String>,
    #[serde(default)]
    tags: Option<Map<String, Value>>,
}

#[async_trait]
impl Provider for UserAssignedIdentities {
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
        match (group, rest) {
            (_, [t]) if t.eq_ignore_ascii_case(TYPE) => list(arm, request, &sub, group).await,
            (Some(group), [t, name]) if t.eq_ignore_ascii_case(TYPE) => {
                let id = ResourceId::new(&sub, group, NAMESPACE, TYPE, name);
                match request.method {
                    Method::GET => {
                        request.authorize(arm, &READ, &id.scope())?;
                        Ok(ArmReply::json(200, require(arm, &id).await?.to_wire()))
                    }
                    Method::PUT | Method::PATCH => {
                        request.authorize(arm, &WRITE, &id.scope())?;
                        put(arm, request, &id).await
                    }
                    Method::DELETE => {
                        request.authorize(arm, &DELETE, &id.scope())?;
                        delete(arm, &request.caller, &id).await
                    }
                    ref other => Err(method_not_allowed(other)),
                }
            }
            _ => Err(Failure::from(ApiError::bad_request(
                "InvalidResourceType",
                format!(
                    "The resource type '{}' could not be found in the namespace '{NAMESPACE}'.",
                    rest.first().map(String::as_str).unwrap_or_default()
                ),
            ))),
        }
    }
}

async fn require(arm: &Arm, id: &ResourceId) -> Result<ResourceRecord, ApiError> {
    arm.resource(&id.to_string()).await?.ok_or_else(|| resource_not_found(FULL_TYPE, &id.name, &id.resource_group))
}

/// Azure's rule: 3-128 characters, letters, digits, `-` and `_`, starting with a letter or digit.
fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = (3..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "InvalidResourceName",
            format!(
                "Resource name '{name}' is invalid. The name must be 3 to 128 characters: letters, digits, '-' and '_', starting with a letter or digit."
            ),
        ))
    }
}

fn properties(arm: &Arm, principal: &Principal) -> Value {
    json!({"tenantId": arm.directory.tenant_id(), "principalId": principal.object_id, "clientId": principal.client_id})
}

async fn put(arm: &Arm, request: &ArmRequest, id: &ResourceId) -> Result<ArmReply, Failure> {
    validate_name(&id.name)?;
    let body: IdentityBody = request.json()?;
    let tags = body.tags.unwrap_or_default();
    validate_tags(&tags)?;
    let _guard = arm.write_lock.lock().await;
    let group = arm.require_group(&id.subscription_id, &id.resource_group).await?;
    let key = resource_key(&id.to_string());
    if let Some(mut record) = arm.resource(&id.to_string()).await? {
        record.tags = tags;
        arm.store
            .commit(Batch::new().put(RESOURCES, key.clone(), records::encode(&key, &record)?))
            .await
            .map_err(records::store_error)?;
        return Ok(ArmReply::json(200, record.to_wire()));
    }
    if request.method == Method::PATCH {
        return Err(Failure::from(resource_not_found(FULL_TYPE, &id.name, &id.resource_group)));
    }
    let location = body.location.filter(|l| !l.trim().is_empty()).unwrap_or(group.location);
    let principal = arm.directory.new_managed_identity(&id.to_string(), &id.name, false);
    let record = ResourceRecord {
        v: records::RECORD_VERSION,
        id: id.to_string(),
        name: id.name.clone(),
        resource_type: FULL_TYPE.into(),
        location,
        tags,
        properties: properties(arm, &principal),
        identity: None,
        owned_principals: vec![principal.object_id],
        created_on: byos_core::time::rfc3339_now(),
        extra: Map::new(),
    };
    let batch =
        Batch::new().expect_absent(RESOURCES, key.clone()).put(RESOURCES, key.clone(), records::encode(&key, &record)?);
    arm.store.commit(arm.directory.put_ops(batch, &principal)?).await.map_err(records::store_error)?;
    arm.directory.installed(principal);
    tracing::info!(identity = %record.id, "user-assigned identity created");
    Ok(ArmReply::json(201, record.to_wire()))
}

async fn delete(arm: &Arm, caller: &Caller, id: &ResourceId) -> Result<ArmReply, Failure> {
    let guard = arm.write_guard().await;
    let Some(record) = arm.resource(&id.to_string()).await? else {
        return Ok(ArmReply::empty(204));
    };
    arm.delete_resource(&guard, caller, &record).await?;
    tracing::info!(identity = %record.id, "user-assigned identity deleted");
    Ok(ArmReply::empty(200))
}

async fn list(arm: &Arm, request: &ArmRequest, sub: &str, group: Option<&str>) -> Result<ArmReply, Failure> {
    let value: Vec<Value> = arm
        .readable_resources(request, sub, group, FULL_TYPE, &READ)
        .await?
        .iter()
        .map(ResourceRecord::to_wire)
        .collect();
    Ok(ArmReply::json(200, json!({"value": value})))
}

/// The user-assigned identities an `identity` property attaches (their resource ids).
pub fn attached_user_identities(identity: Option<&Value>) -> Vec<String> {
    identity
        .and_then(|i| i.get("userAssignedIdentities"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The outcome of applying a requested `identity` property to a resource: what to store, which
/// principals to create and delete. Apply with [`IdentityPlan::ops`], then [`IdentityPlan::applied`].
#[derive(Debug, Default)]
pub struct IdentityPlan {
    /// The `identity` property to store and return (`None` for type `None`).
    pub wire: Option<Value>,
    /// The principals the resource owns afterwards (its system-assigned identity, if any).
    pub owned: Vec<Uuid>,
    created: Vec<Principal>,
    removed: Vec<Uuid>,
}

impl IdentityPlan {
    /// The system-assigned principal the resource has after the change (`None`: it has none).
    pub fn system_principal(&self) -> Option<Uuid> {
        self.owned.first().copied()
    }

    /// The user-assigned identities attached after the change (resource ids).
    pub fn user_identities(&self) -> Vec<String> {
        attached_user_identities(self.wire.as_ref())
    }

    /// Adds the principal writes of the plan to the resource's batch.
    pub fn ops(&self, arm: &Arm, mut batch: Batch) -> Result<Batch, ApiError> {
        for principal in &self.created {
            batch = arm.directory.put_ops(batch, principal)?;
        }
        for oid in &self.removed {
            batch = arm.directory.delete_ops(batch, *oid);
        }
        Ok(batch)
    }

    /// Makes the directory match the committed plan.
    pub fn applied(self, arm: &Arm) {
        for principal in self.created {
            arm.directory.installed(principal);
        }
        for oid in self.removed {
            arm.directory.removed(oid);
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestedIdentity {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    user_assigned_identities: Map<String, Value>,
}

/// Plans the `identity` of resource `resource_id` from the requested property and the stored
/// record. Attaching a user-assigned identity needs its `assign/action`, checked for `caller`.
pub async fn plan_identity(
    arm: &Arm,
    caller: &Caller,
    resource_id: &str,
    requested: Option<&Value>,
    current: Option<&ResourceRecord>,
) -> Result<IdentityPlan, Failure> {
    let current_system = current.and_then(|r| r.owned_principals.first().copied());
    let Some(requested) = requested else {
        // No identity in the request keeps what the resource has.
        return Ok(IdentityPlan {
            wire: current.and_then(|r| r.identity.clone()),
            owned: current_system.into_iter().collect(),
            ..IdentityPlan::default()
        });
    };
    let requested: RequestedIdentity = serde_json::from_value(requested.clone())
        .map_err(|e| ApiError::bad_request("InvalidIdentity", format!("The identity property is invalid: {e}.")))?;
    let kinds: Vec<String> = requested.kind.split(',').map(|k| k.trim().to_ascii_lowercase()).collect();
    let (system, user) = (kinds.iter().any(|k| k == "systemassigned"), kinds.iter().any(|k| k == "userassigned"));
    if !kinds.iter().all(|k| k == "systemassigned" || k == "userassigned" || k == "none")
        || (kinds.iter().any(|k| k == "none") && kinds.len() > 1)
    {
        return Err(Failure::from(ApiError::bad_request(
            "InvalidIdentityType",
            format!(
                "The identity type '{}' is invalid. Use None, SystemAssigned, UserAssigned or 'SystemAssigned, UserAssigned'.",
                requested.kind
            ),
        )));
    }
    let mut plan = IdentityPlan::default();
    let mut wire = json!({"type": canonical_type(system, user)});
    if system {
        let principal = match current_system.and_then(|oid| arm.directory.principal(oid)) {
            Some(existing) => (*existing).clone(),
            None => {
                let name = resource_id.rsplit('/').next().unwrap_or(resource_id);
                let fresh = arm.directory.new_managed_identity(resource_id, name, true);
                plan.created.push(fresh.clone());
                fresh
            }
        };
        wire["principalId"] = json!(principal.object_id);
        wire["tenantId"] = json!(arm.directory.tenant_id());
        plan.owned.push(principal.object_id);
    }
    plan.removed.extend(current_system.filter(|oid| !plan.owned.contains(oid)));
    if user {
        wire["userAssignedIdentities"] =
            Value::Object(user_assigned(arm, caller, &requested.user_assigned_identities).await?);
    }
    plan.wire = (system || user).then_some(wire);
    Ok(plan)
}

fn canonical_type(system: bool, user: bool) -> &'static str {
    match (system, user) {
        (true, true) => "SystemAssigned,UserAssigned",
        (true, false) => "SystemAssigned",
        (false, true) => "UserAssigned",
        (false, false) => "None",
    }
}

/// Resolves each requested user-assigned identity, checking the caller may assign it.
async fn user_assigned(
    arm: &Arm,
    caller: &Caller,
    requested: &Map<String, Value>,
) -> Result<Map<String, Value>, Failure> {
    if requested.is_empty() {
        return Err(Failure::from(ApiError::bad_request(
            "InvalidIdentity",
            "The identity type UserAssigned needs at least one entry in userAssignedIdentities.",
        )));
    }
    let mut resolved = Map::new();
    for id in requested.keys() {
        let parsed =
            ResourceId::parse(id).ok().filter(|r| r.full_type().eq_ignore_ascii_case(FULL_TYPE)).ok_or_else(|| {
                ApiError::bad_request("InvalidIdentity", format!("'{id}' is not a user-assigned identity resource id."))
            })?;
        arm.authorize(caller, &ASSIGN, &parsed.scope())?;
        let record = require(arm, &parsed).await?;
        let principal = record.owned_principals.first().and_then(|oid| arm.directory.principal(*oid)).or_internal()?;
        resolved
            .insert(record.id.clone(), json!({"principalId": principal.object_id, "clientId": principal.client_id}));
    }
    Ok(resolved)
}
