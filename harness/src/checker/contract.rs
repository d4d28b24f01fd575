//! Invariant 7: Contract: every status and error code is one the API
//! documents, and bodies have the documented shape. What "documented" means
//! comes from the run's API profile (`profile.rs`): this service's problem
//! documents by default, another dialect when the target speaks one.
//!
//! When most answers of one status break the profile the same way, the
//! profile is wrong for this target, not every answer: that is reported once,
//! as a configuration problem, with the operations it concerns.

use std::collections::BTreeMap;

use super::{CheckResult, Checker, Violation};
use crate::history::{History, Operation};

pub struct Contract;

/// Of the answers with one status, the share with one shape problem above
/// which the problem is the profile's, not the answers'.
const MISMATCH_SHARE: f64 = 0.8;
/// And at least this many of them (a handful may be genuine).
const MISMATCH_MIN: usize = 5;

impl Checker for Contract {
    fn name(&self) -> &'static str {
        "contract"
    }

    fn check(&self, h: &History) -> CheckResult {
        let profile = &h.meta.api;
        let mut violations = Vec::new();
        let mut answers_by_status: BTreeMap<u16, usize> = BTreeMap::new();
        let mut shape: BTreeMap<(u16, String), Vec<&Operation>> = BTreeMap::new();
        for op in h.ops.iter().filter(|o| o.status.is_some()) {
            let status = op.status.unwrap_or_default();
            *answers_by_status.entry(status).or_default() += 1;
            if !profile.documents(op.kind, status, op.code.as_deref()) {
                violations.push(Violation {
                    message: format!(
                        "undocumented answer {status} {} to {:?}",
                        op.code.as_deref().unwrap_or("(no code)"),
                        op.kind
                    ),
                    ops: vec![op.index],
                    rows: Vec::new(),
                });
                continue;
            }
            // A replayed answer repeats the first one, headers aside.
            let retry_after = op.retry_after || op.replayed;
            if let Some(problem) = profile.shape_problem(
                op.kind,
                status,
                op.body.as_deref().unwrap_or(""),
                retry_after,
            ) {
                shape.entry((status, problem)).or_default().push(op);
            }
        }
        for ((status, problem), ops) in shape {
            let answers = answers_by_status.get(&status).copied().unwrap_or(0);
            let profile_wrong =
                ops.len() >= MISMATCH_MIN && ops.len() as f64 >= MISMATCH_SHARE * answers as f64;
            if profile_wrong {
                violations.push(Violation {
                    message: format!(
                        "configuration: {} of {answers} answers {status} break API profile {:?} \
                         the same way ({problem}); the target speaks another dialect: choose \
                         --api-profile or write a profile file (docs/SCENARIOS.md)",
                        ops.len(),
                        profile.name
                    ),
                    ops: ops.iter().map(|o| o.index).collect(),
                    rows: Vec::new(),
                });
            } else {
                for op in ops {
                    violations.push(Violation {
                        message: problem.clone(),
                        ops: vec![op.index],
                        rows: Vec::new(),
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

    #[test]
    fn an_undocumented_status_or_code_is_caught() {
        let mut b = Builder::new();
        b.failed("alice", "room_A", Some("k"), 409, "SOMETHING_ELSE");
        assert_eq!(Contract.check(&b.history).validity, Validity::Invalid);
        let mut b = Builder::new();
        b.raw(|o| {
            o.status = Some(502);
            o.body = Some("bad gateway".into());
        });
        assert_eq!(Contract.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_201_without_a_booking_is_caught() {
        let mut b = Builder::new();
        let i = b.created("alice", "room_A", Some("k"), "b1");
        b.history.ops[i].body = Some(r#"{"success":true}"#.into());
        assert_eq!(Contract.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_try_again_without_retry_after_is_caught() {
        let mut b = Builder::new();
        let i = b.failed("alice", "room_A", Some("k"), 409, "RESOURCE_LOCKED");
        b.history.ops[i].retry_after = false;
        assert_eq!(Contract.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn another_dialect_is_one_configuration_finding_not_one_per_answer() {
        let mut b = Builder::new();
        for n in 0..20 {
            let i = b.failed(
                "bob",
                "room_A",
                Some(&format!("k{n}")),
                409,
                "ALREADY_BOOKED",
            );
            b.history.ops[i].body =
                Some(r#"{"success":false,"error":"taken","code":"ALREADY_BOOKED"}"#.into());
        }
        let r = Contract.check(&b.history);
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert!(r.violations[0].message.starts_with("configuration:"));
        assert_eq!(r.violations[0].ops.len(), 20);
        b.history.meta.api = crate::profile::ApiProfile::node();
        assert_eq!(Contract.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn documented_answers_and_unanswered_requests_are_valid() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.failed("bob", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        b.timed_out("carol", "room_A", Some("k"));
        assert_eq!(Contract.check(&b.history).validity, Validity::Valid);
    }
}
