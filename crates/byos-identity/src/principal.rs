//! Principals as stored: a versioned record per object id.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a principal is, and so how it may obtain tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum IdentityKind {
    /// Authenticates with a client secret at the token endpoint.
    ServicePrincipal,
    /// Obtains tokens only through the managed-identity endpoints; `resource_id` is the user-assigned
    /// identity resource, or the resource whose system-assigned identity this is.
    #[serde(rename_all = "camelCase")]
    ManagedIdentity { resource_id: String, system_assigned: bool },
}

/// A directory object that can hold role assignments and obtain tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// Record format version.
    pub v: u32,
    pub object_id: Uuid,
    /// The application (client) id.
    pub client_id: Uuid,
    pub display_name: String,
    pub kind: IdentityKind,
    /// Salted hashes of the client secrets (service principals only).
    #[serde(default)]
    pub secret_hashes: Vec<String>,
    pub created_on: String,
    /// Bumped by each rotation of a managed identity's `X-IDENTITY-HEADER` secret, which is bound
    /// to it, so that rotating kills the old value (0, never rotated, is not stored).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub header_generation: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

pub const PRINCIPAL_RECORD_VERSION: u32 = 1;

impl Principal {
    pub fn caller_kind(&self) -> byos_core::PrincipalKind {
        match &self.kind {
            IdentityKind::ServicePrincipal => byos_core::PrincipalKind::ServicePrincipal,
            IdentityKind::ManagedIdentity { resource_id, .. } => {
                byos_core::PrincipalKind::ManagedIdentity { resource_id: resource_id.clone() }
            }
        }
    }

    pub fn is_managed(&self) -> bool {
        matches!(self.kind, IdentityKind::ManagedIdentity { .. })
    }

    pub fn resource_id(&self) -> Option<&str> {
        match &self.kind {
            IdentityKind::ManagedIdentity { resource_id, .. } => Some(resource_id),
            IdentityKind::ServicePrincipal => None,
        }
    }
}
