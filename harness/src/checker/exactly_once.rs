//! Invariant 4: Exactly-once effect: one (user, client key) has at most one booking
//! row. A server-derived key may book again after its booking was cancelled,
//! so for derived keys at most one of its rows may be confirmed. A client key
//! whose retention ran out may book again too: its rows are fine when each
//! was acknowledged at least one retention after the one before (a run
//! with the default 24 h retention never sees that).

use std::collections::BTreeMap;

use super::{CheckResult, Checker, Violation};
use crate::history::{BookingRow, History, Scope};

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
                rows.len() > 1 && !one_per_life(h, &scope, &rows)
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

/// Whether each of a client key's rows was booked in a life of the key of
/// its own: every row acknowledged, each at least the key's retention after
/// the one before. Unknown retention or an unacknowledged row: no.
fn one_per_life(h: &History, scope: &Scope, rows: &[&BookingRow]) -> bool {
    let ttl = h.meta.booking_retention_ms();
    if ttl.is_infinite() {
        return false;
    }
    let mut booked_at = Vec::with_capacity(rows.len());
    for row in rows {
        let first = h
            .ops
            .iter()
            .filter(|o| {
                o.scope().as_ref() == Some(scope)
                    && o.returned_booking_id().as_deref() == Some(row.id.as_str())
            })
            .map(|o| o.invoke_ms)
            .min_by(f64::total_cmp);
        match first {
            Some(at) => booked_at.push(at),
            None => return false,
        }
    }
    booked_at.sort_by(f64::total_cmp);
    booked_at.windows(2).all(|w| w[1] >= w[0] + ttl)
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
    fn a_client_key_may_book_again_once_its_retention_ran_out() {
        use crate::history::Outcome;
        let mut b = Builder::new();
        b.history.meta.client_key_ttl_ms = 100.0;
        let first = b.created("alice", "room_A", Some("k"), "b1");
        b.cancel("alice", "b1", Outcome::Ok);
        let again = b.created("alice", "room_A", Some("k"), "b2");
        b.row("b1", "alice", "room_A", "cancelled", Some("k"));
        b.row("b2", "alice", "room_A", "confirmed", Some("k"));
        assert_eq!(
            ExactlyOnce.check(&b.history).validity,
            Validity::Invalid,
            "booked again within the retention"
        );
        b.history.ops[again].invoke_ms = b.history.ops[first].invoke_ms + 100.0;
        assert_eq!(ExactlyOnce.check(&b.history).validity, Validity::Valid);
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
