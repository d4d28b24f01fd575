//! The `booking` command line, shared by the `booking` binary and by the
//! chaos harness (which runs replicas of exactly this code).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;
use crate::startup::{shutdown_signal, Application};

#[derive(Parser)]
#[command(
    name = "booking",
    version,
    about = "Idempotent, crash-safe booking service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the booking API (SQLite file + in-process coordinator unless configured).
    Serve(ServeArgs),
}

/// Runs `booking serve` with `args` until SIGINT/SIGTERM.
pub async fn serve(args: ServeArgs) -> ExitCode {
    crate::telemetry::init(args.log_format);
    let settings = match args.into_settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("booking: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("booking: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", app.describe());
    tracing::info!("{}", app.describe());
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("booking: server error: {e}");
            ExitCode::FAILURE
        }
    }
}
