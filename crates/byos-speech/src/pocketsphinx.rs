//! PocketSphinx, the speech-to-text engine byos ships with: Debian's `libpocketsphinx3`
//! (0.8+5prealpha) and its US English model (`pocketsphinx-en-us`), loaded at run time, so that byos
//! builds and starts on a machine without them (recognition then reports the engine unavailable).
//!
//! The library is C; this module is the only place of byos that calls foreign code, through the
//! handful of functions a recognition needs. A [`PocketSphinx`] is one decoder with its model loaded
//! (seconds, so a worker keeps it); it recognizes one utterance of 16 kHz 16-bit mono audio at a time.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// Where Debian puts the US English model.
pub const DEBIAN_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";
const LIBRARY: &str = "libpocketsphinx.so.3";
const SPHINXBASE: &str = "libsphinxbase.so.3";
/// PocketSphinx's frame rate: 100 frames a second.
const MS_PER_FRAME: u64 = 10;

/// Why the engine cannot recognize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("the speech engine is not installed: {0}")]
    Unavailable(String),
    #[error("the speech engine failed: {0}")]
    Failed(String),
}

/// The model files of one language.
#[derive(Clone, Debug)]
pub struct Model {
    pub acoustic: PathBuf,
    pub language_model: PathBuf,
    pub dictionary: PathBuf,
}

impl Model {
    /// The US English model as Debian installs it under `dir`.
    pub fn en_us(dir: &Path) -> Model {
        Model {
            acoustic: dir.join("en-us"),
            language_model: dir.join("en-us.lm.bin"),
            dictionary: dir.join("cmudict-en-us.dict"),
        }
    }
}

/// One recognized word and where it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Word {
    pub text: String,
    pub offset_ms: u64,
    pub duration_ms: u64,
}

/// What the engine heard in one utterance.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recognition {
    /// The words, space separated (empty: nothing was recognized).
    pub text: String,
    pub words: Vec<Word>,
    /// The posterior probability of the hypothesis, 0 to 1.
    pub confidence: f64,
}

type ArgsFn = unsafe extern "C" fn() -> *const c_void;
type ParseFn = unsafe extern "C" fn(*mut c_void, *const c_void, c_int, *const *const c_char, c_int) -> *mut c_void;
type FreeConfigFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type InitFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type DecoderFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type ProcessFn = unsafe extern "C" fn(*mut c_void, *const i16, usize, c_int, c_int) -> c_int;
type HypFn = unsafe extern "C" fn(*mut c_void, *mut i32) -> *const c_char;
type ProbFn = unsafe extern "C" fn(*mut c_void) -> i32;
type PtrFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type WordFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FramesFn = unsafe extern "C" fn(*mut c_void, *mut c_int, *mut c_int);
type ExpFn = unsafe extern "C" fn(*mut c_void, c_int) -> f64;

/// The library and the functions byos uses, resolved once.
struct Library {
    // Kept loaded for as long as the function pointers below are used.
    _pocketsphinx: libloading::Library,
    _sphinxbase: libloading::Library,
    ps_args: ArgsFn,
    cmd_ln_parse_r: ParseFn,
    cmd_ln_free_r: FreeConfigFn,
    ps_init: InitFn,
    ps_free: DecoderFn,
    ps_start_utt: DecoderFn,
    ps_process_raw: ProcessFn,
    ps_end_utt: DecoderFn,
    ps_get_hyp: HypFn,
    ps_get_prob: ProbFn,
    ps_get_logmath: PtrFn,
    logmath_exp: ExpFn,
    ps_seg_iter: PtrFn,
    ps_seg_next: PtrFn,
    ps_seg_word: WordFn,
    ps_seg_frames: FramesFn,
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("{e} (install libpocketsphinx3 and pocketsphinx-en-us)"))
}

impl Library {
    fn load() -> Result<Library, EngineError> {
        // SAFETY: these are the system's PocketSphinx and SphinxBase shared libraries; loading them
        // runs no code beyond their (side-effect free) initializers.
        let (sphinxbase, pocketsphinx) = unsafe {
            (
                libloading::Library::new(SPHINXBASE).map_err(unavailable)?,
                libloading::Library::new(LIBRARY).map_err(unavailable)?,
            )
        };
        macro_rules! symbol {
            ($lib:expr, $name:literal) => {
                // SAFETY: the type given is the function's C signature in the 0.8+5prealpha headers.
                *unsafe { $lib.get(concat!($name, "\0").as_bytes()) }.map_err(unavailable)?
            };
        }
        Ok(Library {
            ps_args: symbol!(pocketsphinx, "ps_args"),
            cmd_ln_parse_r: symbol!(sphinxbase, "cmd_ln_parse_r"),
            cmd_ln_free_r: symbol!(sphinxbase, "cmd_ln_free_r"),
            ps_init: symbol!(pocketsphinx, "ps_init"),
            ps_free: symbol!(pocketsphinx, "ps_free"),
            ps_start_utt: symbol!(pocketsphinx, "ps_start_utt"),
            ps_process_raw: symbol!(pocketsphinx, "ps_process_raw"),
            ps_end_utt: symbol!(pocketsphinx, "ps_end_utt"),
            ps_get_hyp: symbol!(pocketsphinx, "ps_get_hyp"),
            ps_get_prob: symbol!(pocketsphinx, "ps_get_prob"),
            ps_get_logmath: symbol!(pocketsphinx, "ps_get_logmath"),
            logmath_exp: symbol!(sphinxbase, "logmath_exp"),
            ps_seg_iter: symbol!(pocketsphinx, "ps_seg_iter"),
            ps_seg_next: symbol!(pocketsphinx, "ps_seg_next"),
            ps_seg_word: symbol!(pocketsphinx, "ps_seg_word"),
            ps_seg_frames: symbol!(pocketsphinx, "ps_seg_frames"),
            _pocketsphinx: pocketsphinx,
            _sphinxbase: sphinxbase,
        })
    }
}

/// One PocketSphinx decoder with its model loaded.
pub struct PocketSphinx {
    lib: Library,
    config: NonNull<c_void>,
    decoder: NonNull<c_void>,
}

// SAFETY: a decoder is used by one thread at a time (`&mut self`); PocketSphinx keeps no
// thread-local state.
unsafe impl Send for PocketSphinx {}

fn c_string(text: &str) -> Result<CString, EngineError> {
    CString::new(text).map_err(|_| EngineError::Failed("a model path contains a NUL byte".into()))
}

fn path_arg(path: &Path) -> Result<CString, EngineError> {
    if !path.exists() {
        return Err(unavailable(format!("{} is missing", path.display())));
    }
    c_string(&path.to_string_lossy())
}

impl PocketSphinx {
    /// Loads the library and `model` (takes a few seconds).
    pub fn load(model: &Model) -> Result<PocketSphinx, EngineError> {
        let lib = Library::load()?;
        let args = [
            c_string("-hmm")?,
            path_arg(&model.acoustic)?,
            c_string("-lm")?,
            path_arg(&model.language_model)?,
            c_string("-dict")?,
            path_arg(&model.dictionary)?,
            c_string("-logfn")?,
            c_string("/dev/null")?,
        ];
        let argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
        // SAFETY: argv points at NUL-terminated strings that outlive the call; the definitions come
        // from the library itself.
        let config = unsafe {
            (lib.cmd_ln_parse_r)(std::ptr::null_mut(), (lib.ps_args)(), argv.len() as c_int, argv.as_ptr(), 1)
        };
        let config =
            NonNull::new(config).ok_or_else(|| EngineError::Failed("the engine refused its configuration".into()))?;
        // SAFETY: config is the valid configuration just made; ps_init retains it.
        let decoder = unsafe { (lib.ps_init)(config.as_ptr()) };
        let Some(decoder) = NonNull::new(decoder) else {
            // SAFETY: config is ours and not used after this.
            unsafe { (lib.cmd_ln_free_r)(config.as_ptr()) };
            return Err(EngineError::Failed("the engine could not load its model".into()));
        };
        Ok(PocketSphinx { lib, config, decoder })
    }

    /// Recognizes one utterance of 16 kHz 16-bit mono samples.
    pub fn recognize(&mut self, samples: &[i16]) -> Result<Recognition, EngineError> {
        let ps = self.decoder.as_ptr();
        let lib = &self.lib;
        let failed = |what: &str| EngineError::Failed(format!("{what} failed"));
        // SAFETY: ps is this decoder, used by this thread only; samples outlive the call.
        unsafe {
            if (lib.ps_start_utt)(ps) < 0 {
                return Err(failed("starting the utterance"));
            }
            if (lib.ps_process_raw)(ps, samples.as_ptr(), samples.len(), 0, 1) < 0 {
                (lib.ps_end_utt)(ps);
                return Err(failed("processing the audio"));
            }
            if (lib.ps_end_utt)(ps) < 0 {
                return Err(failed("ending the utterance"));
            }
        }
        let mut score = 0;
        // SAFETY: the hypothesis string belongs to the decoder and is copied before the next call.
        let hyp = unsafe { (lib.ps_get_hyp)(ps, &mut score) };
        let text =
            if hyp.is_null() { String::new() } else { unsafe { CStr::from_ptr(hyp) }.to_string_lossy().into_owned() };
        // SAFETY: as above; logmath belongs to the decoder.
        let confidence = unsafe { (lib.logmath_exp)((lib.ps_get_logmath)(ps), (lib.ps_get_prob)(ps)) };
        Ok(Recognition { text: text.trim().to_owned(), words: self.words(), confidence: confidence.clamp(0.0, 1.0) })
    }

    /// The words of the last utterance with their times (silences, fillers and sentence marks left out).
    fn words(&self) -> Vec<Word> {
        let lib = &self.lib;
        let mut words = Vec::new();
        // SAFETY: the iterator belongs to the decoder; iterating to its end frees it.
        let mut seg = unsafe { (lib.ps_seg_iter)(self.decoder.as_ptr()) };
        while !seg.is_null() {
            let (mut start, mut end) = (0, 0);
            // SAFETY: seg is the current segment; its word string is copied at once.
            let word = unsafe {
                (lib.ps_seg_frames)(seg, &mut start, &mut end);
                CStr::from_ptr((lib.ps_seg_word)(seg)).to_string_lossy().into_owned()
            };
            if let Some(text) = spoken(&word) {
                let (start, end) = (start.max(0) as u64, end.max(start) as u64);
                words.push(Word {
                    text,
                    offset_ms: start * MS_PER_FRAME,
                    duration_ms: (end + 1 - start) * MS_PER_FRAME,
                });
            }
            // SAFETY: advancing the iterator; it returns null (and frees itself) at the end.
            seg = unsafe { (lib.ps_seg_next)(seg) };
        }
        words
    }
}

/// A segment's word as spoken: `<s>`, `</s>`, `<sil>` and `[NOISE]` are not words; `word(2)` is an
/// alternative pronunciation of `word`.
fn spoken(word: &str) -> Option<String> {
    if word.starts_with('<') || word.starts_with('[') || word.is_empty() {
        return None;
    }
    Some(word.split('(').next().unwrap_or(word).to_owned())
}

impl Drop for PocketSphinx {
    fn drop(&mut self) {
        // SAFETY: both are ours and used no more.
        unsafe {
            (self.lib.ps_free)(self.decoder.as_ptr());
            (self.lib.cmd_ln_free_r)(self.config.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fillers_are_not_words_and_alternates_are_the_word() {
        assert_eq!(spoken("<sil>"), None);
        assert_eq!(spoken("[NOISE]"), None);
        assert_eq!(spoken("hello(2)").as_deref(), Some("hello"));
        assert_eq!(spoken("world").as_deref(), Some("world"));
    }

    /// Speech from Flite (Debian's `flite`), recognized for real (scripts/test.sh installs both).
    #[test]
    fn flite_speech_is_recognized() {
        let dir = std::env::temp_dir().join(format!("byos-ps-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let wav = dir.join("speech.wav");
        let made = std::process::Command::new("flite")
            .args(["-t", "hello world", "-o"])
            .arg(&wav)
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "flite could not make test speech: install Debian's flite (scripts/test.sh does)");
        let mut engine =
            PocketSphinx::load(&Model::en_us(Path::new(DEBIAN_MODEL_DIR))).unwrap_or_else(|e| panic!("{e}"));
        let bytes = std::fs::read(&wav).unwrap_or_else(|e| panic!("{e}"));
        let audio = crate::audio::decode(&bytes, "wav").unwrap_or_else(|e| panic!("{e}"));
        let heard = engine.recognize(&audio.channels[0]).unwrap_or_else(|e| panic!("{e}"));
        assert!(heard.text.contains("hello") || heard.text.contains("world"), "heard {:?}", heard.text);
        assert!(!heard.words.is_empty() && heard.words.windows(2).all(|w| w[0].offset_ms <= w[1].offset_ms));
        let silence = engine.recognize(&vec![0i16; 16_000]).unwrap_or_else(|e| panic!("{e}"));
        assert!(silence.words.is_empty(), "heard {:?} in silence", silence.text);
        let _ = std::fs::remove_dir_all(dir);
    }
}
