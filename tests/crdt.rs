//! CRDT entities end to end: the real `massa` binary in front of the TCK
//! model's CRDTs (durability across a restart, streamed calls and their
//! cancellation, delete), and in front of a scripted user function that
//! answers with bad input, which must be reported, must restart the entity
//! and must leave nothing of itself in the stored state.

mod support;

use std::{
    rc::Rc,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use massa::http2::server::Incoming;
use prost::Message;

use massa::config::IoDriver;
use massa::discovery::routes::CRDT_PROTOCOL;
use massa::grpc::{budget::Budget, encode_prost, Code, MessageReader, Responder, Status};
use massa::proto::cloudstate::crdt::{
    crdt_delta::Delta, crdt_state_action, crdt_stream_in, crdt_stream_out, CrdtDelta, CrdtReply, CrdtStateAction, CrdtStreamIn,
    CrdtStreamOut, GCounterDelta, OrMapDelta, OrMapEntryDelta, PnCounterDelta,
};
use massa::proto::cloudstate::tck::model::crdt::{
    or_map_update, request_action::Action as A, state::Value, update::Update as U, Delete, GCounterUpdate, GCounterValue,
    OrMapEntryUpdate, OrMapEntryValue, OrMapUpdate, OrMapValue, PnCounterUpdate, PnCounterValue, Request, RequestAction, Response,
    State, StreamedRequest, Update,
};
use massa::proto::cloudstate::{client_action, ClientAction, Entity, EntitySpec, Reply, UserFunctionError};
use massa::proto::google::protobuf::{Any, Empty};
use massa::runtime::Notify;
use massa::server::{serve_h2, H2Options, Service};
use massa::userfn::CallResponse;
use support::*;

const MODEL: &str = "cloudstate.tck.model.crdt.CrdtTckModel";

fn q(id: &str, actions: Vec<A>) -> Request {
    Request { id: id.into(), actions: actions.into_iter().map(|a| RequestAction { action: Some(a) }).collect() }
}
fn update(u: U) -> A {
    A::Update(Update { update: Some(u), ..Default::default() })
}
fn gcounter(increment: u64) -> A {
    update(U::Gcounter(GCounterUpdate { increment }))
}
fn state(value: Value) -> Response {
    Response { state: Some(State { value: Some(value) }) }
}

async fn process(c: &Client, r: &Request) -> Result<Response, Status> {
    let (_, msgs, status) = c.call(&format!("/{MODEL}/Process"), None, vec![encode_prost(r)]).await;
    status?;
    Ok(Response::decode(msgs[0].clone()).unwrap())
}

/// A `ProcessStreamed` call, open.
async fn streamed(c: &Client, r: &StreamedRequest) -> (massa::http2::SendStream, massa::http2::client::ResponseFuture) {
    let pool = c.pool();
    let (mut send, response) = pool.open(&pool.endpoint(&format!("/{MODEL}/ProcessStreamed")), None).await.unwrap();
    send.send_data(encode_prost(r), true).unwrap();
    (send, response)
}

async fn next(r: &mut CallResponse) -> Result<Option<Response>, Status> {
    Ok(r.message().await?.map(|m| Response::decode(m).unwrap()))
}

#[test]
fn crdt_states_and_tombstones_survive_a_proxy_restart() {
    let data = TempDir::new("crdt");
    states_and_tombstones_survive_a_restart(&["--data-dir", data.path()]);
}

/// The same on PostgreSQL, where every write is fenced by its shard's
/// lease (the restarted proxy has the same name, so it takes them back).
#[test]
fn crdt_states_and_tombstones_survive_a_proxy_restart_on_postgres() {
    let pg = support::postgres::Postgres::start();
    let url = pg.url();
    states_and_tombstones_survive_a_restart(&["--store", "postgres", "--postgres-url", &url, "--advertise-address", "replica-1:9000"]);
}

fn states_and_tombstones_survive_a_restart(flags: &[&str]) {
    let fn_port = free_port();
    let _f = start_tck_model_with(fn_port, &["--only", "crdt"]);
    let map_entry = |n| OrMapEntryValue { key: "GCounter-a".into(), value: Some(State { value: Some(Value::Gcounter(GCounterValue { value: n })) }) };
    let bump = |n| {
        let u = Update { update: Some(U::Gcounter(GCounterUpdate { increment: n })), ..Default::default() };
        let entry = OrMapEntryUpdate { key: "GCounter-a".into(), update: Some(Box::new(u)) };
        update(U::Ormap(Box::new(OrMapUpdate { action: Some(or_map_update::Action::Update(Box::new(entry))) })))
    };
    let m = start_massa(fn_port, flags);
    run(async {
        let c = Client::new(m.port);
        let pn = |change| update(U::Pncounter(PnCounterUpdate { change }));
        let r = process(&c, &q("PNCounter-d", vec![pn(5), pn(-2)])).await.unwrap();
        assert_eq!(r, state(Value::Pncounter(PnCounterValue { value: 3 })));
        let r = process(&c, &q("ORMap-d", vec![bump(2)])).await.unwrap();
        assert_eq!(r, state(Value::Ormap(OrMapValue { entries: vec![map_entry(2)] })));
        process(&c, &q("GCounter-d", vec![gcounter(1)])).await.unwrap();
        process(&c, &q("GCounter-d", vec![A::Delete(Delete {})])).await.unwrap();
        let err = process(&c, &q("GCounter-d", vec![])).await.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "Entity deleted"));
    });
    drop(m);
    let m = start_massa(fn_port, flags);
    run(async {
        let c = Client::new(m.port);
        let pn = process(&c, &q("PNCounter-d", vec![])).await.unwrap();
        assert_eq!(pn, state(Value::Pncounter(PnCounterValue { value: 3 })), "the counter came back in init");
        let map = process(&c, &q("ORMap-d", vec![bump(3)])).await.unwrap();
        assert_eq!(map, state(Value::Ormap(OrMapValue { entries: vec![map_entry(5)] })), "and the map, typed entries included");
        let err = process(&c, &q("GCounter-d", vec![gcounter(1)])).await.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "Entity deleted"), "the tombstone too");
    });
}

#[test]
fn streamed_calls_follow_the_state_and_cancellation_runs_the_cancel_update() {
    let fn_port = free_port();
    let _f = start_tck_model_with(fn_port, &["--only", "crdt"]);
    let m = start_massa(fn_port, &["--store", "memory"]);
    run(async {
        let c = Client::new(m.port);
        let id = "GCounter-s";
        let g = |value| state(Value::Gcounter(GCounterValue { value }));
        let (_monitor_send, monitor) = streamed(&c, &StreamedRequest { id: id.into(), ..Default::default() }).await;
        let mut monitor = CallResponse::open(monitor, 1 << 20).await.unwrap();
        assert_eq!(next(&mut monitor).await.unwrap(), Some(g(0)));
        // Several calls in flight on one entity: the monitor stays open
        // while unary commands come and go.
        assert_eq!(process(&c, &q(id, vec![gcounter(2)])).await.unwrap(), g(2));
        assert_eq!(next(&mut monitor).await.unwrap(), Some(g(2)));
        // A silent subscriber whose cancellation adds 10.
        let on_cancel = Update { update: Some(U::Gcounter(GCounterUpdate { increment: 10 })), ..Default::default() };
        let silent = StreamedRequest { id: id.into(), cancel_update: Some(on_cancel), empty: true, ..Default::default() };
        let (mut silent_send, _silent) = streamed(&c, &silent).await;
        // Its command is in once a later one has been answered (one stream, in order).
        assert_eq!(process(&c, &q(id, vec![])).await.unwrap(), g(2));
        silent_send.send_reset(massa::http2::Reason::CANCEL);
        assert_eq!(next(&mut monitor).await.unwrap(), Some(g(12)), "the cancel update reached the monitor");
        assert_eq!(process(&c, &q(id, vec![])).await.unwrap(), g(12), "and is the entity's state");
        // Deleting ends the open call and every later command.
        assert_eq!(process(&c, &q(id, vec![A::Delete(Delete {})])).await.unwrap(), g(12));
        let ended = next(&mut monitor).await.unwrap_err();
        assert_eq!((ended.code, ended.message.as_str()), (Code::Unknown, "Entity deleted"));
        let err = process(&c, &q(id, vec![])).await.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "Entity deleted"));
        let (_s, later) = streamed(&c, &StreamedRequest { id: id.into(), ..Default::default() }).await;
        let err = match CallResponse::open(later, 1 << 20).await {
            Ok(mut r) => next(&mut r).await.unwrap_err(),
            Err(status) => status,
        };
        assert_eq!(err.message, "Entity deleted");
    });
}

/// Two proxies on one PostgreSQL, gossiping: a streamed call that reaches
/// the proxy not owning its entity is relayed from the owner — it follows
/// the state changed through either proxy — and cancelling it at the
/// first proxy cancels it at the owner, whose entity runs the cancel
/// update.
#[test]
fn a_streamed_call_at_a_non_owner_is_relayed_from_the_owner_and_cancelled_there() {
    let pg = support::postgres::Postgres::start();
    let url = pg.url();
    let (fa, fb, ga, gb) = (free_port(), free_port(), free_port(), free_port());
    let (_fa, _fb) = (start_tck_model_with(fa, &["--only", "crdt"]), start_tck_model_with(fb, &["--only", "crdt"]));
    let seed = format!("127.0.0.1:{ga}");
    let node = |fn_port, gossip: u16| {
        let gossip = gossip.to_string();
        let flags = ["--store", "postgres", "--postgres-url", &url, "--advertise-address", "127.0.0.1", "--cluster-port", &gossip, "--cluster-seeds", &seed];
        start_massa(fn_port, &flags)
    };
    let (a, b) = (node(fa, ga), node(fb, gb));
    let serving = |m: &Massa| {
        let (_, body) = http_get(m.admin, "/cluster").expect("/cluster answers");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["members"].as_array().unwrap().iter().filter(|m| m["state"] == "serving").count()
    };
    let start = Instant::now();
    while serving(&a) < 2 || serving(&b) < 2 {
        assert!(start.elapsed() < PATIENCE, "the proxies never saw each other serving");
        std::thread::sleep(Duration::from_millis(50));
    }
    run(async {
        let (ca, cb) = (Client::new(a.port), Client::new(b.port));
        let g = |value| state(Value::Gcounter(GCounterValue { value }));
        // An entity B owns: A forwards its commands.
        let mut owned_by_b = None;
        for i in 0..64 {
            let id = format!("GCounter-relay-{i}");
            let before = metric(a.admin, "massa_forwarded_calls_total");
            // Retried while the placement settles on both sides.
            let answer = eventually(&format!("{id} through A"), || async { process(&ca, &q(&id, vec![])).await.ok() }).await;
            assert_eq!(answer, g(0));
            if metric(a.admin, "massa_forwarded_calls_total") > before {
                owned_by_b = Some(id);
                break;
            }
        }
        let id = owned_by_b.expect("B owns none of 64 entities");
        let (_monitor_send, monitor) = streamed(&ca, &StreamedRequest { id: id.clone(), ..Default::default() }).await;
        let mut monitor = CallResponse::open(monitor, 1 << 20).await.unwrap();
        assert_eq!(next(&mut monitor).await.unwrap(), Some(g(0)));
        assert_eq!(process(&cb, &q(&id, vec![gcounter(2)])).await.unwrap(), g(2));
        assert_eq!(next(&mut monitor).await.unwrap(), Some(g(2)), "a change at the owner reaches the relayed stream");
        assert_eq!(process(&ca, &q(&id, vec![gcounter(1)])).await.unwrap(), g(3));
        assert_eq!(next(&mut monitor).await.unwrap(), Some(g(3)), "and one forwarded from A");
        // A second relayed stream, whose cancellation adds 10 at the owner.
        let on_cancel = Update { update: Some(U::Gcounter(GCounterUpdate { increment: 10 })), ..Default::default() };
        let (mut cancelled_send, cancelled) = streamed(&ca, &StreamedRequest { id: id.clone(), cancel_update: Some(on_cancel), ..Default::default() }).await;
        let mut cancelled = CallResponse::open(cancelled, 1 << 20).await.unwrap();
        assert_eq!(next(&mut cancelled).await.unwrap(), Some(g(3)), "the second stream is open at the owner");
        cancelled_send.send_reset(massa::http2::Reason::CANCEL);
        assert_eq!(next(&mut monitor).await.unwrap(), Some(g(13)), "the cancel reached the owner's entity");
        assert_eq!(process(&cb, &q(&id, vec![])).await.unwrap(), g(13));
    });
}

// ---------------------------------------------------------------------------
// Bad input, from a scripted user function. On each stream it answers the
// first command with a good delta (GCounter +3, or an ORMap entry holding
// it), the second with the bad reply its entity id's prefix names, and
// every command after an `init` that carried state with a plain reply.

/// What the scripted function saw.
#[derive(Default)]
struct Seen {
    /// `(entity id, init delta)` per stream.
    inits: Vec<(String, Option<CrdtDelta>)>,
    reported: Vec<String>,
}

struct Scripted(Arc<Mutex<Seen>>);

fn pstr(s: &str) -> Any {
    let mut value = vec![0x0a, s.len() as u8];
    value.extend_from_slice(s.as_bytes());
    Any { type_url: "p.cloudstate.io/string".into(), value: value.into() }
}
fn gdelta(increment: u64) -> CrdtDelta {
    CrdtDelta { delta: Some(Delta::Gcounter(GCounterDelta { increment })) }
}
fn ormap_seed() -> CrdtDelta {
    let added = vec![OrMapEntryDelta { key: Some(pstr("a")), delta: Some(gdelta(3)) }];
    CrdtDelta { delta: Some(Delta::Ormap(OrMapDelta { added, ..Default::default() })) }
}
fn seed(kind: &str) -> CrdtDelta {
    if kind == "ormap" {
        ormap_seed()
    } else {
        gdelta(3)
    }
}

fn scripted_reply(kind: &str, command_id: i64, restarted: bool) -> CrdtReply {
    let payload = Some(Any { type_url: format!("type.googleapis.com/{}", "cloudstate.tck.model.crdt.Response"), value: Bytes::new() });
    let client_action = Some(ClientAction { action: Some(client_action::Action::Reply(Reply { payload, metadata: None })) });
    let mut reply = CrdtReply { command_id, client_action, ..Default::default() };
    let update = |delta| Some(CrdtStateAction { write_consistency: 0, action: Some(crdt_state_action::Action::Update(delta)) });
    match (restarted, command_id) {
        (true, _) => {}
        (false, 1) => reply.state_action = update(seed(kind)),
        (false, _) => match kind {
            "wrongtype" => reply.state_action = update(CrdtDelta { delta: Some(Delta::Pncounter(PnCounterDelta { change: 1 })) }),
            "decrement" => reply.state_action = update(gdelta(-1i64 as u64)),
            "streamed" => reply.streamed = true,
            "ormap" => {
                let updated = vec![OrMapEntryDelta { key: Some(pstr("b")), delta: Some(gdelta(1)) }];
                reply.state_action = update(CrdtDelta { delta: Some(Delta::Ormap(OrMapDelta { updated, ..Default::default() })) });
            }
            "unknown" => reply.command_id = 99,
            other => panic!("no script for {other}"),
        },
    }
    reply
}

impl Scripted {
    async fn handle(&self, mut reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
        let (mut kind, mut restarted) = (String::new(), false);
        while let Some(m) = reader.message().await.map_err(|e| Status::new(Code::Internal, format!("{e:?}")))? {
            match CrdtStreamIn::decode(m).unwrap().message {
                Some(crdt_stream_in::Message::Init(init)) => {
                    kind = init.entity_id.split('-').next().unwrap().to_owned();
                    restarted = init.delta.is_some();
                    self.0.lock().unwrap().inits.push((init.entity_id, init.delta));
                }
                Some(crdt_stream_in::Message::Command(c)) => {
                    let out = CrdtStreamOut { message: Some(crdt_stream_out::Message::Reply(scripted_reply(&kind, c.id, restarted))) };
                    responder.send(out.encode_to_vec().into()).await.map_err(|e| Status::new(Code::Cancelled, e.to_string()))?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Service for Scripted {
    async fn call(self: Rc<Self>, request: Incoming, _budget: Rc<Budget>) {
        let path = request.head.get_str(b":path").unwrap_or("").to_owned();
        let mut responder = Responder::new(request.send);
        let reader = MessageReader::new(request.recv, 1 << 20);
        let outcome = match path.as_str() {
            "/cloudstate.EntityDiscovery/discover" => {
                let entity = Entity { entity_type: CRDT_PROTOCOL.into(), service_name: MODEL.into(), ..Default::default() };
                let spec = EntitySpec { proto: Bytes::from_static(massa::proto::TCK_DESCRIPTORS), entities: vec![entity], service_info: None };
                responder.send(spec.encode_to_vec().into()).await.map_err(|e| Status::new(Code::Cancelled, e.to_string()))
            }
            "/cloudstate.EntityDiscovery/reportError" => {
                let error = UserFunctionError::decode(reader.single().await.unwrap()).unwrap();
                self.0.lock().unwrap().reported.push(error.message);
                responder.send(Empty {}.encode_to_vec().into()).await.map_err(|e| Status::new(Code::Cancelled, e.to_string()))
            }
            "/cloudstate.crdt.Crdt/handle" => self.handle(reader, &mut responder).await,
            _ => Err(Status::new(Code::Unimplemented, path)),
        };
        responder.finish(&outcome.err().unwrap_or_else(Status::ok));
    }
}

/// Serves the scripted function on `port` from its own thread.
fn start_scripted(port: u16) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    std::thread::spawn(move || {
        let serve = async move {
            let listener = monoio::net::TcpListener::bind(format!("127.0.0.1:{port}").as_str()).unwrap();
            let service = Rc::new(Scripted(shared));
            while let Ok((stream, _)) = listener.accept().await {
                let options = H2Options::user_function(None);
                monoio::spawn(serve_h2(stream, bytes::BytesMut::new(), service.clone(), Notify::new(), options, Budget::unlimited()));
            }
        };
        let _ = massa::runtime::block_on(IoDriver::Epoll, serve);
    });
    seen
}

#[test]
fn bad_replies_are_reported_restart_the_entity_and_persist_nothing() {
    let fn_port = free_port();
    let seen = start_scripted(fn_port);
    let m = start_massa(fn_port, &["--store", "memory"]);
    let cases = [
        ("wrongtype", "a PNCounter delta cannot change a GCounter"),
        ("decrement", "GCounter increment 18446744073709551615 is a negative int64: a GCounter cannot be decremented"),
        ("streamed", "Received streamed reply for non-streamed command 2"),
        ("ormap", "ORMap has no key p.cloudstate.io/string"),
        ("unknown", "Received reply for unknown command id 99"),
    ];
    run(async {
        let c = Client::new(m.port);
        for (kind, reason) in cases {
            let id = format!("{kind}-1");
            process(&c, &q(&id, vec![])).await.unwrap_or_else(|e| panic!("{kind}: the good reply: {e}"));
            let err = process(&c, &q(&id, vec![])).await.unwrap_err();
            assert_eq!(err.code, Code::Internal, "{kind}: {err}");
            assert!(err.message.contains(reason), "{kind}: {err}");
            eventually(reason, || async { seen.lock().unwrap().reported.iter().any(|r| r.contains(reason)).then_some(()) }).await;
            // Restarted from what was committed before the bad reply.
            process(&c, &q(&id, vec![])).await.unwrap_or_else(|e| panic!("{kind}: after the restart: {e}"));
            let inits: Vec<_> = seen.lock().unwrap().inits.iter().filter(|(e, _)| *e == id).map(|(_, d)| d.clone()).collect();
            assert_eq!(inits, [None, Some(seed(kind))], "{kind}");
        }
    });
}

/// Far more commands than the delta log holds before it is folded into the
/// state record, several folds included: after a restart the set is exact.
#[test]
fn an_orset_changed_by_many_deltas_comes_back_exact_after_a_restart() {
    use massa::proto::cloudstate::tck::model::crdt::{or_set_update, OrSetUpdate, OrSetValue};
    let fn_port = free_port();
    let _f = start_tck_model_with(fn_port, &["--only", "crdt"]);
    let data = TempDir::new("crdt-deltas");
    let flags = ["--data-dir", data.path()];
    let set = |action| update(U::Orset(OrSetUpdate { action: Some(action) }));
    let mut expected = std::collections::BTreeSet::new();
    let m = start_massa(fn_port, &flags);
    run(async {
        let c = Client::new(m.port);
        for i in 0..1500 {
            let mut actions = vec![set(or_set_update::Action::Add(format!("e{i:04}")))];
            expected.insert(format!("e{i:04}"));
            if i % 3 == 2 {
                let gone = format!("e{:04}", i / 2);
                actions.push(set(or_set_update::Action::Remove(gone.clone())));
                expected.remove(&gone);
            }
            process(&c, &q("ORSet-many", actions)).await.unwrap();
        }
    });
    drop(m);
    let m = start_massa(fn_port, &flags);
    run(async {
        let c = Client::new(m.port);
        let Response { state: Some(State { value: Some(Value::Orset(OrSetValue { elements })) }) } =
            process(&c, &q("ORSet-many", vec![])).await.unwrap()
        else {
            panic!("not an ORSet")
        };
        let elements: std::collections::BTreeSet<_> = elements.into_iter().collect();
        assert_eq!(elements.len(), expected.len());
        assert_eq!(elements, expected, "every add and remove, in order");
    });
}
