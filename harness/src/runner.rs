//! The runner: the only place that brings generator, clients, nemesis,
//! history and checkers together for one scenario.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::calendar;
use crate::checker::{self, Validity, Verdict};
use crate::client::{Call, Client, Recorder};
use crate::generator::generate;
use crate::history::{FaultEvent, History, OpKind, RunMeta};
use crate::nemesis::{run_timeline, FaultLog};
use crate::scenario::{Mode, Scenario};
use crate::session::{Pace, Planned, Seen, Session, Step};
use crate::stack::{ServiceBinary, Stack};
use crate::target::Namespace;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub binary: ServiceBinary,
    /// Target mode: the namespace to run in (default: a new one per run).
    pub namespace: Option<String>,
}

impl RunOptions {
    pub fn new(out_dir: PathBuf, binary: ServiceBinary) -> RunOptions {
        RunOptions {
            out_dir,
            binary,
            namespace: None,
        }
    }
}

/// The target cannot be tested at all (down, refusing the harness, or not
/// a booking API in the chosen profile): no run would mean anything.
#[derive(Debug)]
pub struct TargetUnusable(pub String);

impl std::fmt::Display for TargetUnusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetUnusable {}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(mut samples: Vec<f64>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
        Latency {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// What one scenario run produced; serialised into the JSON result file.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub file: Option<PathBuf>,
    pub mode: String,
    pub seed: u64,
    pub replicas: usize,
    /// Set when the scenario could not run here (never counted as passed).
    pub skipped: Option<String>,
    /// Seeded bugs the scenario declares it catches (empty: a smoke test).
    pub catches: Vec<String>,
    /// What went wrong with the run itself (a fault that could not be
    /// applied): the run tested less than it says, so it does not pass.
    pub errors: Vec<String>,
    pub validity: Validity,
    pub verdict: Option<Verdict>,
    pub outcomes: BTreeMap<String, usize>,
    pub latency_ms: Latency,
    pub operations: usize,
    pub duration_ms: f64,
    pub faults: Vec<FaultEvent>,
    /// Operations in flight during each fault window (same order as `faults`):
    /// a fault that overlapped no operation tested nothing.
    pub ops_during_faults: Vec<usize>,
    pub history_file: Option<PathBuf>,
    /// Target mode: the run's namespace and its window of dates.
    pub namespace: Option<NamespaceInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceInfo {
    pub name: String,
    pub first_date: String,
    pub last_date: String,
}

impl ScenarioResult {
    pub fn skipped(s: &Scenario, why: String) -> Self {
        ScenarioResult {
            name: s.name.clone(),
            file: s.path.clone(),
            mode: s.mode.as_str().into(),
            seed: s.seed,
            replicas: s.replicas,
            skipped: Some(why),
            catches: s.catches.clone(),
            errors: Vec::new(),
            validity: Validity::Unknown,
            verdict: None,
            outcomes: BTreeMap::new(),
            latency_ms: Latency::default(),
            operations: 0,
            duration_ms: 0.0,
            faults: Vec::new(),
            ops_during_faults: Vec::new(),
            history_file: None,
            namespace: None,
        }
    }
}

/// Why a scenario cannot run on this machine, if it cannot.
pub fn cannot_run_here(s: &Scenario) -> Option<String> {
    if s.mode != Mode::Local {
        return None;
    }
    match s.infra {
        // A file that names its provider gets it, or a clear error.
        Some(_) => None,
        None => crate::infra::provider().err().map(|e| e.to_string()),
    }
}

/// Runs one scenario end to end on a stack of its own and checks it.
pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<(ScenarioResult, History)> {
    if let Some(why) = cannot_run_here(scenario) {
        return Ok((ScenarioResult::skipped(scenario, why), History::default()));
    }
    if scenario.mode == Mode::Target {
        return run_target(scenario, opts).await;
    }
    let stack = Stack::start(scenario, &opts.binary).await?;
    let result = run_on(&stack, scenario, opts, calendar::SCENARIO_PROBES).await;
    drop(stack);
    result
}

/// A run against a deployment the harness did not start: in a namespace of
/// its own, after a preflight that proves the target is a booking API in
/// the chosen profile, and cancelling what it booked at the end.
async fn run_target(scenario: &Scenario, opts: &RunOptions) -> Result<(ScenarioResult, History)> {
    let namespace = match &opts.namespace {
        Some(name) => Namespace::pinned(name)?,
        None => Namespace::fresh(),
    };
    let mut s = scenario.clone();
    s.workload.namespace = namespace.prefix();
    s.workload.first_date = namespace.first_date.to_string();
    let probe_first_date = namespace.first_date + chrono::Days::new(s.workload.dates as u64 + 1);
    anyhow::ensure!(
        s.workload.dates as u64 + 2 + u64::from(PROBES) <= Namespace::DAYS,
        "workload.dates must be at most {} in target mode",
        Namespace::DAYS - 2 - u64::from(PROBES)
    );
    if s.target.tokens_file.is_some() && opts.namespace.is_none() {
        return Err(anyhow::Error::new(TargetUnusable(
            "a tokens file names the run's users, and they live in its namespace: pin it with \
             --namespace NAME (`booking-harness users SCENARIO --namespace NAME` lists them)"
                .into(),
        )));
    }
    let stack = Stack::start(&s, &opts.binary)
        .await
        .map_err(|e| anyhow::Error::new(TargetUnusable(format!("{e:#}"))))?;
    let api = Arc::new(stack.api());
    let target = stack.target();
    let names: Vec<String> = target
        .map(|t| t.endpoints.iter().map(|e| e.url.to_string()).collect())
        .unwrap_or_default();
    let tokens = target.and_then(|t| t.tokens.as_ref());
    let schedule = crate::preflight::check(&api, &names, &s, namespace.last_date(), tokens)
        .await
        .map_err(|e| anyhow::Error::new(TargetUnusable(format!("{e:#}"))))?;
    let refresher =
        schedule.map(|due| crate::identity::Refresher::start(due, api.user_tokens.clone()));
    let run = run_on(&stack, &s, opts, probe_first_date).await;
    crate::preflight::clean_up(&api, &s).await;
    let lapses = refresher.map(|r| r.stop()).unwrap_or_default();
    let (mut result, history) = run?;
    result.errors.extend(lapses);
    result.errors.extend(unauthenticated(&history));
    result.namespace = Some(NamespaceInfo {
        name: namespace.name.clone(),
        first_date: namespace.first_date.to_string(),
        last_date: namespace.last_date().to_string(),
    });
    Ok((result, history))
}

/// Requests the target refused as unauthenticated: the run did not act as
/// its users for them, so it cannot pass (an expired or missing token).
fn unauthenticated(history: &crate::history::History) -> Option<String> {
    let refused: Vec<&crate::history::Operation> = history
        .ops
        .iter()
        .filter(|o| o.status == Some(401))
        .collect();
    let first = refused.first()?;
    Some(format!(
        "{} request(s) were refused 401 UNAUTHENTICATED, the first as {}: {}",
        refused.len(),
        first.user,
        first.body.as_deref().unwrap_or("")
    ))
}

/// How many probe dates one run may use.
pub const PROBES: u32 = 200;

/// Runs one scenario on an existing stack (the explorer shares one stack
/// between cases). Only rows of this run's dates (its workload's and its
/// recovery probes', from `probe_first_date`) are checked, so runs that use
/// distinct dates and key namespaces never see each other.
pub async fn run_on(
    stack: &Arc<Stack>,
    scenario: &Scenario,
    opts: &RunOptions,
    probe_first_date: chrono::NaiveDate,
) -> Result<(ScenarioResult, History)> {
    let w = &scenario.workload;
    stack.seed_proxies(scenario.seed);
    let api = Arc::new(stack.api());
    let recorder = Arc::new(Recorder::default());
    let faults = Arc::new(FaultLog::default());
    let started = Instant::now();

    let nemesis = tokio::spawn(run_timeline(
        stack.clone(),
        scenario.faults.clone(),
        started,
        faults.clone(),
    ));
    drive_sessions(scenario, &api, &recorder, started).await?;
    // Every fault heals by itself; bound the wait all the same.
    let wait = scenario.faults_end().saturating_sub(started.elapsed()) + Duration::from_secs(60);
    if tokio::time::timeout(wait, nemesis).await.is_err() {
        tracing::warn!("the fault timeline did not finish in time");
    }
    stack.heal_all().await;
    let settled_from_ms = settle(scenario, &api, &recorder, started).await?;
    probe_recovery(scenario, &api, &recorder, started, probe_first_date).await?;
    let workload_dates = crate::generator::workload_dates(w)?;
    read_at_quiescence(scenario, &api, &recorder, started, &workload_dates).await?;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;

    let history = History {
        meta: run_meta(scenario, &api, settled_from_ms, workload_dates.clone()),
        ops: recorder.take(),
        faults: faults.take(),
        final_state: final_state(stack, probe_first_date, &workload_dates).await,
    };
    let verdict = checker::check(&history, &scenario.checkers);
    std::fs::create_dir_all(&opts.out_dir)?;
    let history_file = opts
        .out_dir
        .join(format!("{}.history.jsonl", file_stem(&scenario.name)));
    history.write_jsonl(&history_file)?;
    let mode = match stack.provider().await {
        // Which kind ran the servers: said once, in the header.
        Some(crate::infra::Provider::Containers) => {
            format!("{} (containers)", scenario.mode.as_str())
        }
        _ => scenario.mode.as_str().into(),
    };
    let mut result = result_of(scenario, &history, verdict, mode, duration_ms);
    result.history_file = Some(history_file);
    Ok((result, history))
}

/// One session per client, each performing its plan with its own client,
/// until every session is done.
async fn drive_sessions(
    scenario: &Scenario,
    api: &Arc<crate::client::Api>,
    recorder: &Arc<Recorder>,
    started: Instant,
) -> Result<()> {
    let w = &scenario.workload;
    let seen: Seen = Arc::default();
    let mut clients = Vec::new();
    for (n, plan) in generate(w, scenario.seed)?.into_iter().enumerate() {
        let client = Client::new(
            format!("c{n}"),
            api.clone(),
            recorder.clone(),
            started,
            w.request_timeout,
            w.max_attempts,
        )?
        .with_seed(scenario.seed);
        let pace = Pace {
            deadline: started + w.duration,
            think: w.think_time,
            replay_at: w.replay_at.clone(),
            replicas: client.replicas(),
        };
        let session = Session::new(n, plan, pace, scenario.seed, seen.clone());
        let delay = w.start_delay;
        clients.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            run_session(client, session).await
        }));
    }
    for c in clients {
        let _ = c.await;
    }
    Ok(())
}

/// What the checkers need to know of the run besides its operations: the
/// TTLs and policy the replicas ran with, the bounds, the slots.
fn run_meta(
    scenario: &Scenario,
    api: &crate::client::Api,
    settled_from_ms: f64,
    dates: Vec<String>,
) -> RunMeta {
    let w = &scenario.workload;
    let service = scenario.service_settings();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    RunMeta {
        scenario: scenario.name.clone(),
        seed: scenario.seed,
        mode: scenario.mode.as_str().into(),
        recovery_bound_ms: ms(scenario.recovery_bound),
        derived_key_ttl_ms: ms(service.idempotency.derived_key_ttl),
        client_key_ttl_ms: ms(service.idempotency.client_key_ttl),
        refusal_ttl_ms: ms(service.idempotency.refusal_ttl),
        settled_from_ms,
        settle_bound_ms: ms(scenario.settle_bound()),
        reuse_policy: service.idempotency.reuse_policy.as_str().into(),
        resources: w.resources.clone(),
        dates,
        api: api.profile.clone(),
        namespace: w.namespace.clone(),
    }
}

/// The store's rows of this run's dates (its workload's and its probes').
async fn final_state(
    stack: &Stack,
    probe_first_date: chrono::NaiveDate,
    workload_dates: &[String],
) -> Option<Vec<crate::history::BookingRow>> {
    let mut dates: std::collections::BTreeSet<String> = (0..u64::from(PROBES))
        .map(|d| (probe_first_date + chrono::Days::new(d)).to_string())
        .collect();
    dates.extend(workload_dates.iter().cloned());
    match stack.final_state().await {
        Ok(rows) => rows.map(|rows| {
            rows.into_iter()
                .filter(|r| dates.contains(&r.date))
                .collect()
        }),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "could not read the final state");
            None
        }
    }
}

/// The run's summary for reports.
fn result_of(
    scenario: &Scenario,
    history: &History,
    verdict: Verdict,
    mode: String,
    duration_ms: f64,
) -> ScenarioResult {
    let latency = Latency::of(
        history
            .ops
            .iter()
            .filter(|o| o.status.is_some())
            .map(|o| o.complete_ms - o.invoke_ms)
            .collect(),
    );
    ScenarioResult {
        name: scenario.name.clone(),
        file: scenario.path.clone(),
        mode,
        seed: scenario.seed,
        replicas: scenario.replicas,
        skipped: None,
        catches: scenario.catches.clone(),
        errors: history
            .faults
            .iter()
            .filter_map(|f| {
                f.apply_error
                    .as_ref()
                    .map(|e| format!("fault {} could not be applied: {e}", f.kind))
            })
            .collect(),
        validity: verdict.validity,
        verdict: Some(verdict),
        outcomes: history.outcome_counts(),
        latency_ms: latency,
        operations: history.ops.len(),
        duration_ms,
        faults: history.faults.clone(),
        ops_during_faults: ops_during_faults(history),
        history_file: None,
        namespace: None,
    }
}

/// For each fault, how many client operations overlapped its window.
pub fn ops_during_faults(h: &History) -> Vec<usize> {
    h.faults
        .iter()
        .map(|f| {
            // An instant fault (a reset, a restart) acts on the connections
            // open at that moment; its effect shows on the requests of the
            // next half second, which reuse or replace them.
            let end = f.end_ms.unwrap_or(f.start_ms).max(f.start_ms + 500.0);
            h.ops
                .iter()
                .filter(|o| o.process != crate::checker::RECOVERY_PROCESS)
                .filter(|o| o.invoke_ms <= end && o.complete_ms >= f.start_ms)
                .count()
        })
        .collect()
}

pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A client performs what its session asks for and tells it the answers;
/// timetable replays run beside it and are waited for at the end.
async fn run_session(client: Client, mut session: Session) {
    let mut timetables = tokio::task::JoinSet::new();
    while let Some(step) = session.next(Instant::now()) {
        match step {
            Step::Perform { think, calls } => {
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
                for op in perform_at_once(&client, &calls).await {
                    session.update(&op);
                }
            }
            Step::Timetable { batches } => {
                timetables.spawn(run_timetable(client.clone(), batches));
            }
        }
    }
    while timetables.join_next().await.is_some() {}
}

/// One call, or two at once (a double submit).
async fn perform_at_once(client: &Client, calls: &[Planned]) -> Vec<crate::history::Operation> {
    match calls {
        [a, b] => {
            let (a, b) = tokio::join!(
                client.perform(a.intent, &a.call, a.replica),
                client.perform(b.intent, &b.call, b.replica)
            );
            vec![a, b]
        }
        _ => {
            let mut ops = Vec::with_capacity(calls.len());
            for p in calls {
                ops.push(client.perform(p.intent, &p.call, p.replica).await);
            }
            ops
        }
    }
}

/// Sends each batch at its time after now, in order: a key asked again
/// while its answer is kept, and again after its retention, on chosen
/// replicas' caches.
async fn run_timetable(client: Client, batches: Vec<(Duration, Vec<Planned>)>) {
    let answered = Instant::now();
    for (after, calls) in batches {
        tokio::time::sleep_until((answered + after).into()).await;
        for p in calls {
            client.perform(p.intent, &p.call, p.replica).await;
        }
    }
}

/// After the heal: every create intent that has no definitive answer yet is
/// retried with its own key (nothing else runs now) until it gets one or
/// the settle bound passes. Returns when it began, in ms since the start.
async fn settle(
    scenario: &Scenario,
    api: &Arc<crate::client::Api>,
    recorder: &Arc<Recorder>,
    started: Instant,
) -> Result<f64> {
    let from_ms = started.elapsed().as_secs_f64() * 1000.0;
    let bound = scenario.settle_bound();
    let until = Instant::now() + bound;
    let mut undecided: BTreeMap<(String, u64), Vec<crate::history::Operation>> = BTreeMap::new();
    for op in recorder.snapshot() {
        if op.kind == OpKind::Create && !crate::checker::is_probe(&op) {
            undecided
                .entry((op.process.clone(), op.intent))
                .or_default()
                .push(op);
        }
    }
    undecided.retain(|_, ops| !ops.iter().any(|o| o.is_definitive()));
    let mut tasks = Vec::new();
    for ((process, intent), ops) in undecided {
        let Some(last) = ops.iter().max_by_key(|o| o.attempt) else {
            continue;
        };
        let call = Call {
            kind: OpKind::Create,
            user: last.user.clone(),
            resource: last.resource.clone(),
            date: last.date.clone(),
            key: last.key.clone(),
            booking_id: None,
        };
        let client = Client::new(
            process,
            api.clone(),
            recorder.clone(),
            started,
            scenario.workload.request_timeout,
            1,
        )?;
        let first_attempt = last.attempt + 1;
        tasks.push(tokio::spawn(async move {
            for attempt in first_attempt..first_attempt + 10_000 {
                let op = client
                    .attempt(intent, attempt, &call, attempt as usize)
                    .await;
                if op.is_definitive() || Instant::now() >= until {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(from_ms)
}

/// At quiescence: availability of every workload date and every user's list.
async fn read_at_quiescence(
    scenario: &Scenario,
    api: &Arc<crate::client::Api>,
    recorder: &Arc<Recorder>,
    started: Instant,
    dates: &[String],
) -> Result<()> {
    let client = Client::new(
        crate::checker::QUIESCENCE_PROCESS.into(),
        api.clone(),
        recorder.clone(),
        started,
        Duration::from_secs(5),
        3,
    )?;
    let mut intent = u64::MAX / 2;
    for date in dates {
        intent += 1;
        client.perform(intent, &Call::availability(date), 0).await;
    }
    for u in 0..scenario.workload.users {
        intent += 1;
        client
            .perform(intent, &Call::list(&scenario.workload.user(u)), 0)
            .await;
    }
    Ok(())
}

/// After the faults heal: fresh bookings of a free slot until one succeeds
/// or the recovery bound passes (checked by the `recovery` checker).
async fn probe_recovery(
    scenario: &Scenario,
    api: &Arc<crate::client::Api>,
    recorder: &Arc<Recorder>,
    started: Instant,
    first_date: chrono::NaiveDate,
) -> Result<()> {
    let client = Client::new(
        crate::checker::RECOVERY_PROCESS.into(),
        api.clone(),
        recorder.clone(),
        started,
        Duration::from_secs(2),
        1,
    )?;
    let resource = scenario
        .workload
        .resources
        .first()
        .context("no resources")?
        .clone();
    let began = Instant::now();
    for attempt in 0u32..PROBES {
        // A slot no workload uses: far in the future, one per probe.
        let date = (first_date + chrono::Days::new(u64::from(attempt))).to_string();
        let call = Call {
            kind: OpKind::Create,
            user: format!("{}recovery-probe", scenario.workload.namespace),
            resource: Some(resource.clone()),
            date: Some(date),
            key: Some(format!("{}recovery-{attempt}", scenario.workload.namespace)),
            booking_id: None,
        };
        let op = client
            .attempt(u64::MAX - u64::from(attempt), 1, &call, attempt as usize)
            .await;
        if op.is_created() || began.elapsed() > scenario.recovery_bound + Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Re-checks a recorded history offline.
pub fn check_file(path: &Path, checkers: &[String]) -> Result<(History, Verdict)> {
    let history = History::read_jsonl(path)?;
    let verdict = checker::check(&history, checkers);
    Ok((history, verdict))
}
