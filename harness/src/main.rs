//! `booking-harness`: run scenario files against a stack it starts itself,
//! re-check recorded histories, or serve a replica.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use booking_harness::checker::Validity;
use booking_harness::report;
use booking_harness::runner::{self, RunOptions};
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
    },
    /// Re-check a recorded history (JSON lines) offline.
    Check {
        history: PathBuf,
        /// Only these checkers (default: all).
        #[arg(long = "checker")]
        checkers: Vec<String>,
    },
    /// Serve the booking API (the same code as `booking serve`, with failpoints).
    #[command(hide = true)]
    Serve(booking::config::ServeArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => booking::cli::serve(args).await,
        Command::Run {
            paths,
            out,
            booking_bin,
        } => exit(run(paths, out, booking_bin).await),
        Command::Check { history, checkers } => exit(check(history, checkers)),
    }
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

async fn run(paths: Vec<PathBuf>, out: PathBuf, booking_bin: Option<PathBuf>) -> Result<bool> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let binary = ServiceBinary(match booking_bin {
        Some(p) => p,
        None => std::env::current_exe()?,
    });
    let mut scenarios = Vec::new();
    for p in &paths {
        scenarios.extend(Scenario::load_all(p)?);
    }
    let opts = RunOptions {
        out_dir: out.clone(),
        binary,
    };
    let mut runs = Vec::new();
    for scenario in &scenarios {
        let (result, history) = match runner::run(scenario, &opts).await {
            Ok(r) => r,
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
    Ok(results.iter().all(|r| r.validity != Validity::Invalid))
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
