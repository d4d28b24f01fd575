//! A real OpenID Connect provider for tests: panva's `oidc-provider` on
//! Node.js (`harness/infra/oidc/provider.mjs`), on a free loopback port, so
//! the service's `--auth jwt` is proven against tokens it did not mint.
//!
//! Every client id matching `[A-Za-z0-9_.:@|-]{1,64}` is a client with the
//! provider's one secret; [`OidcProvider::token`] gets an RS256 JWT access
//! token for it by the client credentials grant, with `sub` = the client id.
//! So a test's users are just ids: `user_alice`, `auth0|64f0c2...`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use booking_infra::{OidcOptions, OidcProvider};
//! let idp = OidcProvider::start(OidcOptions::default()).await?;
//! let token = idp.token("user_alice").await?;
//! println!("--jwt-issuer {} --jwt-jwks-url {} {token}", idp.issuer(), idp.jwks_url());
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use super::process::{free_port, log_tail, ManagedChild};

/// How long a start (or a restart) may take until discovery answers.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long `npm ci` may take, and another process's `npm ci` be waited for.
const INSTALL_WITHIN: Duration = Duration::from_secs(300);

/// Serialises the check-and-install between the tests of one process; a
/// lock file (see [`ensure_installed`]) does it between processes.
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// `node` or `npm` is missing: the tests fail with this (`.ci/run` installs both).
#[derive(Debug, thiserror::Error)]
#[error(
    "`{program}` not found on PATH: the test OpenID Connect provider runs on Node.js (20 or later) \
     and npm (apt-get install nodejs npm); see harness/infra/oidc"
)]
pub struct NoNode {
    pub program: &'static str,
}

/// How to start the provider.
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// The tokens' `aud`: one value gives a string, several an array (the
    /// way Keycloak issues `["booking-api","account"]`). No commas.
    pub audience: Vec<String>,
    /// The one secret every client shares; `None`: a random one.
    pub client_secret: Option<String>,
    /// The access tokens' lifetime.
    pub token_ttl: Duration,
}

impl Default for OidcOptions {
    fn default() -> Self {
        Self {
            audience: vec!["booking-api".into()],
            client_secret: None,
            token_ttl: Duration::from_secs(600),
        }
    }
}

/// What the discovery document says (the fields we use).
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct Discovery {
    issuer: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
}

pub struct OidcProvider {
    options: OidcOptions,
    secret: String,
    port: u16,
    discovery: Discovery,
    child: Option<ManagedChild>,
    http: reqwest::Client,
    dir: TempDir,
}

impl OidcProvider {
    /// Installs the fixture's packages if needed (`npm ci`, once), then
    /// starts the provider and waits until its discovery document answers.
    pub async fn start(options: OidcOptions) -> Result<Self> {
        if !on_path("node") {
            return Err(NoNode { program: "node" }.into());
        }
        if options.audience.is_empty()
            || options
                .audience
                .iter()
                .any(|a| a.trim().is_empty() || a.contains(','))
        {
            bail!(
                "OidcOptions::audience {:?}: give at least one, none empty, no commas",
                options.audience
            );
        }
        let secret = match &options.client_secret {
            Some(s) if !s.is_empty() => s.clone(),
            Some(_) => bail!("OidcOptions::client_secret is empty"),
            None => random_secret()?,
        };
        tokio::task::spawn_blocking(|| ensure_installed(&fixture_dir())).await??;
        let mut provider = Self {
            options,
            secret,
            port: free_port()?,
            discovery: Discovery::default(),
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            dir: tempfile::Builder::new().prefix("booking-oidc-").tempdir()?,
        };
        // Once in a while (seen once on a loaded CI machine) the provider
        // is alive but never listens; a second start on another port has
        // always come up, so a start gets one more try before it fails.
        if let Err(first) = provider.spawn().await {
            tracing::warn!(error = %format!("{first:#}"), "the oidc provider did not start; trying once more");
            provider.child = None;
            provider.port = free_port()?;
            provider
                .spawn()
                .await
                .with_context(|| format!("a second start, after: {first:#}"))?;
        }
        Ok(provider)
    }

    async fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new("node");
        cmd.arg(fixture_dir().join("provider.mjs"))
            .current_dir(fixture_dir())
            .env("OIDC_PORT", self.port.to_string())
            .env("OIDC_CLIENT_SECRET", &self.secret)
            .env("OIDC_AUDIENCE", self.options.audience.join(","))
            .env(
                "OIDC_TOKEN_TTL",
                self.options.token_ttl.as_secs().max(1).to_string(),
            );
        let child =
            ManagedChild::spawn("oidc provider", &mut cmd, &self.log_path()).map_err(|e| {
                if on_path("node") {
                    e
                } else {
                    NoNode { program: "node" }.into()
                }
            })?;
        self.child = Some(child);
        self.discovery = self.wait_ready().await?;
        Ok(())
    }

    /// Until the discovery document answers, naming our issuer exactly.
    async fn wait_ready(&mut self) -> Result<Discovery> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            if !self.child.as_mut().is_some_and(ManagedChild::is_running) {
                bail!(
                    "the oidc provider exited during start-up\n--- oidc log ---\n{}",
                    self.log_tail(30)
                );
            }
            let error = match self.fetch_discovery(&url).await {
                Ok(discovery) if discovery.issuer == self.issuer() => return Ok(discovery),
                Ok(discovery) => bail!(
                    "{url} names the issuer {:?}, not {:?}",
                    discovery.issuer,
                    self.issuer()
                ),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "the oidc provider not ready after {READY_WITHIN:?}: {error:#}\n--- oidc log ---\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn fetch_discovery(&self, url: &str) -> Result<Discovery> {
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(1))
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }

    /// `http://127.0.0.1:PORT`, exactly as the tokens' `iss`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the provider publishes its signing keys (from discovery).
    pub fn jwks_url(&self) -> String {
        self.discovery.jwks_uri.clone()
    }

    /// The token endpoint (from discovery).
    pub fn token_url(&self) -> String {
        self.discovery.token_endpoint.clone()
    }

    /// The tokens' audience, as configured.
    pub fn audience(&self) -> &[String] {
        &self.options.audience
    }

    /// The secret every client id shares.
    pub fn client_secret(&self) -> &str {
        &self.secret
    }

    /// An access token for `client_id` (a test's user): client credentials,
    /// the secret in the form body (client_secret_post).
    pub async fn token(&self, client_id: &str) -> Result<String> {
        if !valid_client_id(client_id) {
            bail!("client id {client_id:?}: use 1 to 64 of letters, digits and _ . : @ - |");
        }
        let response = self
            .http
            .post(&self.discovery.token_endpoint)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", self.secret.as_str()),
            ])
            .send()
            .await
            .with_context(|| format!("token request to {}", self.discovery.token_endpoint))?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!(
                "token request for {client_id:?}: HTTP {status}: {body}\n--- oidc log ---\n{}",
                self.log_tail(5)
            );
        }
        let token: TokenResponse = serde_json::from_str(&body)
            .with_context(|| format!("token response for {client_id:?}: {body}"))?;
        Ok(token.access_token)
    }

    /// A shell command line that prints one access token for the user id
    /// appended to it as its last (shell-quoted) argument: `token.mjs`, the
    /// same grant by HTTP Basic (client_secret_basic).
    pub fn token_command(&self) -> String {
        format!(
            "env OIDC_CLIENT_SECRET={} node {} {}",
            sh_quote(&self.secret),
            sh_quote(&fixture_dir().join("token.mjs").to_string_lossy()),
            sh_quote(&self.issuer())
        )
    }

    /// A new signing key: the provider restarts on the same port with a
    /// freshly generated one. The old key is no longer published, so tokens
    /// signed with it fail (unknown `kid`); new tokens carry the new `kid`.
    pub async fn rotate_keys(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.stop(Signal::SIGTERM, Duration::from_secs(5));
        }
        self.spawn().await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ManagedChild::pid)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("oidc.log")
    }

    /// The provider's log so far (every start, appended).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(Signal::SIGTERM, Duration::from_secs(2));
        }
    }
}

/// `harness/infra/oidc`: the provider's script and its locked packages.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// The same rule as provider.mjs's `CLIENT_ID`.
fn valid_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@-|".contains(&b))
}

/// `npm ci` in `dir` unless the pinned `oidc-provider` is installed there.
/// Blocking: call it off the runtime's threads.
fn ensure_installed(dir: &Path) -> Result<()> {
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if installed(dir)? {
        return Ok(());
    }
    if !on_path("npm") {
        return Err(NoNode { program: "npm" }.into());
    }
    // Another test process may be installing: npm ci deletes node_modules
    // first, so two at once break each other.
    let lock_path = dir.join(".npm-ci.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let _lock = lock_within(file, INSTALL_WITHIN)
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if installed(dir)? {
        return Ok(());
    }
    let logs = tempfile::Builder::new()
        .prefix("booking-npm-ci-")
        .tempdir()?;
    let log = logs.path().join("npm-ci.log");
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(dir);
    let mut child = ManagedChild::spawn("npm ci", &mut cmd, &log)?;
    match child.wait_for_exit(INSTALL_WITHIN) {
        Some(status) if status.success() => {}
        Some(status) => bail!(
            "npm ci in {} failed ({status})\n--- npm log ---\n{}",
            dir.display(),
            log_tail(&log, 30)
        ),
        None => {
            child.kill();
            bail!(
                "npm ci in {} did not finish in {INSTALL_WITHIN:?}\n--- npm log ---\n{}",
                dir.display(),
                log_tail(&log, 30)
            );
        }
    }
    if !installed(dir)? {
        bail!(
            "npm ci in {} did not install the pinned oidc-provider",
            dir.display()
        );
    }
    Ok(())
}

/// Whether `node_modules` holds exactly the `oidc-provider` version that
/// package.json pins (a half-done or older install does not count).
fn installed(dir: &Path) -> Result<bool> {
    let manifest = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let Some(wanted) = manifest["dependencies"]["oidc-provider"].as_str() else {
        bail!("{}/package.json does not pin oidc-provider", dir.display());
    };
    let have = std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    Ok(have.as_deref() == Some(wanted))
}

/// An exclusive flock on `file`, polled (a blocking flock could wait forever).
fn lock_within(file: File, within: Duration) -> Result<Flock<File>> {
    let deadline = Instant::now() + within;
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                bail!("another process held the lock for {within:?}")
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
}

/// Whether `program` is an executable file in a `PATH` directory.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// 128 random bits, hex: no other local user can guess the secret and mint tokens.
fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `s` as one shell word: bare when it is plainly safe, else single-quoted.
fn sh_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@,+%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_follow_the_providers_rule() {
        for ok in [
            "user_alice",
            "auth0|64f0c2d9e1b2a3c4d5e6f701",
            "a:b@c.d-e",
            "x",
        ] {
            assert!(valid_client_id(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "a b", "a/b", "a'b", "é", long.as_str()] {
            assert!(!valid_client_id(bad), "{bad}");
        }
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(sh_quote("http://127.0.0.1:80"), "http://127.0.0.1:80");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
    }
}
