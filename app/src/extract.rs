//! Extractors whose rejections are [`ApiError`]s, so malformed input gets the
//! same problem+json body and stable code as any other error.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::domain::FieldError;
use crate::error::ApiError;
use crate::state::AppState;

/// JSON body; too large → `PAYLOAD_TOO_LARGE`, unparsable → `VALIDATION_FAILED`.
pub struct ApiJson<T>(pub T);

impl<T> FromRequest<AppState> for ApiJson<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // A body trickling in byte by byte gets as long as headers do:
        // `408`, not a request timeout that looks like a dependency failure.
        let deadline = state
            .settings
            .connections
            .header_read_timeout
            .min(state.settings.request_timeout / 2);
        if !plain_json_content_type(&req) {
            // `application/json; charset=utf-8`, `application/x+json`, or
            // no JSON at all: axum's extractor judges the type.
            let read = axum::Json::<serde_json::Value>::from_request(req, state);
            return match tokio::time::timeout(deadline, read).await {
                Err(_) => Err(ApiError::BodyTooSlow(deadline)),
                Ok(Ok(axum::Json(value))) => from_json_value(value),
                Ok(Err(rejection)) => Err(json_rejection(rejection, state.settings.body_limit)),
            };
        }
        let read = axum::body::Bytes::from_request(req, state);
        let bytes = match tokio::time::timeout(deadline, read).await {
            Err(_) => return Err(ApiError::BodyTooSlow(deadline)),
            Ok(Ok(bytes)) => bytes,
            Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge(state.settings.body_limit))
            }
            Ok(Err(_)) => return Err(body_error("could not be read as JSON")),
        };
        // The common case straight into `T`, without a `Value` tree or
        // path tracking between (a fifth of a create's allocations). Only
        // an object: serde would read an array positionally into a struct.
        let object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if object {
            if let Ok(value) = serde_json::from_slice::<T>(&bytes) {
                return Ok(Self(value));
            }
        }
        // Anything else is read the careful way, for a precise message.
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(value) => from_json_value(value),
            Err(_) => Err(body_error("is not valid JSON")),
        }
    }
}

/// [`ApiJson`], or `T::default()` for a request that carries no body at
/// all (see [`has_no_body`]):
/// for bodies whose every field may be left out, such as a cancel's when
/// the token already says who asks.
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T> FromRequest<AppState> for ApiJsonOrEmpty<T>
where
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if has_no_body(&req) {
            return Ok(Self(T::default()));
        }
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(value)| Self(value))
    }
}

/// An empty body: `Content-Length: 0` (whatever the type says), or no
/// length, no type and not chunked. A chunked body is read as JSON, empty
/// or not.
fn has_no_body(req: &Request) -> bool {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
    let headers = req.headers();
    if headers.contains_key(TRANSFER_ENCODING) {
        return false;
    }
    match headers.get(CONTENT_LENGTH) {
        Some(length) => {
            length
                .to_str()
                .ok()
                .and_then(|l| l.trim().parse::<u64>().ok())
                == Some(0)
        }
        None => !headers.contains_key(CONTENT_TYPE),
    }
}

/// `Content-Type: application/json` exactly (in any case): what every
/// client of the API sends.
fn plain_json_content_type(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"application/json"))
}

/// A JSON document as `T`, with messages that name no Rust type.
fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<ApiJson<T>, ApiError> {
    if !value.is_object() {
        return Err(body_error("must be a JSON object"));
    }
    serde_json::from_value(value)
        .map(ApiJson)
        .map_err(|_| body_error("does not have the documented fields"))
}

fn body_error(message: &str) -> ApiError {
    ApiError::Validation(vec![FieldError::new("body", message)])
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(limit);
    }
    let message = match rejection {
        JsonRejection::MissingJsonContentType(_) => "Content-Type must be application/json",
        JsonRejection::JsonSyntaxError(_) => "is not valid JSON",
        _ => "could not be read as JSON",
    };
    body_error(message)
}

/// Query string; unparsable → `VALIDATION_FAILED`.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|rejection: QueryRejection| {
                ApiError::Validation(vec![FieldError::new("query", rejection.body_text())])
            })
    }
}

/// The authenticated caller: `None` under `--auth none` (the request says
/// who it is), else the verified subject of its bearer token. A missing or
/// bad token is `401 UNAUTHENTICATED`, before the body is read.
#[derive(Debug, Clone)]
pub struct Principal(pub Option<crate::domain::UserId>);

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The rate limiter has verified the token already.
        let verdict = match parts.extensions.get::<Verified>() {
            Some(Verified(verdict)) => verdict.clone(),
            None => state.auth.principal(&parts.headers).await,
        };
        verdict.map(Self).map_err(|refused| {
            // The reason, never the token: how an operator finds a wrong
            // audience or issuer (`RUST_LOG=booking=debug`).
            tracing::debug!(reason = %refused, "refused a bearer token");
            ApiError::Unauthenticated(refused)
        })
    }
}

/// The verdict on a request's token, reached once per request.
#[derive(Debug, Clone)]
pub struct Verified(pub Result<Option<crate::domain::UserId>, crate::auth::AuthError>);
