//! The HTTP-free blob API other byos services use: a resource's managed identity (from
//! `Directory::act_as`) writes, reads, lists and deletes blobs in another account in-process,
//! through the door, with typed errors; without a role it is denied before anything is touched.

use std::collections::BTreeMap;

use anyhow::Context;
use byos_authz::DenialKind;
use byos_core::Caller;
use byos_identity::AttachedIdentities;
use byos_storage::blob::api::BlobAddress;
use byos_storage::blob::errors::BlobError;
use byos_testkit::TestServer;
use futures_util::TryStreamExt;
use serde_json::{Value, json};

async fn arm_put(server: &TestServer, client: &reqwest::Client, path: &str, body: Value) -> anyhow::Result<Value> {
    server.arm_as_admin(client, reqwest::Method::PUT, path, Some(body)).await
}

/// The caller of storage account `source` acting as its system-assigned identity.
fn acting_as(server: &TestServer, source: &Value) -> anyhow::Result<Caller> {
    let id = source["id"].as_str().context("id")?;
    let principal = source["identity"]["principalId"].as_str().context("principalId")?.parse()?;
    let attached = AttachedIdentities { resource_id: id, system: Some(principal), user: &[] };
    server.services()?.directory.act_as(&attached, None).context("act_as refused the account's own identity")
}

fn denied_for_permission(result: Result<impl std::fmt::Debug, BlobError>) -> anyhow::Result<()> {
    match result {
        Err(BlobError::Denied(denial)) if denial.kind == DenialKind::Permission => Ok(()),
        other => anyhow::bail!("expected a permission denial, got {other:?}"),
    }
}

#[tokio::test]
async fn blob_api_acts_as_a_resource_identity_through_the_door() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let sub = server.boot_str(&["subscription_id"]);
    let group = format!("/subscriptions/{sub}/resourceGroups/api");
    arm_put(&server, &client, &group, json!({"location": "eastus"})).await?;
    let account = |identity: Value| json!({"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}, "identity": identity});
    let accounts = format!("{group}/providers/Microsoft.Storage/storageAccounts");
    let source =
        arm_put(&server, &client, &format!("{accounts}/apisource"), account(json!({"type": "SystemAssigned"}))).await?;
    let target = arm_put(&server, &client, &format!("{accounts}/apitarget"), account(json!({"type": "None"}))).await?;
    let caller = acting_as(&server, &source)?;
    let storage = &server.services()?.storage;
    let at = BlobAddress { account: "apitarget", container: "artifacts", blob: "runs/1/result.json" };

    denied_for_permission(storage.create_container(&caller, "apitarget", "artifacts").await)?;

    let principal = source["identity"]["principalId"].as_str().context("principalId")?;
    let target_id = target["id"].as_str().context("id")?;
    let role = format!(
        "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    );
    arm_put(
        &server,
        &client,
        &format!("{target_id}/providers/Microsoft.Authorization/roleAssignments/{}", uuid::Uuid::new_v4()),
        json!({"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}}),
    )
    .await?;

    storage.create_container(&caller, "apitarget", "artifacts").await?;
    let metadata = BTreeMap::from([("job".to_owned(), "1".to_owned())]);
    let content = bytes::Bytes::from_static(b"{\"recognizedPhrases\": []}");
    let written = storage.put_blob(&caller, at, content.clone(), Some("application/json"), metadata.clone()).await?;
    assert_eq!(written.size, content.len() as u64);

    let reader = storage.read_blob(&caller, at).await?;
    let read: Vec<u8> = reader.content.map_ok(|b| b.to_vec()).try_concat().await?;
    assert_eq!(read, content.to_vec());
    assert_eq!(reader.info.content_type.as_deref(), Some("application/json"));
    assert_eq!(reader.info.metadata, metadata);
    assert_eq!(reader.info.etag, written.etag);

    let listed = storage.list_blobs(&caller, "apitarget", "artifacts", "runs/").await?;
    assert_eq!(listed.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["runs/1/result.json"]);
    assert!(storage.list_blobs(&caller, "apitarget", "artifacts", "other/").await?.is_empty());

    storage.delete_blob(&caller, at).await?;
    assert!(matches!(storage.blob_properties(&caller, at).await, Err(BlobError::BlobNotFound)));
    let elsewhere = BlobAddress { container: "missing", ..at };
    assert!(matches!(storage.blob_properties(&caller, elsewhere).await, Err(BlobError::ContainerNotFound)));
    let nowhere = BlobAddress { account: "noaccount", ..at };
    assert!(matches!(storage.blob_properties(&caller, nowhere).await, Err(BlobError::AccountNotFound)));
    // The role is on the target only: the identity's own account is as closed to it as any other.
    denied_for_permission(storage.create_container(&caller, "apisource", "artifacts").await)?;
    server.stop().await;
    Ok(())
}
