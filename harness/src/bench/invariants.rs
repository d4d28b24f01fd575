//! The invariants, checked on the database after every workload, by the
//! scenario checkers themselves (`no_double_booking`, `no_lost_ack`): a
//! load run is judged by the same code as a chaos run, on a history made of
//! its acknowledged bookings and the store's final state.

use crate::checker::{self, Validity};
use crate::history::{BookingRow, History, OpKind, Operation, Outcome};
use crate::stack::Stack;

/// The checkers a load run can decide: it records no answers but its 201s.
const CHECKERS: [&str; 2] = ["no_double_booking", "no_lost_ack"];

/// No two confirmed bookings per slot; every acknowledged booking exists.
pub(super) async fn check_invariants(
    stack: &Stack,
    acknowledged: &[String],
    workload: &str,
    violations: &mut Vec<String>,
) {
    match stack.final_state().await {
        Ok(Some(rows)) => violations.extend(judge(acknowledged, rows, workload)),
        Ok(None) => violations.push(format!("{workload}: no store to read the invariants from")),
        Err(e) => violations.push(format!("{workload}: could not read the store: {e:#}")),
    }
}

/// What the checkers find in the store after a load whose creates were
/// acknowledged with the booking ids `acknowledged`: one line per checker
/// that found something.
pub(super) fn judge(acknowledged: &[String], rows: Vec<BookingRow>, workload: &str) -> Vec<String> {
    let history = History {
        ops: acknowledged
            .iter()
            .enumerate()
            .map(|(index, id)| acknowledged_create(index, id))
            .collect(),
        final_state: Some(rows),
        ..History::default()
    };
    let names: Vec<String> = CHECKERS.iter().map(|c| (*c).to_owned()).collect();
    checker::check(&history, &names)
        .results
        .into_iter()
        .filter(|r| r.validity != Validity::Valid)
        .map(|r| {
            let first = r
                .violations
                .first()
                .map_or_else(|| r.note.clone().unwrap_or_default(), |v| v.message.clone());
            format!(
                "{workload}: {} ({} violation(s)), e.g. {first}",
                r.checker,
                r.violations.len()
            )
        })
        .collect()
}

/// A create acknowledged with `201` and booking `id`, as the history has it.
fn acknowledged_create(index: usize, id: &str) -> Operation {
    Operation {
        index,
        process: "bench".into(),
        intent: index as u64,
        attempt: 1,
        kind: OpKind::Create,
        user: String::new(),
        resource: None,
        date: None,
        key: None,
        booking_id: None,
        replica: None,
        invoke_ms: 0.0,
        complete_ms: 0.0,
        outcome: Outcome::Ok,
        status: Some(201),
        code: None,
        body: Some(format!(r#"{{"booking":{{"id":"{id}"}}}}"#)),
        canonical: None,
        replayed: false,
        retry_after: false,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, date: &str, status: &str) -> BookingRow {
        BookingRow {
            id: id.into(),
            user_id: "bench_1_0_0".into(),
            resource_id: "bench_room_0".into(),
            date: date.into(),
            status: status.into(),
            key_kind: "client".into(),
            idem_key: format!("k-{id}"),
        }
    }

    #[test]
    fn a_correct_store_passes_and_both_breaches_are_named() {
        let acked = vec!["b1".to_owned(), "b2".to_owned()];
        let good = vec![
            row("b1", "2100-01-01", "confirmed"),
            row("b2", "2100-01-02", "confirmed"),
        ];
        assert!(judge(&acked, good, "creates").is_empty());

        let double = vec![
            row("b1", "2100-01-01", "confirmed"),
            row("b2", "2100-01-02", "confirmed"),
            row("b3", "2100-01-01", "confirmed"),
        ];
        let found = judge(&acked, double, "creates");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("creates: no_double_booking"),
            "{found:?}"
        );

        let lost = vec![row("b1", "2100-01-01", "confirmed")];
        let found = judge(&acked, lost, "mix");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("no_lost_ack") && found[0].contains("b2"),
            "{found:?}"
        );
    }
}
