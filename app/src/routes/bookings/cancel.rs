//! `PATCH /api/bookings/{bookingId}/cancel`

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{acting_user, BookingEnvelope};
use crate::booking::cancel::cancel_booking;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJsonOrEmpty, Principal};
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelBody {
    /// Only the owner may cancel.
    #[schema(value_type = String, example = "user_alice")]
    pub user_id: Option<serde_json::Value>,
}

/// Cancel a booking; its slot becomes free. Idempotent. With a bearer
/// token the body may be left out (the token says who asks).
#[utoipa::path(
    patch,
    path = "/api/bookings/{bookingId}/cancel",
    tag = "bookings",
    params(("bookingId" = String, Path, description = "The booking id")),
    request_body = CancelBody,
    responses(
        (status = 200, description = "Cancelled (or already cancelled)", body = BookingEnvelope),
        (status = 400, description = "VALIDATION_FAILED", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHENTICATED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN: userId is not the authenticated user", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "NOT_FOUND: no such booking for this user", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "DEPENDENCY_UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(booking_id): Path<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CancelBody>,
) -> Result<Json<BookingEnvelope>, ApiError> {
    let mut errors = Vec::new();
    let user = acting_user(&body.user_id, &principal, &mut errors)?;
    let Some(user) = user.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    // An id that cannot exist is as absent as one that does not.
    let id = Uuid::parse_str(&booking_id).map_err(|_| ApiError::NotFound)?;
    let booking = cancel_booking(&state, id, &user).await?;
    Ok(Json(BookingEnvelope {
        success: true,
        message: "Booking cancelled successfully".into(),
        booking,
    }))
}
