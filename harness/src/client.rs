//! The client: performs one intent over HTTP with a realistic retry policy
//! and records every attempt in the history.
//!
//! Retries reuse the intent's key after a timeout, a lost connection, a 5xx,
//! `IDEMPOTENCY_IN_PROGRESS` or `RESOURCE_LOCKED`, with exponential backoff
//! and jitter, and move to the next replica like a load balancer would.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::json;

use crate::history::{OpKind, Operation, Outcome};

/// Collects operations from all clients.
#[derive(Default)]
pub struct Recorder {
    ops: Mutex<Vec<Operation>>,
}

impl Recorder {
    pub fn record(&self, mut op: Operation) {
        if let Ok(mut ops) = self.ops.lock() {
            op.index = ops.len();
            ops.push(op);
        }
    }

    /// The operations recorded so far, left in place.
    pub fn snapshot(&self) -> Vec<Operation> {
        self.ops.lock().map(|o| o.clone()).unwrap_or_default()
    }

    pub fn take(&self) -> Vec<Operation> {
        self.ops
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }
}

/// One request to make.
#[derive(Debug, Clone)]
pub struct Call {
    pub kind: OpKind,
    pub user: String,
    pub resource: Option<String>,
    pub date: Option<String>,
    pub key: Option<String>,
    pub booking_id: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    pub process: String,
    http: reqwest::Client,
    urls: Arc<Vec<String>>,
    recorder: Arc<Recorder>,
    started: Instant,
    max_attempts: u32,
}

impl Client {
    pub fn new(
        process: String,
        urls: Arc<Vec<String>>,
        recorder: Arc<Recorder>,
        started: Instant,
        timeout: Duration,
        max_attempts: u32,
    ) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Client {
            process,
            http,
            urls,
            recorder,
            started,
            max_attempts,
        })
    }

    fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Performs `call` with retries; returns the last recorded operation.
    pub async fn perform(&self, intent: u64, call: &Call, first_replica: usize) -> Operation {
        let mut attempt = 1;
        loop {
            let replica = (first_replica + attempt as usize - 1) % self.urls.len().max(1);
            let op = self.attempt(intent, attempt, call, replica).await;
            let retry = op.outcome == Outcome::Info
                || op.has_code("IDEMPOTENCY_IN_PROGRESS")
                || op.has_code("RESOURCE_LOCKED");
            if !retry || attempt >= self.max_attempts {
                return op;
            }
            let backoff = 50u64.saturating_mul(1 << attempt.min(5)).min(1000);
            let jitter = rand::thread_rng().gen_range(0..=backoff / 2);
            tokio::time::sleep(Duration::from_millis(backoff + jitter)).await;
            attempt += 1;
        }
    }

    /// One HTTP attempt, recorded.
    pub async fn attempt(
        &self,
        intent: u64,
        attempt: u32,
        call: &Call,
        replica: usize,
    ) -> Operation {
        let base = &self.urls[replica % self.urls.len()];
        let request = match call.kind {
            OpKind::Create => {
                let mut r = self.http.post(format!("{base}/api/bookings")).json(&json!({
                    "userId": call.user, "resourceId": call.resource, "date": call.date,
                }));
                if let Some(key) = &call.key {
                    r = r.header("Idempotency-Key", key);
                }
                r
            }
            OpKind::Cancel => self
                .http
                .patch(format!(
                    "{base}/api/bookings/{}/cancel",
                    call.booking_id.as_deref().unwrap_or("")
                ))
                .json(&json!({ "userId": call.user })),
            OpKind::List => self
                .http
                .get(format!("{base}/api/bookings/{}?status=all", call.user)),
            OpKind::Availability => self.http.get(format!(
                "{base}/api/resources/available?date={}",
                call.date.as_deref().unwrap_or("")
            )),
        };
        let invoke_ms = self.now_ms();
        let mut op = Operation {
            index: 0,
            process: self.process.clone(),
            intent,
            attempt,
            kind: call.kind,
            user: call.user.clone(),
            resource: call.resource.clone(),
            date: call.date.clone(),
            key: call.key.clone(),
            booking_id: call.booking_id.clone(),
            replica: Some(replica),
            invoke_ms,
            complete_ms: invoke_ms,
            outcome: Outcome::Info,
            status: None,
            code: None,
            body: None,
            replayed: false,
            error: None,
        };
        match request.send().await {
            Err(e) => op.error = Some(describe(&e)),
            Ok(response) => {
                let status = response.status().as_u16();
                op.replayed = response.headers().contains_key("idempotent-replayed");
                let retry_after = response.headers().contains_key("retry-after");
                match response.text().await {
                    Err(e) => op.error = Some(describe(&e)),
                    Ok(body) => {
                        op.status = Some(status);
                        op.code = serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["code"].as_str().map(str::to_owned));
                        op.outcome = match status {
                            200..=299 => Outcome::Ok,
                            500..=599 => Outcome::Info,
                            _ => Outcome::Fail,
                        };
                        let retryable = matches!(
                            op.code.as_deref(),
                            Some(
                                "IDEMPOTENCY_IN_PROGRESS"
                                    | "RESOURCE_LOCKED"
                                    | "DEPENDENCY_UNAVAILABLE"
                            )
                        );
                        if retryable && !retry_after {
                            op.error = Some("no Retry-After".into());
                        }
                        op.body = Some(body);
                    }
                }
            }
        }
        op.complete_ms = self.now_ms();
        self.recorder.record(op.clone());
        op
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or reset".into()
    } else {
        "connection lost".into()
    }
}
