//! Criterion benches of the per-call hot path. Each group's first line says
//! what it measures. Run: `cargo bench --bench hot_path`.

use bytes::Bytes;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;

use massa::discovery::{spec, Acceptance, EntityKind};
use massa::grpc::{encode_message, Decoder};
use massa::proto::cloudstate::action::ActionCommand;
use massa::proto::cloudstate::{Entity, EntitySpec, ServiceInfo};
use massa::proto::example::echo::EchoRequest;
use massa::proto::google::protobuf::Any;

fn request_bytes(len: usize) -> Bytes {
    EchoRequest { text: "x".repeat(len), ..Default::default() }.encode_to_vec().into()
}

/// gRPC length-prefixed framing: encode one message, and parse messages out
/// of h2 DATA chunks (whole, and split across two chunks).
fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("grpc_frame");
    for len in [32usize, 4096] {
        let payload = request_bytes(len);
        let (head, tail) = encode_message(payload.clone());
        let wire: Bytes = [head.as_ref(), tail.as_deref().unwrap_or_default()].concat().into();
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("encode/{len}"), |b| b.iter(|| encode_message(black_box(payload.clone()))));
        g.bench_function(format!("decode_whole/{len}"), |b| {
            b.iter_batched(
                || Decoder::new(1 << 24),
                |mut d| {
                    d.push(wire.clone());
                    d.next_message().unwrap().unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        let (first, second) = (wire.slice(..wire.len() / 2), wire.slice(wire.len() / 2..));
        g.bench_function(format!("decode_split/{len}"), |b| {
            b.iter_batched(
                || Decoder::new(1 << 24),
                |mut d| {
                    d.push(first.clone());
                    assert!(d.next_message().unwrap().is_none());
                    d.push(second.clone());
                    d.next_message().unwrap().unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Wrapping the client's request bytes into `ActionCommand{payload: Any}`
/// and framing it for the function (what every action call pays).
fn any_wrapping(c: &mut Criterion) {
    let payload = request_bytes(32);
    c.bench_function("any_wrap/action_command", |b| {
        b.iter(|| {
            let command = ActionCommand {
                service_name: "example.echo.Echo".into(),
                name: "Say".into(),
                payload: Some(Any { type_url: "type.googleapis.com/example.echo.EchoRequest".into(), value: payload.clone() }),
                metadata: None,
            };
            massa::grpc::encode_prost(black_box(&command))
        })
    });
}

/// Route lookup: `:path` → method route, for a hit and a miss.
fn route_lookup(c: &mut Criterion) {
    let entity = |service: &str, id: &str| Entity {
        entity_type: EntityKind::Action.protocol().into(),
        service_name: service.into(),
        persistence_id: id.into(),
        passivation_strategy: None,
    };
    let spec_msg = EntitySpec {
        proto: Bytes::from_static(massa::proto::EXAMPLE_DESCRIPTORS),
        entities: vec![entity("example.echo.Echo", "echo")],
        service_info: Some(ServiceInfo { protocol_major_version: 0, protocol_minor_version: 2, ..Default::default() }),
    };
    let accept = Acceptance { strict_protocol: true, supported: vec![EntityKind::Action] };
    let accept = Acceptance { supported: vec![EntityKind::Action, EntityKind::EventSourced, EntityKind::ValueEntity], ..accept };
    let router = spec::validate(&spec_msg, &accept).expect("example spec is valid").router;
    c.bench_function("route_lookup/hit", |b| b.iter(|| router.lookup(black_box("/example.echo.Echo/Chat")).is_some()));
    c.bench_function("route_lookup/miss", |b| b.iter(|| router.lookup(black_box("/example.echo.Echo/Nope")).is_some()));
}

/// Entity id from raw request bytes (wire scan, no decode), one string key
/// and a composite of three keys.
fn entity_key(c: &mut Criterion) {
    use massa::entity::key::{extract, KeyField, KeyKind};
    use massa::proto::com::example::shoppingcart::AddLineItem;
    let add = AddLineItem { user_id: "user-12345".into(), product_id: "apple".into(), name: "Apple".into(), quantity: 3 };
    let bytes = add.encode_to_vec();
    let one = [KeyField { number: 1, kind: KeyKind::String }];
    let three = [
        KeyField { number: 1, kind: KeyKind::String },
        KeyField { number: 2, kind: KeyKind::String },
        KeyField { number: 4, kind: KeyKind::Signed },
    ];
    c.bench_function("entity_key/one_string", |b| b.iter(|| extract(black_box(&bytes), &one).unwrap()));
    c.bench_function("entity_key/three_fields", |b| b.iter(|| extract(black_box(&bytes), &three).unwrap()));
}

/// Cross-core hop: a command's bytes over a bounded flume channel to a
/// thread, the answer back on a oneshot (the mailbox mechanism), awaited
/// on a monoio executor as the worker does.
fn mailbox_round_trip(c: &mut Criterion) {
    use futures_channel::oneshot;
    let (tx, rx) = flume::bounded::<(Bytes, oneshot::Sender<Bytes>)>(4096);
    let owner = std::thread::spawn(move || {
        for (payload, reply) in rx.iter() {
            let _ = reply.send(payload);
        }
    });
    let payload = request_bytes(32);
    c.bench_function("mailbox/round_trip", |b| {
        b.iter_custom(|iters| {
            let work = async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let (reply, answer) = oneshot::channel();
                    tx.send_async((payload.clone(), reply)).await.unwrap();
                    black_box(answer.await.unwrap());
                }
                start.elapsed()
            };
            massa::runtime::block_on(massa::config::IoDriver::Epoll, work).unwrap().0
        })
    });
    drop(tx);
    owner.join().unwrap();
}

/// One group-commit batch of 64 single-event writes (64-byte events), as a
/// storage thread applies it: RocksDB without fsync, RocksDB with fsync,
/// and the in-memory store.
fn store_batch(c: &mut Criterion) {
    use massa::store::{EntityStore, MemoryStore, RocksStore, Write};
    let dir = std::env::temp_dir().join(format!("massa-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stores = [
        ("rocksdb", EntityStore::open(Box::new(RocksStore::open(&dir).unwrap()), None).unwrap()),
        ("memory", EntityStore::open(Box::new(MemoryStore::default()), None).unwrap()),
    ];
    let event = Bytes::from(vec![7u8; 64]);
    let mut g = c.benchmark_group("store_batch64");
    g.throughput(Throughput::Elements(64));
    for (name, store) in &stores {
        for sync in [false, true] {
            if *name == "memory" && sync {
                continue;
            }
            let mut seq = 0u64;
            g.bench_function(format!("{name}/sync={sync}"), |b| {
                b.iter(|| {
                    seq += 1;
                    let batch: Vec<Write> = (0..64)
                        .map(|i| Write::Events {
                            persistence_id: "cart".into(),
                            entity_id: format!("user-{i}"),
                            first_sequence: seq,
                            events: vec![event.clone()],
                        })
                        .collect();
                    store.write(0, &[], &batch, sync).unwrap()
                })
            });
        }
    }
    g.finish();
    drop(stores);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, frames, any_wrapping, route_lookup, entity_key, mailbox_round_trip, store_batch);
criterion_main!(benches);
