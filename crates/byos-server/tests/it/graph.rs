//! What the az CLI needs from the main listener beyond ARM: the cloud metadata at any number of
//! leading slashes, the read-only Microsoft Graph it finds there, and 401s that say why.

use anyhow::Context;
use byos_testkit::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn admin_token_for(server: &TestServer, client: &reqwest::Client, resource: &str) -> anyhow::Result<String> {
    let (id, secret) = (server.boot_str(&["admin", "client_id"]), server.boot_str(&["admin", "client_secret"]));
    server.token(client, &id, &secret, resource).await
}

/// Status, `WWW-Authenticate` and JSON body of a request.
async fn sent(request: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, String, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let challenge =
        response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    Ok((status, challenge, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn cloud_metadata_answers_at_repeated_leading_slashes_and_names_graph() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    for path in ["/metadata/endpoints", "//metadata/endpoints", "///metadata/endpoints"] {
        let url = format!("{}{path}?api-version=2022-09-01", server.base_url);
        let (status, _, body) = sent(client.get(url)).await?;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["resourceManager"], format!("{}/", server.base_url), "{path}");
        assert_eq!(body["microsoftGraphResourceId"], format!("{}/graph/", server.base_url), "{path}");
        assert_eq!(body["authentication"]["loginEndpoint"], server.base_url.as_str(), "{path}");
    }
    // Not only that route: an ARM path with a doubled slash reaches ARM, which wants a token.
    let url = format!("{}//subscriptions?api-version=2022-12-01", server.base_url);
    let admin = server.admin_token(&client).await?;
    let (status, _, body) = sent(client.get(url).bearer_auth(&admin)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"][0]["subscriptionId"], server.boot_str(&["subscription_id"]).as_str());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn graph_finds_service_principals_as_the_az_cli_asks() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let graph = format!("{}/graph/v1.0", server.base_url);
    let token = admin_token_for(&server, &client, &format!("{}/graph/", server.base_url)).await?;
    let (app_id, object_id) = (server.boot_str(&["admin", "client_id"]), server.boot_str(&["admin", "object_id"]));

    let by_name = format!("{graph}/servicePrincipals?$filter=servicePrincipalNames%2Fany(c%3Ac%20eq%20'{app_id}')");
    let (status, _, body) = sent(client.get(by_name).bearer_auth(&token)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let found = body["value"].as_array().context("value")?;
    assert_eq!(found.len(), 1, "{body}");
    assert_eq!(found[0]["id"], object_id.as_str());
    assert_eq!(found[0]["appId"], app_id.as_str());
    assert_eq!(found[0]["servicePrincipalType"], "Application");

    let nobody = format!("{graph}/servicePrincipals?$filter=appId%20eq%20'{object_id}'");
    let (status, _, body) = sent(client.get(nobody).bearer_auth(&token)).await?;
    assert_eq!((status, body["value"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{body}");

    let unknown = uuid::Uuid::new_v4().to_string();
    let body_ids = json!({"ids": [object_id, unknown], "types": ["user", "group", "servicePrincipal"]});
    let url = format!("{graph}/directoryObjects/getByIds");
    let (status, _, body) = sent(client.post(url).bearer_auth(&token).json(&body_ids)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"].as_array().map(Vec::len), Some(1), "only the object that exists: {body}");
    assert_eq!(body["value"][0]["@odata.type"], "#microsoft.graph.servicePrincipal");

    let (status, _, body) =
        sent(client.get(format!("{graph}/servicePrincipals/{object_id}")).bearer_auth(&token)).await?;
    assert_eq!((status, body["displayName"].as_str()), (StatusCode::OK, Some("byos-admin")), "{body}");
    let (status, _, body) =
        sent(client.get(format!("{graph}/servicePrincipals/{unknown}")).bearer_auth(&token)).await?;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("Request_ResourceNotFound")));

    let unsupported = format!("{graph}/servicePrincipals?$filter=accountEnabled%20eq%20true");
    let (status, _, body) = sent(client.get(unsupported).bearer_auth(&token)).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) =
        sent(client.post(format!("{graph}/servicePrincipals")).bearer_auth(&token).json(&json!({}))).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "the directory is read-only: {body}");
    let (status, _, body) = sent(client.get(format!("{graph}/users")).bearer_auth(&token)).await?;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("BadRequest")), "{body}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn graph_and_arm_tokens_open_only_their_own_api_and_401s_say_why() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client()?;
    let graph_url = format!("{}/graph/v1.0/servicePrincipals", server.base_url);
    let arm_url = format!("{}/subscriptions?api-version=2022-12-01", server.base_url);
    let arm_token = server.admin_token(&client).await?;
    let graph_token = admin_token_for(&server, &client, &format!("{}/graph/", server.base_url)).await?;
    let azure_graph_token = admin_token_for(&server, &client, "https://graph.microsoft.com").await?;

    let (status, _, _) = sent(client.get(&graph_url).bearer_auth(&azure_graph_token)).await?;
    assert_eq!(status, StatusCode::OK, "a token for Azure's Graph audience is Graph's");

    let (status, challenge, body) = sent(client.get(&graph_url).bearer_auth(&arm_token)).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("InvalidAuthenticationToken"))
    );
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("Invalid audience: 'https://management.azure.com'"), "{challenge}");

    let (status, challenge, body) = sent(client.get(&arm_url).bearer_auth(&graph_token)).await?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("InvalidAuthenticationTokenAudience"))
    );
    assert!(challenge.contains(&format!("wrong audience or resource '{}/graph/'", server.base_url)), "{challenge}");

    let tenant = server.boot_str(&["tenant_id"]);
    let (status, challenge, _) = sent(client.get(&arm_url)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.starts_with(&format!("Bearer authorization_uri=\"{}/{tenant}\"", server.base_url)),
        "{challenge}"
    );
    assert!(challenge.contains("missing 'Authorization' header"), "{challenge}");

    let mut forged = arm_token.clone();
    forged.push('x');
    let (status, challenge, body) = sent(client.get(&arm_url).bearer_auth(&forged)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(challenge.contains("error_description=\"The access token is invalid: the token"), "{challenge}");
    assert_eq!(body["error"]["message"].as_str().map(|m| challenge.contains(m)), Some(true), "{challenge} {body}");
    let (status, challenge, _) = sent(client.get(&graph_url).bearer_auth(&forged)).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("Access token validation failure: the token"), "{challenge}");
    server.stop().await;
    Ok(())
}
