//! Who is asking: `--auth dev` and `--auth jwt` (PEM key and JWKS URL),
//! over real HTTP. A token's subject is the only user a request may act for.

use std::time::Duration;

use booking::auth::{AuthMode, AuthSettings};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, Reply, TestApp};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/fixtures");
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "booking";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

async fn dev_app() -> TestApp {
    spawn_app_with(Backend::Embedded, |s| {
        s.auth = AuthSettings {
            mode: AuthMode::Dev,
            dev_secret: Some("a-dev-secret-that-is-long-enough-for-hs256".into()),
            ..s.auth.clone()
        };
    })
    .await
}

async fn dev_token(app: &TestApp, user: &str) -> String {
    let r: Value = app
        .client
        .post(app.url("/api/auth/dev-token"))
        .json(&json!({ "userId": user }))
        .send()
        .await
        .expect("dev token")
        .json()
        .await
        .expect("json");
    r["token"].as_str().expect("token").to_owned()
}

async fn book_as(app: &TestApp, token: Option<&str>, body: Value, key: &str) -> Reply {
    let mut req = app
        .client
        .post(app.url("/api/bookings"))
        .header("Idempotency-Key", key)
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Reply::read(req.send().await.expect("POST")).await
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> Reply {
    Reply::read(
        app.client
            .get(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET"),
    )
    .await
}

async fn cancel_as(app: &TestApp, token: &str, id: &str, body: Value) -> Reply {
    Reply::read(
        app.client
            .patch(app.url(&format!("/api/bookings/{id}/cancel")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("PATCH"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_nothing_is_booked_and_the_answer_says_why() {
    let app = dev_app().await;
    let r = book_as(
        &app,
        None,
        json!({"userId": "alice", "resourceId": "room_A", "date": "2027-03-01"}),
        "k",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.code(), "UNAUTHENTICATED");
    assert_eq!(r.content_type, "application/problem+json");
    let r = book_as(
        &app,
        Some("not.a.jwt"),
        json!({"resourceId": "room_A", "date": "2027-03-01"}),
        "k",
    )
    .await;
    assert_eq!(r.code(), "UNAUTHENTICATED");
    assert!(app.count_rows().await == 0);
    let config: Value = app.get("/api/auth/config").await.json;
    assert_eq!(config["mode"], "dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_acts_for_its_subject_only() {
    let app = dev_app().await;
    let alice = dev_token(&app, "alice").await;
    let bob = dev_token(&app, "bob").await;

    // userId may be left out: the principal books.
    let mine = book_as(
        &app,
        Some(&alice),
        json!({"resourceId": "room_A", "date": "2027-03-01"}),
        "k1",
    )
    .await;
    assert_eq!(mine.status, 201, "{}", mine.body);
    assert_eq!(mine.json["booking"]["userId"], "alice");

    // A forged subject: bob's token, alice's name.
    let forged = book_as(
        &app,
        Some(&bob),
        json!({"userId": "alice", "resourceId": "room_B", "date": "2027-03-01"}),
        "k2",
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(forged.code(), "FORBIDDEN");
    // Replaying alice's stored answer with her key and payload: refused too.
    let replay = book_as(
        &app,
        Some(&bob),
        json!({"userId": "alice", "resourceId": "room_A", "date": "2027-03-01"}),
        "k1",
    )
    .await;
    assert_eq!(replay.code(), "FORBIDDEN");
    // Bob's own use of the same key is his own scope: no 422, no squatting.
    let own = book_as(
        &app,
        Some(&bob),
        json!({"resourceId": "room_C", "date": "2027-03-01"}),
        "k1",
    )
    .await;
    assert_eq!(own.status, 201, "{}", own.body);
    assert_eq!(app.count_rows().await, 2);

    // Lists and cancels: only one's own.
    assert_eq!(
        get_as(&app, &bob, "/api/bookings/alice").await.code(),
        "FORBIDDEN"
    );
    let listed = get_as(&app, &alice, "/api/bookings/alice").await;
    assert_eq!(listed.json["bookings"].as_array().map(Vec::len), Some(1));
    let id = mine.booking_id();
    assert_eq!(
        cancel_as(&app, &bob, &id, json!({"userId": "alice"}))
            .await
            .code(),
        "FORBIDDEN"
    );
    assert_eq!(
        cancel_as(&app, &bob, &id, json!({})).await.code(),
        "NOT_FOUND"
    );
    let cancelled = cancel_as(&app, &alice, &id, json!({})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_the_dev_token_endpoint_does_not_exist() {
    let app = spawn_app_with(Backend::Embedded, |_| {}).await;
    let r = Reply::read(
        app.client
            .post(app.url("/api/auth/dev-token"))
            .json(&json!({"userId": "alice"}))
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(app.get("/api/auth/config").await.json["mode"], "none");
}

fn token(key: &[u8], kid: Option<&str>, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key).expect("key"),
    )
    .expect("sign")
}

fn claims(sub: &str, exp_in_secs: i64) -> Value {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now + exp_in_secs, "iat": now})
}

async fn jwt_app(configure: impl FnOnce(&mut AuthSettings)) -> TestApp {
    spawn_app_with(Backend::Embedded, |s| {
        let mut auth = AuthSettings {
            mode: AuthMode::Jwt,
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            leeway: Duration::from_secs(5),
            ..AuthSettings::default()
        };
        configure(&mut auth);
        s.auth = auth;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_are_checked_for_signature_expiry_issuer_audience_and_algorithm() {
    let app =
        jwt_app(|a| a.public_key_pem = Some(format!("{FIXTURES}/jwt-rsa-public.pem").into())).await;
    let key = fixture("jwt-rsa-private.pem");
    let body = |date: &str| json!({"resourceId": "room_A", "date": date});

    let good = token(&key, None, claims("alice", 600));
    let r = book_as(&app, Some(&good), body("2027-04-01"), "a").await;
    assert_eq!(r.status, 201, "{}", r.body);

    let mut refused = Vec::new();
    refused.push(("expired", token(&key, None, claims("alice", -60))));
    let mut other_audience = claims("alice", 600);
    other_audience["aud"] = json!("another-service");
    refused.push(("other audience", token(&key, None, other_audience)));
    let mut other_issuer = claims("alice", 600);
    other_issuer["iss"] = json!("https://evil.test");
    refused.push(("other issuer", token(&key, None, other_issuer)));
    refused.push((
        "untrusted key",
        token(
            &fixture("other-rsa-private.pem"),
            None,
            claims("alice", 600),
        ),
    ));
    // Algorithm confusion: HS256 signed with the public key as the secret.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("alice", 600),
        &EncodingKey::from_secret(&fixture("jwt-rsa-public.pem")),
    )
    .expect("sign");
    refused.push(("HS256 with the public key", confused));
    let mut no_subject = claims("alice", 600);
    no_subject.as_object_mut().expect("object").remove("sub");
    refused.push(("no subject", token(&key, None, no_subject)));
    for (n, (what, t)) in refused.iter().enumerate() {
        let r = book_as(
            &app,
            Some(t),
            body(&format!("2027-05-{:02}", n + 1)),
            &format!("r{n}"),
        )
        .await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.code(), "UNAUTHENTICATED", "{what}");
    }
    assert_eq!(app.count_rows().await, 1, "no refused token wrote anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_keys_come_from_a_jwks_url_by_key_id() {
    let jwks: Value = serde_json::from_slice(&fixture("jwks.json")).expect("jwks");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let idp = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || async move { axum::Json(jwks.clone()) }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, idp).await;
    });
    let app = jwt_app(|a| a.jwks_url = Some(format!("http://{addr}/.well-known/jwks.json"))).await;
    let key = fixture("jwt-rsa-private.pem");
    let good = token(&key, Some("test-key-1"), claims("carol", 600));
    let r = book_as(
        &app,
        Some(&good),
        json!({"resourceId": "room_B", "date": "2027-06-01"}),
        "j",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json["booking"]["userId"], "carol");
    let unknown = token(&key, Some("rotated-away"), claims("carol", 600));
    let r = book_as(
        &app,
        Some(&unknown),
        json!({"resourceId": "room_B", "date": "2027-06-02"}),
        "j2",
    )
    .await;
    assert_eq!(r.code(), "UNAUTHENTICATED", "{}", r.body);
}
