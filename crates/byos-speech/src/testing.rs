//! What the tests of several modules share: speech to recognize, and the pitch of speech.

use crate::tts::Speech;

/// `text` spoken by Flite's `voice` (Debian's `flite`; scripts/test.sh installs it) as 16 kHz
/// engine samples.
pub(crate) fn flite_speech(voice: &str, text: &str) -> Vec<i16> {
    let dir = std::env::temp_dir().join(format!("byos-flite-{}-{voice}-{:016x}", std::process::id(), fnv(text)));
    let _ = std::fs::create_dir_all(&dir);
    let wav = dir.join("speech.wav");
    let made = std::process::Command::new("flite")
        .args(["-voice", voice, "-t", text, "-o"])
        .arg(&wav)
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "flite could not make test speech: install Debian's flite (scripts/test.sh does)");
    let bytes = std::fs::read(&wav).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let audio = crate::audio::decode(&bytes, "wav").unwrap_or_else(|e| panic!("{e}"));
    audio.channels.into_iter().next().unwrap_or_default()
}

/// Flite's voices are the library's globals: one test at a time changes them, holding this.
static FLITE_ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Flite to this test until the guard is dropped.
pub(crate) fn flite_to_myself() -> std::sync::MutexGuard<'static, ()> {
    FLITE_ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name for a text's files (the tests of one process run at once).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The median pitch of the loudest 40 ms frames: the lag of their autocorrelation's peak
/// between 60 and 400 Hz.
pub(crate) fn pitch_hz(speech: &Speech) -> f32 {
    let (rate, frame) = (speech.sample_rate as usize, speech.sample_rate as usize / 25);
    let frames: Vec<&[i16]> = speech.samples.chunks_exact(frame).collect();
    let energy = |f: &[i16]| f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
    let loudest = frames.iter().map(|f| energy(f)).fold(0.0, f64::max);
    let mut pitches: Vec<f32> = frames
        .iter()
        .filter(|f| energy(f) > loudest * 0.3)
        .map(|f| {
            let correlation =
                |lag: usize| f.iter().zip(&f[lag..]).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>();
            let lag = (rate / 400..rate / 60).max_by(|&a, &b| correlation(a).total_cmp(&correlation(b)));
            rate as f32 / lag.unwrap_or(1) as f32
        })
        .collect();
    pitches.sort_by(f32::total_cmp);
    pitches.get(pitches.len() / 2).copied().unwrap_or(0.0)
}
