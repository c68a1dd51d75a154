//! `{scope}/providers/Microsoft.Authorization/roleAssignments[/{name}]`.

use crate::ArmReply;
use axum::http::Method;
use byos_authz::{Action, RoleAssignment};
use byos_core::{ApiError, OrInternal, Scope};
use byos_http::Failure;
use byos_store::{Batch, Op};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{ASSIGNMENTS, AssignmentRecord, RECORD_VERSION, definition_id};
use crate::groups::method_not_allowed;
use crate::records::{encode, store_error};
use crate::{Arm, ArmRequest};

const READ: Action = Action::control("Microsoft.Authorization/roleAssignments/read");
const WRITE: Action = Action::control("Microsoft.Authorization/roleAssignments/write");
const DELETE: Action = Action::control("Microsoft.Authorization/roleAssignments/delete");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    properties: CreateProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateProperties {
    role_definition_id: String,
    principal_id: String,
    #[serde(default)]
    principal_type: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    condition: Option<String>,
}

fn wire(assignment: &RoleAssignment) -> Value {
    let scope = Scope::parse(&assignment.scope).unwrap_or_else(|_| Scope::root());
    json!({
        "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", if scope.is_root() { "" } else { scope.as_str() }, assignment.name),
        "name": assignment.name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": definition_id(&scope, assignment.role_definition_id),
            "principalId": assignment.principal_id,
            "principalType": assignment.principal_type,
            "scope": assignment.scope,
            "condition": null,
            "conditionVersion": null,
            "description": assignment.description,
            "createdOn": assignment.created_on,
            "updatedOn": assignment.created_on,
            "createdBy": assignment.created_by,
            "updatedBy": assignment.created_by,
            "delegatedManagedIdentityResourceId": null,
        },
    })
}

pub async fn handle(arm: &Arm, request: &ArmRequest, scope: &Scope, name: &str) -> Result<ArmReply, Failure> {
    match request.method {
        Method::GET => {
            request.authorize(arm, &READ, scope)?;
            let assignment = find(arm, scope, name).ok_or_else(|| not_found(name))?;
            Ok(ArmReply::json(200, wire(&assignment)))
        }
        Method::PUT => {
            request.authorize(arm, &WRITE, scope)?;
            create(arm, request, scope, name).await
        }
        Method::DELETE => {
            request.authorize(arm, &DELETE, scope)?;
            delete(arm, scope, name).await
        }
        ref other => Err(method_not_allowed(other)),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found("RoleAssignmentNotFound", format!("The role assignment '{name}' is not found."))
}

fn find(arm: &Arm, scope: &Scope, name: &str) -> Option<RoleAssignment> {
    let name: Uuid = name.parse().ok()?;
    arm.door.assignments().into_iter().find(|a| a.name == name && Scope::parse(&a.scope).is_ok_and(|s| &s == scope))
}

/// The GUID at the end of a role definition id (`.../roleDefinitions/{guid}`).
fn role_guid(role_definition_id: &str) -> Option<Uuid> {
    role_definition_id.trim_end_matches('/').rsplit('/').next()?.parse().ok()
}

async fn create(arm: &Arm, request: &ArmRequest, scope: &Scope, name: &str) -> Result<ArmReply, Failure> {
    let name: Uuid = name.parse().map_err(|_| {
        ApiError::bad_request(
            "InvalidRoleAssignmentId",
            format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
        )
    })?;
    let body: CreateBody = request.json()?;
    let props = body.properties;
    if props.condition.is_some() {
        return Err(Failure::from(ApiError::bad_request(
            "InvalidRoleAssignmentRequest",
            "byos does not evaluate role assignment conditions yet; create the assignment without one.",
        )));
    }
    let role = role_guid(&props.role_definition_id).and_then(|id| arm.door.definition(id)).ok_or_else(|| {
        ApiError::bad_request(
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{}' does not exist.", props.role_definition_id),
        )
    })?;
    let assignable = role.assignable_scopes.iter().filter_map(|s| Scope::parse(s).ok()).any(|s| s.covers(scope));
    if !assignable {
        return Err(Failure::from(ApiError::bad_request(
            "InvalidCreateRoleAssignmentRequest",
            format!("The role '{}' is not available to be assigned at the scope '{scope}'.", role.role_name),
        )));
    }
    let principal = props.principal_id.parse().ok().and_then(|oid| arm.directory.principal(oid)).ok_or_else(|| {
        ApiError::bad_request(
            "PrincipalNotFound",
            format!(
                "Principal {} does not exist in the directory {}. Check that you have the correct principal ID.",
                props.principal_id,
                arm.directory.tenant_id()
            ),
        )
    })?;
    check_scope_exists(arm, scope).await?;
    let _guard = arm.write_lock.lock().await;
    let existing = arm.door.assignments();
    let duplicate = existing.iter().any(|a| {
        a.principal_id == principal.object_id
            && a.role_definition_id == role.id
            && Scope::parse(&a.scope).is_ok_and(|s| &s == scope)
    });
    if duplicate {
        return Err(Failure::from(ApiError::conflict("RoleAssignmentExists", "The role assignment already exists.")));
    }
    if existing.iter().any(|a| a.name == name) {
        return Err(Failure::from(ApiError::bad_request(
            "RoleAssignmentUpdateNotPermitted",
            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
        )));
    }
    let assignment = RoleAssignment {
        name,
        scope: scope.as_str().to_owned(),
        role_definition_id: role.id,
        principal_id: principal.object_id,
        principal_type: props.principal_type.unwrap_or_else(|| "ServicePrincipal".into()),
        description: props.description,
        created_on: byos_core::time::rfc3339_now(),
        created_by: request.caller.object_id(),
    };
    insert(arm, &assignment).await?;
    tracing::info!(assignment = %name, principal = %assignment.principal_id, role = %role.role_name, scope = %scope, "role assignment created");
    Ok(ArmReply::json(201, wire(&assignment)))
}

/// Stores a validated assignment, then lets the door use it.
async fn insert(arm: &Arm, assignment: &RoleAssignment) -> Result<(), ApiError> {
    let key = assignment.name.to_string();
    let record = AssignmentRecord { v: RECORD_VERSION, assignment: assignment.clone() };
    arm.store
        .commit(Batch::new().expect_absent(ASSIGNMENTS, key.clone()).put(
            ASSIGNMENTS,
            key.clone(),
            encode(&key, &record)?,
        ))
        .await
        .map_err(store_error)?;
    arm.door.put_assignment(assignment.clone()).or_internal()
}

/// Makes sure `principal` holds `role` at `scope` (the bootstrap admin's Owner role).
pub async fn ensure(arm: &Arm, principal: Uuid, role: Uuid, scope: &Scope) -> Result<(), ApiError> {
    let _guard = arm.write_lock.lock().await;
    let held = arm.door.assignments().iter().any(|a| {
        a.principal_id == principal && a.role_definition_id == role && Scope::parse(&a.scope).is_ok_and(|s| &s == scope)
    });
    if held {
        return Ok(());
    }
    let assignment = RoleAssignment {
        name: Uuid::new_v4(),
        scope: scope.as_str().to_owned(),
        role_definition_id: role,
        principal_id: principal,
        principal_type: "ServicePrincipal".into(),
        description: Some("byos bootstrap".into()),
        created_on: byos_core::time::rfc3339_now(),
        created_by: None,
    };
    insert(arm, &assignment).await
}

/// An assignment needs its scope to exist: the subscription and, below it, the resource group.
async fn check_scope_exists(arm: &Arm, scope: &Scope) -> Result<(), Failure> {
    if let Some(sub) = scope.subscription_id() {
        crate::subscriptions::require(arm, sub)?;
        if let Some(group) = scope.resource_group_name() {
            arm.require_group(sub, group).await?;
        }
    }
    Ok(())
}

async fn delete(arm: &Arm, scope: &Scope, name: &str) -> Result<ArmReply, Failure> {
    let _guard = arm.write_lock.lock().await;
    let Some(assignment) = find(arm, scope, name) else {
        return Ok(ArmReply::empty(204));
    };
    arm.store.commit(Batch::new().delete(ASSIGNMENTS, assignment.name.to_string())).await.map_err(store_error)?;
    arm.door.remove_assignment(assignment.name);
    tracing::info!(assignment = %assignment.name, "role assignment deleted");
    Ok(ArmReply::json(200, wire(&assignment)))
}

/// Adds the deletion of every assignment at or below `scope` to `batch` (once: assignments the
/// batch already deletes are skipped). [`Arm::commit_and_forget`] removes them from the door.
pub fn delete_under_ops(arm: &Arm, mut batch: Batch, scope: &Scope) -> Batch {
    let already = deleted_in(&batch);
    for a in arm.door.assignments() {
        if !already.contains(&a.name) && Scope::parse(&a.scope).is_ok_and(|s| scope.covers(&s)) {
            batch = batch.delete(ASSIGNMENTS, a.name.to_string());
        }
    }
    batch
}

/// The names of the assignments `batch` deletes.
pub fn deleted_in(batch: &Batch) -> Vec<Uuid> {
    batch
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Delete { table, key } if *table == ASSIGNMENTS => key.parse().ok(),
            _ => None,
        })
        .collect()
}

/// The subset of `$filter` expressions ARM supports for role assignments.
#[derive(Debug, Default, PartialEq)]
struct Filter {
    at_scope: bool,
    principal: Option<String>,
}

fn parse_filter(text: Option<&String>) -> Result<Filter, ApiError> {
    let mut filter = Filter::default();
    let Some(text) = text.map(|t| t.trim()).filter(|t| !t.is_empty()) else {
        return Ok(filter);
    };
    for clause in text.split(" and ").map(str::trim) {
        let quoted = |prefix: &str, suffix: &str| {
            clause
                .get(..prefix.len())
                .filter(|p| p.eq_ignore_ascii_case(prefix))
                .and_then(|_| clause[prefix.len()..].strip_suffix(suffix))
                .map(str::to_owned)
        };
        if clause.eq_ignore_ascii_case("atScope()") {
            filter.at_scope = true;
        } else if let Some(id) = quoted("principalId eq '", "'").or_else(|| quoted("assignedTo('", "')")) {
            filter.principal = Some(id);
        } else {
            return Err(ApiError::bad_request(
                "InvalidFilterInQueryString",
                format!("The filter '{text}' is not supported."),
            ));
        }
    }
    Ok(filter)
}

/// Lists assignments at, above and (unless `atScope()`) below the scope.
pub fn list(arm: &Arm, request: &ArmRequest, scope: &Scope) -> Result<ArmReply, Failure> {
    if request.method != Method::GET {
        return Err(method_not_allowed(&request.method));
    }
    request.authorize(arm, &READ, scope)?;
    let filter = parse_filter(request.query.get("$filter"))?;
    let mut value: Vec<RoleAssignment> = arm
        .door
        .assignments()
        .into_iter()
        .filter(|a| {
            let Ok(at) = Scope::parse(&a.scope) else { return false };
            let related = at.covers(scope) || (!filter.at_scope && scope.covers(&at));
            related && filter.principal.as_deref().is_none_or(|p| a.principal_id.to_string().eq_ignore_ascii_case(p))
        })
        .collect();
    value.sort_by(|a, b| a.created_on.cmp(&b.created_on).then(a.name.cmp(&b.name)));
    let value: Vec<Value> = value.iter().map(wire).collect();
    Ok(ArmReply::json(200, json!({"value": value})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let f = |t: &str| parse_filter(Some(&t.to_owned()));
        assert_eq!(f("atScope()").ok(), Some(Filter { at_scope: true, principal: None }));
        assert_eq!(f("principalId eq 'abc'").ok(), Some(Filter { at_scope: false, principal: Some("abc".into()) }));
        assert_eq!(
            f("atScope() and assignedTo('x')").ok(),
            Some(Filter { at_scope: true, principal: Some("x".into()) })
        );
        assert!(f("roleName eq 'x'").is_err());
        assert_eq!(parse_filter(None).ok(), Some(Filter::default()));
    }
}
