//! Target mode as QA uses it: a deployment the harness did not start,
//! reached by URL. Here the deployments are started by the tests on
//! loopback ports: a replica of this service (on SQLite, or with a private
//! Redis), a dead port, and a small test double that speaks the original
//! Node service's dialect.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use booking_harness::checker::Validity;
use booking_harness::infra::{BookingProcess, BookingProcessConfig, RedisServer};
use booking_harness::runner::{self, RunOptions, ScenarioResult, TargetUnusable};
use booking_harness::scenario::Scenario;
use booking_harness::stack::ServiceBinary;

const HARNESS: &str = env!("CARGO_BIN_EXE_booking-harness");

fn options(out: &tempfile::TempDir) -> RunOptions {
    RunOptions::new(out.path().to_owned(), ServiceBinary(HARNESS.into()))
}

fn explain(r: &ScenarioResult) -> String {
    booking_harness::report::console(r)
}

fn by_name(r: &ScenarioResult, checker: &str) -> Option<Validity> {
    r.verdict
        .as_ref()?
        .results
        .iter()
        .find(|c| c.checker == checker)
        .map(|c| c.validity)
}

/// A replica of this service, as a deployment on a loopback port.
async fn deployment(
    dir: &tempfile::TempDir,
    redis_url: Option<String>,
) -> (BookingProcess, String) {
    deployment_with(dir, redis_url, Vec::new()).await
}

/// The same, with settings in its environment (`AUTH_MODE`, …).
async fn deployment_with(
    dir: &tempfile::TempDir,
    redis_url: Option<String>,
    env: Vec<(String, String)>,
) -> (BookingProcess, String) {
    let db = format!("sqlite://{}", dir.path().join("b.db").display());
    let process = BookingProcess::start(BookingProcessConfig {
        binary: HARNESS.into(),
        database_url: db.clone(),
        redis_url,
        env,
    })
    .await
    .expect("deployment starts");
    (process, db)
}

fn scenario(url: &str, extra: &str) -> Scenario {
    Scenario::parse(&format!(
        r#"
        name = "staging"
        mode = "target"
        seed = 4
        [target]
        url = "{url}"
        {extra}
        [workload]
        clients = 3
        operations = 30
        double_submit_ratio = 0.3
        replay_ratio = 0.2
        "#
    ))
    .expect("scenario parses")
}

/// With a read-only view of its store, a target run decides every
/// invariant; without one it says which it could not judge. Each run gets
/// a namespace of its own, so two runs share no user, key or date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_run_decides_every_invariant_with_its_store_and_runs_never_collide() {
    let dir = tempfile::tempdir().expect("dir");
    let (target, db) = deployment(&dir, None).await;
    let out = tempfile::tempdir().expect("dir");
    let mut s = scenario(&target.url(), &format!("database_url = \"{db}\""));
    s.faults = Scenario::parse(
        r#"
        name = "f"
        [[faults]]
        at = "100ms"
        for = "500ms"
        kind = "drop_responses"
        target = "replica:0"
        "#,
    )
    .expect("faults")
    .faults;
    // Two URLs (as two replicas or load balancers would be); clients use both.
    s.target.url.push(target.url());
    s.replicas = 2;
    let (first, h1) = runner::run(&s, &options(&out)).await.expect("runs");
    assert_eq!(first.validity, Validity::Valid, "\n{}", explain(&first));
    let used: BTreeSet<_> = h1.ops.iter().filter_map(|o| o.replica).collect();
    assert_eq!(used, BTreeSet::from([0, 1]));
    assert_eq!(by_name(&first, "no_lost_ack"), Some(Validity::Valid));
    assert!(h1.ops.iter().any(|o| o.is_created()));

    s.target.database_url = None;
    let (second, h2) = runner::run(&s, &options(&out)).await.expect("runs");
    assert_eq!(second.validity, Validity::Unknown, "\n{}", explain(&second));
    assert_eq!(by_name(&second, "no_lost_ack"), Some(Validity::Unknown));
    assert_eq!(by_name(&second, "contract"), Some(Validity::Valid));
    assert!(explain(&second).contains("NOT JUDGED: no_double_booking"));

    let (ns1, ns2) = (
        first.namespace.as_ref().expect("namespace"),
        second.namespace.as_ref().expect("namespace"),
    );
    assert_ne!(ns1.name, ns2.name, "a new namespace per run");
    let keys = |h: &booking_harness::history::History| -> BTreeSet<String> {
        h.ops.iter().filter_map(|o| o.key.clone()).collect()
    };
    let users = |h: &booking_harness::history::History| -> BTreeSet<String> {
        // Availability reads name no user.
        h.ops
            .iter()
            .filter(|o| !o.user.is_empty())
            .map(|o| o.user.clone())
            .collect()
    };
    let dates = |h: &booking_harness::history::History| -> BTreeSet<String> {
        h.ops.iter().filter_map(|o| o.date.clone()).collect()
    };
    assert!(
        keys(&h1).is_disjoint(&keys(&h2)),
        "a re-run replays no old key"
    );
    assert!(users(&h1).is_disjoint(&users(&h2)));
    assert!(dates(&h1).is_disjoint(&dates(&h2)));
    assert!(
        users(&h1)
            .iter()
            .all(|u| u.starts_with(&format!("{}-", ns1.name))),
        "every user, recovery probes included, lives in the namespace"
    );
    // A pinned namespace is the same window again.
    let mut pinned = options(&out);
    pinned.namespace = Some(ns2.name.clone());
    let (third, h3) = runner::run(&s, &pinned).await.expect("runs");
    assert_eq!(
        third.namespace.as_ref().map(|n| &n.first_date),
        Some(&ns2.first_date)
    );
    assert!(!dates(&h3).is_disjoint(&dates(&h2)));
    // Every run cancelled what it booked: the slots are free again.
    let http = reqwest::Client::new();
    for h in [&h1, &h2, &h3] {
        for user in users(h) {
            let listed: serde_json::Value = http
                .get(format!("{}/api/bookings/{user}", target.url()))
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            let confirmed = listed["bookings"].as_array().map_or(0, |b| {
                b.iter().filter(|b| b["status"] == "confirmed").count()
            });
            assert_eq!(confirmed, 0, "{user} still holds bookings: {listed}");
        }
    }
}

/// A replica of this service that authenticates users (`--auth dev`): a
/// request acts only for its token's subject.
async fn dev_deployment(dir: &tempfile::TempDir) -> (BookingProcess, String) {
    let env = [
        ("AUTH_MODE", "dev"),
        ("AUTH_DEV_SECRET", "a-dev-secret-of-at-least-32-characters"),
    ];
    deployment_with(dir, None, env.map(|(k, v)| (k.into(), v.into())).into()).await
}

/// A deployment that authenticates users (`--auth dev`): the preflight
/// mints a token per user and the whole run acts as its own users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_with_dev_tokens_is_driven_as_its_users() {
    let dir = tempfile::tempdir().expect("dir");
    let (target, db) = dev_deployment(&dir).await;
    let anonymous = reqwest::Client::new()
        .post(format!("{}/api/bookings", target.url()))
        .json(&serde_json::json!({"userId": "u0", "resourceId": "room_A", "date": "2027-01-04"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(anonymous.status(), 401, "the deployment does authenticate");
    let out = tempfile::tempdir().expect("dir");
    let s = scenario(&target.url(), &format!("database_url = \"{db}\""));
    let (result, history) = runner::run(&s, &options(&out)).await.expect("runs");
    assert_eq!(result.validity, Validity::Valid, "\n{}", explain(&result));
    assert!(history.ops.iter().any(|o| o.is_created()));
    assert!(history
        .ops
        .iter()
        .all(|o| o.status != Some(401) && o.status != Some(403)));
}

/// A dev token for `user`, as an identity provider would issue one.
async fn dev_token(base: &str, user: &str) -> String {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/auth/dev-token"))
        .json(&serde_json::json!({ "userId": user }))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    answer["token"].as_str().expect("a token").to_owned()
}

/// The users `booking-harness users` lists for `s` in `namespace`.
fn users_listed(s: &Scenario, dir: &tempfile::TempDir, namespace: &str) -> Vec<String> {
    let file = dir.path().join(format!("{namespace}.toml"));
    std::fs::write(&file, s.to_toml()).expect("write");
    let listed = Command::new(HARNESS)
        .args([
            "users",
            file.to_str().expect("utf-8"),
            "--namespace",
            namespace,
        ])
        .output()
        .expect("runs");
    assert!(listed.status.success(), "{listed:?}");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Owners of the run's bookings in the store.
fn owners(h: &booking_harness::history::History) -> BTreeSet<String> {
    h.final_state
        .iter()
        .flatten()
        .map(|r| r.user_id.clone())
        .collect()
}

/// Tokens minted beforehand (as QA would from an identity provider), one
/// per user `booking-harness users` lists, in a file: the run acts as each
/// of its users. A file that lacks a user stops the run before any request,
/// naming the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_file_drives_the_run_and_a_missing_user_stops_it_before_any_traffic() {
    let dir = tempfile::tempdir().expect("dir");
    let (target, db) = dev_deployment(&dir).await;
    let out = tempfile::tempdir().expect("dir");
    let base = target.url();
    let mut s = scenario(&base, &format!("database_url = \"{db}\""));

    let users = users_listed(&s, &dir, "qa-file");
    assert_eq!(users.len(), 4 * 2 + 3, "{users:?}");
    let mut table = serde_json::Map::new();
    for user in &users {
        table.insert(user.clone(), dev_token(&base, user).await.into());
    }
    let file = dir.path().join("tokens.json");
    std::fs::write(&file, serde_json::Value::Object(table).to_string()).expect("write");
    s.target.tokens_file = Some(file);
    let mut opts = options(&out);
    opts.namespace = Some("qa-file".into());
    let (result, history) = runner::run(&s, &opts).await.expect("runs");
    assert_eq!(result.validity, Validity::Valid, "\n{}", explain(&result));
    assert!(history
        .ops
        .iter()
        .all(|o| o.status != Some(401) && o.status != Some(403)));
    assert!(owners(&history).len() >= 2, "{:?}", owners(&history));

    // Another namespace, a TOML file, one user left out.
    let users = users_listed(&s, &dir, "qa-miss");
    let mut toml = String::new();
    for user in users.iter().filter(|u| *u != "qa-miss-u2") {
        toml.push_str(&format!(
            "\"{user}\" = \"{}\"\n",
            dev_token(&base, user).await
        ));
    }
    let file = dir.path().join("tokens.toml");
    std::fs::write(&file, toml).expect("write");
    s.target.tokens_file = Some(file);
    opts.namespace = Some("qa-miss".into());
    let e = runner::run(&s, &opts)
        .await
        .expect_err("a user has no token");
    assert!(e.downcast_ref::<TargetUnusable>().is_some(), "{e:#}");
    let message = format!("{e:#}");
    assert!(
        message.contains("no token for 1 of the 11 users") && message.contains(": qa-miss-u2 "),
        "{message}"
    );
    // Not even the preflight's booking was tried.
    let preflight = "qa-miss-preflight";
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/bookings/{preflight}?status=all"))
        .bearer_auth(dev_token(&base, preflight).await)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["bookings"], serde_json::json!([]), "{listed}");
}

/// A token command (here curl against the dev deployment's minting
/// endpoint, as it would call an identity provider) runs once per user,
/// and each user acts with its own token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_command_gives_every_user_its_own_token() {
    let dir = tempfile::tempdir().expect("dir");
    let (target, db) = dev_deployment(&dir).await;
    let out = tempfile::tempdir().expect("dir");
    let log = dir.path().join("minted.log");
    let mut s = scenario(&target.url(), &format!("database_url = \"{db}\""));
    s.target.token_command = Some(
        r#"mint() { echo "$BOOKING_USER $1" >> LOG; curl -s -X POST URL/api/auth/dev-token -H 'content-type: application/json' -d "{\"userId\":\"$1\"}"; }; mint"#
            .replace("LOG", &log.display().to_string())
            .replace("URL", &target.url()),
    );
    let mut opts = options(&out);
    opts.namespace = Some("qa-cmd".into());
    let (result, history) = runner::run(&s, &opts).await.expect("runs");
    assert_eq!(result.validity, Validity::Valid, "\n{}", explain(&result));
    assert!(result.errors.is_empty(), "\n{}", explain(&result));
    assert!(history
        .ops
        .iter()
        .all(|o| o.status != Some(401) && o.status != Some(403)));
    assert!(owners(&history).len() >= 2, "{:?}", owners(&history));
    let mut minted: Vec<String> = std::fs::read_to_string(&log)
        .expect("the command ran")
        .lines()
        .map(|line| {
            let (env, arg) = line.split_once(' ').expect("two words");
            assert_eq!(env, arg, "BOOKING_USER is the argument");
            arg.to_owned()
        })
        .collect();
    minted.sort();
    let mut users = users_listed(&s, &dir, "qa-cmd");
    users.sort();
    assert_eq!(
        minted, users,
        "once per user (12-hour tokens are not fetched again)"
    );
}

/// A deployment under `--auth jwt` that trusts a real OpenID provider
/// (started here, `booking_infra::OidcProvider`; the service finds its
/// keys by discovery from the issuer alone): the token command is a plain
/// OAuth client-credentials call with curl, as QA would write it; tokens
/// live eight seconds, so the run outlasts them and each user's token is
/// fetched again mid-run; every invariant holds and no request is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_trusting_an_openid_provider_is_driven_with_its_tokens() {
    use booking_harness::infra::{OidcOptions, OidcProvider};
    const TTL: Duration = Duration::from_secs(8);
    let idp = OidcProvider::start(OidcOptions {
        audience: vec!["booking-api".into(), "account".into()],
        token_ttl: TTL,
        ..OidcOptions::default()
    })
    .await
    .expect("the test OpenID provider starts");
    let dir = tempfile::tempdir().expect("dir");
    let env = [
        ("AUTH_MODE", "jwt".to_owned()),
        ("JWT_ISSUER", idp.issuer()),
        ("JWT_AUDIENCE", "booking-api".to_owned()),
        ("JWT_LEEWAY_SECS", "0".to_owned()),
    ];
    let (target, db) = deployment_with(&dir, None, env.map(|(k, v)| (k.into(), v)).into()).await;
    let log = dir.path().join("minted.log");
    let mut s = scenario(&target.url(), &format!("database_url = \"{db}\""));
    s.target.token_command = Some(format!(
        "mint() {{ echo \"$1\" >> {log}; curl -sf {url} -d grant_type=client_credentials \
         --data-urlencode \"client_id=$1\" -d client_secret={secret}; }}; mint",
        log = log.display(),
        url = idp.token_url(),
        secret = idp.client_secret(),
    ));
    s.workload.clients = 4;
    s.workload.operations = 100;
    s.workload.think_time = Duration::from_millis(400);
    let out = tempfile::tempdir().expect("dir");
    let mut opts = options(&out);
    opts.namespace = Some("qa-oidc".into());
    let started = Instant::now();
    let (result, history) = runner::run(&s, &opts).await.expect("runs");
    let took = started.elapsed();
    assert_eq!(result.validity, Validity::Valid, "\n{}", explain(&result));
    assert!(result.errors.is_empty(), "\n{}", explain(&result));
    assert!(history.ops.iter().all(|o| o.status != Some(401)));
    assert!(history.ops.iter().any(|o| o.is_created()));
    assert!(owners(&history).len() >= 2, "{:?}", owners(&history));
    let minted = std::fs::read_to_string(&log).expect("the command ran");
    let users = users_listed(&s, &dir, "qa-oidc");
    let again = users
        .iter()
        .filter(|u| minted.lines().filter(|l| l == u).count() >= 2)
        .count();
    assert!(
        took > TTL,
        "the run ({took:?}) must outlast the tokens ({TTL:?})"
    );
    assert!(
        again > 0,
        "no token was fetched again in {took:?}:\n{minted}"
    );
}

/// A token command that fails stops the run before any load, exit 2,
/// naming the user and quoting the command's stderr; a token source beside
/// a static Authorization header, or two sources, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_command_or_conflicting_credentials_stop_the_run() {
    let dir = tempfile::tempdir().expect("dir");
    let (target, _db) = dev_deployment(&dir).await;
    let file = dir.path().join("s.toml");
    std::fs::write(
        &file,
        "name = \"x\"\n[workload]\nclients = 2\noperations = 10\n",
    )
    .expect("write");
    let url = target.url();
    let run = move |extra: &'static [&'static str]| {
        let (file, url) = (file.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            let output = Command::new(HARNESS)
                .args(["run", file.to_str().expect("utf-8"), "--target-url", &url])
                .args(["--namespace", "qa-fail"])
                .args(extra)
                .output()
                .expect("runs");
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            (output.status.code(), stderr)
        })
    };
    let (code, stderr) = run(&[
        "--token-command",
        "echo \"no client for $BOOKING_USER\" >&2; false",
    ])
    .await
    .expect("task");
    assert_eq!(code, Some(2), "{stderr}");
    // Whichever user's command failed first.
    let user = stderr
        .split("token command for user ")
        .nth(1)
        .and_then(|rest| rest.split_once(' '))
        .map(|(user, _)| user)
        .unwrap_or_default();
    assert!(user.starts_with("qa-fail-"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{user} exited with 1; its stderr: no client for {user}"
        )),
        "{stderr}"
    );

    let (code, stderr) = run(&[
        "--token-command",
        "echo t",
        "--header",
        "Authorization: Bearer static",
    ])
    .await
    .expect("task");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("would conflict"), "{stderr}");

    let (code, stderr) = run(&["--token-command", "echo t", "--tokens-file", "t.json"])
        .await
        .expect("task");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

/// A dead target is one clear error and exit 2, in seconds, not a run of
/// unanswered requests that half the checkers call a pass.
#[test]
fn a_dead_target_exits_2_fast() {
    let port = booking_harness::infra::free_port().expect("port");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("s.toml");
    std::fs::write(&file, "name = \"x\"\nmode = \"target\"\n").expect("write");
    let began = Instant::now();
    let output = Command::new(HARNESS)
        .args(["run", file.to_str().expect("utf-8"), "--out"])
        .arg(dir.path().join("out"))
        .args(["--target-url", &format!("http://127.0.0.1:{port}")])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not reachable"), "{stderr}");
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "{:?}",
        began.elapsed()
    );

    // Remote hosts need an explicit --allow-remote.
    let output = Command::new(HARNESS)
        .args(["run", file.to_str().expect("utf-8")])
        .args(["--target-url", "http://192.0.2.10:3000"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

/// An outside command as a fault: it flushes the deployment's Redis in the
/// middle of the load; its exit status and output are in the history, and a
/// command that fails makes the run an error, not a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_fault_flushes_a_private_redis_mid_run() {
    let redis = RedisServer::start().await.expect("redis");
    let dir = tempfile::tempdir().expect("dir");
    let (target, db) = deployment(&dir, Some(redis.url())).await;
    let mut conn = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let _: () = redis::cmd("SET")
        .arg("sentinel")
        .arg("1")
        .query_async(&mut conn)
        .await
        .expect("set");
    let mut s = scenario(&target.url(), &format!("database_url = \"{db}\""));
    s.faults = Scenario::parse(&format!(
        r#"
        name = "f"
        [[faults]]
        at = "300ms"
        kind = "command"
        run = "redis-cli -p {} flushall && echo flushed"
        "#,
        redis.port()
    ))
    .expect("faults")
    .faults;
    let out = tempfile::tempdir().expect("dir");
    let (result, history) = runner::run(&s, &options(&out)).await.expect("runs");
    assert_eq!(result.validity, Validity::Valid, "\n{}", explain(&result));
    assert!(result.errors.is_empty(), "\n{}", explain(&result));
    let fault = &history.faults[0];
    assert_eq!(fault.kind, "command");
    assert_eq!(fault.commands[0].exit_code, Some(0), "{fault:?}");
    assert!(fault.commands[0].output.contains("flushed"), "{fault:?}");
    let sentinel: Option<String> = redis::cmd("GET")
        .arg("sentinel")
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(
        sentinel, None,
        "the command ran against the deployment's Redis"
    );

    s.faults = Scenario::parse(
        "name = \"f\"\n[[faults]]\nat = \"100ms\"\nkind = \"command\"\nrun = \"echo nope; exit 3\"\n",
    )
    .expect("faults")
    .faults;
    let (failed, _) = runner::run(&s, &options(&out)).await.expect("runs");
    assert!(
        failed.errors.iter().any(|e| e.contains("exited with 3")),
        "{:?}",
        failed.errors
    );
}

/// Another booking API, in another dialect and behind a token: with its
/// profile and the header the harness judges what it does; with the wrong
/// profile, or without the token, the preflight says so once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_another_dialect_is_judged_by_its_profile() {
    let url = node_double().await;
    let out = tempfile::tempdir().expect("dir");
    std::env::set_var("NODE_DOUBLE_TOKEN", "t0ken");
    let auth = "headers = { Authorization = \"Bearer ${NODE_DOUBLE_TOKEN}\" }";
    let s = scenario(&url, &format!("api_profile = \"node\"\n{auth}"));
    let (result, history) = runner::run(&s, &options(&out)).await.expect("runs");
    assert_eq!(
        by_name(&result, "contract"),
        Some(Validity::Valid),
        "\n{}",
        explain(&result)
    );
    assert_ne!(result.validity, Validity::Invalid, "\n{}", explain(&result));
    assert!(history.ops.iter().any(|o| o.is_created()));
    assert!(
        history
            .ops
            .iter()
            .any(|o| o.has_code("ALREADY_BOOKED") && o.canonical.is_some()),
        "refusals were read through the profile"
    );

    let wrong = scenario(&url, auth);
    let e = runner::run(&wrong, &options(&out))
        .await
        .expect_err("the booking profile does not fit");
    assert!(e.downcast_ref::<TargetUnusable>().is_some(), "{e:#}");
    let message = format!("{e:#}");
    assert!(message.contains("profile \"booking\""), "{message}");

    let anonymous = scenario(&url, "api_profile = \"node\"");
    let e = runner::run(&anonymous, &options(&out))
        .await
        .expect_err("the token is missing");
    assert!(e.downcast_ref::<TargetUnusable>().is_some(), "{e:#}");
    let message = format!("{e:#}");
    assert!(message.contains("--token-command"), "{message}");
    assert!(message.contains("--header"), "{message}");
}

/// A test double of the original Node service's API: `{success, error,
/// code}` errors without a status field or `Retry-After`, no replay header,
/// and the cancelled booking under `_id`. In memory, one lock.
async fn node_double() -> String {
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, patch, post};
    use axum::Json;
    use serde_json::{json, Value};

    #[derive(Default)]
    struct Db {
        bookings: Vec<Value>,
        /// (user, key) → (payload, status, body)
        keys: HashMap<(String, String), (Value, u16, Value)>,
    }
    type Shared = Arc<Mutex<Db>>;
    let rooms = ["room_A", "room_B", "room_C", "room_D"];

    fn error(status: u16, code: &str) -> (StatusCode, Json<Value>) {
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({"success": false, "error": code.to_lowercase(), "code": code})),
        )
    }

    async fn create(
        State(db): State<Shared>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer t0ken") {
            return error(401, "UNAUTHORIZED");
        }
        let (Some(user), Some(resource), Some(date)) = (
            body["userId"].as_str(),
            body["resourceId"].as_str(),
            body["date"].as_str(),
        ) else {
            return error(400, "VALIDATION_ERROR");
        };
        if !["room_A", "room_B", "room_C", "room_D"].contains(&resource) {
            return error(404, "UNKNOWN_RESOURCE");
        }
        let key = headers
            .get("idempotency-key")
            .and_then(|k| k.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("derived:{resource}:{date}"));
        let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((payload, status, stored)) = db.keys.get(&(user.to_owned(), key.clone())) {
            if *payload != body {
                return error(422, "IDEMPOTENCY_KEY_REUSED");
            }
            return (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                Json(stored.clone()),
            );
        }
        let taken = db.bookings.iter().any(|b| {
            b["resourceId"] == resource && b["date"] == date && b["status"] == "confirmed"
        });
        let (status, answer) = if taken {
            let (s, Json(v)) = error(409, "ALREADY_BOOKED");
            (s.as_u16(), v)
        } else {
            let booking = json!({
                "id": uuid::Uuid::new_v4().to_string(),
                "userId": user, "resourceId": resource, "date": date, "status": "confirmed",
            });
            db.bookings.push(booking.clone());
            (201, json!({"success": true, "booking": booking}))
        };
        db.keys.insert(
            (user.to_owned(), key),
            (body.clone(), status, answer.clone()),
        );
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            Json(answer),
        )
    }

    async fn cancel(
        State(db): State<Shared>,
        Path(id): Path<String>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
        let Some(b) = db
            .bookings
            .iter_mut()
            .find(|b| b["id"] == id.as_str() && b["userId"] == body["userId"])
        else {
            return error(404, "NOT_FOUND");
        };
        b["status"] = "cancelled".into();
        let mut shown = b.clone();
        if let Some(obj) = shown.as_object_mut() {
            obj.remove("id");
            obj.insert("_id".into(), id.into());
        }
        (
            StatusCode::OK,
            Json(json!({"success": true, "booking": shown})),
        )
    }

    async fn list(State(db): State<Shared>, Path(user): Path<String>) -> Json<Value> {
        let db = db.lock().unwrap_or_else(|p| p.into_inner());
        let mine: Vec<Value> = db
            .bookings
            .iter()
            .filter(|b| b["userId"] == user.as_str())
            .cloned()
            .collect();
        Json(json!({"success": true, "bookings": mine}))
    }

    async fn available(
        State(db): State<Shared>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Json<Value> {
        let db = db.lock().unwrap_or_else(|p| p.into_inner());
        let date = q.get("date").cloned().unwrap_or_default();
        let free: Vec<&str> = ["room_A", "room_B", "room_C", "room_D"]
            .into_iter()
            .filter(|r| {
                !db.bookings.iter().any(|b| {
                    b["resourceId"] == *r
                        && b["date"] == date.as_str()
                        && b["status"] == "confirmed"
                })
            })
            .collect();
        Json(json!({"success": true, "date": date, "availableResources": free}))
    }

    let app = axum::Router::new()
        .route(
            "/api/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route(
            "/api/resources",
            get(move || async move {
                Json(json!({"success": true, "resources": rooms.map(|id| json!({"id": id}))}))
            }),
        )
        .route("/api/resources/available", get(available))
        .route("/api/bookings", post(create))
        .route("/api/bookings/{user}", get(list))
        .route("/api/bookings/{id}/cancel", patch(cancel))
        .with_state(Shared::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A scenario whose faults act on processes the harness started is refused
/// in target mode; with `--faults-outside` (faults come from Chaos Mesh or
/// an operator) its workload runs against the deployment and is judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_outside_runs_the_workload_of_a_scenario_with_process_faults() {
    let dir = tempfile::tempdir().expect("dir");
    let (service, db) = deployment(&dir, None).await;
    let file = dir.path().join("kill.toml");
    std::fs::write(
        &file,
        "name = \"kill\"\n\
         [workload]\nclients = 2\noperations = 12\n\
         [[faults]]\nat = \"200ms\"\nkind = \"kill_replica\"\nreplica = 0\n",
    )
    .expect("write");
    let refused = Command::new(HARNESS)
        .args(["run", file.to_str().expect("utf-8"), "--out"])
        .arg(dir.path().join("out"))
        .args(["--target-url", &service.url()])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("use kind = \"command\""), "{stderr}");

    let file2 = file.clone();
    let out = dir.path().join("out-outside");
    let service_url = service.url();
    let ran = tokio::task::spawn_blocking(move || {
        Command::new(HARNESS)
            .args(["run", file2.to_str().expect("utf-8"), "--out"])
            .arg(&out)
            .args(["--target-url", &service_url, "--faults-outside"])
            .args(["--database-url", &db])
            .output()
            .expect("runs")
    })
    .await
    .expect("task");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}
