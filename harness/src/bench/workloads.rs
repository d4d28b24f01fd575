//! What the loads send: distinct slots per run and worker, the service's
//! bench catalogue, and the race of 100 clients for one slot.

use std::time::Instant;

use super::driver::{send, Request};
use super::Measurement;
use crate::client::Call;
use crate::runner::Latency;
use crate::stack::Stack;

/// The bench stack's catalogue: many rooms, so distinct slots need few dates.
const ROOMS: u64 = 1000;

pub(super) fn catalogue() -> String {
    (0..ROOMS)
        .map(|n| format!("bench_room_{n}=Bench room {n}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn date(offset: u64) -> String {
    (chrono::NaiveDate::from_ymd_opt(2040, 1, 1).unwrap_or_default() + chrono::Days::new(offset))
        .format("%Y-%m-%d")
        .to_string()
}

/// Bookings one bench user makes: the service runs with its default key
/// quota, which counts the user's live keys on every new key, so each user
/// books as a person would (a handful of times), not as one user holding a
/// whole run's keys.
pub(super) const BOOKINGS_PER_USER: u64 = 10;

/// The user of a worker's `i`-th create in a run.
pub(super) fn bench_user(run: u64, w: usize, i: u64) -> String {
    format!("bench_{run}_{w}_{}", i / BOOKINGS_PER_USER)
}

/// A distinct slot per (run, worker, i): runs and workers own disjoint
/// ranges (dates from run × 20 000 days on; replays and races use earlier ones).
pub(super) fn distinct_create(run: u64, w: usize, i: u64) -> Request {
    let n = run * 20_000 * ROOMS + (w as u64) * 100_000 + i;
    Request::Call(Call::create(
        &bench_user(run, w, i),
        &format!("bench_room_{}", n % ROOMS),
        &date(n / ROOMS),
        Some(format!("bench-{run}-{w}-{i}")),
    ))
}

/// The race's HTTP client: one connection per racer, kept between rounds.
pub(super) fn race_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(RACERS)
        .build()
        .unwrap_or_default()
}

const RACERS: usize = 100;

/// `RACERS` concurrent requests for one slot, each with its own key, per
/// round; every round must end with exactly one booking, acknowledged and
/// in the store. The first round on a fresh `http` also opens the racers'
/// connections, so the bench reports it on its own (`rounds` 0..1) and the
/// race proper over the rounds after it.
pub(super) async fn race_one_slot(
    stack: &Stack,
    urls: &[String],
    http: &reqwest::Client,
    rounds: std::ops::Range<usize>,
    name: &str,
    violations: &mut Vec<String>,
) -> Measurement {
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut errors = 0;
    for round in rounds {
        let slot_date = date(200 + round as u64);
        let tasks: Vec<_> = (0..RACERS)
            .map(|c| {
                let (http, base, slot_date) = (
                    http.clone(),
                    urls[c % urls.len()].clone(),
                    slot_date.clone(),
                );
                tokio::spawn(async move {
                    let req = Request::Call(Call::create(
                        &format!("racer_{c}"),
                        "bench_room_0",
                        &slot_date,
                        Some(format!("race-{round}-{c}")),
                    ));
                    let t = Instant::now();
                    let answer = send(&http, &base, &req).await;
                    (t.elapsed().as_secs_f64() * 1000.0, answer)
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            let Ok((ms, answer)) = t.await else { continue };
            latencies.push(ms);
            match answer {
                Some((201, Some(id))) => ids.push(id),
                Some((409, _)) => {}
                _ => errors += 1,
            }
        }
        if ids.len() != 1 {
            violations.push(format!(
                "race round {round}: {} bookings acknowledged for one slot",
                ids.len()
            ));
        }
        let confirmed = stack
            .store()
            .count_confirmed("bench_room_0", &slot_date)
            .await
            .unwrap_or(-1);
        if confirmed != 1 {
            violations.push(format!(
                "race round {round}: {confirmed} confirmed bookings in the store"
            ));
        }
    }
    let requests = latencies.len() as u64;
    Measurement {
        name: name.into(),
        clients: RACERS,
        replicas: urls.len(),
        requests,
        errors,
        per_second: requests as f64 / started.elapsed().as_secs_f64(),
        latency_ms: Latency::of(latencies),
        service_cpu_us: None,
        service_kernel_cpu_us: None,
        live_keys: None,
        runs: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn distinct_creates_never_share_a_slot_or_key() {
        let mut slots = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut per_user = std::collections::BTreeMap::<String, u64>::new();
        for run in [3, 4] {
            for w in 0..32 {
                for i in 0..500 {
                    let Request::Call(call) = distinct_create(run, w, i) else {
                        panic!("a create")
                    };
                    assert!(slots.insert((call.resource, call.date)));
                    assert!(keys.insert(call.key));
                    *per_user.entry(call.user).or_default() += 1;
                }
            }
        }
        // Well inside the default key quota, whatever the run count.
        assert_eq!(per_user.values().max(), Some(&BOOKINGS_PER_USER));
        assert_eq!(per_user.len() as u64, 2 * 32 * 500 / BOOKINGS_PER_USER);
    }
}
