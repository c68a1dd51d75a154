//! `byos`: the command line. Parses arguments and the environment, then hands over to the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use byos_server::listener::ConnectionLimits;
use byos_server::{ServeConfig, control};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "byos",
    version,
    about = "A self-hosted bring-your-own-storage cloud for AI services, speaking Azure's wire protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct DataDir {
    /// Where byos keeps everything (metadata, encrypted data, CA).
    #[arg(long, default_value = "./byos-data")]
    data_dir: PathBuf,
}

/// How long HTTPS connections may stay open, and how many at once.
#[derive(Args)]
struct Limits {
    /// Seconds a client has to send a request's whole header (and its first request).
    #[arg(long, env = "BYOS_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout_seconds: u64,
    /// Seconds a connection may stay open with no request in flight and no bytes moving.
    #[arg(long, env = "BYOS_IDLE_TIMEOUT_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86400))]
    idle_timeout_seconds: u64,
    /// Open HTTPS connections at most, over all listeners, WebSockets included (default: 4096,
    /// fewer if the open-files limit is lower).
    #[arg(long, env = "BYOS_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: Option<u64>,
    /// Speech SDK sessions (recognition and synthesis sockets) open at most; more are refused
    /// with 429 at the upgrade.
    #[arg(long, env = "BYOS_MAX_SPEECH_SESSIONS", default_value_t = byos_server::serve::DEFAULT_MAX_SPEECH_SESSIONS as u64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_speech_sessions: u64,
}

impl Limits {
    fn connection_limits(&self) -> ConnectionLimits {
        let defaults = ConnectionLimits::default();
        ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_seconds),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_seconds),
            max_connections: self
                .max_connections
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(defaults.max_connections),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start the server.
    Serve {
        #[command(flatten)]
        dir: DataDir,
        /// Main HTTPS port; 0 picks a free port for every listener (see bootstrap.json).
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// HTTPS port of the Blob service.
        #[arg(long, default_value_t = byos_server::serve::DEFAULT_BLOB_PORT)]
        blob_port: u16,
        /// Seconds an account key unwrapped with a customer-managed key stays cached (1-60): how
        /// long data stays readable after the key or access to it is revoked.
        #[arg(long, env = "BYOS_CMK_CACHE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=60))]
        cmk_cache_seconds: u64,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        #[command(flatten)]
        limits: Limits,
        /// Approve a preview feature (`Namespace/name`) for the subscription, as `byos feature
        /// approve` does; repeatable (comma separated in the environment). The customer must still
        /// register it.
        #[arg(long = "approve-feature", value_name = "NAMESPACE/NAME", env = "BYOS_APPROVE_FEATURES", value_delimiter = ',', value_parser = byos_arm::features::parse)]
        approve_features: Vec<&'static byos_arm::features::Feature>,
    },
    /// Manage service principals.
    Principal {
        #[command(subcommand)]
        command: PrincipalCommand,
    },
    /// Manage how workloads act as managed identities.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Read and verify a key vault's key-usage audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Decide on the subscription's preview features.
    Feature {
        #[command(subcommand)]
        command: FeatureCommand,
    },
    /// Run one speech-to-text engine worker (the server starts these itself; not for people).
    #[command(hide = true)]
    EngineWorker {
        /// The directory of the engine's US English model.
        #[arg(long, default_value = byos_speech::pocketsphinx::DEBIAN_MODEL_DIR)]
        model_dir: std::path::PathBuf,
    },
    /// Run one text-to-speech engine worker (the server starts these itself; not for people).
    #[command(hide = true)]
    TtsWorker,
    /// Run one OCR engine worker (the server starts these itself; not for people).
    #[command(hide = true)]
    OcrWorker,
    /// Check an AI-services account against the BYOS seed's hardening rules, read-only: each rule
    /// as pass / warn / fail with the az command that fixes it. Exits 0 when no rule fails, 1 when
    /// one does, 2 when nothing could be checked (unknown account, no server).
    Doctor {
        #[command(flatten)]
        dir: DataDir,
        /// The account's resource id.
        account: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The account serves text to speech: the seed's relaxed firewall rule (all networks)
        /// applies instead of the speech-to-text one.
        #[arg(long)]
        text_to_speech: bool,
    },
}

#[derive(Subcommand)]
enum FeatureCommand {
    /// Approve a preview feature that waits for approval (Azure's access request): a pending
    /// registration becomes Registered, a later one is Registered at once.
    Approve {
        #[command(flatten)]
        dir: DataDir,
        /// The resource provider namespace, e.g. Microsoft.CognitiveServices.
        #[arg(long)]
        namespace: String,
        /// The feature, e.g. byoxPreview.
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the vault's audit entries, one JSON object per line.
    List {
        #[command(flatten)]
        dir: DataDir,
        #[arg(long)]
        vault: String,
    },
    /// Check the vault's hash chain; exits non-zero if any entry was edited, removed or reordered.
    Verify {
        #[command(flatten)]
        dir: DataDir,
        #[arg(long)]
        vault: String,
    },
    /// Print the resource manager's activity log (every write, action and refusal), one JSON
    /// object per line; with --verify, check its hash chain instead.
    Activity {
        #[command(flatten)]
        dir: DataDir,
        #[arg(long)]
        verify: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum PrincipalCommand {
    /// Create a service principal with no roles; prints its client id, secret and object id.
    Create {
        #[command(flatten)]
        dir: DataDir,
        #[arg(long)]
        name: String,
    },
    /// Delete a service principal: its secrets and tokens stop working at once; its role
    /// assignments stay, granting nothing, as in Azure. The bootstrap admin cannot be deleted.
    Delete {
        #[command(flatten)]
        dir: DataDir,
        /// Client id or object id of the service principal.
        #[arg(long)]
        principal: String,
    },
    /// Replace a service principal's secrets with a new one (printed like `create`); the old
    /// secret stops working at once, tokens already issued live until they expire.
    Reset {
        #[command(flatten)]
        dir: DataDir,
        /// Client id or object id of the service principal.
        #[arg(long)]
        principal: String,
    },
}

#[derive(Subcommand)]
enum IdentityCommand {
    /// Print `export` lines that let a workload obtain tokens as a managed identity.
    Env {
        #[command(flatten)]
        dir: DataDir,
        /// Resource id, client id or object id of the managed identity.
        #[arg(long)]
        identity: String,
    },
    /// Bind a managed identity to this host, so the IMDS endpoint serves it.
    BindHost {
        #[command(flatten)]
        dir: DataDir,
        #[arg(long)]
        identity: String,
    },
    /// Remove a managed identity's IMDS binding to this host.
    UnbindHost {
        #[command(flatten)]
        dir: DataDir,
        #[arg(long)]
        identity: String,
    },
    /// Rotate a managed identity's X-IDENTITY-HEADER secret: the old value stops working at once;
    /// `identity env` prints the new one.
    RotateHeader {
        #[command(flatten)]
        dir: DataDir,
        /// Resource id, client id or object id of the managed identity.
        #[arg(long)]
        identity: String,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BYOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log line that cannot be written (stderr closed, its disk full) is dropped: by default
    // tracing-subscriber reports the failure with `eprintln!`, which panics and takes the server
    // (or the request that logged) down with it.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Single-quotes a value for a POSIX shell.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
        _ = int.recv() => tracing::info!("SIGINT received, stopping"),
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { dir, port, blob_port, cmk_cache_seconds, log_format, limits, approve_features } => {
            init_logging(log_format);
            let cmk_cache = std::time::Duration::from_secs(cmk_cache_seconds);
            let max_speech_sessions = usize::try_from(limits.max_speech_sessions).unwrap_or(usize::MAX);
            let limits = limits.connection_limits();
            let config = ServeConfig {
                blob_port,
                cmk_cache,
                limits,
                max_speech_sessions,
                approved_features: approve_features,
                ..ServeConfig::new(dir.data_dir, port)
            };
            let server = byos_server::start(config).await?;
            wait_for_stop_signal().await?;
            server.shutdown().await;
        }
        Command::Principal { command } => principal(command).await?,
        Command::Identity { command } => identity(command).await?,
        Command::Audit { command } => audit(command).await?,
        Command::Feature { command } => feature(command).await?,
        Command::EngineWorker { model_dir } => byos_speech::engine::serve_worker(&model_dir)?,
        Command::TtsWorker => byos_speech::tts::serve_tts_worker()?,
        Command::OcrWorker => byos_document::serve_ocr_worker()?,
        Command::Doctor { dir, account, json, text_to_speech } => {
            return Ok(doctor(&dir.data_dir, &account, json, text_to_speech).await);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How `byos doctor` exits when it could not produce a report (usage errors exit 2 too, by clap).
const DOCTOR_UNCHECKED: u8 = 2;

async fn doctor(data_dir: &std::path::Path, account: &str, json: bool, text_to_speech: bool) -> ExitCode {
    let query = format!("/operator/doctor?account={}&textToSpeech={text_to_speech}", percent_encode(account));
    let report = match control::call(data_dir, "GET", &query, None).await {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "byos: {e:#}");
            return ExitCode::from(DOCTOR_UNCHECKED);
        }
    };
    let text = if json { serde_json::to_string_pretty(&report).unwrap_or_default() } else { doctor_table(&report) };
    println!("{text}");
    if report["ok"].as_bool() == Some(true) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The report for a terminal: one line a check (status, id, title), its detail and fix below.
fn doctor_table(report: &serde_json::Value) -> String {
    let field = |value: &serde_json::Value, name: &str| value[name].as_str().unwrap_or_default().to_owned();
    let mode = if report["textToSpeech"].as_bool() == Some(true) { "text to speech" } else { "speech to text" };
    let mut lines = vec![format!("byos doctor: {} ({mode})", field(report, "account")), String::new()];
    for check in report["checks"].as_array().into_iter().flatten() {
        let status = field(check, "status").to_ascii_uppercase();
        lines.push(format!("{status:<5} {:<22} {}", field(check, "id"), field(check, "title")));
        lines.push(format!("      {}", field(check, "detail")));
        if let Some(fix) = check["fix"].as_str() {
            lines.push(format!("      fix: {fix}"));
        }
    }
    let summary = &report["summary"];
    lines.push(String::new());
    lines.push(format!("{} pass, {} warn, {} fail", summary["pass"], summary["warn"], summary["fail"]));
    lines.join("\n")
}

async fn feature(command: FeatureCommand) -> anyhow::Result<()> {
    let FeatureCommand::Approve { dir, namespace, name } = command;
    let body = json!({"namespace": namespace, "name": name});
    println!("{}", control::call(&dir.data_dir, "POST", "/operator/features/approve", Some(body)).await?);
    Ok(())
}

async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    let (dir, query, what, verify_only) = match command {
        AuditCommand::List { dir, vault } => (dir, vault_query(&vault), format!("vault {vault}"), false),
        AuditCommand::Verify { dir, vault } => (dir, vault_query(&vault), format!("vault {vault}"), true),
        AuditCommand::Activity { dir, verify } => {
            (dir, "/operator/activity".to_owned(), "the activity log".into(), verify)
        }
    };
    let answer = control::call(&dir.data_dir, "GET", &query, None).await?;
    if !verify_only {
        for entry in answer["entries"].as_array().into_iter().flatten() {
            println!("{entry}");
        }
        return Ok(());
    }
    let verification = &answer["verification"];
    if verification["ok"].as_bool() == Some(true) {
        println!("ok: {} entries, hash chain intact", verification["entries"]);
        Ok(())
    } else {
        anyhow::bail!(
            "audit log of {what} is broken: {}",
            verification["problem"].as_str().unwrap_or("unknown problem")
        )
    }
}

fn vault_query(vault: &str) -> String {
    format!("/operator/audit?vault={}", percent_encode(vault))
}

async fn principal(command: PrincipalCommand) -> anyhow::Result<()> {
    let (dir, path, body) = match command {
        PrincipalCommand::Create { dir, name } => (dir, "/operator/principals", json!({"name": name})),
        PrincipalCommand::Delete { dir, principal } => {
            (dir, "/operator/principals/delete", json!({"principal": principal}))
        }
        PrincipalCommand::Reset { dir, principal } => {
            (dir, "/operator/principals/reset", json!({"principal": principal}))
        }
    };
    println!("{}", control::call(&dir.data_dir, "POST", path, Some(body)).await?);
    Ok(())
}

async fn identity(command: IdentityCommand) -> anyhow::Result<()> {
    match command {
        IdentityCommand::Env { dir, identity } => {
            let query = format!("/operator/identities/env?identity={}", percent_encode(&identity));
            let env = control::call(&dir.data_dir, "GET", &query, None).await?;
            let field = |name: &str| {
                env.get(name).and_then(|v| v.as_str()).map(str::to_owned).context("incomplete answer from the server")
            };
            println!("export IDENTITY_ENDPOINT={}", shell_quote(&field("identity_endpoint")?));
            println!("export IDENTITY_HEADER={}", shell_quote(&field("identity_header")?));
        }
        IdentityCommand::BindHost { dir, identity } => set_binding(&dir.data_dir, &identity, true).await?,
        IdentityCommand::UnbindHost { dir, identity } => set_binding(&dir.data_dir, &identity, false).await?,
        IdentityCommand::RotateHeader { dir, identity } => {
            let body = json!({"identity": identity});
            println!(
                "{}",
                control::call(&dir.data_dir, "POST", "/operator/identities/rotate-header", Some(body)).await?
            );
        }
    }
    Ok(())
}

async fn set_binding(data_dir: &std::path::Path, identity: &str, bound: bool) -> anyhow::Result<()> {
    let answer = control::call(
        data_dir,
        "POST",
        "/operator/identities/host-binding",
        Some(json!({"identity": identity, "bound": bound})),
    )
    .await?;
    println!("{answer}");
    Ok(())
}

/// Percent-encodes a query value (resource ids contain '/').
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            // Not `eprintln!`: it panics when stderr cannot be written, turning exit code 1 into 101.
            let _ = writeln!(std::io::stderr(), "byos: {e:#}");
            ExitCode::FAILURE
        }
    }
}
