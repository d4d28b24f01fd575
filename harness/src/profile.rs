//! API profiles: the conventions of the booking API under test.
//!
//! The checkers speak this service's conventions (a problem document with
//! `code` and `status`, the booking under `booking.id`, `Retry-After` on
//! every "try again"). Another booking API (the original Node service, a
//! rewrite another team runs) answers the same questions in other words. A
//! profile says which words: the client records the target's raw answer and,
//! when the words differ, a canonical view of it that the checkers read; the
//! contract checker judges the raw answer against the profile. So a target
//! that speaks another dialect is judged on what it does, not buried under
//! one shape complaint per answer.
//!
//! Built in: `booking` (this service) and `node` (the original Node
//! service). A TOML file with the fields of [`ApiProfile`] describes any
//! other (see docs/SCENARIOS.md).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiProfile {
    pub name: String,
    /// JSON pointer of the error code in an error body.
    pub error_code: String,
    /// JSON pointer of a field that repeats the HTTP status in error bodies
    /// (empty: none is promised).
    pub error_status: String,
    /// JSON pointer of a human-readable message in error bodies (empty: none
    /// is promised).
    pub error_message: String,
    /// JSON pointer of the booking in create and cancel answers.
    pub booking: String,
    /// Name of the booking's id field in a create answer.
    pub created_id: String,
    /// Name of the booking's id field in a cancel answer.
    pub cancelled_id: String,
    /// Whether every "try again" answer (in progress, locked, unavailable)
    /// carries `Retry-After`.
    pub retry_after: bool,
    /// The header that marks a replayed answer (empty: none).
    pub replay_header: String,
    /// The target's error codes that mean one of this service's codes
    /// (target code → canonical code); codes not listed are kept as they are.
    pub codes: BTreeMap<String, String>,
    /// The answers the API documents, as `"<kind> <status> [CODE]"` with
    /// kind `create`, `cancel`, `list`, `availability` or `*` (any), and the
    /// code canonical. Anything else is an undocumented answer.
    pub answers: Vec<String>,
    /// Liveness path (must answer 2xx).
    pub health_path: String,
    /// Catalogue path (a JSON body listing the resources).
    pub catalogue_path: String,
}

/// The operations of the API, as histories record them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Create,
    Cancel,
    List,
    /// `GET /api/resources/available?date=`.
    Availability,
}

/// Client errors that decide nothing: the same request may succeed later
/// (a key or slot busy, a rate or key quota exceeded). Nothing was written.
pub const TRY_AGAIN: [&str; 4] = [
    "IDEMPOTENCY_IN_PROGRESS",
    "RESOURCE_LOCKED",
    "RATE_LIMITED",
    "QUOTA_EXCEEDED",
];

impl Default for ApiProfile {
    fn default() -> Self {
        ApiProfile::booking()
    }
}

impl ApiProfile {
    /// This service.
    pub fn booking() -> ApiProfile {
        ApiProfile {
            name: "booking".into(),
            error_code: "/code".into(),
            error_status: "/status".into(),
            error_message: String::new(),
            booking: "/booking".into(),
            created_id: "id".into(),
            cancelled_id: "id".into(),
            retry_after: true,
            replay_header: "idempotent-replayed".into(),
            codes: BTreeMap::new(),
            answers: [
                "* 400 VALIDATION_FAILED",
                "* 401 UNAUTHENTICATED",
                "* 403 FORBIDDEN",
                "* 405 METHOD_NOT_ALLOWED",
                "* 408 REQUEST_TIMEOUT",
                "* 413 PAYLOAD_TOO_LARGE",
                "* 414 URI_TOO_LONG",
                "* 429 RATE_LIMITED",
                "* 431 HEADERS_TOO_LARGE",
                "* 500 INTERNAL",
                "* 503 DEPENDENCY_UNAVAILABLE",
                "create 201",
                "create 400 IDEMPOTENCY_KEY_INVALID",
                "create 404 UNKNOWN_RESOURCE",
                "create 409 IDEMPOTENCY_IN_PROGRESS",
                "create 409 RESOURCE_LOCKED",
                "create 409 ALREADY_BOOKED",
                "create 422 IDEMPOTENCY_KEY_REUSED",
                "create 429 QUOTA_EXCEEDED",
                "cancel 200",
                "cancel 404 NOT_FOUND",
                "list 200",
                "availability 200",
            ]
            .map(String::from)
            .to_vec(),
            health_path: "/api/health".into(),
            catalogue_path: "/api/resources".into(),
        }
    }

    /// The original Node service: `{success, error, code}` error bodies
    /// without a status field or `Retry-After`, no replay header, and the
    /// cancelled booking under its MongoDB name `_id`.
    pub fn node() -> ApiProfile {
        ApiProfile {
            name: "node".into(),
            error_status: String::new(),
            error_message: "/error".into(),
            cancelled_id: "_id".into(),
            retry_after: false,
            replay_header: String::new(),
            codes: [("VALIDATION_ERROR", "VALIDATION_FAILED")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .into(),
            // This service's answers, less those the original never gave
            // (it had no authentication, limits, key validation or 405/408).
            answers: ApiProfile::booking()
                .answers
                .into_iter()
                .filter(|a| {
                    ![
                        "401",
                        "403",
                        "405",
                        "408",
                        "413",
                        "414",
                        "429",
                        "431",
                        "IDEMPOTENCY_KEY_INVALID",
                    ]
                    .iter()
                    .any(|x| a.contains(x))
                })
                .collect(),
            ..ApiProfile::booking()
        }
    }

    /// `booking`, `node`, or the path of a profile file.
    pub fn named(name: &str) -> Result<ApiProfile> {
        match name {
            "booking" => Ok(ApiProfile::booking()),
            "node" => Ok(ApiProfile::node()),
            path if path.ends_with(".toml") => {
                let path = Path::new(path);
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading API profile {}", path.display()))?;
                let profile: ApiProfile = toml::from_str(&text)
                    .with_context(|| format!("in API profile {}", path.display()))?;
                profile.validate()?;
                Ok(profile)
            }
            other => bail!(
                "unknown API profile {other:?}: use booking, node or the path of a .toml profile"
            ),
        }
    }

    fn validate(&self) -> Result<()> {
        for pointer in [&self.error_code, &self.booking] {
            if !pointer.starts_with('/') {
                bail!("{pointer:?} is not a JSON pointer (it starts with /)");
            }
        }
        for answer in &self.answers {
            parse_answer(answer)?;
        }
        Ok(())
    }

    /// The canonical form of a code the target sent.
    pub fn canonical_code(&self, code: &str) -> String {
        self.codes
            .get(code)
            .cloned()
            .unwrap_or_else(|| code.to_owned())
    }

    /// The error code of an answer body, canonical.
    pub fn code_of(&self, body: &Value) -> Option<String> {
        body.pointer(&self.error_code)
            .and_then(Value::as_str)
            .map(|c| self.canonical_code(c))
    }

    fn id_field(&self, kind: OpKind) -> &str {
        if kind == OpKind::Cancel {
            &self.cancelled_id
        } else {
            &self.created_id
        }
    }

    /// Whether the API documents this answer.
    pub fn documents(&self, kind: OpKind, status: u16, code: Option<&str>) -> bool {
        self.answers.iter().any(|a| {
            parse_answer(a).is_ok_and(|(k, s, c)| {
                (k.is_none() || k == Some(kind)) && s == status && c.as_deref() == code
            })
        })
    }

    /// What is wrong with the shape of an answer, by this profile.
    pub fn shape_problem(
        &self,
        kind: OpKind,
        status: u16,
        body: &str,
        retry_after: bool,
    ) -> Option<String> {
        let Ok(json) = serde_json::from_str::<Value>(body) else {
            return Some(format!("{status} with a body that is not JSON"));
        };
        if status < 300 {
            if json["success"] != true {
                return Some("2xx without success: true".into());
            }
            if matches!(kind, OpKind::Create | OpKind::Cancel) {
                let id = json
                    .pointer(&self.booking)
                    .and_then(|b| b.get(self.id_field(kind)));
                if !id.is_some_and(Value::is_string) {
                    return Some(format!(
                        "2xx without a booking id at {}/{}",
                        self.booking,
                        self.id_field(kind)
                    ));
                }
            }
            return None;
        }
        if json["success"] != false {
            return Some(format!("{status} without success: false"));
        }
        let Some(code) = self.code_of(&json) else {
            return Some(format!(
                "{status} without an error code at {}",
                self.error_code
            ));
        };
        if !self.error_status.is_empty() && json.pointer(&self.error_status) != Some(&status.into())
        {
            return Some(format!(
                "{status} without the status at {}",
                self.error_status
            ));
        }
        if !self.error_message.is_empty()
            && !json
                .pointer(&self.error_message)
                .is_some_and(Value::is_string)
        {
            return Some(format!(
                "{status} without a message at {}",
                self.error_message
            ));
        }
        let try_again = code == "DEPENDENCY_UNAVAILABLE" || TRY_AGAIN.contains(&code.as_str());
        if self.retry_after && try_again && !retry_after {
            return Some(format!("{code} without Retry-After"));
        }
        None
    }

    /// The answer in this service's conventions, when the target's differ:
    /// the booking id as `booking.id`, the canonical code as `code` and the
    /// status as `status`. `None` when the body already reads the same.
    pub fn canonical_body(&self, kind: OpKind, status: u16, body: &str) -> Option<String> {
        if *self == ApiProfile::booking() {
            return None;
        }
        let mut json: Value = serde_json::from_str(body).ok()?;
        if status < 300 {
            let booking = json.pointer(&self.booking)?.clone();
            let mut booking = booking;
            if let Some(id) = booking.get(self.id_field(kind)).cloned() {
                booking["id"] = id;
            }
            json["booking"] = booking;
        } else {
            if let Some(code) = self.code_of(&json) {
                json["code"] = code.into();
            }
            json["status"] = status.into();
        }
        let canonical = serde_json::to_string(&json).ok()?;
        (canonical != body).then_some(canonical)
    }
}

fn parse_answer(raw: &str) -> Result<(Option<OpKind>, u16, Option<String>)> {
    let mut parts = raw.split_whitespace();
    let kind = match parts.next() {
        Some("*") => None,
        Some("create") => Some(OpKind::Create),
        Some("cancel") => Some(OpKind::Cancel),
        Some("list") => Some(OpKind::List),
        Some("availability") => Some(OpKind::Availability),
        _ => bail!("answer {raw:?}: want \"<create|cancel|list|availability|*> <status> [CODE]\""),
    };
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("answer {raw:?} has no status"))?;
    Ok((kind, status, parts.next().map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_booking_profile_reads_this_services_problem_documents() {
        let p = ApiProfile::booking();
        let conflict = r#"{"success":false,"status":409,"code":"ALREADY_BOOKED","title":"x"}"#;
        assert_eq!(p.shape_problem(OpKind::Create, 409, conflict, false), None);
        assert_eq!(p.canonical_body(OpKind::Create, 409, conflict), None);
        let node_style = r#"{"success":false,"error":"taken","code":"ALREADY_BOOKED"}"#;
        assert!(p
            .shape_problem(OpKind::Create, 409, node_style, false)
            .is_some());
        let locked = r#"{"success":false,"status":409,"code":"RESOURCE_LOCKED"}"#;
        assert!(p
            .shape_problem(OpKind::Create, 409, locked, false)
            .is_some());
        assert_eq!(p.shape_problem(OpKind::Create, 409, locked, true), None);
        assert!(p.documents(OpKind::Create, 409, Some("ALREADY_BOOKED")));
        assert!(!p.documents(OpKind::Cancel, 409, Some("ALREADY_BOOKED")));
        assert!(p.documents(OpKind::Cancel, 400, Some("VALIDATION_FAILED")));
    }

    #[test]
    fn the_node_profile_accepts_its_dialect_and_gives_a_canonical_view() {
        let p = ApiProfile::node();
        let conflict = r#"{"success":false,"error":"taken","code":"ALREADY_BOOKED"}"#;
        assert_eq!(p.shape_problem(OpKind::Create, 409, conflict, false), None);
        let view: Value = serde_json::from_str(
            &p.canonical_body(OpKind::Create, 409, conflict)
                .expect("view"),
        )
        .expect("json");
        assert_eq!(view["status"], 409);
        let cancelled = r#"{"success":true,"booking":{"_id":"b1","status":"cancelled"}}"#;
        assert_eq!(p.shape_problem(OpKind::Cancel, 200, cancelled, false), None);
        let view: Value = serde_json::from_str(
            &p.canonical_body(OpKind::Cancel, 200, cancelled)
                .expect("view"),
        )
        .expect("json");
        assert_eq!(view["booking"]["id"], "b1");
        let invalid = r#"{"success":false,"error":"bad","code":"VALIDATION_ERROR"}"#;
        assert_eq!(
            p.code_of(&serde_json::from_str(invalid).expect("json"))
                .as_deref(),
            Some("VALIDATION_FAILED")
        );
    }

    #[test]
    fn profiles_load_from_files_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "name = \"mine\"\nerror_code = \"/error/code\"\n").expect("write");
        let p = ApiProfile::named(path.to_str().expect("utf-8")).expect("loads");
        assert_eq!(p.error_code, "/error/code");
        assert_eq!(p.created_id, "id", "unset fields keep the booking defaults");
        std::fs::write(&path, "answers = [\"book 201\"]\n").expect("write");
        assert!(ApiProfile::named(path.to_str().expect("utf-8")).is_err());
        assert!(ApiProfile::named("nosuch").is_err());
    }
}
