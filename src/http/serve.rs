//! The accept loop: hyper's HTTP/1 server with a header-read timeout and a connection cap.
//!
//! - **Header-read timeout** (`server.header_read_timeout_seconds`): hyper closes a connection
//!   that has not sent a complete request head in time. Its timer starts when the connection
//!   opens and again when a response has been sent, so it ends silent connections, half-sent
//!   heads and idle keep-alive connections alike.
//! - **Connection cap**: at most [`ConnectionLimits::max_connections`] connections are served at
//!   once. A connection accepted at the cap closes the oldest *idle* one (no request being
//!   handled: waiting for a first or next request head), so a new client (a health probe) is
//!   always served while others merely hold sockets open. When every connection is busy, the new
//!   one is answered 503 (`Retry-After: 1`) and closed. A request head still arriving on the
//!   connection closed to make room is cut off with it (its client sees the connection close).
//!
//! The whole-request deadline stays in the router (`middleware::deadline`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::error::Problem;
use crate::config::ServerConfig;

/// File descriptors kept out of the connection cap: the database pool, log files, provider
/// clients' sockets and the listener itself need them while the cap is reached.
const RESERVED_FDS: u64 = 256;

/// Connections being refused at once; more are closed without an answer (each refusal waits at
/// most [`REFUSAL_HEAD_WAIT`] for the request it answers).
const MAX_REFUSING: usize = 32;
const REFUSAL_HEAD_WAIT: Duration = Duration::from_secs(1);

/// A pause after a failed accept (the OS out of descriptors or memory) so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    /// The configured cap lowered below the open-file limit.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The configured limits, the cap lowered to leave [`RESERVED_FDS`] (or half of the limit,
    /// when that is less) below the process's soft open-file limit as read now.
    pub fn new(server: &ServerConfig) -> Self {
        let file_limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let max_connections = cap_below_file_limit(server.max_connections, file_limit);
        tracing::info!(
            max_connections,
            configured = server.max_connections,
            file_limit = file_limit.map_or_else(|| "unlimited".to_string(), |l| l.to_string()),
            "connection cap"
        );
        Self {
            header_read_timeout: Duration::from_secs_f64(server.header_read_timeout_seconds),
            max_connections,
        }
    }
}

fn cap_below_file_limit(configured: usize, file_limit: Option<u64>) -> usize {
    let Some(limit) = file_limit else {
        return configured;
    };
    let room = limit.saturating_sub(RESERVED_FDS).max(limit / 2).max(1);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// An open connection as the cap sees it.
#[derive(Clone, Default)]
struct Conn {
    /// Requests being handled; 0 means idle (waiting for a request head).
    in_flight: Arc<AtomicUsize>,
    /// Cancelled to close the connection when a newer one needs its place.
    evict: CancellationToken,
}

/// Open connections by age (ids only grow).
#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Conn>,
}

impl Table {
    /// Makes room for one more connection (closing the oldest idle one at the cap) and records
    /// it; `None` when the cap is reached and every connection is busy.
    fn admit(&mut self, cap: usize) -> Option<(u64, Conn)> {
        if self.open.len() >= cap {
            let oldest_idle = self
                .open
                .iter()
                .find(|(_, c)| c.in_flight.load(Ordering::SeqCst) == 0)
                .map(|(id, _)| *id)?;
            if let Some(evicted) = self.open.remove(&oldest_idle) {
                evicted.evict.cancel();
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let conn = Conn::default();
        self.open.insert(id, conn.clone());
        Some((id, conn))
    }
}

/// Counts a request as in flight until its response is written (or the request is dropped).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets every connection
/// finish its request in flight (idle ones close at once) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let tracker = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let admitted = table
            .lock()
            .expect("connection table lock")
            .admit(limits.max_connections);
        match admitted {
            Some((id, conn)) => {
                let router = router.clone();
                let table = Arc::clone(&table);
                let shutdown = shutdown.clone();
                tracker.spawn(async move {
                    serve_connection(stream, router, &conn, limits, shutdown).await;
                    table
                        .lock()
                        .expect("connection table lock")
                        .open
                        .remove(&id);
                });
            }
            None => match Arc::clone(&refusing).try_acquire_owned() {
                Ok(permit) => {
                    tracker.spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
                Err(_) => drop(stream),
            },
        }
    }
    // Shutdown began: closing the listening socket makes new connections fail at once (refused)
    // instead of waiting in the backlog for an accept that never comes, while the connections
    // already open finish their requests.
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

fn http1_builder(header_read_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    conn: &Conn,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let in_flight = Arc::clone(&conn.in_flight);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = InFlight::enter(&in_flight);
        let router = router.clone();
        async move {
            let res = router.oneshot(req.map(Body::new)).await;
            // A streamed answer (the event stream) keeps its connection busy until it ends; a
            // whole one is written at once.
            Ok::<_, Infallible>(res.unwrap_or_else(|never| match never {}).map(|body| {
                if body.size_hint().exact().is_some() {
                    body
                } else {
                    Body::from_stream(body.into_data_stream().map(move |chunk| {
                        let _busy = &guard;
                        chunk
                    }))
                }
            }))
        }
    });
    let builder = http1_builder(limits.header_read_timeout);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        // Dropping the connection closes its socket.
        _ = conn.evict.cancelled() => {
            tracing::debug!("idle connection closed to make room under the connection cap");
            return;
        }
        _ = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        // Timeouts of silent clients and resets are the client's business.
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Answers one request on a connection over the cap with 503, then closes it.
async fn refuse(stream: TcpStream) {
    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(over_capacity())
    });
    let mut builder = http1_builder(REFUSAL_HEAD_WAIT);
    builder.keep_alive(false);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "refused connection ended with an error");
    }
}

fn over_capacity() -> Response {
    let mut res = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "over-capacity",
        "Too many connections",
        "every connection the service accepts is handling a request; retry shortly",
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_room_below_the_file_limit() {
        assert_eq!(cap_below_file_limit(1024, None), 1024);
        assert_eq!(cap_below_file_limit(1024, Some(1024)), 768);
        assert_eq!(cap_below_file_limit(1024, Some(65_536)), 1024);
        // A small limit keeps half for the rest of the process.
        assert_eq!(cap_below_file_limit(1024, Some(300)), 150);
        assert_eq!(cap_below_file_limit(1024, Some(1)), 1);
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_makes_room_and_busy_ones_never_do() {
        let mut table = Table::default();
        let (_, first) = table.admit(2).expect("room");
        let (_, second) = table.admit(2).expect("room");
        let _busy = InFlight::enter(&first.in_flight);
        let (third_id, _) = table.admit(2).expect("the idle one makes room");
        assert!(!first.evict.is_cancelled());
        assert!(second.evict.is_cancelled());
        let _busy_too = InFlight::enter(&table.open[&third_id].in_flight);
        assert!(table.admit(2).is_none(), "every connection is busy");
    }
}
