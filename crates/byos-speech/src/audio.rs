//! Audio in, engine audio out: decode whatever container and codec a client sent, keep its channels
//! apart (Azure transcribes each channel on its own), and resample each to 16 kHz 16-bit PCM.

use std::io::Cursor;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The sample rate the recognition engines take.
pub const ENGINE_RATE: u32 = 16_000;
/// The sample rates byos accepts (as Azure: 8 to 48 kHz).
pub const RATES: std::ops::RangeInclusive<u32> = 8_000..=48_000;
/// The most channels byos decodes (Azure's batch transcription: stereo).
pub const MAX_CHANNELS: usize = 2;
/// Frames the resampler takes at a time.
const RESAMPLE_CHUNK: usize = 1024;

/// Why audio could not be made into engine audio; the message is for the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AudioError {
    #[error("the audio format is not supported: {0}")]
    Unsupported(String),
    #[error("the audio is damaged: {0}")]
    Corrupt(String),
    #[error("the sample rate {0} Hz is outside 8000-48000 Hz")]
    Rate(u32),
    #[error("the audio has {0} channels; at most {MAX_CHANNELS} are supported")]
    Channels(usize),
    #[error("the audio contains no samples")]
    Empty,
}

/// Decoded audio, each channel on its own, at the engines' rate.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineAudio {
    /// 16 kHz signed 16-bit samples, one vector per channel of the source.
    pub channels: Vec<Vec<i16>>,
    /// The source's sample rate.
    pub source_rate: u32,
    /// The audio's length in milliseconds.
    pub duration_ms: u64,
}

/// Decodes `bytes` (any supported container; `extension` is a hint such as "wav" or "mp3", may be
/// empty) into 16 kHz channels.
pub fn decode(bytes: &[u8], extension: &str) -> Result<EngineAudio, AudioError> {
    let (rate, channels) = decode_planar(bytes, extension)?;
    if !RATES.contains(&rate) {
        return Err(AudioError::Rate(rate));
    }
    if channels.is_empty() || channels[0].is_empty() {
        return Err(AudioError::Empty);
    }
    let frames = channels[0].len() as u64;
    let resampled = channels.into_iter().map(|c| resample(&c, rate, ENGINE_RATE)).collect::<Result<Vec<_>, _>>()?;
    Ok(EngineAudio {
        channels: resampled.into_iter().map(|c| to_i16(&c)).collect(),
        source_rate: rate,
        duration_ms: frames * 1000 / u64::from(rate),
    })
}

/// The source's rate and its samples as f32, one vector per channel.
fn decode_planar(bytes: &[u8], extension: &str) -> Result<(u32, Vec<Vec<f32>>), AudioError> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    if !extension.is_empty() {
        hint.with_extension(extension);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, source, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| AudioError::Unsupported(describe(&e)))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Unsupported("no audio track".into()))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let rate = params.sample_rate.ok_or_else(|| AudioError::Unsupported("the sample rate is unknown".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| AudioError::Unsupported(describe(&e)))?;
    let mut channels: Vec<Vec<f32>> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(AudioError::Corrupt(describe(&e))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // A damaged frame is skipped, as players do; the rest of the audio still counts.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(AudioError::Corrupt(describe(&e))),
        };
        let spec = *decoded.spec();
        let count = spec.channels.count();
        if count > MAX_CHANNELS {
            return Err(AudioError::Channels(count));
        }
        channels.resize_with(count.max(channels.len()), Vec::new);
        let mut interleaved = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        interleaved.copy_interleaved_ref(decoded);
        for (i, sample) in interleaved.samples().iter().enumerate() {
            channels[i % count].push(*sample);
        }
    }
    Ok((rate, channels))
}

fn describe(e: &SymphoniaError) -> String {
    match e {
        SymphoniaError::Unsupported(what) => format!("{what} is not supported"),
        other => other.to_string(),
    }
}

/// One channel from `rate` to `target` (16 kHz for the recognition engines, a client's output
/// format's rate for synthesis).
pub(crate) fn resample(samples: &[f32], rate: u32, target: u32) -> Result<Vec<f32>, AudioError> {
    if rate == target {
        return Ok(samples.to_vec());
    }
    let failed = |e: &dyn std::fmt::Display| AudioError::Corrupt(format!("resampling failed: {e}"));
    let mut resampler =
        FftFixedIn::<f32>::new(rate as usize, target as usize, RESAMPLE_CHUNK, 2, 1).map_err(|e| failed(&e))?;
    let expected = samples.len() as u64 * u64::from(target) / u64::from(rate);
    let mut out = Vec::with_capacity(expected as usize + RESAMPLE_CHUNK);
    let delay = resampler.output_delay();
    let mut chunks = samples.chunks(RESAMPLE_CHUNK).peekable();
    while let Some(chunk) = chunks.next() {
        let input = if chunk.len() == RESAMPLE_CHUNK {
            chunk.to_vec()
        } else {
            let mut padded = chunk.to_vec();
            padded.resize(RESAMPLE_CHUNK, 0.0);
            padded
        };
        let produced = resampler.process(&[input], None).map_err(|e| failed(&e))?;
        out.extend_from_slice(&produced[0]);
        if chunks.peek().is_none() {
            // Flush the filter's delay with silence so the end of the audio comes out.
            let tail = resampler.process(&[vec![0.0; RESAMPLE_CHUNK]], None).map_err(|e| failed(&e))?;
            out.extend_from_slice(&tail[0]);
        }
    }
    let end = (delay + expected as usize).min(out.len());
    Ok(out[delay.min(end)..end].to_vec())
}

pub(crate) fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|s| (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sine of `freq` Hz, `seconds` long, in a WAV of the given format.
    fn sine_wav(rate: u32, channels: u16, bits: u16, float: bool, freq: f32, seconds: f32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
        };
        let mut out = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut out, spec).unwrap_or_else(|e| panic!("{e}"));
        let frames = (rate as f32 * seconds) as u32;
        for n in 0..frames {
            let value = (2.0 * std::f32::consts::PI * freq * n as f32 / rate as f32).sin() * 0.5;
            for _ in 0..channels {
                let written = match (float, bits) {
                    (true, _) => writer.write_sample(value),
                    (false, 8) => writer.write_sample((value * 127.0) as i8),
                    (false, 16) => writer.write_sample((value * 32767.0) as i16),
                    (false, _) => writer.write_sample((value * ((1i64 << (bits - 1)) - 1) as f32) as i32),
                };
                written.unwrap_or_else(|e| panic!("{e}"));
            }
        }
        writer.finalize().unwrap_or_else(|e| panic!("{e}"));
        out.into_inner()
    }

    /// Sign changes: a sine of f Hz has about 2·f per second.
    fn zero_crossings(samples: &[i16]) -> usize {
        samples.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn every_wav_format_comes_out_as_16_khz_with_its_pitch_kept() {
        for (rate, channels, bits, float) in [
            (16_000, 1, 16, false),
            (8_000, 1, 8, false),
            (44_100, 2, 16, false),
            (48_000, 1, 24, false),
            (22_050, 2, 32, true),
            (32_000, 1, 32, false),
        ] {
            let audio = decode(&sine_wav(rate, channels, bits, float, 440.0, 1.0), "wav")
                .unwrap_or_else(|e| panic!("{rate} Hz {bits}-bit: {e}"));
            assert_eq!((audio.channels.len(), audio.source_rate, audio.duration_ms), (channels as usize, rate, 1000));
            for channel in &audio.channels {
                assert!((15_900..=16_100).contains(&channel.len()), "{rate} Hz: {} samples", channel.len());
                let crossings = zero_crossings(channel);
                assert!((860..=900).contains(&crossings), "{rate} Hz {bits}-bit: {crossings} crossings for 440 Hz");
            }
        }
    }

    #[test]
    fn what_cannot_be_engine_audio_is_refused_with_its_reason() {
        assert!(matches!(decode(b"not audio at all", ""), Err(AudioError::Unsupported(_))));
        assert_eq!(decode(&sine_wav(96_000, 1, 16, false, 440.0, 0.1), "wav"), Err(AudioError::Rate(96_000)));
        assert_eq!(decode(&sine_wav(16_000, 4, 16, false, 440.0, 0.1), "wav"), Err(AudioError::Channels(4)));
        assert_eq!(decode(&sine_wav(16_000, 1, 16, false, 440.0, 0.0), "wav"), Err(AudioError::Empty));
    }

    /// `wav` encoded by `program` reading stdin and writing stdout, or None (with a note) when the
    /// encoder is not installed (scripts/test.sh installs lame, flac and vorbis-tools).
    fn encoded(wav: &[u8], program: &str, args: &[&str]) -> Option<Vec<u8>> {
        use std::io::Write as _;
        let child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            println!("skipped: {program} is not installed");
            return None;
        };
        let mut stdin = child.stdin.take()?;
        let wav = wav.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&wav));
        let output = child.wait_with_output().unwrap_or_else(|e| panic!("{program}: {e}"));
        writer.join().unwrap_or_else(|_| panic!("writing to {program}")).unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(output.status.success() && !output.stdout.is_empty(), "{program} failed: {}", output.status);
        Some(output.stdout)
    }

    #[test]
    fn compressed_audio_comes_out_as_16_khz_with_its_pitch_kept() {
        let wav = sine_wav(44_100, 2, 16, false, 440.0, 1.0);
        for (extension, program, args) in [
            ("mp3", "lame", &["--quiet", "-", "-"][..]),
            ("flac", "flac", &["--silent", "--stdout", "-"][..]),
            ("ogg", "oggenc", &["--quiet", "-", "-o", "-"][..]),
        ] {
            let Some(bytes) = encoded(&wav, program, args) else { continue };
            // Probed from the bytes alone, as for a client that names no format.
            let audio = decode(&bytes, "").unwrap_or_else(|e| panic!("{extension}: {e}"));
            assert_eq!((audio.channels.len(), audio.source_rate), (2, 44_100), "{extension}");
            for channel in &audio.channels {
                // Lossy encoders pad the start and end by up to a few frames (2048 samples or so).
                assert!((15_900..=17_600).contains(&channel.len()), "{extension}: {} samples", channel.len());
                // The middle half second, away from the padding (near-silence that crosses zero a lot).
                let crossings = zero_crossings(&channel[4_000..12_000]);
                assert!((430..=450).contains(&crossings), "{extension}: {crossings} crossings for 440 Hz");
            }
        }
    }
}
