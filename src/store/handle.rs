//! Storage threads and each core's handle to its own one.
//!
//! Executors never block on storage: a core sends [`Job`]s to its storage
//! thread and awaits a oneshot. Writes issued by a core while a batch is in
//! flight are collected and go out together as the next batch (group
//! commit), so under load one fsync covers many commands.

use std::{cell::RefCell, io, rc::Rc, sync::Arc, thread};

use bytes::Bytes;
use futures_channel::oneshot;
use tracing::error;

use super::{EntityStore, Journal, Write};
use crate::grpc::{Code, Status};

/// Work for a storage thread (opaque outside this module).
pub enum Job {
    ReadJournal { pid: String, eid: String, done: oneshot::Sender<io::Result<Journal>> },
    ReadValue { pid: String, eid: String, done: oneshot::Sender<io::Result<Option<Bytes>>> },
    Write { batch: Vec<Write>, done: oneshot::Sender<io::Result<()>> },
}

/// Starts one storage thread per core; returns their job queues.
pub fn spawn_threads(store: Arc<EntityStore>, cores: usize, sync: bool) -> io::Result<Vec<flume::Sender<Job>>> {
    (0..cores)
        .map(|id| {
            let (tx, rx) = flume::unbounded::<Job>();
            let store = store.clone();
            thread::Builder::new().name(format!("massa-store-{id}")).spawn(move || {
                for job in rx.iter() {
                    match job {
                        Job::ReadJournal { pid, eid, done } => drop(done.send(store.read_journal(&pid, &eid))),
                        Job::ReadValue { pid, eid, done } => drop(done.send(store.read_value(&pid, &eid))),
                        Job::Write { batch, done } => drop(done.send(store.write(&batch, sync))),
                    }
                }
            })?;
            Ok(tx)
        })
        .collect()
}

#[derive(Default)]
struct Pending {
    writes: Vec<Write>,
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    flushing: bool,
}

/// A core's way to its storage thread. Not `Send`: one per core.
pub struct StoreHandle {
    jobs: flume::Sender<Job>,
    pending: RefCell<Pending>,
}

impl StoreHandle {
    pub fn new(jobs: flume::Sender<Job>) -> Rc<StoreHandle> {
        Rc::new(StoreHandle { jobs, pending: RefCell::default() })
    }

    pub async fn read_journal(&self, pid: &str, eid: &str) -> Result<Journal, Status> {
        let (done, rx) = oneshot::channel();
        self.submit(Job::ReadJournal { pid: pid.to_owned(), eid: eid.to_owned(), done })?;
        rx.await.map_err(|_| gone())?.map_err(|e| failed("reading the journal", &e.to_string()))
    }

    pub async fn read_value(&self, pid: &str, eid: &str) -> Result<Option<Bytes>, Status> {
        let (done, rx) = oneshot::channel();
        self.submit(Job::ReadValue { pid: pid.to_owned(), eid: eid.to_owned(), done })?;
        rx.await.map_err(|_| gone())?.map_err(|e| failed("reading the value", &e.to_string()))
    }

    /// Resolves once `writes` are durable (at the configured level) as part
    /// of this core's next batch.
    pub async fn commit(self: &Rc<Self>, writes: Vec<Write>) -> Result<(), Status> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.borrow_mut();
            p.writes.extend(writes);
            p.waiters.push(tx);
            if !p.flushing {
                p.flushing = true;
                monoio::spawn(self.clone().flush());
            }
        }
        rx.await.map_err(|_| gone())?.map_err(|e| failed("writing", &e))
    }

    /// Sends batches until nothing is pending. Runs after the committing
    /// task yields, so every write issued in the same tick joins the batch.
    async fn flush(self: Rc<Self>) {
        loop {
            let (batch, waiters) = {
                let mut p = self.pending.borrow_mut();
                if p.waiters.is_empty() {
                    p.flushing = false;
                    return;
                }
                (std::mem::take(&mut p.writes), std::mem::take(&mut p.waiters))
            };
            let (done, rx) = oneshot::channel();
            let result = match self.jobs.send(Job::Write { batch, done }) {
                Ok(()) => rx.await.unwrap_or_else(|_| Err(io::Error::other("storage thread stopped"))),
                Err(_) => Err(io::Error::other("storage thread stopped")),
            };
            let result = result.map_err(|e| {
                error!(error = %e, "storage write failed");
                e.to_string()
            });
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }

    fn submit(&self, job: Job) -> Result<(), Status> {
        self.jobs.send(job).map_err(|_| gone())
    }
}

fn gone() -> Status {
    Status::new(Code::Unavailable, "storage thread stopped")
}

fn failed(what: &str, e: &str) -> Status {
    Status::new(Code::Unavailable, format!("storage failed {what}: {e}"))
}
