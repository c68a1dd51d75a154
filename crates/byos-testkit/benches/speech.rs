//! Speech-to-text benchmark (issue 10), in one run on the same files:
//!
//! 1. the engine alone: utterances spoken by Flite, decoded to 16 kHz and recognized straight
//!    through a `SpeechEngine` pool of the server's size (one worker per core): audio seconds per
//!    wall second;
//! 2. batch transcription through the server: the same files as blobs in a storage account of the
//!    in-process server, one v3.2 transcription of all of them by SAS URL, POST to Succeeded;
//! 3. short-audio latency: each utterance sent to `/speech/recognition/...` one request at a time
//!    (one kept-alive connection), against the engine alone recognizing the same samples;
//! 4. peak RSS of a 1,000-file job: the server process's (it is this process, so it includes the
//!    bench's client) and its engine workers'.
//!
//! Run: `cargo build --release -p byos-server && cargo bench -p byos-testkit --bench speech`.
//! The workers are `byos engine-worker` processes of the release binary (next to this bench's
//! `deps/` directory, or `BYOS_BIN`). Sizes: `BENCH_UTTERANCES` (distinct files, default 12),
//! `BENCH_ROUNDS` (alternating rounds of 1 and 2, default 3), `BENCH_REQUESTS` (short-audio
//! requests, default 60), `BENCH_FILES` (files of the large job, default 1000). Needs `flite` and Debian's `libpocketsphinx3` + `pocketsphinx-en-us`.

#[path = "support/processes.rs"]
mod processes;
#[path = "support/speech.rs"]
mod spoken;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use base64::Engine;
use byos_speech::engine::SpeechEngine;
use byos_speech::workers::WorkerCommand;
use byos_testkit::TestServer;
use futures_util::{StreamExt, stream};
use processes::{cpu_seconds, worker_processes};
use reqwest::Method;
use serde_json::{Value, json};
use spoken::{Utterance, speak};
use support::{SENTENCES, byos_binary, env_usize, percentile, sorted};

/// How long one recognition may take (as the server's pool).
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// The storage service version the SAS are signed for.
const SAS_VERSION: &str = "2022-11-02";
const CONTAINER: &str = "audio";
/// The large job's clip.
const LARGE_JOB_SENTENCE: &str = "please call me tomorrow morning";

fn synthesize(dir: &Path, index: usize) -> anyhow::Result<Utterance> {
    // Past the list, the same sentences in another voice, so that every file differs.
    let voice = ["rms", "slt", "awb"][(index / SENTENCES.len()) % 3];
    speak(dir, &format!("utterance{index}.wav"), SENTENCES[index % SENTENCES.len()], voice)
}

/// A `/proc/<pid>/status` field in KiB.
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Recognizes every utterance through `engine`, keeping its queue full; returns audio seconds per
/// wall second.
async fn engine_throughput(engine: &SpeechEngine, utterances: &[Utterance]) -> anyhow::Result<f64> {
    let start = Instant::now();
    let results: Vec<_> = stream::iter(utterances)
        .map(|u| engine.recognize_waiting(&u.samples))
        .buffer_unordered(engine.workers() * 2)
        .collect()
        .await;
    let wall = start.elapsed().as_secs_f64();
    for result in results {
        let heard = result?;
        ensure!(!heard.text.is_empty(), "the engine heard nothing");
    }
    Ok(utterances.iter().map(|u| u.seconds).sum::<f64>() / wall)
}

/// A storage account with a container, and how to sign for it.
struct Storage {
    name: String,
    blob_endpoint: String,
    key: Vec<u8>,
}

impl Storage {
    fn sign(&self, text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(byos_crypto::MacKey::new(&self.key).sign(text.as_bytes()))
    }

    /// An account SAS for the blob service (containers and blobs: read, write, create, list).
    fn account_sas(&self, expiry: &str) -> anyhow::Result<String> {
        let (sp, ss, srt, spr) = ("rwcl", "b", "sco", "https");
        let text = format!("{}\n{sp}\n{ss}\n{srt}\n\n{expiry}\n\n{spr}\n{SAS_VERSION}\n\n", self.name);
        let fields = [("sv", SAS_VERSION), ("ss", ss), ("srt", srt), ("sp", sp), ("se", expiry), ("spr", spr)];
        query(&fields, &self.sign(&text))
    }

    /// A service SAS that reads one blob (what a client hands a batch transcription).
    fn blob_read_url(&self, blob: &str, expiry: &str) -> anyhow::Result<String> {
        let resource = format!("/blob/{}/{CONTAINER}/{blob}", self.name);
        let text = format!("r\n\n{expiry}\n{resource}\n\n\nhttps\n{SAS_VERSION}\nb\n\n\n\n\n\n\n");
        let fields = [("sv", SAS_VERSION), ("sr", "b"), ("sp", "r"), ("se", expiry), ("spr", "https")];
        Ok(format!("{}{CONTAINER}/{blob}?{}", self.blob_endpoint, query(&fields, &self.sign(&text))?))
    }
}

fn query(fields: &[(&str, &str)], signature: &str) -> anyhow::Result<String> {
    let mut pairs: Vec<(&str, &str)> = fields.to_vec();
    pairs.push(("sig", signature));
    Ok(serde_urlencoded::to_string(pairs)?)
}

/// A Speech account's data plane: its endpoint and a key.
struct Speech {
    endpoint: String,
    key: String,
}

/// Creates a resource group, a storage account with the audio container and a Speech account.
async fn provision(server: &TestServer, client: &reqwest::Client) -> anyhow::Result<(Storage, Speech)> {
    let sub = server.boot_str(&["subscription_id"]);
    let location = Some(server.boot_str(&["location"])).filter(|l| !l.is_empty()).unwrap_or("eastus".into());
    let group = format!("/subscriptions/{sub}/resourceGroups/speechbench");
    server.arm_as_admin(client, Method::PUT, &group, Some(json!({"location": location}))).await?;
    let storage_id = format!("{group}/providers/Microsoft.Storage/storageAccounts/speechbench");
    let body = json!({"location": location, "kind": "StorageV2", "sku": {"name": "Standard_LRS"}});
    let created = server.arm_as_admin(client, Method::PUT, &storage_id, Some(body)).await?;
    let blob_endpoint =
        created["properties"]["primaryEndpoints"]["blob"].as_str().context("primaryEndpoints.blob")?.to_owned();
    let keys = server.arm_as_admin(client, Method::POST, &format!("{storage_id}/listKeys"), None).await?;
    let key = keys["keys"][0]["value"].as_str().context("storage key")?;
    let storage = Storage {
        name: "speechbench".into(),
        blob_endpoint: if blob_endpoint.ends_with('/') { blob_endpoint } else { format!("{blob_endpoint}/") },
        key: base64::engine::general_purpose::STANDARD.decode(key)?,
    };

    let (endpoint, key) = server.speech_account(client, "speechbench", "speechbench").await?;
    let speech = Speech { endpoint, key };
    Ok((storage, speech))
}

async fn upload(
    client: &reqwest::Client,
    storage: &Storage,
    sas: &str,
    utterances: &[Utterance],
) -> anyhow::Result<()> {
    let container = format!("{}{CONTAINER}?restype=container&{sas}", storage.blob_endpoint);
    let response = client.put(container).header("x-ms-version", SAS_VERSION).send().await?;
    let created = response.status().is_success() || response.status() == reqwest::StatusCode::CONFLICT;
    ensure!(created, "creating the container: {}", response.status());
    for u in utterances {
        let url = format!("{}{CONTAINER}/{}?{sas}", storage.blob_endpoint, u.name);
        let response = client
            .put(url)
            .header("x-ms-version", SAS_VERSION)
            .header("x-ms-blob-type", "BlockBlob")
            .header("content-type", "audio/wav")
            .body(u.wav.clone())
            .send()
            .await?;
        ensure!(response.status().is_success(), "uploading {}: {}", u.name, response.status());
    }
    Ok(())
}

impl Speech {
    async fn call(
        &self,
        client: &reqwest::Client,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = client.request(method.clone(), url).header("Ocp-Apim-Subscription-Key", &self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        ensure!(status.is_success(), "{method} {url}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// Short-audio recognition of one WAV file; its `RecognitionStatus`.
    async fn recognize(&self, client: &reqwest::Client, wav: &[u8]) -> anyhow::Result<String> {
        let url = format!("{}speech/recognition/conversation/cognitiveservices/v1?language=en-US", self.endpoint);
        let response = client
            .post(url)
            .header("Ocp-Apim-Subscription-Key", &self.key)
            .header("content-type", "audio/wav; codecs=audio/pcm; samplerate=16000")
            .body(wav.to_vec())
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        ensure!(status.is_success(), "short-audio recognition: {status} {body}");
        Ok(body["RecognitionStatus"].as_str().unwrap_or_default().to_owned())
    }

    /// Submits a transcription of `urls` and polls it until it ends, calling `tick` at each poll;
    /// returns the finished job and the wall time from the POST.
    async fn transcribe(
        &self,
        client: &reqwest::Client,
        urls: Vec<String>,
        mut tick: impl FnMut(Duration),
    ) -> anyhow::Result<(Value, Duration)> {
        let body = json!({"displayName": "bench", "locale": "en-US", "contentUrls": urls});
        let start = Instant::now();
        let url = format!("{}speechtotext/v3.2/transcriptions", self.endpoint);
        let created = self.call(client, Method::POST, &url, Some(body)).await?;
        let job_url = created["self"].as_str().context("self")?.to_owned();
        loop {
            let job = self.call(client, Method::GET, &job_url, None).await?;
            match job["status"].as_str() {
                Some("Succeeded") => return Ok((job, start.elapsed())),
                Some("Failed") => bail!("the transcription failed: {job}"),
                _ => {}
            }
            tick(start.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The job's `report.json` (following the file list's pages).
    async fn report(&self, client: &reqwest::Client, job: &Value) -> anyhow::Result<Value> {
        let mut next = job["links"]["files"].as_str().map(str::to_owned);
        while let Some(url) = next {
            let page = self.call(client, Method::GET, &url, None).await?;
            let files = page["values"].as_array().context("values")?;
            if let Some(report) = files.iter().find(|f| f["kind"] == "TranscriptionReport") {
                let link = report["links"]["contentUrl"].as_str().context("contentUrl")?;
                return Ok(client.get(link).send().await?.error_for_status()?.json().await?);
            }
            next = page["@nextLink"].as_str().map(str::to_owned);
        }
        bail!("the job has no report")
    }
}

fn check_report(report: &Value, expected: usize) -> anyhow::Result<()> {
    let (succeeded, failed) =
        (report["successfulTranscriptionsCount"].as_u64(), report["failedTranscriptionsCount"].as_u64());
    ensure!(succeeded == Some(expected as u64) && failed == Some(0), "report: {report}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = env_usize("BENCH_UTTERANCES", 12)?.max(1);
    let requests = env_usize("BENCH_REQUESTS", 60)?.max(1);
    let files = env_usize("BENCH_FILES", 1000)?.clamp(1, 1000);
    let rounds = env_usize("BENCH_ROUNDS", 3)?.max(1);
    let binary = byos_binary()?;
    let command = WorkerCommand { program: binary.clone(), args: vec!["engine-worker".into()] };
    // As serve.rs sizes the server's pool.
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    println!(
        "speech benchmark: {count} utterances, {requests} short-audio requests, a {files}-file job, {workers} workers per pool ({})",
        binary.display()
    );

    let dir = tempfile::tempdir()?;
    let mut utterances = Vec::new();
    for index in 0..count {
        utterances.push(synthesize(dir.path(), index)?);
    }
    let audio_seconds: f64 = utterances.iter().map(|u| u.seconds).sum();
    let pieces: usize = utterances.iter().map(|u| byos_speech::segment::utterances(&u.samples).len()).sum();
    println!(
        "  synthesized {count} files, {audio_seconds:.1} s of audio ({:.1}-{:.1} s each; the batch segmenter cuts them into {pieces} utterances)",
        utterances.iter().map(|u| u.seconds).fold(f64::INFINITY, f64::min),
        utterances.iter().map(|u| u.seconds).fold(0.0, f64::max),
    );

    // 1 and 2, in alternating rounds so that whatever else runs on the machine weighs on both alike.
    let engine = SpeechEngine::start(command.clone(), workers, JOB_TIMEOUT);
    let warm: Vec<_> = stream::iter(&utterances[..workers.min(count)])
        .map(|u| engine.recognize(&u.samples))
        .buffer_unordered(workers)
        .collect()
        .await;
    for result in warm {
        result?;
    }
    let alone_pids = worker_processes("engine-worker");
    let server = TestServer::start_with(|config| config.speech_worker = Some(command.clone())).await?;
    let client = server.client()?;
    let (storage, speech) = provision(&server, &client).await?;
    let expiry = (time::OffsetDateTime::now_utc() + time::Duration::hours(6))
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    // The large job's file: one short clip referenced again and again (its memory is per file, not per second).
    let clip = speak(dir.path(), "clip.wav", LARGE_JOB_SENTENCE, "rms")?;
    upload(&client, &storage, &storage.account_sas(&expiry)?, &utterances).await?;
    upload(&client, &storage, &storage.account_sas(&expiry)?, std::slice::from_ref(&clip)).await?;
    let urls: Vec<String> =
        utterances.iter().map(|u| storage.blob_read_url(&u.name, &expiry)).collect::<anyhow::Result<_>>()?;
    // Start the server's workers (each loads the model on its first job) before timing anything.
    let warm: Vec<_> = stream::iter(&utterances[..workers.min(count)])
        .map(|u| speech.recognize(&client, &u.wav))
        .buffer_unordered(workers)
        .collect()
        .await;
    for result in warm {
        let status = result?;
        ensure!(status == "Success", "warm-up recognition: {status}");
    }
    let server_pids: Vec<String> =
        worker_processes("engine-worker").into_iter().filter(|p| !alone_pids.contains(p)).collect();
    println!(
        "  server up, {count} blobs uploaded; both pools warm (bench pool {alone_pids:?}, server pool {server_pids:?})"
    );
    let (mut engine_rates, mut batch_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut alone_cpu, mut server_worker_cpu, mut server_cpu) = (0.0, 0.0, 0.0);
    for round in 1..=rounds {
        let before = cpu_seconds(&alone_pids);
        let engine_rate = engine_throughput(&engine, &utterances).await?;
        alone_cpu += cpu_seconds(&alone_pids) - before;
        println!("  [1] round {round}: engine alone {engine_rate:.2} audio s / wall s");
        let (before_workers, before_self) = (cpu_seconds(&server_pids), cpu_seconds(&["self".to_owned()]));
        let mut last = Duration::ZERO;
        let (job, wall) = speech
            .transcribe(&client, urls.clone(), |elapsed| {
                if elapsed - last >= Duration::from_secs(10) {
                    last = elapsed;
                    println!("  [2] round {round}: batch {:.0} s...", elapsed.as_secs_f64());
                }
            })
            .await?;
        server_worker_cpu += cpu_seconds(&server_pids) - before_workers;
        server_cpu += cpu_seconds(&["self".to_owned()]) - before_self;
        check_report(&speech.report(&client, &job).await?, count)?;
        let batch_rate = audio_seconds / wall.as_secs_f64();
        println!(
            "  [2] round {round}: batch {:.2} s wall, {batch_rate:.2} audio s / wall s = {:.2}x the engine alone",
            wall.as_secs_f64(),
            batch_rate / engine_rate
        );
        engine_rates.push(engine_rate);
        batch_rates.push(batch_rate);
        ratios.push(batch_rate / engine_rate);
    }
    let (engine_rates, batch_rates, ratios) = (sorted(engine_rates), sorted(batch_rates), sorted(ratios));
    let processed = audio_seconds * rounds as f64;

    // 3. Short-audio latency, one request at a time, against the engine alone on the same samples.
    println!("  [3] short audio: {requests} requests, each followed by the engine alone on the same utterance...");
    let (mut through_server, mut alone, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..requests {
        let u = &utterances[i % count];
        let start = Instant::now();
        let status = speech.recognize(&client, &u.wav).await?;
        let served = start.elapsed().as_secs_f64() * 1000.0;
        ensure!(status == "Success", "short-audio recognition of {}: {status}", u.name);
        let start = Instant::now();
        engine.recognize(&u.samples).await?;
        let direct = start.elapsed().as_secs_f64() * 1000.0;
        through_server.push(served);
        alone.push(direct);
        paired.push(served - direct);
        if (i + 1) % 20 == 0 {
            println!("  [3] short audio: {} of {requests}", i + 1);
        }
    }
    let (through_server, alone, paired) = (sorted(through_server), sorted(alone), sorted(paired));
    let (s50, s99, a50, a99) = (
        percentile(&through_server, 0.5),
        percentile(&through_server, 0.99),
        percentile(&alone, 0.5),
        percentile(&alone, 0.99),
    );

    // 4. A 1,000-file job: peak memory of the server (this process) and of its workers.
    drop(engine);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_job = status_kib("self", "VmHWM:").unwrap_or(0);
    // Reset the peak (Linux >= 4.0) so that it is the job's own.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let many = vec![storage.blob_read_url(&clip.name, &expiry)?; files];
    let many_seconds = clip.seconds * files as f64;
    println!("  [4] large job: {files} files of {:.1} s ({many_seconds:.0} s of audio), transcribing...", clip.seconds);
    let (mut peak_workers_rss, mut last) = (0u64, Duration::ZERO);
    let (job, large_wall) = speech
        .transcribe(&client, many, |elapsed| {
            let rss: u64 = worker_processes("engine-worker").iter().filter_map(|pid| status_kib(pid, "VmRSS:")).sum();
            peak_workers_rss = peak_workers_rss.max(rss);
            if elapsed - last >= Duration::from_secs(15) {
                last = elapsed;
                let own = status_kib("self", "VmRSS:").unwrap_or(0);
                println!(
                    "  [4] large job: {:.0} s, server RSS {:.0} MiB, workers RSS {:.0} MiB",
                    elapsed.as_secs_f64(),
                    mib(own),
                    mib(rss)
                );
            }
        })
        .await?;
    let server_peak = status_kib("self", "VmHWM:").unwrap_or(0);
    let worker_pids = worker_processes("engine-worker");
    let worker_peaks: Vec<u64> = worker_pids.iter().filter_map(|pid| status_kib(pid, "VmHWM:")).collect();
    check_report(&speech.report(&client, &job).await?, files)?;
    let large_rate = many_seconds / large_wall.as_secs_f64();
    server.stop().await;

    println!();
    println!("speech-to-text benchmark ({workers} workers per pool, client in the same process as the server)");
    println!(
        "  [1] engine alone, {count} files ({audio_seconds:.0} s), {rounds} rounds: median {:.2} audio s / wall s (range {:.2}-{:.2})",
        percentile(&engine_rates, 0.5),
        engine_rates[0],
        engine_rates[rounds - 1]
    );
    println!(
        "  [2] batch transcription, same files: median {:.2} audio s / wall s (range {:.2}-{:.2})",
        percentile(&batch_rates, 0.5),
        batch_rates[0],
        batch_rates[rounds - 1]
    );
    println!(
        "        ratio to the engine alone, per round: median {:.2}x (range {:.2}-{:.2}; target >= 0.9)",
        percentile(&ratios, 0.5),
        ratios[0],
        ratios[rounds - 1]
    );
    println!(
        "        CPU per audio second: engine alone {:.3} s in its workers; batch {:.3} s in the server's workers + {:.3} s in this process (server + client)",
        alone_cpu / processed,
        server_worker_cpu / processed,
        server_cpu / processed
    );
    println!("  [3] short audio ({requests} sequential requests, ~5 s utterances):");
    println!("        server p50 {s50:.0} ms, p99 {s99:.0} ms; engine alone p50 {a50:.0} ms, p99 {a99:.0} ms");
    println!(
        "        overhead p50 {:.0} ms (target <= 50), p99 {:.0} ms (target <= 150); paired per request p50 {:.0} ms, p99 {:.0} ms",
        s50 - a50,
        s99 - a99,
        percentile(&paired, 0.5),
        percentile(&paired, 0.99)
    );
    println!(
        "  [4] {files}-file job ({:.1} s clip): {:.0} s wall, {large_rate:.2} audio s / wall s",
        clip.seconds,
        large_wall.as_secs_f64()
    );
    println!(
        "        server process peak RSS (VmHWM{}, includes the bench's client): {:.0} MiB (whole run before the job: {:.0} MiB)",
        if reset { " reset before the job" } else { ", whole run" },
        mib(server_peak),
        mib(before_job)
    );
    println!(
        "        engine workers: {} processes, peak RSS {} MiB each; sampled sum peak {:.0} MiB",
        worker_pids.len(),
        worker_peaks.iter().map(|k| format!("{:.0}", mib(*k))).collect::<Vec<_>>().join(" / "),
        mib(peak_workers_rss)
    );
    Ok(())
}
