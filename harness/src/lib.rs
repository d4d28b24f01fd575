//! The booking service's test and chaos harness.
//!
//! Jepsen's seams, each behind its own type; only the runner touches the
//! generator and the clients together:
//!
//! ```text
//! bench      load runs against the stack and its parts' own limits
//! scenario   a TOML file: mode, workload, fault timeline, checkers
//! generator  what each virtual client intends, from the seed
//! session    a client's decisions as the run goes: next call, cancel target, replays, think time
//! seed       the seed streams every random draw of a run comes from (think time, backoff, jitter)
//! client     one intent over HTTP with retries; every attempt recorded
//! service_api  readiness, auth mode, dev tokens and the failpoint admin: one typed client
//! nemesis    the fault timeline applied to the stack (proxy, process, failpoint faults)
//! history    operations (ok / fail / info), faults and the store's final state, as JSON lines
//! checker    one invariant each; verdicts compose (invalid > unknown > valid)
//! runner     starts the stack, drives clients and nemesis, settles undecided intents, probes recovery, checks
//! mutants    the kill matrix: every scenario against every seeded bug of the service
//! report     console summary, results.json, report.html
//! html       the HTML escape and SVG plots shared by report and bench
//! target     a deployment the harness did not start: URLs, headers, remote policy, store
//! identity   a bearer token per user on a deployment that authenticates: command, file or dev
//! profile    the conventions of the API under test (this service's, the Node original's, a file's)
//! stack      private Redis, PostgreSQL (or SQLite) and N replicas behind fault proxies: processes only
//! store_view the store read directly (final state, the bench's invariants and seeding)
//! proxy      the TCP fault proxy
//! infra      the booking-infra crate (harness/infra): private servers, also for app/ tests
//! ```

pub mod bench;
pub mod calendar;
pub mod chaos_mesh;
pub mod checker;
pub mod client;
pub mod explore;
pub mod generator;
pub mod history;
pub mod html;
pub mod identity;
pub mod mutants;
pub mod nemesis;
pub mod preflight;
pub mod profile;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod seed;
pub mod service_api;
pub mod session;
pub mod stack;
pub mod store_view;
pub mod target;

/// The servers a run needs (the `booking-infra` crate, shared with app/ tests).
pub use booking_infra as infra;
