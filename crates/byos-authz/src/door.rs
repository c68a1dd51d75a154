//! [`Door`]: the in-memory policy and the single authorization function.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use byos_core::{Actor, AuthMethod, Caller, Scope, SignatureKind};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::guard::ResourceGuard;
use crate::matching::Pattern;
use crate::roles::{BUILTIN_ROLES, Permission, RoleAssignment, RoleDefinition, RoleType};
use crate::{Action, ActionKind};

/// A permission block with its patterns folded once.
struct CompiledBlock {
    actions: Vec<Pattern>,
    not_actions: Vec<Pattern>,
    data_actions: Vec<Pattern>,
    not_data_actions: Vec<Pattern>,
    conditioned: bool,
}

impl CompiledBlock {
    fn new(p: &Permission) -> Self {
        let fold = |v: &Vec<String>| v.iter().map(|s| Pattern::new(s)).collect();
        CompiledBlock {
            actions: fold(&p.actions),
            not_actions: fold(&p.not_actions),
            data_actions: fold(&p.data_actions),
            not_data_actions: fold(&p.not_data_actions),
            conditioned: p.condition.is_some(),
        }
    }

    /// How this block treats `action` (already lowercased).
    fn verdict(&self, action: &str, kind: ActionKind) -> BlockVerdict {
        let (allow, deny) = match kind {
            ActionKind::Control => (&self.actions, &self.not_actions),
            ActionKind::Data => (&self.data_actions, &self.not_data_actions),
            ActionKind::Operator => return BlockVerdict::NotListed,
        };
        if !allow.iter().any(|p| p.matches(action)) {
            return BlockVerdict::NotListed;
        }
        if let Some(excluded) = deny.iter().find(|p| p.matches(action)) {
            return BlockVerdict::Excluded(excluded.as_str().to_owned());
        }
        if self.conditioned { BlockVerdict::Conditioned } else { BlockVerdict::Granted }
    }
}

enum BlockVerdict {
    Granted,
    NotListed,
    Excluded(String),
    Conditioned,
}

struct CompiledRole {
    definition: Arc<RoleDefinition>,
    blocks: Vec<CompiledBlock>,
    /// Where the role may be assigned (`None`: everywhere, as for every built-in role).
    assignable: Option<Vec<Scope>>,
}

impl CompiledRole {
    fn new(definition: RoleDefinition) -> Self {
        let blocks = definition.permissions.iter().map(CompiledBlock::new).collect();
        // A scope text that does not parse covers nothing, so it can only narrow the role.
        let assignable = (definition.role_type == RoleType::CustomRole)
            .then(|| definition.assignable_scopes.iter().filter_map(|s| Scope::parse(s).ok()).collect());
        CompiledRole { definition: Arc::new(definition), blocks, assignable }
    }

    /// Whether an assignment of this role at `scope` is within the role's assignable scopes. An
    /// assignment left outside them (the role was narrowed or rewritten since) grants nothing.
    fn assignable_at(&self, scope: &Scope) -> bool {
        self.assignable.as_ref().is_none_or(|scopes| scopes.iter().any(|s| s.covers(scope)))
    }
}

#[derive(Default)]
struct Policy {
    roles: HashMap<Uuid, CompiledRole>,
    /// Assignments by principal object id.
    assignments: HashMap<Uuid, Vec<(Scope, RoleAssignment)>>,
}

/// What allowed an access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    Assignment {
        assignment: Uuid,
        role: Uuid,
    },
    Operator,
    AccountKey,
    Signature,
    Anonymous,
    AccessPolicy,
    /// A background task, within its own grant.
    Actor(Actor),
}

/// Which check refused an access; services map it to their protocol's error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenialKind {
    /// The resource's network rules (firewall, public network access).
    Network,
    /// Key-based credentials on a resource that disallows them.
    KeyBasedNotPermitted,
    /// Anonymous access on a resource that disallows public access.
    PublicAccessNotPermitted,
    /// No credentials, and anonymous access does not cover the action.
    NoCredentials,
    /// A signature that does not permit the action at the scope.
    SignaturePermission,
    /// No role assignment grants the action (for signatures: the delegating principal's).
    Permission,
    /// The resource's access policy does not grant the caller the action.
    AccessPolicy,
    /// The operator socket asking for a resource action, or anyone else for an operator action.
    NotOperator,
}

/// A refused access, with everything needed to explain it.
#[derive(Clone, Debug, PartialEq)]
pub struct Denial {
    pub kind: DenialKind,
    pub caller: Caller,
    pub action: Action,
    pub scope: Scope,
    /// One entry per assignment of the caller that was looked at, with why it did not grant.
    pub considered: Vec<Value>,
    pub reason: String,
}

impl Denial {
    /// The refusal as a plain 403 `AuthorizationFailed` carrying the explanation (for callers that
    /// are not a protocol's client, such as background tasks, whose errors reach only the log).
    pub fn to_api_error(&self) -> byos_core::ApiError {
        byos_core::ApiError::new(403, "AuthorizationFailed", self.reason.clone()).with_explanation(self.explanation())
    }

    /// The explanation byos attaches to denials (`additionalInfo` type `ByosAccessExplanation`).
    pub fn explanation(&self) -> Value {
        json!({
            "caller": {
                "objectId": self.caller.object_id(),
                "clientId": self.caller.client_id(),
                "authentication": self.caller.auth(),
                "sourceIp": self.caller.origin().ip,
            },
            "check": format!("{:?}", self.kind),
            "action": self.action.name,
            "isDataAction": self.action.kind == ActionKind::Data,
            "scope": self.scope.as_str(),
            "assignmentsConsidered": self.considered,
            "reason": self.reason,
        })
    }
}

/// The one door: the policy in memory and the function every access goes through.
pub struct Door {
    policy: RwLock<Policy>,
}

impl Default for Door {
    fn default() -> Self {
        Self::new()
    }
}

impl Door {
    /// A door that knows every built-in role and no assignments.
    pub fn new() -> Self {
        let door = Door { policy: RwLock::new(Policy::default()) };
        for role in BUILTIN_ROLES.iter() {
            door.put_definition(role.clone());
        }
        door
    }

    fn read(&self) -> RwLockReadGuard<'_, Policy> {
        // A poisoned lock only means a writer panicked between two complete map updates; the maps
        // themselves are always consistent, so keep serving.
        self.policy.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Policy> {
        self.policy.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces a role definition.
    pub fn put_definition(&self, definition: RoleDefinition) {
        let id = definition.id;
        self.write().roles.insert(id, CompiledRole::new(definition));
    }

    pub fn remove_definition(&self, id: Uuid) {
        self.write().roles.remove(&id);
    }

    pub fn definition(&self, id: Uuid) -> Option<Arc<RoleDefinition>> {
        self.read().roles.get(&id).map(|r| Arc::clone(&r.definition))
    }

    pub fn definitions(&self) -> Vec<Arc<RoleDefinition>> {
        self.read().roles.values().map(|r| Arc::clone(&r.definition)).collect()
    }

    /// Adds an assignment whose scope text was validated by its owner.
    pub fn put_assignment(&self, assignment: RoleAssignment) -> Result<(), byos_core::ids::IdError> {
        let scope = Scope::parse(&assignment.scope)?;
        let mut policy = self.write();
        let list = policy.assignments.entry(assignment.principal_id).or_default();
        list.retain(|(_, a)| a.name != assignment.name);
        list.push((scope, assignment));
        Ok(())
    }

    pub fn remove_assignment(&self, name: Uuid) {
        let mut policy = self.write();
        for list in policy.assignments.values_mut() {
            list.retain(|(_, a)| a.name != name);
        }
        policy.assignments.retain(|_, list| !list.is_empty());
    }

    /// Every assignment, in no particular order.
    pub fn assignments(&self) -> Vec<RoleAssignment> {
        self.read().assignments.values().flatten().map(|(_, a)| a.clone()).collect()
    }

    /// Whether the principal has any assignment at, above or below `scope` (what makes a
    /// subscription visible in `GET /subscriptions`).
    pub fn has_assignment_near(&self, principal: Uuid, scope: &Scope) -> bool {
        self.read()
            .assignments
            .get(&principal)
            .is_some_and(|list| list.iter().any(|(s, _)| s.covers(scope) || scope.covers(s)))
    }

    /// Decides whether `caller` may perform `action` at `scope` (no resource-side rules).
    pub fn authorize(&self, caller: &Caller, action: &Action, scope: &Scope) -> Result<Grant, Box<Denial>> {
        self.authorize_access(caller, action, scope, None)
    }

    /// The only authorization function: network rules and accepted credentials of the resource
    /// (`guard`), then what the caller's credential permits, then RBAC.
    pub fn authorize_access(
        &self,
        caller: &Caller,
        action: &Action,
        scope: &Scope,
        guard: Option<&ResourceGuard>,
    ) -> Result<Grant, Box<Denial>> {
        let deny = |kind, considered, reason: String| {
            Box::new(Denial {
                kind,
                caller: caller.clone(),
                action: action.clone(),
                scope: scope.clone(),
                considered,
                reason,
            })
        };
        match (caller.auth(), action.kind) {
            (AuthMethod::OperatorSocket, ActionKind::Operator) => return Ok(Grant::Operator),
            (AuthMethod::OperatorSocket, _) => {
                return Err(deny(
                    DenialKind::NotOperator,
                    vec![],
                    "the operator socket manages byos itself and has no access to resources or data".into(),
                ));
            }
            (_, ActionKind::Operator) => {
                return Err(deny(
                    DenialKind::NotOperator,
                    vec![],
                    "operator actions are available only through the local control socket".into(),
                ));
            }
            (AuthMethod::InternalActor, _) => return actor_grant(caller, action, &deny),
            _ => {}
        }
        if let Some(guard) = guard {
            if let Some(why) = crate::guard::network_refusal(guard, caller) {
                return Err(deny(DenialKind::Network, vec![], why));
            }
            let key_based = caller.auth() == AuthMethod::SharedKey || caller.signed().is_some_and(|s| s.key_based);
            if key_based && !guard.allow_key_based {
                return Err(deny(
                    DenialKind::KeyBasedNotPermitted,
                    vec![],
                    "key-based access is disabled on this resource (allowSharedKeyAccess false, or disableLocalAuth true): keys, key-signed SAS and tokens issued for a key are refused".into(),
                ));
            }
        }
        let wanted = action.name.to_ascii_lowercase();
        match caller.auth() {
            AuthMethod::SharedKey if guard.is_some() => Ok(Grant::AccountKey),
            AuthMethod::SharedKey => {
                Err(deny(DenialKind::Permission, vec![], "account keys grant nothing outside their account".into()))
            }
            AuthMethod::Anonymous => match guard {
                Some(g) if !g.allow_public_access => Err(deny(
                    DenialKind::PublicAccessNotPermitted,
                    vec![],
                    "allowBlobPublicAccess is false: anonymous requests are refused".into(),
                )),
                Some(g) if g.anonymous_permits.iter().any(|p| Pattern::new(p).matches(&wanted)) => Ok(Grant::Anonymous),
                _ => Err(deny(
                    DenialKind::NoCredentials,
                    vec![],
                    "the request carries no credentials and public access does not cover this operation".into(),
                )),
            },
            AuthMethod::SharedAccessSignature => {
                let Some(signed) = caller.signed() else {
                    return Err(deny(DenialKind::SignaturePermission, vec![], "the signature grants nothing".into()));
                };
                let covers = Scope::parse(&signed.scope).is_ok_and(|s| s.covers(scope));
                if !covers || !signed.permits.iter().any(|p| Pattern::new(p).matches(&wanted)) {
                    let reason = format!(
                        "the signature (permits {:?} at '{}') does not permit '{}' at '{}'",
                        signed.permits, signed.scope, action.name, scope
                    );
                    return Err(deny(DenialKind::SignaturePermission, vec![], reason));
                }
                match signed.kind {
                    // A user delegation SAS grants at most what its delegating principal holds now.
                    SignatureKind::UserDelegation => {
                        self.rbac(caller, action, &wanted, scope, &deny).map(|_| Grant::Signature)
                    }
                    _ => Ok(Grant::Signature),
                }
            }
            AuthMethod::BearerToken | AuthMethod::ServiceIdentity => match guard
                .and_then(|g| g.policy_permits.as_ref())
                .filter(|_| action.kind == ActionKind::Data)
            {
                Some(permits) if permits.iter().any(|p| Pattern::new(p).matches(&wanted)) => Ok(Grant::AccessPolicy),
                Some(permits) => {
                    let reason = format!(
                        "the access policy entry of this caller grants {permits:?}, which does not include '{}'",
                        action.name
                    );
                    Err(deny(DenialKind::AccessPolicy, vec![], reason))
                }
                None => self.rbac(caller, action, &wanted, scope, &deny),
            },
            AuthMethod::OperatorSocket | AuthMethod::InternalActor => {
                Err(deny(DenialKind::NotOperator, vec![], "decided above".into()))
            }
        }
    }

    /// Role-based check for the caller's principal.
    fn rbac(
        &self,
        caller: &Caller,
        action: &Action,
        wanted: &str,
        scope: &Scope,
        deny: &dyn Fn(DenialKind, Vec<Value>, String) -> Box<Denial>,
    ) -> Result<Grant, Box<Denial>> {
        let Some(principal) = caller.object_id() else {
            return Err(deny(DenialKind::Permission, vec![], "the credential names no principal".into()));
        };
        let policy = self.read();
        let assignments = policy.assignments.get(&principal).map(Vec::as_slice).unwrap_or_default();
        let mut considered = Vec::with_capacity(assignments.len());
        for (assignment_scope, assignment) in assignments {
            let role = policy.roles.get(&assignment.role_definition_id);
            let outcome = if !assignment_scope.covers(scope) {
                "scope does not cover the requested scope".to_owned()
            } else if role.is_some_and(|r| !r.assignable_at(assignment_scope)) {
                "the role's assignableScopes no longer include the assignment's scope".to_owned()
            } else {
                match role.map(|r| role_verdict(r, wanted, action.kind)) {
                    Some(RoleVerdict::Granted) => {
                        return Ok(Grant::Assignment {
                            assignment: assignment.name,
                            role: assignment.role_definition_id,
                        });
                    }
                    Some(RoleVerdict::Refused(why)) => why,
                    None => "role definition no longer exists".to_owned(),
                }
            };
            considered.push(json!({
                "roleAssignmentName": assignment.name,
                "roleDefinitionId": assignment.role_definition_id,
                "roleName": role.map(|r| r.definition.role_name.clone()),
                "scope": assignment.scope,
                "outcome": outcome,
            }));
        }
        let reason = if considered.is_empty() {
            format!("principal {principal} has no role assignments")
        } else {
            format!(
                "none of the {} role assignments of principal {principal} grants '{}' at '{}'",
                considered.len(),
                action.name,
                scope
            )
        };
        Err(deny(DenialKind::Permission, considered, reason))
    }
}

/// A background task's access: its own grant list ([`crate::actors::grants`]) at any scope. Network
/// rules do not apply: the task runs inside byos and reaches nothing over the network.
fn actor_grant(
    caller: &Caller,
    action: &Action,
    deny: &dyn Fn(DenialKind, Vec<Value>, String) -> Box<Denial>,
) -> Result<Grant, Box<Denial>> {
    let Some(actor) = caller.actor_kind() else {
        return Err(deny(DenialKind::Permission, vec![], "the caller names no background task".into()));
    };
    let wanted = action.name.to_ascii_lowercase();
    let grants = crate::actors::grants(actor);
    if grants.iter().any(|p| Pattern::new(p).matches(&wanted)) {
        return Ok(Grant::Actor(actor));
    }
    let reason = format!("the {} may only perform {grants:?}, not '{}'", actor.name(), action.name);
    Err(deny(DenialKind::Permission, vec![], reason))
}

enum RoleVerdict {
    Granted,
    Refused(String),
}

/// Folds the blocks of a role: any granting block grants; otherwise the most telling refusal.
fn role_verdict(role: &CompiledRole, action: &str, kind: ActionKind) -> RoleVerdict {
    let list = match kind {
        ActionKind::Data => "dataActions",
        _ => "actions",
    };
    let mut refusal = format!("role does not list the action in its {list}");
    for block in &role.blocks {
        match block.verdict(action, kind) {
            BlockVerdict::Granted => return RoleVerdict::Granted,
            BlockVerdict::NotListed => {}
            BlockVerdict::Excluded(pattern) => {
                refusal = format!("excluded by not{}{} pattern '{pattern}'", &list[..1].to_uppercase(), &list[1..])
            }
            BlockVerdict::Conditioned => {
                refusal = "granted only under an ABAC condition, which byos does not evaluate yet".into()
            }
        }
    }
    RoleVerdict::Refused(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;
    use byos_core::{NetworkOrigin, PrincipalKind, PrincipalRef};

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

    fn caller(oid: Uuid) -> Caller {
        let principal = PrincipalRef {
            object_id: oid,
            client_id: oid,
            tenant_id: Uuid::nil(),
            kind: PrincipalKind::ServicePrincipal,
        };
        Caller::bearer(principal, NetworkOrigin { ip: None, tls: true })
    }

    fn assign(door: &Door, principal: Uuid, role: Uuid, scope: &str) {
        let a = RoleAssignment {
            name: Uuid::new_v4(),
            scope: scope.into(),
            role_definition_id: role,
            principal_id: principal,
            principal_type: "ServicePrincipal".into(),
            description: None,
            created_on: String::new(),
            created_by: None,
        };
        assert!(door.put_assignment(a).is_ok());
    }

    fn scope(text: &str) -> Scope {
        Scope::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The role x action x scope matrix the rest of byos relies on.
    #[test]
    fn builtin_role_matrix() {
        let door = Door::new();
        let rg = format!("{SUB}/resourceGroups/rg1");
        let other_rg = format!("{SUB}/resourceGroups/rg2");
        let blob = format!("{rg}/providers/Microsoft.Storage/storageAccounts/a/blobServices/default/containers/c");
        let (owner, contributor, reader, blob_reader) =
            (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assign(&door, owner, builtin::OWNER, SUB);
        assign(&door, contributor, builtin::CONTRIBUTOR, &rg);
        assign(&door, reader, builtin::READER, &rg);
        assign(&door, blob_reader, builtin::STORAGE_BLOB_DATA_READER, &rg);
        let rg_write = Action::control("Microsoft.Resources/subscriptions/resourceGroups/write");
        let rg_read = Action::control("Microsoft.Resources/subscriptions/resourceGroups/read");
        let ra_write = Action::control("Microsoft.Authorization/roleAssignments/write");
        let blob_read = Action::data("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read");
        let table: &[(Uuid, &Action, &str, bool)] = &[
            (owner, &rg_write, &other_rg, true),
            (owner, &ra_write, &rg, true),
            (owner, &blob_read, &blob, false),
            (contributor, &rg_write, &rg, true),
            (contributor, &rg_write, &other_rg, false),
            (contributor, &ra_write, &rg, false),
            (reader, &rg_read, &rg, true),
            (reader, &rg_write, &rg, false),
            (reader, &rg_read, &other_rg, false),
            (blob_reader, &blob_read, &blob, true),
            (blob_reader, &rg_read, &rg, false),
        ];
        for (principal, action, at, expected) in table {
            let got = door.authorize(&caller(*principal), action, &scope(at)).is_ok();
            assert_eq!(got, *expected, "{} at {at}", action.name);
        }
    }

    #[test]
    fn denial_explains_each_considered_assignment() {
        let door = Door::new();
        let p = Uuid::new_v4();
        assign(&door, p, builtin::CONTRIBUTOR, SUB);
        let action = Action::control("Microsoft.Authorization/roleAssignments/write");
        let denial = door.authorize(&caller(p), &action, &scope(SUB)).err();
        let explanation = denial.map(|d| d.explanation()).unwrap_or_default();
        assert_eq!(explanation["action"], "Microsoft.Authorization/roleAssignments/write");
        let outcome = explanation["assignmentsConsidered"][0]["outcome"].as_str().unwrap_or_default();
        assert!(outcome.contains("notActions") && outcome.contains("microsoft.authorization/*/write"), "{outcome}");
    }

    #[test]
    fn conditioned_blocks_grant_nothing() {
        let door = Door::new();
        let role = RoleDefinition {
            id: Uuid::new_v4(),
            role_name: "conditioned".into(),
            description: String::new(),
            role_type: crate::RoleType::CustomRole,
            permissions: vec![Permission {
                actions: vec!["*".into()],
                condition: Some("@x".into()),
                ..Permission::default()
            }],
            assignable_scopes: vec![SUB.into()],
            created_on: None,
            updated_on: None,
        };
        let (p, role_id) = (Uuid::new_v4(), role.id);
        door.put_definition(role);
        assign(&door, p, role_id, SUB);
        let action = Action::control("Microsoft.Resources/subscriptions/resourceGroups/read");
        assert!(door.authorize(&caller(p), &action, &scope(SUB)).is_err());
    }

    /// F1: an assignment outside its role's assignable scopes (the role was narrowed or rewritten
    /// after the assignment was made) grants nothing; built-in roles are assignable everywhere.
    #[test]
    fn regression_f01_assignment_outside_assignable_scopes_grants_nothing() {
        let door = Door::new();
        let rg = format!("{SUB}/resourceGroups/rg1");
        let mut role = RoleDefinition {
            id: Uuid::new_v4(),
            role_name: "helpdesk".into(),
            description: String::new(),
            role_type: crate::RoleType::CustomRole,
            permissions: vec![Permission { actions: vec!["*".into()], ..Permission::default() }],
            assignable_scopes: vec![SUB.into()],
            created_on: None,
            updated_on: None,
        };
        let (p, owner) = (Uuid::new_v4(), Uuid::new_v4());
        door.put_definition(role.clone());
        assign(&door, p, role.id, SUB);
        assign(&door, owner, builtin::OWNER, &rg);
        let delete = Action::control("Microsoft.Resources/subscriptions/resourceGroups/delete");
        let other_rg = scope(&format!("{SUB}/resourceGroups/rg2"));
        assert!(door.authorize(&caller(p), &delete, &other_rg).is_ok());
        role.assignable_scopes = vec![format!("{rg}/providers/Microsoft.Storage/storageAccounts/a")];
        door.put_definition(role);
        let denial = door.authorize(&caller(p), &delete, &other_rg).err();
        let outcome = denial.map(|d| d.explanation()["assignmentsConsidered"][0]["outcome"].clone());
        assert_eq!(outcome, Some(json!("the role's assignableScopes no longer include the assignment's scope")));
        assert!(door.authorize(&caller(owner), &delete, &scope(&rg)).is_ok(), "built-in roles apply at any scope");
    }

    #[test]
    fn removing_an_assignment_revokes_access_and_operator_has_no_data_access() {
        let door = Door::new();
        let p = Uuid::new_v4();
        assign(&door, p, builtin::READER, SUB);
        let read = Action::control("Microsoft.Resources/subscriptions/read");
        let name = door.assignments()[0].name;
        assert!(door.authorize(&caller(p), &read, &scope(SUB)).is_ok());
        door.remove_assignment(name);
        assert!(door.authorize(&caller(p), &read, &scope(SUB)).is_err());
        assert!(door.authorize(&Caller::operator(), &read, &scope(SUB)).is_err());
        assert!(
            door.authorize(&Caller::operator(), &Action::operator("byos/principals/write"), &Scope::root()).is_ok()
        );
    }

    /// Credentials x resource rules for data actions: the storage lock matrix.
    #[test]
    fn data_access_matrix() {
        use crate::guard::ResourceGuard;
        use byos_core::{SignatureKind, SignedGrant};
        let door = Door::new();
        let account = format!("{SUB}/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a");
        let container = scope(&format!("{account}/blobServices/default/containers/c"));
        let read = Action::data("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read");
        let write = Action::data("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write");
        let origin = NetworkOrigin { ip: Some([127, 0, 0, 1].into()), tls: true };
        let open = ResourceGuard { allow_key_based: true, allow_public_access: true, ..ResourceGuard::default() };
        let locked = ResourceGuard { allow_key_based: false, allow_public_access: false, ..ResourceGuard::default() };
        let public_read = ResourceGuard { anonymous_permits: vec![read.name.to_string()], ..open.clone() };
        let sas = |kind, permits: &[&str], oid: Option<Uuid>| {
            let grant = SignedGrant {
                kind,
                permits: permits.iter().map(|p| p.to_string()).collect(),
                scope: account.clone(),
                key_based: kind != SignatureKind::UserDelegation,
            };
            Caller::signature(grant, oid.map(|oid| (oid, Uuid::nil())), origin.clone())
        };
        let delegator = Uuid::new_v4();
        let read_pattern = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
        type Row<'a> = (&'a str, Caller, &'a Action, &'a ResourceGuard, Result<(), DenialKind>);
        let table: Vec<Row> = vec![
            ("account key", Caller::shared_key(origin.clone()), &write, &open, Ok(())),
            (
                "account key, key access off",
                Caller::shared_key(origin.clone()),
                &write,
                &locked,
                Err(DenialKind::KeyBasedNotPermitted),
            ),
            (
                "service sas, key access off",
                sas(SignatureKind::Service, &[read_pattern], None),
                &read,
                &locked,
                Err(DenialKind::KeyBasedNotPermitted),
            ),
            ("account sas read", sas(SignatureKind::Account, &[read_pattern], None), &read, &open, Ok(())),
            (
                "account sas write",
                sas(SignatureKind::Account, &[read_pattern], None),
                &write,
                &open,
                Err(DenialKind::SignaturePermission),
            ),
            (
                "delegation sas without rbac",
                sas(SignatureKind::UserDelegation, &[read_pattern], Some(delegator)),
                &read,
                &locked,
                Err(DenialKind::Permission),
            ),
            (
                "anonymous, public off",
                Caller::anonymous(origin.clone()),
                &read,
                &locked,
                Err(DenialKind::PublicAccessNotPermitted),
            ),
            ("anonymous, public read", Caller::anonymous(origin.clone()), &read, &public_read, Ok(())),
            (
                "anonymous write, public read",
                Caller::anonymous(origin.clone()),
                &write,
                &public_read,
                Err(DenialKind::NoCredentials),
            ),
        ];
        for (name, caller, action, guard, expected) in &table {
            let got = door.authorize_access(caller, action, &container, Some(guard)).map(|_| ()).map_err(|d| d.kind);
            assert_eq!(&got, expected, "{name}");
        }
        assign(&door, delegator, builtin::STORAGE_BLOB_DATA_READER, &account);
        let with_rbac = door.authorize_access(
            &sas(SignatureKind::UserDelegation, &[read_pattern], Some(delegator)),
            &read,
            &container,
            Some(&locked),
        );
        assert!(
            with_rbac.is_ok(),
            "a delegation SAS works while its delegator holds the role, even with key access off"
        );
    }

    /// Each background task is granted its own list and nothing else, whatever the scope, and a
    /// resource's network rules do not apply to it (it reaches nothing over the network).
    #[test]
    fn actors_are_granted_only_their_own_actions() {
        let door = Door::new();
        let key = scope(&format!("{SUB}/resourceGroups/g/providers/Microsoft.KeyVault/vaults/v/keys/k"));
        let rotate = Action::data("Microsoft.KeyVault/vaults/keys/rotate/action");
        let purge = Action::data("Microsoft.KeyVault/vaults/keys/purge/action");
        let read = Action::data("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read");
        let closed = ResourceGuard { public_network_disabled: true, ..ResourceGuard::default() };
        let rotation = Caller::actor(Actor::KeyRotation);
        assert_eq!(
            door.authorize_access(&rotation, &rotate, &key, Some(&closed)),
            Ok(Grant::Actor(Actor::KeyRotation))
        );
        let refused =
            door.authorize(&rotation, &purge, &key).map_err(|d| (d.kind, d.reason.contains("key rotation watch")));
        assert_eq!(refused, Err((DenialKind::Permission, true)));
        for actor in [
            Actor::KeyRotation,
            Actor::SoftDeletePurge,
            Actor::BlobHousekeeping,
            Actor::CmkRotationWatch,
            Actor::SpeechRetention,
        ] {
            assert!(door.authorize(&Caller::actor(actor), &read, &Scope::root()).is_err(), "{actor:?} may read blobs");
            let operator = Action::operator("byos/managedIdentities/secrets/read");
            assert!(door.authorize(&Caller::actor(actor), &operator, &Scope::root()).is_err(), "{actor:?}");
        }
    }
}
