//! Long audio cut into utterances at its pauses, as a batch transcription reports it: one
//! recognized phrase per stretch of speech. The engine decodes an utterance at a time, and an
//! utterance of a few seconds is what its search is tuned for.
//!
//! Speech is told from silence by each 20 ms frame's energy against the recording's own quiet
//! level (its 10th percentile), so that both digital silence and a hiss floor work.

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
}
