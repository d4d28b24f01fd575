pub mod cancel;
pub mod create;
pub mod list;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Booking;

/// `{"success":true,"message":…,"booking":{…}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct BookingEnvelope {
    pub success: bool,
    pub message: String,
    pub booking: Booking,
}

/// Reads an optional JSON value as a required string field.
pub(crate) fn string_field<'a>(
    value: &'a Option<serde_json::Value>,
    field: &str,
    errors: &mut Vec<crate::domain::FieldError>,
) -> Option<&'a str> {
    match value {
        None | Some(serde_json::Value::Null) => {
            errors.push(crate::domain::FieldError::new(field, "is required"));
            None
        }
        Some(serde_json::Value::String(s)) => Some(s),
        Some(_) => {
            errors.push(crate::domain::FieldError::new(field, "must be a string"));
            None
        }
    }
}
