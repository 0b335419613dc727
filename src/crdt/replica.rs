//! Who writes a change and when: the per-replica bookkeeping every CRDT
//! needs so that states from several nodes can be merged later.

use std::collections::BTreeMap;

use super::error::CrdtError;

/// One proxy node holding a replica of the CRDT. A single node uses one
/// fixed id; multi-node must give each member a distinct one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(pub u64);

/// The replica applying a user function's delta and its wall clock, passed
/// in (not read) so LWW-register clocks are testable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writer {
    pub replica: ReplicaId,
    /// Milliseconds since the Unix epoch.
    pub now_ms: i64,
}

impl Writer {
    /// `replica` writing at the current wall-clock time.
    pub fn now(replica: ReplicaId) -> Writer {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Writer { replica, now_ms }
    }
}

/// A per-replica count as stored: GCounter entries, version vectors.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredCount {
    #[prost(uint64, tag = "1")]
    pub replica: u64,
    #[prost(uint64, tag = "2")]
    pub count: u64,
}

/// Pointwise maximum: the join of per-replica counts.
pub fn merge_max(into: &mut BTreeMap<ReplicaId, u64>, other: &BTreeMap<ReplicaId, u64>) {
    for (replica, count) in other {
        let mine = into.entry(*replica).or_default();
        *mine = (*mine).max(*count);
    }
}

pub fn counts_to_stored(counts: &BTreeMap<ReplicaId, u64>) -> Vec<StoredCount> {
    counts.iter().map(|(r, c)| StoredCount { replica: r.0, count: *c }).collect()
}

/// Refuses a replica listed twice, which no encoder of ours writes.
pub fn counts_from_stored(stored: &[StoredCount]) -> Result<BTreeMap<ReplicaId, u64>, CrdtError> {
    let mut counts = BTreeMap::new();
    for s in stored {
        if counts.insert(ReplicaId(s.replica), s.count).is_some() {
            return Err(CrdtError::Corrupt(format!("replica {} listed twice", s.replica)));
        }
    }
    Ok(counts)
}
