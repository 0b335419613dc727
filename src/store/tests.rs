use bytes::Bytes;

use super::*;

fn stores() -> Vec<(&'static str, EntityStore, Option<std::path::PathBuf>)> {
    let dir = std::env::temp_dir().join(format!("massa-store-test-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    vec![
        ("memory", EntityStore::open(Box::new(MemoryStore::default()), None).unwrap(), None),
        ("rocksdb", EntityStore::open(Box::new(RocksStore::open(&dir).unwrap()), None).unwrap(), Some(dir)),
    ]
}

fn events(pid: &str, eid: &str, first: u64, n: usize) -> Write {
    Write::Events {
        persistence_id: pid.into(),
        entity_id: eid.into(),
        first_sequence: first,
        events: (0..n).map(|i| Bytes::from(format!("{eid}-{}", first + i as u64))).collect(),
    }
}

#[test]
fn journal_reads_back_snapshot_then_later_events() {
    for (name, store, dir) in stores() {
        store.write(0, &[events("cart", "a", 1, 3), events("cart", "ab", 1, 1)], true).unwrap();
        let j = store.read_journal("cart", "a").unwrap();
        assert_eq!(j.snapshot, None, "{name}");
        assert_eq!(j.events.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3], "{name}: no bleed from entity `ab`");
        store
            .write(
                0,
                &[
                    events("cart", "a", 4, 2),
                    Write::Snapshot { persistence_id: "cart".into(), entity_id: "a".into(), sequence: 5, snapshot: "S5".into() },
                    events("cart", "a", 6, 1),
                ],
                false,
            )
            .unwrap();
        let j = store.read_journal("cart", "a").unwrap();
        assert_eq!(j.snapshot, Some((5, Bytes::from("S5"))), "{name}");
        assert_eq!(j.events, vec![(6, Bytes::from("a-6"))], "{name}");
        assert_eq!(j.last_sequence(), 6);
        assert_eq!(store.read_journal("cart", "nobody").unwrap(), Journal::default(), "{name}");
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn values_put_and_delete() {
    for (name, store, dir) in stores() {
        assert_eq!(store.read_value("v", "x").unwrap(), None, "{name}");
        store.write(0, &[Write::PutValue { persistence_id: "v".into(), entity_id: "x".into(), value: "1".into() }], true).unwrap();
        assert_eq!(store.read_value("v", "x").unwrap(), Some(Bytes::from("1")), "{name}");
        store.write(0, &[Write::DeleteValue { persistence_id: "v".into(), entity_id: "x".into() }], true).unwrap();
        assert_eq!(store.read_value("v", "x").unwrap(), None, "{name}");
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn tag_log_orders_events_by_global_offset_and_survives_reopen() {
    let dir = std::env::temp_dir().join(format!("massa-store-tags-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let store = EntityStore::open(Box::new(RocksStore::open(&dir).unwrap()), None).unwrap();
        store.write(0, &[events("cart", "a", 1, 2), events("other", "z", 1, 1)], true).unwrap();
        store.write(0, &[events("cart", "b", 1, 1)], true).unwrap();
    }
    let store = EntityStore::open(Box::new(RocksStore::open(&dir).unwrap()), None).unwrap();
    store.write(0, &[events("cart", "a", 3, 1)], true).unwrap();
    let log = store.events_by_tag("cart", 0, 100).unwrap();
    let seen: Vec<_> = log.iter().map(|e| (e.offset, e.entity_id.as_str(), e.sequence)).collect();
    assert_eq!(seen, [(1, "a", 1), (2, "a", 2), (4, "b", 1), (5, "a", 3)]);
    assert_eq!(store.events_by_tag("cart", 4, 1).unwrap()[0].event, Bytes::from("b-1"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_space_guard_refuses_writes_below_the_reserve() {
    let guard = |reserve| Some(SpaceGuard { dir: std::env::temp_dir(), reserve });
    let store = EntityStore::open(Box::new(MemoryStore::default()), guard(0)).unwrap();
    store.write(0, &[events("g", "a", 1, 1)], true).unwrap();
    let store = EntityStore::open(Box::new(MemoryStore::default()), guard(u64::MAX / 2)).unwrap();
    let err = store.write(0, &[events("g", "a", 1, 1)], true).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    assert_eq!(store.read_journal("g", "a").unwrap(), Journal::default(), "nothing written");
}

#[test]
fn consumer_offsets_are_per_group_and_pid_and_lag_counts_only_that_pid() {
    for (name, store, dir) in stores() {
        let watch = store.watch_tags();
        let offset = |pid: &str, group: &str, offset| Write::ConsumerOffset { persistence_id: pid.into(), group: group.into(), offset };
        assert_eq!(store.consumer_offset("cart", "g").unwrap(), 0, "{name}: nothing processed yet");
        store.write(0, &[events("cart", "a", 1, 3), events("other", "z", 1, 2)], true).unwrap();
        assert!(watch.try_recv().is_ok(), "{name}: committing events wakes the watchers");
        store.write(0, &[offset("cart", "g", 2), offset("cart", "h", 1), offset("other", "g", 5)], true).unwrap();
        assert!(watch.try_recv().is_err(), "{name}: offsets alone are no news for tag readers");
        assert_eq!(store.consumer_offset("cart", "g").unwrap(), 2, "{name}");
        assert_eq!(store.consumer_offset("cart", "h").unwrap(), 1, "{name}");
        assert_eq!(store.consumer_offset("other", "g").unwrap(), 5, "{name}");
        assert_eq!(store.count_tagged("cart", 0, 100).unwrap(), 3, "{name}: offsets 4 and 5 are `other`'s");
        assert_eq!(store.count_tagged("cart", 2, 100).unwrap(), 1, "{name}");
        assert_eq!(store.count_tagged("cart", 0, 2).unwrap(), 2, "{name}: capped");
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn crdt_states_overwrite_and_keep_their_tombstone() {
    for (name, store, dir) in stores() {
        let put = |eid: &str, bytes: &'static [u8], folded| Write::CrdtState {
            persistence_id: "c".into(),
            entity_id: eid.into(),
            bytes: Bytes::from_static(bytes),
            folded,
        };
        let delta = |eid: &str, number, bytes: &'static [u8]| Write::CrdtDelta {
            persistence_id: "c".into(),
            entity_id: eid.into(),
            number,
            bytes: Bytes::from_static(bytes),
        };
        let state = |eid: &str| store.read_crdt("c", eid).unwrap().state;
        assert_eq!(store.read_crdt("c", "a").unwrap(), CrdtRecords::default(), "{name}: new");
        store.write(0, &[put("a", b"one", 0), put("ab", b"other", 0)], true).unwrap();
        store.write(0, &[put("a", b"two", 0)], true).unwrap();
        assert_eq!(state("a").as_deref(), Some(&b"two"[..]), "{name}");
        store.write(0, &[delta("a", 1, b"d1"), delta("ab", 1, b"x")], true).unwrap();
        store.write(0, &[delta("a", 2, b"d2")], true).unwrap();
        let records = store.read_crdt("c", "a").unwrap();
        assert_eq!(records.deltas, [Bytes::from("d1"), Bytes::from("d2")], "{name}: in order, none of `ab`'s");
        store.write(0, &[put("a", b"three", 2)], true).unwrap();
        assert_eq!(store.read_crdt("c", "a").unwrap().deltas, Vec::<Bytes>::new(), "{name}: folded into the state");
        store.write(0, &[delta("a", 1, b"d1'")], true).unwrap();
        store.write(0, &[put("a", b"", 1)], true).unwrap();
        assert_eq!(store.read_crdt("c", "a").unwrap(), CrdtRecords { state: Some(Bytes::new()), deltas: vec![] }, "{name}: the tombstone stays");
        assert_eq!(store.read_crdt("c", "ab").unwrap().deltas, [Bytes::from("x")], "{name}");
        assert_eq!(state("ab").as_deref(), Some(&b"other"[..]), "{name}");
        assert_eq!(store.read_value("c", "a").unwrap(), None, "{name}: not a value entity's key");
        drop(store);
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn tagged_events_carry_their_append_time_and_old_entries_none() {
    let us = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
    let kv = MemoryStore::default();
    // A tag entry as builds before append times wrote it, at offset 1.
    let old = vec![
        Op::Put(keys::FORMAT_KEY.to_vec(), keys::FORMAT.to_vec()),
        Op::Put(keys::event("cart", "old", 1), b"old-1".to_vec()),
        Op::Put(keys::tag("cart", 1), keys::tag_value("old", 1, None)),
        Op::Put(keys::writer_offset(0), 1u64.to_be_bytes().to_vec()),
    ];
    kv.commit(old, true).unwrap();
    let store = EntityStore::open(Box::new(kv), None).unwrap();
    let before = us();
    store.write(0, &[events("cart", "a", 1, 2)], true).unwrap();
    let after = us();
    let log = store.events_by_tag("cart", 0, 10).unwrap();
    assert_eq!(log.iter().map(|e| e.offset).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(log[0].appended_us, None, "written before times were kept");
    for e in &log[1..] {
        let t = e.appended_us.expect("appended by this build");
        assert!((before..=after).contains(&t), "{t} outside {before}..={after}");
    }
    assert_eq!(log[1].appended_us, log[2].appended_us, "one batch, one time");
}
