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

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle)?);
        } else if path.is_file() && std::fs::read(&path)?.windows(needle.len()).any(|w| w == needle) {
            found.push(path);
        }
    }
    Ok(found)
}

fn object_count(dir: &std::path::Path) -> anyhow::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.path().is_dir() && name != "tmp" {
            count += object_count(&entry.path())?;
        } else if entry.path().is_file() {
            count += 1;
        }
    }
    Ok(count)
}

#[tokio::test]
async fn artifact_store_keeps_other_accounts_artifacts_encrypted_in_service_storage() -> anyhow::Result<()> {
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
    let store = &cognitive.artifacts;
    // Larger than one 64 KiB chunk, and recognisable on disk if it were ever written in plaintext.
    let secret: Vec<u8> = b"confidential-transcript-".iter().copied().cycle().take(150_000).collect();
    let content = bytes::Bytes::from(secret.clone());

    store.put(&live, Area::Artifacts, "TranscriptionData/t1/result.json", content.clone(), "application/json").await?;
    anyhow::ensure!(store.read(&live, Area::Artifacts, "TranscriptionData/t1/result.json").await? == content);
    let replaced = bytes::Bytes::from_static(b"{}");
    store.put(&live, Area::Artifacts, "TranscriptionData/t1/result.json", replaced.clone(), "application/json").await?;
    anyhow::ensure!(store.read(&live, Area::Artifacts, "TranscriptionData/t1/result.json").await? == replaced);
    store.put(&live, Area::Models, "m1/model.bin", content.clone(), "application/octet-stream").await?;
    let listed = store.list(&live, Area::Artifacts, "TranscriptionData/").await?;
    anyhow::ensure!(listed.len() == 1 && listed[0].size == 2, "{listed:?}");
    anyhow::ensure!(store.list(&live, Area::AudioLogs, "").await?.is_empty());
    let objects = server.data_dir.join("objects-cognitive");
    anyhow::ensure!(object_count(&objects)? == 2, "the overwritten object is gone");
    let leaked = files_containing(&server.data_dir, b"confidential-transcript-")?;
    anyhow::ensure!(leaked.is_empty(), "plaintext on disk: {leaked:?}");

    store.delete(&live, Area::Artifacts, "TranscriptionData/t1/result.json").await?;
    anyhow::ensure!(matches!(
        store.read(&live, Area::Artifacts, "TranscriptionData/t1/result.json").await,
        Err(ArtifactError::NotFound)
    ));
    // Deleting keeps the account's artifacts for a restore; purging removes them.
    server.arm_as_admin(&client, Method::DELETE, &format!("{account_id}?api-version=2025-09-01"), None).await?;
    anyhow::ensure!(object_count(&objects)? == 1, "a soft-deleted account keeps its artifacts");
    let deleted = format!(
        "/subscriptions/{sub}/providers/Microsoft.CognitiveServices/locations/eastus/resourceGroups/art/deletedAccounts/plain?api-version=2025-09-01"
    );
    server.arm_as_admin(&client, Method::DELETE, &deleted, None).await?;
    anyhow::ensure!(object_count(&objects)? == 0, "a purged account's artifacts are gone");
    server.stop().await;
    Ok(())
}

/// Moves every soft-deleted account's scheduled purge into the past (as 48 hours passing would).
async fn age_deleted_accounts(dir: &std::path::Path) -> anyhow::Result<()> {
    use byos_store::MetaStore;
    let table = byos_store::Table("cs_deleted_accounts");
    let store = byos_store::RedbStore::open(&dir.join("meta.redb"))?;
    let mut batch = byos_store::Batch::new();
    for (key, bytes) in store.scan(table, "").await? {
        let mut deleted: Value = serde_json::from_slice(&bytes)?;
        deleted["scheduledPurgeDate"] = json!("2000-01-01T00:00:00Z");
        batch = batch.put(table, key, serde_json::to_vec(&deleted)?);
    }
    store.commit(batch).await?;
    Ok(())
}

#[tokio::test]
async fn soft_deleted_accounts_are_purged_with_their_artifacts_after_their_retention() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_in(dir.path()).await?;
    let client = server.client()?;
    let sub = server.boot_str(&["subscription_id"]);
    let group = format!("/subscriptions/{sub}/resourceGroups/old");
    server.arm_as_admin(&client, Method::PUT, &group, Some(json!({"location": "eastus"}))).await?;
    let account_id = format!("{group}/providers/Microsoft.CognitiveServices/accounts/old");
    let body = json!({"location": "eastus", "kind": "SpeechServices", "sku": {"name": "S0"}});
    server.arm_as_admin(&client, Method::PUT, &format!("{account_id}?api-version=2025-09-01"), Some(body)).await?;
    let cognitive = &server.services()?.cognitive;
    let live = cognitive.account(&account_id.to_ascii_lowercase()).context("the account is live")?;
    cognitive.artifacts.put(&live, Area::Models, "m/model.bin", bytes::Bytes::from_static(b"m"), "x/y").await?;
    server.arm_as_admin(&client, Method::DELETE, &format!("{account_id}?api-version=2025-09-01"), None).await?;
    server.stop().await;

    age_deleted_accounts(dir.path()).await?;
    let server = TestServer::start_in(dir.path()).await?;
    let client = server.client()?;
    let admin = server.admin_token(&client).await?;
    let deleted = format!(
        "{}/subscriptions/{sub}/providers/Microsoft.CognitiveServices/locations/eastus/resourceGroups/old/deletedAccounts/old?api-version=2025-09-01",
        server.base_url
    );
    // The watch runs at start and then every minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = client.get(&deleted).bearer_auth(&admin).send().await?.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "still there after its retention: {status}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::ensure!(object_count(&dir.path().join("objects-cognitive"))? == 0, "its artifacts went with it");
    server.stop().await;
    Ok(())
}
