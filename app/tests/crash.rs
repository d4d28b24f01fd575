//! Crashes at exact protocol steps (feature `failpoints`): the service runs
//! as a child process, a failpoint aborts it mid-protocol, it is restarted,
//! and the client's retry must get the original outcome and write nothing new.

use std::time::Duration;

use booking_infra::{BookingProcess, BookingProcessConfig, PostgresServer, RedisServer};
use serde_json::{json, Value};
use sqlx::Row;
use tempfile::TempDir;

const DATE: &str = "2026-12-24";

/// The stack a replica runs on; `Real` = private PostgreSQL + Redis.
#[allow(clippy::large_enum_variant)] // built once per test
enum Stack {
    Real {
        _redis: RedisServer,
        _postgres: PostgresServer,
        database_url: String,
        redis_url: String,
    },
    Embedded {
        _dir: TempDir,
        database_url: String,
    },
}

impl Stack {
    async fn real() -> Stack {
        let (redis, postgres) = tokio::join!(RedisServer::start(), PostgresServer::start());
        let (redis, postgres) = (redis.expect("redis"), postgres.expect("postgres"));
        let database_url = postgres.create_database("booking").await.expect("db");
        Stack::Real {
            redis_url: redis.url(),
            _redis: redis,
            _postgres: postgres,
            database_url,
        }
    }

    fn embedded() -> Stack {
        let dir = tempfile::tempdir().expect("dir");
        let database_url = format!("sqlite://{}", dir.path().join("booking.db").display());
        Stack::Embedded {
            _dir: dir,
            database_url,
        }
    }

    fn config(&self, env: &[(&str, &str)]) -> BookingProcessConfig {
        let (database_url, redis_url) = match self {
            Stack::Real {
                database_url,
                redis_url,
                ..
            } => (database_url.clone(), Some(redis_url.clone())),
            Stack::Embedded { database_url, .. } => (database_url.clone(), None),
        };
        BookingProcessConfig {
            binary: env!("CARGO_BIN_EXE_booking").into(),
            database_url,
            redis_url,
            env: fast_timeouts(env),
        }
    }

    /// `(id, status)` of every booking row, read from the store itself.
    async fn rows(&self) -> Vec<(String, String)> {
        let sql = "SELECT CAST(id AS TEXT) AS id, status FROM bookings";
        match self {
            Stack::Real { database_url, .. } => {
                let pool = sqlx::PgPool::connect(database_url).await.expect("pg");
                let rows = sqlx::query(sql).fetch_all(&pool).await.expect("rows");
                rows.iter()
                    .map(|r| (r.get("id"), r.get("status")))
                    .collect()
            }
            Stack::Embedded { database_url, .. } => {
                let pool = sqlx::SqlitePool::connect(database_url)
                    .await
                    .expect("sqlite");
                // SQLite keeps UUIDs as 16-byte blobs.
                let rows = sqlx::query("SELECT id, status FROM bookings")
                    .fetch_all(&pool)
                    .await
                    .expect("rows");
                rows.iter()
                    .map(|r| {
                        let id: uuid::Uuid = r.get("id");
                        (id.to_string(), r.get("status"))
                    })
                    .collect()
            }
        }
    }
}

/// A lease of 1.5 s so that a crashed claim frees its key quickly.
fn fast_timeouts(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("IDEMPOTENCY_LEASE_MS", "1500"),
        ("REQUEST_TIMEOUT_MS", "1000"),
        ("DEPENDENCY_TIMEOUT_MS", "500"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

struct Answer {
    status: u16,
    body: String,
    replayed: bool,
}

async fn post(base: &str, key: &str) -> Result<Answer, reqwest::Error> {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/bookings"))
        .header("Idempotency-Key", key)
        .json(&json!({"userId": "user_alice", "resourceId": "room_A", "date": DATE}))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    Ok(Answer {
        status,
        replayed,
        body: response.text().await?,
    })
}

/// Retries with the same key, as a client would, while the answer is a
/// retryable 409 (the crashed request's lease or lock has not run out yet).
/// Bounded: 50 tries, ~10 s.
async fn retry_until_settled(base: &str, key: &str) -> Answer {
    for _ in 0..50 {
        let answer = post(base, key)
            .await
            .expect("the restarted replica answers");
        let code = serde_json::from_str::<Value>(&answer.body).unwrap_or_default()["code"].clone();
        if code != "IDEMPOTENCY_IN_PROGRESS" && code != "RESOURCE_LOCKED" {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the key stayed in progress after the lease should have expired");
}

async fn crash_then_retry(stack: Stack, failpoint: &str) -> (Stack, Answer) {
    let spec = format!("{failpoint}=return(crash)");
    let mut replica = BookingProcess::start(stack.config(&[("FAILPOINTS", &spec)]))
        .await
        .expect("start replica");
    let lost = post(&replica.url(), "crash-key").await;
    assert!(
        lost.is_err(),
        "the client never hears back from a crashed replica"
    );
    let status = replica
        .wait_for_exit(Duration::from_secs(10))
        .expect("the replica crashed");
    assert!(!status.success(), "aborted, not exited cleanly: {status:?}");

    replica
        .restart_with(fast_timeouts(&[]))
        .await
        .expect("restart without failpoints");
    let answer = retry_until_settled(&replica.url(), "crash-key").await;
    (stack, answer)
}

async fn a_retry_after_a_crash_after_commit_returns_the_original_booking(stack: Stack) {
    let (stack, retry) = crash_then_retry(stack, "after_commit_before_finalize").await;
    let rows = stack.rows().await;
    assert_eq!(rows.len(), 1, "the commit happened exactly once: {rows:?}");
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert!(
        retry.replayed,
        "the outcome came from the committed transaction"
    );
    let body: Value = serde_json::from_str(&retry.body).expect("json");
    assert_eq!(
        body["booking"]["id"],
        rows[0].0.as_str(),
        "the original booking"
    );
    assert_eq!(rows[0].1, "confirmed");
}

async fn a_crash_before_commit_leaves_nothing_and_the_retry_books_once(stack: Stack) {
    let (stack, retry) = crash_then_retry(stack, "before_commit").await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert!(!retry.replayed, "nothing was committed before the crash");
    let rows = stack.rows().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_a_retry_after_a_crash_after_commit_returns_the_original_booking() {
    a_retry_after_a_crash_after_commit_returns_the_original_booking(Stack::real().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_retry_after_a_crash_after_commit_returns_the_original_booking() {
    a_retry_after_a_crash_after_commit_returns_the_original_booking(Stack::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_a_crash_before_commit_leaves_nothing_and_the_retry_books_once() {
    a_crash_before_commit_leaves_nothing_and_the_retry_books_once(Stack::real().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_crash_before_commit_leaves_nothing_and_the_retry_books_once() {
    a_crash_before_commit_leaves_nothing_and_the_retry_books_once(Stack::embedded()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_error_releases_the_claim_and_the_lock_so_the_retry_books() {
    let stack = Stack::real().await;
    let replica = BookingProcess::start(stack.config(&[]))
        .await
        .expect("start");
    let client = reqwest::Client::new();
    let admin = format!("{}/admin/failpoints/after_lock", replica.url());
    let set = client
        .put(&admin)
        .body("1*return(error)")
        .send()
        .await
        .expect("set");
    assert_eq!(set.status(), 204);

    let failed = post(&replica.url(), "k").await.expect("answer");
    assert_eq!(failed.status, 503, "{}", failed.body);
    assert!(failed.body.contains("DEPENDENCY_UNAVAILABLE"));
    assert!(stack.rows().await.is_empty());

    // Neither IDEMPOTENCY_IN_PROGRESS nor RESOURCE_LOCKED: both were released.
    let retry = post(&replica.url(), "k").await.expect("answer");
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert!(!retry.replayed);
    assert_eq!(stack.rows().await.len(), 1);

    let listed: Value = client
        .get(format!("{}/admin/failpoints", replica.url()))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let steps: Vec<&str> = booking::failpoints::Step::ALL
        .iter()
        .map(|s| s.name())
        .collect();
    assert_eq!(listed["steps"], serde_json::json!(steps), "{listed}");
    let bad = client
        .put(&admin)
        .body("return(explode)")
        .send()
        .await
        .expect("bad");
    assert_eq!(bad.status(), 400);
    let unknown = client
        .put(format!("{}/admin/failpoints/nowhere", replica.url()))
        .body("return(error)")
        .send()
        .await
        .expect("unknown");
    assert_eq!(unknown.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_failpoint_at_start_is_a_clear_startup_error() {
    let stack = Stack::embedded();
    let started =
        BookingProcess::start(stack.config(&[("FAILPOINTS", "nowhere=return(crash)")])).await;
    let Err(e) = started else {
        panic!("the replica must refuse to start");
    };
    let message = format!("{e:#}");
    assert!(
        message.contains("unknown failpoint \"nowhere\""),
        "{message}"
    );
}
