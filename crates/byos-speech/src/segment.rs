//! Long audio cut into utterances at its pauses, as a batch transcription reports it: one
//! recognized phrase per stretch of speech. The engine decodes an utterance at a time, and an
//! utterance of a few seconds is what its search is tuned for.
//!
//! Speech is told from silence by each 20 ms frame's energy against the recording's own quiet
//! level (its 10th percentile), so that both digital silence and a hiss floor work.
//!
//! [`Endpointer`] does the same for live audio, frame by frame as it arrives: the quiet level is
//! that of the last [`WINDOW_FRAMES`], and an utterance is told as soon as the pause that ends it
//! has been heard, so that it can be recognized while the speaker goes on.

use std::ops::Range;

use crate::audio::ENGINE_RATE;

/// Samples in a frame (20 ms).
const FRAME: usize = ENGINE_RATE as usize / 50;
/// A frame louder than this RMS counts as speech whatever the floor (about -50 dBFS).
const MIN_SPEECH_RMS: f64 = 100.0;
/// ... and it must stand this far above the recording's quiet level.
const OVER_FLOOR: f64 = 3.0;
/// ... unless that is more than this share of the loudest frame.
const LOUDEST_SHARE: f64 = 0.1;
/// A pause at least this long ends an utterance (frames: 400 ms).
const PAUSE_FRAMES: usize = 20;
/// Kept around each utterance so that its first and last sounds are whole (frames: 200 ms).
const PAD_FRAMES: usize = 10;
/// Shorter bursts are clicks, not speech (frames: 100 ms).
const MIN_SPEECH_FRAMES: usize = 5;
/// An utterance longer than this is cut at its quietest frame past half of it (frames: 20 s).
const MAX_FRAMES: usize = 1000;

/// The frames a live stream's quiet level is taken over (30 s).
const WINDOW_FRAMES: usize = 1500;

/// The utterances of 16 kHz `samples`, as sample ranges in order, none overlapping.
pub fn utterances(samples: &[i16]) -> Vec<Range<usize>> {
    let energy: Vec<f64> = samples.chunks(FRAME).map(rms).collect();
    let threshold = threshold(&energy);
    let speech: Vec<bool> = energy.iter().map(|e| *e > threshold).collect();
    let mut out = Vec::new();
    for run in speech_runs(&speech) {
        for piece in split_long(run, &energy) {
            let start = piece.start.saturating_sub(PAD_FRAMES) * FRAME;
            let end = ((piece.end + PAD_FRAMES) * FRAME).min(samples.len());
            out.push(start..end);
        }
    }
    // Padding may make neighbours touch; they never overlap.
    for i in 1..out.len() {
        if out[i].start < out[i - 1].end {
            let middle = (out[i - 1].end + out[i].start) / 2;
            (out[i - 1].end, out[i].start) = (middle, middle);
        }
    }
    out
}

/// What a live stream's endpointer heard (positions in samples from the stream's start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Speech began here (an utterance is open).
    SpeechStarted(usize),
    /// An utterance: a pause ended it, or it ran to its longest, or the stream ended.
    Utterance(Range<usize>),
}

/// Utterances of live 16 kHz audio, told as the audio arrives.
#[derive(Debug, Default)]
pub struct Endpointer {
    /// Samples of a frame not yet whole.
    partial: Vec<i16>,
    /// Frames heard.
    frames: usize,
    /// The last [`WINDOW_FRAMES`] energies, in arrival order and sorted.
    window: std::collections::VecDeque<f64>,
    sorted: Vec<f64>,
    open: Option<Run>,
    /// Where the last utterance ended (samples): the next one's padding stops there.
    last_end: usize,
}

/// The speech being heard: its first and last speech frames and every frame's energy from its start.
#[derive(Debug)]
struct Run {
    start: usize,
    last_speech: usize,
    energy: Vec<f64>,
    /// Long enough not to be a click: [`Heard::SpeechStarted`] was told.
    confirmed: bool,
}

impl Endpointer {
    pub fn new() -> Self {
        Endpointer::default()
    }

    /// Hears the next `samples` of the stream.
    pub fn hear(&mut self, samples: &[i16]) -> Vec<Heard> {
        let mut heard = Vec::new();
        self.partial.extend_from_slice(samples);
        let whole = self.partial.len() / FRAME * FRAME;
        let frames: Vec<f64> = self.partial[..whole].chunks(FRAME).map(rms).collect();
        self.partial.drain(..whole);
        for energy in frames {
            self.frame(energy, &mut heard);
        }
        heard
    }

    /// The stream ended after `total` samples: the utterance being heard, if any, ends with it.
    pub fn finish(&mut self, total: usize) -> Vec<Heard> {
        let mut heard = Vec::new();
        if let Some(run) = self.open.take().filter(|r| r.confirmed) {
            let end = ((run.last_speech + 1 + PAD_FRAMES) * FRAME).min(total);
            heard.push(Heard::Utterance(self.padded_start(run.start)..end));
            self.last_end = end;
        }
        heard
    }

    /// Where the utterance being heard began (samples), if one is.
    pub fn open_since(&self) -> Option<usize> {
        self.open.as_ref().filter(|r| r.confirmed).map(|r| self.padded_start(r.start))
    }

    /// Where audio stops mattering: nothing before it will be part of an utterance.
    pub fn needed_from(&self) -> usize {
        match &self.open {
            Some(run) => self.padded_start(run.start),
            None => (self.frames.saturating_sub(PAD_FRAMES) * FRAME).max(self.last_end),
        }
    }

    fn padded_start(&self, frame: usize) -> usize {
        (frame.saturating_sub(PAD_FRAMES) * FRAME).max(self.last_end)
    }

    fn frame(&mut self, energy: f64, heard: &mut Vec<Heard>) {
        let frame = self.frames;
        self.frames += 1;
        self.remember(energy);
        let speech = energy > threshold_sorted(&self.sorted);
        match self.open.as_mut() {
            None if speech => {
                self.open = Some(Run { start: frame, last_speech: frame, energy: vec![energy], confirmed: false });
            }
            None => {}
            Some(run) => {
                run.energy.push(energy);
                if speech {
                    run.last_speech = frame;
                } else if frame - run.last_speech >= PAUSE_FRAMES {
                    self.close(heard);
                    return;
                }
            }
        }
        self.confirm(heard);
        self.cut_if_long(heard);
    }

    fn confirm(&mut self, heard: &mut Vec<Heard>) {
        let Some(run) = self.open.as_mut() else { return };
        if !run.confirmed && run.last_speech + 1 - run.start >= MIN_SPEECH_FRAMES {
            run.confirmed = true;
            let start = run.start;
            heard.push(Heard::SpeechStarted(self.padded_start(start)));
        }
    }

    /// Ends the open run at its pause (a click is dropped unheard).
    fn close(&mut self, heard: &mut Vec<Heard>) {
        if let Some(run) = self.open.take().filter(|r| r.confirmed) {
            let end = (run.last_speech + 1 + PAD_FRAMES) * FRAME;
            heard.push(Heard::Utterance(self.padded_start(run.start)..end));
            self.last_end = end;
        }
    }

    /// An utterance longer than [`MAX_FRAMES`] is cut at the quietest frame of its second half, as
    /// [`utterances`] does; the speech goes on in the next one.
    fn cut_if_long(&mut self, heard: &mut Vec<Heard>) {
        let Some(run) = self.open.as_mut() else { return };
        if run.energy.len() <= MAX_FRAMES {
            return;
        }
        let half = MAX_FRAMES / 2..MAX_FRAMES;
        let cut = half.clone().min_by(|a, b| run.energy[*a].total_cmp(&run.energy[*b])).unwrap_or(half.end);
        let start = run.start;
        run.start += cut;
        run.energy.drain(..cut);
        let end = (start + cut) * FRAME;
        heard.push(Heard::Utterance(self.padded_start(start)..end));
        self.last_end = end;
    }

    fn remember(&mut self, energy: f64) {
        if self.window.len() == WINDOW_FRAMES
            && let Some(old) = self.window.pop_front()
            && let Ok(at) = self.sorted.binary_search_by(|e| e.total_cmp(&old))
        {
            self.sorted.remove(at);
        }
        self.window.push_back(energy);
        let at = self.sorted.partition_point(|e| e.total_cmp(&energy).is_lt());
        self.sorted.insert(at, energy);
    }
}

fn rms(frame: &[i16]) -> f64 {
    let sum: f64 = frame.iter().map(|s| f64::from(*s).powi(2)).sum();
    (sum / frame.len().max(1) as f64).sqrt()
}

/// The energy above which a frame is speech: well over the recording's quiet level (its
/// 10th-percentile frame), yet never above a tenth of its loudest frame (a recording without a
/// pause has no quiet level to speak of).
fn threshold(energy: &[f64]) -> f64 {
    let mut sorted = energy.to_vec();
    sorted.sort_by(f64::total_cmp);
    threshold_sorted(&sorted)
}

/// [`threshold`] of energies already sorted.
fn threshold_sorted(sorted: &[f64]) -> f64 {
    let quiet = sorted.get(sorted.len() / 10).copied().unwrap_or(0.0);
    let loudest = sorted.last().copied().unwrap_or(0.0);
    (quiet * OVER_FLOOR).min(loudest * LOUDEST_SHARE).max(MIN_SPEECH_RMS)
}

/// Frame ranges of speech, pauses shorter than [`PAUSE_FRAMES`] bridged, clicks dropped.
fn speech_runs(speech: &[bool]) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut frame = 0;
    while frame < speech.len() {
        if !speech[frame] {
            frame += 1;
            continue;
        }
        let start = frame;
        while frame < speech.len() && speech[frame] {
            frame += 1;
        }
        match runs.last_mut() {
            Some(last) if start - last.end < PAUSE_FRAMES => last.end = frame,
            _ => runs.push(start..frame),
        }
    }
    runs.retain(|r| r.len() >= MIN_SPEECH_FRAMES);
    runs
}

/// `run` in pieces of at most [`MAX_FRAMES`], each cut at the quietest frame of its second half.
fn split_long(mut run: Range<usize>, energy: &[f64]) -> Vec<Range<usize>> {
    let mut pieces = Vec::new();
    while run.len() > MAX_FRAMES {
        let window = run.start + MAX_FRAMES / 2..run.start + MAX_FRAMES;
        let cut = window.clone().min_by(|a, b| energy[*a].total_cmp(&energy[*b])).unwrap_or(window.end);
        pieces.push(run.start..cut);
        run.start = cut;
    }
    pieces.push(run);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pattern` of (is speech, milliseconds): a 440 Hz tone for speech, digital silence between.
    fn signal(pattern: &[(bool, usize)]) -> Vec<i16> {
        let mut out = Vec::new();
        for (loud, ms) in pattern {
            for _ in 0..ms * 16 {
                let t = out.len() as f64 / f64::from(ENGINE_RATE);
                let tone = (t * 440.0 * std::f64::consts::TAU).sin() * 8000.0;
                out.push(if *loud { tone as i16 } else { 0 });
            }
        }
        out
    }

    fn ms(range: &Range<usize>) -> (usize, usize) {
        (range.start / 16, range.end / 16)
    }

    #[test]
    fn pauses_split_utterances_and_short_gaps_do_not() {
        let audio = signal(&[(false, 1000), (true, 1000), (false, 200), (true, 500), (false, 1000), (true, 800)]);
        let found: Vec<(usize, usize)> = utterances(&audio).iter().map(ms).collect();
        assert_eq!(found, vec![(800, 2900), (3500, 4500)]);
    }

    #[test]
    fn silence_and_clicks_are_no_utterance() {
        assert!(utterances(&signal(&[(false, 3000)])).is_empty());
        assert!(utterances(&signal(&[(false, 1000), (true, 40), (false, 1000)])).is_empty());
        assert!(utterances(&[]).is_empty());
    }

    #[test]
    fn long_speech_is_cut_into_pieces_of_at_most_twenty_seconds() {
        let audio = signal(&[(true, 45_000)]);
        let found = utterances(&audio);
        assert!(found.len() >= 3, "{found:?}");
        assert!(found.iter().all(|r| r.len() <= (MAX_FRAMES + 2 * PAD_FRAMES) * FRAME), "{found:?}");
        assert_eq!((found[0].start, found.last().map(|r| r.end)), (0, Some(audio.len())));
        assert!(found.windows(2).all(|w| w[0].end <= w[1].start));
    }

    /// Everything the endpointer tells of `audio` heard in messages of 100 ms, with the number of
    /// samples heard when each was told.
    fn live(audio: &[i16]) -> Vec<(usize, Heard)> {
        let mut endpointer = Endpointer::new();
        let mut told = Vec::new();
        let mut heard = 0;
        for chunk in audio.chunks(1600) {
            heard += chunk.len();
            told.extend(endpointer.hear(chunk).into_iter().map(|h| (heard, h)));
        }
        told.extend(endpointer.finish(audio.len()).into_iter().map(|h| (audio.len(), h)));
        told
    }

    #[test]
    fn live_audio_is_cut_where_a_recording_is_and_as_soon_as_each_pause_is_heard() {
        let audio = signal(&[(false, 1000), (true, 1000), (false, 200), (true, 500), (false, 1000), (true, 800)]);
        let told = live(&audio);
        let utterances: Vec<(usize, usize)> =
            told.iter().filter_map(|(_, h)| if let Heard::Utterance(r) = h { Some(ms(r)) } else { None }).collect();
        assert_eq!(utterances, vec![(800, 2900), (3500, 4500)]);
        // The first was told once its 400 ms pause was heard, long before the stream ended.
        assert!(matches!(&told[1], (at, Heard::Utterance(_)) if *at <= 3100 * 16), "{told:?}");
        assert!(matches!(told[0], (_, Heard::SpeechStarted(s)) if s == 800 * 16), "{told:?}");
        assert!(matches!(told[2], (_, Heard::SpeechStarted(s)) if s == 3500 * 16), "{told:?}");
    }

    #[test]
    fn live_silence_and_clicks_are_no_utterance_and_long_speech_is_cut() {
        assert!(live(&signal(&[(false, 3000)])).is_empty());
        assert!(live(&signal(&[(false, 1000), (true, 40), (false, 1000)])).is_empty());
        let audio = signal(&[(true, 45_000)]);
        let pieces: Vec<Range<usize>> = live(&audio)
            .into_iter()
            .filter_map(|(_, h)| if let Heard::Utterance(r) = h { Some(r) } else { None })
            .collect();
        assert!(pieces.len() >= 3 && pieces.iter().all(|r| r.len() <= (MAX_FRAMES + PAD_FRAMES) * FRAME), "{pieces:?}");
        assert_eq!((pieces[0].start, pieces.last().map(|r| r.end)), (0, Some(audio.len())));
        assert!(pieces.windows(2).all(|w| w[0].end == w[1].start), "{pieces:?}");
    }

    #[test]
    fn what_no_utterance_needs_any_more_can_be_forgotten() {
        let mut endpointer = Endpointer::new();
        endpointer.hear(&signal(&[(false, 1000)]));
        assert_eq!(endpointer.needed_from(), 800 * 16, "the padding before speech that may start now");
        endpointer.hear(&signal(&[(true, 500)]));
        assert_eq!((endpointer.needed_from(), endpointer.open_since()), (800 * 16, Some(800 * 16)));
    }
}
