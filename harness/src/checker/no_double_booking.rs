//! Invariant 1: At most one confirmed booking per resource and date.
//!
//! In the final state of the store, and in the history: a booking acknowledged
//! before another booking of the same slot was even requested, and not
//! cancelled (or possibly cancelled) before that one was acknowledged, means
//! both were confirmed at once. The slot is the one of the booking *returned*,
//! never the one requested: a service that hands out someone else's booking
//! is wrong, but it has not booked the requested slot twice.

use std::collections::BTreeMap;

use super::{CheckResult, Checker, Violation};
use crate::history::{History, OpKind};

pub struct NoDoubleBooking;

impl Checker for NoDoubleBooking {
    fn name(&self) -> &'static str {
        "no_double_booking"
    }

    fn check(&self, h: &History) -> CheckResult {
        let mut violations = Vec::new();
        if let Some(rows) = &h.final_state {
            let mut by_slot: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
            for row in rows.iter().filter(|r| r.status == "confirmed") {
                by_slot
                    .entry((&row.resource_id, &row.date))
                    .or_default()
                    .push(&row.id);
            }
            for ((resource, date), ids) in by_slot.into_iter().filter(|(_, ids)| ids.len() > 1) {
                let ops = h
                    .ops
                    .iter()
                    .filter(|o| {
                        o.returned_booking_id()
                            .is_some_and(|id| ids.contains(&id.as_str()))
                    })
                    .map(|o| o.index)
                    .collect();
                violations.push(Violation {
                    message: format!("{} confirmed bookings for {resource} on {date}", ids.len()),
                    ops,
                    rows: ids.iter().map(|s| s.to_string()).collect(),
                });
            }
        }
        violations.extend(history_overlaps(h));
        let mut result = CheckResult::from_violations(self.name(), violations);
        if h.final_state.is_none() && result.violations.is_empty() {
            result = CheckResult::unknown(
                self.name(),
                "no final state of the store; history alone shows no overlap",
            );
        }
        result
    }
}

/// Per booking id: earliest acknowledgement and the op that showed it.
struct Acked {
    slot: (String, String),
    first_ack_ms: f64,
    /// Earliest invocation of any create with the same key: the booking
    /// cannot have been committed before it.
    earliest_invoke_ms: f64,
    op: usize,
}

fn history_overlaps(h: &History) -> Vec<Violation> {
    let mut earliest_by_scope = BTreeMap::new();
    for op in h.ops.iter().filter(|o| o.kind == OpKind::Create) {
        if let Some(scope) = op.scope() {
            let t: &mut f64 = earliest_by_scope.entry(scope).or_insert(f64::MAX);
            *t = t.min(op.invoke_ms);
        }
    }
    let mut acked: BTreeMap<String, Acked> = BTreeMap::new();
    for op in h.ops.iter().filter(|o| o.is_created()) {
        let (Some(booking), Some(scope)) = (op.returned_booking(), op.scope()) else {
            continue;
        };
        let (id, slot) = (booking.id, (booking.resource, booking.date));
        let earliest = earliest_by_scope
            .get(&scope)
            .copied()
            .unwrap_or(op.invoke_ms);
        let entry = acked.entry(id).or_insert(Acked {
            slot,
            first_ack_ms: op.complete_ms,
            earliest_invoke_ms: earliest,
            op: op.index,
        });
        if op.complete_ms < entry.first_ack_ms {
            entry.first_ack_ms = op.complete_ms;
            entry.op = op.index;
        }
    }
    let cancel_invoked = |id: &str| -> f64 {
        h.ops
            .iter()
            .filter(|o| o.kind == OpKind::Cancel && o.booking_id.as_deref() == Some(id))
            .map(|o| o.invoke_ms)
            .fold(f64::MAX, f64::min)
    };
    let mut violations = Vec::new();
    for (x_id, x) in &acked {
        for (y_id, y) in &acked {
            if x_id == y_id || x.slot != y.slot {
                continue;
            }
            // x committed before its ack, y after its earliest invoke; x not
            // cancelled before y was acknowledged: both confirmed at once.
            if x.first_ack_ms < y.earliest_invoke_ms && cancel_invoked(x_id) > y.first_ack_ms {
                violations.push(Violation {
                    message: format!(
                        "{x_id} and {y_id} were both acknowledged as confirmed for {} on {}",
                        x.slot.0, x.slot.1
                    ),
                    ops: vec![x.op, y.op],
                    rows: vec![x_id.clone(), y_id.clone()],
                });
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::Builder;
    use crate::checker::Validity;
    use crate::history::Outcome;

    #[test]
    fn two_confirmed_rows_for_one_slot_are_caught() {
        let mut b = Builder::new();
        b.row("b1", "alice", "room_A", "confirmed", Some("k1"));
        b.row("b2", "bob", "room_A", "confirmed", Some("k2"));
        let r = NoDoubleBooking.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.violations[0].rows, ["b1", "b2"]);
    }

    #[test]
    fn two_acknowledged_overlapping_bookings_are_caught_from_the_history_alone() {
        let mut b = Builder::new();
        let x = b.created("alice", "room_A", Some("k1"), "b1");
        let y = b.created("bob", "room_A", Some("k2"), "b2");
        b.empty_store();
        let r = NoDoubleBooking.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid, "{r:?}");
        assert!(r.violations.iter().any(|v| v.ops == [x, y]));
    }

    #[test]
    fn a_booking_handed_to_another_request_is_judged_by_its_own_slot() {
        // u2 asked for room_B and was handed u5's room_A booking (a key
        // collision): wrong, but no slot holds two bookings.
        let mut b = Builder::new();
        b.timed_out("u5", "room_A", Some("1"));
        let i = b.created("u2", "room_B", Some("1"), "b1");
        b.history.ops[i].body = Some(crate::checker::testing::created_body("b1", "u5", "room_A"));
        b.created("u3", "room_B", Some("2"), "b2");
        b.row("b1", "u5", "room_A", "confirmed", Some("1"));
        b.row("b2", "u3", "room_B", "confirmed", Some("2"));
        assert_eq!(NoDoubleBooking.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn cancel_then_rebook_is_fine() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k1"), "b1");
        b.cancel("alice", "b1", Outcome::Ok);
        b.created("bob", "room_A", Some("k2"), "b2");
        b.row("b1", "alice", "room_A", "cancelled", Some("k1"));
        b.row("b2", "bob", "room_A", "confirmed", Some("k2"));
        assert_eq!(NoDoubleBooking.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn a_possibly_applied_cancel_counts_as_a_cancel() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k1"), "b1");
        b.cancel("alice", "b1", Outcome::Info);
        b.created("bob", "room_A", Some("k2"), "b2");
        b.row("b1", "alice", "room_A", "cancelled", Some("k1"));
        b.row("b2", "bob", "room_A", "confirmed", Some("k2"));
        assert_eq!(NoDoubleBooking.check(&b.history).validity, Validity::Valid);
    }
}
