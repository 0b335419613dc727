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

use super::{keys, migrate, CrdtRecords, Fence, Journal, Numbering, Op, Store, TaggedEvent, Write};

/// Upper bound on events read back in one activation scan step.
const SCAN_STEP: usize = 4096;

/// Entity state over a key-value [`Store`].
///
/// The tag log (global event offsets) is numbered by whoever can number it
/// without a gap or a collision ([`Numbering`]): a store that several
/// proxies share numbers each batch in its own transaction; otherwise this
/// process does, from [`LocalOffsets`].
pub struct EntityStore {
    kv: Box<dyn Store>,
    /// `None` when the store numbers the tag log.
    local: Option<LocalOffsets>,
    /// Woken (without blocking) whenever the tag log's watermark advances.
    tag_watchers: Mutex<Vec<flume::Sender<()>>>,
    guard: Option<SpaceGuard>,
}

/// The tag-log counter of a store this process alone writes.
///
/// Offsets come from an atomic counter, and each storage writer commits on
/// its own, with no lock across the commit: cores' batches reach RocksDB
/// together and share its group commit. Batches may therefore finish out
/// of offset order; [`Committed`] tracks the offset below which every batch
/// has finished, and the tag log is read only up to it, so a reader never
/// skips an offset that is still being written.
struct LocalOffsets {
    last: AtomicU64,
    committed: Mutex<Committed>,
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
        let local = match kv.numbering() {
            Numbering::Store => None,
            Numbering::Process => {
                let last = last_written_offset(kv.as_ref())?;
                Some(LocalOffsets { last: AtomicU64::new(last), committed: Mutex::new(Committed { through: last, ahead: BTreeMap::new() }) })
            }
        };
        Ok(EntityStore { kv, local, tag_watchers: Mutex::default(), guard })
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
    /// consecutive tag-log offsets. An event already written fails the
    /// whole batch ([`io::ErrorKind::AlreadyExists`]): a second writer of
    /// one journal.
    pub fn write(&self, writer: u16, fence: &[Fence], batch: &[Write], sync: bool) -> io::Result<()> {
        let count: u64 = batch.iter().map(|w| if let Write::Events { events, .. } = w { events.len() as u64 } else { 0 }).sum();
        let result = match &self.local {
            None => self.commit(writer, fence, batch, None, count, sync),
            Some(local) => {
                let first = local.last.fetch_add(count, Ordering::Relaxed) + 1;
                let result = self.commit(writer, fence, batch, Some(first), count, sync);
                if count > 0 {
                    local.committed.lock().unwrap_or_else(|p| p.into_inner()).finish(first, first + count - 1);
                }
                result
            }
        };
        if count > 0 {
            // A full channel already holds a wake-up; a closed one is a
            // watcher that went away.
            let mut watchers = self.tag_watchers.lock().unwrap_or_else(|p| p.into_inner());
            watchers.retain(|w| !matches!(w.try_send(()), Err(flume::TrySendError::Disconnected(_))));
        }
        result
    }

    /// A channel that receives a wake-up after batches with events commit
    /// here, so tag-log readers need not poll while the log is quiet
    /// (another proxy's commits wake nobody here: readers also poll).
    pub fn watch_tags(&self) -> flume::Receiver<()> {
        let (tx, rx) = flume::bounded(1);
        self.tag_watchers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    /// Writes `batch` with its `count` events, their tag-log entries
    /// numbered from `first` (`None`: by the store).
    fn commit(&self, writer: u16, fence: &[Fence], batch: &[Write], first: Option<u64>, count: u64, sync: bool) -> io::Result<()> {
        let mut ops = Vec::with_capacity(batch.len() * 2 + 1);
        let mut next = first;
        // One time for the whole batch: its events become durable together.
        let appended_us = (count > 0).then(now_us);
        for write in batch {
            match write {
                Write::Events { persistence_id: pid, entity_id: eid, first_sequence, events } => {
                    for (i, event) in events.iter().enumerate() {
                        let seq = first_sequence + i as u64;
                        ops.push(Op::Insert(keys::event(pid, eid, seq), event.to_vec()));
                        let tag = keys::tag_value(eid, seq, appended_us);
                        ops.push(match next {
                            Some(offset) => Op::Insert(keys::tag(pid, offset), tag),
                            None => Op::Tag(keys::tags_of(pid), tag),
                        });
                        next = next.map(|offset| offset + 1);
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
        if let (Some(first), true) = (first, count > 0) {
            // A writer's ranges only grow, so its mark is its latest range's end.
            ops.push(Op::Put(keys::writer_offset(writer), (first + count - 1).to_be_bytes().to_vec()));
        }
        if let Some(guard) = &self.guard {
            let incoming = ops.iter().map(|op| match op {
                Op::Put(k, v) | Op::Insert(k, v) => k.len() + v.len(),
                Op::Tag(prefix, v) => prefix.len() + 8 + v.len(),
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

    /// The offset through which the tag log may be read: every batch
    /// numbered up to it has finished. A store that numbers the tag log
    /// makes an offset visible only after every earlier one.
    fn committed_through(&self) -> u64 {
        self.local.as_ref().map_or(u64::MAX, |l| l.committed.lock().unwrap_or_else(|p| p.into_inner()).through)
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
