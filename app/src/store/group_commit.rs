//! SQLite's step 5 with group commit: the bookings that arrive while one
//! commit is being made durable are written together and made durable by
//! the next commit, one fsync for the group.
//!
//! Why by hand: with `synchronous = FULL` every commit waits for an fsync
//! of the write-ahead log (about 0.3 ms on this project's machine, several
//! ms on a busy disk), and SQLite lets one transaction write at a time, so
//! one commit per booking capped the embedded default whatever the CPU
//! (820 creates/s before, 2 300 after, side by side in
//! `docs/PERFORMANCE-HISTORY.md`). Server databases group commits themselves
//! (PostgreSQL's WAL writer); SQLite leaves it to the application, and no
//! crate does it for sqlx.
//!
//! One writer task per store takes every waiting request (at most
//! [`MAX_GROUP`]) and runs their step 5 one after another in one
//! transaction, in arrival order, so a later request sees an earlier one's
//! writes exactly as if they had committed apart. Nothing is acknowledged
//! before the group's commit returns. If any statement or the commit fails,
//! the whole group is rolled back and every request in it gets the error
//! (a 503: nothing was written, and the client's retry runs again), just as
//! a failed commit of its own would.
//!
//! The writer keeps one connection of the pool for itself. SQLite drops a
//! connection's page cache whenever another connection has written since
//! its last transaction; groups taken on whichever connection was idle read
//! the pages they touch back from the write-ahead log every time (four
//! `pread`s per booking, measured in `docs/PERFORMANCE-HISTORY.md`). On its own
//! connection the writer is the last writer nearly always, and its cache
//! stays warm.

use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Connection, Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::step5::{commit_point, stored_row, StoredRow, FORGET_REFUSAL, READ_KEY};
use super::BookOutcome;
use crate::deps::Classify;
use crate::domain::{Booking, KeyScope};
use crate::metrics::Metrics;
use crate::response::StoredResponse;

/// The most requests one commit makes durable.
pub const MAX_GROUP: usize = 64;

/// Requests waiting for the writer; beyond this, callers wait to enqueue.
const QUEUE: usize = 1024;

// Step 5 for one request is one call into SQLite: the claim, the booking
// and the outcome, three statements that sqlx runs in a single trip to the
// connection's worker thread (each trip is a hand-off between threads and
// back). The statements are macros so that the seeded bug's variant is
// spelled from the same parts.

/// Claims the key: inserts its row, or takes over its expired row; a live
/// row is left alone (no change: its outcome is read instead). With a key
/// quota (`$9` > 0) nothing is inserted either while the user holds `$9`
/// live keys, counted on one index range (the primary key starts with
/// `user_id`): in the same statement, so the quota costs the group's
/// single writer no statement of its own. Changes one row exactly when
/// the key was claimed, which `changes()` tells the next statement (a
/// statement that changes nothing sets it to 0, so an earlier job's count
/// never leaks in: `quota::…nothing_is_written` and the store tests' live
/// key, each right after a statement on the writer's connection that
/// changed a row, pin this).
macro_rules! claim_key {
    () => {
        "INSERT INTO idempotency_records \
         (user_id, key_kind, idem_key, fingerprint, resource_id, date, created_at, expires_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
         WHERE $9 = 0 OR (SELECT COUNT(*) FROM (SELECT 1 FROM idempotency_records \
            WHERE user_id = $1 AND expires_at > $7 LIMIT $9)) < $9 \
         ON CONFLICT (user_id, key_kind, idem_key) DO UPDATE SET \
         fingerprint = excluded.fingerprint, resource_id = excluded.resource_id, \
         date = excluded.date, created_at = excluded.created_at, expires_at = excluded.expires_at, \
         status_code = NULL, response_body = NULL, booking_id = NULL \
         WHERE idempotency_records.expires_at <= excluded.created_at;"
    };
}

/// Inserts the booking if the key was claimed; the unique partial index
/// decides: no row inserted means the slot already has a confirmed booking.
macro_rules! insert_booking {
    () => {
        "INSERT INTO bookings \
         (id, user_id, resource_id, date, status, created_at, key_kind, idem_key) \
         SELECT $10, $16, $5, $6, 'confirmed', $7, $2, $3 WHERE changes() = 1 \
         ON CONFLICT (resource_id, date) WHERE status = 'confirmed' DO NOTHING;"
    };
}

/// Seeded bug `no-unique-index`: the slot is checked, then inserted.
macro_rules! insert_booking_checked {
    () => {
        "INSERT INTO bookings \
         (id, user_id, resource_id, date, status, created_at, key_kind, idem_key) \
         SELECT $10, $16, $5, $6, 'confirmed', $7, $2, $3 WHERE changes() = 1 \
         AND NOT EXISTS (SELECT 1 FROM bookings \
            WHERE resource_id = $5 AND date = $6 AND status = 'confirmed');"
    };
}

/// Records the outcome in the key's row if this request claimed it: the
/// row has no outcome yet (every committed row has one) and this request's
/// time (so that even a committed row without an outcome, which would be
/// corrupt, is not taken for a claim: it is read and reported). `201` if
/// the booking was inserted, else the refusal. Returns one row, the
/// booking's id if it was inserted (else NULL); none when the key was not
/// claimed. (The id itself rather than `booking_id IS NOT NULL`: SQLite's
/// 3.40 shell answered 1 for that on a NULL `booking_id` in `RETURNING`.)
///
/// The outcome is chosen in a subquery rather than joined in with `UPDATE
/// … FROM`: a join is planned in full, and the planner then compares
/// `key_kind = $2` with the partial index's `key_kind = 'derived'`, which
/// makes SQLite compile the statement again every time `$2` is bound. On
/// one table with its whole primary key given, the planner takes the key
/// lookup without looking at other indexes, and the statement stays
/// prepared.
macro_rules! record_outcome {
    () => {
        "UPDATE idempotency_records \
         SET (status_code, response_body, booking_id, expires_at) = (SELECT \
            CASE WHEN booked THEN $11 ELSE $13 END, CASE WHEN booked THEN $12 ELSE $14 END, \
            CASE WHEN booked THEN $10 END, CASE WHEN booked THEN $8 ELSE $15 END \
            FROM (SELECT EXISTS (SELECT 1 FROM bookings WHERE id = $10) AS booked)) \
         WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3 \
            AND status_code IS NULL AND created_at = $7 \
         RETURNING booking_id"
    };
}

/// Step 5 for one request (see the macros above).
const BOOK: &str = concat!(claim_key!(), insert_booking!(), record_outcome!());

/// Step 5 with the seeded bug `no-unique-index`.
const BOOK_CHECKED: &str = concat!(claim_key!(), insert_booking_checked!(), record_outcome!());

/// When the user's first live key expires (only asked when over the quota).
const FIRST_KEY_EXPIRY: &str = "SELECT MIN(expires_at) FROM idempotency_records \
     WHERE user_id = $1 AND expires_at > $2";

/// Step 5's input, owned, so that it can wait in the queue.
pub struct Request {
    pub key: KeyScope,
    pub fingerprint: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub refusal_expires_at: chrono::DateTime<chrono::Utc>,
    pub booking: Booking,
    pub created: StoredResponse,
    pub already_booked: StoredResponse,
    pub key_quota: u32,
}

/// One request's answer: its outcome, or the row of the key's earlier outcome.
pub type Answer = Result<Result<BookOutcome, StoredRow>, GroupFailed>;

/// The group this request was in was rolled back.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GroupFailed {
    unavailable: bool,
    message: String,
}

impl GroupFailed {
    fn from_sqlx(e: &sqlx::Error) -> Self {
        Self {
            unavailable: e.is_unavailable(),
            message: e.to_string(),
        }
    }

    fn writer_gone() -> Self {
        Self {
            unavailable: true,
            message: "the SQLite writer has stopped".into(),
        }
    }
}

impl Classify for GroupFailed {
    fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

struct Job {
    request: Request,
    answer: oneshot::Sender<Answer>,
}

/// The queue into the writer task.
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writer task. It takes `turn` for each group, as every other
    /// writer of this store does, and stops when the store is dropped.
    pub fn start(pool: SqlitePool, turn: Arc<Mutex<()>>, metrics: Arc<Metrics>) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(writer(pool, turn, queue, metrics));
        Self { jobs }
    }

    /// Queues `request` and waits for its group to commit.
    pub async fn book(&self, request: Request) -> Answer {
        let (answer, answered) = oneshot::channel();
        self.jobs
            .send(Job { request, answer })
            .await
            .map_err(|_| GroupFailed::writer_gone())?;
        answered.await.map_err(|_| GroupFailed::writer_gone())?
    }
}

async fn writer(
    pool: SqlitePool,
    turn: Arc<Mutex<()>>,
    mut queue: mpsc::Receiver<Job>,
    metrics: Arc<Metrics>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // The writer's own connection (see the module's doc); taken again from
    // the pool after a group fails, in case the connection was the cause.
    let mut own: Option<PoolConnection<Sqlite>> = None;
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        let _turn = turn.lock().await;
        let committed = async {
            let mut conn = match own.take() {
                Some(conn) => conn,
                None => pool.acquire().await?,
            };
            let answers = commit_group(&mut conn, &group).await?;
            Ok::<_, sqlx::Error>((conn, answers))
        }
        .await;
        let answers = match committed {
            Ok((conn, answers)) => {
                own = Some(conn);
                metrics.observe_commit_group(group.len());
                answers.into_iter().map(Ok).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = group.len(), "group commit rolled back");
                let failed = GroupFailed::from_sqlx(&e);
                vec![Err(failed); group.len()]
            }
        };
        for (job, answer) in group.drain(..).zip(answers) {
            // A caller past its deadline has answered 503 and gone; what the
            // group committed for it stands, and its retry will read it.
            let _ = job.answer.send(answer);
        }
    }
}

/// Runs every job's step 5 in one transaction and commits it once.
async fn commit_group(
    conn: &mut SqliteConnection,
    group: &[Job],
) -> Result<Vec<Result<BookOutcome, StoredRow>>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut answers = Vec::with_capacity(group.len());
    for job in group {
        answers.push(book_one(&mut tx, &job.request).await?);
    }
    commit_point((), |hold| async move {
        if let Some(hold) = hold {
            tokio::time::sleep(hold).await;
        }
        tx.commit().await
    })
    .await?;
    Ok(answers)
}

/// One request's step 5 inside the group's transaction.
async fn book_one(
    conn: &mut SqliteConnection,
    r: &Request,
) -> Result<Result<BookOutcome, StoredRow>, sqlx::Error> {
    let key = &r.key;
    let booking = &r.booking;
    let book = if seeded_bug!(NoUniqueIndex) {
        BOOK_CHECKED
    } else {
        BOOK
    };
    // In the order of `BOOK`'s parameters, $1 to $16.
    let recorded = sqlx::query(book)
        .bind(&key.user_id) // $1
        .bind(key.kind) // $2
        .bind(&key.key) // $3
        .bind(&r.fingerprint) // $4
        .bind(&booking.resource_id) // $5
        .bind(booking.date) // $6
        .bind(booking.created_at) // $7
        .bind(r.expires_at) // $8
        .bind(i64::from(r.key_quota)) // $9
        .bind(booking.id) // $10
        .bind(i32::from(r.created.status)) // $11
        .bind(&r.created.body) // $12
        .bind(i32::from(r.already_booked.status)) // $13
        .bind(&r.already_booked.body) // $14
        .bind(r.refusal_expires_at) // $15
        .bind(&booking.user_id) // $16
        .fetch_optional(&mut *conn)
        .await?;
    let Some(recorded) = recorded else {
        return not_claimed(conn, r).await;
    };
    if recorded.try_get::<Option<uuid::Uuid>, _>("booking_id")? == Some(booking.id) {
        return Ok(Ok(BookOutcome::Created));
    }
    if seeded_bug!(AlreadyBookedNotRemembered) {
        // Seeded bug: a refusal is not worth remembering.
        sqlx::query(FORGET_REFUSAL)
            .bind(&key.user_id)
            .bind(key.kind)
            .bind(&key.key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Ok(BookOutcome::AlreadyBooked))
}

/// Nothing was written for this request: the key has a live outcome, or
/// (no live row) the quota refused a key new to the store.
async fn not_claimed(
    conn: &mut SqliteConnection,
    r: &Request,
) -> Result<Result<BookOutcome, StoredRow>, sqlx::Error> {
    let key = &r.key;
    let row = sqlx::query(READ_KEY)
        .bind(&key.user_id)
        .bind(key.kind)
        .bind(&key.key)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = row {
        let stored = stored_row(&row)?;
        if stored.expires_at > r.booking.created_at {
            return Ok(Err(stored));
        }
    }
    if r.key_quota == 0 {
        // Neither a live row nor a quota: the insert cannot have been refused.
        return Err(sqlx::Error::RowNotFound);
    }
    let frees_at = sqlx::query_scalar(FIRST_KEY_EXPIRY)
        .bind(&key.user_id)
        .bind(r.booking.created_at)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Ok(BookOutcome::OverQuota { frees_at }))
}
