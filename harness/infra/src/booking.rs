//! Replicas of the `booking` binary as child processes, so they can be
//! killed, paused and restarted like a real deployment.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::process::{free_port, log_tail, ManagedChild};

/// How to start one replica.
#[derive(Debug, Clone)]
pub struct BookingProcessConfig {
    /// The `booking` binary (in tests: `env!("CARGO_BIN_EXE_booking")`).
    pub binary: PathBuf,
    pub database_url: String,
    /// `None` runs the in-process coordinator.
    pub redis_url: Option<String>,
    /// Extra environment, e.g. `FAILPOINTS` or `IDEMPOTENCY_LEASE_MS`.
    pub env: Vec<(String, String)>,
}

pub struct BookingProcess {
    config: BookingProcessConfig,
    child: Option<ManagedChild>,
    port: u16,
    dir: TempDir,
}

impl BookingProcess {
    pub async fn start(config: BookingProcessConfig) -> Result<Self> {
        let mut replica = Self {
            config,
            child: None,
            port: free_port()?,
            dir: tempfile::Builder::new().prefix("booking-app-").tempdir()?,
        };
        replica.spawn().await?;
        Ok(replica)
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.config.binary);
        cmd.arg("serve")
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .env("DATABASE_URL", &self.config.database_url)
            .env_remove("REDIS_URL")
            .env_remove("FAILPOINTS")
            // Every virtual client of a run shares 127.0.0.1: one address's
            // rate limit would throttle the whole workload. A scenario's
            // service env can set one.
            .env("RATE_LIMIT_PER_SECOND", "0")
            .env(
                "RUST_LOG",
                std::env::var("BOOKING_LOG").unwrap_or_else(|_| "info".into()),
            );
        if let Some(url) = &self.config.redis_url {
            cmd.env("REDIS_URL", url);
        }
        for (k, v) in &self.config.env {
            cmd.env(k, v);
        }
        let log = self.log_path();
        self.child = Some(ManagedChild::spawn("booking", &mut cmd, &log)?);
        let url = format!("{}/health", self.url());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if !self.child.as_mut().is_some_and(ManagedChild::is_running) {
                bail!(
                    "booking exited during start-up\n--- booking log ---\n{}",
                    log_tail(&log, 30)
                );
            }
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "booking not ready after 30s\n--- booking log ---\n{}",
                    log_tail(&log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("booking.log")
    }

    /// The replica's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ManagedChild::pid)
    }

    /// Waits for the replica to exit by itself (e.g. at a `crash` failpoint).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.as_mut()?.wait_for_exit(timeout)
    }

    /// Whether the replica's process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ManagedChild::is_running)
    }

    /// The extra environment it was started with.
    pub fn env(&self) -> &[(String, String)] {
        &self.config.env
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts the replica again on the same port, with `env` replacing the
    /// extra environment (e.g. without the failpoint that crashed it).
    pub async fn restart_with(&mut self, env: Vec<(String, String)>) -> Result<()> {
        self.kill();
        self.config.env = env;
        self.spawn().await
    }

    pub fn pause(&mut self) -> Result<()> {
        self.child
            .as_mut()
            .context("booking is not running")?
            .signal(Signal::SIGSTOP)
    }

    pub fn resume(&mut self) -> Result<()> {
        self.child
            .as_mut()
            .context("booking is not running")?
            .signal(Signal::SIGCONT)
    }
}

impl Drop for BookingProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(Signal::SIGTERM, Duration::from_secs(5));
        }
    }
}
