//! Introspection and operations: the admin HTTP port (`/health/live`,
//! `/health/ready`, `/metrics`) on its own small thread, and the gRPC
//! health and reflection services served on the public port.

pub mod health;
pub mod metrics;
pub mod reflection;

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    thread,
    time::Duration,
};

use futures_channel::oneshot;
use monoio::net::TcpListener;
use tracing::{debug, info};

use crate::config::IoDriver;
use crate::server::http1::{self, HeadError};
use crate::worker::{Control, Shared};

/// A scrape waits at most this long for a busy core's snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);
/// A scraper or probe sends its whole request head within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the admin port and serves it on thread `massa-admin`. It runs
/// before discovery, so `/health/ready` can say "not yet".
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> Result<SocketAddr, String> {
    let std_listener = std::net::TcpListener::bind(addr).map_err(|e| format!("binding admin port {addr}: {e}"))?;
    let local = std_listener.local_addr().map_err(|e| e.to_string())?;
    std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    thread::Builder::new()
        .name("massa-admin".to_owned())
        .spawn(move || {
            let serve = async move {
                let listener = TcpListener::from_std(std_listener).expect("admin listener");
                info!(addr = %local, "admin port serving /health/live, /health/ready, /metrics");
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            monoio::spawn(handle(stream, shared.clone()));
                        }
                        Err(e) => {
                            debug!(error = %e, "admin accept failed");
                            monoio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            };
            // The admin thread is not on the hot path; epoll keeps it cheap.
            if let Err(e) = crate::runtime::block_on(IoDriver::Epoll, serve) {
                tracing::error!(error = %e, "admin runtime failed");
            }
        })
        .map_err(|e| format!("spawning admin thread: {e}"))?;
    Ok(local)
}

async fn handle(stream: monoio::net::TcpStream, shared: Arc<Shared>) {
    let Ok(mut io) = stream.try_into_poll_io() else { return };
    let Ok(head) = monoio::time::timeout(HEAD_TIMEOUT, http1::read_head(&mut io)).await else {
        return debug!("admin request head not complete in time; closing");
    };
    let result = match head {
        Ok(head) if head.method != "GET" => {
            http1::respond(&mut io, "405 Method Not Allowed", "text/plain", b"GET only\n").await
        }
        Ok(head) => match head.path.split('?').next().unwrap_or("") {
            "/health/live" => http1::respond(&mut io, "200 OK", "text/plain", b"live\n").await,
            "/health/ready" if is_ready(&shared) => http1::respond(&mut io, "200 OK", "text/plain", b"ready\n").await,
            "/health/ready" => http1::respond(&mut io, "503 Service Unavailable", "text/plain", b"not ready\n").await,
            "/metrics" => {
                let text = scrape(&shared).await;
                http1::respond(&mut io, "200 OK", "text/plain; version=0.0.4", text.as_bytes()).await
            }
            _ => http1::respond(&mut io, "404 Not Found", "text/plain", b"try /health/live, /health/ready or /metrics\n").await,
        },
        Err(HeadError::Io(e)) => Err(e),
        Err(_) => http1::respond(&mut io, "400 Bad Request", "text/plain", b"malformed request\n").await,
    };
    if let Err(e) = result {
        debug!(error = %e, "admin request failed");
    }
}

/// Ready: discovery succeeded, the listeners are bound, and no shutdown
/// has begun.
pub fn is_ready(shared: &Shared) -> bool {
    shared.ready.load(Ordering::Acquire) && !shared.draining.load(Ordering::Acquire)
}

/// Collects every core's snapshot and renders the merged text.
async fn scrape(shared: &Shared) -> String {
    let mut snapshots = Vec::new();
    let workers = shared.workers.get().map(Vec::as_slice).unwrap_or_default();
    for control in workers {
        let (tx, rx) = oneshot::channel();
        if control.send(Control::Metrics(tx)).is_ok() {
            if let Ok(Ok(snapshot)) = monoio::time::timeout(SNAPSHOT_TIMEOUT, rx).await {
                snapshots.push(snapshot);
            }
        }
    }
    let process = metrics::Process { ready: is_ready(shared), workers: workers.len() };
    metrics::render(shared.router.get().map(|r| &**r), snapshots, &process)
}
