//! Journal, snapshot and value semantics on top of any [`Store`].

use std::{io, path::PathBuf, sync::Mutex};

use bytes::Bytes;

use super::{keys, Journal, Op, Store, TaggedEvent, Write};

/// Upper bound on events read back in one activation scan step.
const SCAN_STEP: usize = 4096;

/// Entity state over a key-value [`Store`]. Global event offsets are handed
/// out under a lock held across the commit, so offsets appear in order.
pub struct EntityStore {
    kv: Box<dyn Store>,
    last_offset: Mutex<u64>,
    guard: Option<SpaceGuard>,
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
    pub fn open(kv: Box<dyn Store>, guard: Option<SpaceGuard>) -> io::Result<EntityStore> {
        let last = kv.get(keys::LAST_OFFSET)?.and_then(|v| keys::trailing_u64(&v)).unwrap_or(0);
        Ok(EntityStore { kv, last_offset: Mutex::new(last), guard })
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
        let mut events = Vec::new();
        loop {
            let page = self.kv.scan(&prefix, &start, SCAN_STEP)?;
            let full = page.len() == SCAN_STEP;
            for (k, v) in page {
                let seq = keys::trailing_u64(&k).ok_or_else(|| corrupt("event key", pid, eid))?;
                events.push((seq, Bytes::from(v)));
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

    /// Applies a batch atomically; events get global offsets in order.
    pub fn write(&self, batch: &[Write], sync: bool) -> io::Result<()> {
        let mut ops = Vec::with_capacity(batch.len() * 2);
        let mut last_offset = self.last_offset.lock().unwrap_or_else(|p| p.into_inner());
        let mut offset = *last_offset;
        for write in batch {
            match write {
                Write::Events { persistence_id: pid, entity_id: eid, first_sequence, events } => {
                    for (i, event) in events.iter().enumerate() {
                        let seq = first_sequence + i as u64;
                        offset += 1;
                        ops.push(Op::Put(keys::event(pid, eid, seq), event.to_vec()));
                        ops.push(Op::Put(keys::tag(pid, offset), keys::tag_value(eid, seq)));
                    }
                }
                Write::Snapshot { persistence_id: pid, entity_id: eid, sequence, snapshot } => {
                    ops.push(Op::Put(keys::snapshot(pid, eid), keys::snapshot_value(*sequence, snapshot)));
                }
                Write::PutValue { persistence_id: pid, entity_id: eid, value } => {
                    ops.push(Op::Put(keys::value(pid, eid), value.to_vec()));
                }
                Write::DeleteValue { persistence_id: pid, entity_id: eid } => ops.push(Op::Delete(keys::value(pid, eid))),
            }
        }
        if offset != *last_offset {
            ops.push(Op::Put(keys::LAST_OFFSET.to_vec(), offset.to_be_bytes().to_vec()));
        }
        if let Some(guard) = &self.guard {
            let incoming = ops.iter().map(|op| match op {
                Op::Put(k, v) => k.len() + v.len(),
                Op::Delete(k) => k.len(),
            });
            guard.check(incoming.sum::<usize>() as u64)?;
        }
        self.kv.commit(ops, sync)?;
        *last_offset = offset;
        Ok(())
    }

    /// Events of one persistence id from `from_offset` on, in offset order.
    pub fn events_by_tag(&self, pid: &str, from_offset: u64, limit: usize) -> io::Result<Vec<TaggedEvent>> {
        let mut out = Vec::new();
        for (k, v) in self.kv.scan(&keys::tags_of(pid), &keys::tag(pid, from_offset), limit)? {
            let offset = keys::trailing_u64(&k).ok_or_else(|| corrupt("tag key", pid, ""))?;
            let (entity_id, sequence) = keys::parse_tag_value(&v).ok_or_else(|| corrupt("tag value", pid, ""))?;
            let event = self.kv.get(&keys::event(pid, &entity_id, sequence))?.ok_or_else(|| corrupt("tagged event", pid, &entity_id))?;
            out.push(TaggedEvent { offset, entity_id, sequence, event: event.into() });
        }
        Ok(out)
    }
}

fn corrupt(what: &str, pid: &str, eid: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("corrupt {what} for {pid}/{eid}"))
}
