//! Invariant 12: Availability tells the truth. At quiescence (after the
//! settle phase, process `quiescence`) `/api/resources/available` lists a
//! workload resource as free exactly when the store holds no confirmed
//! booking for it on that date. During the run, a resource is never listed
//! as free while a booking of it was acknowledged before the read was sent
//! and no cancel of it had been sent before the read completed.

use std::collections::BTreeSet;

use super::{CheckResult, Checker, Violation, QUIESCENCE_PROCESS};
use crate::history::{History, OpKind};

pub struct Availability;

impl Checker for Availability {
    fn name(&self) -> &'static str {
        "availability"
    }

    fn check(&self, h: &History) -> CheckResult {
        let reads: Vec<_> = h
            .ops
            .iter()
            .filter(|o| o.kind == OpKind::Availability)
            .filter_map(|o| Some((o, o.available_resources()?)))
            .collect();
        let mut violations = Vec::new();
        let quiescent: Vec<_> = reads
            .iter()
            .filter(|(o, _)| o.process == QUIESCENCE_PROCESS)
            .collect();
        if let Some(rows) = &h.final_state {
            for (op, free) in &quiescent {
                let date = op.date.as_deref().unwrap_or_default();
                let taken: BTreeSet<&str> = rows
                    .iter()
                    .filter(|r| r.status == "confirmed" && r.date == date)
                    .map(|r| r.resource_id.as_str())
                    .collect();
                for resource in &h.meta.resources {
                    let listed = free.contains(resource);
                    let is_taken = taken.contains(resource.as_str());
                    if listed == is_taken {
                        violations.push(Violation {
                            message: format!(
                                "{resource} on {date} is {} in the store but listed as {}",
                                if is_taken { "booked" } else { "free" },
                                if listed { "free" } else { "taken" }
                            ),
                            ops: vec![op.index],
                            rows: rows
                                .iter()
                                .filter(|r| &r.resource_id == resource && r.date == date)
                                .map(|r| r.id.clone())
                                .collect(),
                        });
                    }
                }
            }
        }
        // During the run: an acknowledged, uncancelled booking is never free.
        for (read, free) in &reads {
            let date = read.date.as_deref().unwrap_or_default();
            for ack in h.ops.iter().filter(|o| o.is_created()) {
                let Some(b) = ack.returned_booking() else {
                    continue;
                };
                if b.date != date
                    || !free.contains(&b.resource)
                    || ack.complete_ms >= read.invoke_ms
                {
                    continue;
                }
                let cancel_sent = h.ops.iter().any(|c| {
                    c.kind == OpKind::Cancel
                        && c.booking_id.as_deref() == Some(b.id.as_str())
                        && c.invoke_ms < read.complete_ms
                });
                if !cancel_sent {
                    violations.push(Violation {
                        message: format!(
                            "{} on {date} was listed as free while booking {} held it",
                            b.resource, b.id
                        ),
                        ops: vec![ack.index, read.index],
                        rows: vec![b.id.clone()],
                    });
                }
            }
        }
        if violations.is_empty() && (quiescent.is_empty() || h.final_state.is_none()) {
            return CheckResult::unknown(
                self.name(),
                "no availability read at quiescence to compare with the store",
            );
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

    fn builder() -> Builder {
        let mut b = Builder::new();
        b.history.meta.resources = vec!["room_A".into(), "room_B".into()];
        b
    }

    #[test]
    fn a_freed_slot_that_is_never_offered_again_is_caught() {
        let mut b = builder();
        b.created("alice", "room_A", Some("k"), "b1");
        b.cancel("alice", "b1", Outcome::Ok);
        b.row("b1", "alice", "room_A", "cancelled", Some("k"));
        b.availability(QUIESCENCE_PROCESS, &["room_B"]);
        let r = Availability.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert!(r.violations[0].message.contains("room_A"), "{r:?}");
    }

    #[test]
    fn a_booked_slot_listed_as_free_is_caught() {
        let mut b = builder();
        b.created("alice", "room_A", Some("k"), "b1");
        b.row("b1", "alice", "room_A", "confirmed", Some("k"));
        b.availability("c1", &["room_A", "room_B"]);
        let r = Availability.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert!(r.violations[0].message.contains("while booking b1 held it"));
    }

    #[test]
    fn truthful_reads_are_valid() {
        let mut b = builder();
        b.created("alice", "room_A", Some("k"), "b1");
        b.availability("c1", &["room_B"]);
        b.row("b1", "alice", "room_A", "confirmed", Some("k"));
        b.availability(QUIESCENCE_PROCESS, &["room_B"]);
        assert_eq!(Availability.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn without_a_quiescent_read_the_answer_is_unknown() {
        let mut b = builder();
        b.empty_store();
        assert_eq!(Availability.check(&b.history).validity, Validity::Unknown);
    }
}
