//! Step 2: resolve the idempotency key and fingerprint the payload.

use std::time::Duration;

use crate::config::IdempotencySettings;
use crate::domain::{sha256_hex, IdempotencyKey, NewBooking, UserId};
pub use crate::domain::{KeyKind, KeyScope};

/// The key of one booking request, ready for the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKey {
    pub scope: KeyScope,
    /// The coordinator's name for the key's record (`scope.record_name()`,
    /// a hash: computed once per request).
    pub record: String,
    /// How long a booking's outcome answers retries.
    pub retention: Duration,
    /// How long a refusal's outcome does (never longer than `retention`).
    pub refusal_retention: Duration,
    /// Identifies the payload, to tell a retry from a reuse of the key.
    pub fingerprint: String,
}

/// Resolves the key of `request`: the client's key if it sent one, else a
/// short-lived key derived from the request itself.
pub fn resolve_key(
    request: &NewBooking,
    client_key: Option<&IdempotencyKey>,
    settings: &IdempotencySettings,
) -> ResolvedKey {
    let (kind, key, retention) = match client_key {
        Some(key) => (
            KeyKind::Client,
            key.as_str().to_owned(),
            settings.client_key_ttl,
        ),
        None => (
            KeyKind::Derived,
            format!("{}:{}", request.resource, request.date),
            settings.derived_key_ttl,
        ),
    };
    let mut user_id = request.user.clone();
    let mut fingerprint = fingerprint(request);
    if seeded_bug!(KeysGlobalAcrossUsers) && kind == KeyKind::Client {
        // Seeded bug: one namespace of keys for everyone; "the key identifies the request".
        user_id = UserId::everyone();
        fingerprint = sha256_hex(&[
            "booking/v1",
            request.resource.as_str(),
            &request.date.to_string(),
        ]);
    }
    if seeded_bug!(DerivedKeyWithoutUser) && kind == KeyKind::Derived {
        user_id = UserId::everyone();
    }
    let scope = KeyScope { user_id, kind, key };
    ResolvedKey {
        record: scope.record_name(),
        scope,
        retention,
        refusal_retention: retention.min(settings.refusal_ttl),
        fingerprint,
    }
}

/// A stable digest of the normalised payload (field order and unknown
/// fields in the JSON do not change it).
pub fn fingerprint(request: &NewBooking) -> String {
    if seeded_bug!(FingerprintIgnoresDate) {
        return sha256_hex(&[
            "booking/v1",
            request.user.as_str(),
            request.resource.as_str(),
        ]);
    }
    sha256_hex(&[
        "booking/v1",
        request.user.as_str(),
        request.resource.as_str(),
        &request.date.to_string(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BookingDate, ResourceId, UserId};

    fn request(user: &str, resource: &str, date: &str) -> NewBooking {
        NewBooking {
            user: UserId::parse(user).expect("user"),
            resource: ResourceId::parse(resource).expect("resource"),
            date: BookingDate::parse(date).expect("date"),
        }
    }

    fn settings() -> IdempotencySettings {
        IdempotencySettings::default()
    }

    #[test]
    fn a_client_key_is_scoped_to_its_user() {
        let key = IdempotencyKey::parse(b"abc").expect("key");
        let a = resolve_key(
            &request("alice", "room_A", "2026-12-01"),
            Some(&key),
            &settings(),
        );
        let b = resolve_key(
            &request("bob", "room_A", "2026-12-01"),
            Some(&key),
            &settings(),
        );
        assert_eq!(a.scope.kind, KeyKind::Client);
        assert_eq!(a.retention, Duration::from_secs(24 * 3600));
        assert_ne!(a.scope.record_name(), b.scope.record_name());
    }

    #[test]
    fn without_a_client_key_the_key_is_derived_and_short_lived() {
        let r = request("alice", "room_A", "2026-12-01");
        let k = resolve_key(&r, None, &settings());
        assert_eq!(k.scope.kind, KeyKind::Derived);
        assert_eq!(k.scope.key, "room_A:2026-12-01");
        assert_eq!(k.retention, Duration::from_secs(120));
        assert_eq!(k, resolve_key(&r, None, &settings()));
    }

    #[test]
    fn a_client_key_cannot_collide_with_a_derived_one() {
        let r = request("alice", "room_A", "2026-12-01");
        let lookalike = IdempotencyKey::parse(b"room_A:2026-12-01").expect("key");
        let client = resolve_key(&r, Some(&lookalike), &settings());
        let derived = resolve_key(&r, None, &settings());
        assert_eq!(client.scope.key, derived.scope.key);
        assert_ne!(client.scope.record_name(), derived.scope.record_name());
    }

    #[test]
    fn fingerprints_follow_the_payload() {
        let base = fingerprint(&request("alice", "room_A", "2026-12-01"));
        assert_eq!(base, fingerprint(&request("alice", "room_A", "2026-12-01")));
        assert_eq!(base.len(), 64);
        assert_ne!(base, fingerprint(&request("alice", "room_B", "2026-12-01")));
        assert_ne!(base, fingerprint(&request("alice", "room_A", "2026-12-02")));
        assert_ne!(base, fingerprint(&request("bob", "room_A", "2026-12-01")));
    }

    #[test]
    fn digests_are_lowercase_hex_sha256() {
        // SHA-256 of 8 zero bytes (the length prefix of one empty part).
        assert_eq!(
            sha256_hex(&[""]),
            "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"
        );
    }

    #[test]
    fn hashing_is_unambiguous_across_part_boundaries() {
        assert_ne!(sha256_hex(&["ab", "c"]), sha256_hex(&["a", "bc"]));
    }
}
