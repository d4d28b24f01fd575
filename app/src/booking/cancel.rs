//! `PATCH /api/bookings/{id}/cancel`: one transaction in the store, then the
//! coordinator forgets the derived keys that the freed slot invalidated.

use chrono::Utc;
use tracing::warn;
use uuid::Uuid;

use crate::domain::{truncate_to_millis, Booking, UserId};
use crate::error::ApiError;
use crate::failpoints::{self, Step};
use crate::state::AppState;

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
    // The cancel is committed: answer now. Forgetting the Redis copies of
    // the derived records it invalidated is clean-up, not part of the
    // answer; a stalled Redis must not turn a done cancel into a 503. A copy
    // left behind is harmless: derived replays are checked against the
    // store (`create::verify_derived_record`).
    let coordinator = state.coordinator.clone();
    let forgotten = cancellation.forgotten;
    tokio::spawn(async move {
        for key in &forgotten {
            if let Err(e) = coordinator.forget(&key.record_name()).await {
                warn!(error = %e, "could not forget a derived idempotency record");
            }
        }
    });
    Ok(cancellation.booking)
}
