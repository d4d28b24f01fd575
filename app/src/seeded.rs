//! The seeded-bug catalogue: realistic protocol bugs that can be switched on
//! in a replica, so that tests can prove the chaos harness catches each one.
//!
//! Compiled only with the `failpoints` feature (production binaries contain
//! none of it). `BOOKING_SEEDED_BUG=name[,name…]` switches bugs on, read once
//! at start; an unknown name stops the replica at start instead of running
//! a correct service that a test would then call "buggy". Call sites use the
//! [`seeded_bug!`](crate::seeded_bug) macro, which is `false` without the feature.
//!
//! Each entry says what the bug breaks and which checkers must catch it; the
//! harness reads [`CATALOGUE`] to run every scenario against every bug
//! (`booking-harness mutants`) and `docs/PROOFS.md` shows the latest matrix.

use std::sync::OnceLock;

/// One seeded bug. The variant names the protocol step it corrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    FinalizeBeforeCommit,
    ClaimLivesForRetention,
    RememberTransientAnswers,
    KeysGlobalAcrossUsers,
    RedisOnlyMemory,
    CancelKeepsDerivedKeys,
    CancelTrustsAssertedOwner,
    DuplicateReleasesLock,
    NoUniqueIndex,
    CommitErrorIgnored,
    CompensateAfterCommit,
    FingerprintIgnoresDate,
    StoreReplaySkipsFingerprint,
    AvailabilityCountsCancelled,
    ListIgnoresUser,
    DerivedKeyWithoutUser,
    AlreadyBookedNotRemembered,
    DerivedReplayUnverified,
    ReplayCacheOutlivesStore,
    RefusalLeavesHolderUnlocked,
}

/// Where a bug comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A defect of the original Node flow that this service replaced.
    OriginalFlow,
    /// A mistake a future maintainer of this protocol is likely to make.
    ThisProtocol,
}

/// A catalogue entry.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub bug: Bug,
    /// The name used in `BOOKING_SEEDED_BUG` and in scenario files' `catches`.
    pub name: &'static str,
    pub origin: Origin,
    /// What it breaks, in one line.
    pub breaks: &'static str,
    /// The checkers that must report it (at least one of them).
    pub caught_by: &'static [&'static str],
    /// Other bugs that must be on for this one to be observable at all
    /// (defence in depth: the second line of defence hides the first).
    pub needs: &'static [&'static str],
}

pub const CATALOGUE: &[Entry] = &[
    Entry {
        bug: Bug::FinalizeBeforeCommit,
        name: "finalize-before-commit",
        origin: Origin::OriginalFlow,
        breaks: "the key is marked completed and the slot unlocked before the transaction commits: a failed commit leaves a replayed 201 for a booking that does not exist",
        caught_by: &["no_lost_ack", "replay_consistency"],
        needs: &[],
    },
    Entry {
        bug: Bug::ClaimLivesForRetention,
        name: "claim-lives-for-retention",
        origin: Origin::OriginalFlow,
        breaks: "an in-progress claim lives as long as the outcome (24 h): after a crash the key answers IDEMPOTENCY_IN_PROGRESS for a day",
        caught_by: &["definite_answer"],
        needs: &[],
    },
    Entry {
        bug: Bug::RememberTransientAnswers,
        name: "remember-transient-answers",
        origin: Origin::OriginalFlow,
        breaks: "RESOURCE_LOCKED and 503 answers are stored as the key's final answer: retries never book, even once the slot is free",
        caught_by: &["definite_answer"],
        needs: &[],
    },
    Entry {
        bug: Bug::KeysGlobalAcrossUsers,
        name: "keys-global-across-users",
        origin: Origin::OriginalFlow,
        breaks: "client keys are not scoped to the user and the fingerprint leaves the user out: one user's key replays another user's booking, or refuses their request as a reuse",
        caught_by: &["isolation", "answer_matches_request"],
        needs: &[],
    },
    Entry {
        bug: Bug::RedisOnlyMemory,
        name: "redis-only-memory",
        origin: Origin::OriginalFlow,
        breaks: "the transaction neither reads nor keeps the key's outcome, so only Redis remembers it: after Redis loses data or a crash before finalize, a retry answers ALREADY_BOOKED for its own booking",
        caught_by: &["replay_consistency", "no_phantom"],
        needs: &[],
    },
    Entry {
        bug: Bug::CancelKeepsDerivedKeys,
        name: "cancel-keeps-derived-keys",
        origin: Origin::OriginalFlow,
        breaks: "a cancel does not forget the slot's derived keys: the owner's rebook without a key replays the cancelled booking as 201 confirmed",
        caught_by: &["no_stale_replay"],
        needs: &[],
    },
    Entry {
        bug: Bug::CancelTrustsAssertedOwner,
        name: "cancel-trusts-asserted-owner",
        origin: Origin::OriginalFlow,
        breaks: "a cancel does not check that the caller owns the booking: anyone cancels anyone's booking",
        caught_by: &["isolation"],
        needs: &[],
    },
    Entry {
        bug: Bug::DuplicateReleasesLock,
        name: "duplicate-releases-lock",
        origin: Origin::OriginalFlow,
        breaks: "a request turned away (IDEMPOTENCY_IN_PROGRESS, RESOURCE_LOCKED) deletes the slot lock by name, freeing the owner's lock; harmless while the unique index stands, a double booking without it",
        caught_by: &["no_double_booking"],
        needs: &["no-unique-index"],
    },
    Entry {
        bug: Bug::NoUniqueIndex,
        name: "no-unique-index",
        origin: Origin::ThisProtocol,
        breaks: "the unique partial index is dropped and the insert checks for a confirmed booking itself (check-then-act): two overlapping transactions both book the slot",
        caught_by: &["no_double_booking"],
        needs: &[],
    },
    Entry {
        bug: Bug::CommitErrorIgnored,
        name: "commit-error-ignored",
        origin: Origin::ThisProtocol,
        breaks: "an error while committing step 5 is logged and answered 201: the acknowledged booking was rolled back",
        caught_by: &["no_lost_ack"],
        needs: &[],
    },
    Entry {
        bug: Bug::CompensateAfterCommit,
        name: "compensate-after-commit",
        origin: Origin::ThisProtocol,
        breaks: "a failure after the commit 'rolls back' by cancelling the booking it made, while the stored outcome still replays 201",
        caught_by: &["no_lost_ack"],
        needs: &[],
    },
    Entry {
        bug: Bug::FingerprintIgnoresDate,
        name: "fingerprint-ignores-date",
        origin: Origin::ThisProtocol,
        breaks: "the payload fingerprint leaves the date out: a key reused for another date replays the first booking instead of 422",
        caught_by: &["answer_matches_request"],
        needs: &[],
    },
    Entry {
        bug: Bug::StoreReplaySkipsFingerprint,
        name: "store-replay-skips-fingerprint",
        origin: Origin::ThisProtocol,
        breaks: "an outcome read from the database (or the replay cache) is replayed without comparing fingerprints: once Redis has lost a key, its reuse with another payload replays the first booking",
        caught_by: &["answer_matches_request"],
        needs: &[],
    },
    Entry {
        bug: Bug::AvailabilityCountsCancelled,
        name: "availability-counts-cancelled",
        origin: Origin::ThisProtocol,
        breaks: "availability counts cancelled bookings as taken: a freed slot is never offered again",
        caught_by: &["availability"],
        needs: &[],
    },
    Entry {
        bug: Bug::ListIgnoresUser,
        name: "list-ignores-user",
        origin: Origin::ThisProtocol,
        breaks: "listing a user's bookings forgets the user filter: everyone sees everyone's bookings",
        caught_by: &["isolation"],
        needs: &[],
    },
    Entry {
        bug: Bug::DerivedKeyWithoutUser,
        name: "derived-key-without-user",
        origin: Origin::ThisProtocol,
        breaks: "the server-derived key (no Idempotency-Key) is resource:date for everyone: another user's request for the slot is refused as a key reuse",
        caught_by: &["isolation"],
        needs: &[],
    },
    Entry {
        bug: Bug::AlreadyBookedNotRemembered,
        name: "already-booked-not-remembered",
        origin: Origin::ThisProtocol,
        breaks: "only 201 outcomes are remembered: a key answered ALREADY_BOOKED books the slot on a later retry once it is free",
        caught_by: &["replay_consistency"],
        needs: &[],
    },
    Entry {
        bug: Bug::DerivedReplayUnverified,
        name: "derived-replay-unverified",
        origin: Origin::ThisProtocol,
        breaks: "a derived key's Redis record is replayed without asking the store: after a cancel whose Redis clean-up failed (a Redis stall), the owner's rebook without a key replays the cancelled booking as 201 confirmed",
        caught_by: &["no_stale_replay"],
        needs: &[],
    },
    Entry {
        bug: Bug::ReplayCacheOutlivesStore,
        name: "replay-cache-outlives-store",
        origin: Origin::ThisProtocol,
        breaks: "a replica's replay cache keeps an outcome for the key's retention from when it saw it, not until the store's expiry: once the key has expired and been decided anew, that replica still replays the old answer",
        caught_by: &["no_superseded_answer"],
        needs: &[],
    },
    Entry {
        bug: Bug::RefusalLeavesHolderUnlocked,
        name: "refusal-leaves-holder-unlocked",
        origin: Origin::ThisProtocol,
        breaks: "PostgreSQL's step 5 refuses with ON CONFLICT DO NOTHING, which locks nothing: a cancel of the slot's booking that runs while a refusal commits misses it, and the refused user hears ALREADY_BOOKED for the free slot, without a key, for the derived retention",
        caught_by: &["no_stale_refusal"],
        needs: &[],
    },
];

/// The catalogue entry named `name`.
pub fn entry(name: &str) -> Option<&'static Entry> {
    CATALOGUE.iter().find(|e| e.name == name)
}

/// Parses a `BOOKING_SEEDED_BUG` value: names separated by commas.
pub fn parse(spec: &str) -> Result<Vec<Bug>, String> {
    spec.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            entry(name).map(|e| e.bug).ok_or_else(|| {
                let known: Vec<_> = CATALOGUE.iter().map(|e| e.name).collect();
                format!("unknown seeded bug {name:?}; known: {}", known.join(", "))
            })
        })
        .collect()
}

static ACTIVE: OnceLock<Vec<Bug>> = OnceLock::new();

/// Reads `BOOKING_SEEDED_BUG` (once); called at start so a typo fails loudly.
pub fn init_from_env() -> Result<(), String> {
    let spec = std::env::var("BOOKING_SEEDED_BUG").unwrap_or_default();
    let bugs = parse(&spec)?;
    if !bugs.is_empty() {
        tracing::error!(
            bugs = spec,
            "SEEDED PROTOCOL BUGS ENABLED: this replica is deliberately unsafe"
        );
    }
    let _ = ACTIVE.set(bugs);
    Ok(())
}

/// Whether `bug` is switched on in this process.
pub fn on(bug: Bug) -> bool {
    ACTIVE
        .get_or_init(|| {
            parse(&std::env::var("BOOKING_SEEDED_BUG").unwrap_or_default()).unwrap_or_default()
        })
        .contains(&bug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for e in CATALOGUE {
            assert_eq!(parse(e.name), Ok(vec![e.bug]));
            assert!(!e.caught_by.is_empty(), "{} names its checker", e.name);
            for needed in e.needs {
                assert!(entry(needed).is_some(), "{} needs an unknown bug", e.name);
            }
        }
    }

    #[test]
    fn several_bugs_combine_and_typos_are_refused() {
        assert_eq!(
            parse("no-unique-index, duplicate-releases-lock"),
            Ok(vec![Bug::NoUniqueIndex, Bug::DuplicateReleasesLock])
        );
        assert_eq!(parse(""), Ok(vec![]));
        assert!(parse("no-unique-indx")
            .expect_err("typo")
            .contains("unknown seeded bug"));
    }

    #[test]
    fn the_catalogue_covers_the_original_flow_and_this_protocol() {
        let original = CATALOGUE
            .iter()
            .filter(|e| e.origin == Origin::OriginalFlow)
            .count();
        assert!(original >= 8);
        assert!(CATALOGUE.len() - original >= 6);
        assert!(CATALOGUE.len() >= 15);
    }
}
