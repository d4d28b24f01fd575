//! loom adapters shared by the loom suites: the coordinator core on loom's
//! `Mutex`, a model clock, and a counting model runner.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use booking::coordinator::core::{Clock, CoordinatorCore, Guarded, Tables};
use booking::coordinator::CompletedRecord;
use booking::response::StoredResponse;
use loom::sync::atomic::AtomicU64;
use loom::sync::{Arc, Mutex};

pub struct LoomMutex<T>(Mutex<T>);

impl<T: Send> Guarded<T> for LoomMutex<T> {
    fn new(value: T) -> Self {
        LoomMutex(Mutex::new(value))
    }
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

/// A clock that only moves when a model thread moves it.
#[derive(Clone)]
pub struct ModelClock(Arc<AtomicU64>);

impl Clock for ModelClock {
    fn now_ms(&self) -> u64 {
        self.0.load(SeqCst)
    }
}

impl ModelClock {
    pub fn new() -> Self {
        ModelClock(Arc::new(AtomicU64::new(0)))
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, SeqCst);
    }
}

pub type Core = CoordinatorCore<LoomMutex<Tables>, ModelClock>;

pub const LEASE: Duration = Duration::from_millis(30);
pub const LOCK_TTL: Duration = Duration::from_millis(10);
pub const RETENTION: Duration = Duration::from_secs(1000);
/// One step of the expiry thread: past every lease and lock TTL at once.
pub const EXPIRE: u64 = 31;

pub fn model(name: &str, bound: usize, f: impl Fn() + Sync + Send + 'static) -> usize {
    static ITERATIONS: AtomicUsize = AtomicUsize::new(0);
    let before = ITERATIONS.load(SeqCst);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    builder.check(move || {
        ITERATIONS.fetch_add(1, SeqCst);
        f()
    });
    let explored = ITERATIONS.load(SeqCst) - before;
    println!("loom: {name}: {explored} interleavings explored (preemption bound {bound})");
    explored
}

pub fn record(body: &str) -> CompletedRecord {
    CompletedRecord {
        fingerprint: "fp".into(),
        response: StoredResponse {
            status: 201,
            body: body.into(),
        },
        expires_at: None,
    }
}
