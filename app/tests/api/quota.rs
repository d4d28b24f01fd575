//! One user's live idempotency keys are bounded (`429 QUOTA_EXCEEDED`),
//! refusals leave the quota sooner than bookings, and the quota never turns
//! a retry of a known key into a refusal, even with Redis emptied.

use std::time::Duration;

use booking::config::Settings;

use crate::helpers::{spawn_app_with, Backend};

crate::suite!(
    a_user_past_the_key_quota_gets_429_and_nothing_is_written,
    a_refusal_expires_sooner_than_a_booking_and_frees_its_key,
    a_key_whose_outcome_expired_counts_as_new_against_the_quota,
);

async fn a_user_past_the_key_quota_gets_429_and_nothing_is_written(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.idempotency.key_quota = 3).await;
    let mut ids = Vec::new();
    for day in 1..=3 {
        let r = app
            .book(
                "alice",
                "room_A",
                &format!("2027-03-0{day}"),
                Some(&format!("k{day}")),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.booking_id());
    }
    let refused = app.book("alice", "room_A", "2027-03-04", Some("k4")).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.code(), "QUOTA_EXCEEDED");
    let wait: u64 = refused
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!(
        wait > 23 * 3600 && wait <= 24 * 3600,
        "wait until the oldest key expires, got {wait} s"
    );
    assert_eq!(
        app.count_rows().await,
        3,
        "the refused request wrote nothing"
    );
    assert_eq!(app.count_idempotency_records().await, 3);
    assert_eq!(app.confirmed("room_A", "2027-03-04").await, 0);

    // A known key still gets its answer, from Redis or, emptied, the store.
    let replay = app.book("alice", "room_A", "2027-03-01", Some("k1")).await;
    assert_eq!(
        (replay.status, replay.replayed),
        (201, true),
        "{}",
        replay.body
    );
    assert_eq!(replay.booking_id(), ids[0]);
    if let Some(redis) = &app.redis {
        redis.flush_all().await.expect("flush");
        let replay = app.book("alice", "room_A", "2027-03-02", Some("k2")).await;
        assert_eq!(
            (replay.status, replay.replayed),
            (201, true),
            "{}",
            replay.body
        );
        assert_eq!(replay.booking_id(), ids[1]);
    }
    // Another user has a quota of their own.
    let bob = app.book("bob", "room_B", "2027-03-04", Some("k4")).await;
    assert_eq!(bob.status, 201, "{}", bob.body);
}

/// Refusals are kept 2 s (the lease and the timeouts below it), and a user
/// may hold two live keys.
fn refusals_kept_two_seconds_and_a_quota_of_two(s: &mut Settings) {
    s.request_timeout = Duration::from_millis(1_000);
    s.dependency_timeout = Duration::from_millis(500);
    s.idempotency.lease = Duration::from_millis(1_200);
    s.idempotency.refusal_ttl = Duration::from_millis(2_000);
    s.idempotency.key_quota = 2;
}

async fn a_refusal_expires_sooner_than_a_booking_and_frees_its_key(backend: Backend) {
    let app = spawn_app_with(backend, refusals_kept_two_seconds_and_a_quota_of_two).await;
    let held = app.book("alice", "room_A", "2027-04-01", Some("a1")).await;
    assert_eq!(held.status, 201);
    let refused = app.book("bob", "room_A", "2027-04-01", Some("b1")).await;
    assert_eq!(refused.code(), "ALREADY_BOOKED");
    let again = app.book("bob", "room_A", "2027-04-01", Some("b1")).await;
    assert_eq!(
        (again.status, again.replayed),
        (409, true),
        "remembered for now"
    );
    assert_eq!(again.body, refused.body);

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // The booking is still remembered; the refusal is not.
    let replay = app.book("alice", "room_A", "2027-04-01", Some("a1")).await;
    assert_eq!(
        (replay.status, replay.replayed),
        (201, true),
        "{}",
        replay.body
    );
    assert_eq!(app.cancel(&held.booking_id(), "alice").await.status, 200);
    let fresh = app.book("bob", "room_A", "2027-04-01", Some("b1")).await;
    assert_eq!(
        (fresh.status, fresh.replayed),
        (201, false),
        "{}",
        fresh.body
    );
    // An expired refusal no longer counts: bob holds one live key of two.
    let second = app.book("bob", "room_B", "2027-04-01", Some("b2")).await;
    assert_eq!(second.status, 201, "{}", second.body);
}

/// A key whose stored outcome has expired is a new key: at the quota it is
/// refused (`429`) like any other new key, and nothing is written, though
/// its slot is free. (Below the quota it is decided anew:
/// `a_refusal_expires_sooner_than_a_booking_and_frees_its_key`.)
async fn a_key_whose_outcome_expired_counts_as_new_against_the_quota(backend: Backend) {
    let app = spawn_app_with(backend, refusals_kept_two_seconds_and_a_quota_of_two).await;
    let held = app.book("alice", "room_A", "2027-05-01", Some("a1")).await;
    assert_eq!(held.status, 201, "{}", held.body);
    let refused = app.book("bob", "room_A", "2027-05-01", Some("b1")).await;
    assert_eq!(refused.code(), "ALREADY_BOOKED");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // b1's refusal has expired: bob holds no live key, and books two.
    for (key, resource) in [("b2", "room_B"), ("b3", "room_C")] {
        let r = app.book("bob", resource, "2027-05-01", Some(key)).await;
        assert_eq!(r.status, 201, "{key}: {}", r.body);
    }
    let records = app.count_idempotency_records().await;
    assert_eq!(app.cancel(&held.booking_id(), "alice").await.status, 200);

    // b1 again, for the slot that is free now: a new key past the quota.
    let again = app.book("bob", "room_A", "2027-05-01", Some("b1")).await;
    assert_eq!(
        (again.status, again.code()),
        (429, "QUOTA_EXCEEDED"),
        "{}",
        again.body
    );
    assert_eq!(app.confirmed("room_A", "2027-05-01").await, 0);
    assert_eq!(
        app.count_idempotency_records().await,
        records,
        "the refused request wrote nothing"
    );
}
