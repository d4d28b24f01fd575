//! `GET /api/auth/config` and, under `--auth dev`, `POST /api/auth/dev-token`.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthMode;
use crate::domain::UserId;
use crate::error::{ApiError, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;

/// How clients authenticate (for the front end).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthConfig {
    /// `none`, `dev` or `jwt`.
    #[schema(value_type = String, example = "dev")]
    pub mode: AuthMode,
    /// Whether `POST /api/auth/dev-token` mints tokens.
    pub dev_tokens: bool,
}

#[utoipa::path(get, path = "/api/auth/config", tag = "auth", responses((status = 200, body = AuthConfig)))]
pub async fn config(State(state): State<AppState>) -> Json<AuthConfig> {
    let mode = state.auth.mode();
    Json(AuthConfig {
        mode,
        dev_tokens: mode == AuthMode::Dev,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevTokenBody {
    #[schema(value_type = String, example = "user_alice")]
    pub user_id: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevToken {
    pub success: bool,
    pub token: String,
    pub token_type: &'static str,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

/// A token for a demo user (only under `--auth dev`: anyone may call it).
#[utoipa::path(
    post,
    path = "/api/auth/dev-token",
    tag = "auth",
    request_body = DevTokenBody,
    responses(
        (status = 200, body = DevToken),
        (status = 400, description = "VALIDATION_FAILED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "NOT_FOUND: not in --auth dev", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn dev_token(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DevTokenBody>,
) -> Result<Json<DevToken>, ApiError> {
    if state.auth.mode() != AuthMode::Dev {
        return Err(ApiError::NotFound);
    }
    let mut errors = Vec::new();
    let user = super::bookings::string_field(&body.user_id, "userId", &mut errors)
        .and_then(|s| UserId::parse(s).map_err(|e| errors.push(e)).ok());
    let Some(user) = user.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let (token, expires_at) = state
        .auth
        .mint_dev_token(&user)
        .ok_or_else(|| ApiError::Internal("could not sign a dev token".into()))?;
    Ok(Json(DevToken {
        success: true,
        token,
        token_type: "Bearer",
        expires_at,
    }))
}
