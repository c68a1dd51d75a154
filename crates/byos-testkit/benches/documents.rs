//! Document Intelligence benchmark (issue 12), in one run on the same generated pages:
//!
//! 1. throughput: every page read straight through an `OcrEngine` pool of the server's size (one
//!    worker per core), against every page analyzed with `prebuilt-read` through the in-process
//!    server (v4 REST: POST the PNG, poll the operation to `succeeded`), both with twice the pool's
//!    size in flight; in alternating rounds, so that whatever else runs on the machine weighs on
//!    both alike: pages per second and the ratio, and the CPU per page of each side's workers and
//!    of this process (which does not move with the machine's other load);
//! 2. latency: one page at a time, the engine alone and the server in turn on each page (which goes
//!    first alternates), submit to `succeeded`: p50 / p95 and the overhead paired per page;
//! 3. the character accuracy of the server's results against the text drawn.
//!
//! Run: `cargo build --release -p byos-server && cargo bench -p byos-testkit --bench documents`.
//! Workers are `byos ocr-worker` processes of the release binary (`BYOS_BIN` to choose another).
//! Knobs: `BENCH_PAGES` (default 24), `BENCH_ROUNDS` (default 4). Needs Tesseract (`libtesseract5`,
//! `tesseract-ocr-eng`) and `fonts-dejavu-core`.

#[path = "support/processes.rs"]
mod processes;
mod support;

use std::io::Cursor;
use std::time::{Duration, Instant};

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use anyhow::{Context, bail, ensure};
use byos_document::OcrEngine;
use byos_speech::workers::WorkerCommand;
use byos_testkit::TestServer;
use futures_util::{StreamExt, stream};
use image::{GrayImage, ImageFormat, Luma};
use processes::{cpu_seconds, worker_processes};
use serde_json::Value;
use support::{SENTENCES, byos_binary, env_usize, percentile, sorted};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// How long one page may take (as the server's pool).
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const API_VERSION: &str = "2024-11-30";
/// A Letter page at 200 dpi.
const PAGE_WIDTH: u32 = 1700;
const PAGE_HEIGHT: u32 = 2200;
/// 36 px at 200 dpi is 13 pt; 68 px from baseline to baseline gives 28 lines between the margins.
const FONT_PX: f32 = 36.0;
const LINE_PX: f32 = 68.0;
const MARGIN_PX: f32 = 150.0;
/// Polling while pages are queued behind others: a poll's delay only postpones the next submission
/// (twice the pool's size is in flight), and polls cost the cores the workers need.
const THROUGHPUT_POLL: Duration = Duration::from_millis(25);
/// Polling of the one page in flight: it bounds the latency's resolution.
const LATENCY_POLL: Duration = Duration::from_millis(5);

/// A generated page: its PNG and the words drawn on it, in reading order.
struct Page {
    png: Vec<u8>,
    words: Vec<String>,
}

/// Page `index`'s text: a heading, then the sentences from a place of their own, wrapped to the
/// width between the margins, to the bottom margin.
fn page_lines(font: &FontRef, index: usize, count: usize) -> Vec<String> {
    let scaled = font.as_scaled(PxScale::from(FONT_PX));
    let width = |text: &str| text.chars().map(|c| scaled.h_advance(scaled.glyph_id(c))).sum::<f32>();
    let room = PAGE_WIDTH as f32 - 2.0 * MARGIN_PX;
    let rows = ((PAGE_HEIGHT as f32 - 2.0 * MARGIN_PX) / LINE_PX) as usize;
    let mut lines = vec![format!("Page {} of {count}: minutes of meeting {}", index + 1, 4000 + index * 37)];
    let mut words = SENTENCES.iter().cycle().skip(index * 5).flat_map(|s| s.split(' '));
    let mut line = String::new();
    while lines.len() < rows {
        let Some(word) = words.next() else { break };
        let longer = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
        if width(&longer) > room {
            lines.push(std::mem::replace(&mut line, word.to_owned()));
        } else {
            line = longer;
        }
    }
    lines
}

/// `lines` in black DejaVu Sans on a white page.
fn draw(font: &FontRef, lines: &[String]) -> GrayImage {
    let scaled = font.as_scaled(PxScale::from(FONT_PX));
    let mut image = GrayImage::from_pixel(PAGE_WIDTH, PAGE_HEIGHT, Luma([255]));
    let mut baseline = MARGIN_PX + scaled.ascent();
    for line in lines {
        let mut x = MARGIN_PX;
        for c in line.chars() {
            let glyph = scaled.scaled_glyph(c);
            let advance = scaled.h_advance(glyph.id);
            let glyph = glyph.id.with_scale_and_position(FONT_PX, point(x, baseline));
            if let Some(outline) = font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                outline.draw(|gx, gy, coverage| {
                    let (px, py) = (bounds.min.x as i64 + gx as i64, bounds.min.y as i64 + gy as i64);
                    if let Some(p) = image.get_pixel_mut_checked(px as u32, py as u32) {
                        p.0[0] = p.0[0].min((255.0 * (1.0 - coverage)) as u8);
                    }
                });
            }
            x += advance;
        }
        baseline += LINE_PX;
    }
    image
}

fn generate(count: usize) -> anyhow::Result<Vec<Page>> {
    let bytes = std::fs::read(FONT).with_context(|| format!("{FONT} (apt-get install fonts-dejavu-core)"))?;
    let font = FontRef::try_from_slice(&bytes)?;
    (0..count)
        .map(|index| {
            let lines = page_lines(&font, index, count);
            let mut png = Cursor::new(Vec::new());
            draw(&font, &lines).write_to(&mut png, ImageFormat::Png)?;
            let words = lines.iter().flat_map(|l| l.split(' ')).map(str::to_owned).collect();
            Ok(Page { png: png.into_inner(), words })
        })
        .collect()
}

fn milliseconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// Reads every page through `engine` with `in_flight` at once, each read a task of its own (as the
/// server runs each analysis); pages per second.
async fn engine_throughput(
    engine: &std::sync::Arc<OcrEngine>,
    pages: &[Page],
    in_flight: usize,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let results: Vec<_> = stream::iter(pages)
        .map(|p| {
            let (engine, png) = (std::sync::Arc::clone(engine), p.png.clone());
            tokio::spawn(async move { byos_document::read(&engine, &png, None, byos_document::Detail::Text).await })
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let wall = start.elapsed().as_secs_f64();
    for result in results {
        let read = result??;
        ensure!(read.first().is_some_and(|p| !p.words.is_empty()), "the engine read nothing");
    }
    Ok(pages.len() as f64 / wall)
}

/// One page through the engine alone, in milliseconds.
async fn engine_latency(engine: &OcrEngine, page: &Page) -> anyhow::Result<f64> {
    let start = Instant::now();
    byos_document::read(engine, &page.png, None, byos_document::Detail::Text).await?;
    Ok(milliseconds(start.elapsed()))
}

/// A Document Intelligence account's data plane: its endpoint and a key.
struct Documents {
    client: reqwest::Client,
    endpoint: String,
    key: String,
}

impl Documents {
    /// `prebuilt-read` of one document: POST to `succeeded`, polling every `poll`; its `analyzeResult`.
    async fn analyze(&self, bytes: &[u8], poll: Duration) -> anyhow::Result<Value> {
        let url = format!(
            "{}documentintelligence/documentModels/prebuilt-read:analyze?api-version={API_VERSION}",
            self.endpoint
        );
        let response = self
            .client
            .post(url)
            .header("Ocp-Apim-Subscription-Key", &self.key)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await?;
        let status = response.status();
        let location = response.headers().get("operation-location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        ensure!(status == reqwest::StatusCode::ACCEPTED, "analyze: {status} {}", response.text().await?);
        let location = location.context("no Operation-Location")?;
        loop {
            let response = self.client.get(&location).header("Ocp-Apim-Subscription-Key", &self.key).send().await?;
            let status = response.status();
            let mut body: Value = response.json().await?;
            ensure!(status.is_success(), "polling: {status} {body}");
            match body["status"].as_str() {
                Some("succeeded") => return Ok(body["analyzeResult"].take()),
                Some("running") => tokio::time::sleep(poll).await,
                _ => bail!("the analysis did not succeed: {body}"),
            }
        }
    }
}

/// Analyzes every page through the server with `in_flight` at once; pages per second and the results.
async fn server_throughput(
    documents: &Documents,
    pages: &[Page],
    in_flight: usize,
) -> anyhow::Result<(f64, Vec<Value>)> {
    let start = Instant::now();
    // `buffered`, not `buffer_unordered`: the same number in flight, the results in page order.
    let results: Vec<_> =
        stream::iter(pages).map(|p| documents.analyze(&p.png, THROUGHPUT_POLL)).buffered(in_flight).collect().await;
    let wall = start.elapsed().as_secs_f64();
    Ok((pages.len() as f64 / wall, results.into_iter().collect::<anyhow::Result<_>>()?))
}

/// One page through the server, submit to `succeeded`, in milliseconds.
async fn server_latency(documents: &Documents, page: &Page) -> anyhow::Result<f64> {
    let start = Instant::now();
    documents.analyze(&page.png, LATENCY_POLL).await?;
    Ok(milliseconds(start.elapsed()))
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(previous + cost);
            previous = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// 1 - edit distance / length of the result's words against the words drawn, joined by spaces.
fn accuracy(result: &Value, page: &Page) -> f64 {
    let words =
        result["pages"].as_array().into_iter().flatten().flat_map(|p| p["words"].as_array().into_iter().flatten());
    let read: Vec<char> = words.filter_map(|w| w["content"].as_str()).collect::<Vec<_>>().join(" ").chars().collect();
    let expected: Vec<char> = page.words.join(" ").chars().collect();
    1.0 - levenshtein(&read, &expected) as f64 / expected.len() as f64
}

/// Starts `engine`'s workers (each starts on its first job) by reading a page on each.
async fn warm_engine(engine: &OcrEngine, pages: &[Page]) -> anyhow::Result<()> {
    let warm: Vec<_> =
        stream::iter(pages).map(|p| engine_latency(engine, p)).buffer_unordered(pages.len()).collect().await;
    warm.into_iter().try_for_each(|r| r.map(drop))
}

async fn warm_server(documents: &Documents, pages: &[Page]) -> anyhow::Result<()> {
    let warm: Vec<_> =
        stream::iter(pages).map(|p| server_latency(documents, p)).buffer_unordered(pages.len()).collect().await;
    warm.into_iter().try_for_each(|r| r.map(drop))
}

/// CPU seconds used while `work` ran: by `workers`, and by this process (server and client).
async fn with_cpu<T>(
    workers: &[String],
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Cpu)> {
    let me = ["self".to_owned()];
    let (workers_before, me_before) = (cpu_seconds(workers), cpu_seconds(&me));
    let out = work.await?;
    Ok((out, Cpu { workers: cpu_seconds(workers) - workers_before, process: cpu_seconds(&me) - me_before }))
}

/// CPU seconds of a pool's workers and of this process.
#[derive(Default, Clone, Copy)]
struct Cpu {
    workers: f64,
    process: f64,
}

impl std::ops::AddAssign for Cpu {
    fn add_assign(&mut self, other: Cpu) {
        self.workers += other.workers;
        self.process += other.process;
    }
}

/// The median and range of `values`, sorted.
fn spread(values: &[f64], unit: &str) -> String {
    format!("median {:.2}{unit} (range {:.2}-{:.2})", percentile(values, 0.5), values[0], values[values.len() - 1])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = env_usize("BENCH_PAGES", 24)?.max(1);
    let rounds = env_usize("BENCH_ROUNDS", 4)?.max(1);
    let binary = byos_binary()?;
    let command = WorkerCommand { program: binary.clone(), args: vec!["ocr-worker".into()] };
    // As serve.rs sizes the server's pool.
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let in_flight = workers * 2;
    println!(
        "document benchmark: {count} pages, {rounds} rounds, {workers} workers per pool, {in_flight} in flight ({})",
        binary.display()
    );
    let pages = generate(count)?;
    let words: usize = pages.iter().map(|p| p.words.len()).sum();
    let kib = pages.iter().map(|p| p.png.len()).sum::<usize>() / 1024 / count;
    println!(
        "  generated {count} PNG pages of {PAGE_WIDTH}x{PAGE_HEIGHT} px (200 dpi), {words} words, ~{kib} KiB each"
    );

    let engine = std::sync::Arc::new(OcrEngine::start(command.clone(), workers, JOB_TIMEOUT));
    let server = TestServer::start_with(|config| config.ocr_worker = Some(command.clone())).await?;
    let client = server.client()?;
    let (endpoint, key) = server.document_account(&client, "docbench", "docbench").await?;
    let documents = Documents { client, endpoint, key };
    let warm = &pages[..workers.min(count)];
    warm_engine(&engine, warm).await?;
    let alone_pids = worker_processes("ocr-worker");
    warm_server(&documents, warm).await?;
    let server_pids: Vec<String> =
        worker_processes("ocr-worker").into_iter().filter(|p| !alone_pids.contains(p)).collect();
    println!(
        "  both pools warm (bench pool {alone_pids:?}, server pool {server_pids:?}); server polls every {} ms in throughput, {} ms in latency runs",
        THROUGHPUT_POLL.as_millis(),
        LATENCY_POLL.as_millis()
    );

    // 1. Throughput in alternating rounds; which side goes first alternates too.
    let (mut engine_rates, mut server_rates, mut ratios, mut results) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut alone_cpu, mut server_cpu) = (Cpu::default(), Cpu::default());
    for round in 1..=rounds {
        let engine_run = || with_cpu(&alone_pids, engine_throughput(&engine, &pages, in_flight));
        let server_run = || with_cpu(&server_pids, server_throughput(&documents, &pages, in_flight));
        let ((engine_rate, engine_cpu), ((server_rate, read), served_cpu)) = if round % 2 == 1 {
            let engine_side = engine_run().await?;
            (engine_side, server_run().await?)
        } else {
            let server_side = server_run().await?;
            (engine_run().await?, server_side)
        };
        results = read;
        alone_cpu += engine_cpu;
        server_cpu += served_cpu;
        println!(
            "  [1] round {round} ({} first): engine alone {engine_rate:.2} pages/s, server {server_rate:.2} pages/s = {:.2}x",
            if round % 2 == 1 { "engine" } else { "server" },
            server_rate / engine_rate
        );
        engine_rates.push(engine_rate);
        server_rates.push(server_rate);
        ratios.push(server_rate / engine_rate);
    }
    let read_pages = (count * rounds) as f64;
    let (engine_rates, server_rates, ratios) = (sorted(engine_rates), sorted(server_rates), sorted(ratios));

    // 2. Latency, one page at a time, the two sides in turn on the same page.
    let (mut alone, mut served, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    for (i, page) in pages.iter().enumerate() {
        let (direct, through) = if i % 2 == 0 {
            (engine_latency(&engine, page).await?, server_latency(&documents, page).await?)
        } else {
            let through = server_latency(&documents, page).await?;
            (engine_latency(&engine, page).await?, through)
        };
        alone.push(direct);
        served.push(through);
        paired.push(through - direct);
    }
    let (alone, served, paired) = (sorted(alone), sorted(served), sorted(paired));

    // 3. Accuracy of the server's results (the last throughput round's).
    let accuracies = sorted(results.iter().zip(&pages).map(|(result, page)| accuracy(result, page)).collect());
    server.stop().await;

    println!();
    println!("document intelligence benchmark ({workers} workers per pool, client in the same process as the server)");
    println!("  [1] throughput, {count} pages, {in_flight} in flight, {rounds} alternating rounds:");
    println!("        engine alone (byos_document::read): {}", spread(&engine_rates, " pages/s"));
    println!(
        "        server (prebuilt-read, POST + poll every {} ms): {}",
        THROUGHPUT_POLL.as_millis(),
        spread(&server_rates, " pages/s")
    );
    println!("        server / engine alone, per round: {} (target >= 0.9)", spread(&ratios, "x"));
    println!(
        "        CPU s per page: engine alone {:.3} in its workers + {:.3} in this process; server {:.3} in its workers + {:.3} in this process (server + client)",
        alone_cpu.workers / read_pages,
        alone_cpu.process / read_pages,
        server_cpu.workers / read_pages,
        server_cpu.process / read_pages
    );
    // What the cores could carry, whatever else shared them during the rounds.
    println!(
        "        pages per CPU second, server / engine alone: {:.3}x",
        (alone_cpu.workers + alone_cpu.process) / (server_cpu.workers + server_cpu.process)
    );
    println!(
        "  [2] latency, one page at a time ({count} pages; server polled every {} ms, the resolution of its figures):",
        LATENCY_POLL.as_millis()
    );
    println!(
        "        engine alone p50 {:.0} ms, p95 {:.0} ms; server submit -> succeeded p50 {:.0} ms, p95 {:.0} ms",
        percentile(&alone, 0.5),
        percentile(&alone, 0.95),
        percentile(&served, 0.5),
        percentile(&served, 0.95)
    );
    println!(
        "        overhead paired per page: p50 {:.0} ms (target <= 50), p95 {:.0} ms",
        percentile(&paired, 0.5),
        percentile(&paired, 0.95)
    );
    println!(
        "  [3] character accuracy of the server's results: median {:.1}%, worst {:.1}%",
        percentile(&accuracies, 0.5) * 100.0,
        accuracies[0] * 100.0
    );
    Ok(())
}
