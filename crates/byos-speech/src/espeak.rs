//! eSpeak NG, byos's text-to-speech engine for the languages other than English: Debian's
//! `libespeak-ng1` (1.51) and its `espeak-ng-data`, loaded at run time, so that byos builds and
//! starts on a machine without them (synthesis with an eSpeak voice then reports the engine
//! unavailable).
//!
//! Like [`crate::pocketsphinx`] and [`crate::flite`], this module calls C, the third place of byos
//! allowed to. eSpeak keeps all its state in globals and is not thread-safe: the library is
//! initialized once per process (synchronous output: `espeak_Synth` returns when the text is
//! spoken, its callback called on the calling thread) and one synthesis at a time holds
//! [`ONE_SYNTHESIS`]. The callback collects the 16-bit mono samples and the word and clause events
//! into the [`Collected`] passed as the synthesis's `user_data`.
//!
//! A voice is eSpeak's language voice (`de`, `pt-br`), optionally with its `f3` variant (`de+f3`), a
//! female voice. Prosody is eSpeak's own parameters: rate in words a minute, pitch 0-100 (an octave
//! either side of 50, the voice's own), volume 0-200 (100 the voice's own).
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_uint, c_void};
use std::sync::{Mutex, OnceLock};

use crate::recognizer::EngineError;
use crate::ssml::Prosody;
use crate::tts::{Speech, Synthesizer, WordBoundary};

const LIBRARY: &str = "libespeak-ng.so.1";
/// eSpeak's rate of the voices' own speed (`espeakRATE_NORMAL`), in words a minute.
pub const NORMAL_WORDS_PER_MINUTE: u32 = 175;
/// eSpeak's slowest and fastest rates (`espeakRATE_MINIMUM`, `espeakRATE_MAXIMUM`).
const WORDS_PER_MINUTE: std::ops::RangeInclusive<f32> = 80.0..=450.0;
/// eSpeak's variant byos's female voices speak with (`espeak-ng-data/voices/!v/f3`).
const FEMALE_VARIANT: &str = "f3";
/// The mean pitch assumed of a voice, the middle of its voice file's pitch range (the default male
/// voices' 82-118 Hz, f3's 140-240 Hz): a shift in Hz is made relative to it.
const MALE_PITCH_HZ: f32 = 100.0;
const FEMALE_PITCH_HZ: f32 = 190.0;

// speak_lib.h's values.
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
/// Report a missing espeak-ng-data rather than exit the process.
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
const CHARS_UTF8: c_uint = 1;
/// The sentence's pause after the last word, as a spoken sentence has.
const END_PAUSE: c_uint = 0x1000;
const POS_CHARACTER: c_int = 1;
const EE_OK: c_int = 0;
const EVENT_LIST_TERMINATED: c_int = 0;
const EVENT_WORD: c_int = 1;
const EVENT_END: c_int = 5;
const PARAMETER_RATE: c_int = 1;
const PARAMETER_VOLUME: c_int = 2;
const PARAMETER_PITCH: c_int = 3;

/// eSpeak's `espeak_EVENT` (speak_lib.h, API revision 12 and later).
#[repr(C)]
struct Event {
    kind: c_int,
    unique_identifier: c_uint,
    /// The 1-based position, in characters, of the text the event is about.
    text_position: c_int,
    /// For a word, its length in characters.
    length: c_int,
    audio_position_ms: c_int,
    /// The position in samples from the start of the synthesis.
    sample: c_int,
    user_data: *mut c_void,
    /// A union of an int, a pointer and 8 bytes: pointer-sized and -aligned.
    id: *const c_void,
}

type SynthCallback = unsafe extern "C" fn(*mut i16, c_int, *mut Event) -> c_int;
type InitializeFn = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetSynthCallbackFn = unsafe extern "C" fn(SynthCallback);
type SetVoiceByNameFn = unsafe extern "C" fn(*const c_char) -> c_int;
type SetParameterFn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type SynthFn =
    unsafe extern "C" fn(*const c_void, usize, c_uint, c_int, c_uint, c_uint, *mut c_uint, *mut c_void) -> c_int;

/// The library, initialized, and the functions byos uses.
struct Library {
    // Kept loaded for as long as the function pointers below are used (the process's life).
    _espeak: libloading::Library,
    sample_rate: u32,
    set_voice_by_name: SetVoiceByNameFn,
    set_parameter: SetParameterFn,
    synth: SynthFn,
}

/// The process's eSpeak: initialized on the first [`Espeak::load`], once.
static LIBRARY_LOADED: OnceLock<Result<Library, EngineError>> = OnceLock::new();
/// Held for each synthesis: eSpeak's globals are one synthesis's state.
static ONE_SYNTHESIS: Mutex<()> = Mutex::new(());

fn unavailable(e: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("{e} (install libespeak-ng1 and espeak-ng-data)"))
}

impl Library {
    fn load() -> Result<Library, EngineError> {
        // SAFETY: the system's eSpeak NG library; loading it runs no code beyond its initializers.
        let espeak = unsafe { libloading::Library::new(LIBRARY) }.map_err(unavailable)?;
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: the type given is the function's C signature in eSpeak NG 1.51's speak_lib.h.
                *unsafe { espeak.get(concat!($name, "\0").as_bytes()) }.map_err(unavailable)?
            };
        }
        let initialize: InitializeFn = symbol!("espeak_Initialize");
        let set_synth_callback: SetSynthCallbackFn = symbol!("espeak_SetSynthCallback");
        // SAFETY: called once per process (the OnceLock), before any synthesis; a null path is
        // the data's default place; buffers of 0 ms are eSpeak's default (60 ms).
        let sample_rate = unsafe { initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, std::ptr::null(), INITIALIZE_DONT_EXIT) };
        if sample_rate <= 0 {
            return Err(unavailable("eSpeak NG could not be initialized"));
        }
        // SAFETY: `collect` has the callback's signature and never unwinds.
        unsafe { set_synth_callback(collect) };
        Ok(Library {
            sample_rate: sample_rate as u32,
            set_voice_by_name: symbol!("espeak_SetVoiceByName"),
            set_parameter: symbol!("espeak_SetParameter"),
            synth: symbol!("espeak_Synth"),
            _espeak: espeak,
        })
    }
}

/// An event of a synthesis that byos reads.
#[derive(Debug, Clone, Copy)]
struct Mark {
    kind: c_int,
    text_position: usize,
    length: usize,
    sample: usize,
}

/// What the callback collects of one synthesis.
#[derive(Default)]
struct Collected {
    samples: Vec<i16>,
    marks: Vec<Mark>,
}

/// eSpeak's synth callback: appends the samples and the word and clause-end events to the
/// synthesis's [`Collected`] (the events' `user_data`). It must not unwind into C: a panic aborts
/// the synthesis instead (returning 1).
unsafe extern "C" fn collect(wav: *mut i16, count: c_int, events: *mut Event) -> c_int {
    // SAFETY: eSpeak passes its buffer of `count` samples (or null) and its event list, terminated
    // by an event of kind 0, each carrying the user_data `Espeak::speak` gave: its `Collected`,
    // which outlives the synthesis and is not otherwise borrowed during it.
    let collected = std::panic::catch_unwind(|| unsafe { collect_into(wav, count, events) });
    c_int::from(collected.is_err())
}

/// # Safety
/// As [`collect`]'s arguments.
unsafe fn collect_into(wav: *mut i16, count: c_int, events: *mut Event) {
    if events.is_null() {
        return;
    }
    // SAFETY: as collect's; the list ends at its terminating event, which carries user_data too.
    unsafe {
        let Some(collected) = (*events).user_data.cast::<Collected>().as_mut() else { return };
        if !wav.is_null() && count > 0 {
            collected.samples.extend_from_slice(std::slice::from_raw_parts(wav, count as usize));
        }
        let mut event = events;
        while (*event).kind != EVENT_LIST_TERMINATED {
            let e = &*event;
            if e.kind == EVENT_WORD || e.kind == EVENT_END {
                collected.marks.push(Mark {
                    kind: e.kind,
                    text_position: e.text_position.max(0) as usize,
                    length: e.length.max(0) as usize,
                    sample: e.sample.max(0) as usize,
                });
            }
            event = event.add(1);
        }
    }
}

/// One of eSpeak's voices as byos offers it: a language voice, as it is or with the female variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EspeakVoice {
    /// eSpeak's name of the language voice (`espeak-ng --voices`).
    pub language: &'static str,
    pub female: bool,
}

impl EspeakVoice {
    /// eSpeak's name of the voice (`espeak-ng -v NAME`).
    pub fn name(self) -> String {
        if self.female { format!("{}+{FEMALE_VARIANT}", self.language) } else { self.language.to_owned() }
    }
}

/// The eSpeak NG engine (the process's one library; any number of `Espeak`s share it).
pub struct Espeak {
    lib: &'static Library,
}

impl Espeak {
    /// Loads and initializes the library, the first time in this process.
    pub fn load() -> Result<Espeak, EngineError> {
        LIBRARY_LOADED.get_or_init(Library::load).as_ref().map(|lib| Espeak { lib }).map_err(Clone::clone)
    }
}

fn failed(what: impl std::fmt::Display) -> EngineError {
    EngineError::Failed(format!("eSpeak NG: {what}"))
}

impl Synthesizer for Espeak {
    fn speak(&mut self, voice: &str, text: &str, prosody: &Prosody) -> Result<Speech, EngineError> {
        let female = match voice.split_once('+') {
            None => false,
            Some((_, FEMALE_VARIANT)) => true,
            Some(_) => return Err(failed(format!("byos has no voice {voice}"))),
        };
        let name = CString::new(voice).map_err(|_| failed("the voice name contains a NUL character"))?;
        let text_c = CString::new(text).map_err(|_| failed("the text contains a NUL character"))?;
        let lib = self.lib;
        let _one = ONE_SYNTHESIS.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the name is NUL-terminated and outlives the call.
        if unsafe { (lib.set_voice_by_name)(name.as_ptr()) } != EE_OK {
            return Err(failed(format!("there is no voice {voice} (is espeak-ng-data installed?)")));
        }
        set_prosody(lib, prosody, if female { FEMALE_PITCH_HZ } else { MALE_PITCH_HZ })?;
        let mut collected = Collected::default();
        let user_data: *mut Collected = &mut collected;
        // SAFETY: synchronous output: the callback has run for the whole text when this returns,
        // so `collected` (its user_data) and the text outlive every use eSpeak makes of them.
        let status = unsafe {
            (lib.synth)(
                text_c.as_ptr().cast(),
                text_c.as_bytes_with_nul().len(),
                0,
                POS_CHARACTER,
                0,
                CHARS_UTF8 | END_PAUSE,
                std::ptr::null_mut(),
                user_data.cast(),
            )
        };
        if status != EE_OK {
            return Err(failed(format!("synthesis failed ({status})")));
        }
        let words = words(text, &collected.marks, &collected.samples, lib.sample_rate);
        Ok(Speech { sample_rate: lib.sample_rate, samples: collected.samples, words })
    }
}

/// Sets the rate, pitch and volume of the next synthesis (every synthesis sets them all).
fn set_prosody(lib: &Library, prosody: &Prosody, voice_pitch_hz: f32) -> Result<(), EngineError> {
    let rate =
        (NORMAL_WORDS_PER_MINUTE as f32 * prosody.rate).clamp(*WORDS_PER_MINUTE.start(), *WORDS_PER_MINUTE.end());
    // The pitch parameter is an octave either side of 50 (wavegen.c's pitch_adjust_tab is
    // 2^((p-50)/50)): the target pitch as a factor of the voice's, as a parameter.
    let target = voice_pitch_hz * prosody.pitch_factor + prosody.pitch_shift_hz;
    let factor = (target / voice_pitch_hz).max(f32::MIN_POSITIVE);
    let pitch = (50.0 + 50.0 * factor.log2()).clamp(0.0, 100.0);
    let volume = (100.0 * prosody.volume).clamp(0.0, 200.0);
    for (parameter, value) in [(PARAMETER_RATE, rate), (PARAMETER_PITCH, pitch), (PARAMETER_VOLUME, volume)] {
        // SAFETY: an absolute value (relative 0) of one of eSpeak's parameters, in its range.
        if unsafe { (lib.set_parameter)(parameter, value.round() as c_int, 0) } != EE_OK {
            return Err(failed(format!("setting parameter {parameter} to {value}")));
        }
    }
    Ok(())
}

/// A sample at most this loud is silence (a word's pause is eSpeak's digital zero, or nearly).
const QUIET: u16 = 64;

/// The word boundaries of a synthesis: each word event's text, from its start to the next word's
/// start or the end of its clause, whichever comes first, less the silence at its end (eSpeak
/// reports no word ends, and the pause after a clause comes before its end event).
fn words(text: &str, marks: &[Mark], samples: &[i16], sample_rate: u32) -> Vec<WordBoundary> {
    let chars: Vec<char> = text.chars().collect();
    let ms = |sample: usize| sample as u64 * 1000 / u64::from(sample_rate);
    marks
        .iter()
        .enumerate()
        // eSpeak sometimes ends a synthesis with a word event of no text (position 0, length 0).
        .filter(|(_, mark)| mark.kind == EVENT_WORD && mark.length > 0)
        .map(|(i, word)| {
            let start = word.sample.min(samples.len());
            let next = marks[i + 1..].iter().map(|m| m.sample).find(|&s| s >= start).unwrap_or(samples.len());
            let end = start
                + samples[start..next.min(samples.len())]
                    .iter()
                    .rposition(|s| s.unsigned_abs() > QUIET)
                    .map_or(0, |last| last + 1);
            let first_char = word.text_position.saturating_sub(1).min(chars.len());
            let last_char = (first_char + word.length).min(chars.len());
            WordBoundary {
                text: chars[first_char..last_char].iter().collect(),
                offset_ms: ms(start),
                duration_ms: ms(end) - ms(start),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pitch_hz;

    fn espeak() -> Espeak {
        Espeak::load().unwrap_or_else(|e| panic!("{e}: scripts/test.sh installs libespeak-ng1 and espeak-ng-data"))
    }

    fn speak(voice: &str, text: &str, prosody: Prosody) -> Speech {
        espeak().speak(voice, text, &prosody).unwrap_or_else(|e| panic!("{voice}: {e}"))
    }

    fn peak(speech: &Speech) -> u16 {
        speech.samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0)
    }

    const GERMAN: &str = "Der schnelle braune Fuchs springt über den faulen Hund.";

    #[test]
    fn a_german_sentence_is_spoken_with_one_boundary_per_word_in_order() {
        for voice in ["de", "de+f3"] {
            let speech = speak(voice, GERMAN, Prosody::default());
            let seconds = speech.samples.len() as f32 / speech.sample_rate as f32;
            assert_eq!(speech.sample_rate, 22_050, "{voice}");
            // Nine words at some 175 words a minute: about three seconds.
            assert!((2.0..5.0).contains(&seconds), "{voice}: {seconds} s");
            assert!(peak(&speech) > 2_000, "{voice}: the loudest sample is {}", peak(&speech));
            let words: Vec<&str> = speech.words.iter().map(|w| w.text.as_str()).collect();
            assert_eq!(words, GERMAN.trim_end_matches('.').split(' ').collect::<Vec<_>>(), "{voice}");
            for pair in speech.words.windows(2) {
                assert!(pair[1].offset_ms > pair[0].offset_ms, "{voice}: {pair:?}");
                assert!(pair[0].offset_ms + pair[0].duration_ms <= pair[1].offset_ms, "{voice}: {pair:?}");
            }
            assert!(speech.words.iter().all(|w| w.duration_ms > 50), "{voice}: {:?}", speech.words);
            // The last word ends where its sound does, before the sentence's closing pause.
            let last = &speech.words[speech.words.len() - 1];
            assert!(last.offset_ms + last.duration_ms + 100 < (seconds * 1000.0) as u64, "{voice}: {last:?}");
        }
    }

    #[test]
    fn the_text_of_a_word_is_its_characters_not_its_bytes() {
        let speech = speak("de", "Grüße aus Köln", Prosody::default());
        let words: Vec<&str> = speech.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words, ["Grüße", "aus", "Köln"]);
    }

    #[test]
    fn a_slower_rate_is_longer_and_volume_scales_the_samples() {
        let at = |rate, volume| speak("de", GERMAN, Prosody { rate, volume, ..Prosody::default() });
        let (slow, normal, fast) = (at(0.5, 1.0), at(1.0, 1.0), at(2.0, 1.0));
        let lengths = (slow.samples.len(), normal.samples.len(), fast.samples.len());
        assert!(lengths.0 as f32 > lengths.1 as f32 * 1.5 && lengths.1 as f32 > lengths.2 as f32 * 1.5, "{lengths:?}");
        assert!(slow.words[8].offset_ms > normal.words[8].offset_ms);
        let ratio = f32::from(peak(&at(1.0, 0.5))) / f32::from(peak(&normal));
        assert!((0.35..0.65).contains(&ratio), "half volume: {ratio} of the peak");
        assert!(peak(&at(1.0, 0.0)) < 100);
    }

    #[test]
    fn a_higher_pitch_is_higher_and_the_female_voice_is_higher_than_the_male() {
        let at = |voice, pitch_factor| {
            pitch_hz(&speak(voice, "ein langer Vokal", Prosody { pitch_factor, ..Prosody::default() }))
        };
        let (low, normal, high) = (at("de", 0.7), at("de", 1.0), at("de", 1.4));
        assert!(low < normal * 0.85 && high > normal * 1.2, "{low} {normal} {high} Hz");
        let female = at("de+f3", 1.0);
        assert!(female > normal * 1.3, "male {normal} Hz, female {female} Hz");
    }

    #[test]
    fn a_voice_byos_lacks_and_a_nul_are_refused() {
        let mut espeak = espeak();
        for voice in ["xx-nonexistent", "de+klatt", "de-DE-KatjaNeural"] {
            assert!(espeak.speak(voice, "Hallo", &Prosody::default()).is_err(), "{voice}");
        }
        assert!(espeak.speak("de", "Hal\0lo", &Prosody::default()).is_err());
        // A refused voice leaves the engine as it was.
        assert!(!speak("de", "Hallo", Prosody::default()).samples.is_empty());
    }
}
