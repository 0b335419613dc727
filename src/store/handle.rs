//! Storage threads and each core's handle to its own ones.
//!
//! Executors never block on storage: a core sends [`Job`]s to its storage
//! threads and awaits a oneshot. Each core has a writer thread and a reader
//! thread, so an activation's read never waits behind a batch's fsync.
//! Writes issued by a core while a batch is in flight are collected and go
//! out together as the next batch (group commit), so under load one fsync
//! covers many commands; writers of different cores commit in parallel and
//! RocksDB groups their syncs too.

use std::{
    cell::RefCell,
    io,
    rc::Rc,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_channel::oneshot;
use tracing::{error, info, warn};

use super::{CrdtRecords, EntityStore, Fence, Journal, TaggedEvent, Write};
use crate::grpc::{Code, Status};

/// Storage threads run short, shallow calls into the engine.
const STACK: usize = 256 * 1024;

/// Work for a storage thread (opaque outside this module).
enum Job {
    ReadJournal { pid: String, eid: String, done: oneshot::Sender<io::Result<Journal>> },
    ReadValue { pid: String, eid: String, done: oneshot::Sender<io::Result<Option<Bytes>>> },
    ReadTagged { pid: String, from: u64, limit: usize, done: oneshot::Sender<io::Result<Vec<TaggedEvent>>> },
    CountTagged { pid: String, after: u64, cap: usize, done: oneshot::Sender<io::Result<usize>> },
    ReadConsumerOffset { pid: String, group: String, done: oneshot::Sender<io::Result<u64>> },
    WatchTags { done: oneshot::Sender<flume::Receiver<()>> },
    ReadCrdt { pid: String, eid: String, done: oneshot::Sender<io::Result<CrdtRecords>> },
    Write { fence: Vec<Fence>, batch: Vec<Write>, claim: Arc<Claim>, done: oneshot::Sender<io::Result<()>> },
    /// Finish: sent at shutdown after everything queued before it.
    Stop,
}

impl Job {
    /// A read whose caller stopped waiting (`--store-timeout`): skipped.
    fn abandoned(&self) -> bool {
        match self {
            Job::ReadJournal { done, .. } => done.is_canceled(),
            Job::ReadValue { done, .. } => done.is_canceled(),
            Job::ReadTagged { done, .. } => done.is_canceled(),
            Job::CountTagged { done, .. } => done.is_canceled(),
            Job::ReadConsumerOffset { done, .. } => done.is_canceled(),
            Job::ReadCrdt { done, .. } => done.is_canceled(),
            Job::WatchTags { .. } | Job::Write { .. } | Job::Stop => false,
        }
    }
}

/// Who decides a queued batch's fate: the storage thread by starting it,
/// or its core by giving up on it first. Exactly one wins, so a batch the
/// core gave up on is never written.
#[derive(Default)]
struct Claim(AtomicU8);

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

impl Claim {
    fn start(&self) -> bool {
        self.0.compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn abandon(&self) -> bool {
        self.0.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }
}

/// One core's two queues: reads and writes.
#[derive(Clone)]
pub struct Lanes {
    reads: flume::Sender<Job>,
    writes: flume::Sender<Job>,
}

/// The running storage threads. [`StorageThreads::join`] stops them after
/// the work already queued; the last one to finish closes the store.
pub struct StorageThreads {
    threads: Vec<thread::JoinHandle<()>>,
    lanes: Vec<Lanes>,
}

impl StorageThreads {
    /// Call once the workers have stopped: waits up to `timeout` for queued
    /// work to finish and the store to close.
    pub fn join(self, timeout: Duration) {
        for lane in &self.lanes {
            let _ = lane.reads.send(Job::Stop);
            let _ = lane.writes.send(Job::Stop);
        }
        let deadline = Instant::now() + timeout;
        while self.threads.iter().any(|t| !t.is_finished()) {
            if Instant::now() > deadline {
                return warn!("storage threads still busy at exit; the store was not closed cleanly");
            }
            thread::sleep(Duration::from_millis(5));
        }
        self.threads.into_iter().for_each(|t| drop(t.join()));
        info!("entity store closed");
    }
}

/// Starts a writer and a reader thread per core; returns each core's lanes.
pub fn spawn_threads(store: Arc<EntityStore>, cores: usize, sync: bool) -> io::Result<(Vec<Lanes>, StorageThreads)> {
    let mut threads = Vec::with_capacity(cores * 2);
    let mut spawn = |name: String, writer: u16| -> io::Result<flume::Sender<Job>> {
        let (tx, rx) = flume::unbounded::<Job>();
        let store = store.clone();
        threads.push(thread::Builder::new().name(name).stack_size(STACK).spawn(move || {
            for job in rx.iter() {
                if job.abandoned() {
                    continue;
                }
                match job {
                    Job::ReadJournal { pid, eid, done } => drop(done.send(store.read_journal(&pid, &eid))),
                    Job::ReadValue { pid, eid, done } => drop(done.send(store.read_value(&pid, &eid))),
                    Job::ReadTagged { pid, from, limit, done } => drop(done.send(store.events_by_tag(&pid, from, limit))),
                    Job::CountTagged { pid, after, cap, done } => drop(done.send(store.count_tagged(&pid, after, cap))),
                    Job::ReadConsumerOffset { pid, group, done } => drop(done.send(store.consumer_offset(&pid, &group))),
                    Job::WatchTags { done } => drop(done.send(store.watch_tags())),
                    Job::ReadCrdt { pid, eid, done } => drop(done.send(store.read_crdt(&pid, &eid))),
                    Job::Write { fence, batch, claim, done } => {
                        if claim.start() {
                            drop(done.send(store.write(writer, &fence, &batch, sync)));
                        }
                    }
                    Job::Stop => break,
                }
            }
        })?);
        Ok(tx)
    };
    let lanes = (0..cores)
        .map(|id| {
            let writer = u16::try_from(id).map_err(io::Error::other)?;
            Ok(Lanes { writes: spawn(format!("massa-store-w{id}"), writer)?, reads: spawn(format!("massa-store-r{id}"), writer)? })
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok((lanes.clone(), StorageThreads { threads, lanes }))
}

#[derive(Default)]
struct Pending {
    writes: Vec<Write>,
    /// The leases the writes were issued under, each once.
    fence: Vec<Fence>,
    waiters: Vec<oneshot::Sender<Result<(), Status>>>,
    /// When the oldest of `writes` was issued: the batch's deadline runs
    /// from there.
    since: Option<Instant>,
    flushing: bool,
}

/// A core's way to its storage thread. Not `Send`: one per core.
pub struct StoreHandle {
    lanes: Lanes,
    pending: RefCell<Pending>,
    /// `--store-timeout`: how long a command waits for storage.
    timeout: Duration,
}

impl StoreHandle {
    pub fn new(lanes: Lanes, timeout: Duration) -> Rc<StoreHandle> {
        Rc::new(StoreHandle { lanes, pending: RefCell::default(), timeout })
    }

    pub async fn read_journal(&self, pid: &str, eid: &str) -> Result<Journal, Status> {
        self.read("reading the journal", |done| Job::ReadJournal { pid: pid.to_owned(), eid: eid.to_owned(), done }).await
    }

    pub async fn read_value(&self, pid: &str, eid: &str) -> Result<Option<Bytes>, Status> {
        self.read("reading the value", |done| Job::ReadValue { pid: pid.to_owned(), eid: eid.to_owned(), done }).await
    }

    /// Committed events of `pid`'s tag log from offset `from` on, in order.
    pub async fn read_tagged(&self, pid: &str, from: u64, limit: usize) -> Result<Vec<TaggedEvent>, Status> {
        self.read("reading the tag log", |done| Job::ReadTagged { pid: pid.to_owned(), from, limit, done }).await
    }

    /// Committed events of `pid` after offset `after`, counted up to `cap`.
    pub async fn count_tagged(&self, pid: &str, after: u64, cap: usize) -> Result<usize, Status> {
        self.read("counting the tag log", |done| Job::CountTagged { pid: pid.to_owned(), after, cap, done }).await
    }

    /// The last offset of `pid`'s tag log that consumer group `group` has
    /// processed (0: none).
    pub async fn consumer_offset(&self, pid: &str, group: &str) -> Result<u64, Status> {
        self.read("reading a consumer offset", |done| Job::ReadConsumerOffset { pid: pid.to_owned(), group: group.to_owned(), done })
            .await
    }

    /// A channel woken whenever new events become readable in the tag log.
    pub async fn watch_tags(&self) -> Result<flume::Receiver<()>, Status> {
        let (done, rx) = oneshot::channel();
        self.lanes.reads.send(Job::WatchTags { done }).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }

    /// A CRDT entity's state record and the delta records after it.
    pub async fn read_crdt(&self, pid: &str, eid: &str) -> Result<CrdtRecords, Status> {
        self.read("reading the CRDT", |done| Job::ReadCrdt { pid: pid.to_owned(), eid: eid.to_owned(), done }).await
    }

    /// Runs a read on this core's reader thread, waiting at most
    /// `--store-timeout` (a read given up on is skipped, not run late).
    async fn read<T>(&self, what: &str, job: impl FnOnce(oneshot::Sender<io::Result<T>>) -> Job) -> Result<T, Status> {
        let (done, rx) = oneshot::channel();
        self.lanes.reads.send(job(done)).map_err(|_| gone())?;
        match monoio::time::timeout(self.timeout, rx).await {
            Ok(result) => result.map_err(|_| gone())?.map_err(|e| failed(what, &e)),
            Err(_) => Err(Status::new(Code::Unavailable, format!("storage did not finish {what} within {:?} (--store-timeout)", self.timeout))),
        }
    }

    /// Resolves once `writes` are durable (at the configured level) as part
    /// of this core's next batch. With a `fence`, that batch commits only
    /// if this proxy still holds the lease the writes were issued under.
    /// Within `--store-timeout` of the call: a batch not started by then is
    /// never written (UNAVAILABLE); one started and not confirmed by then
    /// fails DEADLINE_EXCEEDED, its outcome unknown.
    pub async fn commit(self: &Rc<Self>, writes: Vec<Write>, fence: Option<Fence>) -> Result<(), Status> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.borrow_mut();
            p.writes.extend(writes);
            if let Some(fence) = fence.filter(|f| !p.fence.contains(f)) {
                p.fence.push(fence);
            }
            p.waiters.push(tx);
            p.since.get_or_insert_with(Instant::now);
            if !p.flushing {
                p.flushing = true;
                monoio::spawn(self.clone().flush());
            }
        }
        rx.await.map_err(|_| gone())?
    }

    /// Sends batches until nothing is pending. Runs after the committing
    /// task yields, so every write issued in the same tick joins the batch.
    async fn flush(self: Rc<Self>) {
        loop {
            let (batch, fence, waiters, since) = {
                let mut p = self.pending.borrow_mut();
                if p.waiters.is_empty() {
                    p.flushing = false;
                    return;
                }
                let since = p.since.take().unwrap_or_else(Instant::now);
                (std::mem::take(&mut p.writes), std::mem::take(&mut p.fence), std::mem::take(&mut p.waiters), since)
            };
            let result = self.write(batch, fence, since).await.map_err(|e| {
                error!(error = %e, "storage write failed");
                failed("writing", &e)
            });
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }

    /// One batch on the writer thread, bounded by `--store-timeout` from
    /// `since`.
    async fn write(&self, batch: Vec<Write>, fence: Vec<Fence>, since: Instant) -> io::Result<()> {
        let stopped = || io::Error::other("storage thread stopped");
        let claim = Arc::new(Claim::default());
        let (done, rx) = oneshot::channel();
        self.lanes.writes.send(Job::Write { fence, batch, claim: claim.clone(), done }).map_err(|_| stopped())?;
        let left = (since + self.timeout).saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, rx).await {
            Ok(result) => result.unwrap_or_else(|_| Err(stopped())),
            Err(_) if claim.abandon() => Err(io::Error::other(format!(
                "the batch waited {:?} (--store-timeout) behind earlier ones and was dropped unwritten",
                self.timeout
            ))),
            Err(_) => Err(super::outcome_unknown(format!(
                "the store did not confirm the batch within {:?} (--store-timeout); it may have been written",
                self.timeout
            ))),
        }
    }
}

fn gone() -> Status {
    Status::new(Code::Unavailable, "storage thread stopped")
}

/// Corrupt data is `DATA_LOSS` (retrying will not help); a journal entry
/// another writer got to first is `ABORTED` (the entity must reload); a
/// batch that may or may not have been written is `DEADLINE_EXCEEDED`
/// (gRPC's "may have completed"; a blind retry could apply it twice);
/// anything else is the storage being unavailable, nothing written.
fn failed(what: &str, e: &io::Error) -> Status {
    if super::is_outcome_unknown(e) {
        return Status::new(Code::DeadlineExceeded, format!("outcome unknown: storage failed {what}: {e}"));
    }
    let code = match e.kind() {
        io::ErrorKind::InvalidData => Code::DataLoss,
        io::ErrorKind::AlreadyExists => Code::Aborted,
        _ => Code::Unavailable,
    };
    Status::new(code, format!("storage failed {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::config::IoDriver;
    use crate::store::{MemoryStore, Op, Store};

    /// The memory store, with commits held at a gate while `hold` is set:
    /// a database that took the batch and has not answered yet.
    struct Gated {
        inner: MemoryStore,
        hold: Arc<AtomicBool>,
        entered: flume::Sender<()>,
        open: flume::Receiver<()>,
    }

    impl Store for Gated {
        fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }

        fn scan(
            &self,
            prefix: &[u8],
            start: &[u8],
            limit: usize,
        ) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
            self.inner.scan(prefix, start, limit)
        }

        fn commit(&self, ops: Vec<Op>, fence: &[Fence], sync: bool) -> io::Result<()> {
            if self.hold.load(Ordering::SeqCst) {
                let _ = self.entered.send(());
                let _ = self.open.recv();
            }
            self.inner.commit(ops, fence, sync)
        }
    }

    fn put(eid: &str) -> Vec<Write> {
        vec![Write::PutValue {
            persistence_id: "p".into(),
            entity_id: eid.into(),
            value: Bytes::from_static(b"v"),
        }]
    }

    #[test]
    fn a_stuck_batch_is_outcome_unknown_and_the_batch_behind_it_is_never_written() {
        let hold = Arc::new(AtomicBool::new(false));
        let (entered_tx, entered) = flume::unbounded();
        let (release, open) = flume::unbounded();
        let gated = Gated {
            inner: MemoryStore::default(),
            hold: hold.clone(),
            entered: entered_tx,
            open,
        };
        let store = Arc::new(EntityStore::open(Box::new(gated), None).unwrap());
        let (lanes, threads) = spawn_threads(store, 1, false).unwrap();
        let handle = StoreHandle::new(lanes[0].clone(), Duration::from_millis(300));
        let body = async {
            hold.store(true, Ordering::SeqCst);
            let first = monoio::spawn({
                let h = handle.clone();
                async move { h.commit(put("a"), None).await }
            });
            // The first batch is inside the store; the second queues behind it.
            entered.recv_async().await.unwrap();
            let second = monoio::spawn({
                let h = handle.clone();
                async move { h.commit(put("b"), None).await }
            });
            let first = first.await.unwrap_err();
            assert_eq!(first.code, Code::DeadlineExceeded, "{first}");
            assert!(first.message.starts_with("outcome unknown: "), "{first}");
            let second = second.await.unwrap_err();
            assert_eq!(second.code, Code::Unavailable, "{second}");
            assert!(second.message.contains("dropped unwritten"), "{second}");

            // The database answers at last: the first batch lands, the
            // second, given up on, is skipped.
            hold.store(false, Ordering::SeqCst);
            release.send(()).unwrap();
            handle.commit(put("c"), None).await.unwrap();
            assert!(
                handle.read_value("p", "a").await.unwrap().is_some(),
                "the stuck batch did commit"
            );
            assert_eq!(
                handle.read_value("p", "b").await.unwrap(),
                None,
                "an abandoned batch was written"
            );
            assert!(handle.read_value("p", "c").await.unwrap().is_some());
        };
        crate::runtime::block_on(IoDriver::Epoll, body).unwrap();
        threads.join(Duration::from_secs(5));
    }
}
