//! The store: the source of truth for bookings and idempotency outcomes.
//!
//! [`Store::book`] is step 5 of the booking protocol: one transaction that
//! either finds the key's earlier outcome, or inserts the booking (the unique
//! partial index decides races) and records the outcome for the key.
//!
//! PostgreSQL and SQLite share one implementation in [`sql`]. A document
//! database can implement the same trait: it needs a unique constraint on
//! confirmed slots and a transaction covering the booking and its outcome.

mod codec;
mod group_commit;
pub mod pg_conns;
pub mod sql;
mod step5;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::coordinator::CompletedRecord;
use crate::deps::DependencyError;
use crate::domain::KeyScope;
use crate::domain::{Booking, BookingDate, BookingStatus, ResourceId, UserId};
use crate::response::StoredResponse;

/// Everything step 5 needs, rendered in advance so that the transaction
/// stores exactly the bytes that the client receives.
#[derive(Debug)]
pub struct BookCommand<'a> {
    pub key: &'a KeyScope,
    pub fingerprint: &'a str,
    /// When a booking's outcome stops answering retries (the key's retention).
    pub expires_at: DateTime<Utc>,
    /// When a refusal's outcome does (kept for a shorter time).
    pub refusal_expires_at: DateTime<Utc>,
    /// The booking to insert if the slot is free.
    pub booking: &'a Booking,
    /// The `201` response for `booking`.
    pub created: &'a StoredResponse,
    /// The `409 ALREADY_BOOKED` response for this slot.
    pub already_booked: &'a StoredResponse,
    /// Live keys the user may hold: a key new to the store beyond them is
    /// refused ([`BookOutcome::OverQuota`]) and nothing is written. 0: no quota.
    pub key_quota: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookOutcome {
    /// The booking was inserted and `created` recorded for the key.
    Created,
    /// The slot held another confirmed booking; `already_booked` recorded.
    AlreadyBooked,
    /// The key already had an outcome (an earlier attempt committed).
    Existing(CompletedRecord),
    /// The key is new to the store and the user already holds `key_quota`
    /// live keys; nothing was written. `frees_at`: when the first of them
    /// expires.
    OverQuota { frees_at: Option<DateTime<Utc>> },
}

/// Filters of `GET /api/bookings/{userId}`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub resource: Option<ResourceId>,
    pub date: Option<BookingDate>,
    /// `None` lists every status.
    pub status: Option<BookingStatus>,
}

/// A booking that is now cancelled, and the derived idempotency keys that
/// the cancel invalidated (their Redis copies must be forgotten too).
#[derive(Debug, Clone)]
pub struct Cancellation {
    pub booking: Booking,
    pub forgotten: Vec<KeyScope>,
}

/// The most bookings one list call returns (newest first).
pub const LIST_LIMIT: i64 = 1000;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;

    async fn ping(&self) -> Result<(), DependencyError>;

    /// Step 5 of the protocol, in one transaction (the key quota included:
    /// counted where the booking is written, no round trip of its own).
    async fn book(&self, cmd: &BookCommand<'_>) -> Result<BookOutcome, DependencyError>;

    /// The unexpired outcome recorded for `key`, if any (read-only).
    async fn find_outcome(
        &self,
        key: &KeyScope,
        now: DateTime<Utc>,
    ) -> Result<Option<CompletedRecord>, DependencyError>;

    async fn list(
        &self,
        user: &UserId,
        filter: &ListFilter,
    ) -> Result<Vec<Booking>, DependencyError>;

    /// Cancels `id` if `user` owns it. `None` if it does not exist or is
    /// someone else's. Cancelling a cancelled booking returns it unchanged.
    async fn cancel(
        &self,
        id: Uuid,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Cancellation>, DependencyError>;

    /// Deletes outcomes whose retention has passed; returns how many.
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, DependencyError>;

    /// Resources with a confirmed booking on `date`.
    async fn booked_resources(&self, date: BookingDate)
        -> Result<Vec<ResourceId>, DependencyError>;
}

/// Opens the store named by `url` (`postgres://…` or `sqlite://…`) and
/// applies its migrations.
pub async fn connect(
    url: &str,
    guard_for: impl Fn(&'static str) -> crate::deps::Guard,
) -> Result<std::sync::Arc<dyn Store>, DependencyError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            sql::PostgresStore::connect(url, guard_for("postgres")).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            sql::SqliteStore::connect(url, guard_for("sqlite")).await?,
        ))
    } else {
        Err(DependencyError::Internal {
            dependency: "store",
            operation: "connect",
            source: "DATABASE_URL must start with postgres:// or sqlite:".into(),
        })
    }
}
