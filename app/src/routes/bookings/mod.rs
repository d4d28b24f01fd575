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

/// The user a request acts for, from an optional `userId` field and the
/// principal: the field may be left out when there is a principal, and must
/// be the principal's when given (else `403 FORBIDDEN`).
pub(crate) fn acting_user(
    value: &Option<serde_json::Value>,
    principal: &crate::extract::Principal,
    errors: &mut Vec<crate::domain::FieldError>,
) -> Result<Option<crate::domain::UserId>, crate::error::ApiError> {
    let absent = matches!(value, None | Some(serde_json::Value::Null));
    let claimed = if absent && principal.0.is_some() {
        None
    } else {
        match string_field(value, "userId", errors).map(|s| {
            crate::domain::UserId::parse(s)
                .map_err(|e| errors.push(e))
                .ok()
        }) {
            Some(Some(user)) => Some(user),
            _ => return Ok(None),
        }
    };
    Ok(crate::auth::acting_user(&principal.0, claimed)?)
}
