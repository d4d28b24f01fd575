//! A private PostgreSQL server on a free loopback port, in a throwaway data
//! directory, with `fsync` on (a crash test on a database that may lose
//! committed data proves nothing).
//!
//! `initdb` runs once per machine and PostgreSQL version into a cached
//! template cluster; each server starts from a copy of it, which takes a
//! fraction of a second instead of seconds. As root, the server runs as the
//! `postgres` user, because PostgreSQL refuses to run as root.
//!
//! With the containers provider (see [`super::Provider`]) the server runs
//! in a container on the host's network instead, on the same kind of port.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User};
use sqlx::Connection;
use tempfile::TempDir;

use super::containers::{ContainerServer, Server};
use super::process::{free_port, log_tail, wait_until, ManagedChild};
use super::Provider;

/// Serialises template creation between the tests of one process.
static TEMPLATE_LOCK: Mutex<()> = Mutex::new(());

pub struct PostgresServer {
    child: Option<ManagedChild>,
    container: Option<ContainerServer>,
    /// A container that is stopped (by a fault) until [`Self::start_again`].
    container_stopped: bool,
    port: u16,
    dir: TempDir,
    bin: PathBuf,
    run_as: Option<(Uid, Gid)>,
}

impl PostgresServer {
    /// Starts one with the provider `BOOKING_INFRA` chooses.
    pub async fn start() -> Result<Self> {
        Self::start_with(super::provider()?).await
    }

    pub async fn start_with(provider: Provider) -> Result<Self> {
        if provider == Provider::Containers {
            let port = free_port()?;
            let server = Self {
                child: None,
                container: Some(ContainerServer::start(Server::Postgres, port).await?),
                container_stopped: false,
                port,
                dir: tempfile::Builder::new().prefix("booking-pg-").tempdir()?,
                bin: PathBuf::new(),
                run_as: None,
            };
            server.wait_ready().await?;
            return Ok(server);
        }
        let bin = find_bin_dir()?;
        let run_as = run_as()?;
        let template = tokio::task::spawn_blocking({
            let bin = bin.clone();
            move || ensure_template(&bin, run_as)
        })
        .await??;
        let dir = tempfile::Builder::new().prefix("booking-pg-").tempdir()?;
        let data = dir.path().join("data");
        copy_dir(&template, &data)?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let mut server = Self {
            child: None,
            container: None,
            container_stopped: false,
            port: free_port()?,
            dir,
            bin,
            run_as,
        };
        server.spawn().await?;
        Ok(server)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=on"])
            .args(["-c", "max_connections=200"])
            .args(["-c", "shared_buffers=32MB"]);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        let log = self.dir.path().join("postgres.log");
        self.child = Some(ManagedChild::spawn("postgres", &mut cmd, &log)?);
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<()> {
        let url = self.url("postgres");
        let ready = wait_until("postgres", Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                conn.ping().await?;
                let _ = conn.close().await;
                Ok(true)
            }
        })
        .await;
        if let Err(e) = ready {
            let tail = match &self.container {
                Some(c) => c.log_tail(30).await,
                None => log_tail(&self.dir.path().join("postgres.log"), 30),
            };
            bail!("{e:#}\n--- postgres log ---\n{tail}");
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ManagedChild::pid)
    }

    /// The URL of database `db` on this server (user `postgres`, trust auth).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("database name {name:?} must be [A-Za-z0-9_]");
        }
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(self.url(name))
    }

    /// Immediate shutdown (SIGQUIT; a container: stopped at once): no
    /// checkpoint, as after a crash.
    pub async fn stop_immediately(&mut self) {
        if let Some(c) = &self.container {
            if let Err(e) = c.kill().await {
                tracing::warn!(error = %e, "could not stop the postgres container");
            }
            self.container_stopped = true;
        }
        if let Some(mut child) = self.child.take() {
            child.stop(Signal::SIGQUIT, Duration::from_secs(10));
        }
    }

    /// Starts the server again on the same port and data (after a stop); it
    /// recovers from its write-ahead log.
    pub async fn start_again(&mut self) -> Result<()> {
        if let Some(c) = &self.container {
            if !self.container_stopped {
                bail!("postgres is already running");
            }
            c.start_again().await?;
            self.container_stopped = false;
            return self.wait_ready().await;
        }
        if self.child.is_some() {
            bail!("postgres is already running");
        }
        self.spawn().await
    }

    /// Whether the server is alive (stopped by a fault or not).
    pub async fn is_running(&mut self) -> bool {
        match &self.container {
            Some(c) => c.is_running().await,
            None => self.child.as_mut().is_some_and(|c| c.is_running()),
        }
    }

    /// SIGSTOP (a container: frozen): connections stay open, nothing is answered.
    pub async fn pause(&mut self) -> Result<()> {
        if let Some(c) = &self.container {
            return c.pause().await;
        }
        self.child
            .as_mut()
            .context("postgres is not running")?
            .signal(Signal::SIGSTOP)
    }

    pub async fn resume(&mut self) -> Result<()> {
        if let Some(c) = &self.container {
            return c.resume().await;
        }
        self.child
            .as_mut()
            .context("postgres is not running")?
            .signal(Signal::SIGCONT)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fast shutdown first, so shared memory is released cleanly.
            child.stop(Signal::SIGINT, Duration::from_secs(5));
        }
    }
}

/// Whether PostgreSQL's server binaries can be found.
pub(crate) fn binaries_available() -> bool {
    find_bin_dir().is_ok_and(|d| d.join("postgres").is_file())
}

/// PostgreSQL's binaries: `PG_BIN`, else `initdb` on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout).
pub(crate) fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                let resolved = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(parent) = resolved.parent() {
                    if parent.join("postgres").is_file() {
                        return Ok(parent.to_owned());
                    }
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("PostgreSQL not found: install it (apt-get install postgresql) or set PG_BIN")
}

/// PostgreSQL refuses to run as root: then run it as the `postgres` user.
fn run_as() -> Result<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")?
        .context("running as root needs a `postgres` user to run PostgreSQL (apt-get install postgresql creates it)")?;
    Ok(Some((user.uid, user.gid)))
}

/// The cached template cluster for this PostgreSQL version and user.
fn ensure_template(bin: &Path, run_as: Option<(Uid, Gid)>) -> Result<PathBuf> {
    let _guard = TEMPLATE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let version = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .context("running postgres --version")?;
    let version: String = String::from_utf8_lossy(&version.stdout)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let uid = run_as.map_or_else(|| Uid::effective().as_raw(), |(uid, _)| uid.as_raw());
    let root = std::env::temp_dir().join("booking-infra");
    std::fs::create_dir_all(&root)?;
    let template = root.join(format!("pg-template-{version}-uid{uid}"));
    if template.join("PG_VERSION").is_file() {
        return Ok(template);
    }
    // initdb into a private directory, then rename: another process building
    // the same template at the same time cannot leave a half-written one.
    let staging = tempfile::Builder::new()
        .prefix("pg-template-staging-")
        .tempdir_in(&root)?;
    let data = staging.path().join("data");
    if let Some((uid, gid)) = run_as {
        nix::unistd::chown(staging.path(), Some(uid), Some(gid))?;
    }
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .env("LC_ALL", "C");
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    let out = cmd.output().context("running initdb")?;
    if !out.status.success() {
        bail!(
            "initdb failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    match std::fs::rename(&data, &template) {
        Ok(()) => {}
        Err(_) if template.join("PG_VERSION").is_file() => {}
        Err(e) => return Err(e).context("installing the template cluster"),
    }
    Ok(template)
}

/// `cp -a`: keeps owners and modes, which PostgreSQL checks.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!("copying {} to {} failed", from.display(), to.display());
    }
    Ok(())
}
