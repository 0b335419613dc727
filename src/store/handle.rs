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
    sync::Arc,
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
    Write { fence: Vec<Fence>, batch: Vec<Write>, done: oneshot::Sender<io::Result<()>> },
    /// Finish: sent at shutdown after everything queued before it.
    Stop,
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
                match job {
                    Job::ReadJournal { pid, eid, done } => drop(done.send(store.read_journal(&pid, &eid))),
                    Job::ReadValue { pid, eid, done } => drop(done.send(store.read_value(&pid, &eid))),
                    Job::ReadTagged { pid, from, limit, done } => drop(done.send(store.events_by_tag(&pid, from, limit))),
                    Job::CountTagged { pid, after, cap, done } => drop(done.send(store.count_tagged(&pid, after, cap))),
                    Job::ReadConsumerOffset { pid, group, done } => drop(done.send(store.consumer_offset(&pid, &group))),
                    Job::WatchTags { done } => drop(done.send(store.watch_tags())),
                    Job::ReadCrdt { pid, eid, done } => drop(done.send(store.read_crdt(&pid, &eid))),
                    Job::Write { fence, batch, done } => drop(done.send(store.write(writer, &fence, &batch, sync))),
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
    flushing: bool,
}

/// A core's way to its storage thread. Not `Send`: one per core.
pub struct StoreHandle {
    lanes: Lanes,
    pending: RefCell<Pending>,
}

impl StoreHandle {
    pub fn new(lanes: Lanes) -> Rc<StoreHandle> {
        Rc::new(StoreHandle { lanes, pending: RefCell::default() })
    }

    pub async fn read_journal(&self, pid: &str, eid: &str) -> Result<Journal, Status> {
        let (done, rx) = oneshot::channel();
        self.read(Job::ReadJournal { pid: pid.to_owned(), eid: eid.to_owned(), done })?;
        rx.await.map_err(|_| gone())?.map_err(|e| failed("reading the journal", &e))
    }

    pub async fn read_value(&self, pid: &str, eid: &str) -> Result<Option<Bytes>, Status> {
        let (done, rx) = oneshot::channel();
        self.read(Job::ReadValue { pid: pid.to_owned(), eid: eid.to_owned(), done })?;
        rx.await.map_err(|_| gone())?.map_err(|e| failed("reading the value", &e))
    }

    /// Committed events of `pid`'s tag log from offset `from` on, in order.
    pub async fn read_tagged(&self, pid: &str, from: u64, limit: usize) -> Result<Vec<TaggedEvent>, Status> {
        let (done, rx) = oneshot::channel();
        self.read(Job::ReadTagged { pid: pid.to_owned(), from, limit, done })?;
        rx.await.map_err(|_| gone())?.map_err(|e| failed("reading the tag log", &e))
    }

    /// Committed events of `pid` after offset `after`, counted up to `cap`.
    pub async fn count_tagged(&self, pid: &str, after: u64, cap: usize) -> Result<usize, Status> {
        let (done, rx) = oneshot::channel();
        self.read(Job::CountTagged { pid: pid.to_owned(), after, cap, done })?;
        rx.await.map_err(|_| gone())?.map_err(|e| failed("counting the tag log", &e))
    }

    /// The last offset of `pid`'s tag log that consumer group `group` has
    /// processed (0: none).
    pub async fn consumer_offset(&self, pid: &str, group: &str) -> Result<u64, Status> {
        let (done, rx) = oneshot::channel();
        self.read(Job::ReadConsumerOffset { pid: pid.to_owned(), group: group.to_owned(), done })?;
        rx.await.map_err(|_| gone())?.map_err(|e| failed("reading a consumer offset", &e))
    }

    /// A channel woken whenever new events become readable in the tag log.
    pub async fn watch_tags(&self) -> Result<flume::Receiver<()>, Status> {
        let (done, rx) = oneshot::channel();
        self.read(Job::WatchTags { done })?;
        rx.await.map_err(|_| gone())
    }

    /// A CRDT entity's state record and the delta records after it.
    pub async fn read_crdt(&self, pid: &str, eid: &str) -> Result<CrdtRecords, Status> {
        let (done, rx) = oneshot::channel();
        self.read(Job::ReadCrdt { pid: pid.to_owned(), eid: eid.to_owned(), done })?;
        rx.await.map_err(|_| gone())?.map_err(|e| failed("reading the CRDT", &e))
    }

    /// Resolves once `writes` are durable (at the configured level) as part
    /// of this core's next batch. With a `fence`, that batch commits only
    /// if this proxy still holds the lease the writes were issued under.
    pub async fn commit(self: &Rc<Self>, writes: Vec<Write>, fence: Option<Fence>) -> Result<(), Status> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.borrow_mut();
            p.writes.extend(writes);
            if let Some(fence) = fence.filter(|f| !p.fence.contains(f)) {
                p.fence.push(fence);
            }
            p.waiters.push(tx);
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
            let (batch, fence, waiters) = {
                let mut p = self.pending.borrow_mut();
                if p.waiters.is_empty() {
                    p.flushing = false;
                    return;
                }
                (std::mem::take(&mut p.writes), std::mem::take(&mut p.fence), std::mem::take(&mut p.waiters))
            };
            let (done, rx) = oneshot::channel();
            let result = match self.lanes.writes.send(Job::Write { fence, batch, done }) {
                Ok(()) => rx.await.unwrap_or_else(|_| Err(io::Error::other("storage thread stopped"))),
                Err(_) => Err(io::Error::other("storage thread stopped")),
            };
            let result = result.map_err(|e| {
                error!(error = %e, "storage write failed");
                failed("writing", &e)
            });
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }

    fn read(&self, job: Job) -> Result<(), Status> {
        self.lanes.reads.send(job).map_err(|_| gone())
    }
}

fn gone() -> Status {
    Status::new(Code::Unavailable, "storage thread stopped")
}

/// Corrupt data is `DATA_LOSS` (retrying will not help); a journal entry
/// another writer got to first is `ABORTED` (the entity must reload);
/// anything else is the storage being unavailable.
fn failed(what: &str, e: &io::Error) -> Status {
    let code = match e.kind() {
        io::ErrorKind::InvalidData => Code::DataLoss,
        io::ErrorKind::AlreadyExists => Code::Aborted,
        _ => Code::Unavailable,
    };
    Status::new(code, format!("storage failed {what}: {e}"))
}
