//! The accept loop: how many connections, how long a client may take to send
//! its headers, and a graceful stop.
//!
//! `axum::serve` has neither a header-read deadline nor a connection cap: a
//! thousand clients that send their headers one byte at a time (slowloris)
//! hold a thousand sockets forever, the process runs out of file
//! descriptors, and even `/api/health` stops answering. Here every
//! connection holds a permit of a semaphore (`--max-connections`), and
//! hyper closes a connection whose request headers are not complete within
//! `--header-read-timeout-ms` — including an idle keep-alive connection
//! that never starts its next request. Hyper does the HTTP; this loop only
//! decides who gets a connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connection limits (see [`crate::config::Settings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; the next waits in the listen backlog.
    pub max_connections: usize,
    /// A request's headers (and an idle keep-alive connection's next
    /// request) must arrive within this.
    pub header_read_timeout: Duration,
}

/// The most a request head may take in hyper's read buffer (per connection).
pub const HYPER_MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most headers hyper parses.
pub const HYPER_MAX_HEADERS: usize = 200;

/// How long a graceful stop waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown`, then lets open
/// connections finish their requests (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Above the router's own limits (`routes::bound_request_head`), which
        // answer with problem documents; beyond these hyper answers a bare 431.
        .max_buf_size(HYPER_MAX_HEAD_BYTES)
        .max_headers(HYPER_MAX_HEADERS)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors or a transient network error:
                    // back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // The peer address, for the rate limit of unauthenticated clients.
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let service = TowerToHyperService::new(service);
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; stopping anyway");
    }
    Ok(())
}
