//! Invariant 8: Definite answer (liveness): once the faults have healed,
//! every booking intent that keeps retrying with its key reaches a
//! definitive answer — `201`, `ALREADY_BOOKED`, or a 4xx about the request —
//! within the settle bound.
//!
//! After the heal the runner retries every undecided intent with its own key
//! until it is decided or the bound (longer than the service's claim lease
//! and slot-lock TTL) passes; nothing else runs then, so an intent still
//! ending on `RESOURCE_LOCKED`, `IDEMPOTENCY_IN_PROGRESS`, a 5xx or no answer
//! is held by nothing but the service's own memory of a transient state.

use std::collections::BTreeMap;

use super::{CheckResult, Checker, Violation};
use crate::history::{History, OpKind, Operation};

pub struct DefiniteAnswer;

impl Checker for DefiniteAnswer {
    fn name(&self) -> &'static str {
        "definite_answer"
    }

    fn check(&self, h: &History) -> CheckResult {
        if h.meta.settle_bound_ms <= 0.0 {
            return CheckResult::unknown(
                self.name(),
                "no settle phase ran: undecided intents were not retried after the heal",
            );
        }
        let mut intents: BTreeMap<(&str, u64), Vec<&Operation>> = BTreeMap::new();
        for op in h
            .ops
            .iter()
            .filter(|o| o.kind == OpKind::Create && !super::is_probe(o))
        {
            intents
                .entry((op.process.as_str(), op.intent))
                .or_default()
                .push(op);
        }
        let mut violations = Vec::new();
        for ((process, intent), ops) in intents {
            if ops.iter().any(|o| o.is_definitive()) {
                continue;
            }
            let Some(last) = ops
                .iter()
                .max_by(|a, b| a.complete_ms.total_cmp(&b.complete_ms))
            else {
                continue;
            };
            let answer = match (&last.code, last.status) {
                (Some(code), _) => code.clone(),
                (None, Some(status)) => status.to_string(),
                (None, None) => last.error.clone().unwrap_or_else(|| "no answer".into()),
            };
            let retried_after_heal = ops.iter().any(|o| o.invoke_ms >= h.meta.settled_from_ms);
            violations.push(Violation {
                message: format!(
                    "{process} intent {intent} ({} {}) never got a definitive answer in {} attempts{}; the last was {answer}",
                    last.user,
                    last.key.as_deref().unwrap_or("(no key)"),
                    ops.len(),
                    if retried_after_heal {
                        format!(", retried for {:.0} ms after the faults healed", h.meta.settle_bound_ms)
                    } else {
                        String::new()
                    }
                ),
                ops: ops.iter().map(|o| o.index).collect(),
                rows: Vec::new(),
            });
        }
        CheckResult::from_violations(self.name(), violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::Builder;
    use crate::checker::Validity;

    fn settled(b: &mut Builder) {
        b.history.meta.settled_from_ms = 0.0;
        b.history.meta.settle_bound_ms = 5_000.0;
    }

    #[test]
    fn an_intent_stuck_on_resource_locked_after_the_heal_is_caught() {
        let mut b = Builder::new();
        settled(&mut b);
        for _ in 0..4 {
            b.failed("alice", "room_A", Some("k"), 409, "RESOURCE_LOCKED");
        }
        let r = DefiniteAnswer.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid, "{r:?}");
        assert_eq!(r.violations[0].ops, [0, 1, 2, 3]);
        assert!(r.violations[0].message.contains("RESOURCE_LOCKED"));
    }

    #[test]
    fn in_progress_and_timeouts_are_undecided_too() {
        let mut b = Builder::new();
        settled(&mut b);
        b.timed_out("alice", "room_A", Some("k"));
        b.failed("alice", "room_A", Some("k"), 409, "IDEMPOTENCY_IN_PROGRESS");
        assert_eq!(DefiniteAnswer.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_rate_limit_or_a_key_quota_decides_nothing() {
        for code in ["RATE_LIMITED", "QUOTA_EXCEEDED"] {
            let mut b = Builder::new();
            settled(&mut b);
            b.failed("alice", "room_A", Some("k"), 429, code);
            assert_eq!(
                DefiniteAnswer.check(&b.history).validity,
                Validity::Invalid,
                "{code} left the intent undecided"
            );
        }
    }

    #[test]
    fn retries_that_end_on_a_definitive_answer_are_valid() {
        let mut b = Builder::new();
        settled(&mut b);
        b.failed("alice", "room_A", Some("k"), 503, "DEPENDENCY_UNAVAILABLE");
        b.failed("alice", "room_A", Some("k"), 409, "RESOURCE_LOCKED");
        b.created("alice", "room_A", Some("k"), "b1");
        // Another intent: refused for good, which is an answer.
        let i = b.failed("bob", "room_A", Some("j"), 409, "ALREADY_BOOKED");
        b.history.ops[i].intent = 1;
        let i = b.failed("bob", "room_B", Some("j"), 422, "IDEMPOTENCY_KEY_REUSED");
        b.history.ops[i].intent = 2;
        assert_eq!(DefiniteAnswer.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn without_a_settle_phase_the_answer_is_unknown() {
        let mut b = Builder::new();
        b.failed("alice", "room_A", Some("k"), 409, "RESOURCE_LOCKED");
        assert_eq!(DefiniteAnswer.check(&b.history).validity, Validity::Unknown);
    }
}
