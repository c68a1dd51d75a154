//! ARM request paths, parsed into the operation they address.
//!
//! RBAC resources hang off any scope (`{scope}/providers/Microsoft.Authorization/...`), so paths are
//! parsed by hand rather than by a route table.

use byos_core::Scope;

/// What an ARM path addresses.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Subscriptions,
    Subscription {
        sub: String,
    },
    ResourceGroups {
        sub: String,
    },
    ResourceGroup {
        sub: String,
        group: String,
    },
    GroupResources {
        sub: String,
        group: String,
    },
    RoleAssignments {
        scope: Scope,
    },
    RoleAssignment {
        scope: Scope,
        name: String,
    },
    RoleDefinitions {
        scope: Scope,
    },
    RoleDefinition {
        scope: Scope,
        id: String,
    },
    /// `{...}/providers/{namespace}/{type}[/{name}]` inside a resource group or at a subscription.
    Provider {
        sub: String,
        group: Option<String>,
        namespace: String,
        rest: Vec<String>,
    },
    /// A well-formed path byos has no resource for.
    Unknown,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Parses the path of an ARM request (without query string).
pub fn parse(path: &str) -> Target {
    let trimmed = path.trim_end_matches('/');
    if let Some(target) = authorization_target(trimmed) {
        return target;
    }
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let owned = |s: &str| s.to_owned();
    match segments.as_slice() {
        [s] if eq(s, "subscriptions") => Target::Subscriptions,
        [s, sub] if eq(s, "subscriptions") => Target::Subscription { sub: owned(sub) },
        [s, sub, g] if eq(s, "subscriptions") && eq(g, "resourcegroups") => Target::ResourceGroups { sub: owned(sub) },
        [s, sub, g, group] if eq(s, "subscriptions") && eq(g, "resourcegroups") => {
            Target::ResourceGroup { sub: owned(sub), group: owned(group) }
        }
        [s, sub, g, group, r] if eq(s, "subscriptions") && eq(g, "resourcegroups") && eq(r, "resources") => {
            Target::GroupResources { sub: owned(sub), group: owned(group) }
        }
        [s, sub, g, group, p, ns, rest @ ..]
            if eq(s, "subscriptions") && eq(g, "resourcegroups") && eq(p, "providers") && !rest.is_empty() =>
        {
            Target::Provider {
                sub: owned(sub),
                group: Some(owned(group)),
                namespace: owned(ns),
                rest: rest.iter().map(|s| owned(s)).collect(),
            }
        }
        [s, sub, p, ns, rest @ ..] if eq(s, "subscriptions") && eq(p, "providers") && !rest.is_empty() => {
            Target::Provider {
                sub: owned(sub),
                group: None,
                namespace: owned(ns),
                rest: rest.iter().map(|s| owned(s)).collect(),
            }
        }
        _ => Target::Unknown,
    }
}

/// `{scope}/providers/Microsoft.Authorization/{roleAssignments|roleDefinitions}[/{name}]`.
fn authorization_target(path: &str) -> Option<Target> {
    let folded = path.to_ascii_lowercase();
    let marker = "/providers/microsoft.authorization/";
    let at = folded.rfind(marker)?;
    let scope = Scope::parse(if at == 0 { "/" } else { &path[..at] }).ok()?;
    let rest: Vec<&str> = path[at + marker.len()..].split('/').collect();
    Some(match rest.as_slice() {
        [kind] if eq(kind, "roleassignments") => Target::RoleAssignments { scope },
        [kind, name] if eq(kind, "roleassignments") => Target::RoleAssignment { scope, name: (*name).to_owned() },
        [kind] if eq(kind, "roledefinitions") => Target::RoleDefinitions { scope },
        [kind, id] if eq(kind, "roledefinitions") => Target::RoleDefinition { scope, id: (*id).to_owned() },
        _ => Target::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse("/subscriptions"), Target::Subscriptions);
        assert_eq!(parse("/subscriptions/s1/resourcegroups/"), Target::ResourceGroups { sub: "s1".into() });
        assert_eq!(
            parse("/subscriptions/s1/resourceGroups/g"),
            Target::ResourceGroup { sub: "s1".into(), group: "g".into() }
        );
        let scoped = parse("/subscriptions/s1/resourceGroups/g/providers/Microsoft.Authorization/roleAssignments/abc");
        assert!(
            matches!(scoped, Target::RoleAssignment { ref scope, ref name } if scope.as_str() == "/subscriptions/s1/resourceGroups/g" && name == "abc")
        );
        assert!(
            matches!(parse("/providers/Microsoft.Authorization/roleDefinitions"), Target::RoleDefinitions { scope } if scope.is_root())
        );
        let uami =
            parse("/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u");
        assert!(
            matches!(uami, Target::Provider { group: Some(_), ref namespace, ref rest, .. } if namespace == "Microsoft.ManagedIdentity" && rest.len() == 2)
        );
        assert_eq!(parse("/nothing/here"), Target::Unknown);
        assert_eq!(parse("/subscriptions/s/providers/Microsoft.Authorization/elsewhere"), Target::Unknown);
    }
}
