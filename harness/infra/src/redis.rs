//! A private `redis-server` on a free loopback port, persisting nothing:
//! a local process, or a container (see [`super::Provider`]).

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::containers::{ContainerServer, Server};
use super::process::{free_port, wait_until, ManagedChild};
use super::Provider;

pub struct RedisServer {
    child: Option<ManagedChild>,
    container: Option<ContainerServer>,
    provider: Provider,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts one with the provider `BOOKING_INFRA` chooses.
    pub async fn start() -> Result<Self> {
        Self::start_with(super::provider()?).await
    }

    pub async fn start_with(provider: Provider) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("booking-redis-")
            .tempdir()?;
        let mut server = Self {
            child: None,
            container: None,
            provider,
            port: free_port()?,
            dir,
        };
        server.spawn().await?;
        Ok(server)
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    async fn spawn(&mut self) -> Result<()> {
        if self.provider == Provider::Containers {
            match &self.container {
                Some(c) => c.start_again().await?,
                None => {
                    self.container = Some(ContainerServer::start(Server::Redis, self.port).await?)
                }
            }
            // A container also starts the image first.
            return self.wait_ready(Duration::from_secs(30)).await;
        }
        let mut cmd =
            Command::new(std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()));
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path());
        let log = self.dir.path().join("redis.log");
        let child = ManagedChild::spawn("redis-server", &mut cmd, &log)
            .context("is redis-server installed? (apt-get install redis-server)")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(15)).await
    }

    /// Until the server answers PING; its log's tail if it does not.
    async fn wait_ready(&self, within: Duration) -> Result<()> {
        let url = self.url();
        let ready = wait_until("redis-server", within, || {
            let url = url.clone();
            async move { ping(&url).await.map(|()| true) }
        })
        .await;
        if let Err(e) = ready {
            bail!("{e:#}\n--- redis log ---\n{}", self.log_tail(20).await);
        }
        Ok(())
    }

    /// The last `lines` of the server's output (a container's or a process's).
    pub async fn log_tail(&self, lines: usize) -> String {
        match (&self.container, &self.child) {
            (Some(c), _) => c.log_tail(lines).await,
            (None, Some(c)) => c.log_tail(lines),
            (None, None) => String::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server process's pid (`None` in a container).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ManagedChild::pid)
    }

    /// Deletes every key of this private server (never a shared one: the
    /// URL is always our own port).
    pub async fn flush_all(&self) -> Result<()> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Kills the server (losing all its data) and starts a new one on the same port.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await;
        self.spawn().await
    }

    /// Whether the server is alive.
    pub async fn is_running(&mut self) -> bool {
        match &self.container {
            Some(c) => c.is_running().await,
            None => self.child.as_mut().is_some_and(|c| c.is_running()),
        }
    }

    /// SIGKILL (a container: stopped at once); the port stays reserved for
    /// [`Self::restart`].
    pub async fn kill(&mut self) {
        if let Some(c) = &self.container {
            if let Err(e) = c.kill().await {
                tracing::warn!(error = %e, "could not stop the redis container");
            }
        }
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// SIGSTOP (a container: frozen): the server keeps its connections but
    /// answers nothing.
    pub async fn pause(&mut self) -> Result<()> {
        if let Some(c) = &self.container {
            return c.pause().await;
        }
        self.child
            .as_mut()
            .context("redis is not running")?
            .signal(Signal::SIGSTOP)
    }

    /// SIGCONT after [`Self::pause`].
    pub async fn resume(&mut self) -> Result<()> {
        if let Some(c) = &self.container {
            return c.resume().await;
        }
        self.child
            .as_mut()
            .context("redis is not running")?
            .signal(Signal::SIGCONT)
    }
}

/// Whether `redis-server` can be found.
pub(crate) fn binary_available() -> bool {
    let name = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    if name.contains('/') {
        return std::path::Path::new(&name).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(&name).is_file()))
}

async fn ping(url: &str) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(1),
        client.get_multiplexed_async_connection(),
    )
    .await??;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    if pong != "PONG" {
        bail!("unexpected PING reply {pong:?}");
    }
    Ok(())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A process is killed here; a container is removed by its own drop.
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }
}
