//! PostgreSQL and SQLite stores.
//!
//! Both dialects accept the same SQL here (`$n` parameters, `ON CONFLICT …
//! DO NOTHING` on the partial unique index, `RETURNING`), so the code is
//! written once in [`sql_store!`]. A macro rather than generics because
//! sqlx's bounds over `Database` for executors, binds and decodes would
//! drown the SQL that a reader is here to see. Step 5 alone differs:
//! PostgreSQL runs it as one statement (`PG_BOOK`), SQLite step by step.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use uuid::Uuid;

use super::{BookCommand, BookOutcome, Cancellation, ListFilter, LiveKeys, Store, LIST_LIMIT};
use crate::coordinator::CompletedRecord;
use crate::deps::{Classify, DependencyError, Guard};
use crate::domain::{Booking, BookingDate, BookingStatus, ResourceId, UserId};
use crate::domain::{KeyKind, KeyScope};
use crate::response::StoredResponse;

impl Classify for sqlx::Error {
    fn is_unavailable(&self) -> bool {
        match self {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(e) => {
                let code = e.code().unwrap_or_default();
                // PostgreSQL: connection exceptions (08), insufficient
                // resources (53), operator intervention such as shutdown (57),
                // serialization failure and deadlock (40). SQLite: BUSY, LOCKED.
                ["08", "53", "57", "40"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || ["5", "6", "261", "262", "517"].contains(&code.as_ref())
            }
            _ => false,
        }
    }
}

/// Deletes the key's outcome if it has expired, so the key can be used afresh.
const DELETE_EXPIRED_KEY: &str = "DELETE FROM idempotency_records \
     WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3 AND expires_at <= $4";

/// Claims the key inside the transaction. A concurrent transaction holding
/// the same key makes this wait until it commits (then nothing is inserted
/// and its outcome is read) or rolls back (then this insert goes ahead).
const CLAIM_KEY: &str = "INSERT INTO idempotency_records \
     (user_id, key_kind, idem_key, fingerprint, resource_id, date, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (user_id, key_kind, idem_key) DO NOTHING";

const READ_KEY: &str = "SELECT fingerprint, status_code, response_body FROM idempotency_records \
     WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3";

const FIND_OUTCOME: &str =
    "SELECT fingerprint, status_code, response_body FROM idempotency_records \
     WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3 AND expires_at > $4 \
     AND status_code IS NOT NULL";

/// The unique partial index decides: zero rows inserted means the slot
/// already has a confirmed booking.
const INSERT_BOOKING: &str = "INSERT INTO bookings \
     (id, user_id, resource_id, date, status, created_at, key_kind, idem_key) \
     VALUES ($1, $2, $3, $4, 'confirmed', $5, $6, $7) \
     ON CONFLICT (resource_id, date) WHERE status = 'confirmed' DO NOTHING";

const RECORD_OUTCOME: &str = "UPDATE idempotency_records \
     SET status_code = $4, response_body = $5, booking_id = $6, expires_at = $7 \
     WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3";

/// Counts at most `$5` rows of one index range (the primary key starts with
/// `user_id`), so the cost stays bounded by the quota, and looks the key up.
const LIVE_KEYS: &str = "SELECT \
     (SELECT COUNT(*) FROM (SELECT 1 AS one FROM idempotency_records \
        WHERE user_id = $1 AND expires_at > $4 LIMIT $5) AS recent) AS live, \
     (SELECT COUNT(*) FROM idempotency_records \
        WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3 AND expires_at > $4) AS this_key";

/// When the user's first live key expires (only asked when over the quota).
const NEXT_KEY_EXPIRY: &str = "SELECT MIN(expires_at) AS next_expiry FROM idempotency_records \
     WHERE user_id = $1 AND expires_at > $2";

const BOOKING_COLUMNS: &str = "id, user_id, resource_id, date, status, created_at, cancelled_at";

const CANCEL: &str = "UPDATE bookings SET status = 'cancelled', cancelled_at = $3 \
     WHERE id = $1 AND user_id = $2 AND status = 'confirmed'";

/// Seeded bug `cancel-trusts-asserted-owner`: the caller is not compared with the owner.
const CANCEL_ANYONES: &str = "UPDATE bookings SET status = 'cancelled', cancelled_at = $3 \
     WHERE id = $1 AND CAST($2 AS TEXT) IS NOT NULL AND status = 'confirmed'";

/// Server-derived keys of a freed slot are forgotten, so the slot can be
/// booked again right away without a client key.
const FORGET_DERIVED_KEYS: &str = "DELETE FROM idempotency_records \
     WHERE key_kind = 'derived' AND resource_id = $1 AND date = $2 \
     RETURNING user_id, idem_key";

const PURGE_EXPIRED: &str = "DELETE FROM idempotency_records WHERE expires_at <= $1";

const BOOKED_RESOURCES: &str =
    "SELECT resource_id FROM bookings WHERE date = $1 AND status = 'confirmed' ORDER BY resource_id";

/// Seeded bug `availability-counts-cancelled`: the status filter is missing.
const BOOKED_RESOURCES_ANY_STATUS: &str =
    "SELECT DISTINCT resource_id FROM bookings WHERE date = $1 ORDER BY resource_id";

fn booked_resources_sql() -> &'static str {
    if seeded_bug!(AvailabilityCountsCancelled) {
        BOOKED_RESOURCES_ANY_STATUS
    } else {
        BOOKED_RESOURCES
    }
}

fn select_booking() -> String {
    let owner = if seeded_bug!(CancelTrustsAssertedOwner) {
        "CAST($2 AS TEXT) IS NOT NULL"
    } else {
        "user_id = $2"
    };
    format!("SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1 AND {owner}")
}

fn cancel_sql() -> &'static str {
    if seeded_bug!(CancelTrustsAssertedOwner) {
        CANCEL_ANYONES
    } else {
        CANCEL
    }
}

fn select_list() -> String {
    // Seeded bug `list-ignores-user`: the user filter is lost.
    let user = if seeded_bug!(ListIgnoresUser) {
        "CAST($1 AS TEXT) IS NOT NULL"
    } else {
        "user_id = $1"
    };
    format!(
        "SELECT {BOOKING_COLUMNS} FROM bookings WHERE {user} \
         AND ($2 IS NULL OR resource_id = $2) \
         AND ($3 IS NULL OR date = $3) \
         AND ($4 IS NULL OR status = $4) \
         ORDER BY created_at DESC, id DESC LIMIT {LIST_LIMIT}"
    )
}

fn decode_booking<R: Row>(row: &R) -> Result<Booking, sqlx::Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> UserId: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> ResourceId: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> BookingDate: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<DateTime<Utc>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let status: String = row.try_get("status")?;
    let status = BookingStatus::parse(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "status".into(),
        source: format!("unknown booking status {status:?}").into(),
    })?;
    Ok(Booking {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        resource_id: row.try_get("resource_id")?,
        date: row.try_get("date")?,
        status,
        created_at: row.try_get("created_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
    })
}

/// The fingerprint, status and body of a key's stored row (`READ_KEY`).
type StoredRow = (String, Option<i32>, Option<String>);

fn stored_row<R: Row>(row: &R) -> Result<StoredRow, sqlx::Error>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok((
        row.try_get("fingerprint")?,
        row.try_get("status_code")?,
        row.try_get("response_body")?,
    ))
}

macro_rules! sql_store {
    ($store:ident, $pool:ty) => {
        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> &'static str {
                self.guard.dependency
            }

            async fn ping(&self) -> Result<(), DependencyError> {
                self.guard
                    .run("ping", sqlx::query("SELECT 1").execute(&self.pool))
                    .await
                    .map(drop)
            }

            async fn book(&self, cmd: &BookCommand<'_>) -> Result<BookOutcome, DependencyError> {
                self.book_tx(cmd).await
            }

            async fn find_outcome(
                &self,
                key: &KeyScope,
                now: DateTime<Utc>,
            ) -> Result<Option<CompletedRecord>, DependencyError> {
                let row = self
                    .guard
                    .run(
                        "find_outcome",
                        sqlx::query(FIND_OUTCOME)
                            .bind(&key.user_id)
                            .bind(key.kind)
                            .bind(&key.key)
                            .bind(now)
                            .fetch_optional(&self.pool),
                    )
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let decode = || -> Result<CompletedRecord, sqlx::Error> {
                    let status: i32 = row.try_get("status_code")?;
                    Ok(CompletedRecord {
                        fingerprint: row.try_get("fingerprint")?,
                        response: StoredResponse {
                            status: u16::try_from(status).unwrap_or(500),
                            body: row.try_get("response_body")?,
                        },
                    })
                };
                decode()
                    .map(Some)
                    .map_err(|e| self.guard.corrupt("find_outcome", e.to_string()))
            }

            async fn live_keys(
                &self,
                key: &KeyScope,
                now: DateTime<Utc>,
                limit: u32,
            ) -> Result<LiveKeys, DependencyError> {
                let (live, this_key): (i64, i64) = self
                    .guard
                    .run(
                        "live_keys",
                        sqlx::query_as(LIVE_KEYS)
                            .bind(&key.user_id)
                            .bind(key.kind)
                            .bind(&key.key)
                            .bind(now)
                            .bind(i64::from(limit))
                            .fetch_one(&self.pool),
                    )
                    .await?;
                let count = u64::try_from(live).unwrap_or(0);
                let includes_key = this_key > 0;
                let next_expiry = if count >= u64::from(limit) && !includes_key {
                    self.guard
                        .run(
                            "live_keys",
                            sqlx::query_scalar(NEXT_KEY_EXPIRY)
                                .bind(&key.user_id)
                                .bind(now)
                                .fetch_one(&self.pool),
                        )
                        .await?
                } else {
                    None
                };
                Ok(LiveKeys {
                    count,
                    includes_key,
                    next_expiry,
                })
            }

            async fn list(
                &self,
                user: &UserId,
                filter: &ListFilter,
            ) -> Result<Vec<Booking>, DependencyError> {
                let sql = select_list();
                let rows = self
                    .guard
                    .run(
                        "list",
                        sqlx::query(&sql)
                            .bind(user)
                            .bind(filter.resource.as_ref())
                            .bind(filter.date)
                            .bind(filter.status.map(|s| s.as_str()))
                            .fetch_all(&self.pool),
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        decode_booking(row).map_err(|e| self.guard.corrupt("list", e.to_string()))
                    })
                    .collect()
            }

            async fn cancel(
                &self,
                id: Uuid,
                user: &UserId,
                now: DateTime<Utc>,
            ) -> Result<Option<Cancellation>, DependencyError> {
                let select = select_booking();
                let found = self
                    .guard
                    .run("cancel", async {
                        let _turn = self.write_turn().await;
                        let mut tx = self.pool.begin().await?;
                        let cancelled = sqlx::query(cancel_sql())
                            .bind(id)
                            .bind(user)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        let row = sqlx::query(&select)
                            .bind(id)
                            .bind(user)
                            .fetch_optional(&mut *tx)
                            .await?;
                        let Some(row) = row else {
                            tx.rollback().await?;
                            return Ok(None);
                        };
                        let booking = decode_booking(&row)?;
                        let mut forgotten = Vec::new();
                        if cancelled == 1 && !seeded_bug!(CancelKeepsDerivedKeys) {
                            let rows = sqlx::query(FORGET_DERIVED_KEYS)
                                .bind(&booking.resource_id)
                                .bind(booking.date)
                                .fetch_all(&mut *tx)
                                .await?;
                            for row in rows {
                                forgotten.push(KeyScope {
                                    user_id: row.try_get("user_id")?,
                                    kind: KeyKind::Derived,
                                    key: row.try_get("idem_key")?,
                                });
                            }
                        }
                        tx.commit().await?;
                        Ok::<_, sqlx::Error>(Some(Cancellation { booking, forgotten }))
                    })
                    .await?;
                Ok(found)
            }

            async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, DependencyError> {
                self.guard
                    .run("purge_expired", async {
                        let _turn = self.write_turn().await;
                        sqlx::query(PURGE_EXPIRED)
                            .bind(now)
                            .execute(&self.pool)
                            .await
                    })
                    .await
                    .map(|done| done.rows_affected())
            }

            async fn booked_resources(
                &self,
                date: BookingDate,
            ) -> Result<Vec<ResourceId>, DependencyError> {
                let rows = self
                    .guard
                    .run(
                        "booked_resources",
                        sqlx::query(booked_resources_sql())
                            .bind(date)
                            .fetch_all(&self.pool),
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        row.try_get::<ResourceId, _>("resource_id")
                            .map_err(|e| self.guard.corrupt("booked_resources", e.to_string()))
                    })
                    .collect()
            }
        }
    };
}

/// Connections per replica: enough for two cores, small enough that several
/// replicas stay well under PostgreSQL's default `max_connections`.
const POOL_SIZE: u32 = 16;

pub struct PostgresStore {
    pool: PgPool,
    guard: Guard,
}

impl PostgresStore {
    /// PostgreSQL runs writers side by side; row locks and the unique index
    /// order them.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        None
    }

    pub async fn connect(url: &str, guard: Guard) -> Result<Self, DependencyError> {
        // Requests are cut at the guard's deadline; the pool's own acquire
        // timeout only bounds start-up.
        let startup = guard.for_startup();
        let pool = startup
            .run(
                "connect",
                PgPoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .acquire_timeout(startup.timeout)
                    // No ping on every checkout: sqlx already pings each
                    // connection when it comes back to the pool (and drops
                    // it if that fails). What this gives up: after a database
                    // restart, each idle connection fails one request with
                    // 503 (the client's retry gets a new connection) instead
                    // of being replaced silently; each create saves a round
                    // trip.
                    .test_before_acquire(false)
                    .connect(url),
            )
            .await?;
        startup
            .run(
                "migrate",
                sqlx::migrate!("./migrations/postgres").run(&pool),
            )
            .await?;
        if seeded_bug!(NoUniqueIndex) {
            startup
                .run("migrate", sqlx::query(DROP_SLOT_INDEX).execute(&pool))
                .await?;
        }
        Ok(Self { pool, guard })
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
    guard: Guard,
    /// SQLite lets one transaction write at a time. Writers that find the
    /// database locked sleep in SQLite's busy handler (1, 2, 5, … 100 ms)
    /// and retry, which made the embedded default's p99 hundreds of
    /// milliseconds under load; queued here, in arrival order, they wait
    /// only for the writer ahead of them.
    writer: tokio::sync::Mutex<()>,
}

impl SqliteStore {
    /// This replica's turn to write (see `writer`). Other processes on the
    /// same file still meet SQLite's busy handler, as before.
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        Some(self.writer.lock().await)
    }

    pub async fn connect(url: &str, guard: Guard) -> Result<Self, DependencyError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| DependencyError::Internal {
                dependency: "sqlite",
                operation: "connect",
                source: Box::new(e),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A booking acknowledged with 201 must survive a crash of the process or the machine.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let startup = guard.for_startup();
        let pool = startup
            .run(
                "connect",
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(startup.timeout)
                    // A file does not drop connections; a ping is a hop to
                    // the connection's worker thread and back for nothing.
                    .test_before_acquire(false)
                    .connect_with(options),
            )
            .await?;
        startup
            .run("migrate", sqlx::migrate!("./migrations/sqlite").run(&pool))
            .await?;
        if seeded_bug!(NoUniqueIndex) {
            startup
                .run("migrate", sqlx::query(DROP_SLOT_INDEX).execute(&pool))
                .await?;
        }
        Ok(Self {
            pool,
            guard,
            writer: tokio::sync::Mutex::new(()),
        })
    }
}

impl Classify for sqlx::migrate::MigrateError {
    fn is_unavailable(&self) -> bool {
        match self {
            sqlx::migrate::MigrateError::Execute(e) => e.is_unavailable(),
            _ => false,
        }
    }
}

sql_store!(PostgresStore, PgPool);
sql_store!(SqliteStore, SqlitePool);

impl SqliteStore {
    /// Step 5 as separate statements in one transaction. SQLite has no
    /// data-modifying CTEs; in process, extra statements cost no round trips.
    async fn book_tx(&self, cmd: &BookCommand<'_>) -> Result<BookOutcome, DependencyError> {
        let key = cmd.key;
        let booking = cmd.booking;
        let date = booking.date;
        // One deadline covers the whole transaction; if it passes,
        // the transaction is dropped and rolled back.
        let outcome = self
            .guard
            .run("book", async {
                let _turn = self.write_turn().await;
                let mut tx = self.pool.begin().await?;
                sqlx::query(DELETE_EXPIRED_KEY)
                    .bind(&key.user_id)
                    .bind(key.kind)
                    .bind(&key.key)
                    .bind(booking.created_at)
                    .execute(&mut *tx)
                    .await?;
                let claimed = sqlx::query(CLAIM_KEY)
                    .bind(&key.user_id)
                    .bind(key.kind)
                    .bind(&key.key)
                    .bind(cmd.fingerprint)
                    .bind(&booking.resource_id)
                    .bind(date)
                    .bind(booking.created_at)
                    .bind(cmd.expires_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if claimed == 0 {
                    let row = sqlx::query(READ_KEY)
                        .bind(&key.user_id)
                        .bind(key.kind)
                        .bind(&key.key)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.rollback().await?;
                    return Ok(Err(stored_row(&row)?));
                }
                let insert = if seeded_bug!(NoUniqueIndex) {
                    INSERT_BOOKING_CHECKED
                } else {
                    INSERT_BOOKING
                };
                let inserted = sqlx::query(insert)
                    .bind(booking.id)
                    .bind(&booking.user_id)
                    .bind(&booking.resource_id)
                    .bind(date)
                    .bind(booking.created_at)
                    .bind(key.kind)
                    .bind(&key.key)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let (outcome, response, booking_id, expires_at) = if inserted == 1 {
                    (
                        BookOutcome::Created,
                        cmd.created,
                        Some(booking.id),
                        cmd.expires_at,
                    )
                } else {
                    let refused = (cmd.already_booked, cmd.refusal_expires_at);
                    (BookOutcome::AlreadyBooked, refused.0, None, refused.1)
                };
                sqlx::query(RECORD_OUTCOME)
                    .bind(&key.user_id)
                    .bind(key.kind)
                    .bind(&key.key)
                    .bind(i32::from(response.status))
                    .bind(&response.body)
                    .bind(booking_id)
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await?;
                commit_step5(tx, &outcome).await?;
                Ok::<_, sqlx::Error>(Ok(outcome))
            })
            .await?;
        existing_outcome(&self.guard, outcome)
    }
}

/// Step 5 for PostgreSQL in one statement (three round trips with BEGIN and
/// COMMIT instead of six): book unless the key has a live outcome, then
/// record the outcome, inserting the key's row or taking over an expired
/// one. No row back means a live outcome exists (seen, or committed by a
/// concurrent transaction with the same key while this one waited on the
/// key's primary key): the transaction is rolled back, undoing any booking
/// it made, and the existing outcome is the answer. The unique partial index
/// decides every race on the slot, as in SQLite's step-by-step statements.
const PG_BOOK: &str = "WITH live AS (\
        SELECT 1 FROM idempotency_records \
        WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3 AND expires_at > $7\
    ), booked AS (\
        INSERT INTO bookings (id, user_id, resource_id, date, status, created_at, key_kind, idem_key) \
        SELECT $8, $9, $5, $6, 'confirmed', $7, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM live) \
        ON CONFLICT (resource_id, date) WHERE status = 'confirmed' DO NOTHING \
        RETURNING id\
    ) \
    INSERT INTO idempotency_records AS r \
        (user_id, key_kind, idem_key, fingerprint, resource_id, date, created_at, expires_at, \
         status_code, response_body, booking_id) \
    SELECT $1, $2, $3, $4, $5, $6, $7, \
        CASE WHEN EXISTS (SELECT 1 FROM booked) THEN $10 ELSE $15 END, \
        CASE WHEN EXISTS (SELECT 1 FROM booked) THEN $11 ELSE $13 END, \
        CASE WHEN EXISTS (SELECT 1 FROM booked) THEN $12 ELSE $14 END, \
        (SELECT id FROM booked) \
    WHERE NOT EXISTS (SELECT 1 FROM live) \
    ON CONFLICT (user_id, key_kind, idem_key) DO UPDATE SET \
        fingerprint = EXCLUDED.fingerprint, resource_id = EXCLUDED.resource_id, date = EXCLUDED.date, \
        created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
        status_code = EXCLUDED.status_code, response_body = EXCLUDED.response_body, \
        booking_id = EXCLUDED.booking_id \
        WHERE r.expires_at <= $7 \
    RETURNING status_code, booking_id";

/// Seeded bug `no-unique-index`: the slot check moves into the insert
/// (check-then-act), which two overlapping transactions both pass.
fn pg_book_sql() -> std::borrow::Cow<'static, str> {
    if !seeded_bug!(NoUniqueIndex) {
        return PG_BOOK.into();
    }
    PG_BOOK
        .replace(
            "WHERE NOT EXISTS (SELECT 1 FROM live) ON CONFLICT (resource_id, date) WHERE status = 'confirmed' DO NOTHING",
            "WHERE NOT EXISTS (SELECT 1 FROM live) AND NOT EXISTS (SELECT 1 FROM bookings \
             WHERE resource_id = $5 AND date = $6 AND status = 'confirmed')",
        )
        .into()
}

/// Seeded bug `no-unique-index`, SQLite's step 5.
const INSERT_BOOKING_CHECKED: &str = "INSERT INTO bookings \
     (id, user_id, resource_id, date, status, created_at, key_kind, idem_key) \
     SELECT $1, $2, $3, $4, 'confirmed', $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM bookings \
     WHERE resource_id = $3 AND date = $4 AND status = 'confirmed')";

/// Seeded bug `no-unique-index`: the index that makes double booking impossible is dropped.
const DROP_SLOT_INDEX: &str = "DROP INDEX IF EXISTS bookings_one_confirmed_per_slot";

impl PostgresStore {
    async fn book_tx(&self, cmd: &BookCommand<'_>) -> Result<BookOutcome, DependencyError> {
        let key = cmd.key;
        let booking = cmd.booking;
        let date = booking.date;
        let outcome = self
            .guard
            .run("book", async {
                let mut tx = self.pool.begin().await?;
                let row = sqlx::query(&pg_book_sql())
                    .bind(&key.user_id)
                    .bind(key.kind)
                    .bind(&key.key)
                    .bind(cmd.fingerprint)
                    .bind(&booking.resource_id)
                    .bind(date)
                    .bind(booking.created_at)
                    .bind(booking.id)
                    .bind(&booking.user_id)
                    .bind(cmd.expires_at)
                    .bind(i32::from(cmd.created.status))
                    .bind(&cmd.created.body)
                    .bind(i32::from(cmd.already_booked.status))
                    .bind(&cmd.already_booked.body)
                    .bind(cmd.refusal_expires_at)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    let row = sqlx::query(READ_KEY)
                        .bind(&key.user_id)
                        .bind(key.kind)
                        .bind(&key.key)
                        .fetch_one(&self.pool)
                        .await?;
                    return Ok(Err(stored_row(&row)?));
                };
                let booked: Option<Uuid> = row.try_get("booking_id")?;
                let outcome = if booked.is_some() {
                    BookOutcome::Created
                } else {
                    BookOutcome::AlreadyBooked
                };
                commit_step5(tx, &outcome).await?;
                Ok::<_, sqlx::Error>(Ok(outcome))
            })
            .await?;
        existing_outcome(&self.guard, outcome)
    }
}

/// The end of step 5 (shared by both stores): the `before_commit` failpoint,
/// then the commit. An injected error looks like a lost connection: the
/// transaction is rolled back and the client gets a 503.
async fn commit_step5<DB: sqlx::Database>(
    tx: sqlx::Transaction<'_, DB>,
    outcome: &BookOutcome,
) -> Result<(), sqlx::Error> {
    if seeded_bug!(AlreadyBookedNotRemembered) && *outcome == BookOutcome::AlreadyBooked {
        // Seeded bug: a refusal is not worth remembering.
        return tx.rollback().await;
    }
    let committed = async {
        crate::failpoints::hit(crate::failpoints::Step::BeforeCommit)
            .await
            .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?;
        tx.commit().await
    }
    .await;
    match committed {
        Err(e) if seeded_bug!(CommitErrorIgnored) => {
            // Seeded bug: "the commit surely went through".
            tracing::warn!(error = %e, "commit failed; answering as if it had not");
            Ok(())
        }
        other => other,
    }
}

/// The `Existing` answer from a key's stored row (shared by both stores).
fn existing_outcome(
    guard: &Guard,
    outcome: Result<BookOutcome, StoredRow>,
) -> Result<BookOutcome, DependencyError> {
    match outcome {
        Ok(outcome) => Ok(outcome),
        Err((fingerprint, Some(status), Some(body))) => {
            let status = u16::try_from(status)
                .map_err(|_| guard.corrupt("book", "stored status out of range"))?;
            Ok(BookOutcome::Existing(CompletedRecord {
                fingerprint,
                response: StoredResponse { status, body },
            }))
        }
        Err(_) => Err(guard.corrupt("book", "committed key without an outcome")),
    }
}
