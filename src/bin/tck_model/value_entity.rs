//! The value-entity models over `cloudstate.valueentity.ValueEntity/handle`:
//! `ValueEntityTckModel` (a string state driven by request actions),
//! `ValueEntityTwo` and `ValueEntityConfigured` (always `Response{}`).

use massa::grpc::{MessageReader, Responder, Status};
use massa::proto::cloudstate::tck::model::valueentity::{self as model, request_action::Action as Act};
use massa::proto::cloudstate::valueentity::{
    value_entity_action, value_entity_stream_in, value_entity_stream_out, ValueEntityAction, ValueEntityDelete, ValueEntityInit,
    ValueEntityReply, ValueEntityStreamIn, ValueEntityStreamOut, ValueEntityUpdate,
};
use massa::proto::cloudstate::{client_action, ClientAction, Command, Failure, Forward, Reply, SideEffect};

use crate::wire::{any, decode, invalid, read_error, send, unpack};

pub const TCK_MODEL: &str = "cloudstate.tck.model.valueentity.ValueEntityTckModel";
pub const TWO: &str = "cloudstate.tck.model.valueentity.ValueEntityTwo";
pub const CONFIGURED: &str = "cloudstate.tck.model.valueentity.ValueEntityConfigured";
const REQUEST: &str = "cloudstate.tck.model.valueentity.Request";
const RESPONSE: &str = "cloudstate.tck.model.valueentity.Response";
const PERSISTED: &str = "cloudstate.tck.model.valueentity.Persisted";

/// One activated value entity.
#[derive(Debug)]
pub struct Entity {
    service: &'static str,
    entity_id: String,
    /// The model's state; `""` means none.
    state: String,
}

impl Entity {
    /// Activates from `init`; its `state` must be present (value optional).
    pub fn new(init: ValueEntityInit) -> Result<Entity, Status> {
        let service = [TCK_MODEL, TWO, CONFIGURED]
            .into_iter()
            .find(|s| *s == init.service_name)
            .ok_or_else(|| invalid(format!("unknown value entity service {:?}", init.service_name)))?;
        let state = init.state.ok_or_else(|| invalid("ValueEntityInit without state"))?;
        let state = match state.value {
            Some(v) => unpack::<model::Persisted>(Some(&v), PERSISTED)?.value,
            None => String::new(),
        };
        Ok(Entity { service, entity_id: init.entity_id, state })
    }

    #[cfg(test)]
    pub fn state(&self) -> &str {
        &self.state
    }

    /// Runs one command and returns the reply for it.
    pub fn command(&mut self, command: &Command) -> Result<ValueEntityReply, Status> {
        if command.entity_id != self.entity_id {
            return Err(invalid(format!("command for entity {:?} on the stream of {:?}", command.entity_id, self.entity_id)));
        }
        let expected = if self.service == TCK_MODEL { "Process" } else { "Call" };
        if command.name != expected {
            return Err(invalid(format!("{} has no command {:?}", self.service, command.name)));
        }
        let request: model::Request = unpack(command.payload.as_ref(), REQUEST)?;
        if self.service != TCK_MODEL {
            return Ok(reply_to(command.id, reply(""), Vec::new(), None));
        }
        let mut state = self.state.clone();
        let (mut forward, mut side_effects, mut state_action) = (None, Vec::new(), None);
        for action in request.actions.iter().filter_map(|a| a.action.as_ref()) {
            match action {
                Act::Update(u) => {
                    state = u.value.clone();
                    state_action = Some(value_entity_action::Action::Update(ValueEntityUpdate {
                        value: Some(any(PERSISTED, &model::Persisted { value: u.value.clone() })),
                    }));
                }
                Act::Delete(_) => {
                    state.clear();
                    state_action = Some(value_entity_action::Action::Delete(ValueEntityDelete {}));
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
                    // Only the failure: the state stays as it was.
                    let failure = Failure { command_id: command.id, description: f.message.clone(), restart: false };
                    return Ok(reply_to(command.id, client_action::Action::Failure(failure), Vec::new(), None));
                }
            }
        }
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
        Ok(reply_to(command.id, action, side_effects, state_action))
    }
}

fn reply(message: &str) -> client_action::Action {
    client_action::Action::Reply(Reply { payload: Some(any(RESPONSE, &model::Response { message: message.to_owned() })), metadata: None })
}

fn reply_to(
    command_id: i64,
    action: client_action::Action,
    side_effects: Vec<SideEffect>,
    state_action: Option<value_entity_action::Action>,
) -> ValueEntityReply {
    ValueEntityReply {
        command_id,
        client_action: Some(ClientAction { action: Some(action) }),
        side_effects,
        state_action: state_action.map(|a| ValueEntityAction { action: Some(a) }),
    }
}

/// `handle`: `init` first, then commands, each answered by one reply.
pub async fn handle(mut reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
    let mut entity: Option<Entity> = None;
    while let Some(m) = reader.message().await.map_err(read_error)? {
        let message = decode::<ValueEntityStreamIn>(m, "ValueEntityStreamIn")?.message;
        match (message, entity.as_mut()) {
            (Some(value_entity_stream_in::Message::Init(init)), None) => entity = Some(Entity::new(init)?),
            (Some(value_entity_stream_in::Message::Init(_)), Some(_)) => return Err(invalid("second ValueEntityInit on one stream")),
            (Some(value_entity_stream_in::Message::Command(c)), Some(e)) => {
                let out = ValueEntityStreamOut { message: Some(value_entity_stream_out::Message::Reply(e.command(&c)?)) };
                send(responder, &out).await?;
            }
            (Some(value_entity_stream_in::Message::Command(_)), None) => return Err(invalid("command before ValueEntityInit")),
            (None, _) => return Err(invalid("ValueEntityStreamIn with no message set")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use massa::grpc::Code;
    use massa::proto::cloudstate::valueentity::ValueEntityInitState;
    use model::{Delete, Effect, Fail, Forward as Fwd, RequestAction, Update};

    fn init(service: &str, value: Option<&str>) -> ValueEntityInit {
        ValueEntityInit {
            service_name: service.into(),
            entity_id: "e1".into(),
            state: Some(ValueEntityInitState { value: value.map(|v| any(PERSISTED, &model::Persisted { value: v.into() })) }),
        }
    }
    fn cmd(id: i64, name: &str, actions: Vec<Act>) -> Command {
        let request = model::Request { id: "e1".into(), actions: actions.into_iter().map(|a| RequestAction { action: Some(a) }).collect() };
        Command { entity_id: "e1".into(), id, name: name.into(), payload: Some(any(REQUEST, &request)), streamed: false, metadata: None }
    }
    fn upd(v: &str) -> Act {
        Act::Update(Update { value: v.into() })
    }
    fn replied(r: &ValueEntityReply) -> String {
        match r.client_action.as_ref().and_then(|c| c.action.as_ref()) {
            Some(client_action::Action::Reply(Reply { payload: Some(p), .. })) => {
                assert_eq!(p.type_url, format!("type.googleapis.com/{RESPONSE}"));
                decode::<model::Response>(p.value.clone(), "Response").unwrap().message
            }
            other => panic!("not a reply: {other:?}"),
        }
    }
    fn updated(r: &ValueEntityReply) -> Option<String> {
        match r.state_action.as_ref()?.action.as_ref()? {
            value_entity_action::Action::Update(u) => Some(decode::<model::Persisted>(u.value.clone().unwrap().value, "P").unwrap().value),
            value_entity_action::Action::Delete(_) => Some("<deleted>".into()),
        }
    }

    #[test]
    fn state_changes_follow_the_tck_sequence() {
        let mut e = Entity::new(init(TCK_MODEL, None)).unwrap();
        let r = e.command(&cmd(1, "Process", vec![])).unwrap();
        assert_eq!((r.command_id, replied(&r), updated(&r)), (1, "".into(), None));
        let r = e.command(&cmd(2, "Process", vec![upd("one")])).unwrap();
        assert_eq!((replied(&r), updated(&r)), ("one".into(), Some("one".into())));
        let r = e.command(&cmd(3, "Process", vec![Act::Delete(Delete {})])).unwrap();
        assert_eq!((replied(&r), updated(&r)), ("".into(), Some("<deleted>".into())));
        // The last update or delete wins.
        let r = e.command(&cmd(4, "Process", vec![upd("A"), Act::Delete(Delete {}), upd("B")])).unwrap();
        assert_eq!((replied(&r), updated(&r)), ("B".into(), Some("B".into())));
    }

    #[test]
    fn init_state_is_loaded() {
        let mut e = Entity::new(init(TCK_MODEL, Some("D"))).unwrap();
        assert_eq!(replied(&e.command(&cmd(1, "Process", vec![])).unwrap()), "D");
    }

    #[test]
    fn failure_drops_everything_and_rolls_back() {
        let mut e = Entity::new(init(TCK_MODEL, Some("s"))).unwrap();
        let effect = Act::Effect(Effect { id: "x".into(), synchronous: true });
        let r = e.command(&cmd(7, "Process", vec![upd("new"), effect, Act::Fail(Fail { message: "no".into() })])).unwrap();
        assert_eq!(
            r,
            ValueEntityReply {
                command_id: 7,
                client_action: Some(ClientAction {
                    action: Some(client_action::Action::Failure(Failure { command_id: 7, description: "no".into(), restart: false }))
                }),
                side_effects: vec![],
                state_action: None,
            }
        );
        assert_eq!(e.state(), "s");
    }

    #[test]
    fn forward_and_effects_target_two() {
        let mut e = Entity::new(init(TCK_MODEL, None)).unwrap();
        let actions = vec![upd("u"), Act::Effect(Effect { id: "e1".into(), synchronous: false }), Act::Forward(Fwd { id: "e1".into() })];
        let r = e.command(&cmd(1, "Process", actions)).unwrap();
        let target = any(REQUEST, &model::Request { id: "e1".into(), actions: vec![] });
        match r.client_action.unwrap().action.unwrap() {
            client_action::Action::Forward(f) => {
                assert_eq!((f.service_name.as_str(), f.command_name.as_str()), (TWO, "Call"));
                assert_eq!(f.payload.as_ref(), Some(&target));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.side_effects.len(), 1);
        assert_eq!((r.side_effects[0].service_name.as_str(), r.side_effects[0].payload.as_ref()), (TWO, Some(&target)));
        assert!(r.state_action.is_some());
    }

    #[test]
    fn two_and_configured_reply_empty() {
        for service in [TWO, CONFIGURED] {
            let mut e = Entity::new(init(service, None)).unwrap();
            let r = e.command(&cmd(1, "Call", vec![Act::Delete(Delete {})])).unwrap();
            assert_eq!((replied(&r), r.state_action, r.side_effects.len()), ("".into(), None, 0));
        }
    }

    #[test]
    fn protocol_violations_are_invalid_arguments() {
        let mut no_state = init(TCK_MODEL, None);
        no_state.state = None;
        assert_eq!(Entity::new(no_state).unwrap_err().code, Code::InvalidArgument);
        assert_eq!(Entity::new(init("no.Such", None)).unwrap_err().code, Code::InvalidArgument);
        let mut e = Entity::new(init(TCK_MODEL, None)).unwrap();
        assert_eq!(e.command(&cmd(1, "Call", vec![])).unwrap_err().code, Code::InvalidArgument);
        let mut other = cmd(1, "Process", vec![]);
        other.entity_id = "e2".into();
        assert_eq!(e.command(&other).unwrap_err().code, Code::InvalidArgument);
    }
}
