//! Invariant 11: Isolation between users: a list holds only its user's
//! bookings; a cancel by someone other than the owner is refused and changes
//! nothing; one user's key never yields another user's booking, and never
//! refuses another user's request as a key reuse.
//!
//! The owner of a booking is the user of the request it was first returned
//! to with its own user id in the body, or its row in the store.

use std::collections::{BTreeMap, BTreeSet};

use super::{CheckResult, Checker, Violation};
use crate::history::{History, OpKind, Outcome};

pub struct Isolation;

impl Checker for Isolation {
    fn name(&self) -> &'static str {
        "isolation"
    }

    fn check(&self, h: &History) -> CheckResult {
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        if let Some(rows) = &h.final_state {
            for r in rows {
                owner.insert(r.id.clone(), r.user_id.clone());
            }
        }
        for op in h.ops.iter().filter(|o| o.kind == OpKind::Create) {
            if let Some(b) = op.returned_booking() {
                owner.entry(b.id).or_insert(b.user);
            }
        }
        let mut violations = Vec::new();
        let mut owner_cancels: BTreeSet<&str> = BTreeSet::new();
        for op in &h.ops {
            match op.kind {
                OpKind::List => {
                    for b in op.listed_bookings().iter().filter(|b| b.user != op.user) {
                        violations.push(Violation {
                            message: format!(
                                "the list of {} shows booking {} of {}",
                                op.user, b.id, b.user
                            ),
                            ops: vec![op.index],
                            rows: vec![b.id.clone()],
                        });
                    }
                }
                OpKind::Cancel => {
                    let Some(id) = op.booking_id.as_deref() else {
                        continue;
                    };
                    match owner.get(id) {
                        Some(o) if *o == op.user => {
                            if matches!(op.outcome, Outcome::Ok | Outcome::Info) {
                                owner_cancels.insert(id);
                            }
                        }
                        Some(o) if op.outcome == Outcome::Ok => violations.push(Violation {
                            message: format!(
                                "{} cancelled booking {id} of {o} ({})",
                                op.user,
                                op.status.unwrap_or(0)
                            ),
                            ops: vec![op.index],
                            rows: vec![id.to_owned()],
                        }),
                        _ => {}
                    }
                }
                OpKind::Create => {
                    if let Some(b) = op.returned_booking().filter(|b| b.user != op.user) {
                        violations.push(Violation {
                            message: format!(
                                "{}'s request with key {} was answered with booking {} of {}",
                                op.user,
                                op.key.as_deref().unwrap_or("(none)"),
                                b.id,
                                b.user
                            ),
                            ops: vec![op.index],
                            rows: vec![b.id],
                        });
                    }
                }
                OpKind::Availability => {}
            }
        }
        violations.extend(reuse_refusals_without_reuse(h));
        // A booking cancelled in the store without any cancel by its owner.
        if let Some(rows) = &h.final_state {
            let requested_cancel: BTreeSet<&str> = h
                .ops
                .iter()
                .filter(|o| o.kind == OpKind::Cancel)
                .filter_map(|o| o.booking_id.as_deref())
                .collect();
            for r in rows.iter().filter(|r| r.status == "cancelled") {
                if requested_cancel.contains(r.id.as_str())
                    && !owner_cancels.contains(r.id.as_str())
                {
                    violations.push(Violation {
                        message: format!(
                            "booking {} of {} is cancelled, though only other users asked to cancel it",
                            r.id, r.user_id
                        ),
                        ops: h
                            .ops
                            .iter()
                            .filter(|o| o.booking_id.as_deref() == Some(r.id.as_str()))
                            .map(|o| o.index)
                            .collect(),
                        rows: vec![r.id.clone()],
                    });
                }
            }
        }
        CheckResult::from_violations(self.name(), violations)
    }
}

/// `IDEMPOTENCY_KEY_REUSED` is only right when the same user sent the same
/// key with another payload; a refusal without such a request means the key
/// was shared with someone else.
fn reuse_refusals_without_reuse(h: &History) -> Vec<Violation> {
    let mut payloads: BTreeMap<_, BTreeSet<(Option<&str>, Option<&str>)>> = BTreeMap::new();
    for op in h.ops.iter().filter(|o| o.kind == OpKind::Create) {
        if let Some(scope) = op.scope() {
            payloads
                .entry(scope)
                .or_default()
                .insert((op.resource.as_deref(), op.date.as_deref()));
        }
    }
    h.ops
        .iter()
        .filter(|o| o.kind == OpKind::Create && o.has_code("IDEMPOTENCY_KEY_REUSED"))
        .filter(|o| {
            o.scope()
                .and_then(|s| payloads.get(&s))
                .is_none_or(|p| p.len() < 2)
        })
        .map(|o| Violation {
            message: format!(
                "{}'s request with key {} was refused as a key reuse, but {} never sent that key with another payload",
                o.user,
                o.key.as_deref().unwrap_or("(derived)"),
                o.user
            ),
            ops: vec![o.index],
            rows: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::{created_body, Builder};
    use crate::checker::Validity;

    #[test]
    fn a_list_with_another_users_booking_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.list("bob", &[("b1", "alice", "room_A", "confirmed")]);
        assert_eq!(Isolation.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_cancel_by_another_user_that_succeeds_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        let c = b.cancel("mallory", "b1", Outcome::Ok);
        b.row("b1", "alice", "room_A", "cancelled", Some("k"));
        let r = Isolation.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert!(r.violations.iter().any(|v| v.ops == [c]));
        assert!(r
            .violations
            .iter()
            .any(|v| v.message.contains("only other users")));
    }

    #[test]
    fn a_refused_foreign_cancel_and_the_owners_cancel_are_valid() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        let c = b.cancel("mallory", "b1", Outcome::Fail);
        b.history.ops[c].status = Some(404);
        b.cancel("alice", "b1", Outcome::Ok);
        b.row("b1", "alice", "room_A", "cancelled", Some("k"));
        b.list("alice", &[("b1", "alice", "room_A", "cancelled")]);
        assert_eq!(Isolation.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn another_users_booking_for_a_shared_key_is_caught() {
        let mut b = Builder::new();
        b.created("u5", "room_D", Some("1"), "b1");
        let i = b.created("u2", "room_D", Some("1"), "b1");
        b.history.ops[i].body = Some(created_body("b1", "u5", "room_D"));
        assert_eq!(Isolation.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_reuse_refusal_is_right_only_after_the_user_reused_the_key() {
        let mut b = Builder::new();
        b.created("u5", "room_A", Some("1"), "b1");
        b.failed("u2", "room_B", Some("1"), 422, "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(Isolation.check(&b.history).validity, Validity::Invalid);

        let mut b = Builder::new();
        b.created("u2", "room_A", Some("1"), "b1");
        b.failed("u2", "room_B", Some("1"), 422, "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(Isolation.check(&b.history).validity, Validity::Valid);
    }
}
