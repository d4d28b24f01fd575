//! The nemesis: applies a scenario's fault timeline to the stack and records
//! each fault as it starts and heals.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::history::{CommandRun, FaultEvent};
use crate::scenario::{Fault, FaultKind, Target};
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
                if let Err(e) = apply(&stack, &fault, started, &log).await {
                    tracing::warn!(fault = fault.kind.name(), error = %format!("{e:#}"), "fault could not be applied");
                    log.push(FaultEvent {
                        start_ms: ms(started),
                        end_ms: Some(ms(started)),
                        kind: fault.kind.name().into(),
                        target: String::new(),
                        detail: String::new(),
                        fired: None,
                        apply_error: Some(format!("{e:#}")),
                        commands: Vec::new(),
                    });
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

async fn apply(stack: &Stack, fault: &Fault, started: Instant, log: &FaultLog) -> Result<()> {
    let lasts = fault.lasts.unwrap_or(Duration::from_secs(1));
    let begin = |target: String, detail: String| {
        log.push(FaultEvent {
            start_ms: ms(started),
            end_ms: None,
            kind: fault.kind.name().into(),
            target,
            detail,
            fired: None,
            apply_error: None,
            commands: Vec::new(),
        })
    };
    match &fault.kind {
        FaultKind::Latency {
            target,
            latency_ms,
            jitter_ms,
        } => {
            let detail = format!("{latency_ms} ms ± {jitter_ms} ms");
            link_fault(
                stack,
                target,
                lasts,
                |t| {
                    t.latency = Duration::from_millis(*latency_ms);
                    t.jitter = Duration::from_millis(*jitter_ms);
                },
                |t| {
                    t.latency = Duration::ZERO;
                    t.jitter = Duration::ZERO;
                },
                begin(target.to_string(), detail),
                started,
                log,
            )
            .await
        }
        FaultKind::Bandwidth {
            target,
            bytes_per_sec,
        } => {
            link_fault(
                stack,
                target,
                lasts,
                |t| t.bandwidth = Some(*bytes_per_sec),
                |t| t.bandwidth = None,
                begin(target.to_string(), format!("{bytes_per_sec} B/s")),
                started,
                log,
            )
            .await
        }
        FaultKind::Blackhole { target } => {
            link_fault(
                stack,
                target,
                lasts,
                |t| t.blackhole = true,
                |t| t.blackhole = false,
                begin(target.to_string(), String::new()),
                started,
                log,
            )
            .await
        }
        FaultKind::CloseAfter { target, bytes } => {
            link_fault(
                stack,
                target,
                lasts,
                |t| t.close_after = Some(*bytes),
                |t| t.close_after = None,
                begin(target.to_string(), format!("after {bytes} bytes")),
                started,
                log,
            )
            .await
        }
        FaultKind::DropResponses { target } => {
            link_fault(
                stack,
                target,
                lasts,
                |t| t.drop_responses = true,
                |t| t.drop_responses = false,
                begin(target.to_string(), String::new()),
                started,
                log,
            )
            .await
        }
        FaultKind::Reset { target } => {
            let i = begin(target.to_string(), String::new());
            for p in stack.proxies_for(target) {
                p.reset_all();
            }
            log.end(i, ms(started));
            Ok(())
        }
        FaultKind::KillReplica {
            replica,
            restart_after,
        } => {
            let r = stack.replicas.get(*replica).context("no such replica")?;
            r.hold_down.store(true, std::sync::atomic::Ordering::SeqCst);
            let i = begin(
                format!("replica:{replica}"),
                format!("kill -9, restart after {restart_after:?}"),
            );
            r.process.lock().await.kill();
            r.proxy.reset_all();
            tokio::time::sleep(*restart_after).await;
            r.hold_down
                .store(false, std::sync::atomic::Ordering::SeqCst);
            log.end(i, ms(started));
            Ok(())
        }
        FaultKind::PauseReplica { replica } => {
            let r = stack.replicas.get(*replica).context("no such replica")?;
            let i = begin(
                format!("replica:{replica}"),
                format!("SIGSTOP for {lasts:?}"),
            );
            r.process.lock().await.pause()?;
            tokio::time::sleep(lasts).await;
            r.process.lock().await.resume()?;
            log.end(i, ms(started));
            Ok(())
        }
        FaultKind::RestartRedis => {
            let i = begin(
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
            log.end(i, ms(started));
            Ok(())
        }
        FaultKind::RestartDatabase => {
            let i = begin(
                "database".into(),
                format!("immediate stop, start after {lasts:?}"),
            );
            {
                let mut pg = stack.postgres.lock().await;
                pg.as_mut()
                    .context("no database server in this mode")?
                    .stop_immediately()
                    .await;
            }
            tokio::time::sleep(lasts).await;
            stack
                .postgres
                .lock()
                .await
                .as_mut()
                .context("no database")?
                .start_again()
                .await?;
            log.end(i, ms(started));
            Ok(())
        }
        FaultKind::Failpoint {
            replica,
            name,
            action,
        } => {
            let targets: Vec<usize> = match replica {
                Some(n) => vec![*n],
                None => (0..stack.replicas.len()).collect(),
            };
            let target = replica.map_or("replicas".to_owned(), |n| format!("replica:{n}"));
            let i = begin(target, format!("{name}={action}"));
            let http = reqwest::Client::new();
            for n in &targets {
                let url = stack.replicas[*n].process.lock().await.url();
                let response = http
                    .put(format!("{url}/admin/failpoints/{name}"))
                    .body(action.clone())
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .context("setting a failpoint")?;
                if !response.status().is_success() {
                    anyhow::bail!(
                        "replica {n} refused failpoint {name}={action}: {} (is it built with --features failpoints?)",
                        response.status()
                    );
                }
            }
            let before = fired_counts(stack, &targets, name).await;
            let mut crashed = 0;
            if action.contains("crash") && fault.lasts.is_none() {
                // The window lasts until a targeted replica crashes (bounded).
                if wait_for_crash(stack, &targets, Duration::from_secs(15)).await {
                    crashed = 1;
                } else {
                    log.note(i, " (not hit within 15 s)");
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
            log.set_fired(i, fired + crashed);
            for n in &targets {
                let url = stack.replicas[*n].process.lock().await.url();
                let _ = http
                    .delete(format!("{url}/admin/failpoints/{name}"))
                    .send()
                    .await;
            }
            log.end(i, ms(started));
            Ok(())
        }
        FaultKind::Command { run, heal, timeout } => {
            let i = begin(String::new(), run.clone());
            let env = stack.command_env().await;
            let ran = run_command("run", run, &env, *timeout).await;
            let failed = ran.failure();
            log.command(i, ran);
            if let Some(why) = failed {
                log.fail(i, why, ms(started));
                return Ok(());
            }
            if let Some(heal) = heal {
                tokio::time::sleep(fault.lasts.unwrap_or_default()).await;
                let healed = run_command("heal", heal, &env, *timeout).await;
                let failed = healed.failure();
                log.command(i, healed);
                if let Some(why) = failed {
                    log.fail(i, why, ms(started));
                    return Ok(());
                }
            }
            log.end(i, ms(started));
            Ok(())
        }
    }
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
        let count = async {
            let v: serde_json::Value = http
                .get(format!("{url}/admin/failpoints"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v["fired"][name].as_u64()
        }
        .await;
        counts.push(count.unwrap_or(0));
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

#[allow(clippy::too_many_arguments)]
async fn link_fault(
    stack: &Stack,
    target: &Target,
    lasts: Duration,
    set: impl Fn(&mut crate::proxy::Toxics),
    unset: impl Fn(&mut crate::proxy::Toxics),
    event: usize,
    started: Instant,
    log: &FaultLog,
) -> Result<()> {
    let proxies = stack.proxies_for(target);
    if proxies.is_empty() {
        anyhow::bail!("no link to {target} in this mode");
    }
    for p in &proxies {
        p.update(&set);
    }
    tokio::time::sleep(lasts).await;
    for p in &proxies {
        p.update(&unset);
    }
    log.end(event, ms(started));
    Ok(())
}
