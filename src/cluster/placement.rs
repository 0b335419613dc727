//! Placement: which member owns each lease shard, by rendezvous (highest
//! random weight) hashing over the members that are `serving`.
//!
//! Every proxy computes the same owners from the same member list, without
//! talking to the others; a member joining takes shards only from the
//! others (about `1/n` of them), and a member leaving hands only its own
//! shards out, spread over the rest. A [`Members`] is computed once per
//! membership change, so the owner of a shard is an index lookup.

/// What a member announces about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberState {
    /// Started, not serving yet (discovery of its user function): shown,
    /// not placed.
    Joining,
    /// Serving: shards are placed on it.
    Serving,
    /// Shutting down (SIGTERM): its shards move to the others while it
    /// drains.
    Leaving,
}

impl MemberState {
    pub const ALL: [MemberState; 3] = [MemberState::Joining, MemberState::Serving, MemberState::Leaving];

    /// Its name on the wire (gossip) and in `/cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Serving => "serving",
            MemberState::Leaving => "leaving",
        }
    }

    pub fn parse(s: &str) -> Option<MemberState> {
        MemberState::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// One proxy as this one sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its advertised address `host:port`, also its lease owner name.
    pub id: String,
    pub state: MemberState,
}

/// A snapshot of the live members and the owner of every shard.
#[derive(Debug)]
pub struct Members {
    /// Sorted by id, ids unique; this proxy among them.
    members: Vec<Member>,
    self_index: usize,
    /// Per shard, the index of its owner in `members`.
    owners: Vec<u16>,
}

impl Members {
    /// Places `shards` shards over `members` as seen by `self_id` (added as
    /// [`MemberState::Joining`] if the list lacks it; a later duplicate of
    /// an id is dropped). When no member is serving, shards are placed over
    /// all of them, so [`Members::owner`] always has an answer.
    pub fn new(self_id: &str, mut members: Vec<Member>, shards: u32) -> Members {
        if !members.iter().any(|m| m.id == self_id) {
            members.push(Member { id: self_id.to_owned(), state: MemberState::Joining });
        }
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|later, earlier| later.id == earlier.id);
        assert!(members.len() <= usize::from(u16::MAX), "more cluster members than placement indexes");
        let self_index = members.iter().position(|m| m.id == self_id).expect("self was added");
        let owners = place(&members, shards);
        Members { members, self_index, owners }
    }

    /// Every live member, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn self_id(&self) -> &str {
        &self.members[self.self_index].id
    }

    pub fn shards(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The member that owns `shard` (`< shards`).
    pub fn owner(&self, shard: u32) -> &str {
        &self.members[usize::from(self.owners[shard as usize])].id
    }

    /// Whether this proxy owns `shard` (`< shards`).
    pub fn is_self(&self, shard: u32) -> bool {
        usize::from(self.owners[shard as usize]) == self.self_index
    }

    /// How many shards each member owns, in [`Members::members`] order.
    pub fn shard_counts(&self) -> Vec<u32> {
        let mut counts = vec![0; self.members.len()];
        for &o in &self.owners {
            counts[usize::from(o)] += 1;
        }
        counts
    }
}

/// The owner index of every shard: the candidate with the highest weight.
fn place(members: &[Member], shards: u32) -> Vec<u16> {
    let serving: Vec<usize> = (0..members.len()).filter(|&i| members[i].state == MemberState::Serving).collect();
    let candidates = if serving.is_empty() { (0..members.len()).collect() } else { serving };
    let hashes: Vec<(u16, u64)> = candidates.iter().map(|&i| (i as u16, member_hash(&members[i].id))).collect();
    (0..shards)
        .map(|shard| {
            let mut best = hashes[0];
            let mut best_weight = weight(best.1, shard);
            // Strictly greater: a tie goes to the lower id, on every proxy.
            for &(i, h) in &hashes[1..] {
                let w = weight(h, shard);
                if w > best_weight {
                    (best, best_weight) = ((i, h), w);
                }
            }
            best.0
        })
        .collect()
}

/// A hash of a member id that is stable across processes and versions
/// (FNV-1a, as [`crate::store::keys::entity_hash`]).
pub fn member_hash(id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    id.bytes().fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// A member's weight for a shard. FNV alone mixes its last bytes poorly, so
/// both inputs go through the SplitMix64 finaliser (a bijection with full
/// avalanche): the weights of one shard are independent across members.
pub fn weight(member_hash: u64, shard: u32) -> u64 {
    mix(member_hash ^ mix(u64::from(shard)))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHARDS: u32 = 1024;

    fn serving(ids: &[&str]) -> Vec<Member> {
        ids.iter().map(|id| Member { id: (*id).to_owned(), state: MemberState::Serving }).collect()
    }

    fn owners(m: &Members) -> Vec<String> {
        (0..m.shards()).map(|s| m.owner(s).to_owned()).collect()
    }

    /// Placement is part of the cluster protocol: proxies of different
    /// versions must agree on it.
    #[test]
    fn hashes_and_owners_are_pinned() {
        assert_eq!(member_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(member_hash("10.0.0.1:9000"), 0xd594_da6d_d6b1_c0fc);
        assert_eq!(weight(member_hash("10.0.0.1:9000"), 0), 0xecd4_8300_eb3e_a9af);
        assert_eq!(weight(member_hash("10.0.0.1:9000"), 7), 0x8163_1d8f_1dea_9731);
        let m = Members::new("10.0.0.1:9000", serving(&["10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000"]), SHARDS);
        let first: Vec<&str> = (0..6).map(|s| m.owner(s)).collect();
        assert_eq!(first, ["10.0.0.1:9000", "10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:9000", "10.0.0.3:9000", "10.0.0.2:9000"]);
        assert_eq!(m.shard_counts(), [361, 343, 320]);
    }

    /// A fleet of 2 to 10 proxies: every one owns within 15 % of its share.
    #[test]
    fn a_fleet_is_spread_evenly() {
        for n in 2..=10 {
            let ids: Vec<String> = (1..=n).map(|i| format!("10.0.0.{i}:9000")).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let counts = Members::new(refs[0], serving(&refs), SHARDS).shard_counts();
            let mean = f64::from(SHARDS) / f64::from(n);
            assert!(counts.iter().all(|&c| (f64::from(c) - mean).abs() <= 0.15 * mean), "{n} members: {counts:?}");
        }
    }

    #[test]
    fn only_serving_members_are_placed_unless_none_is() {
        let mut list = serving(&["a:1", "b:1"]);
        list.push(Member { id: "c:1".into(), state: MemberState::Leaving });
        list.push(Member { id: "d:1".into(), state: MemberState::Joining });
        let m = Members::new("c:1", list, SHARDS);
        assert_eq!(m.members().len(), 4);
        let counts = m.shard_counts();
        assert_eq!((counts[2], counts[3]), (0, 0), "{counts:?}");
        assert!((0..SHARDS).all(|s| !m.is_self(s)));

        let alone = Members::new("x:1", vec![], 8);
        assert_eq!(alone.members(), [Member { id: "x:1".into(), state: MemberState::Joining }]);
        assert!((0..8).all(|s| alone.is_self(s) && alone.owner(s) == "x:1"));
    }

    #[test]
    fn self_and_duplicates() {
        let m = Members::new("b:1", serving(&["c:1", "b:1", "a:1", "b:1"]), 16);
        let ids: Vec<&str> = m.members().iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a:1", "b:1", "c:1"]);
        assert_eq!(m.self_id(), "b:1");
        assert!((0..16).all(|s| m.is_self(s) == (m.owner(s) == "b:1")));
    }

    fn ids() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("[a-z0-9.]{1,12}:[0-9]{1,5}", 2..9).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn a_joining_member_takes_shards_only_for_itself(ids in ids(), new in "[A-Z]{1,8}:[0-9]{1,4}") {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let before = owners(&Members::new(&ids[0], serving(&refs), SHARDS));
            let mut more = refs.clone();
            more.push(&new);
            let after = owners(&Members::new(&ids[0], serving(&more), SHARDS));
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(a == b || *a == new, "shard moved from {b} to {a}, not to {new}");
            }
        }

        #[test]
        fn a_leaving_member_hands_out_only_its_own_shards(ids in ids(), pick in any::<prop::sample::Index>(), drop in any::<bool>()) {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let before = owners(&Members::new(&ids[0], serving(&refs), SHARDS));
            let gone = &ids[1 + pick.index(ids.len() - 1)];
            let mut list = serving(&refs);
            // Leaving and gone place alike.
            if drop {
                list.retain(|m| m.id != *gone);
            } else {
                list.iter_mut().filter(|m| m.id == *gone).for_each(|m| m.state = MemberState::Leaving);
            }
            let after = owners(&Members::new(&ids[0], list, SHARDS));
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(a != gone);
                prop_assert!(a == b || b == gone, "shard moved from {b} to {a}, though {gone} left");
            }
        }

        /// 1024 shards over at most 8 members: at 8, ±50 % is about six
        /// standard deviations of a uniform placement.
        #[test]
        fn the_spread_is_even(ids in ids()) {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let m = Members::new(&ids[0], serving(&refs), SHARDS);
            let mean = SHARDS as f64 / ids.len() as f64;
            for (id, n) in ids.iter().zip(m.shard_counts()) {
                prop_assert!((f64::from(n) - mean).abs() <= mean / 2.0, "{id} owns {n} of {SHARDS}, mean {mean}");
            }
        }
    }
}
