//! The event-log eventing models: the emitters `EventSourcedEntityOne` and
//! `EventSourcedEntityTwo` (event-sourced, no state), and the subscriber
//! action `EventLogSubscriberModel`, which learns the emitting entity's id
//! from the CloudEvent metadata entry `ce-subject`.

use massa::grpc::Status;
use massa::proto::cloudstate::action::{action_response::Response as Outcome, ActionCommand, ActionResponse};
use massa::proto::cloudstate::eventsourced::EventSourcedReply;
use massa::proto::cloudstate::tck::model::eventlogeventing::{self as model, emit_event_request::Event, process_step::Step};
use massa::proto::cloudstate::{client_action, metadata_entry, Command, Failure, Forward, Reply};
use massa::proto::google::protobuf::{Any, Empty};

use crate::action::Shape;
use crate::event_sourced::reply_to;
use crate::wire::{any, decode, invalid, type_name, unpack};

pub const SUBSCRIBER: &str = "cloudstate.tck.model.eventlogeventing.EventLogSubscriberModel";
pub const ENTITY_ONE: &str = "cloudstate.tck.model.eventlogeventing.EventSourcedEntityOne";
pub const ENTITY_TWO: &str = "cloudstate.tck.model.eventlogeventing.EventSourcedEntityTwo";
const PKG: &str = "cloudstate.tck.model.eventlogeventing";
/// Type URL prefix of Cloudstate's JSON-in-protobuf values.
const JSON_PREFIX: &str = "json.cloudstate.io/";

/// A Cloudstate JSON value: the JSON text as bytes field 1.
#[derive(Clone, PartialEq, prost::Message)]
struct JsonValue {
    #[prost(bytes = "vec", tag = "1")]
    json: Vec<u8>,
}

fn full(name: &str) -> String {
    format!("{PKG}.{name}")
}

/// Shapes of the subscriber's methods.
pub fn subscriber_shape(method: &str) -> Option<Shape> {
    match method {
        "ProcessEventOne" | "Effect" | "ProcessAnyEvent" => Some(Shape::Unary),
        "ProcessEventTwo" => Some(Shape::StreamedOut),
        _ => None,
    }
}

/// The `ce-subject` metadata entry (keys compared without case), or `""`.
fn subject(command: &ActionCommand) -> String {
    let entries = command.metadata.iter().flat_map(|m| &m.entries);
    entries
        .filter(|e| e.key.eq_ignore_ascii_case("ce-subject"))
        .find_map(|e| match &e.value {
            Some(metadata_entry::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn respond(id: &str, message: &str) -> ActionResponse {
    let payload = any(&full("Response"), &model::Response { id: id.to_owned(), message: message.to_owned() });
    ActionResponse { response: Some(Outcome::Reply(Reply { payload: Some(payload), metadata: None })), side_effects: Vec::new() }
}

/// What one step does with an event from entity `id`.
fn step_response(id: &str, step: Option<&model::ProcessStep>) -> ActionResponse {
    match step.and_then(|s| s.step.as_ref()) {
        Some(Step::Reply(r)) => respond(id, &r.message),
        Some(Step::Forward(f)) => ActionResponse {
            response: Some(Outcome::Forward(Forward {
                service_name: SUBSCRIBER.to_owned(),
                command_name: "Effect".to_owned(),
                payload: Some(any(&full("EffectRequest"), &model::EffectRequest { id: id.to_owned(), message: f.message.clone() })),
                metadata: None,
            })),
            side_effects: Vec::new(),
        },
        None => ActionResponse {
            response: Some(Outcome::Failure(Failure {
                command_id: 0,
                description: "event step has neither reply nor forward".to_owned(),
                restart: false,
            })),
            side_effects: Vec::new(),
        },
    }
}

/// The JSON `message` of a Cloudstate JSON event (possibly wrapped in a
/// `google.protobuf.Any` when the method is called directly).
fn json_message(payload: Option<&Any>) -> Result<String, Status> {
    let mut payload = payload.cloned().ok_or_else(|| invalid("ProcessAnyEvent without payload"))?;
    if type_name(&payload.type_url) == "google.protobuf.Any" && !payload.type_url.starts_with(JSON_PREFIX) {
        payload = decode(payload.value, "google.protobuf.Any")?;
    }
    if !payload.type_url.starts_with(JSON_PREFIX) {
        return Err(invalid(format!("ProcessAnyEvent expects a {JSON_PREFIX} value, got {:?}", payload.type_url)));
    }
    let value: JsonValue = decode(payload.value, "JSON value")?;
    let json: serde_json::Value = serde_json::from_slice(&value.json).map_err(|e| invalid(format!("event is not JSON: {e}")))?;
    Ok(json.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_owned())
}

/// The subscriber's unary methods.
pub fn subscriber_unary(command: &ActionCommand) -> Result<ActionResponse, Status> {
    let id = subject(command);
    match command.name.as_str() {
        "ProcessEventOne" => {
            let event: model::EventOne = unpack(command.payload.as_ref(), &full("EventOne"))?;
            Ok(step_response(&id, event.step.as_ref()))
        }
        "Effect" => {
            let r: model::EffectRequest = unpack(command.payload.as_ref(), &full("EffectRequest"))?;
            Ok(respond(&r.id, &r.message))
        }
        "ProcessAnyEvent" => Ok(respond(&id, &json_message(command.payload.as_ref())?)),
        other => Err(invalid(format!("{SUBSCRIBER} has no unary method {other:?}"))),
    }
}

/// `ProcessEventTwo`: one response per step.
pub fn subscriber_streamed_out(command: &ActionCommand) -> Result<Vec<ActionResponse>, Status> {
    let id = subject(command);
    let event: model::EventTwo = unpack(command.payload.as_ref(), &full("EventTwo"))?;
    Ok(event.step.iter().map(|s| step_response(&id, Some(s))).collect())
}

/// A command to one of the emitters: one event, reply `Empty`.
pub fn emitter_command(service: &str, command: &Command) -> Result<EventSourcedReply, Status> {
    let event = match (service, command.name.as_str()) {
        (ENTITY_ONE, "EmitEvent") => {
            let request: model::EmitEventRequest = unpack(command.payload.as_ref(), &full("EmitEventRequest"))?;
            match request.event {
                Some(Event::EventOne(one)) => any(&full("EventOne"), &one),
                Some(Event::EventTwo(two)) => any(&full("EventTwo"), &two),
                None => any(&full("EventTwo"), &model::EventTwo::default()),
            }
        }
        (ENTITY_TWO, "EmitJsonEvent") => {
            let request: model::JsonEvent = unpack(command.payload.as_ref(), &full("JsonEvent"))?;
            let json = serde_json::json!({ "message": request.message }).to_string();
            Any { type_url: format!("{JSON_PREFIX}JsonEvent"), value: prost::Message::encode_to_vec(&JsonValue { json: json.into_bytes() }).into() }
        }
        (service, name) => return Err(invalid(format!("{service} has no command {name:?}"))),
    };
    let empty = Reply { payload: Some(any("google.protobuf.Empty", &Empty {})), metadata: None };
    Ok(EventSourcedReply { events: vec![event], ..reply_to(command.id, client_action::Action::Reply(empty)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use massa::proto::cloudstate::{Metadata, MetadataEntry};

    fn subscriber_call(name: &str, payload: Any) -> ActionCommand {
        let entry = MetadataEntry { key: "ce-subject".into(), value: Some(metadata_entry::Value::StringValue("eventlogeventing:1".into())) };
        ActionCommand {
            service_name: SUBSCRIBER.into(),
            name: name.into(),
            payload: Some(payload),
            metadata: Some(Metadata { entries: vec![entry] }),
        }
    }

    #[test]
    fn event_one_reply_and_forward() {
        let step = |s| model::EventOne { step: Some(model::ProcessStep { step: Some(s) }) };
        let reply = step(Step::Reply(model::Reply { message: "some message".into() }));
        let r = subscriber_unary(&subscriber_call("ProcessEventOne", any(&full("EventOne"), &reply))).unwrap();
        assert_eq!(r, respond("eventlogeventing:1", "some message"));
        let forward = step(Step::Forward(model::Forward { message: "m".into() }));
        let r = subscriber_unary(&subscriber_call("ProcessEventOne", any(&full("EventOne"), &forward))).unwrap();
        let Some(Outcome::Forward(f)) = r.response else { panic!() };
        assert_eq!(f.command_name, "Effect");
        let effect = model::EffectRequest { id: "eventlogeventing:1".into(), message: "m".into() };
        assert_eq!(f.payload, Some(any(&full("EffectRequest"), &effect)));
    }

    #[test]
    fn json_events_round_trip() {
        let emit = model::JsonEvent { id: "eventlogeventing:3".into(), message: "some \"json\" message".into() };
        let command = Command {
            entity_id: emit.id.clone(),
            id: 1,
            name: "EmitJsonEvent".into(),
            payload: Some(any(&full("JsonEvent"), &emit)),
            streamed: false,
            metadata: None,
        };
        let reply = emitter_command(ENTITY_TWO, &command).unwrap();
        assert_eq!(reply.events.len(), 1);
        assert!(reply.events[0].type_url.starts_with(JSON_PREFIX));
        let r = subscriber_unary(&subscriber_call("ProcessAnyEvent", reply.events[0].clone())).unwrap();
        assert_eq!(r, respond("eventlogeventing:1", "some \"json\" message"));
    }
}
