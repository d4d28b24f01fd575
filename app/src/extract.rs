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
        // Parsed as a JSON value first: serde would read an array
        // positionally into the struct, and its messages name Rust types.
        // A body trickling in byte by byte gets as long as headers do:
        // `408`, not a request timeout that looks like a dependency failure.
        let deadline = state
            .settings
            .connections
            .header_read_timeout
            .min(state.settings.request_timeout / 2);
        let read = axum::Json::<serde_json::Value>::from_request(req, state);
        let value = match tokio::time::timeout(deadline, read).await {
            Err(_) => return Err(ApiError::BodyTooSlow(deadline)),
            Ok(Ok(axum::Json(value))) => value,
            Ok(Err(rejection)) => return Err(json_rejection(rejection, state.settings.body_limit)),
        };
        if !value.is_object() {
            return Err(ApiError::Validation(vec![FieldError::new(
                "body",
                "must be a JSON object",
            )]));
        }
        serde_json::from_value(value).map(Self).map_err(|_| {
            ApiError::Validation(vec![FieldError::new(
                "body",
                "does not have the documented fields",
            )])
        })
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(limit);
    }
    let message = match rejection {
        JsonRejection::MissingJsonContentType(_) => "Content-Type must be application/json",
        JsonRejection::JsonSyntaxError(_) => "is not valid JSON",
        _ => "could not be read as JSON",
    }
    .to_owned();
    ApiError::Validation(vec![FieldError::new("body", message)])
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
        if let Some(known) = parts.extensions.get::<Principal>() {
            return Ok(known.clone());
        }
        Ok(Self(state.auth.principal(&parts.headers).await?))
    }
}
