//! `GET /api/resources` and `GET /api/resources/available`

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{BookingDate, FieldError};
use crate::error::{ApiError, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceView {
    pub id: String,
    pub name: String,
}

/// The resource catalogue.
#[utoipa::path(get, path = "/api/resources", tag = "resources",
    responses((status = 200, body = Vec<ResourceView>)))]
pub async fn catalogue(State(state): State<AppState>) -> Json<Vec<ResourceView>> {
    Json(
        state
            .settings
            .resources
            .iter()
            .map(|r| ResourceView {
                id: r.id.to_string(),
                name: r.name.clone(),
            })
            .collect(),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvailableQuery {
    /// YYYY-MM-DD
    pub date: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Availability {
    pub success: bool,
    pub date: String,
    pub available_resources: Vec<String>,
}

/// Resources with no confirmed booking on `date`, in catalogue order.
#[utoipa::path(get, path = "/api/resources/available", tag = "resources",
    params(AvailableQuery),
    responses(
        (status = 200, body = Availability),
        (status = 400, description = "VALIDATION_FAILED", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "DEPENDENCY_UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn available(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<AvailableQuery>,
) -> Result<Json<Availability>, ApiError> {
    let date = match query.date.as_deref() {
        None | Some("") => Err(FieldError::new("date", "is required")),
        Some(raw) => BookingDate::parse(raw),
    }
    .map_err(|e| ApiError::Validation(vec![e]))?;
    let booked = state.store.booked_resources(date).await?;
    let available_resources = state
        .settings
        .resources
        .iter()
        .filter(|r| !booked.contains(&r.id))
        .map(|r| r.id.to_string())
        .collect();
    Ok(Json(Availability {
        success: true,
        date: date.to_string(),
        available_resources,
    }))
}
