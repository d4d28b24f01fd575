//! Invariant 14: No stale refusal: a create without a client key is answered
//! `ALREADY_BOOKED` only if some booking may have held the slot while the
//! request was in flight.
//!
//! The refusal is remembered under the server-derived key, and the cancel
//! that frees the slot must forget it (in the cancel's transaction). A
//! refusal that outlives the cancel keeps refusing its user a free slot, for
//! the derived key's whole retention. A client key is exempt: it replays its
//! first answer by contract.
//!
//! Which bookings there were comes from the store's final state, so that a
//! booking whose create got no answer counts too. A booking that some
//! answer named may hold its slot from when the first request that may have
//! made it was sent (one of its key and slot that returned it or got no
//! answer; one answered otherwise, with a refusal, another booking or a
//! definitive error, did not make it); one that no answer named, from the
//! start of the run. It holds until its cancel was acknowledged (for ever,
//! without one).

use std::collections::BTreeMap;

use super::{first_acknowledged_cancels, CheckResult, Checker, Violation};
use crate::history::{BookingRow, History, OpKind, Operation, Outcome, Scope};

pub struct NoStaleRefusal;

/// When one booking may have held its slot.
struct Holding<'a> {
    id: &'a str,
    from: f64,
    until: f64,
    /// The acknowledged cancel that ends it.
    cancel: Option<usize>,
}

type Slot = (String, String);

impl Checker for NoStaleRefusal {
    fn name(&self) -> &'static str {
        "no_stale_refusal"
    }

    fn check(&self, h: &History) -> CheckResult {
        let Some(rows) = &h.final_state else {
            return CheckResult::unknown(self.name(), "no final state of the store");
        };
        // The requests that may have made each booking: those of its key
        // and slot that returned it, or got no answer.
        let mut makers: BTreeMap<(Scope, Slot), Vec<&Operation>> = BTreeMap::new();
        for op in h.ops.iter().filter(|o| o.kind == OpKind::Create) {
            if let (Some(scope), Some(slot)) = (op.scope(), op.slot()) {
                makers.entry((scope, slot)).or_default().push(op);
            }
        }
        let made_from = |row: &BookingRow, slot: &Slot| {
            let Some(ops) = makers.get(&(row.scope(), slot.clone())) else {
                return f64::NEG_INFINITY;
            };
            let returned =
                |o: &&&Operation| o.returned_booking_id().as_deref() == Some(row.id.as_str());
            // No answer named it: the request that made it is not known, so
            // it may be as old as the run.
            if !ops.iter().any(|o| returned(&o)) {
                return f64::NEG_INFINITY;
            }
            ops.iter()
                .filter(|o| o.outcome == Outcome::Info || returned(o))
                .map(|o| o.invoke_ms)
                .fold(f64::INFINITY, f64::min)
        };
        let cancelled = first_acknowledged_cancels(h);
        let mut holdings: BTreeMap<Slot, Vec<Holding>> = BTreeMap::new();
        for row in rows {
            let slot = (row.resource_id.clone(), row.date.clone());
            let from = made_from(row, &slot);
            let (until, cancel) = match cancelled.get(row.id.as_str()) {
                Some(&(at, index)) => (at, Some(index)),
                None => (f64::INFINITY, None),
            };
            holdings.entry(slot).or_default().push(Holding {
                id: &row.id,
                from,
                until,
                cancel,
            });
        }

        let mut violations = Vec::new();
        for op in h
            .ops
            .iter()
            .filter(|o| o.kind == OpKind::Create && o.key.is_none() && o.has_code("ALREADY_BOOKED"))
        {
            let Some(slot) = op.slot() else { continue };
            let held = holdings.get(&slot).map(Vec::as_slice).unwrap_or_default();
            if held
                .iter()
                .any(|b| b.from < op.complete_ms && b.until > op.invoke_ms)
            {
                continue;
            }
            // The holder that freed the slot last before the request.
            let last = held
                .iter()
                .filter(|b| b.until <= op.invoke_ms)
                .max_by(|a, b| a.until.total_cmp(&b.until));
            let freed = match last {
                Some(b) => format!(
                    "; its last booking {} was cancelled at {:.0} ms",
                    b.id, b.until
                ),
                None => String::new(),
            };
            violations.push(Violation {
                message: format!(
                    "{} was refused {} on {} without a key (sent at {:.0} ms) while no booking held it{freed}",
                    op.user, slot.0, slot.1, op.invoke_ms
                ),
                ops: last
                    .and_then(|b| b.cancel)
                    .into_iter()
                    .chain([op.index])
                    .collect(),
                rows: last.map(|b| b.id.to_owned()).into_iter().collect(),
            });
        }
        CheckResult::from_violations(self.name(), violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::{booking_row as row, Builder};
    use crate::checker::Validity;

    #[test]
    fn a_refusal_after_the_holder_was_cancelled_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("a"), "b1");
        b.failed("bob", "room_A", None, 409, "ALREADY_BOOKED");
        let cancel = b.cancel("alice", "b1", Outcome::Ok);
        let stale = b.failed("bob", "room_A", None, 409, "ALREADY_BOOKED");
        b.history.final_state = Some(vec![row("b1", "alice", Some("a"), "cancelled")]);
        let r = NoStaleRefusal.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert_eq!(r.violations[0].ops, [cancel, stale]);
        assert_eq!(r.violations[0].rows, ["b1"]);
    }

    #[test]
    fn a_refusal_while_the_slot_may_be_held_is_valid() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("a"), "b1");
        b.failed("bob", "room_A", None, 409, "ALREADY_BOOKED");
        // The cancel is in flight while bob is refused.
        let cancel = b.cancel("alice", "b1", Outcome::Ok);
        let refused = b.failed("bob", "room_A", None, 409, "ALREADY_BOOKED");
        b.history.ops[cancel].complete_ms = b.history.ops[refused].complete_ms + 1.0;
        // A client key replays its refusal by contract.
        b.failed("carol", "room_A", Some("c"), 409, "ALREADY_BOOKED");
        b.history.final_state = Some(vec![row("b1", "alice", Some("a"), "cancelled")]);
        assert_eq!(NoStaleRefusal.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn a_booking_whose_create_got_no_answer_may_hold_the_slot() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("a"), "b1");
        b.cancel("alice", "b1", Outcome::Ok);
        // Dana's create timed out, but its booking is in the store.
        b.timed_out("dana", "room_A", Some("d"));
        b.failed("bob", "room_A", None, 409, "ALREADY_BOOKED");
        b.history.final_state = Some(vec![
            row("b1", "alice", Some("a"), "cancelled"),
            row("b2", "dana", Some("d"), "confirmed"),
        ]);
        assert_eq!(NoStaleRefusal.check(&b.history).validity, Validity::Valid);
        // Without that booking in the store, the slot was free.
        b.history.final_state = Some(vec![row("b1", "alice", Some("a"), "cancelled")]);
        assert_eq!(NoStaleRefusal.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_cancel_without_an_answer_may_not_have_freed_the_slot() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("a"), "b1");
        b.cancel("alice", "b1", Outcome::Info);
        b.failed("bob", "room_A", None, 409, "ALREADY_BOOKED");
        b.history.final_state = Some(vec![row("b1", "alice", Some("a"), "cancelled")]);
        assert_eq!(NoStaleRefusal.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn without_the_store_s_final_state_nothing_is_claimed() {
        let mut b = Builder::new();
        b.failed("bob", "room_A", None, 409, "ALREADY_BOOKED");
        assert_eq!(NoStaleRefusal.check(&b.history).validity, Validity::Unknown);
    }
}
