//! Before load goes to a target: is it up, is it a booking API, does it
//! speak the chosen profile, and does it let the harness act as each of its
//! users? A dead target, the wrong dialect or missing tokens would turn a
//! run into hundreds of meaningless findings; the preflight turns them into
//! one clear error. After the run, the namespace's bookings are cancelled so
//! the deployment is left as it was found.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::client::{Api, Call, Client, Recorder};
use crate::history::{OpKind, Operation};
use crate::identity::{self, Schedule, TokenSource};
use crate::scenario::Scenario;

const TIMEOUT: Duration = Duration::from_secs(3);

/// A token per user from the tokens file (checked before any request),
/// health on every endpoint, the catalogue, tokens from the token command
/// (or a `--auth dev` target), then one booking in the run's namespace on
/// `date`: booked, replayed, refused to another user, cancelled. Returns
/// when the command's tokens are due again, for the refresher.
pub async fn check(
    api: &Arc<Api>,
    names: &[String],
    s: &Scenario,
    date: chrono::NaiveDate,
    tokens: Option<&TokenSource>,
) -> Result<Option<Schedule>> {
    let users = identity::users_of(&s.workload);
    if let Some(TokenSource::File(path)) = tokens {
        identity::load_file(path, &users, &api.user_tokens)?;
    }
    for (endpoint, name) in api.endpoints.iter().zip(names) {
        check_health(api, endpoint, name).await?;
    }
    check_catalogue(api, names.first().map_or("", String::as_str), s).await?;
    let schedule = match tokens {
        Some(TokenSource::Command(command)) => {
            Some(identity::mint_all(command, &users, &api.user_tokens).await?)
        }
        Some(TokenSource::File(_)) => None,
        None => {
            mint_dev_tokens(api, &http_first(api)?, &users).await?;
            None
        }
    };
    check_one_booking(api, s, date).await?;
    Ok(schedule)
}

/// `GET` the profile's health path, three tries.
async fn check_health(api: &Api, endpoint: &crate::client::Endpoint, name: &str) -> Result<()> {
    let profile = &api.profile;
    let http = api.http_client(endpoint)?;
    let url = format!("{}{}", endpoint.base, profile.health_path);
    let mut last = String::new();
    for _ in 0..3 {
        match http.get(&url).timeout(TIMEOUT).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("answered {}", r.status()),
            Err(e) => last = describe(&e.without_url()),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!(
        "target {name} is not reachable: GET {} {last}",
        profile.health_path
    )
}

/// The catalogue answers and lists every resource the workload books.
async fn check_catalogue(api: &Api, first: &str, s: &Scenario) -> Result<()> {
    let profile = &api.profile;
    let endpoint = api.endpoints.first().context("no endpoint")?;
    let catalogue = api
        .http_client(endpoint)?
        .get(format!("{}{}", endpoint.base, profile.catalogue_path))
        .timeout(TIMEOUT)
        .send()
        .await
        .with_context(|| format!("GET {} on {first}", profile.catalogue_path))?;
    let status = catalogue.status();
    let body = catalogue.text().await.unwrap_or_default();
    let listed: Option<Value> = serde_json::from_str(&body).ok();
    let Some(listed) = listed.filter(|_| status.is_success()) else {
        bail!(
            "target {first} is not a booking API: GET {} answered {status} {}",
            profile.catalogue_path,
            excerpt(&body)
        );
    };
    for resource in &s.workload.resources {
        if !mentions(&listed, resource) {
            bail!(
                "resource {resource:?} is not in the target's catalogue ({}); list the target's \
                 resources in [workload] resources",
                excerpt(&body)
            );
        }
    }
    Ok(())
}

/// One booking in the run's namespace on `date`: booked, replayed with its
/// key, refused to another user, cancelled by its owner.
async fn check_one_booking(api: &Arc<Api>, s: &Scenario, date: chrono::NaiveDate) -> Result<()> {
    let profile = &api.profile;
    let recorder = Arc::new(Recorder::default());
    let client = Client::new(
        "preflight".into(),
        api.clone(),
        recorder,
        Instant::now(),
        TIMEOUT,
        1,
    )?;
    let ns = &s.workload.namespace;
    let resource = s.workload.resources.first().context("no resources")?;
    let booking = Call::create(
        &format!("{ns}preflight"),
        resource,
        &date.to_string(),
        Some(format!("{ns}preflight-1")),
    );
    let hint = || {
        format!(
            "is it a booking API speaking profile {:?}? (--api-profile, docs/SCENARIOS.md)",
            profile.name
        )
    };
    let created = client.attempt(1, 1, &booking, 0).await;
    expect(&created, "a first booking", 201, None, api).with_context(hint)?;
    let id = created
        .returned_booking_id()
        .context("the 201 carries no booking id")
        .with_context(hint)?;
    let replayed = client.attempt(1, 2, &booking, 0).await;
    let again = "the same booking sent again with its key";
    expect(&replayed, again, 201, None, api).with_context(hint)?;
    if replayed.returned_booking_id().as_deref() != Some(id.as_str()) {
        bail!(
            "the same request sent again with its Idempotency-Key made another booking ({}): \
             the target does not honour idempotency keys",
            excerpt(replayed.body.as_deref().unwrap_or(""))
        );
    }
    let rival = Call {
        user: format!("{ns}preflight-rival"),
        key: Some(format!("{ns}preflight-2")),
        ..booking.clone()
    };
    let refused = client.attempt(2, 1, &rival, 0).await;
    let other = "another user booking the same slot";
    expect(&refused, other, 409, Some("ALREADY_BOOKED"), api).with_context(hint)?;
    let cancelled = client
        .attempt(3, 1, &Call::cancel(&booking.user, &id), 0)
        .await;
    expect(&cancelled, "the owner cancelling it", 200, None, api).with_context(hint)?;
    Ok(())
}

fn http_first(api: &Api) -> Result<(reqwest::Client, String)> {
    let endpoint = api.endpoints.first().context("no endpoint")?;
    Ok((api.http_client(endpoint)?, endpoint.base.clone()))
}

/// A deployment of this service under `--auth dev` mints a token per user;
/// with no token source given, the harness gets one for every user the run
/// may act as, before any fault. Under `--auth jwt` tokens come from
/// `--token-command` or `--tokens-file`.
async fn mint_dev_tokens(
    api: &Api,
    (http, base): &(reqwest::Client, String),
    users: &[String],
) -> Result<()> {
    let service = crate::service_api::ServiceApi::new(http, base);
    if service.auth_mode(TIMEOUT).await.as_deref() != Some("dev") {
        return Ok(());
    }
    for user in users {
        let token = service.dev_token(user, TIMEOUT).await?;
        if let Ok(mut tokens) = api.user_tokens.lock() {
            tokens.insert(user.clone(), token);
        }
    }
    Ok(())
}

/// One preflight answer, as the profile says it must be.
fn expect(op: &Operation, what: &str, status: u16, code: Option<&str>, api: &Api) -> Result<()> {
    let Some(got) = op.status else {
        bail!(
            "{what}: no answer ({})",
            op.error.as_deref().unwrap_or("unknown error")
        );
    };
    let body = op.body.as_deref().unwrap_or("");
    if got == 401 {
        bail!(
            "{what}: the target refused the harness ({got} {}); a deployment that \
             authenticates users needs a token per user, from --token-command CMD or \
             --tokens-file FILE ([target] token_command, tokens_file; docs/SCENARIOS.md): if \
             one was given, the deployment did not accept its tokens (issuer, audience, \
             expiry?); other credentials (a gateway's key) go in --header 'Name: value'",
            excerpt(body)
        );
    }
    if got == 403 {
        bail!(
            "{what}: the target refused to let the harness act as its own users ({got} {}); \
             each user needs a token whose subject is that user id: --token-command CMD or \
             --tokens-file FILE ([target] token_command, tokens_file); under --auth dev the \
             harness mints them itself, and a single --header token acts as one user only",
            excerpt(body)
        );
    }
    let ok_status = got == status || (status == 201 && got == 200 && op.kind == OpKind::Create);
    if !ok_status || op.code.as_deref() != code {
        bail!(
            "{what}: expected {status}{} but got {got} {}",
            code.map(|c| format!(" {c}")).unwrap_or_default(),
            excerpt(body)
        );
    }
    let retry_after = op.retry_after || op.replayed;
    if let Some(problem) = api.profile.shape_problem(op.kind, got, body, retry_after) {
        bail!("{what}: {problem}: {}", excerpt(body));
    }
    Ok(())
}

/// Cancels every confirmed booking of the namespace's users, so a later
/// run whose window overlaps finds its slots free. Not recorded: the
/// history ends with the run.
pub async fn clean_up(api: &Arc<Api>, s: &Scenario) {
    let recorder = Arc::new(Recorder::default());
    let Ok(client) = Client::new(
        "cleanup".into(),
        api.clone(),
        recorder,
        Instant::now(),
        TIMEOUT,
        3,
    ) else {
        return;
    };
    let w = &s.workload;
    let users = (0..w.users)
        .map(|u| w.user(u))
        .chain([format!("{}recovery-probe", w.namespace)]);
    for user in users {
        let list = Call {
            kind: OpKind::List,
            user: user.clone(),
            resource: None,
            date: None,
            key: None,
            booking_id: None,
        };
        let listed = client.perform(0, &list, 0).await;
        for b in listed
            .listed_bookings()
            .into_iter()
            .filter(|b| b.status == "confirmed")
            .take(10_000)
        {
            let cancel = Call {
                kind: OpKind::Cancel,
                booking_id: Some(b.id),
                ..list.clone()
            };
            client.perform(0, &cancel, 0).await;
        }
    }
}

fn mentions(v: &Value, needle: &str) -> bool {
    match v {
        Value::String(s) => s == needle,
        Value::Array(a) => a.iter().any(|x| mentions(x, needle)),
        Value::Object(o) => o.values().any(|x| mentions(x, needle)),
        _ => false,
    }
}

fn excerpt(body: &str) -> String {
    let mut s: String = body.chars().take(300).collect();
    if s.len() < body.len() {
        s.push('…');
    }
    if s.is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

fn describe(e: &reqwest::Error) -> String {
    // The innermost causes say what went wrong (refused, TLS, DNS).
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    if causes.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}
