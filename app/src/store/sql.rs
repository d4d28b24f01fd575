//! PostgreSQL and SQLite stores.
//!
//! Both dialects accept the same SQL here (`$n` parameters, `ON CONFLICT …
//! DO NOTHING` on the partial unique index, `RETURNING`), so the code is
//! written once in [`sql_store!`]. A macro rather than generics because
//! sqlx's bounds over `Database` for executors, binds and decodes would
//! drown the SQL that a reader is here to see. Step 5 alone differs:
//! PostgreSQL runs it as one autocommitted statement (`PG_BOOK`), SQLite
//! step by step in a transaction shared by a group of requests
//! ([`super::group_commit`]).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use uuid::Uuid;

use super::group_commit;
use super::pg_conns::HotConnections;
use super::step5::{commit_point, existing_outcome, stored_row, FORGET_REFUSAL, READ_KEY};
use super::{BookCommand, BookOutcome, Cancellation, ListFilter, Store, LIST_LIMIT};
use crate::coordinator::CompletedRecord;
use crate::deps::{Classify, DependencyError, Guard};
use crate::domain::{Booking, BookingDate, BookingStatus, ResourceId, UserId};
use crate::domain::{KeyKind, KeyScope};

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

const FIND_OUTCOME: &str =
    "SELECT fingerprint, status_code, response_body, expires_at FROM idempotency_records \
     WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3 AND expires_at > $4 \
     AND status_code IS NOT NULL";

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
                        self.hot_fetch_optional(
                            sqlx::query(FIND_OUTCOME)
                                .bind(&key.user_id)
                                .bind(key.kind)
                                .bind(&key.key)
                                .bind(now),
                        ),
                    )
                    .await?;
                let Some(row) = row else { return Ok(None) };
                stored_row(&row)
                    .map_err(|e| self.guard.corrupt("find_outcome", e.to_string()))?
                    .completed(&self.guard, "find_outcome")
                    .map(Some)
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

/// Connections per replica, 16 in all: enough for two cores, small enough
/// that several replicas stay well under PostgreSQL's default
/// `max_connections`. Most go to the protocol's hot statements
/// ([`HotConnections`]); sqlx's pool serves the rest (lists, cancels,
/// quota counts, replays that missed Redis, probes).
const HOT_POOL_SIZE: usize = 10;
const POOL_SIZE: u32 = 6;

pub struct PostgresStore {
    pool: PgPool,
    hot: HotConnections,
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
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| startup.corrupt("connect", e.to_string()))?;
        let hot = HotConnections::new(options.clone(), HOT_POOL_SIZE)
            .map_err(|e| startup.corrupt("connect", e.to_string()))?;
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
                    // of being replaced silently; each statement saves a
                    // round trip.
                    .test_before_acquire(false)
                    .connect_with(options),
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
        Ok(Self { pool, hot, guard })
    }

    /// A hot statement (step 5, and the outcome lookup of a request whose
    /// slot is busy: the losers of a race) on [`HotConnections`].
    async fn hot_fetch_optional(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Option<sqlx::postgres::PgRow>, sqlx::Error> {
        let mut conn = self.hot.checkout().await?;
        let row = query.fetch_optional(conn.connection()).await;
        conn.finish(row)
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
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Step 5's writer task (it takes `writer` for each group).
    group: group_commit::GroupCommit,
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
                    // Four for readers, cancels and purges, and the group
                    // commit writer's own (`group_commit`), which it never
                    // gives back while it runs: a `close()` of this pool
                    // would wait for the store to be dropped.
                    .max_connections(5)
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
        let writer = Arc::new(tokio::sync::Mutex::new(()));
        Ok(Self {
            group: group_commit::GroupCommit::start(
                pool.clone(),
                writer.clone(),
                guard.metrics.clone(),
            ),
            pool,
            guard,
            writer,
        })
    }

    /// SQLite has no round trip to save: its hot statements use the pool.
    async fn hot_fetch_optional<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Option<sqlx::sqlite::SqliteRow>, sqlx::Error> {
        query.fetch_optional(&self.pool).await
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
    /// Step 5, through the group commit (see [`super::group_commit`]).
    async fn book_tx(&self, cmd: &BookCommand<'_>) -> Result<BookOutcome, DependencyError> {
        let request = group_commit::Request {
            key: cmd.key.clone(),
            fingerprint: cmd.fingerprint.to_owned(),
            expires_at: cmd.expires_at,
            refusal_expires_at: cmd.refusal_expires_at,
            booking: cmd.booking.clone(),
            created: cmd.created.clone(),
            already_booked: cmd.already_booked.clone(),
            key_quota: cmd.key_quota,
        };
        // One deadline covers the wait for the group and its commit.
        let outcome = self.guard.run("book", self.group.book(request)).await?;
        existing_outcome(&self.guard, outcome)
    }
}

/// Step 5 for PostgreSQL as one autocommitted statement (one round trip;
/// it was BEGIN, this statement, COMMIT, and a quota count before them):
/// book unless the key has a live outcome or is new to a user already
/// holding `$16` live keys, then record the outcome, inserting the key's
/// row or taking over an expired one. No row back means the key's live
/// outcome was seen, and nothing was written; an `over_quota` row means the
/// quota refused the key, nothing written either, with when the user's
/// first live key expires. If a concurrent request with the same key
/// commits its outcome while this statement waits on the key's primary
/// key, the statement raises `KEY_DECIDED_CONCURRENTLY` (migration 0002),
/// so that it fails as a whole and any booking it made is undone; the
/// existing outcome is then the answer. The unique partial index decides
/// every race on the slot, as in SQLite's step-by-step transaction. The
/// quota counts at most `$16` rows of one index range (the primary key
/// starts with `user_id`), so its cost stays bounded by the quota.
///
/// A refusal locks the booking that holds the slot (`DO UPDATE … WHERE
/// FALSE` changes nothing but locks the conflicting row; `DO NOTHING`
/// would not) until the refusal is committed. A cancel of that booking
/// waits for it, and its delete of the slot's derived outcomes then sees
/// the refusal. Without the lock, a cancel that ran while the statement
/// was between its conflict check and its commit missed the refusal, which
/// then answered `ALREADY_BOOKED` for the freed slot for the derived key's
/// whole retention. The other order needs nothing: a statement that meets
/// a booking being cancelled waits for the cancel and then books.
const PG_BOOK: &str = "WITH live AS (\
        SELECT 1 FROM idempotency_records \
        WHERE user_id = $1 AND key_kind = $2 AND idem_key = $3 AND expires_at > $7\
    ), over_quota AS (\
        SELECT 1 WHERE $16 > 0 AND NOT EXISTS (SELECT 1 FROM live) AND \
        (SELECT COUNT(*) FROM (SELECT 1 AS one FROM idempotency_records \
            WHERE user_id = $1 AND expires_at > $7 LIMIT $16) AS recent) >= $16\
    ), go AS (\
        SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM live) AND NOT EXISTS (SELECT 1 FROM over_quota)\
    ), booked AS (\
        INSERT INTO bookings (id, user_id, resource_id, date, status, created_at, key_kind, idem_key) \
        SELECT $8, $9, $5, $6, 'confirmed', $7, $2, $3 FROM go \
        ON CONFLICT (resource_id, date) WHERE status = 'confirmed' \
        DO UPDATE SET status = bookings.status WHERE FALSE \
        RETURNING id\
    ), recorded AS (\
        INSERT INTO idempotency_records AS r \
        (user_id, key_kind, idem_key, fingerprint, resource_id, date, created_at, expires_at, \
         status_code, response_body, booking_id) \
        SELECT $1, $2, $3, $4, $5, $6, $7, \
        CASE WHEN EXISTS (SELECT 1 FROM booked) THEN $10 ELSE $15 END, \
        CASE WHEN EXISTS (SELECT 1 FROM booked) THEN $11 ELSE $13 END, \
        CASE WHEN EXISTS (SELECT 1 FROM booked) THEN $12 ELSE $14 END, \
        (SELECT id FROM booked) FROM go \
        ON CONFLICT (user_id, key_kind, idem_key) DO UPDATE SET \
        fingerprint = EXCLUDED.fingerprint, resource_id = EXCLUDED.resource_id, date = EXCLUDED.date, \
        created_at = EXCLUDED.created_at, \
        expires_at = CASE WHEN r.expires_at <= $7 THEN EXCLUDED.expires_at \
            ELSE booking_key_decided_concurrently() END, \
        status_code = EXCLUDED.status_code, response_body = EXCLUDED.response_body, \
        booking_id = EXCLUDED.booking_id \
        RETURNING status_code, booking_id\
    ) \
    SELECT status_code, booking_id, FALSE AS over_quota, NULL::timestamptz AS frees_at FROM recorded \
    UNION ALL \
    SELECT NULL, NULL, TRUE, (SELECT MIN(expires_at) FROM idempotency_records \
        WHERE user_id = $1 AND expires_at > $7) FROM over_quota";

/// Where `PG_BOOK` leaves the slot to the unique partial index (the seeded
/// bug `no-unique-index` replaces it with a check).
const SLOT_CONFLICT: &str = "FROM go ON CONFLICT (resource_id, date) WHERE status = 'confirmed' \
        DO UPDATE SET status = bookings.status WHERE FALSE";

/// The part of `PG_BOOK` that locks the slot's holder on a refusal.
const LOCK_THE_HOLDER: &str = "DO UPDATE SET status = bookings.status WHERE FALSE";

/// The SQLSTATE that `booking_key_decided_concurrently()` raises.
const KEY_DECIDED_CONCURRENTLY: &str = "BK001";

fn key_decided_concurrently(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some(KEY_DECIDED_CONCURRENTLY))
}

/// `PG_BOOK` for this request: the seeded bug `no-unique-index` moves the
/// slot check into the insert (check-then-act, which two overlapping
/// statements both pass), `refusal-leaves-holder-unlocked` refuses without
/// locking the holder; a `before_commit` delay (`hold`) is spent inside the
/// statement once the slot is decided (booked or refused; not when the key's
/// live outcome or the quota stopped it) and before the outcome is
/// recorded, so the uncommitted booking holds its slot in the index, or the
/// refusal stays uncommitted, as a slow commit would.
fn pg_book_sql(hold: Option<Duration>) -> std::borrow::Cow<'static, str> {
    let unlocked = seeded_bug!(RefusalLeavesHolderUnlocked);
    if !seeded_bug!(NoUniqueIndex) && !unlocked && hold.is_none() {
        return PG_BOOK.into();
    }
    let mut sql = PG_BOOK.to_string();
    if seeded_bug!(NoUniqueIndex) {
        sql = sql.replace(
            SLOT_CONFLICT,
            "FROM go WHERE NOT EXISTS (SELECT 1 FROM bookings \
             WHERE resource_id = $5 AND date = $6 AND status = 'confirmed')",
        );
    }
    // (After no-unique-index, whose check locks nothing either.)
    if unlocked {
        sql = sql.replace(LOCK_THE_HOLDER, "DO NOTHING");
    }
    if let Some(hold) = hold {
        sql = sql
            .replace(
                "), recorded AS (INSERT INTO idempotency_records AS r",
                &format!(
                    "), held AS (SELECT pg_sleep({:.3}) FROM go, (SELECT count(*) FROM booked) AS decided), recorded AS (INSERT INTO idempotency_records AS r",
                    hold.as_secs_f64()
                ),
            )
            .replace(
                "(SELECT id FROM booked) FROM go",
                "(SELECT id FROM booked) FROM go WHERE (SELECT count(*) FROM held) >= 0",
            );
    }
    sql.into()
}

/// Seeded bug `no-unique-index`: the index that makes double booking impossible is dropped.
const DROP_SLOT_INDEX: &str = "DROP INDEX IF EXISTS bookings_one_confirmed_per_slot";

impl PostgresStore {
    async fn book_tx(&self, cmd: &BookCommand<'_>) -> Result<BookOutcome, DependencyError> {
        let key = cmd.key;
        let booking = cmd.booking;
        let outcome = self
            .guard
            .run("book", async {
                let decided = commit_point(Some(BookOutcome::Created), |hold| async move {
                    let sql = pg_book_sql(hold);
                    let row = self
                        .hot_fetch_optional(
                            sqlx::query(&sql)
                                .bind(&key.user_id)
                                .bind(key.kind)
                                .bind(&key.key)
                                .bind(cmd.fingerprint)
                                .bind(&booking.resource_id)
                                .bind(booking.date)
                                .bind(booking.created_at)
                                .bind(booking.id)
                                .bind(&booking.user_id)
                                .bind(cmd.expires_at)
                                .bind(i32::from(cmd.created.status))
                                .bind(&cmd.created.body)
                                .bind(i32::from(cmd.already_booked.status))
                                .bind(&cmd.already_booked.body)
                                .bind(cmd.refusal_expires_at)
                                .bind(i64::from(cmd.key_quota)),
                        )
                        .await;
                    match row {
                        Ok(Some(row)) if row.try_get::<bool, _>("over_quota")? => {
                            Ok(Some(BookOutcome::OverQuota {
                                frees_at: row.try_get("frees_at")?,
                            }))
                        }
                        Ok(Some(row)) => {
                            let booked: Option<Uuid> = row.try_get("booking_id")?;
                            Ok(Some(if booked.is_some() {
                                BookOutcome::Created
                            } else {
                                BookOutcome::AlreadyBooked
                            }))
                        }
                        Ok(None) => Ok(None),
                        Err(e) if key_decided_concurrently(&e) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await?;
                match decided {
                    Some(BookOutcome::AlreadyBooked) if seeded_bug!(AlreadyBookedNotRemembered) => {
                        // Seeded bug: a refusal is not worth remembering.
                        sqlx::query(FORGET_REFUSAL)
                            .bind(&key.user_id)
                            .bind(key.kind)
                            .bind(&key.key)
                            .execute(&self.pool)
                            .await?;
                        Ok(Ok(BookOutcome::AlreadyBooked))
                    }
                    Some(outcome) => Ok(Ok(outcome)),
                    None => {
                        let row = sqlx::query(READ_KEY)
                            .bind(&key.user_id)
                            .bind(key.kind)
                            .bind(&key.key)
                            .fetch_one(&self.pool)
                            .await?;
                        Ok::<_, sqlx::Error>(Err(stored_row(&row)?))
                    }
                }
            })
            .await?;
        existing_outcome(&self.guard, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `before_commit` delay must land inside the statement, after the
    /// slot is decided and before the outcome (scenarios 14 and 20 rest on
    /// it): a pattern that stopped matching would leave the statement
    /// unchanged. So must the seeded bugs' replacements.
    #[test]
    fn a_held_statement_sleeps_after_deciding_the_slot_and_before_recording() {
        assert_eq!(pg_book_sql(None), PG_BOOK);
        assert!(
            PG_BOOK.contains(SLOT_CONFLICT),
            "no-unique-index would change nothing"
        );
        assert!(
            SLOT_CONFLICT.ends_with(LOCK_THE_HOLDER),
            "refusal-leaves-holder-unlocked would change nothing"
        );
        let held = pg_book_sql(Some(Duration::from_millis(800)));
        let sleep = held.find(
            "held AS (SELECT pg_sleep(0.800) FROM go, (SELECT count(*) FROM booked) AS decided)",
        );
        let used = held.find("FROM go WHERE (SELECT count(*) FROM held) >= 0");
        let booked = held.find("booked AS (");
        let record = held.find("recorded AS (INSERT INTO idempotency_records AS r");
        assert!(
            matches!((booked, sleep, record, used), (Some(b), Some(s), Some(r), Some(u)) if b < s && s < r && r < u),
            "{held}"
        );
    }
}
