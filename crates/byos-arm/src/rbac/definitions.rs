//! `{scope}/providers/Microsoft.Authorization/roleDefinitions[/{id}]`: every built-in role, plus
//! custom roles (PUT / GET / DELETE).

use crate::ArmReply;
use axum::http::Method;
use byos_authz::{Action, Permission, RoleDefinition, RoleType};
use byos_core::{ApiError, Scope};
use byos_http::Failure;
use byos_store::Batch;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{DEFINITIONS, DefinitionRecord, RECORD_VERSION, definition_id};
use crate::groups::method_not_allowed;
use crate::records::{encode, store_error};
use crate::{Arm, ArmRequest};

const READ: Action = Action::control("Microsoft.Authorization/roleDefinitions/read");
const WRITE: Action = Action::control("Microsoft.Authorization/roleDefinitions/write");
const DELETE: Action = Action::control("Microsoft.Authorization/roleDefinitions/delete");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefinitionBody {
    properties: DefinitionProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefinitionProperties {
    role_name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    role_type: Option<String>,
    #[serde(default)]
    permissions: Vec<Permission>,
    #[serde(default)]
    assignable_scopes: Vec<String>,
}

fn wire(scope: &Scope, d: &RoleDefinition) -> Value {
    let permissions: Vec<Value> = d
        .permissions
        .iter()
        .map(|p| {
            let mut block = json!({"actions": p.actions, "notActions": p.not_actions, "dataActions": p.data_actions, "notDataActions": p.not_data_actions});
            if let Some(condition) = &p.condition {
                block["condition"] = json!(condition);
                block["conditionVersion"] = json!(p.condition_version);
            }
            block
        })
        .collect();
    json!({
        "id": definition_id(scope, d.id),
        "name": d.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": d.role_name,
            "type": d.role_type.as_str(),
            "description": d.description,
            "assignableScopes": d.assignable_scopes,
            "permissions": permissions,
            "createdOn": d.created_on,
            "updatedOn": d.updated_on,
            "createdBy": null,
            "updatedBy": null,
        },
    })
}

/// Whether a definition is visible from `scope`: built-ins everywhere, custom roles where one of
/// their assignable scopes is at, above or below it.
fn visible_from(d: &RoleDefinition, scope: &Scope) -> bool {
    d.role_type == RoleType::BuiltInRole
        || d.assignable_scopes.iter().filter_map(|s| Scope::parse(s).ok()).any(|s| s.covers(scope) || scope.covers(&s))
}

pub async fn handle(arm: &Arm, request: &ArmRequest, scope: &Scope, id: &str) -> Result<ArmReply, Failure> {
    match request.method {
        Method::GET => {
            request.authorize(arm, &READ, scope)?;
            let definition = id.parse().ok().and_then(|id| arm.door.definition(id)).filter(|d| visible_from(d, scope));
            let definition = definition.ok_or_else(|| not_found(id))?;
            Ok(ArmReply::json(200, wire(scope, &definition)))
        }
        Method::PUT => {
            request.authorize(arm, &WRITE, scope)?;
            put(arm, request, scope, id).await
        }
        Method::DELETE => {
            request.authorize(arm, &DELETE, scope)?;
            delete(arm, request, scope, id).await
        }
        ref other => Err(method_not_allowed(other)),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(
        "RoleDefinitionDoesNotExist",
        format!("The specified role definition with ID '{id}' does not exist."),
    )
}

async fn put(arm: &Arm, request: &ArmRequest, scope: &Scope, id: &str) -> Result<ArmReply, Failure> {
    let id: Uuid = id.parse().map_err(|_| {
        ApiError::bad_request(
            "InvalidRoleDefinitionId",
            format!("The role definition ID '{id}' is not valid. It must be a GUID."),
        )
    })?;
    let body: DefinitionBody = request.json()?;
    let props = body.properties;
    let invalid = |m: String| Failure::from(ApiError::bad_request("InvalidRoleDefinition", m));
    if props.role_name.trim().is_empty() {
        return Err(invalid("The role name must not be empty.".into()));
    }
    if props.role_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("CustomRole")) {
        return Err(invalid("Only custom roles (type 'CustomRole') can be created or updated.".into()));
    }
    if props.assignable_scopes.is_empty() {
        return Err(invalid("The role definition must have at least one assignable scope.".into()));
    }
    for text in &props.assignable_scopes {
        let assignable =
            Scope::parse(text).map_err(|e| invalid(format!("The assignable scope '{text}' is invalid: {e}.")))?;
        if !assignable.subscription_id().is_some_and(|s| s.eq_ignore_ascii_case(&arm.deployment.subscription_id)) {
            return Err(invalid(format!(
                "The assignable scope '{text}' must be at or below the subscription '{}'.",
                arm.deployment.subscription_id
            )));
        }
        request.authorize(arm, &WRITE, &assignable)?;
    }
    let _guard = arm.write_lock.lock().await;
    let existing = arm.door.definition(id);
    if existing.as_ref().is_some_and(|d| d.role_type == RoleType::BuiltInRole) {
        return Err(Failure::from(ApiError::new(
            403,
            "RoleDefinitionIsBuiltIn",
            format!("The built-in role definition '{id}' cannot be modified."),
        )));
    }
    if let Some(existing) = &existing {
        // Rewriting a role changes what every assignment of it grants, so the caller must be
        // allowed to write it wherever it is assignable today, not only where it will be.
        authorize_at_assignable_scopes(arm, request, &WRITE, existing)?;
        refuse_orphaned_assignments(arm, existing, &props.assignable_scopes)?;
    }
    let name_taken =
        arm.door.definitions().iter().any(|d| d.id != id && d.role_name.eq_ignore_ascii_case(props.role_name.trim()));
    if name_taken {
        return Err(Failure::from(ApiError::conflict(
            "RoleDefinitionWithSameNameExists",
            "A custom role with the same name already exists in this directory.",
        )));
    }
    let now = byos_core::time::rfc3339_now();
    let definition = RoleDefinition {
        id,
        role_name: props.role_name.trim().to_owned(),
        description: props.description.unwrap_or_default(),
        role_type: RoleType::CustomRole,
        permissions: props.permissions,
        assignable_scopes: props.assignable_scopes,
        created_on: existing.as_ref().and_then(|d| d.created_on.clone()).or_else(|| Some(now.clone())),
        updated_on: Some(now),
    };
    let key = id.to_string();
    let record = DefinitionRecord { v: RECORD_VERSION, definition: definition.clone() };
    arm.store.commit(Batch::new().put(DEFINITIONS, key.clone(), encode(&key, &record)?)).await.map_err(store_error)?;
    arm.door.put_definition(definition.clone());
    tracing::info!(role = %definition.role_name, %id, "custom role written");
    // Azure answers 201 to every create-or-update of a role definition (the SDKs accept only 201).
    Ok(ArmReply::json(201, wire(scope, &definition)))
}

async fn delete(arm: &Arm, request: &ArmRequest, scope: &Scope, id: &str) -> Result<ArmReply, Failure> {
    let _guard = arm.write_lock.lock().await;
    // A role invisible from the URL scope is absent there, as for GET: nothing to delete.
    let Some(definition) = id.parse().ok().and_then(|id| arm.door.definition(id)).filter(|d| visible_from(d, scope))
    else {
        return Ok(ArmReply::empty(204));
    };
    if definition.role_type == RoleType::BuiltInRole {
        return Err(Failure::from(ApiError::new(
            403,
            "RoleDefinitionIsBuiltIn",
            format!("The built-in role definition '{id}' cannot be deleted."),
        )));
    }
    authorize_at_assignable_scopes(arm, request, &DELETE, &definition)?;
    if arm.door.assignments().iter().any(|a| a.role_definition_id == definition.id) {
        return Err(Failure::from(ApiError::conflict(
            "RoleDefinitionHasAssignments",
            format!(
                "There are existing role assignments referencing role '{}'. Delete them first.",
                definition.role_name
            ),
        )));
    }
    arm.store.commit(Batch::new().delete(DEFINITIONS, definition.id.to_string())).await.map_err(store_error)?;
    arm.door.remove_definition(definition.id);
    Ok(ArmReply::json(200, wire(scope, &definition)))
}

/// Authorizes `action` at every assignable scope of `definition` (Azure's rule for changing or
/// deleting a custom role: the role's reach is everywhere it can be assigned).
fn authorize_at_assignable_scopes(
    arm: &Arm,
    request: &ArmRequest,
    action: &Action,
    definition: &RoleDefinition,
) -> Result<(), Failure> {
    for text in &definition.assignable_scopes {
        // Stored scopes were validated when written; one that no longer parses covers nothing.
        if let Ok(assignable) = Scope::parse(text) {
            request.authorize(arm, action, &assignable)?;
        }
    }
    Ok(())
}

/// Refuses new assignable scopes that would leave an existing assignment of the role outside
/// them (Azure's `RoleScopeBeingRemovedContainsAssignments`).
fn refuse_orphaned_assignments(arm: &Arm, existing: &RoleDefinition, new_scopes: &[String]) -> Result<(), Failure> {
    let new_scopes: Vec<Scope> = new_scopes.iter().filter_map(|s| Scope::parse(s).ok()).collect();
    let old_scopes: Vec<Scope> = existing.assignable_scopes.iter().filter_map(|s| Scope::parse(s).ok()).collect();
    for assignment in arm.door.assignments().iter().filter(|a| a.role_definition_id == existing.id) {
        let Ok(at) = Scope::parse(&assignment.scope) else { continue };
        if new_scopes.iter().any(|s| s.covers(&at)) {
            continue;
        }
        let removed = old_scopes.iter().find(|s| s.covers(&at)).unwrap_or(&at);
        return Err(Failure::from(ApiError::bad_request(
            "RoleScopeBeingRemovedContainsAssignments",
            format!(
                "Role assignments found under scope '{removed}' which is being removed. Removing this scope from the role will orphan these assignments. Delete these assignments before removing the scope."
            ),
        )));
    }
    Ok(())
}

/// The subset of `$filter` ARM supports here: `roleName eq '...'` and `type eq '...'`.
fn matches_filter(d: &RoleDefinition, filter: Option<&String>) -> Result<bool, ApiError> {
    let Some(text) = filter.map(|t| t.trim()).filter(|t| !t.is_empty()) else { return Ok(true) };
    let mut ok = true;
    for clause in text.split(" and ").map(str::trim) {
        let (field, value) =
            clause.split_once(" eq ").map(|(f, v)| (f.trim(), v.trim().trim_matches('\''))).ok_or_else(|| {
                ApiError::bad_request("InvalidFilterInQueryString", format!("The filter '{text}' is not supported."))
            })?;
        ok &= match field {
            f if f.eq_ignore_ascii_case("roleName") => d.role_name.eq_ignore_ascii_case(value),
            f if f.eq_ignore_ascii_case("type") => d.role_type.as_str().eq_ignore_ascii_case(value),
            _ => {
                return Err(ApiError::bad_request(
                    "InvalidFilterInQueryString",
                    format!("The filter '{text}' is not supported."),
                ));
            }
        };
    }
    Ok(ok)
}

pub fn list(arm: &Arm, request: &ArmRequest, scope: &Scope) -> Result<ArmReply, Failure> {
    if request.method != Method::GET {
        return Err(method_not_allowed(&request.method));
    }
    request.authorize(arm, &READ, scope)?;
    let filter = request.query.get("$filter");
    let mut definitions = Vec::new();
    for d in arm.door.definitions() {
        if visible_from(&d, scope) && matches_filter(&d, filter)? {
            definitions.push(d);
        }
    }
    definitions.sort_by(|a, b| a.role_name.cmp(&b.role_name));
    let value: Vec<Value> = definitions.iter().map(|d| wire(scope, d)).collect();
    Ok(ArmReply::json(200, json!({"value": value})))
}
