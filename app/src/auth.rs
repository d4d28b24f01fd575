//! Who is asking.
//!
//! The original flow trusted the `userId` a client wrote: anyone could list,
//! cancel or replay anyone's bookings, and claim a key before its owner. In
//! the `dev` and `jwt` modes the caller is the subject (`sub`) of a verified
//! bearer token, the *principal*; a `userId` in a body or path must be the
//! principal's (else `403 FORBIDDEN`) and may be left out. Idempotency keys
//! are scoped to the user, so to the principal.
//!
//! - `none`: the self-asserted `userId` of the original flow, for demos and
//!   the embedded default; the service says so loudly at start.
//! - `dev`: the service signs short-lived HS256 tokens for any demo user at
//!   `POST /api/auth/dev-token` and accepts only those. No identity
//!   provider needed; no security either (anyone can mint a token), but the
//!   whole authenticated path runs, front end included.
//! - `jwt`: tokens from a real identity provider (OIDC): RS256/ES256
//!   verified against a JWKS URL (refreshed when an unknown key id shows up)
//!   or a PEM public key, issuer and audience required, clock skew bounded.
//!
//! `jsonwebtoken` does the cryptography and claim checks; this module only
//! chooses keys and maps failures to stable codes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::domain::UserId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Self-asserted `userId` (the original flow): demos only.
    #[default]
    None,
    /// Tokens the service mints itself for demo users.
    Dev,
    /// Tokens from an identity provider (OIDC), verified by JWKS or PEM.
    Jwt,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// `dev`: the HMAC secret (every replica needs the same one); `None`
    /// draws a random one at start (one replica only).
    pub dev_secret: Option<String>,
    /// `jwt`: where the provider publishes its keys.
    pub jwks_url: Option<String>,
    /// `jwt`: a PEM public key file, instead of a JWKS URL.
    pub public_key_pem: Option<std::path::PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Accepted clock skew on `exp` and `nbf`.
    pub leeway: Duration,
}

impl AuthSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.mode != AuthMode::Jwt {
            return Ok(());
        }
        if self.jwks_url.is_some() == self.public_key_pem.is_some() {
            return Err(
                "--auth jwt needs exactly one of --jwt-jwks-url and --jwt-public-key".into(),
            );
        }
        if self.issuer.is_none() || self.audience.is_none() {
            return Err("--auth jwt needs --jwt-issuer and --jwt-audience".into());
        }
        if self.leeway > Duration::from_secs(300) {
            return Err("--jwt-leeway-secs must be at most 300".into());
        }
        Ok(())
    }
}

/// Why a request is not authenticated (`401 UNAUTHENTICATED`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("an Authorization: Bearer token is required")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(&'static str),
    #[error("the token's signing key is not known")]
    UnknownKey,
}

/// The issuer and audience of `dev` tokens.
const DEV_ISSUER: &str = "booking-dev";
const DEV_AUDIENCE: &str = "booking";
/// How long a `dev` token lives.
pub const DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The least time between two JWKS fetches triggered by unknown key ids
/// (a flood of forged `kid`s must not become a flood of fetches).
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// Verifies tokens (and, in `dev` mode, mints them).
pub struct Authenticator {
    mode: AuthMode,
    keys: Keys,
    /// Issuer, audience, leeway; the algorithm is set per key.
    validation: Validation,
}

enum Keys {
    None,
    Dev {
        encoding: EncodingKey,
        decoding: DecodingKey,
    },
    Pem {
        key: DecodingKey,
        algorithm: Algorithm,
    },
    Jwks(Jwks),
}

struct Jwks {
    url: String,
    http: reqwest::Client,
    set: RwLock<(JwkSet, Instant)>,
}

impl Authenticator {
    pub async fn from_settings(s: &AuthSettings) -> Result<Arc<Authenticator>, String> {
        s.validate()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = s.leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let keys = match s.mode {
            AuthMode::None => Keys::None,
            AuthMode::Dev => {
                let secret = s
                    .dev_secret
                    .clone()
                    .unwrap_or_else(|| format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4()));
                if secret.len() < 32 {
                    return Err("--auth-dev-secret must be at least 32 characters".into());
                }
                validation.set_issuer(&[DEV_ISSUER]);
                validation.set_audience(&[DEV_AUDIENCE]);
                Keys::Dev {
                    encoding: EncodingKey::from_secret(secret.as_bytes()),
                    decoding: DecodingKey::from_secret(secret.as_bytes()),
                }
            }
            AuthMode::Jwt => {
                validation.set_issuer(&[s.issuer.as_deref().unwrap_or_default()]);
                validation.set_audience(&[s.audience.as_deref().unwrap_or_default()]);
                if let Some(path) = &s.public_key_pem {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("reading {}: {e}", path.display()))?;
                    let (key, algorithm) = DecodingKey::from_rsa_pem(&pem)
                        .map(|k| (k, Algorithm::RS256))
                        .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|k| (k, Algorithm::ES256)))
                        .map_err(|e| {
                            format!("{} is not an RSA or EC public key: {e}", path.display())
                        })?;
                    Keys::Pem { key, algorithm }
                } else {
                    let url = s.jwks_url.clone().unwrap_or_default();
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .build()
                        .map_err(|e| e.to_string())?;
                    let set = fetch_jwks(&http, &url).await?;
                    Keys::Jwks(Jwks {
                        url,
                        http,
                        set: RwLock::new((set, Instant::now())),
                    })
                }
            }
        };
        Ok(Arc::new(Authenticator {
            mode: s.mode,
            keys,
            validation,
        }))
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller: `None` in mode `none` (the body says who), else the
    /// verified subject of the bearer token.
    pub async fn principal(&self, headers: &HeaderMap) -> Result<Option<UserId>, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(None);
        }
        let token = bearer(headers).ok_or(AuthError::Missing)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("malformed"))?;
        let claims = match &self.keys {
            Keys::None => return Ok(None),
            Keys::Dev { decoding, .. } => self.verify(token, decoding, Algorithm::HS256)?,
            Keys::Pem { key, algorithm } => self.verify(token, key, *algorithm)?,
            Keys::Jwks(jwks) => {
                let (key, algorithm) = jwks.key_for(&header).await?;
                self.verify(token, &key, algorithm)?
            }
        };
        UserId::parse(&claims.sub)
            .map(Some)
            .map_err(|_| AuthError::Invalid("its subject is not a valid user id"))
    }

    fn verify(
        &self,
        token: &str,
        key: &DecodingKey,
        algorithm: Algorithm,
    ) -> Result<Claims, AuthError> {
        let mut validation = self.validation.clone();
        // Only the key's own algorithm: never `none`, never HS256 with a public key.
        validation.algorithms = vec![algorithm];
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                    AuthError::Invalid("wrong audience")
                }
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                    AuthError::Invalid("wrong issuer")
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    AuthError::Invalid("not valid yet")
                }
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    AuthError::Invalid("bad signature")
                }
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    AuthError::Invalid("wrong algorithm")
                }
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                    AuthError::Invalid("a required claim is missing")
                }
                _ => AuthError::Invalid("malformed"),
            })
    }

    /// `dev` mode: a token for a demo user, and when it expires (seconds
    /// since the epoch). `None` in other modes.
    pub fn mint_dev_token(&self, user: &UserId) -> Option<(String, u64)> {
        let Keys::Dev { encoding, .. } = &self.keys else {
            return None;
        };
        let now = jsonwebtoken::get_current_timestamp();
        let exp = now + DEV_TOKEN_LIFETIME.as_secs();
        let claims = Claims {
            sub: user.as_str().to_owned(),
            exp,
            iat: Some(now),
            iss: Some(DEV_ISSUER.into()),
            aud: Some(DEV_AUDIENCE.into()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .ok()
            .map(|t| (t, exp))
    }
}

impl Jwks {
    /// The key a token names; an unknown `kid` refetches the set, at most
    /// once per [`JWKS_REFETCH_MIN`] (keys rotate; forged ids must not
    /// turn into a fetch each).
    async fn key_for(&self, header: &Header) -> Result<(DecodingKey, Algorithm), AuthError> {
        if let Some(found) = self.lookup(header).await {
            return found;
        }
        {
            let mut set = self.set.write().await;
            if set.1.elapsed() >= JWKS_REFETCH_MIN {
                match fetch_jwks(&self.http, &self.url).await {
                    Ok(fresh) => *set = (fresh, Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not refresh the JWKS");
                        set.1 = Instant::now();
                    }
                }
            }
        }
        self.lookup(header)
            .await
            .unwrap_or(Err(AuthError::UnknownKey))
    }

    async fn lookup(&self, header: &Header) -> Option<Result<(DecodingKey, Algorithm), AuthError>> {
        let set = self.set.read().await;
        let jwk = match &header.kid {
            Some(kid) => set.0.find(kid)?,
            None if set.0.keys.len() == 1 => &set.0.keys[0],
            None => return Some(Err(AuthError::Invalid("no key id (kid)"))),
        };
        let algorithm = match jwk.common.key_algorithm.map(|a| a.to_string()) {
            Some(a) => a.parse::<Algorithm>().ok(),
            None => match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Some(Algorithm::ES256),
                _ => None,
            },
        };
        let Some(algorithm) = algorithm
            .filter(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        else {
            return Some(Err(AuthError::Invalid(
                "the key's algorithm is not accepted",
            )));
        };
        Some(
            DecodingKey::from_jwk(jwk)
                .map(|k| (k, algorithm))
                .map_err(|_| AuthError::UnknownKey),
        )
    }
}

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("fetching the JWKS at {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("the JWKS at {url} answered {}", response.status()));
    }
    response
        .json::<JwkSet>()
        .await
        .map_err(|e| format!("the JWKS at {url} is not a JWK set: {e}"))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whom a request acts for: the principal when there is one (a `claimed`
/// user must be the principal), else the claimed user.
pub fn acting_user(
    principal: &Option<UserId>,
    claimed: Option<UserId>,
) -> Result<Option<UserId>, Forbidden> {
    match (principal, claimed) {
        (None, claimed) => Ok(claimed),
        (Some(p), None) => Ok(Some(p.clone())),
        (Some(p), Some(c)) if *p == c => Ok(Some(c)),
        (Some(_), Some(_)) => Err(Forbidden),
    }
}

/// A request that names a user other than its principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden;

#[cfg(test)]
mod tests {
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

    #[test]
    fn jwt_mode_needs_one_key_source_an_issuer_and_an_audience() {
        let s = AuthSettings {
            mode: AuthMode::Jwt,
            ..AuthSettings::default()
        };
        assert!(s.validate().is_err());
        let s = AuthSettings {
            jwks_url: Some("https://idp/jwks".into()),
            issuer: Some("https://idp".into()),
            audience: Some("booking".into()),
            ..s
        };
        assert!(s.validate().is_ok());
    }
}
