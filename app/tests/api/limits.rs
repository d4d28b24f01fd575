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
