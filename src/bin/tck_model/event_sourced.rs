//! The event-sourced models over `cloudstate.eventsourced.EventSourced/handle`:
//! `EventSourcedTckModel` (string state built from `Persisted` events,
//! snapshot every 5 events), `EventSourcedTwo` and `EventSourcedConfigured`
//! (always `Response{}`), and, via [`crate::eventing`], the two eventing
//! emitters.

use massa::grpc::{MessageReader, Responder, Status};
use massa::proto::cloudstate::eventsourced::{
    event_sourced_stream_in, event_sourced_stream_out, EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedStreamIn,
    EventSourcedStreamOut,
};
use massa::proto::cloudstate::tck::model::{self as model, request_action::Action as Act};
use massa::proto::cloudstate::{client_action, ClientAction, Command, Failure, Forward, Reply, SideEffect};

use crate::eventing;
use crate::wire::{any, decode, invalid, read_error, send, unpack};

pub const TCK_MODEL: &str = "cloudstate.tck.model.EventSourcedTckModel";
pub const TWO: &str = "cloudstate.tck.model.EventSourcedTwo";
pub const CONFIGURED: &str = "cloudstate.tck.model.EventSourcedConfigured";
const REQUEST: &str = "cloudstate.tck.model.Request";
const RESPONSE: &str = "cloudstate.tck.model.Response";
const PERSISTED: &str = "cloudstate.tck.model.Persisted";
/// `EventSourcedTckModel` attaches a snapshot when an event's sequence
/// number is a multiple of this.
pub const SNAPSHOT_EVERY: i64 = 5;

/// One activated event-sourced entity.
#[derive(Debug)]
pub struct Entity {
    service: &'static str,
    entity_id: String,
    /// `EventSourcedTckModel`: the concatenated event values.
    state: String,
    /// Sequence number of the last event applied (or of the snapshot).
    sequence: i64,
    /// Whether a command came already (events may not follow one).
    commanded: bool,
}

impl Entity {
    /// Activates from `init`, loading its snapshot if there is one.
    pub fn new(init: EventSourcedInit) -> Result<Entity, Status> {
        let service = [TCK_MODEL, TWO, CONFIGURED, eventing::ENTITY_ONE, eventing::ENTITY_TWO]
            .into_iter()
            .find(|s| *s == init.service_name)
            .ok_or_else(|| invalid(format!("unknown event-sourced service {:?}", init.service_name)))?;
        let mut entity = Entity { service, entity_id: init.entity_id, state: String::new(), sequence: 0, commanded: false };
        if let Some(snapshot) = init.snapshot {
            let value = snapshot.snapshot.ok_or_else(|| invalid("EventSourcedSnapshot without a snapshot"))?;
            if service == TCK_MODEL {
                entity.state = unpack::<model::Persisted>(Some(&value), PERSISTED)?.value;
            }
            entity.sequence = snapshot.snapshot_sequence;
        }
        Ok(entity)
    }

    #[cfg(test)]
    pub fn state(&self) -> &str {
        &self.state
    }

    #[cfg(test)]
    pub fn sequence(&self) -> i64 {
        self.sequence
    }

    /// Applies one replayed event.
    pub fn event(&mut self, event: EventSourcedEvent) -> Result<(), Status> {
        if self.commanded {
            return Err(invalid("EventSourcedEvent after the first command"));
        }
        if event.sequence <= self.sequence {
            return Err(invalid(format!("event sequence {} does not follow {}", event.sequence, self.sequence)));
        }
        if self.service == TCK_MODEL {
            self.state.push_str(&unpack::<model::Persisted>(event.payload.as_ref(), PERSISTED)?.value);
        } else if event.payload.is_none() {
            return Err(invalid("EventSourcedEvent without a payload"));
        }
        self.sequence = event.sequence;
        Ok(())
    }

    /// Runs one command and returns the reply for it.
    pub fn command(&mut self, command: &Command) -> Result<EventSourcedReply, Status> {
        if command.entity_id != self.entity_id {
            return Err(invalid(format!("command for entity {:?} on the stream of {:?}", command.entity_id, self.entity_id)));
        }
        self.commanded = true;
        let reply = match self.service {
            TCK_MODEL => self.process(command)?,
            TWO | CONFIGURED => {
                if command.name != "Call" {
                    return Err(invalid(format!("{} has no command {:?}", self.service, command.name)));
                }
                unpack::<model::Request>(command.payload.as_ref(), REQUEST)?;
                reply_to(command.id, reply(""))
            }
            service => eventing::emitter_command(service, command)?,
        };
        self.sequence += reply.events.len() as i64;
        Ok(reply)
    }

    /// `EventSourcedTckModel/Process`.
    fn process(&mut self, command: &Command) -> Result<EventSourcedReply, Status> {
        if command.name != "Process" {
            return Err(invalid(format!("{TCK_MODEL} has no command {:?}", command.name)));
        }
        let request: model::Request = unpack(command.payload.as_ref(), REQUEST)?;
        let mut state = self.state.clone();
        let (mut forward, mut side_effects, mut events) = (None, Vec::new(), Vec::new());
        for action in request.actions.iter().filter_map(|a| a.action.as_ref()) {
            match action {
                Act::Emit(e) => {
                    state.push_str(&e.value);
                    events.push(any(PERSISTED, &model::Persisted { value: e.value.clone() }));
                }
                Act::Forward(f) => forward = Some(f.id.clone()),
                Act::Effect(e) => side_effects.push(SideEffect {
                    service_name: TWO.to_owned(),
                    command_name: "Call".to_owned(),
                    payload: Some(any(REQUEST, &model::Request { id: e.id.clone(), actions: Vec::new() })),
                    synchronous: e.synchronous,
                    metadata: None,
                }),
                Act::Fail(f) => {
                    // Only the failure; restart if events were emitted (and
                    // dropped) so the proxy rebuilds us from the journal.
                    let restart = !events.is_empty();
                    let failure = Failure { command_id: command.id, description: f.message.clone(), restart };
                    return Ok(reply_to(command.id, client_action::Action::Failure(failure)));
                }
            }
        }
        let before = self.sequence;
        let crosses = (before + 1..=before + events.len() as i64).any(|s| s % SNAPSHOT_EVERY == 0);
        self.state = state;
        let action = match forward {
            Some(id) => client_action::Action::Forward(Forward {
                service_name: TWO.to_owned(),
                command_name: "Call".to_owned(),
                payload: Some(any(REQUEST, &model::Request { id, actions: Vec::new() })),
                metadata: None,
            }),
            None => reply(&self.state),
        };
        Ok(EventSourcedReply {
            side_effects,
            snapshot: crosses.then(|| any(PERSISTED, &model::Persisted { value: self.state.clone() })),
            events,
            ..reply_to(command.id, action)
        })
    }
}

fn reply(message: &str) -> client_action::Action {
    client_action::Action::Reply(Reply { payload: Some(any(RESPONSE, &model::Response { message: message.to_owned() })), metadata: None })
}

/// A reply with only a client action.
pub fn reply_to(command_id: i64, action: client_action::Action) -> EventSourcedReply {
    EventSourcedReply {
        command_id,
        client_action: Some(ClientAction { action: Some(action) }),
        side_effects: Vec::new(),
        events: Vec::new(),
        snapshot: None,
    }
}

/// `handle`: `init`, replayed events, then commands, one reply each.
pub async fn handle(mut reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
    use event_sourced_stream_in::Message as In;
    let mut entity: Option<Entity> = None;
    while let Some(m) = reader.message().await.map_err(read_error)? {
        let message = decode::<EventSourcedStreamIn>(m, "EventSourcedStreamIn")?.message;
        match (message, entity.as_mut()) {
            (Some(In::Init(init)), None) => entity = Some(Entity::new(init)?),
            (Some(In::Init(_)), Some(_)) => return Err(invalid("second EventSourcedInit on one stream")),
            (Some(In::Event(event)), Some(e)) => e.event(event)?,
            (Some(In::Command(c)), Some(e)) => {
                let out = EventSourcedStreamOut { message: Some(event_sourced_stream_out::Message::Reply(e.command(&c)?)) };
                send(responder, &out).await?;
            }
            (Some(_), None) => return Err(invalid("event or command before EventSourcedInit")),
            (None, _) => return Err(invalid("EventSourcedStreamIn with no message set")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use massa::grpc::Code;
    use massa::proto::cloudstate::eventsourced::EventSourcedSnapshot;
    use model::{Effect, Emit, Fail, RequestAction};

    fn init(service: &str, snapshot: Option<(i64, &str)>) -> EventSourcedInit {
        EventSourcedInit {
            service_name: service.into(),
            entity_id: "e1".into(),
            snapshot: snapshot.map(|(seq, v)| EventSourcedSnapshot {
                snapshot_sequence: seq,
                snapshot: Some(any(PERSISTED, &model::Persisted { value: v.into() })),
            }),
        }
    }
    fn cmd(id: i64, actions: Vec<Act>) -> Command {
        let request = model::Request { id: "e1".into(), actions: actions.into_iter().map(|a| RequestAction { action: Some(a) }).collect() };
        Command { entity_id: "e1".into(), id, name: "Process".into(), payload: Some(any(REQUEST, &request)), streamed: false, metadata: None }
    }
    fn emits(values: &str) -> Vec<Act> {
        values.chars().map(|c| Act::Emit(Emit { value: c.to_string() })).collect()
    }
    fn persisted(v: &str) -> massa::proto::google::protobuf::Any {
        any(PERSISTED, &model::Persisted { value: v.into() })
    }
    fn replied(r: &EventSourcedReply) -> String {
        match r.client_action.as_ref().and_then(|c| c.action.as_ref()) {
            Some(client_action::Action::Reply(Reply { payload: Some(p), .. })) => {
                decode::<model::Response>(p.value.clone(), "Response").unwrap().message
            }
            other => panic!("not a reply: {other:?}"),
        }
    }

    #[test]
    fn state_changes_and_snapshots_follow_the_tck_sequence() {
        let mut e = Entity::new(init(TCK_MODEL, None)).unwrap();
        let steps: [(&str, &str, bool); 6] =
            [("", "", false), ("A", "A", false), ("BCD", "ABCD", false), ("E", "ABCDE", true), ("FGHI", "ABCDEFGHI", false), ("JK", "ABCDEFGHIJK", true)];
        for (n, (emit, state, snap)) in steps.into_iter().enumerate() {
            let r = e.command(&cmd(n as i64 + 1, emits(emit))).unwrap();
            assert_eq!(r.command_id, n as i64 + 1);
            assert_eq!(replied(&r), state);
            assert_eq!(r.events, emit.chars().map(|c| persisted(&c.to_string())).collect::<Vec<_>>());
            assert_eq!(r.snapshot, snap.then(|| persisted(state)), "command {}", n + 1);
        }
        assert_eq!(e.sequence(), 11);
    }

    #[test]
    fn snapshot_and_replay_rebuild_state() {
        let mut e = Entity::new(init(TCK_MODEL, Some((5, "ABCDE")))).unwrap();
        for (seq, v) in [(6, "F"), (7, "G")] {
            e.event(EventSourcedEvent { sequence: seq, payload: Some(persisted(v)) }).unwrap();
        }
        assert_eq!((e.state(), e.sequence()), ("ABCDEFG", 7));
        // Events 8..10: the 10th is a multiple of five.
        let r = e.command(&cmd(1, emits("HIJ"))).unwrap();
        assert_eq!(r.snapshot, Some(persisted("ABCDEFGHIJ")));
        // No more events once commands started.
        let late = e.event(EventSourcedEvent { sequence: 11, payload: Some(persisted("x")) });
        assert_eq!(late.unwrap_err().code, Code::InvalidArgument);
    }

    #[test]
    fn failure_after_emit_asks_for_restart_and_keeps_nothing() {
        let mut e = Entity::new(init(TCK_MODEL, None)).unwrap();
        e.command(&cmd(1, emits("123"))).unwrap();
        let plain = e.command(&cmd(2, vec![Act::Fail(Fail { message: "expected failure".into() })])).unwrap();
        let expect = |id, description: &str, restart| {
            reply_to(id, client_action::Action::Failure(Failure { command_id: id, description: description.into(), restart }))
        };
        assert_eq!(plain, expect(2, "expected failure", false));
        let mut actions = emits("4");
        actions.push(Act::Effect(Effect { id: "x".into(), synchronous: false }));
        actions.push(Act::Fail(Fail { message: "another failure".into() }));
        actions.extend(emits("5"));
        assert_eq!(e.command(&cmd(4, actions)).unwrap(), expect(4, "another failure", true));
        assert_eq!((e.state(), e.sequence()), ("123", 3));
        let r = e.command(&cmd(5, emits("45"))).unwrap();
        assert_eq!((replied(&r), r.snapshot), ("12345".into(), Some(persisted("12345"))));
    }

    #[test]
    fn forwards_and_effects_target_two() {
        let mut e = Entity::new(init(TCK_MODEL, None)).unwrap();
        let actions = vec![
            Act::Emit(Emit { value: "one".into() }),
            Act::Effect(Effect { id: "e1".into(), synchronous: true }),
            Act::Forward(model::Forward { id: "e1".into() }),
        ];
        let r = e.command(&cmd(1, actions)).unwrap();
        let target = any(REQUEST, &model::Request { id: "e1".into(), actions: vec![] });
        let Some(client_action::Action::Forward(f)) = r.client_action.unwrap().action else { panic!() };
        assert_eq!((f.service_name.as_str(), f.command_name.as_str(), f.payload), (TWO, "Call", Some(target.clone())));
        assert_eq!(r.side_effects[0].payload, Some(target));
        assert!(r.side_effects[0].synchronous);
        assert_eq!(r.events, vec![persisted("one")]);
    }

    #[test]
    fn two_and_configured_reply_empty() {
        for service in [TWO, CONFIGURED] {
            let mut e = Entity::new(init(service, None)).unwrap();
            let mut c = cmd(1, emits("x"));
            c.name = "Call".into();
            let r = e.command(&c).unwrap();
            assert_eq!((replied(&r), r.events.len(), r.snapshot), ("".into(), 0, None));
        }
    }

    #[test]
    fn protocol_violations_are_invalid_arguments() {
        assert_eq!(Entity::new(init("no.Such", None)).unwrap_err().code, Code::InvalidArgument);
        let mut e = Entity::new(init(TCK_MODEL, None)).unwrap();
        let bad_event = EventSourcedEvent { sequence: 1, payload: Some(any("cloudstate.tck.model.Response", &model::Response::default())) };
        assert_eq!(e.event(bad_event).unwrap_err().code, Code::InvalidArgument);
        let mut c = cmd(1, vec![]);
        c.name = "Call".into();
        assert_eq!(e.command(&c).unwrap_err().code, Code::InvalidArgument);
    }
}
