//! Hostile clients: slow headers (slowloris), too many connections, and a
//! flood of made-up methods. Bounded in count and time; loopback only.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app_with, Backend, TestApp};

async fn app_with(max_connections: usize, header_read_timeout: Duration) -> TestApp {
    spawn_app_with(Backend::Embedded, |s| {
        s.connections.max_connections = max_connections;
        s.connections.header_read_timeout = header_read_timeout;
    })
    .await
}

fn addr(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// A client that starts a request and never finishes its headers.
async fn slow_client(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    s
}

/// A fresh connection's `GET /api/health`, timed.
async fn health_in(app: &TestApp) -> Duration {
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(app.url("/api/health"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("health answers");
    assert!(r.status().is_success());
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_do_not_starve_other_clients_and_are_cut_off() {
    let app = app_with(512, Duration::from_secs(2)).await;
    let addr = addr(&app);
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(slow_client(&addr).await);
    }
    // Trickle a byte on each now and then, as slowloris does.
    for s in slow.iter_mut().take(50) {
        let _ = s.write_all(b"a").await;
    }
    let took = health_in(&app).await;
    assert!(
        took < Duration::from_secs(1),
        "health took {took:?} beside 300 slow clients"
    );

    // Past the header deadline the server has closed them.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut closed = 0;
    for s in &mut slow {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            // hyper may answer 408 before closing.
            Ok(Ok(n)) if String::from_utf8_lossy(&buf[..n]).contains("408") => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, slow.len(), "every slow connection was cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_and_frees_as_connections_time_out() {
    let app = app_with(8, Duration::from_millis(800)).await;
    let addr = addr(&app);
    let mut holders = Vec::new();
    for _ in 0..8 {
        holders.push(slow_client(&addr).await);
    }
    // The ninth client waits in the backlog until a holder times out; it
    // is then served, and nothing else queues behind it forever.
    let took = health_in(&app).await;
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // An idle keep-alive connection is closed too (it holds a permit).
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    idle.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let ended = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the idle connection is closed within the header deadline");
    assert!(matches!(ended, Ok(0) | Err(_)), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_grow_the_metrics() {
    let app = app_with(512, Duration::from_secs(10)).await;
    let client = reqwest::Client::new();
    for n in 0..200 {
        let method = reqwest::Method::from_bytes(format!("BREW{n}").as_bytes()).expect("method");
        let _ = client
            .request(method, app.url("/api/bookings"))
            .send()
            .await
            .expect("answer");
    }
    let metrics = app.get("/metrics").await.body;
    assert!(
        !metrics.contains("BREW"),
        "a label value per made-up method"
    );
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
    assert!(
        metrics.len() < 20_000,
        "metrics grew to {} bytes",
        metrics.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_gets_408_and_writes_nothing() {
    let app = app_with(512, Duration::from_millis(800)).await;
    let mut s = TcpStream::connect(addr(&app)).await.expect("connect");
    let body = r#"{"userId":"u1","resourceId":"room_A","date":"2027-02-01"}"#;
    s.write_all(
        format!(
            "POST /api/bookings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
        .await
        .expect("answered before the request timeout")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
    assert_eq!(app.count_rows().await, 0);
}

/// Bookings and reads as one client, until the rate limit answers.
async fn rate_limited_app(auth_dev: bool) -> TestApp {
    spawn_app_with(Backend::Embedded, |s| {
        s.rate_limit = booking::limits::RateLimit {
            per_second: 1,
            burst: 3,
        };
        if auth_dev {
            s.auth = booking::auth::AuthSettings {
                mode: booking::auth::AuthMode::Dev,
                dev_secret: Some("a-dev-secret-that-is-long-enough-for-hs256".into()),
                ..s.auth.clone()
            };
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_and_probes_are_never_throttled() {
    let app = rate_limited_app(false).await;
    for day in 1..=3 {
        let r = app
            .book(
                "u1",
                "room_A",
                &format!("2027-05-0{day}"),
                Some(&format!("r{day}")),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // Under --auth none the address is the client, whatever userId says.
    let limited = app.book("u2", "room_B", "2027-05-04", Some("r4")).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(limited.code(), "RATE_LIMITED");
    assert_eq!(limited.content_type, "application/problem+json");
    assert_eq!(limited.retry_after.as_deref(), Some("1"));
    assert_eq!(
        app.count_rows().await,
        3,
        "a limited request writes nothing"
    );
    for _ in 0..10 {
        assert_eq!(app.get("/api/health").await.status, 200);
        assert_eq!(app.get("/api/health/ready").await.status, 200);
    }
    // The bucket refills at the sustained rate.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = app.book("u2", "room_B", "2027-05-04", Some("r4")).await;
    assert_eq!(later.status, 201, "{}", later.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_each_user_has_a_rate_of_their_own() {
    let app = rate_limited_app(true).await;
    let mint = |user: &'static str| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(app.url("/api/auth/dev-token"))
                .json(&serde_json::json!({ "userId": user }))
                .send()
                .await
                .expect("mint");
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.expect("json");
            v["token"].as_str().expect("token").to_owned()
        }
    };
    let (alice, bob) = (mint("alice").await, mint("bob").await);
    let list = |user: &'static str, token: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url(&format!("/api/bookings/{user}")))
                .bearer_auth(token)
                .send()
                .await
                .expect("list")
                .status()
                .as_u16()
        }
    };
    let mut alice_statuses = Vec::new();
    for _ in 0..4 {
        alice_statuses.push(list("alice", alice.clone()).await);
    }
    assert_eq!(alice_statuses, [200, 200, 200, 429]);
    assert_eq!(list("bob", bob).await, 200, "bob is not alice");
}
