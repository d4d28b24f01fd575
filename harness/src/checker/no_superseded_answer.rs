//! Invariant 13: No superseded answer: once a key has been answered anew —
//! a later request with the same key and payload acknowledged with another
//! definitive answer, which a correct service gives only after the first
//! answer's retention ran out (or, for a derived key, after a cancel freed
//! its slot) — the older booking never comes back for requests sent after
//! that.
//!
//! It is what a cache of outcomes that outlives the store's expiry breaks:
//! the store decided the key anew, and a replica still replays the old
//! booking. Only `201` answers count as the old answer: each names a booking
//! id no other decision can repeat, while two `ALREADY_BOOKED` refusals of
//! one slot are byte-identical whichever decision made them.

use std::collections::BTreeMap;

use super::{CheckResult, Checker, Violation};
use crate::history::{History, Operation};

pub struct NoSupersededAnswer;

impl Checker for NoSupersededAnswer {
    fn name(&self) -> &'static str {
        "no_superseded_answer"
    }

    fn check(&self, h: &History) -> CheckResult {
        // Definitive answers by key and payload (the same slot), in invoke order.
        let mut by_request: BTreeMap<_, Vec<&Operation>> = BTreeMap::new();
        for op in h.ops.iter().filter(|o| o.is_remembered_answer()) {
            if let (Some(scope), Some(slot)) = (op.scope(), op.slot()) {
                by_request.entry((scope, slot)).or_default().push(op);
            }
        }
        let mut violations = Vec::new();
        for ((scope, _), mut ops) in by_request {
            ops.sort_by(|a, b| a.invoke_ms.total_cmp(&b.invoke_ms));
            for old in ops.iter().filter(|o| o.is_created()) {
                // The first later, different answer: from then on `old` is dead.
                let newer = ops
                    .iter()
                    .filter(|n| n.invoke_ms > old.complete_ms && n.body != old.body)
                    .min_by(|a, b| a.complete_ms.total_cmp(&b.complete_ms));
                let Some(newer) = newer else { continue };
                for stale in ops
                    .iter()
                    .filter(|z| z.invoke_ms > newer.complete_ms && z.body == old.body)
                {
                    violations.push(Violation {
                        message: format!(
                            "key {scope}: answered at {:.0} ms with booking {} that the key's answer at {:.0} ms had superseded",
                            stale.complete_ms,
                            old.returned_booking_id().unwrap_or_default(),
                            newer.complete_ms
                        ),
                        ops: vec![old.index, newer.index, stale.index],
                        rows: old.returned_booking_id().into_iter().collect(),
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
    use crate::history::Outcome;

    #[test]
    fn the_old_booking_after_the_key_was_answered_anew_is_caught() {
        let mut b = Builder::new();
        let old = b.created("alice", "room_A", Some("k"), "b1");
        // The key expired; the slot is still b1's, so it is refused anew.
        let newer = b.failed("alice", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        let stale = b.created("alice", "room_A", Some("k"), "b1");
        let r = NoSupersededAnswer.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.violations[0].ops, [old, newer, stale]);
    }

    #[test]
    fn a_new_booking_after_a_cancel_then_the_old_one_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", None, "b1");
        b.cancel("alice", "b1", Outcome::Ok);
        b.created("alice", "room_A", None, "b2");
        b.created("alice", "room_A", None, "b1");
        assert_eq!(
            NoSupersededAnswer.check(&b.history).validity,
            Validity::Invalid
        );
    }

    #[test]
    fn replays_of_one_answer_and_a_new_answer_that_stays_are_valid() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.created("alice", "room_A", Some("k"), "b1");
        // Answered anew (after expiry), and that answer is what comes back.
        b.failed("alice", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        b.failed("alice", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        // Another payload under the same key is another request.
        b.created("alice", "room_B", Some("k"), "b3");
        assert_eq!(
            NoSupersededAnswer.check(&b.history).validity,
            Validity::Valid
        );
    }

    #[test]
    fn answers_sent_before_the_new_one_was_acknowledged_are_not_judged() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        let newer = b.failed("alice", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        let overlapping = b.created("alice", "room_A", Some("k"), "b1");
        // Sent while the refusal was still on its way.
        b.history.ops[overlapping].invoke_ms = b.history.ops[newer].complete_ms - 5.0;
        assert_eq!(
            NoSupersededAnswer.check(&b.history).validity,
            Validity::Valid
        );
    }
}
