//! Private servers for tests, the chaos harness and the bench: the one way
//! this project starts Redis, PostgreSQL and `booking` replicas.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use booking_infra::{PostgresServer, RedisServer};
//! let redis = RedisServer::start().await?;
//! let pg = PostgresServer::start().await?;
//! let db_url = pg.create_database("booking").await?;
//! println!("{} {}", redis.url(), db_url);
//! # Ok(()) }
//! ```
//! Dropping a handle kills its process group and removes its data directory
//! (or removes its container). [`provider`] says which kind runs.
//!
//! [`OidcProvider`] is a real OpenID Connect provider (on Node.js) that
//! issues JWT access tokens for the service's `--auth jwt`.

mod booking;
pub mod containers;
mod oidc;
mod postgres;
mod process;
mod redis;

pub use booking::{BookingProcess, BookingProcessConfig};
pub use oidc::{NoNode, OidcOptions, OidcProvider};
pub use postgres::PostgresServer;
pub use process::{free_port, kill_all_children, wait_until, ManagedChild, ProcessGroup};
pub use redis::RedisServer;

/// PostgreSQL's binary directory (`PG_BIN`, `PATH`, or `/usr/lib/postgresql/*/bin`).
pub fn postgres_bin_dir() -> anyhow::Result<std::path::PathBuf> {
    postgres::find_bin_dir()
}

/// How Redis and PostgreSQL are run: `BOOKING_INFRA=process|containers|auto`
/// (default `auto`), or a scenario file's `infra`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// `redis-server` and `postgres` as local child processes.
    Process,
    /// Containers from images (testcontainers; see `containers`).
    Containers,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Process => "process",
            Provider::Containers => "containers",
        }
    }
}

/// The provider `BOOKING_INFRA` asks for; `auto` (the default) takes local
/// binaries when they are installed, else Docker when a daemon answers,
/// else says why neither can run.
pub fn provider() -> anyhow::Result<Provider> {
    let asked = std::env::var("BOOKING_INFRA").unwrap_or_default();
    match asked.trim() {
        "process" => Ok(Provider::Process),
        "containers" => Ok(Provider::Containers),
        "" | "auto" => {
            if local_servers_available() {
                Ok(Provider::Process)
            } else if containers::docker_reachable() {
                Ok(Provider::Containers)
            } else {
                Err(anyhow::Error::new(NoProvider))
            }
        }
        other => anyhow::bail!("BOOKING_INFRA={other:?}: use process, containers or auto"),
    }
}

/// Neither local servers nor Docker: what a test reports as SKIPPED.
#[derive(Debug, thiserror::Error)]
#[error(
    "no way to run Redis and PostgreSQL here: install redis-server and postgresql \
     (BOOKING_INFRA=process), or run Docker (BOOKING_INFRA=containers); see docs/TESTING.md"
)]
pub struct NoProvider;

/// Whether `redis-server` and PostgreSQL's server binaries are installed.
pub fn local_servers_available() -> bool {
    redis::binary_available() && postgres::binaries_available()
}
