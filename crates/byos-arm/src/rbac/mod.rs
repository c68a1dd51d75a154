//! RBAC resources over ARM: role definitions (built-in and custom) and role assignments.
//! Their records persist in the store; the door holds the live copy it decides with.

pub mod assignments;
pub mod definitions;

use byos_authz::{Door, RoleAssignment, RoleDefinition};
use byos_core::ApiError;
use byos_store::{SharedStore, Table};
use serde::{Deserialize, Serialize};

use crate::records::{decode, store_error};

pub const ASSIGNMENTS: Table = Table("role_assignments");
pub const DEFINITIONS: Table = Table("role_definitions");

/// Stored form of an assignment: the record version plus the door's type.
#[derive(Serialize, Deserialize)]
struct AssignmentRecord {
    v: u32,
    #[serde(flatten)]
    assignment: RoleAssignment,
}

#[derive(Serialize, Deserialize)]
struct DefinitionRecord {
    v: u32,
    #[serde(flatten)]
    definition: RoleDefinition,
}

const RECORD_VERSION: u32 = 1;

/// Loads every stored custom role and assignment into the door (at start-up).
pub async fn load_into_door(store: &SharedStore, door: &Door) -> Result<(), ApiError> {
    for (key, bytes) in store.scan(DEFINITIONS, "").await.map_err(store_error)? {
        let record: DefinitionRecord = decode(&key, &bytes)?;
        door.put_definition(record.definition);
    }
    for (key, bytes) in store.scan(ASSIGNMENTS, "").await.map_err(store_error)? {
        let record: AssignmentRecord = decode(&key, &bytes)?;
        door.put_assignment(record.assignment).map_err(|e| {
            tracing::error!(key, error = %e, "stored role assignment has an invalid scope");
            ApiError::internal()
        })?;
    }
    Ok(())
}

/// `/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{id}` as ARM writes a
/// definition id seen from a scope (no subscription at the root scope).
pub fn definition_id(scope: &byos_core::Scope, id: uuid::Uuid) -> String {
    match scope.subscription_id() {
        Some(sub) => format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{id}"),
        None => format!("/providers/Microsoft.Authorization/roleDefinitions/{id}"),
    }
}
