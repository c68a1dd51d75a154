//! SSML as the Speech SDK and users send it, read into what an engine speaks: pieces of text, each
//! with its voice and prosody, and pauses.
//!
//! Supported: `speak` (the root), `voice`, `prosody` (rate, pitch, volume in Azure's forms),
//! `break` (time or strength), `say-as`, `phoneme`, `sub`, `emphasis`, `lang`, `p`, `s` (their text
//! is spoken as written: the engine reads numbers and dates itself, and has no IPA input), and every
//! `mstts:*` element (ignored, its text kept). `bookmark` is accepted and ignored. Any other element
//! is refused, so that a client learns byos does not do it rather than hearing something else.
//!
//! Prosody values are Azure's: rate a multiplier (`1.5`), a relative percentage (`+50%`, `-25%`) or
//! x-slow..x-fast; an unsigned percentage (`50%`) is taken as a multiplier of the enclosing rate.
//! Pitch `+10%`, `-2st`, `+80Hz`, an absolute `600Hz`, or x-low..x-high. Volume an absolute 0-100
//! (100, the default, is the voice as it speaks), a relative `+10`/`-10` or `+10%`, or
//! silent..x-loud.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// The longest pause a `break` makes (Azure's limit).
pub const MAX_BREAK_MS: u32 = 20_000;
/// Azure's slowest and fastest rates.
const RATES: std::ops::RangeInclusive<f32> = 0.5..=3.0;
/// The loudest volume (twice the voice's own; louder only clips).
const MAX_VOLUME: f32 = 2.0;

/// Why SSML cannot be spoken; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsmlError {
    #[error("the SSML is not well-formed XML: {0}")]
    Xml(String),
    #[error("the SSML's root element is {0}, not speak")]
    NotSpeak(String),
    #[error("the SSML has no speak element")]
    Empty,
    #[error("the SSML element {0} is not supported")]
    Unsupported(String),
    #[error("the SSML has text outside a voice element: {0:?}")]
    NoVoice(String),
    #[error("the voice element has no name")]
    VoiceUnnamed,
    #[error("the value {value:?} of {element}'s {attribute} is not valid")]
    Attribute { element: String, attribute: String, value: String },
    /// A voice byos does not have (the message lists those it has).
    #[error("{0}")]
    UnknownVoice(String),
}

/// How a piece of text is spoken, relative to the voice's own way.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prosody {
    /// Speed: 1 the voice's own, 2 twice as fast.
    pub rate: f32,
    /// The voice's mean pitch is multiplied by this, then `pitch_shift_hz` added (an absolute pitch
    /// is a factor of 0 and a shift of its frequency).
    pub pitch_factor: f32,
    pub pitch_shift_hz: f32,
    /// Gain: 1 the voice's own, 0 silent.
    pub volume: f32,
}

impl Default for Prosody {
    fn default() -> Self {
        Prosody { rate: 1.0, pitch_factor: 1.0, pitch_shift_hz: 0.0, volume: 1.0 }
    }
}

/// One thing to say or a silence.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Piece {
    Speech { voice: String, text: String, prosody: Prosody },
    Pause { ms: u32 },
}

/// A request read: its language (`xml:lang` of speak) and what to say, in order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ssml {
    pub language: Option<String>,
    pub pieces: Vec<Piece>,
}

impl Ssml {
    /// The text the request says (its pieces, in order).
    pub fn spoken_text(&self) -> String {
        let texts: Vec<&str> = self
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Speech { text, .. } => Some(text.as_str()),
                Piece::Pause { .. } => None,
            })
            .collect();
        texts.join(" ")
    }

    /// The voices named, each once, in order of first use.
    pub fn voices(&self) -> Vec<&str> {
        let mut voices: Vec<&str> = Vec::new();
        for piece in &self.pieces {
            if let Piece::Speech { voice, .. } = piece
                && !voices.contains(&voice.as_str())
            {
                voices.push(voice);
            }
        }
        voices
    }
}

/// Plain text (the REST and batch PlainText input) said by `voice` as it speaks.
pub fn plain_text(text: &str, voice: &str) -> Ssml {
    let pieces = if text.trim().is_empty() {
        Vec::new()
    } else {
        vec![Piece::Speech { voice: voice.to_owned(), text: text.trim().to_owned(), prosody: Prosody::default() }]
    };
    Ssml { language: None, pieces }
}

/// What an open element contributes to the text inside it.
#[derive(Clone)]
struct Scope {
    voice: Option<String>,
    prosody: Prosody,
}

/// Reads SSML.
pub fn parse(ssml: &str) -> Result<Ssml, SsmlError> {
    let mut reader = Reader::from_str(ssml);
    let mut stack: Vec<Scope> = Vec::new();
    let mut out = Ssml { language: None, pieces: Vec::new() };
    let mut finished = false;
    loop {
        let event = reader.read_event().map_err(|e| SsmlError::Xml(e.to_string()))?;
        match event {
            Event::Start(element) | Event::Empty(element) if finished => {
                return Err(SsmlError::Xml(format!("an element {} after speak", name(&element))));
            }
            Event::Start(element) => {
                let scope = open(&element, stack.last(), &mut out)?;
                stack.push(scope);
            }
            Event::Empty(element) => {
                let scope = open(&element, stack.last(), &mut out)?;
                if name(&element) == "break" {
                    out.pieces.push(Piece::Pause { ms: break_ms(&element)? });
                }
                drop(scope);
                finished |= stack.is_empty();
            }
            Event::End(_) => {
                stack.pop();
                // Elements end words: "<s>one</s><s>two</s>" is two words.
                push_text(&mut out, stack.last(), " ")?;
                finished |= stack.is_empty();
            }
            Event::Text(text) => {
                let text = text.decode().map_err(|e| SsmlError::Xml(e.to_string()))?;
                push_text_in(&mut out, &stack, &text)?;
            }
            Event::CData(text) => {
                let text = text.decode().map_err(|e| SsmlError::Xml(e.to_string()))?;
                push_text_in(&mut out, &stack, &text)?;
            }
            Event::GeneralRef(reference) => {
                let text = reference_text(&reference)?;
                push_text_in(&mut out, &stack, &text)?;
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions, doctype: nothing to say.
            _ => {}
        }
    }
    if !finished {
        return Err(if stack.is_empty() { SsmlError::Empty } else { SsmlError::Xml("speak is not closed".into()) });
    }
    tidy(&mut out.pieces);
    Ok(out)
}

/// Text outside the root must be whitespace; inside, it goes to the innermost scope.
fn push_text_in(out: &mut Ssml, stack: &[Scope], text: &str) -> Result<(), SsmlError> {
    match stack.last() {
        None if text.trim().is_empty() => Ok(()),
        None => Err(SsmlError::Xml(format!("text outside speak: {:?}", text.trim()))),
        Some(scope) => push_text(out, Some(scope), text),
    }
}

/// Adds `text` said in `scope`, to the last piece if it is said the same way.
fn push_text(out: &mut Ssml, scope: Option<&Scope>, text: &str) -> Result<(), SsmlError> {
    let Some(scope) = scope else { return Ok(()) };
    let Some(voice) = &scope.voice else {
        return if text.trim().is_empty() { Ok(()) } else { Err(SsmlError::NoVoice(text.trim().to_owned())) };
    };
    if let Some(Piece::Speech { voice: last_voice, text: last, prosody }) = out.pieces.last_mut()
        && last_voice == voice
        && *prosody == scope.prosody
    {
        last.push_str(text);
        return Ok(());
    }
    if !text.trim().is_empty() {
        out.pieces.push(Piece::Speech { voice: voice.clone(), text: text.to_owned(), prosody: scope.prosody });
    }
    Ok(())
}

/// Collapses each piece's whitespace and drops pieces left empty.
fn tidy(pieces: &mut Vec<Piece>) {
    for piece in pieces.iter_mut() {
        if let Piece::Speech { text, .. } = piece {
            *text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        }
    }
    pieces.retain(|p| !matches!(p, Piece::Speech { text, .. } if text.is_empty()));
}

fn name(element: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(element.name().as_ref()).into_owned()
}

/// The scope an element opens inside `parent` (None: it is the root).
fn open(element: &BytesStart<'_>, parent: Option<&Scope>, out: &mut Ssml) -> Result<Scope, SsmlError> {
    let element_name = name(element);
    let Some(parent) = parent else {
        if element_name != "speak" {
            return Err(SsmlError::NotSpeak(element_name));
        }
        out.language = attribute(element, "xml:lang")?;
        return Ok(Scope { voice: None, prosody: Prosody::default() });
    };
    let mut scope = parent.clone();
    match element_name.as_str() {
        "voice" => {
            let voice = attribute(element, "name")?.filter(|n| !n.trim().is_empty()).ok_or(SsmlError::VoiceUnnamed)?;
            scope.voice = Some(voice.trim().to_owned());
        }
        "prosody" => scope.prosody = prosody(element, parent.prosody)?,
        "break" | "say-as" | "phoneme" | "sub" | "emphasis" | "lang" | "p" | "s" | "bookmark" => {}
        other if other.starts_with("mstts:") => {}
        other => return Err(SsmlError::Unsupported(other.to_owned())),
    }
    Ok(scope)
}

/// The unescaped value of the attribute named `key`, if present.
fn attribute(element: &BytesStart<'_>, key: &str) -> Result<Option<String>, SsmlError> {
    for attribute in element.attributes() {
        let attribute = attribute.map_err(|e| SsmlError::Xml(e.to_string()))?;
        if attribute.key.as_ref() == key.as_bytes() {
            let value = attribute.unescape_value().map_err(|e| SsmlError::Xml(e.to_string()))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

fn invalid(element: &BytesStart<'_>, attribute: &str, value: &str) -> SsmlError {
    SsmlError::Attribute { element: name(element), attribute: attribute.to_owned(), value: value.to_owned() }
}

/// The prosody of a `prosody` element inside one of `parent`'s.
fn prosody(element: &BytesStart<'_>, parent: Prosody) -> Result<Prosody, SsmlError> {
    let mut prosody = parent;
    if let Some(value) = attribute(element, "rate")? {
        prosody.rate = rate(&value, parent.rate).ok_or_else(|| invalid(element, "rate", &value))?;
    }
    if let Some(value) = attribute(element, "pitch")? {
        (prosody.pitch_factor, prosody.pitch_shift_hz) = pitch(&value, parent.pitch_factor, parent.pitch_shift_hz)
            .ok_or_else(|| invalid(element, "pitch", &value))?;
    }
    if let Some(value) = attribute(element, "volume")? {
        prosody.volume = volume(&value, parent.volume).ok_or_else(|| invalid(element, "volume", &value))?;
    }
    Ok(prosody)
}

/// A number with an explicit sign (`+10`, `-5.5`), as its value.
fn signed(value: &str) -> Option<f32> {
    if value.starts_with(['+', '-']) { value.parse().ok().filter(|v: &f32| v.is_finite()) } else { None }
}

fn number(value: &str) -> Option<f32> {
    value.parse().ok().filter(|v: &f32| v.is_finite() && *v >= 0.0)
}

/// A rate relative to the enclosing `parent` rate.
fn rate(value: &str, parent: f32) -> Option<f32> {
    let value = value.trim();
    let rate = match value {
        "x-slow" => 0.5,
        "slow" => 0.64,
        "medium" | "default" => 1.0,
        "fast" => 1.55,
        "x-fast" => 2.0,
        _ => match value.strip_suffix('%') {
            Some(percent) => match signed(percent) {
                Some(change) => parent * (1.0 + change / 100.0),
                None => parent * number(percent)? / 100.0,
            },
            None => parent * number(value.trim_start_matches('+'))?,
        },
    };
    (rate > 0.0).then(|| rate.clamp(*RATES.start(), *RATES.end()))
}

/// A pitch (factor, shift in Hz) relative to the enclosing one.
fn pitch(value: &str, factor: f32, shift: f32) -> Option<(f32, f32)> {
    let value = value.trim();
    let named = |f: f32| Some((f, 0.0));
    let pitch = match value {
        "x-low" => named(0.5),
        "low" => named(0.75),
        "medium" | "default" => named(1.0),
        "high" => named(1.25),
        "x-high" => named(1.5),
        _ => {
            if let Some(percent) = value.strip_suffix('%') {
                let ratio = 1.0 + signed(percent)? / 100.0;
                Some((factor * ratio, shift * ratio))
            } else if let Some(semitones) = value.strip_suffix("st") {
                let ratio = 2f32.powf(signed(semitones)? / 12.0);
                Some((factor * ratio, shift * ratio))
            } else if let Some(hz) = value.strip_suffix("Hz").or_else(|| value.strip_suffix("hz")) {
                match signed(hz) {
                    Some(change) => Some((factor, shift + change)),
                    None => Some((0.0, number(hz).filter(|h| *h > 0.0)?)),
                }
            } else {
                None
            }
        }
    }?;
    (pitch.0 >= 0.0).then_some(pitch)
}

/// A volume (gain) relative to the enclosing one.
fn volume(value: &str, parent: f32) -> Option<f32> {
    let value = value.trim();
    let volume = match value {
        "silent" => 0.0,
        "x-soft" => 0.2,
        "soft" => 0.4,
        "medium" => 0.6,
        "loud" => 0.8,
        "x-loud" | "default" => 1.0,
        _ => match value.strip_suffix('%') {
            Some(percent) => match signed(percent) {
                Some(change) => parent * (1.0 + change / 100.0),
                None => parent * number(percent)? / 100.0,
            },
            None => match signed(value) {
                Some(change) => parent + change / 100.0,
                None => number(value).filter(|v| *v <= 100.0)? / 100.0,
            },
        },
    };
    Some(volume.clamp(0.0, MAX_VOLUME))
}

/// A `break`'s length: its time, else its strength's (Azure's), else medium's.
fn break_ms(element: &BytesStart<'_>) -> Result<u32, SsmlError> {
    if let Some(time) = attribute(element, "time")? {
        let ms = time
            .trim()
            .strip_suffix("ms")
            .and_then(number)
            .or_else(|| time.trim().strip_suffix('s').and_then(number).map(|s| s * 1000.0))
            .ok_or_else(|| invalid(element, "time", &time))?;
        return Ok((ms.round() as u32).min(MAX_BREAK_MS));
    }
    let strength = attribute(element, "strength")?;
    Ok(match strength.as_deref().map(str::trim) {
        Some("none") => 0,
        Some("x-weak") => 250,
        Some("weak") => 500,
        None | Some("medium") => 750,
        Some("strong") => 1000,
        Some("x-strong") => 1250,
        Some(other) => return Err(invalid(element, "strength", other)),
    })
}

/// The text an entity or character reference (`&amp;`, `&#65;`) stands for.
fn reference_text(reference: &quick_xml::events::BytesRef<'_>) -> Result<String, SsmlError> {
    let bad = |e: &dyn std::fmt::Display| SsmlError::Xml(e.to_string());
    if let Some(c) = reference.resolve_char_ref().map_err(|e| bad(&e))? {
        return Ok(c.to_string());
    }
    let name = reference.decode().map_err(|e| bad(&e))?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| SsmlError::Xml(format!("unknown entity &{name};")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(ssml: &str) -> Ssml {
        parse(ssml).unwrap_or_else(|e| panic!("{ssml}: {e}"))
    }

    fn speech(voice: &str, text: &str, prosody: Prosody) -> Piece {
        Piece::Speech { voice: voice.into(), text: text.into(), prosody }
    }

    #[test]
    fn what_the_speech_sdk_sends_reads_as_one_piece_of_its_voice() {
        let ssml = "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' \
            xmlns:mstts='http://www.w3.org/2001/mstts' xmlns:emo='http://www.w3.org/2009/10/emotionml' \
            xml:lang='en-US'><voice name='en-US-RmsFlite'>Hello from Flite &amp; byos.</voice></speak>";
        let ssml = parsed(ssml);
        assert_eq!(ssml.language.as_deref(), Some("en-US"));
        assert_eq!(ssml.pieces, [speech("en-US-RmsFlite", "Hello from Flite & byos.", Prosody::default())]);
        assert_eq!(ssml.voices(), ["en-US-RmsFlite"]);
    }

    #[test]
    fn prosody_breaks_and_markup_make_pieces_and_pauses() {
        let ssml = parsed(
            r#"<?xml version="1.0"?><speak version="1.0" xmlns:mstts="http://www.w3.org/2001/mstts">
            <voice name="a"><p><s>One <say-as interpret-as="cardinal">2</say-as></s><s>three</s></p>
            <break time="300ms"/><prosody rate="+50%" pitch="-2st" volume="50">fast <prosody rate="50%">slow</prosody></prosody>
            <break strength="strong"/><break/><break time="2s"/>
            <mstts:express-as style="cheerful">kept <phoneme alphabet="ipa" ph="tə">tomato</phoneme></mstts:express-as>
            <mstts:silence type="Leading" value="100ms"/><bookmark mark="m"/></voice>
            <voice name="b"><lang xml:lang="en-GB">other <![CDATA[<voice>]]></lang></voice></speak>"#,
        );
        let fast = Prosody { rate: 1.5, pitch_factor: 2f32.powf(-2.0 / 12.0), pitch_shift_hz: 0.0, volume: 0.5 };
        let slow = Prosody { rate: 0.75, ..fast };
        assert_eq!(
            ssml.pieces,
            [
                speech("a", "One 2 three", Prosody::default()),
                Piece::Pause { ms: 300 },
                speech("a", "fast", fast),
                speech("a", "slow", slow),
                Piece::Pause { ms: 1000 },
                Piece::Pause { ms: 750 },
                Piece::Pause { ms: 2000 },
                speech("a", "kept tomato", Prosody::default()),
                speech("b", "other <voice>", Prosody::default()),
            ]
        );
        assert_eq!(ssml.voices(), ["a", "b"]);
    }

    #[test]
    fn azure_prosody_values_read_as_azure_means_them() {
        assert_eq!(rate("x-slow", 1.0), Some(0.5));
        assert_eq!(rate("fast", 1.0), Some(1.55));
        assert_eq!(rate("-20%", 1.0), Some(0.8));
        assert_eq!(rate("1.2", 1.0), Some(1.2));
        assert_eq!(rate("150%", 1.0), Some(1.5));
        assert_eq!(rate("+900%", 1.0), Some(3.0), "clamped to Azure's range");
        assert_eq!(rate("quick", 1.0), None);
        assert_eq!(pitch("+10%", 1.0, 0.0), Some((1.1, 0.0)));
        assert_eq!(pitch("+80Hz", 1.0, 0.0), Some((1.0, 80.0)));
        assert_eq!(pitch("600Hz", 1.0, 0.0), Some((0.0, 600.0)));
        assert_eq!(pitch("x-high", 0.5, 3.0), Some((1.5, 0.0)));
        assert_eq!(pitch("12st", 1.0, 0.0), None, "a shift needs its sign");
        assert_eq!(pitch("+12st", 1.0, 0.0), Some((2.0, 0.0)));
        assert_eq!(volume("silent", 1.0), Some(0.0));
        assert_eq!(volume("x-loud", 0.2), Some(1.0));
        assert_eq!(volume("50", 1.0), Some(0.5));
        assert_eq!(volume("-20", 1.0), Some(0.8));
        assert_eq!(volume("+100%", 1.0), Some(2.0));
        assert_eq!(volume("101", 1.0), None);
    }

    #[test]
    fn plain_text_is_one_piece_and_nothing_is_no_piece() {
        assert_eq!(plain_text(" hi there ", "v").pieces, [speech("v", "hi there", Prosody::default())]);
        assert!(plain_text("  ", "v").pieces.is_empty());
    }

    #[test]
    fn invalid_ssml_is_refused_with_its_reason() {
        type Expected = fn(&SsmlError) -> bool;
        let cases: [(&str, Expected); 12] = [
            ("hello there", |e| matches!(e, SsmlError::Xml(_))),
            ("", |e| matches!(e, SsmlError::Empty)),
            ("<speak><voice name='a'>unclosed</speak>", |e| matches!(e, SsmlError::Xml(_))),
            ("<speak><voice name='a'>open", |e| matches!(e, SsmlError::Xml(_))),
            ("<voice name='a'>hi</voice>", |e| matches!(e, SsmlError::NotSpeak(n) if n == "voice")),
            ("<speak>no voice</speak>", |e| matches!(e, SsmlError::NoVoice(t) if t == "no voice")),
            ("<speak><voice>hi</voice></speak>", |e| matches!(e, SsmlError::VoiceUnnamed)),
            (
                "<speak><voice name='a'><audio src='x'/></voice></speak>",
                |e| matches!(e, SsmlError::Unsupported(n) if n == "audio"),
            ),
            (
                "<speak><voice name='a'><prosody rate='zoom'>hi</prosody></voice></speak>",
                |e| matches!(e, SsmlError::Attribute { attribute, value, .. } if attribute == "rate" && value == "zoom"),
            ),
            (
                "<speak><voice name='a'><break time='soon'/></voice></speak>",
                |e| matches!(e, SsmlError::Attribute { attribute, .. } if attribute == "time"),
            ),
            ("<speak><voice name='a'>&nope;</voice></speak>", |e| matches!(e, SsmlError::Xml(_))),
            ("<speak></speak><speak></speak>", |e| matches!(e, SsmlError::Xml(_))),
        ];
        for (ssml, expected) in cases {
            match parse(ssml) {
                Err(e) => assert!(expected(&e), "{ssml}: {e:?}"),
                Ok(parsed) => panic!("{ssml} was read as {parsed:?}"),
            }
        }
    }
}
