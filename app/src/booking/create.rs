//! `POST /api/bookings`, one function per protocol step, in order. (Over
//! 500 lines on purpose: the whole protocol in one file reads top to bottom
//! like its sequence diagram.)
//!
//! ```text
//! 1 validate            (the handler: domain types + catalogue)
//! 2 resolve_key         key scoped to the user, payload fingerprint
//!   cached_replay       this replica's replay cache: a client key that came
//!                       back once is answered here, until just before the
//!                       store forgets its outcome
//! 3 claim               Redis: replay | in progress | this request owns the key
//! 4 lock                Redis: one request per slot (contention only),
//!                       in the same script as the claim (one round trip)
//! 5 book_in_transaction DB: earlier outcome | QUOTA_EXCEEDED (a new key past
//!                       the user's quota) | ALREADY_BOOKED | insert, + outcome
//! 6 finalize            Redis: record completed (if still ours) and lock
//!                       released, in one script
//! 7 release             on a transient failure: drop the claim so a retry runs again
//! ```
//!
//! Safety rests on step 5 alone: the database's unique partial index and the
//! outcome stored with the booking. Redis only makes retries cheap and keeps
//! concurrent work apart; losing it loses nothing.

use chrono::{TimeDelta, Utc};
use tracing::{instrument, warn};
use uuid::Uuid;

use super::key::{resolve_key, KeyKind, ResolvedKey};
use crate::config::ReusePolicy;
use crate::coordinator::{Claim, CompletedRecord, Token};
use crate::domain::{truncate_to_millis, Booking, BookingStatus, IdempotencyKey, NewBooking};
use crate::error::ApiError;
use crate::failpoints::{self, Step};
use crate::response::StoredResponse;
use crate::state::AppState;
use crate::store::{BookCommand, BookOutcome};

/// A definitive answer to a booking request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub response: StoredResponse,
    /// The answer was remembered from an earlier request with the same key.
    pub replayed: bool,
}

/// A validated request, its resource checked and its key resolved (steps 1
/// and 2): what [`cached_replay`] and [`create_booking`] take.
pub struct Resolved {
    request: NewBooking,
    key: ResolvedKey,
}

/// Steps 1 (the catalogue) and 2.
pub fn resolve(
    state: &AppState,
    request: NewBooking,
    client_key: Option<IdempotencyKey>,
) -> Result<Resolved, ApiError> {
    state.check_resource(&request.resource)?;
    let key = resolve_key(&request, client_key.as_ref(), &state.settings.idempotency);
    Ok(Resolved { request, key })
}

/// Step 2½: the answer this replica's replay cache holds for the key, if
/// any (a replay, or `422` for another payload). Synchronous and in memory,
/// so the handler asks it before it hands the protocol to a task of its own.
pub fn cached_replay(state: &AppState, resolved: &Resolved) -> Option<Result<Reply, ApiError>> {
    let record = state.replay_cache.get(&resolved.key)?;
    Some(decide(state, &resolved.key, record, true, "cache"))
}

/// Runs the protocol from step 3 on.
pub async fn create_booking(state: &AppState, resolved: Resolved) -> Result<Reply, ApiError> {
    let Resolved { request, key } = resolved;
    // Named once: the claim takes the lock by this name, finalize releases it.
    let lock_name = lock_name(&request);
    let result = match claim(state, &key, &lock_name).await {
        Ok(Claimed::Owner(token, lock)) => {
            let result = run_claimed(state, &key, &token, lock, &request, &lock_name).await;
            if let Err(error) = &result {
                release(state, &key, &token, error).await;
            }
            result
        }
        Ok(Claimed::Replay(reply)) => Ok(reply),
        Err(error) => Err(error),
    };
    if seeded_bug!(DuplicateReleasesLock)
        && matches!(
            result,
            Err(ApiError::IdempotencyInProgress | ApiError::ResourceLocked { .. })
        )
    {
        // Seeded bug: "clean up" the slot lock by name, though another request owns it.
        let _ = state.coordinator.forget(&lock_name).await;
    }
    result
}

/// Steps 4 to 6, while this request owns the key (`lock`: the slot lock
/// step 3 took with the claim, `None` if the slot was busy).
async fn run_claimed(
    state: &AppState,
    key: &ResolvedKey,
    token: &Token,
    lock: Option<Token>,
    request: &NewBooking,
    lock_name: &str,
) -> Result<Reply, ApiError> {
    let lock = match slot(state, key, lock, request).await? {
        Slot::Held(token) => token,
        Slot::Decided(record) => {
            finalize(state, key, token, &record).await;
            state.replay_cache.remember(key, &record);
            return decide(state, key, record, true, "store");
        }
    };
    let mut unlocked = false;
    let result = async {
        failpoints::hit(Step::AfterLock).await?;
        let prepared = prepare_booking(key, request)?;
        #[cfg(feature = "failpoints")]
        if seeded_bug!(FinalizeBeforeCommit) {
            seeded_bug_finalize_before_commit(state, key, token, lock_name, &lock, &prepared).await;
        }
        #[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
        let booking_id = prepared.booking.id;
        let (record, replayed) = book_in_transaction(state, key, prepared).await?;
        if let Err(injected) = failpoints::hit(Step::AfterCommitBeforeFinalize).await {
            #[cfg(feature = "failpoints")]
            if seeded_bug!(CompensateAfterCommit) && !replayed {
                seeded_bug_compensate(state, request, booking_id).await;
            }
            return Err(injected.into());
        }
        if seeded_bug!(AlreadyBookedNotRemembered) && record.response.status == 409 {
            // Seeded bug: the refusal is not remembered; the claim is dropped.
            let _ = state.coordinator.release(&key.record, token).await;
            return decide(state, key, record, replayed, "store");
        }
        unlocked = finalize_and_unlock(state, key, token, &record, lock_name, &lock).await;
        if replayed {
            state.replay_cache.remember(key, &record);
        }
        decide(state, key, record, replayed, "store")
    }
    .await;
    if !unlocked {
        unlock(state, lock_name, &lock).await;
    }
    result
}

enum Claimed {
    /// This request owns the key; the slot lock, if step 4 got it.
    Owner(Token, Option<Token>),
    Replay(Reply),
}

/// Steps 3 and 4: claim the key (or answer from its record) and, once it is
/// ours, take the slot lock, in one call to the coordinator.
#[instrument(level = "debug", skip_all, fields(key = %key.scope.key, kind = key.scope.kind.as_str()))]
async fn claim(state: &AppState, key: &ResolvedKey, lock_name: &str) -> Result<Claimed, ApiError> {
    let (claim, lock) = state
        .coordinator
        .claim_and_lock(
            &key.record,
            &key.fingerprint,
            if seeded_bug!(ClaimLivesForRetention) {
                key.retention
            } else {
                state.settings.idempotency.lease
            },
            lock_name,
            state.settings.lock_ttl,
        )
        .await?;
    match claim {
        Claim::Acquired(token) => Ok(Claimed::Owner(token, lock)),
        Claim::InProgress => Err(ApiError::IdempotencyInProgress),
        Claim::Completed(_)
            if key.scope.kind == KeyKind::Derived && !seeded_bug!(DerivedReplayUnverified) =>
        {
            verify_derived_record(state, key, lock_name).await
        }
        Claim::Completed(record) => {
            state.replay_cache.remember(key, &record);
            decide(state, key, record, true, "coordinator").map(Claimed::Replay)
        }
    }
}

/// A derived key's record in Redis may be stale: a cancel deletes the
/// derived outcomes its freed slot invalidates from the store, in its
/// transaction, but their Redis copies only afterwards and best effort (a
/// Redis stall leaves them for the derived retention). The store decides:
/// its outcome is replayed; without one, the Redis copy is dropped and the
/// request runs as new.
async fn verify_derived_record(
    state: &AppState,
    key: &ResolvedKey,
    lock_name: &str,
) -> Result<Claimed, ApiError> {
    if let Some(stored) = state.store.find_outcome(&key.scope, Utc::now()).await? {
        return decide(state, key, stored, true, "store").map(Claimed::Replay);
    }
    state.coordinator.forget(&key.record).await?;
    match state
        .coordinator
        .claim_and_lock(
            &key.record,
            &key.fingerprint,
            state.settings.idempotency.lease,
            lock_name,
            state.settings.lock_ttl,
        )
        .await?
    {
        (Claim::Acquired(token), lock) => Ok(Claimed::Owner(token, lock)),
        // Another request for the key got there first: it decides.
        (Claim::InProgress | Claim::Completed(_), _) => Err(ApiError::IdempotencyInProgress),
    }
}

enum Slot {
    Held(Token),
    /// The slot was busy but this key already has an outcome in the store.
    Decided(CompletedRecord),
}

/// Step 4: the slot lock (taken with the claim). It only spares the
/// database doomed transactions; if it expires early, step 5 still decides
/// correctly.
///
/// When the slot is busy, the store is asked whether this key already has an
/// outcome: a retry after a crash between commit and finalize then gets its
/// original answer at once instead of `RESOURCE_LOCKED` until the crashed
/// request's lock expires.
async fn slot(
    state: &AppState,
    key: &ResolvedKey,
    lock: Option<Token>,
    request: &NewBooking,
) -> Result<Slot, ApiError> {
    if let Some(token) = lock {
        return Ok(Slot::Held(token));
    }
    state.metrics.record_lock_contention();
    let outcome = if seeded_bug!(RedisOnlyMemory) {
        None
    } else {
        state.store.find_outcome(&key.scope, Utc::now()).await?
    };
    match outcome {
        Some(record) => Ok(Slot::Decided(record)),
        None => Err(ApiError::ResourceLocked {
            resource: request.resource.clone(),
            date: request.date,
        }),
    }
}

/// `booking:lock:{resource}:{date}`, written in one allocation.
fn lock_name(request: &NewBooking) -> String {
    use std::fmt::Write;
    let resource = request.resource.as_str();
    let mut name = String::with_capacity(13 + resource.len() + 1 + 10);
    let _ = write!(name, "booking:lock:{resource}:{}", request.date);
    name
}

/// Everything step 5 writes, prepared before the transaction: the new
/// booking and both possible answers, rendered once.
struct Prepared {
    booking: Booking,
    created: StoredResponse,
    already_booked: StoredResponse,
    expires_at: chrono::DateTime<Utc>,
    refusal_expires_at: chrono::DateTime<Utc>,
}

fn prepare_booking(key: &ResolvedKey, request: &NewBooking) -> Result<Prepared, ApiError> {
    let now = truncate_to_millis(Utc::now());
    let booking = Booking {
        id: Uuid::now_v7(),
        user_id: request.user.clone(),
        resource_id: request.resource.clone(),
        date: request.date,
        status: BookingStatus::Confirmed,
        created_at: now,
        cancelled_at: None,
    };
    let created = render_created(&booking)?;
    let already_booked = ApiError::AlreadyBooked {
        resource: request.resource.clone(),
        date: request.date,
    }
    .to_stored();
    let expiry = |retention: std::time::Duration| {
        let retention = if seeded_bug!(RedisOnlyMemory) {
            // Seeded bug: the outcome the database keeps is dead on arrival.
            TimeDelta::zero()
        } else {
            TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX)
        };
        now.checked_add_signed(retention).unwrap_or(now)
    };
    Ok(Prepared {
        expires_at: expiry(key.retention),
        refusal_expires_at: expiry(key.refusal_retention),
        booking,
        created,
        already_booked,
    })
}

/// Step 5: one transaction decides. Returns the key's outcome and whether it
/// came from an earlier request.
///
/// The same transaction applies the key quota: a key the store does not
/// know yet must fit the user's quota of live keys (`429 QUOTA_EXCEEDED`,
/// nothing written, the lock and the claim released by the caller). A key
/// the store knows always gets its answer, so losing Redis never turns a
/// replay into a refusal. Concurrent new keys are counted once they commit:
/// a user can pass the quota by the number of requests in flight, no more.
/// Counting here rather than in a query of its own saves a round trip per
/// booking (measured in `docs/PERFORMANCE-HISTORY.md`).
#[instrument(level = "debug", skip_all, fields(resource = %prepared.booking.resource_id, date = %prepared.booking.date))]
async fn book_in_transaction(
    state: &AppState,
    key: &ResolvedKey,
    prepared: Prepared,
) -> Result<(CompletedRecord, bool), ApiError> {
    let cmd = BookCommand {
        key: &key.scope,
        fingerprint: &key.fingerprint,
        expires_at: prepared.expires_at,
        refusal_expires_at: prepared.refusal_expires_at,
        booking: &prepared.booking,
        created: &prepared.created,
        already_booked: &prepared.already_booked,
        key_quota: state.settings.idempotency.key_quota,
    };
    let fresh = |response: StoredResponse, expires_at| CompletedRecord {
        fingerprint: key.fingerprint.clone(),
        response,
        expires_at: Some(expires_at),
    };
    match state.store.book(&cmd).await? {
        BookOutcome::Created => Ok((fresh(prepared.created, prepared.expires_at), false)),
        BookOutcome::AlreadyBooked => Ok((
            fresh(prepared.already_booked, prepared.refusal_expires_at),
            false,
        )),
        BookOutcome::Existing(record) => Ok((record, true)),
        BookOutcome::OverQuota { frees_at } => Err(ApiError::QuotaExceeded {
            quota: state.settings.idempotency.key_quota,
            retry_after: frees_at
                .and_then(|at| (at - Utc::now()).to_std().ok())
                .unwrap_or(state.settings.idempotency.lease),
        }),
    }
}

fn render_created(booking: &Booking) -> Result<StoredResponse, ApiError> {
    #[derive(serde::Serialize)]
    struct Created<'a> {
        success: bool,
        message: &'static str,
        booking: &'a Booking,
    }
    let body = serde_json::to_string(&Created {
        success: true,
        message: "Booking created successfully",
        booking,
    })
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(StoredResponse::new(axum::http::StatusCode::CREATED, body))
}

/// Step 6 without a lock to release: remember the committed outcome in the
/// coordinator, if this request still owns the key. A failure here loses
/// nothing: the database answers the next retry.
async fn finalize(state: &AppState, key: &ResolvedKey, token: &Token, record: &CompletedRecord) {
    let retention = retention_of(key, record);
    match state
        .coordinator
        .complete(&key.record, token, record, retention)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            warn!(key = %key.scope.key, "claim lost before finalize; the store keeps the outcome")
        }
        Err(e) => {
            warn!(error = %e, "could not finalize the idempotency record; the store keeps the outcome")
        }
    }
}

/// Step 6: [`finalize`] and release the slot lock in one call. Returns
/// whether the call went through (the lock is released); if it did not, the
/// caller releases the lock on its own.
async fn finalize_and_unlock(
    state: &AppState,
    key: &ResolvedKey,
    token: &Token,
    record: &CompletedRecord,
    lock_name: &str,
    lock: &Token,
) -> bool {
    match state
        .coordinator
        .complete_and_unlock(
            &key.record,
            token,
            record,
            retention_of(key, record),
            lock_name,
            lock,
        )
        .await
    {
        Ok(true) => true,
        Ok(false) => {
            warn!(key = %key.scope.key, "claim lost before finalize; the store keeps the outcome");
            true
        }
        Err(e) => {
            warn!(
                error = %e,
                "could not finalize the idempotency record; the store keeps the outcome"
            );
            false
        }
    }
}

/// How long the coordinator remembers `record`: bookings for the key's
/// retention, refusals for the shorter refusal retention.
fn retention_of(key: &ResolvedKey, record: &CompletedRecord) -> std::time::Duration {
    if record.response.status == 201 {
        key.retention
    } else {
        key.refusal_retention
    }
}

/// Releases the slot lock by compare-and-delete on our token (when step 6
/// did not run: a failure, or a seeded bug's early exit).
async fn unlock(state: &AppState, lock_name: &str, token: &Token) {
    if let Err(e) = state.coordinator.unlock(lock_name, token).await {
        warn!(error = %e, "could not release the slot lock; it expires by itself");
    }
}

/// Step 7: a transient failure forgets the claim so that a retry runs again.
async fn release(state: &AppState, key: &ResolvedKey, token: &Token, error: &ApiError) {
    if seeded_bug!(RememberTransientAnswers)
        && matches!(
            error,
            ApiError::ResourceLocked { .. } | ApiError::Dependency(_)
        )
    {
        // Seeded bug: the transient answer becomes the key's final answer.
        let record = CompletedRecord {
            fingerprint: key.fingerprint.clone(),
            response: error.to_stored(),
            expires_at: None,
        };
        finalize(state, key, token, &record).await;
        return;
    }
    if let Err(e) = state.coordinator.release(&key.record, token).await {
        warn!(error = %e, "could not release the claim; its lease expires by itself");
    }
}

/// Applies the reuse policy to a remembered outcome.
fn decide(
    state: &AppState,
    key: &ResolvedKey,
    record: CompletedRecord,
    replayed: bool,
    source: &'static str,
) -> Result<Reply, ApiError> {
    if replayed {
        // (The replay cache holds outcomes from the store too.)
        let skip_check =
            seeded_bug!(StoreReplaySkipsFingerprint) && matches!(source, "store" | "cache");
        if record.fingerprint != key.fingerprint
            && state.settings.idempotency.reuse_policy == ReusePolicy::Reject
            && !skip_check
        {
            return Err(ApiError::IdempotencyKeyReused);
        }
        state.metrics.record_replay(source);
    }
    Ok(Reply {
        response: record.response,
        replayed,
    })
}

/// Seeded bug `finalize-before-commit` (see `seeded`): the key is marked
/// completed and the lock released *before* the transaction commits.
#[cfg(feature = "failpoints")]
async fn seeded_bug_finalize_before_commit(
    state: &AppState,
    key: &ResolvedKey,
    token: &Token,
    lock_name: &str,
    lock: &Token,
    prepared: &Prepared,
) {
    let record = CompletedRecord {
        fingerprint: key.fingerprint.clone(),
        response: prepared.created.clone(),
        expires_at: None,
    };
    finalize(state, key, token, &record).await;
    unlock(state, lock_name, lock).await;
}

/// Seeded bug `compensate-after-commit`: "undo" a booking after a failure
/// that came after its commit, although its outcome already says 201.
#[cfg(feature = "failpoints")]
async fn seeded_bug_compensate(state: &AppState, request: &NewBooking, id: Uuid) {
    let now = truncate_to_millis(Utc::now());
    if let Err(e) = state.store.cancel(id, &request.user, now).await {
        warn!(error = %e, "seeded compensation failed");
    }
}
