//! Every shipped scenario end to end: the real stack (private Redis,
//! PostgreSQL, several replicas behind fault proxies, or the embedded
//! default), real faults, and all invariants must hold. Plus proof that each
//! scenario has the teeth it claims: run against every seeded bug it
//! declares in `catches`, it must fail, through the checker the service's
//! catalogue names for that bug.

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
    RunOptions::new(
        out.path().to_owned(),
        ServiceBinary(env!("CARGO_BIN_EXE_booking-harness").into()),
    )
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

/// Runs `file` against each seeded bug it declares; each must be caught
/// by a checker the catalogue names. Detection under faults depends on
/// timing, so a bug gets a second run before the promise counts as broken
/// (and the test says so when the second run was needed).
async fn run_and_expect_its_bugs_caught(file: &str) {
    use booking_harness::mutants::{run_cell, Cell};
    let scenario = Scenario::load(&scenario_path(file)).expect("scenario parses");
    if scenario.catches.is_empty() {
        assert!(
            scenario.description.to_lowercase().contains("smoke test"),
            "{file} catches no seeded bug: its description must say it is a smoke test"
        );
    }
    let out = tempfile::tempdir().expect("dir");
    for bug in &scenario.catches {
        let entry = booking::seeded::entry(bug).expect("a catalogue bug");
        let mut cells = Vec::new();
        for _ in 0..2 {
            let cell = run_cell(&scenario, entry, &options(&out)).await;
            let caught = matches!(cell, Cell::Killed(_));
            cells.push(cell);
            if caught {
                break;
            }
        }
        assert!(
            matches!(cells.last(), Some(Cell::Killed(_))),
            "{file} declares it catches {bug} (by {:?}) but: {cells:?}",
            entry.caught_by
        );
        if cells.len() > 1 {
            println!("{file} caught {bug} on the second run: {cells:?}");
        }
    }
}

macro_rules! scenario_tests {
    ($($name:ident, $teeth:ident => $file:literal),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run_and_expect_valid($file).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $teeth() {
                run_and_expect_its_bugs_caught($file).await
            }
        )*
    };
}

scenario_tests!(
    embedded_smoke, embedded_smoke_catches_its_bugs => "00-embedded-smoke.toml",
    double_click, double_click_catches_its_bugs => "01-double-click.toml",
    many_clients_one_slot, many_clients_one_slot_catches_its_bugs => "02-many-clients-one-slot.toml",
    dropped_responses, dropped_responses_catches_its_bugs => "03-dropped-responses.toml",
    crash_after_commit, crash_after_commit_catches_its_bugs => "04-crash-after-commit.toml",
    redis_restart, redis_restart_catches_its_bugs => "05-redis-restart.toml",
    redis_latency_beyond_lock_ttl, redis_latency_beyond_lock_ttl_catches_its_bugs => "06-redis-latency-beyond-lock-ttl.toml",
    paused_replica_outlives_lock, paused_replica_outlives_lock_catches_its_bugs => "07-paused-replica-outlives-lock.toml",
    database_restart, database_restart_catches_its_bugs => "08-database-restart.toml",
    replica_killed_under_load, replica_killed_under_load_catches_its_bugs => "09-replica-killed-under-load.toml",
    key_reused_with_another_payload, key_reused_with_another_payload_catches_its_bugs => "10-key-reused-with-another-payload.toml",
    cancel_and_rebook, cancel_and_rebook_catches_its_bugs => "11-cancel-and-rebook.toml",
    thundering_herd, thundering_herd_catches_its_bugs => "12-thundering-herd.toml",
    network_chaos, network_chaos_catches_its_bugs => "13-network-chaos.toml",
    slot_race_in_the_database, slot_race_in_the_database_catches_its_bugs => "14-slot-race-in-the-database.toml",
    users_apart, users_apart_catches_its_bugs => "15-users-apart.toml",
    failures_around_the_commit, failures_around_the_commit_catches_its_bugs => "16-failures-around-the-commit.toml",
    refusals_are_remembered, refusals_are_remembered_catches_its_bugs => "17-refusals-are-remembered.toml",
    cancel_during_a_redis_stall, cancel_during_a_redis_stall_catches_its_bugs => "18-cancel-during-a-redis-stall.toml",
    keys_expire_and_come_back, keys_expire_and_come_back_catches_its_bugs => "19-keys-expire-and-come-back.toml",
    refusal_meets_cancel, refusal_meets_cancel_catches_its_bugs => "20-refusal-meets-cancel.toml",
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

/// Every seeded bug of the service's catalogue is declared by at least one
/// shipped scenario, so `cargo test` proves the harness catches all of them.
#[test]
fn every_seeded_bug_is_caught_by_a_shipped_scenario() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let shipped = Scenario::load_all(&dir).expect("all scenarios parse");
    for entry in booking::seeded::CATALOGUE {
        assert!(
            shipped
                .iter()
                .any(|s| s.catches.iter().any(|c| c == entry.name)),
            "no shipped scenario declares it catches {}",
            entry.name
        );
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
