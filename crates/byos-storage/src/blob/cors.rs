//! CORS for the Blob service: rules from `blobServices/default`, preflight and actual requests.
//! Origins are compared exactly (a trailing slash does not match), as Azure does.

use axum::http::{HeaderMap, HeaderValue};
use byos_core::ApiError;
use byos_core::OrInternal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::err;

pub const MAX_RULES: usize = 5;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CorsRule {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub max_age_in_seconds: u32,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    rules: Vec<CorsRule>,
}

pub fn encode_rules(rules: &[CorsRule]) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&Stored { v: 1, rules: rules.to_vec() }).or_internal()
}

pub fn decode_rules(bytes: &[u8]) -> Result<Vec<CorsRule>, ApiError> {
    serde_json::from_slice::<Stored>(bytes).map(|s| s.rules).or_internal()
}

/// Validates `properties.cors` of a blob service PUT (ARM shape).
pub fn rules_from_arm(cors: Option<&Value>) -> Result<Vec<CorsRule>, ApiError> {
    let Some(rules) = cors.and_then(|c| c.get("corsRules")).filter(|r| !r.is_null()) else {
        return Ok(Vec::new());
    };
    let rules: Vec<CorsRule> = serde_json::from_value(rules.clone()).map_err(|e| {
        ApiError::bad_request("InvalidRequestPropertyValue", format!("The CORS rules are invalid: {e}."))
    })?;
    if rules.len() > MAX_RULES {
        return Err(ApiError::bad_request("InvalidCorsRules", format!("At most {MAX_RULES} CORS rules are allowed.")));
    }
    const METHODS: [&str; 9] = ["DELETE", "GET", "HEAD", "MERGE", "POST", "OPTIONS", "PUT", "PATCH", "CONNECT"];
    for rule in &rules {
        if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
            return Err(ApiError::bad_request(
                "InvalidCorsRules",
                "Every CORS rule needs allowed origins and methods.",
            ));
        }
        if let Some(m) = rule.allowed_methods.iter().find(|m| !METHODS.contains(&m.to_ascii_uppercase().as_str())) {
            return Err(ApiError::bad_request("InvalidCorsRules", format!("'{m}' is not an allowed CORS method.")));
        }
    }
    Ok(rules)
}

pub fn rules_to_arm(rules: &[CorsRule]) -> Value {
    serde_json::to_value(rules).unwrap_or(Value::Array(vec![]))
}

fn origin_matches(rule: &CorsRule, origin: &str) -> bool {
    rule.allowed_origins.iter().any(|o| o == "*" || o == origin)
}

fn method_matches(rule: &CorsRule, method: &str) -> bool {
    rule.allowed_methods.iter().any(|m| m.eq_ignore_ascii_case(method))
}

/// `*` or a trailing-`*` prefix, case-insensitive.
fn header_allowed(patterns: &[String], header: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p.strip_suffix('*').map_or(p.eq_ignore_ascii_case(header), |prefix| {
                header.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase())
            })
    })
}

/// Answers an `OPTIONS` preflight: the headers to send, or Azure's error.
pub fn preflight(rules: &[CorsRule], headers: &HeaderMap) -> Result<Vec<(&'static str, String)>, ApiError> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (Some(origin), Some(method)) = (text("origin"), text("access-control-request-method")) else {
        return Err(err(400, "CorsPreflightFailure", "CORS not enabled or no matching rule found for this request.")
            .with_header("x-byos-denial", "cors: preflight needs Origin and Access-Control-Request-Method"));
    };
    let requested: Vec<String> = text("access-control-request-headers")
        .map(|h| h.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let rule = rules.iter().find(|r| origin_matches(r, &origin) && method_matches(r, &method));
    let Some(rule) = rule.filter(|r| requested.iter().all(|h| header_allowed(&r.allowed_headers, h))) else {
        return Err(err(403, "CorsPreflightFailure", "CORS not enabled or no matching rule found for this request.")
            .with_header(
                "x-byos-denial",
                super::errors::header_safe(&format!("cors: no rule allows origin '{origin}' with method {method}")),
            ));
    };
    let mut out = vec![
        ("access-control-allow-origin", allowed_origin_value(rule, &origin)),
        ("access-control-allow-methods", rule.allowed_methods.join(",")),
        ("access-control-max-age", rule.max_age_in_seconds.to_string()),
        ("access-control-allow-credentials", "true".to_owned()),
    ];
    if !requested.is_empty() {
        out.push(("access-control-allow-headers", requested.join(",")));
    }
    Ok(out)
}

fn allowed_origin_value(rule: &CorsRule, origin: &str) -> String {
    if rule.allowed_origins.iter().any(|o| o == "*") { "*".to_owned() } else { origin.to_owned() }
}

/// Adds CORS headers to an actual (non-preflight) response when a rule matches its origin.
pub fn decorate(rules: &[CorsRule], origin: Option<&str>, method: &str, response: &mut HeaderMap) {
    let Some(origin) = origin else { return };
    let Some(rule) = rules.iter().find(|r| origin_matches(r, origin) && method_matches(r, method)) else { return };
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.insert(name, v);
        }
    };
    put("access-control-allow-origin", allowed_origin_value(rule, origin));
    put("access-control-expose-headers", rule.exposed_headers.join(","));
    put("access-control-allow-credentials", "true".to_owned());
    put("vary", "Origin".to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CorsRule {
        CorsRule {
            allowed_origins: vec!["https://studio.example".into()],
            allowed_methods: vec!["GET".into(), "OPTIONS".into()],
            allowed_headers: vec!["x-ms-*".into()],
            exposed_headers: vec!["*".into()],
            max_age_in_seconds: 1000,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(*k, v);
            }
        }
        h
    }

    #[test]
    fn preflight_matrix() {
        let rules = [rule()];
        let ok = preflight(
            &rules,
            &headers(&[
                ("origin", "https://studio.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-ms-version"),
            ]),
        );
        assert!(ok.is_ok_and(|h| h.contains(&("access-control-max-age", "1000".into()))));
        let slash = preflight(
            &rules,
            &headers(&[("origin", "https://studio.example/"), ("access-control-request-method", "GET")]),
        );
        assert_eq!(slash.err().map(|e| (e.status, e.code)), Some((403, "CorsPreflightFailure".into())));
        let method = preflight(
            &rules,
            &headers(&[("origin", "https://studio.example"), ("access-control-request-method", "PUT")]),
        );
        assert_eq!(method.err().map(|e| e.status), Some(403));
        let header = preflight(
            &rules,
            &headers(&[
                ("origin", "https://studio.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ]),
        );
        assert_eq!(header.err().map(|e| e.status), Some(403));
        let missing = preflight(&rules, &headers(&[("origin", "https://studio.example")]));
        assert_eq!(missing.err().map(|e| e.status), Some(400));
    }
}
