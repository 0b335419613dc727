//! Byte layout of storage keys (format 2). Every string component is
//! length-prefixed (`u32` big-endian), so no persistence id or entity id —
//! whatever bytes it holds, NUL included — can be a prefix of another
//! entity's keys, and a prefix scan of one entity never reaches another.
//! Sequence numbers and offsets are big-endian so keys sort numerically.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `F` | `F` | [`FORMAT`]: the layout version of this data directory |
//! | `E` | `E pid eid seq(8)` | event `Any` |
//! | `S` | `S pid eid` | `seq(8)` + snapshot `Any` |
//! | `V` | `V pid eid` | value `Any` |
//! | `R` | `R pid eid` | CRDT state ([`crate::crdt::Crdt::encode`]); empty: deleted (tombstone) |
//! | `D` | `D pid eid n(8)` | the `n`-th CRDT delta record after the `R` state ([`crate::crdt::AppliedDeltas`]), numbered from 1 |
//! | `T` | `T pid offset(8)` | `eid seq(8) [time(8)]`: the event's place in the tag log and when it was appended (µs since the Unix epoch; absent in records written before times were kept) |
//! | `O` | `O writer(2)` | highest offset a storage writer has committed (8) |
//! | `C` | `C pid group` | offset(8): the last tag-log offset a consumer group processed |
//!
//! Format 1 (before length prefixes) used lower-case prefixes with `0x00`
//! separators; [`super::migrate`] rewrites such directories at start.

/// Key of the format record.
pub const FORMAT_KEY: &[u8] = b"F";
/// Value of the format record this build writes and reads.
pub const FORMAT: &[u8] = b"massa-store 2";
/// Prefix of the per-writer offset high-water marks.
pub const OFFSETS: &[u8] = b"O";

/// Builds one key: a prefix byte, then components in order.
struct Key(Vec<u8>);

impl Key {
    fn new(prefix: u8, capacity: usize) -> Key {
        let mut k = Vec::with_capacity(1 + capacity);
        k.push(prefix);
        Key(k)
    }

    fn str(mut self, s: &str) -> Key {
        put_str(&mut self.0, s);
        self
    }

    fn u64(mut self, n: u64) -> Key {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).expect("ids are bounded by the message size limit");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn entity(prefix: u8, pid: &str, eid: &str, tail: usize) -> Key {
    Key::new(prefix, 8 + pid.len() + eid.len() + tail).str(pid).str(eid)
}

/// A hash of an entity's key that is stable across processes and versions
/// (FNV-1a): which core owns the entity, and which lease shard it is in.
pub fn entity_hash(pid: &str, eid: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in pid.bytes().chain([0]).chain(eid.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h
}

pub fn event(pid: &str, eid: &str, seq: u64) -> Vec<u8> {
    entity(b'E', pid, eid, 8).u64(seq).0
}

/// Prefix of every event of one entity, and of nothing else.
pub fn events_of(pid: &str, eid: &str) -> Vec<u8> {
    entity(b'E', pid, eid, 0).0
}

pub fn snapshot(pid: &str, eid: &str) -> Vec<u8> {
    entity(b'S', pid, eid, 0).0
}

pub fn value(pid: &str, eid: &str) -> Vec<u8> {
    entity(b'V', pid, eid, 0).0
}

pub fn crdt(pid: &str, eid: &str) -> Vec<u8> {
    entity(b'R', pid, eid, 0).0
}

/// Key of a CRDT entity's `n`-th delta record.
pub fn crdt_delta(pid: &str, eid: &str, n: u64) -> Vec<u8> {
    entity(b'D', pid, eid, 8).u64(n).0
}

/// Prefix of every delta record of one CRDT entity, and of nothing else.
pub fn crdt_deltas_of(pid: &str, eid: &str) -> Vec<u8> {
    entity(b'D', pid, eid, 0).0
}

pub fn tag(pid: &str, offset: u64) -> Vec<u8> {
    Key::new(b'T', 12 + pid.len()).str(pid).u64(offset).0
}

/// Prefix of one persistence id's tag log.
pub fn tags_of(pid: &str) -> Vec<u8> {
    Key::new(b'T', 4 + pid.len()).str(pid).0
}

/// Key of a consumer group's position in one persistence id's tag log.
pub fn consumer_offset(pid: &str, group: &str) -> Vec<u8> {
    Key::new(b'C', 8 + pid.len() + group.len()).str(pid).str(group).0
}

/// Key of one storage writer's offset high-water mark.
pub fn writer_offset(writer: u16) -> Vec<u8> {
    let mut k = OFFSETS.to_vec();
    k.extend_from_slice(&writer.to_be_bytes());
    k
}

/// The value of a tag entry: where the event lives and, when known, its
/// append time in microseconds since the Unix epoch.
pub fn tag_value(eid: &str, seq: u64, appended_us: Option<u64>) -> Vec<u8> {
    let mut v = Vec::with_capacity(eid.len() + 20);
    put_str(&mut v, eid);
    v.extend_from_slice(&seq.to_be_bytes());
    if let Some(us) = appended_us {
        v.extend_from_slice(&us.to_be_bytes());
    }
    v
}

/// A tag entry's value read back (see [`tag_value`]).
#[derive(Debug, PartialEq)]
pub struct TagValue {
    pub entity_id: String,
    pub sequence: u64,
    pub appended_us: Option<u64>,
}

/// Splits a tag entry's value back into its parts; entries of older builds
/// have no time.
pub fn parse_tag_value(v: &[u8]) -> Option<TagValue> {
    let mut r = Reader(v);
    let entity_id = r.str()?.to_owned();
    let sequence = r.u64()?;
    let appended_us = if r.0.is_empty() { None } else { Some(r.u64()?) };
    r.0.is_empty().then_some(TagValue { entity_id, sequence, appended_us })
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

/// Reads length-prefixed components back (tag values; tests).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, &self.0[n..]);
        self.0 = rest;
        Some(head)
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_entity_key_is_a_prefix_of_another_entitys() {
        let ids = ["V", "V\0", "V\0Z", "V\0\0\0\0\0\0\0\x01", "", "\0", "VZ"];
        for a in ids {
            for b in ids {
                if a != b {
                    let (pa, kb) = (events_of("cart", a), event("cart", b, 1));
                    assert!(!kb.starts_with(&pa), "{a:?} would scan {b:?}'s events");
                    assert!(!snapshot("cart", b).starts_with(&snapshot("cart", a)) || a == b);
                    assert!(!crdt_delta("cart", b, 1).starts_with(&crdt_deltas_of("cart", a)), "{a:?} would scan {b:?}'s deltas");
                }
            }
        }
        assert!(!event("c\0art", "x", 1).starts_with(&events_of("c", "art")), "persistence ids too");
    }

    #[test]
    fn tag_values_round_trip_any_entity_id_with_or_without_a_time() {
        for eid in ["", "a", "a\0b", "\u{10ffff}"] {
            for appended_us in [None, Some(0), Some(1_764_629_345_123_456)] {
                let parsed = parse_tag_value(&tag_value(eid, 42, appended_us));
                assert_eq!(parsed, Some(TagValue { entity_id: eid.to_owned(), sequence: 42, appended_us }));
            }
        }
        assert_eq!(parse_tag_value(b"\0\0\0\x09short"), None);
        assert_eq!(parse_tag_value(&[tag_value("a", 1, None), vec![0]].concat()), None, "trailing bytes");
        assert_eq!(parse_tag_value(&[tag_value("a", 1, Some(7)), vec![0]].concat()), None, "trailing bytes after the time");
    }

    #[test]
    fn tag_values_of_format_2_before_times_still_read() {
        // `eid seq(8)`, as builds before append times wrote them.
        let old = [&[0, 0, 0, 1][..], b"a", &3u64.to_be_bytes()].concat();
        assert_eq!(parse_tag_value(&old), Some(TagValue { entity_id: "a".into(), sequence: 3, appended_us: None }));
    }

    #[test]
    fn sequences_sort_numerically_within_an_entity() {
        assert!(event("p", "e", 2) < event("p", "e", 256));
        assert!(events_of("p", "e") < event("p", "e", 0));
        assert!(crdt_delta("p", "e", 2) < crdt_delta("p", "e", 256));
        assert!(crdt_delta("p", "e", 1).starts_with(&crdt_deltas_of("p", "e")));
    }

    #[test]
    fn crdt_deltas_have_their_own_prefix() {
        let (state, delta) = (crdt("p", "e"), crdt_delta("p", "e", 1));
        assert!(!delta.starts_with(&state) && !state.starts_with(&crdt_deltas_of("p", "e")), "neither kind scans the other");
        assert_eq!(&delta[..1], b"D");
    }
}
