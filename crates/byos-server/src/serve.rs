//! `byos serve`: opens the data dir, wires every service, binds the listeners, writes
//! `bootstrap.json`, and shuts down cleanly on request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use byos_arm::{Arm, Deployment};
use byos_authz::{Door, builtin};
use byos_core::Scope;
use byos_crypto::RootKey;
use byos_identity::Directory;
use byos_identity::api::IdentityState;
use byos_store::{Batch, RedbStore, SharedStore, Table};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bootstrap::{self, Admin, Bootstrap};
use crate::{control, listener, tls};

const DEPLOYMENT: Table = Table("deployment");
const DEPLOYMENT_KEY: &str = "deployment";
const ADMIN_KEY: &str = "admin";
const DEFAULT_LOCATION: &str = "eastus";
/// How often expired blocks and orphaned objects are swept.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);
/// How often rotation policies are checked for keys that are due.
const KEY_ROTATION_INTERVAL: Duration = Duration::from_secs(1);
/// How often finished transcriptions past their `timeToLive`, and endpoint logs past their
/// retention, are deleted.
const SPEECH_RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// How often soft-deleted AI-services accounts past their 48 hours are purged.
const SOFT_DELETE_PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// How long in-flight requests get to finish after a stop is requested.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Validated settings of `byos serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// Main HTTPS port; 0 picks a free one for every listener.
    pub port: u16,
    /// The Blob service's HTTPS port (ignored when `port` is 0).
    pub blob_port: u16,
    pub bind: IpAddr,
    /// How long an account key unwrapped with a customer-managed key is cached (1-60 s): the
    /// longest time data stays readable after the key or the access to it is revoked.
    pub cmk_cache: Duration,
    /// Timeouts and the connection cap of the HTTPS listeners.
    pub limits: listener::ConnectionLimits,
    /// Preview features approved for the subscription at start (`--approve-feature`).
    pub approved_features: Vec<&'static byos_arm::features::Feature>,
    /// The command of a speech-to-text worker process (default: this program's `engine-worker`).
    pub speech_worker: Option<byos_speech::workers::WorkerCommand>,
    /// The command of a text-to-speech worker process (default: this program's `tts-worker`).
    pub tts_worker: Option<byos_speech::workers::WorkerCommand>,
    /// The command of an OCR worker process (default: this program's `ocr-worker`).
    pub ocr_worker: Option<byos_speech::workers::WorkerCommand>,
    /// Speech SDK sessions open at once, at most (`--max-speech-sessions`).
    pub max_speech_sessions: usize,
}

/// Each live session holds about one utterance of audio (a few hundred KiB) and a socket.
pub const DEFAULT_MAX_SPEECH_SESSIONS: usize = 1024;

pub const DEFAULT_CMK_CACHE: Duration = Duration::from_secs(30);
pub const MAX_CMK_CACHE: Duration = Duration::from_secs(60);

pub const DEFAULT_BLOB_PORT: u16 = 8444;

impl ServeConfig {
    pub fn new(data_dir: PathBuf, port: u16) -> Self {
        ServeConfig {
            data_dir,
            port,
            blob_port: DEFAULT_BLOB_PORT,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            cmk_cache: DEFAULT_CMK_CACHE,
            limits: listener::ConnectionLimits::default(),
            approved_features: Vec::new(),
            speech_worker: None,
            tts_worker: None,
            ocr_worker: None,
            max_speech_sessions: DEFAULT_MAX_SPEECH_SESSIONS,
        }
    }

    fn effective_blob_port(&self) -> u16 {
        if self.port == 0 { 0 } else { self.blob_port }
    }
}

#[derive(Serialize, Deserialize)]
struct DeploymentRecord {
    v: u32,
    subscription_id: String,
    location: String,
}

/// A started server: its addresses and the handle that stops it.
pub struct RunningServer {
    pub data_dir: PathBuf,
    pub base_url: String,
    pub tenant_id: String,
    pub subscription_id: String,
    /// The in-process services, for byos code that runs beside the listeners (tests today; the AI
    /// services next). Holding them grants nothing: every call still takes a caller to the door.
    pub services: Services,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    housekeeping: Vec<JoinHandle<()>>,
    connections: TaskTracker,
}

/// The services a running server shares with in-process code.
#[derive(Clone)]
pub struct Services {
    pub directory: Arc<Directory>,
    pub storage: Arc<byos_storage::StorageService>,
    pub cognitive: Arc<byos_cognitive::CognitiveService>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish (bounded), removes the ready marker.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for task in &self.housekeeping {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        // Connections finish their in-flight requests (the stop token told them to); their tasks
        // hold the services (and through them the store), so wait until they are gone.
        self.connections.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.connections.wait()).await.is_err() {
            tracing::warn!("in-flight requests did not finish in time; leaving them behind");
        }
        bootstrap::remove(&self.data_dir);
        let _ = std::fs::remove_file(control::socket_path(&self.data_dir));
        tracing::info!("byos stopped");
    }
}

fn prepare_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    // Everything byos creates from now on (the metadata store, objects, keys, logs it opens) is
    // owner-only, whatever umask it was started with.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating data dir {}", dir.display()))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir.join("keys"))?;
    restrict_to_owner(dir).with_context(|| format!("restricting data dir {} to its owner", dir.display()))?;
    dir.canonicalize().with_context(|| format!("resolving data dir {}", dir.display()))
}

/// Makes an existing data dir and what lies directly in it owner-only (directories 0700, files
/// 0600): a dir made by hand (`mkdir`, mode 0755) would otherwise leave the metadata store, which
/// names every resource and holds secret hashes, readable by every local user. The dir's own mode
/// already bars others from everything below it; deeper entries are created owner-only (umask).
fn restrict_to_owner(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        let mode = if file_type.is_dir() {
            0o700
        } else if file_type.is_file() {
            0o600
        } else {
            continue; // the control socket of a previous run, symlinks: left as they are
        };
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

async fn load_or_create_deployment(store: &SharedStore) -> anyhow::Result<DeploymentRecord> {
    if let Some(bytes) = store.get(DEPLOYMENT, DEPLOYMENT_KEY).await? {
        return serde_json::from_slice(&bytes).context("reading the deployment record");
    }
    let record =
        DeploymentRecord { v: 1, subscription_id: uuid::Uuid::new_v4().to_string(), location: DEFAULT_LOCATION.into() };
    store
        .commit(Batch::new().expect_absent(DEPLOYMENT, DEPLOYMENT_KEY).put(
            DEPLOYMENT,
            DEPLOYMENT_KEY,
            serde_json::to_vec(&record)?,
        ))
        .await?;
    Ok(record)
}

/// Opens the control socket, refusing to run twice on one data dir.
async fn bind_control_socket(data_dir: &Path) -> anyhow::Result<UnixListener> {
    let path = control::socket_path(data_dir);
    if tokio::net::UnixStream::connect(&path).await.is_ok() {
        anyhow::bail!("another byos server is already running on data dir {}", data_dir.display());
    }
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding the control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Turns a panic inside one request into a 500 for that request alone; the server keeps serving.
fn panic_guard()
-> tower_http::catch_panic::CatchPanicLayer<fn(Box<dyn std::any::Any + Send>) -> axum::response::Response> {
    fn on_panic(_: Box<dyn std::any::Any + Send>) -> axum::response::Response {
        tracing::error!("a request handler panicked");
        byos_http::render_error(&byos_core::ApiError::internal())
    }
    tower_http::catch_panic::CatchPanicLayer::custom(on_panic as fn(_) -> _)
}

/// How long one recognition may take before its worker counts as hung.
const SPEECH_JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// This program run as `subcommand`, unless the configuration names another command.
fn worker_command(
    configured: Option<byos_speech::workers::WorkerCommand>,
    subcommand: &str,
) -> anyhow::Result<byos_speech::workers::WorkerCommand> {
    match configured {
        Some(command) => Ok(command),
        None => Ok(byos_speech::workers::WorkerCommand {
            program: std::env::current_exe().context("locating the byos program for its engine workers")?,
            args: vec![subcommand.into()],
        }),
    }
}

fn workers_per_pool() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// The speech-to-text worker pool: one worker per core, each started on its first job.
fn speech_engine(
    command: Option<byos_speech::workers::WorkerCommand>,
) -> anyhow::Result<byos_speech::engine::SpeechEngine> {
    let command = worker_command(command, "engine-worker")?;
    Ok(byos_speech::engine::SpeechEngine::start(command, workers_per_pool(), SPEECH_JOB_TIMEOUT))
}

/// The text-to-speech worker pool (Flite and eSpeak NG), sized and supervised as the speech-to-text one.
fn tts_engine(command: Option<byos_speech::workers::WorkerCommand>) -> anyhow::Result<byos_speech::tts::TtsEngine> {
    let command = worker_command(command, "tts-worker")?;
    Ok(byos_speech::tts::TtsEngine::start(command, workers_per_pool(), SPEECH_JOB_TIMEOUT))
}

/// The OCR worker pool (Tesseract, Poppler), sized and supervised as the speech ones.
fn ocr_engine(command: Option<byos_speech::workers::WorkerCommand>) -> anyhow::Result<byos_document::OcrEngine> {
    let command = worker_command(command, "ocr-worker")?;
    Ok(byos_document::OcrEngine::start(command, workers_per_pool(), SPEECH_JOB_TIMEOUT))
}

/// Starts every service and listener; returns once `bootstrap.json` is written.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let data_dir = prepare_data_dir(&config.data_dir)?;
    bootstrap::remove(&data_dir);
    let control_listener = bind_control_socket(&data_dir).await?;
    let root = RootKey::load_or_create(&data_dir.join("keys").join("root.key"))?;
    let store: SharedStore = Arc::new(RedbStore::open(&data_dir.join("meta.redb"))?);

    let tcp = TcpListener::bind(SocketAddr::new(config.bind, config.port))
        .await
        .with_context(|| format!("binding port {}", config.port))?;
    let address = tcp.local_addr()?;
    let base_url = format!("https://{address}");
    let blob_port = config.effective_blob_port();
    let blob_tcp = TcpListener::bind(SocketAddr::new(config.bind, blob_port))
        .await
        .with_context(|| format!("binding the blob port {blob_port}"))?;
    let blob_url = format!("https://{}", blob_tcp.local_addr()?);
    let objects: byos_store::SharedObjects = Arc::new(byos_store::DirObjectStore::open(&data_dir.join("objects"))?);
    let root = Arc::new(root);

    let ca = tls::CertificateAuthority::load_or_create(&store, &root).await?;
    let ca_file = data_dir.join("ca.crt");
    std::fs::write(&ca_file, &ca.cert_pem)?;
    let hosts = vec!["127.0.0.1".to_owned(), "::1".to_owned(), "localhost".to_owned(), address.ip().to_string()];
    let tls_config = ca.server_config(&hosts)?;
    let stop = CancellationToken::new();
    let connections = listener::Connections::new(config.limits);
    let hub: Arc<dyn byos_http::Listeners> = Arc::new(listener::Hub {
        bind: config.bind,
        tls: Arc::clone(&tls_config),
        stop: stop.clone(),
        connections: connections.clone(),
    });

    let deployment = load_or_create_deployment(&store).await?;
    let directory = Arc::new(Directory::open(Arc::clone(&store), &root, &base_url).await?);
    let door = Arc::new(Door::new());
    let keyvault = byos_keyvault::KeyVaultService::new(
        Arc::clone(&store),
        Arc::clone(&root),
        Arc::clone(&door),
        Arc::clone(&directory),
        Arc::clone(&hub),
        base_url.clone(),
    );
    let storage = byos_storage::StorageService::new(
        Arc::clone(&store),
        objects,
        Arc::clone(&root),
        Arc::clone(&door),
        Arc::clone(&directory),
        Arc::clone(&keyvault),
        byos_storage::StorageConfig {
            blob_base: blob_url.clone(),
            authority: base_url.clone(),
            cmk_cache_ttl: config.cmk_cache.min(MAX_CMK_CACHE),
        },
    );
    let cognitive = byos_cognitive::CognitiveService::new(byos_cognitive::Parts {
        store: Arc::clone(&store),
        root: Arc::clone(&root),
        door: Arc::clone(&door),
        directory: Arc::clone(&directory),
        listeners: hub,
        storage: Arc::clone(&storage),
        objects: Arc::new(byos_store::DirObjectStore::open(&data_dir.join("objects-cognitive"))?),
        customer_keys: byos_cognitive::cmk::CustomerKeys::new(
            Arc::clone(&keyvault),
            Arc::clone(&directory),
            config.cmk_cache.min(MAX_CMK_CACHE),
        ),
        ca_pem: ca.cert_pem.clone().into_bytes(),
        speech: Arc::new(speech_engine(config.speech_worker.clone())?),
        tts: Arc::new(tts_engine(config.tts_worker.clone())?),
        ocr: Arc::new(ocr_engine(config.ocr_worker.clone())?),
        max_live_sessions: config.max_speech_sessions,
        live_idle_timeout: config.limits.idle_timeout,
    })?;
    let providers: Vec<Arc<dyn byos_arm::Provider>> = vec![
        Arc::new(byos_storage::provider::StorageProvider(Arc::clone(&storage))),
        Arc::new(byos_keyvault::provider::KeyVaultProvider(Arc::clone(&keyvault))),
        Arc::new(byos_cognitive::provider::CognitiveProvider(Arc::clone(&cognitive))),
    ];
    let arm_deployment = Deployment {
        subscription_id: deployment.subscription_id.clone(),
        location: deployment.location.clone(),
        base_url: base_url.clone(),
        authority: base_url.clone(),
        approved_features: config.approved_features.clone(),
    };
    let arm = Arm::open(
        Arc::clone(&directory),
        Arc::clone(&door),
        Arc::clone(&store),
        Arc::clone(&root),
        arm_deployment,
        providers,
    )
    .await?;
    storage.load(&arm).await?;
    keyvault.load(&arm).await?;
    cognitive.load(&arm).await?;
    let housekeeping = vec![
        byos_storage::blob::sweep::spawn(Arc::clone(&storage), HOUSEKEEPING_INTERVAL),
        byos_storage::cmk::spawn_rotation_watch(Arc::clone(&storage), config.cmk_cache.min(MAX_CMK_CACHE)),
        byos_keyvault::rotation::spawn_watch(Arc::clone(&keyvault), KEY_ROTATION_INTERVAL),
        byos_cognitive::provider::spawn_purge_watch(Arc::clone(&cognitive), SOFT_DELETE_PURGE_INTERVAL),
        byos_cognitive::transcriptions::spawn_retention_watch(Arc::clone(&cognitive), SPEECH_RETENTION_INTERVAL),
    ];
    let (admin, admin_secret) =
        directory.ensure_sealed_service_principal(&root, DEPLOYMENT, ADMIN_KEY, "byos-admin").await?;
    byos_arm::rbac::assignments::ensure(
        &arm,
        admin.object_id,
        builtin::OWNER,
        &Scope::subscription(&deployment.subscription_id),
    )
    .await?;

    let identity =
        IdentityState { directory: Arc::clone(&directory), door: Arc::clone(&door), authority: base_url.clone() };
    let public = listener::collapsing_leading_slashes(
        byos_identity::api::public_router(identity.clone())
            .merge(byos_arm::router(Arc::clone(&arm)))
            .layer(panic_guard()),
    );
    let operator = byos_identity::api::operator::router(identity)
        .merge(byos_keyvault::audit::operator_router(Arc::clone(&keyvault)))
        .merge(byos_arm::activity::operator_router(Arc::clone(&arm)))
        .merge(byos_arm::features::operator_router(Arc::clone(&arm)))
        .merge(byos_cognitive::doctor::operator_router(
            Arc::clone(&arm),
            Arc::clone(&cognitive),
            Arc::clone(&storage),
            Arc::clone(&keyvault),
        ))
        .layer(panic_guard());
    let blob = byos_storage::blob::router(Arc::clone(&storage)).layer(panic_guard());

    let tasks = vec![
        tokio::spawn(listener::serve_tls(tcp, Arc::clone(&tls_config), public, stop.clone(), connections.clone())),
        tokio::spawn(listener::serve_tls(blob_tcp, Arc::clone(&tls_config), blob, stop.clone(), connections.clone())),
        tokio::spawn(listener::serve_control(control_listener, operator, stop.clone(), connections.clone())),
    ];

    let boot = Bootstrap {
        version: 1,
        tenant_id: directory.tenant_id().to_string(),
        subscription_id: deployment.subscription_id.clone(),
        location: deployment.location.clone(),
        ca_file: ca_file.display().to_string(),
        authority: base_url.clone(),
        resource_manager: base_url.clone(),
        managed_identity_endpoint: format!("{base_url}/msi/token"),
        imds_endpoint: base_url.clone(),
        blob_endpoint: blob_url,
        control_socket: control::socket_path(&data_dir).display().to_string(),
        admin: Admin {
            client_id: admin.client_id.to_string(),
            client_secret: admin_secret.to_string(),
            object_id: admin.object_id.to_string(),
        },
    };
    bootstrap::write(&data_dir, &boot)?;
    tracing::info!(%base_url, data_dir = %data_dir.display(), "byos ready");
    Ok(RunningServer {
        data_dir,
        base_url,
        tenant_id: boot.tenant_id.clone(),
        subscription_id: deployment.subscription_id,
        services: Services { directory, storage, cognitive },
        stop,
        tasks,
        housekeeping,
        connections: connections.tracker.clone(),
    })
}
