//! Invariant 10: No stale replay: no answer presents a booking as confirmed
//! once a cancel of it had been acknowledged before the request was sent —
//! neither a create without a client key (a rebook answered with the
//! cancelled booking) nor a list. A create that repeats its own client key
//! is exempt: it replays its first answer byte for byte, by contract.

use super::{first_acknowledged_cancels, CheckResult, Checker, Violation};
use crate::history::{History, OpKind};

pub struct NoStaleReplay;

impl Checker for NoStaleReplay {
    fn name(&self) -> &'static str {
        "no_stale_replay"
    }

    fn check(&self, h: &History) -> CheckResult {
        let cancelled = first_acknowledged_cancels(h);
        let mut violations = Vec::new();
        for op in &h.ops {
            let presented = match op.kind {
                OpKind::Create if op.key.is_none() => op.returned_booking().into_iter().collect(),
                OpKind::List => op.listed_bookings(),
                _ => Vec::new(),
            };
            for b in presented.iter().filter(|b| b.status == "confirmed") {
                let Some(&(at, cancel)) = cancelled.get(b.id.as_str()) else {
                    continue;
                };
                if at < op.invoke_ms {
                    violations.push(Violation {
                        message: format!(
                            "booking {} was cancelled at {at:.0} ms and presented as confirmed to a request sent at {:.0} ms",
                            b.id, op.invoke_ms
                        ),
                        ops: vec![cancel, op.index],
                        rows: vec![b.id.clone()],
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
    fn a_rebook_that_replays_the_cancelled_booking_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", None, "b1");
        let c = b.cancel("alice", "b1", Outcome::Ok);
        let r = b.created("alice", "room_A", None, "b1");
        let result = NoStaleReplay.check(&b.history);
        assert_eq!(result.validity, Validity::Invalid);
        assert_eq!(result.violations[0].ops, [c, r]);
    }

    #[test]
    fn a_list_showing_a_cancelled_booking_as_confirmed_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.cancel("alice", "b1", Outcome::Ok);
        b.list("alice", &[("b1", "alice", "room_A", "confirmed")]);
        assert_eq!(NoStaleReplay.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_fresh_booking_after_a_cancel_and_concurrent_answers_are_valid() {
        let mut b = Builder::new();
        b.created("alice", "room_A", None, "b1");
        b.list("alice", &[("b1", "alice", "room_A", "confirmed")]);
        b.cancel("alice", "b1", Outcome::Ok);
        b.created("alice", "room_A", None, "b2");
        b.list("alice", &[("b1", "alice", "room_A", "cancelled")]);
        // A cancel that may or may not have happened proves nothing.
        b.created("bob", "room_B", Some("j"), "b3");
        b.cancel("bob", "b3", Outcome::Info);
        b.list("bob", &[("b3", "bob", "room_B", "confirmed")]);
        // Repeating a client key replays its first answer, by contract.
        b.created("carol", "room_C", Some("c"), "b4");
        b.cancel("carol", "b4", Outcome::Ok);
        b.created("carol", "room_C", Some("c"), "b4");
        assert_eq!(NoStaleReplay.check(&b.history).validity, Validity::Valid);
    }
}
