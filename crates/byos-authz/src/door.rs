//! [`Door`]: the in-memory policy and the single authorization function.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use byos_core::{AuthMethod, Caller, Scope};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::matching::Pattern;
use crate::roles::{BUILTIN_ROLES, Permission, RoleAssignment, RoleDefinition};
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
}

#[derive(Default)]
struct Policy {
    roles: HashMap<Uuid, CompiledRole>,
    /// Assignments by principal object id.
    assignments: HashMap<Uuid, Vec<(Scope, RoleAssignment)>>,
}

/// What allowed an access: the assignment that granted it, or the operator's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    Assignment { assignment: Uuid, role: Uuid },
    Operator,
}

/// A refused access, with everything needed to explain it.
#[derive(Clone, Debug, PartialEq)]
pub struct Denial {
    pub caller: Caller,
    pub action: Action,
    pub scope: Scope,
    /// One entry per assignment of the caller that was looked at, with why it did not grant.
    pub considered: Vec<Value>,
    pub reason: String,
}

impl Denial {
    /// The explanation byos attaches to denials (`additionalInfo` type `ByosAccessExplanation`).
    pub fn explanation(&self) -> Value {
        json!({
            "caller": {
                "objectId": self.caller.object_id,
                "clientId": self.caller.client_id,
                "authentication": self.caller.auth,
                "sourceIp": self.caller.origin.ip,
            },
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
        let blocks = definition.permissions.iter().map(CompiledBlock::new).collect();
        let id = definition.id;
        self.write().roles.insert(id, CompiledRole { definition: Arc::new(definition), blocks });
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

    /// Decides whether `caller` may perform `action` at `scope`. The only authorization function.
    pub fn authorize(&self, caller: &Caller, action: &Action, scope: &Scope) -> Result<Grant, Box<Denial>> {
        let deny = |considered, reason: String| {
            Box::new(Denial { caller: caller.clone(), action: action.clone(), scope: scope.clone(), considered, reason })
        };
        match (caller.auth, action.kind) {
            (AuthMethod::OperatorSocket, ActionKind::Operator) => return Ok(Grant::Operator),
            (AuthMethod::OperatorSocket, _) => {
                return Err(deny(vec![], "the operator socket manages byos itself and has no access to resources or data".into()));
            }
            (_, ActionKind::Operator) => {
                return Err(deny(vec![], "operator actions are available only through the local control socket".into()));
            }
            (AuthMethod::Anonymous, _) => return Err(deny(vec![], "the request carries no credentials".into())),
            (AuthMethod::BearerToken, _) => {}
        }
        let Some(principal) = caller.object_id else {
            return Err(deny(vec![], "the token names no principal".into()));
        };
        let wanted = action.name.to_ascii_lowercase();
        let policy = self.read();
        let assignments = policy.assignments.get(&principal).map(Vec::as_slice).unwrap_or_default();
        let mut considered = Vec::with_capacity(assignments.len());
        for (assignment_scope, assignment) in assignments {
            let role = policy.roles.get(&assignment.role_definition_id);
            let outcome = if !assignment_scope.covers(scope) {
                "scope does not cover the requested scope".to_owned()
            } else {
                match role.map(|r| role_verdict(r, &wanted, action.kind)) {
                    Some(RoleVerdict::Granted) => {
                        return Ok(Grant::Assignment { assignment: assignment.name, role: assignment.role_definition_id });
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
            format!("none of the {} role assignments of principal {principal} grants '{}' at '{}'", considered.len(), action.name, scope)
        };
        Err(deny(considered, reason))
    }
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
            BlockVerdict::Excluded(pattern) => refusal = format!("excluded by not{}{} pattern '{pattern}'", &list[..1].to_uppercase(), &list[1..]),
            BlockVerdict::Conditioned => refusal = "granted only under an ABAC condition, which byos does not evaluate yet".into(),
        }
    }
    RoleVerdict::Refused(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;
    use byos_core::{NetworkOrigin, PrincipalKind};

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

    fn caller(oid: Uuid) -> Caller {
        Caller {
            object_id: Some(oid),
            client_id: Some(oid),
            tenant_id: None,
            kind: Some(PrincipalKind::ServicePrincipal),
            auth: AuthMethod::BearerToken,
            origin: NetworkOrigin { ip: None, tls: true },
        }
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
        let (owner, contributor, reader, blob_reader) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
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
            permissions: vec![Permission { actions: vec!["*".into()], condition: Some("@x".into()), ..Permission::default() }],
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
        assert!(door.authorize(&Caller::operator(), &Action::operator("byos/principals/write"), &Scope::root()).is_ok());
    }
}
