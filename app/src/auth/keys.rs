//! An identity provider's signing keys (`--auth jwt` with a JWKS): fetched
//! at start, refreshed in the background and when a token names a key id
//! the service does not know yet (rotation), found by OIDC discovery when
//! only the issuer is configured.
//!
//! A refresh never stands in a request's way: the keys in use are an
//! immutable set behind a lock held only to clone an `Arc`; a fetch runs
//! with no lock on that set and swaps the new one in on success. Fetches
//! are single-flight (one mutex that only refreshes take) and those caused
//! by unknown key ids happen at most once per [`UNKNOWN_KID_REFETCH_MIN`]:
//! a stream of made-up `kid`s costs the provider one fetch per interval
//! and signed-in requests nothing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde::Deserialize;

use super::AuthError;

/// The least time between two fetches caused by unknown key ids.
pub(super) const UNKNOWN_KID_REFETCH_MIN: Duration = Duration::from_secs(30);
/// How long one fetch (discovery or key set) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest discovery document or key set read (real ones are a few KiB).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Where the keys come from.
#[derive(Debug, Clone)]
pub(super) enum KeySource {
    /// A JWKS URL given by the operator.
    Jwks(String),
    /// `<issuer>/.well-known/openid-configuration` names the JWKS; its
    /// `issuer` must be the configured one, character for character.
    Discovery { issuer: String },
}

/// One verification key, parsed once per fetch rather than per request.
struct Key {
    kid: Option<String>,
    key: (DecodingKey, Algorithm),
}

/// A JWKS as fetched: its keys are read one by one (see [`KeySet`]).
#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

/// A fetched key set, never changed in place.
#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// The signing keys of a JWKS document. Each key is read on its own:
    /// one the service cannot use (an encryption key, an algorithm or
    /// curve it does not verify) is skipped, not the whole set.
    fn from_document(doc: &JwksDocument, from: &str) -> KeySet {
        let mut keys = Vec::new();
        for raw in &doc.keys {
            let jwk = match serde_json::from_value::<Jwk>(raw.clone()) {
                Ok(jwk) => jwk,
                Err(e) => {
                    let kid = raw.get("kid").and_then(serde_json::Value::as_str);
                    tracing::debug!(kid, error = %e, from, "skipped a key the service cannot read");
                    continue;
                }
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            match decoding_key(&jwk) {
                Ok(key) => keys.push(Key {
                    kid: jwk.common.key_id.clone(),
                    key,
                }),
                Err(why) => {
                    let kid = jwk.common.key_id.as_deref();
                    tracing::debug!(kid, why, from, "skipped a key the service cannot use");
                }
            }
        }
        KeySet { keys }
    }

    /// `None`: no key by that id (maybe not fetched yet).
    fn lookup(&self, header: &Header) -> Option<Result<(DecodingKey, Algorithm), AuthError>> {
        let key = match &header.kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))?,
            None if self.keys.len() == 1 => &self.keys[0],
            None => return Some(Err(AuthError::Invalid("no key id (kid)"))),
        };
        Some(Ok(key.key.clone()))
    }
}

/// The key and its algorithm; HMAC keys are refused (a JWKS is public).
fn decoding_key(jwk: &Jwk) -> Result<(DecodingKey, Algorithm), &'static str> {
    let algorithm = match jwk.common.key_algorithm.map(|a| a.to_string()) {
        Some(a) => a.parse::<Algorithm>().ok(),
        // No `alg`: RSA keys verify RS256; EC keys the algorithm of their curve.
        None => match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => Some(Algorithm::ES256),
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => None,
            },
            _ => None,
        },
    };
    let algorithm = algorithm
        .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        .ok_or("the key's algorithm is not accepted")?;
    DecodingKey::from_jwk(jwk)
        .map(|k| (k, algorithm))
        .map_err(|_| "the signing key cannot be used")
}

/// The provider's keys and how to fetch them again.
pub(super) struct RemoteKeys {
    source: KeySource,
    http: reqwest::Client,
    current: RwLock<Arc<KeySet>>,
    /// Held by the one fetch in flight; remembers when the last fetch
    /// caused by an unknown key id started.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    /// Fetches finished so far: a request that waited for another's fetch
    /// takes its result rather than starting one of its own.
    fetches: std::sync::atomic::AtomicU64,
}

impl RemoteKeys {
    /// Fetches the keys once (the service does not start without them) and
    /// refreshes them every `interval` in the background, for as long as
    /// the returned value lives.
    pub(super) async fn start(
        source: KeySource,
        interval: Duration,
    ) -> Result<Arc<RemoteKeys>, String> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(redirect_policy())
            .build()
            .map_err(|e| e.to_string())?;
        let set = fetch(&http, &source).await?;
        tracing::info!(
            source = ?source,
            keys = set.keys.len(),
            refresh_secs = interval.as_secs(),
            "fetched the identity provider's signing keys"
        );
        let keys = Arc::new(RemoteKeys {
            source,
            http,
            current: RwLock::new(Arc::new(set)),
            refresh: tokio::sync::Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
        });
        tokio::spawn(refresh_periodically(Arc::downgrade(&keys), interval));
        Ok(keys)
    }

    fn snapshot(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(set) => set.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn swap(&self, set: KeySet) {
        let set = Arc::new(set);
        match self.current.write() {
            Ok(mut current) => *current = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }

    /// The key a token names. A known key never waits; an unknown one
    /// waits for the fetch in flight, or starts one if none started in
    /// the last [`UNKNOWN_KID_REFETCH_MIN`].
    pub(super) async fn key_for(
        &self,
        header: &Header,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let Some(found) = self.snapshot().lookup(header) {
            return found;
        }
        let before = self.fetches.load(Ordering::SeqCst);
        let mut last = self.refresh.lock().await;
        // The fetch this request waited for may have brought the key; if it
        // did not, another would not either.
        if let Some(found) = self.snapshot().lookup(header) {
            return found;
        }
        let waited_for_one = self.fetches.load(Ordering::SeqCst) != before;
        if waited_for_one || last.is_some_and(|t| t.elapsed() < UNKNOWN_KID_REFETCH_MIN) {
            return Err(AuthError::UnknownKey);
        }
        *last = Some(Instant::now());
        self.fetch_and_swap().await;
        drop(last);
        self.snapshot()
            .lookup(header)
            .unwrap_or(Err(AuthError::UnknownKey))
    }

    /// One fetch; on failure the keys in use stay.
    async fn fetch_and_swap(&self) {
        match fetch(&self.http, &self.source).await {
            Ok(set) => self.swap(set),
            Err(e) => tracing::warn!(error = %e, "could not refresh the identity provider's keys"),
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
    }
}

/// The background refresh: picks up rotated keys and drops withdrawn ones
/// without waiting for a token to name them. Ends with its `RemoteKeys`.
async fn refresh_periodically(keys: Weak<RemoteKeys>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(keys) = keys.upgrade() else { return };
        let _single_flight = keys.refresh.lock().await;
        keys.fetch_and_swap().await;
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Discovery (if any) and the key set, within [`FETCH_TIMEOUT`] in all.
async fn fetch(http: &reqwest::Client, source: &KeySource) -> Result<KeySet, String> {
    match tokio::time::timeout(FETCH_TIMEOUT, fetch_unbounded(http, source)).await {
        Ok(fetched) => fetched,
        Err(_) => Err(format!(
            "the identity provider's keys did not arrive within {FETCH_TIMEOUT:?} ({source:?})"
        )),
    }
}

async fn fetch_unbounded(http: &reqwest::Client, source: &KeySource) -> Result<KeySet, String> {
    let jwks_url = match source {
        KeySource::Jwks(url) => url.clone(),
        KeySource::Discovery { issuer } => {
            let url = discovery_url(issuer);
            let doc: Discovery = get_json(http, &url).await?;
            if doc.issuer != *issuer {
                return Err(format!(
                    "the discovery document at {url} names the issuer {:?}, not the configured \
                     {issuer:?} (they must be equal, character for character)",
                    doc.issuer
                ));
            }
            doc.jwks_uri
        }
    };
    let doc: JwksDocument = get_json(http, &jwks_url).await?;
    let set = KeySet::from_document(&doc, &jwks_url);
    if set.keys.is_empty() {
        return Err(format!(
            "{jwks_url} holds no signing key the service can use ({} keys: RS*, PS*, ES256 and \
             ES384 signing keys are used; HMAC and encryption keys never)",
            doc.keys.len()
        ));
    }
    Ok(set)
}

/// OIDC Discovery 1.0 §4: the issuer without a trailing `/`, then the path.
pub(super) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// A JSON document of at most [`MAX_DOCUMENT_BYTES`].
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let mut response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("fetching {url}: {}", chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading {url}: {}", chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url} sent more than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} is not the expected JSON: {e}"))
}

/// An error and its causes (reqwest's own message leaves them out: "error
/// sending request" says nothing of a refused connection or a timeout).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Redirects within the provider's scheme or up to https, never down to
/// plain http, at most three.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade || attempt.previous().len() > 3 {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
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
}
