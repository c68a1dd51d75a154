//! The resource manager's building blocks, on an in-memory store: the system-assigned identity
//! lifecycle every identity-bearing resource relies on.

use std::sync::Arc;

use byos_arm::managed_identity::plan_identity;
use byos_arm::{Arm, Deployment};
use byos_authz::{Action, Door, RoleAssignment, builtin};
use byos_core::{Caller, NetworkOrigin, Scope};
use byos_crypto::RootKey;
use byos_identity::Directory;
use byos_store::{Batch, MemStore, SharedStore};
use serde_json::json;

const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
const RESOURCE: &str = "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct";

async fn arm() -> anyhow::Result<Arc<Arm>> {
    let store: SharedStore = Arc::new(MemStore::new());
    let root = Arc::new(RootKey::ephemeral()?);
    let directory = Arc::new(Directory::open(Arc::clone(&store), &root, "https://127.0.0.1:1").await?);
    let deployment = Deployment {
        subscription_id: SUB.into(),
        location: "eastus".into(),
        base_url: "https://127.0.0.1:1".into(),
        authority: "https://127.0.0.1:1".into(),
        approved_features: vec![],
    };
    Ok(Arm::open(directory, Arc::new(Door::new()), store, root, deployment, vec![]).await?)
}

fn operator_of_nothing() -> Caller {
    Caller::anonymous(NetworkOrigin::local_socket())
}

/// Commits a plan the way a resource provider does, returning the stored identity property.
async fn apply(
    arm: &Arm,
    requested: serde_json::Value,
    current: Option<&byos_arm::ResourceRecord>,
) -> anyhow::Result<byos_arm::ResourceRecord> {
    let plan = plan_identity(arm, &operator_of_nothing(), RESOURCE, Some(&requested), current)
        .await
        .map_err(|f| anyhow::anyhow!("{}", f.0))?;
    let record = byos_arm::ResourceRecord {
        v: 1,
        id: RESOURCE.into(),
        name: "acct".into(),
        resource_type: "Microsoft.Storage/storageAccounts".into(),
        location: "eastus".into(),
        tags: Default::default(),
        properties: json!({}),
        identity: plan.wire.clone(),
        owned_principals: plan.owned.clone(),
        created_on: String::new(),
        extra: Default::default(),
    };
    arm.store.commit(plan.ops(arm, Batch::new())?).await?;
    plan.applied(arm);
    Ok(record)
}

#[tokio::test]
async fn system_assigned_identity_lives_and_dies_with_its_resource() -> anyhow::Result<()> {
    let arm = arm().await?;
    let enabled = apply(&arm, json!({"type": "SystemAssigned"}), None).await?;
    let identity = enabled.identity.clone().unwrap_or_default();
    assert_eq!(identity["type"], "SystemAssigned");
    let oid: uuid::Uuid = identity["principalId"].as_str().unwrap_or_default().parse()?;
    let principal = arm.directory.principal(oid).ok_or_else(|| anyhow::anyhow!("principal not created"))?;
    assert_eq!(principal.resource_id(), Some(RESOURCE));

    // Its token works and its role assignment grants access...
    let (token, _) = arm.directory.tokens().mint(&principal, "aud", byos_core::time::unix_now())?;
    let caller = arm.directory.authenticate(&token, &["aud"], NetworkOrigin::local_socket())?;
    arm.door.put_assignment(RoleAssignment {
        name: uuid::Uuid::new_v4(),
        scope: format!("/subscriptions/{SUB}"),
        role_definition_id: builtin::READER,
        principal_id: oid,
        principal_type: "ServicePrincipal".into(),
        description: None,
        created_on: String::new(),
        created_by: None,
    })?;
    let read = Action::control("Microsoft.Resources/subscriptions/read");
    assert!(arm.door.authorize(&caller, &read, &Scope::subscription(SUB)).is_ok());

    // ...re-applying keeps the same principal...
    let again = apply(&arm, json!({"type": "SystemAssigned"}), Some(&enabled)).await?;
    assert_eq!(again.owned_principals, vec![oid]);

    // ...and disabling it deletes the principal: its token and assignment grant nothing.
    let disabled = apply(&arm, json!({"type": "None"}), Some(&again)).await?;
    assert!(disabled.identity.is_none() && disabled.owned_principals.is_empty());
    assert!(arm.directory.principal(oid).is_none());
    assert!(arm.directory.authenticate(&token, &["aud"], NetworkOrigin::local_socket()).is_err());
    Ok(())
}

#[tokio::test]
async fn attaching_a_user_assigned_identity_needs_its_assign_action() -> anyhow::Result<()> {
    let arm = arm().await?;
    let uami =
        format!("/subscriptions/{SUB}/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u1");
    let requested = json!({"type": "UserAssigned", "userAssignedIdentities": {uami: {}}});
    let denied = plan_identity(&arm, &operator_of_nothing(), RESOURCE, Some(&requested), None).await.err();
    assert_eq!(denied.map(|f| f.0.code), Some("AuthorizationFailed".to_owned()));
    let invalid =
        plan_identity(&arm, &operator_of_nothing(), RESOURCE, Some(&json!({"type": "Everything"})), None).await.err();
    assert_eq!(invalid.map(|f| f.0.code), Some("InvalidIdentityType".to_owned()));
    Ok(())
}
