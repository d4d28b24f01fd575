//! `PATCH /api/bookings/{id}/cancel`: one transaction in the store, then the
//! coordinator forgets the derived keys that the freed slot invalidated.

use chrono::Utc;
use tracing::warn;
use uuid::Uuid;

use crate::domain::{truncate_to_millis, Booking, UserId};
use crate::error::ApiError;
use crate::failpoints::{self, Step};
use crate::startup::AppState;

/// Cancels `id` for its owner. A missing or foreign booking is `NOT_FOUND`
/// (existence is not leaked); cancelling twice returns the cancelled booking.
pub async fn cancel_booking(
    state: &AppState,
    id: Uuid,
    user: &UserId,
) -> Result<Booking, ApiError> {
    failpoints::hit(Step::Cancel).await?;
    let now = truncate_to_millis(Utc::now());
    let cancellation = state
        .store
        .cancel(id, user, now)
        .await?
        .ok_or(ApiError::NotFound)?;
    for key in &cancellation.forgotten {
        if let Err(e) = state.coordinator.forget(&key.record_name()).await {
            // The record expires with the derived-key retention (2 minutes by default).
            warn!(error = %e, "could not forget a derived idempotency record");
        }
    }
    Ok(cancellation.booking)
}
