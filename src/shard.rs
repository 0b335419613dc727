//! Which core owns an entity, and the mailboxes between cores.
//!
//! An entity lives on exactly one core: `hash(persistence id, entity id)
//! mod workers`, with a hash that is stable across processes and versions
//! ([`entity_hash`](crate::store::keys::entity_hash)), so a key always lands on the same core for a given worker
//! count. A command that arrives on another core crosses over once, as an
//! [`Envelope`] of owned bytes on a bounded channel, and its answer comes
//! back on a oneshot (a streamed call's, on a bounded channel). That is
//! the only cross-core traffic on the command path; no state is shared.

use bytes::Bytes;

use crate::entity::stateful::Reply;

/// Commands waiting in one core's mailbox before senders wait.
pub const MAILBOX_CAPACITY: usize = 4096;

/// The owning core of an entity.
pub fn owner(persistence_id: &str, entity_id: &str, cores: usize) -> usize {
    (crate::store::keys::entity_hash(persistence_id, entity_id) % cores.max(1) as u64) as usize
}

/// A command for an entity owned by another core.
pub struct Envelope {
    /// Route id of the method.
    pub route: usize,
    pub entity_id: String,
    /// The client's request message, untouched.
    pub payload: Bytes,
    /// Where the answers go (one, or a stream of them).
    pub reply: Reply,
}

/// Bounded mailboxes, one per core.
pub fn mailboxes(cores: usize) -> (Vec<flume::Sender<Envelope>>, Vec<flume::Receiver<Envelope>>) {
    (0..cores).map(|_| flume::bounded(MAILBOX_CAPACITY)).unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_stable_and_spreads() {
        assert_eq!(owner("cart", "a", 1), 0);
        let counts = (0..1000).fold([0usize; 4], |mut c, i| {
            c[owner("cart", &format!("user-{i}"), 4)] += 1;
            c
        });
        assert!(counts.iter().all(|&n| n > 150), "{counts:?}");
        // Pinned values: changing the hash would move every entity.
        assert_eq!([owner("cart", "a", 2), owner("cart", "b", 2), owner("x", "a", 2)], [0, 1, 0]);
    }
}
