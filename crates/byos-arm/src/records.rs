//! Stored ARM records: resource groups and tracked resources, each a versioned JSON document keyed
//! by its lowercased id, so that a prefix scan lists a group's resources.

use byos_core::{ApiError, Scope};
use byos_store::Table;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::Arm;

pub const GROUPS: Table = Table("resource_groups");
pub const RESOURCES: Table = Table("resources");
pub const RECORD_VERSION: u32 = 1;

/// A resource group as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRecord {
    pub v: u32,
    /// The id with the name as first created (case preserved).
    pub id: String,
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub tags: Map<String, Value>,
    #[serde(default)]
    pub managed_by: Option<String>,
    pub created_on: String,
}

impl GroupRecord {
    pub fn to_wire(&self) -> Value {
        let mut wire = json!({
            "id": self.id, "name": self.name, "type": "Microsoft.Resources/resourceGroups",
            "location": self.location, "tags": self.tags, "properties": {"provisioningState": "Succeeded"},
        });
        if let Some(managed_by) = &self.managed_by {
            wire["managedBy"] = json!(managed_by);
        }
        wire
    }
}

/// A tracked resource as stored. `properties` belong to the provider; `owned_principals` are the
/// managed identities that live and die with the resource.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRecord {
    pub v: u32,
    pub id: String,
    pub name: String,
    /// `Namespace/type`.
    #[serde(rename = "type")]
    pub resource_type: String,
    pub location: String,
    #[serde(default)]
    pub tags: Map<String, Value>,
    #[serde(default)]
    pub properties: Value,
    #[serde(default)]
    pub identity: Option<Value>,
    #[serde(default)]
    pub owned_principals: Vec<Uuid>,
    pub created_on: String,
    /// Further top-level ARM fields of the type (`sku`, `kind`, ...).
    #[serde(default)]
    pub extra: Map<String, Value>,
}

impl ResourceRecord {
    /// The common ARM envelope around the provider's `properties`.
    pub fn to_wire(&self) -> Value {
        let mut wire = json!({
            "id": self.id, "name": self.name, "type": self.resource_type,
            "location": self.location, "tags": self.tags, "properties": self.properties,
        });
        if let Some(identity) = &self.identity {
            wire["identity"] = identity.clone();
        }
        for (k, v) in &self.extra {
            wire[k] = v.clone();
        }
        wire
    }
}

pub fn group_key(sub: &str, group: &str) -> String {
    format!("/subscriptions/{sub}/resourcegroups/{group}").to_ascii_lowercase()
}

pub fn resource_key(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// The key prefix under which all resources of a group are stored.
pub fn group_resources_prefix(sub: &str, group: &str) -> String {
    format!("{}/providers/", group_key(sub, group))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(record = what, error = %e, "stored record is corrupt");
    ApiError::internal()
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(what, e))
}

pub fn encode<T: Serialize>(what: &str, record: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(record).map_err(|e| corrupt(what, e))
}

pub fn store_error(e: byos_store::StoreError) -> ApiError {
    match e {
        byos_store::StoreError::Conflict { table, key, .. } => ApiError::conflict(
            "Conflict",
            format!("A concurrent change to {table}/{key} was detected. Retry the request."),
        ),
        byos_store::StoreError::Backend(detail) => {
            tracing::error!(%detail, "metadata store failure");
            ApiError::internal()
        }
    }
}

impl Arm {
    pub async fn group(&self, sub: &str, group: &str) -> Result<Option<GroupRecord>, ApiError> {
        let key = group_key(sub, group);
        match self.store.get(GROUPS, &key).await.map_err(store_error)? {
            Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The group, or ARM's `ResourceGroupNotFound`.
    pub async fn require_group(&self, sub: &str, group: &str) -> Result<GroupRecord, ApiError> {
        self.group(sub, group).await?.ok_or_else(|| group_not_found(group))
    }

    pub async fn groups(&self, sub: &str) -> Result<Vec<GroupRecord>, ApiError> {
        let prefix = format!("/subscriptions/{sub}/resourcegroups/").to_ascii_lowercase();
        let rows = self.store.scan(GROUPS, &prefix).await.map_err(store_error)?;
        rows.iter().map(|(k, v)| decode(k, v)).collect()
    }

    pub async fn resource(&self, id: &str) -> Result<Option<ResourceRecord>, ApiError> {
        let key = resource_key(id);
        match self.store.get(RESOURCES, &key).await.map_err(store_error)? {
            Some(bytes) => Ok(Some(decode(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Resources whose lowercased id starts with `prefix`.
    pub async fn resources_under(&self, prefix: &str) -> Result<Vec<ResourceRecord>, ApiError> {
        let rows = self.store.scan(RESOURCES, &prefix.to_ascii_lowercase()).await.map_err(store_error)?;
        rows.iter().map(|(k, v)| decode(k, v)).collect()
    }

    /// The resources of `full_type` in a group (or the whole subscription) that the caller may
    /// read with `read`: what every provider's list operation returns.
    pub async fn readable_resources(
        &self,
        request: &crate::ArmRequest,
        sub: &str,
        group: Option<&str>,
        full_type: &str,
        read: &byos_authz::Action,
    ) -> Result<Vec<ResourceRecord>, byos_http::Failure> {
        if request.method != axum::http::Method::GET {
            return Err(crate::groups::method_not_allowed(&request.method));
        }
        let prefix = match group {
            Some(group) => {
                self.require_group(sub, group).await?;
                group_resources_prefix(sub, group)
            }
            None => format!("/subscriptions/{sub}/resourcegroups/"),
        };
        Ok(self
            .resources_under(&prefix)
            .await?
            .into_iter()
            .filter(|r| r.resource_type.eq_ignore_ascii_case(full_type))
            .filter(|r| Scope::parse(&r.id).is_ok_and(|scope| request.may(self, read, &scope)))
            .collect())
    }
}

pub fn group_not_found(group: &str) -> ApiError {
    ApiError::not_found("ResourceGroupNotFound", format!("Resource group '{group}' could not be found."))
}

/// ARM's 404 for a tracked resource.
pub fn resource_not_found(full_type: &str, name: &str, group: &str) -> ApiError {
    ApiError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource '{full_type}/{name}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

/// Tags as ARM accepts them: at most 50, names up to 512 and values up to 256 characters.
pub fn validate_tags(tags: &Map<String, Value>) -> Result<(), ApiError> {
    let invalid = |m: String| ApiError::bad_request("InvalidTag", m);
    if tags.len() > 50 {
        return Err(invalid("A resource can have at most 50 tags.".into()));
    }
    for (name, value) in tags {
        if name.is_empty() || name.len() > 512 {
            return Err(invalid(format!("The tag name '{name}' must be 1 to 512 characters.")));
        }
        match value {
            Value::String(s) if s.len() <= 256 => {}
            _ => return Err(invalid(format!("The value of tag '{name}' must be a string of at most 256 characters."))),
        }
    }
    Ok(())
}

/// The scope of a resource group.
pub fn group_scope(sub: &str, group: &str) -> Scope {
    Scope::resource_group(sub, group)
}
