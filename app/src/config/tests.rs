use super::*;

#[test]
fn the_default_catalogue_has_four_rooms() {
    let c = parse_catalogue(DEFAULT_CATALOGUE).expect("catalogue");
    let ids: Vec<_> = c.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["room_A", "room_B", "room_C", "room_D"]);
    assert_eq!(c[0].name, "Conference Room A");
}

#[test]
fn bad_catalogues_are_rejected() {
    assert!(parse_catalogue("").is_err());
    assert!(parse_catalogue("room_A").is_err());
    assert!(parse_catalogue("room A=x").is_err());
    assert!(parse_catalogue("a=x,a=y").is_err());
}

#[test]
fn an_environment_map_gives_the_settings_a_replica_would_use() {
    let s = ServeArgs::from_env_map([("DERIVED_KEY_TTL_SECS", "7"), ("LOCK_TTL_MS", "250")])
        .and_then(ServeArgs::into_unchecked_settings)
        .expect("settings");
    assert_eq!(s.idempotency.derived_key_ttl, Duration::from_secs(7));
    assert_eq!(s.lock_ttl, Duration::from_millis(250));
    let defaults = ServeArgs::from_env_map([])
        .and_then(ServeArgs::into_unchecked_settings)
        .expect("defaults");
    let expected = Settings::default();
    assert_eq!(defaults.idempotency, expected.idempotency);
    assert_eq!(
        (defaults.listen, defaults.lock_ttl, defaults.request_timeout),
        (expected.listen, expected.lock_ttl, expected.request_timeout)
    );
    assert_eq!(defaults.auth, expected.auth);
    assert!(ServeArgs::from_env_map([("LOCK_TTL_MS", "soon")]).is_err());
}

#[test]
fn defaults_are_valid_and_unsafe_relations_are_refused() {
    assert_eq!(Settings::default().validate(), Ok(()));
    let mut s = Settings::default();
    s.idempotency.lease = s.request_timeout;
    assert!(s.validate().is_err());
    let mut s = Settings::default();
    s.idempotency.lease = Duration::from_secs(200);
    assert!(
        s.validate().is_err(),
        "lease longer than the derived-key retention"
    );
    let s = Settings {
        lock_ttl: Duration::from_millis(u64::MAX),
        ..Settings::default()
    };
    assert!(s.validate().is_err(), "a lock TTL Redis would refuse");
    let s = Settings {
        lock_ttl: Duration::ZERO,
        ..Settings::default()
    };
    assert!(s.validate().is_err(), "a lock that never holds");
}
