use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/fixtures");

fn fixture(name: &str) -> serde_json::Value {
    let raw = std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture");
    serde_json::from_slice(&raw).expect("json")
}

/// A provider's JWKS endpoint whose key set can be swapped, that counts
/// its fetches, and that can be made to hang.
#[derive(Clone)]
struct Provider {
    jwks: Arc<Mutex<serde_json::Value>>,
    fetches: Arc<AtomicUsize>,
    hang: Arc<AtomicBool>,
    url: String,
}

impl Provider {
    async fn start() -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let provider = Provider {
            jwks: Arc::new(Mutex::new(fixture("jwks.json"))),
            fetches: Arc::default(),
            hang: Arc::default(),
            url: format!("http://{addr}/jwks"),
        };
        let p = provider.clone();
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let p = p.clone();
                async move {
                    p.fetches.fetch_add(1, Ordering::SeqCst);
                    if p.hang.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    let doc = p.jwks.lock().expect("jwks").clone();
                    axum::Json(doc)
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        provider
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn naming(kid: &str) -> Header {
    Header {
        kid: Some(kid.into()),
        ..Header::new(Algorithm::RS256)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_refresh_never_delays_a_known_key() {
    let idp = Provider::start().await;
    let keys = RemoteKeys::start(KeySource::Jwks(idp.url.clone()), Duration::from_secs(3600))
        .await
        .expect("keys");
    idp.hang.store(true, Ordering::SeqCst);
    let stuck = tokio::spawn({
        let keys = keys.clone();
        async move { keys.key_for(&naming("made-up")).await.map(|_| ()) }
    });
    for _ in 0..200 {
        if idp.fetches() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(idp.fetches(), 2, "the made-up kid started a refresh");
    let started = Instant::now();
    for _ in 0..100 {
        assert!(keys.key_for(&naming("test-key-1")).await.is_ok());
    }
    let took = started.elapsed();
    assert!(!stuck.is_finished(), "the refresh is still stuck");
    assert!(
        took < Duration::from_secs(1),
        "100 lookups of a known key took {took:?} while a refresh hung"
    );
    // The stuck fetch times out; the refused kid stays refused.
    let outcome = stuck.await.expect("task");
    assert_eq!(outcome, Err(AuthError::UnknownKey));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_key_ids_cost_the_provider_one_fetch_per_interval() {
    let idp = Provider::start().await;
    let keys = RemoteKeys::start(KeySource::Jwks(idp.url.clone()), Duration::from_secs(3600))
        .await
        .expect("keys");
    for n in 0..50 {
        let r = keys.key_for(&naming(&format!("forged-{n}"))).await;
        assert_eq!(r.map(|_| ()), Err(AuthError::UnknownKey));
    }
    assert_eq!(
        idp.fetches(),
        2,
        "the start, then one refresh for 50 made-up ids"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_found_and_a_withdrawn_one_dropped_without_a_restart() {
    let idp = Provider::start().await;
    let keys = RemoteKeys::start(KeySource::Jwks(idp.url.clone()), Duration::from_secs(1))
        .await
        .expect("keys");
    assert!(keys.key_for(&naming("test-key-1")).await.is_ok());
    *idp.jwks.lock().expect("jwks") = fixture("jwks-rotated.json");
    // The new key is fetched when a token first names it.
    assert!(keys.key_for(&naming("test-key-2")).await.is_ok());
    // The withdrawn one goes with the next background refresh.
    let mut withdrawn = false;
    for _ in 0..50 {
        if keys.snapshot().lookup(&naming("test-key-1")).is_none() {
            withdrawn = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        withdrawn,
        "test-key-1 is still trusted after its withdrawal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_the_keys_and_insists_on_the_exact_issuer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let issuer = format!("http://{addr}/realms/booking");
    let doc = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("http://{addr}/realms/booking/certs"),
    });
    let app = axum::Router::new()
        .route(
            "/realms/booking/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(doc) }),
        )
        .route(
            "/realms/booking/certs",
            axum::routing::get(|| async { axum::Json(fixture("jwks.json")) }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let hour = Duration::from_secs(3600);
    let keys = RemoteKeys::start(
        KeySource::Discovery {
            issuer: issuer.clone(),
        },
        hour,
    )
    .await
    .expect("discovered");
    assert!(keys.key_for(&naming("test-key-1")).await.is_ok());
    // The same provider, configured with a trailing slash: not its issuer.
    let refused = RemoteKeys::start(
        KeySource::Discovery {
            issuer: format!("{issuer}/"),
        },
        hour,
    )
    .await
    .err()
    .expect("a different issuer is refused");
    assert!(refused.contains("names the issuer"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_service_cannot_use_are_skipped_not_the_whole_set() {
    let idp = Provider::start().await;
    let mut doc = fixture("jwks.json");
    let keys = doc["keys"].as_array_mut().expect("keys");
    keys.push(serde_json::json!({
        "kty": "EC", "kid": "p521", "use": "sig", "alg": "ES512", "crv": "P-521",
        "x": "AQ", "y": "AQ",
    }));
    keys.push(serde_json::json!({
        "kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP-256", "n": "AQ", "e": "AQAB",
    }));
    keys.push(serde_json::json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" }));
    keys.push(serde_json::json!({ "kty": "RSA", "kid": "broken" }));
    *idp.jwks.lock().expect("jwks") = doc;
    let hour = Duration::from_secs(3600);
    let keys = RemoteKeys::start(KeySource::Jwks(idp.url.clone()), hour)
        .await
        .expect("the usable key is enough");
    assert!(keys.key_for(&naming("test-key-1")).await.is_ok());
    assert_eq!(keys.snapshot().keys.len(), 1);

    *idp.jwks.lock().expect("jwks") = serde_json::json!({ "keys": [
        { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
    ]});
    let refused = RemoteKeys::start(KeySource::Jwks(idp.url.clone()), hour)
        .await
        .err()
        .expect("no usable key: no start");
    assert!(refused.contains("no signing key"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_waited_for_a_failed_fetch_does_not_start_another() {
    let idp = Provider::start().await;
    let keys = RemoteKeys::start(KeySource::Jwks(idp.url.clone()), Duration::from_secs(1))
        .await
        .expect("keys");
    idp.hang.store(true, Ordering::SeqCst);
    // The background refresh is due within a second and will hang.
    for _ in 0..300 {
        if idp.fetches() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(idp.fetches(), 2, "the background refresh started");
    let started = Instant::now();
    let r = keys.key_for(&naming("rotated-in")).await;
    assert_eq!(r.map(|_| ()), Err(AuthError::UnknownKey));
    assert!(
        idp.fetches() == 2,
        "it waited for the background fetch, then started none of its own"
    );
    assert!(started.elapsed() < FETCH_TIMEOUT + Duration::from_secs(1));
}

#[test]
fn discovery_is_under_the_issuer_without_its_trailing_slash() {
    assert_eq!(
        discovery_url("https://tenant.auth0.com/"),
        "https://tenant.auth0.com/.well-known/openid-configuration"
    );
    assert_eq!(
        discovery_url("https://idp.example/realms/booking"),
        "https://idp.example/realms/booking/.well-known/openid-configuration"
    );
}
