//! Property tests of the join laws (commutative, associative, idempotent)
//! for every type, on states three replicas reach by writing deltas and
//! merging each other's states in random order: the states a cluster can
//! really hold, which is what the dot-based types' invariants assume. The
//! storage encoding must round-trip each of them too.

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::tests::pstr;
use super::*;
use crate::proto::cloudstate::crdt::{
    FlagDelta, GCounterDelta, GSetDelta, LwwRegisterDelta, OrMapDelta, OrMapEntryDelta, OrSetDelta, PnCounterDelta,
    VoteDelta,
};
use crate::proto::google::protobuf::Any;

const REPLICAS: usize = 3;

#[derive(Clone, Debug)]
enum Step {
    Write {
        replica: usize,
        now_ms: i64,
        delta: Delta,
    },
    /// `to` merges `from`'s current state.
    Sync {
        from: usize,
        to: usize,
    },
}

/// Bounded cases and histories keep all eight types well under a second;
/// no regression files are written into the source tree.
fn config() -> Config {
    Config { cases: 256, failure_persistence: None, ..Config::default() }
}

fn element() -> BoxedStrategy<Any> {
    prop::sample::select(vec!["", "a", "b", "c"]).prop_map(pstr).boxed()
}
fn elements() -> BoxedStrategy<Vec<Any>> {
    prop::collection::vec(element(), 0..3).boxed()
}
fn gcounter() -> BoxedStrategy<Delta> {
    (0u64..100).prop_map(|increment| Delta::Gcounter(GCounterDelta { increment })).boxed()
}
fn pncounter() -> BoxedStrategy<Delta> {
    (-100i64..100).prop_map(|change| Delta::Pncounter(PnCounterDelta { change })).boxed()
}
fn gset() -> BoxedStrategy<Delta> {
    elements().prop_map(|added| Delta::Gset(GSetDelta { added })).boxed()
}
fn orset() -> BoxedStrategy<Delta> {
    (prop::bool::weighted(0.1), elements(), elements())
        .prop_map(|(cleared, removed, added)| Delta::Orset(OrSetDelta { cleared, removed, added }))
        .boxed()
}
fn lww() -> BoxedStrategy<Delta> {
    (element(), 0i32..4, -3i64..3)
        .prop_map(|(value, clock, custom_clock_value)| {
            Delta::Lwwregister(LwwRegisterDelta { value: Some(value), clock, custom_clock_value })
        })
        .boxed()
}
fn flag() -> BoxedStrategy<Delta> {
    any::<bool>().prop_map(|value| Delta::Flag(FlagDelta { value })).boxed()
}
fn vote() -> BoxedStrategy<Delta> {
    any::<bool>().prop_map(|self_vote| Delta::Vote(VoteDelta { self_vote, votes_for: 0, total_voters: 0 })).boxed()
}
/// Values of several types under one key (so some updates are refused and
/// some merges meet different types), including a nested map.
fn ormap_of(value: BoxedStrategy<Delta>) -> BoxedStrategy<Delta> {
    let entry = (element(), value)
        .prop_map(|(key, d)| OrMapEntryDelta { key: Some(key), delta: Some(CrdtDelta { delta: Some(d) }) })
        .boxed();
    // Updates of keys not in the map are refused, so keep them few.
    let (removed, updated, added) = (
        prop::collection::vec(element(), 0..2),
        prop::collection::vec(entry.clone(), 0..2),
        prop::collection::vec(entry, 0..3),
    );
    (prop::bool::weighted(0.1), removed, updated, added)
        .prop_map(|(cleared, removed, updated, added)| Delta::Ormap(OrMapDelta { cleared, removed, updated, added }))
        .boxed()
}
fn ormap() -> BoxedStrategy<Delta> {
    ormap_of(prop_oneof![gcounter(), orset(), flag(), lww(), ormap_of(gcounter())].boxed())
}

fn history(delta: BoxedStrategy<Delta>) -> impl Strategy<Value = (Delta, Vec<Step>)> {
    let step = prop_oneof![
        3 => (0..REPLICAS, 0i64..50, delta.clone()).prop_map(|(replica, now_ms, delta)| Step::Write { replica, now_ms, delta }),
        1 => (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Sync { from, to }),
    ];
    (delta, prop::collection::vec(step, 0..24))
}

/// Each replica starts empty; refused writes are skipped (they change
/// nothing, which the unit tests check).
fn replay(seed: &Delta, steps: &[Step]) -> Vec<Crdt> {
    let empty = Crdt::new_for(&CrdtDelta { delta: Some(seed.clone()) }).unwrap();
    let mut states = vec![empty; REPLICAS];
    for step in steps {
        match step {
            Step::Write { replica, now_ms, delta } => {
                let writer = Writer { replica: ReplicaId(*replica as u64), now_ms: *now_ms };
                let _ = states[*replica].apply(&CrdtDelta { delta: Some(delta.clone()) }, writer);
            }
            Step::Sync { from, to } => {
                let from = states[*from].clone();
                states[*to].merge(&from);
            }
        }
    }
    states
}

fn join(a: &Crdt, b: &Crdt) -> Crdt {
    let mut joined = a.clone();
    joined.merge(b);
    joined
}

fn check_laws(seed: &Delta, steps: &[Step]) -> Result<(), TestCaseError> {
    let states = replay(seed, steps);
    let [a, b, c] = [&states[0], &states[1], &states[2]];
    prop_assert_eq!(join(a, b), join(b, a));
    prop_assert_eq!(join(b, c), join(c, b));
    prop_assert_eq!(join(&join(a, b), c), join(a, &join(b, c)));
    let all = join(a, &join(b, c));
    for s in [a, b, c, &all] {
        prop_assert_eq!(&join(s, s), s);
        prop_assert_eq!(&Crdt::decode(&s.encode()).unwrap(), s);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gcounter_merge_laws((seed, steps) in history(gcounter())) { check_laws(&seed, &steps)?; }
    #[test]
    fn pncounter_merge_laws((seed, steps) in history(pncounter())) { check_laws(&seed, &steps)?; }
    #[test]
    fn gset_merge_laws((seed, steps) in history(gset())) { check_laws(&seed, &steps)?; }
    #[test]
    fn orset_merge_laws((seed, steps) in history(orset())) { check_laws(&seed, &steps)?; }
    #[test]
    fn lww_register_merge_laws((seed, steps) in history(lww())) { check_laws(&seed, &steps)?; }
    #[test]
    fn flag_merge_laws((seed, steps) in history(flag())) { check_laws(&seed, &steps)?; }
    #[test]
    fn ormap_merge_laws((seed, steps) in history(ormap())) { check_laws(&seed, &steps)?; }
    #[test]
    fn vote_merge_laws((seed, steps) in history(vote())) { check_laws(&seed, &steps)?; }
}
