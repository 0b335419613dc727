//! Journal, snapshot and value semantics on top of any [`Store`].

use std::{
    collections::BTreeMap,
    io,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
};

use bytes::Bytes;

use super::{keys, migrate, CrdtRecords, Fence, Journal, Op, Store, TaggedEvent, Write};

/// Upper bound on events read back in one activation scan step.
const SCAN_STEP: usize = 4096;

/// Times a batch is retried after its tag-log offsets were found taken by
/// another proxy.
const OFFSET_RETRIES: u32 = 8;
/// Pages of [`SCAN_STEP`] tag entries read looking for the end of what
/// other proxies wrote past this one's counter.
const OFFSET_PAGES: usize = 256;

/// Entity state over a key-value [`Store`].
///
/// Global event offsets (the tag log) are taken from an atomic counter, and
/// each storage writer commits on its own, with no lock across the commit:
/// cores' batches reach RocksDB together and share its group commit. Batches
/// may therefore finish out of offset order; [`Committed`] tracks the offset
/// below which every batch has finished, and the tag log is read only up to
/// it, so a reader never skips an offset that is still being written.
pub struct EntityStore {
    kv: Box<dyn Store>,
    last_offset: AtomicU64,
    committed: Mutex<Committed>,
    /// Woken (without blocking) whenever the tag log's watermark advances.
    tag_watchers: Mutex<Vec<flume::Sender<()>>>,
    guard: Option<SpaceGuard>,
}

/// Offsets whose batches have finished (committed or failed).
#[derive(Debug, Default)]
struct Committed {
    /// Every offset up to this one has finished.
    through: u64,
    /// Finished ranges beyond `through`, `first -> last`.
    ahead: BTreeMap<u64, u64>,
}

impl Committed {
    fn finish(&mut self, first: u64, last: u64) {
        self.ahead.insert(first, last);
        while let Some(entry) = self.ahead.first_entry() {
            if *entry.key() != self.through + 1 {
                break;
            }
            self.through = entry.remove();
        }
    }
}

/// Refuses writes while the data volume has less than `reserve` bytes free.
/// Storage engines fail badly on a full disk (Debian's RocksDB build aborts
/// the process on the write after an ENOSPC), so the proxy stops short of it
/// and fails the commands with a clear error instead.
pub struct SpaceGuard {
    pub dir: PathBuf,
    pub reserve: u64,
}

impl SpaceGuard {
    fn check(&self, incoming: u64) -> io::Result<()> {
        let path = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
        // SAFETY: `stat` is plain data the kernel fills; `path` is NUL-terminated.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let free = stat.f_bavail as u64 * stat.f_frsize as u64;
        if free < self.reserve + incoming {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("data volume {} is full: {free} bytes free, {} reserved", self.dir.display(), self.reserve),
            ));
        }
        Ok(())
    }
}

impl EntityStore {
    /// Opens the store, migrating or refusing an older layout first.
    pub fn open(kv: Box<dyn Store>, guard: Option<SpaceGuard>) -> io::Result<EntityStore> {
        migrate::ensure_format(kv.as_ref())?;
        let last = last_written_offset(kv.as_ref())?;
        let committed = Committed { through: last, ahead: BTreeMap::new() };
        Ok(EntityStore {
            kv,
            last_offset: AtomicU64::new(last),
            committed: Mutex::new(committed),
            tag_watchers: Mutex::default(),
            guard,
        })
    }

    /// The latest snapshot and every event after it.
    pub fn read_journal(&self, pid: &str, eid: &str) -> io::Result<Journal> {
        let snapshot = match self.kv.get(&keys::snapshot(pid, eid))? {
            Some(v) => {
                let (seq, any) = keys::parse_snapshot_value(&v).ok_or_else(|| corrupt("snapshot", pid, eid))?;
                Some((seq, Bytes::copy_from_slice(any)))
            }
            None => None,
        };
        let prefix = keys::events_of(pid, eid);
        let mut start = keys::event(pid, eid, snapshot.as_ref().map_or(1, |s| s.0 + 1));
        let mut events: Vec<(u64, Bytes)> = Vec::new();
        loop {
            let page = self.kv.scan(&prefix, &start, SCAN_STEP)?;
            let full = page.len() == SCAN_STEP;
            for (k, v) in page {
                let seq = (k.len() == prefix.len() + 8).then(|| keys::trailing_u64(&k)).flatten();
                match (seq, events.last()) {
                    (Some(seq), Some(&(prev, _))) if seq > prev => {}
                    (Some(_), None) => {}
                    _ => return Err(corrupt("event key", pid, eid)),
                }
                events.push((seq.expect("checked above"), Bytes::from(v)));
            }
            match (full, events.last()) {
                (true, Some(&(seq, _))) => start = keys::event(pid, eid, seq + 1),
                _ => break,
            }
        }
        Ok(Journal { snapshot, events })
    }

    pub fn read_value(&self, pid: &str, eid: &str) -> io::Result<Option<Bytes>> {
        Ok(self.kv.get(&keys::value(pid, eid))?.map(Bytes::from))
    }

    /// A CRDT entity's state record and the delta records after it.
    pub fn read_crdt(&self, pid: &str, eid: &str) -> io::Result<CrdtRecords> {
        let state = self.kv.get(&keys::crdt(pid, eid))?.map(Bytes::from);
        let prefix = keys::crdt_deltas_of(pid, eid);
        let mut deltas = Vec::new();
        loop {
            let start = keys::crdt_delta(pid, eid, deltas.len() as u64 + 1);
            let page = self.kv.scan(&prefix, &start, SCAN_STEP)?;
            let full = page.len() == SCAN_STEP;
            for (k, v) in page {
                // Numbered from 1 with no gap: any other key is corrupt.
                if k.len() != prefix.len() + 8 || keys::trailing_u64(&k) != Some(deltas.len() as u64 + 1) {
                    return Err(corrupt("CRDT delta key", pid, eid));
                }
                deltas.push(Bytes::from(v));
            }
            if !full {
                return Ok(CrdtRecords { state, deltas });
            }
        }
    }

    /// Applies a batch atomically for storage writer `writer`, provided
    /// every lease of `fence` is still this proxy's; its events get
    /// consecutive global offsets.
    ///
    /// Several proxies sharing one database take offsets from counters of
    /// their own, so a batch's tag-log entry may find its offset written by
    /// another proxy. That collision is harmless (nothing of the batch was
    /// written): the counter jumps past what the others wrote and the batch
    /// is tried again, a few times. An *event* already written is a real
    /// conflict (a second writer of one journal) and fails the batch.
    pub fn write(&self, writer: u16, fence: &[Fence], batch: &[Write], sync: bool) -> io::Result<()> {
        let mut attempt = 0;
        loop {
            match self.write_once(writer, fence, batch, sync) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < OFFSET_RETRIES && !self.any_event_written(batch)? => {
                    attempt += 1;
                    self.skip_taken_offsets(batch)?;
                }
                result => return result,
            }
        }
    }

    /// Whether another writer already stored one of the batch's events.
    fn any_event_written(&self, batch: &[Write]) -> io::Result<bool> {
        for write in batch {
            if let Write::Events { persistence_id: pid, entity_id: eid, first_sequence, events } = write {
                for i in 0..events.len() as u64 {
                    if self.kv.get(&keys::event(pid, eid, first_sequence + i))?.is_some() {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// Moves the offset counter past the tag-log entries other writers have
    /// stored beyond it, for every persistence id the batch appends to.
    fn skip_taken_offsets(&self, batch: &[Write]) -> io::Result<()> {
        let from = self.last_offset.load(Ordering::Relaxed);
        let mut highest = from;
        for write in batch {
            let Write::Events { persistence_id: pid, .. } = write else { continue };
            for _ in 0..OFFSET_PAGES {
                let page = self.kv.scan(&keys::tags_of(pid), &keys::tag(pid, highest + 1), SCAN_STEP)?;
                if let Some((k, _)) = page.last() {
                    highest = highest.max(keys::trailing_u64(k).ok_or_else(|| corrupt("tag key", pid, ""))?);
                }
                if page.len() < SCAN_STEP {
                    break;
                }
            }
        }
        let before = self.last_offset.fetch_max(highest, Ordering::Relaxed);
        if highest > before {
            // Written elsewhere: finished, as far as this proxy's readers go.
            self.committed.lock().unwrap_or_else(|p| p.into_inner()).finish(before + 1, highest);
        }
        Ok(())
    }

    fn write_once(&self, writer: u16, fence: &[Fence], batch: &[Write], sync: bool) -> io::Result<()> {
        let count: u64 = batch.iter().map(|w| if let Write::Events { events, .. } = w { events.len() as u64 } else { 0 }).sum();
        let first = self.last_offset.fetch_add(count, Ordering::Relaxed) + 1;
        let result = self.commit(writer, fence, batch, first, count, sync);
        if count > 0 {
            self.committed.lock().unwrap_or_else(|p| p.into_inner()).finish(first, first + count - 1);
            // A full channel already holds a wake-up; a closed one is a
            // watcher that went away.
            let mut watchers = self.tag_watchers.lock().unwrap_or_else(|p| p.into_inner());
            watchers.retain(|w| !matches!(w.try_send(()), Err(flume::TrySendError::Disconnected(_))));
        }
        result
    }

    /// A channel that receives a wake-up after batches with events commit,
    /// so tag-log readers need not poll while the log is quiet.
    pub fn watch_tags(&self) -> flume::Receiver<()> {
        let (tx, rx) = flume::bounded(1);
        self.tag_watchers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    /// Moves the tag-log counter past every offset another process has
    /// written (called when this proxy takes a shard over, so its events
    /// follow the previous owner's instead of colliding with them). The
    /// skipped offsets count as finished: they are committed, elsewhere.
    pub fn catch_up_offsets(&self) -> io::Result<()> {
        let stored = last_written_offset(self.kv.as_ref())?;
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.last_offset.fetch_max(stored, Ordering::Relaxed);
        if stored > before {
            committed.finish(before + 1, stored);
        }
        Ok(())
    }

    fn commit(&self, writer: u16, fence: &[Fence], batch: &[Write], first: u64, count: u64, sync: bool) -> io::Result<()> {
        let mut ops = Vec::with_capacity(batch.len() * 2 + 1);
        let mut offset = first;
        // One time for the whole batch: its events become durable together.
        let appended_us = (count > 0).then(now_us);
        for write in batch {
            match write {
                Write::Events { persistence_id: pid, entity_id: eid, first_sequence, events } => {
                    for (i, event) in events.iter().enumerate() {
                        let seq = first_sequence + i as u64;
                        ops.push(Op::Insert(keys::event(pid, eid, seq), event.to_vec()));
                        ops.push(Op::Insert(keys::tag(pid, offset), keys::tag_value(eid, seq, appended_us)));
                        offset += 1;
                    }
                }
                Write::Snapshot { persistence_id: pid, entity_id: eid, sequence, snapshot } => {
                    ops.push(Op::Put(keys::snapshot(pid, eid), keys::snapshot_value(*sequence, snapshot)));
                }
                Write::PutValue { persistence_id: pid, entity_id: eid, value } => {
                    ops.push(Op::Put(keys::value(pid, eid), value.to_vec()));
                }
                Write::DeleteValue { persistence_id: pid, entity_id: eid } => ops.push(Op::Delete(keys::value(pid, eid))),
                Write::ConsumerOffset { persistence_id: pid, group, offset } => {
                    ops.push(Op::Put(keys::consumer_offset(pid, group), offset.to_be_bytes().to_vec()));
                }
                Write::CrdtState { persistence_id: pid, entity_id: eid, bytes, folded } => {
                    ops.push(Op::Put(keys::crdt(pid, eid), bytes.to_vec()));
                    ops.extend((1..=*folded).map(|n| Op::Delete(keys::crdt_delta(pid, eid, n))));
                }
                Write::CrdtDelta { persistence_id: pid, entity_id: eid, number, bytes } => {
                    ops.push(Op::Put(keys::crdt_delta(pid, eid, *number), bytes.to_vec()));
                }
            }
        }
        if count > 0 {
            // A writer's ranges only grow, so its mark is its latest range's end.
            ops.push(Op::Put(keys::writer_offset(writer), (first + count - 1).to_be_bytes().to_vec()));
        }
        if let Some(guard) = &self.guard {
            let incoming = ops.iter().map(|op| match op {
                Op::Put(k, v) | Op::Insert(k, v) => k.len() + v.len(),
                Op::Delete(k) => k.len(),
            });
            guard.check(incoming.sum::<usize>() as u64)?;
        }
        self.kv.commit(ops, fence, sync)
    }

    /// Events of one persistence id from `from_offset` on, in offset order.
    /// Only offsets whose batches (and all before them) have finished are
    /// returned.
    pub fn events_by_tag(&self, pid: &str, from_offset: u64, limit: usize) -> io::Result<Vec<TaggedEvent>> {
        let through = self.committed_through();
        let mut out = Vec::new();
        for (k, v) in self.kv.scan(&keys::tags_of(pid), &keys::tag(pid, from_offset), limit)? {
            let offset = keys::trailing_u64(&k).ok_or_else(|| corrupt("tag key", pid, ""))?;
            if offset > through {
                break;
            }
            let tag = keys::parse_tag_value(&v).ok_or_else(|| corrupt("tag value", pid, ""))?;
            let event = self.kv.get(&keys::event(pid, &tag.entity_id, tag.sequence))?.ok_or_else(|| corrupt("tagged event", pid, &tag.entity_id))?;
            out.push(TaggedEvent { offset, entity_id: tag.entity_id, sequence: tag.sequence, event: event.into(), appended_us: tag.appended_us });
        }
        Ok(out)
    }

    /// Where a consumer group stands in a persistence id's tag log (0: it
    /// has processed nothing yet).
    pub fn consumer_offset(&self, pid: &str, group: &str) -> io::Result<u64> {
        match self.kv.get(&keys::consumer_offset(pid, group))? {
            None => Ok(0),
            Some(v) => keys::trailing_u64(&v).filter(|_| v.len() == 8).ok_or_else(|| corrupt("consumer offset", pid, group)),
        }
    }

    /// How many committed events of `pid` lie after `after`, counted up to
    /// `cap` (a consumer's lag; bounded so a far-behind consumer costs a
    /// bounded scan).
    pub fn count_tagged(&self, pid: &str, after: u64, cap: usize) -> io::Result<usize> {
        let through = self.committed_through();
        let (prefix, mut start, mut n) = (keys::tags_of(pid), keys::tag(pid, after.saturating_add(1)), 0);
        while n < cap {
            let page = self.kv.scan(&prefix, &start, SCAN_STEP.min(cap - n))?;
            let full = page.len() == SCAN_STEP.min(cap - n);
            let mut last = None;
            for (k, _) in &page {
                let offset = keys::trailing_u64(k).ok_or_else(|| corrupt("tag key", pid, ""))?;
                if offset > through {
                    return Ok(n);
                }
                n += 1;
                last = Some(offset);
            }
            match (full, last) {
                (true, Some(offset)) => start = keys::tag(pid, offset + 1),
                _ => break,
            }
        }
        Ok(n)
    }

    fn committed_through(&self) -> u64 {
        self.committed.lock().unwrap_or_else(|p| p.into_inner()).through
    }
}

/// The highest tag-log offset any storage writer has marked as written.
fn last_written_offset(kv: &dyn Store) -> io::Result<u64> {
    let mut last = 0;
    for (k, v) in kv.scan(keys::OFFSETS, keys::OFFSETS, usize::MAX)? {
        last = last.max(keys::trailing_u64(&v).ok_or_else(|| corrupt("offset mark", "", &format!("{k:?}")))?);
    }
    Ok(last)
}

/// Wall-clock microseconds since the Unix epoch (0 if the clock is before it).
fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn corrupt(what: &str, pid: &str, eid: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("corrupt {what} for {pid:?}/{eid:?}"))
}

#[cfg(test)]
mod tests {
    use super::Committed;

    #[test]
    fn the_watermark_waits_for_every_earlier_batch() {
        let mut c = Committed::default();
        c.finish(4, 6);
        assert_eq!(c.through, 0, "1..=3 still in flight");
        c.finish(1, 3);
        assert_eq!(c.through, 6);
        c.finish(9, 9);
        c.finish(7, 8);
        assert_eq!((c.through, c.ahead.len()), (9, 0));
    }
}
