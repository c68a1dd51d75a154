//! Audio as it arrives, for live recognition (the Speech SDK's sockets): PCM in the source's own
//! format (a RIFF header announces it, as the SDK sends it), downmixed and resampled to engine
//! audio chunk by chunk, so that utterances can be recognized while the rest still streams in.
//!
//! Only the engine samples that may still be recognized are kept: the caller forgets what lies
//! before the utterance it is hearing, so a session of any length holds about one utterance.

use std::ops::Range;

use rubato::{FftFixedIn, Resampler};

use crate::audio::{AudioError, ENGINE_RATE, to_i16};

/// Source samples resampled at a time.
const CHUNK: usize = 1024;

/// The sample encodings a RIFF header may announce that byos reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// Signed integers (unsigned for 8 bits, as WAV has them) of 8, 16, 24 or 32 bits.
    Int(u16),
    Float32,
}

/// The PCM format of a live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    pub rate: u32,
    pub channels: u16,
    pub kind: SampleKind,
}

impl PcmFormat {
    fn bytes_per_frame(&self) -> usize {
        let bytes = match self.kind {
            SampleKind::Int(bits) => usize::from(bits / 8),
            SampleKind::Float32 => 4,
        };
        bytes * usize::from(self.channels)
    }

    /// The format a RIFF/WAVE header announces, and where its audio data begins. The sizes in it
    /// are not trusted (the SDK leaves them at 0).
    pub fn from_riff(header: &[u8]) -> Result<(PcmFormat, usize), AudioError> {
        let corrupt = |why: &str| AudioError::Corrupt(format!("the audio's RIFF header {why}"));
        if header.len() < 12 || &header[..4] != b"RIFF" || &header[8..12] != b"WAVE" {
            return Err(corrupt("is missing (the first audio message must start with one)"));
        }
        let mut at = 12;
        let mut format = None;
        while at + 8 <= header.len() {
            let id = &header[at..at + 4];
            let size = u32::from_le_bytes([header[at + 4], header[at + 5], header[at + 6], header[at + 7]]) as usize;
            let body = at + 8;
            if id == b"data" {
                let format = format.ok_or_else(|| corrupt("has no fmt chunk before its data"))?;
                return Ok((format, body));
            }
            if id == b"fmt " {
                let fmt = header.get(body..body + 16).ok_or_else(|| corrupt("has a truncated fmt chunk"))?;
                format = Some(Self::from_fmt(fmt)?);
            }
            at = body.saturating_add(size + size % 2);
        }
        Err(corrupt("is truncated (no data chunk)"))
    }

    fn from_fmt(fmt: &[u8]) -> Result<PcmFormat, AudioError> {
        let u16_at = |i: usize| u16::from_le_bytes([fmt[i], fmt[i + 1]]);
        let (tag, channels, bits) = (u16_at(0), u16_at(2), u16_at(14));
        let rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
        let unsupported = |what: String| AudioError::Unsupported(what);
        // 0xFFFE (extensible) carries its real tag further on; the SDK sends plain PCM (1).
        let kind = match (tag, bits) {
            (1 | 0xFFFE, 8 | 16 | 24 | 32) => SampleKind::Int(bits),
            (3, 32) => SampleKind::Float32,
            _ => return Err(unsupported(format!("audio format {tag} with {bits}-bit samples (byos takes PCM)"))),
        };
        if !(8_000..=48_000).contains(&rate) {
            return Err(AudioError::Rate(rate));
        }
        if !(1..=crate::audio::MAX_CHANNELS as u16).contains(&channels) {
            return Err(AudioError::Channels(usize::from(channels)));
        }
        Ok(PcmFormat { rate, channels, kind })
    }

    /// One frame (all channels) averaged into one sample in -1..1.
    fn mono(&self, frame: &[u8]) -> f32 {
        let channels = usize::from(self.channels);
        let width = frame.len() / channels;
        let sum: f32 = frame.chunks_exact(width).map(|s| self.sample(s)).sum();
        sum / channels as f32
    }

    fn sample(&self, s: &[u8]) -> f32 {
        match (self.kind, s) {
            (SampleKind::Int(8), [b]) => (f32::from(*b) - 128.0) / 128.0,
            (SampleKind::Int(16), [a, b]) => f32::from(i16::from_le_bytes([*a, *b])) / 32768.0,
            (SampleKind::Int(24), [a, b, c]) => (i32::from_le_bytes([0, *a, *b, *c]) >> 8) as f32 / 8_388_608.0,
            (SampleKind::Int(32), [a, b, c, d]) => i32::from_le_bytes([*a, *b, *c, *d]) as f32 / 2_147_483_648.0,
            (SampleKind::Float32, [a, b, c, d]) => f32::from_le_bytes([*a, *b, *c, *d]),
            _ => 0.0,
        }
    }
}

/// A live stream's audio: source bytes in, 16 kHz mono engine samples out.
pub struct LiveAudio {
    format: PcmFormat,
    /// Bytes of a frame split across messages.
    partial: Vec<u8>,
    /// Source frames received.
    frames: u64,
    resampler: Option<Stream>,
    /// Engine samples from `origin` on.
    samples: Vec<i16>,
    origin: usize,
}

/// A resampler fed a chunk at a time, its filter delay dropped from the front of its output.
struct Stream {
    resampler: FftFixedIn<f32>,
    input: Vec<f32>,
    delay_left: usize,
    produced: u64,
}

impl LiveAudio {
    /// A stream whose first message is `first`: a RIFF header, maybe followed by audio.
    pub fn start(first: &[u8]) -> Result<LiveAudio, AudioError> {
        let (format, data) = PcmFormat::from_riff(first)?;
        let resampler = if format.rate == ENGINE_RATE {
            None
        } else {
            let resampler = FftFixedIn::<f32>::new(format.rate as usize, ENGINE_RATE as usize, CHUNK, 2, 1)
                .map_err(|e| AudioError::Corrupt(format!("resampling failed: {e}")))?;
            let delay_left = resampler.output_delay();
            Some(Stream { resampler, input: Vec::with_capacity(CHUNK), delay_left, produced: 0 })
        };
        let mut audio = LiveAudio { format, partial: Vec::new(), frames: 0, resampler, samples: Vec::new(), origin: 0 };
        audio.push(&first[data.min(first.len())..])?;
        Ok(audio)
    }

    pub fn format(&self) -> PcmFormat {
        self.format
    }

    /// Adds a message's audio; answers the engine samples it made (absolute positions).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Range<usize>, AudioError> {
        let before = self.heard();
        let width = self.format.bytes_per_frame();
        let mut mono = Vec::with_capacity((self.partial.len() + bytes.len()) / width);
        let mut rest = bytes;
        if !self.partial.is_empty() {
            let need = (width - self.partial.len()).min(rest.len());
            self.partial.extend_from_slice(&rest[..need]);
            rest = &rest[need..];
            if self.partial.len() == width {
                mono.push(self.format.mono(&self.partial));
                self.partial.clear();
            }
        }
        let whole = rest.len() / width * width;
        mono.extend(rest[..whole].chunks_exact(width).map(|f| self.format.mono(f)));
        self.partial.extend_from_slice(&rest[whole..]);
        self.frames += mono.len() as u64;
        self.convert(&mono)?;
        Ok(before..self.heard())
    }

    /// Ends the stream: what the resampler still holds comes out, so that the engine audio is
    /// exactly as long as the source. Answers the samples it made.
    pub fn finish(&mut self) -> Result<Range<usize>, AudioError> {
        let before = self.heard();
        let expected = self.frames * u64::from(ENGINE_RATE) / u64::from(self.format.rate);
        if let Some(stream) = self.resampler.as_mut() {
            let mut out = Vec::new();
            let pending = std::mem::take(&mut stream.input);
            if !pending.is_empty() {
                stream.process(&pad(pending), &mut out)?;
            }
            stream.process(&vec![0.0; CHUNK], &mut out)?;
            let room = expected.saturating_sub(stream.produced - out.len() as u64) as usize;
            out.truncate(room);
            self.samples.extend(to_i16(&out));
        }
        Ok(before..self.heard())
    }

    fn convert(&mut self, mono: &[f32]) -> Result<(), AudioError> {
        let Some(stream) = self.resampler.as_mut() else {
            self.samples.extend(to_i16(mono));
            return Ok(());
        };
        let mut out = Vec::new();
        for sample in mono {
            stream.input.push(*sample);
            if stream.input.len() == CHUNK {
                let chunk = std::mem::replace(&mut stream.input, Vec::with_capacity(CHUNK));
                stream.process(&chunk, &mut out)?;
            }
        }
        self.samples.extend(to_i16(&out));
        Ok(())
    }

    /// Engine samples made so far (the end of the audio, as an absolute position).
    pub fn heard(&self) -> usize {
        self.origin + self.samples.len()
    }

    /// The engine samples of `range` (absolute positions); what was forgotten is not there.
    pub fn samples(&self, range: Range<usize>) -> &[i16] {
        let start = range.start.saturating_sub(self.origin).min(self.samples.len());
        let end = range.end.saturating_sub(self.origin).clamp(start, self.samples.len());
        &self.samples[start..end]
    }

    /// Drops the engine samples before `position`: they will not be recognized any more.
    pub fn forget_before(&mut self, position: usize) {
        let drop = position.saturating_sub(self.origin).min(self.samples.len());
        self.samples.drain(..drop);
        self.origin += drop;
    }

    /// How long the source audio received is, in 100 ns ticks, counting every frame (the Speech
    /// SDK re-sends what the server's last offset did not acknowledge).
    pub fn received_ticks(&self) -> u64 {
        self.frames * 10_000_000 / u64::from(self.format.rate)
    }
}

impl Stream {
    fn process(&mut self, chunk: &[f32], out: &mut Vec<f32>) -> Result<(), AudioError> {
        let produced = self
            .resampler
            .process(&[chunk], None)
            .map_err(|e| AudioError::Corrupt(format!("resampling failed: {e}")))?;
        let skip = self.delay_left.min(produced[0].len());
        self.delay_left -= skip;
        out.extend_from_slice(&produced[0][skip..]);
        self.produced += (produced[0].len() - skip) as u64;
        Ok(())
    }
}

fn pad(mut samples: Vec<f32>) -> Vec<f32> {
    samples.resize(CHUNK, 0.0);
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(rate: u32, channels: u16, bits: u16) -> Vec<u8> {
        let mut h = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0".to_vec();
        h.extend_from_slice(&channels.to_le_bytes());
        h.extend_from_slice(&rate.to_le_bytes());
        h.extend_from_slice(&(rate * u32::from(channels) * u32::from(bits / 8)).to_le_bytes());
        h.extend_from_slice(&(channels * bits / 8).to_le_bytes());
        h.extend_from_slice(&bits.to_le_bytes());
        h.extend_from_slice(b"data\0\0\0\0");
        h
    }

    /// A sine of `freq` Hz as 16-bit PCM of `channels` identical channels.
    fn sine(rate: u32, channels: u16, freq: f32, seconds: f32) -> Vec<u8> {
        let frames = (rate as f32 * seconds) as usize;
        (0..frames)
            .flat_map(|i| {
                let s = ((i as f32 * freq * std::f32::consts::TAU / rate as f32).sin() * 16000.0) as i16;
                std::iter::repeat_n(s.to_le_bytes(), usize::from(channels)).flatten()
            })
            .collect()
    }

    fn zero_crossings(samples: &[i16]) -> usize {
        samples.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn audio_in_odd_messages_comes_out_as_long_and_as_high_as_it_went_in() {
        for (rate, channels) in [(16_000, 1), (8_000, 1), (44_100, 2), (22_050, 1), (48_000, 2)] {
            let pcm = sine(rate, channels, 440.0, 1.5);
            let mut audio = LiveAudio::start(&header(rate, channels, 16)).unwrap_or_else(|e| panic!("{e}"));
            // Messages of 777 bytes split frames and samples.
            for chunk in pcm.chunks(777) {
                audio.push(chunk).unwrap_or_else(|e| panic!("{e}"));
            }
            audio.finish().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(audio.heard(), 24_000, "{rate} Hz x{channels}: 1.5 s at 16 kHz");
            assert_eq!(audio.received_ticks(), 15_000_000);
            let crossings = zero_crossings(audio.samples(0..audio.heard()));
            assert!((1290..=1350).contains(&crossings), "{rate} Hz x{channels}: 440 Hz kept, {crossings} crossings");
        }
    }

    #[test]
    fn forgotten_audio_is_gone_and_positions_stay_absolute() {
        let mut audio = LiveAudio::start(&header(16_000, 1, 16)).unwrap_or_else(|e| panic!("{e}"));
        let made = audio.push(&sine(16_000, 1, 200.0, 1.0)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(made, 0..16_000);
        let kept = audio.samples(8_000..8_010).to_vec();
        audio.forget_before(8_000);
        assert_eq!(audio.samples(8_000..8_010), &kept[..]);
        assert!(audio.samples(0..8_000).is_empty());
        assert_eq!(audio.push(&[0, 0]).unwrap_or_else(|e| panic!("{e}")), 16_000..16_001);
    }

    #[test]
    fn headers_that_announce_no_pcm_are_refused_with_the_reason() {
        let no_riff = LiveAudio::start(b"just some bytes").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(no_riff.contains("RIFF header is missing"), "{no_riff}");
        let mut alaw = header(8_000, 1, 8);
        alaw[20] = 6;
        let refused = LiveAudio::start(&alaw).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("audio format 6"), "{refused}");
        let truncated = LiveAudio::start(&header(16_000, 1, 16)[..30]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(truncated.contains("truncated"), "{truncated}");
        let fast = LiveAudio::start(&header(96_000, 1, 16)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(fast.contains("96000 Hz"), "{fast}");
        let surround = LiveAudio::start(&header(16_000, 6, 16)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(surround.contains("6 channels"), "{surround}");
    }
}
