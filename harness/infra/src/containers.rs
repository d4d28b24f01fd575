//! The containers provider: Redis and PostgreSQL as Docker containers,
//! started with testcontainers, for machines that have Docker but not the
//! servers' binaries.
//!
//! Containers use the host's network and listen on a free 127.0.0.1 port
//! chosen here, exactly as the process provider's servers do, so the fault
//! proxies, URLs and checks in front of them need not know which provider
//! runs them. Each container is removed when its handle drops
//! (testcontainers), and by [`remove_all`] when the harness is interrupted
//! (Ctrl-C ends the process before any destructor runs).
//!
//! Images default to upstream `redis:7` and `postgres:16` and are set with
//! `BOOKING_REDIS_IMAGE` and `BOOKING_POSTGRES_IMAGE`: any image with
//! `redis-server`, or PostgreSQL under `/usr/lib/postgresql/*/bin` and a
//! `postgres` user (Debian's packages, as the upstream images have them).

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// Ids of the containers alive now, for [`remove_all`].
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub const DEFAULT_REDIS_IMAGE: &str = "redis:7";
pub const DEFAULT_POSTGRES_IMAGE: &str = "postgres:16";

fn image(variable: &str, default: &str) -> GenericImage {
    let spec = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
    // `name[:tag]`; a registry's `host:port/name` keeps its colon.
    let (name, tag) = match spec.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (spec.clone(), "latest".to_owned()),
    };
    GenericImage::new(name, tag)
}

/// What the provider runs in a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Redis,
    Postgres,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Redis => "redis",
            Server::Postgres => "postgres",
        }
    }
}

/// One server in a container, on `port` of 127.0.0.1.
pub struct ContainerServer {
    container: Option<ContainerAsync<GenericImage>>,
    server: Server,
    port: u16,
}

/// PostgreSQL's start: initdb into the container's own filesystem on the
/// first start (so a stop and start keeps the data, as a restarted server
/// keeps its disk), then the server in the foreground.
fn postgres_script(port: u16) -> String {
    format!(
        "set -e; bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); \
         data=/tmp/booking-pg; \
         if [ ! -s \"$data/PG_VERSION\" ]; then \
           \"$bin/initdb\" -D \"$data\" -U postgres --auth=trust -E UTF8 >/dev/null; fi; \
         exec \"$bin/postgres\" -D \"$data\" -p {port} -c listen_addresses=127.0.0.1 \
           -c unix_socket_directories= -c fsync=on -c max_connections=200 -c shared_buffers=32MB"
    )
}

impl ContainerServer {
    /// Starts `server` listening on 127.0.0.1:`port`. Readiness is the
    /// caller's to wait for (as with a process).
    pub async fn start(server: Server, port: u16) -> Result<Self> {
        let request = match server {
            Server::Redis => image("BOOKING_REDIS_IMAGE", DEFAULT_REDIS_IMAGE).with_cmd([
                "redis-server".to_owned(),
                "--port".to_owned(),
                port.to_string(),
                "--bind".to_owned(),
                "127.0.0.1".to_owned(),
                "--save".to_owned(),
                String::new(),
                "--appendonly".to_owned(),
                "no".to_owned(),
            ]),
            Server::Postgres => image("BOOKING_POSTGRES_IMAGE", DEFAULT_POSTGRES_IMAGE)
                .with_user("postgres")
                .with_cmd(["sh".to_owned(), "-c".to_owned(), postgres_script(port)]),
        };
        let container = request
            .with_network("host")
            .with_startup_timeout(Duration::from_secs(60))
            .start()
            .await
            .with_context(|| {
                format!(
                    "cannot start the {} container (BOOKING_INFRA=containers; is Docker \
                     running, and is the image there? see docs/TESTING.md)",
                    server.name()
                )
            })?;
        lock_live().push(container.id().to_owned());
        Ok(Self {
            container: Some(container),
            server,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn container(&self) -> Result<&ContainerAsync<GenericImage>> {
        self.container
            .as_ref()
            .with_context(|| format!("the {} container is gone", self.server.name()))
    }

    /// Stops the container at once (SIGKILL): as a crash, nothing flushed.
    pub async fn kill(&self) -> Result<()> {
        self.container()?.stop_with_timeout(Some(0)).await?;
        Ok(())
    }

    /// Starts the stopped container again: Redis comes back empty (it keeps
    /// nothing), PostgreSQL with its data, recovering from its WAL.
    pub async fn start_again(&self) -> Result<()> {
        self.container()?.start().await?;
        Ok(())
    }

    pub async fn is_running(&self) -> bool {
        match &self.container {
            Some(c) => c.is_running().await.unwrap_or(false),
            None => false,
        }
    }

    /// `docker pause`: the cgroup is frozen, as SIGSTOP freezes a process.
    pub async fn pause(&self) -> Result<()> {
        self.container()?.pause().await?;
        Ok(())
    }

    pub async fn resume(&self) -> Result<()> {
        self.container()?.unpause().await?;
        Ok(())
    }

    /// The last lines of the container's output, for error messages.
    pub async fn log_tail(&self, lines: usize) -> String {
        let Ok(c) = self.container() else {
            return String::new();
        };
        let mut text = String::new();
        if let Ok(out) = c.stdout_to_vec().await {
            text.push_str(&String::from_utf8_lossy(&out));
        }
        if let Ok(err) = c.stderr_to_vec().await {
            text.push_str(&String::from_utf8_lossy(&err));
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ContainerServer {
    fn drop(&mut self) {
        if let Some(container) = self.container.take() {
            let id = container.id().to_owned();
            // testcontainers removes it (with its filesystem) on drop.
            drop(container);
            lock_live().retain(|c| *c != id);
        }
    }
}

fn lock_live() -> std::sync::MutexGuard<'static, Vec<String>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes every container this process started and has not removed yet,
/// from any thread, without a runtime (the interrupt path). Bounded: gives
/// up after ten seconds.
pub fn remove_all() {
    let ids: Vec<String> = lock_live().drain(..).collect();
    if ids.is_empty() {
        return;
    }
    let worker = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let Ok(docker) = bollard::Docker::connect_with_defaults() else {
                return;
            };
            for id in ids {
                let options = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build();
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    docker.remove_container(&id, Some(options)),
                )
                .await;
            }
        });
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !worker.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a Docker daemon answers at `DOCKER_HOST` (or the default socket).
pub fn docker_reachable() -> bool {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let Some(path) = host.strip_prefix("unix://") else {
        // A TCP or SSH daemon: let testcontainers try it.
        return !host.is_empty();
    };
    std::os::unix::net::UnixStream::connect(path).is_ok()
}
