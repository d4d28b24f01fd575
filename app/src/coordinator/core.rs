//! The in-process coordinator's logic: synchronous, and generic over its
//! lock and its clock.
//!
//! The service runs it on `std::sync::Mutex` and tokio's clock
//! ([`super::memory::MemoryCoordinator`]); the loom suites run the very same
//! code on loom's `Mutex` and a model clock that a thread can move forward,
//! so that TTL expiry can happen between any two steps of any caller
//! (`app/tests/loom.rs`, `app/tests/loom_protocol.rs`, `docs/PROOFS.md`).

use std::collections::HashMap;
use std::time::Duration;

use super::{Claim, CompletedRecord, Token};

/// Milliseconds on a monotonic clock.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// A mutual-exclusion cell (std's or loom's `Mutex`).
pub trait Guarded<T>: Send + Sync {
    fn new(value: T) -> Self;
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// A poisoned mutex only means another caller panicked mid-update; the
/// tables hold no invariant spanning two entries, so keep using them.
impl<T: Send> Guarded<T> for std::sync::Mutex<T> {
    fn new(value: T) -> Self {
        std::sync::Mutex::new(value)
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut guard = self.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

#[derive(Debug, Clone)]
enum RecordState {
    InProgress { owner: Token },
    Completed(CompletedRecord),
}

#[derive(Debug, Clone)]
struct Expiring<T> {
    value: T,
    expires_at: u64,
}

/// A map whose entries vanish at their deadline, like Redis keys with a TTL.
#[derive(Debug)]
struct ExpiringMap<T> {
    entries: HashMap<String, Expiring<T>>,
    /// Size after the last sweep; the next sweep waits until the map doubles.
    swept_len: usize,
}

/// No sweep below this size.
const SWEEP_FLOOR: usize = 1024;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<T> ExpiringMap<T> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
            swept_len: 0,
        }
    }

    fn get(&mut self, key: &str, now: u64) -> Option<&mut T> {
        if self.entries.get(key).is_some_and(|e| e.expires_at <= now) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key).map(|e| &mut e.value)
    }

    fn set(&mut self, key: &str, value: T, ttl: Duration, now: u64) {
        // Bounded memory: drop expired entries now and then, as Redis does.
        // Sweeping only when the map has doubled keeps the cost amortised
        // O(1) per write however many live entries there are (a sweep every
        // N writes cost O(size / N) each: 10 µs per write at a million keys).
        if self.entries.len() >= (2 * self.swept_len).max(SWEEP_FLOOR) {
            self.entries.retain(|_, e| e.expires_at > now);
            self.swept_len = self.entries.len();
        }
        self.entries.insert(
            key.to_owned(),
            Expiring {
                value,
                expires_at: now.saturating_add(millis(ttl)),
            },
        );
    }

    fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Idempotency records and locks.
pub struct Tables {
    records: ExpiringMap<RecordState>,
    locks: ExpiringMap<Token>,
}

impl Tables {
    pub fn new() -> Self {
        Self {
            records: ExpiringMap::new(),
            locks: ExpiringMap::new(),
        }
    }
}

impl Default for Tables {
    fn default() -> Self {
        Self::new()
    }
}

/// Same semantics as the Redis coordinator's scripts; each operation is one
/// critical section, as each script is one atomic Redis call.
pub struct CoordinatorCore<M, C> {
    tables: M,
    clock: C,
}

impl<M: Guarded<Tables>, C: Clock> CoordinatorCore<M, C> {
    pub fn new(clock: C) -> Self {
        Self {
            tables: M::new(Tables::new()),
            clock,
        }
    }

    /// Runs `f` in the critical section with the current time. The clock is
    /// read inside it, like Redis reads its own time inside a script: a
    /// caller holding an older reading could otherwise act on entries that
    /// another caller already expired at a later time (loom found this).
    fn at_now<R>(&self, f: impl FnOnce(&mut Tables, u64) -> R) -> R {
        self.tables.with(|t| f(t, self.clock.now_ms()))
    }

    pub fn claim(&self, key: &str, fingerprint: &str, lease: Duration) -> Claim {
        // Like Redis, the fingerprint that counts is the one stored on completion.
        let _ = fingerprint;
        self.at_now(|t, now| match t.records.get(key, now) {
            Some(RecordState::Completed(record)) => Claim::Completed(record.clone()),
            Some(RecordState::InProgress { .. }) => Claim::InProgress,
            None => {
                let token = Token::new();
                let owner = token.clone();
                t.records
                    .set(key, RecordState::InProgress { owner }, lease, now);
                Claim::Acquired(token)
            }
        })
    }

    pub fn complete(
        &self,
        key: &str,
        token: &Token,
        record: &CompletedRecord,
        retention: Duration,
    ) -> bool {
        self.at_now(|t, now| {
            match t.records.get(key, now) {
                Some(RecordState::InProgress { owner }) if owner == token => {}
                _ => return false,
            }
            let completed = RecordState::Completed(record.clone());
            t.records.set(key, completed, retention, now);
            true
        })
    }

    pub fn release(&self, key: &str, token: &Token) -> bool {
        self.at_now(|t, now| match t.records.get(key, now) {
            Some(RecordState::InProgress { owner }) if owner == token => {
                t.records.remove(key);
                true
            }
            _ => false,
        })
    }

    pub fn forget(&self, key: &str) {
        self.tables.with(|t| t.records.remove(key));
    }

    pub fn lock(&self, name: &str, ttl: Duration) -> Option<Token> {
        self.at_now(|t, now| {
            if t.locks.get(name, now).is_some() {
                return None;
            }
            let token = Token::new();
            t.locks.set(name, token.clone(), ttl, now);
            Some(token)
        })
    }

    pub fn unlock(&self, name: &str, token: &Token) -> bool {
        self.at_now(|t, now| match t.locks.get(name, now) {
            Some(holder) if holder == token => {
                t.locks.remove(name);
                true
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_swept_as_the_map_grows() {
        let mut map = ExpiringMap::new();
        let ttl = Duration::from_millis(10);
        for i in 0..SWEEP_FLOOR {
            map.set(&format!("old{i}"), (), ttl, 0);
        }
        // Everything above has expired by t = 100; growing past the floor sweeps it.
        for i in 0..10 {
            map.set(&format!("new{i}"), (), ttl, 100);
        }
        assert!(
            map.entries.len() <= 10,
            "{} entries left",
            map.entries.len()
        );
    }

    #[test]
    fn live_entries_survive_sweeps() {
        let mut map = ExpiringMap::new();
        for i in 0..3 * SWEEP_FLOOR {
            map.set(&format!("k{i}"), i, Duration::from_secs(60), 0);
        }
        assert_eq!(map.entries.len(), 3 * SWEEP_FLOOR);
        assert_eq!(map.get("k0", 1).copied(), Some(0));
    }
}
