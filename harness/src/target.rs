//! Target mode: a deployment the harness did not start. Where it is (one
//! or several base URLs, http or https, a base path kept), what every
//! request carries (headers such as `Authorization`, or a token per user),
//! whether traffic may leave this machine, which API dialect it speaks, and
//! where its store can be read (optional, read-only).

use anyhow::{bail, Context, Result};
use reqwest::Url;
use serde::{Deserialize, Deserializer};

use crate::calendar;
use crate::profile::ApiProfile;

/// The `[target]` table of a scenario file; `booking-harness run` flags
/// override it.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TargetSpec {
    /// Base URLs: one, or several (replicas, or load balancers).
    #[serde(deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// Headers sent with every request; `${VAR}` is taken from the environment.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Send load to hosts other than this machine.
    pub allow_remote: bool,
    /// `booking` (default), `node`, or the path of a profile file.
    pub api_profile: Option<String>,
    /// A read-only connection to the target's store, so the store checkers
    /// can decide (`postgres://…` or `sqlite://…`).
    pub database_url: Option<String>,
    /// A command that prints a bearer token for the user given as its last
    /// argument (and in `BOOKING_USER`): one token per user the run acts as.
    pub token_command: Option<String>,
    /// A JSON or TOML file of user id → bearer token.
    pub tokens_file: Option<std::path::PathBuf>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// One base URL of the target, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: Url,
    /// `host:port` the fault proxy forwards to.
    pub upstream: String,
}

impl Endpoint {
    /// Parses a base URL; a host off this machine needs `allow_remote`.
    pub fn parse(raw: &str, allow_remote: bool) -> Result<Endpoint> {
        let mut url = Url::parse(raw).with_context(|| format!("target URL {raw:?}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("target URL {raw}: only http:// and https:// are supported");
        }
        if url.query().is_some() || url.fragment().is_some() {
            bail!("target URL {raw}: a base URL takes no query or fragment");
        }
        let host = url
            .host_str()
            .with_context(|| format!("target URL {raw} has no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .with_context(|| format!("target URL {raw} has no port"))?;
        if !allow_remote && !is_loopback(&host) {
            bail!(
                "target URL {raw} is not on this machine; the harness sends load only to \
                 loopback addresses unless --allow-remote (or allow_remote = true) says the \
                 deployment is yours to load"
            );
        }
        let ip_literal = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
        if url.scheme() == "https" && ip_literal {
            bail!(
                "target URL {raw}: https needs a host name (certificates name hosts, and the \
                 fault proxy is reached by overriding that name)"
            );
        }
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        // RFC 6761: `localhost` and `*.localhost` are this machine.
        let upstream = if host == "localhost" || host.ends_with(".localhost") {
            format!("127.0.0.1:{port}")
        } else if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Endpoint { url, upstream })
    }

    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }

    /// The base path, without a trailing slash (`""` for the root).
    pub fn base_path(&self) -> &str {
        self.url.path().trim_end_matches('/')
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.ends_with(".localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Everything a target run needs to reach and judge the deployment.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub endpoints: Vec<Endpoint>,
    pub headers: Vec<(String, String)>,
    pub profile: ApiProfile,
    pub database_url: Option<String>,
    /// Where per-user tokens come from, if not from a `--auth dev` target.
    pub tokens: Option<TokenSource>,
}

impl TargetConfig {
    pub fn from_spec(spec: &TargetSpec) -> Result<TargetConfig> {
        if spec.url.is_empty() {
            bail!("mode target needs a URL: [target] url = \"…\" or --target-url");
        }
        let endpoints = spec
            .url
            .iter()
            .map(|u| Endpoint::parse(u, spec.allow_remote))
            .collect::<Result<Vec<_>>>()?;
        let headers = spec
            .headers
            .iter()
            .map(|(k, v)| Ok((k.clone(), expand_env(v)?)))
            .collect::<Result<Vec<_>>>()?;
        for (name, value) in &headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("header name {name:?}"))?;
            reqwest::header::HeaderValue::from_str(value)
                .with_context(|| format!("value of header {name}"))?;
        }
        let tokens = token_source(spec)?;
        if let Some(source) = &tokens {
            if headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            {
                bail!(
                    "{} gives each user a token of its own, sent as Authorization; a static \
                     Authorization header (--header or [target] headers) would conflict with \
                     it: give one or the other",
                    source.flag()
                );
            }
        }
        let profile = ApiProfile::named(spec.api_profile.as_deref().unwrap_or("booking"))?;
        if let Some(url) = &spec.database_url {
            if !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
            {
                bail!("database_url must be postgres://… or sqlite:…");
            }
        }
        Ok(TargetConfig {
            endpoints,
            headers,
            profile,
            database_url: spec.database_url.clone(),
            tokens,
        })
    }
}

/// Where per-user tokens come from (`--token-command`, `--tokens-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `sh -c 'CMD "$1"' sh USER`, with `BOOKING_USER=USER`.
    Command(String),
    /// A JSON (`.json`) or TOML (`.toml`) table: user id → token.
    File(std::path::PathBuf),
}

impl TokenSource {
    /// The flag that gives this source, for messages.
    pub fn flag(&self) -> &'static str {
        match self {
            TokenSource::Command(_) => "--token-command",
            TokenSource::File(_) => "--tokens-file",
        }
    }
}

/// `token_command` or `tokens_file`: two sources of the same tokens, so one
/// at most.
fn token_source(spec: &TargetSpec) -> Result<Option<TokenSource>> {
    match (&spec.token_command, &spec.tokens_file) {
        (Some(_), Some(_)) => bail!(
            "token_command and tokens_file (--token-command, --tokens-file) are two sources of \
             the same per-user tokens: give one"
        ),
        (Some(command), None) if command.trim().is_empty() => bail!("token_command is empty"),
        (Some(command), None) => Ok(Some(TokenSource::Command(command.clone()))),
        (None, Some(path)) => Ok(Some(TokenSource::File(path.clone()))),
        (None, None) => Ok(None),
    }
}

/// Where one run lives on a shared deployment: the prefix of its users and
/// keys, and a window of dates no other namespace is likely to use (a
/// window of [`Namespace::DAYS`] days among the years 3000 to 9999, chosen
/// by the name's hash). Runs in different namespaces never share a key or a
/// user, and at the end a run cancels what it booked, so a later run that
/// draws an overlapping window finds its slots free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub first_date: chrono::NaiveDate,
}

impl Namespace {
    /// Days in a window: the workload's dates, the recovery probes' and the
    /// preflight booking's.
    pub const DAYS: u64 = 400;

    /// A new namespace, from the clock and a random suffix: on purpose not
    /// from the scenario's seed, so two runs of one seed never share users
    /// or keys on one deployment.
    pub fn fresh() -> Namespace {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let suffix: u16 = rand::random();
        Namespace::from_name(&format!("t{secs:x}{suffix:04x}"))
    }

    /// A namespace given by name (`--namespace`): 1 to 24 characters of
    /// letters, digits, `_`, `.` or `-`.
    pub fn pinned(name: &str) -> Result<Namespace> {
        let ok = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        if name.is_empty() || name.len() > 24 || !name.chars().all(ok) {
            bail!("namespace {name:?}: 1 to 24 letters, digits, _, . or -");
        }
        Ok(Namespace::from_name(name))
    }

    fn from_name(name: &str) -> Namespace {
        // FNV-1a: stable across releases, unlike std's hasher.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let span =
            (calendar::TARGET_LAST - calendar::TARGET_FIRST).num_days() as u64 - Namespace::DAYS;
        Namespace {
            name: name.to_owned(),
            first_date: calendar::after(calendar::TARGET_FIRST, hash % span),
        }
    }

    /// The prefix of users and keys.
    pub fn prefix(&self) -> String {
        format!("{}-", self.name)
    }

    pub fn last_date(&self) -> chrono::NaiveDate {
        calendar::after(self.first_date, Namespace::DAYS - 1)
    }
}

/// `Name: value` (the form of `curl -H`).
pub fn parse_header(raw: &str) -> Result<(String, String)> {
    let (name, value) = raw
        .split_once(':')
        .with_context(|| format!("header {raw:?}: want 'Name: value'"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// Replaces `${VAR}` with the variable's value, so files need not hold secrets.
fn expand_env(raw: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .with_context(|| format!("unclosed ${{ in {raw:?}"))?;
        let name = &rest[start + 2..start + end];
        let value = std::env::var(name)
            .with_context(|| format!("header value names ${{{name}}}, which is not set"))?;
        out.push_str(&value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_the_default_and_remote_needs_a_flag() {
        let e = Endpoint::parse("http://127.0.0.1:3000", false).expect("ok");
        assert_eq!(e.upstream, "127.0.0.1:3000");
        assert_eq!(e.base_path(), "");
        let e = Endpoint::parse("http://localhost:8080/", false).expect("ok");
        assert_eq!(e.upstream, "127.0.0.1:8080");
        assert!(Endpoint::parse("http://[::1]:3000", false).is_ok());
        assert!(Endpoint::parse("http://10.0.0.5:3000", false).is_err());
        assert!(Endpoint::parse("https://staging.example.com", false).is_err());
        let e = Endpoint::parse("https://staging.example.com/booking/", true).expect("ok");
        assert_eq!(e.upstream, "staging.example.com:443");
        assert_eq!(e.base_path(), "/booking", "the base path is kept");
        assert!(Endpoint::parse("ftp://127.0.0.1", false).is_err());
        assert!(Endpoint::parse("https://127.0.0.1:8443", false).is_err());
        assert!(Endpoint::parse("http://127.0.0.1:3000/?x=1", false).is_err());
    }

    #[test]
    fn namespaces_are_new_by_default_and_stable_when_pinned() {
        let a = Namespace::fresh();
        let b = Namespace::fresh();
        assert_ne!(a.name, b.name);
        let p = Namespace::pinned("nightly").expect("ok");
        assert_eq!(p, Namespace::pinned("nightly").expect("ok"));
        assert_ne!(
            p.first_date,
            Namespace::pinned("nightly2").expect("ok").first_date
        );
        assert!(p.first_date.format("%Y").to_string().as_str() >= "3000");
        assert!(p.last_date().format("%Y").to_string().as_str() <= "9999");
        assert!(Namespace::pinned("has space").is_err());
        assert!(Namespace::pinned("").is_err());
    }

    #[test]
    fn one_token_source_at_most_and_no_static_authorization_beside_it() {
        let spec = |extra: &str| -> TargetSpec {
            toml::from_str(&format!("url = \"http://127.0.0.1:3000\"\n{extra}")).expect("spec")
        };
        let error = |extra: &str| {
            format!(
                "{:#}",
                TargetConfig::from_spec(&spec(extra)).expect_err(extra)
            )
        };
        let config = TargetConfig::from_spec(&spec("token_command = \"mint\"")).expect("ok");
        assert_eq!(config.tokens, Some(TokenSource::Command("mint".into())));
        let config = TargetConfig::from_spec(&spec("tokens_file = \"t.json\"")).expect("ok");
        assert_eq!(config.tokens, Some(TokenSource::File("t.json".into())));
        let both = error("token_command = \"mint\"\ntokens_file = \"t.json\"");
        assert!(both.contains("give one"), "{both}");
        let header = error("token_command = \"mint\"\nheaders = { authorization = \"Bearer x\" }");
        assert!(
            header.contains("--token-command") && header.contains("conflict"),
            "{header}"
        );
        // Another header (a gateway's key) goes along with per-user tokens.
        assert!(TargetConfig::from_spec(&spec(
            "tokens_file = \"t.json\"\nheaders = { X-Api-Key = \"k\" }"
        ))
        .is_ok());
        assert!(error("token_command = \" \"").contains("empty"));
    }

    #[test]
    fn headers_parse_like_curl_and_take_secrets_from_the_environment() {
        assert_eq!(
            parse_header("Authorization: Bearer abc").expect("ok"),
            ("Authorization".into(), "Bearer abc".into())
        );
        assert!(parse_header("no colon").is_err());
        std::env::set_var("BOOKING_TARGET_TEST_TOKEN", "s3cret");
        assert_eq!(
            expand_env("Bearer ${BOOKING_TARGET_TEST_TOKEN}").expect("ok"),
            "Bearer s3cret"
        );
        assert!(expand_env("${BOOKING_TARGET_TEST_UNSET_XYZ}").is_err());
    }
}
