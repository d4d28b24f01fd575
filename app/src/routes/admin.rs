//! Failpoint admin endpoint; compiled only with the `failpoints` feature.
//!
//! `GET /admin/failpoints` lists them (and how often each fired), `PUT /admin/failpoints/{name}` with a
//! plain-text body of actions sets one, `DELETE` clears it.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use crate::domain::FieldError;
use crate::error::ApiError;
use crate::failpoints;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/failpoints", get(list)).route(
        "/admin/failpoints/{name}",
        axum::routing::put(set).delete(clear),
    )
}

async fn list() -> Json<serde_json::Value> {
    let set: serde_json::Map<_, _> = failpoints::list()
        .into_iter()
        .map(|(name, actions)| (name, serde_json::Value::String(actions)))
        .collect();
    let steps: Vec<_> = failpoints::Step::ALL.iter().map(|s| s.name()).collect();
    let fired: serde_json::Map<_, _> = failpoints::fired()
        .into_iter()
        .map(|(name, n)| (name.to_owned(), serde_json::Value::from(n)))
        .collect();
    Json(serde_json::json!({ "steps": steps, "set": set, "fired": fired }))
}

async fn set(Path(name): Path<String>, actions: String) -> Result<StatusCode, ApiError> {
    failpoints::set(&name, actions.trim())
        .map_err(|e| ApiError::Validation(vec![FieldError::new("actions", e)]))?;
    tracing::warn!(failpoint = %name, actions = %actions.trim(), "failpoint set");
    Ok(StatusCode::NO_CONTENT)
}

async fn clear(Path(name): Path<String>) -> StatusCode {
    failpoints::clear(&name);
    StatusCode::NO_CONTENT
}
