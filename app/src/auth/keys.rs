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
mod tests;
