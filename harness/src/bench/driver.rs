//! The closed-loop HTTP load generator: N workers, each sending its next
//! request when the previous answer arrives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Measurement;
use crate::runner::Latency;

/// The closed-loop generator: `clients` workers for `duration`, each
/// sending `next(worker, i)` and waiting for the answer.
pub(super) async fn drive<F>(
    name: &str,
    urls: &[String],
    clients: usize,
    duration: Duration,
    next: F,
) -> (Measurement, Vec<String>)
where
    F: Fn(usize, u64) -> Request + Send + Sync + 'static,
{
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients.max(1))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let next = Arc::new(next);
    let created = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for w in 0..clients {
        let (http, next, created, errors) =
            (http.clone(), next.clone(), created.clone(), errors.clone());
        let base = urls[w % urls.len()].clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let req = next(w, i);
                i += 1;
                let t = Instant::now();
                let answer = send(&http, &base, &req).await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                match answer {
                    Some((status, id)) if status < 500 => {
                        if let Some(id) = id.filter(|_| status == 201) {
                            if let Ok(mut c) = created.lock() {
                                c.push(id);
                            }
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = all.len() as u64;
    let m = Measurement {
        name: name.into(),
        clients,
        replicas: urls.len(),
        requests,
        errors: errors.load(Ordering::Relaxed),
        per_second: requests as f64 / elapsed,
        latency_ms: Latency::of(all),
        service_cpu_us: None,
        service_kernel_cpu_us: None,
        live_keys: None,
        runs: 1,
    };
    let ids = created.lock().map(|c| c.clone()).unwrap_or_default();
    (m, ids)
}

/// One request of a load.
#[derive(Debug, Clone)]
pub enum Request {
    /// A plain read of a path (`/health`, a list, availability).
    Get(String),
    /// A call of the booking API, built as the harness's clients build it.
    Call(crate::client::Call),
}

/// Sends one request: its status and the id of the booking it answered with.
pub(super) async fn send(
    http: &reqwest::Client,
    base: &str,
    req: &Request,
) -> Option<(u16, Option<String>)> {
    let response = match req {
        Request::Get(path) => http.get(format!("{base}{path}")).send().await,
        Request::Call(call) => call.request(http, base).send().await,
    }
    .ok()?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    Some((status, body["booking"]["id"].as_str().map(str::to_owned)))
}
