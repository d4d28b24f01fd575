//! Load runs: how fast the booking path is against the limits of its parts,
//! measured side by side on one machine in one run, with the invariants
//! checked on the database after every workload.
//!
//! The service and its baselines use the same closed-loop HTTP load
//! generator (N workers, each sending its next request when the previous
//! answer arrives); PostgreSQL's and Redis's own rates come from `pgbench`
//! and `redis-benchmark` at the same concurrency.
//!
//! By job: `driver` (the load generator), `workloads` (what the loads
//! send), `baselines` (pgbench, redis-benchmark), `invariants` (the store
//! checked after each workload), `markdown` (the reports; plots and HTML
//! come from [`crate::html`]).

mod baselines;
mod driver;
mod invariants;
mod markdown;
mod measure;
mod workloads;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::runner::Latency;
use crate::scenario::{Mode, Scenario};
use crate::stack::{Links, ServiceBinary, Stack};
use measure::{cpu_clock_tick, CpuSeconds};

use baselines::{machine, pgbench_booking_transactions, pgbench_inserts, redis_benchmark};
use driver::{drive, send};
use invariants::check_invariants;
use workloads::{bench_user, catalogue, date, distinct_create, race_client, race_one_slot};

pub use driver::Request;
pub use markdown::{html, markdown};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Length of each measured load.
    pub duration: Duration,
    /// Concurrency of the main comparisons (creates vs pgbench, replays vs /health).
    pub clients: usize,
    /// Runs of each main comparison (`/health`, creates, replays, in turn,
    /// and pgbench's booking transaction): each is reported as the median
    /// of its runs, so that one noisy run does not decide a target.
    pub repeat: usize,
    /// Client counts of the scaling curve.
    pub client_steps: Vec<usize>,
    /// Replica counts of the scaling curve.
    pub replica_steps: Vec<usize>,
    /// Rounds of the 100-clients-on-one-slot race, after its first round
    /// (which also opens the racers' connections and is reported apart).
    pub race_rounds: usize,
    /// Live idempotency keys of the cost-against-live-keys curve.
    pub live_key_steps: Vec<u64>,
    pub out_dir: PathBuf,
    pub binary: ServiceBinary,
}

/// One measured load.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measurement {
    pub name: String,
    pub clients: usize,
    pub replicas: usize,
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub latency_ms: Latency,
    /// The service's CPU time (user + system) per request, in µs: the
    /// targeted replicas' CPU time over the load divided by its requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_cpu_us: Option<f64>,
    /// Of `service_cpu_us`, the part spent in the kernel (system time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_kernel_cpu_us: Option<f64>,
    /// Live idempotency keys in the store and Redis during the load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_keys: Option<u64>,
    /// Runs this measurement is the median of (requests and errors: their sum).
    pub runs: usize,
}

/// A target of the issue, as read from the report.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub wanted: String,
    pub measured: String,
    pub met: bool,
    /// How far off, when missed.
    pub gap: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub duration_s: f64,
    pub measurements: Vec<Measurement>,
    pub pgbench_inserts_per_second: f64,
    /// pgbench running a booking's database work: its two rows in one transaction.
    pub pgbench_booking_transactions_per_second: f64,
    pub redis_set_per_second: f64,
    pub redis_get_per_second: f64,
    pub replica_rss_mb: f64,
    pub targets: Vec<Target>,
    /// Invariant violations found after a workload (must be empty).
    pub violations: Vec<String>,
}

/// Starts a stack, runs every workload and baseline, and reads the targets.
pub async fn run(config: &BenchConfig) -> Result<BenchReport> {
    let max_replicas = config
        .replica_steps
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let stack = start_stack(Mode::Local, max_replicas, &config.binary).await?;
    let mut loads = Loads::new(&stack, stack.direct_urls().await, config.duration);
    let clients = config.clients;

    // The key the replays ask for, booked once.
    loads.book_the_replayed_key().await?;

    let (health, creates, replays) = loads.main_comparisons(clients, config.repeat).await;
    let mut measurements = vec![health.clone(), creates.clone(), replays.clone()];

    let (race_first, race) = loads.race(config.race_rounds).await;
    measurements.extend([race_first, race.clone()]);
    let r = loads.next_run();
    measurements.push(loads.run(Load::mix(r, clients)).await);
    let rss = match stack.replica_pids(1).await {
        Some(pids) => pids.first().map_or(0.0, |pid| measure::rss_mb(*pid)),
        None => 0.0,
    };

    measurements.extend(loads.scaling(config).await?);

    let baselines = Baselines::measure(&stack, config).await?;
    let run_id = loads.next_run();
    let mut violations = loads.violations;
    drop(stack);

    // The embedded default: one replica on SQLite with its in-process coordinator.
    let embedded = embedded_loads(config, &mut violations, run_id).await?;
    measurements.extend(embedded.iter().cloned());
    let [embedded_health, embedded_creates, embedded_replays] = &embedded[..] else {
        bail!("the embedded loads did not all run");
    };
    let judged = Judged {
        health: &health,
        creates: &creates,
        replays: &replays,
        race: &race,
        embedded: [embedded_health, embedded_creates, embedded_replays],
        pgbench_booking: baselines.pgbench_booking,
        rss,
    };
    Ok(BenchReport {
        machine: machine(),
        duration_s: config.duration.as_secs_f64(),
        measurements,
        pgbench_inserts_per_second: baselines.pgbench_inserts,
        pgbench_booking_transactions_per_second: baselines.pgbench_booking,
        redis_set_per_second: baselines.redis_set,
        redis_get_per_second: baselines.redis_get,
        replica_rss_mb: rss,
        targets: judged.targets(),
        violations,
    })
}

/// One closed-loop load: its name, how many replicas it spreads over (the
/// first ones; their CPU is what it costs), its clients, what each worker
/// sends next, and under which label its invariants are checked (`None`:
/// it writes nothing to check).
struct Load {
    name: String,
    replicas: usize,
    clients: usize,
    next: Box<dyn Fn(usize, u64) -> Request + Send + Sync>,
    checked: Option<&'static str>,
}

impl Load {
    fn health(name: &str, clients: usize) -> Load {
        Load {
            name: name.into(),
            replicas: 1,
            clients,
            next: Box::new(|_, _| Request::Get("/health".into())),
            checked: None,
        }
    }

    /// Creates on distinct slots, for run `run`.
    fn creates(name: &str, run: u64, replicas: usize, clients: usize, label: &'static str) -> Load {
        Load {
            name: name.into(),
            replicas,
            clients,
            next: Box::new(move |w, i| distinct_create(run, w, i)),
            checked: Some(label),
        }
    }

    /// The same completed key asked again and again.
    fn replays(name: &str, clients: usize) -> Load {
        Load {
            name: name.into(),
            replicas: 1,
            clients,
            next: Box::new(|_, _| replay_create()),
            checked: None,
        }
    }

    /// 70% creates, 30% lists of the user who booked last (creates 3–9 of
    /// each ten).
    fn mix(run: u64, clients: usize) -> Load {
        Load {
            name: "mix: 70% create, 30% list".into(),
            replicas: 1,
            clients,
            next: Box::new(move |w, i| match i % 10 {
                0 if i > 0 => Request::Get(format!(
                    "/api/bookings/{}?status=all",
                    bench_user(run, w, i - 3)
                )),
                1 | 2 => Request::Get(format!(
                    "/api/bookings/{}",
                    bench_user(run, w, i.saturating_sub(3))
                )),
                _ => distinct_create(run, w, i),
            }),
            checked: Some("mix"),
        }
    }
}

/// The loads of one stack, one after the other, with the invariants each
/// one broke.
struct Loads<'a> {
    stack: &'a Stack,
    urls: Vec<String>,
    duration: Duration,
    run_id: u64,
    violations: Vec<String>,
}

impl<'a> Loads<'a> {
    fn new(stack: &'a Stack, urls: Vec<String>, duration: Duration) -> Loads<'a> {
        Loads {
            stack,
            urls,
            duration,
            run_id: 0,
            violations: Vec::new(),
        }
    }

    /// A fresh run number: each run's creates book slots of their own.
    fn next_run(&mut self) -> u64 {
        self.run_id += 1;
        self.run_id
    }

    async fn run(&mut self, load: Load) -> Measurement {
        let targets = self.urls[..load.replicas.clamp(1, self.urls.len())].to_vec();
        let driven = drive(&load.name, &targets, load.clients, self.duration, load.next);
        let (m, ids) = on_cpu(self.stack, targets.len(), driven).await;
        if let Some(label) = load.checked {
            check_invariants(self.stack, &ids, label, &mut self.violations).await;
        }
        m
    }

    /// The main comparisons, in turn and `repeat` times: the HTTP limit
    /// of the service (same generator), creates on distinct slots, replays
    /// of one completed key; the median run of each.
    async fn main_comparisons(
        &mut self,
        clients: usize,
        repeat: usize,
    ) -> (Measurement, Measurement, Measurement) {
        let (mut health, mut creates, mut replays) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeat.max(1) {
            health.push(
                self.run(Load::health("GET /health (HTTP limit)", clients))
                    .await,
            );
            let r = self.next_run();
            let load = Load::creates("creates on distinct slots", r, 1, clients, "creates");
            creates.push(self.run(load).await);
            replays.push(
                self.run(Load::replays("replays of one completed key", clients))
                    .await,
            );
        }
        (median_of(health), median_of(creates), median_of(replays))
    }

    /// Scaling: creates against clients (1 replica), against replicas (the
    /// main concurrency), and against live keys (more and more completed
    /// keys kept in PostgreSQL and Redis).
    async fn scaling(&mut self, config: &BenchConfig) -> Result<Vec<Measurement>> {
        let mut measurements = Vec::new();
        for &n in &config.client_steps {
            let r = self.next_run();
            let load = Load::creates("scaling: creates vs clients", r, 1, n, "scaling");
            measurements.push(self.run(load).await);
        }
        for &replicas in &config.replica_steps {
            let r = self.next_run();
            let name = "scaling: creates vs replicas";
            let load = Load::creates(name, r, replicas, config.clients, "scaling");
            measurements.push(self.run(load).await);
        }
        let mut seeded = 0;
        for &keys in &config.live_key_steps {
            let redis = self
                .stack
                .redis_port()
                .await
                .context("no redis in this mode")?;
            self.stack
                .store()
                .seed_live_keys(redis, seeded, keys)
                .await?;
            seeded = seeded.max(keys);
            let r = self.next_run();
            let name = format!("scaling: creates vs live keys ({keys})");
            let load = Load::creates(&name, r, 1, config.clients, "live keys");
            let mut m = self.run(load).await;
            m.live_keys = Some(keys);
            measurements.push(m);
        }
        Ok(measurements)
    }

    async fn book_the_replayed_key(&self) -> Result<()> {
        let first = send(&reqwest::Client::new(), &self.urls[0], &replay_create()).await;
        if first.map(|(s, _)| s) != Some(201) {
            bail!("could not create the booking to replay");
        }
        Ok(())
    }

    /// 100 clients racing for one slot, different keys: a first round that
    /// also opens their connections, then the rounds on open connections.
    async fn race(&mut self, rounds: usize) -> (Measurement, Measurement) {
        let (stack, one) = (self.stack, &self.urls[..1]);
        let racers = race_client();
        let violations = &mut self.violations;
        let (first, _) = on_cpu(stack, 1, async {
            let name = "100 clients racing one slot, first round (new connections)";
            let m = race_one_slot(stack, one, &racers, 0..1, name, violations).await;
            (m, Vec::new())
        })
        .await;
        let (rest, _) = on_cpu(stack, 1, async {
            let name = "100 clients racing one slot";
            let m = race_one_slot(stack, one, &racers, 1..rounds + 1, name, violations).await;
            (m, Vec::new())
        })
        .await;
        (first, rest)
    }
}

/// The parts' own limits at the same concurrency: PostgreSQL (single-row
/// inserts, and a booking's two-row transaction, `repeat` times) and Redis.
struct Baselines {
    pgbench_inserts: f64,
    pgbench_booking: f64,
    redis_set: f64,
    redis_get: f64,
}

impl Baselines {
    async fn measure(stack: &Stack, config: &BenchConfig) -> Result<Baselines> {
        let pg = stack.postgres_port().await.context("no postgres")?;
        let pgbench_inserts = pgbench_inserts(pg, config.clients, config.duration)?;
        let mut booking = (0..config.repeat.max(1))
            .map(|_| pgbench_booking_transactions(pg, config.clients, config.duration))
            .collect::<Result<Vec<f64>>>()?;
        let redis = stack.redis_port().await.context("no redis")?;
        let (redis_set, redis_get) = redis_benchmark(redis, config.clients)?;
        Ok(Baselines {
            pgbench_inserts,
            pgbench_booking: median(&mut booking),
            redis_set,
            redis_get,
        })
    }
}

/// The measurements the targets judge.
struct Judged<'a> {
    health: &'a Measurement,
    creates: &'a Measurement,
    replays: &'a Measurement,
    race: &'a Measurement,
    /// `/health`, creates and replays of the embedded default.
    embedded: [&'a Measurement; 3],
    pgbench_booking: f64,
    rss: f64,
}

impl Judged<'_> {
    fn targets(&self) -> Vec<Target> {
        let [embedded_health, embedded_creates, embedded_replays] = self.embedded;
        let p99_under = |name: &str, m: &Measurement, bound_ms: f64| Target {
            name: name.into(),
            wanted: format!("p99 < {bound_ms:.0} ms"),
            measured: format!("p99 {:.1} ms", m.latency_ms.p99),
            met: m.latency_ms.p99 < bound_ms,
            gap: (m.latency_ms.p99 >= bound_ms)
                .then(|| format!("{:.1} ms over", m.latency_ms.p99 - bound_ms)),
        };
        let cpu = self.creates.service_cpu_us.unwrap_or(f64::INFINITY);
        let kernel = self
            .creates
            .service_kernel_cpu_us
            .map_or(String::new(), |us| format!(" ({us:.0} µs in the kernel)"));
        let rss = self.rss;
        vec![
            ratio_target(
                "creates ≥ 0.8 × pgbench's booking transaction (two rows; 32 clients, 1 replica)",
                self.creates.per_second,
                self.pgbench_booking,
                0.8,
            ),
            Target {
                name: "service CPU per create ≤ 80 µs".into(),
                wanted: "≤ 80 µs".into(),
                measured: format!("{cpu:.0} µs{kernel}"),
                met: cpu <= 80.0,
                gap: (cpu > 80.0).then(|| format!("{:.0} µs over", cpu - 80.0)),
            },
            ratio_target(
                "replays ≥ 0.7 × /health",
                self.replays.per_second,
                self.health.per_second,
                0.7,
            ),
            p99_under(
                "100 clients on one slot (rounds on open connections): p99 < 20 ms, exactly one booking (violations below)",
                self.race,
                20.0,
            ),
            p99_under(
                "embedded default, creates at 32 clients: p99 < 50 ms",
                embedded_creates,
                50.0,
            ),
            Target {
                name: "embedded default, creates ≥ 3 000/s".into(),
                wanted: "≥ 3000/s".into(),
                measured: format!("{:.0}/s", embedded_creates.per_second),
                met: embedded_creates.per_second >= 3000.0,
                gap: (embedded_creates.per_second < 3000.0)
                    .then(|| short_by(1.0 - embedded_creates.per_second / 3000.0)),
            },
            ratio_target(
                "embedded default, replays ≥ 0.7 × its /health",
                embedded_replays.per_second,
                embedded_health.per_second,
                0.7,
            ),
            Target {
                name: "one replica under 50 MB RSS under load".into(),
                wanted: "< 50 MB".into(),
                measured: format!("{rss:.1} MB"),
                met: rss > 0.0 && rss < 50.0,
                gap: (rss >= 50.0).then(|| format!("{:.1} MB over", rss - 50.0)),
            },
        ]
    }
}

/// A stack for load runs: the bench's catalogue, every other setting at its
/// default (the key quota included: see [`workloads::BOOKINGS_PER_USER`]).
async fn start_stack(
    mode: Mode,
    replicas: usize,
    binary: &ServiceBinary,
) -> Result<std::sync::Arc<Stack>> {
    let scenario = Scenario {
        mode,
        replicas,
        service_env: [("BOOKING_RESOURCES".to_owned(), catalogue())].into(),
        ..Scenario::parse("name = \"bench\"")?
    };
    // Straight to Redis and PostgreSQL, as deployed: pgbench and
    // redis-benchmark reach them that way too.
    Stack::start_linked(&scenario, binary, Links::Direct).await
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    mean(middle(values).iter().copied()).unwrap_or(0.0)
}

/// The middle one (odd count) or two (even count) of `sorted`.
fn middle<T>(sorted: &[T]) -> &[T] {
    match sorted.len() {
        0 => sorted,
        n if n % 2 == 1 => &sorted[n / 2..=n / 2],
        n => &sorted[n / 2 - 1..=n / 2],
    }
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> Option<f64> {
    let count = values.len();
    (count > 0).then(|| values.sum::<f64>() / count as f64)
}

/// Runs of one workload as one measurement: each rate, latency and CPU
/// figure the median of the runs' (so one noisy run does not decide a
/// target), requests and errors summed.
fn median_of(runs: Vec<Measurement>) -> Measurement {
    let field =
        |f: &dyn Fn(&Measurement) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    let (cpu, kernel) = median_cpu(&runs);
    let Some(first) = runs.first() else {
        return Measurement::default();
    };
    Measurement {
        name: first.name.clone(),
        clients: first.clients,
        replicas: first.replicas,
        requests: runs.iter().map(|m| m.requests).sum(),
        errors: runs.iter().map(|m| m.errors).sum(),
        per_second: field(&|m| m.per_second),
        latency_ms: Latency {
            p50: field(&|m| m.latency_ms.p50),
            p95: field(&|m| m.latency_ms.p95),
            p99: field(&|m| m.latency_ms.p99),
            max: field(&|m| m.latency_ms.max),
        },
        service_cpu_us: cpu,
        service_kernel_cpu_us: kernel,
        live_keys: first.live_keys,
        runs: runs.iter().map(|m| m.runs).sum(),
    }
}

/// The median CPU per request of `runs` that have a reading, with the
/// kernel's part *of those same runs* (a median of its own could come from
/// another run than the total beside it).
fn median_cpu(runs: &[Measurement]) -> (Option<f64>, Option<f64>) {
    let mut read: Vec<(f64, Option<f64>)> = runs
        .iter()
        .filter_map(|m| Some((m.service_cpu_us?, m.service_kernel_cpu_us)))
        .collect();
    read.sort_by(|a, b| a.0.total_cmp(&b.0));
    let middle = middle(&read);
    let kernel: Option<Vec<f64>> = middle.iter().map(|r| r.1).collect();
    (
        mean(middle.iter().map(|r| r.0)),
        kernel.and_then(|k| mean(k.into_iter())),
    )
}

/// Runs a load and adds the service's CPU time per request (and its kernel
/// part): the first `replicas` replicas' CPU time over the load, divided by
/// its requests.
async fn on_cpu<F>(stack: &Stack, replicas: usize, load: F) -> (Measurement, Vec<String>)
where
    F: std::future::Future<Output = (Measurement, Vec<String>)>,
{
    let pids = stack.replica_pids(replicas).await;
    let before = pids.as_deref().and_then(measure::cpu_seconds);
    let (mut m, ids) = load.await;
    let after = pids.as_deref().and_then(measure::cpu_seconds);
    if let (Some(before), Some(after), Some(tick)) = (before, after, cpu_clock_tick()) {
        if let Some((cpu, kernel)) = cpu_per_request(before, after, m.requests, tick) {
            m.service_cpu_us = Some(cpu);
            m.service_kernel_cpu_us = Some(kernel);
        }
    }
    (m, ids)
}

/// Fewer clock ticks of CPU than this over a load is no reading.
const MIN_CPU_TICKS: f64 = 5.0;

/// The service's CPU per request over a load, in µs, and its kernel part,
/// from its CPU times before and after. `None` when the load used fewer
/// than [`MIN_CPU_TICKS`] clock ticks (`tick`, in seconds): `/proc` counts
/// whole ticks, so the race's first round (100 requests in a few ms) read
/// as 0 µs, and one tick more or less would be over a fifth of a shorter
/// reading.
fn cpu_per_request(
    before: CpuSeconds,
    after: CpuSeconds,
    requests: u64,
    tick: f64,
) -> Option<(f64, f64)> {
    let used = after.total() - before.total();
    if requests == 0 || used < MIN_CPU_TICKS * tick {
        return None;
    }
    let per_request = |seconds: f64| seconds * 1e6 / requests as f64;
    Some((per_request(used), per_request(after.system - before.system)))
}

/// The embedded default (SQLite, in-process coordinator, one replica):
/// `/health`, creates and replays at the main concurrency.
async fn embedded_loads(
    config: &BenchConfig,
    violations: &mut Vec<String>,
    run: u64,
) -> Result<Vec<Measurement>> {
    let stack = start_stack(Mode::Embedded, 1, &config.binary).await?;
    let mut loads = Loads::new(&stack, stack.direct_urls().await, config.duration);
    let clients = config.clients;
    let health = loads
        .run(Load::health("embedded: GET /health", clients))
        .await;
    let name = "embedded: creates on distinct slots";
    let creates = loads
        .run(Load::creates(name, run, 1, clients, "embedded creates"))
        .await;
    loads.book_the_replayed_key().await?;
    let replays = loads
        .run(Load::replays(
            "embedded: replays of one completed key",
            clients,
        ))
        .await;
    violations.append(&mut loads.violations);
    Ok(vec![health, creates, replays])
}

/// A target "measured ≥ wanted × baseline".
fn ratio_target(name: &str, measured: f64, baseline: f64, wanted: f64) -> Target {
    let ratio = if baseline > 0.0 {
        measured / baseline
    } else {
        0.0
    };
    // Two decimals, or three where two would show a miss as the target itself.
    let shown = if ratio < wanted && format!("{ratio:.2}") == format!("{wanted:.2}") {
        format!("{ratio:.3}")
    } else {
        format!("{ratio:.2}")
    };
    Target {
        name: name.into(),
        wanted: format!("≥ {wanted:.2}×"),
        measured: format!("{shown}× ({measured:.0}/s vs {baseline:.0}/s)"),
        met: ratio >= wanted,
        gap: (ratio < wanted).then(|| short_by(1.0 - ratio / wanted)),
    }
}

/// How far a missed target fell short, as a share of the target.
fn short_by(fraction: f64) -> String {
    if fraction < 0.005 {
        "under 1% short".into()
    } else {
        format!("{:.0}% short", fraction * 100.0)
    }
}

/// Writes `bench.md`, `bench.json` and `bench.html` into `dir`.
pub fn write_reports(r: &BenchReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("bench.md"), markdown(r))?;
    std::fs::write(dir.join("bench.json"), serde_json::to_vec_pretty(r)?)?;
    std::fs::write(dir.join("bench.html"), html(r))?;
    Ok(())
}

/// The create every replay workload asks again: one key, booked once.
fn replay_create() -> Request {
    Request::Call(crate::client::Call::create(
        "bench_replay",
        "bench_room_0",
        &date(100),
        Some("replay-key".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_target_says_by_how_much() {
        let t = ratio_target("x", 400.0, 1000.0, 0.8);
        assert!(!t.met);
        assert_eq!(t.gap.as_deref(), Some("50% short"));
        assert!(ratio_target("x", 900.0, 1000.0, 0.8).met);
    }

    #[test]
    fn a_narrow_miss_does_not_read_as_the_target() {
        let t = ratio_target("x", 13_398.0, 19_155.0, 0.7);
        assert!(!t.met);
        assert!(t.measured.starts_with("0.699×"), "{}", t.measured);
        assert_eq!(t.gap.as_deref(), Some("under 1% short"));
    }

    fn run(per_second: f64, p99: f64, cpu: Option<f64>, requests: u64) -> Measurement {
        Measurement {
            name: "creates on distinct slots".into(),
            clients: 32,
            replicas: 1,
            requests,
            errors: 1,
            per_second,
            latency_ms: Latency {
                p50: p99 / 2.0,
                p95: p99 - 1.0,
                p99,
                max: p99 * 2.0,
            },
            service_cpu_us: cpu,
            service_kernel_cpu_us: cpu.map(|us| us / 2.0),
            live_keys: None,
            runs: 1,
        }
    }

    #[test]
    fn a_load_shorter_than_a_few_clock_ticks_has_no_cpu_reading() {
        let tick = 0.01;
        let cpu = |user: f64, system: f64| CpuSeconds { user, system };
        let start = cpu(3.0, 1.0);
        assert_eq!(
            cpu_per_request(start, start, 100, tick),
            None,
            "no tick counted is no reading, not 0 µs"
        );
        assert_eq!(
            cpu_per_request(start, cpu(3.02, 1.01), 100, tick),
            None,
            "3 ticks"
        );
        let (us, kernel) =
            cpu_per_request(start, cpu(3.04, 1.02), 1000, tick).expect("6 ticks is a reading");
        assert!(
            (us - 60.0).abs() < 1e-6 && (kernel - 20.0).abs() < 1e-6,
            "{us} {kernel}"
        );
        assert_eq!(cpu_per_request(start, cpu(4.0, 2.0), 0, tick), None);
    }

    #[test]
    fn repeated_runs_report_each_figure_as_its_median() {
        let m = median_of(vec![
            run(4000.0, 30.0, Some(100.0), 10),
            run(5000.0, 10.0, Some(70.0), 20),
            run(4500.0, 12.0, Some(90.0), 30),
        ]);
        assert_eq!(
            (m.per_second, m.latency_ms.p99, m.service_cpu_us),
            (4500.0, 12.0, Some(90.0))
        );
        assert_eq!(m.service_kernel_cpu_us, Some(45.0));
        let with_kernel = |cpu: f64, kernel: f64| Measurement {
            service_kernel_cpu_us: Some(kernel),
            ..run(1.0, 1.0, Some(cpu), 1)
        };
        let paired = median_of(vec![
            with_kernel(100.0, 10.0),
            with_kernel(70.0, 20.0),
            with_kernel(90.0, 50.0),
        ]);
        assert_eq!(
            (paired.service_cpu_us, paired.service_kernel_cpu_us),
            (Some(90.0), Some(50.0)),
            "the kernel's part of the median run, not a median of its own (20)"
        );
        let even = median_of(vec![
            with_kernel(100.0, 10.0),
            with_kernel(70.0, 20.0),
            with_kernel(90.0, 50.0),
            with_kernel(60.0, 30.0),
        ]);
        assert_eq!(
            (even.service_cpu_us, even.service_kernel_cpu_us),
            (Some(80.0), Some(35.0)),
            "two middle runs: the mean of each of their figures"
        );
        assert_eq!((m.latency_ms.p50, m.latency_ms.max), (6.0, 24.0));
        assert_eq!((m.requests, m.errors, m.runs), (60, 3, 3));
        assert_eq!(m.name, "creates on distinct slots");
        let even = median_of(vec![run(1.0, 1.0, None, 1), run(3.0, 5.0, Some(80.0), 1)]);
        assert_eq!((even.per_second, even.latency_ms.p99), (2.0, 3.0));
        assert_eq!(
            even.service_cpu_us,
            Some(80.0),
            "a run without a CPU reading does not count as zero"
        );
        assert_eq!(median_of(vec![run(7.0, 2.0, None, 5)]).per_second, 7.0);
    }
}
