//! Process management for tests and the chaos harness.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use booking_harness::infra::{PostgresServer, RedisServer};
//! let redis = RedisServer::start().await?;
//! let pg = PostgresServer::start().await?;
//! let db_url = pg.create_database("booking").await?;
//! println!("{} {}", redis.url(), db_url);
//! # Ok(()) }
//! ```
//! Dropping a handle kills its process group and removes its data directory.

mod booking;
mod postgres;
mod process;
mod redis;

pub use booking::{BookingProcess, BookingProcessConfig};
pub use postgres::PostgresServer;
pub use process::{free_port, kill_all_children, wait_until, ManagedChild};
pub use redis::RedisServer;

/// PostgreSQL's binary directory (`PG_BIN`, `PATH`, or `/usr/lib/postgresql/*/bin`).
pub fn postgres_bin_dir() -> anyhow::Result<std::path::PathBuf> {
    postgres::find_bin_dir()
}

/// Whether `redis-server` and PostgreSQL's server binaries are installed.
pub fn local_servers_available() -> bool {
    redis::binary_available() && postgres::binaries_available()
}
