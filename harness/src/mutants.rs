//! The kill matrix: every scenario against the correct service (it must
//! pass) and against every seeded bug of `booking::seeded::CATALOGUE` (some
//! scenario must fail, through a checker the catalogue names). A bug that no
//! scenario fails has survived: the harness cannot see it.
//!
//! Scenario files declare the bugs they catch (`catches = [...]`); those
//! pairs are what `cargo test` proves on every run, and a declared pair that
//! is not caught, or caught by the wrong checker, fails the matrix too.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use booking::seeded::{Entry, CATALOGUE};
use serde::Serialize;

use crate::checker::Validity;
use crate::runner::{self, RunOptions};
use crate::scenario::Scenario;

/// How one scenario fared against one bug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "detail")]
pub enum Cell {
    /// The run failed and one of the catalogue's checkers for the bug fired.
    Killed(Vec<String>),
    /// The run failed, but only through checkers the catalogue does not name.
    KilledByOther(Vec<String>),
    /// The run passed (or was unknown): the bug went unnoticed.
    Survived,
    /// The scenario could not run here, or the run itself broke.
    NotRun(String),
}

impl Cell {
    pub fn killed(&self) -> bool {
        matches!(self, Cell::Killed(_) | Cell::KilledByOther(_))
    }

    fn mark(&self) -> &'static str {
        match self {
            Cell::Killed(_) => "K",
            Cell::KilledByOther(_) => "k",
            Cell::Survived => ".",
            Cell::NotRun(_) => "-",
        }
    }
}

/// The `BOOKING_SEEDED_BUG` value for `entry`: the bug and those it needs.
pub fn switch(entry: &Entry) -> String {
    std::iter::once(entry.name)
        .chain(entry.needs.iter().copied())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `scenario` with `entry`'s bug switched on in every replica.
pub async fn run_cell(scenario: &Scenario, entry: &Entry, opts: &RunOptions) -> Cell {
    if let Some(why) = runner::cannot_run_here(scenario) {
        return Cell::NotRun(why);
    }
    let mut mutant = scenario.clone();
    mutant
        .service_env
        .insert("BOOKING_SEEDED_BUG".into(), switch(entry));
    mutant.name = format!("{}--{}", scenario.name, entry.name);
    let result = match runner::run(&mutant, opts).await {
        Ok((result, _)) => result,
        Err(e) => return Cell::NotRun(format!("{e:#}")),
    };
    if let Some(error) = result.errors.first() {
        return Cell::NotRun(error.clone());
    }
    let fired: Vec<String> = result
        .verdict
        .iter()
        .flat_map(|v| &v.results)
        .filter(|r| r.validity == Validity::Invalid)
        .map(|r| r.checker.clone())
        .collect();
    if fired.is_empty() {
        Cell::Survived
    } else if fired.iter().any(|c| entry.caught_by.contains(&c.as_str())) {
        Cell::Killed(fired)
    } else {
        Cell::KilledByOther(fired)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub bug: String,
    pub breaks: String,
    pub caught_by: Vec<String>,
    /// Scenario name → cell.
    pub cells: BTreeMap<String, Cell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// Scenario names, in file order.
    pub scenarios: Vec<String>,
    /// Scenario name → its file name.
    pub files: BTreeMap<String, String>,
    /// Scenario name → its run against the correct service.
    pub baseline: BTreeMap<String, Validity>,
    pub rows: Vec<Row>,
    /// Declared (scenario, bug) pairs that were not killed as declared.
    pub broken_promises: Vec<String>,
    pub seconds: f64,
}

impl Matrix {
    pub fn survivors(&self) -> Vec<&str> {
        self.rows
            .iter()
            .filter(|r| !r.cells.values().any(Cell::killed))
            .map(|r| r.bug.as_str())
            .collect()
    }

    /// Everything holds: baselines valid, no survivor, every promise kept.
    pub fn passed(&self) -> bool {
        self.baseline.values().all(|v| *v == Validity::Valid)
            && self.survivors().is_empty()
            && self.broken_promises.is_empty()
    }

    pub fn kill_rate(&self) -> (usize, usize) {
        let killed = self
            .rows
            .iter()
            .filter(|r| r.cells.values().any(Cell::killed))
            .count();
        (killed, self.rows.len())
    }

    /// The matrix as a markdown table: bugs down, scenarios across.
    pub fn markdown(&self, declared: &BTreeMap<String, Vec<String>>) -> String {
        use std::fmt::Write as _;
        let short = |name: &str| name.chars().take(2).collect::<String>();
        let mut out = String::new();
        let (killed, total) = self.kill_rate();
        let _ = writeln!(
            out,
            "Kill rate: **{killed}/{total}** seeded bugs caught by at least one scenario ({:.0} s).\n",
            self.seconds
        );
        let _ = writeln!(
            out,
            "`K` caught by the catalogue's checker, `k` caught by another checker only, `.` survived, `-` not run; `*` the scenario declares it in `catches`.\n"
        );
        let _ = write!(out, "| bug |");
        for s in &self.scenarios {
            let _ = write!(out, " {} |", short(&self.file_of(s)));
        }
        let _ = writeln!(out, " checkers that fired |");
        let _ = writeln!(out, "|---|{}---|", "---|".repeat(self.scenarios.len()));
        let _ = write!(out, "| *correct service* |");
        for s in &self.scenarios {
            let mark = match self.baseline.get(s) {
                Some(Validity::Valid) => "pass",
                Some(Validity::Unknown) => "?",
                Some(Validity::Invalid) => "FAIL",
                None => "-",
            };
            let _ = write!(out, " {mark} |");
        }
        let _ = writeln!(out, " |");
        for row in &self.rows {
            let _ = write!(out, "| `{}` |", row.bug);
            let mut fired: BTreeMap<&str, usize> = BTreeMap::new();
            for s in &self.scenarios {
                let cell = row.cells.get(s);
                let star = declared.get(s).is_some_and(|d| d.contains(&row.bug));
                let _ = write!(
                    out,
                    " {}{} |",
                    cell.map_or("-", Cell::mark),
                    if star { "*" } else { "" }
                );
                if let Some(Cell::Killed(c) | Cell::KilledByOther(c)) = cell {
                    for checker in c {
                        *fired.entry(checker).or_default() += 1;
                    }
                }
            }
            let fired: Vec<String> = fired.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
            let _ = writeln!(out, " {} |", fired.join(", "));
        }
        let _ = writeln!(out, "\nScenarios: {}", self.legend());
        let _ = writeln!(
            out,
            "\n| bug | what it breaks | must be caught by |\n|---|---|---|"
        );
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                row.bug,
                row.breaks,
                row.caught_by.join(", ")
            );
        }
        if !self.broken_promises.is_empty() {
            let _ = writeln!(out, "\nBroken promises:");
            for p in &self.broken_promises {
                let _ = writeln!(out, "- {p}");
            }
        }
        out
    }

    fn file_of(&self, scenario: &str) -> String {
        self.files
            .get(scenario)
            .cloned()
            .unwrap_or_else(|| scenario.to_owned())
    }

    fn legend(&self) -> String {
        self.scenarios
            .iter()
            .map(|s| {
                format!(
                    "`{}` {s}",
                    self.file_of(s).chars().take(2).collect::<String>()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Options of a matrix run.
#[derive(Debug, Clone, Default)]
pub struct MatrixOptions {
    /// Only these bugs (default: the whole catalogue).
    pub bugs: Vec<String>,
    /// Only the pairs that scenario files declare.
    pub declared_only: bool,
}

/// Runs the matrix, printing progress to stderr.
pub async fn run_matrix(
    scenarios: &[Scenario],
    opts: &RunOptions,
    matrix: &MatrixOptions,
) -> Result<Matrix> {
    let started = Instant::now();
    let entries: Vec<&Entry> = CATALOGUE
        .iter()
        .filter(|e| matrix.bugs.is_empty() || matrix.bugs.iter().any(|b| b == e.name))
        .collect();
    for b in &matrix.bugs {
        anyhow::ensure!(
            booking::seeded::entry(b).is_some(),
            "unknown seeded bug {b:?}"
        );
    }
    let mut baseline = BTreeMap::new();
    for s in scenarios {
        let validity = match runner::run(s, opts).await {
            Ok((r, _)) if r.skipped.is_some() || !r.errors.is_empty() => Validity::Unknown,
            Ok((r, _)) => r.validity,
            Err(_) => Validity::Unknown,
        };
        eprintln!("correct service × {}: {validity:?}", s.name);
        baseline.insert(s.name.clone(), validity);
    }
    let mut rows = Vec::new();
    let mut broken_promises = Vec::new();
    for entry in entries {
        let mut cells = BTreeMap::new();
        for s in scenarios {
            let declared = s.catches.iter().any(|c| c == entry.name);
            if matrix.declared_only && !declared {
                continue;
            }
            let cell = run_cell(s, entry, opts).await;
            eprintln!("{} × {}: {}", entry.name, s.name, cell.mark());
            if declared && !matches!(cell, Cell::Killed(_)) {
                broken_promises.push(format!(
                    "{} declares it catches {} but the run gave {cell:?}",
                    s.name, entry.name
                ));
            }
            cells.insert(s.name.clone(), cell);
        }
        rows.push(Row {
            bug: entry.name.into(),
            breaks: entry.breaks.into(),
            caught_by: entry.caught_by.iter().map(|c| c.to_string()).collect(),
            cells,
        });
    }
    Ok(Matrix {
        scenarios: scenarios.iter().map(|s| s.name.clone()).collect(),
        files: scenarios
            .iter()
            .map(|s| {
                let file = s
                    .path
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| s.name.clone());
                (s.name.clone(), file)
            })
            .collect(),
        baseline,
        rows,
        broken_promises,
        seconds: started.elapsed().as_secs_f64(),
    })
}
