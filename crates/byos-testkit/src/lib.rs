//! Test support: [`TestServer`] starts the real server (all services, real TLS, real store) in this
//! process on a free loopback port, in a temporary data dir, and hands out HTTPS clients that trust
//! its CA. Used by integration tests and benchmarks; never by the server itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use byos_server::{RunningServer, ServeConfig};
use serde_json::Value;

pub use tokio_tungstenite::tungstenite;

/// A client WebSocket over TLS ([`TestServer::websocket`]).
pub type WebSocket = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A running in-process byos with its bootstrap facts.
pub struct TestServer {
    server: Option<RunningServer>,
    _dir: Option<tempfile::TempDir>,
    pub data_dir: PathBuf,
    /// The parsed `bootstrap.json`.
    pub boot: Value,
    pub base_url: String,
    ca_pem: Vec<u8>,
}

impl TestServer {
    /// Starts a server on a fresh temporary data dir.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh temporary data dir with its configuration changed by `configure`
    /// (e.g. a short customer-key cache).
    pub async fn start_with(configure: impl FnOnce(&mut ServeConfig)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = ServeConfig::new(dir.path().to_path_buf(), 0);
        configure(&mut config);
        let mut server = Self::start_config(config).await?;
        server._dir = Some(dir);
        Ok(server)
    }

    /// Starts a server on `data_dir` (kept after the server stops).
    pub async fn start_in(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_config(ServeConfig::new(data_dir.to_path_buf(), 0)).await
    }

    async fn start_config(config: ServeConfig) -> anyhow::Result<Self> {
        let data_dir = config.data_dir.clone();
        let server = byos_server::start(config).await?;
        let boot: Value = serde_json::from_slice(&std::fs::read(data_dir.join("bootstrap.json"))?)?;
        let ca_file = boot["ca_file"].as_str().context("bootstrap.json has no ca_file")?;
        let ca_pem = std::fs::read(ca_file)?;
        Ok(TestServer {
            base_url: server.base_url.clone(),
            server: Some(server),
            _dir: None,
            data_dir: data_dir.to_path_buf(),
            boot,
            ca_pem,
        })
    }

    /// A new HTTPS client (its own connection pool) that trusts byos's CA.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem)?;
        Ok(reqwest::Client::builder().tls_certs_only([ca]).build()?)
    }

    /// A new HTTPS client that speaks HTTP/1.1 only (as the Python SDKs do), trusting byos's CA.
    pub fn http1_client(&self) -> anyhow::Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(&self.ca_pem)?;
        Ok(reqwest::Client::builder().tls_certs_only([ca]).http1_only().build()?)
    }

    /// A WebSocket to `url` (`wss://`, on one of the server's listeners) with these request
    /// headers, over TLS trusting byos's CA: the Speech SDK's sockets, as a bench or test drives them.
    pub async fn websocket(&self, url: &str, headers: &[(&str, &str)]) -> anyhow::Result<WebSocket> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;

        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(http::HeaderName::from_bytes(name.as_bytes())?, value.parse()?);
        }
        let host = request.uri().host().context("the URL has no host")?.trim_matches(['[', ']']).to_owned();
        let port = request.uri().port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from(host)?;
        let tls = tokio_rustls::TlsConnector::from(self.tls_config()?).connect(name, tcp).await?;
        let (socket, _) = tokio_tungstenite::client_async(request, tls).await?;
        Ok(socket)
    }

    fn tls_config(&self) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca_pem.as_slice()) {
            roots.add(cert?)?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(std::sync::Arc::new(config))
    }

    /// Creates a Speech account `name` (S0) in resource group `group` of the bootstrap
    /// subscription (created too); answers its data-plane endpoint (ending in `/`) and key 1.
    pub async fn speech_account(
        &self,
        client: &reqwest::Client,
        group: &str,
        name: &str,
    ) -> anyhow::Result<(String, String)> {
        self.cognitive_account(client, group, name, serde_json::json!({"kind": "SpeechServices"})).await
    }

    /// Creates a Document Intelligence account `name` (kind FormRecognizer, S0) with a
    /// system-assigned identity (what reads URL sources in byos storage), as
    /// [`TestServer::speech_account`] does.
    pub async fn document_account(
        &self,
        client: &reqwest::Client,
        group: &str,
        name: &str,
    ) -> anyhow::Result<(String, String)> {
        let fields = serde_json::json!({"kind": "FormRecognizer", "identity": {"type": "SystemAssigned"}});
        self.cognitive_account(client, group, name, fields).await
    }

    /// Creates a Cognitive Services account of the kind (and identity) `fields` give; its endpoint
    /// (ending in `/`) and key 1.
    async fn cognitive_account(
        &self,
        client: &reqwest::Client,
        group: &str,
        name: &str,
        fields: Value,
    ) -> anyhow::Result<(String, String)> {
        const API_VERSION: &str = "api-version=2025-09-01";
        let location = Some(self.boot_str(&["location"])).filter(|l| !l.is_empty()).unwrap_or("eastus".into());
        let group = format!("/subscriptions/{}/resourceGroups/{group}", self.boot_str(&["subscription_id"]));
        self.arm_as_admin(client, reqwest::Method::PUT, &group, Some(serde_json::json!({"location": location})))
            .await?;
        let account_id = format!("{group}/providers/Microsoft.CognitiveServices/accounts/{name}?{API_VERSION}");
        let mut body = serde_json::json!({"location": location, "sku": {"name": "S0"}, "properties": {}});
        if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        self.arm_as_admin(client, reqwest::Method::PUT, &account_id, Some(body)).await?;
        let account = self.arm_as_admin(client, reqwest::Method::GET, &account_id, None).await?;
        let endpoint = account["properties"]["endpoint"].as_str().context("properties.endpoint")?;
        let keys_path = account_id.replace('?', "/listKeys?");
        let keys = self.arm_as_admin(client, reqwest::Method::POST, &keys_path, None).await?;
        let endpoint = if endpoint.ends_with('/') { endpoint.to_owned() } else { format!("{endpoint}/") };
        Ok((endpoint, keys["key1"].as_str().context("key1")?.to_owned()))
    }

    /// `boot[a][b]...` as a string.
    pub fn boot_str(&self, path: &[&str]) -> String {
        path.iter().fold(&self.boot, |v, k| &v[*k]).as_str().unwrap_or_default().to_owned()
    }

    /// A token for `client_id`/`secret` with audience `resource` through the token endpoint.
    pub async fn token(
        &self,
        client: &reqwest::Client,
        client_id: &str,
        secret: &str,
        resource: &str,
    ) -> anyhow::Result<String> {
        let url = format!("{}/{}/oauth2/v2.0/token", self.base_url, self.boot_str(&["tenant_id"]));
        let scope = format!("{resource}/.default");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope.as_str()),
        ];
        let response = client.post(url).form(&form).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("token request failed: {status} {body}");
        }
        Ok(body["access_token"].as_str().context("no access_token")?.to_owned())
    }

    /// A resource-manager token for the bootstrap admin.
    pub async fn admin_token(&self, client: &reqwest::Client) -> anyhow::Result<String> {
        self.token(
            client,
            &self.boot_str(&["admin", "client_id"]),
            &self.boot_str(&["admin", "client_secret"]),
            "https://management.azure.com",
        )
        .await
    }

    /// An ARM request as the bootstrap admin (api-version 2023-05-01 unless `path` names one);
    /// fails unless it succeeds. Returns the JSON answer (`null` when there is none).
    pub async fn arm_as_admin(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let admin = self.admin_token(client).await?;
        let separator = if path.contains('?') { '&' } else { '?' };
        let version =
            if path.contains("api-version=") { String::new() } else { format!("{separator}api-version=2023-05-01") };
        let mut request =
            client.request(method.clone(), format!("{}{path}{version}", self.base_url)).bearer_auth(&admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{method} {path}: {status} {text}");
        Ok(if text.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text)? })
    }

    /// The server's in-process services.
    pub fn services(&self) -> anyhow::Result<&byos_server::Services> {
        Ok(&self.server.as_ref().context("the server is stopped")?.services)
    }

    /// Stops the server the way SIGTERM does.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}
