//! Flag: false until enabled, then true forever; merge is OR.

use crate::proto::cloudstate::crdt::FlagDelta;

/// A flag that can only be enabled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flag {
    enabled: bool,
}

impl Flag {
    /// A `false` delta is no change: a flag cannot be disabled.
    pub fn apply(&mut self, delta: &FlagDelta) {
        self.enabled |= delta.value;
    }

    pub fn to_delta(&self) -> FlagDelta {
        FlagDelta { value: self.enabled }
    }

    pub fn merge(&mut self, other: &Flag) {
        self.enabled |= other.enabled;
    }

    pub fn to_stored(&self) -> bool {
        self.enabled
    }

    pub fn from_stored(enabled: bool) -> Flag {
        Flag { enabled }
    }
}
