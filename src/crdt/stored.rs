//! The storage encoding of a whole CRDT: a protobuf message of our own,
//! because `CrdtDelta` cannot carry the replica bookkeeping (counts per
//! replica, ORSet/ORMap dots and version vectors, LWW timestamps) that a
//! later merge with other nodes needs. Fields are only ever added, so old
//! stored states keep decoding.

use prost::Message;

use super::dots::StoredDottedKeys;
use super::error::CrdtError;
use super::gcounter::{GCounter, StoredGCounter};
use super::gset::{GSet, StoredGSet};
use super::lww_register::{LwwRegister, StoredLwwRegister};
use super::ormap::{OrMap, StoredOrMap};
use super::orset::OrSet;
use super::pncounter::{PnCounter, StoredPnCounter};
use super::vote::{StoredVote, Vote};
use super::replica::{ReplicaId, Writer};
use super::{Crdt, Flag};
use crate::proto::cloudstate::crdt::CrdtDelta;

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredCrdt {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    pub kind: Option<Kind>,
}

/// Tags follow `CrdtDelta`'s oneof.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(message, tag = "1")]
    GCounter(StoredGCounter),
    #[prost(message, tag = "2")]
    PnCounter(StoredPnCounter),
    #[prost(message, tag = "3")]
    GSet(StoredGSet),
    #[prost(message, tag = "4")]
    OrSet(StoredDottedKeys),
    #[prost(message, tag = "5")]
    LwwRegister(StoredLwwRegister),
    #[prost(bool, tag = "6")]
    Flag(bool),
    #[prost(message, tag = "7")]
    OrMap(StoredOrMap),
    #[prost(message, tag = "8")]
    Vote(StoredVote),
}

/// One delta as a delta-log record keeps it: with the writer it was
/// applied by, because applying is deterministic given state, delta and
/// writer (LWW clocks read the writer's time).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredDelta {
    #[prost(uint64, tag = "1")]
    pub replica: u64,
    #[prost(int64, tag = "2")]
    pub now_ms: i64,
    #[prost(message, optional, tag = "3")]
    pub delta: Option<CrdtDelta>,
}

/// The deltas one commit applied, in order: one record of a CRDT entity's
/// delta log. Replayed onto the state before them ([`Crdt::replay`]), they
/// give the state after.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AppliedDeltas {
    #[prost(message, repeated, tag = "1")]
    deltas: Vec<StoredDelta>,
}

impl AppliedDeltas {
    /// Notes that `delta` was applied by `writer`.
    pub fn push(&mut self, delta: &CrdtDelta, writer: Writer) {
        self.deltas.push(StoredDelta { replica: writer.replica.0, now_ms: writer.now_ms, delta: Some(delta.clone()) });
    }

    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

impl Crdt {
    /// Applies one delta-log record to `state` (`None`: nothing yet); a
    /// record that does not decode or apply is [`CrdtError::Corrupt`].
    pub fn replay(state: &mut Option<Crdt>, record: &[u8]) -> Result<(), CrdtError> {
        let corrupt = |e: &dyn std::fmt::Display| CrdtError::Corrupt(format!("delta record: {e}"));
        let record = AppliedDeltas::decode(record).map_err(|e| corrupt(&e))?;
        for stored in &record.deltas {
            let delta = stored.delta.as_ref().ok_or_else(|| corrupt(&"no delta"))?;
            let writer = Writer { replica: ReplicaId(stored.replica), now_ms: stored.now_ms };
            match state {
                Some(crdt) => crdt.apply(delta, writer).map_err(|e| corrupt(&e))?,
                None => *state = Some(Crdt::from_delta(delta, writer).map_err(|e| corrupt(&e))?),
            }
        }
        Ok(())
    }

    /// The full state as protobuf bytes for the store.
    pub fn encode(&self) -> Vec<u8> {
        self.to_stored().encode_to_vec()
    }

    /// Reads back what [`Crdt::encode`] wrote; anything else is
    /// [`CrdtError::Corrupt`].
    pub fn decode(bytes: &[u8]) -> Result<Crdt, CrdtError> {
        let stored = StoredCrdt::decode(bytes).map_err(|e| CrdtError::Corrupt(e.to_string()))?;
        Crdt::from_stored(&stored)
    }

    pub(super) fn to_stored(&self) -> StoredCrdt {
        let kind = match self {
            Crdt::GCounter(c) => Kind::GCounter(c.to_stored()),
            Crdt::PnCounter(c) => Kind::PnCounter(c.to_stored()),
            Crdt::GSet(s) => Kind::GSet(s.to_stored()),
            Crdt::OrSet(s) => Kind::OrSet(s.to_stored()),
            Crdt::LwwRegister(r) => Kind::LwwRegister(r.to_stored()),
            Crdt::Flag(f) => Kind::Flag(f.to_stored()),
            Crdt::OrMap(m) => Kind::OrMap(m.to_stored()),
            Crdt::Vote(v) => Kind::Vote(v.to_stored()),
        };
        StoredCrdt { kind: Some(kind) }
    }

    pub(super) fn from_stored(stored: &StoredCrdt) -> Result<Crdt, CrdtError> {
        Ok(match stored.kind.as_ref().ok_or_else(|| CrdtError::Corrupt("no CRDT type".into()))? {
            Kind::GCounter(c) => Crdt::GCounter(GCounter::from_stored(c)?),
            Kind::PnCounter(c) => Crdt::PnCounter(PnCounter::from_stored(c)?),
            Kind::GSet(s) => Crdt::GSet(GSet::from_stored(s)?),
            Kind::OrSet(s) => Crdt::OrSet(OrSet::from_stored(s)?),
            Kind::LwwRegister(r) => Crdt::LwwRegister(LwwRegister::from_stored(r)),
            Kind::Flag(f) => Crdt::Flag(Flag::from_stored(*f)),
            Kind::OrMap(m) => Crdt::OrMap(OrMap::from_stored(m)?),
            Kind::Vote(v) => Crdt::Vote(Vote::from_stored(v)?),
        })
    }
}
