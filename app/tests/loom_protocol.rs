//! Model checking with loom, part 2: an abstract model of the whole
//! `POST /api/bookings` protocol, step by step as in
//! `app/src/booking/create.rs`, over the real in-process coordinator and a
//! model of the database (bookings with the unique partial index, and the
//! idempotency outcome stored in the booking's transaction).
//!
//! Requests are loom threads; a crash at any step is a choice made per model
//! run; lock and lease expiry is a thread that may fire between any two
//! steps. After the threads, every request that crashed or got a retryable
//! answer retries with its key, and every key is replayed once, as clients
//! would. Then the invariants are checked:
//!
//! 1. at most one confirmed booking per slot;
//! 2. no lost acknowledged booking (every 201's booking exists);
//! 3. identical definitive answers per key;
//! 4. at most one booking per key;
//! 5. a retry after a crash returns the key's committed outcome.
//!
//! The variants with the original flow's ordering and without the unique
//! index must fail: those tests assert a counterexample and print it.

mod loom_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex as StdMutex;

use booking::coordinator::core::Guarded;
use booking::coordinator::{Claim, CompletedRecord};
use booking::response::StoredResponse;
use loom::sync::Arc;
use loom::thread;
use loom_support::*;

/// Where a request may crash: the failpoints of the service, same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    AfterClaim,
    AfterLock,
    BeforeCommit,
    AfterCommitBeforeFinalize,
    BeforeLockRelease,
}

const CRASHES: [Option<Crash>; 6] = [
    None,
    Some(Crash::AfterClaim),
    Some(Crash::AfterLock),
    Some(Crash::BeforeCommit),
    Some(Crash::AfterCommitBeforeFinalize),
    Some(Crash::BeforeLockRelease),
];

/// Which protocol to model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The service: commit first, then finalize and unlock.
    Service,
    /// The original flow: finalize and unlock before the transaction commits.
    OriginalOrdering,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    id: String,
    key: String,
    slot: String,
}

/// The database: the booking transaction is atomic (one critical section),
/// as PostgreSQL makes it for these rows (the key's primary key and the
/// slot's unique index serialise conflicting transactions).
#[derive(Default)]
struct Db {
    unique_index: bool,
    bookings: Vec<Row>,
    outcomes: HashMap<String, StoredResponse>,
}

impl Db {
    /// `Store::book`: the key's earlier outcome, or insert (unless the unique
    /// index refuses the slot) and record the outcome.
    fn book(
        &mut self,
        key: &str,
        id: &str,
        slot: &str,
        created: &StoredResponse,
        already: &StoredResponse,
    ) -> StoredResponse {
        if let Some(earlier) = self.outcomes.get(key) {
            return earlier.clone();
        }
        let taken = self.unique_index && self.bookings.iter().any(|b| b.slot == slot);
        let outcome = if taken {
            already.clone()
        } else {
            self.bookings.push(Row {
                id: id.into(),
                key: key.into(),
                slot: slot.into(),
            });
            created.clone()
        };
        self.outcomes.insert(key.into(), outcome.clone());
        outcome
    }
}

struct World {
    coordinator: Core,
    db: LoomMutex<Db>,
    clock: ModelClock,
    flow: Flow,
    /// What happened, in order, to print a counterexample. A std mutex: the
    /// trace is not part of the model and must not add interleavings.
    trace: StdMutex<Vec<String>>,
}

fn respond(status: u16, body: String) -> StoredResponse {
    StoredResponse { status, body }
}

impl World {
    fn new(flow: Flow, unique_index: bool) -> World {
        let clock = ModelClock::new();
        World {
            coordinator: Core::new(clock.clone()),
            db: LoomMutex::new(Db {
                unique_index,
                ..Db::default()
            }),
            clock,
            flow,
            trace: StdMutex::new(Vec::new()),
        }
    }

    fn note(&self, who: &str, what: String) {
        if let Ok(mut t) = self.trace.lock() {
            t.push(format!("{who}: {what}"));
        }
    }

    fn finalize(&self, key: &str, token: &booking::coordinator::Token, response: &StoredResponse) {
        let record = CompletedRecord {
            fingerprint: "fp".into(),
            response: response.clone(),
            expires_at: None,
        };
        let done = self.coordinator.complete(key, token, &record, RETENTION);
        self.note(key, format!("finalize {} -> {done}", response.body));
    }

    /// `create_booking`, step by step. `None`: the request crashed.
    fn create(
        &self,
        who: &str,
        key: &str,
        slot: &str,
        crash: Option<Crash>,
    ) -> Option<StoredResponse> {
        let crashed = |at: Crash| {
            if crash == Some(at) {
                self.note(who, format!("CRASH {at:?}"));
                true
            } else {
                false
            }
        };
        // Step 3: claim.
        let token = match self.coordinator.claim(key, "fp", LEASE) {
            Claim::Completed(r) => {
                self.note(who, format!("claim {key} -> replay {}", r.response.body));
                return Some(r.response);
            }
            Claim::InProgress => {
                self.note(who, format!("claim {key} -> in progress"));
                return Some(respond(409, "IDEMPOTENCY_IN_PROGRESS".into()));
            }
            Claim::Acquired(token) => {
                self.note(who, format!("claim {key} -> acquired"));
                token
            }
        };
        if crashed(Crash::AfterClaim) {
            return None;
        }
        // Step 4: lock; when busy, the key's committed outcome if any.
        let lock = match self.coordinator.lock(slot, LOCK_TTL) {
            Some(lock) => lock,
            None => {
                let earlier = self.db.with(|db| db.outcomes.get(key).cloned());
                self.note(who, format!("lock {slot} -> busy, store has {earlier:?}"));
                return match earlier {
                    Some(outcome) => {
                        self.finalize(key, &token, &outcome);
                        Some(outcome)
                    }
                    None => {
                        self.coordinator.release(key, &token);
                        Some(respond(409, "RESOURCE_LOCKED".into()))
                    }
                };
            }
        };
        self.note(who, format!("lock {slot} -> held"));
        if crashed(Crash::AfterLock) {
            return None;
        }
        let created = respond(201, format!("booking {who}"));
        let already = respond(409, format!("ALREADY_BOOKED {slot}"));
        if self.flow == Flow::OriginalOrdering {
            self.finalize(key, &token, &created);
            self.coordinator.unlock(slot, &lock);
            self.note(who, format!("unlock {slot} before commit"));
        }
        if crashed(Crash::BeforeCommit) {
            return None;
        }
        // Step 5: one transaction.
        let outcome = self
            .db
            .with(|db| db.book(key, who, slot, &created, &already));
        self.note(who, format!("commit -> {}", outcome.body));
        if crashed(Crash::AfterCommitBeforeFinalize) {
            return None;
        }
        // Step 6: finalize, then unlock by compare-and-delete.
        self.finalize(key, &token, &outcome);
        if crashed(Crash::BeforeLockRelease) {
            return None;
        }
        let unlocked = self.coordinator.unlock(slot, &lock);
        self.note(who, format!("unlock {slot} -> {unlocked}"));
        Some(outcome)
    }
}

fn retryable(r: &Option<StoredResponse>) -> bool {
    match r {
        None => true,
        Some(r) => r.body == "IDEMPOTENCY_IN_PROGRESS" || r.body == "RESOURCE_LOCKED",
    }
}

fn definitive(r: &StoredResponse) -> bool {
    r.status == 201 || r.body.starts_with("ALREADY_BOOKED")
}

/// One request of a configuration: (name, key, slot).
type Request = (&'static str, &'static str, &'static str);

/// Model-checks `requests` (the first one crashing at `crash`), returning
/// the number of interleavings explored; panics with a counterexample.
fn check(
    requests: &'static [Request],
    crash: Option<Crash>,
    flow: Flow,
    unique_index: bool,
    bound: usize,
) -> usize {
    let name = format!(
        "{flow:?}, unique index {unique_index}, {} requests {requests:?}, crash {crash:?}",
        requests.len()
    );
    model(&name, bound, move || {
        let world = Arc::new(World::new(flow, unique_index));
        let handles: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(i, (who, key, slot))| {
                let world = world.clone();
                let crash = if i == 0 { crash } else { None };
                thread::spawn(move || world.create(who, key, slot, crash))
            })
            .collect();
        let expiry = {
            let world = world.clone();
            thread::spawn(move || {
                world.clock.advance(EXPIRE);
                world.note("clock", "leases and locks expire".into());
            })
        };
        let mut answers: Vec<(&str, &str, Option<StoredResponse>)> = requests
            .iter()
            .zip(handles)
            .map(|((who, key, _), h)| (*who, *key, h.join().ok().flatten()))
            .collect();
        let _ = expiry.join();

        // Clients retry what crashed or was retryable, after leases expire,
        // then replay every key once.
        world.clock.advance(EXPIRE);
        let mut retries = Vec::new();
        for (i, (who, key, slot)) in requests.iter().enumerate() {
            if retryable(&answers[i].2) {
                let retry = world.create(who, key, slot, None);
                retries.push((*key, retry.clone()));
                answers.push((who, key, retry));
            }
        }
        for (who, key, slot) in requests {
            let replay = world.create(who, key, slot, None);
            answers.push((who, key, replay));
        }

        let violation = world.db.with(|db| invariants(db, &answers, &retries));
        if let Some(violation) = violation {
            let trace = world
                .trace
                .lock()
                .map(|t| t.join("\n  "))
                .unwrap_or_default();
            panic!("VIOLATION: {violation}\ninterleaving:\n  {trace}");
        }
    })
}

/// The five invariants; the first that fails, if any.
fn invariants(
    db: &Db,
    answers: &[(&str, &str, Option<StoredResponse>)],
    retries: &[(&str, Option<StoredResponse>)],
) -> Option<String> {
    let mut per_slot: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &db.bookings {
        *per_slot.entry(&row.slot).or_default() += 1;
        *per_key.entry(&row.key).or_default() += 1;
    }
    if let Some((slot, n)) = per_slot.iter().find(|(_, n)| **n > 1) {
        return Some(format!("{n} confirmed bookings for slot {slot}"));
    }
    for (_, _, answer) in answers {
        if let Some(r) = answer.as_ref().filter(|r| r.status == 201) {
            let id = r.body.trim_start_matches("booking ");
            if !db.bookings.iter().any(|b| b.id == id) {
                return Some(format!(
                    "lost acknowledged booking: {} is not in the store",
                    r.body
                ));
            }
        }
    }
    let mut first: BTreeMap<&str, &StoredResponse> = BTreeMap::new();
    for (_, key, answer) in answers {
        if let Some(r) = answer.as_ref().filter(|r| definitive(r)) {
            if let Some(earlier) = first.insert(key, r) {
                if earlier != r {
                    return Some(format!(
                        "key {key} answered differently: {} vs {}",
                        earlier.body, r.body
                    ));
                }
            }
        }
    }
    if let Some((key, n)) = per_key.iter().find(|(_, n)| **n > 1) {
        return Some(format!("key {key} has {n} bookings"));
    }
    for (key, retry) in retries {
        if retry.as_ref() != db.outcomes.get(*key) {
            return Some(format!(
                "the retry of {key} got {retry:?}, the store holds {:?}",
                db.outcomes.get(*key)
            ));
        }
    }
    None
}

const SAME_KEY: &[Request] = &[("A", "k1", "slot"), ("B", "k1", "slot")];
const DIFFERENT_KEYS: &[Request] = &[("A", "k1", "slot"), ("B", "k2", "slot")];
const THREE: &[Request] = &[
    ("A", "k1", "slot"),
    ("B", "k1", "slot"),
    ("C", "k2", "slot"),
];

#[test]
fn two_requests_with_one_key_keep_every_invariant_under_any_crash() {
    let explored: usize = CRASHES
        .iter()
        .map(|c| check(SAME_KEY, *c, Flow::Service, true, 2))
        .sum();
    println!("loom: same key, all crash points: {explored} interleavings in total");
    assert!(explored > 100);
}

#[test]
fn two_requests_with_different_keys_keep_every_invariant_under_any_crash() {
    let explored: usize = CRASHES
        .iter()
        .map(|c| check(DIFFERENT_KEYS, *c, Flow::Service, true, 2))
        .sum();
    println!("loom: different keys, all crash points: {explored} interleavings in total");
    assert!(explored > 100);
}

/// Three requests (two sharing a key, one competing for the slot): every
/// interleaving within two preemptions without a crash (~90 000), and one
/// preemption with a crash between commit and finalize, to stay within a
/// CI budget on two cores.
#[test]
fn three_requests_keep_every_invariant() {
    let explored = check(THREE, None, Flow::Service, true, 2)
        + check(
            THREE,
            Some(Crash::AfterCommitBeforeFinalize),
            Flow::Service,
            true,
            1,
        );
    println!("loom: three requests: {explored} interleavings in total");
    assert!(explored > 100);
}

/// Runs `f` and returns its panic message, if it panicked.
fn counterexample(f: impl FnOnce() -> usize + std::panic::UnwindSafe) -> Option<String> {
    let result = std::panic::catch_unwind(f);
    result.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn the_original_flows_ordering_has_a_counterexample() {
    let found = counterexample(|| check(DIFFERENT_KEYS, None, Flow::OriginalOrdering, true, 2))
        .expect("marking the key completed before the commit must break an invariant");
    println!("counterexample (original ordering, different keys):\n{found}");
    assert!(found.contains("VIOLATION"), "{found}");
    assert!(found.contains("interleaving"), "{found}");

    let crash = counterexample(|| {
        check(
            SAME_KEY,
            Some(Crash::BeforeCommit),
            Flow::OriginalOrdering,
            true,
            2,
        )
    })
    .expect("a crash before commit must expose the original ordering");
    println!("counterexample (original ordering, crash before commit):\n{crash}");
    assert!(crash.contains("lost acknowledged booking"), "{crash}");
}

#[test]
fn a_database_without_the_unique_index_has_a_counterexample() {
    let found = counterexample(|| check(DIFFERENT_KEYS, None, Flow::Service, false, 2))
        .expect("without the unique index two bookings of one slot must be possible");
    println!("counterexample (no unique index):\n{found}");
    assert!(found.contains("confirmed bookings for slot"), "{found}");
}
