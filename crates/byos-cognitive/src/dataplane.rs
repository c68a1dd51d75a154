//! An account's data plane, served at its `properties.endpoint`.
//!
//! The APIs (Speech, Document Intelligence, the token service) arrive with their issues; until then
//! every request is answered as Azure answers a path an account does not serve.

use axum::Router;
use axum::response::Response;
use byos_core::ApiError;

/// The router of one account's listener.
pub fn router() -> Router {
    Router::new().fallback(not_served)
}

async fn not_served() -> Response {
    byos_http::render_error(&ApiError::not_found("404", "Resource not found"))
}
