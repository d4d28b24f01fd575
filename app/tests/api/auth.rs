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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_valid_yet_is_refused_and_writes_nothing() {
    let app =
        jwt_app(|a| a.public_key_pem = Some(format!("{FIXTURES}/jwt-rsa-public.pem").into())).await;
    let key = fixture("jwt-rsa-private.pem");
    let now = jsonwebtoken::get_current_timestamp();
    let mut tomorrow = claims("alice", 2 * 86_400);
    tomorrow["nbf"] = json!(now + 86_400);
    let r = book_as(
        &app,
        Some(&token(&key, None, tomorrow)),
        json!({"resourceId": "room_A", "date": "2027-07-01"}),
        "nbf1",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.code(), "UNAUTHENTICATED");
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not valid yet"),
        "{}",
        r.body
    );
    let mut garbage = claims("alice", 600);
    garbage["nbf"] = json!("garbage");
    let r = book_as(
        &app,
        Some(&token(&key, None, garbage)),
        json!({"resourceId": "room_A", "date": "2027-07-01"}),
        "nbf2",
    )
    .await;
    assert_eq!(r.code(), "UNAUTHENTICATED", "{}", r.body);
    assert_eq!(app.count_rows().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_audiences_and_auth0_subjects_book_list_and_cancel() {
    let app =
        jwt_app(|a| a.public_key_pem = Some(format!("{FIXTURES}/jwt-rsa-public.pem").into())).await;
    let key = fixture("jwt-rsa-private.pem");
    let subject = "google-oauth2|109876543210987654321";
    let mut keycloak_style = claims(subject, 600);
    keycloak_style["aud"] = json!([AUDIENCE, "account"]);
    let t = token(&key, None, keycloak_style);
    let booked = book_as(
        &app,
        Some(&t),
        json!({"resourceId": "room_A", "date": "2027-07-02"}),
        "sub1",
    )
    .await;
    assert_eq!(booked.status, 201, "{}", booked.body);
    assert_eq!(booked.json["booking"]["userId"], subject);
    // The subject in a path, percent-encoded as any client does.
    let listed = get_as(
        &app,
        &t,
        "/api/bookings/google-oauth2%7C109876543210987654321",
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json["bookings"].as_array().map(Vec::len), Some(1));
    let id = booked.booking_id();
    let cancelled = cancel_as(&app, &t, &id, json!({ "userId": subject })).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
}

/// A cancel needs no body when the token says who asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_a_cancel_needs_no_body() {
    let app = dev_app().await;
    let alice = dev_token(&app, "alice").await;
    let booked = book_as(
        &app,
        Some(&alice),
        json!({"resourceId": "room_D", "date": "2027-07-03"}),
        "nb",
    )
    .await;
    let id = booked.booking_id();
    let bare = || {
        app.client
            .patch(app.url(&format!("/api/bookings/{id}/cancel")))
            .bearer_auth(&alice)
    };
    let r = Reply::read(bare().send().await.expect("PATCH")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["booking"]["status"], "cancelled");
    // Again, idempotent; a body that is there must still be JSON.
    let r = Reply::read(bare().send().await.expect("PATCH")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Reply::read(bare().body("userId=alice").send().await.expect("PATCH")).await;
    assert_eq!(r.code(), "VALIDATION_FAILED", "{}", r.body);
    // An empty body declared as JSON is as empty as none.
    let typed = bare()
        .header("content-type", "application/json")
        .header("content-length", "0");
    let r = Reply::read(typed.send().await.expect("PATCH")).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Without auth the body says who asks: leaving it out is a missing userId.
    let open = spawn_app_with(Backend::Embedded, |_| {}).await;
    let r = Reply::read(
        open.client
            .patch(open.url(&format!("/api/bookings/{id}/cancel")))
            .send()
            .await
            .expect("PATCH"),
    )
    .await;
    assert_eq!(r.code(), "VALIDATION_FAILED", "{}", r.body);
    assert!(r.body.contains("userId"), "{}", r.body);
}

/// A JWKS endpoint that can be made to hang, counting its fetches.
struct HangingIdp {
    url: String,
    hang: std::sync::Arc<std::sync::atomic::AtomicBool>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HangingIdp {
    async fn start() -> HangingIdp {
        use std::sync::atomic::Ordering;
        let jwks: Value = serde_json::from_slice(&fixture("jwks.json")).expect("jwks");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hang = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (h, f) = (hang.clone(), fetches.clone());
        let idp = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (h, f, jwks) = (h.clone(), f.clone(), jwks.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    if h.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    axum::Json(jwks)
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, idp).await;
        });
        HangingIdp {
            url: format!("http://{addr}/jwks"),
            hang,
            fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One made-up `kid` while the provider hangs: signed-in requests with a
/// known key go on being answered at once; the refresh is single-flight
/// and made-up ids cannot start another for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_key_refresh_does_not_stall_signed_in_requests() {
    let idp = HangingIdp::start().await;
    let app = jwt_app(|a| a.jwks_url = Some(idp.url.clone())).await;
    let key = fixture("jwt-rsa-private.pem");
    let good = token(&key, Some("test-key-1"), claims("carol", 600));
    assert_eq!(get_as(&app, &good, "/api/bookings/carol").await.status, 200);
    assert_eq!(idp.fetches(), 1, "fetched once at start");

    idp.hang.store(true, std::sync::atomic::Ordering::SeqCst);
    let forged = token(&key, Some("made-up"), claims("mallory", 600));
    let stuck = {
        let (client, url, forged) = (
            app.client.clone(),
            app.url("/api/bookings/mallory"),
            forged.clone(),
        );
        tokio::spawn(async move { client.get(url).bearer_auth(forged).send().await })
    };
    for _ in 0..300 {
        if idp.fetches() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(idp.fetches(), 2, "the made-up kid started a refresh");

    let mut took = Vec::new();
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let r = get_as(&app, &good, "/api/bookings/carol").await;
        took.push(started.elapsed());
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert!(!stuck.is_finished(), "the refresh is still stuck");
    took.sort();
    let (median, max) = (took[took.len() / 2], took[took.len() - 1]);
    println!("valid-token requests while the refresh hung: median {median:?}, max {max:?}");
    assert!(median < Duration::from_millis(100), "median {median:?}");
    assert!(max < Duration::from_secs(1), "max {max:?}");

    // More made-up ids: refused, and no second fetch while one is recent.
    let r = stuck.await.expect("task").expect("answer");
    assert_eq!(r.status(), 401);
    for n in 0..10 {
        let t = token(&key, Some(&format!("forged-{n}")), claims("mallory", 600));
        assert_eq!(
            get_as(&app, &t, "/api/bookings/mallory").await.code(),
            "UNAUTHENTICATED"
        );
    }
    assert_eq!(idp.fetches(), 2, "made-up ids cost the provider one fetch");
}
