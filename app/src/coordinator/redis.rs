//! The Redis coordinator.
//!
//! Claim, complete and release are Lua scripts because each is a
//! read-then-write that must be atomic; the lock is `SET NX PX` with a
//! random holder token and is released by compare-and-delete, so a request
//! whose lock expired can never free the lock of the request that took it over.
//!
//! A create takes two round trips, not four: `claim_and_lock` and
//! `complete_and_unlock` each run two steps in one script. The windows
//! between them (after the claim, before the unlock) no longer exist, so no
//! failpoint marks them.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, Script};

use super::{Claim, CompletedRecord, Coordinator, Token};
use crate::deps::{Classify, DependencyError, Guard};
use crate::response::StoredResponse;

/// Claims `KEYS[1]` for owner `ARGV[1]` (fingerprint `ARGV[2]`, lease
/// `ARGV[3]` ms), or returns `{"in_progress"}` or
/// `{"completed", fp, status, body, exp}` (`exp`: the store's expiry of the
/// outcome in Unix ms, empty or missing when unknown). The scripts below end it.
macro_rules! claim_body {
    () => {
        r#"
local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'status', 'body', 'exp')
if r[1] == 'completed' then
  return {'completed', r[2], r[3], r[4], r[5]}
end
if r[1] then
  return {'in_progress'}
end
redis.call('HSET', KEYS[1], 'state', 'in_progress', 'owner', ARGV[1], 'fp', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
"#
    };
}

/// Completes `KEYS[1]` if owner `ARGV[1]` still holds its claim (status
/// `ARGV[2]`, body `ARGV[3]`, retention `ARGV[4]` ms, fingerprint `ARGV[5]`,
/// the store's expiry `ARGV[6]` in Unix ms or empty);
/// `done` says whether it did.
macro_rules! complete_body {
    () => {
        r#"
local done = 0
local r = redis.call('HMGET', KEYS[1], 'state', 'owner')
if r[1] == 'in_progress' and r[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'status', ARGV[2], 'body', ARGV[3], 'fp', ARGV[5], 'exp', ARGV[6])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  done = 1
end
"#
    };
}

/// `{"claimed"}`, `{"in_progress"}` or `{"completed", fp, status, body, exp}`.
const CLAIM: &str = concat!(claim_body!(), "return {'claimed'}\n");

/// The claim, then (only when claimed) the slot lock `KEYS[2]` as `SET NX
/// PX` (token `ARGV[4]`, TTL `ARGV[5]` ms): `{"claimed", "locked"}`, or
/// `{"claimed"}` when someone holds the slot.
const CLAIM_AND_LOCK: &str = concat!(
    claim_body!(),
    r#"if redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ARGV[5]) then
  return {'claimed', 'locked'}
end
return {'claimed'}
"#
);

/// 1 if completed, else 0.
const COMPLETE: &str = concat!(complete_body!(), "return done\n");

/// The completion, then the slot lock `KEYS[2]` released if token `ARGV[7]`
/// still holds it, whatever the completion did; returns the completion's answer.
const COMPLETE_AND_UNLOCK: &str = concat!(
    complete_body!(),
    r#"if redis.call('GET', KEYS[2]) == ARGV[7] then
  redis.call('DEL', KEYS[2])
end
return done
"#
);

const RELEASE: &str = r#"
local r = redis.call('HMGET', KEYS[1], 'state', 'owner')
if r[1] == 'in_progress' and r[2] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

impl Classify for RedisError {
    fn is_unavailable(&self) -> bool {
        !matches!(
            self.kind(),
            ErrorKind::TypeError | ErrorKind::InvalidClientConfig | ErrorKind::ClientError
        )
    }
}

pub struct RedisCoordinator {
    conn: ConnectionManager,
    guard: Guard,
    claim: Script,
    claim_and_lock: Script,
    complete: Script,
    complete_and_unlock: Script,
    release: Script,
    unlock: Script,
}

/// Reads the `exp` field back; empty, missing or unreadable is unknown (the
/// record is then never cached, which is always safe).
fn parse_expiry(field: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(field?.parse().ok()?)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The arguments that complete a record, in the scripts' order: token,
/// status, body, retention, fingerprint and `exp` (the store's expiry in
/// Unix milliseconds, empty when unknown; written into the command, no
/// string of its own).
fn push_completion(cmd: &mut Cmd, token: &Token, record: &CompletedRecord, retention: Duration) {
    cmd.arg(&token.0)
        .arg(record.response.status)
        .arg(&record.response.body)
        .arg(millis(retention))
        .arg(&record.fingerprint);
    match record.expires_at {
        Some(at) => cmd.arg(at.timestamp_millis()),
        None => cmd.arg(""),
    };
}

/// `EVALSHA` of `script` over `keys`; its arguments follow. Built as one
/// command rather than through `Script::key`/`arg`, which copy every
/// argument into a vector of its own and then again into the command (a
/// tenth of a create's allocations; measured in `docs/PERFORMANCE-HISTORY.md`).
fn evalsha(script: &Script, keys: &[&str], args: usize, bytes: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(3 + keys.len() + args, 64 + bytes);
    cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    cmd
}

/// Runs a command built by [`evalsha`]. After a Redis restart its script
/// cache is empty (`NOSCRIPT`): the script is loaded and the command sent
/// again, as `Script::invoke_async` does.
async fn invoke<T: FromRedisValue>(
    mut conn: ConnectionManager,
    script: &Script,
    cmd: Cmd,
) -> RedisResult<T> {
    match cmd.query_async(&mut conn).await {
        Err(e) if e.kind() == ErrorKind::NoScriptError => {
            script.load_async(&mut conn).await?;
            cmd.query_async(&mut conn).await
        }
        other => other,
    }
}

impl RedisCoordinator {
    /// Connects to `url`. The connection manager reconnects by itself after
    /// Redis restarts; calls made while it is down fail fast with `503`.
    pub async fn connect(url: &str, guard: Guard) -> Result<Self, DependencyError> {
        let client = redis::Client::open(url).map_err(|e| DependencyError::Internal {
            dependency: "redis",
            operation: "connect",
            source: Box::new(e),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(guard.timeout)
            .set_response_timeout(guard.timeout)
            .set_number_of_retries(1)
            .set_max_delay(500);
        let conn = guard
            .run(
                "connect",
                ConnectionManager::new_with_config(client, config),
            )
            .await?;
        Ok(Self {
            conn,
            guard,
            claim: Script::new(CLAIM),
            claim_and_lock: Script::new(CLAIM_AND_LOCK),
            complete: Script::new(COMPLETE),
            complete_and_unlock: Script::new(COMPLETE_AND_UNLOCK),
            release: Script::new(RELEASE),
            unlock: Script::new(UNLOCK),
        })
    }
}

impl RedisCoordinator {
    /// The claim script's answer (also the first part of `claim_and_lock`'s).
    fn claim_reply(
        &self,
        reply: &[Option<String>],
        token: Token,
    ) -> Result<Claim, DependencyError> {
        match reply {
            [Some(state)] if state == "claimed" => Ok(Claim::Acquired(token)),
            [Some(state)] if state == "in_progress" => Ok(Claim::InProgress),
            [Some(state), Some(fingerprint), Some(status), Some(body), exp @ ..]
                if state == "completed" && exp.len() <= 1 =>
            {
                let status = status.parse().map_err(|_| {
                    self.guard
                        .corrupt("claim", "completed record with a bad status")
                })?;
                Ok(Claim::Completed(CompletedRecord {
                    fingerprint: fingerprint.clone(),
                    response: StoredResponse {
                        status,
                        body: body.clone(),
                    },
                    expires_at: exp.first().and_then(|e| parse_expiry(e.as_deref())),
                }))
            }
            _ => Err(self
                .guard
                .corrupt("claim", "unexpected reply from the claim script")),
        }
    }
}

#[async_trait]
impl Coordinator for RedisCoordinator {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), DependencyError> {
        let mut conn = self.conn.clone();
        self.guard
            .run("ping", redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map(drop)
    }

    async fn claim(
        &self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
    ) -> Result<Claim, DependencyError> {
        let token = Token::new();
        let mut cmd = evalsha(&self.claim, &[key], 3, token.0.len() + fingerprint.len());
        cmd.arg(&token.0).arg(fingerprint).arg(millis(lease));
        let reply: Vec<Option<String>> = self
            .guard
            .run("claim", invoke(self.conn.clone(), &self.claim, cmd))
            .await?;
        self.claim_reply(&reply, token)
    }

    async fn claim_and_lock(
        &self,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        lock: &str,
        ttl: Duration,
    ) -> Result<(Claim, Option<Token>), DependencyError> {
        let (token, lock_token) = (Token::new(), Token::new());
        let script = &self.claim_and_lock;
        let bytes = key.len() + lock.len() + 2 * token.0.len() + fingerprint.len();
        let mut cmd = evalsha(script, &[key, lock], 5, bytes);
        cmd.arg(&token.0)
            .arg(fingerprint)
            .arg(millis(lease))
            .arg(&lock_token.0)
            .arg(millis(ttl));
        let reply: Vec<Option<String>> = self
            .guard
            // Labelled by the step it answers (metrics, logs): the lock rides along.
            .run("claim", invoke(self.conn.clone(), script, cmd))
            .await?;
        match reply.as_slice() {
            [Some(claimed), Some(locked)] if claimed == "claimed" && locked == "locked" => {
                Ok((Claim::Acquired(token), Some(lock_token)))
            }
            _ => Ok((self.claim_reply(&reply, token)?, None)),
        }
    }

    async fn complete_and_unlock(
        &self,
        key: &str,
        token: &Token,
        record: &CompletedRecord,
        retention: Duration,
        lock: &str,
        lock_token: &Token,
    ) -> Result<bool, DependencyError> {
        let script = &self.complete_and_unlock;
        let bytes = key.len() + lock.len() + record.response.body.len() + 160;
        let mut cmd = evalsha(script, &[key, lock], 7, bytes);
        push_completion(&mut cmd, token, record, retention);
        cmd.arg(&lock_token.0);
        let done: i64 = self
            .guard
            // Labelled by the step it answers: the unlock rides along.
            .run("complete", invoke(self.conn.clone(), script, cmd))
            .await?;
        Ok(done == 1)
    }

    async fn complete(
        &self,
        key: &str,
        token: &Token,
        record: &CompletedRecord,
        retention: Duration,
    ) -> Result<bool, DependencyError> {
        let bytes = key.len() + record.response.body.len() + 160;
        let mut cmd = evalsha(&self.complete, &[key], 6, bytes);
        push_completion(&mut cmd, token, record, retention);
        let done: i64 = self
            .guard
            .run("complete", invoke(self.conn.clone(), &self.complete, cmd))
            .await?;
        Ok(done == 1)
    }

    async fn release(&self, key: &str, token: &Token) -> Result<bool, DependencyError> {
        let mut cmd = evalsha(&self.release, &[key], 1, key.len() + token.0.len());
        cmd.arg(&token.0);
        let released: i64 = self
            .guard
            .run("release", invoke(self.conn.clone(), &self.release, cmd))
            .await?;
        Ok(released == 1)
    }

    async fn forget(&self, key: &str) -> Result<(), DependencyError> {
        let mut conn = self.conn.clone();
        self.guard
            .run(
                "forget",
                redis::cmd("DEL").arg(key).query_async::<i64>(&mut conn),
            )
            .await
            .map(drop)
    }

    async fn lock(&self, name: &str, ttl: Duration) -> Result<Option<Token>, DependencyError> {
        let mut conn = self.conn.clone();
        let token = Token::new();
        let set: Option<String> = self
            .guard
            .run(
                "lock",
                redis::cmd("SET")
                    .arg(name)
                    .arg(&token.0)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(set.map(|_| token))
    }

    async fn unlock(&self, name: &str, token: &Token) -> Result<bool, DependencyError> {
        let mut cmd = evalsha(&self.unlock, &[name], 1, name.len() + token.0.len());
        cmd.arg(&token.0);
        let deleted: i64 = self
            .guard
            .run("unlock", invoke(self.conn.clone(), &self.unlock, cmd))
            .await?;
        Ok(deleted == 1)
    }
}
