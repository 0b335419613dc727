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

/// ProxyTCK 1, the part Massa meets today: protocol 0.2, discovery exactly
/// once, and the entity types it serves.
#[test]
fn proxy_info_protocol_and_single_discovery() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let (interceptor, _m) = behind_interceptor(fn_port, &["--store", "memory"]);
    let (info, spec) = proxy_info(&interceptor);
    assert_eq!((info.protocol_major_version, info.protocol_minor_version), (0, 2));
    assert_eq!(info.proxy_name, "massa");
    let mut types = info.supported_entity_types.clone();
    types.sort();
    assert_eq!(
        types,
        ["cloudstate.action.ActionProtocol", "cloudstate.eventsourced.EventSourced", "cloudstate.valueentity.ValueEntity"]
    );
    assert!(!spec.entities.is_empty());
    std::thread::sleep(Duration::from_millis(200));
    let discovers = interceptor.recorder.snapshot().iter().filter(|c| c.path.ends_with("/discover")).count();
    assert_eq!(discovers, 1, "discover is called exactly once");
}

/// ProxyTCK 1 as the TCK states it: the supported set must also contain
/// `cloudstate.crdt.Crdt`.
#[test]
#[ignore = "needs CRDT entities (cloudstate.crdt.Crdt in ProxyInfo.supported_entity_types)"]
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
            let (mut send, response) = pool.open(&pool.uri(&path("ProcessStreamed")), None).await.unwrap();
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
            let (mut send, response) = pool.open(&pool.uri(&path("ProcessStreamed")), None).await.unwrap();
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
    #[ignore = "needs HTTP/JSON transcoding (google.api.http)"]
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
