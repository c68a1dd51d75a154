//! Control-plane benchmark: token issuance per second and authorized ARM GETs per second over
//! HTTPS with 16 concurrent connections, against the real server started in this process.
//!
//! Run: `cargo bench -p byos-testkit --bench control_plane` (BENCH_SECONDS sets each phase's length).
//! Client and server share the machine's cores, so the figures are a floor for the server alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use byos_testkit::TestServer;
use serde_json::json;

const CONNECTIONS: usize = 16;

/// Runs `request` in a loop on `CONNECTIONS` tasks, each with its own client (own connection),
/// for `duration`; returns completed requests per second. Any failure aborts the benchmark.
async fn measure<F, Fut>(server: &TestServer, duration: Duration, request: F) -> anyhow::Result<f64>
where
    F: Fn(reqwest::Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let request = Arc::new(request);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, request, done) = (server.client()?, Arc::clone(&request), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            request(client.clone()).await?; // warm the connection before counting
            while start.elapsed() < duration {
                request(client.clone()).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    let server = TestServer::start().await?;
    let client = server.client()?;
    let admin = server.admin_token(&client).await?;
    let group_url = format!(
        "{}/subscriptions/{}/resourcegroups/bench?api-version=2021-04-01",
        server.base_url,
        server.boot_str(&["subscription_id"])
    );
    client.put(&group_url).bearer_auth(&admin).json(&json!({"location": "eastus"})).send().await?.error_for_status()?;

    let token_url = format!("{}/{}/oauth2/v2.0/token", server.base_url, server.boot_str(&["tenant_id"]));
    let form = Arc::new(vec![
        ("grant_type", "client_credentials".to_owned()),
        ("client_id", server.boot_str(&["admin", "client_id"])),
        ("client_secret", server.boot_str(&["admin", "client_secret"])),
        ("scope", "https://management.azure.com/.default".to_owned()),
    ]);
    let tokens_per_sec = measure(&server, duration, move |client| {
        let (url, form) = (token_url.clone(), Arc::clone(&form));
        async move {
            client.post(url).form(&*form).send().await?.error_for_status()?;
            Ok(())
        }
    })
    .await?;

    let gets_per_sec = measure(&server, duration, move |client| {
        let (url, token) = (group_url.clone(), admin.clone());
        async move {
            let body = client.get(url).bearer_auth(token).send().await?.error_for_status()?.bytes().await?;
            anyhow::ensure!(!body.is_empty(), "empty body");
            Ok(())
        }
    })
    .await?;

    println!("control-plane benchmark ({CONNECTIONS} connections, {seconds} s per phase, client in the same process)");
    println!("  token issuance:          {tokens_per_sec:>8.0} tokens/s");
    println!("  authorized ARM GET:      {gets_per_sec:>8.0} requests/s   (target >= 5000)");
    server.stop().await;
    Ok(())
}
