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
}
