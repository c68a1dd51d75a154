//! Wire helpers of the Blob service: HTTP dates, `x-ms-meta-*` headers, conditional headers,
//! and the few XML bodies it reads (block lists, key info, access policies).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use byos_core::ApiError;
use quick_xml::Reader;
use quick_xml::events::Event;
use time::OffsetDateTime;
use time::macros::format_description;

use super::errors::{bad_request, condition_not_met, err};

pub use byos_http::xml_escape as escape;

const HTTP_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(HTTP_DATE).unwrap_or_default()
}

pub fn http_date_nanos(nanos: i64) -> String {
    http_date(OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

pub fn parse_http_date(text: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(text.trim(), HTTP_DATE).ok().map(|t| t.assume_utc())
}

pub fn now_nanos() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

/// `x-ms-meta-{name}` headers; names must be C# identifiers, as Azure requires.
pub fn metadata_from_headers(headers: &HeaderMap) -> Result<BTreeMap<String, String>, ApiError> {
    let mut metadata = BTreeMap::new();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix("x-ms-meta-") else { continue };
        let valid = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(bad_request("InvalidMetadata", format!("The metadata name '{key}' is not a valid C# identifier.")));
        }
        let value = value.to_str().map_err(|_| bad_request("InvalidMetadata", format!("The value of metadata '{key}' is not ASCII.")))?;
        metadata.insert(key.to_owned(), value.to_owned());
    }
    Ok(metadata)
}

/// The state a conditional request is checked against: `None` when the resource does not exist.
pub struct Current<'a> {
    pub etag: &'a str,
    pub last_modified_nanos: i64,
}

/// Whether a request is a read (failed conditions answer 304) or a write (412 / 409).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.trim_matches('"') == etag.trim_matches('"'))
}

const CONDITIONAL_HEADERS: [&str; 4] = ["if-match", "if-none-match", "if-modified-since", "if-unmodified-since"];

/// Whether the request carries any condition.
pub fn is_conditional(headers: &HeaderMap) -> bool {
    CONDITIONAL_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// Applies `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`.
pub fn check_conditions(headers: &HeaderMap, current: Option<Current<'_>>, access: Access) -> Result<(), ApiError> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let not_modified = || err(304, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.");
    if let Some(wanted) = get("if-match") {
        match &current {
            Some(c) if etag_matches(wanted, c.etag) => {}
            _ => return Err(condition_not_met()),
        }
    }
    if let Some(unwanted) = get("if-none-match")
        && let Some(c) = &current
            && etag_matches(unwanted, c.etag) {
                return Err(match (access, unwanted.trim()) {
                    (Access::Read, _) => not_modified(),
                    (Access::Write, "*") => err(409, "BlobAlreadyExists", "The specified blob already exists."),
                    (Access::Write, _) => condition_not_met(),
                });
            }
    let modified_after = |text: &str, c: &Current<'_>| {
        parse_http_date(text).map(|since| c.last_modified_nanos / 1_000_000_000 > since.unix_timestamp())
    };
    if let (Some(since), Some(c)) = (get("if-modified-since"), &current)
        && modified_after(since, c) == Some(false) {
            return Err(if access == Access::Read { not_modified() } else { condition_not_met() });
        }
    if let (Some(since), Some(c)) = (get("if-unmodified-since"), &current)
        && modified_after(since, c) == Some(true) {
            return Err(condition_not_met());
        }
    Ok(())
}

fn invalid_xml() -> ApiError {
    bad_request("InvalidXmlDocument", "XML specified is not syntactically valid.")
}

/// Reads `<Root><Child>text</Child>...</Root>` into (child name, text) pairs, in order.
fn children(body: &[u8], root: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut depth = 0;
    let mut saw_root = false;
    let mut current: Option<String> = None;
    let mut text = String::new();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).map_err(|_| invalid_xml())? {
            Event::Start(e) => {
                depth += 1;
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match depth {
                    1 if name == root => saw_root = true,
                    1 => return Err(invalid_xml()),
                    2 => {
                        current = Some(name);
                        text.clear();
                    }
                    _ => {}
                }
            }
            Event::Text(t) if depth == 2 => text.push_str(&t.decode().map_err(|_| invalid_xml())?),
            Event::End(_) => {
                if depth == 2
                    && let Some(name) = current.take() {
                        out.push((name, text.trim().to_owned()));
                    }
                depth -= 1;
            }
            Event::Empty(e) if depth == 1 => out.push((String::from_utf8_lossy(e.local_name().as_ref()).into_owned(), String::new())),
            Event::Empty(e) if depth == 0 && String::from_utf8_lossy(e.local_name().as_ref()) == root => saw_root = true,
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_root || depth != 0 {
        return Err(invalid_xml());
    }
    Ok(out)
}

/// Which list a Put Block List entry names its block from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSource {
    Committed,
    Uncommitted,
    Latest,
}

pub fn parse_block_list(body: &[u8]) -> Result<Vec<(BlockSource, String)>, ApiError> {
    children(body, "BlockList")?
        .into_iter()
        .map(|(name, id)| {
            let source = match name.as_str() {
                "Committed" => BlockSource::Committed,
                "Uncommitted" => BlockSource::Uncommitted,
                "Latest" => BlockSource::Latest,
                _ => return Err(invalid_xml()),
            };
            Ok((source, id))
        })
        .collect()
}

/// `<KeyInfo><Start/><Expiry/></KeyInfo>` -> (start, expiry) texts.
pub fn parse_key_info(body: &[u8]) -> Result<(Option<String>, String), ApiError> {
    let fields = children(body, "KeyInfo")?;
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let expiry = get("Expiry").ok_or_else(|| bad_request("InvalidXmlNodeValue", "The value for the Expiry node is missing."))?;
    Ok((get("Start").filter(|s| !s.is_empty()), expiry))
}

/// Checks that a Set Container ACL body is well-formed `<SignedIdentifiers>` (or empty).
pub fn check_signed_identifiers(body: &[u8]) -> Result<usize, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(0);
    }
    Ok(children(body, "SignedIdentifiers")?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists() {
        let body = b"<?xml version='1.0' encoding='utf-8'?>\n<BlockList><Latest>QUE=</Latest><Committed>QkI=</Committed><Uncommitted>Q0M=</Uncommitted></BlockList>";
        let parsed = parse_block_list(body).unwrap_or_default();
        assert_eq!(parsed, vec![(BlockSource::Latest, "QUE=".into()), (BlockSource::Committed, "QkI=".into()), (BlockSource::Uncommitted, "Q0M=".into())]);
        assert_eq!(parse_block_list(b"<BlockList><Latest>x</BlockList>").err().map(|e| e.code), Some("InvalidXmlDocument".into()));
        assert!(parse_block_list(b"<Other/>").is_err());
        assert_eq!(parse_block_list(b"<BlockList/>").map(|v| v.len()).ok(), Some(0));
    }

    #[test]
    fn dates_round_trip() {
        let at = OffsetDateTime::from_unix_timestamp(784111777).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(http_date(at), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(at));
    }

    #[test]
    fn conditions() {
        let mut h = HeaderMap::new();
        h.insert("if-none-match", "*".parse().unwrap_or_else(|_| axum::http::HeaderValue::from_static("")));
        let exists = Some(Current { etag: "\"0x1\"", last_modified_nanos: 0 });
        assert_eq!(check_conditions(&h, exists, Access::Write).err().map(|e| e.status), Some(409));
        assert!(check_conditions(&h, None, Access::Write).is_ok());
        let mut m = HeaderMap::new();
        m.insert("if-match", "\"0x2\"".parse().unwrap_or_else(|_| axum::http::HeaderValue::from_static("")));
        assert_eq!(check_conditions(&m, Some(Current { etag: "\"0x1\"", last_modified_nanos: 0 }), Access::Write).err().map(|e| e.status), Some(412));
        assert_eq!(check_conditions(&m, None, Access::Read).err().map(|e| e.status), Some(412));
    }
}
