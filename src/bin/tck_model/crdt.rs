//! The CRDT models over `cloudstate.crdt.Crdt/handle`: `CrdtTckModel` (the
//! CRDT type is chosen by the entity id's prefix before the first `-`),
//! `CrdtTwo` (a GCounter; `Call` replies `Response{}`, deleting on request)
//! and `CrdtConfigured` (`Response{}`). The user function holds a value and
//! the delta accumulated since its last reply, as the Java model does.
//! Every type except ORMap is implemented; an ORMap entity is refused.

use std::collections::BTreeSet;

use massa::grpc::{MessageReader, Responder, Status};
use massa::proto::cloudstate::crdt::{
    crdt_delta::Delta, crdt_state_action, crdt_stream_in, crdt_stream_out, CrdtDelete, CrdtDelta, CrdtInit, CrdtReply, CrdtStateAction,
    CrdtStreamCancelledResponse, CrdtStreamIn, CrdtStreamOut, CrdtStreamedMessage, FlagDelta, GCounterDelta, GSetDelta, LwwRegisterDelta,
    OrSetDelta, PnCounterDelta, VoteDelta,
};
use massa::proto::cloudstate::tck::model::crdt::{self as model, or_set_update, request_action::Action as Act, state, update::Update as Upd};
use massa::proto::cloudstate::{client_action, ClientAction, Command, Failure, Forward, Reply, SideEffect, StreamCancelled};
use massa::proto::google::protobuf::Any;

use crate::wire::{any, decode, invalid, read_error, send, unpack};

pub const TCK_MODEL: &str = "cloudstate.tck.model.crdt.CrdtTckModel";
pub const TWO: &str = "cloudstate.tck.model.crdt.CrdtTwo";
pub const CONFIGURED: &str = "cloudstate.tck.model.crdt.CrdtConfigured";
const REQUEST: &str = "cloudstate.tck.model.crdt.Request";
const STREAMED_REQUEST: &str = "cloudstate.tck.model.crdt.StreamedRequest";
const RESPONSE: &str = "cloudstate.tck.model.crdt.Response";
/// Type URL of Cloudstate's primitive string encoding.
const PSTR: &str = "p.cloudstate.io/string";
const CUSTOM: i32 = model::LwwRegisterClockType::Custom as i32;
const CUSTOM_AUTO_INCREMENT: i32 = model::LwwRegisterClockType::CustomAutoIncrement as i32;

/// A Cloudstate primitive string: field 1.
#[derive(Clone, PartialEq, prost::Message)]
struct PrimitiveString {
    #[prost(string, tag = "1")]
    value: String,
}

fn pstr(s: &str) -> Any {
    Any { type_url: PSTR.to_owned(), value: prost::Message::encode_to_vec(&PrimitiveString { value: s.to_owned() }).into() }
}

fn unpstr(a: &Any) -> Result<String, Status> {
    if a.type_url != PSTR {
        return Err(invalid(format!("CRDT element of type {:?}, expected {PSTR}", a.type_url)));
    }
    Ok(decode::<PrimitiveString>(a.value.clone(), "primitive string")?.value)
}

fn unpstrs(items: &[Any]) -> Result<Vec<String>, Status> {
    items.iter().map(unpstr).collect()
}

/// A CRDT's value plus the local changes not yet reported.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    GCounter { value: u64, delta: u64 },
    PnCounter { value: i64, delta: i64 },
    GSet { value: BTreeSet<String>, added: BTreeSet<String> },
    OrSet { value: BTreeSet<String>, cleared: bool, removed: BTreeSet<String>, added: BTreeSet<String> },
    Lww { value: String, clock: i32, custom: i64, changed: bool },
    Flag { value: bool, changed: bool },
    Vote { self_vote: bool, votes_for: i32, total_voters: i32, changed: bool },
    /// `CrdtConfigured` holds no CRDT.
    Nothing,
}

impl Value {
    /// An empty CRDT of the type named `kind` (no pending change).
    fn empty(kind: &str) -> Result<Value, Status> {
        Ok(match kind {
            "GCounter" => Value::GCounter { value: 0, delta: 0 },
            "PNCounter" => Value::PnCounter { value: 0, delta: 0 },
            "GSet" => Value::GSet { value: BTreeSet::new(), added: BTreeSet::new() },
            "ORSet" => Value::OrSet { value: BTreeSet::new(), cleared: false, removed: BTreeSet::new(), added: BTreeSet::new() },
            "LWWRegister" => Value::Lww { value: String::new(), clock: 0, custom: 0, changed: false },
            "Flag" => Value::Flag { value: false, changed: false },
            "Vote" => Value::Vote { self_vote: false, votes_for: 0, total_voters: 1, changed: false },
            "ORMap" => return Err(invalid("the ORMap CRDT model is not implemented by massa-tck-model")),
            other => return Err(invalid(format!("entity id prefix {other:?} names no CRDT type"))),
        })
    }

    /// Applies a delta from the proxy (initial state or a replica's change).
    pub fn apply_remote(&mut self, delta: &CrdtDelta) -> Result<(), Status> {
        let Some(d) = &delta.delta else { return Err(invalid("CrdtDelta with no delta set")) };
        match (self, d) {
            (Value::Nothing, _) => {}
            (Value::GCounter { value, .. }, Delta::Gcounter(g)) => *value += g.increment,
            (Value::PnCounter { value, .. }, Delta::Pncounter(p)) => *value += p.change,
            (Value::GSet { value, .. }, Delta::Gset(g)) => value.extend(unpstrs(&g.added)?),
            (Value::OrSet { value, .. }, Delta::Orset(o)) => {
                if o.cleared {
                    value.clear();
                }
                for e in unpstrs(&o.removed)? {
                    value.remove(&e);
                }
                value.extend(unpstrs(&o.added)?);
            }
            (Value::Lww { value, clock, custom, .. }, Delta::Lwwregister(l)) => {
                *value = l.value.as_ref().map(unpstr).transpose()?.unwrap_or_default();
                (*clock, *custom) = (l.clock, l.custom_clock_value);
            }
            (Value::Flag { value, .. }, Delta::Flag(f)) => *value |= f.value,
            (Value::Vote { self_vote, votes_for, total_voters, .. }, Delta::Vote(v)) => {
                (*self_vote, *votes_for, *total_voters) = (v.self_vote, v.votes_for, v.total_voters)
            }
            (value, d) => return Err(invalid(format!("delta {d:?} does not fit {}", value.kind()))),
        }
        Ok(())
    }

    /// Applies a local update from a request.
    fn update(&mut self, update: &Upd) -> Result<(), Status> {
        match (self, update) {
            (Value::GCounter { value, delta }, Upd::Gcounter(g)) => {
                *value += g.increment;
                *delta += g.increment;
            }
            (Value::PnCounter { value, delta }, Upd::Pncounter(p)) => {
                *value += p.change;
                *delta += p.change;
            }
            (Value::GSet { value, added }, Upd::Gset(g)) => {
                if value.insert(g.add.clone()) {
                    added.insert(g.add.clone());
                }
            }
            (Value::OrSet { value, cleared, removed, added }, Upd::Orset(o)) => match &o.action {
                Some(or_set_update::Action::Add(e)) => {
                    // Re-adding an element removed since the last reply only
                    // cancels the removal.
                    let new = value.insert(e.clone());
                    if new && !removed.remove(e) {
                        added.insert(e.clone());
                    }
                }
                Some(or_set_update::Action::Remove(e)) if value.contains(e) => {
                    if value.len() == 1 {
                        (*cleared, *value) = (true, BTreeSet::new());
                        added.clear();
                        removed.clear();
                    } else {
                        value.remove(e);
                        if !added.remove(e) {
                            removed.insert(e.clone());
                        }
                    }
                }
                Some(or_set_update::Action::Clear(_)) if !value.is_empty() => {
                    (*cleared, *value) = (true, BTreeSet::new());
                    added.clear();
                    removed.clear();
                }
                _ => {}
            },
            (Value::Lww { value, clock, custom, changed }, Upd::Lwwregister(l)) => {
                let new_clock = l.clock.as_ref().map_or(0, |c| c.clock_type);
                let new_custom = match (new_clock, &l.clock) {
                    (CUSTOM | CUSTOM_AUTO_INCREMENT, Some(c)) => c.custom_clock_value,
                    _ => 0,
                };
                if *value != l.value || *clock != new_clock || *custom != new_custom {
                    (*value, *clock, *custom, *changed) = (l.value.clone(), new_clock, new_custom, true);
                }
            }
            (Value::Flag { value, changed }, Upd::Flag(_)) => {
                if !*value {
                    (*value, *changed) = (true, true);
                }
            }
            (Value::Vote { self_vote, votes_for, changed, .. }, Upd::Vote(v)) => {
                if *self_vote != v.self_vote {
                    *self_vote = v.self_vote;
                    *votes_for += if v.self_vote { 1 } else { -1 };
                    *changed = !*changed;
                }
            }
            (value, u) => return Err(invalid(format!("update {u:?} does not fit {}", value.kind()))),
        }
        Ok(())
    }

    /// The pending local change as a delta, clearing it.
    fn take_delta(&mut self) -> Option<CrdtDelta> {
        let delta = match self {
            Value::GCounter { delta, .. } => (*delta > 0).then(|| Delta::Gcounter(GCounterDelta { increment: std::mem::take(delta) })),
            Value::PnCounter { delta, .. } => (*delta != 0).then(|| Delta::Pncounter(PnCounterDelta { change: std::mem::take(delta) })),
            Value::GSet { added, .. } => {
                (!added.is_empty()).then(|| Delta::Gset(GSetDelta { added: std::mem::take(added).iter().map(|e| pstr(e)).collect() }))
            }
            Value::OrSet { cleared, removed, added, .. } => (*cleared || !removed.is_empty() || !added.is_empty()).then(|| {
                Delta::Orset(OrSetDelta {
                    cleared: std::mem::take(cleared),
                    removed: std::mem::take(removed).iter().map(|e| pstr(e)).collect(),
                    added: std::mem::take(added).iter().map(|e| pstr(e)).collect(),
                })
            }),
            Value::Lww { value, clock, custom, changed } => std::mem::take(changed)
                .then(|| Delta::Lwwregister(LwwRegisterDelta { value: Some(pstr(value)), clock: *clock, custom_clock_value: *custom })),
            Value::Flag { changed, .. } => std::mem::take(changed).then_some(Delta::Flag(FlagDelta { value: true })),
            Value::Vote { self_vote, changed, .. } => {
                std::mem::take(changed).then(|| Delta::Vote(VoteDelta { self_vote: *self_vote, votes_for: 0, total_voters: 0 }))
            }
            Value::Nothing => None,
        };
        delta.map(|d| CrdtDelta { delta: Some(d) })
    }

    /// The model's view of the value (elements sorted).
    pub fn state(&self) -> Option<model::State> {
        let value = match self {
            Value::GCounter { value, .. } => state::Value::Gcounter(model::GCounterValue { value: *value }),
            Value::PnCounter { value, .. } => state::Value::Pncounter(model::PnCounterValue { value: *value }),
            Value::GSet { value, .. } => state::Value::Gset(model::GSetValue { elements: value.iter().cloned().collect() }),
            Value::OrSet { value, .. } => state::Value::Orset(model::OrSetValue { elements: value.iter().cloned().collect() }),
            Value::Lww { value, .. } => state::Value::Lwwregister(model::LwwRegisterValue { value: value.clone() }),
            Value::Flag { value, .. } => state::Value::Flag(model::FlagValue { value: *value }),
            Value::Vote { self_vote, votes_for, total_voters, .. } => {
                state::Value::Vote(model::VoteValue { self_vote: *self_vote, votes_for: *votes_for, total_voters: *total_voters })
            }
            Value::Nothing => return None,
        };
        Some(model::State { value: Some(value) })
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::GCounter { .. } => "a GCounter",
            Value::PnCounter { .. } => "a PNCounter",
            Value::GSet { .. } => "a GSet",
            Value::OrSet { .. } => "an ORSet",
            Value::Lww { .. } => "an LWWRegister",
            Value::Flag { .. } => "a Flag",
            Value::Vote { .. } => "a Vote",
            Value::Nothing => "no CRDT",
        }
    }
}

/// A `ProcessStreamed` subscription, keyed by its command id.
#[derive(Debug)]
struct Subscription {
    command_id: i64,
    request: model::StreamedRequest,
}

/// One activated CRDT entity.
#[derive(Debug)]
pub struct Entity {
    service: &'static str,
    entity_id: String,
    value: Value,
    subscriptions: Vec<Subscription>,
    /// Updates to apply when a streamed command is cancelled.
    on_cancel: Vec<(i64, model::Update)>,
}

fn response(state: Option<model::State>) -> client_action::Action {
    client_action::Action::Reply(Reply { payload: Some(any(RESPONSE, &model::Response { state })), metadata: None })
}

fn to_two(id: &str, synchronous: bool) -> SideEffect {
    SideEffect {
        service_name: TWO.to_owned(),
        command_name: "Call".to_owned(),
        payload: Some(any(REQUEST, &model::Request { id: id.to_owned(), actions: Vec::new() })),
        synchronous,
        metadata: None,
    }
}

fn update_action(delta: CrdtDelta, write_consistency: i32) -> CrdtStateAction {
    CrdtStateAction { write_consistency, action: Some(crdt_state_action::Action::Update(delta)) }
}

fn out(message: crdt_stream_out::Message) -> CrdtStreamOut {
    CrdtStreamOut { message: Some(message) }
}

fn reply(command_id: i64, action: Option<client_action::Action>, side_effects: Vec<SideEffect>, state_action: Option<CrdtStateAction>) -> CrdtReply {
    CrdtReply { command_id, client_action: action.map(|a| ClientAction { action: Some(a) }), side_effects, state_action, streamed: false }
}

impl Entity {
    /// Activates from `init`: the delta, if any, is the current value.
    pub fn new(init: CrdtInit) -> Result<Entity, Status> {
        let service = [TCK_MODEL, TWO, CONFIGURED]
            .into_iter()
            .find(|s| *s == init.service_name)
            .ok_or_else(|| invalid(format!("unknown CRDT service {:?}", init.service_name)))?;
        let mut value = match service {
            TCK_MODEL => Value::empty(init.entity_id.split('-').next().unwrap_or_default())?,
            TWO => Value::empty("GCounter")?,
            _ => Value::Nothing,
        };
        match &init.delta {
            Some(delta) => value.apply_remote(delta)?,
            // A new register starts as "", which counts as a change.
            None => {
                if let Value::Lww { changed, .. } = &mut value {
                    *changed = true;
                }
            }
        }
        Ok(Entity { service, entity_id: init.entity_id, value, subscriptions: Vec::new(), on_cancel: Vec::new() })
    }

    #[cfg(test)]
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// A replica's change: applied, then the subscriptions are told.
    pub fn delta(&mut self, delta: &CrdtDelta) -> Result<Vec<CrdtStreamOut>, Status> {
        self.value.apply_remote(delta)?;
        Ok(self.notify(i64::MAX))
    }

    /// Streamed messages for subscriptions registered before `before`.
    fn notify(&mut self, before: i64) -> Vec<CrdtStreamOut> {
        let state = self.value.state();
        let mut messages = Vec::new();
        let mut ended = Vec::new();
        for s in self.subscriptions.iter().filter(|s| s.command_id < before) {
            let action = (!s.request.empty).then(|| response(state.clone()));
            let side_effects: Vec<_> = s.request.effects.iter().map(|e| to_two(&e.id, e.synchronous)).collect();
            let end = s.request.end_state.is_some() && s.request.end_state == state;
            if action.is_none() && side_effects.is_empty() && !end {
                continue;
            }
            if end {
                ended.push(s.command_id);
            }
            messages.push(out(crdt_stream_out::Message::StreamedMessage(CrdtStreamedMessage {
                command_id: s.command_id,
                client_action: action.map(|a| ClientAction { action: Some(a) }),
                side_effects,
                end_stream: end,
            })));
        }
        self.subscriptions.retain(|s| !ended.contains(&s.command_id));
        self.on_cancel.retain(|(id, _)| !ended.contains(id));
        messages
    }

    /// Runs one command: its reply, then any streamed notifications.
    pub fn command(&mut self, command: &Command) -> Result<Vec<CrdtStreamOut>, Status> {
        if command.entity_id != self.entity_id {
            return Err(invalid(format!("command for entity {:?} on the stream of {:?}", command.entity_id, self.entity_id)));
        }
        match (self.service, command.name.as_str()) {
            (TCK_MODEL, "Process") => self.process(command),
            (TCK_MODEL, "ProcessStreamed") => self.process_streamed(command),
            (TWO | CONFIGURED, "Call") => {
                let request: model::Request = unpack(command.payload.as_ref(), REQUEST)?;
                let delete = self.service == TWO && request.actions.iter().any(|a| matches!(a.action, Some(Act::Delete(_))));
                let state_action = delete.then(|| CrdtStateAction { write_consistency: 0, action: Some(crdt_state_action::Action::Delete(CrdtDelete {})) });
                Ok(vec![out(crdt_stream_out::Message::Reply(reply(command.id, Some(response(None)), Vec::new(), state_action)))])
            }
            (service, name) => Err(invalid(format!("{service} has no command {name:?}"))),
        }
    }

    fn process(&mut self, command: &Command) -> Result<Vec<CrdtStreamOut>, Status> {
        let request: model::Request = unpack(command.payload.as_ref(), REQUEST)?;
        let saved = self.value.clone();
        let (mut consistency, mut deleted, mut forward, mut side_effects) = (0, false, None, Vec::new());
        for action in request.actions.iter().filter_map(|a| a.action.as_ref()) {
            match action {
                Act::Update(u) => {
                    let update = u.update.as_ref().ok_or_else(|| invalid("Update with no CRDT update set"))?;
                    if let Err(e) = self.value.update(update) {
                        self.value = saved;
                        return Err(e);
                    }
                    consistency = u.write_consistency;
                }
                Act::Delete(_) => deleted = true,
                Act::Forward(f) => forward = Some(f.id.clone()),
                Act::Effect(e) => side_effects.push(to_two(&e.id, e.synchronous)),
                Act::Fail(f) => {
                    self.value = saved;
                    let failure = Failure { command_id: command.id, description: f.message.clone(), restart: false };
                    let r = reply(command.id, Some(client_action::Action::Failure(failure)), Vec::new(), None);
                    return Ok(vec![out(crdt_stream_out::Message::Reply(r))]);
                }
            }
        }
        let delta = self.value.take_delta();
        let changed = delta.is_some();
        let state_action = if deleted {
            Some(CrdtStateAction { write_consistency: consistency, action: Some(crdt_state_action::Action::Delete(CrdtDelete {})) })
        } else {
            delta.map(|d| update_action(d, consistency))
        };
        let action = match forward {
            Some(id) => client_action::Action::Forward(Forward {
                service_name: TWO.to_owned(),
                command_name: "Call".to_owned(),
                payload: Some(any(REQUEST, &model::Request { id, actions: Vec::new() })),
                metadata: None,
            }),
            None => response(self.value.state()),
        };
        let mut messages = vec![out(crdt_stream_out::Message::Reply(reply(command.id, Some(action), side_effects, state_action)))];
        if changed && !deleted {
            messages.extend(self.notify(i64::MAX));
        }
        Ok(messages)
    }

    fn process_streamed(&mut self, command: &Command) -> Result<Vec<CrdtStreamOut>, Status> {
        let request: model::StreamedRequest = unpack(command.payload.as_ref(), STREAMED_REQUEST)?;
        let mut consistency = 0;
        if let Some(u) = &request.initial_update {
            let update = u.update.as_ref().ok_or_else(|| invalid("initial_update with no CRDT update set"))?;
            self.value.update(update)?;
            consistency = u.write_consistency;
        }
        let delta = self.value.take_delta();
        let changed = delta.is_some();
        let action = (!request.empty).then(|| response(self.value.state()));
        let mut r = reply(command.id, action, Vec::new(), delta.map(|d| update_action(d, consistency)));
        if command.streamed {
            r.streamed = true;
            if let Some(cancel) = &request.cancel_update {
                self.on_cancel.push((command.id, cancel.clone()));
            }
            self.subscriptions.push(Subscription { command_id: command.id, request });
        }
        let mut messages = vec![out(crdt_stream_out::Message::Reply(r))];
        if changed {
            messages.extend(self.notify(command.id));
        }
        Ok(messages)
    }

    /// The proxy's caller cancelled streamed command `id`.
    pub fn cancelled(&mut self, cancelled: &StreamCancelled) -> Result<Vec<CrdtStreamOut>, Status> {
        if cancelled.entity_id != self.entity_id {
            return Err(invalid(format!("cancellation for entity {:?} on the stream of {:?}", cancelled.entity_id, self.entity_id)));
        }
        self.subscriptions.retain(|s| s.command_id != cancelled.id);
        let mut state_action = None;
        if let Some(i) = self.on_cancel.iter().position(|(id, _)| *id == cancelled.id) {
            let (_, update) = self.on_cancel.remove(i);
            if let Some(u) = &update.update {
                self.value.update(u)?;
            }
            state_action = self.value.take_delta().map(|d| update_action(d, update.write_consistency));
        }
        let changed = state_action.is_some();
        let response = CrdtStreamCancelledResponse { command_id: cancelled.id, side_effects: Vec::new(), state_action };
        let mut messages = vec![out(crdt_stream_out::Message::StreamCancelledResponse(response))];
        if changed {
            messages.extend(self.notify(i64::MAX));
        }
        Ok(messages)
    }
}

/// `handle`: `init`, then commands, deltas, deletes and cancellations.
pub async fn handle(mut reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
    use crdt_stream_in::Message as In;
    let mut entity: Option<Entity> = None;
    while let Some(m) = reader.message().await.map_err(read_error)? {
        let message = decode::<CrdtStreamIn>(m, "CrdtStreamIn")?.message;
        let outgoing = match (message, entity.as_mut()) {
            (Some(In::Init(init)), None) => {
                entity = Some(Entity::new(init)?);
                Vec::new()
            }
            (Some(In::Init(_)), Some(_)) => return Err(invalid("second CrdtInit on one stream")),
            (Some(In::Delta(d)), Some(e)) => e.delta(&d)?,
            (Some(In::Delete(_)), Some(_)) => Vec::new(),
            (Some(In::Command(c)), Some(e)) => e.command(&c)?,
            (Some(In::StreamCancelled(c)), Some(e)) => e.cancelled(&c)?,
            (Some(_), None) => return Err(invalid("message before CrdtInit")),
            (None, _) => return Err(invalid("CrdtStreamIn with no message set")),
        };
        for message in &outgoing {
            send(responder, message).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use massa::grpc::Code;
    use model::RequestAction;

    fn init(service: &str, id: &str, delta: Option<Delta>) -> CrdtInit {
        CrdtInit { service_name: service.into(), entity_id: id.into(), delta: delta.map(|d| CrdtDelta { delta: Some(d) }) }
    }
    fn cmd(id: i64, entity: &str, name: &str, payload: Any, streamed: bool) -> Command {
        Command { entity_id: entity.into(), id, name: name.into(), payload: Some(payload), streamed, metadata: None }
    }
    fn process(id: i64, entity: &str, actions: Vec<Act>) -> Command {
        let request = model::Request { id: entity.into(), actions: actions.into_iter().map(|a| RequestAction { action: Some(a) }).collect() };
        cmd(id, entity, "Process", any(REQUEST, &request), false)
    }
    fn upd(u: Upd) -> Act {
        Act::Update(model::Update { write_consistency: 0, update: Some(u) })
    }
    fn pn(change: i64) -> Act {
        upd(Upd::Pncounter(model::PnCounterUpdate { change }))
    }
    fn reply_of(m: &CrdtStreamOut) -> &CrdtReply {
        match &m.message {
            Some(crdt_stream_out::Message::Reply(r)) => r,
            other => panic!("not a reply: {other:?}"),
        }
    }
    fn state_of(action: &Option<ClientAction>) -> Option<state::Value> {
        match action.as_ref().and_then(|a| a.action.as_ref()) {
            Some(client_action::Action::Reply(Reply { payload: Some(p), .. })) => {
                decode::<model::Response>(p.value.clone(), "Response").unwrap().state.and_then(|s| s.value)
            }
            other => panic!("not a reply: {other:?}"),
        }
    }
    fn delta_of(r: &CrdtReply) -> Option<Delta> {
        match r.state_action.as_ref()?.action.as_ref()? {
            crdt_state_action::Action::Update(d) => d.delta.clone(),
            crdt_state_action::Action::Delete(_) => None,
        }
    }
    fn vote(self_vote: bool, votes_for: i32) -> Option<state::Value> {
        Some(state::Value::Vote(model::VoteValue { self_vote, votes_for, total_voters: 1 }))
    }

    #[test]
    fn pncounter_state_changes() {
        let mut e = Entity::new(init(TCK_MODEL, "PNCounter-1", None)).unwrap();
        let out = e.command(&process(1, "PNCounter-1", vec![])).unwrap();
        assert_eq!(state_of(&reply_of(&out[0]).client_action), Some(state::Value::Pncounter(model::PnCounterValue { value: 0 })));
        assert!(reply_of(&out[0]).state_action.is_none());
        let out = e.command(&process(2, "PNCounter-1", vec![pn(1), pn(-2), pn(3)])).unwrap();
        assert_eq!(delta_of(reply_of(&out[0])), Some(Delta::Pncounter(PnCounterDelta { change: 2 })));
        let out = e.command(&process(3, "PNCounter-1", vec![Act::Delete(model::Delete {})])).unwrap();
        let action = reply_of(&out[0]).state_action.clone().unwrap().action;
        assert_eq!(action, Some(crdt_state_action::Action::Delete(CrdtDelete {})));
    }

    #[test]
    fn new_register_reports_its_creation_and_clock_settings() {
        let mut e = Entity::new(init(TCK_MODEL, "LWWRegister-1", None)).unwrap();
        let out = e.command(&process(1, "LWWRegister-1", vec![])).unwrap();
        let expected = LwwRegisterDelta { value: Some(pstr("")), clock: 0, custom_clock_value: 0 };
        assert_eq!(delta_of(reply_of(&out[0])), Some(Delta::Lwwregister(expected)));
        let clock = model::LwwRegisterClock { clock_type: CUSTOM, custom_clock_value: 7 };
        let set = upd(Upd::Lwwregister(model::LwwRegisterUpdate { value: "x".into(), clock: Some(clock) }));
        let out = e.command(&process(2, "LWWRegister-1", vec![set.clone()])).unwrap();
        let expected = LwwRegisterDelta { value: Some(pstr("x")), clock: CUSTOM, custom_clock_value: 7 };
        assert_eq!(delta_of(reply_of(&out[0])), Some(Delta::Lwwregister(expected)));
        // Same value and clock: no change.
        assert!(reply_of(&e.command(&process(3, "LWWRegister-1", vec![set])).unwrap()[0]).state_action.is_none());
    }

    #[test]
    fn orset_deltas_cancel_and_clear() {
        let mut e = Entity::new(init(TCK_MODEL, "ORSet-1", Some(Delta::Orset(OrSetDelta { added: vec![pstr("a"), pstr("b")], ..Default::default() })))).unwrap();
        let or = |a| upd(Upd::Orset(model::OrSetUpdate { action: Some(a) }));
        use or_set_update::Action as O;
        let out = e.command(&process(1, "ORSet-1", vec![or(O::Remove("a".into())), or(O::Add("a".into())), or(O::Add("c".into()))])).unwrap();
        let expected = OrSetDelta { cleared: false, removed: vec![], added: vec![pstr("c")] };
        assert_eq!(delta_of(reply_of(&out[0])), Some(Delta::Orset(expected)));
        let out = e.command(&process(2, "ORSet-1", vec![or(O::Clear(true)), or(O::Add("z".into()))])).unwrap();
        let expected = OrSetDelta { cleared: true, removed: vec![], added: vec![pstr("z")] };
        assert_eq!(delta_of(reply_of(&out[0])), Some(Delta::Orset(expected)));
        assert_eq!(e.value().state().unwrap().value, Some(state::Value::Orset(model::OrSetValue { elements: vec!["z".into()] })));
    }

    #[test]
    fn failure_rolls_back_and_reports_only_the_failure() {
        let mut e = Entity::new(init(TCK_MODEL, "GCounter-1", None)).unwrap();
        let inc = upd(Upd::Gcounter(model::GCounterUpdate { increment: 42 }));
        let out = e.command(&process(1, "GCounter-1", vec![inc, Act::Fail(model::Fail { message: "expected failure".into() })])).unwrap();
        let failure = Failure { command_id: 1, description: "expected failure".into(), restart: false };
        assert_eq!(out, vec![out_reply(reply(1, Some(client_action::Action::Failure(failure)), vec![], None))]);
        assert_eq!(e.value(), &Value::GCounter { value: 0, delta: 0 });
    }

    fn out_reply(r: CrdtReply) -> CrdtStreamOut {
        out(crdt_stream_out::Message::Reply(r))
    }

    #[test]
    fn vote_connection_tracking() {
        let id = "Vote-1";
        let mut e = Entity::new(init(TCK_MODEL, id, None)).unwrap();
        let streamed = |n: i64, r: model::StreamedRequest| cmd(n, id, "ProcessStreamed", any(STREAMED_REQUEST, &r), true);
        let monitor = e.command(&streamed(1, model::StreamedRequest { id: id.into(), ..Default::default() })).unwrap();
        assert_eq!(monitor.len(), 1);
        let r = reply_of(&monitor[0]);
        assert!(r.streamed && r.state_action.is_none());
        assert_eq!(state_of(&r.client_action), vote(false, 0));

        let v = |self_vote| Some(model::Update { write_consistency: 0, update: Some(Upd::Vote(model::VoteUpdate { self_vote })) });
        let connect = model::StreamedRequest { id: id.into(), cancel_update: v(false), initial_update: v(true), empty: true, ..Default::default() };
        let out = e.command(&streamed(2, connect)).unwrap();
        assert_eq!(out.len(), 2);
        let r = reply_of(&out[0]);
        assert!(r.streamed && r.client_action.is_none());
        assert_eq!(delta_of(r), Some(Delta::Vote(VoteDelta { self_vote: true, votes_for: 0, total_voters: 0 })));
        let Some(crdt_stream_out::Message::StreamedMessage(m)) = &out[1].message else { panic!("{out:?}") };
        assert_eq!((m.command_id, state_of(&m.client_action), m.end_stream), (1, vote(true, 1), false));

        let out = e.cancelled(&StreamCancelled { entity_id: id.into(), id: 2 }).unwrap();
        let Some(crdt_stream_out::Message::StreamCancelledResponse(c)) = &out[0].message else { panic!("{out:?}") };
        assert_eq!(c.command_id, 2);
        let update = c.state_action.clone().unwrap().action;
        let expected = CrdtDelta { delta: Some(Delta::Vote(VoteDelta { self_vote: false, votes_for: 0, total_voters: 0 })) };
        assert_eq!(update, Some(crdt_state_action::Action::Update(expected)));
        let Some(crdt_stream_out::Message::StreamedMessage(m)) = &out[1].message else { panic!("{out:?}") };
        assert_eq!((m.command_id, state_of(&m.client_action)), (1, vote(false, 0)));

        let last = e.cancelled(&StreamCancelled { entity_id: id.into(), id: 1 }).unwrap();
        let expected = CrdtStreamCancelledResponse { command_id: 1, ..Default::default() };
        assert_eq!(last, vec![super::out(crdt_stream_out::Message::StreamCancelledResponse(expected))]);
    }

    #[test]
    fn two_deletes_on_request_and_unknown_types_are_refused() {
        let mut e = Entity::new(init(TWO, "x", None)).unwrap();
        let request = model::Request { id: "x".into(), actions: vec![RequestAction { action: Some(Act::Delete(model::Delete {})) }] };
        let out = e.command(&cmd(1, "x", "Call", any(REQUEST, &request), false)).unwrap();
        let r = reply_of(&out[0]);
        assert_eq!(state_of(&r.client_action), None);
        assert!(matches!(r.state_action.as_ref().unwrap().action, Some(crdt_state_action::Action::Delete(_))));
        assert_eq!(Entity::new(init(TCK_MODEL, "ORMap-1", None)).unwrap_err().code, Code::InvalidArgument);
        assert_eq!(Entity::new(init(TCK_MODEL, "Nope-1", None)).unwrap_err().code, Code::InvalidArgument);
        let mut g = Entity::new(init(TCK_MODEL, "GSet-1", None)).unwrap();
        assert_eq!(g.command(&process(1, "GSet-1", vec![pn(1)])).unwrap_err().code, Code::InvalidArgument);
    }
}
