//! `booking serve`: parse flags, start the service, stop on SIGINT/SIGTERM.

use std::process::ExitCode;

use booking::cli::{Cli, Command};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    booking::cli::serve(args).await
}
