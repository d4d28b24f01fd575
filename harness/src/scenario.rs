//! Scenario files (`scenarios/*.toml`): what to start, what load to drive,
//! which faults to inject when, and which checkers judge the result.
//! The format is documented for QA in `docs/SCENARIOS.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Private Redis + PostgreSQL + N replicas, all behind fault proxies.
    #[default]
    Local,
    /// One replica on a SQLite file and its in-process coordinator.
    Embedded,
    /// A deployment the harness did not start (`[target]`, `--target-url`):
    /// driven through its API; the store checkers decide only with a
    /// read-only `database_url`.
    Target,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Local => "local",
            Mode::Embedded => "embedded",
            Mode::Target => "target",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "one")]
    pub replicas: usize,
    #[serde(default)]
    pub seed: u64,
    /// For `mode = "target"`: a shorthand for `[target] url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    /// For `mode = "target"`: where the deployment is and how to reach it.
    #[serde(
        default,
        serialize_with = "write_target",
        skip_serializing_if = "nothing_to_write"
    )]
    pub target: crate::target::TargetSpec,
    /// Checkers to apply; empty means all.
    #[serde(default)]
    pub checkers: Vec<String>,
    /// Seeded bugs (see `booking::seeded::CATALOGUE`) this scenario must
    /// catch: `cargo test` runs it against each and expects the catalogue's
    /// checker to fail. Empty: a smoke test, which catches no seeded bug.
    #[serde(default)]
    pub catches: Vec<String>,
    /// How long undecided intents are retried after the faults heal; by
    /// default a little longer than the service's claim lease and lock TTL.
    #[serde(
        default,
        deserialize_with = "opt_duration",
        serialize_with = "write_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub settle_bound: Option<Duration>,
    /// How long after the faults heal a fresh booking must succeed.
    #[serde(
        default = "default_recovery",
        deserialize_with = "duration",
        serialize_with = "write_duration"
    )]
    pub recovery_bound: Duration,
    /// Extra environment for every replica (e.g. `LOCK_TTL_MS = "300"`).
    #[serde(default)]
    pub service_env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// How mode `local` runs Redis and PostgreSQL: `process` or
    /// `containers`; unset: `BOOKING_INFRA` decides (default `auto`).
    #[serde(
        default,
        serialize_with = "write_infra",
        skip_serializing_if = "Option::is_none"
    )]
    pub infra: Option<crate::infra::Provider>,
    /// Set when loaded from a file.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

fn one() -> usize {
    1
}

fn default_recovery() -> Duration {
    Duration::from_secs(20)
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Number of distinct users (`u0`, `u1`, …).
    pub users: usize,
    /// Resources to book; must be in the service's catalogue.
    pub resources: Vec<String>,
    /// Number of distinct dates, from `first_date` on.
    pub dates: usize,
    pub first_date: String,
    /// Concurrent virtual clients.
    pub clients: usize,
    /// Total intents across all clients.
    pub operations: usize,
    /// Upper bound on the run's load phase.
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub duration: Duration,
    pub cancel_ratio: f64,
    pub list_ratio: f64,
    /// Creates without an `Idempotency-Key` (server-derived key).
    pub no_key_ratio: f64,
    /// Creates that reuse one of the user's earlier keys with another payload.
    pub key_reuse_ratio: f64,
    /// Creates fired twice at once with one key (a double click).
    pub double_submit_ratio: f64,
    /// Tries per intent (the first try included).
    pub max_attempts: u32,
    /// Client-side timeout of one HTTP attempt.
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub request_timeout: Duration,
    /// Pause of each client between two intents (±50 % jitter), so that the
    /// load spans the fault timeline.
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub think_time: Duration,
    /// Prefix of every client key, so that runs sharing one stack never
    /// share keys (the explorer sets it per case).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// How clients make keys: `unique` (random per intent) or `counter`
    /// (1, 2, 3… per client, as naive clients do: keys collide across users).
    pub key_style: KeyStyle,
    /// Of the cancels, the share sent by a user who does not own the booking
    /// (they must be refused and change nothing).
    pub foreign_cancel_ratio: f64,
    /// After an acknowledged cancel, how often the owner books the same slot
    /// again (without a key when the first booking had none).
    pub rebook_ratio: f64,
    /// How often a decided create is sent once more, with its key, right
    /// after the client's next acknowledged cancel or at the end of its plan
    /// (its answer must not have changed).
    pub replay_ratio: f64,
    /// When set, creates marked for replay (`replay_ratio`) are sent again
    /// at these times after their answer, instead of after the next cancel:
    /// to ask a key again while its answer is kept and once its retention
    /// has run out, on chosen replicas.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replay_at: Vec<ReplayAt>,
    /// Reads of `/api/resources/available` among the intents.
    pub availability_ratio: f64,
    /// Clients wait this long before their first intent, so that faults
    /// scheduled at `0ms` (a failpoint on every replica) are in place first.
    #[serde(
        deserialize_with = "duration",
        serialize_with = "write_duration",
        skip_serializing_if = "Duration::is_zero"
    )]
    pub start_delay: Duration,
}

/// One timed replay of a decided create (`replay_at`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayAt {
    /// How long after the create's answer.
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub after: Duration,
    /// To which replica, counted from the client's own (0); without it, to
    /// every replica in turn, the client's own first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeyStyle {
    #[default]
    Unique,
    Counter,
}

impl KeyStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStyle::Unique => "unique",
            KeyStyle::Counter => "counter",
        }
    }
}

impl Workload {
    /// The name of user `n` (in the run's namespace).
    pub fn user(&self, n: usize) -> String {
        format!("{}u{n}", self.namespace)
    }
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            users: 4,
            resources: ["room_A", "room_B", "room_C", "room_D"]
                .map(String::from)
                .to_vec(),
            dates: 2,
            first_date: "2027-01-04".into(),
            clients: 4,
            operations: 40,
            duration: Duration::from_secs(20),
            cancel_ratio: 0.1,
            list_ratio: 0.05,
            no_key_ratio: 0.1,
            key_reuse_ratio: 0.0,
            double_submit_ratio: 0.0,
            max_attempts: 8,
            request_timeout: Duration::from_secs(3),
            think_time: Duration::from_millis(50),
            namespace: String::new(),
            key_style: KeyStyle::Unique,
            foreign_cancel_ratio: 0.0,
            rebook_ratio: 0.0,
            replay_ratio: 0.0,
            replay_at: Vec::new(),
            availability_ratio: 0.0,
            start_delay: Duration::ZERO,
        }
    }
}

/// What a fault acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Redis,
    Database,
    Replica(usize),
    Replicas,
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        match raw.as_str() {
            "redis" => Ok(Target::Redis),
            "database" => Ok(Target::Database),
            "replicas" => Ok(Target::Replicas),
            other => other
                .strip_prefix("replica:")
                .and_then(|n| n.parse().ok())
                .map(Target::Replica)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown target {other:?}: use redis, database, replicas or replica:N"
                    ))
                }),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Redis => f.write_str("redis"),
            Target::Database => f.write_str("database"),
            Target::Replica(n) => write!(f, "replica:{n}"),
            Target::Replicas => f.write_str("replicas"),
        }
    }
}

/// (No `deny_unknown_fields` here: serde does not support it with `flatten`;
/// [`FaultKind`] rejects unknown fields instead.)
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Fault {
    /// When it starts, from the start of the load.
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub at: Duration,
    /// How long it lasts; instant faults (reset, restarts) ignore it.
    #[serde(
        default,
        rename = "for",
        deserialize_with = "opt_duration",
        serialize_with = "write_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub lasts: Option<Duration>,
    #[serde(flatten)]
    pub kind: FaultKind,
}

/// How long a fault without `for` lasts.
pub const DEFAULT_FAULT_DURATION: Duration = Duration::from_secs(1);

impl Fault {
    /// How long the fault acts: its `for`, else [`DEFAULT_FAULT_DURATION`];
    /// a command's `heal` runs right after its `run` when `for` is left out.
    /// (`kill_replica` is down for its `restart_after`; `reset` and
    /// `restart_redis` act at once; a `crash` failpoint without `for` waits
    /// for its crash instead: see the nemesis.)
    pub fn duration(&self) -> Duration {
        match (&self.kind, self.lasts) {
            (_, Some(lasts)) => lasts,
            (FaultKind::Command { .. }, None) => Duration::ZERO,
            (_, None) => DEFAULT_FAULT_DURATION,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// Added latency on a link (both directions), with random jitter.
    Latency {
        target: Target,
        latency_ms: u64,
        #[serde(default)]
        jitter_ms: u64,
    },
    /// A bandwidth limit on a link.
    Bandwidth { target: Target, bytes_per_sec: u64 },
    /// Abort every open connection on a link with a TCP reset.
    Reset { target: Target },
    /// Accept connections, never forward them.
    Blackhole { target: Target },
    /// Close connections after N bytes from upstream.
    CloseAfter { target: Target, bytes: u64 },
    /// Requests reach the service, replies never reach the client.
    DropResponses { target: Target },
    /// kill -9 a replica; it is restarted after `restart_after`.
    KillReplica {
        replica: usize,
        #[serde(
            default = "default_restart",
            deserialize_with = "duration",
            serialize_with = "write_duration"
        )]
        restart_after: Duration,
    },
    /// SIGSTOP a replica for the fault's duration, then SIGCONT.
    PauseReplica { replica: usize },
    /// Kill Redis (losing all its data) and start it again.
    RestartRedis,
    /// Stop PostgreSQL immediately and start it again after the fault's duration.
    RestartDatabase,
    /// Set a failpoint on a replica (or all). A `crash` action kills the
    /// replica at that step; the supervisor restarts it.
    Failpoint {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replica: Option<usize>,
        name: String,
        action: String,
    },
    /// An outside command (`sh -c`), e.g. `kubectl delete pod …` or
    /// `redis-cli -p 6390 flushall`, run at `at`; `heal` runs after `for`.
    /// Each is killed after `timeout`; exit status and output are recorded.
    Command {
        run: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heal: Option<String>,
        #[serde(
            default = "default_command_timeout",
            deserialize_with = "duration",
            serialize_with = "write_duration"
        )]
        timeout: Duration,
    },
}

/// What a fault needs of the stack. Every kind answers every question
/// (no catch-all arm): a new kind does not compile until it does.
struct Needs {
    /// The replica it acts on, if one.
    replica: Option<usize>,
    /// The private Redis or PostgreSQL of a local stack.
    local_servers: bool,
    /// A process the harness started (so not a target deployment's).
    own_process: bool,
}

impl FaultKind {
    fn needs(&self) -> Needs {
        let link = |target: &Target| Needs {
            replica: match target {
                Target::Replica(n) => Some(*n),
                Target::Redis | Target::Database | Target::Replicas => None,
            },
            local_servers: matches!(target, Target::Redis | Target::Database),
            own_process: false,
        };
        match self {
            FaultKind::Latency { target, .. }
            | FaultKind::Bandwidth { target, .. }
            | FaultKind::Reset { target }
            | FaultKind::Blackhole { target }
            | FaultKind::CloseAfter { target, .. }
            | FaultKind::DropResponses { target } => link(target),
            FaultKind::KillReplica { replica, .. } | FaultKind::PauseReplica { replica } => Needs {
                replica: Some(*replica),
                local_servers: false,
                own_process: true,
            },
            FaultKind::RestartRedis | FaultKind::RestartDatabase => Needs {
                replica: None,
                local_servers: true,
                own_process: true,
            },
            FaultKind::Failpoint { replica, .. } => Needs {
                replica: *replica,
                local_servers: false,
                own_process: true,
            },
            FaultKind::Command { .. } => Needs {
                replica: None,
                local_servers: false,
                own_process: false,
            },
        }
    }
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_restart() -> Duration {
    Duration::from_millis(500)
}

impl FaultKind {
    /// Every kind's name, as scenario files spell it.
    pub const NAMES: &'static [&'static str] = &[
        "latency",
        "bandwidth",
        "reset",
        "blackhole",
        "close_after",
        "drop_responses",
        "kill_replica",
        "pause_replica",
        "restart_redis",
        "restart_database",
        "failpoint",
        "command",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Latency { .. } => "latency",
            FaultKind::Bandwidth { .. } => "bandwidth",
            FaultKind::Reset { .. } => "reset",
            FaultKind::Blackhole { .. } => "blackhole",
            FaultKind::CloseAfter { .. } => "close_after",
            FaultKind::DropResponses { .. } => "drop_responses",
            FaultKind::KillReplica { .. } => "kill_replica",
            FaultKind::PauseReplica { .. } => "pause_replica",
            FaultKind::RestartRedis => "restart_redis",
            FaultKind::RestartDatabase => "restart_database",
            FaultKind::Failpoint { .. } => "failpoint",
            FaultKind::Command { .. } => "command",
        }
    }
}

/// Parses a `YYYY-MM-DD` date of a scenario file.
pub fn parse_date(raw: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").with_context(|| format!("bad date {raw:?}"))
}

/// Parses `250ms`, `2s`, `1.5s`, `1m`.
pub fn parse_duration(raw: &str) -> Result<Duration> {
    let raw = raw.trim();
    let (number, unit) = raw
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| raw.split_at(i))
        .context("a duration needs a unit: ms, s or m")?;
    let n: f64 = number
        .trim()
        .parse()
        .with_context(|| format!("bad duration {raw:?}"))?;
    if !(n.is_finite() && n >= 0.0) {
        bail!("bad duration {raw:?}");
    }
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => bail!("unknown duration unit in {raw:?}: use ms, s or m"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let raw = String::deserialize(d)?;
    parse_duration(&raw).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A duration as [`parse_duration`] reads it back: `300ms`, or `0.25ms`
/// below a millisecond's precision.
fn write_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&duration_text(d))
}

fn duration_text(d: &Duration) -> String {
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ms", d.as_nanos() as f64 / 1e6)
    }
}

fn write_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => write_duration(d, s),
        None => s.serialize_none(),
    }
}

fn write_infra<S: Serializer>(p: &Option<crate::infra::Provider>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(p.as_str()),
        None => s.serialize_none(),
    }
}

/// `[target]` as a written scenario shows it: `headers`, `database_url` and
/// the token source are left out, as they may hold (or lead to) secrets.
fn write_target<S: Serializer>(t: &crate::target::TargetSpec, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown<'a> {
        url: &'a [String],
        allow_remote: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        api_profile: Option<&'a str>,
    }
    Shown {
        url: &t.url,
        allow_remote: t.allow_remote,
        api_profile: t.api_profile.as_deref(),
    }
    .serialize(s)
}

fn nothing_to_write(t: &crate::target::TargetSpec) -> bool {
    t.url.is_empty() && !t.allow_remote && t.api_profile.is_none()
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario> {
        let mut scenario: Scenario = toml::from_str(text)?;
        if let Some(url) = scenario.target_url.take() {
            scenario.target.url.insert(0, url);
        }
        scenario.validate()?;
        Ok(scenario)
    }

    /// The scenario pointed at a deployment: mode `target`, with the
    /// command line's target settings over the file's. Faults that need a
    /// stack the harness started are refused here.
    pub fn aimed_at(&self, overrides: &crate::target::TargetSpec) -> Result<Scenario> {
        let mut s = self.clone();
        s.mode = Mode::Target;
        if !overrides.url.is_empty() {
            s.target.url = overrides.url.clone();
        }
        s.target.headers.extend(overrides.headers.clone());
        s.target.allow_remote |= overrides.allow_remote;
        if overrides.api_profile.is_some() {
            s.target.api_profile = overrides.api_profile.clone();
        }
        if overrides.database_url.is_some() {
            s.target.database_url = overrides.database_url.clone();
        }
        // A token source on the command line replaces the file's, whichever it is.
        if overrides.token_command.is_some() || overrides.tokens_file.is_some() {
            s.target.token_command = overrides.token_command.clone();
            s.target.tokens_file = overrides.tokens_file.clone();
        }
        s.replicas = s.target.url.len().max(1);
        s.validate()
            .with_context(|| format!("scenario {} cannot run against a target", s.name))?;
        Ok(s)
    }

    pub fn load(path: &Path) -> Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut s = Scenario::parse(&text).with_context(|| format!("in {}", path.display()))?;
        s.path = Some(path.to_owned());
        Ok(s)
    }

    /// Every `*.toml` in a folder (sorted), or the one file given.
    pub fn load_all(path: &Path) -> Result<Vec<Scenario>> {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            files.iter().map(|p| Scenario::load(p)).collect()
        } else {
            Ok(vec![Scenario::load(path)?])
        }
    }

    fn validate(&self) -> Result<()> {
        let w = &self.workload;
        if self.replicas == 0 {
            bail!("replicas must be at least 1");
        }
        if self.mode == Mode::Embedded && self.replicas != 1 {
            bail!("mode embedded runs exactly one replica");
        }
        if self.mode != Mode::Target && (self.target_url.is_some() || !self.target.url.is_empty()) {
            bail!("a target URL needs mode = \"target\"");
        }
        if w.users == 0 || w.clients == 0 || w.dates == 0 || w.resources.is_empty() {
            bail!("workload needs at least one user, client, date and resource");
        }
        if w.operations == 0 || w.operations > 100_000 {
            bail!("workload.operations must be 1..=100000");
        }
        if w.max_attempts == 0 || w.max_attempts > 50 {
            bail!("workload.max_attempts must be 1..=50");
        }
        parse_date(&w.first_date)?;
        for name in &self.catches {
            if booking::seeded::entry(name).is_none() {
                let known: Vec<_> = booking::seeded::CATALOGUE.iter().map(|e| e.name).collect();
                bail!(
                    "catches names unknown seeded bug {name:?}; known: {}",
                    known.join(", ")
                );
            }
        }
        for name in &self.checkers {
            if !crate::checker::names().contains(&name.as_str()) {
                bail!(
                    "unknown checker {name:?}; known: {}",
                    crate::checker::names().join(", ")
                );
            }
        }
        for fault in &self.faults {
            let needs = fault.kind.needs();
            // A target's replicas are its URLs, which `replicas` does not count.
            let counted = self.mode != Mode::Target || needs.own_process;
            if counted && needs.replica.is_some_and(|r| r >= self.replicas) {
                bail!(
                    "fault {} names a replica beyond replicas = {}",
                    fault.kind.name(),
                    self.replicas
                );
            }
            if let FaultKind::Failpoint { name, .. } = &fault.kind {
                if booking::failpoints::Step::from_name(name).is_none() {
                    bail!("unknown failpoint {name:?}");
                }
            }
            if needs.local_servers && self.mode != Mode::Local {
                bail!("fault {} needs mode = \"local\"", fault.kind.name());
            }
            if self.mode == Mode::Target && needs.own_process {
                bail!(
                    "fault {} acts on a process the harness started; on a target deployment \
                     use kind = \"command\" (e.g. run = \"kubectl delete pod …\")",
                    fault.kind.name()
                );
            }
            if let FaultKind::Command { run, heal, .. } = &fault.kind {
                if run.trim().is_empty() || heal.as_ref().is_some_and(|h| h.trim().is_empty()) {
                    bail!("fault command needs a non-empty run (and heal, if given)");
                }
            }
        }
        Ok(())
    }

    /// The scenario as a file in the `scenarios/` format (what the explorer
    /// writes for a shrunk failing case); `[target]` without its headers and
    /// `database_url`, which may hold secrets.
    pub fn to_toml(&self) -> String {
        // Strings, numbers, booleans, and arrays and tables of those (map
        // keys are strings): nothing the TOML serializer refuses.
        toml::to_string(self).expect("a scenario is plain TOML")
    }

    /// The settings the replicas run with: `service_env` read exactly as
    /// `booking serve` reads its environment (the service's own defaults for
    /// the rest). A value the service would refuse falls back to the
    /// defaults here; the replica itself then refuses to start and says why.
    pub fn service_settings(&self) -> booking::Settings {
        booking::config::ServeArgs::from_env_map(
            self.service_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .and_then(booking::config::ServeArgs::into_unchecked_settings)
        .unwrap_or_default()
    }

    /// How long undecided intents are retried after the heal: the file's
    /// `settle_bound`, else the service's claim lease or lock TTL (whichever
    /// is longer) plus 3 s.
    pub fn settle_bound(&self) -> Duration {
        if let Some(bound) = self.settle_bound {
            return bound;
        }
        let settings = self.service_settings();
        settings.idempotency.lease.max(settings.lock_ttl) + Duration::from_secs(3)
    }

    /// When the last fault ends.
    pub fn faults_end(&self) -> Duration {
        self.faults
            .iter()
            .map(|f| f.at + f.duration())
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settle_bound_and_ttls_come_from_the_settings_the_replicas_use() {
        let s = Scenario::parse(
            r#"
            name = "ttls"
            service_env = { IDEMPOTENCY_LEASE_MS = "1500", LOCK_TTL_MS = "300", DERIVED_KEY_TTL_SECS = "7" }
            "#,
        )
        .expect("valid scenario");
        assert_eq!(s.settle_bound(), Duration::from_millis(4_500));
        assert_eq!(
            s.service_settings().idempotency.derived_key_ttl,
            Duration::from_secs(7)
        );
        let plain = Scenario::parse("name = \"plain\"").expect("valid scenario");
        let defaults = booking::Settings::default();
        assert_eq!(
            plain.settle_bound(),
            defaults.idempotency.lease.max(defaults.lock_ttl) + Duration::from_secs(3)
        );
    }

    #[test]
    fn to_toml_round_trips_every_shipped_scenario() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        for s in Scenario::load_all(&dir).expect("scenarios") {
            let mut again = Scenario::parse(&s.to_toml()).expect("written scenario parses");
            again.path = s.path.clone();
            assert_eq!(again, s, "{}", s.to_toml());
        }
    }

    #[test]
    fn to_toml_round_trips_every_fault_kind_and_optional_field() {
        let s = Scenario::parse(
            r#"
            name = "every field"
            description = "quotes \" and newlines\n"
            replicas = 2
            seed = 9
            infra = "process"
            settle_bound = "1.5s"
            recovery_bound = "0.25ms"
            service_env = { LOCK_TTL_MS = "300" }
            [workload]
            namespace = "ns-"
            start_delay = "100ms"
            key_style = "counter"
            cancel_ratio = 0.1
            replay_at = [{ after = "2500ms", replica = 1 }, { after = "4.5s" }]
            [[faults]]
            at = "0ms"
            for = "2s"
            kind = "latency"
            target = "replica:1"
            latency_ms = 400
            [[faults]]
            at = "1s"
            kind = "bandwidth"
            target = "database"
            bytes_per_sec = 1000
            [[faults]]
            at = "1s"
            kind = "reset"
            target = "replicas"
            [[faults]]
            at = "1s"
            kind = "blackhole"
            target = "redis"
            [[faults]]
            at = "1s"
            kind = "close_after"
            target = "redis"
            bytes = 10
            [[faults]]
            at = "1s"
            kind = "drop_responses"
            target = "replica:0"
            [[faults]]
            at = "1s"
            kind = "kill_replica"
            replica = 1
            [[faults]]
            at = "1s"
            for = "1s"
            kind = "pause_replica"
            replica = 0
            [[faults]]
            at = "1s"
            kind = "restart_redis"
            [[faults]]
            at = "1s"
            for = "1s"
            kind = "restart_database"
            [[faults]]
            at = "1s"
            kind = "failpoint"
            name = "after_commit_before_finalize"
            action = "1*return(crash)"
            [[faults]]
            at = "1s"
            kind = "command"
            run = "true"
            heal = "true"
            timeout = "5s"
            "#,
        )
        .expect("valid scenario");
        let kinds: Vec<_> = s.faults.iter().map(|f| f.kind.name()).collect();
        assert_eq!(kinds, FaultKind::NAMES, "one fault of every kind, in order");
        let text = s.to_toml();
        assert_eq!(
            Scenario::parse(&text).expect("written scenario parses"),
            s,
            "{text}"
        );
    }

    #[test]
    fn to_toml_leaves_out_target_headers_and_database_url() {
        let s = Scenario::parse(
            r#"
            name = "target"
            mode = "target"
            target_url = "http://127.0.0.1:3000"
            [target]
            api_profile = "node"
            headers = { Authorization = "Bearer secret-token" }
            database_url = "postgres://user:secret@db/booking"
            token_command = "mint --client-secret secret"
            "#,
        )
        .expect("valid scenario");
        let text = s.to_toml();
        assert!(!text.contains("secret"), "{text}");
        let mut again = Scenario::parse(&text).expect("written scenario parses");
        again.target.headers = s.target.headers.clone();
        again.target.database_url = s.target.database_url.clone();
        again.target.token_command = s.target.token_command.clone();
        assert_eq!(again, s, "{text}");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            parse_duration("250ms").expect("ms"),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("1.5s").expect("s"),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2m").expect("m"), Duration::from_secs(120));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn a_full_scenario_parses() {
        let s = Scenario::parse(
            r#"
            name = "demo"
            mode = "local"
            replicas = 2
            seed = 7
            service_env = { LOCK_TTL_MS = "300" }
            [workload]
            clients = 3
            operations = 10
            duration = "5s"
            [[faults]]
            at = "1s"
            for = "2s"
            kind = "latency"
            target = "redis"
            latency_ms = 400
            [[faults]]
            at = "2s"
            kind = "failpoint"
            replica = 1
            name = "after_commit_before_finalize"
            action = "1*return(crash)"
            "#,
        )
        .expect("valid scenario");
        assert_eq!(s.replicas, 2);
        assert_eq!(s.faults.len(), 2);
        assert_eq!(s.faults[0].lasts, Some(Duration::from_secs(2)));
        assert_eq!(s.faults_end(), Duration::from_secs(3));
        assert!(matches!(
            s.faults[0].kind,
            FaultKind::Latency {
                target: Target::Redis,
                latency_ms: 400,
                ..
            }
        ));
    }

    #[test]
    fn mistakes_are_reported_clearly() {
        let err = |text: &str| format!("{:#}", Scenario::parse(text).expect_err("invalid"));
        assert!(
            err("name = \"x\"\nmode = \"embedded\"\nreplicas = 2").contains("exactly one replica")
        );
        assert!(err("name = \"x\"\ncheckers = [\"nope\"]").contains("unknown checker"));
        assert!(err("name = \"x\"\nmode = \"embedded\"\n[[faults]]\nat = \"1s\"\nkind = \"restart_redis\"\n")
            .contains("needs mode = \"local\""));
        assert!(err("name = \"x\"\n[[faults]]\nat = \"1s\"\nkind = \"failpoint\"\nname = \"nowhere\"\naction = \"return(crash)\"\n")
            .contains("unknown failpoint"));
        assert!(err("name = \"x\"\nbogus = 1").contains("unknown field"));
        // A link fault on a replica the stack does not have would act nowhere.
        let beyond = "name = \"x\"\nreplicas = 2\n[[faults]]\nat = \"1s\"\nkind = \"reset\"\ntarget = \"replica:5\"\n";
        assert!(err(beyond).contains("beyond replicas = 2"));
        let within = beyond.replace("replica:5", "replica:1");
        assert!(Scenario::parse(&within).is_ok());
        // A target's URLs are not counted by `replicas`.
        let target = "name = \"x\"\nmode = \"target\"\n[target]\nurl = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]\n[[faults]]\nat = \"1s\"\nkind = \"reset\"\ntarget = \"replica:1\"\n";
        assert!(
            Scenario::parse(target).is_ok(),
            "{:?}",
            Scenario::parse(target).err()
        );
    }
}
