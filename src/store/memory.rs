//! The in-memory [`Store`] (`--store memory`): same layout and semantics as
//! RocksDB, gone at exit. The ceiling for storage-bound benchmarks.

use std::{collections::BTreeMap, io, ops::Bound, sync::Mutex};

use super::{Op, Store};

#[derive(Default)]
pub struct MemoryStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self.map.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, ops: Vec<Op>, _sync: bool) -> io::Result<()> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for op in ops {
            match op {
                Op::Put(k, v) => map.insert(k, v),
                Op::Delete(k) => map.remove(&k),
            };
        }
        Ok(())
    }
}
