//! What an ARM operation answers, before it is HTTP: a status and an optional JSON body.
//!
//! Subscriptions, resource groups, RBAC and every [`Provider`](crate::Provider) return an
//! [`ArmReply`] (or a `Failure` carrying an `ApiError`); the router's one handler renders it, so no
//! domain code builds an `axum::Response` and a future non-HTTP caller (a CLI, a second front end)
//! gets the same typed answer.

use serde_json::Value;

/// A successful ARM answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmReply {
    /// 200, 201, 202 or 204.
    pub status: u16,
    /// The resource or list, absent for an answer without content.
    pub body: Option<Value>,
    /// Response headers beyond the content type (`x-byos-warning`, later an LRO's `Location`).
    pub headers: Vec<(&'static str, String)>,
}

impl ArmReply {
    /// A JSON answer with `status`.
    pub fn json(status: u16, body: Value) -> Self {
        ArmReply { status, body: Some(body), headers: Vec::new() }
    }

    /// `200 OK` with `body`.
    pub fn ok(body: Value) -> Self {
        Self::json(200, body)
    }

    /// An answer without content (`200` after a delete, `204` for nothing to delete).
    pub fn empty(status: u16) -> Self {
        ArmReply { status, body: None, headers: Vec::new() }
    }

    /// A list in ARM's shape, `{"value": [...]}`.
    pub fn list(value: Vec<Value>) -> Self {
        Self::ok(serde_json::json!({ "value": value }))
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The answer on the wire.
    pub(crate) fn render(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut response = match self.body {
            Some(body) => byos_http::json_response(self.status, &body),
            None => axum::http::StatusCode::from_u16(self.status).unwrap_or(axum::http::StatusCode::OK).into_response(),
        };
        for (name, value) in self.headers {
            match axum::http::HeaderValue::from_str(&value) {
                Ok(value) => {
                    response.headers_mut().insert(name, value);
                }
                Err(_) => tracing::warn!(header = name, "a response header is not valid on the wire; left out"),
            }
        }
        response
    }
}
