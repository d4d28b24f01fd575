//! Cancel, list, resources, health, metrics and the OpenAPI document.

use crate::helpers::{spawn_app, Backend};

crate::suite!(
    cancelling_someone_elses_booking_is_not_found,
    cancel_frees_the_slot_and_it_can_be_rebooked_without_a_client_key,
    cancel_frees_the_slot_for_another_user_with_a_client_key,
    cancelling_twice_returns_the_cancelled_booking,
    cancelling_an_unknown_or_malformed_id_is_not_found,
    lists_are_newest_first_confirmed_by_default_and_filterable,
    available_resources_exclude_confirmed_bookings,
    booking_an_unknown_resource_is_404_and_writes_nothing,
    health_readiness_metrics_and_openapi_are_served,
    expired_idempotency_outcomes_are_purged_and_bookings_stay,
);

const DATE: &str = "2026-12-02";

async fn cancelling_someone_elses_booking_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let booked = app.book("user_alice", "room_A", DATE, Some("k")).await;
    let reply = app.cancel(&booked.booking_id(), "user_bob").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.code(), "NOT_FOUND");
    assert_eq!(app.confirmed("room_A", DATE).await, 1, "still booked");
}

async fn cancel_frees_the_slot_and_it_can_be_rebooked_without_a_client_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.book("user_alice", "room_A", DATE, None).await;
    assert_eq!(first.status, 201);
    let cancelled = app.cancel(&first.booking_id(), "user_alice").await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json["success"], true);
    assert_eq!(cancelled.json["message"], "Booking cancelled successfully");
    assert_eq!(cancelled.json["booking"]["status"], "cancelled");
    assert_eq!(cancelled.json["booking"]["id"], first.json["booking"]["id"]);

    let rebooked = app.book("user_alice", "room_A", DATE, None).await;
    assert_eq!(rebooked.status, 201, "{}", rebooked.body);
    assert!(
        !rebooked.replayed,
        "the derived key was forgotten on cancel"
    );
    assert_ne!(rebooked.booking_id(), first.booking_id());
    assert_eq!(app.count_rows().await, 2);
    assert_eq!(app.confirmed("room_A", DATE).await, 1);
}

async fn cancel_frees_the_slot_for_another_user_with_a_client_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.book("user_alice", "room_A", DATE, Some("a1")).await;
    assert_eq!(
        app.book("user_bob", "room_A", DATE, Some("b1"))
            .await
            .code(),
        "ALREADY_BOOKED"
    );
    assert_eq!(
        app.cancel(&alice.booking_id(), "user_alice").await.status,
        200
    );
    let bob = app.book("user_bob", "room_A", DATE, Some("b2")).await;
    assert_eq!(bob.status, 201, "{}", bob.body);
    // A client key keeps its recorded outcome: Alice's key still replays her 201.
    let replay = app.book("user_alice", "room_A", DATE, Some("a1")).await;
    assert_eq!(replay.body, alice.body);
    assert_eq!(app.confirmed("room_A", DATE).await, 1);
}

async fn cancelling_twice_returns_the_cancelled_booking(backend: Backend) {
    let app = spawn_app(backend).await;
    let booked = app.book("user_alice", "room_A", DATE, Some("k")).await;
    let once = app.cancel(&booked.booking_id(), "user_alice").await;
    let twice = app.cancel(&booked.booking_id(), "user_alice").await;
    assert_eq!(twice.status, 200);
    assert_eq!(twice.json["booking"], once.json["booking"]);
    assert!(twice.json["booking"]["cancelledAt"].is_string());
}

async fn cancelling_an_unknown_or_malformed_id_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown = app
        .cancel("01900000-0000-7000-8000-000000000000", "user_alice")
        .await;
    assert_eq!(unknown.code(), "NOT_FOUND");
    let malformed = app.cancel("not-an-id", "user_alice").await;
    assert_eq!(malformed.code(), "NOT_FOUND");
    let no_user = app
        .client
        .patch(app.url("/api/bookings/not-an-id/cancel"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("patch");
    assert_eq!(no_user.status(), 400);
}

async fn lists_are_newest_first_confirmed_by_default_and_filterable(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app
        .book("user_alice", "room_A", "2026-12-01", Some("1"))
        .await;
    let b = app
        .book("user_alice", "room_B", "2026-12-02", Some("2"))
        .await;
    let c = app
        .book("user_alice", "room_C", "2026-12-02", Some("3"))
        .await;
    app.book("user_bob", "room_D", "2026-12-02", Some("4"))
        .await;
    assert_eq!(app.cancel(&a.booking_id(), "user_alice").await.status, 200);

    let ids = |path: &str| {
        let app = &app;
        let path = path.to_owned();
        async move {
            let reply = app.get(&path).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert_eq!(reply.json["success"], true);
            reply.json["bookings"]
                .as_array()
                .expect("array")
                .iter()
                .map(|b| b["id"].as_str().expect("id").to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ids("/api/bookings/user_alice").await,
        [c.booking_id(), b.booking_id()]
    );
    assert_eq!(
        ids("/api/bookings/user_alice?status=all").await,
        [c.booking_id(), b.booking_id(), a.booking_id()]
    );
    assert_eq!(
        ids("/api/bookings/user_alice?status=cancelled").await,
        [a.booking_id()]
    );
    assert_eq!(
        ids("/api/bookings/user_alice?resourceId=room_B").await,
        [b.booking_id()]
    );
    assert_eq!(
        ids("/api/bookings/user_alice?date=2026-12-02&resourceId=room_C").await,
        [c.booking_id()]
    );
    // A listed booking renders exactly as in its 201 response.
    let listed = app.get("/api/bookings/user_alice?resourceId=room_B").await;
    assert_eq!(listed.json["bookings"][0], b.json["booking"]);

    assert_eq!(
        app.get("/api/bookings/user_alice?status=maybe")
            .await
            .code(),
        "VALIDATION_FAILED"
    );
    assert_eq!(
        app.get("/api/bookings/user_alice?date=2026-02-30")
            .await
            .code(),
        "VALIDATION_FAILED"
    );
}

async fn available_resources_exclude_confirmed_bookings(backend: Backend) {
    let app = spawn_app(backend).await;
    let b = app.book("user_alice", "room_B", DATE, Some("1")).await;
    app.book("user_bob", "room_D", DATE, Some("2")).await;
    let reply = app
        .get(&format!("/api/resources/available?date={DATE}"))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json["date"], DATE);
    assert_eq!(
        reply.json["availableResources"],
        serde_json::json!(["room_A", "room_C"])
    );
    app.cancel(&b.booking_id(), "user_alice").await;
    let reply = app
        .get(&format!("/api/resources/available?date={DATE}"))
        .await;
    assert_eq!(
        reply.json["availableResources"],
        serde_json::json!(["room_A", "room_B", "room_C"])
    );
    assert_eq!(
        app.get("/api/resources/available").await.code(),
        "VALIDATION_FAILED"
    );
    assert_eq!(
        app.get("/api/resources/available?date=2026-13-01")
            .await
            .code(),
        "VALIDATION_FAILED"
    );
    let catalogue = app.get("/api/resources").await;
    assert_eq!(
        catalogue.json[0],
        serde_json::json!({"id": "room_A", "name": "Conference Room A"})
    );
    assert_eq!(catalogue.json.as_array().map(Vec::len), Some(4));
}

async fn booking_an_unknown_resource_is_404_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app.book("user_alice", "room_Z", DATE, Some("k")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.code(), "UNKNOWN_RESOURCE");
    assert_eq!(app.count_rows().await, 0);
    assert_eq!(app.count_idempotency_records().await, 0);
}

async fn health_readiness_metrics_and_openapi_are_served(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/health", "/api/health"] {
        let live = app.get(path).await;
        assert_eq!(live.status, 200);
        assert_eq!(live.json["status"], "ok");
    }
    let ready = app.get("/api/health/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json["status"], "ready");

    app.book("user_alice", "room_A", DATE, Some("m")).await;
    app.book("user_alice", "room_A", DATE, Some("m")).await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    for needle in [
        r#"booking_http_requests_total{route="/api/bookings",method="POST",status="201"} 2"#,
        r#"booking_booking_outcomes_total{outcome="CREATED"} 1"#,
        r#"booking_booking_outcomes_total{outcome="REPLAYED"} 1"#,
        "booking_idempotent_replays_total",
        "booking_lock_contention_total",
    ] {
        assert!(
            metrics.body.contains(needle),
            "missing {needle} in\n{}",
            metrics.body
        );
    }
    if backend == Backend::Real {
        assert!(metrics
            .body
            .contains(r#"dependency="redis",operation="claim""#));
        assert!(metrics
            .body
            .contains(r#"dependency="postgres",operation="book""#));
    }

    let doc = app.get("/api/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert!(doc.json["openapi"].as_str().unwrap_or("").starts_with("3."));
    for path in [
        "/api/bookings",
        "/api/bookings/{userId}",
        "/api/bookings/{bookingId}/cancel",
        "/api/resources",
        "/api/resources/available",
        "/api/health",
        "/api/health/ready",
        "/metrics",
        "/api/auth/config",
        "/api/auth/dev-token",
    ] {
        assert!(doc.json["paths"][path].is_object(), "openapi lacks {path}");
    }
    let codes = doc.json["components"]["schemas"]["ErrorCode"]["enum"].clone();
    let listed: Vec<&str> = codes
        .as_array()
        .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let all: Vec<&str> = booking::error::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(listed, all, "the document lists every error code");
    // Constraints the service enforces are stated, from the same constants.
    let body = &doc.json["components"]["schemas"]["CreateBookingBody"];
    assert_eq!(
        body["properties"]["userId"]["pattern"],
        booking::domain::USER_ID_PATTERN
    );
    assert_eq!(
        body["properties"]["resourceId"]["enum"],
        serde_json::json!(["room_A", "room_B", "room_C", "room_D"])
    );
    assert_eq!(
        body["required"],
        serde_json::json!(["userId", "resourceId", "date"])
    );
    let create = &doc.json["paths"]["/api/bookings"]["post"]["responses"];
    for status in [
        "201", "400", "404", "408", "409", "413", "414", "422", "429", "431", "500", "503",
    ] {
        assert!(
            create[status].is_object(),
            "POST /api/bookings lacks {status}"
        );
    }
    assert!(create["429"]["headers"]["Retry-After"].is_object());
}

async fn expired_idempotency_outcomes_are_purged_and_bookings_stay(backend: Backend) {
    let app = spawn_app(backend).await;
    app.book("user_alice", "room_A", DATE, Some("client")).await;
    app.book("user_bob", "room_B", DATE, None).await;
    assert_eq!(app.count_idempotency_records().await, 2);
    let now = chrono::Utc::now();
    // Nothing has expired yet.
    assert_eq!(app.state.store.purge_expired(now).await.expect("purge"), 0);
    // Past the derived key's 2 minutes, before the client key's 24 hours.
    let later = now + chrono::TimeDelta::minutes(10);
    assert_eq!(
        app.state.store.purge_expired(later).await.expect("purge"),
        1
    );
    let much_later = now + chrono::TimeDelta::days(2);
    assert_eq!(
        app.state
            .store
            .purge_expired(much_later)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(app.count_idempotency_records().await, 0);
    assert_eq!(app.count_rows().await, 2, "bookings are never purged");
}

#[tokio::test]
async fn a_built_front_end_is_served_at_the_root_and_api_404s_stay_json() {
    let site = tempfile::tempdir().expect("dir");
    std::fs::write(
        site.path().join("index.html"),
        "<!doctype html><title>app</title>",
    )
    .expect("write");
    std::fs::write(site.path().join("app.js"), "console.log(1)").expect("write");
    let dir = site.path().to_owned();
    let app =
        crate::helpers::spawn_app_with(Backend::Embedded, move |s| s.static_dir = Some(dir)).await;
    let root = app.get("/").await;
    assert_eq!(root.status, 200);
    assert!(root.body.contains("<title>app</title>"));
    assert!(app.get("/app.js").await.body.contains("console.log"));
    // A client-side route gets the app itself.
    assert!(app
        .get("/bookings/mine")
        .await
        .body
        .contains("<title>app</title>"));
    let api = app.get("/api/nope").await;
    assert_eq!(api.status, 404);
    assert_eq!(api.code(), "NOT_FOUND");
    assert_eq!(app.get("/api/resources").await.status, 200);
}
