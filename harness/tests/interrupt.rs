//! Nothing outlives a run: Ctrl-C (SIGINT) to `booking-harness run` stops
//! every process it started, although they lead their own process groups.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Children of `parent`, from /proc.
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses: state, ppid, …
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let mut fields = after.split_whitespace();
        let (_state, ppid) = (fields.next(), fields.next());
        if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

#[test]
fn ctrl_c_stops_every_process_the_harness_started() {
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/00-embedded-smoke.toml"
    );
    let out = tempfile::tempdir().expect("dir");
    let mut harness = Command::new(env!("CARGO_BIN_EXE_booking-harness"))
        .args(["run", scenario, "--out"])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the harness");
    // Wait (bounded) until it has started its replica.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut started = Vec::new();
    while started.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        started = children(harness.id());
    }
    assert!(!started.is_empty(), "the harness started a replica");
    kill(Pid::from_raw(harness.id() as i32), Signal::SIGINT).expect("SIGINT");
    let status = harness.wait().expect("the harness exits");
    assert_eq!(status.code(), Some(130), "interrupted exit status");
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let survivors: Vec<_> = started.iter().filter(|p| alive(**p)).collect();
    assert!(
        survivors.is_empty(),
        "processes outlived the harness: {survivors:?}"
    );
}
