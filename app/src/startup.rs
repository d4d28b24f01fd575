//! Wiring: connect the dependencies, build the router, serve.
//!
//! `main` parses flags and calls [`Application::build`] then
//! [`Application::run_until_stopped`]; tests do the same on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::coordinator::memory::MemoryCoordinator;
use crate::coordinator::redis::RedisCoordinator;
use crate::coordinator::Coordinator;
use crate::deps::{DependencyError, Guard};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::{self, Store};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot connect: {0}")]
    Dependency(#[from] DependencyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Connects the coordinator and the store named by `settings`.
pub async fn build_state(settings: Settings) -> Result<AppState, StartupError> {
    settings.validate().map_err(StartupError::Config)?;
    if let Some(spec) = &settings.failpoints {
        crate::failpoints::configure(spec).map_err(StartupError::Config)?;
    }
    #[cfg(feature = "failpoints")]
    crate::seeded::init_from_env().map_err(StartupError::Config)?;
    let metrics = Arc::new(Metrics::new());
    let guard = |dependency| Guard::new(dependency, settings.dependency_timeout, metrics.clone());
    let coordinator: Arc<dyn Coordinator> = match &settings.redis_url {
        Some(url) => Arc::new(RedisCoordinator::connect(url, guard("redis")).await?),
        None => Arc::new(MemoryCoordinator::new()),
    };
    let store = store::connect(&settings.database_url, guard).await?;
    let auth = crate::auth::Authenticator::from_settings(&settings.auth)
        .await
        .map_err(StartupError::Config)?;
    match settings.auth.mode {
        crate::auth::AuthMode::None => tracing::warn!(
            "AUTHENTICATION IS OFF (--auth none): any client may act as any userId; \
             for demos only, see docs/SECURITY.md"
        ),
        crate::auth::AuthMode::Dev => tracing::warn!(
            "--auth dev: anyone can mint a token for any user at POST /api/auth/dev-token; \
             for demos and tests only"
        ),
        crate::auth::AuthMode::Jwt => {}
    }
    let rate_limiter = Arc::new(crate::limits::ClientRateLimiter::new(settings.rate_limit));
    let replay_cache = Arc::new(crate::booking::replay_cache::ReplayCache::new(
        settings.idempotency.replay_cache_entries,
    ));
    Ok(AppState::new(crate::state::Parts {
        rate_limiter,
        replay_cache,
        settings: Arc::new(settings),
        coordinator,
        store,
        metrics,
        auth,
    }))
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Connects the dependencies and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let addr = settings.listen;
        let state = build_state(settings).await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        Ok(Self {
            listener,
            router: crate::routes::router(state.clone()),
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.settings.listen)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// One line for the operator: where it listens and what it runs on.
    pub fn describe(&self) -> String {
        let ui = match &self.state.settings.static_dir {
            Some(dir) => format!(", web front end from {}", dir.display()),
            None => String::new(),
        };
        let auth = match self.state.auth.mode() {
            crate::auth::AuthMode::None => "none: ANY CLIENT MAY ACT AS ANY USER",
            crate::auth::AuthMode::Dev => "dev tokens: demos only",
            crate::auth::AuthMode::Jwt => "jwt",
        };
        format!(
            "booking listening on http://{} (store: {}, coordinator: {}, auth: {auth}{ui})",
            self.local_addr(),
            self.state.store.backend(),
            self.state.coordinator.backend()
        )
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let purger = tokio::spawn(purge_expired_outcomes(self.state.store.clone()));
        let forgetter = tokio::spawn(forget_quiet_clients(self.state.rate_limiter.clone()));
        let limits = self.state.settings.connections;
        let served = crate::serve::serve(self.listener, self.router, limits, shutdown).await;
        purger.abort();
        forgetter.abort();
        served
    }
}

/// How often expired idempotency outcomes are deleted from the store.
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Keeps `idempotency_records` from growing without bound. Expired rows are
/// already ignored by lookups; this only reclaims their space.
async fn purge_expired_outcomes(store: Arc<dyn Store>) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        match store.purge_expired(chrono::Utc::now()).await {
            Ok(n) if n > 0 => tracing::info!(purged = n, "expired idempotency outcomes deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not purge expired idempotency outcomes"),
        }
    }
}

/// Keeps the rate limiter's table to the clients seen recently.
async fn forget_quiet_clients(limiter: Arc<crate::limits::ClientRateLimiter>) {
    let mut every = tokio::time::interval(crate::limits::FORGET_QUIET_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        limiter.forget_quiet_clients();
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
