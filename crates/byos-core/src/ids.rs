//! Azure resource ids and RBAC scopes.
//!
//! A scope is a path: `/`, `/subscriptions/{s}`, `/subscriptions/{s}/resourceGroups/{g}`, a resource id
//! (`.../providers/{Namespace}/{type}/{name}[/{type}/{name}]*`) or a child of one (a blob container).
//! Azure compares them case-insensitively; an assignment at a scope applies to everything below it.

use std::fmt;

use thiserror::Error;

/// Why a string is not a well-formed scope or resource id.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdError {
    #[error("'{0}' does not start with '/'")]
    NotAbsolute(String),
    #[error("'{0}' has an empty segment")]
    EmptySegment(String),
    #[error(
        "'{0}' is not a resource id of the form /subscriptions/{{s}}/resourceGroups/{{g}}/providers/{{ns}}/{{type}}/{{name}}"
    )]
    NotAResourceId(String),
}

/// An RBAC scope, kept as given and compared case-insensitively on whole segments.
#[derive(Clone, Debug)]
pub struct Scope {
    text: String,
    folded: String,
}

impl Scope {
    /// The root scope `/`.
    pub fn root() -> Self {
        Scope { text: "/".into(), folded: "/".into() }
    }

    /// Parses a scope path; trailing slashes are dropped (`/subscriptions/x/` is `/subscriptions/x`).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if !text.starts_with('/') {
            return Err(IdError::NotAbsolute(text.to_owned()));
        }
        let trimmed = text.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(Scope::root());
        }
        if trimmed[1..].split('/').any(str::is_empty) {
            return Err(IdError::EmptySegment(text.to_owned()));
        }
        Ok(Scope { text: trimmed.to_owned(), folded: trimmed.to_ascii_lowercase() })
    }

    pub fn subscription(subscription_id: &str) -> Self {
        Self::from_trusted(format!("/subscriptions/{subscription_id}"))
    }

    pub fn resource_group(subscription_id: &str, group: &str) -> Self {
        Self::from_trusted(format!("/subscriptions/{subscription_id}/resourceGroups/{group}"))
    }

    /// Builds a scope from a path this crate's callers assembled from validated parts.
    fn from_trusted(text: String) -> Self {
        let folded = text.to_ascii_lowercase();
        Scope { text, folded }
    }

    /// Appends path segments (e.g. `providers/Microsoft.X/type/name`).
    pub fn child(&self, segments: &str) -> Self {
        let base = if self.is_root() { "" } else { self.text.as_str() };
        Self::from_trusted(format!("{base}/{}", segments.trim_matches('/')))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The case-folded form, used as a storage key and for comparisons.
    pub fn key(&self) -> &str {
        &self.folded
    }

    pub fn is_root(&self) -> bool {
        self.folded == "/"
    }

    /// Whether `self` is `other` or an ancestor of it, i.e. an assignment at `self` applies to `other`.
    pub fn covers(&self, other: &Scope) -> bool {
        self.is_root()
            || other.folded == self.folded
            || (other.folded.starts_with(&self.folded) && other.folded.as_bytes().get(self.folded.len()) == Some(&b'/'))
    }

    /// The subscription id, when the scope is at or below a subscription.
    pub fn subscription_id(&self) -> Option<&str> {
        let mut parts = self.text[1..].split('/');
        match (parts.next(), parts.next()) {
            (Some(kw), Some(id)) if kw.eq_ignore_ascii_case("subscriptions") => Some(id),
            _ => None,
        }
    }

    /// The resource group name, when the scope is at or below a resource group.
    pub fn resource_group_name(&self) -> Option<&str> {
        let parts: Vec<&str> = self.text[1..].split('/').collect();
        match parts.as_slice() {
            [s, _, g, name, ..]
                if s.eq_ignore_ascii_case("subscriptions") && g.eq_ignore_ascii_case("resourceGroups") =>
            {
                Some(name)
            }
            _ => None,
        }
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Self) -> bool {
        self.folded == other.folded
    }
}
impl Eq for Scope {}

impl std::hash::Hash for Scope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.folded.hash(state);
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A tracked ARM resource id inside a resource group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceId {
    pub subscription_id: String,
    pub resource_group: String,
    /// e.g. `Microsoft.ManagedIdentity`
    pub namespace: String,
    /// e.g. `userAssignedIdentities`; nested types are joined with `/`.
    pub resource_type: String,
    pub name: String,
}

impl ResourceId {
    pub fn new(subscription_id: &str, resource_group: &str, namespace: &str, resource_type: &str, name: &str) -> Self {
        ResourceId {
            subscription_id: subscription_id.to_owned(),
            resource_group: resource_group.to_owned(),
            namespace: namespace.to_owned(),
            resource_type: resource_type.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Parses `/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{type}/{name}` (one level).
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let scope = Scope::parse(text)?;
        let parts: Vec<&str> = scope.as_str()[1..].split('/').collect();
        match parts.as_slice() {
            [s, sub, g, group, p, ns, ty, name]
                if s.eq_ignore_ascii_case("subscriptions")
                    && g.eq_ignore_ascii_case("resourceGroups")
                    && p.eq_ignore_ascii_case("providers") =>
            {
                Ok(ResourceId::new(sub, group, ns, ty, name))
            }
            _ => Err(IdError::NotAResourceId(text.to_owned())),
        }
    }

    /// `Namespace/type`, as ARM writes the `type` property.
    pub fn full_type(&self) -> String {
        format!("{}/{}", self.namespace, self.resource_type)
    }

    pub fn scope(&self) -> Scope {
        Scope::from_trusted(self.to_string())
    }

    pub fn group_scope(&self) -> Scope {
        Scope::resource_group(&self.subscription_id, &self.resource_group)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/{}/{}/{}",
            self.subscription_id, self.resource_group, self.namespace, self.resource_type, self.name
        )
    }
}

/// A unique id for a response (`x-ms-request-id`): a random per-process prefix and a counter, so
/// naming a request costs no system call (a fresh v4 UUID reads the OS random source every time).
pub fn request_id() -> uuid::Uuid {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&prefix.to_be_bytes());
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<uuid::Uuid> = (0..1000).map(|_| request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.get_version_num() == 4));
    }

    fn scope(text: &str) -> Scope {
        Scope::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn coverage_is_by_whole_segment_and_case_insensitive() {
        let table = [
            ("/", "/subscriptions/a", true),
            ("/subscriptions/a", "/subscriptions/a", true),
            ("/subscriptions/A", "/subscriptions/a/resourceGroups/g", true),
            ("/subscriptions/a/resourceGroups/g", "/subscriptions/a/resourcegroups/G/providers/x/y/z", true),
            ("/subscriptions/a/resourceGroups/g", "/subscriptions/a/resourceGroups/g2", false),
            ("/subscriptions/a/resourceGroups/g", "/subscriptions/a", false),
            ("/subscriptions/ab", "/subscriptions/a", false),
        ];
        for (outer, inner, expected) in table {
            assert_eq!(scope(outer).covers(&scope(inner)), expected, "{outer} covers {inner}");
        }
    }

    #[test]
    fn parse_rejects_relative_and_empty_segments() {
        assert!(matches!(Scope::parse("subscriptions/a"), Err(IdError::NotAbsolute(_))));
        assert!(matches!(Scope::parse("/subscriptions//a"), Err(IdError::EmptySegment(_))));
        assert_eq!(scope("/subscriptions/a/").as_str(), "/subscriptions/a");
        assert!(scope("/").is_root());
    }

    #[test]
    fn scope_parts() {
        let s = scope("/subscriptions/S1/resourceGroups/G1/providers/Microsoft.X/t/n");
        assert_eq!(s.subscription_id(), Some("S1"));
        assert_eq!(s.resource_group_name(), Some("G1"));
        assert_eq!(scope("/subscriptions/S1").resource_group_name(), None);
    }

    #[test]
    fn resource_id_round_trips() {
        let text = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1";
        let id = ResourceId::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.name, "id1");
        assert_eq!(id.full_type(), "Microsoft.ManagedIdentity/userAssignedIdentities");
        assert_eq!(id.to_string(), text);
        assert!(ResourceId::parse("/subscriptions/s/resourceGroups/g").is_err());
    }
}
