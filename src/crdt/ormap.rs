//! Observed-remove map from elements to CRDTs of any type (ORMaps too).
//!
//! Keys are observed-remove (see `dots`); adding or updating a key re-adds
//! it, so an update wins over a concurrent remove. Values live in a map
//! merged key by key (a product of joins), so the merge laws hold whatever
//! the keys do. The cost of that choice: a value is dropped only by a local
//! remove, so once several nodes exist a key removed on one and re-added
//! concurrently may merge its old value back in, as in Akka's ORMap. On one
//! node a removed key's value is gone and a re-added key starts fresh.

use std::collections::BTreeMap;

use super::dots::{self, DottedKeys, StoredDottedKeys};
use super::element::Element;
use super::error::CrdtError;
use super::replica::{ReplicaId, Writer};
use super::stored::StoredCrdt;
use super::Crdt;
use crate::proto::cloudstate::crdt::{CrdtDelta, OrMapDelta, OrMapEntryDelta};
use crate::proto::google::protobuf::Any;

/// An observed-remove map of CRDTs (see the module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrMap {
    keys: DottedKeys,
    /// A value for every live key, and possibly for keys removed elsewhere.
    values: BTreeMap<Element, Crdt>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredEntry {
    #[prost(message, optional, tag = "1")]
    pub key: Option<Any>,
    #[prost(message, optional, tag = "2")]
    pub value: Option<StoredCrdt>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredOrMap {
    #[prost(message, optional, tag = "1")]
    pub keys: Option<StoredDottedKeys>,
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<StoredEntry>,
}

/// An entry delta's key and delta, both required.
fn entry(e: &OrMapEntryDelta) -> Result<(Element, &CrdtDelta), CrdtError> {
    let key = Element::from_any(e.key.as_ref().ok_or(CrdtError::MissingField("ORMapEntryDelta.key"))?)?;
    Ok((key, e.delta.as_ref().ok_or(CrdtError::MissingField("ORMapEntryDelta.delta"))?))
}

impl OrMap {
    /// In the delta's order: clear, removals, updates of live keys, then
    /// additions (which replace any value the key held). Every new value is
    /// computed before anything changes, so a refused entry leaves the map
    /// as it was.
    pub fn apply(&mut self, delta: &OrMapDelta, writer: Writer) -> Result<(), CrdtError> {
        let removed = Element::from_anys(&delta.removed)?;
        let live = |key: &Element| !delta.cleared && !removed.contains(key) && self.keys.contains(key);
        let mut changed: BTreeMap<Element, Crdt> = BTreeMap::new();
        for e in &delta.updated {
            let (key, d) = entry(e)?;
            let mut value = match changed.remove(&key) {
                Some(v) => v,
                None if live(&key) => self.values[&key].clone(),
                None => return Err(CrdtError::MissingKey(key)),
            };
            value.apply(d, writer)?;
            changed.insert(key, value);
        }
        for e in &delta.added {
            let (key, d) = entry(e)?;
            changed.insert(key, Crdt::from_delta(d, writer)?);
        }
        if delta.cleared {
            self.keys.clear();
            self.values.clear();
        }
        for key in &removed {
            self.keys.remove(key);
            self.values.remove(key);
        }
        for (key, value) in changed {
            self.keys.add(key.clone(), writer.replica);
            self.values.insert(key, value);
        }
        Ok(())
    }

    /// Every live entry as an addition carrying its value's initial delta.
    pub fn to_delta(&self, replica: ReplicaId) -> OrMapDelta {
        let added = self
            .keys
            .keys()
            .map(|k| OrMapEntryDelta { key: Some(k.to_any()), delta: Some(self.values[k].to_initial_delta(replica)) })
            .collect();
        OrMapDelta { added, ..Default::default() }
    }

    pub fn merge(&mut self, other: &OrMap) {
        self.keys.merge(&other.keys);
        for (key, theirs) in &other.values {
            match self.values.get_mut(key) {
                Some(mine) => mine.merge(theirs),
                None => {
                    self.values.insert(key.clone(), theirs.clone());
                }
            }
        }
    }

    pub fn to_stored(&self) -> StoredOrMap {
        let values = self
            .values
            .iter()
            .map(|(k, v)| StoredEntry { key: Some(k.to_any()), value: Some(v.to_stored()) })
            .collect();
        StoredOrMap { keys: Some(self.keys.to_stored()), values }
    }

    pub fn from_stored(stored: &StoredOrMap) -> Result<OrMap, CrdtError> {
        let keys = DottedKeys::from_stored(&stored.keys.clone().unwrap_or_default())?;
        let mut values = BTreeMap::new();
        for e in &stored.values {
            let key = dots::stored_element(e.key.as_ref())?;
            let value = Crdt::from_stored(
                e.value.as_ref().ok_or_else(|| CrdtError::Corrupt(format!("ORMap key {key} has no value")))?,
            )?;
            if values.insert(key, value).is_some() {
                return Err(CrdtError::Corrupt("ORMap value listed twice".into()));
            }
        }
        if let Some(key) = keys.keys().find(|k| !values.contains_key(*k)) {
            return Err(CrdtError::Corrupt(format!("live ORMap key {key} has no value")));
        }
        Ok(OrMap { keys, values })
    }
}
