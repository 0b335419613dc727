//! The public port: one SO_REUSEPORT listener per core, protocol detection
//! on each connection (h2c, HTTP/1.1, or garbage), and the connection
//! servers for both.
//!
//! Every connection is bounded in time before it is useful (preface, head,
//! handshake) and in number (per core and for the process); connections
//! beyond the limits get a clear refusal, and accept errors back off.

mod h2conn;
pub mod http;
pub mod http1;
mod sniff;

use std::{
    cell::Cell,
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use monoio::io::AsyncWriteRentExt;
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use tracing::{debug, warn};

pub use h2conn::{serve_h2, H2Options, Service};
pub use http::{HttpRequest, HttpService, ResponseWriter};
pub use http1::{serve_http1, Http1Limits};
pub use sniff::{classify, sniff, Protocol};

use crate::grpc::budget::Budget;
use crate::runtime::Notify;

/// Pending connections per core's listener.
const BACKLOG: i32 = 4096;
/// Refusals answered at once per core; beyond, excess connections are
/// closed without a word.
const MAX_REFUSING: usize = 64;
/// Time a refused client has to show which protocol it speaks.
const REFUSE_SNIFF: Duration = Duration::from_secs(1);
/// Accept-error backoff bounds, and how often a persisting error is logged.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Binds this core's listener on the shared port.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind_with_config(addr, &ListenerOpts::new().reuse_port(true).reuse_addr(true).backlog(BACKLOG))
}

/// The public port's limits.
#[derive(Clone)]
pub struct Limits {
    pub h2: H2Options,
    pub http1: Http1Limits,
    /// Bytes one connection may make the proxy hold beyond the windows.
    pub connection_buffer: usize,
    /// The core's budget, parent of every connection's.
    pub core_buffer: Rc<Budget>,
    pub max_connections: usize,
    pub max_connections_per_core: usize,
    /// Open connections of all cores.
    pub global: Arc<AtomicUsize>,
}

/// Counts live connections so a draining core knows when it is done.
#[derive(Clone, Default)]
pub struct Connections(Rc<Cell<usize>>);

impl Connections {
    pub fn live(&self) -> usize {
        self.0.get()
    }

    /// Takes a place for a new connection, or `None` at either limit.
    fn enter(&self, limits: &Limits) -> Option<ConnectionGuard> {
        if self.live() >= limits.max_connections_per_core {
            return None;
        }
        if limits.global.fetch_add(1, Ordering::Relaxed) >= limits.max_connections {
            limits.global.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.0.set(self.0.get() + 1);
        Some(ConnectionGuard(self.clone(), limits.global.clone()))
    }
}

struct ConnectionGuard(Connections, Arc<AtomicUsize>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let c = &(self.0).0;
        c.set(c.get() - 1);
        self.1.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Logs a recurring condition at most once per [`LOG_EVERY`], with how
/// many times it happened in between.
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new() -> RateLimited {
        RateLimited { last: None, suppressed: 0 }
    }

    /// `Some(suppressed count)` when this occurrence should be logged.
    fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Accepts until `shutdown` fires, handing each connection to `service`.
pub async fn accept_loop<S: Service + HttpService>(listener: TcpListener, service: Rc<S>, shutdown: Notify, connections: Connections, limits: Limits) {
    let refusing = Rc::new(Cell::new(0usize));
    let (mut accept_errors, mut refusals) = (RateLimited::new(), RateLimited::new());
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = monoio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                let Some(guard) = connections.enter(&limits) else {
                    if let Some(suppressed) = refusals.hit() {
                        warn!(%peer, suppressed, per_core = limits.max_connections_per_core, total = limits.max_connections, "connection limit reached; refusing");
                    }
                    if refusing.get() < MAX_REFUSING {
                        refusing.set(refusing.get() + 1);
                        let refusing = refusing.clone();
                        monoio::spawn(async move {
                            refuse(stream).await;
                            refusing.set(refusing.get() - 1);
                        });
                    }
                    continue;
                };
                let (service, shutdown, h2, http1) = (service.clone(), shutdown.clone(), limits.h2, limits.http1);
                let budget = Budget::new(limits.connection_buffer, Some(limits.core_buffer.clone()));
                monoio::spawn(async move {
                    handle(stream, peer, service, shutdown, h2, http1, budget).await;
                    drop(guard);
                });
            }
            Err(e) => {
                // Typically EMFILE: back off (growing) instead of spinning,
                // and say so without flooding the log.
                if let Some(suppressed) = accept_errors.hit() {
                    warn!(error = %e, suppressed, ?backoff, "accept failed; backing off");
                }
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn handle<S: Service + HttpService>(
    mut stream: TcpStream,
    peer: SocketAddr,
    service: Rc<S>,
    shutdown: Notify,
    h2: H2Options,
    http1: Http1Limits,
    budget: Rc<Budget>,
) {
    let _ = stream.set_nodelay(true);
    match crate::runtime::timeout(h2.handshake_timeout, sniff(&mut stream)).await {
        Ok(Ok((Protocol::H2, read))) => serve_h2(stream, read, service, shutdown, h2, budget).await,
        Ok(Ok((Protocol::Http1, read))) => serve_http1(stream, read, service, shutdown, http1, budget).await,
        Ok(Ok((Protocol::Unknown, _))) => debug!(%peer, "closing connection that speaks neither HTTP/2 nor HTTP/1.1"),
        Ok(Err(e)) => debug!(%peer, error = %e, "connection closed before its protocol was known"),
        Err(_) => debug!(%peer, "no preface or request line in time; closing"),
    }
}

/// Tells a client over the limit why it is turned away, in its protocol:
/// HTTP/2 gets SETTINGS then GOAWAY(REFUSED_STREAM) with a reason, HTTP/1.1
/// a 503.
async fn refuse(mut stream: TcpStream) {
    let reason = b"connection limit reached";
    let answer: Vec<u8> = match monoio::time::timeout(REFUSE_SNIFF, sniff(&mut stream)).await {
        Ok(Ok((Protocol::H2, _))) => {
            let mut frames = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0]; // empty SETTINGS
            let len = 8 + reason.len();
            frames.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x7, 0, 0, 0, 0, 0]);
            frames.extend_from_slice(&0u32.to_be_bytes()); // last stream id
            frames.extend_from_slice(&0x7u32.to_be_bytes()); // REFUSED_STREAM
            frames.extend_from_slice(reason);
            frames
        }
        Ok(Ok((Protocol::Http1, _))) => {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 25\r\nconnection: close\r\n\r\nconnection limit reached\n".to_vec()
        }
        _ => return,
    };
    let _ = monoio::time::timeout(REFUSE_SNIFF, stream.write_all(answer)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_logs_first_then_counts() {
        let mut r = RateLimited::new();
        assert_eq!(r.hit(), Some(0));
        assert_eq!(r.hit(), None);
        assert_eq!(r.hit(), None);
        r.last = Some(Instant::now() - LOG_EVERY);
        assert_eq!(r.hit(), Some(2));
    }
}
