//! PocketSphinx, the speech-to-text engine byos ships with: Debian's `libpocketsphinx3`
//! (0.8+5prealpha) and its US English model (`pocketsphinx-en-us`), loaded at run time, so that byos
//! builds and starts on a machine without them (recognition then reports the engine unavailable).
//!
//! The library is C; this module is one of the three places of byos that call foreign code (with
//! [`crate::flite`] and [`crate::espeak`]), through the handful of functions a recognition needs.
//! A [`PocketSphinx`] is one decoder with its model loaded (seconds, so a worker keeps it); it
//! recognizes one utterance of 16 kHz 16-bit mono audio at a time.
//!
//! An adapted model gets a decoder of its own (kept for the next utterances with it): its language
//! model is SphinxBase's interpolation of the adapted trigrams with the base model, and its
//! dictionary the base one with the adapted model's words. Both reach the library as
//! `/proc/self/fd/N` paths of memory files (memfd), so customer text is never written to disk; a
//! decoder apart keeps one customer's words out of every other recognition.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use crate::adapt::{AdaptedModel, ModelCache};
pub use crate::recognizer::{Alternative, EngineError, MAX_ALTERNATIVES, Recognition, Recognizer, Word};

/// Where Debian puts the US English model.
pub const DEBIAN_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";
const LIBRARY: &str = "libpocketsphinx.so.3";
const SPHINXBASE: &str = "libsphinxbase.so.3";
/// PocketSphinx's frame rate: 100 frames a second.
const MS_PER_FRAME: u64 = 10;
/// The adapted model's share of the interpolated language model (the base model has the rest):
/// enough for the customer's phrases to win over the base model's, not so much that ordinary
/// speech in between is forced into them.
const ADAPTED_WEIGHT: f32 = 0.7;
/// How many adapted models' decoders a worker keeps (each is an acoustic model, a dictionary and a
/// language model: some 100 MB).
const CACHED_DECODERS: usize = 2;
/// N-best hypotheses looked at for distinct alternatives (the A* search repeats a word sequence
/// with other silences and pronunciations).
const NBEST_SEARCHED: usize = 50;
/// PocketSphinx's acoustic scale for posteriors (`-ascale`, default 20): path scores are divided by
/// it before they are made probabilities, as the library does for its own posterior.
const ACOUSTIC_SCALE: i64 = 20;
/// The search's scores are the log base's shifted right by this many bits (`SENSCR_SHIFT`).
const SCORE_SHIFT: u32 = 10;
/// SphinxBase's `NGRAM_AUTO` and `NGRAM_ARPA` file types.
const NGRAM_AUTO: c_int = 0;
const NGRAM_ARPA: c_int = 1;
/// The name of the adapted decoders' search.
const ADAPTED_SEARCH: &CStr = c"adapted";

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

type ArgsFn = unsafe extern "C" fn() -> *const c_void;
type ParseFn = unsafe extern "C" fn(*mut c_void, *const c_void, c_int, *const *const c_char, c_int) -> *mut c_void;
type ReleaseFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type VoidFn = unsafe extern "C" fn(*mut c_void);
type InitFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type DecoderFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type ProcessFn = unsafe extern "C" fn(*mut c_void, *const i16, usize, c_int, c_int) -> c_int;
type HypFn = unsafe extern "C" fn(*mut c_void, *mut i32) -> *const c_char;
type ProbFn = unsafe extern "C" fn(*mut c_void) -> i32;
type PtrFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type WordFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FramesFn = unsafe extern "C" fn(*mut c_void, *mut c_int, *mut c_int);
type ExpFn = unsafe extern "C" fn(*mut c_void, c_int) -> f64;
type ReadLmFn = unsafe extern "C" fn(*mut c_void, *const c_char, c_int, *mut c_void) -> *mut c_void;
type LmSetFn = unsafe extern "C" fn(*mut c_void, *mut *mut c_void, *mut *mut c_char, *const f32, i32) -> *mut c_void;
type SetLmFn = unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void) -> c_int;
type SetSearchFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The library and the functions byos uses, resolved once.
struct Library {
    // Kept loaded for as long as the function pointers below are used.
    _pocketsphinx: libloading::Library,
    _sphinxbase: libloading::Library,
    ps_args: ArgsFn,
    cmd_ln_parse_r: ParseFn,
    cmd_ln_free_r: ReleaseFn,
    ps_init: InitFn,
    ps_free: DecoderFn,
    ps_start_utt: DecoderFn,
    ps_process_raw: ProcessFn,
    ps_end_utt: DecoderFn,
    ps_get_hyp: HypFn,
    ps_get_prob: ProbFn,
    ps_get_logmath: PtrFn,
    logmath_exp: ExpFn,
    logmath_retain: PtrFn,
    ps_seg_iter: PtrFn,
    ps_seg_next: PtrFn,
    ps_seg_word: WordFn,
    ps_seg_frames: FramesFn,
    ps_nbest: PtrFn,
    ps_nbest_next: PtrFn,
    ps_nbest_hyp: HypFn,
    ps_nbest_free: VoidFn,
    ngram_model_read: ReadLmFn,
    ngram_model_set_init: LmSetFn,
    ngram_model_free: ReleaseFn,
    ps_set_lm: SetLmFn,
    ps_set_search: SetSearchFn,
}

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("{e} (install libpocketsphinx3 and pocketsphinx-en-us)"))
}

fn failed(what: &str) -> EngineError {
    EngineError::Failed(format!("{what} failed"))
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
            logmath_retain: symbol!(sphinxbase, "logmath_retain"),
            ps_seg_iter: symbol!(pocketsphinx, "ps_seg_iter"),
            ps_seg_next: symbol!(pocketsphinx, "ps_seg_next"),
            ps_seg_word: symbol!(pocketsphinx, "ps_seg_word"),
            ps_seg_frames: symbol!(pocketsphinx, "ps_seg_frames"),
            ps_nbest: symbol!(pocketsphinx, "ps_nbest"),
            ps_nbest_next: symbol!(pocketsphinx, "ps_nbest_next"),
            ps_nbest_hyp: symbol!(pocketsphinx, "ps_nbest_hyp"),
            ps_nbest_free: symbol!(pocketsphinx, "ps_nbest_free"),
            ngram_model_read: symbol!(sphinxbase, "ngram_model_read"),
            ngram_model_set_init: symbol!(sphinxbase, "ngram_model_set_init"),
            ngram_model_free: symbol!(sphinxbase, "ngram_model_free"),
            ps_set_lm: symbol!(pocketsphinx, "ps_set_lm"),
            ps_set_search: symbol!(pocketsphinx, "ps_set_search"),
            _pocketsphinx: pocketsphinx,
            _sphinxbase: sphinxbase,
        })
    }
}

/// One decoder and the configuration it was made with (both freed with it).
struct Decoder {
    config: NonNull<c_void>,
    decoder: NonNull<c_void>,
    ps_free: DecoderFn,
    cmd_ln_free_r: ReleaseFn,
}

impl Decoder {
    /// A decoder configured with `args` (flag, value pairs); the library's log goes nowhere.
    fn new(lib: &Library, args: &[(&str, CString)]) -> Result<Decoder, EngineError> {
        let mut strings = Vec::with_capacity(args.len() * 2 + 2);
        for (flag, value) in args {
            strings.push(c_string(flag)?);
            strings.push(value.clone());
        }
        strings.extend([c_string("-logfn")?, c_string("/dev/null")?]);
        let argv: Vec<*const c_char> = strings.iter().map(|a| a.as_ptr()).collect();
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
        Ok(Decoder { config, decoder, ps_free: lib.ps_free, cmd_ln_free_r: lib.cmd_ln_free_r })
    }

    fn ps(&self) -> *mut c_void {
        self.decoder.as_ptr()
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: both are ours and used no more.
        unsafe {
            (self.ps_free)(self.decoder.as_ptr());
            (self.cmd_ln_free_r)(self.config.as_ptr());
        }
    }
}

/// The PocketSphinx engine: the base model's decoder and those of recently used adapted models.
pub struct PocketSphinx {
    base: Decoder,
    adapted: ModelCache<Decoder>,
    model: Model,
    // Declared last so that it is dropped after the decoders, which call into it.
    lib: Library,
}

// SAFETY: the decoders are used by one thread at a time (`&mut self`); PocketSphinx keeps no
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

/// A file in memory only (memfd) holding `bytes`, for the library, which reads models from paths.
fn memory_file(name: &CStr, bytes: &[u8]) -> Result<OwnedFd, EngineError> {
    let memory_failed = |e: std::io::Error| EngineError::Failed(format!("making a memory file failed: {e}"));
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC).map_err(|e| memory_failed(e.into()))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes).map_err(memory_failed)?;
    Ok(file.into())
}

/// The path by which this process opens `fd`.
fn fd_path(fd: &OwnedFd) -> Result<CString, EngineError> {
    c_string(&format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl PocketSphinx {
    /// Loads the library and `model` (takes a few seconds).
    pub fn load(model: &Model) -> Result<PocketSphinx, EngineError> {
        let lib = Library::load()?;
        let base = Decoder::new(
            &lib,
            &[
                ("-hmm", path_arg(&model.acoustic)?),
                ("-lm", path_arg(&model.language_model)?),
                ("-dict", path_arg(&model.dictionary)?),
            ],
        )?;
        Ok(PocketSphinx { base, adapted: ModelCache::new(CACHED_DECODERS), model: model.clone(), lib })
    }

    /// A decoder with the base dictionary and `model`'s words, decoding with the interpolation of
    /// `model`'s language model and the base one.
    fn load_adapted(&self, model: &AdaptedModel) -> Result<Decoder, EngineError> {
        let mut dictionary = std::fs::read(&self.model.dictionary)
            .map_err(|e| unavailable(format!("{}: {e}", self.model.dictionary.display())))?;
        for word in model.pronunciations() {
            dictionary.extend_from_slice(format!("\n{} {}", word.entry, word.phones).as_bytes());
        }
        dictionary.push(b'\n');
        let dictionary = memory_file(c"byos-dictionary", &dictionary)?;
        // No -lm: the decoder's only search is the interpolated one set below.
        let decoder =
            Decoder::new(&self.lib, &[("-hmm", path_arg(&self.model.acoustic)?), ("-dict", fd_path(&dictionary)?)])?;
        let arpa = memory_file(c"byos-language-model", model.arpa().as_bytes())?;
        let adapted = self.read_language_model(&decoder, &fd_path(&arpa)?, NGRAM_ARPA)?;
        let base = match self.read_language_model(&decoder, &path_arg(&self.model.language_model)?, NGRAM_AUTO) {
            Ok(base) => base,
            Err(e) => {
                // SAFETY: ours, unused.
                unsafe { (self.lib.ngram_model_free)(adapted.as_ptr()) };
                return Err(e);
            }
        };
        let mut models = [adapted.as_ptr(), base.as_ptr()];
        let (adapted_name, base_name) = (c"adapted", c"base");
        let mut names = [adapted_name.as_ptr().cast_mut(), base_name.as_ptr().cast_mut()];
        let weights = [ADAPTED_WEIGHT, 1.0 - ADAPTED_WEIGHT];
        let lib = &self.lib;
        // SAFETY: the models are valid and share the decoder's log base; the set keeps its own
        // references to them (and copies the names), so ours are released after; ps_set_lm keeps
        // its own reference to the set.
        unsafe {
            let set = (lib.ngram_model_set_init)(
                decoder.config.as_ptr(),
                models.as_mut_ptr(),
                names.as_mut_ptr(),
                weights.as_ptr(),
                2,
            );
            (lib.ngram_model_free)(adapted.as_ptr());
            (lib.ngram_model_free)(base.as_ptr());
            if set.is_null() {
                return Err(failed("interpolating the language models"));
            }
            let searching = (lib.ps_set_lm)(decoder.ps(), ADAPTED_SEARCH.as_ptr(), set);
            (lib.ngram_model_free)(set);
            if searching < 0 || (lib.ps_set_search)(decoder.ps(), ADAPTED_SEARCH.as_ptr()) < 0 {
                return Err(failed("searching with the adapted language model"));
            }
        }
        Ok(decoder)
    }

    /// A language model read from `path` in the log base of `decoder`.
    fn read_language_model(&self, decoder: &Decoder, path: &CStr, kind: c_int) -> Result<NonNull<c_void>, EngineError> {
        let lib = &self.lib;
        // SAFETY: the decoder is valid; the model takes over the reference to the log-math object
        // retained for it; path is a NUL-terminated string that outlives the call.
        let model = unsafe {
            let logmath = (lib.logmath_retain)((lib.ps_get_logmath)(decoder.ps()));
            (lib.ngram_model_read)(decoder.config.as_ptr(), path.as_ptr(), kind, logmath)
        };
        NonNull::new(model).ok_or_else(|| failed("reading a language model"))
    }
}

impl Recognizer for PocketSphinx {
    fn recognize(&mut self, samples: &[i16], model: Option<&AdaptedModel>) -> Result<Recognition, EngineError> {
        match model {
            None => decode(&self.lib, &self.base, samples),
            Some(model) => {
                // The model's decoder is made on its first use (a second or two), then kept.
                if self.adapted.get(model.id()).is_none() {
                    let decoder = self.load_adapted(model)?;
                    self.adapted.insert(model.id(), decoder);
                }
                let decoder = self.adapted.get(model.id()).ok_or_else(|| failed("keeping the adapted model"))?;
                decode(&self.lib, decoder, samples)
            }
        }
    }
}

/// Recognizes one utterance with `decoder`.
fn decode(lib: &Library, decoder: &Decoder, samples: &[i16]) -> Result<Recognition, EngineError> {
    let ps = decoder.ps();
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
        if hyp.is_null() { String::new() } else { spoken_text(&unsafe { CStr::from_ptr(hyp) }.to_string_lossy()) };
    // SAFETY: as above; logmath belongs to the decoder.
    let confidence = unsafe { (lib.logmath_exp)((lib.ps_get_logmath)(ps), (lib.ps_get_prob)(ps)) };
    let alternatives = alternatives(&text, nbest(lib, ps), |log| {
        // SAFETY: as above.
        unsafe { (lib.logmath_exp)((lib.ps_get_logmath)(ps), log) }
    });
    Ok(Recognition { words: words(lib, ps), text, confidence: confidence.clamp(0.0, 1.0), alternatives })
}

/// The words of the last utterance with their times (silences, fillers and sentence marks left out).
fn words(lib: &Library, ps: *mut c_void) -> Vec<Word> {
    let mut words = Vec::new();
    // SAFETY: the iterator belongs to the decoder; iterating to its end frees it.
    let mut seg = unsafe { (lib.ps_seg_iter)(ps) };
    while !seg.is_null() {
        let (mut start, mut end) = (0, 0);
        // SAFETY: seg is the current segment; its word string is copied at once.
        let word = unsafe {
            (lib.ps_seg_frames)(seg, &mut start, &mut end);
            CStr::from_ptr((lib.ps_seg_word)(seg)).to_string_lossy().into_owned()
        };
        if let Some(text) = spoken(&word) {
            let (start, end) = (start.max(0) as u64, end.max(start) as u64);
            words.push(Word { text, offset_ms: start * MS_PER_FRAME, duration_ms: (end + 1 - start) * MS_PER_FRAME });
        }
        // SAFETY: advancing the iterator; it returns null (and frees itself) at the end.
        seg = unsafe { (lib.ps_seg_next)(seg) };
    }
    words
}

/// Distinct hypotheses of the last utterance's lattice with their path scores, best first.
fn nbest(lib: &Library, ps: *mut c_void) -> Vec<(String, i32)> {
    let mut found: Vec<(String, i32)> = Vec::new();
    // SAFETY: the iterator belongs to the decoder; it frees itself when it returns null, and is
    // freed here when the search stops before that.
    unsafe {
        let mut nbest = (lib.ps_nbest)(ps);
        for _ in 0..NBEST_SEARCHED {
            if nbest.is_null() || found.len() == MAX_ALTERNATIVES {
                break;
            }
            let mut score = 0;
            let hyp = (lib.ps_nbest_hyp)(nbest, &mut score);
            if !hyp.is_null() {
                let text = spoken_text(&CStr::from_ptr(hyp).to_string_lossy());
                if !text.is_empty() && !found.iter().any(|(known, _)| *known == text) {
                    found.push((text, score));
                }
            }
            nbest = (lib.ps_nbest_next)(nbest);
        }
        if !nbest.is_null() {
            (lib.ps_nbest_free)(nbest);
        }
    }
    found
}

/// The alternatives: `best` first, then the other n-best hypotheses. Each one's confidence is its
/// posterior within the list: its likelihood relative to the best, exp((score - best score) / the
/// acoustic scale), divided by the sum over the list. Path scores are in the search's units, the
/// decoder's log base shifted right by [`SCORE_SHIFT`] bits; `exp` converts the decoder's log base.
/// (The library's own posterior scales only the acoustic part of a score; scaling the whole path
/// score is the n-best list's approximation of it.)
fn alternatives(best: &str, mut found: Vec<(String, i32)>, exp: impl Fn(c_int) -> f64) -> Vec<Alternative> {
    if best.is_empty() {
        return Vec::new();
    }
    match found.iter().position(|(text, _)| text == best) {
        Some(position) => {
            let entry = found.remove(position);
            found.insert(0, entry);
        }
        // The search's best path is not among the lattice's first paths: it scores as the best.
        None => found.insert(0, (best.to_owned(), found.iter().map(|(_, s)| *s).max().unwrap_or(0))),
    }
    found.truncate(MAX_ALTERNATIVES);
    let top = found.iter().map(|(_, score)| *score).max().unwrap_or(0);
    let likelihoods: Vec<f64> = found.iter().map(|(_, score)| exp(relative_log(*score, top)).max(0.0)).collect();
    let total: f64 = likelihoods.iter().sum();
    found
        .into_iter()
        .zip(likelihoods)
        .map(|((text, _), likelihood)| Alternative {
            text,
            confidence: if total > 0.0 { (likelihood / total) as f32 } else { 0.0 },
        })
        .collect()
}

/// `score - top` in the decoder's log base, divided by the acoustic scale.
fn relative_log(score: i32, top: i32) -> c_int {
    let log = ((i64::from(score) - i64::from(top)) << SCORE_SHIFT) / ACOUSTIC_SCALE;
    log.clamp(i64::from(c_int::MIN), 0) as c_int
}

/// A hypothesis as words, without fillers and alternate-pronunciation marks.
fn spoken_text(hyp: &str) -> String {
    hyp.split_whitespace().filter_map(spoken).collect::<Vec<_>>().join(" ")
}

/// A segment's word as spoken: `<s>`, `</s>`, `<sil>` and `[NOISE]` are not words; `word(2)` is an
/// alternative pronunciation of `word`.
fn spoken(word: &str) -> Option<String> {
    if word.starts_with('<') || word.starts_with('[') || word.is_empty() {
        return None;
    }
    Some(word.split('(').next().unwrap_or(word).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wer::{WordErrors, align};

    #[test]
    fn fillers_are_not_words_and_alternates_are_the_word() {
        assert_eq!(spoken("<sil>"), None);
        assert_eq!(spoken("[NOISE]"), None);
        assert_eq!(spoken("hello(2)").as_deref(), Some("hello"));
        assert_eq!(spoken("world").as_deref(), Some("world"));
        assert_eq!(spoken_text("<s> hello(2) <sil> world [NOISE] </s>"), "hello world");
    }

    /// A log base of e^(1/1024), so that a path score (shifted by 10 bits) is a natural log.
    fn exp(log: c_int) -> f64 {
        (f64::from(log) / 1024.0).exp()
    }

    #[test]
    fn alternatives_put_the_best_first_and_share_the_likelihood() {
        let found = vec![("a b".to_owned(), -100), ("a c".to_owned(), -100 - 20 * 2), ("d".to_owned(), -100 - 20 * 4)];
        let listed = alternatives("a c", found, exp);
        let texts: Vec<&str> = listed.iter().map(|a| a.text.as_str()).collect();
        assert_eq!(texts, ["a c", "a b", "d"]);
        let confidences: Vec<f32> = listed.iter().map(|a| a.confidence).collect();
        // Likelihoods e^-2, e^0, e^-4 (score differences over the acoustic scale of 20), normalized.
        let total = (-2f64).exp() + 1.0 + (-4f64).exp();
        for (got, want) in confidences.iter().zip([(-2f64).exp() / total, 1.0 / total, (-4f64).exp() / total]) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{confidences:?}");
        }
        assert!((confidences.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // Far apart scores do not overflow: the worse one is simply unlikely.
        assert_eq!(relative_log(i32::MIN, i32::MAX), c_int::MIN);
        assert_eq!(relative_log(-5, -5), 0);
    }

    #[test]
    fn a_best_path_missing_from_the_lattice_list_still_comes_first() {
        let found = vec![("x".to_owned(), -10), ("y".to_owned(), -30)];
        let listed = alternatives("z", found, exp);
        assert_eq!(listed.iter().map(|a| a.text.as_str()).collect::<Vec<_>>(), ["z", "x", "y"]);
        assert_eq!(listed[0].confidence, listed[1].confidence);
        assert!(alternatives("", vec![("x".to_owned(), 0)], exp).is_empty());
        let many: Vec<(String, i32)> = (0..9).map(|n| (n.to_string(), -n)).collect();
        assert_eq!(alternatives("0", many, exp).len(), MAX_ALTERNATIVES);
    }

    /// Speech from Flite (Debian's `flite`), recognized for real (scripts/test.sh installs both).
    #[test]
    fn flite_speech_is_recognized() {
        let samples = crate::testing::flite_speech("kal", "hello world");
        let mut engine =
            PocketSphinx::load(&Model::en_us(Path::new(DEBIAN_MODEL_DIR))).unwrap_or_else(|e| panic!("{e}"));
        let heard = engine.recognize(&samples, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(heard.text.contains("hello") || heard.text.contains("world"), "heard {:?}", heard.text);
        assert!(!heard.words.is_empty() && heard.words.windows(2).all(|w| w[0].offset_ms <= w[1].offset_ms));
        println!("heard {:?} ({}), alternatives {:?}", heard.text, heard.confidence, heard.alternatives);
        assert_eq!(heard.alternatives.first().map(|a| a.text.as_str()), Some(heard.text.as_str()));
        let texts: std::collections::HashSet<&str> = heard.alternatives.iter().map(|a| a.text.as_str()).collect();
        assert_eq!(texts.len(), heard.alternatives.len(), "alternatives repeat: {:?}", heard.alternatives);
        assert!(heard.alternatives.iter().all(|a| (0.0..=1.0).contains(&a.confidence)));
        let silence = engine.recognize(&vec![0i16; 16_000], None).unwrap_or_else(|e| panic!("{e}"));
        assert!(silence.words.is_empty(), "heard {:?} in silence", silence.text);
        assert!(silence.alternatives.is_empty());
    }

    /// Domain speech: product names the base dictionary lacks (spoken as their pronunciation file
    /// says) in phrases the base language model finds unlikely.
    const PRONUNCIATIONS: &str = "nimbleflow\tnimble flow\ndatavault\tdata vault\nbyos\tbee oh ess\n";
    const LANGUAGE: &str = "open the nimbleflow dashboard
        restart the nimbleflow cluster
        deploy the datavault service to region west
        the datavault backup finished at noon
        scale the nimbleflow workers to nine
        check the byos server logs
        upgrade the byos server tonight
        rotate the datavault keys every week
        restart the byos server in region east
        open the datavault dashboard
        scale the byos workers to five
        the nimbleflow backup finished at midnight
        deploy the nimbleflow service to region east
        check the datavault server logs
        rotate the byos keys tonight";
    /// Sentences not in the language data, in its words.
    const HELD_OUT: [&str; 5] = [
        "restart the datavault service in region west",
        "open the byos server dashboard",
        "scale the datavault workers to nine",
        "rotate the nimbleflow keys every week",
        "check the nimbleflow cluster logs",
    ];

    /// Sentences of nothing in particular.
    const GENERAL: [&str; 4] = [
        "the weather will be warm and sunny tomorrow",
        "please call me when you get home",
        "she bought three books at the store",
        "we are going to the park this afternoon",
    ];

    /// The held-out sentences as Flite says them (the product names as they are pronounced).
    fn spoken_form(sentence: &str) -> String {
        sentence.replace("nimbleflow", "nimble flow").replace("datavault", "data vault").replace("byos", "bee oh ess")
    }

    #[test]
    fn an_adapted_model_lowers_the_word_error_rate_of_domain_speech() {
        let model = Model::en_us(Path::new(DEBIAN_MODEL_DIR));
        let dictionary = crate::adapt::Dictionary::load(&model.dictionary).unwrap_or_else(|e| panic!("{e}"));
        let adapted = AdaptedModel::build(LANGUAGE, PRONUNCIATIONS, &dictionary).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((adapted.report().pronunciations, adapted.report().unknown_occurrences), (3, 0));
        let mut engine = PocketSphinx::load(&model).unwrap_or_else(|e| panic!("{e}"));
        let (mut base_errors, mut adapted_errors) = (WordErrors::default(), WordErrors::default());
        for sentence in HELD_OUT {
            let samples = crate::testing::flite_speech("rms", &spoken_form(sentence));
            let base = engine.recognize(&samples, None).unwrap_or_else(|e| panic!("{e}"));
            let with_model = engine.recognize(&samples, Some(&adapted)).unwrap_or_else(|e| panic!("{e}"));
            println!("said {sentence:?}\n  base    {:?}\n  adapted {:?}", base.text, with_model.text);
            base_errors += align(sentence, &base.text);
            adapted_errors += align(sentence, &with_model.text);
        }
        println!("word error rate: base model {:.3}, adapted model {:.3}", base_errors.rate(), adapted_errors.rate());
        assert!(
            adapted_errors.rate() < base_errors.rate(),
            "adapted {adapted_errors:?} is no better than base {base_errors:?}"
        );
        // Ordinary speech is still heard about as well with the model as without it.
        let (mut base_errors, mut adapted_errors) = (WordErrors::default(), WordErrors::default());
        for sentence in GENERAL {
            let samples = crate::testing::flite_speech("rms", sentence);
            let base = engine.recognize(&samples, None).unwrap_or_else(|e| panic!("{e}"));
            let with_model = engine.recognize(&samples, Some(&adapted)).unwrap_or_else(|e| panic!("{e}"));
            println!("said {sentence:?}\n  base    {:?}\n  adapted {:?}", base.text, with_model.text);
            base_errors += align(sentence, &base.text);
            adapted_errors += align(sentence, &with_model.text);
        }
        println!("general speech: base model {:.3}, adapted model {:.3}", base_errors.rate(), adapted_errors.rate());
        assert!(adapted_errors.rate() <= base_errors.rate() + 0.1, "adapted {adapted_errors:?}, base {base_errors:?}");
        // The base decoder is untouched by the adapted model's words.
        let samples = crate::testing::flite_speech("rms", &spoken_form(HELD_OUT[1]));
        let base = engine.recognize(&samples, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!base.text.contains("byos"), "the base model heard {:?}", base.text);
    }
}
