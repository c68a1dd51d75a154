//! Structured messages (`x-ms-structured-body: XSM/1.0; properties=crc64`): the framing
//! azure-storage-blob uses to validate streamed uploads and downloads with CRC64.
//!
//! Layout, integers little-endian: a message header (version u8 = 1, message length u64, flags u16
//! with 1 = CRC64, segment count u16); per segment a header (number u16 from 1, content length u64),
//! the content and, with CRC64, the content's CRC64; with CRC64 last the CRC64 of all content.

use byos_core::ApiError;
use bytes::{BufMut, Bytes, BytesMut};

use super::data::CRC64;
use super::errors::{bad_request, err};

pub const HEADER: &str = "x-ms-structured-body";
pub const LENGTH_HEADER: &str = "x-ms-structured-content-length";
pub const V1_CRC64: &str = "XSM/1.0; properties=crc64";
const VERSION: u8 = 1;
const MESSAGE_HEADER_LEN: usize = 13;
const SEGMENT_HEADER_LEN: usize = 10;
const CRC_LEN: usize = 8;
const FLAG_CRC64: u16 = 1;
/// Content per segment of the messages byos sends (the SDK's own segment size).
const SEGMENT_SIZE: u64 = 4 * 1024 * 1024;

type Digest = crc::Digest<'static, u64>;

/// Whether the request asks for structured messages (refusing versions byos does not speak).
pub fn requested(headers: &axum::http::HeaderMap) -> Result<bool, ApiError> {
    match headers.get(HEADER).map(|v| v.to_str().unwrap_or_default()) {
        None => Ok(false),
        Some(value) if value.replace(' ', "").eq_ignore_ascii_case(&V1_CRC64.replace(' ', "")) => Ok(true),
        Some(_) => Err(bad_request(
            "InvalidHeaderValue",
            format!(
                "The value for one of the HTTP headers is not in the correct format. Header: {HEADER}; byos speaks {V1_CRC64}."
            ),
        )),
    }
}

/// A decoder for the request's body if it is a structured message, which then must say how much
/// content it carries.
pub fn decoder_for(headers: &axum::http::HeaderMap) -> Result<Option<Decoder>, ApiError> {
    if !requested(headers)? {
        return Ok(None);
    }
    let number = |name: &str| -> Result<u64, ApiError> {
        let text = headers.get(name).ok_or_else(|| {
            bad_request(
                "MissingRequiredHeader",
                format!("An HTTP header that's mandatory for this request is not specified: {name}."),
            )
        })?;
        text.to_str().ok().and_then(|t| t.trim().parse().ok()).ok_or_else(|| super::errors::invalid_header(name))
    };
    Ok(Some(Decoder::new(number("content-length")?, number(LENGTH_HEADER)?)))
}

/// A whole (small) request body: its content when it is a structured message, else as sent.
pub fn content_of(headers: &axum::http::HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    let Some(mut decoder) = decoder_for(headers)? else { return Ok(body) };
    let content: Vec<u8> = decoder.feed(&body)?.concat();
    decoder.finish()?;
    Ok(Bytes::from(content))
}

fn invalid(detail: impl Into<String>) -> ApiError {
    bad_request("InvalidInput", "One of the request inputs is not valid.").with_detail(detail)
}

fn crc_mismatch() -> ApiError {
    bad_request(
        "Crc64Mismatch",
        "The CRC64 value specified in the request did not match with the CRC64 value calculated by the server.",
    )
}

/// Where the decoder is in the message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    MessageHeader,
    SegmentHeader,
    Content,
    SegmentCrc,
    MessageCrc,
    Done,
}

/// Decodes a structured request body as it streams in, checking its framing and every CRC.
pub struct Decoder {
    message_len: u64,
    content_len: u64,
    consumed: u64,
    part: Part,
    /// Bytes of a header or CRC that arrived split across frames.
    pending: Vec<u8>,
    crc64: bool,
    segments: u16,
    segment: u16,
    remaining: u64,
    decoded: u64,
    segment_crc: Digest,
    message_crc: Digest,
}

impl Decoder {
    /// `message_len` is the request's Content-Length, `content_len` its
    /// `x-ms-structured-content-length`.
    pub fn new(message_len: u64, content_len: u64) -> Self {
        Decoder {
            message_len,
            content_len,
            consumed: 0,
            part: Part::MessageHeader,
            pending: Vec::with_capacity(MESSAGE_HEADER_LEN),
            crc64: false,
            segments: 0,
            segment: 0,
            remaining: 0,
            decoded: 0,
            segment_crc: CRC64.digest(),
            message_crc: CRC64.digest(),
        }
    }

    /// The content carried by `input`, as slices of it, in order.
    pub fn feed<'a>(&mut self, mut input: &'a [u8]) -> Result<Vec<&'a [u8]>, ApiError> {
        self.consumed += input.len() as u64;
        if self.consumed > self.message_len {
            return Err(invalid("The structured message is longer than its Content-Length."));
        }
        let mut content = Vec::new();
        while !input.is_empty() {
            if self.part == Part::Content {
                let take = (self.remaining.min(input.len() as u64)) as usize;
                let (piece, rest) = input.split_at(take);
                self.segment_crc.update(piece);
                self.message_crc.update(piece);
                self.remaining -= take as u64;
                self.decoded += take as u64;
                content.push(piece);
                input = rest;
                if self.remaining == 0 {
                    self.part = if self.crc64 { Part::SegmentCrc } else { self.after_segment() };
                }
                continue;
            }
            let wanted = match self.part {
                Part::MessageHeader => MESSAGE_HEADER_LEN,
                Part::SegmentHeader => SEGMENT_HEADER_LEN,
                Part::SegmentCrc | Part::MessageCrc => CRC_LEN,
                Part::Content => 0,
                Part::Done => return Err(invalid("Bytes follow the end of the structured message.")),
            };
            let take = (wanted - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() == wanted {
                let field = std::mem::take(&mut self.pending);
                self.complete(&field)?;
            }
        }
        Ok(content)
    }

    /// Interprets a complete header or CRC field.
    fn complete(&mut self, field: &[u8]) -> Result<(), ApiError> {
        let u64_at = |at: usize| {
            field.get(at..at + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes).unwrap_or_default()
        };
        let u16_at = |at: usize| {
            field.get(at..at + 2).and_then(|b| <[u8; 2]>::try_from(b).ok()).map(u16::from_le_bytes).unwrap_or_default()
        };
        match self.part {
            Part::MessageHeader => {
                if field[0] != VERSION {
                    return Err(invalid(format!("Structured message version {} is not supported.", field[0])));
                }
                if u64_at(1) != self.message_len {
                    return Err(invalid("The structured message length does not match the Content-Length."));
                }
                let flags = u16_at(9);
                if flags & !FLAG_CRC64 != 0 {
                    return Err(invalid(format!("Unknown structured message flags {flags:#x}.")));
                }
                self.crc64 = flags & FLAG_CRC64 != 0;
                self.segments = u16_at(11);
                self.part = if self.segments == 0 { self.after_segment() } else { Part::SegmentHeader };
            }
            Part::SegmentHeader => {
                let number = u16_at(0);
                if number != self.segment + 1 || number > self.segments {
                    return Err(invalid(format!("Structured message segment {number} is out of order.")));
                }
                self.segment = number;
                self.remaining = u64_at(2);
                if self.decoded + self.remaining > self.content_len {
                    return Err(invalid(
                        "The structured message carries more content than x-ms-structured-content-length.",
                    ));
                }
                self.segment_crc = CRC64.digest();
                self.part = if self.remaining == 0 {
                    if self.crc64 { Part::SegmentCrc } else { self.after_segment() }
                } else {
                    Part::Content
                };
            }
            Part::SegmentCrc => {
                let sent = u64_at(0);
                if std::mem::replace(&mut self.segment_crc, CRC64.digest()).finalize() != sent {
                    return Err(crc_mismatch());
                }
                self.part = self.after_segment();
            }
            Part::MessageCrc => {
                if std::mem::replace(&mut self.message_crc, CRC64.digest()).finalize() != u64_at(0) {
                    return Err(crc_mismatch());
                }
                self.part = Part::Done;
            }
            Part::Content | Part::Done => {}
        }
        Ok(())
    }

    fn after_segment(&self) -> Part {
        match (self.segment < self.segments, self.crc64) {
            (true, _) => Part::SegmentHeader,
            (false, true) => Part::MessageCrc,
            (false, false) => Part::Done,
        }
    }

    /// Checks that the whole message arrived and carried exactly the announced content.
    pub fn finish(&self) -> Result<(), ApiError> {
        if self.part != Part::Done || self.consumed != self.message_len {
            return Err(invalid("The structured message ended early."));
        }
        if self.decoded != self.content_len {
            return Err(invalid(
                "The structured message content length does not match x-ms-structured-content-length.",
            ));
        }
        Ok(())
    }
}

/// The length of the message that carries `content_len` bytes (byos's segment size, CRC64).
pub fn encoded_len(content_len: u64) -> u64 {
    let segments = segment_count(content_len);
    MESSAGE_HEADER_LEN as u64 + segments * (SEGMENT_HEADER_LEN + CRC_LEN) as u64 + content_len + CRC_LEN as u64
}

fn segment_count(content_len: u64) -> u64 {
    content_len.div_ceil(SEGMENT_SIZE).max(1)
}

/// Frames a stream of `content_len` content bytes as a structured message with CRC64s.
pub fn encode<S>(
    content_len: u64,
    content: S,
) -> Result<impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, ApiError>
where
    S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin + 'static,
{
    let segments = u16::try_from(segment_count(content_len)).map_err(|_| {
        err(416, "InvalidRange", "The range is too large for a structured message; request at most 256 GiB at a time.")
    })?;
    let encoder = Encoder {
        content_len,
        segments,
        segment: 0,
        left_in_segment: 0,
        sent: 0,
        segment_crc: CRC64.digest(),
        message_crc: CRC64.digest(),
        finished: false,
    };
    Ok(futures_util::stream::unfold((encoder, content), |(mut encoder, mut content)| async move {
        use futures_util::StreamExt;
        if encoder.finished {
            return None;
        }
        let item = match content.next().await {
            Some(Ok(piece)) => Ok(encoder.frame(piece)),
            Some(Err(e)) => Err(e),
            None => Ok(encoder.close()),
        };
        Some((item, (encoder, content)))
    }))
}

struct Encoder {
    content_len: u64,
    segments: u16,
    segment: u16,
    left_in_segment: u64,
    sent: u64,
    segment_crc: Digest,
    message_crc: Digest,
    finished: bool,
}

impl Encoder {
    fn start_segment(&mut self, out: &mut BytesMut) {
        self.segment += 1;
        self.left_in_segment = SEGMENT_SIZE.min(self.content_len - self.sent);
        out.put_u16_le(self.segment);
        out.put_u64_le(self.left_in_segment);
    }

    fn end_segment(&mut self, out: &mut BytesMut) {
        out.put_u64_le(std::mem::replace(&mut self.segment_crc, CRC64.digest()).finalize());
    }

    /// The message header and the first segment's header, before anything else is sent.
    fn header(&mut self, out: &mut BytesMut) {
        if self.segment == 0 {
            out.put_u8(VERSION);
            out.put_u64_le(encoded_len(self.content_len));
            out.put_u16_le(FLAG_CRC64);
            out.put_u16_le(self.segments);
            self.start_segment(out);
        }
    }

    /// A content piece with the framing that precedes and follows it.
    fn frame(&mut self, mut piece: Bytes) -> Bytes {
        let mut out = BytesMut::with_capacity(piece.len() + 2 * (SEGMENT_HEADER_LEN + CRC_LEN) + MESSAGE_HEADER_LEN);
        self.header(&mut out);
        while !piece.is_empty() {
            if self.left_in_segment == 0 {
                self.end_segment(&mut out);
                self.start_segment(&mut out);
            }
            let take = (self.left_in_segment.min(piece.len() as u64)) as usize;
            let part = piece.split_to(take);
            self.segment_crc.update(&part);
            self.message_crc.update(&part);
            self.left_in_segment -= take as u64;
            self.sent += take as u64;
            out.extend_from_slice(&part);
        }
        out.freeze()
    }

    /// The last segment's CRC and the message CRC.
    fn close(&mut self) -> Bytes {
        let mut out = BytesMut::with_capacity(MESSAGE_HEADER_LEN + SEGMENT_HEADER_LEN + 2 * CRC_LEN);
        self.header(&mut out);
        self.end_segment(&mut out);
        out.put_u64_le(std::mem::replace(&mut self.message_crc, CRC64.digest()).finalize());
        self.finished = true;
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn encoded(content: &[u8], pieces: usize) -> Vec<u8> {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            content.chunks(content.len().div_ceil(pieces).max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let stream =
            encode(content.len() as u64, futures_util::stream::iter(chunks)).unwrap_or_else(|e| panic!("{e:?}"));
        let parts: Vec<Bytes> = stream.map(|r| r.unwrap_or_default()).collect().await;
        parts.concat()
    }

    fn decode_in(message: &[u8], content_len: u64, split: usize) -> Result<Vec<u8>, ApiError> {
        let mut decoder = Decoder::new(message.len() as u64, content_len);
        let mut out = Vec::new();
        for frame in message.chunks(split.max(1)) {
            for piece in decoder.feed(frame)? {
                out.extend_from_slice(piece);
            }
        }
        decoder.finish()?;
        Ok(out)
    }

    #[tokio::test]
    async fn messages_round_trip_whatever_the_framing() {
        for size in [0usize, 1, 1000, SEGMENT_SIZE as usize, SEGMENT_SIZE as usize + 3] {
            let content: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let message = encoded(&content, 3).await;
            assert_eq!(message.len() as u64, encoded_len(size as u64), "size {size}");
            for split in [1usize, 7, 4096, message.len()] {
                if size > 1000 && split < 4096 {
                    continue;
                }
                assert_eq!(
                    decode_in(&message, size as u64, split).ok(),
                    Some(content.clone()),
                    "size {size}, frames of {split}"
                );
            }
        }
    }

    #[tokio::test]
    async fn damage_is_refused_with_azures_codes() {
        let content = b"structured content".to_vec();
        let message = encoded(&content, 2).await;
        let code = |m: &[u8], len: u64| decode_in(m, len, 5).err().map(|e| e.code);
        let mut flipped = message.clone();
        flipped[MESSAGE_HEADER_LEN + SEGMENT_HEADER_LEN + 2] ^= 1;
        assert_eq!(code(&flipped, content.len() as u64), Some("Crc64Mismatch".into()));
        let mut bad_crc = message.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert_eq!(code(&bad_crc, content.len() as u64), Some("Crc64Mismatch".into()));
        let mut version = message.clone();
        version[0] = 2;
        assert_eq!(code(&version, content.len() as u64), Some("InvalidInput".into()));
        assert_eq!(code(&message[..message.len() - 3], content.len() as u64), Some("InvalidInput".into()));
        assert_eq!(code(&message, content.len() as u64 + 1), Some("InvalidInput".into()));
        let mut segment_number = message.clone();
        segment_number[MESSAGE_HEADER_LEN] = 2;
        assert_eq!(code(&segment_number, content.len() as u64), Some("InvalidInput".into()));
    }
}
