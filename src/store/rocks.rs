//! The RocksDB [`Store`], the default (`--data-dir`, default `./massa-data`).

use std::{io, path::Path};

use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::{tag_not_numbered, Fence, Op, Store};

pub struct RocksStore {
    db: DB,
}

impl RocksStore {
    pub fn open(dir: &Path) -> io::Result<RocksStore> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.increase_parallelism(2);
        let db = DB::open(&options, dir).map_err(|e| io::Error::other(format!("opening RocksDB at {}: {e}", dir.display())))?;
        Ok(RocksStore { db })
    }
}

fn err(e: rocksdb::Error) -> io::Error {
    io::Error::other(format!("RocksDB: {e}"))
}

impl Store for RocksStore {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(err)
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self.db.iterator(IteratorMode::From(start, Direction::Forward)) {
            let (k, v) = item.map_err(err)?;
            if !k.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    fn commit(&self, ops: Vec<Op>, _fence: &[Fence], sync: bool) -> io::Result<()> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                Op::Put(k, v) | Op::Insert(k, v) => batch.put(k, v),
                Op::Delete(k) => batch.delete(k),
                Op::Tag(..) => return Err(tag_not_numbered("RocksDB")),
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(batch, &options).map_err(err)
    }
}
