//! Child processes in their own process groups, stopped by pid.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Process groups of every live child, so that a signal handler can stop
/// them all when the harness itself is interrupted (Drop does not run then).
static LIVE_GROUPS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

fn live_groups() -> std::sync::MutexGuard<'static, Vec<i32>> {
    LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// SIGKILLs the process group of every child still running. For Ctrl-C and
/// SIGTERM handlers: children lead their own groups, so a terminal's
/// SIGINT never reaches them.
pub fn kill_all_children() {
    for group in live_groups().drain(..) {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    // And the containers of the containers provider.
    super::containers::remove_all();
}

/// The process group of a child started some other way (`tokio::process`
/// with `process_group(0)`, to read its output through pipes): known to
/// [`kill_all_children`] while the guard lives, and SIGKILLed when it
/// drops, so nothing the child started outlives it.
#[derive(Debug)]
pub struct ProcessGroup(i32);

impl ProcessGroup {
    /// Takes charge of the group `leader_pid` leads.
    pub fn adopt(leader_pid: u32) -> ProcessGroup {
        let group = leader_pid as i32;
        live_groups().push(group);
        ProcessGroup(group)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
        live_groups().retain(|g| *g != self.0);
    }
}

/// A child process that leads its own process group. Dropping it kills the
/// whole group (the child and anything it started) and reaps the child.
#[derive(Debug)]
pub struct ManagedChild {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl ManagedChild {
    /// Spawns `cmd` in a new process group, with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        live_groups().push(child.id() as i32);
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn group(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `signal` to the child's process group (only processes we started).
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        if !self.is_running() {
            bail!("{} (pid {}) is not running", self.name, self.pid());
        }
        killpg(self.group(), signal).with_context(|| format!("signalling {}", self.name))
    }

    /// Whether the child is still alive (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exited = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Waits up to `timeout` for the child to exit on its own.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                return self.exited;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL to the group, then reap.
    pub fn kill(&mut self) {
        if self.is_running() {
            let _ = killpg(self.group(), Signal::SIGKILL);
            // SIGKILL cannot be ignored: this wait is short.
            self.exited = self.child.wait().ok();
        }
        // A group member may outlive the leader briefly; make sure it is gone.
        let _ = killpg(self.group(), Signal::SIGKILL);
        let group = self.group().as_raw();
        live_groups().retain(|g| *g != group);
    }

    /// `signal` to the leader (a graceful stop), then SIGKILL after `grace`.
    pub fn stop(&mut self, signal: Signal, grace: Duration) {
        if self.is_running() {
            let _ = nix::sys::signal::kill(self.group(), signal);
            if self.wait_for_exit(grace).is_none() {
                tracing::warn!(name = %self.name, "did not stop in {grace:?}; killing");
            }
        }
        self.kill();
    }

    /// The last `lines` lines of the child's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Ports [`free_port`] has handed out in this process.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A free TCP port on 127.0.0.1 (the OS picks it; we release it at once),
/// never one this process was handed before: a server takes seconds to
/// bind the port it is given (a container longer), and tests in parallel
/// threads must not be given the same one in that window, nor the port of
/// a server that another test killed and will start again on it.
pub fn free_port() -> Result<u16> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 that this process was not given before (100 tries)")
}

/// Polls `check` every 50 ms until it returns `Ok(true)` or `timeout` passes.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!("{what} not ready after {timeout:?}: {e:#}"),
                None => bail!("{what} not ready after {timeout:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_handed_out_once_per_process() {
        // The OS alone repeats itself: 2 000 binds to port 0 on Linux give
        // about 130 repeats (its ephemeral range is ~28 000 ports).
        let ports: Vec<u16> = (0..2000).map(|_| free_port().expect("port")).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }
}
