//! The Cloudstate TCK's proxy checks (spec §7.2, proto/tck/README.md §3),
//! ported: the real `massa` binary in front of our TCK-model user function,
//! with the recording interceptor between them so exact message sequences
//! can be asserted. Checks for capabilities Massa does not have yet are
//! present and ignored with the reason, never deleted or weakened.

mod support;

use std::time::Duration;

use prost::Message;

use massa::proto::cloudstate::{EntitySpec, ProxyInfo};
use support::interceptor::{Event, Interceptor};
use support::*;

/// How long an expected message may take (the TCK's 3 s).
const EXPECT: Duration = Duration::from_secs(3);

/// Massa behind an interceptor in front of `function_port`.
fn behind_interceptor(function_port: u16, extra: &[&str]) -> (Interceptor, Massa) {
    let interceptor = Interceptor::start(function_port);
    let massa = start_massa(interceptor.port, extra);
    (interceptor, massa)
}

fn proxy_info(interceptor: &Interceptor) -> (ProxyInfo, EntitySpec) {
    interceptor
        .recorder
        .wait(EXPECT, |calls| {
            let first = calls.first()?;
            assert_eq!(first.path, "/cloudstate.EntityDiscovery/discover", "the first call is discovery");
            let Event::Message(info) = first.input.first()? else { return None };
            let Event::Message(spec) = first.output.first()? else { return None };
            Some((ProxyInfo::decode(info.clone()).unwrap(), EntitySpec::decode(spec.clone()).unwrap()))
        })
        .expect("the proxy called discover")
}

/// ProxyTCK 1's protocol half: protocol 0.2 and discovery exactly once
/// (the entity types: [`verify_proxy_info_and_entity_discovery`]).
#[test]
fn proxy_info_protocol_and_single_discovery() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let (interceptor, _m) = behind_interceptor(fn_port, &["--store", "memory"]);
    let (info, spec) = proxy_info(&interceptor);
    assert_eq!((info.protocol_major_version, info.protocol_minor_version), (0, 2));
    assert_eq!(info.proxy_name, "massa");
    assert!(!spec.entities.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    let discovers = interceptor.recorder.snapshot().iter().filter(|c| c.path.ends_with("/discover")).count();
    assert_eq!(discovers, 1, "discover is called exactly once");
}

/// ProxyTCK 1 as the TCK states it: the supported set must also contain
/// `cloudstate.crdt.Crdt`.
#[test]
fn verify_proxy_info_and_entity_discovery() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let (interceptor, _m) = behind_interceptor(fn_port, &["--store", "memory"]);
    let (info, _) = proxy_info(&interceptor);
    let mut types = info.supported_entity_types;
    types.sort();
    assert_eq!(
        types,
        [
            "cloudstate.action.ActionProtocol",
            "cloudstate.crdt.Crdt",
            "cloudstate.eventsourced.EventSourced",
            "cloudstate.valueentity.ValueEntity"
        ]
    );
}

/// The interceptor sees entity streams exactly as the TCK does: init with
/// state present, command ids from 1, no metadata, clean close on
/// passivation in both directions.
#[test]
fn value_entity_stream_is_exact_and_closes_cleanly_on_passivation() {
    use massa::proto::cloudstate::valueentity::{value_entity_stream_in, ValueEntityStreamIn};
    use massa::proto::com::example::shoppingcart::AddLineItem;
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &["--passivation-ms", "100"]);
    let (interceptor, m) = behind_interceptor(fn_port, &["--store", "memory"]);
    run(async {
        let c = Client::new(m.port);
        let add = AddLineItem { user_id: "tck-1".into(), product_id: "p".into(), name: "P".into(), quantity: 1 };
        for _ in 0..2 {
            let (_, _, status) = c
                .call(
                    "/com.example.valueentity.shoppingcart.ShoppingCart/AddItem",
                    None,
                    vec![massa::grpc::encode_prost(&add)],
                )
                .await;
            status.unwrap();
        }
    });
    let stream = interceptor
        .recorder
        .wait(EXPECT, |calls| {
            calls
                .iter()
                .find(|c| c.path == "/cloudstate.valueentity.ValueEntity/handle")
                .filter(|c| c.input.last() == Some(&Event::Complete) && c.output.last() == Some(&Event::Complete))
                .cloned()
        })
        .expect("the entity stream closed in both directions after passivation");
    let input: Vec<_> = stream
        .input
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => ValueEntityStreamIn::decode(m.clone()).unwrap().message,
            _ => None,
        })
        .collect();
    match &input[0] {
        value_entity_stream_in::Message::Init(init) => {
            assert_eq!(init.entity_id, "tck-1");
            assert_eq!(init.state, Some(Default::default()), "state present, value unset");
        }
        other => panic!("expected init, got {other:?}"),
    }
    let ids: Vec<_> = input[1..]
        .iter()
        .map(|m| match m {
            value_entity_stream_in::Message::Command(c) => {
                assert!(c.metadata.is_none(), "no metadata on entity commands");
                assert!(!c.streamed);
                c.id
            }
            other => panic!("expected a command, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, [1, 2], "command ids from 1 per stream");
}

// ---------------------------------------------------------------------------
// ActionTCK (9): against massa-tck-model, behind the interceptor.

mod action_tck {
    use super::*;
    use massa::grpc::{encode_prost, Code};
    use massa::proto::cloudstate::action::{action_response::Response as Out, ActionCommand, ActionResponse};
    use massa::proto::cloudstate::{Failure, Forward, Reply, SideEffect};
    use massa::proto::cloudstate::tck::model::action::{
        process_step::Step, Fail, Forward as Fwd, OtherRequest, ProcessGroup, ProcessStep, Reply as Rep, Request,
        Response, SideEffect as Eff,
    };
    use massa::proto::google::protobuf::Any;
    use support::interceptor::Connection;

    const MODEL: &str = "cloudstate.tck.model.action.ActionTckModel";
    const TWO: &str = "cloudstate.tck.model.action.ActionTwo";

    pub struct Tck {
        pub _function: Proc,
        pub interceptor: Interceptor,
        pub massa: Massa,
        /// Connections already matched (discovery is the first).
        next: std::cell::Cell<usize>,
    }

    pub fn setup() -> Tck {
        let fn_port = free_port();
        let function = start_tck_model(fn_port);
        let (interceptor, massa) = behind_interceptor(fn_port, &["--store", "memory"]);
        proxy_info(&interceptor);
        Tck { _function: function, interceptor, massa, next: std::cell::Cell::new(1) }
    }

    impl Tck {
        /// The next call the proxy made to the function, which must be `path`.
        pub fn connection(&self, path: &str) -> usize {
            let i = self.next.get();
            let path_seen = self
                .interceptor
                .recorder
                .wait(EXPECT, |calls| calls.get(i).map(|c| c.path.clone()))
                .unwrap_or_else(|| panic!("no connection #{i} (expected {path})"));
            assert_eq!(path_seen, path, "connection #{i}");
            self.next.set(i + 1);
            i
        }

        /// Waits until connection `i` has `n` input and `m` output events.
        pub fn events(&self, i: usize, n: usize, m: usize) -> Connection {
            self.interceptor
                .recorder
                .wait(EXPECT, |calls| calls.get(i).filter(|c| c.input.len() >= n && c.output.len() >= m).cloned())
                .unwrap_or_else(|| panic!("connection #{i}: wanted {n} in / {m} out, have {:?}", self.interceptor.recorder.snapshot().get(i)))
        }

        /// [`connection`](Self::connection) from inside a `run`, where a
        /// blocking wait would stall the test client's own h2 connection.
        pub async fn connection_async(&self, path: &str) -> usize {
            let i = self.next.get();
            let seen = eventually(path, || async { self.interceptor.recorder.snapshot().get(i).map(|c| c.path.clone()) }).await;
            assert_eq!(seen, path, "connection #{i}");
            self.next.set(i + 1);
            i
        }

        /// [`events`](Self::events) from inside a `run`.
        pub async fn events_async(&self, i: usize, n: usize, m: usize) -> Connection {
            let what = format!("connection #{i} with {n} in / {m} out");
            eventually(&what, || async {
                self.interceptor.recorder.snapshot().get(i).filter(|c| c.input.len() >= n && c.output.len() >= m).cloned()
            })
            .await
        }

        /// No further connection appears (the TCK's check after each test).
        pub fn no_more_connections(&self) {
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(self.interceptor.recorder.snapshot().len(), self.next.get(), "unexpected extra connections");
        }
    }

    pub fn any(name: &str, m: &impl Message) -> Any {
        Any { type_url: format!("type.googleapis.com/{name}"), value: m.encode_to_vec().into() }
    }

    fn step(s: Step) -> ProcessStep {
        ProcessStep { step: Some(s) }
    }
    pub fn rep(m: &str) -> ProcessStep {
        step(Step::Reply(Rep { message: m.into() }))
    }
    pub fn fwd(id: &str) -> ProcessStep {
        step(Step::Forward(Fwd { id: id.into() }))
    }
    pub fn fail(m: &str) -> ProcessStep {
        step(Step::Fail(Fail { message: m.into() }))
    }
    pub fn eff(id: &str) -> ProcessStep {
        step(Step::Effect(Eff { id: id.into(), synchronous: false }))
    }
    pub fn req(groups: Vec<Vec<ProcessStep>>) -> Request {
        Request { groups: groups.into_iter().map(|steps| ProcessGroup { steps }).collect() }
    }
    fn req_any(r: &Request) -> Any {
        any("cloudstate.tck.model.action.Request", r)
    }
    fn ac(service: &str, name: &str, payload: Option<Any>) -> ActionCommand {
        ActionCommand { service_name: service.into(), name: name.into(), payload, metadata: None }
    }
    fn se(id: &str) -> SideEffect {
        SideEffect {
            service_name: TWO.into(),
            command_name: "Call".into(),
            payload: Some(any("cloudstate.tck.model.action.OtherRequest", &OtherRequest { id: id.into() })),
            synchronous: false,
            metadata: None,
        }
    }
    fn r(m: &str, fx: Vec<SideEffect>) -> ActionResponse {
        let payload = Some(any("cloudstate.tck.model.action.Response", &Response { message: m.into() }));
        ActionResponse { response: Some(Out::Reply(Reply { payload, metadata: None })), side_effects: fx }
    }
    fn f(id: &str) -> ActionResponse {
        let payload = Some(any("cloudstate.tck.model.action.OtherRequest", &OtherRequest { id: id.into() }));
        let forward = Forward { service_name: TWO.into(), command_name: "Call".into(), payload, metadata: None };
        ActionResponse { response: Some(Out::Forward(forward)), side_effects: vec![] }
    }
    fn x(m: &str) -> ActionResponse {
        let failure = Failure { command_id: 0, description: m.into(), restart: false };
        ActionResponse { response: Some(Out::Failure(failure)), side_effects: vec![] }
    }

    /// Decodes a recorded message, with metadata cleared as the TCK does.
    fn command(e: &Event) -> ActionCommand {
        let Event::Message(m) = e else { panic!("expected a message, got {e:?}") };
        ActionCommand { metadata: None, ..ActionCommand::decode(m.clone()).unwrap() }
    }
    fn answer(e: &Event) -> ActionResponse {
        let Event::Message(m) = e else { panic!("expected a message, got {e:?}") };
        let mut r = ActionResponse::decode(m.clone()).unwrap();
        if let Some(Out::Reply(reply)) = &mut r.response {
            reply.metadata = None;
        }
        if let Some(Out::Forward(fwd)) = &mut r.response {
            fwd.metadata = None;
        }
        r.side_effects.iter_mut().for_each(|s| s.metadata = None);
        r
    }

    fn path(method: &str) -> String {
        format!("/{MODEL}/{method}")
    }
    const UNARY: &str = "/cloudstate.action.ActionProtocol/handleUnary";
    const STREAMED_IN: &str = "/cloudstate.action.ActionProtocol/handleStreamedIn";
    const STREAMED_OUT: &str = "/cloudstate.action.ActionProtocol/handleStreamedOut";
    const STREAMED: &str = "/cloudstate.action.ActionProtocol/handleStreamed";

    async fn call(t: &Tck, method: &str, requests: &[Request]) -> (Vec<String>, Result<(), massa::grpc::Status>) {
        let c = Client::new(t.massa.port);
        let (_, msgs, status) = c.call(&path(method), None, requests.iter().map(encode_prost).collect()).await;
        (msgs.into_iter().map(|m| Response::decode(m).unwrap().message).collect(), status)
    }

    #[test]
    fn unary_command_processing() {
        let t = setup();
        let request = req(vec![vec![rep("one")]]);
        let (replies, status) = run(call(&t, "ProcessUnary", &[request.clone()]));
        status.unwrap();
        assert_eq!(replies, ["one"]);
        let i = t.connection(UNARY);
        let c = t.events(i, 1, 1);
        assert_eq!(command(&c.input[0]), ac(MODEL, "ProcessUnary", Some(req_any(&request))));
        assert_eq!(answer(&c.output[0]), r("one", vec![]));
        t.no_more_connections();
    }

    #[test]
    fn streamed_in_command_processing() {
        let t = setup();
        let request = req(vec![vec![rep("two")]]);
        let (replies, status) = run(call(&t, "ProcessStreamedIn", &[request.clone()]));
        status.unwrap();
        assert_eq!(replies, ["two"]);
        let i = t.connection(STREAMED_IN);
        let c = t.events(i, 3, 1);
        assert_eq!(command(&c.input[0]), ac(MODEL, "ProcessStreamedIn", None));
        assert_eq!(command(&c.input[1]), ac("", "", Some(req_any(&request))));
        assert_eq!(c.input[2], Event::Complete);
        assert_eq!(answer(&c.output[0]), r("two", vec![]));
        t.no_more_connections();
    }

    #[test]
    fn streamed_out_command_processing() {
        let t = setup();
        let request = req(vec![vec![rep("A")], vec![rep("B")], vec![rep("C")]]);
        let (replies, status) = run(call(&t, "ProcessStreamedOut", &[request.clone()]));
        status.unwrap();
        assert_eq!(replies, ["A", "B", "C"]);
        let i = t.connection(STREAMED_OUT);
        let c = t.events(i, 1, 4);
        assert_eq!(command(&c.input[0]), ac(MODEL, "ProcessStreamedOut", Some(req_any(&request))));
        let out: Vec<_> = c.output[..3].iter().map(answer).collect();
        assert_eq!(out, [r("A", vec![]), r("B", vec![]), r("C", vec![])]);
        assert_eq!(c.output[3], Event::Complete);
        t.no_more_connections();
    }

    #[test]
    fn streamed_command_processing() {
        let t = setup();
        let requests: Vec<_> = ["X", "Y", "Z"].iter().map(|m| req(vec![vec![rep(m)]])).collect();
        let (replies, status) = run(call(&t, "ProcessStreamed", &requests));
        status.unwrap();
        assert_eq!(replies, ["X", "Y", "Z"]);
        let i = t.connection(STREAMED);
        let c = t.events(i, 5, 4);
        assert_eq!(command(&c.input[0]), ac(MODEL, "ProcessStreamed", None));
        for (k, request) in requests.iter().enumerate() {
            assert_eq!(command(&c.input[k + 1]), ac("", "", Some(req_any(request))));
        }
        assert_eq!(c.input[4], Event::Complete);
        let out: Vec<_> = c.output[..3].iter().map(answer).collect();
        assert_eq!(out, [r("X", vec![]), r("Y", vec![]), r("Z", vec![])]);
        assert_eq!(c.output[3], Event::Complete);
        t.no_more_connections();
    }

    #[test]
    fn unary_forwards_and_side_effects() {
        let t = setup();
        let forward = req(vec![vec![fwd("other")]]);
        let (replies, status) = run(call(&t, "ProcessUnary", &[forward.clone()]));
        status.unwrap();
        assert_eq!(replies, [""]);
        let c1 = t.events(t.connection(UNARY), 1, 1);
        assert_eq!(command(&c1.input[0]), ac(MODEL, "ProcessUnary", Some(req_any(&forward))));
        assert_eq!(answer(&c1.output[0]), f("other"));
        let c2 = t.events(t.connection(UNARY), 1, 1);
        let other = |id: &str| any("cloudstate.tck.model.action.OtherRequest", &OtherRequest { id: id.into() });
        assert_eq!(command(&c2.input[0]), ac(TWO, "Call", Some(other("other"))));
        assert_eq!(answer(&c2.output[0]), r("", vec![]));

        let effect = req(vec![vec![rep(""), eff("another")]]);
        let (replies, status) = run(call(&t, "ProcessUnary", &[effect.clone()]));
        status.unwrap();
        assert_eq!(replies, [""]);
        let c3 = t.events(t.connection(UNARY), 1, 1);
        assert_eq!(command(&c3.input[0]), ac(MODEL, "ProcessUnary", Some(req_any(&effect))));
        assert_eq!(answer(&c3.output[0]), r("", vec![se("another")]));
        let c4 = t.events(t.connection(UNARY), 1, 1);
        assert_eq!(command(&c4.input[0]), ac(TWO, "Call", Some(other("another"))));
        assert_eq!(answer(&c4.output[0]), r("", vec![]));
        t.no_more_connections();
    }

    #[test]
    fn streamed_forwards_and_side_effects() {
        let t = setup();
        let other = |id: &str| any("cloudstate.tck.model.action.OtherRequest", &OtherRequest { id: id.into() });
        run(async {
            let c = Client::new(t.massa.port);
            let pool = c.pool();
            let (mut send, response) = pool.open(&pool.endpoint(&path("ProcessStreamed")), None).await.unwrap();
            let first = req(vec![vec![fwd("one")]]);
            send.send_data(encode_prost(&first), false).unwrap();
            let mut response = massa::userfn::CallResponse::open(response, 1 << 20).await.unwrap();
            let m = response.message().await.unwrap().unwrap();
            assert_eq!(Response::decode(m).unwrap().message, "");
            let s = t.connection_async(STREAMED).await;
            let u1 = t.connection_async(UNARY).await;
            let cs = t.events_async(s, 2, 1).await;
            assert_eq!(command(&cs.input[0]), ac(MODEL, "ProcessStreamed", None));
            assert_eq!(command(&cs.input[1]), ac("", "", Some(req_any(&first))));
            assert_eq!(answer(&cs.output[0]), f("one"));
            let c1 = t.events_async(u1, 1, 1).await;
            assert_eq!(command(&c1.input[0]), ac(TWO, "Call", Some(other("one"))));
            assert_eq!(answer(&c1.output[0]), r("", vec![]));

            let second = req(vec![vec![eff("two")]]);
            send.send_data(encode_prost(&second), false).unwrap();
            let u2 = t.connection_async(UNARY).await;
            let cs = t.events_async(s, 3, 2).await;
            assert_eq!(command(&cs.input[2]), ac("", "", Some(req_any(&second))));
            assert_eq!(answer(&cs.output[1]), ActionResponse { response: None, side_effects: vec![se("two")] });
            let c2 = t.events_async(u2, 1, 1).await;
            assert_eq!(command(&c2.input[0]), ac(TWO, "Call", Some(other("two"))));

            send.send_data(bytes::Bytes::new(), true).unwrap();
            assert!(response.message().await.unwrap().is_none(), "the client's stream completes");
            let cs = t.events_async(s, 4, 3).await;
            assert_eq!((&cs.input[3], &cs.output[2]), (&Event::Complete, &Event::Complete));
        });
        t.no_more_connections();
    }

    #[test]
    fn unary_failures() {
        let t = setup();
        let request = req(vec![vec![fail("expected failure")]]);
        let (_, status) = run(call(&t, "ProcessUnary", &[request.clone()]));
        let err = status.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "expected failure"));
        let c = t.events(t.connection(UNARY), 1, 1);
        assert_eq!(command(&c.input[0]), ac(MODEL, "ProcessUnary", Some(req_any(&request))));
        assert_eq!(answer(&c.output[0]), x("expected failure"));
        t.no_more_connections();
    }

    #[test]
    fn streamed_failures() {
        let t = setup();
        run(async {
            let c = Client::new(t.massa.port);
            let pool = c.pool();
            let (mut send, response) = pool.open(&pool.endpoint(&path("ProcessStreamed")), None).await.unwrap();
            // Nothing sent yet: the proxy must already have opened the stream.
            let s = t.connection_async(STREAMED).await;
            let cs = t.events_async(s, 1, 0).await;
            assert_eq!(command(&cs.input[0]), ac(MODEL, "ProcessStreamed", None));
            let request = req(vec![vec![fail("expected failure")]]);
            send.send_data(encode_prost(&request), false).unwrap();
            let outcome = async {
                let mut r = massa::userfn::CallResponse::open(response, 1 << 20).await?;
                while r.message().await?.is_some() {}
                Ok::<_, massa::grpc::Status>(())
            };
            let err = outcome.await.unwrap_err();
            assert_eq!(err.message, "expected failure");
            let cs = t.events_async(s, 2, 1).await;
            assert_eq!(command(&cs.input[1]), ac("", "", Some(req_any(&request))));
            assert_eq!(answer(&cs.output[0]), x("expected failure"));
        });
        t.no_more_connections();
    }

    #[test]
    fn unary_http_api() {
        let t = setup();
        let body = r#"{"groups": [{"steps": [{"reply": {"message": "foo"}}]}]}"#;
        let (status, text) = http_post_json(t.massa.port, "/tck/model/action/unary", body).expect("an HTTP answer");
        assert_eq!((status, text.as_str()), (200, r#"{"message":"foo"}"#));
        let body = r#"{"groups": [{"steps": [{"fail": {"message": "boom"}}]}]}"#;
        let (status, text) = http_post_json(t.massa.port, "/tck/model/action/unary", body).expect("an HTTP answer");
        assert_eq!((status, text.as_str()), (500, "boom"));
    }
}

// ---------------------------------------------------------------------------
// EntityTCK (value entity, 5) and EventSourcedEntityTCK (5).

mod entity_tck {
    use super::action_tck::{any, setup, Tck};
    use super::*;
    use massa::grpc::{encode_prost, Code, Status};
    use massa::proto::cloudstate::{client_action::Action, ClientAction, Command, Failure, Forward, Reply, SideEffect};
    use massa::proto::google::protobuf::Any;

    /// Calls `service/method` with `request`; the reply's `message`.
    async fn call(t: &Tck, service: &str, method: &str, request: &impl Message) -> Result<String, Status> {
        let c = Client::new(t.massa.port);
        let (_, msgs, status) = c.call(&format!("/{service}/{method}"), None, vec![encode_prost(request)]).await;
        status?;
        Ok(msgs.first().map(|m| Response::decode(m.clone()).unwrap().message).unwrap_or_default())
    }

    fn message(e: &Event) -> bytes::Bytes {
        match e {
            Event::Message(m) => m.clone(),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn cmd(entity: &str, id: i64, name: &str, payload: Any) -> Command {
        Command { entity_id: entity.into(), id, name: name.into(), payload: Some(payload), streamed: false, metadata: None }
    }

    fn reply(payload: Any) -> Option<ClientAction> {
        Some(ClientAction { action: Some(Action::Reply(Reply { payload: Some(payload), metadata: None })) })
    }

    fn forward(service: &str, payload: Any) -> Option<ClientAction> {
        let f = Forward { service_name: service.into(), command_name: "Call".into(), payload: Some(payload), metadata: None };
        Some(ClientAction { action: Some(Action::Forward(f)) })
    }

    fn failure(id: i64, description: &str, restart: bool) -> Option<ClientAction> {
        Some(ClientAction { action: Some(Action::Failure(Failure { command_id: id, description: description.into(), restart })) })
    }

    fn effect(service: &str, payload: Any) -> SideEffect {
        SideEffect { service_name: service.into(), command_name: "Call".into(), payload: Some(payload), synchronous: false, metadata: None }
    }

    /// A fresh entity id per test, unseen by the proxy.
    fn fresh(tag: &str) -> String {
        format!("{tag}-{}-{}", std::process::id(), free_port())
    }

    use massa::proto::cloudstate::tck::model::valueentity::Response;

    mod value {
        use super::*;
        use massa::proto::cloudstate::tck::model::valueentity::{
            request_action::Action as A, Delete, Effect, Fail, Forward as Fwd, Persisted, Request, RequestAction, Update,
        };
        use massa::proto::cloudstate::valueentity::{
            value_entity_action, value_entity_stream_in::Message as In, value_entity_stream_out::Message as Out,
            ValueEntityAction, ValueEntityDelete, ValueEntityInit, ValueEntityInitState, ValueEntityReply, ValueEntityStreamIn,
            ValueEntityStreamOut, ValueEntityUpdate,
        };

        const S: &str = "cloudstate.tck.model.valueentity.ValueEntityTckModel";
        const T: &str = "cloudstate.tck.model.valueentity.ValueEntityTwo";
        const K: &str = "cloudstate.tck.model.valueentity.ValueEntityConfigured";
        const HANDLE: &str = "/cloudstate.valueentity.ValueEntity/handle";

        fn q(id: &str, actions: Vec<A>) -> Request {
            Request { id: id.into(), actions: actions.into_iter().map(|a| RequestAction { action: Some(a) }).collect() }
        }
        fn upd(v: &str) -> A {
            A::Update(Update { value: v.into() })
        }
        fn rq(r: &Request) -> Any {
            any("cloudstate.tck.model.valueentity.Request", r)
        }
        fn rs(m: &str) -> Any {
            any("cloudstate.tck.model.valueentity.Response", &Response { message: m.into() })
        }
        fn init(service: &str, id: &str) -> ValueEntityStreamIn {
            let init = ValueEntityInit { service_name: service.into(), entity_id: id.into(), state: Some(ValueEntityInitState { value: None }) };
            ValueEntityStreamIn { message: Some(In::Init(init)) }
        }
        fn command(c: Command) -> ValueEntityStreamIn {
            ValueEntityStreamIn { message: Some(In::Command(c)) }
        }
        enum State {
            Keep,
            Update(&'static str),
            Delete,
        }
        fn out(id: i64, action: Option<ClientAction>, effects: Vec<SideEffect>, state: State) -> ValueEntityStreamOut {
            let state_action = match state {
                State::Keep => None,
                State::Update(v) => Some(ValueEntityAction {
                    action: Some(value_entity_action::Action::Update(ValueEntityUpdate {
                        value: Some(any("cloudstate.tck.model.valueentity.Persisted", &Persisted { value: v.into() })),
                    })),
                }),
                State::Delete => Some(ValueEntityAction { action: Some(value_entity_action::Action::Delete(ValueEntityDelete {})) }),
            };
            let reply = ValueEntityReply { command_id: id, client_action: action, side_effects: effects, state_action };
            ValueEntityStreamOut { message: Some(Out::Reply(reply)) }
        }
        fn input(c: &support::interceptor::Connection, k: usize) -> ValueEntityStreamIn {
            ValueEntityStreamIn::decode(message(&c.input[k])).unwrap()
        }
        fn output(c: &support::interceptor::Connection, k: usize) -> ValueEntityStreamOut {
            ValueEntityStreamOut::decode(message(&c.output[k])).unwrap()
        }

        #[test]
        fn verify_state_changes() {
            let t = setup();
            let id = fresh("ve-state");
            let steps: Vec<(Vec<A>, &str, State)> = vec![
                (vec![], "", State::Keep),
                (vec![upd("one")], "one", State::Update("one")),
                (vec![upd("two")], "two", State::Update("two")),
                (vec![], "two", State::Keep),
                (vec![A::Delete(Delete {})], "", State::Delete),
                (vec![], "", State::Keep),
                (vec![upd("foo")], "foo", State::Update("foo")),
                (vec![A::Delete(Delete {})], "", State::Delete),
            ];
            let mut c1 = None;
            for (n, (actions, expect, state)) in steps.into_iter().enumerate() {
                let request = q(&id, actions);
                assert_eq!(run(call(&t, S, "Process", &request)).unwrap(), expect);
                let c = *c1.get_or_insert_with(|| t.connection(HANDLE));
                let seen = t.events(c, n + 2, n + 1);
                if n == 0 {
                    assert_eq!(input(&seen, 0), init(S, &id));
                }
                let k = n as i64 + 1;
                assert_eq!(input(&seen, n + 1), command(cmd(&id, k, "Process", rq(&request))));
                assert_eq!(output(&seen, n), out(k, reply(rs(expect)), vec![], state));
            }
            t.no_more_connections();
        }

        #[test]
        fn verify_forwards_and_side_effects() {
            let t = setup();
            let id = fresh("ve-fwd");
            let two = q(&id, vec![]);
            let r1 = q(&id, vec![upd("one")]);
            assert_eq!(run(call(&t, S, "Process", &r1)).unwrap(), "one");
            let c1 = t.connection(HANDLE);
            let r2 = q(&id, vec![A::Forward(Fwd { id: id.clone() })]);
            assert_eq!(run(call(&t, S, "Process", &r2)).unwrap(), "");
            let c2 = t.connection(HANDLE);
            let seen1 = t.events(c1, 3, 2);
            assert_eq!(input(&seen1, 2), command(cmd(&id, 2, "Process", rq(&r2))));
            assert_eq!(output(&seen1, 1), out(2, forward(T, rq(&two)), vec![], State::Keep));
            let seen2 = t.events(c2, 2, 1);
            assert_eq!(input(&seen2, 0), init(T, &id));
            assert_eq!(input(&seen2, 1), command(cmd(&id, 1, "Call", rq(&two))));
            assert_eq!(output(&seen2, 0), out(1, reply(rs("")), vec![], State::Keep));
            let r3 = q(&id, vec![A::Effect(Effect { id: id.clone(), synchronous: false })]);
            assert_eq!(run(call(&t, S, "Process", &r3)).unwrap(), "one");
            let seen1 = t.events(c1, 4, 3);
            assert_eq!(output(&seen1, 2), out(3, reply(rs("one")), vec![effect(T, rq(&two))], State::Keep));
            let seen2 = t.events(c2, 3, 2);
            assert_eq!(input(&seen2, 2), command(cmd(&id, 2, "Call", rq(&two))), "the side effect reuses the live stream");
            let r4 = q(&id, vec![]);
            assert_eq!(run(call(&t, S, "Process", &r4)).unwrap(), "one");
            t.no_more_connections();
        }

        #[test]
        fn verify_failures() {
            let t = setup();
            let id = fresh("ve-fail");
            assert_eq!(run(call(&t, S, "Process", &q(&id, vec![upd("one")]))).unwrap(), "one");
            let c1 = t.connection(HANDLE);
            let failing = q(&id, vec![A::Fail(Fail { message: "expected failure".into() })]);
            let err = run(call(&t, S, "Process", &failing)).unwrap_err();
            assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "expected failure"));
            let seen = t.events(c1, 3, 2);
            assert_eq!(output(&seen, 1), out(2, failure(2, "expected failure", false), vec![], State::Keep));
            assert_eq!(run(call(&t, S, "Process", &q(&id, vec![]))).unwrap(), "one");
            t.no_more_connections();
        }

        #[test]
        fn verify_http_api() {
            let t = setup();
            let id = fresh("ve-http");
            let (status, body) = http_post_json(t.massa.port, &format!("/tck/model/entity/{id}"), "{}").expect("an HTTP answer");
            assert_eq!((status, body.as_str()), (200, r#"{"message":""}"#));
        }

        #[test]
        fn verify_passivation_timeout() {
            let t = setup();
            let id = fresh("ve-passivate");
            assert_eq!(run(call(&t, K, "Call", &q(&id, vec![]))).unwrap(), "");
            let c = t.connection(HANDLE);
            let closed = t
                .interceptor
                .recorder
                .wait(Duration::from_secs(2), |calls| {
                    let c = &calls[c];
                    (c.input.last() == Some(&Event::Complete) && c.output.last() == Some(&Event::Complete)).then(|| c.clone())
                })
                .expect("closed in both directions within 2 s");
            assert_eq!(input(&closed, 0), init(K, &id));
            assert_eq!(input(&closed, 1), command(cmd(&id, 1, "Call", rq(&q(&id, vec![])))));
        }
    }

    mod eventsourced {
        use super::*;
        use massa::proto::cloudstate::eventsourced::{
            event_sourced_stream_in::Message as In, event_sourced_stream_out::Message as Out, EventSourcedEvent,
            EventSourcedInit, EventSourcedReply, EventSourcedStreamIn, EventSourcedStreamOut,
        };
        use massa::proto::cloudstate::tck::model::{
            request_action::Action as A, Effect, Emit, Fail, Forward as Fwd, Persisted, Request, RequestAction,
        };

        const S: &str = "cloudstate.tck.model.EventSourcedTckModel";
        const T: &str = "cloudstate.tck.model.EventSourcedTwo";
        const K: &str = "cloudstate.tck.model.EventSourcedConfigured";
        const HANDLE: &str = "/cloudstate.eventsourced.EventSourced/handle";

        fn q(id: &str, actions: Vec<A>) -> Request {
            Request { id: id.into(), actions: actions.into_iter().map(|a| RequestAction { action: Some(a) }).collect() }
        }
        fn emit(values: &[&str]) -> Vec<A> {
            values.iter().map(|v| A::Emit(Emit { value: (*v).into() })).collect()
        }
        fn rq(r: &Request) -> Any {
            any("cloudstate.tck.model.Request", r)
        }
        fn rs(m: &str) -> Any {
            any("cloudstate.tck.model.Response", &massa::proto::cloudstate::tck::model::Response { message: m.into() })
        }
        fn persisted(v: &str) -> Any {
            any("cloudstate.tck.model.Persisted", &Persisted { value: v.into() })
        }
        fn init(service: &str, id: &str) -> EventSourcedStreamIn {
            EventSourcedStreamIn { message: Some(In::Init(EventSourcedInit { service_name: service.into(), entity_id: id.into(), snapshot: None })) }
        }
        fn event(n: i64, v: &str) -> EventSourcedStreamIn {
            EventSourcedStreamIn { message: Some(In::Event(EventSourcedEvent { sequence: n, payload: Some(persisted(v)) })) }
        }
        fn command(c: Command) -> EventSourcedStreamIn {
            EventSourcedStreamIn { message: Some(In::Command(c)) }
        }
        fn out(id: i64, action: Option<ClientAction>, effects: Vec<SideEffect>, events: &[&str], snapshot: Option<&str>) -> EventSourcedStreamOut {
            let reply = EventSourcedReply {
                command_id: id,
                client_action: action,
                side_effects: effects,
                events: events.iter().map(|e| persisted(e)).collect(),
                snapshot: snapshot.map(persisted),
            };
            EventSourcedStreamOut { message: Some(Out::Reply(reply)) }
        }
        fn input(c: &support::interceptor::Connection, k: usize) -> EventSourcedStreamIn {
            EventSourcedStreamIn::decode(message(&c.input[k])).unwrap()
        }
        fn output(c: &support::interceptor::Connection, k: usize) -> EventSourcedStreamOut {
            EventSourcedStreamOut::decode(message(&c.output[k])).unwrap()
        }

        #[test]
        fn verify_state_changes() {
            let t = setup();
            let id = fresh("es-state");
            let steps: Vec<(Vec<&str>, &str, Option<&str>)> = vec![
                (vec![], "", None),
                (vec!["A"], "A", None),
                (vec!["B", "C", "D"], "ABCD", None),
                (vec!["E"], "ABCDE", Some("ABCDE")),
                (vec!["F", "G", "H", "I"], "ABCDEFGHI", None),
                (vec!["J", "K"], "ABCDEFGHIJK", Some("ABCDEFGHIJK")),
            ];
            let mut c1 = None;
            for (n, (events, expect, snapshot)) in steps.into_iter().enumerate() {
                let request = q(&id, emit(&events));
                assert_eq!(run(call(&t, S, "Process", &request)).unwrap(), expect);
                let c = *c1.get_or_insert_with(|| t.connection(HANDLE));
                let seen = t.events(c, n + 2, n + 1);
                if n == 0 {
                    assert_eq!(input(&seen, 0), init(S, &id), "no snapshot in init");
                }
                let k = n as i64 + 1;
                assert_eq!(input(&seen, n + 1), command(cmd(&id, k, "Process", rq(&request))));
                assert_eq!(output(&seen, n), out(k, reply(rs(expect)), vec![], &events, snapshot));
            }
            t.no_more_connections();
        }

        #[test]
        fn verify_forwards_and_side_effects() {
            let t = setup();
            let id = fresh("es-fwd");
            let two = q(&id, vec![]);
            assert_eq!(run(call(&t, S, "Process", &q(&id, emit(&["one"])))).unwrap(), "one");
            let c1 = t.connection(HANDLE);
            let r2 = q(&id, vec![A::Forward(Fwd { id: id.clone() })]);
            assert_eq!(run(call(&t, S, "Process", &r2)).unwrap(), "");
            let c2 = t.connection(HANDLE);
            assert_eq!(output(&t.events(c1, 3, 2), 1), out(2, forward(T, rq(&two)), vec![], &[], None));
            let seen2 = t.events(c2, 2, 1);
            assert_eq!(input(&seen2, 0), init(T, &id));
            assert_eq!(input(&seen2, 1), command(cmd(&id, 1, "Call", rq(&two))));
            let r3 = q(&id, vec![A::Effect(Effect { id: id.clone(), synchronous: false })]);
            assert_eq!(run(call(&t, S, "Process", &r3)).unwrap(), "one");
            assert_eq!(output(&t.events(c1, 4, 3), 2), out(3, reply(rs("one")), vec![effect(T, rq(&two))], &[], None));
            assert_eq!(input(&t.events(c2, 3, 2), 2), command(cmd(&id, 2, "Call", rq(&two))));
            assert_eq!(run(call(&t, S, "Process", &q(&id, vec![]))).unwrap(), "one");
            t.no_more_connections();
        }

        #[test]
        fn verify_failures() {
            let t = setup();
            let id = fresh("es-fail");
            assert_eq!(run(call(&t, S, "Process", &q(&id, emit(&["1", "2", "3"])))).unwrap(), "123");
            let c1 = t.connection(HANDLE);
            let fail = |m: &str| A::Fail(Fail { message: m.into() });
            let err = run(call(&t, S, "Process", &q(&id, vec![fail("expected failure")]))).unwrap_err();
            assert_eq!(err.message, "expected failure");
            assert_eq!(output(&t.events(c1, 3, 2), 1), out(2, failure(2, "expected failure", false), vec![], &[], None));
            assert_eq!(run(call(&t, S, "Process", &q(&id, vec![]))).unwrap(), "123");
            let mut actions = emit(&["4"]);
            actions.push(fail("another failure"));
            actions.extend(emit(&["5"]));
            let err = run(call(&t, S, "Process", &q(&id, actions))).unwrap_err();
            assert_eq!(err.message, "another failure");
            let seen = t.events(c1, 5, 4);
            let Some(Out::Reply(r)) = output(&seen, 3).message else { panic!("a reply") };
            let Some(Action::Failure(f)) = r.client_action.and_then(|a| a.action) else { panic!("a failure") };
            assert_eq!((r.command_id, f.command_id, f.description.as_str()), (4, 4, "another failure"));
            if f.restart {
                // c1 closes; the proxy re-activates at once and replays the journal.
                let closed = t.interceptor.recorder.wait(EXPECT, |calls| {
                    (calls[c1].input.last() == Some(&Event::Complete) && calls[c1].output.last() == Some(&Event::Complete)).then_some(())
                });
                assert!(closed.is_some(), "c1 closed in both directions");
                let c2 = t.connection(HANDLE);
                let replay = t.events(c2, 4, 0);
                assert_eq!(input(&replay, 0), init(S, &id));
                assert_eq!([input(&replay, 1), input(&replay, 2), input(&replay, 3)], [event(1, "1"), event(2, "2"), event(3, "3")]);
                let request = q(&id, emit(&["4", "5"]));
                assert_eq!(run(call(&t, S, "Process", &request)).unwrap(), "12345");
                let seen = t.events(c2, 5, 1);
                assert_eq!(input(&seen, 4), command(cmd(&id, 1, "Process", rq(&request))));
                assert_eq!(output(&seen, 0), out(1, reply(rs("12345")), vec![], &["4", "5"], Some("12345")));
            } else {
                assert_eq!(run(call(&t, S, "Process", &q(&id, emit(&["4", "5"])))).unwrap(), "12345");
            }
            t.no_more_connections();
        }

        #[test]
        fn verify_http_api() {
            let t = setup();
            let id = fresh("es-http");
            let (status, body) = http_post_json(t.massa.port, &format!("/tck/model/eventsourced/{id}"), "{}").expect("an HTTP answer");
            assert_eq!((status, body.as_str()), (200, r#"{"message":""}"#));
        }

        #[test]
        fn verify_passivation_timeout() {
            let t = setup();
            let id = fresh("es-passivate");
            assert_eq!(run(call(&t, K, "Call", &q(&id, vec![]))).unwrap(), "");
            let c = t.connection(HANDLE);
            let closed = t
                .interceptor
                .recorder
                .wait(Duration::from_secs(2), |calls| {
                    let c = &calls[c];
                    (c.input.last() == Some(&Event::Complete) && c.output.last() == Some(&Event::Complete)).then(|| c.clone())
                })
                .expect("closed in both directions within 2 s");
            assert_eq!(input(&closed, 0), init(K, &id));
        }
    }
}

// ---------------------------------------------------------------------------
// CrdtEntityTCK (6) and EventingTCK (3), ported in full from
// proto/tck/README.md §3.

mod crdt_tck {
    use super::*;
    use massa::grpc::{encode_prost, Code, Status};
    use massa::proto::cloudstate::crdt::{
        crdt_delta, crdt_state_action, crdt_stream_in::Message as In, crdt_stream_out::Message as Out, CrdtDelete,
        CrdtDelta, CrdtInit, CrdtReply, CrdtStateAction, CrdtStreamIn, CrdtStreamOut, GCounterDelta, PnCounterDelta,
    };
    use massa::proto::cloudstate::tck::model::crdt::{
        request_action::Action as A, state::Value, update::Update as U, Delete, Fail, GCounterUpdate, GCounterValue,
        PnCounterUpdate, PnCounterValue, Request, RequestAction, Response, State, Update,
    };
    use massa::proto::cloudstate::{client_action::Action, ClientAction, Command, Failure, Reply};
    use support::interceptor::Connection;

    const S: &str = "cloudstate.tck.model.crdt.CrdtTckModel";
    const K: &str = "cloudstate.tck.model.crdt.CrdtConfigured";
    const HANDLE: &str = "/cloudstate.crdt.Crdt/handle";

    struct Crdt {
        _function: Proc,
        interceptor: Interceptor,
        massa: Massa,
    }

    /// The CRDT model behind the interceptor.
    fn setup() -> Crdt {
        let fn_port = free_port();
        let function = start_tck_model_with(fn_port, &["--only", "crdt"]);
        let interceptor = Interceptor::start(fn_port);
        let mut massa = spawn_massa(interceptor.port, &["--store", "memory"]);
        let ready = (0..400).any(|_| {
            if let Ok(Some(_)) = massa.proc.child.try_wait() {
                panic!("massa refused the CRDT model:\n{}", massa.proc.log());
            }
            std::thread::sleep(Duration::from_millis(50));
            http_get(massa.admin, "/health/ready").is_some_and(|(s, _)| s == 200)
        });
        assert!(ready, "massa never became ready");
        let _ = &mut massa;
        Crdt { _function: function, interceptor, massa }
    }

    fn fresh(kind: &str) -> String {
        format!("{kind}-{}", free_port())
    }
    fn q(id: &str, actions: Vec<A>) -> Request {
        Request { id: id.into(), actions: actions.into_iter().map(|a| RequestAction { action: Some(a) }).collect() }
    }
    fn pn(change: i64) -> A {
        A::Update(Update { update: Some(U::Pncounter(PnCounterUpdate { change })), ..Default::default() })
    }
    fn state(value: Value) -> Response {
        Response { state: Some(State { value: Some(value) }) }
    }
    fn any(name: &str, m: &impl Message) -> massa::proto::google::protobuf::Any {
        super::action_tck::any(name, m)
    }
    fn rq(r: &Request) -> massa::proto::google::protobuf::Any {
        any("cloudstate.tck.model.crdt.Request", r)
    }
    fn init(service: &str, id: &str) -> CrdtStreamIn {
        CrdtStreamIn { message: Some(In::Init(CrdtInit { service_name: service.into(), entity_id: id.into(), delta: None })) }
    }
    fn cmd(id: &str, n: i64, name: &str, r: &Request) -> CrdtStreamIn {
        let c = Command { entity_id: id.into(), id: n, name: name.into(), payload: Some(rq(r)), streamed: false, metadata: None };
        CrdtStreamIn { message: Some(In::Command(c)) }
    }
    fn delta(d: crdt_delta::Delta) -> Option<CrdtStateAction> {
        Some(CrdtStateAction { write_consistency: 0, action: Some(crdt_state_action::Action::Update(CrdtDelta { delta: Some(d) })) })
    }
    fn delete() -> Option<CrdtStateAction> {
        Some(CrdtStateAction { write_consistency: 0, action: Some(crdt_state_action::Action::Delete(CrdtDelete {})) })
    }
    fn rep(n: i64, answer: &Response, action: Option<CrdtStateAction>) -> CrdtStreamOut {
        let payload = Some(any("cloudstate.tck.model.crdt.Response", answer));
        let client_action = Some(ClientAction { action: Some(Action::Reply(Reply { payload, metadata: None })) });
        let reply = CrdtReply { command_id: n, client_action, side_effects: vec![], state_action: action, streamed: false };
        CrdtStreamOut { message: Some(Out::Reply(reply)) }
    }
    fn input(c: &Connection, k: usize) -> CrdtStreamIn {
        let Event::Message(m) = &c.input[k] else { panic!("{:?}", c.input[k]) };
        CrdtStreamIn::decode(m.clone()).unwrap()
    }
    fn output(c: &Connection, k: usize) -> CrdtStreamOut {
        let Event::Message(m) = &c.output[k] else { panic!("{:?}", c.output[k]) };
        CrdtStreamOut::decode(m.clone()).unwrap()
    }

    impl Crdt {
        fn process(&self, service: &str, method: &str, r: &Request) -> Result<Response, Status> {
            run(async {
                let c = Client::new(self.massa.port);
                let (_, msgs, status) = c.call(&format!("/{service}/{method}"), None, vec![encode_prost(r)]).await;
                status?;
                Ok(Response::decode(msgs[0].clone()).unwrap())
            })
        }
        /// The first entity stream (connection #1) once it has `n` in and
        /// `m` out messages.
        fn stream(&self, n: usize, m: usize) -> Connection {
            self.stream_at(1, n, m)
        }
        fn stream_at(&self, i: usize, n: usize, m: usize) -> Connection {
            let c = self
                .interceptor
                .recorder
                .wait(EXPECT, |calls| calls.get(i).filter(|c| c.input.len() >= n && c.output.len() >= m).cloned())
                .unwrap_or_else(|| panic!("entity stream #{i}: {:?}", self.interceptor.recorder.snapshot().get(i)));
            assert_eq!(c.path, HANDLE);
            c
        }
        /// [`stream_at`](Self::stream_at) from inside a `run`.
        async fn stream_async(&self, i: usize, n: usize, m: usize) -> Connection {
            eventually("the entity stream", || async {
                self.interceptor.recorder.snapshot().get(i).filter(|c| c.input.len() >= n && c.output.len() >= m).cloned()
            })
            .await
        }
        fn closed(&self, within: Duration) -> bool {
            self.closed_at(1, within)
        }
        fn closed_at(&self, i: usize, within: Duration) -> bool {
            self.interceptor
                .recorder
                .wait(within, |calls| {
                    let c = calls.get(i)?;
                    (c.input.last() == Some(&Event::Complete) && c.output.last() == Some(&Event::Complete)).then_some(())
                })
                .is_some()
        }
    }

    #[test]
    fn verify_state_changes() {
        let t = setup();
        let id = fresh("PNCounter");
        let steps = [(vec![], 0, None), (vec![pn(1), pn(-2), pn(3)], 2, Some(2)), (vec![pn(4), pn(-5), pn(6)], 7, Some(5))];
        for (n, (actions, value, change)) in steps.into_iter().enumerate() {
            let r = q(&id, actions);
            let expected = state(Value::Pncounter(PnCounterValue { value }));
            assert_eq!(t.process(S, "Process", &r).unwrap(), expected);
            let c = t.stream(n + 2, n + 1);
            if n == 0 {
                assert_eq!(input(&c, 0), init(S, &id), "no delta in init");
            }
            let k = n as i64 + 1;
            assert_eq!(input(&c, n + 1), cmd(&id, k, "Process", &r));
            let action = change.and_then(|change| delta(crdt_delta::Delta::Pncounter(PnCounterDelta { change })));
            assert_eq!(output(&c, n), rep(k, &expected, action));
        }
        let r = q(&id, vec![A::Delete(Delete {})]);
        let expected = state(Value::Pncounter(PnCounterValue { value: 7 }));
        assert_eq!(t.process(S, "Process", &r).unwrap(), expected);
        assert_eq!(output(&t.stream(5, 4), 3), rep(4, &expected, delete()));
        assert!(t.closed(EXPECT), "the stream closes after the delete");
    }

    #[test]
    fn verify_forwards_and_side_effects() {
        use massa::proto::cloudstate::tck::model::crdt::{Effect, Forward as Fwd, GSetUpdate, GSetValue};
        use massa::proto::cloudstate::{Forward, SideEffect};
        const T: &str = "cloudstate.tck.model.crdt.CrdtTwo";
        let t = setup();
        let id = fresh("GSet");
        let two = q(&id, vec![]);
        let gs = state(Value::Gset(GSetValue { elements: vec!["one".into()] }));
        let add = A::Update(Update { update: Some(U::Gset(GSetUpdate { add: "one".into() })), ..Default::default() });
        assert_eq!(t.process(S, "Process", &q(&id, vec![add])).unwrap(), gs);
        let pstr = massa::proto::google::protobuf::Any { type_url: "p.cloudstate.io/string".into(), value: vec![0x0a, 3, b'o', b'n', b'e'].into() };
        let added = delta(crdt_delta::Delta::Gset(massa::proto::cloudstate::crdt::GSetDelta { added: vec![pstr] }));
        let c1 = t.stream(2, 1);
        assert_eq!(input(&c1, 0), init(S, &id));
        assert_eq!(output(&c1, 0), rep(1, &gs, added));
        // Forward: the reply comes from CrdtTwo on a new stream.
        let fwd = q(&id, vec![A::Forward(Fwd { id: id.clone() })]);
        assert_eq!(t.process(S, "Process", &fwd).unwrap(), Response::default());
        let forward = Forward { service_name: T.into(), command_name: "Call".into(), payload: Some(rq(&two)), metadata: None };
        let client_action = Some(ClientAction { action: Some(Action::Forward(forward)) });
        let expected = CrdtReply { command_id: 2, client_action, side_effects: vec![], state_action: None, streamed: false };
        assert_eq!(output(&t.stream(3, 2), 1), CrdtStreamOut { message: Some(Out::Reply(expected)) });
        let c2 = t.stream_at(2, 2, 1);
        assert_eq!(input(&c2, 0), init(T, &id));
        assert_eq!(input(&c2, 1), cmd(&id, 1, "Call", &two));
        assert_eq!(output(&c2, 0), rep(1, &Response::default(), None));
        // Side effect: reuses c2.
        let eff = q(&id, vec![A::Effect(Effect { id: id.clone(), synchronous: false })]);
        assert_eq!(t.process(S, "Process", &eff).unwrap(), gs);
        let effect = SideEffect { service_name: T.into(), command_name: "Call".into(), payload: Some(rq(&two)), synchronous: false, metadata: None };
        let Some(Out::Reply(mut with_effect)) = rep(3, &gs, None).message else { unreachable!() };
        with_effect.side_effects = vec![effect];
        assert_eq!(output(&t.stream(4, 3), 2), CrdtStreamOut { message: Some(Out::Reply(with_effect)) });
        assert_eq!(input(&t.stream_at(2, 3, 2), 2), cmd(&id, 2, "Call", &two));
        // Deletes close each stream.
        let del = q(&id, vec![A::Delete(Delete {})]);
        assert_eq!(t.process(S, "Process", &del).unwrap(), gs);
        assert_eq!(output(&t.stream(5, 4), 3), rep(4, &gs, delete()));
        assert!(t.closed(EXPECT), "c1 closes after its delete");
        assert_eq!(t.process(T, "Call", &del).unwrap(), Response::default());
        assert_eq!(output(&t.stream_at(2, 4, 3), 2), rep(3, &Response::default(), delete()));
        assert!(t.closed_at(2, EXPECT), "c2 closes after its delete");
    }

    #[test]
    fn verify_failures() {
        let t = setup();
        let id = fresh("GCounter");
        let inc = A::Update(Update { update: Some(U::Gcounter(GCounterUpdate { increment: 42 })), ..Default::default() });
        let r1 = q(&id, vec![inc]);
        let g42 = state(Value::Gcounter(GCounterValue { value: 42 }));
        assert_eq!(t.process(S, "Process", &r1).unwrap(), g42);
        let action = delta(crdt_delta::Delta::Gcounter(GCounterDelta { increment: 42 }));
        assert_eq!(output(&t.stream(2, 1), 0), rep(1, &g42, action));
        let r2 = q(&id, vec![A::Fail(Fail { message: "expected failure".into() })]);
        let err = t.process(S, "Process", &r2).unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "expected failure"));
        let failure = Failure { command_id: 2, description: "expected failure".into(), restart: false };
        let client_action = Some(ClientAction { action: Some(Action::Failure(failure)) });
        let expected = CrdtReply { command_id: 2, client_action, side_effects: vec![], state_action: None, streamed: false };
        assert_eq!(output(&t.stream(3, 2), 1), CrdtStreamOut { message: Some(Out::Reply(expected)) });
        assert_eq!(t.process(S, "Process", &q(&id, vec![A::Delete(Delete {})])).unwrap(), g42);
        assert_eq!(output(&t.stream(4, 3), 2), rep(3, &g42, delete()));
        assert!(t.closed(EXPECT), "the stream closes after the delete");
    }

    /// The next element of a server stream, as a CRDT model response.
    async fn next(r: &mut massa::userfn::CallResponse) -> Response {
        Response::decode(r.message().await.unwrap().unwrap()).unwrap()
    }

    #[test]
    fn verify_streamed_responses_for_connection_tracking() {
        use massa::proto::cloudstate::crdt::{CrdtStreamCancelledResponse, CrdtStreamedMessage, VoteDelta};
        use massa::proto::cloudstate::tck::model::crdt::{StreamedRequest, VoteUpdate, VoteValue};
        use massa::proto::cloudstate::StreamCancelled;
        let t = setup();
        let id = fresh("Vote");
        let vote = |self_vote, votes_for, total_voters| state(Value::Vote(VoteValue { self_vote, votes_for, total_voters }));
        let (st0, st1) = (vote(false, 0, 1), vote(true, 1, 1));
        let vote_update = |self_vote| Some(Update { update: Some(U::Vote(VoteUpdate { self_vote })), ..Default::default() });
        let answer = |r: &Response| Some(ClientAction { action: Some(Action::Reply(Reply { payload: Some(any("cloudstate.tck.model.crdt.Response", r)), metadata: None })) });
        let cmds = |n: i64, r: &StreamedRequest| {
            let payload = Some(any("cloudstate.tck.model.crdt.StreamedRequest", r));
            let c = Command { entity_id: id.clone(), id: n, name: "ProcessStreamed".into(), payload, streamed: true, metadata: None };
            CrdtStreamIn { message: Some(In::Command(c)) }
        };
        let streamed = |n: i64, r: &Response| {
            let m = CrdtStreamedMessage { command_id: n, client_action: answer(r), side_effects: vec![], end_stream: false };
            CrdtStreamOut { message: Some(Out::StreamedMessage(m)) }
        };
        let cancelled = |n: i64| CrdtStreamIn { message: Some(In::StreamCancelled(StreamCancelled { entity_id: id.clone(), id: n })) };
        let path = format!("/{S}/ProcessStreamed");
        run(async {
            let c = Client::new(t.massa.port);
            let pool = c.pool();
            let monitor_req = StreamedRequest { id: id.clone(), ..Default::default() };
            let (mut monitor_send, monitor) = pool.open(&pool.endpoint(&path), None).await.unwrap();
            monitor_send.send_data(encode_prost(&monitor_req), true).unwrap();
            let mut monitor = massa::userfn::CallResponse::open(monitor, 1 << 20).await.unwrap();
            assert_eq!(next(&mut monitor).await, st0);
            let c1 = t.stream_async(1, 2, 1).await;
            assert_eq!(input(&c1, 0), init(S, &id));
            assert_eq!(input(&c1, 1), cmds(1, &monitor_req));
            let first = CrdtReply { command_id: 1, client_action: answer(&st0), side_effects: vec![], state_action: None, streamed: true };
            assert_eq!(output(&c1, 0), CrdtStreamOut { message: Some(Out::Reply(first)) });

            let connect_req = StreamedRequest {
                id: id.clone(),
                cancel_update: vote_update(false),
                initial_update: vote_update(true),
                empty: true,
                ..Default::default()
            };
            let (mut connect_send, connect) = pool.open(&pool.endpoint(&path), None).await.unwrap();
            connect_send.send_data(encode_prost(&connect_req), true).unwrap();
            assert_eq!(next(&mut monitor).await, st1);
            let c1 = t.stream_async(1, 3, 3).await;
            assert_eq!(input(&c1, 2), cmds(2, &connect_req));
            let joined = delta(crdt_delta::Delta::Vote(VoteDelta { self_vote: true, votes_for: 0, total_voters: 0 }));
            let second = CrdtReply { command_id: 2, client_action: None, side_effects: vec![], state_action: joined, streamed: true };
            assert_eq!(output(&c1, 1), CrdtStreamOut { message: Some(Out::Reply(second)) });
            assert_eq!(output(&c1, 2), streamed(1, &st1));

            // `connect` receives nothing (100 ms), then is cancelled, which
            // runs its cancel update.
            let silent = monoio::time::timeout(Duration::from_millis(100), async {
                let mut r = massa::userfn::CallResponse::open(connect, 1 << 20).await?;
                r.message().await
            })
            .await;
            assert!(silent.is_err(), "connect must stay open and silent, got {silent:?}");
            connect_send.send_reset(massa::http2::Reason::CANCEL);
            assert_eq!(next(&mut monitor).await, st0);
            let c1 = t.stream_async(1, 4, 5).await;
            assert_eq!(input(&c1, 3), cancelled(2));
            let left = delta(crdt_delta::Delta::Vote(VoteDelta { self_vote: false, votes_for: 0, total_voters: 0 }));
            let response = CrdtStreamCancelledResponse { command_id: 2, side_effects: vec![], state_action: left };
            assert_eq!(output(&c1, 3), CrdtStreamOut { message: Some(Out::StreamCancelledResponse(response)) });
            assert_eq!(output(&c1, 4), streamed(1, &st0));

            monitor_send.send_reset(massa::http2::Reason::CANCEL);
            drop(monitor);
            let c1 = t.stream_async(1, 5, 6).await;
            assert_eq!(input(&c1, 4), cancelled(1));
            let response = CrdtStreamCancelledResponse { command_id: 1, side_effects: vec![], state_action: None };
            assert_eq!(output(&c1, 5), CrdtStreamOut { message: Some(Out::StreamCancelledResponse(response)) });
        });
        let del = q(&id, vec![A::Delete(Delete {})]);
        assert_eq!(t.process(S, "Process", &del).unwrap(), st0);
        let c1 = t.stream(6, 7);
        assert_eq!(input(&c1, 5), cmd(&id, 3, "Process", &del), "cancellations do not consume command ids");
        assert_eq!(output(&c1, 6), rep(3, &st0, delete()));
        assert!(t.closed(EXPECT), "the stream closes after the delete");
    }

    #[test]
    fn verify_crdt_http_api() {
        let t = setup();
        let id = fresh("PNCounter");
        let (status, body) = http_post_json(t.massa.port, &format!("/tck/model/crdt/{id}"), "{}").expect("an HTTP answer");
        assert_eq!((status, body.as_str()), (200, r#"{"state":{"pncounter":{"value":"0"}}}"#));
    }

    #[test]
    fn verify_passivation_timeout() {
        let t = setup();
        let id = fresh("Configured");
        let r = q(&id, vec![]);
        assert_eq!(t.process(K, "Call", &r).unwrap(), Response::default());
        let c = t.stream(2, 1);
        assert_eq!(input(&c, 0), init(K, &id));
        assert_eq!(input(&c, 1), cmd(&id, 1, "Call", &r));
        assert!(t.closed(Duration::from_secs(2)), "closed in both directions within 2 s");
    }
}

mod eventing_tck {
    //! EventingTCK (3), as the TCK states them: an event persisted by an
    //! event-sourced entity is consumed from the event log (by persistence
    //! id) by the subscriber action, within 3 s per step.
    use super::*;
    use massa::grpc::encode_prost;
    use massa::proto::cloudstate::action::{action_response::Response as Out, ActionCommand, ActionResponse};
    use massa::proto::cloudstate::eventsourced::{
        event_sourced_stream_in::Message as EsIn, event_sourced_stream_out::Message as EsOut, EventSourcedStreamIn,
        EventSourcedStreamOut,
    };
    use massa::proto::cloudstate::tck::model::eventlogeventing::{
        emit_event_request, process_step::Step, EmitEventRequest, EventOne, Forward, JsonEvent, ProcessStep, Reply, Response,
    };
    use support::interceptor::Connection;

    const ONE: &str = "cloudstate.tck.model.eventlogeventing.EventSourcedEntityOne";
    const TWO: &str = "cloudstate.tck.model.eventlogeventing.EventSourcedEntityTwo";
    const ES: &str = "/cloudstate.eventsourced.EventSourced/handle";
    const UNARY: &str = "/cloudstate.action.ActionProtocol/handleUnary";

    struct Eventing {
        _function: Proc,
        interceptor: Interceptor,
        massa: Massa,
        next: std::cell::Cell<usize>,
    }

    fn setup() -> Eventing {
        let fn_port = free_port();
        let function = start_tck_model_with(fn_port, &["--only", "eventing"]);
        let (interceptor, massa) = behind_interceptor(fn_port, &["--store", "memory"]);
        proxy_info(&interceptor);
        Eventing { _function: function, interceptor, massa, next: std::cell::Cell::new(1) }
    }

    impl Eventing {
        /// The next connection, which must be to `path`, once it has `n`
        /// input and `m` output messages.
        fn connection(&self, path: &str, n: usize, m: usize) -> Connection {
            let i = self.next.get();
            let c = self
                .interceptor
                .recorder
                .wait(EXPECT, |calls| calls.get(i).filter(|c| c.input.len() >= n && c.output.len() >= m).cloned())
                .unwrap_or_else(|| panic!("no connection #{i} to {path}: {:?}", self.interceptor.recorder.snapshot().get(i)));
            assert_eq!(c.path, path, "connection #{i}");
            self.next.set(i + 1);
            c
        }

        fn call(&self, path: &str, request: &impl Message) {
            run(async {
                let c = Client::new(self.massa.port);
                let (_, _, status) = c.call(path, None, vec![encode_prost(request)]).await;
                status.unwrap();
            });
        }

        /// The emitting entity's stream: init for `service`/`id`, a command
        /// in, a reply out; returns the reply.
        fn emitter(&self, service: &str, id: &str) -> EventSourcedStreamOut {
            let c = self.connection(ES, 2, 1);
            let Some(EsIn::Init(init)) = EventSourcedStreamIn::decode(message(&c.input[0])).unwrap().message else {
                panic!("init first")
            };
            assert_eq!((init.service_name.as_str(), init.entity_id.as_str()), (service, id));
            assert!(matches!(EventSourcedStreamIn::decode(message(&c.input[1])).unwrap().message, Some(EsIn::Command(_))));
            EventSourcedStreamOut::decode(message(&c.output[0])).unwrap()
        }

        /// "No other connections may appear": once the proxy has stopped
        /// (no call can follow), the recorded calls are exactly the ones
        /// the check consumed.
        fn no_other_connections(mut self) {
            self.massa.proc.signal(libc::SIGTERM);
            assert_eq!(self.massa.proc.must_exit(), 0, "{}", self.massa.proc.log());
            let calls = self.interceptor.recorder.snapshot();
            let paths: Vec<_> = calls.iter().map(|c| c.path.as_str()).collect();
            assert_eq!(calls.len(), self.next.get(), "an event delivered more than once, or an extra call: {paths:?}");
        }

        /// The subscriber's unary call: its command and response.
        fn consumer(&self) -> (ActionCommand, ActionResponse) {
            let c = self.connection(UNARY, 1, 1);
            (ActionCommand::decode(message(&c.input[0])).unwrap(), ActionResponse::decode(message(&c.output[0])).unwrap())
        }
    }

    fn message(e: &Event) -> bytes::Bytes {
        match e {
            Event::Message(m) => m.clone(),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    fn emit(id: &str, step: Step) -> EmitEventRequest {
        let event = EventOne { step: Some(ProcessStep { step: Some(step) }) };
        EmitEventRequest { id: id.into(), event: Some(emit_event_request::Event::EventOne(event)) }
    }

    #[test]
    fn consume_an_event() {
        let t = setup();
        let id = "eventlogeventing:1";
        let step = Step::Reply(Reply { message: "some message".into() });
        t.call(&format!("/{ONE}/EmitEvent"), &emit(id, step.clone()));
        t.emitter(ONE, id);
        let (command, response) = t.consumer();
        let event = EventOne::decode(command.payload.unwrap().value).unwrap();
        assert_eq!(event.step, Some(ProcessStep { step: Some(step) }));
        let Some(Out::Reply(reply)) = response.response else { panic!("a reply") };
        let answer = Response::decode(reply.payload.unwrap().value).unwrap();
        assert_eq!(answer, Response { id: id.into(), message: "some message".into() });
        t.no_other_connections();
    }

    #[test]
    fn forward_a_consumed_event() {
        let t = setup();
        let id = "eventlogeventing:2";
        let step = Step::Forward(Forward { message: "some message".into() });
        t.call(&format!("/{ONE}/EmitEvent"), &emit(id, step.clone()));
        t.emitter(ONE, id);
        let (command, response) = t.consumer();
        let event = EventOne::decode(command.payload.unwrap().value).unwrap();
        assert_eq!(event.step, Some(ProcessStep { step: Some(step) }));
        assert!(matches!(response.response, Some(Out::Forward(_))), "{response:?}");
        let (effect, _) = t.consumer();
        assert_eq!(effect.name, "Effect");
        t.no_other_connections();
    }

    #[test]
    fn process_json_events() {
        let t = setup();
        let id = "eventlogeventing:3";
        t.call(&format!("/{TWO}/EmitJsonEvent"), &JsonEvent { id: id.into(), message: "some json message".into() });
        let Some(EsOut::Reply(reply)) = t.emitter(TWO, id).message else { panic!("a reply") };
        assert_eq!(reply.events.len(), 1);
        assert!(reply.events[0].type_url.starts_with("json.cloudstate.io/"), "{:?}", reply.events[0]);
        let (_, response) = t.consumer();
        let Some(Out::Reply(reply)) = response.response else { panic!("a reply") };
        let answer = Response::decode(reply.payload.unwrap().value).unwrap();
        assert_eq!(answer, Response { id: id.into(), message: "some json message".into() });
        t.no_other_connections();
    }
}

/// ProxyTCK 2: server reflection lists itself then every discovered entity
/// service sorted (no health, no v1), echoes host and request, answers an
/// unknown symbol with an empty descriptor response, and completes.
#[test]
fn verify_that_the_proxy_supports_server_reflection() {
    use massa::proto::grpc::reflection::v1alpha::{
        server_reflection_request::MessageRequest as Rq, server_reflection_response::MessageResponse as Rs,
        FileDescriptorResponse, ServerReflectionRequest, ServerReflectionResponse,
    };
    let t = action_tck::setup();
    let (_, spec) = proxy_info(&t.interceptor);
    let mut expected: Vec<String> = spec.entities.iter().map(|e| e.service_name.clone()).collect();
    expected.sort();
    expected.insert(0, "grpc.reflection.v1alpha.ServerReflection".into());
    let requests = [Rq::ListServices(String::new()), Rq::ListServices("nonsense.blabla.".into()), Rq::FileContainingSymbol("nonsense.blabla.Void".into())]
        .map(|r| ServerReflectionRequest { host: "tck-host".into(), message_request: Some(r) });
    run(async {
        let c = Client::new(t.massa.port);
        let (_, msgs, status) = c
            .call(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                None,
                requests.iter().map(massa::grpc::encode_prost).collect(),
            )
            .await;
        status.expect("the stream completes");
        let answers: Vec<_> = msgs.into_iter().map(|m| ServerReflectionResponse::decode(m).unwrap()).collect();
        assert_eq!(answers.len(), 3);
        for (answer, request) in answers.iter().zip(&requests) {
            assert_eq!(answer.valid_host, "tck-host");
            assert_eq!(answer.original_request.as_ref(), Some(request));
        }
        for answer in &answers[..2] {
            let Some(Rs::ListServicesResponse(list)) = &answer.message_response else { panic!("{answer:?}") };
            let names: Vec<_> = list.service.iter().map(|s| s.name.clone()).collect();
            assert_eq!(names, expected);
        }
        assert_eq!(answers[2].message_response, Some(Rs::FileDescriptorResponse(FileDescriptorResponse::default())));
    });
}
