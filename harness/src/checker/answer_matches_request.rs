//! Invariant 9: Answer matches request: a `201` (or its replay) carries the
//! booking the request asked for — its user, resource and date. Under the
//! `replay` reuse policy a key reused by its user for another slot replays
//! the first booking by design, so only the user is compared then.

use super::{CheckResult, Checker, Violation};
use crate::history::{History, OpKind};

pub struct AnswerMatchesRequest;

impl Checker for AnswerMatchesRequest {
    fn name(&self) -> &'static str {
        "answer_matches_request"
    }

    fn check(&self, h: &History) -> CheckResult {
        let replay_policy = h.meta.reuse_policy == "replay";
        let mut violations = Vec::new();
        for op in h.ops.iter().filter(|o| o.kind == OpKind::Create) {
            let Some(got) = op.returned_booking() else {
                continue;
            };
            let asked_resource = op.resource.as_deref().unwrap_or_default();
            let asked_date = op.date.as_deref().unwrap_or_default();
            let mut wrong = Vec::new();
            if got.user != op.user {
                wrong.push(format!("user {} instead of {}", got.user, op.user));
            }
            if !replay_policy {
                if got.resource != asked_resource {
                    wrong.push(format!(
                        "resource {} instead of {asked_resource}",
                        got.resource
                    ));
                }
                if got.date != asked_date {
                    wrong.push(format!("date {} instead of {asked_date}", got.date));
                }
            }
            if !wrong.is_empty() {
                violations.push(Violation {
                    message: format!(
                        "{} asked for {asked_resource} on {asked_date} with key {} and got booking {} for {}",
                        op.user,
                        op.key.as_deref().unwrap_or("(none)"),
                        got.id,
                        wrong.join(", ")
                    ),
                    ops: vec![op.index],
                    rows: vec![got.id],
                });
            }
        }
        CheckResult::from_violations(self.name(), violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::{created_body, Builder};
    use crate::checker::Validity;

    #[test]
    fn a_replay_of_another_slot_is_caught() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        let i = b.created("alice", "room_B", Some("k"), "b1");
        b.history.ops[i].body = Some(created_body("b1", "alice", "room_A"));
        let r = AnswerMatchesRequest.check(&b.history);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.violations[0].ops, [i]);
        assert!(r.violations[0]
            .message
            .contains("resource room_A instead of room_B"));
    }

    #[test]
    fn another_users_booking_is_caught_even_under_the_replay_policy() {
        let mut b = Builder::new();
        b.history.meta.reuse_policy = "replay".into();
        let i = b.created("bob", "room_A", Some("k"), "b1");
        b.history.ops[i].body = Some(created_body("b1", "alice", "room_A"));
        assert_eq!(
            AnswerMatchesRequest.check(&b.history).validity,
            Validity::Invalid
        );
    }

    #[test]
    fn the_replay_policy_allows_another_slot_for_the_same_user() {
        let mut b = Builder::new();
        b.history.meta.reuse_policy = "replay".into();
        let i = b.created("alice", "room_B", Some("k"), "b1");
        b.history.ops[i].body = Some(created_body("b1", "alice", "room_A"));
        assert_eq!(
            AnswerMatchesRequest.check(&b.history).validity,
            Validity::Valid
        );
        b.history.meta.reuse_policy = "reject".into();
        assert_eq!(
            AnswerMatchesRequest.check(&b.history).validity,
            Validity::Invalid
        );
    }

    #[test]
    fn matching_answers_are_valid() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.created("alice", "room_A", Some("k"), "b1");
        b.failed("bob", "room_A", None, 409, "ALREADY_BOOKED");
        assert_eq!(
            AnswerMatchesRequest.check(&b.history).validity,
            Validity::Valid
        );
    }
}
