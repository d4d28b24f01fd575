//! The in-process coordinator used by the embedded default.
//!
//! Same semantics as the Redis one, TTLs included. Time comes from
//! `tokio::time::Instant`, so tests can pause and advance the clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Claim, CompletedRecord, Coordinator, Token};
use crate::deps::DependencyError;

#[derive(Debug, Clone)]
enum RecordState {
    InProgress { owner: Token },
    Completed(CompletedRecord),
}

#[derive(Debug, Clone)]
struct Expiring<T> {
    value: T,
    expires_at: Instant,
}

/// A map whose entries vanish at their deadline, like Redis keys with a TTL.
#[derive(Debug)]
struct ExpiringMap<T> {
    entries: HashMap<String, Expiring<T>>,
    writes_since_sweep: usize,
}

const SWEEP_EVERY: usize = 1024;

impl<T> ExpiringMap<T> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
            writes_since_sweep: 0,
        }
    }

    fn get(&mut self, key: &str) -> Option<&mut T> {
        let now = Instant::now();
        if self.entries.get(key).is_some_and(|e| e.expires_at <= now) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key).map(|e| &mut e.value)
    }

    fn set(&mut self, key: &str, value: T, ttl: Duration) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            // Bounded memory: drop expired entries now and then, as Redis does.
            let now = Instant::now();
            self.entries.retain(|_, e| e.expires_at > now);
            self.writes_since_sweep = 0;
        }
        self.entries.insert(
            key.to_owned(),
            Expiring {
                value,
                expires_at: Instant::now() + ttl,
            },
        );
    }

    fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

pub struct MemoryCoordinator {
    records: Mutex<ExpiringMap<RecordState>>,
    locks: Mutex<ExpiringMap<Token>>,
}

impl Default for MemoryCoordinator {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCoordinator {
    pub fn new() -> Self {
        Self {
            records: Mutex::new(ExpiringMap::new()),
            locks: Mutex::new(ExpiringMap::new()),
        }
    }
}

/// A poisoned mutex only means another request panicked mid-update; the
/// maps hold no invariant spanning two entries, so keep using them.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let mut records = lock(&self.records);
        match records.get(key) {
            Some(RecordState::Completed(record)) => Ok(Claim::Completed(record.clone())),
            Some(RecordState::InProgress { .. }) => Ok(Claim::InProgress),
            None => {
                // Like Redis, the fingerprint that counts is the one stored on completion.
                let _ = fingerprint;
                let token = Token::new();
                records.set(
                    key,
                    RecordState::InProgress {
                        owner: token.clone(),
                    },
                    lease,
                );
                Ok(Claim::Acquired(token))
            }
        }
    }

    async fn complete(
        &self,
        key: &str,
        token: &Token,
        record: &CompletedRecord,
        retention: Duration,
    ) -> Result<bool, DependencyError> {
        let mut records = lock(&self.records);
        match records.get(key) {
            Some(RecordState::InProgress { owner }) if owner == token => {}
            _ => return Ok(false),
        }
        records.set(key, RecordState::Completed(record.clone()), retention);
        Ok(true)
    }

    async fn release(&self, key: &str, token: &Token) -> Result<bool, DependencyError> {
        let mut records = lock(&self.records);
        match records.get(key) {
            Some(RecordState::InProgress { owner, .. }) if owner == token => {
                records.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn forget(&self, key: &str) -> Result<(), DependencyError> {
        lock(&self.records).remove(key);
        Ok(())
    }

    async fn lock(&self, name: &str, ttl: Duration) -> Result<Option<Token>, DependencyError> {
        let mut locks = lock(&self.locks);
        if locks.get(name).is_some() {
            return Ok(None);
        }
        let token = Token::new();
        locks.set(name, token.clone(), ttl);
        Ok(Some(token))
    }

    async fn unlock(&self, name: &str, token: &Token) -> Result<bool, DependencyError> {
        let mut locks = lock(&self.locks);
        match locks.get(name) {
            Some(holder) if holder == token => {
                locks.remove(name);
                Ok(true)
            }
            _ => Ok(false),
        }
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
                response: created()
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
