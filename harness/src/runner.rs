//! The runner: the only place that brings generator, clients, nemesis,
//! history and checkers together for one scenario.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::checker::{self, Validity, Verdict};
use crate::client::{Call, Client, Recorder};
use crate::generator::{generate, Intent};
use crate::history::{FaultEvent, History, OpKind, RunMeta};
use crate::nemesis::{run_timeline, FaultLog};
use crate::scenario::{Mode, Scenario};
use crate::stack::{ServiceBinary, Stack};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub binary: ServiceBinary,
}

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
            validity: Validity::Unknown,
            verdict: None,
            outcomes: BTreeMap::new(),
            latency_ms: Latency::default(),
            operations: 0,
            duration_ms: 0.0,
            faults: Vec::new(),
            ops_during_faults: Vec::new(),
            history_file: None,
        }
    }
}

/// Why a scenario cannot run on this machine, if it cannot.
pub fn cannot_run_here(s: &Scenario) -> Option<String> {
    if s.mode == Mode::Local && !crate::infra::local_servers_available() {
        return Some("redis-server or PostgreSQL is not installed (see .ci/run)".into());
    }
    None
}

/// Runs one scenario end to end on a stack of its own and checks it.
pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<(ScenarioResult, History)> {
    if let Some(why) = cannot_run_here(scenario) {
        return Ok((ScenarioResult::skipped(scenario, why), History::default()));
    }
    let stack = Stack::start(scenario, &opts.binary).await?;
    let result = run_on(&stack, scenario, opts, default_probe_date()).await;
    drop(stack);
    result
}

fn default_probe_date() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2099, 1, 1).unwrap_or_default()
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
    let plans = generate(w, scenario.seed)?;
    let urls = Arc::new(stack.client_urls());
    let recorder = Arc::new(Recorder::default());
    let faults = Arc::new(FaultLog::default());
    let started = Instant::now();

    let nemesis = tokio::spawn(run_timeline(
        stack.clone(),
        scenario.faults.clone(),
        started,
        faults.clone(),
    ));
    let mut clients = Vec::new();
    for (n, plan) in plans.into_iter().enumerate() {
        let client = Client::new(
            format!("c{n}"),
            urls.clone(),
            recorder.clone(),
            started,
            w.request_timeout,
            w.max_attempts,
        )?;
        let deadline = started + w.duration;
        clients.push(tokio::spawn(run_client(
            client,
            n,
            plan,
            deadline,
            w.think_time,
        )));
    }
    for c in clients {
        let _ = c.await;
    }
    // Every fault heals by itself; bound the wait all the same.
    let wait = scenario.faults_end().saturating_sub(started.elapsed()) + Duration::from_secs(60);
    if tokio::time::timeout(wait, nemesis).await.is_err() {
        tracing::warn!("the fault timeline did not finish in time");
    }
    stack.heal_all().await;
    probe_recovery(scenario, &urls, &recorder, started, probe_first_date).await?;
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;

    let mut dates: std::collections::BTreeSet<String> = (0..u64::from(PROBES))
        .map(|d| {
            (probe_first_date + chrono::Days::new(d))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    let first = crate::generator::parse_date(&w.first_date)?;
    dates.extend((0..w.dates as u64).map(|d| {
        (first + chrono::Days::new(d))
            .format("%Y-%m-%d")
            .to_string()
    }));
    let final_state = match stack.final_state().await {
        Ok(rows) => rows.map(|rows| {
            rows.into_iter()
                .filter(|r| dates.contains(&r.date))
                .collect()
        }),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "could not read the final state");
            None
        }
    };
    let history = History {
        meta: RunMeta {
            scenario: scenario.name.clone(),
            seed: scenario.seed,
            mode: scenario.mode.as_str().into(),
            recovery_bound_ms: scenario.recovery_bound.as_secs_f64() * 1000.0,
            derived_key_ttl_ms: derived_ttl_ms(scenario),
        },
        ops: recorder.take(),
        faults: faults.take(),
        final_state,
    };
    let verdict = checker::check(&history, &scenario.checkers);
    std::fs::create_dir_all(&opts.out_dir)?;
    let history_file = opts
        .out_dir
        .join(format!("{}.history.jsonl", file_stem(&scenario.name)));
    history.write_jsonl(&history_file)?;
    let latency = Latency::of(
        history
            .ops
            .iter()
            .filter(|o| o.status.is_some())
            .map(|o| o.complete_ms - o.invoke_ms)
            .collect(),
    );
    let result = ScenarioResult {
        name: scenario.name.clone(),
        file: scenario.path.clone(),
        mode: scenario.mode.as_str().into(),
        seed: scenario.seed,
        replicas: scenario.replicas,
        skipped: None,
        validity: verdict.validity,
        verdict: Some(verdict),
        outcomes: history.outcome_counts(),
        latency_ms: latency,
        operations: history.ops.len(),
        duration_ms,
        faults: history.faults.clone(),
        ops_during_faults: ops_during_faults(&history),
        history_file: Some(history_file),
    };
    Ok((result, history))
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

fn derived_ttl_ms(s: &Scenario) -> f64 {
    s.service_env
        .get("DERIVED_KEY_TTL_SECS")
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(120_000.0, |secs| secs * 1000.0)
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

/// One client works through its plan until it ends or the deadline passes.
async fn run_client(
    client: Client,
    n: usize,
    plan: Vec<Intent>,
    deadline: Instant,
    think: Duration,
) {
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for (i, intent) in plan.into_iter().enumerate() {
        if Instant::now() >= deadline {
            break;
        }
        if i > 0 && !think.is_zero() {
            let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.5);
            tokio::time::sleep(think.mul_f64(jitter)).await;
        }
        let intent_id = ((n as u64) << 32) | i as u64;
        match intent {
            Intent::Create {
                user,
                resource,
                date,
                key,
                double_submit,
            } => {
                let call = Call {
                    kind: OpKind::Create,
                    user: user.clone(),
                    resource: Some(resource),
                    date: Some(date),
                    key,
                    booking_id: None,
                };
                let ops = if double_submit {
                    let (a, b) = tokio::join!(
                        client.perform(intent_id, &call, n),
                        client.perform(intent_id, &call, n + 1)
                    );
                    vec![a, b]
                } else {
                    vec![client.perform(intent_id, &call, n).await]
                };
                for op in ops {
                    if let Some(id) = op.returned_booking_id().filter(|_| !op.replayed) {
                        acknowledged.push((user.clone(), id));
                    }
                }
            }
            Intent::Cancel { user } => {
                let pick = acknowledged.iter().position(|(u, _)| *u == user).or(
                    if acknowledged.is_empty() {
                        None
                    } else {
                        Some(0)
                    },
                );
                let Some(pick) = pick else { continue };
                let (owner, id) = acknowledged.remove(pick);
                let call = Call {
                    kind: OpKind::Cancel,
                    user: owner,
                    resource: None,
                    date: None,
                    key: None,
                    booking_id: Some(id),
                };
                client.perform(intent_id, &call, n).await;
            }
            Intent::List { user } => {
                let call = Call {
                    kind: OpKind::List,
                    user,
                    resource: None,
                    date: None,
                    key: None,
                    booking_id: None,
                };
                client.perform(intent_id, &call, n).await;
            }
        }
    }
}

/// After the faults heal: fresh bookings of a free slot until one succeeds
/// or the recovery bound passes (checked by the `recovery` checker).
async fn probe_recovery(
    scenario: &Scenario,
    urls: &Arc<Vec<String>>,
    recorder: &Arc<Recorder>,
    started: Instant,
    first_date: chrono::NaiveDate,
) -> Result<()> {
    let client = Client::new(
        crate::checker::RECOVERY_PROCESS.into(),
        urls.clone(),
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
        let date = (first_date + chrono::Days::new(u64::from(attempt)))
            .format("%Y-%m-%d")
            .to_string();
        let call = Call {
            kind: OpKind::Create,
            user: "recovery-probe".into(),
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
