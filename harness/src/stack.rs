//! The system under test, started by the harness: private Redis and
//! PostgreSQL (or a SQLite file), N replicas of the service, and a fault
//! proxy in front of each of them. Replicas reach Redis and the database
//! through their proxies (unless started with [`Links::Direct`], as load
//! runs are), clients reach replicas through theirs, and the checkers read
//! the store directly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sqlx::Row;
use tempfile::TempDir;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::history::BookingRow;
use crate::infra::{BookingProcess, BookingProcessConfig, PostgresServer, RedisServer};
use crate::proxy::Proxy;
use crate::scenario::{Mode, Scenario};
use crate::service_api::ServiceApi;

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

/// CPU time a process spent, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSeconds {
    /// In the process's own code.
    pub user: f64,
    /// In the kernel on its behalf: system calls (loopback TCP, epoll,
    /// futex), and the work they do for the receiving end.
    pub system: f64,
}

impl CpuSeconds {
    pub fn total(&self) -> f64 {
        self.user + self.system
    }
}

/// The length of one clock tick, the unit `/proc/PID/stat` counts CPU
/// time in (10 ms at the usual 100 Hz).
pub fn cpu_clock_tick() -> Option<f64> {
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(1.0 / per_second as f64)
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
            Mode::Local => {
                let provider = match scenario.infra {
                    Some(p) => p,
                    None => crate::infra::provider()?,
                };
                let (redis, postgres) = tokio::join!(
                    RedisServer::start_with(provider),
                    PostgresServer::start_with(provider)
                );
                let (redis, postgres) = (redis?, postgres?);
                stack.store_url = postgres.create_database("booking").await?;
                let (mut redis_port, mut db_port) = (redis.port(), postgres.port());
                if links == Links::Proxied {
                    let redis_proxy =
                        Proxy::start("redis", &format!("127.0.0.1:{redis_port}")).await?;
                    let db_proxy =
                        Proxy::start("database", &format!("127.0.0.1:{db_port}")).await?;
                    (redis_port, db_port) = (redis_proxy.port(), db_proxy.port());
                    stack.redis_proxy = Some(redis_proxy);
                    stack.db_proxy = Some(db_proxy);
                }
                let database_url = format!("postgres://postgres@127.0.0.1:{db_port}/booking");
                let redis_url = format!("redis://127.0.0.1:{redis_port}/");
                *stack.redis.get_mut() = Some(redis);
                *stack.postgres.get_mut() = Some(postgres);
                (database_url, Some(redis_url))
            }
        };
        for n in 0..scenario.replicas {
            let process = BookingProcess::start(BookingProcessConfig {
                binary: binary.0.clone(),
                database_url: database_url.clone(),
                redis_url: redis_url.clone(),
                env: env.clone(),
            })
            .await
            .with_context(|| format!("starting replica {n}"))?;
            let upstream = process.url().trim_start_matches("http://").to_owned();
            let proxy = Proxy::start(&format!("replica:{n}"), &upstream).await?;
            stack.replicas.push(Arc::new(Replica {
                process: Mutex::new(process),
                proxy,
                hold_down: false.into(),
            }));
        }
        let replicas = stack.replicas.clone();
        stack.supervisor = Some(tokio::spawn(supervise(replicas)));
        Ok(Arc::new(stack))
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

    /// CPU time (user + system, every thread, exited ones too) that the first
    /// `n` replicas have used so far, in seconds, from `/proc/PID/stat`.
    pub async fn replicas_cpu_seconds(&self, n: usize) -> Option<CpuSeconds> {
        let tick = cpu_clock_tick()?;
        let mut total = CpuSeconds::default();
        for r in self.replicas.iter().take(n) {
            let pid = r.process.lock().await.pid()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name (which may hold spaces) come fields 3…;
            // utime and stime are fields 14 and 15.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            total.user += utime * tick;
            total.system += stime * tick;
        }
        Some(total)
    }

    /// Resident memory of replica `n`, in MB (0 if unknown).
    pub async fn replica_rss_mb(&self, n: usize) -> f64 {
        let Some(replica) = self.replicas.get(n) else {
            return 0.0;
        };
        let Some(pid) = replica.process.lock().await.pid() else {
            return 0.0;
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .map_or(0.0, |kb| kb / 1024.0)
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

    /// Confirmed bookings of one slot (PostgreSQL stores only).
    pub async fn count_confirmed(&self, resource: &str, date: &str) -> Result<i64> {
        let pool = sqlx::PgPool::connect(&self.store_url).await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM bookings WHERE resource_id = $1 AND CAST(date AS TEXT) = $2 AND status = 'confirmed'",
        )
        .bind(resource)
        .bind(date)
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        Ok(n)
    }

    /// Adds the completed idempotency keys `from..to` (a 201 outcome kept a
    /// day, owned by 1 000 users) to PostgreSQL and to Redis, as live keys
    /// would be after real traffic, without going through HTTP: the bench's
    /// curve of cost against live keys. Local mode only.
    pub async fn seed_live_keys(&self, from: u64, to: u64) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        let pool = sqlx::PgPool::connect(&self.store_url).await?;
        sqlx::query(
            "INSERT INTO idempotency_records (user_id, key_kind, idem_key, fingerprint, resource_id, \
             date, status_code, response_body, booking_id, created_at, expires_at) \
             SELECT 'seed_' || (g % 1000), 'client', 'seed-' || g, 'fingerprint', 'room_S', \
             date '2100-01-01', 201, repeat('x', 300), NULL, now(), now() + interval '1 day' \
             FROM generate_series($1::bigint, $2::bigint - 1) AS g ON CONFLICT DO NOTHING",
        )
        .bind(from as i64)
        .bind(to as i64)
        .execute(&pool)
        .await?;
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM idempotency_records WHERE user_id LIKE 'seed\\_%'",
        )
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        if stored < to as i64 {
            bail!("seeded {stored} live keys into PostgreSQL, wanted {to}");
        }
        let port = self.redis_port().await.context("no redis in this mode")?;
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        // In batches, so Redis is never blocked for long by one script.
        let seed = redis::Script::new(
            "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do \
               local k = 'booking:idem:seed:' .. i \
               redis.call('HSET', k, 'state', 'completed', 'status', '201', 'body', ARGV[3], 'fp', 'fingerprint') \
               redis.call('PEXPIRE', k, 86400000) \
             end return 0",
        );
        let body = "x".repeat(300);
        let mut at = from;
        while at < to {
            let end = (at + 50_000).min(to);
            let _: i64 = seed
                .arg(at)
                .arg(end)
                .arg(&body)
                .invoke_async(&mut conn)
                .await?;
            at = end;
        }
        for probe in [from, to - 1] {
            let there: i64 = redis::cmd("EXISTS")
                .arg(format!("booking:idem:seed:{probe}"))
                .query_async(&mut conn)
                .await?;
            if there != 1 {
                bail!("seeded live key {probe} is not in Redis");
            }
        }
        Ok(())
    }

    /// Slots with two confirmed bookings, and acknowledged ids missing from
    /// the store.
    pub async fn invariant_report(&self, acknowledged: &[String]) -> Result<Vec<String>> {
        // Read through `final_state`, so both stores (PostgreSQL, SQLite) are judged alike.
        let rows = self
            .final_state()
            .await?
            .context("no store to read the invariants from")?;
        let mut found = Vec::new();
        let mut confirmed: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
        for r in rows.iter().filter(|r| r.status == "confirmed") {
            *confirmed.entry((&r.resource_id, &r.date)).or_default() += 1;
        }
        for ((resource, date), n) in confirmed.into_iter().filter(|(_, n)| *n > 1) {
            found.push(format!("{n} confirmed bookings for {resource} on {date}"));
        }
        let ids: std::collections::HashSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let present = acknowledged
            .iter()
            .filter(|id| ids.contains(id.as_str()))
            .count();
        if present != acknowledged.len() {
            found.push(format!(
                "{} bookings acknowledged with 201, {present} of them in the store",
                acknowledged.len()
            ));
        }
        Ok(found)
    }

    /// Every booking row, read directly from the store.
    /// In target mode, only with a `database_url`, over a read-only connection.
    pub async fn final_state(&self) -> Result<Option<Vec<BookingRow>>> {
        if self.store_url.is_empty() {
            return Ok(None);
        }
        let columns =
            "user_id, resource_id, CAST(date AS TEXT) AS date, status, key_kind, idem_key";
        if self.store_url.starts_with("sqlite:") {
            let options: sqlx::sqlite::SqliteConnectOptions = self.store_url.parse()?;
            let pool =
                sqlx::SqlitePool::connect_with(options.read_only(self.target.is_some())).await?;
            let rows = sqlx::query(&format!("SELECT id, {columns} FROM bookings"))
                .fetch_all(&pool)
                .await?;
            let out = rows
                .iter()
                .map(|r| -> Result<BookingRow> {
                    // SQLite keeps UUIDs as 16-byte blobs.
                    let id: uuid::Uuid = r.try_get("id")?;
                    row(id.to_string(), r)
                })
                .collect::<Result<Vec<_>>>()?;
            pool.close().await;
            Ok(Some(out))
        } else {
            let options: sqlx::postgres::PgConnectOptions = self.store_url.parse()?;
            let options = if self.target.is_some() {
                // Someone else's database: this session cannot write.
                options.options([("default_transaction_read_only", "on")])
            } else {
                options
            };
            let pool = sqlx::PgPool::connect_with(options).await?;
            let rows = sqlx::query(&format!(
                "SELECT CAST(id AS TEXT) AS id, {columns} FROM bookings"
            ))
            .fetch_all(&pool)
            .await?;
            let out = rows
                .iter()
                .map(|r| -> Result<BookingRow> { row(r.try_get("id")?, r) })
                .collect::<Result<Vec<_>>>()?;
            pool.close().await;
            Ok(Some(out))
        }
    }
}

fn row<R: Row>(id: String, r: &R) -> Result<BookingRow>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(BookingRow {
        id,
        user_id: r.try_get("user_id")?,
        resource_id: r.try_get("resource_id")?,
        date: r.try_get("date")?,
        status: r.try_get("status")?,
        key_kind: r.try_get("key_kind")?,
        idem_key: r.try_get("idem_key")?,
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
