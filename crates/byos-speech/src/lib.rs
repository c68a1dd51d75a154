//! Speech engines and what they need.
//!
//! - [`audio`]: any audio a client sends (WAV PCM 8/16/24/32-bit and float, μ-law/A-law, MP3, FLAC,
//!   OGG/Vorbis; 8-48 kHz; mono or more channels) decoded with symphonia and resampled with rubato to
//!   what the recognition engines take: 16 kHz, 16-bit, one channel at a time.

//! - [`workers`]: engines in supervised worker processes (a pool, a bounded queue, crash and hang
//!   isolation) and the worker side of their protocol.

//! - [`engine`]: the speech-to-text engine as services use it (PocketSphinx in a worker pool) and
//!   the request protocol of its workers.
//! - [`segment`]: long audio cut into utterances at its pauses (a batch transcription's phrases),
//!   and live audio as it arrives ([`segment::Endpointer`]).
//! - [`live`]: a live stream's PCM (the Speech SDK's) downmixed and resampled chunk by chunk.
//! - [`recognizer`]: what a speech-to-text engine answers ([`recognizer::Recognition`]) and the
//!   trait each implements.
//! - [`pocketsphinx`]: the speech-to-text engine (Debian's PocketSphinx and US English model,
//!   loaded at run time).
//! - [`adapt`]: Custom Speech adapted models (a trigram language model and dictionary entries
//!   trained from a customer's text and pronunciations).
//! - [`wer`]: word error rate, to test a model against what was said.
//! - [`tts`]: text to speech as services use it: byos's voices, output formats, the engine in a
//!   worker pool and the request protocol of its workers.
//! - [`ssml`]: SSML read into pieces of text with their voice and prosody, and pauses.
//! - [`flite`]: the English text-to-speech engine (Debian's Flite and its US English voices,
//!   loaded at run time).
//! - [`espeak`]: the text-to-speech engine of the other languages (Debian's eSpeak NG, loaded at
//!   run time).

pub mod adapt;
pub mod audio;
pub mod engine;
pub mod espeak;
pub mod flite;
pub mod live;
pub mod pocketsphinx;
pub mod recognizer;
pub mod segment;
pub mod ssml;
#[cfg(test)]
mod testing;
pub mod tts;
pub mod wer;
pub mod workers;
