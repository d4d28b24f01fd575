//! Invariant 5: No phantom: every booking row belongs to a create that was invoked
//! (with its key and slot), and no client key that was definitively refused
//! with `ALREADY_BOOKED` has a booking — unless the refusal and the booking
//! were answers of different lives of the key: one came after the other's
//! retention had run out (the key was then decided anew). A life is dated
//! by its first answer; with faults, a decision whose answer was lost is
//! older than that, so short retentions and faults together can blur the
//! line between two lives.

use std::collections::BTreeSet;

use super::{CheckResult, Checker, Violation};
use crate::history::{History, OpKind, Operation};

pub struct NoPhantom;

impl Checker for NoPhantom {
    fn name(&self) -> &'static str {
        "no_phantom"
    }

    fn check(&self, h: &History) -> CheckResult {
        let Some(rows) = &h.final_state else {
            return CheckResult::unknown(self.name(), "no final state of the store");
        };
        let invoked: BTreeSet<_> = h
            .ops
            .iter()
            .filter(|o| o.kind == OpKind::Create)
            .filter_map(|o| Some((o.scope()?, o.slot()?)))
            .collect();
        let refused: BTreeSet<_> = h
            .ops
            .iter()
            .filter(|o| o.kind == OpKind::Create && o.has_code("ALREADY_BOOKED") && o.key.is_some())
            .filter_map(|o| o.scope())
            .collect();
        let mut violations = Vec::new();
        for row in rows {
            let scope = row.scope();
            let slot = (row.resource_id.clone(), row.date.clone());
            if !invoked.contains(&(scope.clone(), slot)) {
                violations.push(Violation {
                    message: format!(
                        "booking {} ({} {} for key {scope}) matches no invoked request",
                        row.id, row.resource_id, row.date
                    ),
                    ops: Vec::new(),
                    rows: vec![row.id.clone()],
                });
            }
            if refused.contains(&scope) {
                // When the key answered with this booking, if it did.
                let booked: Option<&Operation> = h
                    .ops
                    .iter()
                    .filter(|o| {
                        o.scope().as_ref() == Some(&scope)
                            && o.returned_booking_id().as_deref() == Some(row.id.as_str())
                    })
                    .min_by(|a, b| a.invoke_ms.total_cmp(&b.invoke_ms));
                // The key's refusals, grouped into lives: a refusal sent
                // before the first one of a life has expired (its answer +
                // the refusal retention) belongs to it, replays included.
                let mut refusals: Vec<&Operation> = h
                    .ops
                    .iter()
                    .filter(|o| o.scope().as_ref() == Some(&scope) && o.has_code("ALREADY_BOOKED"))
                    .collect();
                refusals.sort_by(|a, b| a.invoke_ms.total_cmp(&b.invoke_ms));
                let ttl = h.meta.refusal_retention_ms();
                let mut life_end = f64::NEG_INFINITY;
                let mut ends = Vec::with_capacity(refusals.len());
                for r in &refusals {
                    if r.invoke_ms >= life_end {
                        life_end = r.complete_ms + ttl;
                    }
                    ends.push(life_end);
                }
                let another_life = |refusal: &Operation, life_end: f64| {
                    booked.is_some_and(|b| {
                        // The booking's life was over before the refusal was
                        // sent, or the refusal's before the booking was.
                        b.complete_ms + h.meta.booking_retention_ms() <= refusal.invoke_ms
                            || life_end <= b.invoke_ms
                    })
                };
                let ops: Vec<usize> = refusals
                    .iter()
                    .zip(ends)
                    .filter(|(r, end)| !another_life(r, *end))
                    .map(|(r, _)| r.index)
                    .collect();
                if ops.is_empty() {
                    continue;
                }
                violations.push(Violation {
                    message: format!(
                        "key {scope} was refused with ALREADY_BOOKED but booked {}",
                        row.id
                    ),
                    ops,
                    rows: vec![row.id.clone()],
                });
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
    fn a_row_nobody_asked_for_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.row("b1", "alice", "room_A", "confirmed", Some("k"));
        b.row("b9", "mallory", "room_B", "confirmed", Some("zz"));
        let r = NoPhantom.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.violations[0].rows, ["b9"]);
    }

    #[test]
    fn a_refused_key_with_a_booking_is_caught() {
        let mut b = Builder::new();
        b.failed("bob", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        b.row("b2", "bob", "room_A", "confirmed", Some("k"));
        assert_eq!(NoPhantom.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_refusal_after_the_keys_booking_expired_is_another_life_of_the_key() {
        let mut b = Builder::new();
        b.history.meta.client_key_ttl_ms = 100.0;
        b.history.meta.refusal_ttl_ms = 100.0;
        b.created("bob", "room_A", Some("k"), "b2");
        let refusal = b.failed("bob", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        b.row("b2", "bob", "room_A", "confirmed", Some("k"));
        assert_eq!(
            NoPhantom.check(&b.history).validity,
            Validity::Invalid,
            "refused within the booking's retention"
        );
        b.history.ops[refusal].invoke_ms += 100.0;
        b.history.ops[refusal].complete_ms += 100.0;
        assert_eq!(NoPhantom.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn a_booking_after_the_refusals_life_is_another_life_even_with_replays() {
        let mut b = Builder::new();
        b.history.meta.client_key_ttl_ms = 100.0;
        b.history.meta.refusal_ttl_ms = 100.0;
        let first = b.failed("bob", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        let replay = b.failed("bob", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        let booked = b.created("bob", "room_A", Some("k"), "b2");
        b.row("b2", "bob", "room_A", "confirmed", Some("k"));
        // The replay comes late in the refusal's life; the booking after it ended.
        let start = b.history.ops[first].invoke_ms;
        b.history.ops[replay].invoke_ms = start + 80.0;
        b.history.ops[replay].complete_ms = start + 85.0;
        b.history.ops[booked].invoke_ms = start + 120.0;
        b.history.ops[booked].complete_ms = start + 125.0;
        assert_eq!(NoPhantom.check(&b.history).validity, Validity::Valid);
        // Booked while the refusal still stood: caught.
        b.history.ops[booked].invoke_ms = start + 90.0;
        assert_eq!(NoPhantom.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_booking_from_a_timed_out_request_is_not_a_phantom() {
        let mut b = Builder::new();
        b.timed_out("alice", "room_A", Some("k"));
        b.row("b1", "alice", "room_A", "confirmed", Some("k"));
        assert_eq!(NoPhantom.check(&b.history).validity, Validity::Valid);
    }
}
