//! Failing dependencies: Redis losing its data or going away, PostgreSQL
//! going away. These need the real servers, so they run on `Backend::Real` only.

use std::time::{Duration, Instant};

use crate::helpers::{spawn_app_with, Backend};

const DATE: &str = "2026-12-03";

async fn app() -> crate::helpers::TestApp {
    spawn_app_with(Backend::Real, |s| {
        s.dependency_timeout = Duration::from_millis(500);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_redis_lost_its_data_returns_the_original_booking() {
    let app = app().await;
    let first = app.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(first.status, 201);
    let derived = app.book("user_bob", "room_B", DATE, None).await;
    assert_eq!(derived.status, 201);

    app.redis
        .as_ref()
        .expect("redis")
        .flush_all()
        .await
        .expect("flush");

    let retry = app.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert!(retry.replayed);
    assert_eq!(
        retry.body, first.body,
        "the database answered with the original bytes"
    );
    let derived_retry = app.book("user_bob", "room_B", DATE, None).await;
    assert_eq!(derived_retry.body, derived.body);
    assert_eq!(app.count_rows().await, 2);
}

/// The coordinator's scripts run by hash (`EVALSHA`); a Redis whose script
/// cache is empty (restarted, failed over, `SCRIPT FLUSH`) answers
/// `NOSCRIPT`, and each script must be loaded again, not turned into a 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_loaded_again_after_redis_forgets_them() {
    let app = app().await;
    let first = app.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(first.status, 201);

    let url = app.redis.as_ref().expect("redis").url();
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    flush_scripts(&mut conn).await;

    // claim_and_lock and complete_and_unlock, each loaded again.
    let second = app.book("user_bob", "room_B", DATE, Some("k2")).await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert!(!second.replayed);
    flush_scripts(&mut conn).await;
    let retry = app.book("user_bob", "room_B", DATE, Some("k2")).await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert!(retry.replayed);
    assert_eq!(retry.body, second.body);
    assert_eq!(app.count_rows().await, 2);
}

/// Empties Redis's script cache, as a restart or failover does.
async fn flush_scripts(conn: &mut redis::aio::MultiplexedConnection) {
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(conn)
        .await
        .expect("script flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_gives_503_fast_and_readiness_names_it_then_recovers() {
    let mut app = app().await;
    app.redis.as_mut().expect("redis").kill().await;

    let started = Instant::now();
    let reply = app.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.code(), "DEPENDENCY_UNAVAILABLE");
    assert_eq!(reply.retry_after.as_deref(), Some("2"));
    assert!(
        !reply.body.to_lowercase().contains("connection refused"),
        "{}",
        reply.body
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");

    let ready = app.get("/api/health/ready").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.json["error"].as_str().unwrap_or("").contains("redis"),
        "{}",
        ready.body
    );
    assert_eq!(app.count_rows().await, 0);

    app.redis
        .as_mut()
        .expect("redis")
        .restart()
        .await
        .expect("restart");
    let mut last = None;
    for _ in 0..50 {
        let r = app.book("user_alice", "room_A", DATE, Some("k")).await;
        if r.status == 201 {
            last = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let booked = last.expect("the service recovers once Redis is back");
    assert!(!booked.replayed);
    assert_eq!(app.count_rows().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_gives_503_and_the_claim_is_released_for_the_retry() {
    let mut app = app().await;
    // A connection the protocol has used, which the restart below breaks.
    let before = app.book("user_alice", "room_B", DATE, Some("k0")).await;
    assert_eq!(before.status, 201, "{}", before.body);
    app.postgres
        .as_mut()
        .expect("postgres")
        .stop_immediately()
        .await;

    let started = Instant::now();
    let reply = app.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.code(), "DEPENDENCY_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");
    let ready = app.get("/api/health/ready").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.json["error"]
            .as_str()
            .unwrap_or("")
            .contains("postgres"),
        "{}",
        ready.body
    );

    app.postgres
        .as_mut()
        .expect("postgres")
        .start_again()
        .await
        .expect("start again");
    let mut booked = None;
    for _ in 0..50 {
        let r = app.book("user_alice", "room_A", DATE, Some("k")).await;
        // A 503 was transient, so the key was released: never IN_PROGRESS here.
        assert_ne!(r.code(), "IDEMPOTENCY_IN_PROGRESS");
        if r.status == 201 {
            booked = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        booked.is_some(),
        "the service recovers once PostgreSQL is back"
    );
    assert_eq!(app.count_rows().await, 2);
}

/// A cancel while Redis is frozen: it commits in the database and answers
/// at once (clearing Redis is clean-up, not part of the answer); once Redis
/// is back, neither the owner's rebook nor another user's request for the
/// freed slot is answered from Redis's stale records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_a_redis_stall_answers_at_once_and_leaves_no_stale_answer() {
    // A Redis call gives up after 3 s: a cancel that waited on Redis would
    // take that long; one that does not is far quicker, even on a busy machine.
    let mut app = spawn_app_with(Backend::Real, |s| {
        s.dependency_timeout = Duration::from_secs(3);
    })
    .await;
    let mine = app.book("user_alice", "room_C", DATE, None).await;
    assert_eq!(mine.status, 201);
    let other = app.book("user_alice", "room_D", DATE, None).await;
    assert_eq!(other.status, 201);
    let refused = app.book("user_bob", "room_D", DATE, None).await;
    assert_eq!(refused.code(), "ALREADY_BOOKED");

    app.redis
        .as_mut()
        .expect("redis")
        .pause()
        .await
        .expect("SIGSTOP");
    let started = Instant::now();
    let cancelled = app.cancel(&mine.booking_id(), "user_alice").await;
    let also = app.cancel(&other.booking_id(), "user_alice").await;
    let took = started.elapsed();
    app.redis
        .as_mut()
        .expect("redis")
        .resume()
        .await
        .expect("SIGCONT");
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(also.status, 200, "{}", also.body);
    assert!(
        took < Duration::from_secs(2),
        "the cancels waited on Redis: {took:?}"
    );

    let rebook = app.book("user_alice", "room_C", DATE, None).await;
    assert_eq!(rebook.status, 201, "{}", rebook.body);
    assert!(
        !rebook.replayed,
        "a new booking, not the cancelled one replayed"
    );
    assert_ne!(rebook.booking_id(), mine.booking_id());
    // Bob's remembered refusal did not outlive the cancel: the slot is his.
    let bob = app.book("user_bob", "room_D", DATE, None).await;
    assert_eq!(bob.status, 201, "{}", bob.body);
    assert_eq!(bob.json["booking"]["userId"], "user_bob");
    assert_eq!(app.confirmed("room_C", DATE).await, 1);
    assert_eq!(app.confirmed("room_D", DATE).await, 1);
}
