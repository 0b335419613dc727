//! Observed-remove bookkeeping shared by ORSet (its elements) and ORMap (its
//! keys), in the "optimised OR-Set" style Akka's ddata uses.
//!
//! Every add tags the key with a fresh dot (replica, counter), and a version
//! vector records the highest counter seen from each replica. A merge can
//! then tell a dot the other side removed (it has seen the dot, yet lacks it:
//! drop) from one it has not seen yet (keep), so a concurrent add wins over
//! a remove that did not observe it. Removes need no tombstones.

use std::collections::{BTreeMap, BTreeSet};

use super::element::Element;
use super::error::CrdtError;
use super::replica::{self, ReplicaId, StoredCount};
use crate::proto::google::protobuf::Any;

/// One add: the `counter`-th add made by `replica`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Dot {
    replica: ReplicaId,
    counter: u64,
}

/// Live keys with the dots of the adds that keep them alive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DottedKeys {
    /// Never holds an empty dot set.
    keys: BTreeMap<Element, BTreeSet<Dot>>,
    /// Highest counter seen per replica; covers every dot in `keys`.
    seen: BTreeMap<ReplicaId, u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredKey {
    #[prost(message, optional, tag = "1")]
    pub key: Option<Any>,
    /// Dots as (replica, counter).
    #[prost(message, repeated, tag = "2")]
    pub dots: Vec<StoredCount>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredDottedKeys {
    #[prost(message, repeated, tag = "1")]
    pub keys: Vec<StoredKey>,
    #[prost(message, repeated, tag = "2")]
    pub seen: Vec<StoredCount>,
}

impl DottedKeys {
    pub fn contains(&self, key: &Element) -> bool {
        self.keys.contains_key(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &Element> {
        self.keys.keys()
    }

    /// (Re-)adds `key` with one fresh dot of `replica`. The dots it replaces
    /// are all seen by this state, so a merge cannot bring them back.
    pub fn add(&mut self, key: Element, replica: ReplicaId) {
        let counter = self.seen.entry(replica).or_default();
        // 2^64 adds by one replica cannot happen; saturating keeps this total.
        *counter = counter.saturating_add(1);
        self.keys.insert(key, BTreeSet::from([Dot { replica, counter: *counter }]));
    }

    /// Removes every observed add of `key`; true if it was live.
    pub fn remove(&mut self, key: &Element) -> bool {
        self.keys.remove(key).is_some()
    }

    pub fn clear(&mut self) {
        self.keys.clear();
    }

    fn has_seen(&self, dot: &Dot) -> bool {
        self.seen.get(&dot.replica).is_some_and(|c| *c >= dot.counter)
    }

    /// Keeps a dot both sides hold, or one side holds and the other has not
    /// seen; drops a dot one side has seen removed.
    pub fn merge(&mut self, other: &DottedKeys) {
        let all: BTreeSet<&Element> = self.keys.keys().chain(other.keys.keys()).collect();
        let none = BTreeSet::new();
        let mut keys = BTreeMap::new();
        for key in all {
            let mine = self.keys.get(key).unwrap_or(&none);
            let theirs = other.keys.get(key).unwrap_or(&none);
            let dots: BTreeSet<Dot> = mine
                .iter()
                .filter(|d| theirs.contains(d) || !other.has_seen(d))
                .chain(theirs.iter().filter(|d| !mine.contains(d) && !self.has_seen(d)))
                .copied()
                .collect();
            if !dots.is_empty() {
                keys.insert(key.clone(), dots);
            }
        }
        self.keys = keys;
        replica::merge_max(&mut self.seen, &other.seen);
    }

    pub fn to_stored(&self) -> StoredDottedKeys {
        let keys = self
            .keys
            .iter()
            .map(|(k, dots)| StoredKey {
                key: Some(k.to_any()),
                dots: dots.iter().map(|d| StoredCount { replica: d.replica.0, count: d.counter }).collect(),
            })
            .collect();
        StoredDottedKeys { keys, seen: replica::counts_to_stored(&self.seen) }
    }

    /// Refuses states that break the invariants merge relies on.
    pub fn from_stored(stored: &StoredDottedKeys) -> Result<DottedKeys, CrdtError> {
        let mut state = DottedKeys { keys: BTreeMap::new(), seen: replica::counts_from_stored(&stored.seen)? };
        for s in &stored.keys {
            let key = stored_element(s.key.as_ref())?;
            let dots: BTreeSet<Dot> =
                s.dots.iter().map(|d| Dot { replica: ReplicaId(d.replica), counter: d.count }).collect();
            if dots.is_empty() || dots.iter().any(|d| !state.has_seen(d)) {
                return Err(CrdtError::Corrupt(format!("key {key} has no dots or dots beyond its version vector")));
            }
            if state.keys.insert(key, dots).is_some() {
                return Err(CrdtError::Corrupt("key listed twice".into()));
            }
        }
        Ok(state)
    }
}

/// A key or element read back from the store.
pub fn stored_element(any: Option<&Any>) -> Result<Element, CrdtError> {
    let any = any.ok_or_else(|| CrdtError::Corrupt("element without a value".into()))?;
    Element::from_any(any).map_err(|e| CrdtError::Corrupt(e.to_string()))
}
