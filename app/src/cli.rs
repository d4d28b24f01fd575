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

// Parsed once at start-up: the size of the serve variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Serve the booking API (SQLite file + in-process coordinator unless configured).
    Serve(ServeArgs),
    /// Exit 0 if GET URL answers 2xx within 2 s (a container health check
    /// without curl in the image). Default: `/health` on the loopback
    /// address of LISTEN_ADDR's port.
    Probe { url: Option<String> },
}

/// `/health` of a service listening on `listen` (`0.0.0.0:3000` → `127.0.0.1:3000`).
pub fn probe_url(listen: Option<&str>) -> String {
    let port = listen
        .and_then(|l| l.parse::<std::net::SocketAddr>().ok())
        .map_or(3000, |a| a.port());
    format!("http://127.0.0.1:{port}/health")
}

/// Runs `booking probe URL`.
pub async fn probe(url: &str) -> ExitCode {
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("booking probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("booking probe: {url} answered {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("booking probe: {url}: {e}");
            ExitCode::FAILURE
        }
    }
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

#[cfg(test)]
mod tests {
    use super::probe_url;

    #[test]
    fn the_probe_asks_loopback_at_the_listening_port() {
        assert_eq!(
            probe_url(Some("0.0.0.0:3000")),
            "http://127.0.0.1:3000/health"
        );
        assert_eq!(
            probe_url(Some("127.0.0.1:43551")),
            "http://127.0.0.1:43551/health"
        );
        assert_eq!(probe_url(Some("[::]:8080")), "http://127.0.0.1:8080/health");
        assert_eq!(probe_url(None), "http://127.0.0.1:3000/health");
    }
}
