//! `GET /api/bookings/{userId}`

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{Booking, BookingDate, BookingStatus, FieldError, ResourceId, UserId};
use crate::error::{ApiError, Problem};
use crate::extract::{ApiQuery, Principal};
use crate::state::AppState;
use crate::store::ListFilter;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this resource.
    pub resource_id: Option<String>,
    /// Only this date (YYYY-MM-DD).
    pub date: Option<String>,
    /// `confirmed` (default), `cancelled` or `all`.
    pub status: Option<String>,
}

impl ListQuery {
    fn filter(&self) -> Result<ListFilter, ApiError> {
        let mut errors = Vec::new();
        let present = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let resource = present(&self.resource_id)
            .and_then(|s| ResourceId::parse(&s).map_err(|e| errors.push(e)).ok());
        let date = present(&self.date)
            .and_then(|s| BookingDate::parse(&s).map_err(|e| errors.push(e)).ok());
        let status = match present(&self.status).as_deref() {
            None | Some("confirmed") => Some(BookingStatus::Confirmed),
            Some("cancelled") => Some(BookingStatus::Cancelled),
            Some("all") => None,
            Some(_) => {
                errors.push(FieldError::new(
                    "status",
                    "must be confirmed, cancelled or all",
                ));
                None
            }
        };
        if errors.is_empty() {
            Ok(ListFilter {
                resource,
                date,
                status,
            })
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BookingList {
    pub success: bool,
    pub bookings: Vec<Booking>,
}

/// A user's bookings, newest first (at most 1000).
#[utoipa::path(
    get,
    path = "/api/bookings/{userId}",
    tag = "bookings",
    params(("userId" = String, Path, description = "The owner"), ListQuery),
    responses(
        (status = 200, body = BookingList),
        (status = 400, description = "VALIDATION_FAILED", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHENTICATED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "FORBIDDEN: another user's list", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "DEPENDENCY_UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<BookingList>, ApiError> {
    let user = UserId::parse(&user_id).map_err(|e| ApiError::Validation(vec![e]))?;
    crate::auth::acting_user(&principal.0, Some(user.clone()))?;
    let filter = query.filter()?;
    let bookings = state.store.list(&user, &filter).await?;
    Ok(Json(BookingList {
        success: true,
        bookings,
    }))
}
