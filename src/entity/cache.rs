//! Per-core hot cache of passivated entities' state, bounded in bytes, least
//! recently used out first. An entity is owned by exactly one core, so the
//! cache of that core is the only copy that can be stale, and it never is:
//! entries are taken out on activation and put back, current, on
//! passivation. Re-activating a recently idle entity then skips storage.
//! With shard leases, an entry is good only under the lease it was cached
//! under: once the lease was lost, another proxy may have written.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::crdt_store::Durable;
use crate::store::{Fence, Journal};

/// What activation would otherwise read from storage.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    Journal(Journal),
    Value(Option<Bytes>),
    /// A CRDT entity's state and where its stored delta log stands.
    Crdt(Durable),
    CrdtDeleted,
}

impl Cached {
    /// Bytes held, with a fixed charge per entry for bookkeeping.
    fn size(&self, key: &(usize, String)) -> usize {
        const ENTRY: usize = 96;
        ENTRY
            + key.1.len()
            + match self {
                Cached::Journal(j) => {
                    j.snapshot.as_ref().map_or(0, |s| s.1.len() + 8) + j.events.iter().map(|e| e.1.len() + 16).sum::<usize>()
                }
                Cached::Value(v) => v.as_ref().map_or(0, Bytes::len),
                Cached::Crdt(d) => d.size(),
                Cached::CrdtDeleted => 0,
            }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub bytes: usize,
}

pub struct StateCache {
    capacity: usize,
    /// State, insertion tick, and the lease it is good under.
    entries: HashMap<(usize, String), (Cached, u64, Option<Fence>)>,
    /// Insertion tick → key, oldest first.
    order: BTreeMap<u64, (usize, String)>,
    tick: u64,
    stats: CacheStats,
}

impl StateCache {
    pub fn new(capacity: usize) -> StateCache {
        StateCache { capacity, entries: HashMap::new(), order: BTreeMap::new(), tick: 0, stats: CacheStats::default() }
    }

    /// Takes an entity's state out (it becomes active and owns it again),
    /// if it was cached under the same lease.
    pub fn take(&mut self, key: &(usize, String), lease: Option<Fence>) -> Option<Cached> {
        let found = self.entries.remove(key).map(|(cached, tick, cached_under)| {
            self.order.remove(&tick);
            self.stats.bytes -= cached.size(key);
            (cached, cached_under)
        });
        match found {
            Some((cached, under)) if under == lease => {
                self.stats.hits += 1;
                Some(cached)
            }
            _ => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Keeps a passivated entity's state, evicting the oldest to fit.
    pub fn put(&mut self, key: (usize, String), cached: Cached, lease: Option<Fence>) {
        let size = cached.size(&key);
        if let Some((old, tick, _)) = self.entries.remove(&key) {
            self.order.remove(&tick);
            self.stats.bytes -= old.size(&key);
        }
        if size > self.capacity {
            return;
        }
        while self.stats.bytes + size > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some((evicted, ..)) = self.entries.remove(&oldest) {
                self.stats.bytes -= evicted.size(&oldest);
                self.stats.evictions += 1;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (cached, self.tick, lease));
        self.stats.bytes += size;
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(n: usize) -> Cached {
        Cached::Value(Some(Bytes::from(vec![0u8; n])))
    }

    #[test]
    fn hits_misses_and_lru_eviction_within_the_byte_bound() {
        let key = |s: &str| (0, s.to_owned());
        let one = value(100).size(&key("a"));
        let mut c = StateCache::new(one * 2);
        c.put(key("a"), value(100), None);
        c.put(key("b"), value(100), None);
        c.put(key("c"), value(100), None);
        assert_eq!(c.take(&key("a"), None), None, "oldest evicted");
        assert_eq!(c.take(&key("c"), None), Some(value(100)));
        assert_eq!(c.take(&key("c"), None), None, "taken out on activation");
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.evictions, s.bytes), (1, 2, 1, one));
        c.put(key("huge"), value(one * 3), None);
        assert_eq!(c.take(&key("huge"), None), None, "larger than the cache: not kept");
    }

    #[test]
    fn state_cached_under_a_lease_is_not_used_under_another() {
        let key = (0, "a".to_owned());
        let (old, new) = (Fence { shard: 3, epoch: 1 }, Fence { shard: 3, epoch: 2 });
        let mut c = StateCache::new(1 << 20);
        c.put(key.clone(), value(10), Some(old));
        assert_eq!(c.take(&key, Some(new)), None, "another proxy may have written in between");
        assert_eq!(c.take(&key, Some(old)), None, "and the stale entry is gone");
        c.put(key.clone(), value(10), Some(new));
        assert_eq!(c.take(&key, Some(new)), Some(value(10)));
        assert_eq!(c.stats().bytes, 0);
    }
}
