//! Observed-remove set: add wins over a concurrent remove (see `dots`).

use super::dots::{DottedKeys, StoredDottedKeys};
use super::element::Element;
use super::error::CrdtError;
use super::replica::ReplicaId;
use crate::proto::cloudstate::crdt::OrSetDelta;

/// An observed-remove set of elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrSet {
    elements: DottedKeys,
}

impl OrSet {
    /// In the delta's order: clear, then removals, then additions, so an
    /// element both removed and added ends up present. Removing an absent
    /// element changes nothing.
    pub fn apply(&mut self, delta: &OrSetDelta, replica: ReplicaId) -> Result<(), CrdtError> {
        let removed = Element::from_anys(&delta.removed)?;
        let added = Element::from_anys(&delta.added)?;
        if delta.cleared {
            self.elements.clear();
        }
        for e in &removed {
            self.elements.remove(e);
        }
        for e in added {
            self.elements.add(e, replica);
        }
        Ok(())
    }

    pub fn to_delta(&self) -> OrSetDelta {
        OrSetDelta { cleared: false, removed: Vec::new(), added: self.elements.keys().map(Element::to_any).collect() }
    }

    pub fn merge(&mut self, other: &OrSet) {
        self.elements.merge(&other.elements);
    }

    pub fn to_stored(&self) -> StoredDottedKeys {
        self.elements.to_stored()
    }

    pub fn from_stored(stored: &StoredDottedKeys) -> Result<OrSet, CrdtError> {
        Ok(OrSet { elements: DottedKeys::from_stored(stored)? })
    }
}
