//! The limits of the parts, measured at the same concurrency: PostgreSQL's
//! own insert rate (`pgbench`), Redis's SET and GET rates
//! (`redis-benchmark`), and the machine they ran on.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

/// One single-row insert into `bookings` (same unique indexes) per transaction.
const SINGLE_ROW: &str = "\\set r random(1, 9999999)\n\
    INSERT INTO bookings (id, user_id, resource_id, date, status, created_at, key_kind, idem_key) \
    VALUES (gen_random_uuid(), 'pgbench', 'room_P', date '2100-01-01' + (:client_id * 10000000 + :r), \
    'confirmed', now(), 'client', gen_random_uuid()::text) ON CONFLICT DO NOTHING;\n";

/// The database work of one booking: the booking row and its key's outcome
/// row (with a response body of a 201's size) in one transaction.
const BOOKING_TRANSACTION: &str = "\\set r random(1, 9999999)\n\
    BEGIN;\n\
    INSERT INTO bookings (id, user_id, resource_id, date, status, created_at, key_kind, idem_key) \
    VALUES (gen_random_uuid(), 'pgbench', 'room_Q', date '2100-01-01' + (:client_id * 10000000 + :r), \
    'confirmed', now(), 'client', 'pgb-' || :client_id || '-' || :r) ON CONFLICT DO NOTHING;\n\
    INSERT INTO idempotency_records (user_id, key_kind, idem_key, fingerprint, resource_id, date, \
    status_code, response_body, booking_id, created_at, expires_at) \
    VALUES ('pgbench', 'client', 'pgb-' || :client_id || '-' || :r, 'fingerprint', 'room_Q', \
    date '2100-01-01' + (:client_id * 10000000 + :r), 201, repeat('x', 300), gen_random_uuid(), \
    now(), now() + interval '1 day') ON CONFLICT DO NOTHING;\n\
    END;\n";

/// PostgreSQL's own single-row insert rate into the same table (same unique
/// indexes), at the same concurrency, with pgbench.
pub(super) fn pgbench_inserts(port: u16, clients: usize, duration: Duration) -> Result<f64> {
    pgbench(port, clients, duration, SINGLE_ROW)
}

/// PostgreSQL's own rate for a booking's two rows in one transaction.
pub(super) fn pgbench_booking_transactions(
    port: u16,
    clients: usize,
    duration: Duration,
) -> Result<f64> {
    pgbench(port, clients, duration, BOOKING_TRANSACTION)
}

fn pgbench(port: u16, clients: usize, duration: Duration, script_text: &str) -> Result<f64> {
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(script.path(), script_text)?;
    let out = Command::new(pg_tool("pgbench"))
        .args(["-n", "-h", "127.0.0.1", "-U", "postgres", "-p"])
        .arg(port.to_string())
        .args(["-c", &clients.to_string(), "-j", "2", "-T"])
        .arg(duration.as_secs().max(1).to_string())
        .arg("-f")
        .arg(script.path())
        .arg("booking")
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_after(&text, "tps = ").with_context(|| {
        format!(
            "pgbench said: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn pg_tool(name: &str) -> PathBuf {
    crate::infra::postgres_bin_dir()
        .map(|d| d.join(name))
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Redis's own SET and GET rates at the same concurrency.
pub(super) fn redis_benchmark(port: u16, clients: usize) -> Result<(f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-c",
            &clients.to_string(),
            "-n",
            "100000",
            "-t",
            "set,get",
            "-q",
        ])
        .output()
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let rate = |op: &str| {
        text.lines()
            .filter(|l| l.starts_with(op))
            .filter_map(|l| parse_after(l, ": "))
            .next_back()
            .unwrap_or(0.0)
    };
    Ok((rate("SET"), rate("GET")))
}

fn parse_after(text: &str, marker: &str) -> Option<f64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.parse().ok()
}

pub(super) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores ({cpu}), shared")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_outputs_parse() {
        assert_eq!(
            parse_after(
                "latency average = 1.2 ms\ntps = 1834.512 (without initial connection time)",
                "tps = "
            ),
            Some(1834.512)
        );
        assert_eq!(
            parse_after("SET: 91743.12 requests per second, p50=0.2 msec", ": "),
            Some(91743.12)
        );
        assert_eq!(parse_after("nothing here", "tps = "), None);
    }
}
