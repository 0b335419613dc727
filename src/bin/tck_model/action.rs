//! The action models over `cloudstate.action.ActionProtocol`:
//! `ActionTckModel` (steps → responses), `ActionTwo` (always `Response{}`),
//! and, via [`crate::eventing`], `EventLogSubscriberModel`.

use massa::grpc::{MessageReader, Responder, Status};
use massa::proto::cloudstate::action::{action_response::Response as Outcome, ActionCommand, ActionResponse};
use massa::proto::cloudstate::tck::model::action::{self as model, process_step::Step};
use massa::proto::cloudstate::{Failure, Forward, Reply, SideEffect};

use crate::eventing;
use crate::wire::{any, decode, invalid, read_error, send, unpack};

pub const TCK_MODEL: &str = "cloudstate.tck.model.action.ActionTckModel";
pub const TWO: &str = "cloudstate.tck.model.action.ActionTwo";
const REQUEST: &str = "cloudstate.tck.model.action.Request";
const RESPONSE: &str = "cloudstate.tck.model.action.Response";
const OTHER_REQUEST: &str = "cloudstate.tck.model.action.OtherRequest";

/// A method's streaming shape, which fixes the protocol call it arrives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Unary,
    StreamedIn,
    StreamedOut,
    Streamed,
}

impl Shape {
    /// The `ActionProtocol` method the proxy uses for this shape.
    pub fn protocol_method(self) -> &'static str {
        match self {
            Shape::Unary => "handleUnary",
            Shape::StreamedIn => "handleStreamedIn",
            Shape::StreamedOut => "handleStreamedOut",
            Shape::Streamed => "handleStreamed",
        }
    }
}

/// The shape of every action method this function serves.
pub fn shape(service: &str, method: &str) -> Option<Shape> {
    match (service, method) {
        (TCK_MODEL, "ProcessUnary") | (TWO, "Call") => Some(Shape::Unary),
        (TCK_MODEL, "ProcessStreamedIn") => Some(Shape::StreamedIn),
        (TCK_MODEL, "ProcessStreamedOut") => Some(Shape::StreamedOut),
        (TCK_MODEL, "ProcessStreamed") => Some(Shape::Streamed),
        (eventing::SUBSCRIBER, m) => eventing::subscriber_shape(m),
        _ => None,
    }
}

/// Checks that `service/method` exists and is called with `called` shape.
fn check_shape(service: &str, method: &str, called: Shape) -> Result<(), Status> {
    match shape(service, method) {
        None => Err(invalid(format!("unknown action method {service:?}/{method:?}"))),
        Some(s) if s != called => Err(invalid(format!(
            "{service}/{method} must be called with {}, not {}",
            s.protocol_method(),
            called.protocol_method()
        ))),
        Some(_) => Ok(()),
    }
}

/// A reply carrying `Response{message}`.
fn reply(message: &str) -> Outcome {
    Outcome::Reply(Reply { payload: Some(any(RESPONSE, &model::Response { message: message.to_owned() })), metadata: None })
}

/// The one response a group of steps produces (steps applied in order; a
/// later reply/forward/fail replaces an earlier one, effects accumulate).
pub fn group_response(group: &model::ProcessGroup) -> ActionResponse {
    let mut out = ActionResponse::default();
    for step in &group.steps {
        match &step.step {
            Some(Step::Reply(r)) => out.response = Some(reply(&r.message)),
            Some(Step::Forward(f)) => {
                out.response = Some(Outcome::Forward(Forward {
                    service_name: TWO.to_owned(),
                    command_name: "Call".to_owned(),
                    payload: Some(any(OTHER_REQUEST, &model::OtherRequest { id: f.id.clone() })),
                    metadata: None,
                }))
            }
            Some(Step::Fail(f)) => {
                out.response = Some(Outcome::Failure(Failure { command_id: 0, description: f.message.clone(), restart: false }))
            }
            Some(Step::Effect(e)) => out.side_effects.push(SideEffect {
                service_name: TWO.to_owned(),
                command_name: "Call".to_owned(),
                payload: Some(any(OTHER_REQUEST, &model::OtherRequest { id: e.id.clone() })),
                synchronous: e.synchronous,
                metadata: None,
            }),
            None => {}
        }
    }
    out
}

/// Folds per-group responses into one: a response without an outcome only
/// contributes its effects; one with an outcome replaces the result, its
/// own effects first, then everything gathered before.
pub fn fold(responses: impl IntoIterator<Item = ActionResponse>) -> ActionResponse {
    let mut acc = ActionResponse::default();
    for r in responses {
        if r.response.is_none() {
            acc.side_effects.extend(r.side_effects);
        } else {
            let mut side_effects = r.side_effects;
            side_effects.append(&mut acc.side_effects);
            acc = ActionResponse { response: r.response, side_effects };
        }
    }
    acc
}

/// One response per group of `request`.
pub fn per_group(request: &model::Request) -> Vec<ActionResponse> {
    request.groups.iter().map(group_response).collect()
}

/// The answer to a unary call.
pub fn unary_response(command: &ActionCommand) -> Result<ActionResponse, Status> {
    check_shape(&command.service_name, &command.name, Shape::Unary)?;
    match (command.service_name.as_str(), command.name.as_str()) {
        (TCK_MODEL, _) => Ok(fold(per_group(&unpack::<model::Request>(command.payload.as_ref(), REQUEST)?))),
        (TWO, _) => {
            unpack::<model::OtherRequest>(command.payload.as_ref(), OTHER_REQUEST)?;
            Ok(ActionResponse { response: Some(reply("")), side_effects: Vec::new() })
        }
        _ => eventing::subscriber_unary(command),
    }
}

/// The answers to a server-streaming call, in order.
pub fn streamed_out_responses(command: &ActionCommand) -> Result<Vec<ActionResponse>, Status> {
    check_shape(&command.service_name, &command.name, Shape::StreamedOut)?;
    match command.service_name.as_str() {
        TCK_MODEL => Ok(per_group(&unpack::<model::Request>(command.payload.as_ref(), REQUEST)?)),
        _ => eventing::subscriber_streamed_out(command),
    }
}

/// `handleUnary`.
pub async fn handle_unary(reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
    let command: ActionCommand = decode(reader.single().await?, "ActionCommand")?;
    send(responder, &unary_response(&command)?).await
}

/// `handleStreamedOut`.
pub async fn handle_streamed_out(reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
    let command: ActionCommand = decode(reader.single().await?, "ActionCommand")?;
    for response in streamed_out_responses(&command)? {
        send(responder, &response).await?;
    }
    Ok(())
}

/// `handleStreamedIn` (`fold_all`) and `handleStreamed`: the first command
/// names the method and has no payload; each later one carries a request.
pub async fn handle_streamed(mut reader: MessageReader, responder: &mut Responder, called: Shape) -> Result<(), Status> {
    let Some(first) = reader.message().await.map_err(read_error)? else {
        return Err(invalid("streamed call ended before its first ActionCommand"));
    };
    let header: ActionCommand = decode(first, "ActionCommand")?;
    if header.payload.is_some() {
        return Err(invalid("the first ActionCommand of a streamed call must carry no payload"));
    }
    check_shape(&header.service_name, &header.name, called)?;
    let mut gathered = Vec::new();
    while let Some(m) = reader.message().await.map_err(read_error)? {
        let command: ActionCommand = decode(m, "ActionCommand")?;
        let request: model::Request = unpack(command.payload.as_ref(), REQUEST)?;
        match called {
            Shape::StreamedIn => gathered.extend(per_group(&request)),
            _ => {
                for response in per_group(&request) {
                    send(responder, &response).await?;
                }
            }
        }
    }
    if called == Shape::StreamedIn {
        send(responder, &fold(gathered)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{process_step::Step as S, ProcessGroup, ProcessStep};

    fn step(s: S) -> ProcessStep {
        ProcessStep { step: Some(s) }
    }
    fn rep(m: &str) -> ProcessStep {
        step(S::Reply(model::Reply { message: m.into() }))
    }
    fn fwd(id: &str) -> ProcessStep {
        step(S::Forward(model::Forward { id: id.into() }))
    }
    fn fail(m: &str) -> ProcessStep {
        step(S::Fail(model::Fail { message: m.into() }))
    }
    fn eff(id: &str, synchronous: bool) -> ProcessStep {
        step(S::Effect(model::SideEffect { id: id.into(), synchronous }))
    }
    fn group(steps: Vec<ProcessStep>) -> ProcessGroup {
        ProcessGroup { steps }
    }
    fn se(id: &str, synchronous: bool) -> SideEffect {
        SideEffect {
            service_name: TWO.into(),
            command_name: "Call".into(),
            payload: Some(any(OTHER_REQUEST, &model::OtherRequest { id: id.into() })),
            synchronous,
            metadata: None,
        }
    }
    fn command(name: &str, request: &model::Request) -> ActionCommand {
        ActionCommand {
            service_name: TCK_MODEL.into(),
            name: name.into(),
            payload: Some(any(REQUEST, request)),
            metadata: None,
        }
    }

    #[test]
    fn reply_payload_is_canonical_response() {
        let r = group_response(&group(vec![rep("one")]));
        let Some(Outcome::Reply(reply)) = r.response else { panic!("not a reply: {r:?}") };
        let payload = reply.payload.unwrap();
        assert_eq!(payload.type_url, "type.googleapis.com/cloudstate.tck.model.action.Response");
        assert_eq!(&payload.value[..], b"\x0a\x03one");
        assert!(r.side_effects.is_empty());
    }

    #[test]
    fn later_outcome_replaces_earlier_and_effects_stay() {
        let r = group_response(&group(vec![rep("a"), eff("x", false), fwd("other"), eff("y", true)]));
        match r.response {
            Some(Outcome::Forward(f)) => {
                assert_eq!((f.service_name.as_str(), f.command_name.as_str()), (TWO, "Call"));
                assert_eq!(f.payload, Some(any(OTHER_REQUEST, &model::OtherRequest { id: "other".into() })));
            }
            other => panic!("expected a forward, got {other:?}"),
        }
        assert_eq!(r.side_effects, vec![se("x", false), se("y", true)]);
    }

    #[test]
    fn failures_keep_side_effects() {
        let r = group_response(&group(vec![eff("a", false), fail("boom")]));
        assert_eq!(r.response, Some(Outcome::Failure(Failure { command_id: 0, description: "boom".into(), restart: false })));
        assert_eq!(r.side_effects, vec![se("a", false)]);
    }

    #[test]
    fn effects_only_group_has_no_outcome() {
        let r = group_response(&group(vec![eff("a", false), eff("b", true)]));
        assert_eq!(r.response, None);
        assert_eq!(r.side_effects, vec![se("a", false), se("b", true)]);
    }

    #[test]
    fn fold_puts_own_effects_before_gathered_ones() {
        let folded = fold(per_group(&model::Request {
            groups: vec![group(vec![eff("1", false)]), group(vec![rep("r"), eff("2", false)]), group(vec![eff("3", true)])],
        }));
        assert_eq!(folded.response, Some(reply("r")));
        assert_eq!(folded.side_effects, vec![se("2", false), se("1", false), se("3", true)]);
        assert_eq!(fold(Vec::new()), ActionResponse::default());
    }

    #[test]
    fn unary_and_streamed_out() {
        let req = model::Request { groups: vec![group(vec![rep("A")]), group(vec![rep("B")]), group(vec![fwd("C")])] };
        let unary = unary_response(&command("ProcessUnary", &req)).unwrap();
        assert!(matches!(unary.response, Some(Outcome::Forward(_))));
        let out = streamed_out_responses(&command("ProcessStreamedOut", &req)).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].response, Some(reply("A")));
        assert_eq!(out[1].response, Some(reply("B")));
    }

    #[test]
    fn action_two_replies_empty() {
        let call = ActionCommand {
            service_name: TWO.into(),
            name: "Call".into(),
            payload: Some(any(OTHER_REQUEST, &model::OtherRequest { id: "x".into() })),
            metadata: None,
        };
        let r = unary_response(&call).unwrap();
        let Some(Outcome::Reply(reply)) = r.response else { panic!() };
        assert!(reply.payload.unwrap().value.is_empty());
    }

    #[test]
    fn malformed_commands_are_invalid_arguments() {
        use massa::grpc::Code;
        let req = model::Request::default();
        // Wrong shape for the method.
        assert_eq!(unary_response(&command("ProcessStreamed", &req)).unwrap_err().code, Code::InvalidArgument);
        // Unknown method.
        assert_eq!(unary_response(&command("Nope", &req)).unwrap_err().code, Code::InvalidArgument);
        // Missing and mistyped payloads.
        let mut c = command("ProcessUnary", &req);
        c.payload = None;
        assert_eq!(unary_response(&c).unwrap_err().code, Code::InvalidArgument);
        c.payload = Some(any("cloudstate.tck.model.action.OtherRequest", &model::OtherRequest::default()));
        let e = unary_response(&c).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(e.message.contains("OtherRequest"), "{e}");
        // Garbage bytes.
        c.payload = Some(massa::proto::google::protobuf::Any { type_url: format!("type.googleapis.com/{REQUEST}"), value: vec![0xff, 0xff].into() });
        assert_eq!(unary_response(&c).unwrap_err().code, Code::InvalidArgument);
    }
}
