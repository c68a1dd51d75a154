//! What the benchmarks share: their knobs, the release binary whose workers they run, sentences
//! (spoken by Flite, printed on pages), percentiles. The speech benchmarks' Flite helpers are in
//! `speech.rs` next to this file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Sentences of about 16 words: about 5 seconds each in Flite's `rms` voice.
pub const SENTENCES: &[&str] = &[
    "the committee will meet again on thursday afternoon to review the budget for the coming year",
    "please remember to bring your passport and a copy of the booking when you come to the airport",
    "the weather service expects heavy rain across the northern valleys with strong winds after midnight",
    "our new office is on the third floor of the building next to the old railway station",
    "she opened the window and listened to the children playing football in the park across the street",
    "the engineers replaced the broken pump and the water came back to every house in the village",
    "if the train is late again tomorrow we will take the bus and walk the rest of the way",
    "the library will be closed on monday while the staff move the books into the new reading room",
    "he wrote a long letter to his sister describing the mountains and the lakes he had seen",
    "the market sells fresh bread and fruit every morning from seven until the early afternoon",
    "turn left at the second traffic light and the hospital entrance is on your right hand side",
    "the students finished the project a week early and presented their results to the whole school",
];

pub fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => value.parse().with_context(|| format!("{name}={value} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The `byos` release binary whose workers (`engine-worker`, `ocr-worker`, ...) the pools run.
pub fn byos_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("BYOS_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/release/deps/speech-<hash> -> target/release/byos
    let binary = exe.parent().and_then(Path::parent).context("the bench's own path")?.join("byos");
    if !binary.exists() {
        bail!("{} is missing: run `cargo build --release -p byos-server` first (or set BYOS_BIN)", binary.display());
    }
    Ok(binary)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}
