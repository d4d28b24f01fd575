//! Who is asking.
//!
//! The original flow trusted the `userId` a client wrote: anyone could list,
//! cancel or replay anyone's bookings, and claim a key before its owner. In
//! the `dev` and `jwt` modes the caller is the user a verified bearer token
//! names (its `sub`, or the claim `--jwt-user-claim` names), the
//! *principal*; a `userId` in a body or path must be the principal's (else
//! `403 FORBIDDEN`) and may be left out. Idempotency keys are scoped to the
//! user, so to the principal.
//!
//! - `none`: the self-asserted `userId` of the original flow, for demos and
//!   the embedded default; the service says so loudly at start.
//! - `dev`: the service signs short-lived HS256 tokens for any demo user at
//!   `POST /api/auth/dev-token` and accepts only those. No identity
//!   provider needed; no security either (anyone can mint a token), but the
//!   whole authenticated path runs, front end included.
//! - `jwt`: tokens from a real identity provider (OIDC): RS*/PS*/ES*
//!   verified against the provider's keys (a JWKS URL, or found by OIDC
//!   discovery from the issuer alone; see `keys.rs`) or a PEM public key;
//!   issuer and audience required, `exp` and `nbf` checked with a bounded
//!   clock skew.
//!
//! `jsonwebtoken` does the cryptography and the standard claim checks;
//! this module chooses keys, checks what `jsonwebtoken` lets through (a
//! `nbf` that is not a number) and maps failures to stable codes. The rules,
//! claim by claim, are the table in docs/SECURITY.md.

mod keys;

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::domain::UserId;
use keys::{KeySource, RemoteKeys};

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

/// The claim that names the user unless `--jwt-user-claim` says otherwise.
pub const DEFAULT_USER_CLAIM: &str = "sub";
/// How often the provider's keys are fetched again in the background.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// `dev`: the HMAC secret (every replica needs the same one); `None`
    /// draws a random one at start (one replica only).
    pub dev_secret: Option<String>,
    /// `jwt`: where the provider publishes its keys; with neither this nor
    /// a PEM key, OIDC discovery from the issuer finds them.
    pub jwks_url: Option<String>,
    /// `jwt`: a PEM public key file, instead of a JWKS URL.
    pub public_key_pem: Option<std::path::PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// `jwt`: the claim holding the user id (`sub` by default).
    pub user_claim: String,
    /// `jwt` with a JWKS: how often the keys are fetched again.
    pub jwks_refresh: Duration,
    /// Accepted clock skew on `exp` and `nbf`.
    pub leeway: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::default(),
            dev_secret: None,
            jwks_url: None,
            public_key_pem: None,
            issuer: None,
            audience: None,
            user_claim: DEFAULT_USER_CLAIM.into(),
            jwks_refresh: DEFAULT_JWKS_REFRESH,
            leeway: Duration::ZERO,
        }
    }
}

impl AuthSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.leeway > Duration::from_secs(300) {
            return Err("--jwt-leeway-secs must be at most 300".into());
        }
        if self.mode != AuthMode::Jwt {
            return Ok(());
        }
        if self.jwks_url.is_some() && self.public_key_pem.is_some() {
            return Err(
                "--auth jwt takes at most one of --jwt-jwks-url and --jwt-public-key".into(),
            );
        }
        let (Some(issuer), Some(_)) = (&self.issuer, &self.audience) else {
            return Err("--auth jwt needs --jwt-issuer and --jwt-audience".into());
        };
        let discovers = self.jwks_url.is_none() && self.public_key_pem.is_none();
        if discovers && !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(format!(
                "--jwt-issuer {issuer:?} is not a URL, so its keys cannot be discovered: \
                 give --jwt-jwks-url or --jwt-public-key"
            ));
        }
        if self.user_claim.is_empty() {
            return Err("--jwt-user-claim must name a claim".into());
        }
        if self.jwks_refresh < Duration::from_secs(30) {
            return Err("--jwt-jwks-refresh-secs must be at least 30".into());
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

/// What the service writes into a `dev` token.
#[derive(Debug, Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    nbf: u64,
    iss: &'static str,
    aud: &'static str,
}

/// Verifies tokens (and, in `dev` mode, mints them).
pub struct Authenticator {
    mode: AuthMode,
    keys: Keys,
    /// Issuer, audience, leeway, required claims; the algorithm is set per key.
    validation: Validation,
    user_claim: String,
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
    Remote(Arc<RemoteKeys>),
}

impl Authenticator {
    pub async fn from_settings(s: &AuthSettings) -> Result<Arc<Authenticator>, String> {
        s.validate()?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = s.leeway.as_secs();
        validation.validate_nbf = true;
        let mut user_claim = DEFAULT_USER_CLAIM.to_owned();
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
                let issuer = s.issuer.clone().unwrap_or_default();
                validation.set_issuer(&[&issuer]);
                validation.set_audience(&[s.audience.as_deref().unwrap_or_default()]);
                user_claim.clone_from(&s.user_claim);
                if let Some(path) = &s.public_key_pem {
                    let (key, algorithm) = pem_key(path)?;
                    Keys::Pem { key, algorithm }
                } else {
                    let source = match &s.jwks_url {
                        Some(url) => KeySource::Jwks(url.clone()),
                        None => KeySource::Discovery { issuer },
                    };
                    Keys::Remote(RemoteKeys::start(source, s.jwks_refresh).await?)
                }
            }
        };
        // `sub` is checked by `jsonwebtoken` for presence; another user
        // claim is checked here, in `user_of`.
        let mut required = vec!["exp", "iss", "aud"];
        if user_claim == DEFAULT_USER_CLAIM {
            required.push("sub");
        }
        validation.set_required_spec_claims(&required);
        Ok(Arc::new(Authenticator {
            mode: s.mode,
            keys,
            validation,
            user_claim,
        }))
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The caller: `None` in mode `none` (the body says who), else the
    /// verified user of the bearer token.
    pub async fn principal(&self, headers: &HeaderMap) -> Result<Option<UserId>, AuthError> {
        if self.mode == AuthMode::None {
            return Ok(None);
        }
        if headers
            .get_all(axum::http::header::AUTHORIZATION)
            .iter()
            .count()
            > 1
        {
            return Err(AuthError::Invalid("more than one Authorization header"));
        }
        let token = bearer(headers).ok_or(AuthError::Missing)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("malformed"))?;
        let claims = match &self.keys {
            Keys::None => return Ok(None),
            Keys::Dev { decoding, .. } => self.verify(token, decoding, Algorithm::HS256)?,
            Keys::Pem { key, algorithm } => self.verify(token, key, *algorithm)?,
            Keys::Remote(keys) => {
                let (key, algorithm) = keys.key_for(&header).await?;
                self.verify(token, &key, algorithm)?
            }
        };
        self.user_of(&claims).map(Some)
    }

    /// The signature and the standard claims (`jsonwebtoken`), then the
    /// time claims' type, which `jsonwebtoken` does not check: it skips a
    /// `nbf` it cannot read as a number instead of refusing the token.
    fn verify(
        &self,
        token: &str,
        key: &DecodingKey,
        algorithm: Algorithm,
    ) -> Result<Map<String, Value>, AuthError> {
        let mut validation = self.validation.clone();
        // Only the key's own algorithm: never `none`, never HS256 with a public key.
        validation.algorithms = vec![algorithm];
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| refusal(e.kind()))?
            .claims;
        // RFC 7519 §4.1.1: one string (`jsonwebtoken` also takes an array).
        if !claims.get("iss").is_some_and(Value::is_string) {
            return Err(AuthError::Invalid("wrong issuer"));
        }
        for time in ["exp", "nbf", "iat"] {
            if claims.get(time).is_some_and(|v| !is_numeric_date(v)) {
                return Err(AuthError::Invalid(
                    "exp, nbf and iat must be numbers of seconds (NumericDate)",
                ));
            }
        }
        Ok(claims)
    }

    /// The user a verified token names: the configured claim, a string
    /// that is a valid user id.
    fn user_of(&self, claims: &Map<String, Value>) -> Result<UserId, AuthError> {
        let Some(Value::String(raw)) = claims.get(&self.user_claim) else {
            return Err(AuthError::Invalid(
                "its user claim (sub, or --jwt-user-claim) is missing or not a string",
            ));
        };
        UserId::parse(raw).map_err(|_| {
            AuthError::Invalid("its user claim is not a valid user id (see docs/SECURITY.md)")
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
        let claims = DevClaims {
            sub: user.as_str(),
            exp,
            iat: now,
            nbf: now,
            iss: DEV_ISSUER,
            aud: DEV_AUDIENCE,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .ok()
            .map(|t| (t, exp))
    }
}

/// Why `jsonwebtoken` refused a token, in words a client may read.
fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    AuthError::Invalid(match kind {
        ErrorKind::ExpiredSignature => return AuthError::Expired,
        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm => "wrong algorithm",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        _ => "malformed",
    })
}

/// RFC 7519's NumericDate: a non-negative number of seconds (integer or
/// not) that `jsonwebtoken` can compare, so below 2^64 (beyond that it
/// would skip the `nbf` check rather than refuse).
fn is_numeric_date(value: &Value) -> bool {
    value
        .as_f64()
        .is_some_and(|n| n.is_finite() && n >= 0.0 && n < u64::MAX as f64)
}

/// A PEM public key: RSA → RS256, EC → ES256.
fn pem_key(path: &std::path::Path) -> Result<(DecodingKey, Algorithm), String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if String::from_utf8_lossy(&pem).contains("PRIVATE KEY") {
        return Err(format!(
            "{} holds a private key: give the provider's public key (never its private key)",
            path.display()
        ));
    }
    DecodingKey::from_rsa_pem(&pem)
        .map(|k| (k, Algorithm::RS256))
        .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|k| (k, Algorithm::ES256)))
        .map_err(|e| format!("{} is not an RSA or EC public key: {e}", path.display()))
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
mod tests;
