//! Configuration: [`Settings`] for the library, [`ServeArgs`] for the
//! command line (every flag has an environment fallback).

use std::net::SocketAddr;
use std::time::Duration;

use crate::domain::ResourceId;

/// What happens when a completed key comes back with a different payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReusePolicy {
    /// `422 IDEMPOTENCY_KEY_REUSED` (the default).
    #[default]
    Reject,
    /// Return the original response, as the original flow did.
    Replay,
}

impl ReusePolicy {
    /// As the command line and `IDEMPOTENCY_REUSE_POLICY` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Replay => "replay",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencySettings {
    pub reuse_policy: ReusePolicy,
    /// Retention of outcomes for client keys.
    pub client_key_ttl: Duration,
    /// Retention of outcomes for server-derived keys.
    pub derived_key_ttl: Duration,
    /// Retention of a refusal (`409 ALREADY_BOOKED`) for a client key: a
    /// refusal costs a user nothing to repeat, so it leaves the user's
    /// key quota sooner than a booking does.
    pub refusal_ttl: Duration,
    /// Live keys (outcomes still kept) one user may hold; `0`: no quota.
    pub key_quota: u32,
    /// Lifetime of an in-progress claim. Longer than the request timeout,
    /// far shorter than the retention, so a crashed request frees its key soon.
    pub lease: Duration,
    /// Completed client-key outcomes each replica keeps in memory to answer
    /// replays without Redis (`booking::replay_cache`); `0`: none.
    pub replay_cache_entries: usize,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            reuse_policy: ReusePolicy::default(),
            client_key_ttl: Duration::from_secs(DEFAULT_KEY_TTL_SECS),
            derived_key_ttl: Duration::from_secs(DEFAULT_DERIVED_KEY_TTL_SECS),
            refusal_ttl: Duration::from_secs(DEFAULT_REFUSAL_TTL_SECS),
            key_quota: DEFAULT_KEY_QUOTA,
            lease: Duration::from_millis(DEFAULT_LEASE_MS),
            replay_cache_entries: DEFAULT_REPLAY_CACHE_ENTRIES,
        }
    }
}

// Every default is written once, here: `Settings::default` and the
// command line's `default_value_t` both read these.

pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 3000);
/// The embedded default: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://booking.db";
/// Seconds an outcome for a client key is kept: a day of retries.
pub const DEFAULT_KEY_TTL_SECS: u64 = 24 * 3600;
/// Seconds an outcome for a derived key is kept: long enough for a double
/// click or a retry, short enough that booking the slot again later works.
pub const DEFAULT_DERIVED_KEY_TTL_SECS: u64 = 120;
/// Seconds a refusal is kept for a client key.
pub const DEFAULT_REFUSAL_TTL_SECS: u64 = 3600;
/// Completed outcomes a replica caches: about 6 MB at 0.6 KB each.
pub const DEFAULT_REPLAY_CACHE_ENTRIES: usize = 10_000;
/// Milliseconds an in-progress claim lasts.
pub const DEFAULT_LEASE_MS: u64 = 30_000;
/// Milliseconds the slot lock lasts.
pub const DEFAULT_LOCK_TTL_MS: u64 = 5_000;
/// Deadline of each Redis or database call.
pub const DEFAULT_DEPENDENCY_TIMEOUT_MS: u64 = 2_000;
/// Deadline of a whole request.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Largest accepted request body.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 16 * 1024;
/// The longest any TTL, lease or retention may be.
pub const MAX_RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Live idempotency keys per user: far more than a person books in a day,
/// few enough that one client cannot grow the store without bound.
pub const DEFAULT_KEY_QUOTA: u32 = 1000;
/// Sustained requests per second per client, and the burst a quiet client
/// may send at once (the front end's race panel sends up to 50).
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 50;
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 100;

/// One entry of the resource catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub id: ResourceId,
    pub name: String,
}

/// Parses `id=Name,id=Name`.
pub fn parse_catalogue(spec: &str) -> Result<Vec<Resource>, String> {
    let mut resources: Vec<Resource> = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, name) = entry
            .split_once('=')
            .ok_or_else(|| format!("resource {entry:?} is not id=Name"))?;
        let id = ResourceId::parse(id.trim())
            .map_err(|e| format!("resource id {:?} {}", id.trim(), e.message))?;
        if resources.iter().any(|r| r.id == id) {
            return Err(format!("resource {id} is listed twice"));
        }
        resources.push(Resource {
            id,
            name: name.trim().to_owned(),
        });
    }
    if resources.is_empty() {
        return Err("the resource catalogue is empty".into());
    }
    Ok(resources)
}

pub const DEFAULT_CATALOGUE: &str = "room_A=Conference Room A,room_B=Conference Room B,\
room_C=Conference Room C,room_D=Conference Room D";

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `postgres://…` or `sqlite://…`.
    pub database_url: String,
    /// Without it the in-process coordinator is used.
    pub redis_url: Option<String>,
    pub resources: Vec<Resource>,
    pub idempotency: IdempotencySettings,
    /// TTL of the slot lock. It only reduces contention; safety never rests on it.
    pub lock_ttl: Duration,
    /// Deadline of every single Redis or database call (a whole booking transaction counts as one).
    pub dependency_timeout: Duration,
    /// Deadline of a whole request.
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// `FAILPOINTS` syntax; needs the `failpoints` feature.
    pub failpoints: Option<String>,
    /// A built front end (`frontend/dist`) to serve at `/`.
    pub static_dir: Option<std::path::PathBuf>,
    /// Who may act for which user (see `auth.rs`).
    pub auth: crate::auth::AuthSettings,
    /// Open connections and the header-read deadline (see `serve.rs`).
    pub connections: crate::serve::ConnectionLimits,
    /// Requests per client (see `limits.rs`).
    pub rate_limit: crate::limits::RateLimit,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            database_url: DEFAULT_DATABASE_URL.into(),
            redis_url: None,
            resources: parse_catalogue(DEFAULT_CATALOGUE).unwrap_or_default(),
            idempotency: IdempotencySettings::default(),
            lock_ttl: Duration::from_millis(DEFAULT_LOCK_TTL_MS),
            dependency_timeout: Duration::from_millis(DEFAULT_DEPENDENCY_TIMEOUT_MS),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            body_limit: DEFAULT_BODY_LIMIT_BYTES,
            failpoints: None,
            static_dir: None,
            auth: crate::auth::AuthSettings {
                leeway: Duration::from_secs(DEFAULT_JWT_LEEWAY_SECS),
                ..Default::default()
            },
            connections: crate::serve::ConnectionLimits {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                header_read_timeout: Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            },
            rate_limit: crate::limits::RateLimit {
                per_second: DEFAULT_RATE_LIMIT_PER_SECOND,
                burst: DEFAULT_RATE_LIMIT_BURST,
            },
        }
    }
}

/// Open connections at most: well under a default file-descriptor limit of
/// 1024, which the store's and Redis's connections share.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Time a client has to send its request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// Accepted clock skew on token expiry.
pub const DEFAULT_JWT_LEEWAY_SECS: u64 = 30;

impl Settings {
    /// Checks the relations between settings that keep the protocol safe and live.
    pub fn validate(&self) -> Result<(), String> {
        let i = &self.idempotency;
        if i.lease <= self.request_timeout {
            return Err(format!(
                "the idempotency lease ({:?}) must be longer than the request timeout ({:?})",
                i.lease, self.request_timeout
            ));
        }
        if i.lease >= i.client_key_ttl || i.lease >= i.derived_key_ttl || i.lease >= i.refusal_ttl {
            return Err(format!(
                "the idempotency lease ({:?}) must be shorter than the key retentions",
                i.lease
            ));
        }
        // Redis refuses expiry times past i64 milliseconds, after a script
        // may have written half its work; nothing sensible is kept a year.
        let longest = [
            ("--lock-ttl-ms", self.lock_ttl),
            ("--lease-ms", i.lease),
            ("--key-ttl-secs", i.client_key_ttl),
            ("--derived-key-ttl-secs", i.derived_key_ttl),
            ("--refusal-ttl-secs", i.refusal_ttl),
        ];
        for (flag, value) in longest {
            if value.is_zero() || value > MAX_RETENTION {
                return Err(format!(
                    "{flag} must be positive and at most a year ({value:?})"
                ));
            }
        }
        if self.dependency_timeout >= self.request_timeout {
            return Err("the dependency timeout must be shorter than the request timeout".into());
        }
        if self.resources.is_empty() {
            return Err("the resource catalogue is empty".into());
        }
        self.auth.validate()?;
        self.rate_limit.validate()?;
        if self.connections.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if self.connections.header_read_timeout.is_zero() {
            return Err("--header-read-timeout-ms must be positive".into());
        }
        if let Some(dir) = &self.static_dir {
            if !dir.join("index.html").is_file() {
                return Err(format!(
                    "{} has no index.html: build the front end first (cd frontend && npm ci && npm run build)",
                    dir.display()
                ));
            }
        }
        Ok(())
    }
}

/// `booking serve`: flags, each with an environment fallback.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value_t = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Store: postgres://… or sqlite://… (created if missing).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Redis for idempotency records and locks; without it an in-process coordinator is used.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Resource catalogue as id=Name,id=Name.
    #[arg(long, env = "BOOKING_RESOURCES", default_value = DEFAULT_CATALOGUE)]
    pub resources: String,
    /// A completed key sent again with a different payload: reject (422) or replay the original.
    #[arg(long, env = "IDEMPOTENCY_REUSE_POLICY", value_enum, default_value_t)]
    pub reuse_policy: ReusePolicy,
    /// Seconds an outcome for a client Idempotency-Key is kept.
    #[arg(long, env = "IDEMPOTENCY_KEY_TTL_SECS", default_value_t = DEFAULT_KEY_TTL_SECS)]
    pub key_ttl_secs: u64,
    /// Seconds an outcome for a server-derived key (no Idempotency-Key) is kept.
    #[arg(long, env = "DERIVED_KEY_TTL_SECS", default_value_t = DEFAULT_DERIVED_KEY_TTL_SECS)]
    pub derived_key_ttl_secs: u64,
    /// Seconds a refusal (409 ALREADY_BOOKED) for a client key is kept.
    #[arg(long, env = "IDEMPOTENCY_REFUSAL_TTL_SECS", default_value_t = DEFAULT_REFUSAL_TTL_SECS)]
    pub refusal_ttl_secs: u64,
    /// Live idempotency keys one user may hold (429 QUOTA_EXCEEDED beyond); 0: no quota.
    #[arg(long, env = "IDEMPOTENCY_KEY_QUOTA", default_value_t = DEFAULT_KEY_QUOTA)]
    pub key_quota: u32,
    /// Milliseconds an in-progress claim lasts (must exceed the request timeout).
    #[arg(long, env = "IDEMPOTENCY_LEASE_MS", default_value_t = DEFAULT_LEASE_MS)]
    pub lease_ms: u64,
    /// Completed client-key outcomes kept in memory to answer replays
    /// without Redis, each until shortly before the store forgets it; 0: none.
    #[arg(long, env = "REPLAY_CACHE_ENTRIES", default_value_t = DEFAULT_REPLAY_CACHE_ENTRIES)]
    pub replay_cache_entries: usize,
    /// Milliseconds the slot lock lasts.
    #[arg(long, env = "LOCK_TTL_MS", default_value_t = DEFAULT_LOCK_TTL_MS)]
    pub lock_ttl_ms: u64,
    /// Deadline in milliseconds of each Redis or database call.
    #[arg(long, env = "DEPENDENCY_TIMEOUT_MS", default_value_t = DEFAULT_DEPENDENCY_TIMEOUT_MS)]
    pub dependency_timeout_ms: u64,
    /// Deadline in milliseconds of a whole request.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = DEFAULT_REQUEST_TIMEOUT_MS)]
    pub request_timeout_ms: u64,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = DEFAULT_BODY_LIMIT_BYTES)]
    pub body_limit: usize,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: crate::telemetry::LogFormat,
    /// Failpoints to set at start, as name=actions;name=actions (needs the `failpoints` feature).
    #[arg(long, env = "FAILPOINTS")]
    pub failpoints: Option<String>,
    /// Serve the built web front end from this folder at / (e.g. frontend/dist).
    #[arg(long, env = "STATIC_DIR")]
    pub static_dir: Option<std::path::PathBuf>,
    /// Who may act for which user: none (the body's userId is trusted: demos
    /// only), dev (tokens minted by the service for demo users) or jwt
    /// (tokens from an identity provider). See docs/SECURITY.md.
    #[arg(long, env = "AUTH_MODE", value_enum, default_value_t)]
    pub auth: crate::auth::AuthMode,
    /// dev: the HMAC secret shared by every replica (at least 32 characters;
    /// default: random per process, so one replica only).
    #[arg(long, env = "AUTH_DEV_SECRET", hide_env_values = true)]
    pub auth_dev_secret: Option<String>,
    /// jwt: the identity provider's JWKS URL (default: found by OIDC
    /// discovery at <issuer>/.well-known/openid-configuration).
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// jwt: a PEM public key (RSA or EC) instead of a JWKS URL.
    #[arg(long, env = "JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<std::path::PathBuf>,
    /// jwt: the required issuer (`iss`), exactly as the provider writes it.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// jwt: the required audience (`aud`: this string, or an array holding it).
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// jwt: the claim that holds the user id (e.g. `oid` for Entra ID).
    #[arg(long, env = "JWT_USER_CLAIM", default_value = crate::auth::DEFAULT_USER_CLAIM)]
    pub jwt_user_claim: String,
    /// jwt: seconds between background fetches of the provider's keys (at least 30).
    #[arg(long, env = "JWT_JWKS_REFRESH_SECS", default_value_t = crate::auth::DEFAULT_JWKS_REFRESH.as_secs())]
    pub jwt_jwks_refresh_secs: u64,
    /// Accepted clock skew in seconds on `exp` and `nbf`.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = DEFAULT_JWT_LEEWAY_SECS)]
    pub jwt_leeway_secs: u64,
    /// Open connections at most; more wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Milliseconds a client has to send its request headers (also how long
    /// an idle keep-alive connection stays open).
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_MS)]
    pub header_read_timeout_ms: u64,
    /// Sustained API requests per second per client (the token's user, else
    /// the peer address); 429 RATE_LIMITED beyond. 0: no limit.
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = DEFAULT_RATE_LIMIT_PER_SECOND)]
    pub rate_limit: u32,
    /// Requests a quiet client may send at once.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = DEFAULT_RATE_LIMIT_BURST)]
    pub rate_limit_burst: u32,
}

/// `ServeArgs` as a command of its own, for [`ServeArgs::from_env_map`].
#[derive(clap::Parser)]
struct EnvOnly {
    #[command(flatten)]
    serve: ServeArgs,
}

impl ServeArgs {
    /// The arguments `booking serve` would take from exactly these
    /// environment variables (no flags, nothing else from the process's
    /// environment): how the harness knows the TTLs of the replicas it starts.
    pub fn from_env_map<'a>(
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        use clap::{CommandFactory, FromArgMatches};
        let vars: std::collections::HashMap<&str, &str> = vars.into_iter().collect();
        let mut args = vec!["serve".to_owned()];
        for arg in EnvOnly::command().get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            if let Some(value) = env.to_str().and_then(|name| vars.get(name)) {
                args.push(format!("--{long}={value}"));
            }
        }
        let command = EnvOnly::command().mut_args(|a| a.env(None));
        let matches = command
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        EnvOnly::from_arg_matches(&matches)
            .map(|e| e.serve)
            .map_err(|e| e.to_string())
    }

    pub fn into_settings(self) -> Result<Settings, String> {
        let settings = self.into_unchecked_settings()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The settings these arguments name, without [`Settings::validate`].
    pub fn into_unchecked_settings(self) -> Result<Settings, String> {
        Ok(Settings {
            listen: self.listen,
            database_url: self.database_url,
            redis_url: self.redis_url.filter(|u| !u.trim().is_empty()),
            resources: parse_catalogue(&self.resources)?,
            idempotency: IdempotencySettings {
                reuse_policy: self.reuse_policy,
                client_key_ttl: Duration::from_secs(self.key_ttl_secs),
                derived_key_ttl: Duration::from_secs(self.derived_key_ttl_secs),
                refusal_ttl: Duration::from_secs(self.refusal_ttl_secs),
                key_quota: self.key_quota,
                lease: Duration::from_millis(self.lease_ms),
                replay_cache_entries: self.replay_cache_entries,
            },
            lock_ttl: Duration::from_millis(self.lock_ttl_ms),
            dependency_timeout: Duration::from_millis(self.dependency_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            body_limit: self.body_limit,
            failpoints: self.failpoints.filter(|f| !f.trim().is_empty()),
            static_dir: self.static_dir,
            auth: crate::auth::AuthSettings {
                mode: self.auth,
                dev_secret: self.auth_dev_secret.filter(|s| !s.is_empty()),
                jwks_url: self.jwt_jwks_url.filter(|s| !s.is_empty()),
                public_key_pem: self.jwt_public_key,
                issuer: self.jwt_issuer.filter(|s| !s.is_empty()),
                audience: self.jwt_audience.filter(|s| !s.is_empty()),
                user_claim: self.jwt_user_claim,
                jwks_refresh: Duration::from_secs(self.jwt_jwks_refresh_secs),
                leeway: Duration::from_secs(self.jwt_leeway_secs),
            },
            connections: crate::serve::ConnectionLimits {
                max_connections: self.max_connections,
                header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            },
            rate_limit: crate::limits::RateLimit {
                per_second: self.rate_limit,
                burst: self.rate_limit_burst,
            },
        })
    }
}

#[cfg(test)]
mod tests;
