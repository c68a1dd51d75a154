//! Resource groups: PUT / GET / HEAD / PATCH / DELETE and list, and listing a group's resources.
//! Deleting a group deletes everything in it (resources, their identities, role assignments),
//! each resource through its provider's authorized delete ([`crate::deletion`]).

use crate::ArmReply;
use axum::http::Method;
use byos_authz::Action;
use byos_core::ApiError;
use byos_http::Failure;
use byos_store::Batch;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::records::{self, GROUPS, GroupRecord, group_key, group_not_found, group_scope, validate_tags};
use crate::subscriptions::require;
use crate::{Arm, ArmRequest, rbac};

const READ: Action = Action::control("Microsoft.Resources/subscriptions/resourceGroups/read");
const WRITE: Action = Action::control("Microsoft.Resources/subscriptions/resourceGroups/write");
const DELETE: Action = Action::control("Microsoft.Resources/subscriptions/resourceGroups/delete");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupBody {
    location: Option<String>,
    #[serde(default)]
    tags: Option<Map<String, Value>>,
    #[serde(default)]
    managed_by: Option<String>,
}

/// Azure's rule: 1-90 letters, digits, `_ ( ) - .`, not ending in a period.
fn validate_name(name: &str) -> Result<(), ApiError> {
    let valid_chars = name.chars().all(|c| c.is_alphanumeric() || "_()-.".contains(c));
    if name.is_empty() || name.chars().count() > 90 || !valid_chars || name.ends_with('.') {
        return Err(ApiError::bad_request(
            "InvalidResourceGroup",
            format!(
                "The provided resource group name '{name}' is invalid. The name can only be a letter, digit, '-', '.', '(', ')' or '_', is at most 90 characters long and cannot end in a period."
            ),
        ));
    }
    Ok(())
}

pub async fn list(arm: &Arm, request: &ArmRequest, sub: &str) -> Result<ArmReply, Failure> {
    require(arm, sub)?;
    if request.method != Method::GET {
        return Err(method_not_allowed(&request.method));
    }
    let value: Vec<Value> = arm
        .groups(sub)
        .await?
        .iter()
        .filter(|g| request.may(arm, &READ, &group_scope(sub, &g.name)))
        .map(GroupRecord::to_wire)
        .collect();
    Ok(ArmReply::json(200, json!({"value": value})))
}

pub async fn handle(arm: &Arm, request: &ArmRequest, sub: &str, group: &str) -> Result<ArmReply, Failure> {
    require(arm, sub)?;
    let scope = group_scope(sub, group);
    match request.method {
        Method::GET => {
            request.authorize(arm, &READ, &scope)?;
            Ok(ArmReply::json(200, arm.require_group(sub, group).await?.to_wire()))
        }
        Method::HEAD => {
            request.authorize(arm, &READ, &scope)?;
            let status = if arm.group(sub, group).await?.is_some() { 204 } else { 404 };
            Ok(ArmReply::empty(status))
        }
        Method::PUT => {
            request.authorize(arm, &WRITE, &scope)?;
            put(arm, request, sub, group).await
        }
        Method::PATCH => {
            request.authorize(arm, &WRITE, &scope)?;
            patch(arm, request, sub, group).await
        }
        Method::DELETE => {
            request.authorize(arm, &DELETE, &scope)?;
            delete(arm, request, sub, group).await
        }
        ref other => Err(method_not_allowed(other)),
    }
}

async fn put(arm: &Arm, request: &ArmRequest, sub: &str, group: &str) -> Result<ArmReply, Failure> {
    validate_name(group)?;
    let body: GroupBody = request.json()?;
    let location = body.location.filter(|l| !l.trim().is_empty()).ok_or_else(|| {
        ApiError::bad_request("LocationRequired", "The location property is required for this definition.")
    })?;
    let tags = body.tags.unwrap_or_default();
    validate_tags(&tags)?;
    let _guard = arm.write_lock.lock().await;
    let existing = arm.group(sub, group).await?;
    let created = existing.is_none();
    let record = match existing {
        Some(old) if !old.location.eq_ignore_ascii_case(&location) => {
            return Err(Failure::from(ApiError::conflict(
                "InvalidResourceGroupLocation",
                format!(
                    "Invalid resource group location '{location}'. The Resource group already exists in location '{}'.",
                    old.location
                ),
            )));
        }
        Some(old) => GroupRecord { tags, managed_by: body.managed_by.or(old.managed_by.clone()), ..old },
        None => GroupRecord {
            v: records::RECORD_VERSION,
            id: format!("/subscriptions/{sub}/resourceGroups/{group}"),
            name: group.to_owned(),
            location,
            tags,
            managed_by: body.managed_by,
            created_on: byos_core::time::rfc3339_now(),
        },
    };
    let key = group_key(sub, group);
    arm.store
        .commit(Batch::new().put(GROUPS, key.clone(), records::encode(&key, &record)?))
        .await
        .map_err(records::store_error)?;
    tracing::info!(group = %record.id, created, "resource group written");
    Ok(ArmReply::json(if created { 201 } else { 200 }, record.to_wire()))
}

async fn patch(arm: &Arm, request: &ArmRequest, sub: &str, group: &str) -> Result<ArmReply, Failure> {
    let body: GroupBody = request.json()?;
    let _guard = arm.write_lock.lock().await;
    let mut record = arm.require_group(sub, group).await?;
    if let Some(tags) = body.tags {
        validate_tags(&tags)?;
        record.tags = tags;
    }
    if body.managed_by.is_some() {
        record.managed_by = body.managed_by;
    }
    let key = group_key(sub, group);
    arm.store
        .commit(Batch::new().put(GROUPS, key.clone(), records::encode(&key, &record)?))
        .await
        .map_err(records::store_error)?;
    Ok(ArmReply::json(200, record.to_wire()))
}

/// Deletes the group with its resources, their identities and every role assignment inside it,
/// in one transaction, through each resource's authorized delete: if the caller may not delete
/// one of the resources, nothing is deleted.
async fn delete(arm: &Arm, request: &ArmRequest, sub: &str, group: &str) -> Result<ArmReply, Failure> {
    let guard = arm.write_guard().await;
    let record = arm.group(sub, group).await?.ok_or_else(|| group_not_found(group))?;
    let resources = arm.resources_under(&records::group_resources_prefix(sub, group)).await?;
    let batch = Batch::new().delete(GROUPS, group_key(sub, group));
    let batch = rbac::assignments::delete_under_ops(arm, batch, &group_scope(sub, group));
    arm.delete_resources(&guard, &request.caller, &resources, batch).await?;
    tracing::info!(group = %record.id, resources = resources.len(), "resource group deleted");
    Ok(ArmReply::empty(200))
}

/// `GET /subscriptions/{s}/resourceGroups/{g}/resources`: the resources the caller may read.
pub async fn list_resources(arm: &Arm, request: &ArmRequest, sub: &str, group: &str) -> Result<ArmReply, Failure> {
    require(arm, sub)?;
    request.authorize(arm, &READ, &group_scope(sub, group))?;
    arm.require_group(sub, group).await?;
    let resources = arm.resources_under(&records::group_resources_prefix(sub, group)).await?;
    let value: Vec<Value> = resources
        .iter()
        .filter(|r| {
            let scope = byos_core::Scope::parse(&r.id).unwrap_or_else(|_| group_scope(sub, group));
            request.may(arm, &Action::control_owned(format!("{}/read", r.resource_type)), &scope)
        })
        .map(|r| json!({"id": r.id, "name": r.name, "type": r.resource_type, "location": r.location, "tags": r.tags}))
        .collect();
    Ok(ArmReply::json(200, json!({"value": value})))
}

/// A provider path naming a type its namespace does not have.
pub fn unknown_resource_type(namespace: &str, rest: &[String]) -> Failure {
    Failure::from(ApiError::bad_request(
        "InvalidResourceType",
        format!("The resource type '{}' could not be found in the namespace '{namespace}'.", rest.join("/")),
    ))
}

pub fn method_not_allowed(method: &Method) -> Failure {
    Failure::from(ApiError::new(
        405,
        "MethodNotAllowed",
        format!("The HTTP method '{method}' is not supported for this resource."),
    ))
}

#[cfg(test)]
mod tests {
    use super::validate_name;

    #[test]
    fn group_names() {
        for ok in ["rg", "my-rg_1", "(rg).x", "größe"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "rg.", "a/b", "a b", &"x".repeat(91)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
