//! What step 5 of both stores shares: reading a key's stored row back,
//! the commit point (the `before_commit` failpoint and the seeded
//! `commit-error-ignored`), and the answer built from a stored row.
//! PostgreSQL's statement ([`super::sql`]) and SQLite's group commit
//! ([`super::group_commit`]) both use it; neither depends on the other.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::BookOutcome;
use crate::coordinator::CompletedRecord;
use crate::deps::{DependencyError, Guard};
use crate::response::StoredResponse;

pub(super) const READ_KEY: &str =
    "SELECT fingerprint, status_code, response_body, expires_at FROM idempotency_records \
     WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3";

/// A key's stored row (`READ_KEY`). Status and body are `None` only inside
/// an uncommitted step 5: every committed row has its outcome.
#[derive(Debug, Clone)]
pub(super) struct StoredRow {
    pub fingerprint: String,
    pub status: Option<i32>,
    pub body: Option<String>,
    pub expires_at: DateTime<Utc>,
}

pub(super) fn stored_row<R: Row>(row: &R) -> Result<StoredRow, sqlx::Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredRow {
        fingerprint: row.try_get("fingerprint")?,
        status: row.try_get("status_code")?,
        body: row.try_get("response_body")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// Seeded bug `already-booked-not-remembered`: the key's row is deleted
/// when it holds no booking (PostgreSQL: after its one statement committed
/// the refusal; SQLite: inside the group, right after the refusal was recorded).
pub(super) const FORGET_REFUSAL: &str = "DELETE FROM idempotency_records \
     WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3 AND booking_id IS NULL";

/// The commit point of step 5, shared by both stores: the `before_commit`
/// failpoint, then `commit` (SQLite's COMMIT; PostgreSQL's one statement,
/// which commits as it ends). An injected error looks like a lost
/// connection: nothing is written and the client gets a 503. A `sleep`
/// action is handed to `commit` as the time to hold its writes open.
/// `assumed` is what the seeded bug `commit-error-ignored` answers instead
/// of the error.
pub(super) async fn commit_point<T, F>(
    assumed: T,
    commit: impl FnOnce(Option<Duration>) -> F,
) -> Result<T, sqlx::Error>
where
    F: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let committed = async {
        let hold = crate::failpoints::hit_holding(crate::failpoints::Step::BeforeCommit)
            .await
            .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?;
        commit(hold).await
    }
    .await;
    match committed {
        Err(e) if seeded_bug!(CommitErrorIgnored) => {
            // Seeded bug: "the commit surely went through".
            tracing::warn!(error = %e, "commit failed; answering as if it had not");
            Ok(assumed)
        }
        other => other,
    }
}

/// The `Existing` answer from a key's stored row (shared by both stores).
pub(super) fn existing_outcome(
    guard: &Guard,
    outcome: Result<BookOutcome, StoredRow>,
) -> Result<BookOutcome, DependencyError> {
    match outcome {
        Ok(outcome) => Ok(outcome),
        Err(row) => row.completed(guard, "book").map(BookOutcome::Existing),
    }
}

impl StoredRow {
    /// The one reading of a stored outcome, for replays (`find_outcome`)
    /// and for step 5's "already there": a committed row without an
    /// outcome, or with a status no HTTP answer has, is corruption to
    /// report, never an answer to invent.
    pub(super) fn completed(
        self,
        guard: &Guard,
        op: &'static str,
    ) -> Result<CompletedRecord, DependencyError> {
        let (Some(status), Some(body)) = (self.status, self.body) else {
            return Err(guard.corrupt(op, "committed key without an outcome"));
        };
        let status = u16::try_from(status)
            .ok()
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| guard.corrupt(op, "stored status out of range"))?;
        Ok(CompletedRecord {
            fingerprint: self.fingerprint,
            response: StoredResponse { status, body },
            expires_at: Some(self.expires_at),
        })
    }
}
