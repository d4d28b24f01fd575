//! A TCP fault proxy, controllable at run time.
//!
//! Toxiproxy is the reference for these faults; its Rust port `noxious` is
//! dormant and has no connection reset, so this small proxy is written here.
//! One [`Proxy`] listens on a free loopback port and forwards each accepted
//! connection to its upstream, applying the current [`Toxics`]:
//!
//! - latency (+ jitter) on every chunk, both directions;
//! - a bandwidth limit (bytes per second, per direction);
//! - `blackhole`: accept, never forward, never answer;
//! - `close_after`: close the connection after N bytes from upstream;
//! - `drop_responses`: forward requests, discard every reply (the glitch that
//!   makes clients retry after a commit);
//! - [`Proxy::reset_all`]: abort every open connection with a TCP reset.
//!
//! `blackhole` and `drop_responses` discard bytes of live connections, which
//! no real network does: TCP delivers every byte in order or breaks the
//! connection. So when either is lifted, every open connection is reset, as
//! a connection that lost data would have been; otherwise a Redis or
//! PostgreSQL client would read the replies of later commands as those of
//! the lost ones.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The faults currently applied by a proxy. `Default` is a clean link.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Toxics {
    pub latency: Duration,
    pub jitter: Duration,
    /// Bytes per second per direction; `None` is unlimited.
    pub bandwidth: Option<u64>,
    pub blackhole: bool,
    /// Close a connection once this many bytes came back from upstream.
    pub close_after: Option<u64>,
    pub drop_responses: bool,
}

struct Shared {
    toxics: Mutex<Toxics>,
    /// Bumped by `reset_all`; connections watch it and abort.
    generation: watch::Sender<u64>,
    connections: AtomicU64,
    /// Jitter is drawn from this (the run's seed mixed with the proxy's
    /// name), a stream per connection and direction.
    seed: AtomicU64,
}

/// A running proxy; dropping it stops the listener and all connections.
pub struct Proxy {
    name: String,
    port: u16,
    upstream: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`127.0.0.1:PORT`).
    pub async fn start(name: &str, upstream: &str) -> Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (generation, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            toxics: Mutex::new(Toxics::default()),
            generation,
            connections: AtomicU64::new(0),
            seed: AtomicU64::new(name_seed(name, 0)),
        });
        let accept = tokio::spawn(accept_loop(listener, upstream.to_owned(), shared.clone()));
        Ok(Proxy {
            name: name.to_owned(),
            port,
            upstream: upstream.to_owned(),
            shared,
            accept,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Draws this proxy's jitter from `seed` (the scenario's) from now on.
    pub fn seed(&self, seed: u64) {
        self.shared
            .seed
            .store(name_seed(&self.name, seed), Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    pub fn toxics(&self) -> Toxics {
        self.shared
            .toxics
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Replaces the toxics; open connections pick them up on their next chunk.
    pub fn set(&self, toxics: Toxics) {
        self.update(|t| *t = toxics);
    }

    /// Changes one part of the toxics. Lifting a toxic that discarded bytes
    /// resets the connections that may have lost some (see the module docs).
    pub fn update(&self, change: impl FnOnce(&mut Toxics)) {
        let lifted_discard = match self.shared.toxics.lock() {
            Ok(mut t) => {
                let discarded = t.blackhole || t.drop_responses;
                change(&mut t);
                discarded && !(t.blackhole || t.drop_responses)
            }
            Err(_) => false,
        };
        if lifted_discard {
            self.reset_all();
        }
    }

    /// Back to a clean link (open connections keep running).
    pub fn heal(&self) {
        self.set(Toxics::default());
    }

    /// Aborts every open connection with a TCP reset.
    pub fn reset_all(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.reset_all();
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let number = shared.connections.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let reset = shared.generation.subscribe();
            serve(client, &upstream, &shared, reset, number).await;
        });
    }
}

/// A proxy's seed: the run's, mixed with the proxy's name (ports are not
/// stable between runs; names are).
fn name_seed(name: &str, seed: u64) -> u64 {
    name.bytes()
        .fold(seed, |h, b| crate::seed::stream(h, u64::from(b), 0))
}

/// Sets SO_LINGER 0, so that closing sends a reset rather than a clean FIN.
/// (tokio deprecates `set_linger` because a non-zero linger blocks on drop;
/// zero never blocks.)
#[allow(deprecated)]
fn arm_reset(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
}

async fn serve(
    client: TcpStream,
    upstream: &str,
    shared: &Arc<Shared>,
    mut reset: watch::Receiver<u64>,
    number: u64,
) {
    let toxics = current(shared);
    if toxics.blackhole {
        // Hold the connection open and read nothing, until reset or the peer leaves.
        let mut client = client;
        let mut sink = [0u8; 1024];
        loop {
            tokio::select! {
                _ = reset.changed() => {
                    arm_reset(&client);
                    return;
                }
                read = client.read(&mut sink) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return;
                    }
                }
            }
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        arm_reset(&client);
        return;
    };
    let (mut client, mut server) = (client, server);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let upstream_bytes = AtomicU64::new(0);
    let was_reset = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let to_server = pump(
            &mut client_read,
            &mut server_write,
            shared,
            (Direction::Request, number),
            &upstream_bytes,
        );
        let to_client = pump(
            &mut server_read,
            &mut client_write,
            shared,
            (Direction::Response, number),
            &upstream_bytes,
        );
        // When either side ends, the connection is over; a reset aborts both.
        tokio::select! {
            _ = to_server => false,
            _ = to_client => false,
            _ = reset.changed() => true,
        }
    };
    if was_reset {
        arm_reset(&client);
        arm_reset(&server);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

fn current(shared: &Shared) -> Toxics {
    shared.toxics.lock().map(|t| t.clone()).unwrap_or_default()
}

async fn pump(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    shared: &Shared,
    (direction, connection): (Direction, u64),
    upstream_bytes: &AtomicU64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crate::seed::stream(
        shared.seed.load(Ordering::Relaxed),
        connection << 1 | u64::from(direction == Direction::Response),
        crate::seed::JITTER_STREAM,
    ));
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let toxics = current(shared);
        if toxics.blackhole {
            continue;
        }
        let mut delay = toxics.latency;
        if !toxics.jitter.is_zero() {
            let jitter = rng.gen_range(0..=toxics.jitter.as_micros() as u64);
            delay += Duration::from_micros(jitter);
        }
        if let Some(rate) = toxics.bandwidth.filter(|r| *r > 0) {
            delay += Duration::from_secs_f64(n as f64 / rate as f64);
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if direction == Direction::Response {
            if toxics.drop_responses {
                continue;
            }
            let total = upstream_bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
            if let Some(limit) = toxics.close_after {
                if total >= limit {
                    let keep = (limit + n as u64).saturating_sub(total) as usize;
                    let _ = to.write_all(&buf[..keep.min(n)]).await;
                    break;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> (u16, JoinHandle<()>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (port, task)
    }

    async fn round_trip(port: u16, msg: &[u8], wait: Duration) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(msg).await?;
        let mut out = vec![0u8; msg.len()];
        match tokio::time::timeout(wait, s.read_exact(&mut out)).await {
            Ok(r) => r.map(|_| out),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            )),
        }
    }

    #[tokio::test]
    async fn a_clean_proxy_forwards_both_ways() {
        let (port, _server) = echo_server().await;
        let proxy = Proxy::start("echo", &format!("127.0.0.1:{port}"))
            .await
            .expect("proxy");
        let out = round_trip(proxy.port(), b"hello", Duration::from_secs(2))
            .await
            .expect("echo");
        assert_eq!(out, b"hello");
        assert_eq!(proxy.connections(), 1);
    }

    #[tokio::test]
    async fn dropped_responses_never_reach_the_client() {
        let (port, _server) = echo_server().await;
        let proxy = Proxy::start("echo", &format!("127.0.0.1:{port}"))
            .await
            .expect("proxy");
        proxy.update(|t| t.drop_responses = true);
        let err = round_trip(proxy.port(), b"hello", Duration::from_millis(300)).await;
        assert!(err.is_err());
        proxy.heal();
        assert!(round_trip(proxy.port(), b"again", Duration::from_secs(2))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_blackhole_accepts_but_never_answers() {
        let (port, _server) = echo_server().await;
        let proxy = Proxy::start("echo", &format!("127.0.0.1:{port}"))
            .await
            .expect("proxy");
        proxy.update(|t| t.blackhole = true);
        let err = round_trip(proxy.port(), b"x", Duration::from_millis(300))
            .await
            .expect_err("no answer");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_connection_that_lost_a_reply_is_reset_when_the_fault_lifts() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (port, _server) = echo_server().await;
        let proxy = Proxy::start("echo", &format!("127.0.0.1:{port}"))
            .await
            .expect("proxy");
        let mut conn = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .expect("connect");
        proxy.update(|t| t.drop_responses = true);
        conn.write_all(b"lost").await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.heal();
        let _ = conn.write_all(b"next").await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf))
            .await
            .expect("the connection ends instead of hanging");
        // Never the next reply as if it answered the lost request.
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "read {:?}",
            read.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        );
    }

    #[tokio::test]
    async fn latency_delays_each_chunk() {
        let (port, _server) = echo_server().await;
        let proxy = Proxy::start("echo", &format!("127.0.0.1:{port}"))
            .await
            .expect("proxy");
        proxy.update(|t| t.latency = Duration::from_millis(150));
        let started = std::time::Instant::now();
        round_trip(proxy.port(), b"slow", Duration::from_secs(3))
            .await
            .expect("echo");
        // Both directions are delayed: at least 2 x 150 ms.
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn reset_aborts_open_connections() {
        let (port, _server) = echo_server().await;
        let proxy = Proxy::start("echo", &format!("127.0.0.1:{port}"))
            .await
            .expect("proxy");
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .expect("connect");
        s.write_all(b"a").await.expect("write");
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.expect("echo");
        proxy.reset_all();
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("not hung");
        assert!(matches!(read, Ok(0) | Err(_)), "connection ended: {read:?}");
    }

    #[tokio::test]
    async fn close_after_cuts_the_response() {
        let (port, _server) = echo_server().await;
        let proxy = Proxy::start("echo", &format!("127.0.0.1:{port}"))
            .await
            .expect("proxy");
        proxy.update(|t| t.close_after = Some(3));
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .expect("connect");
        s.write_all(b"abcdef").await.expect("write");
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await;
        assert_eq!(got, b"abc");
    }
}
