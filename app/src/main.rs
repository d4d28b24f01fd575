//! `booking serve`: parse flags, start the service, stop on SIGINT/SIGTERM.

use std::process::ExitCode;

use booking::config::ServeArgs;
use booking::startup::{shutdown_signal, Application};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "booking",
    version,
    about = "Idempotent, crash-safe booking service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the booking API (SQLite file + in-process coordinator unless configured).
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    booking::telemetry::init(args.log_format);
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
