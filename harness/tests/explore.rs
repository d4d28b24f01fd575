//! The fast tier of property-based exploration: a bounded number of
//! generated cases (workload + fault schedule) against one long-lived local
//! stack, and proof that the search has teeth.

use std::time::Duration;

use booking_harness::checker::Validity;
use booking_harness::explore::{explore, reproduce, ExploreConfig};
use booking_harness::scenario::{Mode, Scenario};
use booking_harness::stack::ServiceBinary;

fn config(out: &tempfile::TempDir, cases: u32, seed: u64) -> ExploreConfig {
    ExploreConfig {
        mode: Mode::Local,
        replicas: 2,
        cases,
        time_limit: Duration::from_secs(90),
        max_shrink_iters: 16,
        shrink_retries: 1,
        out_dir: out.path().join("explore"),
        regressions: Some(out.path().join("proptest-regressions.txt")),
        service_env: Default::default(),
        seed: Some(seed),
        confirm_runs: 1,
        binary: ServiceBinary(env!("CARGO_BIN_EXE_booking-harness").into()),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn generated_cases_against_the_service_find_no_violation() {
    let out = tempfile::tempdir().expect("dir");
    let rt = runtime();
    let report = explore(&rt, &config(&out, 8, 11)).expect("exploration runs");
    println!("{}", report.summary());
    assert!(report.finding.is_none(), "{}", report.summary());
    assert!(report.cases_run >= 1);
    assert!(
        !report.faults_by_kind.is_empty(),
        "the cases injected faults"
    );
}

/// With the original flow's ordering bug seeded into the replicas, the
/// search finds a violation, shrinks it to a handful of requests, confirms
/// it on a fresh stack, writes it
/// as a scenario file that reproduces it, and keeps it in proptest's
/// regression file so the next exploration tries it first.
#[test]
fn the_search_finds_and_shrinks_a_seeded_protocol_bug() {
    let out = tempfile::tempdir().expect("dir");
    let rt = runtime();
    let mut cfg = config(&out, 30, 3);
    cfg.service_env
        .insert("BOOKING_SEEDED_BUG".into(), "finalize-before-commit".into());
    let report = explore(&rt, &cfg).expect("exploration runs");
    println!("{}", report.summary());
    let finding = report.finding.as_ref().expect("the seeded bug is found");
    assert!(
        finding.message.contains("no_lost_ack") || finding.message.contains("replay_consistency"),
        "{}",
        finding.message
    );
    assert!(
        !finding.flaky(),
        "the shrunk case reproduces on a fresh stack: {:?}",
        finding.reruns
    );
    let (first, shrunk) = (&finding.first.workload, &finding.shrunk.workload);
    assert!(shrunk.operations <= first.operations && shrunk.clients <= first.clients);
    // 16 shrinking steps over a dozen dimensions: a handful of requests.
    assert!(
        shrunk.operations <= 10,
        "shrunk to a few requests: {}",
        finding.shrunk.to_toml()
    );

    // The written file is a scenario that reproduces the violation.
    let written = Scenario::load(&finding.file).expect("a valid scenario file");
    assert_eq!(written.workload.operations, shrunk.operations);
    assert_eq!(
        written
            .service_env
            .get("BOOKING_SEEDED_BUG")
            .map(String::as_str),
        Some("finalize-before-commit")
    );
    let binary = cfg.binary.clone();
    let reproduced = (0..3).any(|i| {
        reproduce(
            &rt,
            &finding.file,
            &binary,
            out.path().join(format!("repro{i}")),
        )
        .is_ok_and(|v| v == Validity::Invalid)
    });
    assert!(
        reproduced,
        "the shrunk case reproduces: {}",
        finding.shrunk.to_toml()
    );

    // proptest kept the failing case; the next exploration replays it first.
    let regressions =
        std::fs::read_to_string(out.path().join("proptest-regressions.txt")).expect("regressions");
    assert!(
        regressions.lines().any(|l| l.starts_with("cc ")),
        "{regressions}"
    );
    let mut again = cfg.clone();
    again.cases = 1;
    again.max_shrink_iters = 0;
    again.out_dir = out.path().join("again");
    let replay = explore(&rt, &again).expect("exploration runs");
    assert!(
        replay.finding.is_some(),
        "the regression is replayed first\n{}",
        replay.summary()
    );
}
