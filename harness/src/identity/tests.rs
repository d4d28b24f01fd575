use super::*;

/// A JWT whose payload is `claims` (the header and signature are not read).
fn jwt(claims: &str) -> String {
    format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", encode(claims.as_bytes()))
}

fn encode(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

#[test]
fn base64url_decodes_with_or_without_padding() {
    for text in [
        "",
        "a",
        "ab",
        "abc",
        "abcd",
        "{\"exp\":1700000000}",
        "ÿþý?>",
    ] {
        assert_eq!(
            base64url(&encode(text.as_bytes())).as_deref(),
            Some(text.as_bytes()),
            "{text}"
        );
    }
    assert_eq!(base64url("YWI=").as_deref(), Some(&b"ab"[..]));
    assert_eq!(
        base64url("YW+I"),
        None,
        "standard base64's + is not base64url"
    );
}

#[test]
fn the_exp_of_a_jwt_is_read_without_verifying() {
    assert_eq!(
        jwt_exp(&jwt(r#"{"sub":"u0","exp":1700000300}"#)),
        Some(1_700_000_300)
    );
    assert_eq!(
        jwt_exp(&jwt(r#"{"exp":1700000300.5}"#)),
        Some(1_700_000_300)
    );
    assert_eq!(jwt_exp(&jwt(r#"{"sub":"u0"}"#)), None, "no exp");
    assert_eq!(jwt_exp("opaque-token"), None);
    assert_eq!(jwt_exp("a.b.c.d.e"), None, "an encrypted JWT is opaque");
    assert_eq!(jwt_exp("a.!!.c"), None);
    assert_eq!(jwt_exp(&format!("h.{}.s", encode(b"not json"))), None);
}

#[test]
fn command_output_is_a_token_or_json_with_one() {
    let now = 1_700_000_000;
    let plain = parse_output("  abc.def-ghi\n", now).expect("plain");
    assert_eq!(plain.token, "abc.def-ghi");
    assert_eq!(plain.lifetime, None);
    let oauth = r#"{"access_token":"opaque","token_type":"Bearer","expires_in":300}"#;
    assert_eq!(
        parse_output(oauth, now).expect("oauth"),
        Issued {
            token: "opaque".into(),
            lifetime: Some(Duration::from_secs(300))
        }
    );
    let dev = format!(
        r#"{{"success":true,"token":"{}","tokenType":"Bearer"}}"#,
        jwt(r#"{"sub":"u0","exp":1700000120}"#)
    );
    let issued = parse_output(&dev, now).expect("dev");
    assert_eq!(
        issued.lifetime,
        Some(Duration::from_secs(119)),
        "exp wins, less the second the clock's truncation may hide"
    );
    let both = r#"{"access_token":"a","token":"b"}"#;
    assert_eq!(parse_output(both, now).expect("both").token, "a");
}

#[test]
fn bad_output_is_an_error_that_does_not_quote_it() {
    let now = 1_700_000_000;
    let error = |out: &str| format!("{:#}", parse_output(out, now).expect_err(out));
    assert!(error(" \n").contains("printed nothing"));
    assert!(error("secret1 secret2").contains("more than one word"));
    assert!(!error("secret1 secret2").contains("secret"));
    let e = error(r#"{"error":"invalid_client","secret":"x"}"#);
    assert!(e.contains("its keys: error, secret"), "{e}");
    assert!(!e.contains("invalid_client"), "{e}");
    assert!(error(r#"{"access_token":"#).contains("does not parse"));
    assert!(error(r#"{"token":""}"#).contains("empty token"));
    let expired = jwt(r#"{"exp":1699999999}"#);
    let e = error(&expired);
    assert!(e.contains("expired already"), "{e}");
    assert!(!e.contains(&expired), "{e}");
}

#[test]
fn tokens_are_fetched_again_well_before_they_expire() {
    let after = |secs| refresh_after(Duration::from_secs(secs)).as_secs();
    assert_eq!(
        after(300),
        225,
        "a provider's 5-minute token: a quarter left"
    );
    assert_eq!(after(43_200), 32_400, "a 12-hour dev token");
    assert_eq!(after(180), 120, "60 s left");
    assert_eq!(after(90), 45, "never before half its life");
    assert_eq!(after(1), 1, "never at once");
}

#[test]
fn a_run_needs_its_users_their_intruders_and_its_probes() {
    let w = Workload {
        users: 2,
        namespace: "ns-".into(),
        ..Workload::default()
    };
    assert_eq!(
        users_of(&w),
        [
            "ns-u0",
            "ns-u1",
            "ns-u0-intruder",
            "ns-u1-intruder",
            "ns-recovery-probe",
            "ns-preflight",
            "ns-preflight-rival"
        ]
    );
}

#[test]
fn a_tokens_file_must_cover_every_user() {
    let dir = tempfile::tempdir().expect("dir");
    let users: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let json = dir.path().join("t.json");
    std::fs::write(&json, r#"{"a":"ta","b":"tb","c":"tc","extra":"tx"}"#).expect("write");
    let tokens = Tokens::default();
    load_file(&json, &users, &tokens).expect("complete");
    assert_eq!(
        tokens.lock().expect("lock").get("b").map(String::as_str),
        Some("tb")
    );

    let toml = dir.path().join("t.toml");
    std::fs::write(&toml, "a = \"ta\"\n\"b\" = \"tb\"\n").expect("write");
    let e = format!(
        "{:#}",
        load_file(&toml, &users, &Tokens::default()).expect_err("c")
    );
    assert!(
        e.contains("no token for 1 of the 3 users") && e.contains(": c "),
        "{e}"
    );

    std::fs::write(&toml, "a = \"secret-token\"\nb = [\n").expect("write");
    let e = format!(
        "{:#}",
        load_file(&toml, &users, &Tokens::default()).expect_err("bad")
    );
    assert!(!e.contains("secret-token") && e.contains("line 2"), "{e}");
    let txt = dir.path().join("t.txt");
    std::fs::write(&txt, "").expect("write");
    assert!(load_file(&txt, &users, &Tokens::default()).is_err());
}

#[tokio::test]
async fn a_token_command_gets_the_user_as_one_argument_and_in_its_environment() {
    let user = "u1;$(id)`id`";
    let issued = run_command("printf '%s|%s' \"$BOOKING_USER\"", user)
        .await
        .expect("runs");
    assert_eq!(
        issued.token,
        format!("{user}|{user}"),
        "never run by the shell"
    );

    let e = run_command("echo no client for $BOOKING_USER >&2; false", "qa-u3")
        .await
        .expect_err("exit 1");
    let e = format!("{e:#}");
    assert!(e.contains("user qa-u3 exited with 1"), "{e}");
    assert!(e.contains("no client for qa-u3"), "the stderr: {e}");
}

/// A command whose JWTs live 2 s: the refresher swaps in new ones
/// beside the run, and none lapses.
#[tokio::test]
async fn short_lived_tokens_are_fetched_again_beside_the_run() {
    let command = "mint() { payload=$(printf '{\"exp\":%s,\"n\":\"%s\"}' \
        $(( $(date +%s) + 3 )) \"$(date +%s%N)$1\" | base64 | tr '+/' '-_' | tr -d '=\\n'); \
        printf 'h.%s.s' \"$payload\"; }; mint";
    let tokens = Tokens::default();
    let users = vec!["a".to_owned(), "b".to_owned()];
    let schedule = mint_all(command, &users, &tokens).await.expect("mints");
    let first = tokens.lock().expect("lock").clone();
    assert_eq!(first.len(), 2);
    assert!(first.values().all(|t| jwt_exp(t).is_some()), "{first:?}");
    let refresher = Refresher::start(schedule, tokens.clone());
    let mut renewed = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = tokens.lock().expect("lock").clone();
        if users.iter().all(|u| now.get(u) != first.get(u)) {
            renewed = true;
            break;
        }
    }
    assert!(renewed, "both tokens were fetched again within 10 s");
    assert_eq!(refresher.stop(), Vec::<String>::new());
}
