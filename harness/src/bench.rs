//! Load runs: how fast the booking path is against the limits of its parts,
//! measured side by side on one machine in one run, with the invariants
//! checked on the database after every workload.
//!
//! The service and its baselines use the same closed-loop HTTP load
//! generator (N workers, each sending its next request when the previous
//! answer arrives); PostgreSQL's and Redis's own rates come from `pgbench`
//! and `redis-benchmark` at the same concurrency.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::html::{from_markdown, line_plot};
use crate::runner::Latency;
use crate::scenario::{Mode, Scenario};
use crate::stack::{ServiceBinary, Stack};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Length of each measured load.
    pub duration: Duration,
    /// Concurrency of the main comparisons (creates vs pgbench, replays vs /health).
    pub clients: usize,
    /// Client counts of the scaling curve.
    pub client_steps: Vec<usize>,
    /// Replica counts of the scaling curve.
    pub replica_steps: Vec<usize>,
    /// Rounds of the 100-clients-on-one-slot race.
    pub race_rounds: usize,
    pub out_dir: PathBuf,
    pub binary: ServiceBinary,
}

/// One measured load.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub clients: usize,
    pub replicas: usize,
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub latency_ms: Latency,
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
    pub redis_set_per_second: f64,
    pub redis_get_per_second: f64,
    pub replica_rss_mb: f64,
    pub targets: Vec<Target>,
    /// Invariant violations found after a workload (must be empty).
    pub violations: Vec<String>,
}

/// The closed-loop generator: `clients` workers for `duration`, each
/// sending `next(worker, i)` and waiting for the answer.
async fn drive<F>(
    name: &str,
    urls: &[String],
    clients: usize,
    duration: Duration,
    next: F,
) -> (Measurement, Vec<String>)
where
    F: Fn(usize, u64) -> Request + Send + Sync + 'static,
{
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients.max(1))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let next = Arc::new(next);
    let created = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for w in 0..clients {
        let (http, next, created, errors) =
            (http.clone(), next.clone(), created.clone(), errors.clone());
        let base = urls[w % urls.len()].clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let req = next(w, i);
                i += 1;
                let t = Instant::now();
                let answer = send(&http, &base, &req).await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                match answer {
                    Some((status, id)) if status < 500 => {
                        if let Some(id) = id.filter(|_| status == 201) {
                            if let Ok(mut c) = created.lock() {
                                c.push(id);
                            }
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = all.len() as u64;
    let m = Measurement {
        name: name.into(),
        clients,
        replicas: urls.len(),
        requests,
        errors: errors.load(Ordering::Relaxed),
        per_second: requests as f64 / elapsed,
        latency_ms: Latency::of(all),
    };
    let ids = created.lock().map(|c| c.clone()).unwrap_or_default();
    (m, ids)
}

#[derive(Debug, Clone)]
pub enum Request {
    Get(String),
    Post {
        body: serde_json::Value,
        key: String,
    },
    Cancel {
        id: String,
        user: String,
    },
}

async fn send(http: &reqwest::Client, base: &str, req: &Request) -> Option<(u16, Option<String>)> {
    let response = match req {
        Request::Get(path) => http.get(format!("{base}{path}")).send().await,
        Request::Post { body, key } => {
            http.post(format!("{base}/api/bookings"))
                .header("Idempotency-Key", key)
                .json(body)
                .send()
                .await
        }
        Request::Cancel { id, user } => {
            http.patch(format!("{base}/api/bookings/{id}/cancel"))
                .json(&json!({ "userId": user }))
                .send()
                .await
        }
    }
    .ok()?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    Some((status, body["booking"]["id"].as_str().map(str::to_owned)))
}

/// The bench stack's catalogue: many rooms, so distinct slots need few dates.
const ROOMS: u64 = 1000;

fn catalogue() -> String {
    (0..ROOMS)
        .map(|n| format!("bench_room_{n}=Bench room {n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn date(offset: u64) -> String {
    (chrono::NaiveDate::from_ymd_opt(2040, 1, 1).unwrap_or_default() + chrono::Days::new(offset))
        .format("%Y-%m-%d")
        .to_string()
}

/// A distinct slot per (run, worker, i): runs and workers own disjoint
/// ranges (dates from run × 20 000 days on; replays and races use earlier ones).
fn distinct_create(run: u64, w: usize, i: u64) -> Request {
    let n = run * 20_000 * ROOMS + (w as u64) * 100_000 + i;
    Request::Post {
        body: json!({ "userId": format!("bench_{w}"), "resourceId": format!("bench_room_{}", n % ROOMS), "date": date(n / ROOMS) }),
        key: format!("bench-{run}-{w}-{i}"),
    }
}

pub async fn run(config: &BenchConfig) -> Result<BenchReport> {
    let max_replicas = config
        .replica_steps
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let scenario = Scenario {
        mode: Mode::Local,
        replicas: max_replicas,
        // A load worker books as one user far past a person's key quota.
        service_env: [
            ("BOOKING_RESOURCES".to_owned(), catalogue()),
            ("IDEMPOTENCY_KEY_QUOTA".to_owned(), "0".to_owned()),
        ]
        .into(),
        ..Scenario::parse("name = \"bench\"")?
    };
    let stack = Stack::start(&scenario, &config.binary).await?;
    let urls = stack.direct_urls().await;
    let one = &urls[..1];
    let mut measurements = Vec::new();
    let mut violations = Vec::new();
    let mut run_id = 0u64;
    let mut next_run = || {
        run_id += 1;
        run_id
    };

    // Baseline: the HTTP limit of the service (same generator).
    let (health, _) = drive(
        "GET /health (HTTP limit)",
        one,
        config.clients,
        config.duration,
        |_, _| Request::Get("/health".into()),
    )
    .await;
    measurements.push(health.clone());

    // Creates on distinct slots, 1 replica, main concurrency.
    let r = next_run();
    let (creates, ids) = drive(
        "creates on distinct slots",
        one,
        config.clients,
        config.duration,
        move |w, i| distinct_create(r, w, i),
    )
    .await;
    check_invariants(&stack, &ids, "creates", &mut violations).await;
    measurements.push(creates.clone());

    // Replays of one completed key.
    let body = json!({ "userId": "bench_replay", "resourceId": "bench_room_0", "date": date(100) });
    let first = send(
        &reqwest::Client::new(),
        &one[0],
        &Request::Post {
            body: body.clone(),
            key: "replay-key".into(),
        },
    )
    .await;
    if first.map(|(s, _)| s) != Some(201) {
        bail!("could not create the booking to replay");
    }
    let (replays, _) = drive(
        "replays of one completed key",
        one,
        config.clients,
        config.duration,
        move |_, _| Request::Post {
            body: body.clone(),
            key: "replay-key".into(),
        },
    )
    .await;
    measurements.push(replays.clone());

    // 100 clients racing for one slot, different keys, several rounds.
    let race = race_one_slot(&stack, one, config.race_rounds, &mut violations).await;
    measurements.push(race.clone());

    // A mix of creates, lists and cancels.
    let r = next_run();
    let (mix, ids) = drive(
        "mix: 70% create, 20% list, 10% cancel",
        one,
        config.clients,
        config.duration,
        move |w, i| match i % 10 {
            0 if i > 0 => Request::Get(format!("/api/bookings/bench_{w}?status=all")),
            1 | 2 => Request::Get(format!("/api/bookings/bench_{w}")),
            _ => distinct_create(r, w, i),
        },
    )
    .await;
    check_invariants(&stack, &ids, "mix", &mut violations).await;
    measurements.push(mix);
    let rss = stack.replica_rss_mb(0).await;

    // Scaling: clients (1 replica) and replicas (main concurrency).
    for &clients in &config.client_steps {
        let r = next_run();
        let (m, ids) = drive(
            "scaling: creates vs clients",
            one,
            clients,
            config.duration,
            move |w, i| distinct_create(r, w, i),
        )
        .await;
        check_invariants(&stack, &ids, "scaling", &mut violations).await;
        measurements.push(m);
    }
    for &replicas in &config.replica_steps {
        let r = next_run();
        let targets = urls[..replicas.min(urls.len())].to_vec();
        let (m, ids) = drive(
            "scaling: creates vs replicas",
            &targets,
            config.clients,
            config.duration,
            move |w, i| distinct_create(r, w, i),
        )
        .await;
        check_invariants(&stack, &ids, "scaling", &mut violations).await;
        measurements.push(m);
    }

    // Baselines of the parts, at the same concurrency.
    let pg = stack.postgres_port().await.context("no postgres")?;
    let pgbench = pgbench_inserts(pg, config.clients, config.duration)?;
    let redis = stack.redis_port().await.context("no redis")?;
    let (set, get) = redis_benchmark(redis, config.clients)?;
    drop(stack);

    let targets = vec![
        ratio_target(
            "creates ≥ 0.8 × pgbench inserts (32 clients, 1 replica)",
            creates.per_second,
            pgbench,
            0.8,
        ),
        ratio_target(
            "replays ≥ 0.5 × /health",
            replays.per_second,
            health.per_second,
            0.5,
        ),
        Target {
            name: "100 clients on one slot: p99 < 25 ms, exactly one booking".into(),
            wanted: "p99 < 25 ms".into(),
            measured: format!("p99 {:.1} ms", race.latency_ms.p99),
            met: race.latency_ms.p99 < 25.0,
            gap: (race.latency_ms.p99 >= 25.0)
                .then(|| format!("{:.1} ms over", race.latency_ms.p99 - 25.0)),
        },
        Target {
            name: "one replica under 50 MB RSS under load".into(),
            wanted: "< 50 MB".into(),
            measured: format!("{rss:.1} MB"),
            met: rss > 0.0 && rss < 50.0,
            gap: (rss >= 50.0).then(|| format!("{:.1} MB over", rss - 50.0)),
        },
    ];
    Ok(BenchReport {
        machine: machine(),
        duration_s: config.duration.as_secs_f64(),
        measurements,
        pgbench_inserts_per_second: pgbench,
        redis_set_per_second: set,
        redis_get_per_second: get,
        replica_rss_mb: rss,
        targets,
        violations,
    })
}

fn ratio_target(name: &str, measured: f64, baseline: f64, wanted: f64) -> Target {
    let ratio = if baseline > 0.0 {
        measured / baseline
    } else {
        0.0
    };
    Target {
        name: name.into(),
        wanted: format!("≥ {wanted:.2}×"),
        measured: format!("{ratio:.2}× ({measured:.0}/s vs {baseline:.0}/s)"),
        met: ratio >= wanted,
        gap: (ratio < wanted).then(|| format!("{:.0}% short", (1.0 - ratio / wanted) * 100.0)),
    }
}

/// 100 concurrent requests for one slot, each with its own key, per round.
async fn race_one_slot(
    stack: &Stack,
    urls: &[String],
    rounds: usize,
    violations: &mut Vec<String>,
) -> Measurement {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(100)
        .build()
        .unwrap_or_default();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut errors = 0;
    for round in 0..rounds {
        let slot_date = date(200 + round as u64);
        let tasks: Vec<_> = (0..100)
            .map(|c| {
                let (http, base, slot_date) = (http.clone(), urls[c % urls.len()].clone(), slot_date.clone());
                tokio::spawn(async move {
                    let req = Request::Post {
                        body: json!({ "userId": format!("racer_{c}"), "resourceId": "bench_room_0", "date": slot_date }),
                        key: format!("race-{round}-{c}"),
                    };
                    let t = Instant::now();
                    let answer = send(&http, &base, &req).await;
                    (t.elapsed().as_secs_f64() * 1000.0, answer)
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            let Ok((ms, answer)) = t.await else { continue };
            latencies.push(ms);
            match answer {
                Some((201, Some(id))) => ids.push(id),
                Some((409, _)) => {}
                _ => errors += 1,
            }
        }
        if ids.len() != 1 {
            violations.push(format!(
                "race round {round}: {} bookings acknowledged for one slot",
                ids.len()
            ));
        }
        let confirmed = stack
            .count_confirmed("bench_room_0", &slot_date)
            .await
            .unwrap_or(-1);
        if confirmed != 1 {
            violations.push(format!(
                "race round {round}: {confirmed} confirmed bookings in the store"
            ));
        }
    }
    let requests = latencies.len() as u64;
    Measurement {
        name: "100 clients racing one slot".into(),
        clients: 100,
        replicas: urls.len(),
        requests,
        errors,
        per_second: requests as f64 / started.elapsed().as_secs_f64(),
        latency_ms: Latency::of(latencies),
    }
}

/// No two confirmed bookings per slot; every acknowledged booking exists.
async fn check_invariants(
    stack: &Stack,
    acknowledged: &[String],
    workload: &str,
    violations: &mut Vec<String>,
) {
    match stack.invariant_report(acknowledged).await {
        Ok(found) => violations.extend(found.into_iter().map(|v| format!("{workload}: {v}"))),
        Err(e) => violations.push(format!("{workload}: could not read the store: {e:#}")),
    }
}

/// PostgreSQL's own single-row insert rate into the same table (same unique
/// indexes), at the same concurrency, with pgbench.
fn pgbench_inserts(port: u16, clients: usize, duration: Duration) -> Result<f64> {
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(
        script.path(),
        "\\set r random(1, 9999999)\n\
         INSERT INTO bookings (id, user_id, resource_id, date, status, created_at, key_kind, idem_key) \
         VALUES (gen_random_uuid(), 'pgbench', 'room_P', date '2100-01-01' + (:client_id * 10000000 + :r), \
         'confirmed', now(), 'client', gen_random_uuid()::text) ON CONFLICT DO NOTHING;\n",
    )?;
    let out = Command::new(pg_tool("pgbench"))
        .args(["-n", "-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(port.to_string())
        .args(["-c", &clients.to_string(), "-j", "2", "-T"])
        .arg(duration.as_secs().max(1).to_string())
        .arg("-f")
        .arg(script.path())
        .arg("booking")
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_after(&text, "tps = ").with_context(|| {
        format!(
            "pgbench said: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn pg_tool(name: &str) -> PathBuf {
    crate::infra::postgres_bin_dir()
        .map(|d| d.join(name))
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Redis's own SET and GET rates at the same concurrency.
fn redis_benchmark(port: u16, clients: usize) -> Result<(f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            &clients.to_string(),
            "-n",
            "100000",
            "-t",
            "set,get",
            "-q",
        ])
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let rate = |op: &str| {
        text.lines()
            .filter(|l| l.starts_with(op))
            .filter_map(|l| parse_after(l, ": "))
            .next_back()
            .unwrap_or(0.0)
    };
    Ok((rate("SET"), rate("GET")))
}

fn parse_after(text: &str, marker: &str) -> Option<f64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.parse().ok()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores ({cpu}), shared")
}

/// The report as markdown.
pub fn markdown(r: &BenchReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "# Booking load report\n\nMachine: {}. Each load ran {:.0} s; all numbers from one run, side by side.\n", r.machine, r.duration_s);
    let _ = writeln!(
        s,
        "## Targets\n\n| target | wanted | measured | met |\n|---|---|---|---|"
    );
    for t in &r.targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            t.name,
            t.wanted,
            t.measured,
            if t.met {
                "yes".to_owned()
            } else {
                format!("**no** ({})", t.gap.clone().unwrap_or_default())
            }
        );
    }
    let _ = writeln!(s, "\n## Workloads\n\n| workload | clients | replicas | requests | errors | per second | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|");
    for m in &r.measurements {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} |",
            m.name,
            m.clients,
            m.replicas,
            m.requests,
            m.errors,
            m.per_second,
            m.latency_ms.p50,
            m.latency_ms.p99
        );
    }
    let _ = writeln!(
        s,
        "\n## Baselines\n\n- pgbench single-row inserts into `bookings` (same unique indexes): {:.0}/s\n- redis-benchmark: SET {:.0}/s, GET {:.0}/s\n- replica RSS after load: {:.1} MB",
        r.pgbench_inserts_per_second, r.redis_set_per_second, r.redis_get_per_second, r.replica_rss_mb
    );
    let _ = writeln!(s, "\n## Invariants\n");
    if r.violations.is_empty() {
        let _ = writeln!(s, "Checked on the database after every workload: no two confirmed bookings for a slot, every 201 booking exists, one booking per race round. **All held.**");
    } else {
        for v in &r.violations {
            let _ = writeln!(s, "- VIOLATION: {v}");
        }
    }
    s
}

/// A self-contained HTML page with the tables and the scaling plots.
pub fn html(r: &BenchReport) -> String {
    let series =
        |name: &str, x: fn(&Measurement) -> usize, y: fn(&Measurement) -> f64| -> Vec<(f64, f64)> {
            r.measurements
                .iter()
                .filter(|m| m.name == name)
                .map(|m| (x(m) as f64, y(m)))
                .collect()
        };
    let plots = [
        line_plot(
            "throughput vs clients (1 replica)",
            &series(
                "scaling: creates vs clients",
                |m| m.clients,
                |m| m.per_second,
            ),
            "clients",
            "creates/s",
        ),
        line_plot(
            "p99 vs clients (1 replica)",
            &series(
                "scaling: creates vs clients",
                |m| m.clients,
                |m| m.latency_ms.p99,
            ),
            "clients",
            "p99 ms",
        ),
        line_plot(
            "throughput vs replicas",
            &series(
                "scaling: creates vs replicas",
                |m| m.replicas,
                |m| m.per_second,
            ),
            "replicas",
            "creates/s",
        ),
        line_plot(
            "p99 vs replicas",
            &series(
                "scaling: creates vs replicas",
                |m| m.replicas,
                |m| m.latency_ms.p99,
            ),
            "replicas",
            "p99 ms",
        ),
    ];
    let body = from_markdown(&markdown(r));
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>booking load report</title><style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:1.5rem auto;color:#222}}table{{border-collapse:collapse;font-size:.85rem}}td{{border:1px solid #ddd;padding:.2rem .5rem}}figure{{display:inline-block;margin:.5rem}}</style></head><body>{body}<h2>Scaling</h2>{}</body></html>"#,
        plots.join("")
    )
}

/// Writes `bench.md`, `bench.json` and `bench.html` into `dir`.
pub fn write_reports(r: &BenchReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("bench.md"), markdown(r))?;
    std::fs::write(dir.join("bench.json"), serde_json::to_vec_pretty(r)?)?;
    std::fs::write(dir.join("bench.html"), html(r))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn tool_outputs_parse() {
        assert_eq!(
            parse_after(
                "latency average = 1.2 ms\ntps = 1834.512 (without initial connection time)",
                "tps = "
            ),
            Some(1834.512)
        );
        assert_eq!(
            parse_after("SET: 91743.12 requests per second, p50=0.2 msec", ": "),
            Some(91743.12)
        );
        assert_eq!(parse_after("nothing here", "tps = "), None);
    }

    #[test]
    fn distinct_creates_never_share_a_slot_or_key() {
        let mut slots = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for w in 0..32 {
            for i in 0..500 {
                let Request::Post { body, key } = distinct_create(3, w, i) else {
                    panic!("a create")
                };
                assert!(slots.insert((body["resourceId"].to_string(), body["date"].to_string())));
                assert!(keys.insert(key));
            }
        }
    }

    #[test]
    fn a_missed_target_says_by_how_much() {
        let t = ratio_target("x", 400.0, 1000.0, 0.8);
        assert!(!t.met);
        assert_eq!(t.gap.as_deref(), Some("50% short"));
        assert!(ratio_target("x", 900.0, 1000.0, 0.8).met);
    }
}
