//! Where each kind of run books on the calendar.
//!
//! Checkers read back only the rows of a run's own dates, so runs that share
//! one store never see each other as long as their dates differ. Each kind
//! of run therefore has its own era, far from today (the front end's demo
//! users book near today), and steps through it by a fixed stride per case
//! or per run. What must never meet: the explorer's cases and its probes
//! (one long-lived stack), a scenario's workload and its probes, and
//! target-mode namespaces on a deployment someone else also uses.
//!
//! | era | who | stride |
//! |---|---|---|
//! | 2027 | a scenario file's default `first_date` | — (one run per stack) |
//! | 2030 | explorer cases on their shared stack | [`EXPLORE_CASE_DAYS`] per case |
//! | 2040 | bench load runs | the bench's own offsets (see `bench/workloads.rs`) |
//! | 2090 | explorer recovery probes | [`crate::runner::PROBES`] per case |
//! | 2099 | recovery probes of a scenario run | — |
//! | 2100 | pgbench's baseline rows | one per transaction |
//! | 3000–9999 | target-mode namespaces (a hash picks the window) | `Namespace::DAYS` |

use chrono::NaiveDate;

const fn day(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(d) => d,
        None => panic!("not a date"),
    }
}

/// A scenario file's `first_date` when it names none.
pub const SCENARIO_FIRST_DATE: NaiveDate = day(2027, 1, 4);
/// Explorer case `n` books from `EXPLORE_CASES + n × EXPLORE_CASE_DAYS`.
pub const EXPLORE_CASES: NaiveDate = day(2030, 1, 1);
/// Days each explorer case owns (a generated workload uses at most this many).
pub const EXPLORE_CASE_DAYS: u64 = 4;
/// The bench's slots start here.
pub const BENCH: NaiveDate = day(2040, 1, 1);
/// Explorer case `n` probes recovery from `EXPLORE_PROBES + n × PROBES`.
pub const EXPLORE_PROBES: NaiveDate = day(2090, 1, 1);
/// A scenario run's recovery probes (one run per stack).
pub const SCENARIO_PROBES: NaiveDate = day(2099, 1, 1);
/// Target-mode namespaces fall in `[TARGET_FIRST, TARGET_LAST)`.
pub const TARGET_FIRST: NaiveDate = day(3000, 1, 1);
pub const TARGET_LAST: NaiveDate = day(9999, 1, 1);

/// `base` plus `days`.
pub fn after(base: NaiveDate, days: u64) -> NaiveDate {
    base + chrono::Days::new(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_are_in_order_and_shared_stores_do_not_meet() {
        let eras = [
            SCENARIO_FIRST_DATE,
            EXPLORE_CASES,
            BENCH,
            EXPLORE_PROBES,
            SCENARIO_PROBES,
            TARGET_FIRST,
        ];
        assert!(eras.windows(2).all(|w| w[0] < w[1]), "{eras:?}");
        // The explorer's cases and probes share one store: 5 000 cases of
        // workload stay clear of the probes' era.
        assert!(after(EXPLORE_CASES, 5_000 * EXPLORE_CASE_DAYS) < EXPLORE_PROBES);
        // A scenario's workload (a few hundred days at most) stays clear of its probes.
        assert!(after(SCENARIO_FIRST_DATE, 10_000) < SCENARIO_PROBES);
    }
}
