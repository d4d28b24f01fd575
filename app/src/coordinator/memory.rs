//! The in-process coordinator used by the embedded default.
//!
//! Same semantics as the Redis one, TTLs included: [`super::core`] on a
//! `std::sync::Mutex`, with time from `tokio::time::Instant`, so tests can
//! pause and advance the clock.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::core::{Clock, CoordinatorCore};
use super::{Claim, CompletedRecord, Coordinator, Token};
use crate::deps::DependencyError;

/// tokio's clock, in milliseconds since the coordinator was created.
pub struct TokioClock {
    start: Instant,
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

pub struct MemoryCoordinator {
    core: CoordinatorCore<std::sync::Mutex<super::core::Tables>, TokioClock>,
}

impl Default for MemoryCoordinator {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCoordinator {
    pub fn new() -> Self {
        Self {
            core: CoordinatorCore::new(TokioClock {
                start: Instant::now(),
            }),
        }
    }
}

#[async_trait]
impl Coordinator for MemoryCoordinator {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), DependencyError> {
        Ok(())
    }

    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
    ) -> Result<Claim, DependencyError> {
        Ok(self.core.claim(key, fingerprint, lease))
    }

    async fn complete(
        &self,
        key: &str,
        token: &Token,
        record: &CompletedRecord,
        retention: Duration,
    ) -> Result<bool, DependencyError> {
        Ok(self.core.complete(key, token, record, retention))
    }

    async fn release(&self, key: &str, token: &Token) -> Result<bool, DependencyError> {
        Ok(self.core.release(key, token))
    }

    async fn forget(&self, key: &str) -> Result<(), DependencyError> {
        self.core.forget(key);
        Ok(())
    }

    async fn lock(&self, name: &str, ttl: Duration) -> Result<Option<Token>, DependencyError> {
        Ok(self.core.lock(name, ttl))
    }

    async fn unlock(&self, name: &str, token: &Token) -> Result<bool, DependencyError> {
        Ok(self.core.unlock(name, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::StoredResponse;

    fn created() -> StoredResponse {
        StoredResponse {
            status: 201,
            body: "{}".into(),
        }
    }

    fn rec(response: StoredResponse) -> CompletedRecord {
        CompletedRecord {
            fingerprint: "fp".into(),
            response,
            expires_at: None,
        }
    }

    const LEASE: Duration = Duration::from_secs(30);
    const DAY: Duration = Duration::from_secs(86_400);

    #[tokio::test(start_paused = true)]
    async fn a_claim_is_exclusive_until_completed_then_replays() {
        let c = MemoryCoordinator::new();
        let Claim::Acquired(token) = c.claim("k", "fp", LEASE).await.expect("claim") else {
            panic!("first claim must be acquired");
        };
        assert_eq!(
            c.claim("k", "fp", LEASE).await.expect("claim"),
            Claim::InProgress
        );
        assert!(c
            .complete("k", &token, &rec(created()), DAY)
            .await
            .expect("complete"));
        assert_eq!(
            c.claim("k", "other", LEASE).await.expect("claim"),
            Claim::Completed(CompletedRecord {
                fingerprint: "fp".into(),
                response: created(),
                expires_at: None,
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_so_a_crashed_owner_cannot_block_the_key() {
        let c = MemoryCoordinator::new();
        let Claim::Acquired(stale) = c.claim("k", "fp", LEASE).await.expect("claim") else {
            panic!("first claim must be acquired");
        };
        tokio::time::advance(LEASE + Duration::from_millis(1)).await;
        let Claim::Acquired(fresh) = c.claim("k", "fp", LEASE).await.expect("claim") else {
            panic!("expired lease must be claimable");
        };
        // The stale owner can neither complete nor release the new claim.
        assert!(!c
            .complete("k", &stale, &rec(created()), DAY)
            .await
            .expect("complete"));
        assert!(!c.release("k", &stale).await.expect("release"));
        assert!(c
            .complete("k", &fresh, &rec(created()), DAY)
            .await
            .expect("complete"));
    }

    #[tokio::test(start_paused = true)]
    async fn completed_records_expire_after_their_retention() {
        let c = MemoryCoordinator::new();
        let Claim::Acquired(t) = c.claim("k", "fp", LEASE).await.expect("claim") else {
            panic!("acquire");
        };
        c.complete("k", &t, &rec(created()), Duration::from_secs(120))
            .await
            .expect("complete");
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(matches!(
            c.claim("k", "fp", LEASE).await.expect("claim"),
            Claim::Completed(_)
        ));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(
            c.claim("k", "fp", LEASE).await.expect("claim"),
            Claim::Acquired(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_completed_record_is_never_overwritten_or_released() {
        let c = MemoryCoordinator::new();
        let Claim::Acquired(t) = c.claim("k", "fp", LEASE).await.expect("claim") else {
            panic!("acquire");
        };
        assert!(c
            .complete("k", &t, &rec(created()), DAY)
            .await
            .expect("complete"));
        let other = StoredResponse {
            status: 409,
            body: "x".into(),
        };
        assert!(!c
            .complete("k", &t, &rec(other), DAY)
            .await
            .expect("complete"));
        assert!(!c.release("k", &t).await.expect("release"));
        assert!(matches!(
            c.claim("k", "fp", LEASE).await.expect("claim"),
            Claim::Completed(r) if r.response == created()
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn unlock_by_a_non_holder_never_frees_the_lock() {
        let c = MemoryCoordinator::new();
        let ttl = Duration::from_secs(5);
        let first = c.lock("slot", ttl).await.expect("lock").expect("free");
        assert!(c.lock("slot", ttl).await.expect("lock").is_none());
        tokio::time::advance(ttl + Duration::from_millis(1)).await;
        let second = c
            .lock("slot", ttl)
            .await
            .expect("lock")
            .expect("expired lock is free");
        assert!(!c.unlock("slot", &first).await.expect("unlock"));
        assert!(c.lock("slot", ttl).await.expect("lock").is_none());
        assert!(c.unlock("slot", &second).await.expect("unlock"));
        assert!(c.lock("slot", ttl).await.expect("lock").is_some());
    }
}
