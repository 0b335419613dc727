//! Positive/negative counter: two grow-only counters, value = up - down.

use super::error::CrdtError;
use super::gcounter::{GCounter, StoredGCounter};
use super::replica::ReplicaId;
use crate::proto::cloudstate::crdt::PnCounterDelta;

/// A counter that goes both ways (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PnCounter {
    up: GCounter,
    down: GCounter,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredPnCounter {
    #[prost(message, optional, tag = "1")]
    pub up: Option<StoredGCounter>,
    #[prost(message, optional, tag = "2")]
    pub down: Option<StoredGCounter>,
}

impl PnCounter {
    fn exact(&self) -> i128 {
        i128::from(self.up.value()) - i128::from(self.down.value())
    }

    /// The value as the protocol's int64, saturating for merged states
    /// beyond it.
    pub fn value(&self) -> i64 {
        self.exact().clamp(i64::MIN.into(), i64::MAX.into()) as i64
    }

    /// Refuses a change that takes the value outside int64, which the user
    /// function could not hold.
    pub fn apply(&mut self, delta: &PnCounterDelta, replica: ReplicaId) -> Result<(), CrdtError> {
        if i64::try_from(self.exact() + i128::from(delta.change)).is_err() {
            return Err(CrdtError::Overflow("PNCounter"));
        }
        let by = delta.change.unsigned_abs();
        if delta.change >= 0 {
            self.up.increment(replica, by, "PNCounter")
        } else {
            self.down.increment(replica, by, "PNCounter")
        }
    }

    pub fn to_delta(&self) -> PnCounterDelta {
        PnCounterDelta { change: self.value() }
    }

    pub fn merge(&mut self, other: &PnCounter) {
        self.up.merge(&other.up);
        self.down.merge(&other.down);
    }

    pub fn to_stored(&self) -> StoredPnCounter {
        StoredPnCounter { up: Some(self.up.to_stored()), down: Some(self.down.to_stored()) }
    }

    pub fn from_stored(stored: &StoredPnCounter) -> Result<PnCounter, CrdtError> {
        let half = |g: &Option<StoredGCounter>| g.as_ref().map_or(Ok(GCounter::default()), GCounter::from_stored);
        Ok(PnCounter { up: half(&stored.up)?, down: half(&stored.down)? })
    }
}
