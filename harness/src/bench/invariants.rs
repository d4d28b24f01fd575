//! The invariants, checked on the database after every workload.

use crate::stack::Stack;

/// No two confirmed bookings per slot; every acknowledged booking exists.
pub(super) async fn check_invariants(
    stack: &Stack,
    acknowledged: &[String],
    workload: &str,
    violations: &mut Vec<String>,
) {
    match stack.store().invariant_report(acknowledged).await {
        Ok(found) => violations.extend(found.into_iter().map(|v| format!("{workload}: {v}"))),
        Err(e) => violations.push(format!("{workload}: could not read the store: {e:#}")),
    }
}
