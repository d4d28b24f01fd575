//! The web front end's own tests, run by `cargo test`: Vitest unit tests of
//! the API client, and end-to-end tests in Debian's Chromium (driven by
//! playwright-core) against a real `booking serve` on the embedded default
//! that serves the built front end.
//!
//! Needs Node.js and npm (the dependencies are installed with `npm ci` when
//! `frontend/node_modules` is missing) and `/usr/bin/chromium`
//! (`bash .ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use booking_infra::{BookingProcess, BookingProcessConfig};

/// npm commands in one test binary never run at once (they share node_modules and dist).
static NPM: Mutex<()> = Mutex::new(());

fn frontend() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend")
}

fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is Node.js installed?)"));
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn npm(args: &[&str]) -> Output {
    run(Command::new("npm").args(args).current_dir(frontend()))
}

/// `npm ci` once, if the dependencies are not installed yet.
fn ensure_dependencies() {
    if !frontend().join("node_modules/.bin/vitest").exists() {
        let out = npm(&["ci", "--no-audit", "--no-fund"]);
        assert!(out.status.success(), "npm ci failed");
    }
}

#[test]
fn the_api_clients_retry_and_key_logic_passes_its_unit_tests() {
    let _npm = NPM.lock().unwrap_or_else(|p| p.into_inner());
    ensure_dependencies();
    let out = npm(&["run", "test:unit"]);
    assert!(out.status.success(), "vitest failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("passed"), "vitest ran no test:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_end_books_cancels_and_races_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (bash .ci/run installs it)"
    );
    {
        let _npm = NPM.lock().unwrap_or_else(|p| p.into_inner());
        ensure_dependencies();
        let out = npm(&["run", "build"]);
        assert!(out.status.success(), "the front end does not build");
    }
    // Once as the embedded default (no authentication), once under
    // `--auth dev`, where the app signs in with a token per demo user.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-screenshots");
    for auth in ["none", "dev"] {
        let dir = tempfile::tempdir().expect("dir");
        let server = BookingProcess::start(BookingProcessConfig {
            binary: env!("CARGO_BIN_EXE_booking").into(),
            database_url: format!("sqlite://{}", dir.path().join("booking.db").display()),
            redis_url: None,
            env: vec![
                (
                    "STATIC_DIR".into(),
                    frontend().join("dist").display().to_string(),
                ),
                ("AUTH_MODE".into(), auth.into()),
            ],
        })
        .await
        .expect("booking serve with the front end");
        let out = tokio::task::spawn_blocking({
            let (url, shots, chromium) = (server.url(), shots.join(auth), chromium.clone());
            move || {
                run(Command::new("node")
                    .arg("e2e/run.mjs")
                    .current_dir(frontend())
                    .env("BASE_URL", url)
                    .env("SCREENSHOT_DIR", shots)
                    .env("CHROMIUM", chromium))
            }
        })
        .await
        .expect("e2e task");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "end-to-end tests (auth {auth}) failed:\n{text}\n--- server log ---\n{}",
            server.log()
        );
        assert!(text.contains(" passed, 0 failed"), "{text}");
        assert!(text.contains(&format!("# auth mode: {auth}")), "{text}");
        for shot in [
            "01-booked.png",
            "02-cancelled.png",
            "03-race.png",
            "04-phone.png",
            "05-already-booked.png",
        ] {
            assert!(
                shots.join(auth).join(shot).is_file(),
                "screenshot {shot} was saved"
            );
        }
    }
    println!("screenshots: {}", shots.display());
}
