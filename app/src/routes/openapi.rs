//! `GET /api/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use super::{bookings, health, metrics, resources};

#[derive(OpenApi)]
#[openapi(
    info(title = "Booking API", description = "Idempotent, crash-safe bookings. Errors are application/problem+json with a stable `code`."),
    paths(
        bookings::create::create,
        bookings::list::list,
        bookings::cancel::cancel,
        resources::catalogue,
        resources::available,
        health::live,
        health::ready,
        metrics::render,
    ),
    components(schemas(crate::error::Problem, crate::error::ErrorCode, crate::domain::FieldError)),
    tags((name = "bookings"), (name = "resources"), (name = "health"))
)]
pub struct ApiDoc;

/// The OpenAPI 3 document of this API.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
