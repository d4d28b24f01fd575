//! Reports: a console summary per scenario, a JSON result file and one
//! self-contained HTML page per run (inline SVG plots, no scripts, no
//! network), with fault windows shaded and every violation's operations.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::checker::{Validity, Verdict};
use crate::history::{History, Operation, Outcome};
use crate::html::{escape as esc, Frame};
use crate::runner::ScenarioResult;

fn validity_word(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "PASS",
        Validity::Unknown => "UNKNOWN",
        Validity::Invalid => "FAIL",
    }
}

/// The console summary of one scenario.
pub fn console(r: &ScenarioResult) -> String {
    let mut out = String::new();
    if let Some(why) = &r.skipped {
        let _ = writeln!(out, "== {} [{}] SKIPPED: {why}", r.name, r.mode);
        return out;
    }
    let _ = writeln!(
        out,
        "== {} [{} mode, {} replica(s), seed {}] {}",
        r.name,
        r.mode,
        r.replicas,
        r.seed,
        if r.errors.is_empty() {
            validity_word(r.validity)
        } else {
            "ERROR"
        }
    );
    for e in &r.errors {
        let _ = writeln!(out, "   ERROR {e}");
    }
    if let Some(ns) = &r.namespace {
        let _ = writeln!(
            out,
            "   namespace {0}: users and keys {0}-…, dates {1} … {2} (--namespace {0} to run in it again)",
            ns.name, ns.first_date, ns.last_date
        );
    }
    if r.catches.is_empty() {
        let _ = writeln!(out, "   smoke test: catches no seeded bug");
    } else {
        let _ = writeln!(out, "   catches seeded bugs: {}", r.catches.join(", "));
    }
    let outcomes: Vec<String> = r
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(
        out,
        "   operations {} in {:.1} s ({})",
        r.operations,
        r.duration_ms / 1000.0,
        outcomes.join(", ")
    );
    let _ = writeln!(
        out,
        "   latency ms p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99, r.latency_ms.max
    );
    write_faults(&mut out, r);
    if let Some(verdict) = &r.verdict {
        write_verdict(&mut out, verdict, &r.mode);
    }
    if let Some(h) = &r.history_file {
        let _ = writeln!(out, "   history: {}", h.display());
    }
    out
}

/// Each fault of the run, when it acted and how many operations it caught,
/// with the last lines of any command it ran.
fn write_faults(out: &mut String, r: &ScenarioResult) {
    for (i, f) in r.faults.iter().enumerate() {
        let hit = r.ops_during_faults.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "   fault {:>6.0}-{:<6} ms {} {} {} ({hit} operations in flight{})",
            f.start_ms,
            f.end_ms.map_or("?".into(), |e| format!("{e:.0}")),
            f.kind,
            f.target,
            f.detail,
            if hit == 0 {
                ": WARNING, this fault tested nothing"
            } else {
                ""
            }
        );
        for c in &f.commands {
            let ended = if c.timed_out {
                "timed out".to_owned()
            } else if let Some(e) = &c.error {
                e.clone()
            } else {
                c.exit_code
                    .map_or("killed by a signal".into(), |x| format!("exit {x}"))
            };
            let _ = writeln!(out, "      {} `{}`: {ended}", c.step, c.command);
            for line in c
                .output
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                let _ = writeln!(out, "        | {line}");
            }
        }
    }
}

/// Each checker's verdict with its violations grouped, and what could not
/// be judged.
fn write_verdict(out: &mut String, verdict: &Verdict, mode: &str) {
    for c in &verdict.results {
        let _ = writeln!(
            out,
            "   {:<7} {}{}",
            validity_word(c.validity),
            c.checker,
            c.note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        for (message, count, ops) in grouped(&c.violations) {
            let first: Vec<usize> = ops.iter().take(8).copied().collect();
            let more = if ops.len() > first.len() { ", …" } else { "" };
            let _ = writeln!(
                out,
                "           - {count}× {message} [ops {}{more}]",
                first
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let unjudged: Vec<&str> = verdict
        .results
        .iter()
        .filter(|c| c.validity == Validity::Unknown)
        .map(|c| c.checker.as_str())
        .collect();
    if !unjudged.is_empty() {
        let _ = writeln!(
            out,
            "   NOT JUDGED: {} (see the notes above{})",
            unjudged.join(", "),
            if mode == "target" {
                "; in target mode, --database-url lets the store checkers decide"
            } else {
                ""
            }
        );
    }
}

/// Violations of one checker grouped by message, most frequent first:
/// every violation is counted, each group lists its operations.
fn grouped(violations: &[crate::checker::Violation]) -> Vec<(String, usize, Vec<usize>)> {
    let mut groups: Vec<(String, usize, Vec<usize>)> = Vec::new();
    for v in violations {
        match groups.iter_mut().find(|(m, _, _)| *m == v.message) {
            Some((_, count, ops)) => {
                *count += 1;
                ops.extend(&v.ops);
            }
            None => groups.push((v.message.clone(), 1, v.ops.clone())),
        }
    }
    groups.sort_by_key(|g| std::cmp::Reverse(g.1));
    groups
}

/// The one-line tally of a run.
pub fn tally(results: &[ScenarioResult]) -> String {
    let passed = results
        .iter()
        .filter(|r| r.skipped.is_none() && r.validity == Validity::Valid && r.errors.is_empty())
        .count();
    let failed = results
        .iter()
        .filter(|r| r.validity == Validity::Invalid || !r.errors.is_empty())
        .count();
    let skipped = results.iter().filter(|r| r.skipped.is_some()).count();
    let unknown = results.len() - passed - failed - skipped;
    format!("scenarios: {passed} passed, {failed} failed, {skipped} skipped, {unknown} unknown")
}

pub fn write_json(results: &[ScenarioResult], path: &Path) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(results)?)?;
    Ok(())
}

/// The frame of the time plots: time on x up to `t_max`, values up to `y_max`.
fn frame(t_max: f64, y_max: f64) -> Frame {
    Frame {
        width: 900.0,
        height: 220.0,
        pad: 40.0,
        x_max: t_max,
        y_max,
    }
}

fn colour(o: &Operation) -> &'static str {
    match o.outcome {
        Outcome::Ok => "#2e7d32",
        Outcome::Fail => "#ef6c00",
        Outcome::Info => "#c62828",
    }
}

fn fault_bands(h: &History, f: &Frame) -> String {
    let mut s = String::new();
    for fault in &h.faults {
        let end = fault
            .end_ms
            .unwrap_or(fault.start_ms)
            .max(fault.start_ms + f.x_max * 0.004);
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{}" width="{:.1}" height="{:.1}" fill="#1565c0" opacity="0.12"><title>{}</title></rect><text x="{:.1}" y="{:.1}" font-size="10" fill="#1565c0">{}</text>"##,
            f.x(fault.start_ms),
            f.pad,
            (f.x(end) - f.x(fault.start_ms)).max(1.5),
            f.height - 2.0 * f.pad,
            esc(&format!("{} {} {}", fault.kind, fault.target, fault.detail)),
            f.x(fault.start_ms) + 2.0,
            f.pad + 12.0,
            esc(&fault.kind)
        );
    }
    s
}

/// The axes of a time plot, with the time span and the y maximum.
fn axes(f: &Frame, y_label: &str) -> String {
    format!(
        r#"{}<text x="{r}" y="{t}" font-size="11" text-anchor="end">time {ts:.1} s</text><text x="4" y="{yt}" font-size="11">{yl} (max {ym:.0})</text>"#,
        f.axes(),
        r = f.right(),
        t = f.height - 10.0,
        yt = f.pad - 12.0,
        ts = f.x_max / 1000.0,
        yl = esc(y_label),
        ym = f.y_max
    )
}

fn latency_plot(h: &History) -> String {
    let t_max = h.ops.iter().map(|o| o.complete_ms).fold(1.0, f64::max);
    let l_max = h
        .ops
        .iter()
        .map(|o| o.complete_ms - o.invoke_ms)
        .fold(1.0, f64::max);
    let f = frame(t_max, l_max);
    let mut s = f.open("100%", "latency over time");
    s += &fault_bands(h, &f);
    s += &axes(&f, "latency ms");
    for o in &h.ops {
        let x = f.x(o.invoke_ms);
        let y = f.y(o.complete_ms - o.invoke_ms);
        let _ = write!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="2" fill="{}"><title>#{} {:?} {} {}</title></circle>"#,
            colour(o),
            o.index,
            o.kind,
            o.status.map_or("no answer".into(), |s| s.to_string()),
            esc(o.code.as_deref().unwrap_or(""))
        );
    }
    s + "</svg>"
}

fn throughput_plot(h: &History) -> String {
    let t_max = h.ops.iter().map(|o| o.complete_ms).fold(1.0, f64::max);
    // The smallest round bucket that keeps the plot under 60 bars.
    let bucket_ms = [100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0]
        .into_iter()
        .find(|b| t_max / b <= 60.0)
        .unwrap_or(30_000.0);
    let buckets = (t_max / bucket_ms).ceil().max(1.0) as usize;
    let mut counts = vec![0usize; buckets];
    for o in h.ops.iter().filter(|o| o.status.is_some()) {
        let b = ((o.complete_ms / bucket_ms) as usize).min(buckets - 1);
        counts[b] += 1;
    }
    let per_second = |c: usize| c as f64 * 1000.0 / bucket_ms;
    let c_max = counts.iter().map(|c| per_second(*c)).fold(1.0, f64::max);
    let f = frame(t_max, c_max);
    let mut s = f.open("100%", "throughput over time");
    s += &fault_bands(h, &f);
    s += &axes(&f, "answers per second");
    let bw = (f.width - 2.0 * f.pad) * (bucket_ms / t_max);
    for (i, c) in counts.iter().enumerate() {
        let rate = per_second(*c);
        let bh = f.span(rate);
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#455a64"><title>{:.1}-{:.1} s: {rate:.0}/s</title></rect>"##,
            f.pad + i as f64 * bw + 0.5,
            f.bottom() - bh,
            (bw - 1.0).max(0.5),
            i as f64 * bucket_ms / 1000.0,
            (i + 1) as f64 * bucket_ms / 1000.0
        );
    }
    s + "</svg>"
}

fn op_row(o: &Operation) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}–{:.0}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        o.index,
        esc(&o.process),
        o.kind,
        esc(&o.user),
        esc(&format!("{} {}", o.resource.as_deref().unwrap_or(""), o.date.as_deref().unwrap_or(""))),
        esc(o.key.as_deref().unwrap_or("(derived)")),
        o.invoke_ms,
        o.complete_ms,
        o.status.map_or_else(|| esc(o.error.as_deref().unwrap_or("no answer")), |s| s.to_string()),
        esc(o.code.as_deref().unwrap_or("")),
        esc(&o.body.as_deref().unwrap_or("").chars().take(160).collect::<String>())
    )
}

/// One self-contained HTML page for a run.
/// One scenario's section of the HTML report: its header, plots, checkers,
/// violations with their requests, and faults.
fn scenario_section(s: &mut String, r: &ScenarioResult, h: &History) {
    let word = if r.skipped.is_some() {
        "SKIPPED"
    } else {
        validity_word(r.validity)
    };
    let _ = write!(
        s,
        r#"<h2 id="{}">{} <span class="{word}">{word}</span></h2><p>{} mode, {} replica(s), seed {}, {} operations in {:.1} s; latency p50 {:.1} / p95 {:.1} / p99 {:.1} ms</p>"#,
        esc(&crate::runner::file_stem(&r.name)),
        esc(&r.name),
        r.mode,
        r.replicas,
        r.seed,
        r.operations,
        r.duration_ms / 1000.0,
        r.latency_ms.p50,
        r.latency_ms.p95,
        r.latency_ms.p99
    );
    if let Some(why) = &r.skipped {
        let _ = write!(s, "<p>Skipped: {}</p>", esc(why));
        return;
    }
    s.push_str("<h3>Latency over time</h3>");
    s.push_str(&latency_plot(h));
    s.push_str("<h3>Throughput over time</h3>");
    s.push_str(&throughput_plot(h));
    if let Some(v) = &r.verdict {
        s.push_str(
            "<h3>Checkers</h3><table><tr><th>checker</th><th>verdict</th><th>note</th></tr>",
        );
        for c in &v.results {
            let w = validity_word(c.validity);
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td class="{w}">{w}</td><td>{}</td></tr>"#,
                c.checker,
                esc(c.note.as_deref().unwrap_or(""))
            );
        }
        s.push_str("</table>");
        for c in v.results.iter().filter(|c| !c.violations.is_empty()) {
            let _ = write!(s, "<h3>Violations of {}</h3>", c.checker);
            for viol in &c.violations {
                let _ = write!(s, "<p><strong>{}</strong> rows: {}</p><table><tr><th>#</th><th>process</th><th>kind</th><th>user</th><th>slot</th><th>key</th><th>ms</th><th>status</th><th>code</th><th>body</th></tr>", esc(&viol.message), esc(&viol.rows.join(", ")));
                for i in &viol.ops {
                    if let Some(o) = h.op(*i) {
                        s.push_str(&op_row(o));
                    }
                }
                s.push_str("</table>");
            }
        }
    }
    if !h.faults.is_empty() {
        s.push_str("<h3>Faults</h3><table><tr><th>start ms</th><th>end ms</th><th>kind</th><th>target</th><th>detail</th></tr>");
        for f in &h.faults {
            let _ = write!(
                s,
                "<tr><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                f.start_ms,
                f.end_ms.map_or("-".into(), |e| format!("{e:.0}")),
                esc(&f.kind),
                esc(&f.target),
                esc(&f.detail)
            );
        }
        s.push_str("</table>");
    }
}

pub fn write_html(runs: &[(ScenarioResult, History)], path: &Path) -> Result<()> {
    let mut s = String::from(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>booking chaos report</title><style>
body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:1100px;color:#222}
h2{margin-top:2.5rem;border-top:1px solid #ccc;padding-top:1rem}
.PASS{color:#2e7d32}.FAIL{color:#c62828}.UNKNOWN,.SKIPPED{color:#8d6e63}
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ddd;padding:.2rem .4rem;text-align:left;vertical-align:top}
code{font-size:.75rem;word-break:break-all}.legend span{margin-right:1rem}
</style></head><body><h1>Booking chaos report</h1>"#,
    );
    let results: Vec<ScenarioResult> = runs.iter().map(|(r, _)| r.clone()).collect();
    let _ = write!(s, "<p>{}</p><table><tr><th>scenario</th><th>mode</th><th>verdict</th><th>operations</th><th>p99 ms</th></tr>", esc(&tally(&results)));
    for r in &results {
        let word = if r.skipped.is_some() {
            "SKIPPED"
        } else {
            validity_word(r.validity)
        };
        let _ = write!(
            s,
            r##"<tr><td><a href="#{}">{}</a></td><td>{}</td><td class="{word}">{word}</td><td>{}</td><td>{:.1}</td></tr>"##,
            esc(&crate::runner::file_stem(&r.name)),
            esc(&r.name),
            r.mode,
            r.operations,
            r.latency_ms.p99
        );
    }
    s += "</table>";
    s += r#"<p class="legend"><span style="color:#2e7d32">● ok (2xx)</span><span style="color:#ef6c00">● fail (definitive 4xx)</span><span style="color:#c62828">● info (5xx, timeout, lost connection)</span><span style="color:#1565c0">▮ fault window</span></p>"#;
    for (r, h) in runs {
        scenario_section(&mut s, r, h);
    }
    s += "</body></html>";
    std::fs::write(path, s)?;
    Ok(())
}
