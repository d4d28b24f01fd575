//! `--auth jwt` against a real OpenID Connect provider the test starts
//! itself (npm's `oidc-provider`, `booking_infra::OidcProvider`): the
//! service is configured with the issuer alone (keys by OIDC discovery)
//! and verifies RS256 access tokens it did not mint, issued by the client
//! credentials grant, with a Keycloak-style audience array and Auth0-style
//! subjects; a key rotated at the provider is picked up without a restart.

use booking::auth::{AuthMode, AuthSettings};
use booking_infra::{OidcOptions, OidcProvider};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, Reply, TestApp};

const AUDIENCE: &str = "booking-api";
const AUTH0_USER: &str = "auth0|64f0c2d9e1b2a3c4d5e6f701";

async fn provider() -> OidcProvider {
    OidcProvider::start(OidcOptions {
        audience: vec![AUDIENCE.into(), "account".into()],
        ..OidcOptions::default()
    })
    .await
    .expect("the test OpenID provider starts")
}

async fn app_trusting(backend: Backend, idp: &OidcProvider) -> TestApp {
    let issuer = idp.issuer();
    spawn_app_with(backend, |s| {
        s.auth = AuthSettings {
            mode: AuthMode::Jwt,
            issuer: Some(issuer),
            audience: Some(AUDIENCE.into()),
            ..s.auth.clone()
        };
    })
    .await
}

async fn send(token: &str, req: reqwest::RequestBuilder) -> Reply {
    Reply::read(req.bearer_auth(token).send().await.expect("request")).await
}

async fn book(app: &TestApp, token: &str, key: &str, body: Value) -> Reply {
    let req = app
        .client
        .post(app.url("/api/bookings"))
        .header("Idempotency-Key", key)
        .json(&body);
    send(token, req).await
}

async fn oidc_tokens_book_replay_list_and_cancel(backend: Backend) {
    let idp = provider().await;
    let app = app_trusting(backend, &idp).await;
    let alice = idp.token("user_alice").await.expect("token");
    let auth0 = idp.token(AUTH0_USER).await.expect("token");

    let slot = json!({"resourceId": "room_A", "date": "2027-08-01"});
    let first = book(&app, &alice, "oidc-1", slot.clone()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.json["booking"]["userId"], "user_alice");
    let replay = book(&app, &alice, "oidc-1", slot.clone()).await;
    assert_eq!(
        (replay.status, replay.replayed),
        (201, true),
        "{}",
        replay.body
    );
    assert_eq!(replay.body, first.body);

    // Another provider user: the slot is taken, its own slot is not.
    let taken = book(&app, &auth0, "oidc-2", slot.clone()).await;
    assert_eq!(taken.code(), "ALREADY_BOOKED", "{}", taken.body);
    let own = book(
        &app,
        &auth0,
        "oidc-3",
        json!({"resourceId": "room_B", "date": "2027-08-01"}),
    )
    .await;
    assert_eq!(own.status, 201, "{}", own.body);
    assert_eq!(own.json["booking"]["userId"], AUTH0_USER);

    // Acting for someone else: 403, whatever the provider vouches for.
    let forged = book(
        &app,
        &auth0,
        "oidc-4",
        json!({"userId": "user_alice", "resourceId": "room_C", "date": "2027-08-01"}),
    )
    .await;
    assert_eq!(forged.code(), "FORBIDDEN", "{}", forged.body);
    let listed = send(
        &auth0,
        app.client
            .get(app.url("/api/bookings/auth0%7C64f0c2d9e1b2a3c4d5e6f701")),
    )
    .await;
    assert_eq!(listed.json["bookings"].as_array().map(Vec::len), Some(1));
    let snooping = send(&auth0, app.client.get(app.url("/api/bookings/user_alice"))).await;
    assert_eq!(snooping.code(), "FORBIDDEN");

    // A cancel with no body: the token says who asks.
    let id = own.booking_id();
    let cancel = app
        .client
        .patch(app.url(&format!("/api/bookings/{id}/cancel")));
    let cancelled = send(&auth0, cancel).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json["booking"]["status"], "cancelled");

    let none = Reply::read(
        app.client
            .get(app.url("/api/bookings/user_alice"))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(none.code(), "UNAUTHENTICATED");
    assert_eq!(app.count_rows().await, 2);
}

async fn a_key_rotated_at_the_provider_is_picked_up_without_a_restart(backend: Backend) {
    let mut idp = provider().await;
    let app = app_trusting(backend, &idp).await;
    let before = idp.token("user_bob").await.expect("token");
    let list = || app.client.get(app.url("/api/bookings/user_bob"));
    assert_eq!(send(&before, list()).await.status, 200);

    idp.rotate_keys().await.expect("rotation");
    let after = idp.token("user_bob").await.expect("token");
    let r = send(&after, list()).await;
    assert_eq!(r.status, 200, "a token signed with the new key: {}", r.body);
    // The rotation withdrew the old key: its tokens are refused now.
    let r = send(&before, list()).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.code(), "UNAUTHENTICATED");
}

crate::suite!(
    oidc_tokens_book_replay_list_and_cancel,
    a_key_rotated_at_the_provider_is_picked_up_without_a_restart,
);
