//! The CRDTs the proxy owns for `cloudstate.crdt.Crdt` entities (spec §5.4).
//!
//! The user function holds only a value and sends deltas; the proxy keeps
//! the real CRDT: it applies each delta ([`Crdt::apply`]), sends the whole
//! value as the `init` delta ([`Crdt::to_initial_delta`]), persists it
//! ([`Crdt::encode`], [`Crdt::decode`]) and, once there are several nodes,
//! joins replicas ([`Crdt::merge`]). One module per type; [`Element`] gives
//! set elements and map keys their identity (spec §5.6).
//!
//! Every state carries its per-replica bookkeeping (counts, dots, version
//! vectors) even on one node, so stored states from a single-node proxy can
//! later be merged with no migration.

mod dots;
mod element;
mod error;
mod flag;
mod gcounter;
mod gset;
mod lww_register;
mod ormap;
mod orset;
mod pncounter;
mod replica;
mod stored;
mod vote;

#[cfg(test)]
mod laws;
#[cfg(test)]
mod tests;

pub use element::Element;
pub use error::CrdtError;
pub use replica::{ReplicaId, Writer};
pub use stored::AppliedDeltas;

pub use flag::Flag;
pub use gcounter::GCounter;
pub use gset::GSet;
pub use lww_register::LwwRegister;
pub use ormap::OrMap;
pub use orset::OrSet;
pub use pncounter::PnCounter;
pub use vote::Vote;

use crate::proto::cloudstate::crdt::{crdt_delta::Delta, CrdtDelta};

/// One CRDT's full state, of any of the eight Cloudstate types.
#[derive(Clone, Debug, PartialEq)]
pub enum Crdt {
    GCounter(GCounter),
    PnCounter(PnCounter),
    GSet(GSet),
    OrSet(OrSet),
    LwwRegister(LwwRegister),
    Flag(Flag),
    OrMap(OrMap),
    Vote(Vote),
}

/// Cloudstate's type names, in `CrdtDelta`'s oneof order.
const KINDS: [&str; 8] = ["GCounter", "PNCounter", "GSet", "ORSet", "LWWRegister", "Flag", "ORMap", "Vote"];

/// The position in [`KINDS`] of the type a delta changes.
fn delta_rank(delta: &Delta) -> usize {
    match delta {
        Delta::Gcounter(_) => 0,
        Delta::Pncounter(_) => 1,
        Delta::Gset(_) => 2,
        Delta::Orset(_) => 3,
        Delta::Lwwregister(_) => 4,
        Delta::Flag(_) => 5,
        Delta::Ormap(_) => 6,
        Delta::Vote(_) => 7,
    }
}

impl Crdt {
    /// The empty CRDT of the type `delta` changes: a new entity has no
    /// state, and its first delta says what it is.
    pub fn new_for(delta: &CrdtDelta) -> Result<Crdt, CrdtError> {
        Ok(match delta.delta.as_ref().ok_or(CrdtError::NoDelta)? {
            Delta::Gcounter(_) => Crdt::GCounter(GCounter::default()),
            Delta::Pncounter(_) => Crdt::PnCounter(PnCounter::default()),
            Delta::Gset(_) => Crdt::GSet(GSet::default()),
            Delta::Orset(_) => Crdt::OrSet(OrSet::default()),
            Delta::Lwwregister(_) => Crdt::LwwRegister(LwwRegister::default()),
            Delta::Flag(_) => Crdt::Flag(Flag::default()),
            Delta::Ormap(_) => Crdt::OrMap(OrMap::default()),
            Delta::Vote(_) => Crdt::Vote(Vote::default()),
        })
    }

    /// A new CRDT holding the user function's first delta.
    pub fn from_delta(delta: &CrdtDelta, writer: Writer) -> Result<Crdt, CrdtError> {
        let mut crdt = Crdt::new_for(delta)?;
        crdt.apply(delta, writer)?;
        Ok(crdt)
    }

    /// The Cloudstate name of this CRDT's type.
    pub fn kind(&self) -> &'static str {
        KINDS[self.rank()]
    }

    /// Applies a delta from the user function, written by `writer`. On error
    /// the state is unchanged, so the command can fail and the entity go on.
    pub fn apply(&mut self, delta: &CrdtDelta, writer: Writer) -> Result<(), CrdtError> {
        let d = delta.delta.as_ref().ok_or(CrdtError::NoDelta)?;
        match (self, d) {
            (Crdt::GCounter(c), Delta::Gcounter(d)) => c.apply(d, writer.replica),
            (Crdt::PnCounter(c), Delta::Pncounter(d)) => c.apply(d, writer.replica),
            (Crdt::GSet(s), Delta::Gset(d)) => s.apply(d),
            (Crdt::OrSet(s), Delta::Orset(d)) => s.apply(d, writer.replica),
            (Crdt::LwwRegister(r), Delta::Lwwregister(d)) => r.apply(d, writer),
            (Crdt::Flag(f), Delta::Flag(d)) => {
                f.apply(d);
                Ok(())
            }
            (Crdt::OrMap(m), Delta::Ormap(d)) => m.apply(d, writer),
            (Crdt::Vote(v), Delta::Vote(d)) => {
                v.apply(d, writer.replica);
                Ok(())
            }
            (crdt, d) => Err(CrdtError::WrongType { crdt: crdt.kind(), delta: KINDS[delta_rank(d)] }),
        }
    }

    /// The whole value as the delta `init` carries (our `crdt.proto` has no
    /// state messages since Cloudstate #479), as seen from `replica` (whose
    /// own vote a Vote reports).
    pub fn to_initial_delta(&self, replica: ReplicaId) -> CrdtDelta {
        let delta = match self {
            Crdt::GCounter(c) => Delta::Gcounter(c.to_delta()),
            Crdt::PnCounter(c) => Delta::Pncounter(c.to_delta()),
            Crdt::GSet(s) => Delta::Gset(s.to_delta()),
            Crdt::OrSet(s) => Delta::Orset(s.to_delta()),
            Crdt::LwwRegister(r) => Delta::Lwwregister(r.to_delta()),
            Crdt::Flag(f) => Delta::Flag(f.to_delta()),
            Crdt::OrMap(m) => Delta::Ormap(m.to_delta(replica)),
            Crdt::Vote(v) => Delta::Vote(v.to_delta(replica)),
        };
        CrdtDelta { delta: Some(delta) }
    }

    /// Joins `other` into this state: commutative, associative, idempotent.
    /// States of different types (only possible for an ORMap key written
    /// with different types on different nodes) resolve to the type later in
    /// `CrdtDelta`'s field order, which keeps the join lawful.
    pub fn merge(&mut self, other: &Crdt) {
        match (&mut *self, other) {
            (Crdt::GCounter(a), Crdt::GCounter(b)) => a.merge(b),
            (Crdt::PnCounter(a), Crdt::PnCounter(b)) => a.merge(b),
            (Crdt::GSet(a), Crdt::GSet(b)) => a.merge(b),
            (Crdt::OrSet(a), Crdt::OrSet(b)) => a.merge(b),
            (Crdt::LwwRegister(a), Crdt::LwwRegister(b)) => a.merge(b),
            (Crdt::Flag(a), Crdt::Flag(b)) => a.merge(b),
            (Crdt::OrMap(a), Crdt::OrMap(b)) => a.merge(b),
            (Crdt::Vote(a), Crdt::Vote(b)) => a.merge(b),
            (mine, theirs) => {
                if theirs.rank() > mine.rank() {
                    *mine = theirs.clone();
                }
            }
        }
    }

    /// The position in [`KINDS`] of this CRDT's type.
    fn rank(&self) -> usize {
        match self {
            Crdt::GCounter(_) => 0,
            Crdt::PnCounter(_) => 1,
            Crdt::GSet(_) => 2,
            Crdt::OrSet(_) => 3,
            Crdt::LwwRegister(_) => 4,
            Crdt::Flag(_) => 5,
            Crdt::OrMap(_) => 6,
            Crdt::Vote(_) => 7,
        }
    }
}
