//! `booking serve`: parse flags, start the service, stop on SIGINT/SIGTERM.
//! `booking probe`: the container health check.

use std::process::ExitCode;

use booking::cli::{Cli, Command};
use clap::Parser;

/// mimalloc rather than glibc's allocator: a request allocates and frees
/// many small buffers across threads, which glibc served slowly (see
/// docs/PERFORMANCE-HISTORY.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => booking::cli::serve(args).await,
        Command::Probe { url } => {
            let url = url.unwrap_or_else(|| {
                booking::cli::probe_url(std::env::var("LISTEN_ADDR").ok().as_deref())
            });
            booking::cli::probe(&url).await
        }
    }
}
