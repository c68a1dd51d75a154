//! Wire helpers of the Blob service: HTTP dates, `x-ms-meta-*` headers, conditional headers,
//! and the few XML bodies it reads and writes (block lists, key info, stored access policies).

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use byos_core::ApiError;
use quick_xml::Reader;
use quick_xml::events::Event;
use time::OffsetDateTime;
use time::macros::format_description;

use super::data::StoredPolicy;
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
        let valid = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(bad_request(
                "InvalidMetadata",
                format!("The metadata name '{key}' is not a valid C# identifier."),
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| bad_request("InvalidMetadata", format!("The value of metadata '{key}' is not ASCII.")))?;
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

/// A request's preconditions (`If-Match`, `If-None-Match`, `If-Modified-Since`,
/// `If-Unmodified-Since`), parsed once by the HTTP layer; domain code checks them against the
/// current version without seeing headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_unmodified_since: Option<String>,
}

impl Conditions {
    pub fn from_headers(headers: &HeaderMap) -> Conditions {
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Conditions {
            if_match: get("if-match"),
            if_none_match: get("if-none-match"),
            if_modified_since: get("if-modified-since"),
            if_unmodified_since: get("if-unmodified-since"),
        }
    }

    /// Whether any condition is set.
    pub fn is_set(&self) -> bool {
        *self != Conditions::default()
    }

    /// Checks the conditions against the current version (`None`: there is none).
    pub fn check(&self, current: Option<Current<'_>>, access: Access) -> Result<(), ApiError> {
        let not_modified =
            || err(304, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met.");
        if let Some(wanted) = &self.if_match {
            match &current {
                Some(c) if etag_matches(wanted, c.etag) => {}
                _ => return Err(condition_not_met()),
            }
        }
        if let Some(unwanted) = &self.if_none_match
            && let Some(c) = &current
            && etag_matches(unwanted, c.etag)
        {
            return Err(match (access, unwanted.trim()) {
                (Access::Read, _) => not_modified(),
                (Access::Write, "*") => err(409, "BlobAlreadyExists", "The specified blob already exists."),
                (Access::Write, _) => condition_not_met(),
            });
        }
        let modified_after = |text: &str, c: &Current<'_>| {
            parse_http_date(text).map(|since| c.last_modified_nanos / 1_000_000_000 > since.unix_timestamp())
        };
        if let (Some(since), Some(c)) = (&self.if_modified_since, &current)
            && modified_after(since, c) == Some(false)
        {
            return Err(if access == Access::Read { not_modified() } else { condition_not_met() });
        }
        if let (Some(since), Some(c)) = (&self.if_unmodified_since, &current)
            && modified_after(since, c) == Some(true)
        {
            return Err(condition_not_met());
        }
        Ok(())
    }
}

/// Applies the request's preconditions (see [`Conditions`]).
pub fn check_conditions(headers: &HeaderMap, current: Option<Current<'_>>, access: Access) -> Result<(), ApiError> {
    Conditions::from_headers(headers).check(current, access)
}

fn invalid_xml() -> ApiError {
    bad_request("InvalidXmlDocument", "XML specified is not syntactically valid.")
}

/// The text an entity or character reference (`&amp;`, `&#65;`) stands for.
fn reference_text(reference: &quick_xml::events::BytesRef<'_>) -> Result<String, ApiError> {
    if let Some(c) = reference.resolve_char_ref().map_err(|_| invalid_xml())? {
        return Ok(c.to_string());
    }
    let name = reference.decode().map_err(|_| invalid_xml())?;
    quick_xml::escape::resolve_predefined_entity(&name).map(str::to_owned).ok_or_else(invalid_xml)
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
            Event::GeneralRef(r) if depth == 2 => text.push_str(&reference_text(&r)?),
            Event::End(_) => {
                if depth == 2
                    && let Some(name) = current.take()
                {
                    out.push((name, text.trim().to_owned()));
                }
                depth -= 1;
            }
            Event::Empty(e) if depth == 1 => {
                out.push((String::from_utf8_lossy(e.local_name().as_ref()).into_owned(), String::new()))
            }
            Event::Empty(e) if depth == 0 && String::from_utf8_lossy(e.local_name().as_ref()) == root => {
                saw_root = true
            }
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
    let expiry =
        get("Expiry").ok_or_else(|| bad_request("InvalidXmlNodeValue", "The value for the Expiry node is missing."))?;
    Ok((get("Start").filter(|s| !s.is_empty()), expiry))
}

/// The most stored access policies a container may hold.
const MAX_POLICIES: usize = 5;
const POLICY_TIME: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z");

/// An ISO 8601 / RFC 3339 time as SAS fields and access policies carry it (a missing zone is UTC).
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339).ok())
}

/// A policy time in the form Azure returns it (`2026-12-01T08:00:00.0000000Z`).
fn policy_time(text: &str) -> Result<String, ApiError> {
    parse_time(text).and_then(|t| t.to_offset(time::UtcOffset::UTC).format(POLICY_TIME).ok()).ok_or_else(|| {
        bad_request(
            "InvalidXmlNodeValue",
            format!("The value '{text}' of an access policy time is not a valid ISO 8601 time."),
        )
    })
}

/// Parses a Set Container ACL body: at most five `<SignedIdentifier>`s, each a unique `<Id>` of at
/// most 64 characters and an optional `<AccessPolicy>` (Start, Expiry, Permission). Empty: none.
pub fn parse_signed_identifiers(body: &[u8]) -> Result<Vec<StoredPolicy>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut policies: Vec<StoredPolicy> = Vec::new();
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|_| invalid_xml())?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                enter_policy_element(&path, &mut policies, &name)?;
                path.push(name);
            }
            Event::Empty(e) => {
                enter_policy_element(&path, &mut policies, &String::from_utf8_lossy(e.local_name().as_ref()))?
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|_| invalid_xml())?),
            Event::GeneralRef(r) => text.push_str(&reference_text(&r)?),
            Event::End(_) => {
                let leaf = path.pop();
                let value = std::mem::take(&mut text).trim().to_owned();
                let policy = policies.last_mut();
                match (leaf.as_deref(), policy) {
                    (Some("Id"), Some(policy)) => policy.id = value,
                    (Some("Start"), Some(policy)) => policy.start = Some(policy_time(&value)?),
                    (Some("Expiry"), Some(policy)) => policy.expiry = Some(policy_time(&value)?),
                    (Some("Permission"), Some(policy)) => policy.permission = Some(value),
                    _ if value.is_empty() => {}
                    _ => return Err(invalid_xml()),
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !path.is_empty() {
        return Err(invalid_xml());
    }
    check_policies(&policies)?;
    Ok(policies)
}

/// Checks that `name` may open at `path` of a `<SignedIdentifiers>` body; a new
/// `<SignedIdentifier>` starts a policy.
fn enter_policy_element(path: &[String], policies: &mut Vec<StoredPolicy>, name: &str) -> Result<(), ApiError> {
    let expected = match path.len() {
        0 => name == "SignedIdentifiers",
        1 => name == "SignedIdentifier",
        2 => name == "Id" || name == "AccessPolicy",
        3 => path[2] == "AccessPolicy" && matches!(name, "Start" | "Expiry" | "Permission"),
        _ => false,
    };
    if !expected {
        return Err(invalid_xml());
    }
    if path.len() == 1 {
        policies.push(Default::default());
    }
    Ok(())
}

fn check_policies(policies: &[StoredPolicy]) -> Result<(), ApiError> {
    if policies.len() > MAX_POLICIES {
        return Err(
            invalid_xml().with_detail(format!("A container holds at most {MAX_POLICIES} stored access policies."))
        );
    }
    for (i, policy) in policies.iter().enumerate() {
        if policy.id.is_empty() || policy.id.chars().count() > 64 {
            return Err(invalid_xml().with_detail("A signed identifier must have an Id of 1 to 64 characters."));
        }
        if policies[..i].iter().any(|p| p.id == policy.id) {
            return Err(
                invalid_xml().with_detail(format!("The signed identifier '{}' appears more than once.", policy.id))
            );
        }
        if policy.permission.as_deref().is_some_and(|p| !p.chars().all(|c| "racwdxyltmeopi".contains(c))) {
            return Err(bad_request(
                "InvalidXmlNodeValue",
                format!("The permission of the signed identifier '{}' is not valid.", policy.id),
            ));
        }
    }
    Ok(())
}

/// The Get Container ACL body.
pub fn signed_identifiers_xml(policies: &[StoredPolicy]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><SignedIdentifiers>");
    for policy in policies {
        out.push_str(&format!("<SignedIdentifier><Id>{}</Id><AccessPolicy>", escape(&policy.id)));
        for (name, value) in [("Start", &policy.start), ("Expiry", &policy.expiry), ("Permission", &policy.permission)]
        {
            if let Some(value) = value {
                out.push_str(&format!("<{name}>{}</{name}>", escape(value)));
            }
        }
        out.push_str("</AccessPolicy></SignedIdentifier>");
    }
    out.push_str("</SignedIdentifiers>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_lists() {
        let body = b"<?xml version='1.0' encoding='utf-8'?>\n<BlockList><Latest>QUE=</Latest><Committed>QkI=</Committed><Uncommitted>Q0M=</Uncommitted></BlockList>";
        let parsed = parse_block_list(body).unwrap_or_default();
        assert_eq!(
            parsed,
            vec![
                (BlockSource::Latest, "QUE=".into()),
                (BlockSource::Committed, "QkI=".into()),
                (BlockSource::Uncommitted, "Q0M=".into())
            ]
        );
        assert_eq!(
            parse_block_list(b"<BlockList><Latest>x</BlockList>").err().map(|e| e.code),
            Some("InvalidXmlDocument".into())
        );
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
        assert_eq!(
            check_conditions(&m, Some(Current { etag: "\"0x1\"", last_modified_nanos: 0 }), Access::Write)
                .err()
                .map(|e| e.status),
            Some(412)
        );
        assert_eq!(check_conditions(&m, None, Access::Read).err().map(|e| e.status), Some(412));
    }

    #[test]
    fn signed_identifiers_round_trip_in_azure_form() {
        let body = b"<?xml version=\"1.0\"?><SignedIdentifiers><SignedIdentifier><Id>p&amp;1</Id><AccessPolicy><Start>2026-12-01T08:00:00Z</Start><Permission>rl</Permission></AccessPolicy></SignedIdentifier><SignedIdentifier><Id>bare</Id></SignedIdentifier></SignedIdentifiers>";
        let policies = parse_signed_identifiers(body).unwrap_or_default();
        assert_eq!(policies.len(), 2);
        assert_eq!(
            (policies[0].id.as_str(), policies[0].start.as_deref(), policies[0].expiry.as_deref()),
            ("p&1", Some("2026-12-01T08:00:00.0000000Z"), None)
        );
        assert_eq!(policies[1].permission, None);
        let rendered = signed_identifiers_xml(&policies);
        assert_eq!(parse_signed_identifiers(rendered.as_bytes()).unwrap_or_default(), policies);
        for bad in [
            &b"<SignedIdentifiers><SignedIdentifier><Id/></SignedIdentifier></SignedIdentifiers>"[..],
            b"<Wrong/>",
            b"<SignedIdentifiers><SignedIdentifier><Start>x</Start></SignedIdentifier></SignedIdentifiers>",
        ] {
            assert_eq!(parse_signed_identifiers(bad).err().map(|e| e.code), Some("InvalidXmlDocument".into()));
        }
        assert_eq!(parse_signed_identifiers(b"  ").map(|p| p.len()).ok(), Some(0));
    }

    #[test]
    fn typed_conditions_need_no_headers() {
        assert!(!Conditions::default().is_set());
        let star = Conditions { if_none_match: Some("*".into()), ..Conditions::default() };
        assert!(star.is_set());
        let exists = Some(Current { etag: "\"0x1\"", last_modified_nanos: 0 });
        assert_eq!(star.check(exists, Access::Write).err().map(|e| e.status), Some(409));
        assert!(star.check(None, Access::Write).is_ok());
        let mut headers = HeaderMap::new();
        headers.insert("if-match", axum::http::HeaderValue::from_static("\"0x1\""));
        assert_eq!(Conditions::from_headers(&headers).if_match.as_deref(), Some("\"0x1\""));
    }
}
