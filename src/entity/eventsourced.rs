//! Event-sourced entities (spec §5.2): activation replays the latest
//! snapshot and the events after it; each reply's events are journaled
//! atomically (with its snapshot, at the last event's sequence number)
//! before the client sees the answer.

use bytes::Bytes;
use prost::Message;

use super::stateful::{check_id, stored_any, undecodable, Answer, Decision};
use crate::discovery::EntityService;
use crate::grpc::{encode_prost, Code, Status};
use crate::proto::cloudstate::{
    client_action::Action,
    eventsourced::{
        event_sourced_stream_in, event_sourced_stream_out, EventSourcedEvent, EventSourcedInit, EventSourcedSnapshot,
        EventSourcedStreamIn, EventSourcedStreamOut,
    },
    Command,
};
use crate::store::Write;
use crate::worker::Core;

pub struct Session {
    persistence_id: String,
    entity_id: String,
    /// Sequence number of the last journaled event.
    sequence: u64,
    /// Events of the decision waiting for its commit.
    uncommitted: u64,
}

impl Session {
    pub async fn activate(core: &Core, svc: &EntityService, entity_id: &str) -> Result<(Session, Vec<Bytes>), Status> {
        let journal = core.store.read_journal(&svc.persistence_id, entity_id).await?;
        let sequence = journal.last_sequence();
        let snapshot = match journal.snapshot {
            Some((seq, any)) => Some(EventSourcedSnapshot { snapshot_sequence: seq as i64, snapshot: Some(stored_any(any)?) }),
            None => None,
        };
        let mut opening = Vec::with_capacity(1 + journal.events.len());
        let init = EventSourcedInit { service_name: svc.name.clone(), entity_id: entity_id.to_owned(), snapshot };
        opening.push(frame(event_sourced_stream_in::Message::Init(init)));
        for (seq, any) in journal.events {
            let event = EventSourcedEvent { sequence: seq as i64, payload: Some(stored_any(any)?) };
            opening.push(frame(event_sourced_stream_in::Message::Event(event)));
        }
        let session =
            Session { persistence_id: svc.persistence_id.clone(), entity_id: entity_id.to_owned(), sequence, uncommitted: 0 };
        Ok((session, opening))
    }

    pub fn decide(&mut self, body: Bytes, command_id: i64) -> Result<Decision, Status> {
        let out = EventSourcedStreamOut::decode(body).map_err(|e| undecodable("EventSourcedStreamOut", e))?;
        let reply = match out.message {
            Some(event_sourced_stream_out::Message::Reply(reply)) => reply,
            Some(event_sourced_stream_out::Message::Failure(f)) => return Err(Status::new(Code::Unknown, f.description)),
            None => return Err(Status::new(Code::Internal, "user function sent an empty EventSourcedStreamOut")),
        };
        check_id(command_id, reply.command_id)?;
        let action = reply.client_action.and_then(|c| c.action);
        let (failed, restart) = match &action {
            Some(Action::Failure(f)) => (true, f.restart),
            _ => (false, false),
        };
        let mut writes = Vec::new();
        // A failed command persists nothing; a snapshot without events is
        // illegal and ignored.
        if !failed && !reply.events.is_empty() {
            let count = reply.events.len() as u64;
            writes.push(Write::Events {
                persistence_id: self.persistence_id.clone(),
                entity_id: self.entity_id.clone(),
                first_sequence: self.sequence + 1,
                events: reply.events.iter().map(|e| Bytes::from(e.encode_to_vec())).collect(),
            });
            if let Some(snapshot) = reply.snapshot {
                writes.push(Write::Snapshot {
                    persistence_id: self.persistence_id.clone(),
                    entity_id: self.entity_id.clone(),
                    sequence: self.sequence + count,
                    snapshot: snapshot.encode_to_vec().into(),
                });
            }
            self.uncommitted = count;
        }
        Ok(Decision { writes, answer: Answer { side_effects: reply.side_effects, outcome: action.into() }, restart })
    }

    /// The last decision's events are durable.
    pub fn committed(&mut self) {
        self.sequence += std::mem::take(&mut self.uncommitted);
    }
}

pub fn command(command: Command) -> Bytes {
    frame(event_sourced_stream_in::Message::Command(command))
}

fn frame(message: event_sourced_stream_in::Message) -> Bytes {
    encode_prost(&EventSourcedStreamIn { message: Some(message) })
}
