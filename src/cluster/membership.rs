//! Gossip membership (`--cluster-seeds`): each proxy gossips its member id
//! (its advertised address) and its [`MemberState`] over UDP with chitchat
//! (scuttlebutt reconciliation, a phi-accrual failure detector).
//!
//! chitchat runs on tokio: it gets thread `massa-gossip` with a
//! current-thread runtime of its own. The executors never wait for it; they
//! read the snapshot it publishes (see [`super::Cluster`]).
//!
//! # Time bounds
//!
//! Every [`GOSSIP_INTERVAL`] a proxy gossips with up to three live peers
//! (and now and then a seed or a dead one) and bumps its heartbeat; it also
//! bumps it on every message it handles, so a peer sees a new heartbeat of
//! it several times per interval. A member is dropped from the live set once
//! its heartbeat has not advanced for [`PHI_THRESHOLD`] times the mean
//! interval between its heartbeats as observed, and that mean is at most
//! [`MAX_INTERVAL`] (longer gaps are not sampled). So a killed member is
//! dropped at most `PHI_THRESHOLD × MAX_INTERVAL + GOSSIP_INTERVAL` = 3.5 s
//! after its last heartbeat arrived (2.5–3 s measured with three
//! proxies); a live one is dropped (and back at its next heartbeat) only if
//! none of its heartbeats gets through for about 3 s. A joining member is seen after two of its heartbeats
//! arrived (about one interval); a state change (`serving`, `leaving`) is
//! pushed to every live peer at once and reaches the others within about
//! one interval.
//!
//! Seeds are `host:port` (the port defaults to `--cluster-port`); names are
//! resolved at start and again every minute (chitchat's DNS refresh), so a
//! Kubernetes headless Service can be the one seed of every pod.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket},
    sync::mpsc,
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chitchat::{transport::UdpTransport, Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use tokio::sync::mpsc as tokio_mpsc;
use tracing::{info, warn};

use super::placement::{Member, MemberState};

/// How often a proxy gossips (and bumps its heartbeat).
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(500);
/// Silence, in mean heartbeat intervals, after which a member is dead.
pub const PHI_THRESHOLD: f64 = 6.0;
/// Longest heartbeat interval sampled: bounds the mean, so the detection.
pub const MAX_INTERVAL: Duration = GOSSIP_INTERVAL;
/// A dead member's state is forgotten after this long.
const DEAD_MEMBER_GRACE: Duration = Duration::from_secs(10 * 60);
/// Proxies gossip only with proxies of the same cluster id.
const CLUSTER_ID: &str = "massa";
/// The gossiped key that holds a member's [`MemberState`].
const STATE_KEY: &str = "state";
/// How long `leave()` gives its announcement to reach the peers.
const ANNOUNCE_WAIT: Duration = GOSSIP_INTERVAL;
/// How long a caller waits for the gossip thread to take a state change.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to gossip.
#[derive(Clone, Debug)]
pub struct GossipSettings {
    /// `host:port` or a bare host (then `port`), names allowed.
    pub seeds: Vec<String>,
    /// The UDP port gossip binds and advertises.
    pub port: u16,
}

/// The running gossip thread; dropping it stops gossip.
pub struct Gossip {
    commands: tokio_mpsc::UnboundedSender<Command>,
}

enum Command {
    /// Announce a new state; `done` once it was pushed to the live peers
    /// (and, for `leaving`, given time to arrive).
    Announce { state: MemberState, done: mpsc::Sender<()> },
}

impl Gossip {
    /// Starts gossip for member `self_id` (a `host:port`): binds
    /// `host:settings.port` (or the wildcard address if `host` is not this
    /// machine's, e.g. behind NAT) and advertises it. `publish` gets the live
    /// members on every change, on the gossip thread.
    pub fn start(
        self_id: &str,
        settings: &GossipSettings,
        state: MemberState,
        publish: impl Fn(Vec<Member>) + Send + 'static,
    ) -> std::io::Result<Gossip> {
        let addr = gossip_addr(self_id, settings.port)?;
        let listen = match UdpSocket::bind(addr) {
            Ok(_) => addr,
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                let any = if addr.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
                SocketAddr::new(any, addr.port())
            }
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("binding the gossip port {addr}/UDP: {e}"))),
        };
        let generation = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(self_id.to_owned(), generation, addr),
            cluster_id: CLUSTER_ID.to_owned(),
            gossip_interval: GOSSIP_INTERVAL,
            listen_addr: listen,
            seed_nodes: settings.seeds.iter().map(|s| crate::config::with_port(s, settings.port)).collect(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: PHI_THRESHOLD,
                sampling_window_size: 1000,
                max_interval: MAX_INTERVAL,
                initial_interval: GOSSIP_INTERVAL,
                dead_node_grace_period: DEAD_MEMBER_GRACE,
            },
            marked_for_deletion_grace_period: DEAD_MEMBER_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let seeds = config.seed_nodes.clone();
        let (commands, rx) = tokio_mpsc::unbounded_channel();
        let (started, start_result) = mpsc::channel();
        thread::Builder::new().name("massa-gossip".to_owned()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return drop(started.send(Err(e.to_string()))),
            };
            runtime.block_on(async move {
                let initial = vec![(STATE_KEY.to_owned(), state.as_str().to_owned())];
                match chitchat::spawn_chitchat(config, initial, &UdpTransport).await {
                    Ok(handle) => {
                        let _ = started.send(Ok(()));
                        run(handle, rx, publish).await;
                    }
                    Err(e) => drop(started.send(Err(format!("{e:#}")))),
                }
            });
        })?;
        let outcome = start_result.recv().unwrap_or_else(|_| Err("the gossip thread died".to_owned()));
        outcome.map_err(|e| std::io::Error::other(format!("cluster gossip: {e}")))?;
        info!(gossip = %addr, listen = %listen, ?seeds, interval = ?GOSSIP_INTERVAL, "cluster gossip on");
        Ok(Gossip { commands })
    }

    /// Announces `state` to the peers; returns once it was pushed to the
    /// live ones and, for `leaving`, given time to arrive (at most a few
    /// seconds in all).
    pub fn announce(&self, state: MemberState) {
        let (done, rx) = mpsc::channel();
        if self.commands.send(Command::Announce { state, done }).is_err() || rx.recv_timeout(COMMAND_TIMEOUT).is_err() {
            warn!(state = state.as_str(), "the gossip thread did not take the new state");
        }
    }
}

/// The gossip address of `self_id`: its host, resolved, on `port`.
fn gossip_addr(self_id: &str, port: u16) -> std::io::Result<SocketAddr> {
    let host = crate::config::host_of(self_id);
    (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("the advertised host {host} resolves to no address"))
    })
}

/// Publishes the live members whenever chitchat's live set or a live
/// member's state changes, and takes this proxy's state changes, until the
/// [`Gossip`] is dropped.
async fn run(handle: ChitchatHandle, mut commands: tokio_mpsc::UnboundedReceiver<Command>, publish: impl Fn(Vec<Member>)) {
    let chitchat = handle.chitchat();
    let mut watcher = chitchat.lock().await.live_nodes_watcher();
    loop {
        tokio::select! {
            changed = watcher.changed() => {
                if changed.is_err() {
                    break;
                }
                publish(live_members(&*chitchat.lock().await));
            }
            command = commands.recv() => match command {
                Some(Command::Announce { state, done }) => {
                    let peers = {
                        let mut c = chitchat.lock().await;
                        c.self_node_state().set(STATE_KEY, state.as_str());
                        publish(live_members(&c));
                        let me = c.self_chitchat_id().clone();
                        c.live_nodes().filter(|id| **id != me).map(|id| id.gossip_advertise_addr).collect::<Vec<_>>()
                    };
                    // A round now instead of at the next tick: the peers'
                    // replies fetch the new state.
                    for peer in peers {
                        let _ = handle.gossip(peer);
                    }
                    if state == MemberState::Leaving {
                        tokio::time::sleep(ANNOUNCE_WAIT).await;
                    }
                    let _ = done.send(());
                }
                None => break,
            }
        }
    }
    let _ = handle.shutdown().await;
}

/// The live members with their states, one per member id: the newest
/// generation of a restarted proxy while the old one is still live. A
/// member whose state has not arrived yet counts as joining.
fn live_members(chitchat: &Chitchat) -> Vec<Member> {
    let mut newest: Vec<&ChitchatId> = Vec::new();
    for id in chitchat.live_nodes() {
        match newest.iter_mut().find(|n| n.node_id == id.node_id) {
            Some(n) if n.generation_id < id.generation_id => *n = id,
            Some(_) => {}
            None => newest.push(id),
        }
    }
    newest
        .into_iter()
        .map(|id| {
            let state = chitchat.node_state(id).and_then(|s| s.get(STATE_KEY)).and_then(MemberState::parse);
            Member { id: id.node_id.clone(), state: state.unwrap_or(MemberState::Joining) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    /// Two proxies gossiping on 127.0.0.1: each sees the other, then a
    /// state change, then the other's departure once its gossip stops.
    #[test]
    fn two_members_see_each_other_come_change_and_go() {
        let free = || UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (pa, pb) = (free(), free());
        let seen_by_a: Arc<Mutex<Vec<Member>>> = Arc::default();
        let sink = seen_by_a.clone();
        let a = Gossip::start("127.0.0.1:1", &GossipSettings { seeds: vec![], port: pa }, MemberState::Serving, move |m| {
            *sink.lock().unwrap() = m;
        })
        .unwrap();
        let b = Gossip::start(
            "127.0.0.1:2",
            &GossipSettings { seeds: vec![format!("127.0.0.1:{pa}")], port: pb },
            MemberState::Joining,
            |_| {},
        )
        .unwrap();
        let wait_for = |what: &str, want: &dyn Fn(&[Member]) -> bool| {
            let start = Instant::now();
            while !want(&seen_by_a.lock().unwrap()) {
                assert!(start.elapsed() < Duration::from_secs(30), "never {what}: {:?}", seen_by_a.lock().unwrap());
                thread::sleep(Duration::from_millis(20));
            }
        };
        let state_of_b = |m: &[Member]| m.iter().find(|m| m.id == "127.0.0.1:2").map(|m| m.state);
        wait_for("saw b join", &|m| state_of_b(m) == Some(MemberState::Joining));
        b.announce(MemberState::Serving);
        wait_for("saw b serve", &|m| state_of_b(m) == Some(MemberState::Serving));
        b.announce(MemberState::Leaving);
        wait_for("saw b leave", &|m| state_of_b(m) == Some(MemberState::Leaving));
        drop(b);
        wait_for("dropped b", &|m| state_of_b(m).is_none());
        drop(a);
    }
}
