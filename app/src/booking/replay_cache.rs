//! Step 3's shortcut: a bounded in-process cache of completed client-key
//! outcomes, so that a replay is answered without a round trip to Redis.
//!
//! Why it is exact, not merely likely right:
//!
//! - A client key's outcome never changes while the store keeps it: the
//!   store only ever replaces a key's row once its `expires_at` has passed
//!   (the takeover in step 5), and nothing else writes it. A cancel changes
//!   the booking, not the key's remembered answer.
//! - So a copy may answer until that `expires_at` and no longer. An entry
//!   is only made from a record that carries the store's own expiry
//!   ([`CompletedRecord::expires_at`]: known when this replica committed
//!   the outcome, or read back from the store or from a Redis record that a
//!   replica wrote with it), and it dies [`CLOCK_MARGIN`] before it. A
//!   record without it (an old Redis record, one rebuilt from an unknown
//!   expiry) is never cached.
//! - Derived keys are never cached: a cancel on any replica deletes the
//!   derived outcomes of its slot before they expire.
//!
//! Only keys that come back are kept: an outcome is cached when it is
//! replayed (from Redis or the store), not when it is first decided, so the
//! memory goes to the keys clients actually retry (a retry storm, a double
//! click), and a create pays nothing for it.
//!
//! Losing Redis does not matter to it (the entries were true when made and
//! stay true until their deadline), and a replica that restarts starts
//! empty. Memory is bounded by the entry count (`--replay-cache-entries`),
//! about 0.6 KB each; 0 switches the cache off.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::key::{KeyKind, ResolvedKey};
use crate::coordinator::CompletedRecord;

/// How much earlier than the store's expiry an entry dies. The expiry was
/// computed on the clock of the replica that committed the outcome, and the
/// store compares it with the clock of whichever replica asks next; the
/// replicas' clocks must agree within this margin (NTP keeps them within
/// milliseconds).
pub const CLOCK_MARGIN: Duration = Duration::from_secs(1);

struct Entry {
    record: CompletedRecord,
    /// On the wall clock, as the store's `expires_at` is: a replica whose
    /// clock steps forward drops the entry with it.
    deadline: DateTime<Utc>,
}

/// Completed client-key outcomes by record name, each until its deadline.
pub struct ReplayCache {
    /// `None`: switched off (capacity 0).
    entries: Option<quick_cache::sync::Cache<String, Arc<Entry>>>,
}

impl ReplayCache {
    /// A cache of at most `capacity` outcomes (0: none is kept).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// The outcome cached for `key`, if it is still before its deadline.
    pub fn get(&self, key: &ResolvedKey) -> Option<CompletedRecord> {
        let entries = self.entries.as_ref()?;
        if key.scope.kind != KeyKind::Client {
            return None;
        }
        let entry = entries.get(&key.record)?;
        if Utc::now() < entry.deadline {
            return Some(entry.record.clone());
        }
        // Only this entry: another request may have put a fresh one there.
        entries.remove_if(&key.record, |e| Arc::ptr_eq(e, &entry));
        None
    }

    /// Keeps `record`, the completed outcome of `key`, until
    /// [`CLOCK_MARGIN`] before the store forgets it (see the module's doc
    /// for why that is the limit). Anything else is not kept.
    pub fn remember(&self, key: &ResolvedKey, record: &CompletedRecord) {
        let Some(entries) = &self.entries else { return };
        if key.scope.kind != KeyKind::Client {
            return;
        }
        let now = Utc::now();
        let deadline = if seeded_bug!(ReplayCacheOutlivesStore) {
            // Seeded bug: "an outcome never changes, so keep it for the
            // key's retention", counted from now instead of from the commit.
            let retention = if record.response.status == 201 {
                key.retention
            } else {
                key.refusal_retention
            };
            TimeDelta::from_std(retention)
                .ok()
                .and_then(|r| now.checked_add_signed(r))
        } else {
            TimeDelta::from_std(CLOCK_MARGIN)
                .ok()
                .and_then(|margin| record.expires_at?.checked_sub_signed(margin))
        };
        let Some(deadline) = deadline.filter(|d| *d > now) else {
            return;
        };
        entries.insert(
            key.record.clone(),
            Arc::new(Entry {
                record: record.clone(),
                deadline,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::KeyScope;
    use crate::response::StoredResponse;

    fn key(kind: KeyKind) -> ResolvedKey {
        let scope = KeyScope {
            user_id: crate::domain::UserId::parse("alice").expect("user"),
            kind,
            key: "k1".into(),
        };
        ResolvedKey {
            record: scope.record_name(),
            scope,
            retention: Duration::from_secs(3600),
            refusal_retention: Duration::from_secs(600),
            fingerprint: "fp".into(),
        }
    }

    fn record(expires_in: Option<TimeDelta>) -> CompletedRecord {
        CompletedRecord {
            fingerprint: "fp".into(),
            response: StoredResponse {
                status: 201,
                body: "{}".into(),
            },
            expires_at: expires_in.map(|d| Utc::now() + d),
        }
    }

    #[test]
    fn a_client_outcome_is_kept_until_just_before_the_store_forgets_it() {
        let cache = ReplayCache::new(16);
        let k = key(KeyKind::Client);
        let r = record(Some(TimeDelta::minutes(5)));
        cache.remember(&k, &r);
        assert_eq!(cache.get(&k), Some(r));
    }

    #[test]
    fn nothing_is_kept_without_the_stores_expiry_or_too_close_to_it() {
        let cache = ReplayCache::new(16);
        let k = key(KeyKind::Client);
        cache.remember(&k, &record(None));
        assert_eq!(cache.get(&k), None, "unknown expiry");
        cache.remember(&k, &record(Some(TimeDelta::milliseconds(900))));
        assert_eq!(cache.get(&k), None, "within the clock margin");
        cache.remember(&k, &record(Some(TimeDelta::seconds(-5))));
        assert_eq!(cache.get(&k), None, "already expired");
    }

    #[test]
    fn an_entry_dies_at_its_deadline() {
        let cache = ReplayCache::new(16);
        let k = key(KeyKind::Client);
        // Kept for one second: the first read comes at once, the second after.
        cache.remember(&k, &record(Some(TimeDelta::milliseconds(2_000))));
        assert!(cache.get(&k).is_some());
        std::thread::sleep(Duration::from_millis(1_200));
        assert_eq!(cache.get(&k), None);
    }

    #[test]
    fn derived_keys_and_a_switched_off_cache_keep_nothing() {
        let cache = ReplayCache::new(16);
        let k = key(KeyKind::Derived);
        cache.remember(&k, &record(Some(TimeDelta::minutes(5))));
        assert_eq!(cache.get(&k), None);
        let off = ReplayCache::new(0);
        let k = key(KeyKind::Client);
        off.remember(&k, &record(Some(TimeDelta::minutes(5))));
        assert_eq!(off.get(&k), None);
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity() {
        let cache = ReplayCache::new(8);
        let mut k = key(KeyKind::Client);
        for i in 0..100 {
            k.record = format!("k{i}");
            cache.remember(&k, &record(Some(TimeDelta::minutes(5))));
        }
        let kept = cache.entries.as_ref().map_or(0, |c| c.len());
        assert!(kept <= 8, "{kept} entries kept");
    }
}
