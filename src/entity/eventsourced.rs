//! Event-sourced entities (spec §5.2): activation replays the latest
//! snapshot and the events after it; each reply's events are journaled
//! atomically (with its snapshot, at the last event's sequence number)
//! before the client sees the answer.

use bytes::Bytes;
use prost::Message;

use super::cache::Cached;
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
use crate::store::{Journal, Write};
use super::Context;

/// Largest journal tail kept in memory for the hot cache; an entity whose
/// function never snapshots stops being cached past it.
const MIRROR_LIMIT: usize = 256 << 10;

pub struct Session {
    persistence_id: String,
    entity_id: String,
    /// Sequence number of the last journaled event.
    sequence: u64,
    /// Events and snapshot of the decision waiting for its commit.
    uncommitted: Vec<(u64, Bytes)>,
    uncommitted_snapshot: Option<(u64, Bytes)>,
    /// What storage holds for this entity, for the cache on passivation.
    mirror: Option<(Journal, usize)>,
}

impl Session {
    pub async fn activate(
        core: &Context,
        svc: &EntityService,
        entity_id: &str,
        cached: Option<Cached>,
    ) -> Result<(Session, Vec<Bytes>), Status> {
        let journal = match cached {
            Some(Cached::Journal(j)) => j,
            _ => core.store.read_journal(&svc.persistence_id, entity_id).await?,
        };
        let mirror_bytes = journal.snapshot.as_ref().map_or(0, |s| s.1.len()) + journal.events.iter().map(|e| e.1.len()).sum::<usize>();
        let mirror = (mirror_bytes <= MIRROR_LIMIT).then(|| (journal.clone(), mirror_bytes));
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
        let session = Session {
            persistence_id: svc.persistence_id.clone(),
            entity_id: entity_id.to_owned(),
            sequence,
            uncommitted: Vec::new(),
            uncommitted_snapshot: None,
            mirror,
        };
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
            let events: Vec<Bytes> = reply.events.iter().map(|e| Bytes::from(e.encode_to_vec())).collect();
            self.uncommitted = events.iter().enumerate().map(|(i, e)| (self.sequence + 1 + i as u64, e.clone())).collect();
            writes.push(Write::Events {
                persistence_id: self.persistence_id.clone(),
                entity_id: self.entity_id.clone(),
                first_sequence: self.sequence + 1,
                events,
            });
            if let Some(snapshot) = reply.snapshot {
                let snapshot = Bytes::from(snapshot.encode_to_vec());
                self.uncommitted_snapshot = Some((self.sequence + count, snapshot.clone()));
                writes.push(Write::Snapshot {
                    persistence_id: self.persistence_id.clone(),
                    entity_id: self.entity_id.clone(),
                    sequence: self.sequence + count,
                    snapshot,
                });
            }
        }
        Ok(Decision { writes, answer: Answer { side_effects: reply.side_effects, outcome: action.into() }, restart })
    }

    /// The last decision's events are durable.
    pub fn committed(&mut self) {
        let events = std::mem::take(&mut self.uncommitted);
        let snapshot = self.uncommitted_snapshot.take();
        self.sequence += events.len() as u64;
        if let Some((journal, bytes)) = &mut self.mirror {
            *bytes += events.iter().map(|e| e.1.len()).sum::<usize>();
            journal.events.extend(events);
            if let Some((seq, snap)) = snapshot {
                journal.events.retain(|e| e.0 > seq);
                *bytes = snap.len() + journal.events.iter().map(|e| e.1.len()).sum::<usize>();
                journal.snapshot = Some((seq, snap));
            }
            if *bytes > MIRROR_LIMIT {
                self.mirror = None;
            }
        }
    }

    /// The state storage holds, if it was small enough to keep.
    pub fn into_cached(self) -> Option<Cached> {
        self.mirror.map(|(journal, _)| Cached::Journal(journal))
    }
}

pub fn command(command: Command) -> Bytes {
    frame(event_sourced_stream_in::Message::Command(command))
}

fn frame(message: event_sourced_stream_in::Message) -> Bytes {
    encode_prost(&EventSourcedStreamIn { message: Some(message) })
}
