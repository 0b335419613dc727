//! The cluster: which proxies are live ([`membership`], gossip) and which
//! of them owns each lease shard ([`placement`]).
//!
//! A proxy's member id is its advertised address (`--advertise-address`),
//! the same string its shard leases name as owner. Without
//! `--cluster-seeds` the cluster is this proxy alone, so callers need no
//! special case.
//!
//! The hot path costs one relaxed load: a core keeps its own
//! `Arc<Members>` and takes a new one from [`Cluster::members`] only when
//! [`Cluster::version`] moved.

pub mod membership;
pub mod placement;

use std::{
    io,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use tracing::info;

pub use membership::{GossipSettings, GOSSIP_INTERVAL};
pub use placement::{Member, MemberState, Members};

/// How often [`Cluster::settle`] looks at the view.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// This proxy's membership: the current [`Members`] and gossip, if on.
pub struct Cluster {
    view: Arc<View>,
    /// `None`: a cluster of one.
    gossip: Option<membership::Gossip>,
}

/// The published snapshot, shared with the gossip thread.
struct View {
    self_id: String,
    shards: u32,
    current: RwLock<Arc<Members>>,
    /// Bumped after every change of `current`.
    version: AtomicU64,
}

impl Cluster {
    /// Joins as `joining` (gossiping if `gossip` is given): shards are
    /// placed on this proxy only after [`Cluster::serve`]. `self_id` is its
    /// advertised `host:port`; `shards` is `--shards`.
    pub fn start(self_id: String, shards: u32, gossip: Option<&GossipSettings>) -> io::Result<Arc<Cluster>> {
        let me = Member { id: self_id.clone(), state: MemberState::Joining };
        let current = RwLock::new(Arc::new(Members::new(&self_id, vec![me.clone()], shards)));
        let view = Arc::new(View { self_id, shards, current, version: AtomicU64::new(0) });
        info!(member = %me.id, state = me.state.as_str(), "cluster member joined (self)");
        let gossip = match gossip {
            None => None,
            Some(settings) => {
                let publisher = view.clone();
                Some(membership::Gossip::start(&view.self_id, settings, me.state, move |m| publisher.update(m))?)
            }
        };
        Ok(Arc::new(Cluster { view, gossip }))
    }

    /// The current snapshot (an `Arc` clone under a read lock).
    pub fn members(&self) -> Arc<Members> {
        self.view.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Moves on every membership change: refresh a kept [`Members`] when it
    /// differs from the one seen then.
    pub fn version(&self) -> u64 {
        self.view.version.load(Ordering::Relaxed)
    }

    /// This proxy's member id (its advertised address).
    pub fn self_id(&self) -> &str {
        &self.view.self_id
    }

    /// This proxy serves: shards are placed on it from now on.
    pub fn serve(&self) {
        self.announce(MemberState::Serving);
    }

    /// With gossip, waits until this proxy's view of the members has not
    /// changed for `quiet` (long enough to have heard from every member
    /// that is up), at most `max`; returns whether it settled. Without
    /// gossip there is nothing to wait for.
    pub fn settle(&self, quiet: Duration, max: Duration) -> bool {
        if self.gossip.is_none() {
            return true;
        }
        let start = Instant::now();
        let (mut seen, mut since) = (self.version(), start);
        while since.elapsed() < quiet {
            if start.elapsed() >= max {
                return false;
            }
            std::thread::sleep(SETTLE_POLL);
            let version = self.version();
            if version != seen {
                (seen, since) = (version, Instant::now());
            }
        }
        true
    }

    /// This proxy is shutting down: its shards move to the others at once.
    /// With gossip, returns once the peers have been told (within about a
    /// gossip interval); gossip goes on until the process exits, so the
    /// others see `leaving` until then, then the member gone.
    pub fn leave(&self) {
        self.announce(MemberState::Leaving);
    }

    fn announce(&self, state: MemberState) {
        match &self.gossip {
            Some(gossip) => gossip.announce(state),
            None => self.view.update(vec![Member { id: self.view.self_id.clone(), state }]),
        }
    }
}

impl View {
    /// Publishes `members` if they differ from the current ones, logging
    /// who joined, changed state or left.
    fn update(&self, members: Vec<Member>) {
        let next = Members::new(&self.self_id, members, self.shards);
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.members() == next.members() {
            return;
        }
        log_changes(current.members(), next.members());
        *current = Arc::new(next);
        // Under the lock: a core that sees the new version reads the new
        // members (or newer).
        self.version.fetch_add(1, Ordering::Relaxed);
    }
}

fn log_changes(before: &[Member], after: &[Member]) {
    for m in after {
        match before.iter().find(|b| b.id == m.id) {
            None => info!(member = %m.id, state = m.state.as_str(), "cluster member joined"),
            Some(b) if b.state != m.state => info!(member = %m.id, state = m.state.as_str(), "cluster member state changed"),
            Some(_) => {}
        }
    }
    for b in before.iter().filter(|b| !after.iter().any(|m| m.id == b.id)) {
        info!(member = %b.id, "cluster member left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_the_proxy_owns_every_shard_once_it_serves() {
        let c = Cluster::start("10.0.0.1:9000".into(), 16, None).unwrap();
        assert_eq!(c.self_id(), "10.0.0.1:9000");
        let v0 = c.version();
        c.serve();
        assert_eq!(c.version(), v0 + 1);
        let m = c.members();
        assert_eq!(m.members(), [Member { id: "10.0.0.1:9000".into(), state: MemberState::Serving }]);
        assert!((0..16).all(|s| m.is_self(s)));
        c.serve();
        assert_eq!(c.version(), v0 + 1, "no change, no new version");
        c.leave();
        assert_eq!(c.members().members()[0].state, MemberState::Leaving);
        assert_eq!(c.version(), v0 + 2);
    }
}
