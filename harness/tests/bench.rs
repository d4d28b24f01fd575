//! A short load run (debug build, tiny durations): the bench command works
//! end to end against a local stack, keeps every invariant under load and
//! writes its three reports. Real figures come from a release build
//! (`docs/PERFORMANCE.md`), never from this test.

use std::time::Duration;

use booking_harness::bench::{run, write_reports, BenchConfig};
use booking_harness::stack::ServiceBinary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_run_keeps_every_invariant_and_writes_its_reports() {
    let out = tempfile::tempdir().expect("dir");
    let config = BenchConfig {
        duration: Duration::from_millis(400),
        clients: 8,
        repeat: 2,
        client_steps: vec![1, 4],
        replica_steps: vec![1, 2],
        race_rounds: 2,
        live_key_steps: vec![500, 2_000],
        out_dir: out.path().to_owned(),
        binary: ServiceBinary(env!("CARGO_BIN_EXE_booking-harness").into()),
    };
    let report = run(&config).await.expect("the load run completes");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let names: Vec<&str> = report
        .measurements
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    for wanted in [
        "GET /health (HTTP limit)",
        "creates on distinct slots",
        "replays of one completed key",
        "100 clients racing one slot, first round (new connections)",
        "100 clients racing one slot",
        "mix: 70% create, 30% list",
        "embedded: GET /health",
        "embedded: creates on distinct slots",
        "embedded: replays of one completed key",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    assert!(
        report
            .measurements
            .iter()
            .all(|m| m.requests > 0 && m.errors == 0),
        "{:?}",
        report.measurements
    );
    // The race's rounds are counted in requests, not seconds: a round can
    // use fewer clock ticks than make a reading (then it shows none). Every
    // load that runs for its seconds has one.
    let timed = || {
        report
            .measurements
            .iter()
            .filter(|m| !m.name.starts_with("100 clients racing one slot"))
    };
    assert!(
        timed().all(|m| m.service_cpu_us.is_some()),
        "the service's CPU per request is reported for every timed workload: {:?}",
        report.measurements
    );
    assert!(
        report.measurements.iter().all(|m| match m.service_cpu_us {
            Some(all) =>
                matches!(m.service_kernel_cpu_us, Some(kernel) if (0.0..=all).contains(&kernel)),
            None => m.service_kernel_cpu_us.is_none(),
        }),
        "and the part of it spent in the kernel: {:?}",
        report.measurements
    );
    let measured = |name: &str| report.measurements.iter().find(|m| m.name == name);
    let creates = measured("creates on distinct slots").expect("creates");
    assert!(
        matches!(
            (creates.service_cpu_us, creates.service_kernel_cpu_us),
            (Some(all), Some(kernel)) if kernel > 0.0 && kernel < all
        ),
        "a create spends time both in the kernel (its sockets) and in user space: {creates:?}"
    );
    let runs = |name: &str| measured(name).map(|m| m.runs);
    let requests = |name: &str| measured(name).map(|m| m.requests);
    assert_eq!(
        runs("creates on distinct slots"),
        Some(2),
        "the main comparisons ran twice"
    );
    assert_eq!(runs("replays of one completed key"), Some(2));
    assert_eq!(runs("scaling: creates vs clients"), Some(1));
    assert_eq!(
        requests("100 clients racing one slot, first round (new connections)"),
        Some(100),
        "the first round is reported on its own"
    );
    assert_eq!(
        requests("100 clients racing one slot"),
        Some(200),
        "--race-rounds rounds after the first"
    );
    let live: Vec<u64> = report
        .measurements
        .iter()
        .filter_map(|m| m.live_keys)
        .collect();
    assert_eq!(live, [500, 2_000], "the live-keys curve ran at each step");
    assert!(report.pgbench_inserts_per_second > 0.0, "pgbench ran");
    assert!(
        report.pgbench_booking_transactions_per_second > 0.0,
        "pgbench ran the booking transaction"
    );
    assert!(report.redis_set_per_second > 0.0, "redis-benchmark ran");
    assert!(report.replica_rss_mb > 0.0);
    let targets: Vec<&str> = report.targets.iter().map(|t| t.name.as_str()).collect();
    for wanted in [
        "service CPU per create",
        "embedded default, creates at 32 clients",
        "replays ≥ 0.7",
    ] {
        assert!(
            targets.iter().any(|t| t.contains(wanted)),
            "{wanted} missing from {targets:?}"
        );
    }
    write_reports(&report, out.path()).expect("reports");
    for file in ["bench.md", "bench.json", "bench.html"] {
        assert!(out.path().join(file).is_file(), "{file}");
    }
    let html = std::fs::read_to_string(out.path().join("bench.html")).expect("html");
    assert!(html.contains("<svg") && html.contains("throughput vs clients"));
}

/// The bench's stack links replicas straight to Redis and PostgreSQL (no
/// fault proxy to relay, and be counted against, every round trip), and
/// books through them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_runs_link_replicas_straight_to_redis_and_postgres() {
    use booking_harness::scenario::{Mode, Scenario, Target};
    use booking_harness::stack::{Links, Stack};

    let scenario = Scenario {
        mode: Mode::Local,
        replicas: 1,
        ..Scenario::parse("name = \"direct\"").expect("scenario")
    };
    let binary = ServiceBinary(env!("CARGO_BIN_EXE_booking-harness").into());
    let stack = Stack::start_linked(&scenario, &binary, Links::Direct)
        .await
        .expect("stack");
    assert!(stack.proxies_for(&Target::Redis).is_empty());
    assert!(stack.proxies_for(&Target::Database).is_empty());
    let base = &stack.direct_urls().await[0];
    let http = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = http
            .post(format!("{base}/api/bookings"))
            .header("Idempotency-Key", "direct-1")
            .json(&serde_json::json!({ "userId": "u1", "resourceId": "room_A", "date": "2040-03-01" }))
            .send()
            .await
            .expect("answer");
        answers.push((
            response.status().as_u16(),
            response.text().await.expect("body"),
        ));
    }
    assert_eq!(answers[0].0, 201, "{answers:?}");
    assert_eq!(answers[0], answers[1], "the retry replays the booking");
    assert_eq!(
        stack
            .store()
            .count_confirmed("room_A", "2040-03-01")
            .await
            .expect("count"),
        1
    );
}
