//! Validated domain types.
//!
//! Handlers parse raw input into these types at the edge, so the protocol and
//! the backends never see a malformed user id, date or idempotency key.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

/// One field that failed validation, reported to the client in `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

pub const MAX_ID_LEN: usize = 64;
/// A resource id's rule as a regular expression (for the OpenAPI document).
pub const IDENTIFIER_PATTERN: &str = "^[A-Za-z0-9_.:@-]{1,64}$";
/// A user id's: one more character, `|`, which identity providers put in
/// their subjects (Auth0's `auth0|…`, `google-oauth2|…`).
pub const USER_ID_PATTERN: &str = "^[A-Za-z0-9_.:@|-]{1,64}$";
/// The shape [`BookingDate::parse`] accepts before it checks the calendar.
pub const DATE_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

/// Identifiers (`userId`, `resourceId`) are 1..=64 characters of
/// `[A-Za-z0-9_.:@-]` and the `extra` ones: enough for room ids and the
/// subjects of common identity providers, and safe to embed in Redis keys
/// and log lines without escaping (none is a quote, a space, a control
/// character, `/`, `%` or a glob character).
fn parse_identifier(field: &str, raw: &str, extra: &str) -> Result<String, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.:@-".contains(c) || extra.contains(c);
    if !raw.chars().all(allowed) {
        let others: String = extra.chars().map(|c| format!(" {c}")).collect();
        return Err(FieldError::new(
            field,
            format!("may contain only letters, digits and _ . : @ -{others}"),
        ));
    }
    Ok(raw.to_owned())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $field:literal, $extra:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, FieldError> {
                parse_identifier($field, raw, $extra).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The user a booking belongs to; also the scope of idempotency keys.
    UserId,
    "userId",
    "|"
);
identifier!(
    /// A bookable resource; must also be in the configured catalogue.
    ResourceId,
    "resourceId",
    ""
);

impl UserId {
    /// One key namespace shared by every user: only seeded bugs use it.
    pub(crate) fn everyone() -> Self {
        Self("@everyone".into())
    }
}

/// A real calendar date written exactly as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BookingDate(NaiveDate);

impl BookingDate {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let shape_ok = raw.len() == 10
            && raw.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        let invalid = || FieldError::new("date", "must be a real calendar date YYYY-MM-DD");
        if !shape_ok {
            return Err(invalid());
        }
        // The shape is checked: read the digits directly (chrono's
        // `parse_from_str` parses its pattern on every call).
        let number = |range: std::ops::Range<usize>| {
            raw.as_bytes()[range]
                .iter()
                .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
        };
        i32::try_from(number(0..4))
            .ok()
            .and_then(|year| NaiveDate::from_ymd_opt(year, number(5..7), number(8..10)))
            .map(Self)
            .ok_or_else(invalid)
    }

    pub fn naive(self) -> NaiveDate {
        self.0
    }

    pub fn from_naive(date: NaiveDate) -> Self {
        Self(date)
    }
}

impl Serialize for BookingDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for BookingDate {
    /// `YYYY-MM-DD`, written directly: chrono's `format` parses its pattern
    /// on every call, which showed up in the replay profile.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use chrono::Datelike;
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            self.0.month(),
            self.0.day()
        )
    }
}

/// A client-supplied `Idempotency-Key`: 1..=255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;
    /// [`Self::parse`]'s rule as a regular expression.
    pub const PATTERN: &'static str = "^[!-~]{1,255}$";

    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(format!(
                "Idempotency-Key must be 1 to {} characters",
                Self::MAX_LEN
            ));
        }
        if !raw.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err("Idempotency-Key may contain only visible ASCII characters".into());
        }
        // Every byte is visible ASCII, so this is valid UTF-8.
        Ok(Self(raw.iter().map(|&b| b as char).collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a key came from. Client keys and derived keys live in separate
/// namespaces, so a client cannot send a key that collides with a derived one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The client's `Idempotency-Key` header.
    Client,
    /// Derived by the server from `userId + resourceId + date` when the client sent none.
    Derived,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Derived => "derived",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "client" => Some(Self::Client),
            "derived" => Some(Self::Derived),
            _ => None,
        }
    }
}

/// A key scoped to its user: one user's key never replays another user's response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyScope {
    pub user_id: UserId,
    pub kind: KeyKind,
    pub key: String,
}

impl KeyScope {
    /// The coordinator's record name. Hashing keeps it short and free of
    /// separators whatever the user id and key contain.
    pub fn record_name(&self) -> String {
        let digest = sha256_hex(&[self.kind.as_str(), self.user_id.as_str(), &self.key]);
        format!("booking:idem:{digest}")
    }
}

/// SHA-256 over length-prefixed parts, so `("ab","c")` and `("a","bc")` differ.
pub(crate) fn sha256_hex(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    // By hand rather than `format!` per byte: this runs on every request,
    // and 32 small formats showed up in the replay profile.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in hasher.finalize() {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// A validated request to book `resource` on `date` for `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBooking {
    pub user: UserId,
    pub resource: ResourceId,
    pub date: BookingDate,
}

impl NewBooking {
    /// The name of the lock that serialises requests for one slot.
    pub fn slot(&self) -> String {
        format!("{}:{}", self.resource, self.date)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BookingStatus {
    Confirmed,
    Cancelled,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "confirmed" => Some(Self::Confirmed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A booking as stored and as returned to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Booking {
    pub id: Uuid,
    #[schema(value_type = String)]
    pub user_id: UserId,
    #[schema(value_type = String)]
    pub resource_id: ResourceId,
    #[schema(value_type = String, format = Date, example = "2026-12-01")]
    pub date: BookingDate,
    pub status: BookingStatus,
    #[serde(serialize_with = "serialize_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(
        serialize_with = "serialize_opt_millis",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// Timestamps are kept to the millisecond everywhere, so that a booking read
/// back from either store renders exactly as it did in its 201 response.
pub fn truncate_to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn serialize_millis<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn serialize_opt_millis<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_millis(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_must_be_real_and_exactly_formatted() {
        assert!(BookingDate::parse("2026-12-01").is_ok());
        assert!(BookingDate::parse("2028-02-29").is_ok());
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "",
            "2026-01-01T00:00:00Z",
            " 2026-01-01",
            "2027-02-29",
        ] {
            assert!(
                BookingDate::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn dates_parse_as_chrono_reads_the_calendar() {
        for year in [0, 1, 1900, 1999, 2000, 2024, 2026, 2100, 9999] {
            for month in 0..=13 {
                for day in 0..=32 {
                    let raw = format!("{year:04}-{month:02}-{day:02}");
                    let chrono = NaiveDate::parse_from_str(&raw, "%Y-%m-%d").ok();
                    assert_eq!(
                        BookingDate::parse(&raw).ok().map(BookingDate::naive),
                        chrono,
                        "{raw}"
                    );
                }
            }
        }
    }

    #[test]
    fn dates_round_trip_through_display() {
        let d = BookingDate::parse("2026-03-04").expect("valid date");
        assert_eq!(d.to_string(), "2026-03-04");
    }

    #[test]
    fn identifiers_reject_empty_long_and_odd_characters() {
        assert!(UserId::parse("user_alice").is_ok());
        assert_eq!(UserId::parse("").expect_err("empty").message, "is required");
        assert!(UserId::parse(&"a".repeat(65)).is_err());
        assert!(UserId::parse(&"a".repeat(64)).is_ok());
        assert!(ResourceId::parse("room A").is_err());
        assert!(ResourceId::parse("room\u{e9}").is_err());
        assert_eq!(
            ResourceId::parse("x y").expect_err("space").field,
            "resourceId"
        );
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_up_to_255() {
        assert!(IdempotencyKey::parse(b"a").is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; 256]).is_err());
        assert!(IdempotencyKey::parse(b"").is_err());
        assert!(IdempotencyKey::parse(b"has space").is_err());
        assert!(IdempotencyKey::parse(b"tab\t").is_err());
        assert!(IdempotencyKey::parse("caf\u{e9}".as_bytes()).is_err());
    }

    #[test]
    fn bookings_render_camel_case_with_millisecond_timestamps() {
        let created = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.123456Z")
            .expect("timestamp")
            .with_timezone(&Utc);
        let b = Booking {
            id: Uuid::nil(),
            user_id: UserId::parse("u").expect("user"),
            resource_id: ResourceId::parse("room_A").expect("resource"),
            date: BookingDate::parse("2026-12-01").expect("date"),
            status: BookingStatus::Confirmed,
            created_at: truncate_to_millis(created),
            cancelled_at: None,
        };
        let json = serde_json::to_string(&b).expect("serialize");
        assert_eq!(
            json,
            r#"{"id":"00000000-0000-0000-0000-000000000000","userId":"u","resourceId":"room_A","date":"2026-12-01","status":"confirmed","createdAt":"2026-11-24T10:00:00.123Z"}"#
        );
    }
}
