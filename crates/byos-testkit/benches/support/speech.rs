//! What the speech benchmarks share beyond `support`: sentences spoken by Flite. Included by them
//! only (`#[path]`), so that the other benchmarks do not carry it unused.

use std::path::Path;

use anyhow::{Context, ensure};

/// One spoken sentence: the WAV file Flite wrote and its 16 kHz samples.
pub struct Utterance {
    pub name: String,
    pub wav: Vec<u8>,
    pub samples: Vec<i16>,
    pub seconds: f64,
}

pub fn speak(dir: &Path, name: &str, sentence: &str, voice: &str) -> anyhow::Result<Utterance> {
    let path = dir.join(name);
    let status = std::process::Command::new("flite")
        .args(["-voice", voice, "-t", sentence, "-o"])
        .arg(&path)
        .status()
        .context("running flite (apt-get install flite)")?;
    ensure!(status.success(), "flite failed: {status}");
    let wav = std::fs::read(&path)?;
    let decoded = byos_speech::audio::decode(&wav, "wav")?;
    let samples = decoded.channels.into_iter().next().context("no channel")?;
    Ok(Utterance { name: name.to_owned(), wav, seconds: decoded.duration_ms as f64 / 1000.0, samples })
}
