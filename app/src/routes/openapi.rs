//! `GET /api/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;

use super::{auth, bookings, health, metrics, resources};

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
        auth::config,
        auth::dev_token,
    ),
    components(schemas(crate::error::Problem, crate::error::ErrorCode, crate::domain::FieldError)),
    modifiers(&BearerAuth),
    tags((name = "bookings"), (name = "resources"), (name = "health"), (name = "auth"))
)]
pub struct ApiDoc;

/// Declares the bearer scheme (`--auth dev` or `jwt`; `none` ignores it).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "Required under --auth dev and --auth jwt; the token's subject is the user",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI 3 document of this API.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
