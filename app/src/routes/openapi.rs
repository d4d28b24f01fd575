//! `GET /api/openapi.json`: generated from the handlers' annotations, then
//! completed at run time with what only the running service knows.
//!
//! The annotations give the operations and their own answers. [`constrain`]
//! adds, from the same constants the validation code uses, every constraint
//! the service enforces (patterns, lengths, required fields, the configured
//! catalogue, which fields the auth mode requires) and the answers every
//! operation can give (429, 414, 431, 500; 408 and 413 with a body), so a
//! generator such as Schemathesis can tell valid input from invalid input.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::{auth, bookings, health, metrics, resources};
use crate::auth::AuthMode;
use crate::domain::{
    IdempotencyKey, DATE_PATTERN, IDENTIFIER_PATTERN, MAX_ID_LEN, USER_ID_PATTERN,
};
use crate::error::ErrorCode;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Booking API", description = "Idempotent, crash-safe bookings. Errors are application/problem+json with a stable `code`. A method a path does not have is `405 METHOD_NOT_ALLOWED` with `Allow`; an unknown `/api/…` path is `404 NOT_FOUND`."),
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

/// The OpenAPI 3 document of this API, as this service is configured.
pub async fn document(State(state): State<AppState>) -> Json<Value> {
    let catalogue: Vec<String> = state
        .settings
        .resources
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    Json(constrain(&catalogue, state.auth.mode()))
}

/// Operations behind the rate limit (`routes::router`).
const LIMITED: [&str; 6] = [
    "/api/auth/dev-token",
    "/api/bookings",
    "/api/bookings/{userId}",
    "/api/bookings/{bookingId}/cancel",
    "/api/resources",
    "/api/resources/available",
];

/// The generated document with every enforced constraint stated.
pub fn constrain(catalogue: &[String], mode: AuthMode) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    let identifier = json!({
        "type": "string", "pattern": USER_ID_PATTERN, "minLength": 1, "maxLength": MAX_ID_LEN,
    });
    let date = json!({ "type": "string", "format": "date", "pattern": DATE_PATTERN });
    let resource = json!({ "type": "string", "enum": catalogue });
    // Under --auth dev and jwt the user is the token's subject: userId may be left out.
    let user_required = mode == AuthMode::None;
    // With a token, `userId` may also be null: the same as leaving it out.
    let acting_user = if user_required {
        identifier.clone()
    } else {
        json!({ "anyOf": [identifier, { "type": "null" }] })
    };

    let schemas = &mut doc["components"]["schemas"];
    let body = |properties: Value, required: Vec<&str>| json!({ "type": "object", "properties": properties, "required": required });
    let with_user = |mut required: Vec<&'static str>| {
        if user_required {
            required.insert(0, "userId");
        }
        required
    };
    schemas["CreateBookingBody"] = body(
        json!({ "userId": acting_user, "resourceId": resource, "date": date }),
        with_user(vec!["resourceId", "date"]),
    );
    schemas["CancelBody"] = body(json!({ "userId": acting_user }), with_user(vec![]));
    schemas["DevTokenBody"] = body(json!({ "userId": identifier }), vec!["userId"]);

    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (_method, operation) in item.iter_mut() {
            constrain_parameters(path, operation, &identifier, &date);
            let has_body = operation.get("requestBody").is_some();
            add_common_answers(operation, LIMITED.contains(&path.as_str()), has_body);
        }
    }
    // With a token, a cancel needs no body at all.
    doc["paths"]["/api/bookings/{bookingId}/cancel"]["patch"]["requestBody"]["required"] =
        Value::Bool(user_required);
    doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"] = json!({
        "application/openmetrics-text": { "schema": { "type": "string" } }
    });
    // A booking is visible to its owner only: what follows a booking acts
    // as the user who made it.
    doc["paths"]["/api/bookings"]["post"]["responses"]["201"]["links"] = json!({
        "CancelTheBooking": {
            "operationId": "cancel",
            "parameters": { "bookingId": "$response.body#/booking/id" },
            "requestBody": { "userId": "$response.body#/booking/userId" },
        },
        "ListTheUsersBookings": {
            "operationId": "list",
            "parameters": { "userId": "$response.body#/booking/userId" },
        },
    });
    doc
}

const AVAILABILITY: &str = "/api/resources/available";

fn or_empty(schema: &Value) -> Value {
    json!({ "anyOf": [schema, { "type": "string", "maxLength": 0 }] })
}

fn constrain_parameters(path: &str, operation: &mut Value, identifier: &Value, date: &Value) {
    let Some(parameters) = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for parameter in parameters {
        let name = parameter["name"].as_str().unwrap_or_default().to_owned();
        let location = parameter["in"].as_str().unwrap_or_default().to_owned();
        let schema = match (location.as_str(), name.as_str()) {
            ("header", "Idempotency-Key") => json!({
                "type": "string", "pattern": IdempotencyKey::PATTERN,
                "minLength": 1, "maxLength": IdempotencyKey::MAX_LEN,
            }),
            ("path", "userId") => identifier.clone(),
            ("path", "bookingId") => json!({ "type": "string", "format": "uuid" }),
            // A list may filter by a resource no longer in the catalogue;
            // an empty filter is no filter.
            ("query", "resourceId") if path != AVAILABILITY => or_empty(&json!({
                "type": "string", "pattern": IDENTIFIER_PATTERN,
                "minLength": 1, "maxLength": MAX_ID_LEN,
            })),
            ("query", "date") if path != AVAILABILITY => or_empty(date),
            ("query", "date") => date.clone(),
            ("query", "status") => json!({
                "type": "string", "enum": ["", "confirmed", "cancelled", "all"],
            }),
            _ => continue,
        };
        parameter["schema"] = schema;
        if path == AVAILABILITY && name == "date" {
            parameter["required"] = Value::Bool(true);
        }
    }
}

/// Answers any operation can give, besides its own.
fn add_common_answers(operation: &mut Value, limited: bool, has_body: bool) {
    let mut codes = vec![
        ErrorCode::UriTooLong,
        ErrorCode::HeadersTooLarge,
        ErrorCode::Internal,
    ];
    if limited {
        codes.push(ErrorCode::RateLimited);
    }
    if has_body {
        codes.extend([ErrorCode::RequestTimeout, ErrorCode::PayloadTooLarge]);
    }
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for code in codes {
        let status = code.status().as_u16().to_string();
        let entry = responses.entry(status).or_insert_with(|| {
            json!({
                "description": code.as_str(),
                "content": { "application/problem+json": {
                    "schema": { "$ref": "#/components/schemas/Problem" }
                } },
            })
        });
        if code.retry_after().is_some() {
            entry["headers"] = retry_after_header();
        }
        if let Some(d) = entry["description"].as_str() {
            if !d.contains(code.as_str()) {
                entry["description"] = Value::String(format!("{d}; {}", code.as_str()));
            }
        }
    }
    // Every problem answered with 503 says when to retry (readiness's own
    // 503 is a health report, not a problem).
    for (status, entry) in responses.iter_mut() {
        if status == "503" && entry["content"].get("application/problem+json").is_some() {
            entry["headers"] = retry_after_header();
        }
    }
}

fn retry_after_header() -> Value {
    let mut headers = Map::new();
    headers.insert(
        "Retry-After".into(),
        json!({ "description": "Seconds to wait before sending the same request again",
                "schema": { "type": "integer", "minimum": 1 } }),
    );
    Value::Object(headers)
}
