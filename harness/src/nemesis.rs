//! The nemesis: applies a scenario's fault timeline to the stack and records
//! each fault as it starts and heals.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::history::{CommandRun, FaultEvent};
use crate::proxy::Toxics;
use crate::scenario::{Fault, FaultKind, Target};
use crate::service_api::ServiceApi;
use crate::stack::Stack;

/// Faults recorded so far.
#[derive(Default)]
pub struct FaultLog {
    events: Mutex<Vec<FaultEvent>>,
}

impl FaultLog {
    fn push(&self, event: FaultEvent) -> usize {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push(event);
        events.len() - 1
    }

    fn end(&self, index: usize, end_ms: f64) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = events.get_mut(index) {
            e.end_ms = Some(end_ms);
        }
    }

    fn set_fired(&self, index: usize, fired: u64) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = events.get_mut(index) {
            e.fired = Some(fired);
        }
    }

    fn note(&self, index: usize, text: &str) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = events.get_mut(index) {
            e.detail.push_str(text);
        }
    }

    fn set_failpoint(&self, index: usize, name: &str) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = events.get_mut(index) {
            e.failpoint = Some(name.to_owned());
        }
    }

    fn command(&self, index: usize, run: CommandRun) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = events.get_mut(index) {
            e.commands.push(run);
        }
    }

    /// The fault started but did not do what it says: the run tested less.
    fn fail(&self, index: usize, why: String, end_ms: f64) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = events.get_mut(index) {
            e.apply_error = Some(why);
            e.end_ms = Some(end_ms);
        }
    }

    pub fn take(&self) -> Vec<FaultEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs every fault of the timeline at its time; returns when all have healed.
pub async fn run_timeline(
    stack: Arc<Stack>,
    faults: Vec<Fault>,
    started: Instant,
    log: Arc<FaultLog>,
) {
    let tasks: Vec<_> = faults
        .into_iter()
        .map(|fault| {
            let (stack, log) = (stack.clone(), log.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until((started + fault.at).into()).await;
                let events = Events {
                    log: &log,
                    started,
                    kind: fault.kind.name(),
                };
                if let Err(e) = apply(&stack, &fault, &events).await {
                    tracing::warn!(fault = fault.kind.name(), error = %format!("{e:#}"), "fault could not be applied");
                    let event = events.begin(String::new(), String::new());
                    events.fail(event, format!("{e:#}"));
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// Records one fault's events in the log, timed from the start of the run.
struct Events<'a> {
    log: &'a FaultLog,
    started: Instant,
    kind: &'static str,
}

impl Events<'_> {
    /// The fault starts acting on `target`; returns its event's index.
    fn begin(&self, target: String, detail: String) -> usize {
        self.log.push(FaultEvent {
            start_ms: ms(self.started),
            end_ms: None,
            kind: self.kind.into(),
            target,
            detail,
            failpoint: None,
            fired: None,
            apply_error: None,
            commands: Vec::new(),
        })
    }

    /// The fault has healed.
    fn end(&self, event: usize) {
        self.log.end(event, ms(self.started));
    }

    /// The fault did not do what it says: the run tested less.
    fn fail(&self, event: usize, why: String) {
        self.log.fail(event, why, ms(self.started));
    }
}

/// Starts a fault, keeps it for its duration and heals it.
async fn apply(stack: &Stack, fault: &Fault, events: &Events<'_>) -> Result<()> {
    let lasts = fault.duration();
    if let Some(link) = LinkFault::of(&fault.kind) {
        return link.apply(stack, lasts, events).await;
    }
    match &fault.kind {
        FaultKind::Reset { target } => {
            let event = events.begin(target.to_string(), String::new());
            for p in stack.proxies_for(target) {
                p.reset_all();
            }
            events.end(event);
            Ok(())
        }
        FaultKind::KillReplica {
            replica,
            restart_after,
        } => kill_replica(stack, *replica, *restart_after, events).await,
        FaultKind::PauseReplica { replica } => pause_replica(stack, *replica, lasts, events).await,
        FaultKind::RestartRedis => restart_redis(stack, events).await,
        FaultKind::RestartDatabase => restart_database(stack, lasts, events).await,
        FaultKind::Failpoint {
            replica,
            name,
            action,
        } => {
            // A crash action without a duration lasts until it crashes a replica.
            let until_crash = action.contains("crash") && fault.lasts.is_none();
            failpoint(stack, *replica, name, action, lasts, until_crash, events).await
        }
        FaultKind::Command { run, heal, timeout } => {
            command(stack, run, heal.as_deref(), *timeout, lasts, events).await;
            Ok(())
        }
        FaultKind::Latency { .. }
        | FaultKind::Bandwidth { .. }
        | FaultKind::Blackhole { .. }
        | FaultKind::CloseAfter { .. }
        | FaultKind::DropResponses { .. } => unreachable!("link faults are applied above"),
    }
}

/// A fault on a link: what it sets on the link's proxies while it lasts and
/// what it clears when it heals. Each clears only its own toxic, so faults
/// that overlap on one link heal independently.
struct LinkFault<'a> {
    target: &'a Target,
    detail: String,
    set: SetToxic<'a>,
    clear: fn(&mut Toxics),
}

type SetToxic<'a> = Box<dyn Fn(&mut Toxics) + Send + Sync + 'a>;

impl<'a> LinkFault<'a> {
    fn of(kind: &'a FaultKind) -> Option<Self> {
        let (target, detail, set, clear): (_, _, SetToxic, fn(&mut Toxics)) = match kind {
            FaultKind::Latency {
                target,
                latency_ms,
                jitter_ms,
            } => {
                let (latency, jitter) = (
                    Duration::from_millis(*latency_ms),
                    Duration::from_millis(*jitter_ms),
                );
                (
                    target,
                    format!("{latency_ms} ms ± {jitter_ms} ms"),
                    Box::new(move |t| {
                        t.latency = latency;
                        t.jitter = jitter;
                    }),
                    |t| {
                        t.latency = Duration::ZERO;
                        t.jitter = Duration::ZERO;
                    },
                )
            }
            FaultKind::Bandwidth {
                target,
                bytes_per_sec,
            } => {
                let limit = *bytes_per_sec;
                (
                    target,
                    format!("{bytes_per_sec} B/s"),
                    Box::new(move |t| t.bandwidth = Some(limit)),
                    |t| t.bandwidth = None,
                )
            }
            FaultKind::Blackhole { target } => (
                target,
                String::new(),
                Box::new(|t| t.blackhole = true),
                |t| t.blackhole = false,
            ),
            FaultKind::CloseAfter { target, bytes } => {
                let bytes = *bytes;
                (
                    target,
                    format!("after {bytes} bytes"),
                    Box::new(move |t| t.close_after = Some(bytes)),
                    |t| t.close_after = None,
                )
            }
            FaultKind::DropResponses { target } => (
                target,
                String::new(),
                Box::new(|t| t.drop_responses = true),
                |t| t.drop_responses = false,
            ),
            _ => return None,
        };
        Some(Self {
            target,
            detail,
            set,
            clear,
        })
    }

    async fn apply(self, stack: &Stack, lasts: Duration, events: &Events<'_>) -> Result<()> {
        let proxies = stack.proxies_for(self.target);
        if proxies.is_empty() {
            anyhow::bail!("no link to {} in this mode", self.target);
        }
        let event = events.begin(self.target.to_string(), self.detail.clone());
        for p in &proxies {
            p.update(&self.set);
        }
        tokio::time::sleep(lasts).await;
        for p in &proxies {
            p.update(self.clear);
        }
        events.end(event);
        Ok(())
    }
}

/// kill -9 a replica; its supervisor starts it again after `restart_after`.
async fn kill_replica(
    stack: &Stack,
    replica: usize,
    restart_after: Duration,
    events: &Events<'_>,
) -> Result<()> {
    let r = stack.replicas.get(replica).context("no such replica")?;
    r.hold_down.store(true, Ordering::SeqCst);
    let event = events.begin(
        format!("replica:{replica}"),
        format!("kill -9, restart after {restart_after:?}"),
    );
    r.process.lock().await.kill();
    r.proxy.reset_all();
    tokio::time::sleep(restart_after).await;
    r.hold_down.store(false, Ordering::SeqCst);
    events.end(event);
    Ok(())
}

/// SIGSTOP a replica for `lasts`, then SIGCONT.
async fn pause_replica(
    stack: &Stack,
    replica: usize,
    lasts: Duration,
    events: &Events<'_>,
) -> Result<()> {
    let r = stack.replicas.get(replica).context("no such replica")?;
    let event = events.begin(
        format!("replica:{replica}"),
        format!("SIGSTOP for {lasts:?}"),
    );
    r.process.lock().await.pause()?;
    tokio::time::sleep(lasts).await;
    r.process.lock().await.resume()?;
    events.end(event);
    Ok(())
}

/// kill -9 Redis (all its data lost) and start it again at once.
async fn restart_redis(stack: &Stack, events: &Events<'_>) -> Result<()> {
    let event = events.begin(
        "redis".into(),
        "kill -9 (all data lost) and start again".into(),
    );
    let mut redis = stack.redis.lock().await;
    redis
        .as_mut()
        .context("no redis in this mode")?
        .restart()
        .await?;
    if let Some(p) = &stack.redis_proxy {
        p.reset_all();
    }
    events.end(event);
    Ok(())
}

/// Stop the database at once (no checkpoint) and start it after `lasts`.
async fn restart_database(stack: &Stack, lasts: Duration, events: &Events<'_>) -> Result<()> {
    let event = events.begin(
        "database".into(),
        format!("immediate stop, start after {lasts:?}"),
    );
    stack
        .postgres
        .lock()
        .await
        .as_mut()
        .context("no database server in this mode")?
        .stop_immediately()
        .await;
    tokio::time::sleep(lasts).await;
    stack
        .postgres
        .lock()
        .await
        .as_mut()
        .context("no database")?
        .start_again()
        .await?;
    events.end(event);
    Ok(())
}

/// Sets failpoint `name` on one replica (or all) for `lasts`, or until it
/// crashes one (bounded), and records how often it fired.
async fn failpoint(
    stack: &Stack,
    replica: Option<usize>,
    name: &str,
    action: &str,
    lasts: Duration,
    until_crash: bool,
    events: &Events<'_>,
) -> Result<()> {
    let targets: Vec<usize> = match replica {
        Some(n) => vec![n],
        None => (0..stack.replicas.len()).collect(),
    };
    let http = reqwest::Client::new();
    for (i, n) in targets.iter().enumerate() {
        let url = stack.replicas[*n].process.lock().await.url();
        if let Err(why) = ServiceApi::new(&http, &url)
            .set_failpoint(name, action)
            .await
        {
            // The replicas that took it must not keep it.
            clear_failpoint(stack, &http, &targets[..i], name).await;
            anyhow::bail!("replica {n}: {why}");
        }
    }
    let target = replica.map_or("replicas".to_owned(), |n| format!("replica:{n}"));
    let event = events.begin(target, format!("{name}={action}"));
    events.log.set_failpoint(event, name);
    let before = fired_counts(stack, &targets, name).await;
    let mut crashed = 0;
    if until_crash {
        if wait_for_crash(stack, &targets, Duration::from_secs(15)).await {
            crashed = 1;
        } else {
            events.log.note(event, " (not hit within 15 s)");
        }
    } else {
        tokio::time::sleep(lasts).await;
    }
    let after = fired_counts(stack, &targets, name).await;
    // A replica that restarted in between starts counting from zero.
    let fired: u64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| if a >= b { a - b } else { *a })
        .sum();
    events.log.set_fired(event, fired + crashed);
    clear_failpoint(stack, &http, &targets, name).await;
    events.end(event);
    Ok(())
}

/// Removes failpoint `name` from `targets` (best effort: a replica that is
/// down has lost it anyway).
async fn clear_failpoint(stack: &Stack, http: &reqwest::Client, targets: &[usize], name: &str) {
    for n in targets {
        let url = stack.replicas[*n].process.lock().await.url();
        ServiceApi::new(http, &url).clear_failpoint(name).await;
    }
}

/// Runs `run`, and `heal` after `lasts`; a command that fails makes the
/// event's `apply_error` (an ERROR of the run).
async fn command(
    stack: &Stack,
    run: &str,
    heal: Option<&str>,
    timeout: Duration,
    lasts: Duration,
    events: &Events<'_>,
) {
    let event = events.begin(String::new(), run.to_owned());
    let env = stack.command_env().await;
    for (step, command) in std::iter::once(("run", run)).chain(heal.map(|h| ("heal", h))) {
        if step == "heal" {
            tokio::time::sleep(lasts).await;
        }
        let ran = run_command(step, command, &env, timeout).await;
        let failed = ran.failure();
        events.log.command(event, ran);
        if let Some(why) = failed {
            events.fail(event, why);
            return;
        }
    }
    events.end(event);
}

/// Runs an outside command (`sh -c`) in its own process group, killed
/// after `timeout`; its exit status and the tail of its output are kept.
async fn run_command(
    step: &str,
    command: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> CommandRun {
    let mut record = CommandRun {
        step: step.to_owned(),
        command: command.to_owned(),
        exit_code: None,
        timed_out: false,
        output: String::new(),
        error: None,
    };
    let log = match tempfile::NamedTempFile::new() {
        Ok(f) => f,
        Err(e) => {
            record.error = Some(format!("no temporary file for its output: {e}"));
            return record;
        }
    };
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(command).envs(env.iter().cloned());
    let child = crate::infra::ManagedChild::spawn("command", &mut cmd, log.path());
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            record.error = Some(format!("{e:#}"));
            return record;
        }
    };
    let waited = tokio::task::spawn_blocking(move || {
        let status = child.wait_for_exit(timeout);
        child.kill();
        (status, child.log_tail(40))
    })
    .await;
    match waited {
        Ok((status, output)) => {
            record.timed_out = status.is_none();
            record.exit_code = status.and_then(|s| s.code());
            record.output = output;
        }
        Err(e) => record.error = Some(format!("waiting for it: {e}")),
    }
    record
}

/// How often failpoint `name` has fired on each target replica so far.
async fn fired_counts(stack: &Stack, targets: &[usize], name: &str) -> Vec<u64> {
    let http = reqwest::Client::new();
    let mut counts = Vec::with_capacity(targets.len());
    for n in targets {
        let url = stack.replicas[*n].process.lock().await.url();
        let fired = ServiceApi::new(&http, &url).failpoint_fired(name).await;
        counts.push(fired.unwrap_or(0));
    }
    counts
}

/// Waits until one of `targets` is not running (a crash failpoint fired).
async fn wait_for_crash(stack: &Stack, targets: &[usize], bound: Duration) -> bool {
    let until = Instant::now() + bound;
    while Instant::now() < until {
        for n in targets {
            if !stack.replicas[*n].process.lock().await.is_running() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
