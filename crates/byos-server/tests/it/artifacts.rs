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

pub(crate) const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";

/// Registers `byoxPreview` and has the operator approve it.
pub(crate) async fn byos_feature(server: &TestServer, client: &reqwest::Client, sub: &str) -> anyhow::Result<()> {
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

    // Links: a plain URL needs the reader's own access; a user delegation SAS signed through the
    // account's identity works for anyone holding it.
    let plain = store.link(&live, Area::Artifacts, path, std::time::Duration::ZERO).await?;
    anyhow::ensure!(
        !plain.contains('?') && plain.ends_with("/artstore/customspeech-artifacts/AcousticData/ds1/trans.txt"),
        "{plain}"
    );
    let anonymous = client.get(&plain).header("x-ms-version", "2025-01-05").send().await?.status();
    anyhow::ensure!(!anonymous.is_success(), "a plain link is not readable without access: {anonymous}");
    let link = store.link(&live, Area::Artifacts, path, std::time::Duration::from_secs(600)).await?;
    let fetched = client.get(&link).send().await?;
    anyhow::ensure!(fetched.status().is_success(), "SAS link: {}", fetched.status());
    anyhow::ensure!(fetched.bytes().await? == content, "the link reads the artifact");

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
    // The record goes in the purge's commit, its objects just after: wait for them too.
    let objects = dir.path().join("objects-cognitive");
    while object_count(&objects)? != 0 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "its artifacts did not go with it");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.stop().await;
    Ok(())
}

const KEY_VAULT_CRYPTO_OFFICER: &str = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603";
const KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";

async fn assign(
    server: &TestServer,
    client: &reqwest::Client,
    scope: &str,
    role: &str,
    principal: &str,
) -> anyhow::Result<()> {
    let sub = server.boot_str(&["subscription_id"]);
    let role = format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}");
    let path = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{}", uuid::Uuid::new_v4());
    let body = json!({"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}});
    server.arm_as_admin(client, Method::PUT, &path, Some(body)).await.map(|_| ())
}

/// A Key Vault data-plane request as the bootstrap admin.
async fn vault_call(
    server: &TestServer,
    client: &reqwest::Client,
    method: Method,
    url: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let id = server.boot_str(&["admin", "client_id"]);
    let secret = server.boot_str(&["admin", "client_secret"]);
    let token = server.token(client, &id, &secret, "https://vault.azure.net").await?;
    let response =
        client.request(method, format!("{url}?api-version=7.4")).bearer_auth(token).json(&body).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "{url}: {status} {body}");
    Ok(body)
}

#[tokio::test]
async fn customer_key_revocation_makes_service_held_artifacts_unreadable_until_access_returns() -> anyhow::Result<()> {
    let server = TestServer::start_with(|config| config.cmk_cache = std::time::Duration::from_secs(1)).await?;
    let client = server.client()?;
    let sub = server.boot_str(&["subscription_id"]);
    let tenant = server.boot_str(&["tenant_id"]);
    let admin = server.boot_str(&["admin", "object_id"]);
    let group = format!("/subscriptions/{sub}/resourceGroups/cmk");
    server.arm_as_admin(&client, Method::PUT, &group, Some(json!({"location": "eastus"}))).await?;
    let vault_id = format!("{group}/providers/Microsoft.KeyVault/vaults/cmkvault");
    let vault = json!({"location": "eastus", "properties": {"tenantId": tenant, "sku": {"family": "A", "name": "standard"},
        "enableRbacAuthorization": true, "enablePurgeProtection": true, "softDeleteRetentionInDays": 7}});
    let vault = server.arm_as_admin(&client, Method::PUT, &vault_id, Some(vault)).await?;
    let vault_uri = vault["properties"]["vaultUri"].as_str().context("vaultUri")?.to_owned();
    assign(&server, &client, &vault_id, KEY_VAULT_CRYPTO_OFFICER, &admin).await?;
    let key = vault_call(
        &server,
        &client,
        Method::POST,
        &format!("{vault_uri}keys/cmk/create"),
        json!({"kty": "RSA", "key_size": 2048}),
    )
    .await?;
    let kid = key["key"]["kid"].as_str().context("kid")?.to_owned();
    let version = kid.rsplit('/').next().context("version")?.to_owned();

    let account_id = format!("{group}/providers/Microsoft.CognitiveServices/accounts/cmkspeech");
    let account_path = format!("{account_id}?api-version=2025-09-01");
    let body = json!({"location": "eastus", "kind": "SpeechServices", "sku": {"name": "S0"}, "identity": {"type": "SystemAssigned"}});
    let account = server.arm_as_admin(&client, Method::PUT, &account_path, Some(body)).await?;
    let principal = account["identity"]["principalId"].as_str().context("principalId")?.to_owned();
    assign(&server, &client, &vault_id, KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, &principal).await?;
    let cognitive = &server.services()?.cognitive;
    let live = || cognitive.account(&account_id.to_ascii_lowercase()).context("the account is live");
    let store = &cognitive.artifacts;
    let content = bytes::Bytes::from_static(b"custom model weights");
    store.put(&*live()?, Area::Models, "m1/model.bin", content.clone(), "application/octet-stream").await?;

    // Turning the customer key on re-wraps the KEK only: what was written before stays readable.
    let encryption = |source: &str| {
        json!({"properties": {"encryption": {"keySource": source, "keyVaultProperties":
        {"keyName": "cmk", "keyVersion": version, "keyVaultUri": vault_uri}}}})
    };
    server.arm_as_admin(&client, Method::PATCH, &account_path, Some(encryption("Microsoft.KeyVault"))).await?;
    anyhow::ensure!(
        store.read(&*live()?, Area::Models, "m1/model.bin").await? == content,
        "readable under the customer key"
    );

    // Disabling the key makes the data unreadable once the cached KEK expires.
    let key_url = format!("{vault_uri}keys/cmk/{version}");
    vault_call(&server, &client, Method::PATCH, &key_url, json!({"attributes": {"enabled": false}})).await?;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    match store.read(&*live()?, Area::Models, "m1/model.bin").await {
        Err(e @ ArtifactError::KeyUnavailable(_)) => {
            anyhow::ensure!(e.to_api_error().code == "CustomerManagedKeyUnavailable")
        }
        other => anyhow::bail!("expected the key to be unavailable, got {other:?}"),
    }
    // Enabling it again restores access at once.
    vault_call(&server, &client, Method::PATCH, &key_url, json!({"attributes": {"enabled": true}})).await?;
    anyhow::ensure!(store.read(&*live()?, Area::Models, "m1/model.bin").await? == content, "readable again");

    // Back to service-managed keys: the data no longer depends on the vault.
    server.arm_as_admin(&client, Method::PATCH, &account_path, Some(encryption("Microsoft.CognitiveServices"))).await?;
    vault_call(&server, &client, Method::PATCH, &key_url, json!({"attributes": {"enabled": false}})).await?;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    anyhow::ensure!(
        store.read(&*live()?, Area::Models, "m1/model.bin").await? == content,
        "readable without the vault"
    );
    server.stop().await;
    Ok(())
}
