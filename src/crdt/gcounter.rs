//! Grow-only counter: one count per replica, value = their sum.

use std::collections::BTreeMap;

use super::error::CrdtError;
use super::replica::{self, ReplicaId, StoredCount};
use crate::proto::cloudstate::crdt::GCounterDelta;

/// A grow-only counter (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GCounter {
    counts: BTreeMap<ReplicaId, u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredGCounter {
    #[prost(message, repeated, tag = "1")]
    pub counts: Vec<StoredCount>,
}

impl GCounter {
    /// The sum; saturates only for merged states no single writer could build.
    pub fn value(&self) -> u64 {
        self.counts.values().fold(0u64, |sum, c| sum.saturating_add(*c))
    }

    pub fn apply(&mut self, delta: &GCounterDelta, replica: ReplicaId) -> Result<(), CrdtError> {
        if delta.increment > i64::MAX as u64 {
            return Err(CrdtError::GCounterDecrement(delta.increment));
        }
        self.increment(replica, delta.increment, "GCounter")
    }

    /// Adds `by` to `replica`'s count, refusing a sum that would overflow
    /// (`kind` names the CRDT in the error, as PNCounter shares this).
    pub fn increment(&mut self, replica: ReplicaId, by: u64, kind: &'static str) -> Result<(), CrdtError> {
        let total = self.counts.values().try_fold(by, |sum, c| sum.checked_add(*c));
        if total.is_none() {
            return Err(CrdtError::Overflow(kind));
        }
        // Each count is at most the total, so this cannot overflow.
        *self.counts.entry(replica).or_default() += by;
        Ok(())
    }

    pub fn to_delta(&self) -> GCounterDelta {
        GCounterDelta { increment: self.value() }
    }

    pub fn merge(&mut self, other: &GCounter) {
        replica::merge_max(&mut self.counts, &other.counts);
    }

    pub fn to_stored(&self) -> StoredGCounter {
        StoredGCounter { counts: replica::counts_to_stored(&self.counts) }
    }

    pub fn from_stored(stored: &StoredGCounter) -> Result<GCounter, CrdtError> {
        Ok(GCounter { counts: replica::counts_from_stored(&stored.counts)? })
    }
}
