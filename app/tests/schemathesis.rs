//! Schemathesis (property-based API testing from PyPI) against the OpenAPI
//! document that a running `booking serve` publishes, with every check on
//! and a bounded budget: under `--auth none` and under `--auth dev` (with a
//! token for one user). It must find nothing. A control run against the
//! document without the constraints that `openapi::constrain` adds must
//! find something, so the check is known to have teeth.
//!
//! Schemathesis is found at `$SCHEMATHESIS`, else in the virtualenv
//! `~/.cache/booking-schemathesis` (created with `python3 -m venv` and
//! filled from PyPI when missing; `bash .ci/run` does that up front).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use booking_infra::{BookingProcess, BookingProcessConfig};

/// The version the checks were last verified with.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// The generator's seed: fixed, so that a run is reproducible and CI does
/// not depend on the draw. `SCHEMATHESIS_SEED=random` explores anew (a
/// failure prints the seed that found it); any number replays that seed.
const DEFAULT_SEED: &str = "20261125";

fn seed_args() -> Vec<String> {
    match std::env::var("SCHEMATHESIS_SEED").as_deref() {
        Ok("random") => Vec::new(),
        Ok(seed) if !seed.is_empty() => vec!["--seed".into(), seed.into()],
        _ => vec!["--seed".into(), DEFAULT_SEED.into()],
    }
}
/// Examples per operation and phase: a run takes seconds. (`--max-time`
/// would not bound it: fuzzing repeats until that time is spent.)
const MAX_EXAMPLES: &str = "100";

/// One installer at a time.
static INSTALL: Mutex<()> = Mutex::new(());

fn st() -> PathBuf {
    if let Ok(path) = std::env::var("SCHEMATHESIS") {
        return path.into();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = Path::new(&home).join(".cache/booking-schemathesis");
    let st = venv.join("bin/st");
    let _one = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if !st.exists() {
        let made = run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        assert!(
            made.status.success(),
            "python3 -m venv failed: install python3 and python3-venv (bash .ci/run does)"
        );
        let pip = venv.join("bin/pip");
        let installed = run(Command::new(pip).args(["install", "-q", SCHEMATHESIS]));
        assert!(
            installed.status.success(),
            "pip install {SCHEMATHESIS} failed"
        );
    }
    st
}

fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn config_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml")
}

async fn service(env: Vec<(String, String)>) -> (BookingProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let server = BookingProcess::start(BookingProcessConfig {
        binary: env!("CARGO_BIN_EXE_booking").into(),
        database_url: format!("sqlite://{}", dir.path().join("booking.db").display()),
        redis_url: None,
        env,
    })
    .await
    .expect("booking serve");
    (server, dir)
}

/// `st run` with every check; returns its exit status and output.
async fn schemathesis(location: String, extra: Vec<String>) -> (bool, String) {
    let st = st();
    tokio::task::spawn_blocking(move || {
        let out = run(Command::new(st)
            .arg("--config-file")
            .arg(config_file())
            .args(["run", &location, "--checks", "all", "--workers", "1"])
            // See schemathesis.toml: owner-only bookings, links explored.
            .args(["--exclude-checks", "ensure_resource_availability"])
            .args(["--max-examples", MAX_EXAMPLES, "--request-timeout", "10"])
            .arg("--no-color")
            // No example database: each run draws from the seed alone.
            .args(["--generation-database", "none"])
            .args(seed_args())
            .args(extra)
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .env("SCHEMATHESIS_HOOKS", ""));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .expect("schemathesis task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_without_authentication() {
    let (server, _dir) = service(Vec::new()).await;
    let (ok, text) = schemathesis(format!("{}/api/openapi.json", server.url()), Vec::new()).await;
    assert!(
        ok,
        "Schemathesis found problems:\n{text}\n--- server log ---\n{}",
        server.log()
    );
    assert!(
        text.contains("10 selected"),
        "every operation was tested:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_with_dev_tokens() {
    let (server, _dir) = service(vec![
        ("AUTH_MODE".into(), "dev".into()),
        (
            "AUTH_DEV_SECRET".into(),
            "a-dev-secret-that-is-long-enough-for-hs256".into(),
        ),
    ])
    .await;
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/auth/dev-token", server.url()))
        .json(&serde_json::json!({ "userId": "schemathesis" }))
        .send()
        .await
        .expect("mint")
        .json()
        .await
        .expect("json");
    let token = token["token"].as_str().expect("token");
    let (ok, text) = schemathesis(
        format!("{}/api/openapi.json", server.url()),
        vec!["-H".into(), format!("Authorization: Bearer {token}")],
    )
    .await;
    assert!(
        ok,
        "Schemathesis found problems:\n{text}\n--- server log ---\n{}",
        server.log()
    );
}

/// The control: without the stated constraints the document calls valid
/// what the service refuses, and Schemathesis says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_fails_on_a_document_without_the_constraints() {
    use utoipa::OpenApi;
    let (server, dir) = service(Vec::new()).await;
    let loose = dir.path().join("unconstrained.json");
    let doc = serde_json::to_string(&booking::routes::openapi::ApiDoc::openapi()).expect("doc");
    std::fs::write(&loose, doc).expect("write");
    let (ok, text) = schemathesis(
        loose.display().to_string(),
        vec!["--url".into(), server.url()],
    )
    .await;
    assert!(!ok, "the loose document passed:\n{text}");
    assert!(
        text.contains("Schema-valid request rejected"),
        "the failure is the refusal of schema-valid input:\n{text}"
    );
}
