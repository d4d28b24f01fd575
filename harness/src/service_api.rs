//! The service's endpoints besides the booking calls (those are
//! [`crate::client::Call::request`]): readiness, the auth mode, dev tokens,
//! and the failpoint admin of a replica built with `failpoints`. One place
//! knows their paths, bodies and answers; the preflight, the stack and the
//! nemesis ask through it.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

/// How long one admin or health request may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One replica (or deployment) at `base`.
pub struct ServiceApi<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
}

impl<'a> ServiceApi<'a> {
    pub fn new(http: &'a reqwest::Client, base: &'a str) -> ServiceApi<'a> {
        ServiceApi { http, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /api/health/ready` answered 2xx: Redis and the store reachable.
    pub async fn ready(&self) -> bool {
        self.http
            .get(self.url("/api/health/ready"))
            .timeout(TIMEOUT)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// The `mode` of `GET /api/auth/config` (`none`, `dev`, `jwt`), or
    /// `None` when the target has no such route.
    pub async fn auth_mode(&self, timeout: Duration) -> Option<String> {
        let answer = self
            .http
            .get(self.url("/api/auth/config"))
            .timeout(timeout)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())?;
        let config: Value = answer.json().await.ok()?;
        config["mode"].as_str().map(str::to_owned)
    }

    /// A token for `user` from `POST /api/auth/dev-token` (`--auth dev`).
    pub async fn dev_token(&self, user: &str, timeout: Duration) -> Result<String> {
        let answer: Value = self
            .http
            .post(self.url("/api/auth/dev-token"))
            .json(&serde_json::json!({ "userId": user }))
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("minting a dev token for {user}"))?
            .json()
            .await
            .with_context(|| format!("the dev token for {user}"))?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no dev token for {user}: {answer}"))
    }

    /// `PUT /admin/failpoints/{name}` with `action`; the error says why the
    /// replica refused (or could not be reached).
    pub async fn set_failpoint(&self, name: &str, action: &str) -> Result<(), String> {
        match self
            .http
            .put(self.url(&format!("/admin/failpoints/{name}")))
            .body(action.to_owned())
            .timeout(TIMEOUT)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!(
                "refused failpoint {name}={action}: {} (is it built with --features failpoints?)",
                response.status()
            )),
            Err(e) => Err(format!("setting failpoint {name}: {e}")),
        }
    }

    /// `DELETE /admin/failpoints/{name}`, best effort (a replica that is
    /// down has lost its failpoints anyway).
    pub async fn clear_failpoint(&self, name: &str) {
        let _ = self
            .http
            .delete(self.url(&format!("/admin/failpoints/{name}")))
            .timeout(TIMEOUT)
            .send()
            .await;
    }

    /// How often failpoint `name` fired since the replica started.
    pub async fn failpoint_fired(&self, name: &str) -> Option<u64> {
        let v: Value = self
            .http
            .get(self.url("/admin/failpoints"))
            .timeout(TIMEOUT)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        v["fired"][name].as_u64()
    }
}
