//! The booking service: books a resource for a date exactly once per
//! idempotency key, under retries, races and failures of its dependencies.
//!
//! How a request flows through the modules:
//!
//! ```text
//! routes::*          HTTP: extract (extract), validate into domain types (domain)
//!   └ booking::create  the protocol, one function per step (see its docs)
//!       ├ booking::key   step 2: key scoped to the user + payload fingerprint
//!       ├ coordinator    steps 3, 4, 6, 7: claim/complete/release, lock/unlock
//!       │                (Redis, or in-process for the embedded default)
//!       └ store          step 5: one transaction (PostgreSQL or SQLite)
//! error              one ApiError enum, mapped once to problem+json
//! deps               deadline + latency for every dependency call
//! failpoints         named failpoints at protocol steps (feature `failpoints`)
//! seeded             the seeded-bug catalogue that proves the harness (feature `failpoints`)
//! metrics, telemetry Prometheus text, tracing
//! config, startup    settings from flags/env; wiring and serving
//! ```

/// `true` when the seeded bug `$bug` (a [`seeded::Bug`] variant) is switched
/// on; always `false`, and compiled away, without the `failpoints` feature.
macro_rules! seeded_bug {
    ($bug:ident) => {{
        #[cfg(feature = "failpoints")]
        let on = $crate::seeded::on($crate::seeded::Bug::$bug);
        #[cfg(not(feature = "failpoints"))]
        let on = false;
        on
    }};
}

pub mod auth;
pub mod booking;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod deps;
pub mod domain;
pub mod error;
pub mod extract;
pub mod failpoints;
pub mod limits;
pub mod metrics;
pub mod response;
pub mod routes;
#[cfg(feature = "failpoints")]
pub mod seeded;
pub mod serve;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;

pub use config::Settings;
pub use startup::{Application, StartupError};
