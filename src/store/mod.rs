//! Entity state storage: the event journal, snapshots, values and CRDTs.
//!
//! A [`Store`] is blocking and runs only on storage threads, never on an
//! executor. Each core reaches its own storage thread through a
//! [`StoreHandle`], which groups every write issued during one tick into one
//! batch (group commit) and releases the waiting replies once that batch is
//! durable at the configured level.
//!
//! Key layout (shared by all implementations, see [`keys`]): keys are by
//! `(persistence id, entity id)` only, never by core, so changing
//! `--workers` needs no migration. Each core has two storage threads: a
//! writer (group commit) and a reader, so activations never queue behind an
//! fsync.
//!
//! With PostgreSQL, several proxies may share the store: [`lease`] decides
//! which one writes each entity, and every batch is fenced by it.

pub mod keys;
mod entity_store;
mod handle;
pub mod lease;
mod memory;
mod migrate;
mod postgres;
mod rocks;

use std::io;

use bytes::Bytes;

pub use entity_store::{EntityStore, SpaceGuard};
pub use handle::{spawn_threads, Lanes, StorageThreads, StoreHandle};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use rocks::RocksStore;

/// An event-sourced entity's state as stored: the latest snapshot and the
/// events after it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Journal {
    /// `(sequence, encoded Any)` of the latest snapshot.
    pub snapshot: Option<(u64, Bytes)>,
    /// `(sequence, encoded Any)` of every event after the snapshot, in order.
    pub events: Vec<(u64, Bytes)>,
}

impl Journal {
    /// Sequence number of the last event (0 for a new entity).
    pub fn last_sequence(&self) -> u64 {
        self.events.last().map(|e| e.0).or(self.snapshot.as_ref().map(|s| s.0)).unwrap_or(0)
    }
}

/// One write of a batch. Values are prost-encoded `google.protobuf.Any`.
#[derive(Debug, Clone)]
pub enum Write {
    /// Events with consecutive sequence numbers from `first_sequence`.
    Events { persistence_id: String, entity_id: String, first_sequence: u64, events: Vec<Bytes> },
    Snapshot { persistence_id: String, entity_id: String, sequence: u64, snapshot: Bytes },
    PutValue { persistence_id: String, entity_id: String, value: Bytes },
    DeleteValue { persistence_id: String, entity_id: String },
    /// A consumer group has processed the tag log of `persistence_id`
    /// through `offset`.
    ConsumerOffset { persistence_id: String, group: String, offset: u64 },
    /// A CRDT entity's whole state, replacing its delta records
    /// `1..=folded`; empty `bytes` is the tombstone of a deleted one.
    CrdtState { persistence_id: String, entity_id: String, bytes: Bytes, folded: u64 },
    /// A CRDT entity's `number`-th delta record after its state.
    CrdtDelta { persistence_id: String, entity_id: String, number: u64, bytes: Bytes },
}

/// A CRDT entity as stored: its state record (absent: none yet; empty:
/// deleted) and the delta records after it, in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CrdtRecords {
    pub state: Option<Bytes>,
    pub deltas: Vec<Bytes>,
}

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    /// A write-once entry (an event, a tag-log entry): the batch fails with
    /// [`io::ErrorKind::AlreadyExists`] if the key exists, so a second
    /// writer can never fork a journal. RocksDB writes it as a `Put`: its
    /// directory lock makes this process the only writer, and one core the
    /// only writer of each entity.
    Insert(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// A tag-log entry (value) of the persistence id whose tag-log prefix
    /// ([`keys::tags_of`]) is given, at the next offset the store assigns:
    /// sent only to stores that number the tag log themselves
    /// ([`Numbering::Store`]), which write it as the [`Op::Insert`] of
    /// `prefix ++ offset`.
    Tag(Vec<u8>, Vec<u8>),
}

/// Who gives tag-log entries their offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbering {
    /// This process is the store's only writer (RocksDB's directory lock,
    /// memory): [`EntityStore`] numbers entries from a counter of its own.
    Process,
    /// Several proxies share the store (PostgreSQL): it numbers each batch's
    /// entries in the batch's own transaction, in commit order, so every
    /// reader of the tag log sees a gap-free prefix.
    Store,
}

/// A shard lease a batch was issued under: the batch commits only if this
/// proxy still holds `shard` at `epoch` when it commits (see [`lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    pub shard: u32,
    pub epoch: i64,
}

/// The error of a batch whose [`Op::Insert`] found its key taken.
fn already_written(engine: &str, detail: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{engine} refused the batch: an event or tag-log entry it writes was already written by another writer ({detail})"),
    )
}

/// A batch that may or may not have committed: the engine took it and
/// never said how it ended (the connection failed after COMMIT was sent,
/// or the storage thread did not answer in time). Callers must not treat
/// it as "nothing written": see [`is_outcome_unknown`].
#[derive(Debug)]
struct OutcomeUnknown(String);

impl std::fmt::Display for OutcomeUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutcomeUnknown {}

fn outcome_unknown(detail: String) -> io::Error {
    io::Error::other(OutcomeUnknown(detail))
}

/// Whether `e` leaves open whether its batch was written.
fn is_outcome_unknown(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OutcomeUnknown>())
}

/// An ordered key-value store with atomic batches: what RocksDB, PostgreSQL
/// and the in-memory store provide. Blocking; called from storage threads only.
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>>;
    /// Up to `limit` entries with keys `>= start` that begin with `prefix`.
    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Applies all ops atomically, in the same transaction as checking
    /// every `fence` (stores without leases get none); `sync` asks for
    /// fsync before returning.
    fn commit(&self, ops: Vec<Op>, fence: &[Fence], sync: bool) -> io::Result<()>;
    /// Who numbers the tag log (see [`Op::Tag`]).
    fn numbering(&self) -> Numbering {
        Numbering::Process
    }
}

/// One store shared by the storage threads and the lease thread.
impl<S: Store> Store for std::sync::Arc<S> {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        (**self).get(key)
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        (**self).scan(prefix, start, limit)
    }

    fn commit(&self, ops: Vec<Op>, fence: &[Fence], sync: bool) -> io::Result<()> {
        (**self).commit(ops, fence, sync)
    }

    fn numbering(&self) -> Numbering {
        (**self).numbering()
    }
}

/// The error of an [`Op::Tag`] sent to a store that does not number the
/// tag log (a bug in the caller, reported instead of writing a wrong key).
fn tag_not_numbered(engine: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{engine} does not number tag-log entries; the batch was refused"))
}

/// An event as the global, per-persistence-id ordered log sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedEvent {
    pub offset: u64,
    pub entity_id: String,
    pub sequence: u64,
    pub event: Bytes,
    /// When the event's batch was written, in microseconds since the Unix
    /// epoch; `None` for events stored before append times were kept.
    pub appended_us: Option<u64>,
}

#[cfg(test)]
mod tests;
