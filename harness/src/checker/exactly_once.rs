//! Invariant 4: Exactly-once effect: one (user, client key) has at most one booking
//! row. A server-derived key may book again after its booking was cancelled,
//! so for derived keys at most one of its rows may be confirmed.

use std::collections::BTreeMap;

use super::{CheckResult, Checker, Violation};
use crate::history::History;

pub struct ExactlyOnce;

impl Checker for ExactlyOnce {
    fn name(&self) -> &'static str {
        "exactly_once"
    }

    fn check(&self, h: &History) -> CheckResult {
        let Some(rows) = &h.final_state else {
            return CheckResult::unknown(self.name(), "no final state of the store");
        };
        let mut by_scope: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for row in rows {
            by_scope.entry(row.scope()).or_default().push(row);
        }
        let mut violations = Vec::new();
        for (scope, rows) in by_scope {
            let confirmed = rows.iter().filter(|r| r.status == "confirmed").count();
            let too_many = if scope.kind == "client" {
                rows.len() > 1
            } else {
                confirmed > 1
            };
            if too_many {
                let ops = h
                    .ops
                    .iter()
                    .filter(|o| o.scope().as_ref() == Some(&scope))
                    .map(|o| o.index)
                    .collect();
                violations.push(Violation {
                    message: format!("key {scope} has {} booking rows", rows.len()),
                    ops,
                    rows: rows.iter().map(|r| r.id.clone()).collect(),
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
    fn two_rows_for_one_client_key_are_caught_even_if_one_is_cancelled() {
        let mut b = Builder::new();
        b.row("b1", "alice", "room_A", "cancelled", Some("k"));
        b.row("b2", "alice", "room_B", "confirmed", Some("k"));
        let r = ExactlyOnce.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.violations[0].rows, ["b1", "b2"]);
    }

    #[test]
    fn a_derived_key_may_rebook_after_a_cancel() {
        let mut b = Builder::new();
        b.row("b1", "alice", "room_A", "cancelled", None);
        b.row("b2", "alice", "room_A", "confirmed", None);
        b.row("b3", "bob", "room_B", "confirmed", Some("k"));
        b.row("b4", "alice", "room_B", "confirmed", Some("k"));
        assert_eq!(ExactlyOnce.check(&b.history).validity, Validity::Valid);
    }
}
