//! Vote: each replica's own vote; the function sees its node's vote and the
//! tally. On one node that is `total_voters = 1` and `votes_for` = own vote.

use std::collections::BTreeMap;

use super::error::CrdtError;
use super::replica::ReplicaId;
use crate::proto::cloudstate::crdt::VoteDelta;

/// A replica's vote; the higher version is the later one, which is how a
/// merge picks between two copies of the same replica's entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Ballot {
    version: u64,
    vote: bool,
}

/// Every replica's latest vote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vote {
    ballots: BTreeMap<ReplicaId, Ballot>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredBallot {
    #[prost(uint64, tag = "1")]
    pub replica: u64,
    #[prost(uint64, tag = "2")]
    pub version: u64,
    #[prost(bool, tag = "3")]
    pub vote: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredVote {
    #[prost(message, repeated, tag = "1")]
    pub ballots: Vec<StoredBallot>,
}

impl Vote {
    /// Only `self_vote` counts: the tally is the proxy's to compute, and
    /// functions send zeros there.
    pub fn apply(&mut self, delta: &VoteDelta, replica: ReplicaId) {
        let ballot = self.ballots.entry(replica).or_default();
        if ballot.version == 0 || ballot.vote != delta.self_vote {
            // Saturates only after 2^64 changes of one replica's vote.
            *ballot = Ballot { version: ballot.version.saturating_add(1), vote: delta.self_vote };
        }
    }

    /// The tally seen from `replica`, which counts as a voter even before
    /// it has voted.
    pub fn to_delta(&self, replica: ReplicaId) -> VoteDelta {
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        let own = self.ballots.get(&replica);
        VoteDelta {
            self_vote: own.is_some_and(|b| b.vote),
            votes_for: count(self.ballots.values().filter(|b| b.vote).count()),
            total_voters: count(self.ballots.len() + usize::from(own.is_none())),
        }
    }

    pub fn merge(&mut self, other: &Vote) {
        for (replica, theirs) in &other.ballots {
            let mine = self.ballots.entry(*replica).or_default();
            *mine = (*mine).max(*theirs);
        }
    }

    pub fn to_stored(&self) -> StoredVote {
        let ballots =
            self.ballots.iter().map(|(r, b)| StoredBallot { replica: r.0, version: b.version, vote: b.vote }).collect();
        StoredVote { ballots }
    }

    pub fn from_stored(stored: &StoredVote) -> Result<Vote, CrdtError> {
        let mut ballots = BTreeMap::new();
        for b in &stored.ballots {
            if ballots.insert(ReplicaId(b.replica), Ballot { version: b.version, vote: b.vote }).is_some() {
                return Err(CrdtError::Corrupt(format!("replica {} voted twice", b.replica)));
            }
        }
        Ok(Vote { ballots })
    }
}
