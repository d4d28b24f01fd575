//! Invariant 2: No lost acknowledged booking: every booking returned with 201 exists in
//! the store, and is confirmed unless a cancel of it was (possibly) applied.

use std::collections::BTreeMap;

use super::{CheckResult, Checker, Violation};
use crate::history::{History, OpKind, Outcome};

pub struct NoLostAck;

impl Checker for NoLostAck {
    fn name(&self) -> &'static str {
        "no_lost_ack"
    }

    fn check(&self, h: &History) -> CheckResult {
        let Some(rows) = &h.final_state else {
            return CheckResult::unknown(self.name(), "no final state of the store");
        };
        let rows: BTreeMap<&str, &str> = rows
            .iter()
            .map(|r| (r.id.as_str(), r.status.as_str()))
            .collect();
        let mut acked: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for op in h.ops.iter().filter(|o| o.is_created()) {
            if let Some(id) = op.returned_booking_id() {
                acked.entry(id).or_default().push(op.index);
            }
        }
        let possibly_cancelled = |id: &str| {
            h.ops.iter().any(|o| {
                o.kind == OpKind::Cancel
                    && o.booking_id.as_deref() == Some(id)
                    && matches!(o.outcome, Outcome::Ok | Outcome::Info)
            })
        };
        let mut violations = Vec::new();
        for (id, ops) in acked {
            match rows.get(id.as_str()) {
                None => violations.push(Violation {
                    message: format!(
                        "booking {id} was acknowledged with 201 but is not in the store"
                    ),
                    ops,
                    rows: vec![id],
                }),
                Some(&"confirmed") => {}
                Some(status) if possibly_cancelled(&id) => {
                    let _ = status;
                }
                Some(status) => violations.push(Violation {
                    message: format!(
                        "booking {id} was acknowledged but is {status} without any cancel"
                    ),
                    ops,
                    rows: vec![id],
                }),
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
    fn an_acknowledged_booking_missing_from_the_store_is_caught() {
        let mut b = Builder::new();
        let op = b.created("alice", "room_A", Some("k"), "b1");
        b.empty_store();
        let r = NoLostAck.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.violations[0].ops, [op]);
    }

    #[test]
    fn a_cancelled_booking_without_a_cancel_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.row("b1", "alice", "room_A", "cancelled", Some("k"));
        assert_eq!(NoLostAck.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn acknowledged_and_stored_or_cancelled_is_valid() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.created("bob", "room_B", Some("k"), "b2");
        b.cancel("bob", "b2", Outcome::Info);
        b.row("b1", "alice", "room_A", "confirmed", Some("k"));
        b.row("b2", "bob", "room_B", "cancelled", Some("k"));
        assert_eq!(NoLostAck.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn without_a_final_state_the_answer_is_unknown() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        assert_eq!(NoLostAck.check(&b.history).validity, Validity::Unknown);
    }
}
