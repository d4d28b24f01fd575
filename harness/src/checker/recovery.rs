//! Invariant 6: Recovery: once the faults heal, a fresh request for a free slot
//! succeeds within a bound. The runner sends these probes (process
//! `recovery`) after the fault timeline ends.

use super::{CheckResult, Checker, Violation};
use crate::history::History;

pub struct Recovery;

pub const PROCESS: &str = "recovery";

impl Checker for Recovery {
    fn name(&self) -> &'static str {
        "recovery"
    }

    fn check(&self, h: &History) -> CheckResult {
        let probes: Vec<_> = h.ops.iter().filter(|o| o.process == PROCESS).collect();
        let Some(first) = probes.first() else {
            return CheckResult::unknown(self.name(), "no recovery probes were sent");
        };
        let bound = if h.meta.recovery_bound_ms > 0.0 {
            h.meta.recovery_bound_ms
        } else {
            30_000.0
        };
        let recovered = probes
            .iter()
            .find(|o| o.is_created() && o.complete_ms - first.invoke_ms <= bound);
        let violations = match recovered {
            Some(_) => Vec::new(),
            None => vec![Violation {
                message: format!(
                    "no fresh booking succeeded within {:.0} ms after the faults healed",
                    bound
                ),
                ops: probes.iter().map(|o| o.index).collect(),
                rows: Vec::new(),
            }],
        };
        CheckResult::from_violations(self.name(), violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testing::Builder;
    use crate::checker::Validity;

    #[test]
    fn probes_that_never_succeed_are_caught() {
        let mut b = Builder::new();
        for _ in 0..3 {
            b.raw(|o| {
                o.process = PROCESS.into();
                o.status = Some(503);
                o.code = Some("DEPENDENCY_UNAVAILABLE".into());
            });
        }
        assert_eq!(Recovery.check(&b.history).validity, Validity::Invalid);
    }

    #[test]
    fn a_successful_probe_within_the_bound_is_valid() {
        let mut b = Builder::new();
        b.raw(|o| o.process = PROCESS.into());
        let i = b.created("probe", "room_A", Some("p"), "b1");
        b.history.ops[i].process = PROCESS.into();
        assert_eq!(Recovery.check(&b.history).validity, Validity::Valid);
    }

    #[test]
    fn no_probes_is_unknown() {
        assert_eq!(
            Recovery.check(&History::default()).validity,
            Validity::Unknown
        );
    }
}
