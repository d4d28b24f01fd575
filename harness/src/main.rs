//! `booking-harness`: run scenario files against a stack it starts itself,
//! re-check recorded histories, or serve a replica.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use booking_harness::checker::Validity;
use booking_harness::explore::{explore, ExploreConfig};
use booking_harness::report;
use booking_harness::runner::{self, RunOptions};
use booking_harness::scenario::Mode;
use booking_harness::scenario::Scenario;
use booking_harness::stack::ServiceBinary;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "booking-harness",
    version,
    about = "Chaos harness for the booking service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files (a folder runs every *.toml in it).
    Run {
        /// Scenario files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Where histories, results.json and report.html go.
        #[arg(long, default_value = "harness-results")]
        out: PathBuf,
        /// The service binary to run as replicas (default: this binary's own `serve`).
        #[arg(long, env = "BOOKING_BIN")]
        booking_bin: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Search for violations: proptest generates workloads and fault
    /// schedules against one long-lived stack, shrinks any failure and writes
    /// it as a scenario file.
    Explore(ExploreArgs),
    /// Load runs against a local stack (Redis, PostgreSQL, replicas) beside
    /// pgbench, redis-benchmark and /health; writes bench.md/.json/.html and
    /// fails if an invariant breaks under load. Build with --release.
    Bench(BenchArgs),
    /// The kill matrix: run scenarios against the correct service and against
    /// every seeded bug of the service's catalogue; print which checker caught
    /// which bug, write mutants.md/.json, and fail when a bug survives every
    /// scenario or a scenario does not catch a bug it declares.
    Mutants {
        /// Scenario files or folders.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Only this seeded bug (repeatable; default: the whole catalogue).
        #[arg(long = "bug")]
        bugs: Vec<String>,
        /// Only the (scenario, bug) pairs that scenario files declare in `catches`.
        #[arg(long)]
        declared: bool,
        #[arg(long, default_value = "harness-results/mutants")]
        out: PathBuf,
        #[arg(long, env = "BOOKING_BIN")]
        booking_bin: Option<PathBuf>,
    },
    /// Re-check a recorded history (JSON lines) offline.
    Check {
        history: PathBuf,
        /// Only these checkers (default: all).
        #[arg(long = "checker")]
        checkers: Vec<String>,
    },
    /// Write a scenario for another fault engine (see docs/DEPLOY.md).
    Export {
        #[command(subcommand)]
        format: ExportFormat,
    },
    /// List the users a target run of these scenarios acts as, one a line:
    /// the users a --tokens-file must hold a token for.
    Users {
        /// Scenario files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The namespace the run will be pinned to (`run --namespace`).
        #[arg(long)]
        namespace: String,
    },
    /// Serve the booking API (the same code as `booking serve`, with failpoints).
    #[command(hide = true)]
    Serve(booking::config::ServeArgs),
}

#[derive(Subcommand)]
enum ExportFormat {
    /// Chaos Mesh resources (a Workflow of the faults) and a Kubernetes Job
    /// that runs the workload in target mode against the cluster's Service.
    ChaosMesh {
        /// The scenario file.
        scenario: PathBuf,
        /// Write workflow.yaml, job.yaml and README.md here (default: print
        /// every document to stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The namespace of the deployment (k8s/overlays use `booking`).
        #[arg(long, default_value = "booking")]
        namespace: String,
        /// The image with booking-harness (the project's image).
        #[arg(long, default_value = "booking:latest")]
        image: String,
        /// The service as the Job reaches it (default: the Service `booking` in the namespace).
        #[arg(long)]
        service_url: Option<String>,
        /// SECRET/KEY holding a read-only DATABASE_URL for the store
        /// checkers, or `none`.
        #[arg(long, default_value = "booking-secrets/DATABASE_URL")]
        database_secret: String,
    },
}

/// Pointing scenarios at a deployment the harness did not start.
#[derive(clap::Args)]
struct TargetArgs {
    /// Run every scenario against this deployment (repeatable: replicas or
    /// load balancers; http or https; a base path is kept). Overrides the
    /// files' [target] url and turns them into target mode.
    #[arg(long = "target-url", value_name = "URL")]
    target_urls: Vec<String>,
    /// A header for every request, as 'Name: value' (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    headers: Vec<String>,
    /// Per-user bearer tokens from a command, for a deployment that
    /// authenticates users (--auth jwt): run with `sh -c` once per user the
    /// run acts as, the user id as its last argument and in BOOKING_USER; it
    /// prints the token, or JSON with access_token or token. Run again
    /// before a JWT expires. Overrides the files' token_command/tokens_file.
    #[arg(long, value_name = "CMD", conflicts_with = "tokens_file")]
    token_command: Option<String>,
    /// Per-user bearer tokens from a file: a JSON (.json) or TOML (.toml)
    /// table of user id → token, with a token for every user of the run
    /// (`booking-harness users`; needs --namespace).
    #[arg(long, value_name = "PATH")]
    tokens_file: Option<PathBuf>,
    /// Allow load to hosts other than this machine (loopback only without it).
    #[arg(long)]
    allow_remote: bool,
    /// The target's API conventions: booking, node or a profile file (.toml).
    #[arg(long, value_name = "PROFILE")]
    api_profile: Option<String>,
    /// Read-only connection to the target's store (postgres://… or
    /// sqlite:…), so the store checkers can decide.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Run in this namespace (users, keys, dates) instead of a new one.
    #[arg(long)]
    namespace: Option<String>,
    /// Fail (exit 1) when a scenario is UNKNOWN or SKIPPED, not only when it fails.
    #[arg(long)]
    strict: bool,
    /// The scenario's faults are injected by something else (Chaos Mesh,
    /// an operator): run its workload and checkers, inject none.
    #[arg(long)]
    faults_outside: bool,
}

impl TargetArgs {
    fn spec(&self) -> Result<Option<booking_harness::target::TargetSpec>> {
        let given = !self.target_urls.is_empty()
            || self.faults_outside
            || !self.headers.is_empty()
            || self.token_command.is_some()
            || self.tokens_file.is_some()
            || self.allow_remote
            || self.api_profile.is_some()
            || self.database_url.is_some();
        if !given {
            return Ok(None);
        }
        let headers = self
            .headers
            .iter()
            .map(|h| booking_harness::target::parse_header(h))
            .collect::<Result<_>>()?;
        Ok(Some(booking_harness::target::TargetSpec {
            url: self.target_urls.clone(),
            headers,
            allow_remote: self.allow_remote,
            api_profile: self.api_profile.clone(),
            database_url: self.database_url.clone(),
            token_command: self.token_command.clone(),
            tokens_file: self.tokens_file.clone(),
        }))
    }
}

/// `booking-harness explore`.
#[derive(clap::Args)]
struct ExploreArgs {
    /// Most cases to generate (shrinking runs come on top).
    #[arg(long, default_value_t = 100)]
    cases: u32,
    /// Stop generating cases after this many minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// local (Redis + PostgreSQL + replicas) or embedded.
    #[arg(long, default_value = "local")]
    mode: String,
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Where failing cases (scenario files) and histories go.
    #[arg(long, default_value = "harness-results/explore")]
    out: PathBuf,
    /// proptest's regression file (failing seeds, replayed first next time).
    #[arg(
        long,
        default_value = "harness-results/explore/proptest-regressions.txt"
    )]
    regressions: PathBuf,
    /// Fix proptest's random seed to repeat an exploration.
    #[arg(long)]
    seed: Option<u64>,
    /// Most shrinking steps after a failure.
    #[arg(long, default_value_t = 64)]
    max_shrink_iters: u32,
    /// While shrinking, extra runs of a passing candidate before it counts as passing.
    #[arg(long, default_value_t = 2)]
    shrink_retries: u32,
    /// Runs of a shrunk failing case on a fresh stack before it is reported
    /// (a finding that never reproduces is labelled flaky).
    #[arg(long, default_value_t = 3)]
    confirm_runs: u32,
    /// Extra environment for the replicas, as KEY=VALUE (repeatable);
    /// e.g. BOOKING_SEEDED_BUG=no-unique-index to see whether the search finds it.
    #[arg(long = "service-env")]
    service_env: Vec<String>,
    #[arg(long, env = "BOOKING_BIN")]
    booking_bin: Option<PathBuf>,
}

/// `booking-harness bench`.
#[derive(clap::Args)]
struct BenchArgs {
    /// Seconds per measured load.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrency of the main comparisons.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Runs of each main comparison (/health, creates, replays in turn,
    /// and pgbench's booking transaction), reported as their medians.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Client counts of the scaling curve.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64,128")]
    client_steps: Vec<usize>,
    /// Replica counts of the scaling curve.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    replica_steps: Vec<usize>,
    /// Rounds of 100 clients racing for one slot (after a first round
    /// that also opens their connections, reported on its own).
    #[arg(long, default_value_t = 20)]
    race_rounds: usize,
    /// Live idempotency keys (seeded into PostgreSQL and Redis) of the
    /// cost-against-live-keys curve; empty (`--live-key-steps ""`): no curve.
    // `std::vec::Vec` keeps clap from splitting the value itself, so that
    // the empty list parses.
    #[arg(long, value_parser = parse_key_steps, default_value = "10000,100000,1000000")]
    live_key_steps: std::vec::Vec<u64>,
    #[arg(long, default_value = "harness-results/bench")]
    out: PathBuf,
    #[arg(long, env = "BOOKING_BIN")]
    booking_bin: Option<PathBuf>,
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("booking-harness: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let command = Cli::parse().command;
    if !matches!(command, Command::Serve(_)) {
        // Nothing the harness started may outlive it: on Ctrl-C or SIGTERM,
        // kill every child's process group (Drop does not run on a signal).
        rt.spawn(async {
            interrupted().await;
            eprintln!("booking-harness: interrupted; stopping every process it started");
            booking_harness::infra::kill_all_children();
            std::process::exit(130);
        });
    }
    match command {
        Command::Serve(args) => rt.block_on(booking::cli::serve(args)),
        Command::Run {
            paths,
            out,
            booking_bin,
            target,
        } => exit(rt.block_on(run(paths, out, booking_bin, target))),
        Command::Check { history, checkers } => exit(check(history, checkers)),
        Command::Users { paths, namespace } => exit(users(paths, &namespace)),
        Command::Export { format } => exit(export(format)),
        Command::Mutants {
            paths,
            bugs,
            declared,
            out,
            booking_bin,
        } => exit(rt.block_on(mutants(paths, bugs, declared, out, booking_bin))),
        Command::Bench(args) => exit(bench(&rt, args)),
        Command::Explore(args) => exit(explore_command(&rt, args)),
    }
}

/// Load runs; `Ok(false)` when an invariant broke under load.
fn bench(rt: &tokio::runtime::Runtime, args: BenchArgs) -> Result<bool> {
    let BenchArgs {
        seconds,
        clients,
        repeat,
        client_steps,
        replica_steps,
        race_rounds,
        live_key_steps,
        out,
        booking_bin,
    } = args;
    init_logs();
    if cfg!(debug_assertions) {
        eprintln!("booking-harness: this is a debug build; run `cargo run --release -p booking-harness -- bench` for real figures");
    }
    let config = booking_harness::bench::BenchConfig {
        duration: std::time::Duration::from_secs_f64(seconds.max(0.2)),
        clients,
        repeat,
        client_steps,
        replica_steps,
        race_rounds,
        live_key_steps,
        out_dir: out.clone(),
        binary: service_binary(booking_bin)?,
    };
    let report = rt.block_on(booking_harness::bench::run(&config))?;
    booking_harness::bench::write_reports(&report, &out)?;
    print!("{}", booking_harness::bench::markdown(&report));
    println!("\nreports: {}/bench.{{md,json,html}}", out.display());
    Ok(report.violations.is_empty())
}

/// The property-based search; `Ok(false)` when it found a violation.
fn explore_command(rt: &tokio::runtime::Runtime, args: ExploreArgs) -> Result<bool> {
    let ExploreArgs {
        cases,
        minutes,
        mode,
        replicas,
        out,
        regressions,
        seed,
        max_shrink_iters,
        shrink_retries,
        confirm_runs,
        service_env,
        booking_bin,
    } = args;
    init_logs();
    let mode = match mode.as_str() {
        "local" => Mode::Local,
        "embedded" => Mode::Embedded,
        other => anyhow::bail!("--mode must be local or embedded, not {other:?}"),
    };
    let service_env = service_env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("--service-env wants KEY=VALUE, not {kv:?}"))
        })
        .collect::<Result<_>>()?;
    let config = ExploreConfig {
        mode,
        replicas: if mode == Mode::Local { replicas } else { 1 },
        cases,
        time_limit: std::time::Duration::from_secs_f64(minutes.max(0.0) * 60.0),
        max_shrink_iters,
        shrink_retries,
        out_dir: out,
        regressions: Some(regressions),
        service_env,
        seed,
        confirm_runs,
        binary: service_binary(booking_bin)?,
    };
    let report = explore(rt, &config)?;
    print!("{}", report.summary());
    Ok(report.finding.is_none())
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

fn service_binary(path: Option<PathBuf>) -> Result<ServiceBinary> {
    Ok(ServiceBinary(match path {
        Some(p) => p,
        None => std::env::current_exe()?,
    }))
}

fn exit(result: Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("booking-harness: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(
    paths: Vec<PathBuf>,
    out: PathBuf,
    booking_bin: Option<PathBuf>,
    target: TargetArgs,
) -> Result<bool> {
    init_logs();
    let binary = service_binary(booking_bin)?;
    let mut scenarios = Vec::new();
    for p in &paths {
        scenarios.extend(Scenario::load_all(p)?);
    }
    if let Some(spec) = target.spec()? {
        // Every scenario against the deployment; one that needs a stack of
        // its own (a process or server fault) is refused, not half-run.
        scenarios = scenarios
            .into_iter()
            .map(|mut s| {
                if target.faults_outside {
                    s.faults.clear();
                }
                s.aimed_at(&spec)
            })
            .collect::<Result<_>>()?;
    } else if target.namespace.is_some() && scenarios.iter().all(|s| s.mode != Mode::Target) {
        anyhow::bail!("--namespace applies to target mode only");
    }
    let mut opts = RunOptions::new(out.clone(), binary);
    opts.namespace = target.namespace.clone();
    let mut runs = Vec::new();
    for scenario in &scenarios {
        let (result, history) = match runner::run(scenario, &opts).await {
            Ok(r) => r,
            Err(e) if e.downcast_ref::<runner::TargetUnusable>().is_some() => {
                // Nothing else would mean anything either.
                return Err(e.context(format!(
                    "scenario {}: the target cannot be tested",
                    scenario.name
                )));
            }
            Err(e) => {
                eprintln!("scenario {} could not run: {e:#}", scenario.name);
                let mut r = runner::ScenarioResult::skipped(scenario, format!("error: {e:#}"));
                r.validity = Validity::Invalid;
                (r, Default::default())
            }
        };
        print!("{}", report::console(&result));
        runs.push((result, history));
    }
    std::fs::create_dir_all(&out)?;
    let results: Vec<_> = runs.iter().map(|(r, _)| r.clone()).collect();
    report::write_json(&results, &out.join("results.json"))?;
    report::write_html(&runs, &out.join("report.html"))?;
    println!("{}", report::tally(&results));
    println!("report: {}", out.join("report.html").display());
    let failed =
        |r: &runner::ScenarioResult| r.validity == Validity::Invalid || !r.errors.is_empty();
    let undecided =
        |r: &runner::ScenarioResult| r.skipped.is_some() || r.validity == Validity::Unknown;
    if target.strict && results.iter().any(undecided) {
        println!("--strict: an UNKNOWN or SKIPPED scenario fails the run");
    }
    Ok(results
        .iter()
        .all(|r| !(failed(r) || target.strict && undecided(r))))
}

fn export(format: ExportFormat) -> Result<bool> {
    let ExportFormat::ChaosMesh {
        scenario,
        out,
        namespace,
        image,
        service_url,
        database_secret,
    } = format;
    use booking_harness::chaos_mesh;
    let text = std::fs::read_to_string(&scenario)
        .with_context(|| format!("cannot read {}", scenario.display()))?;
    let parsed = Scenario::load(&scenario)?;
    let database_secret = match database_secret.as_str() {
        "none" | "" => None,
        spec => {
            let (secret, key) = spec
                .split_once('/')
                .context("--database-secret is SECRET/KEY or none")?;
            Some((secret.to_owned(), key.to_owned()))
        }
    };
    let opts = chaos_mesh::ExportOptions {
        service_url: service_url
            .unwrap_or_else(|| format!("http://booking.{namespace}.svc.cluster.local")),
        namespace,
        image,
        database_secret,
    };
    let export = chaos_mesh::export(&parsed, &text, &opts);
    let yaml = |docs: &[serde_json::Value]| -> Result<String> {
        let mut out = String::new();
        for doc in docs {
            out.push_str("---\n");
            out.push_str(&serde_yaml_ng::to_string(doc)?);
        }
        Ok(out)
    };
    let summary = chaos_mesh::summary(&parsed, &export);
    let workflow: Vec<_> = export.workflow.iter().cloned().collect();
    match out {
        None => {
            print!("{}{}", yaml(&workflow)?, yaml(&export.job)?);
            eprint!("{summary}");
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            if !workflow.is_empty() {
                std::fs::write(dir.join("workflow.yaml"), yaml(&workflow)?)?;
            }
            std::fs::write(dir.join("job.yaml"), yaml(&export.job)?)?;
            std::fs::write(dir.join("README.md"), &summary)?;
            print!("{summary}");
            println!("\nwritten to {}", dir.display());
        }
    }
    Ok(true)
}

async fn mutants(
    paths: Vec<PathBuf>,
    bugs: Vec<String>,
    declared_only: bool,
    out: PathBuf,
    booking_bin: Option<PathBuf>,
) -> Result<bool> {
    init_logs();
    let mut scenarios = Vec::new();
    for p in &paths {
        scenarios.extend(Scenario::load_all(p)?);
    }
    let opts = RunOptions::new(out.join("runs"), service_binary(booking_bin)?);
    let options = booking_harness::mutants::MatrixOptions {
        bugs,
        declared_only,
    };
    let matrix = booking_harness::mutants::run_matrix(&scenarios, &opts, &options).await?;
    let declared = scenarios
        .iter()
        .map(|s| (s.name.clone(), s.catches.clone()))
        .collect();
    let markdown = matrix.markdown(&declared);
    println!("{markdown}");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("mutants.md"), &markdown)?;
    std::fs::write(
        out.join("mutants.json"),
        serde_json::to_vec_pretty(&matrix)?,
    )?;
    let survivors = matrix.survivors();
    if !survivors.is_empty() {
        println!(
            "SURVIVED (no scenario catches them): {}",
            survivors.join(", ")
        );
    }
    println!("matrix: {}", out.join("mutants.md").display());
    Ok(matrix.passed())
}

/// `booking-harness users`: every user a target run of the scenarios acts
/// as in `namespace`, sorted, each once.
fn users(paths: Vec<PathBuf>, namespace: &str) -> Result<bool> {
    let prefix = booking_harness::target::Namespace::pinned(namespace)?.prefix();
    let mut all = std::collections::BTreeSet::new();
    for p in &paths {
        for s in Scenario::load_all(p)? {
            let mut w = s.workload;
            w.namespace = prefix.clone();
            all.extend(booking_harness::identity::users_of(&w));
        }
    }
    for user in all {
        println!("{user}");
    }
    Ok(true)
}

fn check(path: PathBuf, checkers: Vec<String>) -> Result<bool> {
    let (history, verdict) = runner::check_file(&path, &checkers)?;
    println!(
        "{} operations, {} faults",
        history.ops.len(),
        history.faults.len()
    );
    for c in &verdict.results {
        println!("{:?} {}", c.validity, c.checker);
        for v in &c.violations {
            println!("  - {} [ops {:?}] [rows {:?}]", v.message, v.ops, v.rows);
        }
    }
    Ok(verdict.validity != Validity::Invalid)
}

/// `--live-key-steps`: comma-separated counts, or nothing at all.
fn parse_key_steps(value: &str) -> Result<Vec<u64>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|step| !step.is_empty())
        .map(|step| {
            step.parse()
                .map_err(|e| format!("{step:?} is not a number of keys: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_key_steps_parse_a_list_or_nothing() {
        let steps = |args: &[&str]| {
            let mut argv = vec!["booking-harness", "bench"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv).map(|cli| cli.command) {
                Ok(Command::Bench(args)) => Ok(args.live_key_steps),
                Ok(_) => panic!("not the bench command"),
                Err(e) => Err(e.kind()),
            }
        };
        assert_eq!(steps(&[]), Ok(vec![10_000, 100_000, 1_000_000]));
        assert_eq!(steps(&["--live-key-steps", "5,7"]), Ok(vec![5, 7]));
        assert_eq!(steps(&["--live-key-steps", ""]), Ok(vec![]));
        assert!(steps(&["--live-key-steps", "5,x"]).is_err());
    }
}
