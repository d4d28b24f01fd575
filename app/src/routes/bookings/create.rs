//! `POST /api/bookings`

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{acting_user, string_field};
use crate::booking::create::{cached_replay, create_booking, resolve};
use crate::domain::{BookingDate, IdempotencyKey, NewBooking, ResourceId};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, Principal};
use crate::state::AppState;

/// The request body. Fields are read loosely so that every problem with
/// them is reported at once, field by field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateBookingBody {
    #[schema(value_type = String, example = "user_alice")]
    pub user_id: Option<serde_json::Value>,
    #[schema(value_type = String, example = "room_A")]
    pub resource_id: Option<serde_json::Value>,
    #[schema(value_type = String, format = Date, example = "2026-12-01")]
    pub date: Option<serde_json::Value>,
}

impl CreateBookingBody {
    /// The booking asked for, by `principal` (`userId` may be left out when
    /// there is one, and must be the principal's when given).
    pub fn validate(&self, principal: &Principal) -> Result<NewBooking, ApiError> {
        let mut errors = Vec::new();
        let user = acting_user(&self.user_id, principal, &mut errors)?;
        let resource = string_field(&self.resource_id, "resourceId", &mut errors)
            .and_then(|s| ResourceId::parse(s).map_err(|e| errors.push(e)).ok());
        let date = string_field(&self.date, "date", &mut errors)
            .and_then(|s| BookingDate::parse(s).map_err(|e| errors.push(e)).ok());
        match (user, resource, date) {
            (Some(user), Some(resource), Some(date)) if errors.is_empty() => Ok(NewBooking {
                user,
                resource,
                date,
            }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// Reads the optional `Idempotency-Key` header.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    if headers.get_all("idempotency-key").iter().nth(1).is_some() {
        // Which one would count? Neither: proxies may merge or reorder them.
        return Err(ApiError::IdempotencyKeyInvalid(
            "send exactly one Idempotency-Key header".into(),
        ));
    }
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => IdempotencyKey::parse(value.as_bytes())
            .map(Some)
            .map_err(ApiError::IdempotencyKeyInvalid),
    }
}

/// Book a resource for a date, exactly once per idempotency key.
#[utoipa::path(
    post,
    path = "/api/bookings",
    tag = "bookings",
    request_body = CreateBookingBody,
    params(
        ("Idempotency-Key" = Option<String>, Header,
         description = "1-255 visible ASCII characters, scoped to userId. Without it a key is derived from userId+resourceId+date for 2 minutes."),
    ),
    responses(
        (status = 201, description = "Booking created (or replayed, with Idempotent-Replayed: true)", body = super::BookingEnvelope),
        (status = 400, description = "VALIDATION_FAILED or IDEMPOTENCY_KEY_INVALID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHENTICATED (with --auth dev or jwt: no valid bearer token)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN: userId is not the authenticated user", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "UNKNOWN_RESOURCE", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "ALREADY_BOOKED, RESOURCE_LOCKED or IDEMPOTENCY_IN_PROGRESS (the last two with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "RATE_LIMITED or QUOTA_EXCEEDED (with Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "DEPENDENCY_UNAVAILABLE (with Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateBookingBody>,
) -> Result<Response, ApiError> {
    let client_key = idempotency_key(&headers)?;
    let request = body.validate(&principal)?;
    let resolved = resolve(&state, request, client_key)?;
    let result = match cached_replay(&state, &resolved) {
        // Answered from memory: nothing to cut between steps.
        Some(replayed) => replayed,
        None => {
            // The protocol runs in its own task: a client that hangs up, or
            // a request timeout, must not cut it between its steps.
            let task_state = state.clone();
            tokio::spawn(async move { create_booking(&task_state, resolved).await })
                .await
                .unwrap_or_else(|e| Err(ApiError::Internal(format!("booking task failed: {e}"))))
        }
    };
    let outcome = match &result {
        Ok(reply) if reply.replayed => "REPLAYED",
        Ok(reply) if reply.response.status == 201 => "CREATED",
        Ok(_) => "ALREADY_BOOKED",
        Err(e) => e.code().as_str(),
    };
    state.metrics.record_booking_outcome(outcome);
    let reply = result?;
    Ok(reply.response.into_http(reply.replayed).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: serde_json::Value) -> CreateBookingBody {
        serde_json::from_value(v).expect("body")
    }

    #[test]
    fn a_valid_body_becomes_a_new_booking() {
        let b = body(
            json!({"userId":"user_alice","resourceId":"room_A","date":"2026-12-01","extra":1}),
        );
        let r = b.validate(&Principal(None)).expect("valid");
        assert_eq!(r.user.as_str(), "user_alice");
        assert_eq!(r.slot(), "room_A:2026-12-01");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let b = body(json!({"userId": 7, "date": "2026-02-30"}));
        let Err(ApiError::Validation(errors)) = b.validate(&Principal(None)) else {
            panic!("must fail validation");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["userId", "resourceId", "date"]);
        assert_eq!(errors[0].message, "must be a string");
        assert_eq!(errors[1].message, "is required");
    }

    #[test]
    fn with_a_principal_user_id_may_be_left_out_and_must_not_be_someone_else() {
        let alice = Principal(Some(crate::domain::UserId::parse("alice").expect("id")));
        let b = body(json!({"resourceId":"room_A","date":"2026-12-01"}));
        assert_eq!(b.validate(&alice).expect("valid").user.as_str(), "alice");
        let b = body(json!({"userId":"bob","resourceId":"room_A","date":"2026-12-01"}));
        assert!(matches!(b.validate(&alice), Err(ApiError::Forbidden)));
        let b = body(json!({"resourceId":"room_A","date":"2026-12-01"}));
        assert!(matches!(
            b.validate(&Principal(None)),
            Err(ApiError::Validation(_))
        ));
    }

    #[test]
    fn an_invalid_idempotency_key_header_is_its_own_error() {
        let mut h = HeaderMap::new();
        assert!(matches!(idempotency_key(&h), Ok(None)));
        h.insert("idempotency-key", "ok-key".parse().expect("header"));
        assert!(matches!(idempotency_key(&h), Ok(Some(_))));
        h.insert("idempotency-key", "has space".parse().expect("header"));
        let err = idempotency_key(&h).expect_err("space");
        assert_eq!(err.code().as_str(), "IDEMPOTENCY_KEY_INVALID");
    }
}
