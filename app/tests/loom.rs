//! Model checking with loom, part 1: every interleaving of concurrent callers,
//! within a preemption bound, including TTL expiry at any point.
//!
//! This suite checks the in-process coordinator ([`CoordinatorCore`], the very
//! code the service runs) on loom's `Mutex` and a model clock.
//! The whole protocol is checked in `loom_protocol.rs`.
//!
//! See `docs/PROOFS.md` for what is proved, within which bounds, and the
//! mapping from model steps to the service's code.

use booking::coordinator::core::Clock;
use booking::coordinator::{Claim, Token};
use loom::sync::Arc;
use loom::thread;

mod loom_support;

use loom_support::*;

// ----------------------------------------------------------------------------
// Part 1: the coordinator

/// Claimers race for one key while its lease may expire at any point: at
/// most one of them completes it, and the completed record is the one a
/// later claim sees; a stale owner can neither complete nor release.
fn claims_race(callers: usize) -> usize {
    model(
        &format!("coordinator claim/complete, {callers} callers + expiry"),
        2,
        move || {
            let clock = ModelClock::new();
            let core = Arc::new(Core::new(clock.clone()));
            let handles: Vec<_> = (0..callers)
                .map(|i| {
                    let core = core.clone();
                    thread::spawn(move || match core.claim("k", "fp", LEASE) {
                        Claim::Acquired(token) => {
                            let done =
                                core.complete("k", &token, &record(&format!("r{i}")), RETENTION);
                            // Release after completion must never remove the record.
                            assert!(!core.release("k", &token), "released a completed record");
                            done.then(|| format!("r{i}"))
                        }
                        _ => None,
                    })
                })
                .collect();
            let expiry = {
                let clock = clock.clone();
                thread::spawn(move || clock.advance(EXPIRE))
            };
            let winners: Vec<String> = handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect();
            let _ = expiry.join();
            assert!(
                winners.len() <= 1,
                "two owners completed one key: {winners:?}"
            );
            match (winners.first(), core.claim("k", "fp", LEASE)) {
                (Some(w), Claim::Completed(r)) => {
                    assert_eq!(&r.response.body, w, "a stale owner overwrote the record")
                }
                (Some(w), other) => panic!("{w} completed but a later claim sees {other:?}"),
                (None, Claim::Completed(r)) => panic!("a record {r:?} completed without a winner"),
                (None, _) => {}
            }
        },
    )
}

#[test]
fn two_claimers_never_both_own_a_key() {
    assert!(claims_race(2) > 10);
}

#[test]
fn three_claimers_never_both_own_a_key() {
    assert!(claims_race(3) > 10);
}

/// Lockers race for one slot; none unlocks, so two grants at the same model
/// time would be two holders at once. A stale holder's unlock never frees
/// the lock of the one that took over after expiry.
fn locks_race(callers: usize) -> usize {
    model(
        &format!("coordinator lock/unlock, {callers} callers + expiry"),
        2,
        move || {
            let clock = ModelClock::new();
            let core = Arc::new(Core::new(clock.clone()));
            let handles: Vec<_> = (0..callers)
                .map(|_| {
                    let (core, clock) = (core.clone(), clock.clone());
                    thread::spawn(move || {
                        let before = clock.now_ms();
                        let grant = core.lock("slot", LOCK_TTL);
                        // The grant happened at a time in [before, after].
                        grant.map(|t| (t, before, clock.now_ms()))
                    })
                })
                .collect();
            let expiry = {
                let clock = clock.clone();
                thread::spawn(move || clock.advance(EXPIRE))
            };
            let grants: Vec<(Token, u64, u64)> = handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect();
            let _ = expiry.join();
            let surely_at_zero = grants.iter().filter(|(_, _, after)| *after == 0).count();
            assert!(surely_at_zero <= 1, "two unexpired holders of one lock");
            assert!(
                grants.len() <= 2,
                "a lock was granted more than once per TTL"
            );
            if let [a, b] = grants.as_slice() {
                // One grant came after the other expired; when the order is
                // known, the stale holder's unlock must fail and leave the lock.
                let order = if a.2 == 0 || b.1 > 0 {
                    Some((a, b))
                } else if b.2 == 0 || a.1 > 0 {
                    Some((b, a))
                } else {
                    None
                };
                if let Some((stale, current)) = order {
                    assert!(
                        !core.unlock("slot", &stale.0),
                        "a stale holder freed the lock"
                    );
                    assert!(
                        core.lock("slot", LOCK_TTL).is_none(),
                        "the current holder lost its lock"
                    );
                    assert!(core.unlock("slot", &current.0));
                } else {
                    let freed = [core.unlock("slot", &a.0), core.unlock("slot", &b.0)];
                    assert_eq!(
                        freed.iter().filter(|f| **f).count(),
                        1,
                        "exactly one current holder"
                    );
                }
            }
        },
    )
}

#[test]
fn two_lockers_never_hold_one_slot_at_once() {
    assert!(locks_race(2) > 10);
}

#[test]
fn three_lockers_never_hold_one_slot_at_once() {
    assert!(locks_race(3) > 10);
}

#[test]
fn release_by_a_non_holder_never_frees_the_claim() {
    let n = model("coordinator release by non-holder", 3, || {
        let clock = ModelClock::new();
        let core = Arc::new(Core::new(clock.clone()));
        let first = match core.claim("k", "fp", LEASE) {
            Claim::Acquired(t) => t,
            other => panic!("{other:?}"),
        };
        let racer = {
            let core = core.clone();
            thread::spawn(move || core.claim("k", "fp", LEASE))
        };
        let stale_release = {
            let core = core.clone();
            thread::spawn(move || core.release("k", &Token("not-the-owner".into())))
        };
        let expiry = {
            let clock = clock.clone();
            thread::spawn(move || clock.advance(EXPIRE))
        };
        let raced = racer.join().expect("racer");
        assert!(
            !stale_release.join().expect("release"),
            "a non-owner released the claim"
        );
        let _ = expiry.join();
        if let Claim::Acquired(second) = raced {
            // The racer took over only after the lease expired: the first owner is stale.
            assert!(!core.complete("k", &first, &record("stale"), RETENTION));
            assert!(core.complete("k", &second, &record("fresh"), RETENTION));
        }
    });
    assert!(n > 10);
}
