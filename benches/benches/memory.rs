//! Memory per live idempotency key on the in-process coordinator (the
//! embedded default keeps every completed outcome in memory for its
//! retention).
//!
//! Not a criterion benchmark: it reads the process's resident memory
//! (`VmRSS`) before and after filling a coordinator, which is what the
//! machine pays, allocator overhead included. `cargo bench -p
//! booking-benches --bench memory` prints a table. (The project forbids
//! `unsafe`, so no counting allocator.)

use std::time::Duration;

use booking::coordinator::core::{Clock, CoordinatorCore, Tables};
use booking::coordinator::{Claim, CompletedRecord};
use booking::response::StoredResponse;

/// The allocator the `booking` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// This process's resident memory in bytes, from `/proc/self/status`.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

struct FixedClock;

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        1_000
    }
}

/// A record as the service keeps it: its name is `booking:idem:` and a
/// SHA-256 in hex, its fingerprint another, its body a 201 of ~300 bytes.
fn fill(core: &CoordinatorCore<std::sync::Mutex<Tables>, FixedClock>, n: usize) {
    let body = r#"{"success":true,"message":"Booking created successfully","booking":{"id":"0193f0c4-5f4e-7c1a-9d7e-000000000000","userId":"user_alice","resourceId":"room_A","date":"2027-03-01","status":"confirmed","createdAt":"2026-11-25T10:00:00.000Z"}}"#;
    for i in 0..n {
        let key = format!("booking:idem:{i:064x}");
        let Claim::Acquired(token) =
            core.claim(&key, &format!("{i:064x}"), Duration::from_secs(30))
        else {
            panic!("a new key is claimed");
        };
        let record = CompletedRecord {
            fingerprint: format!("{i:064x}"),
            response: StoredResponse {
                status: 201,
                body: body.to_owned(),
            },
            // The same size as `Some(expiry)`: the service's records carry one.
            expires_at: None,
        };
        assert!(core.complete(&key, &token, &record, Duration::from_secs(86_400)));
    }
}

/// Each size is measured in a fresh process (this program run again with
/// `--keys N`), so memory freed by a smaller run cannot hide in a larger one.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args
        .iter()
        .position(|a| a == "--keys")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
    {
        let before = resident_bytes();
        let core = CoordinatorCore::new(FixedClock);
        fill(&core, n);
        let used = resident_bytes().saturating_sub(before);
        println!(
            "| {n} | {:.1} MB | {:.0} B |",
            used as f64 / 1e6,
            used as f64 / n as f64
        );
        return;
    }
    println!("| live keys | resident memory added | per key |\n|---|---|---|");
    let Ok(me) = std::env::current_exe() else {
        eprintln!("cannot find this program to run it again");
        std::process::exit(1);
    };
    for n in [10_000, 100_000, 1_000_000] {
        let status = std::process::Command::new(&me)
            .args(["--keys", &n.to_string()])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("the run with {n} keys failed");
            std::process::exit(1);
        }
    }
}
