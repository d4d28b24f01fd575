//! Hot paths of the service, measured with criterion:
//! key resolution and fingerprinting, the in-process coordinator, response
//! encoding, and whole requests through the router on the embedded default
//! (SQLite file + in-process coordinator).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use booking::booking::key::{fingerprint, resolve_key};
use booking::config::{IdempotencySettings, Settings};
use booking::coordinator::core::{Clock, CoordinatorCore, Tables};
use booking::coordinator::{Claim, CompletedRecord};
use booking::domain::{
    Booking, BookingDate, BookingStatus, IdempotencyKey, NewBooking, ResourceId, UserId,
};
use booking::error::ApiError;
use booking::response::StoredResponse;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tower::ServiceExt;

fn request() -> NewBooking {
    NewBooking {
        user: UserId::parse("user_alice").expect("user"),
        resource: ResourceId::parse("room_A").expect("resource"),
        date: BookingDate::parse("2027-03-01").expect("date"),
    }
}

fn keys(c: &mut Criterion) {
    let req = request();
    let key = IdempotencyKey::parse(b"3f2b8a9e-5b7c-4d6e-9f10-1a2b3c4d5e6f").expect("key");
    let settings = IdempotencySettings::default();
    c.bench_function("resolve_key (client key)", |b| {
        b.iter(|| resolve_key(black_box(&req), Some(black_box(&key)), &settings))
    });
    c.bench_function("fingerprint", |b| b.iter(|| fingerprint(black_box(&req))));
    c.bench_function("validate date", |b| {
        b.iter(|| BookingDate::parse(black_box("2027-03-01")))
    });
}

struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        1_000
    }
}

fn coordinator(c: &mut Criterion) {
    let core: CoordinatorCore<std::sync::Mutex<Tables>, FixedClock> =
        CoordinatorCore::new(FixedClock);
    let record = CompletedRecord {
        fingerprint: "fp".into(),
        response: StoredResponse {
            status: 201,
            body: "{}".into(),
        },
        expires_at: None,
    };
    let lease = Duration::from_secs(30);
    let n = AtomicU64::new(0);
    c.bench_function("coordinator claim + complete (new key)", |b| {
        b.iter(|| {
            let key = format!("k{}", n.fetch_add(1, Ordering::Relaxed));
            if let Claim::Acquired(token) = core.claim(&key, "fp", lease) {
                core.complete(&key, &token, &record, lease);
            }
        })
    });
    c.bench_function("coordinator claim (replay of a completed key)", |b| {
        b.iter(|| core.claim(black_box("k0"), "fp", lease))
    });
    c.bench_function("coordinator claim + release", |b| {
        b.iter(|| {
            if let Claim::Acquired(token) = core.claim("released", "fp", lease) {
                core.release("released", &token);
            }
        })
    });
    c.bench_function("coordinator lock + unlock", |b| {
        b.iter(|| {
            if let Some(token) = core.lock("slot", Duration::from_secs(5)) {
                core.unlock("slot", &token);
            }
        })
    });
}

fn encoding(c: &mut Criterion) {
    let booking = Booking {
        id: uuid::Uuid::now_v7(),
        user_id: UserId::parse("user_alice").expect("user"),
        resource_id: ResourceId::parse("room_A").expect("resource"),
        date: BookingDate::parse("2027-03-01").expect("date"),
        status: BookingStatus::Confirmed,
        created_at: chrono::Utc::now(),
        cancelled_at: None,
    };
    c.bench_function("encode 201 body", |b| {
        b.iter(|| {
            serde_json::to_string(&serde_json::json!({
                "success": true, "message": "Booking created successfully", "booking": black_box(&booking)
            }))
        })
    });
    let req = request();
    c.bench_function("encode ALREADY_BOOKED problem", |b| {
        b.iter(|| {
            ApiError::AlreadyBooked {
                resource: req.resource.clone(),
                date: req.date,
            }
            .to_stored()
        })
    });
}

fn whole_requests(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let settings = Settings {
        database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..Settings::default()
    };
    let state = rt
        .block_on(booking::startup::build_state(settings))
        .expect("state");
    let router = booking::routes::router(state);
    let n = AtomicU64::new(0);
    let post = |key: String, date: String| {
        Request::post("/api/bookings")
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(format!(
                r#"{{"userId":"bench","resourceId":"room_B","date":"{date}"}}"#
            )))
            .expect("request")
    };
    c.bench_function(
        "POST /api/bookings through the router (new slot, SQLite)",
        |b| {
            b.iter(|| {
                let i = n.fetch_add(1, Ordering::Relaxed);
                let date = (chrono::NaiveDate::from_ymd_opt(2030, 1, 1).expect("date")
                    + chrono::Days::new(i))
                .format("%Y-%m-%d")
                .to_string();
                let response = rt
                    .block_on(router.clone().oneshot(post(format!("new-{i}"), date)))
                    .expect("response");
                assert_eq!(response.status(), 201);
            })
        },
    );
    let first = rt
        .block_on(
            router
                .clone()
                .oneshot(post("replayed".into(), "2029-06-01".into())),
        )
        .expect("response");
    assert_eq!(first.status(), 201);
    c.bench_function("POST /api/bookings through the router (replay)", |b| {
        b.iter(|| {
            let response = rt
                .block_on(
                    router
                        .clone()
                        .oneshot(post("replayed".into(), "2029-06-01".into())),
                )
                .expect("response");
            assert_eq!(response.status(), 201);
        })
    });
    c.bench_function("GET /health through the router", |b| {
        b.iter(|| {
            let response = rt
                .block_on(
                    router.clone().oneshot(
                        Request::get("/health")
                            .body(Body::empty())
                            .expect("request"),
                    ),
                )
                .expect("response");
            assert_eq!(response.status(), 200);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = keys, coordinator, encoding, whole_requests
}
criterion_main!(benches);
