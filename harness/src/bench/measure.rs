//! CPU time and resident memory of the replicas under load, from
//! `/proc` (Linux): what the bench reports per request.

/// CPU time a process spent, from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSeconds {
    /// In the process's own code.
    pub user: f64,
    /// In the kernel on its behalf: system calls (loopback TCP, epoll,
    /// futex), and the work they do for the receiving end.
    pub system: f64,
}

impl CpuSeconds {
    pub fn total(&self) -> f64 {
        self.user + self.system
    }
}

/// The length of one clock tick, the unit `/proc/PID/stat` counts CPU
/// time in (10 ms at the usual 100 Hz).
pub fn cpu_clock_tick() -> Option<f64> {
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(1.0 / per_second as f64)
}

/// CPU time (user + system, every thread, exited ones too) that the
/// processes `pids` have used so far, in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pids: &[u32]) -> Option<CpuSeconds> {
    let tick = cpu_clock_tick()?;
    let mut total = CpuSeconds::default();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name (which may hold spaces) come fields 3…;
        // utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        total.user += utime * tick;
        total.system += stime * tick;
    }
    Some(total)
}

/// Resident memory of process `pid`, in MB (0 if unknown).
pub fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
