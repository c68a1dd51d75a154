//! Role definitions and assignments: the data the door decides with.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One permission block of a role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Permission {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
    /// An ABAC condition. byos does not evaluate conditions yet, so a conditioned block grants
    /// nothing: never more than Azure would grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition_version: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleType {
    BuiltInRole,
    CustomRole,
}

impl RoleType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::BuiltInRole => "BuiltInRole",
            RoleType::CustomRole => "CustomRole",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    pub id: Uuid,
    pub role_name: String,
    #[serde(default)]
    pub description: String,
    pub role_type: RoleType,
    pub permissions: Vec<Permission>,
    /// Scopes (as text) where the role may be assigned; `/` for every built-in.
    pub assignable_scopes: Vec<String>,
    #[serde(default)]
    pub created_on: Option<String>,
    #[serde(default)]
    pub updated_on: Option<String>,
}

/// A role assignment: `principal_id` holds `role_definition_id` at `scope`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    /// The assignment's GUID name.
    pub name: Uuid,
    /// The scope as given when created (case preserved).
    pub scope: String,
    pub role_definition_id: Uuid,
    pub principal_id: Uuid,
    pub principal_type: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created_on: String,
    pub created_by: Option<Uuid>,
}

#[derive(Deserialize)]
struct BuiltinFile {
    roles: Vec<BuiltinRole>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BuiltinRole {
    id: Uuid,
    role_name: String,
    permissions: Vec<Permission>,
}

/// Parses the built-in role snapshot format (`{"roles":[{"id","roleName","permissions"}]}`).
pub fn parse_builtin_roles(json: &str) -> Result<Vec<RoleDefinition>, serde_json::Error> {
    let file: BuiltinFile = serde_json::from_str(json)?;
    Ok(file
        .roles
        .into_iter()
        .map(|r| RoleDefinition {
            id: r.id,
            description: String::new(),
            role_name: r.role_name,
            role_type: RoleType::BuiltInRole,
            permissions: r.permissions,
            assignable_scopes: vec!["/".to_owned()],
            created_on: None,
            updated_on: None,
        })
        .collect())
}

/// Every Azure built-in role with its real id and permissions (snapshot in `data/builtin-roles.json`).
pub static BUILTIN_ROLES: LazyLock<Vec<RoleDefinition>> = LazyLock::new(|| {
    // The file is compiled in and checked by a unit test, so a parse failure here is a build bug.
    parse_builtin_roles(include_str!("../data/builtin-roles.json")).unwrap_or_default()
});

/// Well-known built-in role ids byos itself refers to.
pub mod builtin {
    use uuid::{Uuid, uuid};

    pub const OWNER: Uuid = uuid!("8e3af657-a8ff-443c-a75c-2fe8c4bcb635");
    pub const CONTRIBUTOR: Uuid = uuid!("b24988ac-6180-42a0-ab88-20f7382dd24c");
    pub const READER: Uuid = uuid!("acdd72a7-3385-48ef-bd42-f606fba81ae7");
    pub const USER_ACCESS_ADMINISTRATOR: Uuid = uuid!("18d7d88d-d35e-4fb5-a5c3-7773c20a72d9");
    pub const STORAGE_BLOB_DATA_CONTRIBUTOR: Uuid = uuid!("ba92f5b4-2d11-453d-a403-e96b0029c9fe");
    pub const STORAGE_BLOB_DATA_READER: Uuid = uuid!("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_role_loads_with_its_real_id() {
        assert_eq!(BUILTIN_ROLES.len(), 933);
        let find = |id| BUILTIN_ROLES.iter().find(|r| r.id == id);
        assert_eq!(find(builtin::OWNER).map(|r| r.role_name.as_str()), Some("Owner"));
        assert_eq!(find(builtin::READER).map(|r| r.role_name.as_str()), Some("Reader"));
        let sbdc = find(builtin::STORAGE_BLOB_DATA_CONTRIBUTOR).map(|r| r.permissions[0].data_actions.clone());
        assert!(sbdc.is_some_and(|d| {
            d.iter().any(|a| a == "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read")
        }));
        let conditioned = BUILTIN_ROLES.iter().filter(|r| r.permissions.iter().any(|p| p.condition.is_some())).count();
        assert_eq!(conditioned, 29);
    }
}
