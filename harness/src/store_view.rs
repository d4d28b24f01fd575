//! The service's store read directly, bypassing the service and its fault
//! proxies: the final state the checkers judge (after a scenario and after
//! each load of the bench), and the bench's seeding of live keys. One module knows the
//! harness's view of the schema; in target mode it only reads (a read-only
//! connection to someone else's database).

use anyhow::{bail, Result};
use sqlx::Row;

use crate::history::BookingRow;

/// A store at `url` (`postgres://…` or `sqlite://…`).
pub struct StoreView {
    url: String,
    read_only: bool,
}

impl StoreView {
    pub fn new(url: &str, read_only: bool) -> StoreView {
        StoreView {
            url: url.to_owned(),
            read_only,
        }
    }

    /// Confirmed bookings of one slot (PostgreSQL stores only).
    pub async fn count_confirmed(&self, resource: &str, date: &str) -> Result<i64> {
        let pool = sqlx::PgPool::connect(&self.url).await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM bookings WHERE resource_id = $1 AND CAST(date AS TEXT) = $2 AND status = 'confirmed'",
        )
        .bind(resource)
        .bind(date)
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok(n)
    }

    /// Adds the completed idempotency keys `from..to` (a 201 outcome kept a
    /// day, owned by 1 000 users) to PostgreSQL and to Redis, as live keys
    /// would be after real traffic, without going through HTTP: the bench's
    /// curve of cost against live keys. Local mode only.
    pub async fn seed_live_keys(&self, redis_port: u16, from: u64, to: u64) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        let pool = sqlx::PgPool::connect(&self.url).await?;
        sqlx::query(
            "INSERT INTO idempotency_records (user_id, key_kind, idem_key, fingerprint, resource_id, \
             date, status_code, response_body, booking_id, created_at, expires_at) \
             SELECT 'seed_' || (g % 1000), 'client', 'seed-' || g, 'fingerprint', 'room_S', \
             date '2100-01-01', 201, repeat('x', 300), NULL, now(), now() + interval '1 day' \
             FROM generate_series($1::bigint, $2::bigint - 1) AS g ON CONFLICT DO NOTHING",
        )
        .bind(from as i64)
        .bind(to as i64)
        .execute(&pool)
        .await?;
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM idempotency_records WHERE user_id LIKE 'seed\\_%'",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        if stored < to as i64 {
            bail!("seeded {stored} live keys into PostgreSQL, wanted {to}");
        }
        let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        // In batches, so Redis is never blocked for long by one script.
        let seed = redis::Script::new(
            "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do \
               local k = 'booking:idem:seed:' .. i \
               redis.call('HSET', k, 'state', 'completed', 'status', '201', 'body', ARGV[3], 'fp', 'fingerprint') \
               redis.call('PEXPIRE', k, 86400000) \
             end return 0",
        );
        let body = "x".repeat(300);
        let mut at = from;
        while at < to {
            let end = (at + 50_000).min(to);
            let _: i64 = seed
                .arg(at)
                .arg(end)
                .arg(&body)
                .invoke_async(&mut conn)
                .await?;
            at = end;
        }
        for probe in [from, to - 1] {
            let there: i64 = redis::cmd("EXISTS")
                .arg(format!("booking:idem:seed:{probe}"))
                .query_async(&mut conn)
                .await?;
            if there != 1 {
                bail!("seeded live key {probe} is not in Redis");
            }
        }
        Ok(())
    }

    /// Every booking row, read directly from the store.
    /// In target mode, only with a `database_url`, over a read-only connection.
    pub async fn final_state(&self) -> Result<Option<Vec<BookingRow>>> {
        if self.url.is_empty() {
            return Ok(None);
        }
        let columns =
            "user_id, resource_id, CAST(date AS TEXT) AS date, status, key_kind, idem_key";
        if self.url.starts_with("sqlite:") {
            let options: sqlx::sqlite::SqliteConnectOptions = self.url.parse()?;
            let pool = sqlx::SqlitePool::connect_with(options.read_only(self.read_only)).await?;
            let rows = sqlx::query(&format!("SELECT id, {columns} FROM bookings"))
                .fetch_all(&pool)
                .await?;
            let out = rows
                .iter()
                .map(|r| -> Result<BookingRow> {
                    // SQLite keeps UUIDs as 16-byte blobs.
                    let id: uuid::Uuid = r.try_get("id")?;
                    row(id.to_string(), r)
                })
                .collect::<Result<Vec<_>>>()?;
            pool.close().await;
            Ok(Some(out))
        } else {
            let options: sqlx::postgres::PgConnectOptions = self.url.parse()?;
            let options = if self.read_only {
                // Someone else's database: this session cannot write.
                options.options([("default_transaction_read_only", "on")])
            } else {
                options
            };
            let pool = sqlx::PgPool::connect_with(options).await?;
            let rows = sqlx::query(&format!(
                "SELECT CAST(id AS TEXT) AS id, {columns} FROM bookings"
            ))
            .fetch_all(&pool)
            .await?;
            let out = rows
                .iter()
                .map(|r| -> Result<BookingRow> { row(r.try_get("id")?, r) })
                .collect::<Result<Vec<_>>>()?;
            pool.close().await;
            Ok(Some(out))
        }
    }
}

fn row<R: Row>(id: String, r: &R) -> Result<BookingRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(BookingRow {
        id,
        user_id: r.try_get("user_id")?,
        resource_id: r.try_get("resource_id")?,
        date: r.try_get("date")?,
        status: r.try_get("status")?,
        key_kind: r.try_get("key_kind")?,
        idem_key: r.try_get("idem_key")?,
    })
}
