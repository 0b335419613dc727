//! Byte layout of storage keys. Components are separated by `0x00`, which
//! cannot occur in persistence ids or entity ids taken from UTF-8 strings
//! or decimal numbers; sequence numbers and offsets are big-endian so keys
//! sort in numeric order.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `j` | `j 0 pid 0 eid 0 seq(8)` | event `Any` |
//! | `s` | `s 0 pid 0 eid` | `seq(8)` + snapshot `Any` |
//! | `v` | `v 0 pid 0 eid` | value `Any` |
//! | `t` | `t 0 pid 0 offset(8)` | `eid 0 seq(8)`: the event's place in the tag log |
//! | `o` | `o` | last global offset used (8) |

pub const LAST_OFFSET: &[u8] = b"o";

fn key(prefix: u8, parts: &[&[u8]], tail: Option<u64>) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>() + if tail.is_some() { 9 } else { 0 };
    let mut k = Vec::with_capacity(len);
    k.push(prefix);
    for p in parts {
        k.push(0);
        k.extend_from_slice(p);
    }
    if let Some(n) = tail {
        k.push(0);
        k.extend_from_slice(&n.to_be_bytes());
    }
    k
}

pub fn event(pid: &str, eid: &str, seq: u64) -> Vec<u8> {
    key(b'j', &[pid.as_bytes(), eid.as_bytes()], Some(seq))
}

/// Prefix of every event of one entity.
pub fn events_of(pid: &str, eid: &str) -> Vec<u8> {
    let mut k = key(b'j', &[pid.as_bytes(), eid.as_bytes()], None);
    k.push(0);
    k
}

pub fn snapshot(pid: &str, eid: &str) -> Vec<u8> {
    key(b's', &[pid.as_bytes(), eid.as_bytes()], None)
}

pub fn value(pid: &str, eid: &str) -> Vec<u8> {
    key(b'v', &[pid.as_bytes(), eid.as_bytes()], None)
}

pub fn tag(pid: &str, offset: u64) -> Vec<u8> {
    key(b't', &[pid.as_bytes()], Some(offset))
}

/// Prefix of one persistence id's tag log.
pub fn tags_of(pid: &str) -> Vec<u8> {
    let mut k = key(b't', &[pid.as_bytes()], None);
    k.push(0);
    k
}

/// The value of a tag entry: where the event lives.
pub fn tag_value(eid: &str, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(eid.len() + 9);
    v.extend_from_slice(eid.as_bytes());
    v.push(0);
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

/// Splits a tag entry's value back into `(entity id, sequence)`.
pub fn parse_tag_value(v: &[u8]) -> Option<(String, u64)> {
    let (eid, rest) = v.split_at(v.len().checked_sub(9)?);
    (rest[0] == 0).then_some(())?;
    Some((String::from_utf8(eid.to_vec()).ok()?, u64::from_be_bytes(rest[1..].try_into().ok()?)))
}

/// The big-endian u64 that ends a key.
pub fn trailing_u64(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.get(k.len().checked_sub(8)?..)?.try_into().ok()?))
}

/// Snapshot values carry their sequence in front of the `Any`.
pub fn snapshot_value(seq: u64, snapshot: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + snapshot.len());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(snapshot);
    v
}

pub fn parse_snapshot_value(v: &[u8]) -> Option<(u64, &[u8])> {
    Some((u64::from_be_bytes(v.get(..8)?.try_into().ok()?), &v[8..]))
}
