//! The original flow's five idempotency behaviours, and the hardened ones.

use std::time::Duration;

use booking::config::ReusePolicy;
use futures_util::future::join_all;

use crate::helpers::{booking_body, spawn_app, spawn_app_with, Backend};

crate::suite!(
    the_same_key_twice_returns_the_same_booking_and_writes_one_row,
    the_same_key_with_a_changed_payload_is_rejected_by_default,
    the_same_key_with_a_changed_payload_replays_the_original_under_the_replay_policy,
    no_key_twice_returns_the_same_booking_through_the_derived_key,
    concurrent_requests_with_one_key_make_one_booking,
    concurrent_requests_with_different_keys_for_one_slot_make_one_booking,
    resource_locked_is_not_remembered_so_a_retry_with_the_same_key_books,
    another_users_key_never_replays_the_first_users_response,
    already_booked_is_remembered_and_replayed_for_its_key,
);

const DATE: &str = "2026-12-01";

async fn the_same_key_twice_returns_the_same_booking_and_writes_one_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.book("user_alice", "room_A", DATE, Some("key-1")).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert!(!first.replayed);
    assert_eq!(first.json["success"], true);
    assert_eq!(first.json["message"], "Booking created successfully");
    assert_eq!(first.json["booking"]["status"], "confirmed");
    assert_eq!(first.json["booking"]["userId"], "user_alice");
    assert_eq!(first.content_type, "application/json");

    let second = app.book("user_alice", "room_A", DATE, Some("key-1")).await;
    assert_eq!(second.status, 201);
    assert!(
        second.replayed,
        "a replay carries Idempotent-Replayed: true"
    );
    assert_eq!(second.body, first.body, "byte for byte");
    assert_eq!(app.count_rows().await, 1);
}

async fn the_same_key_with_a_changed_payload_is_rejected_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.book("user_alice", "room_A", DATE, Some("key-1")).await;
    assert_eq!(first.status, 201);
    let reused = app.book("user_alice", "room_B", DATE, Some("key-1")).await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.count_rows().await, 1);
    // The original payload still replays.
    let again = app.book("user_alice", "room_A", DATE, Some("key-1")).await;
    assert_eq!(again.body, first.body);
}

async fn the_same_key_with_a_changed_payload_replays_the_original_under_the_replay_policy(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |s| {
        s.idempotency.reuse_policy = ReusePolicy::Replay
    })
    .await;
    let first = app.book("user_alice", "room_A", DATE, Some("key-1")).await;
    assert_eq!(first.status, 201);
    let reused = app.book("user_alice", "room_B", DATE, Some("key-1")).await;
    assert_eq!(reused.status, 201);
    assert!(reused.replayed);
    assert_eq!(reused.body, first.body, "the original booking, not room_B");
    assert_eq!(app.count_rows().await, 1);
}

async fn no_key_twice_returns_the_same_booking_through_the_derived_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.book("user_alice", "room_A", DATE, None).await;
    assert_eq!(first.status, 201);
    let second = app.book("user_alice", "room_A", DATE, None).await;
    assert_eq!(second.status, 201);
    assert!(second.replayed);
    assert_eq!(second.body, first.body);
    assert_eq!(app.count_rows().await, 1);
}

async fn concurrent_requests_with_one_key_make_one_booking(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = booking_body("user_alice", "room_A", DATE);
    let replies = join_all((0..8).map(|_| app.post_booking(&body, Some("double-click")))).await;
    let created: Vec<_> = replies.iter().filter(|r| r.status == 201).collect();
    assert!(!created.is_empty(), "{replies:#?}");
    for r in &replies {
        assert!(
            r.status == 201 || r.code() == "IDEMPOTENCY_IN_PROGRESS",
            "unexpected {} {}",
            r.status,
            r.body
        );
        if r.code() == "IDEMPOTENCY_IN_PROGRESS" {
            assert_eq!(r.retry_after.as_deref(), Some("1"));
        }
    }
    assert!(
        created.iter().all(|r| r.body == created[0].body),
        "identical 201s"
    );
    assert_eq!(
        created.iter().filter(|r| !r.replayed).count(),
        1,
        "one fresh 201"
    );
    assert_eq!(app.count_rows().await, 1);
}

async fn concurrent_requests_with_different_keys_for_one_slot_make_one_booking(backend: Backend) {
    let app = spawn_app(backend).await;
    let replies = join_all((0..8).map(|i| {
        let body = booking_body(&format!("user_{i}"), "room_A", DATE);
        let key = format!("key-{i}");
        let app = &app;
        async move { app.post_booking(&body, Some(&key)).await }
    }))
    .await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "{replies:#?}");
    for r in replies.iter().filter(|r| r.status != 201) {
        assert!(
            matches!(r.code(), "RESOURCE_LOCKED" | "ALREADY_BOOKED"),
            "{} {}",
            r.status,
            r.body
        );
        assert_eq!(r.status, 409);
    }
    assert_eq!(app.count_rows().await, 1);
    assert_eq!(app.confirmed("room_A", DATE).await, 1);
}

async fn resource_locked_is_not_remembered_so_a_retry_with_the_same_key_books(backend: Backend) {
    let app = spawn_app(backend).await;
    // Someone else holds the slot's lock.
    let lock = app
        .state
        .coordinator
        .lock(
            &format!("booking:lock:room_A:{DATE}"),
            Duration::from_secs(30),
        )
        .await
        .expect("lock")
        .expect("free lock");
    let locked = app.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(locked.status, 409);
    assert_eq!(locked.code(), "RESOURCE_LOCKED");
    assert_eq!(locked.retry_after.as_deref(), Some("1"));
    assert_eq!(app.count_rows().await, 0);

    assert!(app
        .state
        .coordinator
        .unlock(&format!("booking:lock:room_A:{DATE}"), &lock)
        .await
        .expect("unlock"));
    let retry = app.book("user_alice", "room_A", DATE, Some("k")).await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert!(!retry.replayed);
    assert_eq!(app.count_rows().await, 1);
}

async fn another_users_key_never_replays_the_first_users_response(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app
        .book("user_alice", "room_A", DATE, Some("shared-key"))
        .await;
    assert_eq!(alice.status, 201);
    let bob = app
        .book("user_bob", "room_B", DATE, Some("shared-key"))
        .await;
    assert_eq!(bob.status, 201, "{}", bob.body);
    assert!(!bob.replayed);
    assert_eq!(bob.json["booking"]["userId"], "user_bob");
    assert_ne!(bob.booking_id(), alice.booking_id());
    // And B on A's slot gets B's own outcome, not A's 201.
    let bob_on_a = app
        .book("user_bob", "room_A", DATE, Some("shared-key-2"))
        .await;
    assert_eq!(bob_on_a.code(), "ALREADY_BOOKED");
    assert_eq!(app.count_rows().await, 2);
}

async fn already_booked_is_remembered_and_replayed_for_its_key(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.book("user_alice", "room_A", DATE, Some("a"))
            .await
            .status,
        201
    );
    let bob = app.book("user_bob", "room_A", DATE, Some("b")).await;
    assert_eq!(bob.status, 409);
    assert_eq!(bob.code(), "ALREADY_BOOKED");
    assert_eq!(bob.content_type, "application/problem+json");
    assert!(bob.retry_after.is_none(), "ALREADY_BOOKED is definitive");
    let again = app.book("user_bob", "room_A", DATE, Some("b")).await;
    assert!(again.replayed);
    assert_eq!(again.body, bob.body);
    assert_eq!(app.count_rows().await, 1);
}
