//! A worker: one thread, pinned to one CPU, running one executor that owns
//! everything of its core (listener, connections, user-function pool,
//! metrics). The main thread reaches it only through [`Control`] messages.

use std::{
    cell::{Cell, RefCell},
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicUsize},
        Arc, OnceLock,
    },
    thread,
    time::Duration,
};

use futures_channel::oneshot;
use tracing::{info, warn};

use crate::admin::metrics::{CoreMetrics, Snapshot};
use crate::grpc::{budget::Budget, MessageReader, RequestBody, Responder};
use crate::config::Config;
use crate::entity::cache::StateCache;
use crate::entity::context::ORPHANED_BACKLOG;
use crate::entity::stateful::Entities;
use crate::entity::{Context, Limits, Orphaned};
use crate::shard::Envelope;
use crate::store::{self, lease::Leases, StoreHandle};
use crate::userfn::Endpoint;
use crate::discovery::{EntityKind, Router};
use crate::cluster::Cluster;
use crate::dispatch::{self, forward::Peers};
use crate::eventing;
use crate::runtime::{self, deadlines::Deadlines, queue, Notify};
use crate::server::{self, Connections};
use crate::userfn::{Pool, Target};

/// Messages from the control plane (main and admin threads) to a worker.
pub enum Control {
    /// Stop accepting, finish in-flight calls within the timeout, exit.
    Shutdown { timeout: Duration },
    /// Reply with a copy of this core's metrics.
    Metrics(oneshot::Sender<Snapshot>),
}

/// State shared by all threads; read-mostly, no locks on the request path.
pub struct Shared {
    pub config: Config,
    /// Discovery done and listeners bound.
    pub ready: AtomicBool,
    /// SIGTERM/SIGINT received.
    pub draining: AtomicBool,
    pub router: OnceLock<Arc<Router>>,
    pub workers: OnceLock<Vec<flume::Sender<Control>>>,
    /// Open client connections, all cores (for `--max-connections`).
    pub connections: Arc<AtomicUsize>,
    /// The public port's TLS configuration, if it has one.
    pub tls: Option<Arc<server::tls::Acceptor>>,
    /// The shard leases, when the store is shared (for `/metrics`).
    pub leases: OnceLock<Arc<Leases>>,
}

impl Shared {
    pub fn new(config: Config, tls: Option<Arc<server::tls::Acceptor>>) -> Shared {
        Shared {
            config,
            tls,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            router: OnceLock::new(),
            workers: OnceLock::new(),
            leases: OnceLock::new(),
            connections: Arc::default(),
        }
    }

    pub fn target(&self) -> Target {
        match &self.config.user_function_uds {
            Some(path) => Target::Unix(path.clone()),
            None => Target::Tcp { host: self.config.user_function_host.clone(), port: self.config.user_function_port },
        }
    }
}

/// The user-function paths an action service is called on, by shape.
pub struct ActionUris {
    pub unary: Endpoint,
    pub streamed_in: Endpoint,
    pub streamed_out: Endpoint,
    pub streamed: Endpoint,
}

/// Everything one core owns. Its entities see only [`Context`] (what the
/// `Deref` gives the rest of the worker too).
pub struct Core {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub ctx: Rc<Context>,
    pub metrics: CoreMetrics,
    pub shutdown: Notify,
    pub connections: Connections,
    /// The other proxies of the cluster, and this core's connections to them.
    pub peers: Peers,
    /// Every core's mailbox, by core id (this core's included).
    pub mailboxes: Vec<flume::Sender<Envelope>>,
    /// Asynchronous side effects running on this core.
    pub async_side_effects: Cell<usize>,
    /// Per-call deadlines (body and stall timeouts), expired by one ticker.
    pub deadlines: Rc<Deadlines>,
    /// Per service index; `None` for services that are not actions.
    action_uris: Vec<Option<ActionUris>>,
}

impl std::ops::Deref for Core {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

impl Core {
    /// The core and the receiving end of its entities' orphaned side effects.
    pub fn new(id: usize, shared: Arc<Shared>, router: Arc<Router>, wiring: &Wiring) -> (Core, queue::Receiver<Orphaned>) {
        let config = &shared.config;
        let pool = Pool::growing(shared.target(), config.user_function_connections, config.max_user_function_connections);
        let cache = StateCache::new(shared.config.entity_cache);
        let action_uris = router
            .services()
            .iter()
            .map(|s| {
                (s.kind == EntityKind::Action).then(|| ActionUris {
                    unary: pool.endpoint(&format!("/{}/handleUnary", s.protocol)),
                    streamed_in: pool.endpoint(&format!("/{}/handleStreamedIn", s.protocol)),
                    streamed_out: pool.endpoint(&format!("/{}/handleStreamedOut", s.protocol)),
                    streamed: pool.endpoint(&format!("/{}/handleStreamed", s.protocol)),
                })
            })
            .collect();
        let (orphaned, orphans) = queue::bounded(ORPHANED_BACKLOG);
        let forward_timeout = config.lease_duration;
        let metrics = CoreMetrics::new(router.routes().len(), router.consumers().len());
        let ctx = Rc::new(Context {
            router,
            pool,
            store: StoreHandle::new(wiring.store_lanes[id].clone(), config.store_timeout),
            leases: wiring.leases.clone(),
            held_leases: Default::default(),
            entities: Entities::default(),
            cache: RefCell::new(cache),
            limits: Limits::from_config(config),
            orphaned,
        });
        let core = Core {
            id,
            metrics,
            shared,
            ctx,
            shutdown: Notify::new(),
            connections: Connections::default(),
            peers: Peers::new(wiring.cluster.clone(), forward_timeout),
            mailboxes: wiring.mailboxes.clone(),
            async_side_effects: Cell::new(0),
            deadlines: Deadlines::new(),
            action_uris,
        };
        (core, orphans)
    }

    pub fn action_uris(&self, service: usize) -> Option<&ActionUris> {
        self.action_uris.get(service).and_then(Option::as_ref)
    }

    /// A client request's reader, charged to the call's connection and
    /// bounded by the body timeout.
    pub fn request_reader(&self, body: RequestBody, responder: &Responder) -> MessageReader {
        let timeout = Some((self.deadlines.clone(), self.shared.config.body_timeout));
        MessageReader::bounded(body, self.max_message_size(), responder.budget(), timeout)
    }
}

/// The channels between cores and to storage, made before the cores start.
pub struct Wiring {
    pub mailboxes: Vec<flume::Sender<Envelope>>,
    pub store_lanes: Vec<store::Lanes>,
    pub leases: Option<Arc<Leases>>,
    pub cluster: Arc<Cluster>,
}

/// A started worker thread.
pub struct Worker {
    pub control: flume::Sender<Control>,
    pub thread: thread::JoinHandle<()>,
}

/// Starts `count` workers on `addr`; returns once every one has bound its
/// listener (or the first error).
pub fn start(
    count: usize,
    addr: SocketAddr,
    shared: Arc<Shared>,
    router: Arc<Router>,
    store_lanes: Vec<store::Lanes>,
    leases: Option<Arc<Leases>>,
    cluster: Arc<Cluster>,
) -> Result<Vec<Worker>, String> {
    let cpus = runtime::allowed_cpus();
    let (mailboxes, inboxes) = crate::shard::mailboxes(count);
    let wiring = Arc::new(Wiring { mailboxes, store_lanes, leases, cluster });
    let mut inboxes = inboxes.into_iter();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel::<Result<&'static str, String>>();
    let mut workers = Vec::with_capacity(count);
    for id in 0..count {
        let (control, inbox) = flume::unbounded();
        let cpu = shared.config.pin_workers.then(|| cpus.get(id % cpus.len().max(1)).copied()).flatten();
        let (shared, router, bound_tx, wiring) = (shared.clone(), router.clone(), bound_tx.clone(), wiring.clone());
        let mailbox = inboxes.next().expect("one mailbox per core");
        let thread = thread::Builder::new()
            .name(format!("massa-core-{id}"))
            .spawn(move || run(id, cpu, addr, shared, router, wiring, Channels { inbox, mailbox, bound: bound_tx }))
            .map_err(|e| format!("spawning worker {id}: {e}"))?;
        workers.push(Worker { control, thread });
    }
    drop(bound_tx);
    for _ in 0..count {
        match bound_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a worker exited during start-up".to_owned()),
        }
    }
    Ok(workers)
}

/// What one worker thread receives on: control messages, other cores'
/// commands, and where it reports its start-up.
struct Channels {
    inbox: flume::Receiver<Control>,
    mailbox: flume::Receiver<Envelope>,
    bound: std::sync::mpsc::Sender<Result<&'static str, String>>,
}

fn run(id: usize, cpu: Option<usize>, addr: SocketAddr, shared: Arc<Shared>, router: Arc<Router>, wiring: Arc<Wiring>, channels: Channels) {
    let Channels { inbox, mailbox, bound } = channels;
    if let Some(cpu) = cpu {
        if let Err(e) = runtime::pin_to(cpu) {
            warn!(worker = id, error = %e, "could not pin worker");
        }
    }
    let (mut rt, driver) = match runtime::build(shared.config.io_driver) {
        Ok(rt) => rt,
        Err(e) => return drop(bound.send(Err(format!("worker {id}: building the runtime: {e}")))),
    };
    rt.block_on(async move {
        let listener = match server::bind(addr) {
            Ok(l) => l,
            Err(e) => return drop(bound.send(Err(format!("worker {id}: binding {addr}: {e}")))),
        };
        info!(worker = id, cpu = ?cpu, driver, %addr, "worker serving");
        let _ = bound.send(Ok(driver));
        let (core, orphans) = Core::new(id, shared, router, &wiring);
        let core = Rc::new(core);
        drop(wiring);
        monoio::spawn(dispatch::route::serve_mailbox(core.clone(), mailbox));
        monoio::spawn(dispatch::effects::run_orphaned(core.clone(), orphans));
        monoio::spawn(crate::entity::stateful::sweep_idle(core.ctx.clone()));
        let config = &core.shared.config;
        let tick = (config.body_timeout.min(config.send_stall_timeout) / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
        monoio::spawn(core.deadlines.clone().tick(tick));
        let limits = server_limits(&core.shared);
        let tls = core.shared.tls.clone();
        monoio::spawn(server::accept_loop(listener, core.clone(), core.shutdown.clone(), core.connections.clone(), limits, tls));
        let consumers = eventing::start(&core);
        while let Ok(msg) = inbox.recv_async().await {
            match msg {
                Control::Metrics(reply) => {
                    drop(reply.send(core.metrics.snapshot(core.cache.borrow().stats(), core.entities.len(), core.entities.activated(), core.peers.forwarded())))
                }
                Control::Shutdown { timeout } => {
                    core.shutdown.fire();
                    let connections = core.connections.clone();
                    if !runtime::wait_until(|| connections.live() == 0 && consumers.get() == 0, timeout).await {
                        warn!(worker = id, open = connections.live(), consumers = consumers.get(), "shutdown timeout: closing connections with calls in flight");
                    }
                    break;
                }
            }
        }
    });
}

/// Request line and header fields of one HTTP/1.1 request, like the
/// HTTP/2 header list limit.
const HTTP1_MAX_HEAD: usize = 64 * 1024;

fn server_limits(shared: &Shared) -> server::Limits {
    let c = &shared.config;
    server::Limits {
        h2: server::H2Options {
            max_concurrent_streams: c.max_concurrent_streams,
            stream_window: c.stream_window,
            connection_window: c.connection_window,
            handshake_timeout: c.handshake_timeout,
            idle_timeout: Some(c.idle_timeout),
        },
        http1: server::Http1Limits {
            max_head: HTTP1_MAX_HEAD,
            max_body: c.max_http_body,
            head_timeout: c.handshake_timeout,
            idle_timeout: c.idle_timeout,
            body_timeout: c.body_timeout,
            write_timeout: c.send_stall_timeout,
        },
        connection_buffer: c.connection_buffer,
        core_buffer: Budget::new(c.core_buffer, None),
        max_connections: c.max_connections,
        max_connections_per_core: c.max_connections_per_core,
        global: shared.connections.clone(),
    }
}
