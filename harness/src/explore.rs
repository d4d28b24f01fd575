//! Property-based exploration: proptest generates whole scenarios (workload
//! and fault schedule), runs each against one long-lived stack, judges it by
//! every checker, and on a violation shrinks it to a small case that is
//! written as a scenario file, so `booking-harness run FILE` reproduces it.
//!
//! Cases share the stack: each gets its own dates and key namespace (so no
//! reset is needed between cases) and every fault is healed after it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use proptest::prelude::*;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngSeed, TestCaseError, TestError, TestRunner,
};

use crate::calendar;
use crate::checker::Validity;
use crate::runner::{self, RunOptions, PROBES};
use crate::scenario::{Fault, FaultKind, KeyStyle, Mode, Scenario, Target, Workload};
use crate::stack::{ServiceBinary, Stack};

/// How to explore.
#[derive(Debug, Clone)]
pub struct ExploreConfig {
    pub mode: Mode,
    pub replicas: usize,
    /// Upper bound on generated cases (shrinking runs come on top).
    pub cases: u32,
    /// Stop generating new cases after this long.
    pub time_limit: Duration,
    /// Upper bound on shrinking steps after a failure.
    pub max_shrink_iters: u32,
    /// While shrinking, a candidate that passes is run this many more times
    /// before it counts as passing: failures under faults depend on timing,
    /// and one lucky pass would stop the shrink early.
    pub shrink_retries: u32,
    /// Where failing cases are written as scenario files.
    pub out_dir: PathBuf,
    /// proptest's regression file: failing seeds are kept and replayed first.
    pub regressions: Option<PathBuf>,
    /// Environment for the replicas (e.g. a seeded bug, shorter TTLs).
    pub service_env: BTreeMap<String, String>,
    /// Fixes proptest's own random seed (default: random).
    pub seed: Option<u64>,
    /// Runs of the shrunk case on a fresh stack before it is reported; a
    /// finding that none of them reproduces is labelled flaky.
    pub confirm_runs: u32,
    pub binary: ServiceBinary,
}

/// A violation found, before and after shrinking.
#[derive(Debug, Clone)]
pub struct Finding {
    pub message: String,
    pub first: Scenario,
    pub shrunk: Scenario,
    /// The shrunk case as a scenario file.
    pub file: PathBuf,
    /// The shrunk case run again on a fresh stack, one entry per run.
    pub reruns: Vec<Rerun>,
}

/// One confirmation run of a shrunk case.
#[derive(Debug, Clone)]
pub struct Rerun {
    pub validity: Validity,
    /// The checkers that failed, with their first violation.
    pub failed: String,
    /// Failpoint actions that fired, and faults that could not be applied.
    pub faults: String,
}

impl Finding {
    /// How many confirmation runs reproduced the violation.
    pub fn reproduced(&self) -> usize {
        self.reruns
            .iter()
            .filter(|r| r.validity == Validity::Invalid)
            .count()
    }

    /// Found once, never again on a fresh stack.
    pub fn flaky(&self) -> bool {
        !self.reruns.is_empty() && self.reproduced() == 0
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExploreReport {
    /// Cases run, shrinking runs included.
    pub cases_run: u64,
    pub elapsed: Duration,
    /// Faults applied, by kind.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Failpoint actions that fired, by protocol step.
    pub failpoints_fired: BTreeMap<String, u64>,
    /// Cases not judged because a fault could not be applied (see `discard_reasons`).
    pub discarded: u64,
    /// Set when the shared stack did not come back to health after a case:
    /// the exploration stops with an error instead of judging later cases.
    pub broken_stack: Option<String>,
    pub discard_reasons: Vec<String>,
    pub finding: Option<Finding>,
    /// The seed of the exploration's own draws (given, or drawn once and
    /// reported): `--seed` with it repeats the same cases.
    pub seed: u64,
}

impl ExploreReport {
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let secs = self.elapsed.as_secs_f64().max(0.001);
        let _ = writeln!(
            s,
            "explored {} cases in {:.1} s ({:.2} cases/s), seed {} (repeat with --seed {})",
            self.cases_run,
            secs,
            self.cases_run as f64 / secs,
            self.seed,
            self.seed
        );
        let faults: Vec<String> = self
            .faults_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "faults exercised: {}",
            if faults.is_empty() {
                "none".into()
            } else {
                faults.join(", ")
            }
        );
        let steps = booking::failpoints::Step::ALL;
        let hit: Vec<String> = steps
            .iter()
            .map(|st| {
                format!(
                    "{} {}",
                    st.name(),
                    self.failpoints_fired.get(st.name()).copied().unwrap_or(0)
                )
            })
            .collect();
        let covered = steps
            .iter()
            .filter(|st| self.failpoints_fired.get(st.name()).is_some_and(|n| *n > 0))
            .count();
        let _ = writeln!(
            s,
            "protocol steps hit by failpoints: {covered}/{} ({})",
            steps.len(),
            hit.join(", ")
        );
        if self.discarded > 0 {
            let _ = writeln!(
                s,
                "discarded {} case(s) whose faults could not all be applied: {}",
                self.discarded,
                self.discard_reasons.join("; ")
            );
        }
        match &self.finding {
            None => s.push_str("no violation found\n"),
            Some(f) => s.push_str(&f.summary()),
        }
        s
    }
}

impl Finding {
    /// The finding for the summary: steady or flaky, how to reproduce it.
    fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        if self.flaky() {
            let _ = writeln!(
                s,
                "FLAKY FINDING (did not reproduce in {} run(s) on a fresh stack): {}\n  reproduce: booking-harness run {}",
                self.reruns.len(),
                self.message,
                self.file.display()
            );
            for (i, r) in self.reruns.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "  rerun {}: {:?} {} {}",
                    i + 1,
                    r.validity,
                    r.failed,
                    r.faults
                );
            }
            return s;
        }
        let _ = writeln!(
            s,
            "VIOLATION: {}\n  first failing case: {} operations, {} clients, {} faults\n  shrunk to: {} operations, {} clients, {} faults\n  reproduced in {}/{} run(s) on a fresh stack\n  reproduce: booking-harness run {}",
            self.message,
            self.first.workload.operations,
            self.first.workload.clients,
            self.first.faults.len(),
            self.shrunk.workload.operations,
            self.shrunk.workload.clients,
            self.shrunk.faults.len(),
            self.reproduced(),
            self.reruns.len(),
            self.file.display()
        );
        s
    }
}

/// Ratios shrink towards 0 (the first element).
fn ratio(choices: &[f64]) -> BoxedStrategy<f64> {
    prop::sample::select(choices.to_vec()).boxed()
}

fn ms(range: std::ops::RangeInclusive<u64>) -> BoxedStrategy<Duration> {
    range.prop_map(|n| Duration::from_millis(n * 50)).boxed()
}

fn link_target(mode: Mode, replicas: usize) -> BoxedStrategy<Target> {
    let mut targets = vec![Target::Replicas];
    targets.extend((0..replicas).map(Target::Replica));
    if mode == Mode::Local {
        targets.extend([Target::Redis, Target::Database]);
    }
    prop::sample::select(targets).boxed()
}

/// Every fault the harness can inject, simplest first (shrinking moves
/// towards earlier alternatives).
pub fn fault_strategy(mode: Mode, replicas: usize) -> BoxedStrategy<Fault> {
    let t = || link_target(mode, replicas);
    let replica = 0..replicas;
    let steps: Vec<&'static str> = booking::failpoints::Step::ALL
        .iter()
        .map(|s| s.name())
        .collect();
    // `sleep(800)` at `before_commit` keeps a booking transaction open past
    // the explorer's short slot lock, so the database's constraint decides.
    let actions = vec![
        "1*return(error)",
        "30%return(error)",
        "return(sleep(200))",
        "return(sleep(800))",
        "1*return(crash)",
    ];
    let mut kinds: Vec<BoxedStrategy<FaultKind>> = vec![
        (t(), 50u64..=600, 0u64..=200)
            .prop_map(|(target, latency_ms, jitter_ms)| FaultKind::Latency {
                target,
                latency_ms,
                jitter_ms,
            })
            .boxed(),
        t().prop_map(|target| FaultKind::Reset { target }).boxed(),
        t().prop_map(|target| FaultKind::DropResponses { target })
            .boxed(),
        t().prop_map(|target| FaultKind::Blackhole { target })
            .boxed(),
        (t(), 10u64..=400)
            .prop_map(|(target, bytes)| FaultKind::CloseAfter { target, bytes })
            .boxed(),
        (t(), 2_000u64..=50_000)
            .prop_map(|(target, bytes_per_sec)| FaultKind::Bandwidth {
                target,
                bytes_per_sec,
            })
            .boxed(),
        (
            prop::option::of(replica.clone()),
            prop::sample::select(steps),
            prop::sample::select(actions),
        )
            .prop_map(|(replica, name, action)| FaultKind::Failpoint {
                replica,
                name: name.into(),
                action: action.into(),
            })
            .boxed(),
        (replica.clone(), ms(4..=20))
            .prop_map(|(replica, restart_after)| FaultKind::KillReplica {
                replica,
                restart_after,
            })
            .boxed(),
        replica
            .prop_map(|replica| FaultKind::PauseReplica { replica })
            .boxed(),
    ];
    if mode == Mode::Local {
        kinds.push(Just(FaultKind::RestartRedis).boxed());
        kinds.push(Just(FaultKind::RestartDatabase).boxed());
    }
    let kind = proptest::strategy::Union::new(kinds);
    (ms(0..=30), prop::option::of(ms(2..=30)), kind)
        .prop_map(|(at, lasts, kind)| Fault { at, lasts, kind })
        .boxed()
}

/// Whole cases: small pools of users, resources and dates (so requests
/// collide), client counts, retry shapes, key reuse and a fault schedule.
pub fn scenario_strategy(mode: Mode, replicas: usize) -> BoxedStrategy<Scenario> {
    let workload = (
        (2usize..=30, 1usize..=6, 1usize..=3, 1usize..=2, 1usize..=6),
        (
            ratio(&[0.0, 0.25, 0.5, 1.0]),
            ratio(&[0.0, 0.25, 0.5, 1.0]),
            ratio(&[0.0, 0.2, 0.5]),
            ratio(&[0.0, 0.1, 0.3]),
            prop::sample::select(vec![0u64, 20, 80]),
        ),
        (
            prop::sample::select(vec![KeyStyle::Unique, KeyStyle::Counter]),
            ratio(&[0.0, 0.5, 1.0]),
            ratio(&[0.0, 0.5, 1.0]),
            ratio(&[0.0, 0.3, 1.0]),
            ratio(&[0.0, 0.1]),
        ),
    )
        .prop_map(
            |(
                (operations, clients, resources, dates, users),
                (double, no_key, reuse, cancel, think),
                (key_style, foreign, rebook, replay, availability),
            )| Workload {
                users,
                resources: ["room_A", "room_B", "room_C"][..resources]
                    .iter()
                    .map(|r| r.to_string())
                    .collect(),
                dates,
                clients,
                operations,
                duration: Duration::from_secs(15),
                cancel_ratio: cancel,
                list_ratio: 0.05,
                no_key_ratio: no_key,
                key_reuse_ratio: reuse,
                double_submit_ratio: double,
                max_attempts: 8,
                request_timeout: Duration::from_secs(2),
                think_time: Duration::from_millis(think),
                key_style,
                foreign_cancel_ratio: foreign,
                rebook_ratio: rebook,
                replay_ratio: replay,
                availability_ratio: availability,
                ..Workload::default()
            },
        );
    // The seed does not shrink: a new seed is a new workload, not a smaller one.
    (
        workload,
        prop::collection::vec(fault_strategy(mode, replicas), 0..=3),
        any::<u32>().no_shrink(),
    )
        .prop_map(move |(workload, faults, seed)| Scenario {
            name: "explored".into(),
            description: String::new(),
            mode,
            replicas,
            seed: u64::from(seed),
            target_url: None,
            target: Default::default(),
            checkers: Vec::new(),
            catches: Vec::new(),
            settle_bound: None,
            recovery_bound: Duration::from_secs(20),
            service_env: BTreeMap::new(),
            workload,
            faults,
            infra: None,
            path: None,
        })
        .boxed()
}

/// The explorer's replicas: a short slot lock, so that a delayed
/// transaction outlives it and the database's constraint decides, and a
/// short claim lease, so that the settle phase after each case stays short.
/// `ExploreConfig::service_env` overrides these.
pub fn default_service_env() -> BTreeMap<String, String> {
    [
        ("LOCK_TTL_MS", "250"),
        ("IDEMPOTENCY_LEASE_MS", "3000"),
        ("REQUEST_TIMEOUT_MS", "2000"),
        ("DEPENDENCY_TIMEOUT_MS", "1000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Runs the exploration on `rt`, with one stack for all cases.
pub fn explore(rt: &tokio::runtime::Runtime, config: &ExploreConfig) -> Result<ExploreReport> {
    let mut service_env = default_service_env();
    service_env.extend(config.service_env.clone());
    let base = Scenario {
        replicas: config.replicas,
        mode: config.mode,
        service_env: service_env.clone(),
        ..scenario_template()
    };
    let stack = rt
        .block_on(Stack::start(&base, &config.binary))
        .context("starting the stack")?;
    let started = Instant::now();
    let opts = RunOptions::new(config.out_dir.join("histories"), config.binary.clone());
    let counter = AtomicU64::new(0);
    // Always a fixed seed, drawn here when none is given, so any
    // exploration can be repeated.
    let seed = config.seed.unwrap_or_else(rand::random);
    let stats = Mutex::new(ExploreReport {
        seed,
        ..ExploreReport::default()
    });
    let first_failure: Mutex<Option<Scenario>> = Mutex::new(None);

    let mut runner = test_runner(config, seed);
    let strategy = scenario_strategy(config.mode, config.replicas);
    let outcome = runner.run(&strategy, |case| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let shrinking = first_failure.lock().map(|f| f.is_some()).unwrap_or(false);
        if !shrinking && started.elapsed() > config.time_limit {
            return Ok(()); // out of time: remaining cases are not run
        }
        let tries = if shrinking {
            1 + config.shrink_retries
        } else {
            1
        };
        for attempt in 0..tries {
            let n = if attempt == 0 {
                n
            } else {
                counter.fetch_add(1, Ordering::SeqCst)
            };
            run_case(
                rt,
                &stack,
                &opts,
                namespaced(case.clone(), n, &service_env),
                n,
                &stats,
                &first_failure,
            )?;
        }
        Ok(())
    });

    let mut report = stats.into_inner().unwrap_or_default();
    report.elapsed = started.elapsed();
    drop(stack);
    if let Some(why) = &report.broken_stack {
        anyhow::bail!(
            "{why}; the cases before it are in {}",
            config.out_dir.join("histories").display()
        );
    }
    match outcome {
        Ok(()) => Ok(report),
        Err(TestError::Abort(why)) => anyhow::bail!("exploration aborted: {why}"),
        Err(TestError::Fail(why, shrunk)) => {
            let first = first_failure.into_inner().ok().flatten().map(clean);
            report.finding = Some(write_up(
                rt,
                config,
                &service_env,
                why.to_string(),
                shrunk,
                first,
            )?);
            Ok(report)
        }
    }
}

/// proptest's runner: `cases` cases from `seed`, shrinking bounded by
/// count (not time), failing seeds kept in the regressions file.
fn test_runner(config: &ExploreConfig, seed: u64) -> TestRunner {
    let persistence = config.regressions.as_ref().map(|p| {
        let leaked: &'static str = Box::leak(p.display().to_string().into_boxed_str());
        Box::new(FileFailurePersistence::Direct(leaked))
            as Box<dyn proptest::test_runner::FailurePersistence>
    });
    TestRunner::new(Config {
        cases: config.cases,
        max_shrink_iters: config.max_shrink_iters,
        max_shrink_time: 0,
        failure_persistence: persistence,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    })
}

/// A failing case as a scenario file (`explored-failure-seed-N.toml`),
/// run again `confirm_runs` times to tell a steady failure from a flaky one.
fn write_up(
    rt: &tokio::runtime::Runtime,
    config: &ExploreConfig,
    service_env: &BTreeMap<String, String>,
    message: String,
    shrunk: Scenario,
    first: Option<Scenario>,
) -> Result<Finding> {
    let mut shrunk = clean(shrunk);
    shrunk.service_env = service_env.clone();
    shrunk.name = format!("explored-failure-seed-{}", shrunk.seed);
    shrunk.description = format!("Found and shrunk by booking-harness explore: {message}");
    std::fs::create_dir_all(&config.out_dir)?;
    let file = config.out_dir.join(format!("{}.toml", shrunk.name));
    std::fs::write(&file, shrunk.to_toml())?;
    let reruns = (0..config.confirm_runs)
        .map(|i| {
            let out = config.out_dir.join(format!("rerun-{}", i + 1));
            rerun(rt, &shrunk, &RunOptions::new(out, config.binary.clone()))
        })
        .collect();
    Ok(Finding {
        message,
        first: first.unwrap_or_else(|| shrunk.clone()),
        shrunk,
        file,
        reruns,
    })
}

/// One confirmation run of a shrunk failing case.
fn rerun(rt: &tokio::runtime::Runtime, scenario: &Scenario, opts: &RunOptions) -> Rerun {
    match rt.block_on(runner::run(scenario, opts)) {
        Ok((result, history)) => Rerun {
            validity: result.validity,
            failed: failure_message(&result),
            faults: describe_faults(&history),
        },
        Err(e) => Rerun {
            validity: Validity::Unknown,
            failed: format!("the run broke: {e:#}"),
            faults: String::new(),
        },
    }
}

/// What the faults of a run did: failpoint firings and apply errors.
fn describe_faults(history: &crate::history::History) -> String {
    let parts: Vec<String> = history
        .faults
        .iter()
        .map(|f| match (&f.apply_error, f.fired) {
            (Some(e), _) => format!("{} NOT APPLIED ({e})", f.kind),
            (None, Some(n)) => format!("{} {} fired {n}×", f.kind, f.detail),
            (None, None) => f.kind.clone(),
        })
        .collect();
    format!("[faults: {}]", parts.join(", "))
}

/// Runs one namespaced case on the shared stack; a violation fails it.
fn run_case(
    rt: &tokio::runtime::Runtime,
    stack: &std::sync::Arc<Stack>,
    opts: &RunOptions,
    case: Scenario,
    n: u64,
    stats: &Mutex<ExploreReport>,
    first_failure: &Mutex<Option<Scenario>>,
) -> Result<(), TestCaseError> {
    if stats
        .lock()
        .map(|s| s.broken_stack.is_some())
        .unwrap_or(true)
    {
        return Err(TestCaseError::reject("the shared stack is broken"));
    }
    if let Err(e) = rt.block_on(stack.ensure_healthy()) {
        if let Ok(mut s) = stats.lock() {
            s.broken_stack = Some(format!(
                "the stack did not come back to health before case {n} (after case {}): {e:#}",
                n.saturating_sub(1)
            ));
        }
        return Err(TestCaseError::reject("the shared stack is broken"));
    }
    let probe_date = calendar::after(calendar::EXPLORE_PROBES, n * u64::from(PROBES));
    let (result, history) = rt
        .block_on(runner::run_on(stack, &case, opts, probe_date))
        .map_err(|e| TestCaseError::fail(format!("the harness failed: {e:#}")))?;
    if let Ok(mut s) = stats.lock() {
        s.cases_run += 1;
        for f in &history.faults {
            *s.faults_by_kind.entry(f.kind.clone()).or_default() += 1;
        }
        for event in &history.faults {
            if let Some(name) = &event.failpoint {
                *s.failpoints_fired.entry(name.clone()).or_default() += event.fired.unwrap_or(0);
            }
        }
    }
    if !result.errors.is_empty() {
        // The case did not test what it says: not judged, but counted.
        if let Ok(mut s) = stats.lock() {
            s.discarded += 1;
            s.discard_reasons.extend(result.errors.iter().cloned());
        }
        return Ok(());
    }
    if result.validity == Validity::Invalid {
        if let Ok(mut first) = first_failure.lock() {
            first.get_or_insert_with(|| case.clone());
        }
        return Err(TestCaseError::fail(failure_message(&result)));
    }
    Ok(())
}

fn scenario_template() -> Scenario {
    Scenario {
        name: "explore".into(),
        description: String::new(),
        mode: Mode::Local,
        replicas: 2,
        seed: 0,
        target_url: None,
        target: Default::default(),
        checkers: Vec::new(),
        catches: Vec::new(),
        settle_bound: None,
        recovery_bound: Duration::from_secs(20),
        service_env: BTreeMap::new(),
        workload: Workload::default(),
        faults: Vec::new(),
        infra: None,
        path: None,
    }
}

/// Gives case `n` its own dates and key namespace on the shared stack.
fn namespaced(mut case: Scenario, n: u64, env: &BTreeMap<String, String>) -> Scenario {
    let first = calendar::after(calendar::EXPLORE_CASES, n * calendar::EXPLORE_CASE_DAYS);
    case.workload.first_date = first.to_string();
    case.workload.namespace = format!("x{n}-");
    case.name = format!("explored-case-{n}");
    case.service_env = env.clone();
    case
}

/// The case as a standalone scenario (a fresh stack needs no namespace).
fn clean(mut case: Scenario) -> Scenario {
    case.workload.namespace = String::new();
    case.workload.first_date = Workload::default().first_date;
    case
}

fn failure_message(result: &runner::ScenarioResult) -> String {
    let Some(verdict) = &result.verdict else {
        return "invalid".into();
    };
    verdict
        .results
        .iter()
        .filter(|r| r.validity == Validity::Invalid)
        .map(|r| {
            let first = r
                .violations
                .first()
                .map(|v| v.message.clone())
                .unwrap_or_default();
            format!("{}: {first}", r.checker)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Scenario files written by the explorer reproduce with `booking-harness run`.
pub fn reproduce(
    rt: &tokio::runtime::Runtime,
    file: &std::path::Path,
    binary: &ServiceBinary,
    out: PathBuf,
) -> Result<Validity> {
    let scenario = Scenario::load(file)?;
    let opts = RunOptions::new(out, binary.clone());
    let (result, _) = rt.block_on(runner::run(&scenario, &opts))?;
    Ok(result.validity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;

    #[test]
    fn generated_cases_are_valid_scenarios_that_round_trip() {
        let mut runner = TestRunner::deterministic();
        for mode in [Mode::Local, Mode::Embedded] {
            let strategy = scenario_strategy(mode, if mode == Mode::Local { 2 } else { 1 });
            for _ in 0..200 {
                let case = strategy.new_tree(&mut runner).expect("tree").current();
                let text = case.to_toml();
                let parsed = Scenario::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
                assert_eq!(parsed, case);
            }
        }
    }

    #[test]
    fn every_fault_kind_can_be_generated() {
        let mut runner = TestRunner::deterministic();
        let strategy = fault_strategy(Mode::Local, 2);
        let mut kinds = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            kinds.insert(
                strategy
                    .new_tree(&mut runner)
                    .expect("tree")
                    .current()
                    .kind
                    .name(),
            );
        }
        // Every kind but `command` (it runs outside programs, which a
        // generated case has no business choosing).
        let expected: std::collections::BTreeSet<_> = FaultKind::NAMES
            .iter()
            .copied()
            .filter(|k| *k != "command")
            .collect();
        assert_eq!(kinds, expected);
    }

    #[test]
    fn shrinking_moves_towards_smaller_cases() {
        let mut runner = TestRunner::deterministic();
        let strategy = scenario_strategy(Mode::Local, 2);
        let mut tree = strategy.new_tree(&mut runner).expect("tree");
        let before = tree.current();
        for _ in 0..500 {
            if !tree.simplify() {
                break;
            }
        }
        let after = tree.current();
        assert!(after.workload.operations <= before.workload.operations);
        assert!(after.workload.clients <= before.workload.clients);
        assert!(after.faults.len() <= before.faults.len());
    }
}
