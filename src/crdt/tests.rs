//! Delta application, initial deltas and storage, type by type, through the
//! `Crdt` API the entity code uses.

use prost::Message;

use super::*;
use crate::proto::cloudstate::crdt::{
    CrdtClock, FlagDelta, GCounterDelta, GSetDelta, LwwRegisterDelta, OrMapDelta, OrMapEntryDelta, OrSetDelta,
    PnCounterDelta, VoteDelta,
};
use crate::proto::google::protobuf::Any;

const A: ReplicaId = ReplicaId(1);
const B: ReplicaId = ReplicaId(2);

fn at(replica: ReplicaId, now_ms: i64) -> Writer {
    Writer { replica, now_ms }
}
fn delta(d: Delta) -> CrdtDelta {
    CrdtDelta { delta: Some(d) }
}
/// A Cloudstate primitive string (field 1; the empty string is no bytes).
pub(super) fn pstr(s: &str) -> Any {
    let mut value = Vec::new();
    if !s.is_empty() {
        prost::encoding::string::encode(1, &s.to_owned(), &mut value);
    }
    Any { type_url: "p.cloudstate.io/string".into(), value: value.into() }
}
fn must_from(d: Delta) -> Crdt {
    Crdt::from_delta(&delta(d), at(A, 1000)).unwrap()
}
fn must_apply(c: &mut Crdt, d: Delta) {
    c.apply(&delta(d), at(A, 1000)).unwrap()
}
fn initial(c: &Crdt) -> Delta {
    c.to_initial_delta(A).delta.unwrap()
}
fn gset(elements: &[&str]) -> Delta {
    Delta::Gset(GSetDelta { added: elements.iter().map(|e| pstr(e)).collect() })
}
fn orset(cleared: bool, removed: &[&str], added: &[&str]) -> Delta {
    let anys = |v: &[&str]| v.iter().map(|e| pstr(e)).collect();
    Delta::Orset(OrSetDelta { cleared, removed: anys(removed), added: anys(added) })
}
fn lww(value: &str, clock: CrdtClock, custom: i64) -> Delta {
    Delta::Lwwregister(LwwRegisterDelta { value: Some(pstr(value)), clock: clock as i32, custom_clock_value: custom })
}
fn entry(key: &str, d: Delta) -> OrMapEntryDelta {
    OrMapEntryDelta { key: Some(pstr(key)), delta: Some(delta(d)) }
}
fn round_trip(c: &Crdt) {
    assert_eq!(&Crdt::decode(&c.encode()).unwrap(), c);
}

#[test]
fn gcounter_counts_up_and_refuses_decrements_and_overflow() {
    let mut c = must_from(Delta::Gcounter(GCounterDelta { increment: 2 }));
    must_apply(&mut c, Delta::Gcounter(GCounterDelta { increment: 5 }));
    assert_eq!(initial(&c), Delta::Gcounter(GCounterDelta { increment: 7 }));
    // -1 as a JVM long.
    let err = c.apply(&delta(Delta::Gcounter(GCounterDelta { increment: u64::MAX })), at(A, 0)).unwrap_err();
    assert_eq!(err, CrdtError::GCounterDecrement(u64::MAX));
    let big = i64::MAX as u64;
    must_apply(&mut c, Delta::Gcounter(GCounterDelta { increment: big }));
    let before = c.clone();
    assert_eq!(
        c.apply(&delta(Delta::Gcounter(GCounterDelta { increment: big })), at(B, 0)),
        Err(CrdtError::Overflow("GCounter"))
    );
    assert_eq!(c, before);
    round_trip(&c);
}

#[test]
fn pncounter_sums_changes_and_refuses_leaving_int64() {
    let mut c = must_from(Delta::Pncounter(PnCounterDelta { change: 2 }));
    must_apply(&mut c, Delta::Pncounter(PnCounterDelta { change: 5 }));
    c.apply(&delta(Delta::Pncounter(PnCounterDelta { change: -88 })), at(B, 0)).unwrap();
    assert_eq!(initial(&c), Delta::Pncounter(PnCounterDelta { change: -81 }));
    round_trip(&c);
    must_apply(&mut c, Delta::Pncounter(PnCounterDelta { change: i64::MIN + 81 }));
    let before = c.clone();
    assert_eq!(
        c.apply(&delta(Delta::Pncounter(PnCounterDelta { change: -1 })), at(A, 0)),
        Err(CrdtError::Overflow("PNCounter"))
    );
    assert_eq!(c, before);
    // Back up from the bottom is fine.
    must_apply(&mut c, Delta::Pncounter(PnCounterDelta { change: i64::MAX }));
    assert_eq!(initial(&c), Delta::Pncounter(PnCounterDelta { change: -1 }));
}

#[test]
fn gset_adds_each_element_once_in_canonical_form() {
    let mut c = must_from(gset(&["b", "a"]));
    // An explicitly encoded empty string is the same element as "".
    let explicit_empty = Any { type_url: "p.cloudstate.io/string".into(), value: vec![0x0a, 0x00].into() };
    must_apply(&mut c, Delta::Gset(GSetDelta { added: vec![pstr("a"), explicit_empty, pstr("")] }));
    assert_eq!(initial(&c), gset(&["", "a", "b"]));
    let bad = Any { type_url: "p.cloudstate.io/string".into(), value: vec![0x0a, 0x01, 0xff].into() };
    let before = c.clone();
    let err = c.apply(&delta(Delta::Gset(GSetDelta { added: vec![pstr("z"), bad] })), at(A, 0)).unwrap_err();
    assert!(matches!(err, CrdtError::BadElement { .. }), "{err}");
    assert_eq!(c, before);
    round_trip(&c);
}

#[test]
fn orset_clears_then_removes_then_adds() {
    let mut c = must_from(orset(false, &[], &["a", "b", "c"]));
    must_apply(&mut c, orset(false, &["a", "zz"], &["d"]));
    assert_eq!(initial(&c), orset(false, &[], &["b", "c", "d"]));
    // Removed and added in one delta: present.
    must_apply(&mut c, orset(false, &["b"], &["b"]));
    assert_eq!(initial(&c), orset(false, &[], &["b", "c", "d"]));
    must_apply(&mut c, orset(true, &[], &["x"]));
    assert_eq!(initial(&c), orset(false, &[], &["x"]));
    round_trip(&c);
}

#[test]
fn orset_add_wins_over_a_remove_that_did_not_see_it() {
    let mut a = must_from(orset(false, &[], &["x", "y"]));
    let mut b = a.clone();
    b.apply(&delta(orset(false, &["x", "y"], &[])), at(B, 0)).unwrap();
    // A re-adds x concurrently with B's removal; y's removal is seen.
    must_apply(&mut a, orset(false, &[], &["x"]));
    a.merge(&b);
    assert_eq!(initial(&a), orset(false, &[], &["x"]));
    b.merge(&a);
    assert_eq!(a, b);
}

#[test]
fn lww_clocks_order_writes() {
    use CrdtClock::*;
    let value = |c: &Crdt| match initial(c) {
        Delta::Lwwregister(l) => l.value.unwrap(),
        other => panic!("{other:?}"),
    };
    // DEFAULT: a wall clock that steps back still moves the timestamp on,
    // so the later write wins a merge against an earlier copy.
    let mut a = Crdt::from_delta(&delta(lww("one", Default, 0)), at(A, 1000)).unwrap();
    let earlier = a.clone();
    a.apply(&delta(lww("two", Default, 0)), at(A, 10)).unwrap();
    let mut b = earlier.clone();
    b.merge(&a);
    assert_eq!(value(&b), pstr("two"));
    // REVERSE: the earliest write wins across replicas.
    let mut first = Crdt::from_delta(&delta(lww("first", Reverse, 0)), at(A, 100)).unwrap();
    let later = Crdt::from_delta(&delta(lww("later", Reverse, 0)), at(B, 200)).unwrap();
    first.merge(&later);
    assert_eq!(value(&first), pstr("first"));
    // CUSTOM: the given value, even going back; a higher one wins a merge.
    let mut a = Crdt::from_delta(&delta(lww("seven", Custom, 7)), at(A, 0)).unwrap();
    let mut b = Crdt::from_delta(&delta(lww("five", Custom, 5)), at(B, 0)).unwrap();
    b.merge(&a);
    assert_eq!(value(&b), pstr("seven"));
    a.apply(&delta(lww("three", Custom, 3)), at(A, 0)).unwrap();
    assert_eq!(value(&a), pstr("three"));
    let mut five = Crdt::from_delta(&delta(lww("five", Custom, 5)), at(B, 0)).unwrap();
    five.merge(&a);
    assert_eq!(value(&five), pstr("five"));
    // CUSTOM_AUTO_INCREMENT: bumped past the current timestamp (7 → 8),
    // so it beats a write at 7 elsewhere.
    let mut a = Crdt::from_delta(&delta(lww("seven", Custom, 7)), at(A, 0)).unwrap();
    a.apply(&delta(lww("bumped", CustomAutoIncrement, 2)), at(A, 0)).unwrap();
    let mut other = Crdt::from_delta(&delta(lww("other", Custom, 7)), at(ReplicaId(0), 0)).unwrap();
    other.merge(&a);
    assert_eq!(value(&other), pstr("bumped"));
    // The init delta carries only the value.
    assert_eq!(
        initial(&a),
        Delta::Lwwregister(LwwRegisterDelta { value: Some(pstr("bumped")), clock: 0, custom_clock_value: 0 })
    );
    round_trip(&a);
}

#[test]
fn lww_refuses_a_missing_value_or_unknown_clock() {
    let mut c = must_from(lww("x", CrdtClock::Default, 0));
    let no_value = Delta::Lwwregister(LwwRegisterDelta::default());
    assert_eq!(c.apply(&delta(no_value), at(A, 0)), Err(CrdtError::MissingField("LWWRegisterDelta.value")));
    let bad_clock = Delta::Lwwregister(LwwRegisterDelta { value: Some(pstr("y")), clock: 9, custom_clock_value: 0 });
    assert_eq!(c.apply(&delta(bad_clock), at(A, 0)), Err(CrdtError::UnknownClock(9)));
    assert_eq!(initial(&c), lww("x", CrdtClock::Default, 0));
}

#[test]
fn flag_cannot_be_disabled() {
    let mut c = must_from(Delta::Flag(FlagDelta { value: false }));
    assert_eq!(initial(&c), Delta::Flag(FlagDelta { value: false }));
    must_apply(&mut c, Delta::Flag(FlagDelta { value: true }));
    must_apply(&mut c, Delta::Flag(FlagDelta { value: false }));
    assert_eq!(initial(&c), Delta::Flag(FlagDelta { value: true }));
    round_trip(&c);
}

#[test]
fn vote_tallies_one_node_and_merged_replicas() {
    // The function sends only its own vote; the tally is the proxy's.
    let vote = |self_vote| Delta::Vote(VoteDelta { self_vote, votes_for: 0, total_voters: 0 });
    let tally = |self_vote, votes_for, total_voters| Delta::Vote(VoteDelta { self_vote, votes_for, total_voters });
    let mut a = must_from(vote(true));
    assert_eq!(initial(&a), tally(true, 1, 1));
    must_apply(&mut a, vote(false));
    assert_eq!(initial(&a), tally(false, 0, 1));
    must_apply(&mut a, vote(true));
    let b = Crdt::from_delta(&delta(vote(false)), at(B, 0)).unwrap();
    a.merge(&b);
    assert_eq!(a.to_initial_delta(A).delta, Some(tally(true, 1, 2)));
    assert_eq!(a.to_initial_delta(B).delta, Some(tally(false, 1, 2)));
    // A replica that has not voted still counts itself.
    assert_eq!(b.to_initial_delta(A).delta, Some(tally(false, 0, 2)));
    round_trip(&a);
}

#[test]
fn ormap_adds_updates_and_removes_entries_of_any_type() {
    let counter = |increment| Delta::Gcounter(GCounterDelta { increment });
    let mut c = must_from(Delta::Ormap(OrMapDelta {
        added: vec![entry("n", counter(1)), entry("s", orset(false, &[], &["a"]))],
        ..Default::default()
    }));
    must_apply(
        &mut c,
        Delta::Ormap(OrMapDelta {
            updated: vec![entry("n", counter(2)), entry("n", counter(3)), entry("s", orset(false, &["a"], &["b"]))],
            added: vec![entry(
                "m",
                Delta::Ormap(OrMapDelta {
                    added: vec![entry("f", Delta::Flag(FlagDelta { value: true }))],
                    ..Default::default()
                }),
            )],
            ..Default::default()
        }),
    );
    let expected = Delta::Ormap(OrMapDelta {
        added: vec![
            entry(
                "m",
                Delta::Ormap(OrMapDelta {
                    added: vec![entry("f", Delta::Flag(FlagDelta { value: true }))],
                    ..Default::default()
                }),
            ),
            entry("n", counter(6)),
            entry("s", orset(false, &[], &["b"])),
        ],
        ..Default::default()
    });
    assert_eq!(initial(&c), expected);
    round_trip(&c);
    // Removed, then re-added: the old value is gone.
    must_apply(&mut c, Delta::Ormap(OrMapDelta { removed: vec![pstr("n")], ..Default::default() }));
    must_apply(&mut c, Delta::Ormap(OrMapDelta { added: vec![entry("n", counter(1))], ..Default::default() }));
    must_apply(
        &mut c,
        Delta::Ormap(OrMapDelta { cleared: true, added: vec![entry("z", counter(4))], ..Default::default() }),
    );
    assert_eq!(initial(&c), Delta::Ormap(OrMapDelta { added: vec![entry("z", counter(4))], ..Default::default() }));
}

#[test]
fn ormap_refuses_bad_entries_and_changes_nothing() {
    let counter = |increment| Delta::Gcounter(GCounterDelta { increment });
    let mut c = must_from(Delta::Ormap(OrMapDelta { added: vec![entry("n", counter(1))], ..Default::default() }));
    let before = c.clone();
    let refuse = |c: &mut Crdt, d: OrMapDelta| c.apply(&delta(Delta::Ormap(d)), at(A, 0)).unwrap_err();
    // A missing key, after an update that would have succeeded.
    let err = refuse(
        &mut c,
        OrMapDelta { updated: vec![entry("n", counter(1)), entry("gone", counter(1))], ..Default::default() },
    );
    assert!(matches!(&err, CrdtError::MissingKey(k) if k.to_any() == pstr("gone")), "{err}");
    // A key removed in the same delta is missing too.
    let err = refuse(
        &mut c,
        OrMapDelta { removed: vec![pstr("n")], updated: vec![entry("n", counter(1))], ..Default::default() },
    );
    assert!(matches!(err, CrdtError::MissingKey(_)), "{err}");
    // The nested delta is of the wrong type.
    let err = refuse(
        &mut c,
        OrMapDelta { updated: vec![entry("n", Delta::Flag(FlagDelta { value: true }))], ..Default::default() },
    );
    assert_eq!(err, CrdtError::WrongType { crdt: "GCounter", delta: "Flag" });
    let err = refuse(
        &mut c,
        OrMapDelta { added: vec![OrMapEntryDelta { key: Some(pstr("k")), delta: None }], ..Default::default() },
    );
    assert_eq!(err, CrdtError::MissingField("ORMapEntryDelta.delta"));
    assert_eq!(c, before);
}

#[test]
fn wrong_types_and_empty_deltas_are_refused() {
    let mut c = must_from(Delta::Gcounter(GCounterDelta { increment: 1 }));
    assert_eq!(c.apply(&CrdtDelta { delta: None }, at(A, 0)), Err(CrdtError::NoDelta));
    assert_eq!(Crdt::new_for(&CrdtDelta { delta: None }), Err(CrdtError::NoDelta));
    let err = c.apply(&delta(Delta::Pncounter(PnCounterDelta { change: 1 })), at(A, 0)).unwrap_err();
    assert_eq!(err.to_string(), "a PNCounter delta cannot change a GCounter");
    assert!(!err.is_corrupt());
}

#[test]
fn states_of_different_types_merge_to_the_later_type() {
    let counter = must_from(Delta::Gcounter(GCounterDelta { increment: 1 }));
    let flag = must_from(Delta::Flag(FlagDelta { value: true }));
    let (mut a, mut b) = (counter.clone(), flag.clone());
    a.merge(&flag);
    b.merge(&counter);
    assert_eq!((a.kind(), b.kind()), ("Flag", "Flag"));
}

#[test]
fn corrupt_storage_is_refused() {
    let corrupt = |bytes: &[u8]| Crdt::decode(bytes).unwrap_err();
    assert!(corrupt(&[0xff]).is_corrupt());
    assert!(corrupt(&[]).is_corrupt(), "no CRDT type");
    // An ORSet element whose dot is beyond its version vector.
    let mut stored = must_from(orset(false, &[], &["a"])).to_stored();
    if let Some(stored::Kind::OrSet(s)) = &mut stored.kind {
        s.seen.clear();
    }
    assert!(corrupt(&stored.encode_to_vec()).is_corrupt());
    // An ORMap key without a value.
    let mut stored = must_from(Delta::Ormap(OrMapDelta {
        added: vec![entry("k", Delta::Flag(FlagDelta::default()))],
        ..Default::default()
    }))
    .to_stored();
    if let Some(stored::Kind::OrMap(m)) = &mut stored.kind {
        m.values.clear();
    }
    assert!(corrupt(&stored.encode_to_vec()).is_corrupt());
}
