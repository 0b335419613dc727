//! Introspection and operations: the admin HTTP port (`/health/live`,
//! `/health/ready`, `/metrics`, `/cluster`) on its own small thread, and the gRPC
//! health and reflection services served on the public port.

pub mod health;
pub mod metrics;
pub mod reflection;

use std::{
    net::SocketAddr,
    rc::Rc,
    sync::{atomic::Ordering, Arc},
    thread,
    time::Duration,
};

use bytes::BytesMut;
use futures_channel::oneshot;
use monoio::net::TcpListener;
use tracing::{debug, info};

use crate::cluster::Cluster;
use crate::config::IoDriver;
use crate::grpc::budget::Budget;
use crate::http2::Headers;
use crate::runtime::Notify;
use crate::server::http::{respond, respond_text, HttpRequest, HttpService, ResponseWriter};
use crate::server::{serve_http1, Http1Limits};
use crate::worker::{Control, Shared};

/// A scrape waits at most this long for a busy core's snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(2);
/// Scrapers and probes send small heads, no bodies, and come back often.
const LIMITS: Http1Limits = Http1Limits {
    max_head: 16 * 1024,
    max_body: 0,
    head_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(60),
    body_timeout: Duration::from_secs(10),
    write_timeout: Duration::from_secs(10),
};

/// Binds the admin port and serves it on thread `massa-admin`. It runs
/// before discovery, so `/health/ready` can say "not yet".
pub fn start(addr: SocketAddr, shared: Arc<Shared>, cluster: Arc<Cluster>) -> Result<SocketAddr, String> {
    let std_listener = std::net::TcpListener::bind(addr).map_err(|e| format!("binding admin port {addr}: {e}"))?;
    let local = std_listener.local_addr().map_err(|e| e.to_string())?;
    std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    thread::Builder::new()
        .name("massa-admin".to_owned())
        .spawn(move || {
            let serve = async move {
                let admin = Rc::new(Admin { shared, cluster });
                let listener = TcpListener::from_std(std_listener).expect("admin listener");
                info!(addr = %local, "admin port serving /health/live, /health/ready, /metrics, /cluster");
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            let read = BytesMut::new();
                            monoio::spawn(serve_http1(stream, read, admin.clone(), Notify::new(), LIMITS, Budget::unlimited()));
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

/// The admin endpoints, on the same HTTP/1.1 server as the public port.
struct Admin {
    shared: Arc<Shared>,
    cluster: Arc<Cluster>,
}

impl HttpService for Admin {
    fn serve_http<'a, W: ResponseWriter + 'a>(
        self: &'a Rc<Self>,
        request: HttpRequest,
        writer: &'a mut W,
        _: &'a Rc<Budget>,
    ) -> impl std::future::Future<Output = ()> + 'a {
        async move {
            let shared = &self.shared;
            let result = match (request.method(), request.path()) {
                ("GET", "/health/live") => respond_text(writer, 200, "live\n").await,
                ("GET", "/health/ready") if is_ready(shared) => respond_text(writer, 200, "ready\n").await,
                ("GET", "/health/ready") => respond_text(writer, 503, "not ready\n").await,
                ("GET", "/metrics") => {
                    let text = scrape(shared, &self.cluster).await;
                    let mut headers = Headers::new();
                    headers.push(b"content-type", b"text/plain; version=0.0.4");
                    respond(writer, 200, &headers, text.into()).await
                }
                ("GET", "/cluster") => {
                    let mut headers = Headers::new();
                    headers.push(b"content-type", b"application/json");
                    respond(writer, 200, &headers, cluster_view(&self.cluster).into()).await
                }
                ("GET", _) => respond_text(writer, 404, "try /health/live, /health/ready, /metrics or /cluster\n").await,
                _ => respond_text(writer, 405, "GET only\n").await,
            };
            if result.is_err() {
                debug!("admin client went away mid-response");
            }
        }
    }
}

/// Ready: discovery succeeded, the listeners are bound, and no shutdown
/// has begun.
pub fn is_ready(shared: &Shared) -> bool {
    shared.ready.load(Ordering::Acquire) && !shared.draining.load(Ordering::Acquire)
}

/// Collects every core's snapshot and renders the merged text.
async fn scrape(shared: &Shared, cluster: &Cluster) -> String {
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
    let members = cluster.members();
    let process = metrics::Process {
        ready: is_ready(shared),
        workers: workers.len(),
        members: &members,
        membership_changes: cluster.version(),
        leases: shared.leases.get().map(|l| l.figures()),
    };
    metrics::render(shared.router.get().map(|r| &**r), snapshots, &process)
}

/// `/cluster`: this proxy's view of the members, their states and how many
/// shards it places on each (every proxy should agree once gossip settled).
fn cluster_view(cluster: &Cluster) -> String {
    let view = cluster.members();
    let members: Vec<serde_json::Value> = view
        .members()
        .iter()
        .zip(view.shard_counts())
        .map(|(m, shards)| serde_json::json!({ "id": m.id, "state": m.state.as_str(), "shards": shards }))
        .collect();
    let body = serde_json::json!({
        "self": cluster.self_id(),
        "version": cluster.version(),
        "shards": view.shards(),
        "members": members,
    });
    format!("{body:#}\n")
}
