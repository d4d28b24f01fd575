//! The service's own log, as an operator's collector reads it: the binary
//! runs as a child process with its output going to a file.

use booking_infra::{BookingProcess, BookingProcessConfig};

/// Output that is not a terminal gets plain text: no colour escape codes
/// for a file or a log collector to store, and each line carries the
/// request span's fields as written.
#[tokio::test]
async fn a_log_file_gets_plain_text() {
    let dir = tempfile::tempdir().expect("dir");
    let database_url = format!("sqlite://{}", dir.path().join("booking.db").display());
    let replica = BookingProcess::start(BookingProcessConfig {
        binary: env!("CARGO_BIN_EXE_booking").into(),
        database_url,
        redis_url: None,
        // Debug for tower_http: every request logs inside its span.
        env: vec![("RUST_LOG".into(), "info,tower_http=debug".into())],
    })
    .await
    .expect("replica");
    let answer = reqwest::get(format!("{}/health", replica.url()))
        .await
        .expect("health");
    assert_eq!(answer.status(), 200);

    let log = replica.log();
    assert!(
        log.contains("request{method=GET uri=/health"),
        "the request's span, as plain fields: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in the log file: {log:?}"
    );
}
