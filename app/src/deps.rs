//! Calls to the dependencies (the coordinator and the store), each with a
//! deadline and a latency measurement.
//!
//! Every backend routes its calls through [`Guard::run`], so no Redis or
//! database call can hang a request: a call that misses its deadline becomes
//! [`DependencyError::Timeout`], which the HTTP layer answers with `503`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error type of the dependency layer (coordinator and store).
#[derive(Debug, thiserror::Error)]
pub enum DependencyError {
    /// The call did not finish within its deadline.
    #[error("{dependency} {operation} timed out after {after:?}")]
    Timeout {
        dependency: &'static str,
        operation: &'static str,
        after: Duration,
    },
    /// The dependency could not be reached or refused the call; retrying later may work.
    #[error("{dependency} {operation} unavailable: {source}")]
    Unavailable {
        dependency: &'static str,
        operation: &'static str,
        source: BoxError,
    },
    /// The dependency answered with something this service cannot use (a bug or corrupt data).
    #[error("{dependency} {operation} failed: {source}")]
    Internal {
        dependency: &'static str,
        operation: &'static str,
        source: BoxError,
    },
}

impl DependencyError {
    pub fn dependency(&self) -> &'static str {
        match self {
            Self::Timeout { dependency, .. }
            | Self::Unavailable { dependency, .. }
            | Self::Internal { dependency, .. } => dependency,
        }
    }

    /// True when the cause is transient and the client should retry.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Internal { .. })
    }
}

/// How a backend classifies its own client library's errors.
pub trait Classify {
    /// `true` when the error means "not reachable right now" rather than "broken".
    fn is_unavailable(&self) -> bool;
}

/// The least time start-up work gets before the process gives up.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Deadline and metrics for one dependency.
#[derive(Clone)]
pub struct Guard {
    pub dependency: &'static str,
    pub timeout: Duration,
    pub metrics: Arc<Metrics>,
}

impl Guard {
    pub fn new(dependency: &'static str, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            dependency,
            timeout,
            metrics,
        }
    }

    /// The same dependency with the deadline of start-up work (connecting,
    /// migrating): a request's deadline is tuned for the hot path, but a
    /// process that starts after a crash may have to wait for SQLite's WAL
    /// recovery or a database that is still coming up, and a replica that
    /// gives up after half a second never starts on a busy machine.
    pub fn for_startup(&self) -> Guard {
        Guard {
            timeout: self.timeout.max(STARTUP_TIMEOUT),
            ..self.clone()
        }
    }

    /// Runs one dependency call under the deadline and records its latency.
    pub async fn run<T, E, F>(&self, operation: &'static str, call: F) -> Result<T, DependencyError>
    where
        F: Future<Output = Result<T, E>>,
        E: Classify + std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, call).await;
        self.metrics
            .observe_dependency(self.dependency, operation, started.elapsed());
        match result {
            Err(_) => Err(DependencyError::Timeout {
                dependency: self.dependency,
                operation,
                after: self.timeout,
            }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.is_unavailable() => Err(DependencyError::Unavailable {
                dependency: self.dependency,
                operation,
                source: Box::new(e),
            }),
            Ok(Err(e)) => Err(DependencyError::Internal {
                dependency: self.dependency,
                operation,
                source: Box::new(e),
            }),
        }
    }

    /// An error for data the dependency returned but that makes no sense.
    pub fn corrupt(&self, operation: &'static str, what: impl Into<String>) -> DependencyError {
        DependencyError::Internal {
            dependency: self.dependency,
            operation,
            source: what.into().into(),
        }
    }
}
