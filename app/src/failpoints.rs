//! Failpoints at the exact steps of the protocol (cargo feature `failpoints`).
//!
//! Each [`Step`] is a `fail` crate failpoint named after the step it sits at.
//! The `fail` crate's own `sleep`/`pause` would block a runtime thread, so
//! actions are given as `return(ACTION)` and carried out here, asynchronously:
//!
//! | action            | effect                                                       |
//! |-------------------|--------------------------------------------------------------|
//! | `return(crash)`   | abort the process at once, as `kill -9` would                |
//! | `return(error)`   | fail the step as a lost dependency would (`503`, clean-up runs) |
//! | `return(sleep(MS))` | delay the step by MS milliseconds without blocking a thread |
//! | `panic`, `off`, `N*…`, `P%…` | the `fail` crate's own actions and modifiers      |
//!
//! The `fail` crate's `sleep`, `delay`, `pause` and `yield` are refused: they
//! would hold a runtime thread.
//!
//! The same grammar is used by `FAILPOINTS="after_lock=return(error);…"`,
//! by the admin endpoint `PUT /admin/failpoints/{name}` and by scenario files.
//! Without the feature, [`hit`] compiles to nothing.

use std::fmt;

/// The protocol steps that have a failpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The key is claimed and the slot lock held (one coordinator call);
    /// the transaction has not started.
    AfterLock,
    /// Step 5 is about to commit: on SQLite the transaction has done its
    /// writes; on PostgreSQL, whose step 5 is one autocommitted statement,
    /// `error` and `crash` act before the statement is sent (nothing is
    /// written) and `sleep` holds the statement's writes open before they
    /// commit.
    BeforeCommit,
    /// The transaction committed; the Redis record is not yet completed.
    AfterCommitBeforeFinalize,
    /// A cancel is about to run its transaction.
    Cancel,
}

impl Step {
    pub const ALL: [Step; 4] = [
        Step::AfterLock,
        Step::BeforeCommit,
        Step::AfterCommitBeforeFinalize,
        Step::Cancel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::AfterLock => "after_lock",
            Step::BeforeCommit => "before_commit",
            Step::AfterCommitBeforeFinalize => "after_commit_before_finalize",
            Step::Cancel => "cancel",
        }
    }

    pub fn from_name(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The error a failpoint injects with `return(error)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected(pub &'static str);

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failpoint {} injected an error", self.0)
    }
}

impl std::error::Error for Injected {}

/// What a `return(...)` argument asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Crash,
    Error,
    Sleep(std::time::Duration),
}

impl Action {
    pub fn parse(arg: &str) -> Option<Action> {
        match arg.trim() {
            "crash" => Some(Action::Crash),
            "error" => Some(Action::Error),
            other => {
                let ms = other.strip_prefix("sleep(")?.strip_suffix(')')?;
                ms.trim()
                    .parse()
                    .ok()
                    .map(|ms| Action::Sleep(std::time::Duration::from_millis(ms)))
            }
        }
    }
}

/// Passes the failpoint of `step`, carrying out its action if one is set.
pub async fn hit(step: Step) -> Result<(), Injected> {
    if let Some(delay) = hit_holding(step).await? {
        tracing::warn!(failpoint = step.name(), ?delay, "injecting a delay");
        tokio::time::sleep(delay).await;
    }
    Ok(())
}

/// Like [`hit`], but a `sleep(MS)` action is handed back instead of carried
/// out: the caller waits where the step really waits. PostgreSQL's step 5
/// is one autocommitted statement, so its `before_commit` delay is spent
/// inside that statement, after its writes and before they commit.
#[cfg(feature = "failpoints")]
pub async fn hit_holding(step: Step) -> Result<Option<std::time::Duration>, Injected> {
    let Some(arg) = fail::eval(step.name(), |arg| arg.unwrap_or_default()) else {
        return Ok(None);
    };
    count_fired(step);
    match Action::parse(&arg) {
        Some(Action::Crash) => {
            eprintln!("failpoint {}: crashing the process", step.name());
            std::process::abort();
        }
        Some(Action::Error) => {
            tracing::warn!(failpoint = step.name(), "injecting an error");
            Err(Injected(step.name()))
        }
        Some(Action::Sleep(delay)) => Ok(Some(delay)),
        None => {
            tracing::warn!(
                failpoint = step.name(),
                arg,
                "unknown failpoint action ignored"
            );
            Ok(None)
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub async fn hit_holding(_step: Step) -> Result<Option<std::time::Duration>, Injected> {
    Ok(None)
}

/// Validates `actions` for the failpoint `name` and sets it.
#[cfg(feature = "failpoints")]
pub fn set(name: &str, actions: &str) -> Result<(), String> {
    if Step::from_name(name).is_none() {
        let known: Vec<_> = Step::ALL.iter().map(|s| s.name()).collect();
        return Err(format!(
            "unknown failpoint {name:?}; known: {}",
            known.join(", ")
        ));
    }
    for action in actions.split("->") {
        check_action(action)?;
    }
    fail::cfg(name, actions)
}

/// One action in fail-rs's grammar, `[P%][CNT*]TASK[(ARG)]`, whose `return`
/// argument this module must understand: otherwise `1*return(explode)`
/// would be accepted and then do nothing, and a scenario would test nothing.
#[cfg(feature = "failpoints")]
fn check_action(action: &str) -> Result<(), String> {
    let mut rest = action.trim();
    if let Some((p, r)) = rest.split_once('%') {
        if p.trim().parse::<f32>().is_ok() {
            rest = r;
        }
    }
    if let Some((count, r)) = rest.split_once('*') {
        if count.trim().parse::<usize>().is_ok() {
            rest = r;
        }
    }
    let (task, arg) = match rest.split_once('(') {
        Some((task, arg)) => (
            task.trim(),
            Some(arg.strip_suffix(')').ok_or_else(|| {
                format!("failpoint action {action:?} lacks a closing parenthesis")
            })?),
        ),
        None => (rest.trim(), None),
    };
    match task {
        "return" => match arg.and_then(Action::parse) {
            Some(_) => Ok(()),
            None => Err(format!(
                "unknown action {action:?}; use return(crash), return(error) or return(sleep(MS))"
            )),
        },
        "off" | "panic" | "print" => Ok(()),
        // fail-rs carries these out on the calling thread: a runtime
        // worker would stop serving every other request with it.
        "sleep" | "delay" | "pause" | "yield" => Err(format!(
            "failpoint task {task:?} in {action:?} would block a runtime thread; \
             use return(sleep(MS)), which waits without blocking"
        )),
        other => Err(format!("unknown failpoint task {other:?} in {action:?}")),
    }
}

#[cfg(feature = "failpoints")]
static FIRED: std::sync::Mutex<Vec<(&'static str, u64)>> = std::sync::Mutex::new(Vec::new());

#[cfg(feature = "failpoints")]
fn count_fired(step: Step) {
    let mut fired = FIRED.lock().unwrap_or_else(|p| p.into_inner());
    match fired.iter_mut().find(|(name, _)| *name == step.name()) {
        Some((_, n)) => *n += 1,
        None => fired.push((step.name(), 1)),
    }
}

/// How often each failpoint's action has fired since the process started
/// (a `crash` fires once and takes the count with it).
#[cfg(feature = "failpoints")]
pub fn fired() -> Vec<(&'static str, u64)> {
    FIRED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Clears the failpoint `name`.
#[cfg(feature = "failpoints")]
pub fn clear(name: &str) {
    fail::remove(name);
}

/// Every failpoint that is set, with its actions.
#[cfg(feature = "failpoints")]
pub fn list() -> Vec<(String, String)> {
    fail::list()
}

/// Applies a `FAILPOINTS` value: `name=actions;name=actions`.
pub fn configure(spec: &str) -> Result<(), String> {
    #[cfg(feature = "failpoints")]
    {
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, actions) = entry
                .split_once('=')
                .ok_or_else(|| format!("failpoint entry {entry:?} is not name=actions"))?;
            set(name.trim(), actions.trim())?;
        }
        Ok(())
    }
    #[cfg(not(feature = "failpoints"))]
    {
        if spec.trim().is_empty() {
            Ok(())
        } else {
            Err(
                "FAILPOINTS is set but this binary was built without the `failpoints` feature"
                    .into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn actions_parse_from_return_arguments() {
        assert_eq!(Action::parse("crash"), Some(Action::Crash));
        assert_eq!(Action::parse("error"), Some(Action::Error));
        assert_eq!(
            Action::parse("sleep(250)"),
            Some(Action::Sleep(Duration::from_millis(250)))
        );
        assert_eq!(Action::parse("sleep(x)"), None);
        assert_eq!(Action::parse("explode"), None);
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn every_form_of_an_action_is_checked_not_only_a_bare_return() {
        for good in [
            "return(error)",
            "1*return(crash)",
            "30%return(sleep(200))",
            "50%2*return(error)",
            "off",
            "1*return(error)->off",
        ] {
            let all: Result<Vec<()>, String> = good.split("->").map(check_action).collect();
            assert!(all.is_ok(), "{good}: {all:?}");
        }
        for bad in [
            "1*return(explode)",
            "30%return(explode)",
            "return",
            "return(sleep(x))",
            "explode",
            "return(error",
            "sleep(100)",
            "10*delay(100)",
            "pause",
            "yield",
        ] {
            assert!(check_action(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn step_names_round_trip() {
        for step in Step::ALL {
            assert_eq!(Step::from_name(step.name()), Some(step));
        }
        assert_eq!(Step::from_name("nope"), None);
    }
}
