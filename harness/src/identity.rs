//! Who the harness acts as on a deployment that authenticates users
//! (`--auth dev` or `jwt`). There a request acts only for its token's
//! subject, so a run needs a bearer token for every user it plays: from a
//! command (an identity provider's client, run once per user), from a file
//! minted beforehand, or, under `--auth dev` with neither, from the
//! deployment itself (see the preflight).
//!
//! Tokens are fetched before any fault, and a command's tokens are fetched
//! again before they expire by a task beside the run: a request never waits
//! for a command, and the token map's lock is never held across one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::scenario::Workload;
pub use crate::target::TokenSource;

/// Bearer tokens per user, shared by every client of a run.
pub type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// How long one run of the token command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Token commands running at once (an identity provider may rate-limit).
const PARALLEL: usize = 4;
/// After a failed refresh, the next try.
const RETRY: Duration = Duration::from_secs(5);
/// Tokens due within this window are fetched together (tokens minted in one
/// go come due within seconds of each other).
const BATCH: Duration = Duration::from_secs(10);
/// Output kept from a token command (a token is a few KiB at most).
const OUTPUT_LIMIT: u64 = 64 * 1024;

/// Every user a run may act as, in the workload's namespace: the workload's
/// users, each one's `-intruder` (who cancels its own booking as someone
/// else), the recovery probe and the preflight's two users. The one list
/// for the preflight, the token sources and `booking-harness users`.
pub fn users_of(w: &Workload) -> Vec<String> {
    let ns = &w.namespace;
    let workload: Vec<String> = (0..w.users).map(|u| w.user(u)).collect();
    let intruders = workload.iter().map(|u| format!("{u}-intruder"));
    let probes = ["recovery-probe", "preflight", "preflight-rival"].map(|u| format!("{ns}{u}"));
    workload
        .clone()
        .into_iter()
        .chain(intruders)
        .chain(probes)
        .collect()
}

/// One token, and how long it lives from now when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub lifetime: Option<Duration>,
}

/// Reads what a token command printed: the token alone, or a JSON object
/// with `access_token` (an OAuth token response) or `token`. The lifetime
/// is the JWT's `exp` (what the deployment checks), else the JSON's
/// `expires_in`. `now` is seconds since the epoch. Errors never quote the
/// output: it may be a token.
pub fn parse_output(stdout: &str, now: u64) -> Result<Issued> {
    let out = stdout.trim();
    if out.is_empty() {
        bail!("printed nothing (want the token, or JSON with access_token or token)");
    }
    let (token, expires_in) = if out.starts_with('{') {
        let v: Value = serde_json::from_str(out).map_err(|e| {
            anyhow!(
                "printed something like JSON that does not parse (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        let token = ["access_token", "token"]
            .iter()
            .find_map(|k| v[k].as_str())
            .with_context(|| {
                let keys: Vec<&str> = v
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                format!(
                    "printed a JSON object without a string access_token or token (its keys: {})",
                    keys.join(", ")
                )
            })?;
        let expires_in = v["expires_in"].as_u64().map(Duration::from_secs);
        (token.trim().to_owned(), expires_in)
    } else {
        (out.to_owned(), None)
    };
    if token.is_empty() {
        bail!("printed an empty token");
    }
    if token.chars().any(char::is_whitespace) {
        bail!(
            "printed more than one word; print only the token, or JSON with access_token or token"
        );
    }
    if reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        bail!("printed a token with characters an HTTP header cannot carry");
    }
    let lifetime = match jwt_exp(&token) {
        Some(exp) if exp <= now => bail!(
            "gave a token that has expired already (exp {exp}, while this machine's clock says \
             {now}: is the clock right?)"
        ),
        // `now` is truncated to whole seconds: count a second less.
        Some(exp) => Some(Duration::from_secs((exp - now).saturating_sub(1))),
        None => expires_in,
    };
    Ok(Issued { token, lifetime })
}

/// The `exp` claim of a JWT (seconds since the epoch), read without
/// verifying the signature: the harness only needs to know when to fetch a
/// new one, the deployment does the checking. `None` for anything else (an
/// opaque token, an encrypted JWT).
pub fn jwt_exp(token: &str) -> Option<u64> {
    let parts: Vec<&str> = token.split('.').collect();
    let [_, payload, _] = parts.as_slice() else {
        return None;
    };
    let claims: Value = serde_json::from_slice(&base64url(payload)?).ok()?;
    let exp = &claims["exp"];
    exp.as_u64()
        .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// RFC 4648 §5 base64url, padding optional (JWTs leave it out).
fn base64url(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    base64::Engine::decode(&URL_SAFE_ANY_PADDING, text).ok()
}

/// When to fetch a token that lives `lifetime` again: once a quarter of its
/// life or 60 s remain, whichever comes first, so a slow provider or a
/// skewed clock still leaves time; but not before half its life, so a
/// short-lived token is not fetched again at once.
pub fn refresh_after(lifetime: Duration) -> Duration {
    let margin = (lifetime / 4)
        .max(Duration::from_secs(60))
        .min(lifetime / 2);
    lifetime.saturating_sub(margin).max(Duration::from_secs(1))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the token command for `user`: `sh -c 'CMD "$1"' sh USER`, so the
/// user id is one argument whatever it holds, and `BOOKING_USER=USER`. The
/// command runs in its own process group, killed (children too) after
/// [`COMMAND_TIMEOUT`]. Errors name the user and quote the command's
/// stderr, never its output nor the command (it may hold a secret).
pub async fn run_command(command: &str, user: &str) -> Result<Issued> {
    let script = format!("{} \"$1\"", command.trim_end());
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg("sh")
        .arg(user)
        .env("BOOKING_USER", user)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("the token command for user {user}: cannot start sh"))?;
    // Dropped before `child`: on a timeout the whole group goes.
    let _group = child.id().map(crate::infra::ProcessGroup::adopt);
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let ran = tokio::time::timeout(COMMAND_TIMEOUT, async {
        tokio::join!(read_bounded(stdout), read_bounded(stderr), child.wait())
    })
    .await;
    let Ok((stdout, stderr, status)) = ran else {
        bail!("the token command for user {user} did not finish in {COMMAND_TIMEOUT:?}");
    };
    let status = status.with_context(|| format!("the token command for user {user}"))?;
    let stderr = excerpt(&String::from_utf8_lossy(&stderr));
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exited with {code}"),
            None => "was killed by a signal".to_owned(),
        };
        bail!("the token command for user {user} {how}; its stderr: {stderr}");
    }
    parse_output(&String::from_utf8_lossy(&stdout), unix_now())
        .map_err(|e| anyhow!("the token command for user {user} {e:#}; its stderr: {stderr}"))
}

/// Reads a pipe to its end, keeping the first [`OUTPUT_LIMIT`] bytes (the
/// rest is drained, so a chatty command does not block on a full pipe).
async fn read_bounded<R: AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let mut kept = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = (&mut pipe).take(OUTPUT_LIMIT).read_to_end(&mut kept).await;
        let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    }
    kept
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "(empty)".into();
    }
    let mut s: String = text.chars().take(300).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

/// Runs the token command for each of `users` in turn, [`PARALLEL`] at a
/// time. With `stop_at_first_error`, the first failure ends it (the
/// commands still running are killed as the set drops), so a broken command
/// fails a preflight in seconds.
async fn run_for_each(
    command: &str,
    users: &[String],
    stop_at_first_error: bool,
) -> Vec<(String, Result<Issued>)> {
    let mut tasks = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(users.len());
    let mut pending = users.iter();
    loop {
        while tasks.len() < PARALLEL {
            let Some(user) = pending.next() else { break };
            let (command, user) = (command.to_owned(), user.clone());
            tasks.spawn(async move {
                let issued = run_command(&command, &user).await;
                (user, issued)
            });
        }
        // One finished command a pass; the set is empty once every user
        // has been started and answered.
        let Some(joined) = tasks.join_next().await else {
            return done;
        };
        let (user, issued) = match joined {
            Ok(pair) => pair,
            Err(e) => (
                String::new(),
                Err(anyhow!("a token command task failed: {e}")),
            ),
        };
        let failed = issued.is_err();
        done.push((user, issued));
        if failed && stop_at_first_error {
            return done;
        }
    }
}

/// Which tokens the refresher fetches again, and when.
#[derive(Debug)]
pub struct Schedule {
    command: String,
    due: HashMap<String, Due>,
}

#[derive(Debug, Clone, Copy)]
struct Due {
    refresh_at: Instant,
    expires_at: Instant,
}

impl Due {
    fn of(lifetime: Duration, now: Instant) -> Due {
        Due {
            refresh_at: now + refresh_after(lifetime),
            expires_at: now + lifetime,
        }
    }
}

/// Runs the token command for every user, puts the tokens in `tokens`, and
/// says when each is due again. Any failure is an error (the run would act
/// as a user it has no token for).
pub async fn mint_all(command: &str, users: &[String], tokens: &Tokens) -> Result<Schedule> {
    let now = Instant::now();
    let mut due = HashMap::new();
    let mut minted = BTreeMap::new();
    for (user, issued) in run_for_each(command, users, true).await {
        let issued = issued?;
        if let Some(lifetime) = issued.lifetime {
            due.insert(user.clone(), Due::of(lifetime, now));
        }
        minted.insert(user, issued.token);
    }
    install(tokens, minted)?;
    Ok(Schedule {
        command: command.to_owned(),
        due,
    })
}

fn install(tokens: &Tokens, minted: impl IntoIterator<Item = (String, String)>) -> Result<()> {
    let mut map = tokens
        .lock()
        .map_err(|_| anyhow!("the token map is poisoned"))?;
    map.extend(minted);
    Ok(())
}

/// Reads a tokens file (user id → token; JSON if it ends in `.json`, TOML
/// if in `.toml`), checks that every one of `users` has a usable token, and
/// puts them in `tokens`. Nothing is sent anywhere first: a missing user is
/// an error that lists them all. Errors never quote the file's content.
pub fn load_file(path: &Path, users: &[String], tokens: &Tokens) -> Result<()> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading tokens file {shown}"))?;
    let table: BTreeMap<String, String> = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "tokens file {shown}: not a JSON object of user id → token string (line {}, \
                 column {})",
                e.line(),
                e.column()
            )
        })?,
        Some("toml") => toml::from_str(&text).map_err(|e| {
            // toml's own message would quote the offending line.
            let at = e.span().map(|s| s.start).unwrap_or(0);
            let line = text[..at.min(text.len())].lines().count().max(1);
            anyhow!(
                "tokens file {shown}: not a TOML table of user id = \"token\" (line {line}: {})",
                e.message()
            )
        })?,
        _ => bail!("tokens file {shown}: name it *.json or *.toml, after its format"),
    };
    let missing: Vec<&str> = users
        .iter()
        .filter(|u| table.get(*u).is_none_or(|t| t.trim().is_empty()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "tokens file {shown} has no token for {} of the {} users this run acts as: {} \
             (`booking-harness users SCENARIO --namespace NAME` lists them all)",
            missing.len(),
            users.len(),
            missing.join(", ")
        );
    }
    let now = unix_now();
    let mut minted = Vec::with_capacity(users.len());
    for user in users {
        let token = table.get(user).map(|t| t.trim()).unwrap_or_default();
        let checked = parse_output(token, now)
            .with_context(|| format!("tokens file {shown}: the token for user {user}"))?;
        minted.push((user.clone(), checked.token));
    }
    install(tokens, minted)
}

/// Fetches command tokens again before they expire, beside the run. Stops
/// when stopped or dropped (at the latest with the run).
pub struct Refresher {
    task: tokio::task::JoinHandle<()>,
    lapses: Arc<Mutex<Vec<String>>>,
}

impl Refresher {
    pub fn start(schedule: Schedule, tokens: Tokens) -> Refresher {
        let lapses = Arc::default();
        let task = tokio::spawn(refresh(schedule, tokens, Arc::clone(&lapses)));
        Refresher { task, lapses }
    }

    /// Stops refreshing; returns the users whose token expired with no new
    /// one (their requests met `401` for a while: an error of the run).
    pub fn stop(&self) -> Vec<String> {
        self.task.abort();
        self.lapses.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The refresher's loop: sleep until the next token is due, fetch every
/// token due soon (outside the map's lock), swap them in. Each pass sleeps
/// until a due time that lies ahead (at least [`RETRY`] after a failure,
/// a second after a success), and the task ends with the run.
async fn refresh(mut schedule: Schedule, tokens: Tokens, lapses: Arc<Mutex<Vec<String>>>) {
    let mut lapsed = std::collections::HashSet::new();
    loop {
        let Some(next) = schedule.due.values().map(|d| d.refresh_at).min() else {
            return;
        };
        tokio::time::sleep_until(next).await;
        let soon = Instant::now() + BATCH;
        let users: Vec<String> = schedule
            .due
            .iter()
            .filter(|(_, d)| d.refresh_at <= soon)
            .map(|(u, _)| u.clone())
            .collect();
        for (user, issued) in run_for_each(&schedule.command, &users, false).await {
            let now = Instant::now();
            match issued {
                Ok(issued) => {
                    if install(&tokens, [(user.clone(), issued.token)]).is_err() {
                        return;
                    }
                    let late = schedule.due.get(&user).is_some_and(|d| now >= d.expires_at);
                    if late && lapsed.insert(user.clone()) {
                        if let Ok(mut l) = lapses.lock() {
                            l.push(format!(
                                "the token of {user} expired before the token command gave a                                  new one: raise the provider's token lifetime or make the                                  command faster"
                            ));
                        }
                    }
                    match issued.lifetime {
                        Some(lifetime) => schedule.due.insert(user, Due::of(lifetime, now)),
                        None => schedule.due.remove(&user),
                    };
                }
                Err(e) => {
                    tracing::warn!(user = %user, error = %format!("{e:#}"), "token refresh failed");
                    let Some(due) = schedule.due.get_mut(&user) else {
                        continue;
                    };
                    due.refresh_at = now + RETRY;
                    if now >= due.expires_at && lapsed.insert(user.clone()) {
                        if let Ok(mut l) = lapses.lock() {
                            l.push(format!(
                                "the token of {user} expired and the token command could not \
                                 replace it: {e:#}"
                            ));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
