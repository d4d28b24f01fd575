//! The replay cache: a replica answers a completed client key from memory,
//! and never past the store's expiry of that outcome, on any replica. These
//! need Redis and a second replica, so they run on `Backend::Real` only.
//! (Scenario 19 runs the same expiry against the seeded bug
//! `replay-cache-outlives-store` and catches it.)

use std::time::Duration;

use booking::domain::{KeyKind, KeyScope, UserId};
use sqlx::Row;

use crate::helpers::{spawn_app_with, Backend, Db, TestApp};

const DATE: &str = "2026-12-05";

/// Replays this replica answered from its cache (`/metrics`).
async fn cache_replays(app: &TestApp) -> u64 {
    let metrics = app.get("/metrics").await;
    metrics
        .body
        .lines()
        .find(|l| l.starts_with("booking_idempotent_replays_total{source=\"cache\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_answered_from_the_cache_while_redis_is_down() {
    for entries in [10_000, 0] {
        let mut app = spawn_app_with(Backend::Real, |s| {
            s.dependency_timeout = Duration::from_millis(500);
            s.idempotency.replay_cache_entries = entries;
        })
        .await;
        let first = app.book("user_alice", "room_A", DATE, Some("k")).await;
        assert_eq!(first.status, 201, "{}", first.body);
        // A key is cached once it comes back: this replay comes from Redis.
        let from_redis = app.book("user_alice", "room_A", DATE, Some("k")).await;
        assert_eq!(from_redis.body, first.body);
        assert_eq!(cache_replays(&app).await, 0);
        app.redis.as_mut().expect("redis").kill().await;

        let replay = app.book("user_alice", "room_A", DATE, Some("k")).await;
        let reused = app.book("user_alice", "room_B", DATE, Some("k")).await;
        let new_key = app.book("user_alice", "room_C", DATE, Some("k2")).await;
        assert_eq!(
            new_key.status, 503,
            "a new key needs Redis: {}",
            new_key.body
        );
        if entries == 0 {
            // Without the cache, the replay needs Redis too.
            assert_eq!(replay.status, 503, "{}", replay.body);
            assert_eq!(cache_replays(&app).await, 0);
            continue;
        }
        assert_eq!(replay.status, 201, "{}", replay.body);
        assert!(replay.replayed);
        assert_eq!(replay.body, first.body, "the same bytes");
        assert_eq!(reused.status, 422, "{}", reused.body);
        assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(
            cache_replays(&app).await,
            1,
            "a reuse is refused, not replayed"
        );
        assert_eq!(app.count_rows().await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_record_carries_the_stores_expiry() {
    let app = spawn_app_with(Backend::Real, |_| {}).await;
    let first = app.book("user_alice", "room_A", DATE, Some("k-exp")).await;
    assert_eq!(first.status, 201, "{}", first.body);

    let stored = stored_expiry(&app, "k-exp").await.timestamp_millis();

    let scope = KeyScope {
        user_id: UserId::parse("user_alice").expect("user"),
        kind: KeyKind::Client,
        key: "k-exp".into(),
    };
    let client =
        redis::Client::open(app.redis.as_ref().expect("redis").url()).expect("redis client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let exp: String = redis::cmd("HGET")
        .arg(scope.record_name())
        .arg("exp")
        .query_async(&mut conn)
        .await
        .expect("the record's exp field");
    assert_eq!(exp.parse::<i64>().expect("milliseconds"), stored);
}

/// The store's expiry of `key`'s outcome (PostgreSQL).
async fn stored_expiry(app: &TestApp, key: &str) -> chrono::DateTime<chrono::Utc> {
    let Db::Postgres(pool) = &app.db else {
        panic!("a real backend has PostgreSQL")
    };
    sqlx::query("SELECT expires_at FROM idempotency_records WHERE idem_key = $1")
        .bind(key)
        .fetch_one(pool)
        .await
        .expect("the key's row")
        .get("expires_at")
}

/// Sleeps until `at` on the wall clock (the clock the store's expiry is on).
async fn sleep_until(at: chrono::DateTime<chrono::Utc>) {
    if let Ok(left) = (at - chrono::Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
}

/// A key asked on replica B late in its life (so that a cache counting the
/// retention from that moment would outlive the store), then decided anew
/// on replica A once it expired: B must give the new answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_replica_replays_an_outcome_past_the_stores_expiry() {
    let a = spawn_app_with(Backend::Real, |s| {
        s.idempotency.client_key_ttl = Duration::from_secs(4);
        s.idempotency.refusal_ttl = Duration::from_secs(4);
        s.idempotency.lease = Duration::from_millis(1_500);
        s.request_timeout = Duration::from_millis(1_000);
        s.dependency_timeout = Duration::from_millis(500);
    })
    .await;
    let b = a.another_replica().await;

    let first = a.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let expires = stored_expiry(&a, "k").await;

    // B caches the key until a second before `expires` (1.8 s from here).
    sleep_until(expires - chrono::TimeDelta::milliseconds(2_800)).await;
    let from_redis = b.book("user_alice", "room_A", DATE, Some("k")).await;
    let from_cache = b.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(from_redis.body, first.body);
    assert_eq!(from_cache.body, first.body);
    assert!(from_cache.replayed);
    assert_eq!(
        cache_replays(&b).await,
        1,
        "B's second replay came from its cache"
    );

    sleep_until(expires + chrono::TimeDelta::milliseconds(300)).await;
    let anew = a.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(
        anew.status, 409,
        "decided anew: the slot is booked: {}",
        anew.body
    );
    assert_eq!(anew.code(), "ALREADY_BOOKED");
    assert!(!anew.replayed);

    let on_b = b.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(
        on_b.body, anew.body,
        "replica B gives the key's current answer, not the expired booking"
    );
    assert_eq!(a.count_rows().await, 1);
}
