//! What happened in a run, in the spirit of Jepsen's histories.
//!
//! Every HTTP attempt is one [`Operation`]: who invoked it and when, what it
//! asked for, and how it completed. `ok` is a 2xx answer, `fail` a definitive
//! error answer (4xx), `info` an indeterminate one (timeout, lost connection,
//! 5xx): it may or may not have taken effect, and checkers treat it so.
//! A history also keeps the faults applied and the final state of the store,
//! so it can be written as JSON lines and checked again offline.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

// The API's operations and its "try again" codes are the profile's vocabulary.
pub use crate::profile::{OpKind, TRY_AGAIN};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx answer.
    Ok,
    /// A definitive error answer: the attempt did not take effect.
    Fail,
    /// No usable answer: the attempt may or may not have taken effect.
    Info,
}

/// One HTTP attempt, from invocation to completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Position in the history.
    pub index: usize,
    /// The virtual client (`c0`, `c1`, …) or `recovery`.
    pub process: String,
    /// The client's intent; retries of one intent share it.
    pub intent: u64,
    /// 1 for the first try of an intent.
    pub attempt: u32,
    pub kind: OpKind,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The client's `Idempotency-Key`; `None` lets the server derive one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<usize>,
    /// Milliseconds since the start of the run.
    pub invoke_ms: f64,
    pub complete_ms: f64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The body as the target sent it, byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body in this service's conventions, when the target speaks another
    /// API profile (see `profile.rs`); checkers read this view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical: Option<String>,
    #[serde(default)]
    pub replayed: bool,
    /// Whether the answer carried `Retry-After` (histories recorded before
    /// this field existed count as yes).
    #[serde(default = "yes")]
    pub retry_after: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn yes() -> bool {
    true
}

/// The identity of an idempotency key as the service scopes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub user: String,
    pub kind: String,
    pub key: String,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.user, self.kind, self.key)
    }
}

impl Operation {
    /// The key scope of a create (`client` or `derived`, as the service has it).
    pub fn scope(&self) -> Option<Scope> {
        if self.kind != OpKind::Create {
            return None;
        }
        Some(match &self.key {
            Some(key) => Scope {
                user: self.user.clone(),
                kind: "client".into(),
                key: key.clone(),
            },
            None => Scope {
                user: self.user.clone(),
                kind: "derived".into(),
                key: format!(
                    "{}:{}",
                    self.resource.as_deref().unwrap_or(""),
                    self.date.as_deref().unwrap_or("")
                ),
            },
        })
    }

    pub fn slot(&self) -> Option<(String, String)> {
        Some((self.resource.clone()?, self.date.clone()?))
    }

    /// The answer's body as JSON, in this service's conventions.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.canonical.as_deref().or(self.body.as_deref())?).ok()
    }

    /// The booking id in a 2xx body.
    pub fn returned_booking_id(&self) -> Option<String> {
        if self.outcome != Outcome::Ok {
            return None;
        }
        self.json()?["booking"]["id"].as_str().map(str::to_owned)
    }

    /// The booking a 2xx answer carries (`booking` in the body).
    pub fn returned_booking(&self) -> Option<ReturnedBooking> {
        if self.outcome != Outcome::Ok {
            return None;
        }
        ReturnedBooking::from_json(&self.json()?["booking"])
    }

    /// The bookings a list answer carries.
    pub fn listed_bookings(&self) -> Vec<ReturnedBooking> {
        if self.kind != OpKind::List || self.outcome != Outcome::Ok {
            return Vec::new();
        }
        self.json()
            .and_then(|v| {
                v["bookings"]
                    .as_array()
                    .map(|a| a.iter().filter_map(ReturnedBooking::from_json).collect())
            })
            .unwrap_or_default()
    }

    /// The resources an availability answer lists as free.
    pub fn available_resources(&self) -> Option<Vec<String>> {
        if self.kind != OpKind::Availability || self.outcome != Outcome::Ok {
            return None;
        }
        let v = self.json()?;
        Some(
            v["availableResources"]
                .as_array()?
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// An answer that ends the intent: a 2xx, or a 4xx other than a
    /// [`TRY_AGAIN`] code. Timeouts, 5xx and those leave the intent undecided.
    pub fn is_definitive(&self) -> bool {
        match self.status {
            Some(200..=299) => true,
            Some(400..=499) => !self.says_try_again(),
            _ => false,
        }
    }

    /// A create answered with what its key remembers: a booking (`201`)
    /// or `ALREADY_BOOKED`, with the body (the bytes every replay repeats).
    pub fn is_remembered_answer(&self) -> bool {
        self.kind == OpKind::Create
            && (self.is_created() || self.has_code("ALREADY_BOOKED"))
            && self.body.is_some()
    }

    /// A 4xx that asks the client to send the same request again later.
    pub fn says_try_again(&self) -> bool {
        self.code.as_deref().is_some_and(|c| TRY_AGAIN.contains(&c))
    }

    /// A create answered `201`.
    pub fn is_created(&self) -> bool {
        self.kind == OpKind::Create && self.outcome == Outcome::Ok && self.status == Some(201)
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// A booking as an answer presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnedBooking {
    pub id: String,
    pub user: String,
    pub resource: String,
    pub date: String,
    pub status: String,
}

impl ReturnedBooking {
    fn from_json(b: &serde_json::Value) -> Option<ReturnedBooking> {
        let field = |name: &str| b[name].as_str().map(str::to_owned);
        Some(ReturnedBooking {
            id: field("id")?,
            user: field("userId").unwrap_or_default(),
            resource: field("resourceId").unwrap_or_default(),
            date: field("date").unwrap_or_default(),
            status: field("status").unwrap_or_default(),
        })
    }
}

/// A fault the nemesis applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    pub start_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<f64>,
    pub kind: String,
    pub target: String,
    #[serde(default)]
    pub detail: String,
    /// For failpoints: the failpoint's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failpoint: Option<String>,
    /// For failpoints: how often the action fired (a crash counts once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired: Option<u64>,
    /// Why the fault could not be applied: the run tested less than it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_error: Option<String>,
    /// For `command` faults: what ran and how it ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandRun>,
}

/// An outside command a `command` fault ran (`run` or `heal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRun {
    pub step: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub timed_out: bool,
    /// The tail of its stdout and stderr.
    #[serde(default)]
    pub output: String,
    /// Why it could not be started or waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CommandRun {
    /// Why this command did not do its job, if it did not.
    pub fn failure(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("{} command could not run: {e}", self.step));
        }
        if self.timed_out {
            return Some(format!("{} command timed out: {}", self.step, self.command));
        }
        match self.exit_code {
            Some(0) => None,
            code => Some(format!(
                "{} command {:?} exited with {}: {}",
                self.step,
                self.command,
                code.map_or("a signal".into(), |c| c.to_string()),
                self.output.lines().last().unwrap_or("")
            )),
        }
    }
}

/// A booking row as read directly from the store at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingRow {
    pub id: String,
    pub user_id: String,
    pub resource_id: String,
    pub date: String,
    pub status: String,
    pub key_kind: String,
    pub idem_key: String,
}

impl BookingRow {
    pub fn scope(&self) -> Scope {
        Scope {
            user: self.user_id.clone(),
            kind: self.key_kind.clone(),
            key: self.idem_key.clone(),
        }
    }
}

/// Facts about the run that checkers need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub scenario: String,
    pub seed: u64,
    pub mode: String,
    /// How long after the first recovery probe a success must come.
    pub recovery_bound_ms: f64,
    /// Retention of server-derived keys, in milliseconds.
    pub derived_key_ttl_ms: f64,
    /// Retention of a client key's booking and of its refusal, in
    /// milliseconds (0: unknown, taken as longer than any run).
    #[serde(default)]
    pub client_key_ttl_ms: f64,
    #[serde(default)]
    pub refusal_ttl_ms: f64,
    /// When the faults had healed and the settle phase began (0: no settle phase).
    #[serde(default)]
    pub settled_from_ms: f64,
    /// How long undecided intents were retried after the heal.
    #[serde(default)]
    pub settle_bound_ms: f64,
    /// The service's reuse policy for a key sent with another payload: `reject` or `replay`.
    #[serde(default = "reject")]
    pub reuse_policy: String,
    /// The resources and dates the workload books (for the availability check).
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub dates: Vec<String>,
    /// The conventions of the API under test.
    #[serde(default)]
    pub api: crate::profile::ApiProfile,
    /// The prefix of this run's users and keys (empty on a stack of its own).
    #[serde(default)]
    pub namespace: String,
}

impl RunMeta {
    /// How long a client key's booking is kept, in ms; a history that does
    /// not say (0) gets longer than any run.
    pub fn booking_retention_ms(&self) -> f64 {
        known_or_forever(self.client_key_ttl_ms)
    }

    /// How long a client key's refusal is kept (never longer than a booking).
    pub fn refusal_retention_ms(&self) -> f64 {
        known_or_forever(self.refusal_ttl_ms).min(self.booking_retention_ms())
    }
}

fn known_or_forever(ms: f64) -> f64 {
    if ms > 0.0 {
        ms
    } else {
        f64::INFINITY
    }
}

fn reject() -> String {
    "reject".into()
}

impl Default for RunMeta {
    fn default() -> Self {
        RunMeta {
            scenario: String::new(),
            seed: 0,
            mode: String::new(),
            recovery_bound_ms: 0.0,
            derived_key_ttl_ms: 0.0,
            client_key_ttl_ms: 0.0,
            refusal_ttl_ms: 0.0,
            settled_from_ms: 0.0,
            settle_bound_ms: 0.0,
            reuse_policy: reject(),
            resources: Vec::new(),
            dates: Vec::new(),
            api: crate::profile::ApiProfile::default(),
            namespace: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    Meta(RunMeta),
    Op(Operation),
    Fault(FaultEvent),
    FinalState { rows: Vec<BookingRow> },
}

#[derive(Debug, Clone, Default)]
pub struct History {
    pub meta: RunMeta,
    pub ops: Vec<Operation>,
    pub faults: Vec<FaultEvent>,
    /// `None` when the store could not be read (then store checks are `unknown`).
    pub final_state: Option<Vec<BookingRow>>,
}

impl History {
    /// Writes the history as JSON lines.
    pub fn write_jsonl(&self, path: &Path) -> Result<()> {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        let mut line = |entry: &Entry| -> Result<()> {
            serde_json::to_writer(&mut out, entry)?;
            out.write_all(b"\n")?;
            Ok(())
        };
        line(&Entry::Meta(self.meta.clone()))?;
        for op in &self.ops {
            line(&Entry::Op(op.clone()))?;
        }
        for fault in &self.faults {
            line(&Entry::Fault(fault.clone()))?;
        }
        if let Some(rows) = &self.final_state {
            line(&Entry::FinalState { rows: rows.clone() })?;
        }
        out.flush()?;
        Ok(())
    }

    pub fn read_jsonl(path: &Path) -> Result<History> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut history = History::default();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let entry: Entry = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a history entry", path.display(), n + 1))?;
            match entry {
                Entry::Meta(m) => history.meta = m,
                Entry::Op(op) => history.ops.push(op),
                Entry::Fault(f) => history.faults.push(f),
                Entry::FinalState { rows } => history.final_state = Some(rows),
            }
        }
        Ok(history)
    }

    /// Operations by index, for violation reports.
    pub fn op(&self, index: usize) -> Option<&Operation> {
        self.ops.iter().find(|o| o.index == index)
    }

    /// Counts of operations by kind and outcome (`create ok`, `cancel info`, …).
    pub fn outcome_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for op in &self.ops {
            let kind = serde_json::to_value(op.kind).ok();
            let outcome = serde_json::to_value(op.outcome).ok();
            let label = format!(
                "{} {}",
                kind.as_ref().and_then(|v| v.as_str()).unwrap_or("?"),
                outcome.as_ref().and_then(|v| v.as_str()).unwrap_or("?")
            );
            *counts.entry(label).or_default() += 1;
        }
        counts
    }
}
