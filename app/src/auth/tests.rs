use super::*;

fn user(s: &str) -> UserId {
    UserId::parse(s).expect("valid")
}

#[test]
fn a_claimed_user_must_be_the_principal() {
    let alice = Some(user("alice"));
    assert_eq!(acting_user(&alice, None), Ok(Some(user("alice"))));
    assert_eq!(
        acting_user(&alice, Some(user("alice"))),
        Ok(Some(user("alice")))
    );
    assert_eq!(acting_user(&alice, Some(user("bob"))), Err(Forbidden));
    assert_eq!(acting_user(&None, Some(user("bob"))), Ok(Some(user("bob"))));
    assert_eq!(acting_user(&None, None), Ok(None));
}

#[tokio::test]
async fn dev_tokens_verify_and_forgeries_do_not() {
    let settings = AuthSettings {
        mode: AuthMode::Dev,
        dev_secret: Some("x".repeat(40)),
        ..AuthSettings::default()
    };
    let auth = Authenticator::from_settings(&settings).await.expect("auth");
    let (token, _) = auth.mint_dev_token(&user("alice")).expect("token");
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    assert_eq!(auth.principal(&headers).await, Ok(Some(user("alice"))));

    let other = Authenticator::from_settings(&AuthSettings {
        dev_secret: Some("y".repeat(40)),
        ..settings.clone()
    })
    .await
    .expect("auth");
    assert_eq!(
        other.principal(&headers).await,
        Err(AuthError::Invalid("bad signature"))
    );
    assert_eq!(
        auth.principal(&HeaderMap::new()).await,
        Err(AuthError::Missing)
    );
    headers.insert(
        "authorization",
        "Bearer not.a.token".parse().expect("header"),
    );
    assert!(matches!(
        auth.principal(&headers).await,
        Err(AuthError::Invalid(_))
    ));
}

const SECRET: &str = "a-dev-secret-that-is-long-enough-for-hs256";

async fn dev_auth() -> Arc<Authenticator> {
    Authenticator::from_settings(&AuthSettings {
        mode: AuthMode::Dev,
        dev_secret: Some(SECRET.into()),
        leeway: Duration::from_secs(30),
        ..AuthSettings::default()
    })
    .await
    .expect("auth")
}

/// A token signed with the dev secret, with these claims over valid defaults.
fn signed(claims: serde_json::Value) -> HeaderMap {
    let now = jsonwebtoken::get_current_timestamp();
    let mut all = serde_json::json!({
        "sub": "alice", "iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "exp": now + 600,
    });
    for (k, v) in claims.as_object().expect("object") {
        all[k] = v.clone();
    }
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &all,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {token}").parse().expect("header");
    headers.insert("authorization", value);
    headers
}

#[tokio::test]
async fn nbf_is_checked_with_the_leeway_and_must_be_a_number() {
    let auth = dev_auth().await;
    let now = jsonwebtoken::get_current_timestamp();
    let tomorrow = signed(serde_json::json!({ "nbf": now + 86_400 }));
    assert_eq!(
        auth.principal(&tomorrow).await,
        Err(AuthError::Invalid("not valid yet (nbf)"))
    );
    let beyond_leeway = signed(serde_json::json!({ "nbf": now + 120 }));
    assert!(auth.principal(&beyond_leeway).await.is_err());
    let within_leeway = signed(serde_json::json!({ "nbf": now + 10 }));
    assert_eq!(
        auth.principal(&within_leeway).await,
        Ok(Some(user("alice")))
    );
    let fractional = signed(serde_json::json!({ "nbf": (now - 10) as f64 + 0.5 }));
    assert_eq!(auth.principal(&fractional).await, Ok(Some(user("alice"))));
    for garbage in [
        serde_json::json!("garbage"),
        serde_json::json!(-5),
        serde_json::json!(null),
    ] {
        let r = auth
            .principal(&signed(serde_json::json!({ "nbf": garbage })))
            .await;
        assert!(
            matches!(r, Err(AuthError::Invalid(_))),
            "nbf {garbage}: {r:?}"
        );
    }
    let iat = signed(serde_json::json!({ "iat": "yesterday" }));
    assert!(auth.principal(&iat).await.is_err());
    // Beyond what `jsonwebtoken` compares: refused, not skipped.
    for huge in [serde_json::json!(1e20), serde_json::json!(1e300)] {
        let r = auth
            .principal(&signed(serde_json::json!({ "nbf": huge })))
            .await;
        assert!(r.is_err(), "nbf {huge} was accepted");
    }
}

#[tokio::test]
async fn the_issuer_is_one_string_and_one_authorization_header_is_read() {
    let auth = dev_auth().await;
    let both = signed(serde_json::json!({ "iss": [DEV_ISSUER, "https://evil"] }));
    assert_eq!(
        auth.principal(&both).await,
        Err(AuthError::Invalid("wrong issuer"))
    );
    let alone = signed(serde_json::json!({ "iss": [DEV_ISSUER] }));
    assert!(auth.principal(&alone).await.is_err());
    let mut twice = signed(serde_json::json!({}));
    assert_eq!(auth.principal(&twice).await, Ok(Some(user("alice"))));
    twice.append("authorization", "Bearer junk".parse().expect("header"));
    assert_eq!(
        auth.principal(&twice).await,
        Err(AuthError::Invalid("more than one Authorization header"))
    );
}

#[tokio::test]
async fn a_private_key_or_a_huge_leeway_is_refused_at_start() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/fixtures");
    let private = AuthSettings {
        mode: AuthMode::Jwt,
        public_key_pem: Some(format!("{fixtures}/jwt-rsa-private.pem").into()),
        issuer: Some("https://idp".into()),
        audience: Some("booking".into()),
        ..AuthSettings::default()
    };
    let refused = Authenticator::from_settings(&private).await.err();
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("private key")),
        "{refused:?}"
    );
    let dev = AuthSettings {
        mode: AuthMode::Dev,
        leeway: Duration::from_secs(100_000_000),
        ..AuthSettings::default()
    };
    assert!(
        dev.validate().is_err(),
        "the leeway bound holds in every mode"
    );
}

#[tokio::test]
async fn the_audience_may_be_a_string_or_an_array_holding_ours() {
    let auth = dev_auth().await;
    for aud in [
        serde_json::json!("booking"),
        serde_json::json!(["booking"]),
        serde_json::json!(["account", "booking"]),
    ] {
        let r = auth
            .principal(&signed(serde_json::json!({ "aud": aud })))
            .await;
        assert_eq!(r, Ok(Some(user("alice"))), "aud {aud}");
    }
    for aud in [
        serde_json::json!("account"),
        serde_json::json!(["account", "other"]),
        serde_json::json!([]),
    ] {
        let r = auth
            .principal(&signed(serde_json::json!({ "aud": aud })))
            .await;
        assert!(r.is_err(), "aud {aud} was accepted");
    }
}

#[tokio::test]
async fn subjects_of_common_identity_providers_are_users() {
    let auth = dev_auth().await;
    for sub in [
        "auth0|64f0c2d9e1b2a3c4d5e6f701",       // Auth0, database user
        "google-oauth2|109876543210987654321",  // Auth0, social login
        "samlp|acme|jane.doe@example.com",      // Auth0, enterprise
        "f47ac10b-58cc-4372-a567-0e02b2c3d479", // Keycloak, Cognito
        "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", // Entra ID (pairwise sub)
        "109876543210987654321",                // Google
        "00u1a2b3c4D5e6F7g8h9",                 // Okta
    ] {
        let r = auth
            .principal(&signed(serde_json::json!({ "sub": sub })))
            .await;
        assert_eq!(r, Ok(Some(user(sub))), "sub {sub}");
    }
    for sub in [
        "alice bob",
        "a/b",
        "a%2Fb",
        "x'; DROP TABLE bookings;--",
        "*",
        "",
    ] {
        let r = auth
            .principal(&signed(serde_json::json!({ "sub": sub })))
            .await;
        assert!(
            matches!(r, Err(AuthError::Invalid(_))),
            "sub {sub:?}: {r:?}"
        );
    }
    let r = auth
        .principal(&signed(serde_json::json!({ "sub": 42 })))
        .await;
    assert!(r.is_err(), "a number is not a user id");
}

#[tokio::test]
async fn another_claim_may_name_the_user() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/fixtures");
    let auth = Authenticator::from_settings(&AuthSettings {
        mode: AuthMode::Jwt,
        public_key_pem: Some(format!("{fixtures}/jwt-rsa-public.pem").into()),
        issuer: Some("https://login.microsoftonline.com/tenant/v2.0".into()),
        audience: Some("api://booking".into()),
        user_claim: "oid".into(),
        ..AuthSettings::default()
    })
    .await
    .expect("auth");
    let private = std::fs::read(format!("{fixtures}/jwt-rsa-private.pem")).expect("key");
    let now = jsonwebtoken::get_current_timestamp();
    let sign = |claims: serde_json::Value| {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_pem(&private).expect("key"),
        )
        .expect("sign");
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {token}").parse().expect("header");
        headers.insert("authorization", value);
        headers
    };
    let entra = serde_json::json!({
        "iss": "https://login.microsoftonline.com/tenant/v2.0", "aud": "api://booking",
        "exp": now + 600, "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
    });
    assert_eq!(
        auth.principal(&sign(entra.clone())).await,
        Ok(Some(user("00000000-0000-0000-66f3-3332eca7ea81")))
    );
    let mut without = entra;
    without.as_object_mut().expect("object").remove("oid");
    assert!(auth.principal(&sign(without)).await.is_err());
}

#[test]
fn jwt_mode_needs_an_issuer_an_audience_and_at_most_one_key_source() {
    let s = AuthSettings {
        mode: AuthMode::Jwt,
        ..AuthSettings::default()
    };
    assert!(s.validate().is_err());
    let s = AuthSettings {
        issuer: Some("https://idp".into()),
        audience: Some("booking".into()),
        ..s
    };
    assert!(s.validate().is_ok(), "the issuer alone: discovery");
    let not_a_url = AuthSettings {
        issuer: Some("idp".into()),
        ..s.clone()
    };
    assert!(not_a_url.validate().is_err(), "nothing to discover from");
    let with_jwks = AuthSettings {
        jwks_url: Some("https://idp/jwks".into()),
        ..s.clone()
    };
    assert!(with_jwks.validate().is_ok());
    let both = AuthSettings {
        public_key_pem: Some("/k.pem".into()),
        ..with_jwks
    };
    assert!(both.validate().is_err());
}
