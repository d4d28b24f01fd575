//! Redis connections for the coordinator's calls, each used by one request
//! at a time, on the request's own task.
//!
//! Why not redis-rs's multiplexed connection (or its `ConnectionManager`):
//! every command goes through a channel to a driver task that owns the
//! socket, and its answer back through another, so each of a create's two
//! round trips wakes two more tasks, often on the other worker thread
//! (a futex and a context switch), and allocates for the hand-off. Here the
//! request writes its command and reads the answer itself. redis-rs still
//! writes the commands and parses the answers; what is written here is the
//! pool's rule, the handshake and where an answer ends.
//!
//! The rule is `store::pg_conns`'s: a connection goes back clean only when
//! its exchange ran to its end. One whose exchange was cut short (the
//! request's deadline dropped it mid-way) or failed below Redis's own error
//! replies (I/O, a reply that does not parse) is discarded when it is next
//! handed out, and a new one is opened. So is one that Redis closed while it
//! sat in the pool (a restart): tokio has seen the end of its stream, and
//! the check costs no system call while nothing arrived.

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::{Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue, RedisError, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RedisConnections {
    pool: managed::Pool<Manager>,
}

struct Manager {
    host: String,
    port: u16,
    /// `AUTH` and `SELECT` from the URL, sent once per connection.
    handshake: Vec<Cmd>,
}

/// A pooled connection, its buffers, and whether its last exchange ran to
/// its end.
struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    reply: Vec<u8>,
    clean: bool,
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = RedisError;

    async fn create(&self) -> Result<Conn, RedisError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        // Commands are small and answered at once: Nagle's algorithm would
        // hold the next one back until the last was acknowledged.
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            out: Vec::with_capacity(512),
            reply: Vec::with_capacity(512),
            clean: true,
        };
        for cmd in &self.handshake {
            conn.exchange(cmd).await?.extract_error()?;
        }
        Ok(conn)
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<RedisError> {
        if !conn.clean {
            return Err(RecycleError::message(
                "its last exchange did not run to its end",
            ));
        }
        // Nothing may arrive between exchanges: bytes or the end of the
        // stream mean Redis closed it or the connection is out of step.
        match conn.stream.try_read(&mut [0; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Ok(0) => Err(RecycleError::message("Redis closed it")),
            Ok(_) => Err(RecycleError::message("unexpected bytes between replies")),
            Err(e) => Err(RecycleError::Backend(e.into())),
        }
    }
}

impl RedisConnections {
    /// A pool of up to `size` connections to the server `info` names (TCP
    /// only: the service is built without TLS, and Unix sockets are not
    /// offered).
    pub fn new(info: &ConnectionInfo, size: usize) -> Result<Self, RedisError> {
        let (host, port) = match &info.addr {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            other => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "REDIS_URL must name a TCP server (redis://host:port/db)",
                    format!("{other}"),
                )))
            }
        };
        let mut handshake = Vec::new();
        if let Some(password) = &info.redis.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = &info.redis.username {
                auth.arg(username);
            }
            handshake.push(auth.arg(password).clone());
        }
        if info.redis.db != 0 {
            handshake.push(redis::cmd("SELECT").arg(info.redis.db).clone());
        }
        let pool = managed::Pool::builder(Manager {
            host,
            port,
            handshake,
        })
        .max_size(size)
        .build()
        .map_err(|e| RedisError::from((ErrorKind::ClientError, "pool", e.to_string())))?;
        Ok(Self { pool })
    }

    /// Sends `cmd` on a connection of the pool and reads its answer (a
    /// Redis error reply becomes the `Err`). Waits for a free connection;
    /// the caller's deadline bounds the wait.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        let mut conn = self.pool.get().await.map_err(|e| match e {
            managed::PoolError::Backend(e) => e,
            other => RedisError::from(std::io::Error::other(other.to_string())),
        })?;
        conn.clean = false;
        let answer = conn.exchange(cmd).await;
        conn.clean = answer.is_ok();
        T::from_owned_redis_value(answer?.extract_error()?)
    }
}

impl Conn {
    /// Writes `cmd` and reads one whole reply. An error reply is a `Value`
    /// here (the exchange ran to its end); the `Err`s are I/O or parsing.
    async fn exchange(&mut self, cmd: &Cmd) -> Result<Value, RedisError> {
        self.out.clear();
        cmd.write_packed_command(&mut self.out);
        self.stream.write_all(&self.out).await?;
        self.reply.clear();
        loop {
            if let Some((value, end)) = parse(&self.reply, 0, 0)? {
                if end != self.reply.len() {
                    return Err(protocol_error("bytes after the reply"));
                }
                return Ok(value);
            }
            if self.stream.read_buf(&mut self.reply).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }
}

fn protocol_error(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::ParseError, "malformed reply", what.to_string()))
}

/// The replies the coordinator's commands get are a few levels deep at most.
const MAX_DEPTH: usize = 8;

/// The RESP2 value that starts at `at` in `buf` and where it ends, or
/// `None` while its bytes have not all arrived.
///
/// Why by hand: redis-rs parses a byte slice only whole (it cannot say
/// whether the bytes read so far make a reply), and each call starts a new
/// decoder that tracks errors for its messages, which cost a seventh of a
/// create's instructions. Error replies are still handed to redis-rs, which
/// knows their kinds (`NOSCRIPT`, `BUSY`, `LOADING` …).
fn parse(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, RedisError> {
    let Some(newline) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    if newline == 0 {
        return Err(protocol_error("a line without a type"));
    }
    let (kind, line) = (buf[at], &buf[at + 1..at + newline]);
    let line_end = at + newline + 2;
    let length = || -> Result<Option<usize>, RedisError> {
        let n: i64 = std::str::from_utf8(line)
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| protocol_error("a length that is not a number"))?;
        Ok(usize::try_from(n).ok()) // -1: nil
    };
    let value = match kind {
        b'+' if line == b"OK" => Value::Okay,
        b'+' => Value::SimpleString(String::from_utf8_lossy(line).into_owned()),
        b':' => Value::Int(
            std::str::from_utf8(line)
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| protocol_error("an integer that is not a number"))?,
        ),
        b'-' => redis::parse_redis_value(&buf[at..line_end])?,
        b'$' => match length()? {
            None => Value::Nil,
            Some(n) => {
                let end = line_end + n + 2;
                if buf.len() < end {
                    return Ok(None);
                }
                if &buf[end - 2..end] != b"\r\n" {
                    return Err(protocol_error("a string longer than its length"));
                }
                return Ok(Some((
                    Value::BulkString(buf[line_end..end - 2].to_vec()),
                    end,
                )));
            }
        },
        b'*' if depth < MAX_DEPTH => match length()? {
            None => Value::Nil,
            Some(n) => {
                let mut items = Vec::with_capacity(n.min(64));
                let mut end = line_end;
                for _ in 0..n {
                    match parse(buf, end, depth + 1)? {
                        Some((item, next)) => {
                            items.push(item);
                            end = next;
                        }
                        None => return Ok(None),
                    }
                }
                return Ok(Some((Value::Array(items), end)));
            }
        },
        _ => return Err(protocol_error("an unknown or too deeply nested type")),
    };
    Ok(Some((value, line_end)))
}

#[cfg(test)]
mod tests {
    use redis::{ErrorKind, Value};

    use super::parse;

    fn end(reply: &[u8]) -> Option<usize> {
        parse(reply, 0, 0).expect("well formed").map(|(_, end)| end)
    }

    #[test]
    fn a_reply_ends_only_once_all_its_bytes_are_there() {
        let whole: &[&[u8]] = &[
            b"+OK\r\n",
            b"-NOSCRIPT No matching script\r\n",
            b":1\r\n",
            b"$-1\r\n",
            b"$5\r\nhe\r\nl\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$7\r\nclaimed\r\n$6\r\nlocked\r\n",
            b"*5\r\n$9\r\ncompleted\r\n$2\r\nfp\r\n$3\r\n201\r\n$2\r\n{}\r\n$-1\r\n",
            b"*2\r\n*1\r\n:1\r\n$0\r\n\r\n",
        ];
        for reply in whole {
            assert_eq!(end(reply), Some(reply.len()), "{:?}", reply);
            for cut in 0..reply.len() {
                assert_eq!(end(&reply[..cut]), None, "{:?} cut at {cut}", reply);
            }
            let mut longer = reply.to_vec();
            longer.extend_from_slice(b"+next\r\n");
            assert_eq!(end(&longer), Some(reply.len()), "{:?}", reply);
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        for reply in [
            &b"?x\r\n"[..],
            b"$x\r\n",
            b"*1\r\n!\r\n",
            b"\r\n",
            b":x\r\n",
        ] {
            assert!(parse(reply, 0, 0).is_err(), "{:?}", reply);
        }
        let deep = "*1\r\n".repeat(20);
        assert!(parse(deep.as_bytes(), 0, 0).is_err());
        assert!(
            parse(b"$2\r\nabc\r\n", 0, 0).is_err(),
            "longer than its length"
        );
    }

    /// The values are redis-rs's own for the same bytes, so what reads them
    /// (`FromRedisValue`, `extract_error`) sees no difference.
    #[test]
    fn replies_parse_as_redis_rs_parses_them() {
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"+PONG\r\n",
            b":-42\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"$5\r\nhe\r\nl\r\n",
            b"*-1\r\n",
            b"*5\r\n$9\r\ncompleted\r\n$2\r\nfp\r\n$3\r\n201\r\n$2\r\n{}\r\n$-1\r\n",
            b"*2\r\n*1\r\n:1\r\n+x\r\n",
            b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
            b"-ERR unknown command\r\n",
            b"*2\r\n:1\r\n-BUSY running a script\r\n",
        ];
        for reply in replies {
            let (ours, _) = parse(reply, 0, 0).expect("parses").expect("whole");
            let theirs = redis::parse_redis_value(reply).expect("redis-rs parses it");
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(reply));
        }
        let (noscript, _) = parse(replies[9], 0, 0).expect("parses").expect("whole");
        let error = noscript.extract_error().expect_err("an error reply");
        assert_eq!(error.kind(), ErrorKind::NoScriptError);
        assert!(matches!(
            parse(b"*1\r\n$2\r\nhi\r\n", 0, 0),
            Ok(Some((Value::Array(_), 12)))
        ));
    }
}
