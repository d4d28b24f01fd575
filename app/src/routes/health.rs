//! Liveness (`/health`, `/api/health`) and readiness (`/api/health/ready`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    pub success: bool,
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/api/health", tag = "health", responses((status = 200, body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live {
        success: true,
        status: "ok",
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub backend: &'static str,
    pub up: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub success: bool,
    pub status: &'static str,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Pings the coordinator and the store; `503` names the one that is down.
#[utoipa::path(get, path = "/api/health/ready", tag = "health",
    responses((status = 200, body = Ready), (status = 503, description = "DEPENDENCY_UNAVAILABLE", body = Ready)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let (coordinator, store) = tokio::join!(state.coordinator.ping(), state.store.ping());
    let checks = vec![
        Check {
            name: "coordinator",
            backend: state.coordinator.backend(),
            up: coordinator.is_ok(),
        },
        Check {
            name: "store",
            backend: state.store.backend(),
            up: store.is_ok(),
        },
    ];
    let down: Vec<_> = checks.iter().filter(|c| !c.up).map(|c| c.backend).collect();
    if down.is_empty() {
        return Json(Ready {
            success: true,
            status: "ready",
            checks,
            code: None,
            error: None,
        })
        .into_response();
    }
    for e in [coordinator.err(), store.err()].into_iter().flatten() {
        tracing::warn!(error = %e, "readiness check failed");
    }
    let body = Ready {
        success: false,
        status: "unavailable",
        error: Some(format!("{} unavailable", down.join(" and "))),
        code: Some("DEPENDENCY_UNAVAILABLE"),
        checks,
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(2u32),
    );
    response
}
