//! The data directory's format record, and the one-way rewrite of format 1
//! (components separated by `0x00`, lower-case prefixes) into format 2.
//!
//! Format 1 keys are unambiguous one at a time — persistence ids come from
//! descriptors and hold no NUL, sequence numbers and offsets are fixed-width
//! tails — so each key converts exactly; only its prefix scans were unsafe.
//! The rewrite goes in batches that put the new key and delete the old one
//! together, so an interrupted start resumes where it stopped; the format
//! record is written last.

use std::io;

use tracing::{info, warn};

use super::{keys, Op, Store};

/// Keys rewritten per atomic batch.
const STEP: usize = 1024;

/// Why a data directory cannot be used as it is.
fn refuse(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Makes sure `kv` holds format 2: writes the record on an empty store,
/// migrates format 1, refuses anything else with what to do about it.
pub fn ensure_format(kv: &dyn Store) -> io::Result<()> {
    match kv.get(keys::FORMAT_KEY)? {
        Some(v) if v == keys::FORMAT => return Ok(()),
        Some(v) => {
            return Err(refuse(format!(
                "the data directory has format {:?}; this build reads {:?}. Run the Massa release that wrote it, \
                 or point --data-dir at an empty directory",
                String::from_utf8_lossy(&v),
                String::from_utf8_lossy(keys::FORMAT)
            )))
        }
        None => {}
    }
    let mut migrated = 0u64;
    let mut start = Vec::new();
    loop {
        let page = kv.scan(b"", &start, STEP)?;
        let Some((last, _)) = page.last() else { break };
        start = [last.as_slice(), &[0]].concat();
        let mut ops = Vec::with_capacity(page.len() * 2);
        for (k, v) in &page {
            if let Some(b'E' | b'S' | b'V' | b'T' | b'O' | b'C' | b'R') = k.first() {
                continue; // written by an interrupted migration
            }
            let (nk, nv) = convert(k, v).ok_or_else(|| {
                refuse(format!(
                    "the data directory has no format record and holds a key that is not Massa's ({:?}); \
                     point --data-dir at a Massa data directory or an empty one",
                    String::from_utf8_lossy(&k[..k.len().min(64)])
                ))
            })?;
            ops.push(Op::Put(nk, nv));
            ops.push(Op::Delete(k.clone()));
        }
        if !ops.is_empty() {
            if migrated == 0 {
                warn!("data directory in format 1 (NUL-separated keys): rewriting it to format 2; this is one-way");
            }
            migrated += (ops.len() / 2) as u64;
            kv.commit(ops, &[], true)?;
        }
    }
    kv.commit(vec![Op::Put(keys::FORMAT_KEY.to_vec(), keys::FORMAT.to_vec())], &[], true)?;
    if migrated > 0 {
        info!(keys = migrated, "data directory migrated to format 2");
    }
    Ok(())
}

/// One format-1 entry in format 2, or `None` if it is not a format-1 entry.
fn convert(k: &[u8], v: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    if k == b"o" {
        return Some((keys::writer_offset(0), v.to_vec()));
    }
    let (&prefix, rest) = k.split_first()?;
    let rest = rest.strip_prefix(&[0])?;
    let split = rest.iter().position(|&b| b == 0)?;
    let pid = std::str::from_utf8(&rest[..split]).ok()?;
    let rest = &rest[split + 1..];
    let utf8 = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_owned);
    match prefix {
        b'j' => {
            let (eid, tail) = rest.split_at(rest.len().checked_sub(9)?);
            (tail[0] == 0).then_some(())?;
            let seq = u64::from_be_bytes(tail[1..].try_into().ok()?);
            Some((keys::event(pid, &utf8(eid)?, seq), v.to_vec()))
        }
        b't' => {
            let offset = u64::from_be_bytes(rest.try_into().ok()?);
            let (eid, tail) = v.split_at(v.len().checked_sub(9)?);
            (tail[0] == 0).then_some(())?;
            let seq = u64::from_be_bytes(tail[1..].try_into().ok()?);
            Some((keys::tag(pid, offset), keys::tag_value(&utf8(eid)?, seq, None)))
        }
        b's' => Some((keys::snapshot(pid, &utf8(rest)?), v.to_vec())),
        b'v' => Some((keys::value(pid, &utf8(rest)?), v.to_vec())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn v1(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn format_one_converts_key_by_key_even_with_nul_in_entity_ids() {
        let seq = 3u64.to_be_bytes();
        let cases: Vec<(Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>)> = vec![
            (v1(&[b"j\0cart\0V\0Z\0", &seq]), b"ev".to_vec(), keys::event("cart", "V\0Z", 3), b"ev".to_vec()),
            (v1(&[b"s\0cart\0V"]), b"sn".to_vec(), keys::snapshot("cart", "V"), b"sn".to_vec()),
            (v1(&[b"v\0cart\0a\0b"]), b"va".to_vec(), keys::value("cart", "a\0b"), b"va".to_vec()),
            (v1(&[b"t\0cart\0", &seq]), v1(&[b"V\0Z\0", &seq]), keys::tag("cart", 3), keys::tag_value("V\0Z", 3, None)),
            (b"o".to_vec(), seq.to_vec(), keys::writer_offset(0), seq.to_vec()),
        ];
        for (k, v, nk, nv) in cases {
            assert_eq!(convert(&k, &v), Some((nk, nv)), "{:?}", String::from_utf8_lossy(&k));
        }
        assert_eq!(convert(b"x\0y", b""), None);
        assert_eq!(convert(b"j\0cart\0short", b""), None);
    }

    #[test]
    fn empty_store_gets_the_record_and_foreign_data_is_refused() {
        let kv = MemoryStore::default();
        ensure_format(&kv).unwrap();
        assert_eq!(kv.get(keys::FORMAT_KEY).unwrap().as_deref(), Some(keys::FORMAT));
        ensure_format(&kv).unwrap();

        let foreign = MemoryStore::default();
        foreign.commit(vec![Op::Put(b"hello".to_vec(), b"world".to_vec())], &[], true).unwrap();
        let e = ensure_format(&foreign).unwrap_err();
        assert!(e.to_string().contains("not Massa's"), "{e}");
        assert_eq!(foreign.get(keys::FORMAT_KEY).unwrap(), None, "nothing written");

        let newer = MemoryStore::default();
        newer.commit(vec![Op::Put(keys::FORMAT_KEY.to_vec(), b"massa-store 9".to_vec())], &[], true).unwrap();
        assert!(ensure_format(&newer).unwrap_err().to_string().contains("massa-store 9"));
    }

    #[test]
    fn a_format_one_directory_is_migrated_in_steps_and_resumes() {
        let kv = MemoryStore::default();
        let mut ops = Vec::new();
        for i in 1..=(STEP as u64 + 10) {
            ops.push(Op::Put(v1(&[b"j\0cart\0V\0", &i.to_be_bytes()]), format!("e{i}").into_bytes()));
            ops.push(Op::Put(v1(&[b"j\0cart\0V\0Z\0", &i.to_be_bytes()]), b"foreign".to_vec()));
        }
        // As if an earlier start had been interrupted after one step.
        ops.push(Op::Put(keys::event("cart", "W", 1), b"w1".to_vec()));
        kv.commit(ops, &[], true).unwrap();
        ensure_format(&kv).unwrap();
        let all = kv.scan(b"", b"", usize::MAX).unwrap();
        assert!(all.iter().all(|(k, _)| k[0].is_ascii_uppercase()), "no format-1 key left");
        assert_eq!(all.len(), 2 * (STEP + 10) + 2);
        assert_eq!(kv.get(&keys::event("cart", "V", 7)).unwrap(), Some(b"e7".to_vec()));
        assert_eq!(kv.get(&keys::event("cart", "V\0Z", 7)).unwrap(), Some(b"foreign".to_vec()));
    }
}
