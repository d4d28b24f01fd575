//! The system under test, started by the harness: private Redis and
//! PostgreSQL (or a SQLite file), N replicas of the service, and a fault
//! proxy in front of each of them. Replicas reach Redis and the database
//! through their proxies (unless started with [`Links::Direct`], as load
//! runs are), clients reach replicas through theirs, and the checkers read
//! the store directly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::history::BookingRow;
use crate::infra::{BookingProcess, BookingProcessConfig, PostgresServer, RedisServer};
use crate::proxy::Proxy;
use crate::scenario::{Mode, Scenario};
use crate::service_api::ServiceApi;
use crate::store_view::StoreView;

pub struct Replica {
    pub process: Mutex<BookingProcess>,
    pub proxy: Proxy,
    /// While true the supervisor leaves a dead replica down (a scheduled kill).
    pub hold_down: std::sync::atomic::AtomicBool,
}

pub struct Stack {
    pub mode: Mode,
    pub redis: Mutex<Option<RedisServer>>,
    pub postgres: Mutex<Option<PostgresServer>>,
    pub redis_proxy: Option<Proxy>,
    pub db_proxy: Option<Proxy>,
    pub replicas: Vec<Arc<Replica>>,
    /// The store, bypassing proxies, for the final state.
    store_url: String,
    /// For `target` mode: the deployment, and a fault proxy in front of each
    /// of its endpoints (`replica:N` in fault targets).
    target: Option<crate::target::TargetConfig>,
    target_proxies: Vec<Proxy>,
    /// Tokens per user (a target that authenticates users), shared by every `api()`.
    user_tokens: crate::identity::Tokens,
    supervisor: Option<JoinHandle<()>>,
    _dir: TempDir,
}

/// Where the `booking` service binary is (the harness binary itself can
/// serve: `booking-harness serve` runs the same code with failpoints).
#[derive(Debug, Clone)]
pub struct ServiceBinary(pub PathBuf);

/// How replicas reach Redis and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Through a fault proxy each, which the nemesis controls.
    Proxied,
    /// Straight to the servers, as in a deployment: for load runs, which
    /// inject no faults and would otherwise count the proxy's extra hop
    /// (its relaying, on the same cores) against the service.
    Direct,
}

impl Stack {
    pub async fn start(scenario: &Scenario, binary: &ServiceBinary) -> Result<Arc<Stack>> {
        Self::start_linked(scenario, binary, Links::Proxied).await
    }

    /// [`Stack::start`], choosing how replicas reach Redis and PostgreSQL.
    pub async fn start_linked(
        scenario: &Scenario,
        binary: &ServiceBinary,
        links: Links,
    ) -> Result<Arc<Stack>> {
        let dir = tempfile::Builder::new()
            .prefix("booking-stack-")
            .tempdir()?;
        let env: Vec<(String, String)> = scenario
            .service_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut stack = Stack {
            mode: scenario.mode,
            redis: Mutex::new(None),
            postgres: Mutex::new(None),
            redis_proxy: None,
            db_proxy: None,
            replicas: Vec::new(),
            store_url: String::new(),
            target: None,
            target_proxies: Vec::new(),
            user_tokens: Arc::default(),
            supervisor: None,
            _dir: dir,
        };
        let (database_url, redis_url) = match scenario.mode {
            Mode::Target => {
                let target = crate::target::TargetConfig::from_spec(&scenario.target)?;
                for (n, endpoint) in target.endpoints.iter().enumerate() {
                    stack
                        .target_proxies
                        .push(Proxy::start(&format!("replica:{n}"), &endpoint.upstream).await?);
                }
                if let Some(url) = &target.database_url {
                    stack.store_url = url.clone();
                }
                stack.target = Some(target);
                return Ok(Arc::new(stack));
            }
            Mode::Embedded => {
                let path = stack._dir.path().join("booking.db");
                stack.store_url = format!("sqlite://{}", path.display());
                (stack.store_url.clone(), None)
            }
            Mode::Local => stack.start_servers(scenario, links).await?,
        };
        for n in 0..scenario.replicas {
            let replica =
                start_replica(n, binary, &database_url, redis_url.as_deref(), &env).await?;
            stack.replicas.push(Arc::new(replica));
        }
        let replicas = stack.replicas.clone();
        stack.supervisor = Some(tokio::spawn(supervise(replicas)));
        Ok(Arc::new(stack))
    }

    /// A local stack's private Redis and PostgreSQL (each behind a fault
    /// proxy when `links` says so); the URLs the replicas reach them by.
    async fn start_servers(
        &mut self,
        scenario: &Scenario,
        links: Links,
    ) -> Result<(String, Option<String>)> {
        let provider = match scenario.infra {
            Some(p) => p,
            None => crate::infra::provider()?,
        };
        let (redis, postgres) = tokio::join!(
            RedisServer::start_with(provider),
            PostgresServer::start_with(provider)
        );
        let (redis, postgres) = (redis?, postgres?);
        self.store_url = postgres.create_database("booking").await?;
        let (mut redis_port, mut db_port) = (redis.port(), postgres.port());
        if links == Links::Proxied {
            let redis_proxy = Proxy::start("redis", &format!("127.0.0.1:{redis_port}")).await?;
            let db_proxy = Proxy::start("database", &format!("127.0.0.1:{db_port}")).await?;
            (redis_port, db_port) = (redis_proxy.port(), db_proxy.port());
            self.redis_proxy = Some(redis_proxy);
            self.db_proxy = Some(db_proxy);
        }
        *self.redis.get_mut() = Some(redis);
        *self.postgres.get_mut() = Some(postgres);
        Ok((
            format!("postgres://postgres@127.0.0.1:{db_port}/booking"),
            Some(format!("redis://127.0.0.1:{redis_port}/")),
        ))
    }

    /// How clients reach the service: through the proxies in front of the
    /// replicas, or of the target's endpoints.
    pub fn api(&self) -> crate::client::Api {
        let Some(target) = &self.target else {
            return crate::client::Api::local(
                self.replicas
                    .iter()
                    .map(|r| format!("http://127.0.0.1:{}", r.proxy.port()))
                    .collect(),
            );
        };
        let endpoints = target
            .endpoints
            .iter()
            .zip(&self.target_proxies)
            .map(|(e, proxy)| {
                let proxy_addr = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.port()));
                let authority = match e.url.port() {
                    Some(port) => format!("{}:{port}", e.host()),
                    None => e.host().to_owned(),
                };
                if e.url.scheme() == "https" {
                    // The URL keeps the host name (TLS checks it) without
                    // its port, which would override the resolved proxy's.
                    crate::client::Endpoint {
                        base: format!("https://{}{}", e.host(), e.base_path()),
                        resolve: Some((e.host().to_owned(), proxy_addr)),
                        host_header: Some(authority),
                    }
                } else {
                    crate::client::Endpoint {
                        base: format!("http://{proxy_addr}{}", e.base_path()),
                        resolve: None,
                        host_header: Some(authority),
                    }
                }
            })
            .collect();
        crate::client::Api {
            endpoints,
            headers: target.headers.clone(),
            profile: target.profile.clone(),
            user_tokens: self.user_tokens.clone(),
        }
    }

    /// Environment for `command` faults: where the parts of this stack are.
    pub async fn command_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(t) = &self.target {
            let urls: Vec<String> = t.endpoints.iter().map(|e| e.url.to_string()).collect();
            env.push(("BOOKING_TARGET_URLS".into(), urls.join(" ")));
        }
        if let Some(port) = self.redis_port().await {
            env.push(("BOOKING_REDIS_PORT".into(), port.to_string()));
        }
        if let Some(port) = self.postgres_port().await {
            env.push(("BOOKING_DATABASE_PORT".into(), port.to_string()));
        }
        if !self.replicas.is_empty() {
            let urls = self.direct_urls().await;
            env.push(("BOOKING_REPLICA_URLS".into(), urls.join(" ")));
        }
        env
    }

    /// The target deployment, in target mode.
    pub fn target(&self) -> Option<&crate::target::TargetConfig> {
        self.target.as_ref()
    }

    pub fn proxies_for(&self, target: &crate::scenario::Target) -> Vec<&Proxy> {
        use crate::scenario::Target;
        match target {
            Target::Redis => self.redis_proxy.iter().collect(),
            Target::Database => self.db_proxy.iter().collect(),
            Target::Replica(n) => self
                .replicas
                .get(*n)
                .map(|r| &r.proxy)
                .into_iter()
                .chain(self.target_proxies.get(*n))
                .collect(),
            Target::Replicas => self
                .replicas
                .iter()
                .map(|r| &r.proxy)
                .chain(self.target_proxies.iter())
                .collect(),
        }
    }

    fn all_proxies(&self) -> impl Iterator<Item = &Proxy> {
        self.redis_proxy
            .iter()
            .chain(self.db_proxy.iter())
            .chain(self.target_proxies.iter())
            .chain(self.replicas.iter().map(|r| &r.proxy))
    }

    /// Clears every network fault.
    pub fn heal_network(&self) {
        for p in self.all_proxies() {
            p.heal();
        }
    }

    /// Draws the proxies' jitter from a run's seed.
    pub fn seed_proxies(&self, seed: u64) {
        for p in self.all_proxies() {
            p.seed(seed);
        }
    }

    /// Heals everything: network, paused or held-down replicas, failpoints.
    pub async fn heal_all(&self) {
        self.heal_network();
        for replica in &self.replicas {
            replica
                .hold_down
                .store(false, std::sync::atomic::Ordering::SeqCst);
            let mut process = replica.process.lock().await;
            let _ = process.resume();
        }
        // Give the supervisor a moment to restart anything that is down.
        for _ in 0..100 {
            let mut all_up = true;
            for replica in &self.replicas {
                all_up &= replica.process.lock().await.is_running();
            }
            if all_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let http = reqwest::Client::new();
        for replica in &self.replicas {
            let url = replica.process.lock().await.url();
            let admin = ServiceApi::new(&http, &url);
            for step in booking::failpoints::Step::ALL {
                admin.clear_failpoint(step.name()).await;
            }
        }
    }

    /// Heals everything, brings stopped servers back, and verifies that
    /// every replica is ready (Redis and the database reachable through
    /// it): a case that starts on a broken stack would judge the last
    /// case's damage, not its own.
    pub async fn ensure_healthy(&self) -> Result<()> {
        self.heal_all().await;
        if let Some(pg) = self.postgres.lock().await.as_mut() {
            let _ = pg.resume().await;
            if !pg.is_running().await {
                pg.stop_immediately().await;
                pg.start_again().await.context("restarting PostgreSQL")?;
            }
        }
        if let Some(redis) = self.redis.lock().await.as_mut() {
            let _ = redis.resume().await;
            if !redis.is_running().await {
                redis.restart().await.context("restarting Redis")?;
            }
        }
        let http = reqwest::Client::new();
        for (n, replica) in self.replicas.iter().enumerate() {
            let url = replica.process.lock().await.url();
            crate::infra::wait_until(
                &format!("replica {n} ready"),
                Duration::from_secs(20),
                || {
                    let http = http.clone();
                    let url = url.clone();
                    async move { Ok(ServiceApi::new(&http, &url).ready().await) }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// The replicas' own URLs, bypassing their fault proxies (for load runs).
    pub async fn direct_urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for r in &self.replicas {
            urls.push(r.process.lock().await.url());
        }
        urls
    }

    /// The pids of the first `n` replicas (for the bench's CPU and memory
    /// readings); `None` if one is not running.
    pub async fn replica_pids(&self, n: usize) -> Option<Vec<u32>> {
        let mut pids = Vec::new();
        for r in self.replicas.iter().take(n) {
            pids.push(r.process.lock().await.pid()?);
        }
        Some(pids)
    }

    /// Which provider runs Redis and PostgreSQL (`None`: this mode has none).
    pub async fn provider(&self) -> Option<crate::infra::Provider> {
        self.redis.lock().await.as_ref().map(RedisServer::provider)
    }

    pub async fn postgres_port(&self) -> Option<u16> {
        self.postgres
            .lock()
            .await
            .as_ref()
            .map(PostgresServer::port)
    }

    pub async fn redis_port(&self) -> Option<u16> {
        self.redis.lock().await.as_ref().map(RedisServer::port)
    }

    /// The store the replicas write, read (and for the bench, seeded)
    /// directly: read-only in target mode.
    pub fn store(&self) -> StoreView {
        StoreView::new(&self.store_url, self.target.is_some())
    }

    /// Every booking row, read directly from the store (see [`StoreView`]).
    pub async fn final_state(&self) -> Result<Option<Vec<BookingRow>>> {
        self.store().final_state().await
    }
}

/// Replica `n`, started and behind its fault proxy.
async fn start_replica(
    n: usize,
    binary: &ServiceBinary,
    database_url: &str,
    redis_url: Option<&str>,
    env: &[(String, String)],
) -> Result<Replica> {
    let process = BookingProcess::start(BookingProcessConfig {
        binary: binary.0.clone(),
        database_url: database_url.to_owned(),
        redis_url: redis_url.map(str::to_owned),
        env: env.to_vec(),
    })
    .await
    .with_context(|| format!("starting replica {n}"))?;
    let upstream = process.url().trim_start_matches("http://").to_owned();
    let proxy = Proxy::start(&format!("replica:{n}"), &upstream).await?;
    Ok(Replica {
        process: Mutex::new(process),
        proxy,
        hold_down: false.into(),
    })
}

/// Restarts replicas that died (a crash failpoint, a kill), like a
/// Kubernetes controller would, unless a scheduled kill holds them down.
async fn supervise(replicas: Vec<Arc<Replica>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for replica in &replicas {
            if replica.hold_down.load(std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let mut process = replica.process.lock().await;
            if !process.is_running() {
                let env = process.env().to_vec();
                if let Err(e) = process.restart_with(env).await {
                    tracing::warn!(error = %e, "could not restart a replica");
                }
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(s) = self.supervisor.take() {
            s.abort();
        }
    }
}
