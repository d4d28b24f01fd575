//! The test OpenID Connect provider issues what a real one does: RS256 JWT
//! access tokens by the client credentials grant, for any user id, with a
//! `kid` from its published JWKS, and a new `kid` after a key rotation.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use booking_infra::{OidcOptions, OidcProvider};
use serde_json::Value;

const ALICE: &str = "user_alice";
const AUTH0_USER: &str = "auth0|64f0c2d9e1b2a3c4d5e6f701";

#[tokio::test]
async fn issues_rs256_jwts_for_any_user_and_rotates_its_key() -> Result<()> {
    let options = OidcOptions {
        audience: vec!["booking-api".into(), "account".into()],
        ..OidcOptions::default()
    };
    let mut idp = OidcProvider::start(options).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    let discovery: Value = http
        .get(format!("{}/.well-known/openid-configuration", idp.issuer()))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(discovery["issuer"], idp.issuer().as_str());
    assert_eq!(discovery["jwks_uri"], idp.jwks_url().as_str());

    let jwks = kids(&http, &idp.jwks_url()).await?;
    let mut first_kid = String::new();
    for user in [ALICE, AUTH0_USER] {
        let token = idp.token(user).await?;
        let (header, payload) = decode(&token)?;
        assert_eq!(header["alg"], "RS256", "{header}");
        let kid = header["kid"].as_str().context("no kid")?.to_owned();
        assert!(jwks.contains(&kid), "kid {kid} not in {jwks:?}");
        assert_eq!(payload["sub"], user, "{payload}");
        assert_eq!(payload["iss"], idp.issuer().as_str(), "{payload}");
        // Several audiences come as an array, the way Keycloak issues them.
        assert_eq!(
            payload["aud"],
            serde_json::json!(["booking-api", "account"]),
            "{payload}"
        );
        let (iat, exp) = (
            payload["iat"].as_u64().context("no iat")?,
            payload["exp"].as_u64().context("no exp")?,
        );
        assert_eq!(exp - iat, 600, "{payload}");
        first_kid = kid;
    }

    // The token command (token.mjs over HTTP Basic) prints a token and nothing else.
    let printed = run_shell(format!("{} '{AUTH0_USER}'", idp.token_command())).await?;
    let token = printed.trim_end_matches('\n');
    assert!(!token.contains(char::is_whitespace), "{printed:?}");
    let (header, payload) = decode(token)?;
    assert_eq!(payload["sub"], AUTH0_USER, "{payload}");
    assert_eq!(header["kid"], first_kid.as_str());

    // A wrong secret is refused.
    let refused = run_shell(format!(
        "node {}/oidc/token.mjs {} {ALICE} wrong-secret",
        env!("CARGO_MANIFEST_DIR"),
        idp.issuer()
    ))
    .await;
    assert!(refused.is_err(), "{refused:?}");

    let port = idp.port();
    idp.rotate_keys().await?;
    assert_eq!(idp.port(), port, "a rotation keeps the port");
    let new_jwks = kids(&http, &idp.jwks_url()).await?;
    let token = idp.token(ALICE).await?;
    let (header, payload) = decode(&token)?;
    let kid = header["kid"].as_str().context("no kid")?;
    assert_ne!(kid, first_kid, "the rotation gave no new key");
    assert!(
        new_jwks.contains(&kid.to_owned()),
        "{kid} not in {new_jwks:?}"
    );
    assert!(
        !new_jwks.contains(&first_kid),
        "the old key is still published"
    );
    assert_eq!(payload["sub"], ALICE);
    Ok(())
}

#[tokio::test]
async fn one_audience_is_a_string() -> Result<()> {
    let idp = OidcProvider::start(OidcOptions::default()).await?;
    let (_, payload) = decode(&idp.token("svc.reporting@example").await?)?;
    assert_eq!(payload["aud"], "booking-api", "{payload}");
    assert!(
        idp.token("no spaces please").await.is_err(),
        "an id outside the pattern got a token"
    );
    Ok(())
}

/// The `kid`s of a JWKS.
async fn kids(http: &reqwest::Client, url: &str) -> Result<Vec<String>> {
    let jwks: Value = http.get(url).send().await?.json().await?;
    let keys = jwks["keys"].as_array().context("no keys")?;
    Ok(keys
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect())
}

/// A JWT's header and payload, unverified.
fn decode(token: &str) -> Result<(Value, Value)> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        bail!("not a JWS compact token: {token:?}");
    }
    let json = |part: &str| -> Result<Value> { Ok(serde_json::from_slice(&base64url(part)?)?) };
    Ok((json(parts[0])?, json(parts[1])?))
}

/// Base64url without padding (RFC 4648 §5), as JWTs use it.
fn base64url(text: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text)?)
}

/// `sh -c command`'s stdout, or an error with its stderr.
async fn run_shell(command: String) -> Result<String> {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await??;
    if !output.status.success() {
        bail!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}
