//! Who is calling the Blob service: Shared Key, a shared access signature, a bearer token, or
//! nobody. Signatures are verified here (they need the account's keys); what a verified caller may
//! do is decided by the door.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, Uri};
use base64::Engine;
use byos_core::{ApiError, Caller, NetworkOrigin, SignatureKind};
use byos_crypto::MacKey;
use percent_encoding::percent_decode_str;

use super::errors::{authentication_failed, err};
use crate::{Account, StorageService};

/// Token audiences the Blob service accepts.
const STORAGE_AUDIENCES: [&str; 2] = ["https://storage.azure.com", "https://storage.azure.com/"];

/// A verified SAS: what its fields say, for the operation-level permission mapping.
#[derive(Clone, Debug)]
pub struct Sas {
    pub kind: SignatureKind,
    /// `sp`, the permission letters.
    pub permissions: String,
    /// Account SAS: `srt` resource types (s, c, o). Service SAS: `sr` (c, b).
    pub resource: String,
    /// The container (and blob) the signature covers, for service and delegation SAS.
    pub path: Option<(String, Option<String>)>,
    /// A service SAS's stored access policy (`si`), with the signed start and expiry it may
    /// leave to that policy; resolved by [`super::sas::apply_stored_policy`].
    pub policy: Option<String>,
    pub start: String,
    pub expiry: String,
}

pub struct Authenticated {
    pub caller: Caller,
    pub sas: Option<Sas>,
}

/// The decoded query, names lowercased, repeated names kept in order.
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    let decode = |s: &str| percent_decode_str(&s.replace('+', "%20")).decode_utf8_lossy().into_owned();
                    (decode(k), decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Authenticates a request for `account`.
pub fn authenticate(
    service: &StorageService,
    account: &Account,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    origin: NetworkOrigin,
) -> Result<Authenticated, ApiError> {
    let query = query_pairs(uri);
    let authorization = headers.get("authorization").map(|v| v.to_str().unwrap_or_default().to_owned());
    if let Some(authorization) = authorization {
        let (scheme, rest) = authorization.split_once(' ').unwrap_or((authorization.as_str(), ""));
        return match scheme {
            s if s.eq_ignore_ascii_case("SharedKey") => {
                verify_shared_key(account, method, uri, headers, &query, rest)?;
                Ok(Authenticated { caller: Caller::shared_key(origin), sas: None })
            }
            s if s.eq_ignore_ascii_case("Bearer") => {
                let caller = service.directory.authenticate(rest.trim(), &STORAGE_AUDIENCES, origin).map_err(|e| {
                    err(401, "InvalidAuthenticationInfo", "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.")
                        .with_detail(e.to_string())
                        .with_header("x-byos-denial", format!("bearer token refused: {e}"))
                        .with_challenge(format!("Bearer authorization_uri={}/{}/oauth2/authorize resource_id=https://storage.azure.com", service.authority, service.directory.tenant_id()))
                })?;
                Ok(Authenticated { caller, sas: None })
            }
            _ => Err(err(400, "InvalidAuthenticationInfo", "Authentication information is not given in the correct format. Check the value of Authorization header.")
                .with_header("x-byos-denial", "unsupported Authorization scheme")),
        };
    }
    if query.iter().any(|(k, _)| k == "sig") {
        return super::sas::verify(service, account, uri, &query, origin);
    }
    Ok(Authenticated { caller: Caller::anonymous(origin), sas: None })
}

/// Checks a Shared Key signature against both account keys.
fn verify_shared_key(
    account: &Account,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    query: &[(String, String)],
    credential: &str,
) -> Result<(), ApiError> {
    let Some((name, signature)) = credential.trim().split_once(':') else {
        return Err(err(
            400,
            "InvalidAuthenticationInfo",
            "Authentication information is not given in the correct format. Check the value of Authorization header.",
        )
        .with_header("x-byos-denial", "malformed SharedKey credential"));
    };
    if name != account.name {
        return Err(authentication_failed(format!(
            "The account name '{name}' in the Authorization header does not match the account '{}'.",
            account.name
        )));
    }
    check_request_date(headers, time::OffsetDateTime::now_utc())?;
    let presented = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| authentication_failed("The signature is not valid base64."))?;
    let string_to_sign = shared_key_string(&account.name, method, uri, headers, query);
    for index in 0..2 {
        if let Some(key) = account.secrets.key_bytes(index)
            && MacKey::new(&key).verify(string_to_sign.as_bytes(), &presented)
        {
            return Ok(());
        }
    }
    Err(authentication_failed(format!(
        "The MAC signature found in the HTTP request '{signature}' is not the same as any computed signature. Server used following string to sign: '{}'.",
        string_to_sign.replace('\n', "\\n")
    )))
}

/// How far a Shared Key request's date may be from now, either way (Azure: 15 minutes).
const REQUEST_DATE_SKEW: time::Duration = time::Duration::minutes(15);

/// A Shared Key signature is bound to the request's date (`x-ms-date`, else `Date`), and Azure
/// refuses a date that is missing, unreadable or more than 15 minutes from now: without this a
/// captured request could be replayed forever, a PUT with another body of the same length.
fn check_request_date(headers: &HeaderMap, now: time::OffsetDateTime) -> Result<(), ApiError> {
    let sent = headers.get("x-ms-date").or_else(|| headers.get("date"));
    let Some(sent) = sent else {
        return Err(authentication_failed("Request date header not specified."));
    };
    let text = sent.to_str().unwrap_or_default();
    let Some(date) = super::xml::parse_http_date(text) else {
        return Err(authentication_failed("The Date header in the request is incorrect."));
    };
    if date < now - REQUEST_DATE_SKEW {
        return Err(authentication_failed(format!("Request date header too old: '{text}'")));
    }
    if date > now + REQUEST_DATE_SKEW {
        return Err(authentication_failed(format!("Request date header too far in the future: '{text}'")));
    }
    Ok(())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// The Shared Key string-to-sign (versions 2009-09-19 and later).
pub fn shared_key_string(
    account: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> String {
    let content_length = header(headers, "content-length");
    let date = if headers.contains_key("x-ms-date") { "" } else { header(headers, "date") };
    let mut out = String::with_capacity(256);
    for part in [
        method.as_str(),
        header(headers, "content-encoding"),
        header(headers, "content-language"),
        if content_length == "0" { "" } else { content_length },
        header(headers, "content-md5"),
        header(headers, "content-type"),
        date,
        header(headers, "if-modified-since"),
        header(headers, "if-match"),
        header(headers, "if-none-match"),
        header(headers, "if-unmodified-since"),
        header(headers, "range"),
    ] {
        out.push_str(part);
        out.push('\n');
    }
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-ms-"))
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().trim().to_owned()))
        .collect();
    ms.sort();
    for (k, v) in ms {
        out.push_str(&k);
        out.push(':');
        out.push_str(&v);
        out.push('\n');
    }
    out.push('/');
    out.push_str(account);
    out.push_str(uri.path());
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in query {
        params.entry(k.to_ascii_lowercase()).or_default().push(v.clone());
    }
    for (k, mut values) in params {
        values.sort();
        out.push('\n');
        out.push_str(&k);
        out.push(':');
        out.push_str(&values.join(","));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date_headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.insert(*k, v.parse().unwrap_or_else(|_| axum::http::HeaderValue::from_static("")));
        }
        headers
    }

    #[test]
    fn regression_f05_shared_key_request_date_is_required_and_fresh() {
        let now = super::super::xml::parse_http_date("Wed, 02 Dec 2026 12:00:00 GMT")
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let check =
            |pairs: &[(&'static str, &str)]| check_request_date(&date_headers(pairs), now).map_err(|e| e.detail);
        assert!(check(&[("x-ms-date", "Wed, 02 Dec 2026 12:14:59 GMT")]).is_ok());
        assert!(check(&[("date", "Wed, 02 Dec 2026 11:45:01 GMT")]).is_ok());
        // x-ms-date wins over Date, as in the string-to-sign.
        assert!(
            check(&[("x-ms-date", "Wed, 02 Dec 2026 12:00:00 GMT"), ("date", "Sat, 01 Jan 2000 00:00:00 GMT")]).is_ok()
        );
        let refused = [
            (vec![], "Request date header not specified."),
            (vec![("x-ms-date", "garbage")], "The Date header in the request is incorrect."),
            (vec![("x-ms-date", "2026-12-02T12:00:00Z")], "The Date header in the request is incorrect."),
            (
                vec![("x-ms-date", "Sat, 01 Jan 2000 00:00:00 GMT")],
                "Request date header too old: 'Sat, 01 Jan 2000 00:00:00 GMT'",
            ),
            (
                vec![("x-ms-date", "Wed, 02 Dec 2026 12:15:01 GMT")],
                "Request date header too far in the future: 'Wed, 02 Dec 2026 12:15:01 GMT'",
            ),
            (
                vec![("x-ms-date", "garbage"), ("date", "Wed, 02 Dec 2026 12:00:00 GMT")],
                "The Date header in the request is incorrect.",
            ),
        ];
        for (pairs, detail) in refused {
            assert_eq!(check(&pairs), Err(Some(detail.to_owned())), "{pairs:?}");
        }
    }

    #[test]
    fn shared_key_string_matches_the_documented_example() {
        // The example captured from azure-storage-blob in shared/reference/azure-clients.md.
        let uri: Uri = "https://127.0.0.1:1/myaccount/c1/big.bin?comp=blocklist".parse().unwrap_or_default();
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("content-length", "305"),
            ("content-type", "application/xml"),
            ("if-none-match", "*"),
            ("x-ms-client-request-id", "id"),
            ("x-ms-date", "d"),
            ("x-ms-version", "2026-10-06"),
        ] {
            headers.insert(k, v.parse().unwrap_or_else(|_| axum::http::HeaderValue::from_static("")));
        }
        let s = shared_key_string("myaccount", &Method::PUT, &uri, &headers, &query_pairs(&uri));
        assert_eq!(
            s,
            "PUT\n\n\n305\n\napplication/xml\n\n\n\n*\n\n\nx-ms-client-request-id:id\nx-ms-date:d\nx-ms-version:2026-10-06\n/myaccount/myaccount/c1/big.bin\ncomp:blocklist"
        );
    }
}
