//! Every shipped scenario end to end: the real stack (private Redis,
//! PostgreSQL, several replicas behind fault proxies, or the embedded
//! default), real faults, and all invariants must hold. Plus proof that the
//! harness has teeth: a replica with the original flow's ordering bug fails.

use std::path::PathBuf;

use booking_harness::checker::Validity;
use booking_harness::runner::{self, RunOptions, ScenarioResult};
use booking_harness::scenario::Scenario;
use booking_harness::stack::ServiceBinary;

fn scenario_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file)
}

fn options(out: &tempfile::TempDir) -> RunOptions {
    RunOptions {
        out_dir: out.path().to_owned(),
        binary: ServiceBinary(env!("CARGO_BIN_EXE_booking-harness").into()),
    }
}

fn explain(r: &ScenarioResult) -> String {
    booking_harness::report::console(r)
}

async fn run_and_expect_valid(file: &str) {
    let scenario = Scenario::load(&scenario_path(file)).expect("scenario parses");
    assert!(
        runner::cannot_run_here(&scenario).is_none(),
        "{file} cannot run here: redis-server and PostgreSQL must be installed (bash .ci/run installs them)"
    );
    let out = tempfile::tempdir().expect("dir");
    let (result, history) = runner::run(&scenario, &options(&out))
        .await
        .expect("scenario runs");
    assert_eq!(result.validity, Validity::Valid, "\n{}", explain(&result));
    // A fault that overlapped no operation tested nothing.
    for (fault, hit) in result.faults.iter().zip(&result.ops_during_faults) {
        assert!(fault.apply_error.is_none(), "{fault:?}");
        assert!(
            *hit > 0,
            "fault {fault:?} overlapped no operation\n{}",
            explain(&result)
        );
    }
    assert_eq!(
        result.faults.len(),
        scenario.faults.len(),
        "every fault was applied"
    );
    assert!(
        history.ops.iter().any(|o| o.is_created()),
        "something was booked"
    );
    // The recorded history re-checks offline to the same verdict.
    let file = result.history_file.expect("history written");
    let (_, again) = runner::check_file(&file, &scenario.checkers).expect("re-check");
    assert_eq!(again.validity, Validity::Valid);
}

macro_rules! scenario_tests {
    ($($name:ident => $file:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_and_expect_valid($file).await
            }
        )*
    };
}

scenario_tests!(
    embedded_smoke => "00-embedded-smoke.toml",
    double_click => "01-double-click.toml",
    many_clients_one_slot => "02-many-clients-one-slot.toml",
    dropped_responses => "03-dropped-responses.toml",
    crash_after_commit => "04-crash-after-commit.toml",
    redis_restart => "05-redis-restart.toml",
    redis_latency_beyond_lock_ttl => "06-redis-latency-beyond-lock-ttl.toml",
    paused_replica_outlives_lock => "07-paused-replica-outlives-lock.toml",
    database_restart => "08-database-restart.toml",
    replica_killed_under_load => "09-replica-killed-under-load.toml",
    key_reused_with_another_payload => "10-key-reused-with-another-payload.toml",
    cancel_and_rebook => "11-cancel-and-rebook.toml",
    thundering_herd => "12-thundering-herd.toml",
    network_chaos => "13-network-chaos.toml",
);

#[test]
fn every_shipped_scenario_has_a_test() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let shipped = Scenario::load_all(&dir).expect("all scenarios parse");
    assert!(shipped.len() >= 12, "at least twelve scenarios ship");
    let this_file = include_str!("scenarios.rs");
    for s in &shipped {
        let file = s
            .path
            .as_ref()
            .and_then(|p| p.file_name())
            .and_then(|f| f.to_str())
            .expect("file");
        assert!(
            this_file.contains(&format!("\"{file}\"")),
            "{file} is not run by cargo test"
        );
    }
}

/// The original flow's ordering bug (mark the key completed and release the
/// lock before the transaction commits), seeded into the replicas: the
/// harness must report it, naming the operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_flows_ordering_bug_is_caught() {
    let scenario = Scenario::parse(
        r#"
        name = "teeth-finalize-before-commit"
        mode = "local"
        replicas = 2
        seed = 21
        service_env = { BOOKING_SEEDED_BUG = "finalize-before-commit" }
        [workload]
        think_time = "30ms"
        users = 8
        resources = ["room_A", "room_B"]
        dates = 1
        clients = 8
        operations = 60
        duration = "15s"
        double_submit_ratio = 0.5
        cancel_ratio = 0.0
        list_ratio = 0.0
        [[faults]]
        at = "100ms"
        for = "2s"
        kind = "failpoint"
        name = "before_commit"
        action = "30%return(error)"
        "#,
    )
    .expect("scenario");
    let out = tempfile::tempdir().expect("dir");
    let (result, _) = runner::run(&scenario, &options(&out)).await.expect("runs");
    assert_eq!(result.validity, Validity::Invalid, "\n{}", explain(&result));
    let verdict = result.verdict.as_ref().expect("verdict");
    let failed: Vec<_> = verdict
        .results
        .iter()
        .filter(|r| r.validity == Validity::Invalid)
        .map(|r| r.checker.as_str())
        .collect();
    assert!(
        failed.contains(&"no_lost_ack"),
        "{failed:?}\n{}",
        explain(&result)
    );
    assert!(
        failed.contains(&"replay_consistency"),
        "{failed:?}\n{}",
        explain(&result)
    );
    for r in &verdict.results {
        for v in &r.violations {
            assert!(
                !v.ops.is_empty() || !v.rows.is_empty(),
                "a violation names its evidence: {v:?}"
            );
        }
    }
}

/// The same bug is invisible without faults or races to expose it: a calm
/// run passes, which is why the shipped scenarios combine both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calm_run_does_not_expose_the_ordering_bug() {
    let scenario = Scenario::parse(
        r#"
        name = "calm"
        mode = "local"
        replicas = 1
        seed = 3
        service_env = { BOOKING_SEEDED_BUG = "finalize-before-commit" }
        [workload]
        users = 40
        dates = 10
        clients = 1
        operations = 15
        cancel_ratio = 0.0
        list_ratio = 0.0
        "#,
    )
    .expect("scenario");
    let out = tempfile::tempdir().expect("dir");
    let (result, _) = runner::run(&scenario, &options(&out)).await.expect("runs");
    assert_eq!(result.validity, Validity::Valid, "\n{}", explain(&result));
}

/// `target` mode: a running deployment (here one started by the test on a
/// loopback port) is driven through its API only; store checks are unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_mode_checks_a_running_deployment_through_its_api() {
    use booking_harness::infra::{BookingProcess, BookingProcessConfig};
    let dir = tempfile::tempdir().expect("dir");
    let deployment = BookingProcess::start(BookingProcessConfig {
        binary: env!("CARGO_BIN_EXE_booking-harness").into(),
        database_url: format!("sqlite://{}", dir.path().join("b.db").display()),
        redis_url: None,
        env: Vec::new(),
    })
    .await
    .expect("deployment");
    let scenario = Scenario::parse(&format!(
        r#"
        name = "target"
        mode = "target"
        target_url = "{}"
        seed = 4
        [workload]
        clients = 3
        operations = 30
        double_submit_ratio = 0.3
        [[faults]]
        at = "100ms"
        for = "500ms"
        kind = "drop_responses"
        target = "replica:0"
        "#,
        deployment.url()
    ))
    .expect("scenario");
    let out = tempfile::tempdir().expect("dir");
    let (result, _) = runner::run(&scenario, &options(&out)).await.expect("runs");
    let verdict = result.verdict.as_ref().expect("verdict");
    let by_name = |n: &str| {
        verdict
            .results
            .iter()
            .find(|r| r.checker == n)
            .map(|r| r.validity)
    };
    assert_eq!(
        by_name("replay_consistency"),
        Some(Validity::Valid),
        "{}",
        explain(&result)
    );
    assert_eq!(by_name("contract"), Some(Validity::Valid));
    assert_eq!(by_name("recovery"), Some(Validity::Valid));
    assert_eq!(
        by_name("no_lost_ack"),
        Some(Validity::Unknown),
        "no store to read in target mode"
    );
    assert_eq!(result.validity, Validity::Unknown);

    let remote = Scenario::parse(
        "name = \"x\"\nmode = \"target\"\ntarget_url = \"http://192.168.1.10:3000\"\n",
    )
    .expect("parses");
    let refused = runner::run(&remote, &options(&out)).await;
    assert!(refused.is_err(), "traffic never leaves this machine");
}
