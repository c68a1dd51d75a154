//! The Speech SDK's sockets flooded: 10,000 attempted at once against a server that takes 256 at
//! a time. Every attempt ends cleanly, admitted (101) or refused with 429 and `Retry-After` (what
//! the SDK reports as TooManyRequests), never a hang or a dropped connection; memory stays bounded;
//! once they close, the server serves a session as before.

use byos_testkit::tungstenite::{self, Message};
use byos_testkit::{TestServer, WebSocket};
use futures_util::{SinkExt, StreamExt, stream};

const SESSIONS: usize = 256;
const ATTEMPTS: usize = 10_000;

/// This process's resident memory, in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).map(|v| v.trim().trim_end_matches("kB").trim());
    kib.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) / 1024
}

/// How an attempt ended.
enum Attempt {
    Admitted(Box<WebSocket>),
    Refused,
}

async fn attempt(server: &TestServer, url: &str, key: &str) -> anyhow::Result<Attempt> {
    let headers = [("Ocp-Apim-Subscription-Key", key), ("Sec-WebSocket-Protocol", "USP")];
    match server.websocket(url, &headers).await {
        Ok(socket) => Ok(Attempt::Admitted(Box::new(socket))),
        Err(e) => match e.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Http(response))
                if response.status() == 429
                    && response.headers().get("retry-after").is_some_and(|v| v.as_bytes() == b"1") =>
            {
                Ok(Attempt::Refused)
            }
            _ => Err(e),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_speech_sockets_at_once_are_admitted_to_the_limit_and_refused_cleanly_beyond() -> anyhow::Result<()>
{
    let server = TestServer::start_with(|config| config.max_speech_sessions = SESSIONS).await?;
    let client = server.client()?;
    let (endpoint, key) = server.speech_account(&client, "flood", "flood").await?;
    let url = format!(
        "{}speech/recognition/conversation/cognitiveservices/v1?language=en-US",
        endpoint.replacen("https://", "wss://", 1)
    );
    let before = rss_mib();
    let outcomes: Vec<anyhow::Result<Attempt>> =
        stream::iter(0..ATTEMPTS).map(|_| attempt(&server, &url, &key)).buffer_unordered(ATTEMPTS).collect().await;
    let during = rss_mib();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for outcome in outcomes {
        match outcome? {
            Attempt::Admitted(socket) => admitted.push(socket),
            Attempt::Refused => refused += 1,
        }
    }
    println!("{ATTEMPTS} attempts: {} admitted, {refused} refused; RSS {before} -> {during} MiB", admitted.len());
    assert_eq!((admitted.len(), refused), (SESSIONS, ATTEMPTS - SESSIONS));
    // Client and server share this process: 10,000 TLS clients and 256 sessions together.
    assert!(during.saturating_sub(before) < 1024, "memory grew from {before} MiB to {during} MiB");
    for socket in &mut admitted {
        socket.close().await?;
    }
    drop(admitted);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let Attempt::Admitted(mut socket) = attempt(&server, &url, &key).await? else {
        anyhow::bail!("a session was refused after the flood ended");
    };
    let context = "X-RequestId:0123456789abcdef0123456789abcdef\r\nPath:speech.context\r\n\r\n{}";
    socket.send(Message::text(context)).await?;
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await?;
    let text = match answer {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => anyhow::bail!("no turn.start: {other:?}"),
    };
    assert!(text.contains("Path:turn.start"), "{text}");
    Ok(())
}

/// Connection slots of the server in the regression test below.
const SLOTS: usize = 8;

#[tokio::test]
async fn regression_an_upgraded_socket_gave_back_its_connection_slot_while_it_stayed_open() -> anyhow::Result<()> {
    let server = TestServer::start_with(|config| config.limits.max_connections = SLOTS).await?;
    let client = server.client()?;
    let (endpoint, key) = server.speech_account(&client, "slots", "slots").await?;
    let url = format!("{}cognitiveservices/websocket/v1", endpoint.replacen("https://", "wss://", 1));
    // Sockets are opened until one waits: then every slot is held (some perhaps by other connections).
    let mut open = Vec::new();
    let mut waiting = loop {
        let mut next = Box::pin(attempt(&server, &url, &key));
        match tokio::time::timeout(std::time::Duration::from_secs(1), &mut next).await {
            Ok(outcome) => open.push(admitted(outcome?)?),
            Err(_) => break next,
        }
        anyhow::ensure!(open.len() <= SLOTS, "{} upgraded sockets open on {SLOTS} connection slots", open.len());
    };
    anyhow::ensure!(!open.is_empty(), "no socket was admitted");
    let mut closed = open.pop().unwrap_or_else(|| panic!("a socket"));
    closed.close().await?;
    drop(closed);
    let served = tokio::time::timeout(std::time::Duration::from_secs(10), &mut waiting).await?;
    anyhow::ensure!(matches!(served, Ok(Attempt::Admitted(_))), "a closed socket frees its slot for the waiting one");
    Ok(())
}

fn admitted(attempt: Attempt) -> anyhow::Result<Box<WebSocket>> {
    match attempt {
        Attempt::Admitted(socket) => Ok(socket),
        Attempt::Refused => anyhow::bail!("refused"),
    }
}
