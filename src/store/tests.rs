use bytes::Bytes;

use super::*;

/// The tests' PostgreSQL server, shared with the integration tests.
#[path = "../../tests/support/postgres.rs"]
mod test_postgres;

use test_postgres::Postgres;

/// What a test store lives on, gone when dropped.
enum Backing {
    Nothing,
    Dir(std::path::PathBuf),
    /// Stopped and removed when dropped.
    Server { _server: Postgres },
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Backing::Dir(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("massa-store-{tag}-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn postgres(pg: &Postgres) -> EntityStore {
    EntityStore::open(Box::new(PostgresStore::open(&pg.url()).unwrap()), None).unwrap()
}

/// Every backend, each fresh.
fn stores() -> Vec<(&'static str, EntityStore, Backing)> {
    let dir = temp_dir("test");
    let pg = Postgres::start();
    vec![
        ("memory", EntityStore::open(Box::new(MemoryStore::default()), None).unwrap(), Backing::Nothing),
        ("rocksdb", EntityStore::open(Box::new(RocksStore::open(&dir).unwrap()), None).unwrap(), Backing::Dir(dir)),
        ("postgres", postgres(&pg), Backing::Server { _server: pg }),
    ]
}

/// Opens one backend's store (again).
type Open = Box<dyn Fn() -> EntityStore>;

/// The durable backends, as a way to open each one again.
fn reopenable() -> Vec<(&'static str, Open, Backing)> {
    let dir = temp_dir("reopen");
    let pg = Postgres::start();
    let url = pg.url();
    let rocks = dir.clone();
    vec![
        ("rocksdb", Box::new(move || EntityStore::open(Box::new(RocksStore::open(&rocks).unwrap()), None).unwrap()), Backing::Dir(dir)),
        ("postgres", Box::new(move || EntityStore::open(Box::new(PostgresStore::open(&url).unwrap()), None).unwrap()), Backing::Server { _server: pg }),
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
    for (name, store, _backing) in stores() {
        store.write(0, &[], &[events("cart", "a", 1, 3), events("cart", "ab", 1, 1)], true).unwrap();
        let j = store.read_journal("cart", "a").unwrap();
        assert_eq!(j.snapshot, None, "{name}");
        assert_eq!(j.events.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3], "{name}: no bleed from entity `ab`");
        store
            .write(
                0,
                &[],
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
    }
}

#[test]
fn values_put_and_delete() {
    for (name, store, _backing) in stores() {
        assert_eq!(store.read_value("v", "x").unwrap(), None, "{name}");
        store.write(0, &[], &[Write::PutValue { persistence_id: "v".into(), entity_id: "x".into(), value: "1".into() }], true).unwrap();
        assert_eq!(store.read_value("v", "x").unwrap(), Some(Bytes::from("1")), "{name}");
        store.write(0, &[], &[Write::DeleteValue { persistence_id: "v".into(), entity_id: "x".into() }], true).unwrap();
        assert_eq!(store.read_value("v", "x").unwrap(), None, "{name}");
    }
}

#[test]
fn tag_log_orders_events_by_global_offset_and_survives_reopen() {
    for (name, open, _backing) in reopenable() {
        {
            let store = open();
            store.write(0, &[], &[events("cart", "a", 1, 2), events("other", "z", 1, 1)], true).unwrap();
            store.write(0, &[], &[events("cart", "b", 1, 1)], true).unwrap();
        }
        let store = open();
        store.write(0, &[], &[events("cart", "a", 3, 1)], true).unwrap();
        let log = store.events_by_tag("cart", 0, 100).unwrap();
        let seen: Vec<_> = log.iter().map(|e| (e.offset, e.entity_id.as_str(), e.sequence)).collect();
        assert_eq!(seen, [(1, "a", 1), (2, "a", 2), (4, "b", 1), (5, "a", 3)], "{name}");
        assert_eq!(store.events_by_tag("cart", 4, 1).unwrap()[0].event, Bytes::from("b-1"), "{name}");
    }
}

#[test]
fn the_space_guard_refuses_writes_below_the_reserve() {
    let guard = |reserve| Some(SpaceGuard { dir: std::env::temp_dir(), reserve });
    let store = EntityStore::open(Box::new(MemoryStore::default()), guard(0)).unwrap();
    store.write(0, &[], &[events("g", "a", 1, 1)], true).unwrap();
    let store = EntityStore::open(Box::new(MemoryStore::default()), guard(u64::MAX / 2)).unwrap();
    let err = store.write(0, &[], &[events("g", "a", 1, 1)], true).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    assert_eq!(store.read_journal("g", "a").unwrap(), Journal::default(), "nothing written");
}

#[test]
fn consumer_offsets_are_per_group_and_pid_and_lag_counts_only_that_pid() {
    for (name, store, _backing) in stores() {
        let watch = store.watch_tags();
        let offset = |pid: &str, group: &str, offset| Write::ConsumerOffset { persistence_id: pid.into(), group: group.into(), offset };
        assert_eq!(store.consumer_offset("cart", "g").unwrap(), 0, "{name}: nothing processed yet");
        store.write(0, &[], &[events("cart", "a", 1, 3), events("other", "z", 1, 2)], true).unwrap();
        assert!(watch.try_recv().is_ok(), "{name}: committing events wakes the watchers");
        store.write(0, &[], &[offset("cart", "g", 2), offset("cart", "h", 1), offset("other", "g", 5)], true).unwrap();
        assert!(watch.try_recv().is_err(), "{name}: offsets alone are no news for tag readers");
        assert_eq!(store.consumer_offset("cart", "g").unwrap(), 2, "{name}");
        assert_eq!(store.consumer_offset("cart", "h").unwrap(), 1, "{name}");
        assert_eq!(store.consumer_offset("other", "g").unwrap(), 5, "{name}");
        assert_eq!(store.count_tagged("cart", 0, 100).unwrap(), 3, "{name}: offsets 4 and 5 are `other`'s");
        assert_eq!(store.count_tagged("cart", 2, 100).unwrap(), 1, "{name}");
        assert_eq!(store.count_tagged("cart", 0, 2).unwrap(), 2, "{name}: capped");
    }
}

#[test]
fn crdt_states_overwrite_and_keep_their_tombstone() {
    for (name, store, _backing) in stores() {
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
        store.write(0, &[], &[put("a", b"one", 0), put("ab", b"other", 0)], true).unwrap();
        store.write(0, &[], &[put("a", b"two", 0)], true).unwrap();
        assert_eq!(state("a").as_deref(), Some(&b"two"[..]), "{name}");
        store.write(0, &[], &[delta("a", 1, b"d1"), delta("ab", 1, b"x")], true).unwrap();
        store.write(0, &[], &[delta("a", 2, b"d2")], true).unwrap();
        let records = store.read_crdt("c", "a").unwrap();
        assert_eq!(records.deltas, [Bytes::from("d1"), Bytes::from("d2")], "{name}: in order, none of `ab`'s");
        store.write(0, &[], &[put("a", b"three", 2)], true).unwrap();
        assert_eq!(store.read_crdt("c", "a").unwrap().deltas, Vec::<Bytes>::new(), "{name}: folded into the state");
        store.write(0, &[], &[delta("a", 1, b"d1'")], true).unwrap();
        store.write(0, &[], &[put("a", b"", 1)], true).unwrap();
        assert_eq!(store.read_crdt("c", "a").unwrap(), CrdtRecords { state: Some(Bytes::new()), deltas: vec![] }, "{name}: the tombstone stays");
        assert_eq!(store.read_crdt("c", "ab").unwrap().deltas, [Bytes::from("x")], "{name}");
        assert_eq!(state("ab").as_deref(), Some(&b"other"[..]), "{name}");
        assert_eq!(store.read_value("c", "a").unwrap(), None, "{name}: not a value entity's key");
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
    kv.commit(old, &[], true).unwrap();
    let store = EntityStore::open(Box::new(kv), None).unwrap();
    let before = us();
    store.write(0, &[], &[events("cart", "a", 1, 2)], true).unwrap();
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

#[test]
fn a_second_writer_of_an_event_fails_its_whole_batch_and_forks_nothing() {
    let value = |v: &'static str| Write::PutValue { persistence_id: "v".into(), entity_id: "x".into(), value: v.into() };
    let pg = Postgres::start();
    let first = postgres(&pg);
    first.write(0, &[], &[events("cart", "a", 1, 2)], true).unwrap();
    // Opened after that commit, so its tag-log offsets start past the
    // first writer's: only the event's key collides.
    let second = postgres(&pg);
    let mut forked = events("cart", "a", 2, 1);
    if let Write::Events { events, .. } = &mut forked {
        events[0] = Bytes::from("forked-2");
    }
    let err = second.write(0, &[], &[value("lost"), forked], true).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
    for store in [&first, &second] {
        let journal = store.read_journal("cart", "a").unwrap();
        assert_eq!(journal.events, [(1, Bytes::from("a-1")), (2, Bytes::from("a-2"))], "the first writer's journal, untouched");
        assert_eq!(store.read_value("v", "x").unwrap(), None, "nothing of the failed batch applied");
    }
    second.write(0, &[], &[events("cart", "a", 3, 1)], true).unwrap();
    assert_eq!(first.read_journal("cart", "a").unwrap().last_sequence(), 3, "the next sequence is free for either");

    // The memory store keeps the same rule within its one process.
    let memory = EntityStore::open(Box::new(MemoryStore::default()), None).unwrap();
    memory.write(0, &[], &[events("cart", "a", 1, 1)], true).unwrap();
    let err = memory.write(0, &[], &[value("lost"), events("cart", "a", 1, 1)], true).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
    assert_eq!(memory.read_value("v", "x").unwrap(), None, "memory: all or nothing");
}

#[test]
fn the_postgres_schema_is_versioned_and_a_newer_one_is_refused() {
    let pg = Postgres::start();
    let versions = |client: &mut ::postgres::Client| -> Vec<i32> {
        client.query("SELECT version FROM massa_schema ORDER BY version", &[]).unwrap().iter().map(|r| r.get(0)).collect()
    };
    drop(PostgresStore::open(&pg.url()).unwrap());
    drop(PostgresStore::open(&pg.url()).unwrap());
    let mut client = ::postgres::Client::connect(&pg.url(), ::postgres::NoTls).unwrap();
    assert_eq!(versions(&mut client), [1, 2, 3], "created once, then found");
    client.execute("INSERT INTO massa_schema (version) VALUES (99)", &[]).unwrap();
    let err = PostgresStore::open(&pg.url()).err().expect("a newer schema is refused");
    assert!(err.to_string().contains("schema version 99"), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn an_unreachable_postgres_is_named_in_the_error() {
    let mut pg = Postgres::start();
    let url = pg.url();
    pg.stop();
    let err = PostgresStore::open(&url).err().expect("nothing listens");
    let text = err.to_string();
    assert!(text.contains("PostgreSQL at 127.0.0.1:") && text.contains("connecting failed"), "{text}");
}

#[test]
fn a_batch_under_a_superseded_lease_epoch_fails_in_its_own_transaction() {
    use std::{sync::Arc, time::Duration};
    let pg = Postgres::start();
    let kv = Arc::new(PostgresStore::open(&pg.url()).unwrap());
    let store = EntityStore::open(Box::new(kv.clone()), None).unwrap();
    let long = Duration::from_secs(60);
    let epoch = kv.acquire_lease(7, "proxy-a", long).unwrap().expect("a free shard");
    let a = Fence { shard: 7, epoch };
    store.write(0, &[a], &[events("cart", "a", 1, 1)], true).unwrap();
    assert_eq!(kv.acquire_lease(7, "proxy-b", long).unwrap(), Err("proxy-a".to_owned()), "held and unexpired");
    assert_eq!(kv.renew_leases("proxy-a", &[a], long).unwrap(), [7]);

    // A releases, B takes over: the epoch moves on and A's fence no longer holds.
    kv.release_leases("proxy-a", &[a]).unwrap();
    let b = Fence { shard: 7, epoch: kv.acquire_lease(7, "proxy-b", long).unwrap().expect("released") };
    assert!(b.epoch > a.epoch, "{b:?} after {a:?}");
    let value = Write::PutValue { persistence_id: "v".into(), entity_id: "x".into(), value: "stale".into() };
    let err = store.write(0, &[a], &[value, events("cart", "a", 2, 1)], true).unwrap_err();
    assert!(err.to_string().contains("lease lost"), "{err}");
    assert!(err.to_string().contains("owner proxy-b"), "{err}");
    assert_eq!(store.read_journal("cart", "a").unwrap().last_sequence(), 1, "no event of the stale batch");
    assert_eq!(store.read_value("v", "x").unwrap(), None, "nothing of the stale batch");
    assert!(kv.renew_leases("proxy-a", &[a], long).unwrap().is_empty(), "A's renewal finds it lost");
    store.write(0, &[b], &[events("cart", "a", 2, 1)], true).unwrap();

    // A fence naming two shards needs both.
    let other = Fence { shard: 8, epoch: kv.acquire_lease(8, "proxy-b", long).unwrap().unwrap() };
    let err = store.write(0, &[other, a], &[events("cart", "z", 1, 1)], true).unwrap_err();
    assert!(err.to_string().contains("shard 7"), "{err}");
    assert_eq!(store.read_journal("cart", "z").unwrap().last_sequence(), 0);
}

#[test]
fn an_expired_lease_is_taken_over_and_the_shard_count_is_fixed_once() {
    use std::time::{Duration, Instant};
    let pg = Postgres::start();
    let kv = PostgresStore::open(&pg.url()).unwrap();
    assert_eq!(kv.settle_shards(64).unwrap(), 64);
    assert_eq!(kv.settle_shards(1024).unwrap(), 64, "the first start decides");
    let first = kv.acquire_lease(3, "proxy-a", Duration::from_millis(200)).unwrap().unwrap();
    assert_eq!(kv.acquire_lease(3, "proxy-a", Duration::from_millis(200)).unwrap(), Ok(first + 1), "its own: re-taken, epoch bumped");
    // Bounded wait for the database clock to pass the expiry.
    let start = Instant::now();
    let taken = loop {
        match kv.acquire_lease(3, "proxy-b", Duration::from_secs(60)).unwrap() {
            Ok(epoch) => break epoch,
            Err(owner) => assert_eq!(owner, "proxy-a"),
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the lease never expired");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(taken, first + 2);
}

#[test]
fn proxies_sharing_a_database_number_the_tag_log_without_gaps_or_collisions() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pg = Postgres::start();
    // Three proxies' stores, each with two storage writers, all appending
    // to one persistence id at once (plus a value write in some batches).
    let stores: Vec<EntityStore> = (0..3).map(|_| postgres(&pg)).collect();
    const BATCHES: u64 = 40;
    let writing = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let mut writers = Vec::new();
        for (p, store) in stores.iter().enumerate() {
            for w in 0..2u16 {
                writers.push(scope.spawn(move || {
                    let eid = format!("p{p}w{w}");
                    for n in 0..BATCHES {
                        let mut batch = vec![events("cart", &eid, 2 * n + 1, 2)];
                        if n % 3 == 0 {
                            batch.push(Write::PutValue { persistence_id: "v".into(), entity_id: eid.clone(), value: "x".into() });
                        }
                        store.write(w, &[], &batch, true).unwrap();
                    }
                }));
            }
        }
        // A reader while they write: every page it sees starts at 1 and
        // has no gap, so a consumer never skips an offset filled later.
        let reader = scope.spawn(|| {
            let mut reads = 0;
            while writing.load(Ordering::Relaxed) && reads < 10_000 {
                let log = stores[0].events_by_tag("cart", 1, 100_000).unwrap();
                assert!(log.iter().enumerate().all(|(i, e)| e.offset == i as u64 + 1), "a gap in {:?}", log.iter().map(|e| e.offset).collect::<Vec<_>>());
                reads += 1;
            }
        });
        for writer in writers {
            writer.join().unwrap();
        }
        writing.store(false, Ordering::Relaxed);
        reader.join().unwrap();
    });
    let log = stores[2].events_by_tag("cart", 1, 100_000).unwrap();
    assert_eq!(log.iter().map(|e| e.offset).collect::<Vec<_>>(), (1..=6 * 2 * BATCHES).collect::<Vec<_>>(), "every event once, offsets 1..=N");
    for eid in ["p0w0", "p1w1", "p2w0"] {
        let seqs: Vec<u64> = log.iter().filter(|e| e.entity_id == eid).map(|e| e.sequence).collect();
        assert_eq!(seqs, (1..=2 * BATCHES).collect::<Vec<_>>(), "entity {eid}'s events in order in the tag log");
    }
    // A real second writer of an event still fails its whole batch.
    let err = stores[1].write(0, &[], &[events("cart", "p0w0", 2, 1)], true).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
}

#[test]
fn the_tag_log_counter_continues_after_offsets_written_before_it_existed() {
    let pg = Postgres::start();
    let store = postgres(&pg);
    store.write(0, &[], &[events("cart", "a", 1, 1)], true).unwrap();
    // Back to schema version 2, with entries up to offset 41 in the log,
    // as a proxy of the previous release left them.
    let mut client = ::postgres::Client::connect(&pg.url(), ::postgres::NoTls).unwrap();
    client.batch_execute("DROP TABLE massa_tag_offset; DELETE FROM massa_schema WHERE version = 3").unwrap();
    let tag = keys::tag("other", 41);
    client.execute("INSERT INTO massa_kv (key, value) VALUES ($1, $2)", &[&tag, &keys::tag_value("z", 1, None)]).unwrap();
    drop(store);
    let store = postgres(&pg);
    store.write(0, &[], &[events("cart", "b", 1, 1)], true).unwrap();
    let log = store.events_by_tag("cart", 1, 10).unwrap();
    assert_eq!(log.iter().map(|e| (e.offset, e.entity_id.as_str())).collect::<Vec<_>>(), [(1, "a"), (42, "b")]);
}
