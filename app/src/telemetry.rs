//! Logging: `tracing` with a span per request (carrying its request id) and
//! per protocol step. `RUST_LOG` filters; `--log-format json` for collectors.

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

const DEFAULT_FILTER: &str = "info,sqlx=warn,tower_http=info";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
///
/// `RUST_LOG` of targets and levels (`info,sqlx=warn`) becomes a `Targets`
/// filter, decided once per call site. Only directives on spans or fields
/// (`[span]=debug`) need `EnvFilter`, which also looks every span up in a
/// shared map on each enter and exit: several per request, at 6% of a
/// create's CPU in the profile.
pub fn init(format: LogFormat) {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
    let (targets, env_filter) = match spec.parse::<Targets>() {
        Ok(targets) => (Some(targets), None),
        Err(_) => (
            None,
            Some(EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))),
        ),
    };
    let registry = tracing_subscriber::registry()
        .with(targets)
        .with(env_filter);
    let _ = match format {
        // Colour only on a terminal: a file or a collector would get escape
        // codes, and the fmt layer styles every span's fields as it opens
        // (a request's span: about 3% of a replay's CPU in the profile).
        LogFormat::Text => registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true))
            .try_init(),
    };
}
