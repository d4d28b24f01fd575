//! The client: performs one intent over HTTP with a realistic retry policy
//! and records every attempt in the history.
//!
//! Retries reuse the intent's key after a timeout, a lost connection, a 5xx,
//! `IDEMPOTENCY_IN_PROGRESS` or `RESOURCE_LOCKED`, with exponential backoff
//! and jitter, and move to the next replica like a load balancer would.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::history::{OpKind, Operation, Outcome};
use crate::profile::ApiProfile;

/// One way in to the service: a base URL (through a fault proxy).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Scheme, host and base path; request paths are appended.
    pub base: String,
    /// For https through a fault proxy: the host name is resolved to the
    /// proxy, so TLS still checks the real name.
    pub resolve: Option<(String, std::net::SocketAddr)>,
    /// The `Host` the deployment expects (its own authority, not the proxy's).
    pub host_header: Option<String>,
}

/// How clients reach the service and read its answers.
#[derive(Debug, Clone, Default)]
pub struct Api {
    pub endpoints: Vec<Endpoint>,
    /// Sent with every request (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    pub profile: ApiProfile,
    /// Bearer tokens per user, for a target that authenticates users (the
    /// preflight gets them before any fault and a refresher swaps in new
    /// ones beside the run, so requests never wait on either).
    pub user_tokens: crate::identity::Tokens,
}

impl Api {
    fn token_for(&self, user: &str) -> Option<String> {
        self.user_tokens.lock().ok()?.get(user).cloned()
    }
}

impl Api {
    /// Plain base URLs of replicas the harness started.
    pub fn local(urls: Vec<String>) -> Api {
        Api {
            endpoints: urls
                .into_iter()
                .map(|base| Endpoint {
                    base,
                    resolve: None,
                    host_header: None,
                })
                .collect(),
            ..Api::default()
        }
    }

    pub fn http_client(&self, endpoint: &Endpoint) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
                reqwest::header::HeaderValue::from_str(value)?,
            );
        }
        if let Some(host) = &endpoint.host_header {
            headers.insert(
                reqwest::header::HOST,
                reqwest::header::HeaderValue::from_str(host)?,
            );
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .pool_max_idle_per_host(4);
        if !endpoint.base.starts_with("https:") {
            // Loading the system's root certificates takes milliseconds per
            // client: enough to stagger clients that must start together.
            builder = builder.tls_built_in_root_certs(false);
        }
        if let Some((host, addr)) = &endpoint.resolve {
            builder = builder.resolve(host, *addr);
        }
        Ok(builder.build()?)
    }
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub kind: OpKind,
    pub user: String,
    pub resource: Option<String>,
    pub date: Option<String>,
    pub key: Option<String>,
    pub booking_id: Option<String>,
}

impl Call {
    pub fn create(user: &str, resource: &str, date: &str, key: Option<String>) -> Call {
        Call {
            kind: OpKind::Create,
            user: user.to_owned(),
            resource: Some(resource.to_owned()),
            date: Some(date.to_owned()),
            key,
            booking_id: None,
        }
    }

    /// `user` cancels booking `id` (not necessarily theirs).
    pub fn cancel(user: &str, id: &str) -> Call {
        Call {
            kind: OpKind::Cancel,
            user: user.to_owned(),
            resource: None,
            date: None,
            key: None,
            booking_id: Some(id.to_owned()),
        }
    }

    pub fn list(user: &str) -> Call {
        Call {
            kind: OpKind::List,
            user: user.to_owned(),
            resource: None,
            date: None,
            key: None,
            booking_id: None,
        }
    }

    /// The HTTP request of this call against the service at `base`: the
    /// one place that knows the booking API's paths and bodies.
    pub fn request(&self, http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
        match self.kind {
            OpKind::Create => {
                let body = json!({
                    "userId": self.user, "resourceId": self.resource, "date": self.date,
                });
                let r = http.post(format!("{base}/api/bookings")).json(&body);
                match &self.key {
                    Some(key) => r.header("Idempotency-Key", key),
                    None => r,
                }
            }
            OpKind::Cancel => http
                .patch(format!(
                    "{base}/api/bookings/{}/cancel",
                    self.booking_id.as_deref().unwrap_or("")
                ))
                .json(&json!({ "userId": self.user })),
            OpKind::List => http.get(format!("{base}/api/bookings/{}?status=all", self.user)),
            OpKind::Availability => http.get(format!(
                "{base}/api/resources/available?date={}",
                self.date.as_deref().unwrap_or("")
            )),
        }
    }

    pub fn availability(date: &str) -> Call {
        Call {
            kind: OpKind::Availability,
            user: String::new(),
            resource: None,
            date: Some(date.to_owned()),
            key: None,
            booking_id: None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    pub process: String,
    /// One HTTP client per endpoint, with the endpoint's base URL.
    http: Vec<(reqwest::Client, String)>,
    api: Arc<Api>,
    recorder: Arc<Recorder>,
    started: Instant,
    timeout: Duration,
    max_attempts: u32,
    /// The run's seed: retry backoff jitter is drawn from it.
    seed: u64,
}

impl Client {
    pub fn new(
        process: String,
        api: Arc<Api>,
        recorder: Arc<Recorder>,
        started: Instant,
        timeout: Duration,
        max_attempts: u32,
    ) -> anyhow::Result<Client> {
        let http = api
            .endpoints
            .iter()
            .map(|e| Ok((api.http_client(e)?, e.base.clone())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!http.is_empty(), "no endpoint to send requests to");
        Ok(Client {
            process,
            http,
            api,
            recorder,
            started,
            timeout,
            max_attempts,
            seed: 0,
        })
    }

    /// Draws backoff jitter from `seed` (the scenario's).
    pub fn with_seed(mut self, seed: u64) -> Client {
        self.seed = seed;
        self
    }

    fn backoff(&self, intent: u64, attempt: u32, first_replica: usize) -> Duration {
        crate::seed::backoff(self.seed, intent, attempt, first_replica)
    }

    fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// How many replicas (or target URLs) the client sends to.
    pub fn replicas(&self) -> usize {
        self.http.len()
    }

    /// Performs `call` with retries; returns the last recorded operation.
    pub async fn perform(&self, intent: u64, call: &Call, first_replica: usize) -> Operation {
        let mut attempt = 1;
        loop {
            let replica = (first_replica + attempt as usize - 1) % self.http.len();
            let op = self.attempt(intent, attempt, call, replica).await;
            let retry = op.outcome == Outcome::Info || op.says_try_again();
            if !retry || attempt >= self.max_attempts {
                return op;
            }
            tokio::time::sleep(self.backoff(intent, attempt, first_replica)).await;
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
        let (http, base) = &self.http[replica % self.http.len()];
        let request = call.request(http, base).timeout(self.timeout);
        let request = match self.api.token_for(&call.user) {
            Some(token) => request.bearer_auth(token),
            None => request,
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
            canonical: None,
            replayed: false,
            retry_after: false,
            error: None,
        };
        match request.send().await {
            Err(e) => op.error = Some(describe(&e)),
            Ok(response) => {
                let status = response.status().as_u16();
                let profile = &self.api.profile;
                op.replayed = !profile.replay_header.is_empty()
                    && response.headers().contains_key(&profile.replay_header);
                op.retry_after = response.headers().contains_key("retry-after");
                match response.text().await {
                    Err(e) => op.error = Some(describe(&e)),
                    Ok(body) => {
                        op.status = Some(status);
                        op.code = serde_json::from_str::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| profile.code_of(&v));
                        op.outcome = match status {
                            200..=299 => Outcome::Ok,
                            500..=599 => Outcome::Info,
                            _ => Outcome::Fail,
                        };
                        op.canonical = profile.canonical_body(call.kind, status, &body);
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
