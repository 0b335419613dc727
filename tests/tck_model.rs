//! `massa-tck-model` spoken to directly over h2, playing the proxy: the
//! discovery answer and one exchange per entity protocol, checked message
//! by message against the TCK vectors (proto/tck/README.md).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prost::Message;

use massa::grpc::{encode_prost, Code};
use massa::proto::cloudstate::action::{action_response, ActionCommand, ActionResponse};
use massa::proto::cloudstate::eventsourced::{
    event_sourced_stream_in, event_sourced_stream_out, EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedStreamIn,
    EventSourcedStreamOut,
};
use massa::proto::cloudstate::tck::model as es;
use massa::proto::cloudstate::tck::model::action as act;
use massa::proto::cloudstate::tck::model::valueentity as ve;
use massa::proto::cloudstate::valueentity::{
    value_entity_action, value_entity_stream_in, value_entity_stream_out, ValueEntityAction, ValueEntityInit, ValueEntityInitState,
    ValueEntityReply, ValueEntityStreamIn, ValueEntityStreamOut, ValueEntityUpdate,
};
use massa::proto::cloudstate::{
    client_action, entity_passivation_strategy::Strategy, ClientAction, Command as EntityCommand, EntitySpec, Failure, Forward, ProxyInfo,
    Reply, SideEffect, UserFunctionError,
};
use massa::proto::google::protobuf::{Any, Empty};
use support::{free_port, run, Client, Proc};

/// Starts the model on a free port and waits until it listens.
fn start_model() -> (Proc, Client) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_massa-tck-model"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning massa-tck-model");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let model = Proc { child, stderr };
    model.must_log("listening on");
    (model, Client::new(port))
}

fn any(type_name: &str, m: &impl Message) -> Any {
    Any { type_url: format!("type.googleapis.com/{type_name}"), value: m.encode_to_vec().into() }
}

fn decode_all<M: Message + Default>(messages: Vec<Bytes>) -> Vec<M> {
    messages.into_iter().map(|m| M::decode(m).expect("decodable response")).collect()
}

#[test]
fn discovery_declares_the_model_services() {
    let (model, client) = start_model();
    run(async {
        let info = ProxyInfo {
            protocol_major_version: 0,
            protocol_minor_version: 2,
            proxy_name: "test".into(),
            proxy_version: "0".into(),
            supported_entity_types: vec!["cloudstate.action.ActionProtocol".into()],
        };
        let (_, messages, status) = client.call("/cloudstate.EntityDiscovery/discover", None, vec![encode_prost(&info)]).await;
        status.unwrap();
        let spec: EntitySpec = decode_all(messages).remove(0);
        let info = spec.service_info.as_ref().unwrap();
        assert_eq!((info.protocol_major_version, info.protocol_minor_version), (0, 2));
        let find = |name: &str| spec.entities.iter().find(|e| e.service_name == name).unwrap_or_else(|| panic!("{name} not declared"));
        for (service, entity_type, persistence_id) in [
            ("cloudstate.tck.model.action.ActionTckModel", "cloudstate.action.ActionProtocol", ""),
            ("cloudstate.tck.model.action.ActionTwo", "cloudstate.action.ActionProtocol", ""),
            ("cloudstate.tck.model.valueentity.ValueEntityTckModel", "cloudstate.valueentity.ValueEntity", "value-entity-tck-model"),
            ("cloudstate.tck.model.valueentity.ValueEntityTwo", "cloudstate.valueentity.ValueEntity", "value-entity-tck-model-two"),
            ("cloudstate.tck.model.valueentity.ValueEntityConfigured", "cloudstate.valueentity.ValueEntity", "value-entity-configured"),
            ("cloudstate.tck.model.EventSourcedTckModel", "cloudstate.eventsourced.EventSourced", "event-sourced-tck-model"),
            ("cloudstate.tck.model.EventSourcedConfigured", "cloudstate.eventsourced.EventSourced", "event-sourced-configured"),
        ] {
            let e = find(service);
            assert_eq!((e.entity_type.as_str(), e.persistence_id.as_str()), (entity_type, persistence_id), "{service}");
            let timeout = e.passivation_strategy.as_ref().and_then(|p| p.strategy.as_ref()).map(|Strategy::Timeout(t)| t.timeout);
            assert_eq!(timeout, service.ends_with("Configured").then_some(100), "{service}");
        }
        for service in ["cloudstate.tck.model.EventSourcedTwo", "cloudstate.tck.model.crdt.CrdtTckModel", "cloudstate.tck.model.crdt.CrdtTwo"] {
            find(service);
        }
        let configured = find("cloudstate.tck.model.crdt.CrdtConfigured");
        assert_eq!(configured.entity_type, "cloudstate.crdt.Crdt");
        assert!(configured.passivation_strategy.is_some());
        let pool = prost_reflect::DescriptorPool::decode(spec.proto.clone()).expect("descriptor set");
        for e in &spec.entities {
            assert!(pool.get_service_by_name(&e.service_name).is_some(), "{} not in the descriptors", e.service_name);
        }

        let error = UserFunctionError { message: "something broke".into() };
        let (_, messages, status) = client.call("/cloudstate.EntityDiscovery/reportError", None, vec![encode_prost(&error)]).await;
        status.unwrap();
        assert_eq!(decode_all::<Empty>(messages).len(), 1);

        // Garbage instead of a ProxyInfo.
        let (_, _, status) = client.call("/cloudstate.EntityDiscovery/discover", None, vec![encode_prost(&Any {
            type_url: "x".into(),
            value: vec![0xff; 3].into(),
        })])
        .await;
        let status = status.unwrap_err();
        assert_eq!(status.code, Code::InvalidArgument, "{status}");
    });
    model.must_log("reportError: something broke");
}

const A_MODEL: &str = "cloudstate.tck.model.action.ActionTckModel";
const A_TWO: &str = "cloudstate.tck.model.action.ActionTwo";

fn a_request(groups: Vec<Vec<act::process_step::Step>>) -> act::Request {
    act::Request {
        groups: groups
            .into_iter()
            .map(|g| act::ProcessGroup { steps: g.into_iter().map(|s| act::ProcessStep { step: Some(s) }).collect() })
            .collect(),
    }
}

fn a_reply(message: &str, side_effects: Vec<SideEffect>) -> ActionResponse {
    ActionResponse {
        response: Some(action_response::Response::Reply(Reply {
            payload: Some(any("cloudstate.tck.model.action.Response", &act::Response { message: message.into() })),
            metadata: None,
        })),
        side_effects,
    }
}

#[test]
fn action_exchanges() {
    use act::process_step::Step;
    let (_model, client) = start_model();
    run(async {
        let rep = |m: &str| Step::Reply(act::Reply { message: m.into() });
        let other = |id: &str| any("cloudstate.tck.model.action.OtherRequest", &act::OtherRequest { id: id.into() });

        // Unary: reply with an async side effect.
        let request = a_request(vec![vec![rep(""), Step::Effect(act::SideEffect { id: "another".into(), synchronous: false })]]);
        let command = ActionCommand {
            service_name: A_MODEL.into(),
            name: "ProcessUnary".into(),
            payload: Some(any("cloudstate.tck.model.action.Request", &request)),
            metadata: None,
        };
        let (_, messages, status) = client.call("/cloudstate.action.ActionProtocol/handleUnary", None, vec![encode_prost(&command)]).await;
        status.unwrap();
        let effect = SideEffect { service_name: A_TWO.into(), command_name: "Call".into(), payload: Some(other("another")), synchronous: false, metadata: None };
        assert_eq!(decode_all::<ActionResponse>(messages), vec![a_reply("", vec![effect])]);

        // Bidi: a header command, then requests; one response per group.
        let header = ActionCommand { service_name: A_MODEL.into(), name: "ProcessStreamed".into(), payload: None, metadata: None };
        let body = |r: &act::Request| ActionCommand { payload: Some(any("cloudstate.tck.model.action.Request", r)), ..Default::default() };
        let fwd = a_request(vec![vec![Step::Forward(act::Forward { id: "one".into() })]]);
        let framed = vec![encode_prost(&header), encode_prost(&body(&a_request(vec![vec![rep("X")], vec![rep("Y")]]))), encode_prost(&body(&fwd))];
        let (_, messages, status) = client.call("/cloudstate.action.ActionProtocol/handleStreamed", None, framed).await;
        status.unwrap();
        let forward = ActionResponse {
            response: Some(action_response::Response::Forward(Forward {
                service_name: A_TWO.into(),
                command_name: "Call".into(),
                payload: Some(other("one")),
                metadata: None,
            })),
            side_effects: vec![],
        };
        assert_eq!(decode_all::<ActionResponse>(messages), vec![a_reply("X", vec![]), a_reply("Y", vec![]), forward]);

        // Streamed-in failure: everything folds into one response after the input ends.
        let header = ActionCommand { name: "ProcessStreamedIn".into(), ..header };
        let fail = a_request(vec![vec![Step::Fail(act::Fail { message: "expected failure".into() })]]);
        let framed = vec![encode_prost(&header), encode_prost(&body(&a_request(vec![vec![rep("two")]]))), encode_prost(&body(&fail))];
        let (_, messages, status) = client.call("/cloudstate.action.ActionProtocol/handleStreamedIn", None, framed).await;
        status.unwrap();
        let failure = Failure { command_id: 0, description: "expected failure".into(), restart: false };
        let expected = ActionResponse { response: Some(action_response::Response::Failure(failure)), side_effects: vec![] };
        assert_eq!(decode_all::<ActionResponse>(messages), vec![expected]);

        // A bidi method called as unary is a protocol error.
        let wrong = ActionCommand { name: "ProcessStreamed".into(), ..command };
        let (_, _, status) = client.call("/cloudstate.action.ActionProtocol/handleUnary", None, vec![encode_prost(&wrong)]).await;
        let status = status.unwrap_err();
        assert_eq!(status.code, Code::InvalidArgument, "{status}");
        assert!(status.message.contains("handleStreamed"), "{status}");
    });
}

const V_MODEL: &str = "cloudstate.tck.model.valueentity.ValueEntityTckModel";

#[test]
fn value_entity_exchange() {
    use ve::request_action::Action;
    let (_model, client) = start_model();
    run(async {
        let init = ValueEntityStreamIn {
            message: Some(value_entity_stream_in::Message::Init(ValueEntityInit {
                service_name: V_MODEL.into(),
                entity_id: "entity-1".into(),
                state: Some(ValueEntityInitState { value: None }),
            })),
        };
        let cmd = |id: i64, actions: Vec<Action>| ValueEntityStreamIn {
            message: Some(value_entity_stream_in::Message::Command(EntityCommand {
                entity_id: "entity-1".into(),
                id,
                name: "Process".into(),
                payload: Some(any(
                    "cloudstate.tck.model.valueentity.Request",
                    &ve::Request {
                        id: "entity-1".into(),
                        actions: actions.into_iter().map(|a| ve::RequestAction { action: Some(a) }).collect(),
                    },
                )),
                streamed: false,
                metadata: None,
            })),
        };
        let framed = vec![
            encode_prost(&init),
            encode_prost(&cmd(1, vec![])),
            encode_prost(&cmd(2, vec![Action::Update(ve::Update { value: "one".into() })])),
            encode_prost(&cmd(3, vec![Action::Fail(ve::Fail { message: "expected failure".into() })])),
        ];
        let (_, messages, status) = client.call("/cloudstate.valueentity.ValueEntity/handle", None, framed).await;
        status.unwrap();
        let reply = |id: i64, action: client_action::Action, state_action: Option<value_entity_action::Action>| ValueEntityStreamOut {
            message: Some(value_entity_stream_out::Message::Reply(ValueEntityReply {
                command_id: id,
                client_action: Some(ClientAction { action: Some(action) }),
                side_effects: vec![],
                state_action: state_action.map(|a| ValueEntityAction { action: Some(a) }),
            })),
        };
        let rs = |m: &str| {
            client_action::Action::Reply(Reply {
                payload: Some(any("cloudstate.tck.model.valueentity.Response", &ve::Response { message: m.into() })),
                metadata: None,
            })
        };
        let update = value_entity_action::Action::Update(ValueEntityUpdate {
            value: Some(any("cloudstate.tck.model.valueentity.Persisted", &ve::Persisted { value: "one".into() })),
        });
        let failure = client_action::Action::Failure(Failure { command_id: 3, description: "expected failure".into(), restart: false });
        assert_eq!(
            decode_all::<ValueEntityStreamOut>(messages),
            vec![reply(1, rs(""), None), reply(2, rs("one"), Some(update)), reply(3, failure, None)]
        );

        // A command before init is rejected.
        let (_, messages, status) = client.call("/cloudstate.valueentity.ValueEntity/handle", None, vec![encode_prost(&cmd(1, vec![]))]).await;
        let status = status.unwrap_err();
        assert_eq!((status.code, messages.len()), (Code::InvalidArgument, 0), "{status}");
    });
}

const E_MODEL: &str = "cloudstate.tck.model.EventSourcedTckModel";

#[test]
fn event_sourced_exchange() {
    use es::request_action::Action;
    let (_model, client) = start_model();
    run(async {
        let persisted = |v: &str| any("cloudstate.tck.model.Persisted", &es::Persisted { value: v.into() });
        let init = EventSourcedStreamIn {
            message: Some(event_sourced_stream_in::Message::Init(EventSourcedInit {
                service_name: E_MODEL.into(),
                entity_id: "entity-2".into(),
                snapshot: None,
            })),
        };
        let event = |sequence: i64, v: &str| EventSourcedStreamIn {
            message: Some(event_sourced_stream_in::Message::Event(EventSourcedEvent { sequence, payload: Some(persisted(v)) })),
        };
        let emit = |v: &str| Action::Emit(es::Emit { value: v.into() });
        let cmd = |id: i64, actions: Vec<Action>| EventSourcedStreamIn {
            message: Some(event_sourced_stream_in::Message::Command(EntityCommand {
                entity_id: "entity-2".into(),
                id,
                name: "Process".into(),
                payload: Some(any(
                    "cloudstate.tck.model.Request",
                    &es::Request {
                        id: "entity-2".into(),
                        actions: actions.into_iter().map(|a| es::RequestAction { action: Some(a) }).collect(),
                    },
                )),
                streamed: false,
                metadata: None,
            })),
        };
        // Three replayed events, then: emit 4 + fail (restart), emit 4,5 (snapshot at 5).
        let framed = vec![
            encode_prost(&init),
            encode_prost(&event(1, "1")),
            encode_prost(&event(2, "2")),
            encode_prost(&event(3, "3")),
            encode_prost(&cmd(1, vec![emit("4"), Action::Fail(es::Fail { message: "another failure".into() }), emit("5")])),
            encode_prost(&cmd(2, vec![emit("4"), emit("5")])),
        ];
        let (_, messages, status) = client.call("/cloudstate.eventsourced.EventSourced/handle", None, framed).await;
        status.unwrap();
        let out = |r: EventSourcedReply| EventSourcedStreamOut { message: Some(event_sourced_stream_out::Message::Reply(r)) };
        let failure = EventSourcedReply {
            command_id: 1,
            client_action: Some(ClientAction {
                action: Some(client_action::Action::Failure(Failure { command_id: 1, description: "another failure".into(), restart: true })),
            }),
            ..Default::default()
        };
        let emitted = EventSourcedReply {
            command_id: 2,
            client_action: Some(ClientAction {
                action: Some(client_action::Action::Reply(Reply {
                    payload: Some(any("cloudstate.tck.model.Response", &es::Response { message: "12345".into() })),
                    metadata: None,
                })),
            }),
            side_effects: vec![],
            events: vec![persisted("4"), persisted("5")],
            snapshot: Some(persisted("12345")),
        };
        assert_eq!(decode_all::<EventSourcedStreamOut>(messages), vec![out(failure), out(emitted)]);

        // An unknown service in init is rejected.
        let bad = EventSourcedStreamIn {
            message: Some(event_sourced_stream_in::Message::Init(EventSourcedInit {
                service_name: "no.Such".into(),
                entity_id: "x".into(),
                snapshot: None,
            })),
        };
        let (_, _, status) = client.call("/cloudstate.eventsourced.EventSourced/handle", None, vec![encode_prost(&bad)]).await;
        let status = status.unwrap_err();
        assert_eq!(status.code, Code::InvalidArgument, "{status}");
        assert!(status.message.contains("no.Such"), "{status}");
    });
}

#[test]
fn crdt_exchange() {
    use massa::proto::cloudstate::crdt::{
        crdt_delta, crdt_state_action, crdt_stream_in, crdt_stream_out, CrdtDelete, CrdtDelta, CrdtInit, CrdtReply, CrdtStateAction,
        CrdtStreamIn, CrdtStreamOut, PnCounterDelta,
    };
    use massa::proto::cloudstate::tck::model::crdt as cm;
    let (_model, client) = start_model();
    run(async {
        let id = "PNCounter-1";
        let init = CrdtStreamIn {
            message: Some(crdt_stream_in::Message::Init(CrdtInit { service_name: "cloudstate.tck.model.crdt.CrdtTckModel".into(), entity_id: id.into(), delta: None })),
        };
        let change = |change: i64| cm::RequestAction {
            action: Some(cm::request_action::Action::Update(cm::Update {
                write_consistency: 0,
                update: Some(cm::update::Update::Pncounter(cm::PnCounterUpdate { change })),
            })),
        };
        let cmd = |n: i64, actions: Vec<cm::RequestAction>| CrdtStreamIn {
            message: Some(crdt_stream_in::Message::Command(EntityCommand {
                entity_id: id.into(),
                id: n,
                name: "Process".into(),
                payload: Some(any("cloudstate.tck.model.crdt.Request", &cm::Request { id: id.into(), actions })),
                streamed: false,
                metadata: None,
            })),
        };
        let delete = cm::RequestAction { action: Some(cm::request_action::Action::Delete(cm::Delete {})) };
        let framed = vec![
            encode_prost(&init),
            encode_prost(&cmd(1, vec![])),
            encode_prost(&cmd(2, vec![change(1), change(-2), change(3)])),
            encode_prost(&cmd(3, vec![delete])),
        ];
        let (_, messages, status) = client.call("/cloudstate.crdt.Crdt/handle", None, framed).await;
        status.unwrap();
        let pn = |value: i64| {
            let state = cm::State { value: Some(cm::state::Value::Pncounter(cm::PnCounterValue { value })) };
            Some(ClientAction {
                action: Some(client_action::Action::Reply(Reply {
                    payload: Some(any("cloudstate.tck.model.crdt.Response", &cm::Response { state: Some(state) })),
                    metadata: None,
                })),
            })
        };
        let reply = |n: i64, value: i64, action: Option<crdt_state_action::Action>| CrdtStreamOut {
            message: Some(crdt_stream_out::Message::Reply(CrdtReply {
                command_id: n,
                client_action: pn(value),
                side_effects: vec![],
                state_action: action.map(|a| CrdtStateAction { write_consistency: 0, action: Some(a) }),
                streamed: false,
            })),
        };
        let delta = crdt_state_action::Action::Update(CrdtDelta { delta: Some(crdt_delta::Delta::Pncounter(PnCounterDelta { change: 2 })) });
        assert_eq!(
            decode_all::<CrdtStreamOut>(messages),
            vec![reply(1, 0, None), reply(2, 2, Some(delta)), reply(3, 2, Some(crdt_state_action::Action::Delete(CrdtDelete {})))]
        );
    });
}
