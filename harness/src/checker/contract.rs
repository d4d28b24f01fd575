//! Invariant 7: Contract: every status and error code is one the API documents, and
//! bodies have the documented shape (`success`, a booking in 2xx answers, a
//! problem document with a matching `status` in error answers).

use super::{CheckResult, Checker, Violation};
use crate::history::{History, OpKind, Operation};

pub struct Contract;

fn documented(kind: OpKind, status: u16, code: Option<&str>) -> bool {
    let common = matches!(
        (status, code),
        (400, Some("VALIDATION_FAILED"))
            | (413, Some("PAYLOAD_TOO_LARGE"))
            | (503, Some("DEPENDENCY_UNAVAILABLE"))
            | (500, Some("INTERNAL"))
    );
    common
        || match kind {
            OpKind::Create => matches!(
                (status, code),
                (201, None)
                    | (400, Some("IDEMPOTENCY_KEY_INVALID"))
                    | (404, Some("UNKNOWN_RESOURCE"))
                    | (
                        409,
                        Some("IDEMPOTENCY_IN_PROGRESS" | "RESOURCE_LOCKED" | "ALREADY_BOOKED")
                    )
                    | (422, Some("IDEMPOTENCY_KEY_REUSED"))
            ),
            OpKind::Cancel => matches!((status, code), (200, None) | (404, Some("NOT_FOUND"))),
            OpKind::List | OpKind::Availability => matches!((status, code), (200, None)),
        }
}

fn shape_problem(op: &Operation) -> Option<String> {
    let status = op.status?;
    let Some(json) = op.json() else {
        return Some(format!("{status} with a body that is not JSON"));
    };
    if status < 300 {
        if json["success"] != true {
            return Some("2xx without success: true".into());
        }
        if matches!(op.kind, OpKind::Create | OpKind::Cancel) && !json["booking"]["id"].is_string()
        {
            return Some("2xx without a booking".into());
        }
    } else {
        if json["success"] != false || json["status"] != status || !json["code"].is_string() {
            return Some(format!("{status} without a problem document"));
        }
        if matches!(status, 409 | 503) {
            let code = json["code"].as_str().unwrap_or("");
            if code != "ALREADY_BOOKED"
                && !op.replayed
                && op.error.as_deref() == Some("no Retry-After")
            {
                return Some(format!("{code} without Retry-After"));
            }
        }
    }
    None
}

impl Checker for Contract {
    fn name(&self) -> &'static str {
        "contract"
    }

    fn check(&self, h: &History) -> CheckResult {
        let mut violations = Vec::new();
        for op in h.ops.iter().filter(|o| o.status.is_some()) {
            let status = op.status.unwrap_or_default();
            if !documented(op.kind, status, op.code.as_deref()) {
                violations.push(Violation {
                    message: format!(
                        "undocumented answer {status} {} to {:?}",
                        op.code.as_deref().unwrap_or("(no code)"),
                        op.kind
                    ),
                    ops: vec![op.index],
                    rows: Vec::new(),
                });
            } else if let Some(problem) = shape_problem(op) {
                violations.push(Violation {
                    message: problem,
                    ops: vec![op.index],
                    rows: Vec::new(),
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
    fn documented_answers_and_unanswered_requests_are_valid() {
        let mut b = Builder::new();
        b.created("alice", "room_A", Some("k"), "b1");
        b.failed("bob", "room_A", Some("k"), 409, "ALREADY_BOOKED");
        b.timed_out("carol", "room_A", Some("k"));
        assert_eq!(Contract.check(&b.history).validity, Validity::Valid);
    }
}
