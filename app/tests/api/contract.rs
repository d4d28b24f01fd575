//! The contract at its edges: every error is a problem document with a
//! stable code, and nothing a client sends is echoed or guessed unsafely.

use crate::helpers::{spawn_app, spawn_app_with, Backend, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_a_problem_document_with_allow() {
    let app = spawn_app(Backend::Embedded).await;
    let r = Reply::read(
        app.client
            .delete(app.url("/api/bookings"))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "METHOD_NOT_ALLOWED");
    assert_eq!(r.content_type, "application/problem+json");
    let allow = app
        .client
        .put(app.url("/api/resources"))
        .send()
        .await
        .expect("answer");
    assert!(allow.headers().get("allow").is_some(), "405 keeps Allow");
    let unknown = app.get("/api/nowhere").await;
    assert_eq!(unknown.code(), "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_idempotency_keys_and_non_object_bodies_are_refused_without_internal_names() {
    let app = spawn_app(Backend::Embedded).await;
    let body = r#"{"userId":"u1","resourceId":"room_A","date":"2027-02-01"}"#;
    let r = app
        .post_raw(
            body,
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "a"),
                ("idempotency-key", "b"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.code(), "IDEMPOTENCY_KEY_INVALID");
    for bad in [r#"["u1","room_A","2027-02-01"]"#, "7", "{", r#""text""#] {
        let r = app
            .post_raw(bad, &[("content-type", "application/json")])
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.code(), "VALIDATION_FAILED");
        for internal in ["CreateBookingBody", "struct", "serde", "Value", "line 1"] {
            assert!(!r.body.contains(internal), "{bad}: {}", r.body);
        }
    }
    assert_eq!(app.count_rows().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_say_nosniff_and_request_ids_are_bounded() {
    let app = spawn_app(Backend::Embedded).await;
    let short = app
        .client
        .get(app.url("/api/health"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .expect("answer");
    assert_eq!(short.headers()["x-content-type-options"], "nosniff");
    assert_eq!(short.headers()["x-request-id"], "trace-123");
    let long = "x".repeat(5000);
    let r = app
        .client
        .get(app.url("/api/health"))
        .header("x-request-id", &long)
        .send()
        .await
        .expect("answer");
    let echoed = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(echoed.len() <= 128 && echoed != long, "{}", echoed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_front_end_client_routes_get_the_app_and_api_paths_stay_json() {
    let dist = tempfile::tempdir().expect("dir");
    std::fs::write(
        dist.path().join("index.html"),
        "<!doctype html><title>app</title>",
    )
    .expect("write");
    let dir = dist.path().to_owned();
    let app = spawn_app_with(Backend::Embedded, |s| s.static_dir = Some(dir)).await;
    let page = app.get("/bookings/mine").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>app</title>"));
    for path in ["/api", "/api/", "/api/nowhere"] {
        let r = app.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.content_type, "application/problem+json", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_problem_documents_and_write_nothing() {
    let app = spawn_app(Backend::Embedded).await;
    let long_path = format!("/api/bookings/{}", "u".repeat(9 * 1024));
    let r = app.get(&long_path).await;
    assert_eq!((r.status, r.code()), (414, "URI_TOO_LONG"), "{}", r.body);
    assert_eq!(r.content_type, "application/problem+json");

    let mut many = app
        .client
        .post(app.url("/api/bookings"))
        .header("Idempotency-Key", "head-1")
        .json(&crate::helpers::booking_body("u1", "room_A", "2027-06-01"));
    for n in 0..120 {
        many = many.header(format!("x-extra-{n}"), "1");
    }
    let r = Reply::read(many.send().await.expect("answer")).await;
    assert_eq!(
        (r.status, r.code()),
        (431, "HEADERS_TOO_LARGE"),
        "{}",
        r.body
    );
    assert_eq!(r.content_type, "application/problem+json");

    let big = app
        .client
        .post(app.url("/api/bookings"))
        .header("Idempotency-Key", "head-2")
        .header("x-big", "b".repeat(20 * 1024))
        .json(&crate::helpers::booking_body("u1", "room_A", "2027-06-01"))
        .send()
        .await
        .expect("answer");
    let r = Reply::read(big).await;
    assert_eq!(
        (r.status, r.code()),
        (431, "HEADERS_TOO_LARGE"),
        "{}",
        r.body
    );
    assert_eq!(app.count_rows().await, 0, "nothing was booked");
    // Past hyper's own bound (64 KiB) the answer is still a 431, bare.
    let huge = app
        .client
        .get(app.url("/api/health"))
        .header("x-huge", "h".repeat(70 * 1024))
        .send()
        .await;
    if let Ok(huge) = huge {
        assert_eq!(huge.status().as_u16(), 431);
    }
    assert_eq!(app.get("/api/health").await.status, 200);
}
