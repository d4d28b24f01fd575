//! Checkers: is a history (plus the final state of the store) correct?
//!
//! Each checker looks at one invariant and returns [`Validity::Valid`],
//! [`Validity::Invalid`] with the violations that show it (naming the
//! operations and rows involved), or [`Validity::Unknown`] when it lacks the
//! data to decide. Results compose: invalid beats unknown beats valid; a
//! checker that panics yields unknown instead of crashing the run.
//!
//! An `info` operation may or may not have taken effect: checkers treat it as
//! possibly committed, never as failed.

mod answer_matches_request;
mod availability;
mod contract;
mod definite_answer;
mod exactly_once;
mod isolation;
mod no_double_booking;
mod no_lost_ack;
mod no_phantom;
mod no_stale_refusal;
mod no_stale_replay;
mod no_superseded_answer;
mod recovery;
mod replay_consistency;

#[cfg(test)]
pub(crate) mod testing;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::history::{History, OpKind, Outcome};

/// The process name of the runner's recovery probes.
pub const RECOVERY_PROCESS: &str = recovery::PROCESS;

/// The process name of the runner's reads at quiescence (after the settle phase).
pub const QUIESCENCE_PROCESS: &str = "quiescence";

/// The first acknowledged cancel of each booking: when its answer came, and
/// the operation.
pub(crate) fn first_acknowledged_cancels(h: &History) -> BTreeMap<&str, (f64, usize)> {
    let mut cancelled: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for op in h
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Cancel && o.outcome == Outcome::Ok)
    {
        if let Some(id) = op.booking_id.as_deref() {
            let e = cancelled.entry(id).or_insert((op.complete_ms, op.index));
            if op.complete_ms < e.0 {
                *e = (op.complete_ms, op.index);
            }
        }
    }
    cancelled
}

/// Operations the runner makes itself (recovery probes, quiescent reads),
/// not part of any client's intents.
pub fn is_probe(op: &crate::history::Operation) -> bool {
    op.process == RECOVERY_PROCESS || op.process == QUIESCENCE_PROCESS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    Valid,
    Unknown,
    Invalid,
}

/// One broken promise, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub message: String,
    /// Indexes of the operations that show it.
    pub ops: Vec<usize>,
    /// Booking ids of the rows involved.
    pub rows: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub checker: String,
    pub validity: Validity,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CheckResult {
    pub fn from_violations(checker: &str, violations: Vec<Violation>) -> Self {
        Self {
            checker: checker.to_owned(),
            validity: if violations.is_empty() {
                Validity::Valid
            } else {
                Validity::Invalid
            },
            violations,
            note: None,
        }
    }

    pub fn unknown(checker: &str, note: impl Into<String>) -> Self {
        Self {
            checker: checker.to_owned(),
            validity: Validity::Unknown,
            violations: Vec::new(),
            note: Some(note.into()),
        }
    }
}

pub trait Checker: Send + Sync {
    /// The name used in scenario files and reports.
    fn name(&self) -> &'static str;
    fn check(&self, history: &History) -> CheckResult;
}

/// Every checker, in report order.
pub fn all() -> Vec<Box<dyn Checker>> {
    vec![
        Box::new(no_double_booking::NoDoubleBooking),
        Box::new(no_lost_ack::NoLostAck),
        Box::new(replay_consistency::ReplayConsistency),
        Box::new(exactly_once::ExactlyOnce),
        Box::new(no_phantom::NoPhantom),
        Box::new(recovery::Recovery),
        Box::new(contract::Contract),
        Box::new(definite_answer::DefiniteAnswer),
        Box::new(answer_matches_request::AnswerMatchesRequest),
        Box::new(no_stale_replay::NoStaleReplay),
        Box::new(no_stale_refusal::NoStaleRefusal),
        Box::new(no_superseded_answer::NoSupersededAnswer),
        Box::new(isolation::Isolation),
        Box::new(availability::Availability),
    ]
}

pub fn names() -> Vec<&'static str> {
    all().iter().map(|c| c.name()).collect()
}

/// The combined verdict of several checkers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub validity: Validity,
    pub results: Vec<CheckResult>,
}

/// Runs the named checkers (all of them when `names` is empty).
pub fn check(history: &History, names: &[String]) -> Verdict {
    let results: Vec<CheckResult> = all()
        .into_iter()
        .filter(|c| names.is_empty() || names.iter().any(|n| n == c.name()))
        .map(|c| check_safe(c.as_ref(), history))
        .collect();
    let validity = results
        .iter()
        .map(|r| r.validity)
        .max()
        .unwrap_or(Validity::Unknown);
    Verdict { validity, results }
}

/// A checker that panics gives `unknown`, not a crashed run.
fn check_safe(checker: &dyn Checker, history: &History) -> CheckResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| checker.check(history)))
        .unwrap_or_else(|_| CheckResult::unknown(checker.name(), "the checker panicked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_beats_unknown_beats_valid() {
        assert!(Validity::Invalid > Validity::Unknown);
        assert!(Validity::Unknown > Validity::Valid);
    }

    #[test]
    fn an_empty_history_without_a_final_state_is_not_declared_valid() {
        let v = check(&History::default(), &[]);
        assert_eq!(v.validity, Validity::Unknown);
        // Every checker ran, each once: none is filtered out by default.
        let ran: Vec<_> = v.results.iter().map(|r| r.checker.as_str()).collect();
        let all: Vec<_> = all().iter().map(|c| c.name()).collect();
        assert_eq!(ran, all);
    }

    struct Panics;
    impl Checker for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn check(&self, _: &History) -> CheckResult {
            panic!("boom")
        }
    }

    #[test]
    fn a_panicking_checker_yields_unknown() {
        let r = check_safe(&Panics, &History::default());
        assert_eq!(r.validity, Validity::Unknown);
    }
}
