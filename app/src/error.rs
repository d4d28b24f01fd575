//! The HTTP error enum and its one mapping to status codes and bodies.
//!
//! Every error a client can see is an [`ApiError`]. Its body is
//! `application/problem+json` (RFC 9457 `type`, `title`, `status`, `detail`)
//! plus `success: false`, `error` (a human message) and `code` (stable, for
//! machines). Causes of 5xx errors are logged here and never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::deps::DependencyError;
use crate::domain::{BookingDate, FieldError, ResourceId};
use crate::response::{StoredResponse, PROBLEM_JSON};

/// Stable machine-readable error codes. The set is part of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationFailed,
    IdempotencyKeyInvalid,
    IdempotencyInProgress,
    ResourceLocked,
    AlreadyBooked,
    IdempotencyKeyReused,
    UnknownResource,
    NotFound,
    PayloadTooLarge,
    DependencyUnavailable,
    Internal,
    Unauthenticated,
    Forbidden,
    MethodNotAllowed,
    RequestTimeout,
    RateLimited,
    QuotaExceeded,
    UriTooLong,
    HeadersTooLarge,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 19] = [
        Self::ValidationFailed,
        Self::IdempotencyKeyInvalid,
        Self::IdempotencyInProgress,
        Self::ResourceLocked,
        Self::AlreadyBooked,
        Self::IdempotencyKeyReused,
        Self::UnknownResource,
        Self::NotFound,
        Self::PayloadTooLarge,
        Self::DependencyUnavailable,
        Self::Internal,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::RateLimited,
        Self::QuotaExceeded,
        Self::UriTooLong,
        Self::HeadersTooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::IdempotencyKeyInvalid => "IDEMPOTENCY_KEY_INVALID",
            Self::IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
            Self::ResourceLocked => "RESOURCE_LOCKED",
            Self::AlreadyBooked => "ALREADY_BOOKED",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::UnknownResource => "UNKNOWN_RESOURCE",
            Self::NotFound => "NOT_FOUND",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::DependencyUnavailable => "DEPENDENCY_UNAVAILABLE",
            Self::Internal => "INTERNAL",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::RateLimited => "RATE_LIMITED",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::UriTooLong => "URI_TOO_LONG",
            Self::HeadersTooLarge => "HEADERS_TOO_LARGE",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::ValidationFailed | Self::IdempotencyKeyInvalid => StatusCode::BAD_REQUEST,
            Self::IdempotencyInProgress | Self::ResourceLocked | Self::AlreadyBooked => {
                StatusCode::CONFLICT
            }
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnknownResource | Self::NotFound => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::DependencyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited | Self::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::ValidationFailed => "Validation failed",
            Self::IdempotencyKeyInvalid => "Invalid idempotency key",
            Self::IdempotencyInProgress => "Request with this idempotency key is in progress",
            Self::ResourceLocked => "Resource is locked",
            Self::AlreadyBooked => "Already booked",
            Self::IdempotencyKeyReused => "Idempotency key reused with a different payload",
            Self::UnknownResource => "Unknown resource",
            Self::NotFound => "Not found",
            Self::PayloadTooLarge => "Payload too large",
            Self::DependencyUnavailable => "Dependency unavailable",
            Self::Internal => "Internal error",
            Self::Unauthenticated => "Authentication required",
            Self::Forbidden => "Forbidden",
            Self::MethodNotAllowed => "Method not allowed",
            Self::RequestTimeout => "Request body too slow",
            Self::RateLimited => "Too many requests",
            Self::QuotaExceeded => "Too many live idempotency keys",
            Self::UriTooLong => "URI too long",
            Self::HeadersTooLarge => "Request headers too large",
        }
    }

    /// Seconds a client should wait before retrying, for retryable codes
    /// (the 429s send their own wait, at least this).
    pub fn retry_after(self) -> Option<u64> {
        match self {
            Self::IdempotencyInProgress | Self::ResourceLocked => Some(1),
            Self::RateLimited | Self::QuotaExceeded => Some(1),
            Self::DependencyUnavailable => Some(2),
            _ => None,
        }
    }

    /// The problem `type` URI reference: `/problems/already-booked` (the
    /// code in kebab case; static, since every error response and every
    /// create, which renders its refusal in advance, needs one).
    pub fn type_uri(self) -> &'static str {
        match self {
            Self::ValidationFailed => "/problems/validation-failed",
            Self::IdempotencyKeyInvalid => "/problems/idempotency-key-invalid",
            Self::IdempotencyInProgress => "/problems/idempotency-in-progress",
            Self::ResourceLocked => "/problems/resource-locked",
            Self::AlreadyBooked => "/problems/already-booked",
            Self::IdempotencyKeyReused => "/problems/idempotency-key-reused",
            Self::UnknownResource => "/problems/unknown-resource",
            Self::NotFound => "/problems/not-found",
            Self::PayloadTooLarge => "/problems/payload-too-large",
            Self::DependencyUnavailable => "/problems/dependency-unavailable",
            Self::Internal => "/problems/internal",
            Self::Unauthenticated => "/problems/unauthenticated",
            Self::Forbidden => "/problems/forbidden",
            Self::MethodNotAllowed => "/problems/method-not-allowed",
            Self::RequestTimeout => "/problems/request-timeout",
            Self::RateLimited => "/problems/rate-limited",
            Self::QuotaExceeded => "/problems/quota-exceeded",
            Self::UriTooLong => "/problems/uri-too-long",
            Self::HeadersTooLarge => "/problems/headers-too-large",
        }
    }
}

/// Everything that can go wrong in a request, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request validation failed: {}", describe_fields(.0))]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    IdempotencyKeyInvalid(String),
    #[error("a request with this idempotency key is still in progress")]
    IdempotencyInProgress,
    #[error("{resource} on {date} is being booked by another request")]
    ResourceLocked {
        resource: ResourceId,
        date: BookingDate,
    },
    #[error("{resource} is already booked on {date}")]
    AlreadyBooked {
        resource: ResourceId,
        date: BookingDate,
    },
    #[error("this idempotency key was already used with a different payload")]
    IdempotencyKeyReused,
    #[error("unknown resource {0}")]
    UnknownResource(ResourceId),
    #[error("booking not found")]
    NotFound,
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Dependency(#[from] DependencyError),
    #[error("request timed out")]
    Timeout,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Unauthenticated(#[from] crate::auth::AuthError),
    #[error("the request names a user other than the authenticated one")]
    Forbidden,
    #[error("this path does not accept this method (see Allow)")]
    MethodNotAllowed,
    #[error("the request body did not arrive within {0:?}")]
    BodyTooSlow(std::time::Duration),
    #[error("too many requests from this client; retry after {} s", whole_seconds(*.0))]
    RateLimited(std::time::Duration),
    #[error(
        "this user holds {quota} live idempotency keys, the most allowed; \
         the oldest expires in {} s",
        whole_seconds(*.retry_after)
    )]
    QuotaExceeded {
        quota: u32,
        retry_after: std::time::Duration,
    },
    #[error("the request target is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("the request has more than {count} headers or more than {bytes} bytes of them")]
    HeadersTooLarge { count: usize, bytes: usize },
}

/// A wait as the whole seconds of `Retry-After`, rounded up, at least 1.
fn whole_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

impl From<crate::auth::Forbidden> for ApiError {
    fn from(_: crate::auth::Forbidden) -> Self {
        Self::Forbidden
    }
}

fn describe_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The problem document sent for every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub success: bool,
    pub error: String,
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Validation(_) => ErrorCode::ValidationFailed,
            Self::IdempotencyKeyInvalid(_) => ErrorCode::IdempotencyKeyInvalid,
            Self::IdempotencyInProgress => ErrorCode::IdempotencyInProgress,
            Self::ResourceLocked { .. } => ErrorCode::ResourceLocked,
            Self::AlreadyBooked { .. } => ErrorCode::AlreadyBooked,
            Self::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            Self::UnknownResource(_) => ErrorCode::UnknownResource,
            Self::NotFound => ErrorCode::NotFound,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::Dependency(e) if e.is_transient() => ErrorCode::DependencyUnavailable,
            Self::Timeout => ErrorCode::DependencyUnavailable,
            Self::Dependency(_) | Self::Internal(_) => ErrorCode::Internal,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::Forbidden => ErrorCode::Forbidden,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::BodyTooSlow(_) => ErrorCode::RequestTimeout,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Self::UriTooLong(_) => ErrorCode::UriTooLong,
            Self::HeadersTooLarge { .. } => ErrorCode::HeadersTooLarge,
        }
    }

    /// Seconds for `Retry-After`: the error's own wait, else its code's.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(wait)
            | Self::QuotaExceeded {
                retry_after: wait, ..
            } => Some(whole_seconds(*wait)),
            _ => self.code().retry_after(),
        }
    }

    /// The message a client may see. Causes of 5xx errors are not included.
    fn public_detail(&self) -> String {
        match self {
            Self::Dependency(e) if e.is_transient() => {
                format!("{} is temporarily unavailable, retry later", e.dependency())
            }
            Self::Timeout => "the request did not complete in time, retry later".into(),
            Self::Dependency(_) | Self::Internal(_) => "an internal error occurred".into(),
            other => other.to_string(),
        }
    }

    pub fn problem(&self) -> Problem {
        let code = self.code();
        let detail = self.public_detail();
        Problem {
            type_uri: code.type_uri(),
            title: code.title(),
            status: code.status().as_u16(),
            error: detail.clone(),
            detail,
            success: false,
            code,
            errors: match self {
                Self::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
        }
    }

    /// The error rendered as a response that can be stored and replayed.
    pub fn to_stored(&self) -> StoredResponse {
        let body = serde_json::to_string(&self.problem())
            .unwrap_or_else(|_| String::from(r#"{"success":false,"code":"INTERNAL"}"#));
        StoredResponse::new(self.code().status(), body)
    }
}

/// An error injected by a failpoint looks like a lost dependency.
impl From<crate::failpoints::Injected> for ApiError {
    fn from(e: crate::failpoints::Injected) -> Self {
        Self::Dependency(DependencyError::Unavailable {
            dependency: "failpoint",
            operation: e.0,
            source: Box::new(e),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if code.status().is_server_error() {
            tracing::error!(error = %self, code = code.as_str(), "request failed");
        }
        let retry_after = self.retry_after();
        let mut response = self.to_stored().into_http(false);
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if code == ErrorCode::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"booking\""),
            );
        }
        response.extensions_mut().insert(code);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_documented_status() {
        let expected = [
            ("VALIDATION_FAILED", 400),
            ("IDEMPOTENCY_KEY_INVALID", 400),
            ("IDEMPOTENCY_IN_PROGRESS", 409),
            ("RESOURCE_LOCKED", 409),
            ("ALREADY_BOOKED", 409),
            ("IDEMPOTENCY_KEY_REUSED", 422),
            ("UNKNOWN_RESOURCE", 404),
            ("NOT_FOUND", 404),
            ("PAYLOAD_TOO_LARGE", 413),
            ("DEPENDENCY_UNAVAILABLE", 503),
            ("INTERNAL", 500),
            ("UNAUTHENTICATED", 401),
            ("FORBIDDEN", 403),
            ("METHOD_NOT_ALLOWED", 405),
            ("REQUEST_TIMEOUT", 408),
            ("RATE_LIMITED", 429),
            ("QUOTA_EXCEEDED", 429),
            ("URI_TOO_LONG", 414),
            ("HEADERS_TOO_LARGE", 431),
        ];
        for (code, (name, status)) in ErrorCode::ALL.iter().zip(expected) {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.status().as_u16(), status, "{name}");
            let json = serde_json::to_value(code).expect("serialize");
            assert_eq!(json, name);
        }
    }

    #[test]
    fn only_the_retryable_codes_send_retry_after() {
        let retryable: Vec<_> = ErrorCode::ALL
            .iter()
            .filter(|c| c.retry_after().is_some())
            .map(|c| c.as_str())
            .collect();
        assert_eq!(
            retryable,
            [
                "IDEMPOTENCY_IN_PROGRESS",
                "RESOURCE_LOCKED",
                "DEPENDENCY_UNAVAILABLE",
                "RATE_LIMITED",
                "QUOTA_EXCEEDED"
            ]
        );
    }

    #[test]
    fn a_429_waits_its_own_time_in_whole_seconds() {
        let wait = std::time::Duration::from_millis(2_100);
        assert_eq!(ApiError::RateLimited(wait).retry_after(), Some(3));
        let quota = ApiError::QuotaExceeded {
            quota: 5,
            retry_after: std::time::Duration::from_millis(10),
        };
        assert_eq!(quota.retry_after(), Some(1));
        let response = ApiError::RateLimited(wait).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }

    #[test]
    fn every_type_uri_is_its_code_in_kebab_case() {
        for code in ErrorCode::ALL {
            let derived = format!(
                "/problems/{}",
                code.as_str().to_ascii_lowercase().replace('_', "-")
            );
            assert_eq!(code.type_uri(), derived, "{code:?}");
        }
    }

    #[test]
    fn dependency_failures_hide_their_cause() {
        let err = ApiError::Dependency(DependencyError::Unavailable {
            dependency: "postgres",
            operation: "book",
            source: "connection refused: secret host 10.0.0.1".into(),
        });
        let body = serde_json::to_string(&err.problem()).expect("serialize");
        assert!(body.contains("DEPENDENCY_UNAVAILABLE"));
        assert!(body.contains("postgres is temporarily unavailable"));
        assert!(!body.contains("10.0.0.1"), "{body}");

        let internal = ApiError::Dependency(DependencyError::Internal {
            dependency: "postgres",
            operation: "book",
            source: "syntax error at or near SELECT".into(),
        });
        assert_eq!(internal.code(), ErrorCode::Internal);
        let body = serde_json::to_string(&internal.problem()).expect("serialize");
        assert!(!body.contains("SELECT"), "{body}");
    }

    #[test]
    fn problems_carry_rfc9457_members_and_legacy_fields() {
        let err = ApiError::Validation(vec![FieldError::new("date", "bad")]);
        let v: serde_json::Value = serde_json::from_str(&err.to_stored().body).expect("json body");
        assert_eq!(v["type"], "/problems/validation-failed");
        assert_eq!(v["title"], "Validation failed");
        assert_eq!(v["status"], 400);
        assert_eq!(v["success"], false);
        assert_eq!(v["code"], "VALIDATION_FAILED");
        assert_eq!(v["error"], v["detail"]);
        assert_eq!(v["errors"][0]["field"], "date");
    }
}
