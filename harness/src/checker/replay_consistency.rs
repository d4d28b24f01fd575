//! Invariant 3: Replay consistency: every response for one (user, key) that carries a
//! booking or `ALREADY_BOOKED` is byte-identical.
//!
//! Server-derived keys are short-lived and forgotten when their slot is
//! cancelled, so two answers for one derived key are only compared when no
//! cancel on that slot can have landed between them (one in flight when the
//! first was sent counts; one that got no answer may land until its
//! booking's first acknowledged cancel, and never if the booking is
//! confirmed in the end; a refused cancel counts for nothing) and they lie
//! within the derived key's retention. A client key's answer lasts its retention (a
//! booking's, or a refusal's): a request that ends before the first answer
//! was sent plus that retention must get the same answer; later ones may be
//! decided anew (`no_superseded_answer` judges those).

use std::collections::BTreeMap;

use super::{first_acknowledged_cancels, CheckResult, Checker, Violation};
use crate::history::{History, OpKind, Operation, Outcome};

pub struct ReplayConsistency;

/// When a cancel can have taken effect: from its invocation until its
/// answer, or without end when it got none (it may still land); and its
/// slot, when the booking it names was seen created.
struct CancelWindow<'a> {
    from: f64,
    until: f64,
    slot: Option<&'a (String, String)>,
}

impl Checker for ReplayConsistency {
    fn name(&self) -> &'static str {
        "replay_consistency"
    }

    fn check(&self, h: &History) -> CheckResult {
        let mut by_scope: BTreeMap<_, Vec<&Operation>> = BTreeMap::new();
        for op in h.ops.iter().filter(|o| o.is_remembered_answer()) {
            if let Some(scope) = op.scope() {
                by_scope.entry(scope).or_default().push(op);
            }
        }
        // Slot of each booking id, to know which cancels touch which slot.
        let mut slot_of = BTreeMap::new();
        for op in h.ops.iter().filter(|o| o.is_created()) {
            if let (Some(id), Some(slot)) = (op.returned_booking_id(), op.slot()) {
                slot_of.insert(id, slot);
            }
        }
        let acknowledged = first_acknowledged_cancels(h);
        let still_confirmed = |id: &str| {
            h.final_state
                .as_ref()
                .is_some_and(|rows| rows.iter().any(|r| r.id == id && r.status == "confirmed"))
        };
        // A definitive refusal cancelled nothing. A cancel without an answer
        // may land until its booking's first acknowledged cancel, and not at
        // all if the booking is confirmed in the end.
        let cancels: Vec<CancelWindow> = h
            .ops
            .iter()
            .filter(|o| o.kind == OpKind::Cancel && o.outcome != Outcome::Fail)
            .filter_map(|o| {
                let id = o.booking_id.as_deref();
                let until = match (o.outcome, id) {
                    (Outcome::Info, Some(id)) if still_confirmed(id) => return None,
                    (Outcome::Info, Some(id)) => acknowledged
                        .get(id)
                        .map_or(f64::INFINITY, |&(at, _)| at.max(o.complete_ms)),
                    (Outcome::Info, None) => f64::INFINITY,
                    _ => o.complete_ms,
                };
                Some(CancelWindow {
                    from: o.invoke_ms,
                    until,
                    slot: id.and_then(|id| slot_of.get(id)),
                })
            })
            .collect();
        let ttl = if h.meta.derived_key_ttl_ms > 0.0 {
            h.meta.derived_key_ttl_ms
        } else {
            120_000.0
        };

        let client_ttl = |first: &Operation| {
            if first.is_created() {
                h.meta.booking_retention_ms()
            } else {
                h.meta.refusal_retention_ms()
            }
        };

        let mut violations = Vec::new();
        for (scope, ops) in by_scope {
            let derived = scope.kind == "derived";
            // Every create of the key, answered or not: the earliest
            // moment a life of the key can have been decided.
            let attempts: Vec<&Operation> = h
                .ops
                .iter()
                .filter(|o| o.scope().as_ref() == Some(&scope))
                .collect();
            let decided_from = |after: f64| {
                attempts
                    .iter()
                    .filter(|a| a.complete_ms >= after)
                    .map(|a| a.invoke_ms)
                    .fold(f64::INFINITY, f64::min)
            };
            let mut first = ops[0];
            // A client key's life: from (no earlier than) its decision,
            // for its retention.
            let mut life_start = decided_from(f64::NEG_INFINITY).min(first.invoke_ms);
            for other in &ops[1..] {
                if !derived {
                    let end = life_start + client_ttl(first);
                    if other.complete_ms >= end {
                        // Perhaps a later life; one that answers otherwise
                        // is one, and later answers are held to it.
                        if other.body != first.body {
                            first = other;
                            life_start = decided_from(end).min(other.invoke_ms);
                        }
                        continue;
                    }
                }
                if derived {
                    let slot = first.slot();
                    // A cancel may have landed between the two decisions if
                    // its window overlaps theirs: one still in flight when
                    // the first request was sent counts too. A cancel whose
                    // slot is unknown may be on this slot.
                    let cancelled_between = cancels.iter().any(|c| {
                        (c.slot.is_none() || c.slot.cloned() == slot)
                            && c.until > first.invoke_ms
                            && c.from < other.complete_ms
                    });
                    if cancelled_between || other.invoke_ms - first.complete_ms > ttl * 0.9 {
                        continue;
                    }
                }
                if other.body != first.body {
                    violations.push(Violation {
                        message: format!(
                            "key {scope}: answers differ ({} vs {})",
                            first.status.unwrap_or(0),
                            other.status.unwrap_or(0)
                        ),
                        ops: vec![first.index, other.index],
                        rows: [first.returned_booking_id(), other.returned_booking_id()]
                            .into_iter()
                            .flatten()
                            .collect(),
                    });
                }
            }
        }
        CheckResult::from_violations(self.name(), violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::Builder;
    use crate::checker::Validity;

    #[test]
    fn two_different_201s_for_one_key_are_caught() {
        let mut b = Builder::new();
        let a = b.created("alice", "room_A", Some("k"), "b1");
        let c = b.created("alice", "room_A", Some("k"), "b2");
        let r = ReplayConsistency.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.violations[0].ops, [a, c]);
    }

    #[test]
    fn a_201_then_already_booked_for_one_key_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.failed("alice", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        assert_eq!(
            ReplayConsistency.check(&b.history).validity,
            Validity::Invalid
        );
    }

    #[test]
    fn identical_replays_and_transient_errors_are_valid() {
        let mut b = Builder::new();
        b.failed("alice", "room_A", Some("k"), 409, "RESOURCE_LOCKED");
        b.created("alice", "room_A", Some("k"), "b1");
        b.failed("alice", "room_A", Some("k"), 503, "DEPENDENCY_UNAVAILABLE");
        b.created("alice", "room_A", Some("k"), "b1");
        // The same key of another user is another scope.
        b.created("bob", "room_B", Some("k"), "b2");
        assert_eq!(
            ReplayConsistency.check(&b.history).validity,
            Validity::Valid
        );
    }

    #[test]
    fn a_client_key_may_answer_anew_once_its_retention_has_run_out() {
        let mut b = Builder::new();
        b.history.meta.client_key_ttl_ms = 100.0;
        b.history.meta.refusal_ttl_ms = 100.0;
        let first = b.created("alice", "room_A", Some("k"), "b1");
        let within = b.failed("alice", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        let r = ReplayConsistency.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid, "within the retention");
        // The same second answer, ending after the retention: decided anew.
        b.history.ops[within].invoke_ms = b.history.ops[first].invoke_ms + 95.0;
        b.history.ops[within].complete_ms = b.history.ops[first].invoke_ms + 100.0;
        assert_eq!(
            ReplayConsistency.check(&b.history).validity,
            Validity::Valid
        );
    }

    #[test]
    fn answers_within_a_later_life_of_a_client_key_must_agree_too() {
        let mut b = Builder::new();
        b.history.meta.client_key_ttl_ms = 100.0;
        b.history.meta.refusal_ttl_ms = 100.0;
        let first = b.created("alice", "room_A", Some("k"), "b1");
        let anew = b.failed("alice", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        let then = b.created("alice", "room_A", Some("k"), "b3");
        let start = b.history.ops[first].invoke_ms;
        for (op, at) in [(anew, 150.0), (then, 170.0)] {
            b.history.ops[op].invoke_ms = start + at;
            b.history.ops[op].complete_ms = start + at + 5.0;
        }
        let r = ReplayConsistency.check(&b.history);
        assert_eq!(
            r.validity,
            Validity::Invalid,
            "two answers in the second life"
        );
        assert_eq!(r.violations[0].ops, [anew, then]);
    }

    #[test]
    fn a_derived_key_may_answer_anew_after_its_slot_was_cancelled() {
        let mut b = Builder::new();
        b.created("alice", "room_A", None, "b1");
        b.cancel("alice", "b1", Outcome::Ok);
        b.created("alice", "room_A", None, "b2");
        assert_eq!(
            ReplayConsistency.check(&b.history).validity,
            Validity::Valid
        );
        // Without the cancel, the same two answers are a violation.
        let mut b = Builder::new();
        b.created("alice", "room_A", None, "b1");
        b.created("alice", "room_A", None, "b2");
        assert_eq!(
            ReplayConsistency.check(&b.history).validity,
            Validity::Invalid
        );
    }

    #[test]
    fn a_cancel_still_in_flight_when_the_first_answer_was_asked_for_counts() {
        // Bob cancels his booking of the slot; Alice, without a key, is
        // refused, then books the slot.
        let mut b = Builder::new();
        b.created("bob", "room_A", Some("kb"), "b1");
        let cancel = b.cancel("bob", "b1", Outcome::Ok);
        let refused = b.failed("alice", "room_A", None, 409, "ALREADY_BOOKED");
        b.created("alice", "room_A", None, "b2");
        // The cancel was answered before Alice's first request was sent:
        // nothing can free the slot between her two answers.
        let r = ReplayConsistency.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid, "cancel done before");
        // The cancel was still in flight when she was refused: it may have
        // landed after the refusal.
        let sent = b.history.ops[refused].invoke_ms;
        b.history.ops[cancel].complete_ms = sent + 5.0;
        let r = ReplayConsistency.check(&b.history);
        assert_eq!(r.validity, Validity::Valid, "cancel in flight");
        // A cancel that got no answer may land any time after it was sent.
        b.history.ops[cancel].complete_ms = sent - 5.0;
        b.history.ops[cancel].outcome = Outcome::Info;
        b.history.ops[cancel].status = None;
        let r = ReplayConsistency.check(&b.history);
        assert_eq!(r.validity, Validity::Valid, "cancel without an answer");
    }

    #[test]
    fn a_refused_cancel_or_one_whose_booking_stayed_confirmed_excuses_nothing() {
        let mut b = Builder::new();
        b.created("bob", "room_A", Some("kb"), "b1");
        let cancel = b.cancel("bob", "b1", Outcome::Fail);
        b.failed("alice", "room_A", None, 409, "ALREADY_BOOKED");
        b.created("alice", "room_A", None, "b2");
        let r = ReplayConsistency.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid, "a refused cancel");
        // Without an answer, it may have landed any time after it was sent…
        b.history.ops[cancel].outcome = Outcome::Info;
        let r = ReplayConsistency.check(&b.history);
        assert_eq!(r.validity, Validity::Valid, "a cancel without an answer");
        // …unless its booking is confirmed in the end.
        b.history.final_state = Some(vec![crate::checker::testing::booking_row(
            "b1",
            "bob",
            Some("kb"),
            "confirmed",
        )]);
        let r = ReplayConsistency.check(&b.history);
        assert_eq!(
            r.validity,
            Validity::Invalid,
            "its booking stayed confirmed"
        );
    }
}
