//! Bad input gets a clear 4xx with a stable code and writes nothing.

use crate::helpers::{booking_body, spawn_app, Backend};

crate::suite!(
    malformed_json_is_rejected_and_writes_nothing,
    an_impossible_date_is_rejected_field_by_field,
    an_oversized_body_is_413_and_writes_nothing,
    an_invalid_idempotency_key_is_rejected_and_writes_nothing,
    missing_fields_and_wrong_types_are_reported_together,
    both_body_readers_answer_alike,
);

async fn assert_nothing_written(app: &crate::helpers::TestApp) {
    assert_eq!(app.count_rows().await, 0);
    assert_eq!(app.count_idempotency_records().await, 0);
}

async fn malformed_json_is_rejected_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    for body in ["{", "not json", "[]", "\"x\""] {
        let reply = app
            .post_raw(body, &[("content-type", "application/json")])
            .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.code(), "VALIDATION_FAILED");
        assert_eq!(reply.content_type, "application/problem+json");
        assert_eq!(reply.json["success"], false);
        assert_eq!(reply.json["status"], 400);
        assert!(reply.json["type"].is_string() && reply.json["title"].is_string());
    }
    let no_type = app.post_raw(r#"{"userId":"u"}"#, &[]).await;
    assert_eq!(no_type.code(), "VALIDATION_FAILED");
    assert_nothing_written(&app).await;
}

/// `Content-Type: application/json` takes the fast reader (straight into
/// the request type), any other JSON type axum's reader: the same bodies
/// get the same answers from both.
async fn both_body_readers_answer_alike(backend: Backend) {
    let app = spawn_app(backend).await;
    let message = |reply: &crate::helpers::Reply| {
        reply.json["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let cases = [
        ("{", "is not valid JSON"),
        ("", "is not valid JSON"),
        (
            "  [\"user_alice\", \"room_A\", \"2026-12-01\"]",
            "must be a JSON object",
        ),
        ("\"x\"", "must be a JSON object"),
        (r#"{"userId":"user_alice"} trailing"#, "is not valid JSON"),
    ];
    for content_type in ["application/json", "application/json; charset=utf-8"] {
        for (body, expected) in cases {
            let reply = app.post_raw(body, &[("content-type", content_type)]).await;
            assert_eq!(reply.status, 400, "{content_type} {body:?}: {}", reply.body);
            assert_eq!(message(&reply), expected, "{content_type} {body:?}");
        }
    }
    assert_nothing_written(&app).await;
    // A repeated member: the last one counts, on both readers.
    for (content_type, date) in [
        ("application/json", "2026-12-01"),
        ("application/json; charset=utf-8", "2026-12-02"),
    ] {
        let body = format!(
            r#"{{"userId":"user_mallory","userId":"user_alice","resourceId":"room_A","date":"{date}"}}"#
        );
        let reply = app
            .post_raw(
                body,
                &[("content-type", content_type), ("idempotency-key", date)],
            )
            .await;
        assert_eq!(reply.status, 201, "{content_type}: {}", reply.body);
        assert_eq!(reply.json["booking"]["userId"], "user_alice");
    }
}

async fn an_impossible_date_is_rejected_field_by_field(backend: Backend) {
    let app = spawn_app(backend).await;
    for date in ["2026-02-30", "2026-13-01", "01-12-2026", "2026-1-1", ""] {
        let reply = app.book("user_alice", "room_A", date, Some("k")).await;
        assert_eq!(reply.status, 400, "{date}");
        assert_eq!(reply.code(), "VALIDATION_FAILED");
        assert_eq!(reply.json["errors"][0]["field"], "date", "{}", reply.body);
    }
    assert_nothing_written(&app).await;
}

async fn an_oversized_body_is_413_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = booking_body("user_alice", "room_A", "2026-12-01");
    body["padding"] = serde_json::Value::String("x".repeat(64 * 1024));
    let reply = app.post_booking(&body, Some("big")).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.code(), "PAYLOAD_TOO_LARGE");
    assert_nothing_written(&app).await;
}

async fn an_invalid_idempotency_key_is_rejected_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let long = "k".repeat(256);
    for key in ["has space", long.as_str(), "tab\there"] {
        let reply = app
            .book("user_alice", "room_A", "2026-12-01", Some(key))
            .await;
        assert_eq!(reply.status, 400, "{key:?}: {}", reply.body);
        assert_eq!(reply.code(), "IDEMPOTENCY_KEY_INVALID");
    }
    let empty = app
        .post_raw(
            booking_body("user_alice", "room_A", "2026-12-01").to_string(),
            &[
                ("content-type", "application/json"),
                ("idempotency-key", ""),
            ],
        )
        .await;
    assert_eq!(empty.code(), "IDEMPOTENCY_KEY_INVALID");
    assert_nothing_written(&app).await;
    let ok = app
        .book("user_alice", "room_A", "2026-12-01", Some(&"k".repeat(255)))
        .await;
    assert_eq!(ok.status, 201);
}

async fn missing_fields_and_wrong_types_are_reported_together(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app
        .post_booking(
            &serde_json::json!({"userId": 42, "resourceId": "room A"}),
            None,
        )
        .await;
    assert_eq!(reply.code(), "VALIDATION_FAILED");
    let fields: Vec<_> = reply.json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(fields, ["userId", "resourceId", "date"]);
    assert_nothing_written(&app).await;
}
