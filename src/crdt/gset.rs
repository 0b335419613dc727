//! Grow-only set: merge is union.

use std::collections::BTreeSet;

use super::element::Element;
use super::error::CrdtError;
use crate::proto::cloudstate::crdt::GSetDelta;
use crate::proto::google::protobuf::Any;

/// A grow-only set of elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GSet {
    elements: BTreeSet<Element>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredGSet {
    #[prost(message, repeated, tag = "1")]
    pub elements: Vec<Any>,
}

impl GSet {
    pub fn apply(&mut self, delta: &GSetDelta) -> Result<(), CrdtError> {
        self.elements.extend(Element::from_anys(&delta.added)?);
        Ok(())
    }

    pub fn to_delta(&self) -> GSetDelta {
        GSetDelta { added: self.elements.iter().map(Element::to_any).collect() }
    }

    pub fn merge(&mut self, other: &GSet) {
        self.elements.extend(other.elements.iter().cloned());
    }

    pub fn to_stored(&self) -> StoredGSet {
        StoredGSet { elements: self.to_delta().added }
    }

    pub fn from_stored(stored: &StoredGSet) -> Result<GSet, CrdtError> {
        let elements = Element::from_anys(&stored.elements).map_err(|e| CrdtError::Corrupt(e.to_string()))?;
        Ok(GSet { elements: elements.into_iter().collect() })
    }
}
