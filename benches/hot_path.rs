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
                    d.next().unwrap().unwrap()
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
                    assert!(d.next().unwrap().is_none());
                    d.push(second.clone());
                    d.next().unwrap().unwrap()
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
    let router = spec::validate(&spec_msg, &accept).expect("echo spec is valid").router;
    c.bench_function("route_lookup/hit", |b| b.iter(|| router.lookup(black_box("/example.echo.Echo/Chat")).is_some()));
    c.bench_function("route_lookup/miss", |b| b.iter(|| router.lookup(black_box("/example.echo.Echo/Nope")).is_some()));
}

criterion_group!(benches, frames, any_wrapping, route_lookup);
criterion_main!(benches);
