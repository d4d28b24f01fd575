//! The report as markdown, and the HTML page made from it with the
//! scaling plots.

use super::{BenchReport, Measurement};
use crate::html::{from_markdown, line_plot};

/// The report as markdown.
pub fn markdown(r: &BenchReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "# Booking load report\n\nMachine: {}. Each load ran {:.0} s; all numbers from one run, side by side; a workload run more than once (`runs`) shows the median of its runs, and its requests and errors summed.\n", r.machine, r.duration_s);
    let _ = writeln!(
        s,
        "## Targets\n\n| target | wanted | measured | met |\n|---|---|---|---|"
    );
    for t in &r.targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            t.name,
            t.wanted,
            t.measured,
            if t.met {
                "yes".to_owned()
            } else {
                format!("**no** ({})", t.gap.clone().unwrap_or_default())
            }
        );
    }
    let _ = writeln!(s, "\n## Workloads\n\n| workload | runs | clients | replicas | requests | errors | per second | p50 ms | p99 ms | service CPU µs/request (in the kernel) |\n|---|---|---|---|---|---|---|---|---|---|");
    for m in &r.measurements {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            m.name,
            m.runs,
            m.clients,
            m.replicas,
            m.requests,
            m.errors,
            m.per_second,
            m.latency_ms.p50,
            m.latency_ms.p99,
            match (m.service_cpu_us, m.service_kernel_cpu_us) {
                (Some(us), Some(kernel)) => format!("{us:.0} ({kernel:.0})"),
                (Some(us), None) => format!("{us:.0}"),
                _ => "—".to_owned(),
            }
        );
    }
    let _ = writeln!(
        s,
        "\n## Baselines\n\n- pgbench single-row inserts into `bookings` (same unique indexes): {:.0}/s\n- pgbench, a booking's database work (booking row + outcome row in one transaction): {:.0}/s\n- redis-benchmark: SET {:.0}/s, GET {:.0}/s\n- replica RSS after load: {:.1} MB",
        r.pgbench_inserts_per_second, r.pgbench_booking_transactions_per_second, r.redis_set_per_second, r.redis_get_per_second, r.replica_rss_mb
    );
    let _ = writeln!(s, "\n## Invariants\n");
    if r.violations.is_empty() {
        let _ = writeln!(s, "Checked on the database after every workload: no two confirmed bookings for a slot, every 201 booking exists, one booking per race round. **All held.**");
    } else {
        for v in &r.violations {
            let _ = writeln!(s, "- VIOLATION: {v}");
        }
    }
    s
}

/// A self-contained HTML page with the tables and the scaling plots.
pub fn html(r: &BenchReport) -> String {
    let series =
        |name: &str, x: fn(&Measurement) -> usize, y: fn(&Measurement) -> f64| -> Vec<(f64, f64)> {
            r.measurements
                .iter()
                .filter(|m| m.name == name)
                .map(|m| (x(m) as f64, y(m)))
                .collect()
        };
    // A load with no CPU reading is left out of the plot, not drawn at 0.
    let live_keys = |y: fn(&Measurement) -> Option<f64>| -> Vec<(f64, f64)> {
        r.measurements
            .iter()
            .filter_map(|m| Some((m.live_keys? as f64, y(m)?)))
            .collect()
    };
    let plots = [
        line_plot(
            "throughput vs clients (1 replica)",
            &series(
                "scaling: creates vs clients",
                |m| m.clients,
                |m| m.per_second,
            ),
            "clients",
            "creates/s",
        ),
        line_plot(
            "p99 vs clients (1 replica)",
            &series(
                "scaling: creates vs clients",
                |m| m.clients,
                |m| m.latency_ms.p99,
            ),
            "clients",
            "p99 ms",
        ),
        line_plot(
            "throughput vs live keys (1 replica)",
            &live_keys(|m| Some(m.per_second)),
            "live keys",
            "creates/s",
        ),
        line_plot(
            "service CPU per create vs live keys",
            &live_keys(|m| m.service_cpu_us),
            "live keys",
            "µs/create",
        ),
        line_plot(
            "throughput vs replicas",
            &series(
                "scaling: creates vs replicas",
                |m| m.replicas,
                |m| m.per_second,
            ),
            "replicas",
            "creates/s",
        ),
        line_plot(
            "p99 vs replicas",
            &series(
                "scaling: creates vs replicas",
                |m| m.replicas,
                |m| m.latency_ms.p99,
            ),
            "replicas",
            "p99 ms",
        ),
    ];
    let body = from_markdown(&markdown(r));
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>booking load report</title><style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:1.5rem auto;color:#222}}table{{border-collapse:collapse;font-size:.85rem}}td{{border:1px solid #ddd;padding:.2rem .5rem}}figure{{display:inline-block;margin:.5rem}}</style></head><body>{body}<h2>Scaling</h2>{}</body></html>"#,
        plots.join("")
    )
}
