//! What the tests of several modules share: speech to recognize.

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

/// A name for a text's files (the tests of one process run at once).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
