//! The real server, in-process on a loopback port, driven over HTTPS: start-up, the token
//! service, ARM semantics and denials, the control socket, restart.

use anyhow::Context;
use byos_testkit::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod artifacts;
mod blob_api;
mod graph;
mod speech_sockets;
mod transcriptions;
mod unauthorized;

const API: &str = "api-version=2021-04-01";

async fn get_json(client: &reqwest::Client, url: String, token: &str) -> anyhow::Result<(StatusCode, Value)> {
    let response = client.get(url).bearer_auth(token).send().await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

fn group_url(server: &TestServer, group: &str) -> String {
    format!("{}/subscriptions/{}/resourcegroups/{group}?{API}", server.base_url, server.boot_str(&["subscription_id"]))
}

#[tokio::test]
async fn admin_manages_groups_and_new_principals_get_explained_denials() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let admin = server.admin_token(&client).await?;
    let created =
        client.put(group_url(&server, "rg1")).bearer_auth(&admin).json(&json!({"location": "eastus"})).send().await?;
    assert_eq!(created.status(), StatusCode::CREATED);

    let principal =
        byos_server::control::call(&server.data_dir, "POST", "/operator/principals", Some(json!({"name": "app"})))
            .await?;
    let (id, secret) =
        (principal["client_id"].as_str().context("client_id")?, principal["client_secret"].as_str().context("secret")?);
    let token = server.token(&client, id, secret, "https://management.azure.com").await?;
    let (status, body) = get_json(&client, group_url(&server, "rg1"), &token).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "AuthorizationFailed");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("'Microsoft.Resources/subscriptions/resourceGroups/read'"), "{message}");
    assert_eq!(body["error"]["additionalInfo"][0]["type"], "ByosAccessExplanation");
    assert_eq!(body["error"]["additionalInfo"][0]["info"]["caller"]["objectId"], principal["object_id"]);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_tokens_and_bad_requests_get_arm_errors() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let admin = server.admin_token(&client).await?;

    let mut forged = admin.clone();
    forged.insert(forged.len() / 2, 'x');
    let (status, body) = get_json(&client, group_url(&server, "any"), &forged).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("InvalidAuthenticationToken"))
    );

    let admin_id = server.boot_str(&["admin", "client_id"]);
    let storage_token = server
        .token(&client, &admin_id, &server.boot_str(&["admin", "client_secret"]), "https://storage.azure.com")
        .await?;
    let (status, body) = get_json(&client, group_url(&server, "any"), &storage_token).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("InvalidAuthenticationTokenAudience"))
    );

    let no_version = group_url(&server, "any").replace(&format!("?{API}"), "");
    let (status, body) = get_json(&client, no_version, &admin).await?;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("MissingApiVersionParameter")));

    let bad_json = client.put(group_url(&server, "half")).bearer_auth(&admin).body("{\"location\": ").send().await?;
    assert_eq!(bad_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(bad_json.json::<Value>().await?["error"]["code"], "InvalidRequestContent");
    let (status, _) = get_json(&client, group_url(&server, "half"), &admin).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "a rejected PUT must not leave a group behind");

    let huge = client.put(group_url(&server, "huge")).bearer_auth(&admin).body(vec![b' '; 2 << 20]).send().await?;
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let bad_assignment = format!(
        "{}/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments/not-a-guid?{API}",
        server.base_url,
        server.boot_str(&["subscription_id"])
    );
    let response = client.put(bad_assignment).bearer_auth(&admin).json(&json!({"properties": {}})).send().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await?["error"]["code"], "InvalidRoleAssignmentId");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn token_endpoint_speaks_entra_errors() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let url = format!("{}/{}/oauth2/v2.0/token", server.base_url, server.boot_str(&["tenant_id"]));
    let admin_id = server.boot_str(&["admin", "client_id"]);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", admin_id.as_str()),
        ("client_secret", "wrong"),
        ("scope", "https://management.azure.com/.default"),
    ];
    let response = client.post(&url).form(&form).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"][0], 7000215);

    let no_default = [
        ("grant_type", "client_credentials"),
        ("client_id", admin_id.as_str()),
        ("client_secret", "x"),
        ("scope", "user.read"),
    ];
    let body: Value = client.post(&url).form(&no_default).send().await?.json().await?;
    assert_eq!(body["error"], "invalid_scope");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn imds_serves_no_identity_until_one_is_bound() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com",
        server.base_url
    );
    let response = client.get(&url).header("Metadata", "true").send().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert!(body["error_description"].as_str().unwrap_or_default().contains("bind-host"), "{body}");
    let missing_header = client.get(&url).send().await?;
    assert_eq!(missing_header.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn restart_keeps_tenant_principals_and_groups() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let first = TestServer::start_in(dir.path()).await?;
    let client = first.client()?;
    let admin = first.admin_token(&client).await?;
    client
        .put(group_url(&first, "kept"))
        .bearer_auth(&admin)
        .json(&json!({"location": "eastus"}))
        .send()
        .await?
        .error_for_status()?;
    let boot_before = first.boot.clone();
    first.stop().await;
    assert!(!dir.path().join("bootstrap.json").exists(), "a stopped server must not look ready");

    let second = TestServer::start_in(dir.path()).await?;
    for field in ["tenant_id", "subscription_id"] {
        assert_eq!(second.boot[field], boot_before[field]);
    }
    assert_eq!(second.boot["admin"], boot_before["admin"]);
    let client = second.client()?;
    let admin = second.admin_token(&client).await?;
    let (status, body) = get_json(&client, group_url(&second, "kept"), &admin).await?;
    assert_eq!((status, body["name"].as_str()), (StatusCode::OK, Some("kept")));
    second.stop().await;
    Ok(())
}

#[tokio::test]
async fn control_commands_fail_clearly_without_a_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let err =
        byos_server::control::call(dir.path(), "POST", "/operator/principals", Some(json!({"name": "x"}))).await.err();
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("no byos server is running"), "{message}");
    Ok(())
}

#[tokio::test]
async fn secrets_and_keys_are_not_stored_in_plaintext() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_in(dir.path()).await?;
    let secret = server.boot_str(&["admin", "client_secret"]);
    server.stop().await;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path)?.filter_map(|e| e.ok().map(|e| e.path())));
            continue;
        }
        let bytes = std::fs::read(&path)?;
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "admin secret in plaintext in {}",
            path.display()
        );
        assert!(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"), "PEM private key in {}", path.display());
    }
    Ok(())
}

fn audited_vault_url(server: &TestServer) -> String {
    format!(
        "{}/subscriptions/{}/resourceGroups/audited/providers/Microsoft.KeyVault/vaults/auditedvault?api-version=2023-07-01",
        server.base_url,
        server.boot_str(&["subscription_id"])
    )
}

async fn admin_vault_token(server: &TestServer, client: &reqwest::Client) -> anyhow::Result<String> {
    server
        .token(
            client,
            &server.boot_str(&["admin", "client_id"]),
            &server.boot_str(&["admin", "client_secret"]),
            "https://vault.azure.net",
        )
        .await
}

/// Creates an access-policy vault through ARM (the admin may use every key) and a key in it with
/// `uses` unwrap operations; returns the vault name.
async fn vault_with_audited_uses(server: &TestServer, uses: usize) -> anyhow::Result<String> {
    let client = server.client()?;
    let admin = server.admin_token(&client).await?;
    client
        .put(group_url(server, "audited"))
        .bearer_auth(&admin)
        .json(&json!({"location": "eastus"}))
        .send()
        .await?
        .error_for_status()?;
    let vault_url = audited_vault_url(server);
    let policy = json!({"tenantId": server.boot["tenant_id"], "objectId": server.boot["admin"]["object_id"], "permissions": {"keys": ["all"]}});
    let body = json!({"location": "eastus", "properties": {"tenantId": server.boot["tenant_id"], "sku": {"family": "A", "name": "standard"}, "accessPolicies": [policy]}});
    let vault: Value =
        client.put(vault_url).bearer_auth(&admin).json(&body).send().await?.error_for_status()?.json().await?;
    let uri = vault["properties"]["vaultUri"].as_str().context("vaultUri")?.to_owned();
    let token = admin_vault_token(server, &client).await?;
    let key: Value = client
        .post(format!("{uri}keys/audited/create?api-version=7.4"))
        .bearer_auth(&token)
        .json(&json!({"kty": "RSA", "key_size": 2048}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let kid = key["key"]["kid"].as_str().context("kid")?.to_owned();
    let wrapped: Value = client
        .post(format!("{kid}/wrapkey?api-version=7.4"))
        .bearer_auth(&token)
        .json(&json!({"alg": "RSA-OAEP-256", "value": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    for _ in 0..uses {
        client
            .post(format!("{kid}/unwrapkey?api-version=7.4"))
            .bearer_auth(&token)
            .json(&json!({"alg": "RSA-OAEP-256", "value": wrapped["value"]}))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok("auditedvault".into())
}

async fn audit_verdict(server: &TestServer, vault: &str) -> anyhow::Result<Value> {
    let answer =
        byos_server::control::call(&server.data_dir, "GET", &format!("/operator/audit?vault={vault}"), None).await?;
    Ok(answer["verification"].clone())
}

/// Edits the stored audit log of a stopped server directly in its database, as someone with the
/// data dir could: `change` gets the vault's entries (key, JSON) and returns the batch to commit.
async fn tamper(
    dir: &std::path::Path,
    change: impl FnOnce(Vec<(String, Value)>) -> anyhow::Result<byos_store::Batch>,
) -> anyhow::Result<()> {
    use byos_store::MetaStore;
    let store = byos_store::RedbStore::open(&dir.join("meta.redb"))?;
    let rows = store.scan(byos_store::Table("kv_audit"), "auditedvault/").await?;
    let entries =
        rows.into_iter().map(|(k, v)| Ok((k, serde_json::from_slice(&v)?))).collect::<anyhow::Result<Vec<_>>>()?;
    store.commit(change(entries)?).await?;
    Ok(())
}

/// Adds the deletion of every entry after the first `keep` to `batch`.
fn without_entries_after(entries: &[(String, Value)], keep: usize, batch: byos_store::Batch) -> byos_store::Batch {
    entries.iter().skip(keep).fold(batch, |batch, (key, _)| batch.delete(byos_store::Table("kv_audit"), key.clone()))
}

#[tokio::test]
async fn audit_verify_detects_entries_edited_or_removed_in_the_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_in(dir.path()).await?;
    let vault = vault_with_audited_uses(&server, 3).await?;
    let verdict = audit_verdict(&server, &vault).await?;
    assert_eq!((verdict["ok"].as_bool(), verdict["entries"].as_u64()), (Some(true), Some(5)), "{verdict}");
    server.stop().await;

    // An unwrap recorded as denied instead of succeeded.
    tamper(dir.path(), |entries| {
        let (key, mut entry) = entries.get(3).cloned().context("entry 3")?;
        entry["result"] = json!("denied");
        Ok(byos_store::Batch::new().put(byos_store::Table("kv_audit"), key, serde_json::to_vec(&entry)?))
    })
    .await?;
    let server = TestServer::start_in(dir.path()).await?;
    let verdict = audit_verdict(&server, &vault).await?;
    assert_eq!(verdict["ok"].as_bool(), Some(false), "{verdict}");
    assert!(verdict["problem"].as_str().unwrap_or_default().contains("entry 3 was modified"), "{verdict}");
    server.stop().await;

    // The edited entry removed altogether.
    tamper(dir.path(), |entries| {
        Ok(byos_store::Batch::new().delete(byos_store::Table("kv_audit"), entries.get(3).context("entry 3")?.0.clone()))
    })
    .await?;
    let server = TestServer::start_in(dir.path()).await?;
    let verdict = audit_verdict(&server, &vault).await?;
    assert_eq!((verdict["ok"].as_bool(), verdict["entries"].as_u64()), (Some(false), Some(4)), "{verdict}");
    assert!(verdict["problem"].as_str().unwrap_or_default().contains("entry 3 is missing"), "{verdict}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn audit_verify_detects_the_newest_entries_cut_off_the_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_in(dir.path()).await?;
    let vault = vault_with_audited_uses(&server, 2).await?;
    server.stop().await;

    // What remains is a valid chain; only the sealed head shows that it used to be longer.
    tamper(dir.path(), |entries| Ok(without_entries_after(&entries, 2, byos_store::Batch::new()))).await?;
    let server = TestServer::start_in(dir.path()).await?;
    let verdict = audit_verdict(&server, &vault).await?;
    assert_eq!((verdict["ok"].as_bool(), verdict["entries"].as_u64()), (Some(false), Some(2)), "{verdict}");
    assert!(verdict["problem"].as_str().unwrap_or_default().contains("entries 2 to 3 were cut off"), "{verdict}");
    // The log goes on after its sealed head, so the cut stays visible as a gap.
    use_key_once(&server).await?;
    let verdict = audit_verdict(&server, &vault).await?;
    assert!(
        verdict["problem"].as_str().unwrap_or_default().contains("entry 2 is missing (found sequence number 4"),
        "{verdict}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn audit_verify_detects_a_cut_that_also_removed_the_sealed_head() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_in(dir.path()).await?;
    let vault = vault_with_audited_uses(&server, 2).await?;
    server.stop().await;
    tamper(dir.path(), |entries| {
        Ok(without_entries_after(
            &entries,
            2,
            byos_store::Batch::new().delete(byos_store::Table("kv_audit_head"), "auditedvault"),
        ))
    })
    .await?;
    let server = TestServer::start_in(dir.path()).await?;
    assert!(
        audit_verdict(&server, &vault).await?["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("sealed head is missing")
    );
    // The next append finds the head gone and records that in the chain before going on.
    use_key_once(&server).await?;
    let verdict = audit_verdict(&server, &vault).await?;
    assert_eq!(verdict["ok"].as_bool(), Some(false), "{verdict}");
    assert!(
        verdict["problem"].as_str().unwrap_or_default().contains("entry 2 records that the log was tampered with"),
        "{verdict}"
    );
    server.stop().await;
    Ok(())
}

/// One more audited operation on the audited vault's key (a get).
async fn use_key_once(server: &TestServer) -> anyhow::Result<()> {
    let client = server.client()?;
    let token = admin_vault_token(server, &client).await?;
    let admin = server.admin_token(&client).await?;
    let vault_url = audited_vault_url(server);
    let vault: Value = client.get(vault_url).bearer_auth(&admin).send().await?.error_for_status()?.json().await?;
    let uri = vault["properties"]["vaultUri"].as_str().context("vaultUri")?;
    client.get(format!("{uri}keys/audited?api-version=7.4")).bearer_auth(&token).send().await?.error_for_status()?;
    Ok(())
}

/// The ARM activity log is chained and anchored like the key-usage log: an entry removed from the
/// store of a stopped server is detected by `byos audit activity --verify` (F17).
#[tokio::test]
async fn activity_log_detects_an_entry_removed_in_the_store() -> anyhow::Result<()> {
    use byos_store::MetaStore;
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_in(dir.path()).await?;
    let client = server.client()?;
    let admin = server.admin_token(&client).await?;
    for group in ["act1", "act2", "act3"] {
        client.put(group_url(&server, group)).bearer_auth(&admin).json(&json!({"location": "eastus"})).send().await?;
    }
    let activity = |server: &TestServer| {
        let dir = server.data_dir.clone();
        async move { byos_server::control::call(&dir, "GET", "/operator/activity", None).await }
    };
    let answer = activity(&server).await?;
    assert_eq!(answer["verification"]["ok"], json!(true), "{answer}");
    let recorded = answer["entries"].as_array().map(Vec::len).unwrap_or_default();
    assert!(recorded >= 3, "{answer}");
    server.stop().await;

    let store = byos_store::RedbStore::open(&dir.path().join("meta.redb"))?;
    let rows = store.scan(byos_store::Table("arm_activity"), "arm/").await?;
    let (second, _) = rows.get(1).context("a second entry")?;
    store.commit(byos_store::Batch::new().delete(byos_store::Table("arm_activity"), second.clone())).await?;
    drop(store);

    let server = TestServer::start_in(dir.path()).await?;
    let answer = activity(&server).await?;
    assert_eq!(answer["verification"]["ok"], json!(false), "{answer}");
    assert!(answer["verification"]["problem"].as_str().unwrap_or_default().contains("entry 1 is missing"), "{answer}");
    server.stop().await;
    Ok(())
}

/// Regression: a request refused before its body was read (hyper then closes the connection) was
/// answered as if the connection stayed open, and a client reusing it found it closed under it
/// (`RemoteDisconnected` in the blob suite under load). Such answers now say `Connection: close`.
#[tokio::test]
async fn regression_a_refusal_before_the_body_is_read_says_connection_close() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.http1_client()?;
    let close = |response: &reqwest::Response| {
        response.headers().get(reqwest::header::CONNECTION).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    // An anonymous upload to an account that does not exist is refused before its body is read.
    let blob = format!("{}/noaccount/c/b", server.boot_str(&["blob_endpoint"]).trim_end_matches('/'));
    let refused = client
        .put(&blob)
        .header("x-ms-blob-type", "BlockBlob")
        .header("x-ms-version", "2025-01-05")
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await?;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    assert_eq!(close(&refused).as_deref(), Some("close"), "the body was never read");
    let body = json!({"location": "eastus"});
    let admin = server.admin_token(&client).await?;
    let created = client.put(group_url(&server, "read")).bearer_auth(&admin).json(&body).send().await?;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(close(&created), None, "a request whose body was read keeps its connection");
    let listed = client.get(group_url(&server, "read")).bearer_auth(&admin).send().await?;
    assert_eq!((listed.status(), close(&listed)), (StatusCode::OK, None), "no body, nothing to say");
    server.stop().await;
    Ok(())
}
