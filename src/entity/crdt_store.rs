//! How a CRDT entity's state is kept in storage: a whole-state record and,
//! after it, a log of the deltas committed since. Writing only the delta
//! makes a command cost the size of its change, not of the whole state (an
//! ORSet add no longer rewrites every element). Once the log would outweigh
//! the state record, or holds [`MAX_LOGGED`] records, the next commit writes
//! the whole state instead and drops the log in the same batch, so the log
//! costs at most about the state's bytes again at activation, and each
//! delta is written once and deleted once. Small states (counters, flags)
//! are always outweighed by one delta record and keep being written whole.

use bytes::Bytes;

use crate::crdt::{AppliedDeltas, Crdt, CrdtError};
use crate::store::{CrdtRecords, Write};

/// Most delta records an activation replays: beyond their bytes, each is
/// one stored entry and one decode.
const MAX_LOGGED: u64 = 4096;

/// A CRDT entity's state as storage holds it, decoded: what activation
/// reads and the hot cache keeps between activations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Durable {
    /// `None` until the first delta says what type it is.
    pub crdt: Option<Crdt>,
    /// Delta records after the state record, numbered `1..=logged`.
    logged: u64,
    /// Their bytes.
    log_bytes: usize,
    /// The state record's bytes (0: none yet).
    state_bytes: usize,
}

impl Durable {
    /// The state that `records` hold; `None` for a deleted entity.
    pub fn load(records: CrdtRecords) -> Result<Option<Durable>, CrdtError> {
        let crdt = match records.state.as_deref() {
            Some([]) => return Ok(None),
            Some(bytes) => Some(Crdt::decode(bytes)?),
            None => None,
        };
        let mut durable = Durable {
            crdt,
            logged: records.deltas.len() as u64,
            log_bytes: records.deltas.iter().map(Bytes::len).sum(),
            state_bytes: records.state.as_ref().map_or(0, Bytes::len),
        };
        for record in &records.deltas {
            Crdt::replay(&mut durable.crdt, record)?;
        }
        Ok(Some(durable))
    }

    /// Roughly the bytes storage holds for it (the hot cache's weight).
    pub fn size(&self) -> usize {
        self.state_bytes + self.log_bytes
    }

    /// The write that makes `applied` (already applied to [`Self::crdt`])
    /// durable: one more delta record, or the whole state replacing state
    /// record and log. The bookkeeping assumes the write commits; an entity
    /// whose commit fails restarts from storage.
    pub fn write(&mut self, persistence_id: &str, entity_id: &str, applied: &AppliedDeltas) -> Write {
        let record = applied.to_bytes();
        let fold = self.log_bytes + record.len() >= self.state_bytes || self.logged >= MAX_LOGGED;
        match &self.crdt {
            Some(crdt) if fold => {
                let bytes = Bytes::from(crdt.encode());
                self.state_bytes = bytes.len();
                self.replaced(persistence_id, entity_id, bytes)
            }
            _ => {
                self.logged += 1;
                self.log_bytes += record.len();
                Write::CrdtDelta {
                    persistence_id: persistence_id.to_owned(),
                    entity_id: entity_id.to_owned(),
                    number: self.logged,
                    bytes: Bytes::from(record),
                }
            }
        }
    }

    /// The write that deletes the entity: a tombstone, the log dropped.
    pub fn tombstone(&mut self, persistence_id: &str, entity_id: &str) -> Write {
        self.crdt = None;
        self.state_bytes = 0;
        self.replaced(persistence_id, entity_id, Bytes::new())
    }

    fn replaced(&mut self, persistence_id: &str, entity_id: &str, bytes: Bytes) -> Write {
        let folded = std::mem::take(&mut self.logged);
        self.log_bytes = 0;
        Write::CrdtState { persistence_id: persistence_id.to_owned(), entity_id: entity_id.to_owned(), bytes, folded }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::{ReplicaId, Writer};
    use crate::proto::cloudstate::crdt::{crdt_delta::Delta, CrdtDelta, OrSetDelta};
    use crate::proto::google::protobuf::Any;
    use crate::store::{EntityStore, MemoryStore};

    fn add(element: &str, removed: Option<&str>) -> CrdtDelta {
        let any = |s: &str| Any { type_url: "p.cloudstate.io/string".into(), value: Bytes::from([&[10, s.len() as u8][..], s.as_bytes()].concat()) };
        CrdtDelta {
            delta: Some(Delta::Orset(OrSetDelta { cleared: false, removed: removed.map(any).into_iter().collect(), added: vec![any(element)] })),
        }
    }

    /// Applies `delta` as the entity does and commits what `durable` asks.
    fn commit(store: &EntityStore, durable: &mut Durable, delta: &CrdtDelta, now_ms: i64) -> Write {
        let writer = Writer { replica: ReplicaId(0), now_ms };
        match &mut durable.crdt {
            Some(crdt) => crdt.apply(delta, writer).unwrap(),
            None => durable.crdt = Some(Crdt::from_delta(delta, writer).unwrap()),
        }
        let mut applied = AppliedDeltas::default();
        applied.push(delta, writer);
        let write = durable.write("sets", "s", &applied);
        store.write(0, &[], std::slice::from_ref(&write), true).unwrap();
        write
    }

    #[test]
    fn state_and_log_read_back_exactly_across_many_folds() {
        let store = EntityStore::open(Box::new(MemoryStore::default()), None).unwrap();
        let mut durable = Durable::default();
        let (mut folds, mut logged) = (0, 0);
        for i in 0..2000 {
            let removed = (i % 7 == 0).then(|| format!("e{}", i / 2));
            match commit(&store, &mut durable, &add(&format!("e{i}"), removed.as_deref()), i) {
                Write::CrdtState { .. } => folds += 1,
                _ => logged += 1,
            }
            if i % 333 == 0 || i == 1999 {
                let loaded = Durable::load(store.read_crdt("sets", "s").unwrap()).unwrap().unwrap();
                assert_eq!(loaded, durable, "after {} deltas", i + 1);
            }
        }
        assert!(folds >= 5 && logged > 1000, "folds {folds}, delta records {logged}: the log takes most adds");
        assert!(durable.logged > 0, "ends with deltas after the state record");
    }

    #[test]
    fn small_states_are_written_whole_and_a_tombstone_drops_the_log() {
        let store = EntityStore::open(Box::new(MemoryStore::default()), None).unwrap();
        let mut durable = Durable::default();
        assert!(matches!(commit(&store, &mut durable, &add("a", None), 1), Write::CrdtState { folded: 0, .. }), "first: no state to follow");
        for i in 0..40 {
            commit(&store, &mut durable, &add(&format!("x{i}"), None), 2 + i);
        }
        assert!(durable.logged > 0);
        let write = durable.tombstone("sets", "s");
        store.write(0, &[], std::slice::from_ref(&write), true).unwrap();
        let records = store.read_crdt("sets", "s").unwrap();
        assert!(records.deltas.is_empty(), "the log went with the tombstone");
        assert_eq!(Durable::load(records).unwrap(), None, "deleted");
    }

    #[test]
    fn last_writer_wins_registers_replay_with_their_recorded_clock() {
        use crate::proto::cloudstate::crdt::LwwRegisterDelta;
        // Written whole when replayed live, so the log is built by hand:
        // later deltas with earlier clocks must lose on replay as they did.
        let (mut live, mut deltas) = (None::<Crdt>, Vec::new());
        for (i, now_ms) in [(0u8, 50), (1, 10), (2, 30)] {
            let value = Any { type_url: "p.cloudstate.io/bytes".into(), value: Bytes::from(vec![10, 1, i]) };
            let delta = CrdtDelta { delta: Some(Delta::Lwwregister(LwwRegisterDelta { value: Some(value), clock: 0, custom_clock_value: 0 })) };
            let writer = Writer { replica: ReplicaId(0), now_ms };
            match &mut live {
                Some(crdt) => crdt.apply(&delta, writer).unwrap(),
                None => live = Some(Crdt::from_delta(&delta, writer).unwrap()),
            }
            let mut applied = AppliedDeltas::default();
            applied.push(&delta, writer);
            deltas.push(Bytes::from(applied.to_bytes()));
        }
        let loaded = Durable::load(CrdtRecords { state: None, deltas }).unwrap().unwrap();
        assert_eq!(loaded.crdt, live);
    }
}
