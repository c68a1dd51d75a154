//! The artifact store of an AI-services account bound to the customer's storage (BYOS): it writes
//! into that storage account as the account's system-assigned identity, through the door, so the
//! customer's role assignment and firewall decide; every refusal is `InaccessibleCustomerStorage`
//! with the door's explanation.

use anyhow::Context;
use byos_authz::DenialKind;
use byos_cognitive::artifacts::{Area, ArtifactError};
use byos_testkit::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";

/// Registers `byoxPreview` and has the operator approve it.
async fn byos_feature(server: &TestServer, client: &reqwest::Client, sub: &str) -> anyhow::Result<()> {
    let feature = format!(
        "/subscriptions/{sub}/providers/Microsoft.Features/providers/Microsoft.CognitiveServices/features/byoxPreview/register?api-version=2021-07-01"
    );
    server.arm_as_admin(client, Method::POST, &feature, None).await?;
    let body = json!({"namespace": "Microsoft.CognitiveServices", "name": "byoxPreview"});
    byos_server::control::call(&server.data_dir, "POST", "/operator/features/approve", Some(body)).await?;
    Ok(())
}

fn inaccessible(result: Result<impl std::fmt::Debug, ArtifactError>) -> anyhow::Result<Option<DenialKind>> {
    let error = match result {
        Err(error) => error,
        Ok(value) => anyhow::bail!("expected InaccessibleCustomerStorage, got {value:?}"),
    };
    let api = error.to_api_error();
    let ArtifactError::Inaccessible { check, .. } = error else {
        anyhow::bail!("expected InaccessibleCustomerStorage, got {error:?}");
    };
    anyhow::ensure!(api.code == "InaccessibleCustomerStorage", "code {}", api.code);
    anyhow::ensure!(
        api.additional_info.iter().any(|i| i["type"] == "ByosAccessExplanation"),
        "the refusal is not explained: {api:?}"
    );
    Ok(check)
}

#[tokio::test]
async fn artifact_store_writes_byos_storage_as_the_accounts_identity_through_the_door() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let sub = server.boot_str(&["subscription_id"]);
    let group = format!("/subscriptions/{sub}/resourceGroups/art");
    server.arm_as_admin(&client, Method::PUT, &group, Some(json!({"location": "eastus"}))).await?;
    let storage_id = format!("{group}/providers/Microsoft.Storage/storageAccounts/artstore");
    let storage = json!({"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}});
    server.arm_as_admin(&client, Method::PUT, &storage_id, Some(storage)).await?;
    byos_feature(&server, &client, &sub).await?;
    let speech = json!({"location": "eastus", "kind": "SpeechServices", "sku": {"name": "S0"},
        "properties": {"userOwnedStorage": [{"resourceId": storage_id}]}});
    let account_id = format!("{group}/providers/Microsoft.CognitiveServices/accounts/artspeech");
    let account: Value = server
        .arm_as_admin(&client, Method::PUT, &format!("{account_id}?api-version=2025-09-01"), Some(speech))
        .await?;
    let principal = account["identity"]["principalId"].as_str().context("principalId")?.to_owned();
    let cognitive = &server.services()?.cognitive;
    let live = cognitive.account(&account_id.to_ascii_lowercase()).context("the account is live")?;
    let store = &cognitive.artifacts;
    let path = "AcousticData/ds1/trans.txt";
    let content = bytes::Bytes::from_static(b"a.wav\thello world\n");

    // No role yet: the customer has not granted the account anything.
    let check = inaccessible(store.put(&live, Area::Artifacts, path, content.clone(), "text/plain").await)?;
    anyhow::ensure!(check == Some(DenialKind::Permission), "{check:?}");

    let role = format!(
        "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{STORAGE_BLOB_DATA_CONTRIBUTOR}"
    );
    let assignment = format!("{storage_id}/providers/Microsoft.Authorization/roleAssignments/{}", uuid::Uuid::new_v4());
    let body = json!({"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}});
    server.arm_as_admin(&client, Method::PUT, &assignment, Some(body)).await?;

    let written = store.put(&live, Area::Artifacts, path, content.clone(), "text/plain").await?;
    anyhow::ensure!(written.size == content.len() as u64);
    anyhow::ensure!(store.read(&live, Area::Artifacts, path).await? == content, "read back");
    let listed = store.list(&live, Area::Artifacts, "AcousticData/ds1/").await?;
    anyhow::ensure!(listed.iter().map(|a| a.name.as_str()).collect::<Vec<_>>() == [path], "{listed:?}");
    anyhow::ensure!(store.list(&live, Area::Models, "").await?.is_empty(), "an area never used is empty");

    // The customer's firewall decides: default deny without the trusted-services exception refuses
    // the account; with bypass AzureServices it is admitted as a trusted service acting for it.
    let deny = |bypass: &str| json!({"properties": {"networkAcls": {"defaultAction": "Deny", "bypass": bypass}}});
    server.arm_as_admin(&client, Method::PATCH, &storage_id, Some(deny("None"))).await?;
    let check = inaccessible(store.read(&live, Area::Artifacts, path).await)?;
    anyhow::ensure!(check == Some(DenialKind::Network), "{check:?}");
    server.arm_as_admin(&client, Method::PATCH, &storage_id, Some(deny("AzureServices"))).await?;
    anyhow::ensure!(store.read(&live, Area::Artifacts, path).await? == content, "trusted service admitted");

    store.delete(&live, Area::Artifacts, path).await?;
    anyhow::ensure!(matches!(store.read(&live, Area::Artifacts, path).await, Err(ArtifactError::NotFound)));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn artifact_store_of_an_account_without_byos_is_not_available_yet() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let sub = server.boot_str(&["subscription_id"]);
    let group = format!("/subscriptions/{sub}/resourceGroups/art");
    server.arm_as_admin(&client, Method::PUT, &group, Some(json!({"location": "eastus"}))).await?;
    let account_id = format!("{group}/providers/Microsoft.CognitiveServices/accounts/plain");
    let body = json!({"location": "eastus", "kind": "SpeechServices", "sku": {"name": "S0"}});
    server.arm_as_admin(&client, Method::PUT, &format!("{account_id}?api-version=2025-09-01"), Some(body)).await?;
    let cognitive = &server.services()?.cognitive;
    let live = cognitive.account(&account_id.to_ascii_lowercase()).context("the account is live")?;
    let result = cognitive.artifacts.put(&live, Area::Artifacts, "x", bytes::Bytes::new(), "text/plain").await;
    anyhow::ensure!(matches!(result, Err(ArtifactError::ServiceStorageUnavailable)), "{result:?}");
    server.stop().await;
    Ok(())
}
