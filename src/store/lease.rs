//! Shard leases: which proxy may write which entities, when several proxies
//! share one PostgreSQL database (`--store postgres`).
//!
//! The entity key space is split into `--shards` shards (fixed per cluster:
//! recorded in `massa_settings` on first start, a different value is
//! refused). A proxy writes an entity only under its shard's lease, a row
//! `(shard, owner, epoch, expires_at)` of `massa_leases`:
//!
//! - An entity activates only once its proxy holds the shard; otherwise
//!   its commands fail with UNAVAILABLE naming the owner. Taking a lease
//!   succeeds when it is free, expired by the database clock, or already
//!   this proxy's, and always bumps the epoch.
//! - Every batch carries the epochs its entities activated under (a
//!   [`Fence`]) and commits only if they are still current, checked in the
//!   batch's own transaction with the rows locked until COMMIT. So a
//!   takeover waits for the old owner's batches in flight, and fails every
//!   later one: per shard, the committed batches of one epoch all come from
//!   one proxy, whatever the clocks say.
//! - One thread per proxy runs the lease SQL, never an executor: it takes
//!   leases on request, renews all held ones in one statement every third
//!   of `--lease-duration`, and releases them at shutdown.
//! - A shard found held by another proxy is refused without asking again
//!   for an eighth of `--lease-duration`, so refused commands cost no
//!   round trip each (and a takeover is noticed that much later at most).
//! - Shards the cluster's placement gives another member are handed off
//!   at each renewal: dropped here first (entities stop serving them, their
//!   callers retry at the new owner), then released in the database, so
//!   the new owner takes them at once instead of after expiry.
//! - A proxy treats a lease as lost once `--lease-duration` (less a margin)
//!   has passed, by its own monotonic clock, since it sent the last renewal
//!   that succeeded: that is before the database would let anyone else take
//!   it, so entities are not served from memory past it.

use std::{
    collections::HashMap,
    io,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use futures_channel::oneshot;
use tracing::{info, warn};

use super::{keys, Fence, PostgresStore};
use crate::cluster::Cluster;
use crate::grpc::{Code, Status};

/// A proxy stops trusting a lease this fraction of its duration before the
/// database would expire it (absorbs clock-rate differences).
const MARGIN_DIVISOR: u32 = 8;
/// How long shutdown waits for the leases to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a refusal names the proxy holding the lease (read back by
/// [`holder_named_in`], also from a refusal another proxy sent).
const OWNED_BY: &str = "is owned by another proxy (";

/// The lease holder a refusal names, when `status` is one.
pub fn holder_named_in(status: &Status) -> Option<&str> {
    if status.code != Code::Unavailable {
        return None;
    }
    let at = status.message.find(OWNED_BY)? + OWNED_BY.len();
    status.message[at..].split_once(')').map(|(owner, _)| owner)
}

/// This proxy's leases, shared by the cores and the lease thread.
pub struct Leases {
    owner: String,
    shards: u32,
    held: Mutex<HashMap<u32, Held>>,
    /// Bumped after every change of `held`, so each core keeps its own copy
    /// ([`HeldCache`]) and the command path takes no shared lock.
    version: AtomicU64,
    /// Shards found held by another proxy, and until when that answer is
    /// reused: commands for them are refused without a round trip each.
    elsewhere: Mutex<HashMap<u32, (String, Instant)>>,
    jobs: flume::Sender<Job>,
    pg: Arc<PostgresStore>,
    stats: Stats,
    /// `--store-timeout`: how long an activation waits for its lease (the
    /// lease thread may be stuck on an unreachable database).
    wait: Duration,
}

/// What `/metrics` shows of the leases.
#[derive(Default)]
struct Stats {
    renewals: AtomicU64,
    taken: AtomicU64,
    lost: AtomicU64,
    handed_off: AtomicU64,
}

/// A copy of the lease counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseFigures {
    /// Renewal statements that succeeded.
    pub renewals: u64,
    /// Ownership changes seen from here: shards taken, lost, handed off.
    pub taken: u64,
    pub lost: u64,
    pub handed_off: u64,
    /// Batches the database refused because their lease had moved.
    pub fencing_rejections: u64,
}

/// One core's copy of the held leases (see [`Leases::holds_here`]).
#[derive(Default)]
pub struct HeldCache {
    version: std::cell::Cell<Option<u64>>,
    held: std::cell::RefCell<HashMap<u32, Held>>,
}

/// A change of the held leases in progress.
struct HeldMut<'a> {
    version: &'a AtomicU64,
    map: std::sync::MutexGuard<'a, HashMap<u32, Held>>,
}

impl Drop for HeldMut<'_> {
    fn drop(&mut self) {
        self.version.fetch_add(1, Ordering::Release);
    }
}

impl std::ops::Deref for HeldMut<'_> {
    type Target = HashMap<u32, Held>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl std::ops::DerefMut for HeldMut<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    /// Trusted until then (see the module doc).
    until: Instant,
}

enum Job {
    Acquire { shard: u32, done: oneshot::Sender<Result<Fence, Refusal>> },
    /// A fenced batch failed: renew now, so lost leases are found at once.
    Check,
    Release { done: std::sync::mpsc::Sender<()> },
}

/// Why a lease was not taken.
enum Refusal {
    Owned(String),
    Failed(io::Error),
}

/// The lease thread's side: the store and the timing.
struct Keeper {
    leases: Arc<Leases>,
    pg: Arc<PostgresStore>,
    cluster: Arc<Cluster>,
    duration: Duration,
}

impl Leases {
    /// Checks the cluster's shard count and starts the lease thread.
    /// `owner` names this proxy to the others (its advertised address).
    pub fn start(
        pg: Arc<PostgresStore>,
        cluster: Arc<Cluster>,
        shards: u32,
        duration: Duration,
        wait: Duration,
    ) -> io::Result<Arc<Leases>> {
        let owner = cluster.self_id().to_owned();
        let settled = pg.settle_shards(shards)?;
        if settled != shards {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--shards {shards}: this cluster was set up with {settled} shards, which cannot change; start with --shards {settled}"),
            ));
        }
        let (jobs, rx) = flume::unbounded();
        let leases = Arc::new(Leases {
            owner,
            shards,
            held: Mutex::default(),
            version: AtomicU64::new(0),
            elsewhere: Mutex::default(),
            jobs,
            pg: pg.clone(),
            stats: Stats::default(),
            wait,
        });
        let keeper = Keeper { leases: leases.clone(), pg, cluster, duration };
        thread::Builder::new().name("massa-leases".to_owned()).spawn(move || keeper.run(&rx))?;
        info!(owner = %leases.owner, shards, lease_duration = ?duration, "shard leases on");
        Ok(leases)
    }

    pub fn figures(&self) -> LeaseFigures {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LeaseFigures {
            renewals: get(&self.stats.renewals),
            taken: get(&self.stats.taken),
            lost: get(&self.stats.lost),
            handed_off: get(&self.stats.handed_off),
            fencing_rejections: self.pg.fencing_rejections(),
        }
    }

    /// The shard of an entity.
    pub fn shard_of(&self, pid: &str, eid: &str) -> u32 {
        (keys::entity_hash(pid, eid) % u64::from(self.shards)) as u32
    }

    /// Whether this proxy still holds the lease `fence` was taken under.
    pub fn holds(&self, fence: Fence) -> bool {
        self.held().get(&fence.shard).is_some_and(|h| h.epoch == fence.epoch && Instant::now() < h.until)
    }

    /// [`Leases::holds`] from one core's copy, refreshed only when the
    /// leases changed (one acquire load per command otherwise). A copy's
    /// trust ends no later than the shared one's: renewals only extend it.
    pub fn holds_here(&self, cache: &HeldCache, fence: Fence) -> bool {
        let version = self.version.load(Ordering::Acquire);
        if cache.version.get() != Some(version) {
            *cache.held.borrow_mut() = self.held().clone();
            cache.version.set(Some(version));
        }
        cache.held.borrow().get(&fence.shard).is_some_and(|h| h.epoch == fence.epoch && Instant::now() < h.until)
    }

    /// The lease of an entity's shard, taken if this proxy does not hold it.
    pub async fn acquire(&self, pid: &str, eid: &str) -> Result<Fence, Status> {
        self.acquire_shard(self.shard_of(pid, eid), || format!("entity {pid}/{eid}")).await
    }

    /// `shard`'s lease, taken if this proxy does not hold it; a refusal
    /// names what needed it (`what`, called only then).
    pub async fn acquire_shard(&self, shard: u32, what: impl Fn() -> String) -> Result<Fence, Status> {
        if let Some(h) = self.held().get(&shard).filter(|h| Instant::now() < h.until) {
            return Ok(Fence { shard, epoch: h.epoch });
        }
        let owned = |owner: &str| Status::new(Code::Unavailable, format!("{} {OWNED_BY}{owner}); retry there", what()));
        let known = self.elsewhere().get(&shard).filter(|(_, until)| Instant::now() < *until).map(|(owner, _)| owner.clone());
        if let Some(owner) = known {
            return Err(owned(&owner));
        }
        let (done, rx) = oneshot::channel();
        let stopped = || Status::new(Code::Unavailable, "the lease thread has stopped");
        self.jobs.send(Job::Acquire { shard, done }).map_err(|_| stopped())?;
        let Ok(answer) = monoio::time::timeout(self.wait, rx).await else {
            return Err(Status::new(
                Code::Unavailable,
                format!("the lease of shard {shard} was not taken within {:?} (--store-timeout): PostgreSQL is slow or unreachable", self.wait),
            ));
        };
        match answer.map_err(|_| stopped())? {
            Ok(fence) => Ok(fence),
            Err(Refusal::Owned(owner)) => Err(owned(&owner)),
            Err(Refusal::Failed(e)) => Err(Status::new(Code::Unavailable, format!("storage failed taking the lease of shard {shard}: {e}"))),
        }
    }

    /// A batch under `fence` failed: find out now whether the lease is lost.
    pub fn check(&self, fence: Fence) {
        if self.holds(fence) {
            let _ = self.jobs.send(Job::Check);
        }
    }

    /// Ends every lease this proxy holds (call once nothing writes any more).
    pub fn release(&self) {
        let (done, rx) = std::sync::mpsc::channel();
        if self.jobs.send(Job::Release { done }).is_ok() && rx.recv_timeout(RELEASE_TIMEOUT).is_err() {
            warn!("shard leases not released in time; others take them over once they expire");
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `held` for a change: the version moves when the guard drops, before
    /// the lock is released, so a core that sees the new version copies the
    /// changed map.
    fn held_mut(&self) -> HeldMut<'_> {
        HeldMut { version: &self.version, map: self.held() }
    }

    fn elsewhere(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (String, Instant)>> {
        self.elsewhere.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Vec<Fence> {
        self.held().iter().map(|(&shard, h)| Fence { shard, epoch: h.epoch }).collect()
    }
}

impl Keeper {
    fn run(self, rx: &flume::Receiver<Job>) {
        let every = self.duration / 3;
        let mut renew_at = Instant::now() + every;
        loop {
            match rx.recv_deadline(renew_at) {
                // Its activation stopped waiting: nobody needs the lease now.
                Ok(Job::Acquire { done, .. }) if done.is_canceled() => {}
                Ok(Job::Acquire { shard, done }) => drop(done.send(self.take(shard))),
                Ok(Job::Check) => renew_at = Instant::now(),
                Ok(Job::Release { done }) => {
                    self.release();
                    let _ = done.send(());
                    return;
                }
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() >= renew_at {
                self.renew();
                renew_at = Instant::now() + every;
            }
        }
    }

    /// Trusted until: the lease's duration from when its statement was sent,
    /// less the margin.
    fn until(&self, sent: Instant) -> Instant {
        sent + self.duration - self.duration / MARGIN_DIVISOR
    }

    fn take(&self, shard: u32) -> Result<Fence, Refusal> {
        // Several activations may have asked for the same shard.
        if let Some(h) = self.leases.held().get(&shard).filter(|h| Instant::now() < h.until) {
            return Ok(Fence { shard, epoch: h.epoch });
        }
        let sent = Instant::now();
        let epoch = match self.pg.acquire_lease(shard, &self.leases.owner, self.duration).map_err(Refusal::Failed)? {
            Ok(epoch) => epoch,
            Err(owner) => {
                let until = Instant::now() + self.duration / MARGIN_DIVISOR;
                self.leases.elsewhere().insert(shard, (owner.clone(), until));
                return Err(Refusal::Owned(owner));
            }
        };
        self.leases.elsewhere().remove(&shard);
        self.leases.held_mut().insert(shard, Held { epoch, until: self.until(sent) });
        self.leases.stats.taken.fetch_add(1, Ordering::Relaxed);
        info!(shard, epoch, "shard lease taken");
        Ok(Fence { shard, epoch })
    }

    fn renew(&self) {
        self.hand_off();
        let held = self.leases.snapshot();
        if held.is_empty() {
            return;
        }
        let sent = Instant::now();
        let renewed = match self.pg.renew_leases(&self.leases.owner, &held, self.duration) {
            Ok(renewed) => renewed,
            // Unrenewed leases run out on their own (`Held::until`).
            Err(e) => return warn!(error = %e, "renewing shard leases failed"),
        };
        self.leases.stats.renewals.fetch_add(1, Ordering::Relaxed);
        let mut map = self.leases.held_mut();
        for fence in held {
            // Only the epoch renewed: the shard may have been re-taken since.
            let Some(h) = map.get_mut(&fence.shard).filter(|h| h.epoch == fence.epoch) else { continue };
            if renewed.contains(&fence.shard) {
                h.until = self.until(sent);
            } else {
                warn!(shard = fence.shard, epoch = fence.epoch, "shard lease lost: another proxy holds it now");
                map.remove(&fence.shard);
                self.leases.stats.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Gives up the shards the placement puts on another member: dropped
    /// from `held` first (no entity serves them from here any more), then
    /// released, which waits for batches still in flight under them.
    fn hand_off(&self) {
        let members = self.cluster.members();
        if members.members().len() < 2 || members.shards() != self.leases.shards {
            return;
        }
        let leaving: Vec<Fence> = {
            let mut held = self.leases.held_mut();
            let leaving: Vec<Fence> =
                held.iter().filter(|(s, _)| !members.is_self(**s)).map(|(&shard, h)| Fence { shard, epoch: h.epoch }).collect();
            for f in &leaving {
                held.remove(&f.shard);
            }
            leaving
        };
        if leaving.is_empty() {
            return;
        }
        match self.pg.release_leases(&self.leases.owner, &leaving) {
            Ok(()) => info!(shards = leaving.len(), "shard leases handed off to their placed owners"),
            Err(e) => warn!(error = %e, shards = leaving.len(), "handing shard leases off failed; they expire instead"),
        }
        self.leases.stats.handed_off.fetch_add(leaving.len() as u64, Ordering::Relaxed);
    }

    fn release(&self) {
        let held = self.leases.snapshot();
        self.leases.held_mut().clear();
        match self.pg.release_leases(&self.leases.owner, &held) {
            Ok(()) => info!(shards = held.len(), "shard leases released"),
            Err(e) => warn!(error = %e, "releasing shard leases failed; others take them over once they expire"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_its_holder_even_relayed_by_another_proxy() {
        let refusal = Status::new(Code::Unavailable, format!("entity cart/a {OWNED_BY}10.0.0.2:9000); retry there"));
        assert_eq!(holder_named_in(&refusal), Some("10.0.0.2:9000"));
        let relayed = Status::new(Code::Unavailable, format!("via proxy 10.0.0.3:9000: {}", refusal.message));
        assert_eq!(holder_named_in(&relayed), Some("10.0.0.2:9000"));
        assert_eq!(holder_named_in(&Status::new(Code::Unknown, refusal.message.clone())), None, "only refusals");
        assert_eq!(holder_named_in(&Status::new(Code::Unavailable, "lease lost")), None);
    }
}
