//! Value entities (spec §5.3): activation sends the stored value (the
//! `state` field is always present, empty when nothing is stored); an
//! update or delete is written before the client sees the answer.

use bytes::Bytes;
use prost::Message;

use super::cache::Cached;
use super::stateful::{check_id, stored_any, undecodable, Answer, Decision};
use crate::discovery::EntityService;
use crate::grpc::{encode_prost, Code, Status};
use crate::proto::cloudstate::{
    client_action::Action,
    valueentity::{
        value_entity_action, value_entity_stream_in, value_entity_stream_out, ValueEntityInit, ValueEntityInitState,
        ValueEntityStreamIn, ValueEntityStreamOut,
    },
    Command,
};
use crate::store::Write;
use super::Context;

pub struct Session {
    persistence_id: String,
    entity_id: String,
    /// The stored value, for the cache on passivation.
    stored: Option<Bytes>,
    /// The value the last decision writes, until its commit.
    uncommitted: Option<Option<Bytes>>,
}

impl Session {
    pub async fn activate(
        core: &Context,
        svc: &EntityService,
        entity_id: &str,
        cached: Option<Cached>,
    ) -> Result<(Session, Vec<Bytes>), Status> {
        let stored = match cached {
            Some(Cached::Value(v)) => v,
            _ => core.store.read_value(&svc.persistence_id, entity_id).await?,
        };
        let value = match stored.clone() {
            Some(any) => Some(stored_any(any)?),
            None => None,
        };
        let init = ValueEntityInit {
            service_name: svc.name.clone(),
            entity_id: entity_id.to_owned(),
            state: Some(ValueEntityInitState { value }),
        };
        let session =
            Session { persistence_id: svc.persistence_id.clone(), entity_id: entity_id.to_owned(), stored, uncommitted: None };
        Ok((session, vec![frame(value_entity_stream_in::Message::Init(init))]))
    }

    pub fn decide(&mut self, body: Bytes, command_id: i64) -> Result<Decision, Status> {
        let out = ValueEntityStreamOut::decode(body).map_err(|e| undecodable("ValueEntityStreamOut", e))?;
        let reply = match out.message {
            Some(value_entity_stream_out::Message::Reply(reply)) => reply,
            Some(value_entity_stream_out::Message::Failure(f)) => return Err(Status::new(Code::Unknown, f.description)),
            None => return Err(Status::new(Code::Internal, "user function sent an empty ValueEntityStreamOut")),
        };
        check_id(command_id, reply.command_id)?;
        let action = reply.client_action.and_then(|c| c.action);
        let failed = matches!(action, Some(Action::Failure(_)));
        let (persistence_id, entity_id) = (self.persistence_id.clone(), self.entity_id.clone());
        let writes = match reply.state_action.and_then(|a| a.action) {
            _ if failed => Vec::new(),
            Some(value_entity_action::Action::Update(u)) => {
                let value = Bytes::from(u.value.unwrap_or_default().encode_to_vec());
                self.uncommitted = Some(Some(value.clone()));
                vec![Write::PutValue { persistence_id, entity_id, value }]
            }
            Some(value_entity_action::Action::Delete(_)) => {
                self.uncommitted = Some(None);
                vec![Write::DeleteValue { persistence_id, entity_id }]
            }
            None => Vec::new(),
        };
        // `Failure.restart` is ignored for value entities.
        Ok(Decision { writes, answer: Answer { side_effects: reply.side_effects, outcome: action.into() }, restart: false })
    }
}

impl Session {
    /// The last decision's write is durable.
    pub fn committed(&mut self) {
        if let Some(value) = self.uncommitted.take() {
            self.stored = value;
        }
    }

    pub fn into_cached(self) -> Option<Cached> {
        Some(Cached::Value(self.stored))
    }
}

pub fn command(command: Command) -> Bytes {
    frame(value_entity_stream_in::Message::Command(command))
}

fn frame(message: value_entity_stream_in::Message) -> Bytes {
    encode_prost(&ValueEntityStreamIn { message: Some(message) })
}
