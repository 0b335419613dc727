//! The control plane: start-up order, discovery, workers, signals, drain.

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    thread,
    time::Duration,
};

use tracing::{error, info, warn};

use crate::admin;
use crate::cluster::{self, Cluster, GossipSettings};
use crate::config::{Config, Durability, StoreKind};
use crate::discovery::{self, Acceptance, Backoff, EntityKind};
use crate::runtime;
use crate::server::tls::{Acceptor, Files};
use crate::store::{self, lease::Leases};
use crate::userfn::Pool;
use crate::worker::{self, Control, Shared};

/// Readiness with gossip: the view must have been unchanged this long
/// (three gossip rounds, each reaching the seeds and up to three peers)...
const SETTLE_QUIET: Duration = cluster::GOSSIP_INTERVAL.saturating_mul(3);
/// ...or this long must have passed since the proxy started serving.
const SETTLE_MAX: Duration = Duration::from_secs(10);

/// The function's `EntitySpec` carries its whole descriptor set; it is not
/// bound by the limit on client messages.
const DISCOVERY_MAX_MESSAGE: usize = 64 << 20;
/// How long shutdown waits for queued storage work before exiting anyway.
const STORE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the proxy until SIGTERM/SIGINT. `Err` carries the reason it could
/// not start or had to stop (the process then exits non-zero).
pub fn run(config: Config) -> Result<(), String> {
    let signals = watch_signals()?;
    let workers = config.worker_count();
    let tls = match tls_files(&config)? {
        None => None,
        Some(files) => {
            info!(cert = %files.cert.display(), mtls = files.client_ca.is_some(), "TLS on the public port");
            let acceptor = Arc::new(Acceptor::load(files).map_err(|e| format!("TLS: {e}"))?);
            acceptor.watch()?;
            Some(acceptor)
        }
    };
    let shared = Arc::new(Shared::new(config, tls));
    let config = &shared.config;
    let addr = public_addr(config)?;
    let cluster = start_cluster(config, addr)?;
    let admin_addr = admin::start(SocketAddr::new(config.admin_interface, config.admin_port), shared.clone(), cluster.clone())?;

    let (store_lanes, storage, leases) = open_store(config, workers, &cluster)?;
    if let Some(leases) = &leases {
        let _ = shared.leases.set(leases.clone());
    }
    let accept = Acceptance {
        strict_protocol: config.strict_protocol,
        supported: vec![EntityKind::Action, EntityKind::EventSourced, EntityKind::ValueEntity, EntityKind::Crdt],
    };
    info!(target = %shared.target(), "discovering user function");
    let discovery = async {
        let pool = Pool::new(shared.target(), 1);
        monoio::select! {
            r = discovery::discover(&pool, &accept, Backoff::discovery(), DISCOVERY_MAX_MESSAGE) => Some(r),
            _ = signals.recv_async() => None,
        }
    };
    let router = match runtime::block_on(config.io_driver, discovery).map_err(|e| format!("runtime: {e}"))?.0 {
        None => {
            info!("signal received during discovery; exiting");
            return Ok(());
        }
        Some(Err(msg)) => return Err(format!("user function rejected: {msg}")),
        Some(Ok(router)) => Arc::new(router),
    };
    let _ = shared.router.set(router.clone());

    let started = worker::start(workers, addr, shared.clone(), router, store_lanes, leases.clone(), cluster.clone())?;
    let _ = shared.workers.set(started.iter().map(|w| w.control.clone()).collect());
    cluster.serve();
    // Ready (and so sent clients) only once gossip has settled: a proxy
    // that has not heard of its peers yet would take shards the placement
    // gives them, only to hand them off a renewal later.
    if !cluster.settle(SETTLE_QUIET, SETTLE_MAX) {
        warn!(waited = ?SETTLE_MAX, "cluster membership still changing; serving anyway");
    }
    shared.ready.store(true, Ordering::Release);
    info!(%addr, admin = %admin_addr, workers, "Massa ready");

    let _ = signals.recv();
    // First, so the others place this proxy's shards elsewhere while it drains.
    cluster.leave();
    info!(timeout = ?config.shutdown_timeout, "shutting down: draining in-flight calls");
    shared.draining.store(true, Ordering::Release);
    for w in &started {
        let _ = w.control.send(Control::Shutdown { timeout: config.shutdown_timeout });
    }
    thread::spawn(move || {
        if signals.recv().is_ok() {
            warn!("second signal: exiting without draining");
            std::process::exit(130);
        }
    });
    for w in started {
        if w.thread.join().is_err() {
            error!("a worker panicked during shutdown");
        }
    }
    // The workers held the last lanes: the storage threads finish what was
    // queued and the store closes.
    storage.join(STORE_CLOSE_TIMEOUT);
    // Nothing writes any more: others may take this proxy's shards at once.
    if let Some(leases) = leases {
        leases.release();
    }
    info!("stopped");
    Ok(())
}

/// The public address; port 0 picks a free port once so every worker's
/// SO_REUSEPORT listener binds the same one.
fn public_addr(config: &Config) -> Result<SocketAddr, String> {
    let addr = SocketAddr::new(config.http_interface, config.http_port);
    if addr.port() != 0 {
        return Ok(addr);
    }
    std::net::TcpListener::bind(addr).and_then(|l| l.local_addr()).map_err(|e| format!("picking a port on {addr}: {e}"))
}

/// This proxy's membership: gossip with `--cluster-seeds`, else a cluster
/// of one. Its member id is the advertised address.
fn start_cluster(config: &Config, addr: SocketAddr) -> Result<Arc<Cluster>, String> {
    let self_id = config.advertised(addr.port(), std::env::var("POD_IP").ok().filter(|ip| !ip.is_empty()), hostname);
    let gossip = if config.cluster_seeds.is_empty() {
        None
    } else if config.store != StoreKind::Postgres {
        // Each proxy would keep its own copy of every entity.
        return Err("--cluster-seeds needs --store postgres: proxies of one cluster must share their entities' state".to_owned());
    } else {
        Some(GossipSettings { seeds: config.cluster_seeds.clone(), port: config.cluster_port })
    };
    Cluster::start(self_id, config.shards, gossip.as_ref()).map_err(|e| e.to_string())
}

/// The TLS files, if configured; a certificate needs its key and the other
/// way round, and a client CA needs both.
fn tls_files(config: &Config) -> Result<Option<Files>, String> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(Files { cert: cert.clone(), key: key.clone(), client_ca: config.tls_client_ca.clone() })),
        (None, None) if config.tls_client_ca.is_none() => Ok(None),
        (None, None) => Err("--tls-client-ca needs --tls-cert and --tls-key".to_owned()),
        _ => Err("--tls-cert and --tls-key go together".to_owned()),
    }
}

/// SIGTERM and SIGINT, delivered as messages.
fn watch_signals() -> Result<flume::Receiver<i32>, String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|e| format!("installing signal handlers: {e}"))?;
    let (tx, rx) = flume::unbounded();
    thread::Builder::new()
        .name("massa-signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                if tx.send(signal).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(rx)
}

type Opened = (Vec<store::Lanes>, store::StorageThreads, Option<Arc<Leases>>);

/// Opens the configured store and starts one storage thread per worker,
/// and with PostgreSQL (which other proxies may share) the shard leases.
fn open_store(config: &Config, workers: usize, cluster: &Arc<Cluster>) -> Result<Opened, String> {
    let mut postgres = None;
    let (backend, guard): (Box<dyn store::Store>, _) = match config.store {
        StoreKind::Memory => (Box::new(store::MemoryStore::default()), None),
        StoreKind::Rocksdb => {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| format!("creating the data directory {}: {e}", config.data_dir.display()))?;
            let guard = store::SpaceGuard { dir: config.data_dir.clone(), reserve: config.min_free_disk as u64 };
            (Box::new(store::RocksStore::open(&config.data_dir).map_err(|e| e.to_string())?) as _, Some(guard))
        }
        // The server watches its own disk.
        StoreKind::Postgres => {
            let url = config.postgres_url.as_deref().ok_or("--store postgres needs --postgres-url (or MASSA_POSTGRES_URL)")?;
            let pg = Arc::new(store::PostgresStore::open(url).map_err(|e| e.to_string())?);
            postgres = Some(pg.clone());
            (Box::new(pg) as _, None)
        }
    };
    let entity_store = Arc::new(store::EntityStore::open(backend, guard).map_err(|e| format!("reading the store: {e}"))?);
    let dir = (config.store == StoreKind::Rocksdb).then(|| config.data_dir.display().to_string());
    info!(store = ?config.store, dir, durability = ?config.durability, "entity store open");
    let leases = match postgres {
        None => None,
        Some(pg) => {
            Some(Leases::start(pg, cluster.clone(), config.shards, config.lease_duration, config.store_timeout).map_err(|e| format!("shard leases: {e}"))?)
        }
    };
    let (lanes, threads) = store::spawn_threads(entity_store, workers, config.durability == Durability::Sync)
        .map_err(|e| format!("starting storage threads: {e}"))?;
    Ok((lanes, threads, leases))
}

/// This machine's host name (`localhost` if it has none).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length; the name is NUL-terminated on success.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "localhost".to_owned();
    }
    let name = std::ffi::CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
    if name.is_empty() { "localhost".to_owned() } else { name }
}
