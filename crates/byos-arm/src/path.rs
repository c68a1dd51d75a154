//! ARM request paths, parsed into the operation they address.
//!
//! RBAC resources hang off any scope (`{scope}/providers/Microsoft.Authorization/...`), so paths are
//! parsed by hand rather than by a route table.

use axum::http::Method;
use byos_authz::Action;
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

/// The action ARM authorizes for a provider request in a resource group, and its scope: `read`,
/// `write` or `delete` of the addressed type by method, or `{type}/{name}/action` for a POST.
/// `rest` alternates types and names (`storageAccounts/a/blobServices/default`); `None` when the
/// path is not one ARM could name an action for.
pub fn provider_action(
    method: &Method,
    sub: &str,
    group: &str,
    namespace: &str,
    rest: &[String],
) -> Option<(Action, Scope)> {
    let post_action = *method == Method::POST && rest.len() % 2 == 1 && rest.len() > 1;
    let addressed = if post_action { &rest[..rest.len() - 1] } else { rest };
    let types: Vec<&str> = addressed.iter().step_by(2).map(String::as_str).collect();
    let verb = match *method {
        _ if post_action => format!("{}/action", rest[rest.len() - 1]),
        Method::GET | Method::HEAD => "read".to_owned(),
        Method::PUT | Method::PATCH => "write".to_owned(),
        Method::DELETE => "delete".to_owned(),
        _ => return None,
    };
    let action = Action::control_owned(format!("{namespace}/{}/{verb}", types.join("/")));
    // A collection (odd length) is authorized at its parent: the group or the parent resource.
    let named = &addressed[..addressed.len() - addressed.len() % 2];
    let scope_text = match named {
        [] => format!("/subscriptions/{sub}/resourceGroups/{group}"),
        _ => format!("/subscriptions/{sub}/resourceGroups/{group}/providers/{namespace}/{}", named.join("/")),
    };
    Some((action, Scope::parse(&scope_text).ok()?))
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

    #[test]
    fn provider_actions() {
        let rest = |r: &str| r.split('/').map(str::to_owned).collect::<Vec<_>>();
        let name = |m: Method, r: &str| {
            provider_action(&m, "s", "g", "Microsoft.Storage", &rest(r))
                .map(|(a, s)| (a.name.into_owned(), s.to_string()))
        };
        let account = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a";
        assert_eq!(
            name(Method::GET, "storageAccounts/a"),
            Some(("Microsoft.Storage/storageAccounts/read".into(), account.into()))
        );
        assert_eq!(
            name(Method::GET, "storageAccounts"),
            Some(("Microsoft.Storage/storageAccounts/read".into(), "/subscriptions/s/resourceGroups/g".into()))
        );
        assert_eq!(
            name(Method::POST, "storageAccounts/a/listKeys"),
            Some(("Microsoft.Storage/storageAccounts/listKeys/action".into(), account.into()))
        );
        assert_eq!(
            name(Method::DELETE, "storageAccounts/a/blobServices/default"),
            Some((
                "Microsoft.Storage/storageAccounts/blobServices/delete".into(),
                format!("{account}/blobServices/default")
            ))
        );
        assert_eq!(name(Method::OPTIONS, "storageAccounts/a"), None);
    }
}
