//! A response as the idempotency layer remembers it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
pub const JSON: &str = "application/json";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The status and exact body bytes of a definitive booking outcome.
///
/// It is rendered once, stored in the same database transaction as the
/// booking and copied to Redis, and every replay sends these bytes again, so
/// all responses for one key are identical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

impl StoredResponse {
    pub fn new(status: StatusCode, body: String) -> Self {
        Self {
            status: status.as_u16(),
            body,
        }
    }

    fn content_type(&self) -> &'static str {
        if self.status >= 400 {
            PROBLEM_JSON
        } else {
            JSON
        }
    }

    /// The HTTP response; `replayed` adds `Idempotent-Replayed: true`.
    pub fn into_http(self, replayed: bool) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = self.content_type();
        let mut response = (status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if replayed {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}
