//! The coordinator: idempotency records and slot locks.
//!
//! It makes the common path fast (a completed key is replayed without
//! touching the database) and keeps concurrent work apart (one in-flight
//! request per key, one per slot). It is never the source of truth: if it
//! loses everything, the store still answers every retry correctly.
//!
//! Two implementations share these semantics, TTLs included:
//! [`redis::RedisCoordinator`] for deployments and
//! [`memory::MemoryCoordinator`] for the embedded default.

pub mod core;
pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::deps::DependencyError;
use crate::response::StoredResponse;

/// Identifies the holder of a claim or lock; only the holder can finish or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl Token {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

impl Default for Token {
    fn default() -> Self {
        Self::new()
    }
}

/// A definitive outcome remembered for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedRecord {
    pub fingerprint: String,
    pub response: StoredResponse,
    /// When the store stops answering with this outcome (its row's
    /// `expires_at`), where known: a replica may cache the outcome until
    /// then (`booking::replay_cache`). `None` for an outcome whose store
    /// expiry is unknown; it is never cached.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The result of trying to claim an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This request now owns the key, until its lease runs out.
    Acquired(Token),
    /// Another request owns the key and has not finished.
    InProgress,
    /// The key already has a definitive outcome.
    Completed(CompletedRecord),
}

#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// `redis` or `memory`, for logs, metrics and readiness.
    fn backend(&self) -> &'static str;

    async fn ping(&self) -> Result<(), DependencyError>;

    /// Atomically: replay a completed record, report an in-flight one, or
    /// take the key for `lease` (so a crashed owner cannot block it for long).
    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
    ) -> Result<Claim, DependencyError>;

    /// Marks the key completed with `record`, kept for `retention`, but only
    /// if `token` still owns the in-flight claim. Returns whether it did.
    async fn complete(
        &self,
        key: &str,
        token: &Token,
        record: &CompletedRecord,
        retention: Duration,
    ) -> Result<bool, DependencyError>;

    /// Drops an in-flight claim owned by `token`, so that a retry runs again.
    async fn release(&self, key: &str, token: &Token) -> Result<bool, DependencyError>;

    /// Removes whatever record `key` has (used when a cancel invalidates it).
    async fn forget(&self, key: &str) -> Result<(), DependencyError>;

    /// Takes the lock `name` for `ttl`, or returns `None` if someone holds it.
    async fn lock(&self, name: &str, ttl: Duration) -> Result<Option<Token>, DependencyError>;

    /// Releases the lock only if `token` still holds it (compare-and-delete).
    async fn unlock(&self, name: &str, token: &Token) -> Result<bool, DependencyError>;

    /// Steps 3 and 4 at once: [`Self::claim`] the key and, only if this
    /// request now owns it, [`Self::lock`] the slot (`None`: someone holds
    /// it). Redis runs both in one script, one round trip; here they run one
    /// after the other, and a failed lock gives the claim back, so that a
    /// retry is not kept waiting for the lease.
    async fn claim_and_lock(
        &self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        lock: &str,
        ttl: Duration,
    ) -> Result<(Claim, Option<Token>), DependencyError> {
        let claim = self.claim(key, fingerprint, lease).await?;
        let Claim::Acquired(token) = &claim else {
            return Ok((claim, None));
        };
        match self.lock(lock, ttl).await {
            Ok(held) => Ok((claim, held)),
            Err(e) => {
                let _ = self.release(key, token).await;
                Err(e)
            }
        }
    }

    /// Step 6 at once: [`Self::complete`] the key (if `token` still owns it)
    /// and [`Self::unlock`] the slot (if `lock_token` still holds it).
    /// Redis runs both in one script; here, one after the other, the lock
    /// released whatever became of the completion. Returns whether the key
    /// was completed.
    async fn complete_and_unlock(
        &self,
        key: &str,
        token: &Token,
        record: &CompletedRecord,
        retention: Duration,
        lock: &str,
        lock_token: &Token,
    ) -> Result<bool, DependencyError> {
        let completed = self.complete(key, token, record, retention).await;
        self.unlock(lock, lock_token).await?;
        completed
    }
}
