//! The in-memory [`Store`] (`--store memory`): same layout and semantics as
//! RocksDB, gone at exit. The ceiling for storage-bound benchmarks.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    ops::Bound,
    sync::Mutex,
};

use super::{already_written, tag_not_numbered, Fence, Op, Store};

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

    fn commit(&self, ops: Vec<Op>, _fence: &[Fence], _sync: bool) -> io::Result<()> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Whether each key the batch touches exists after its earlier ops:
        // an insert is checked before anything is applied (all or nothing).
        let mut present: HashMap<&[u8], bool> = HashMap::new();
        for op in &ops {
            match op {
                Op::Insert(k, _) => {
                    if present.get(k.as_slice()).copied().unwrap_or_else(|| map.contains_key(k)) {
                        return Err(already_written("the memory store", &format!("key {:?}", String::from_utf8_lossy(k))));
                    }
                    present.insert(k, true);
                }
                Op::Put(k, _) => {
                    present.insert(k, true);
                }
                Op::Delete(k) => {
                    present.insert(k, false);
                }
                Op::Tag(..) => return Err(tag_not_numbered("the memory store")),
            }
        }
        drop(present);
        for op in ops {
            match op {
                Op::Put(k, v) | Op::Insert(k, v) => map.insert(k, v),
                Op::Delete(k) => map.remove(&k),
                Op::Tag(..) => unreachable!("refused above"),
            };
        }
        Ok(())
    }
}
