//! The CRDT models over `cloudstate.crdt.Crdt/handle`: `CrdtTckModel` (the
//! CRDT type is chosen by the entity id's prefix before the first `-`),
//! `CrdtTwo` (a GCounter; `Call` replies `Response{}`, deleting on request)
//! and `CrdtConfigured` (`Response{}`). The user function holds a value and
//! the delta accumulated since its last reply, as the Java model does.
//! An ORMap's values are CRDTs of the type its key's prefix names, like
//! the entity id's.

use std::collections::{BTreeMap, BTreeSet};

use massa::grpc::{MessageReader, Responder, Status};
use massa::proto::cloudstate::crdt::{
    crdt_delta::Delta, crdt_state_action, crdt_stream_in, crdt_stream_out, CrdtDelete, CrdtDelta, CrdtInit, CrdtReply, CrdtStateAction,
    CrdtStreamCancelledResponse, CrdtStreamIn, CrdtStreamOut, CrdtStreamedMessage, FlagDelta, GCounterDelta, GSetDelta, LwwRegisterDelta,
    OrMapDelta, OrMapEntryDelta, OrSetDelta, PnCounterDelta, VoteDelta,
};
use massa::proto::cloudstate::tck::model::crdt::{
    self as model, or_map_update, or_set_update, request_action::Action as Act, state, update::Update as Upd,
};
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
    /// Entries carry their own pending changes; `added` keys are reported
    /// whole.
    OrMap { value: BTreeMap<String, Value>, cleared: bool, removed: BTreeSet<String>, added: BTreeSet<String> },
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
            "ORMap" => Value::OrMap { value: BTreeMap::new(), cleared: false, removed: BTreeSet::new(), added: BTreeSet::new() },
            other => return Err(invalid(format!("entity id prefix {other:?} names no CRDT type"))),
        })
    }

    /// An empty CRDT of the type `delta` changes (an ORMap entry the proxy
    /// reports).
    fn empty_for(delta: &CrdtDelta) -> Result<Value, Status> {
        let kind = match &delta.delta {
            Some(Delta::Gcounter(_)) => "GCounter",
            Some(Delta::Pncounter(_)) => "PNCounter",
            Some(Delta::Gset(_)) => "GSet",
            Some(Delta::Orset(_)) => "ORSet",
            Some(Delta::Lwwregister(_)) => "LWWRegister",
            Some(Delta::Flag(_)) => "Flag",
            Some(Delta::Ormap(_)) => "ORMap",
            Some(Delta::Vote(_)) => "Vote",
            None => return Err(invalid("CrdtDelta with no delta set")),
        };
        Value::empty(kind)
    }

    /// The type an ORMap key (or entity id) names by its prefix.
    fn named_by(key: &str) -> Result<Value, Status> {
        Value::empty(key.split('-').next().unwrap_or_default())
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
            (Value::OrMap { value, .. }, Delta::Ormap(m)) => {
                if m.cleared {
                    value.clear();
                }
                for key in unpstrs(&m.removed)? {
                    value.remove(&key);
                }
                for e in &m.updated {
                    let (key, delta) = entry_delta(e)?;
                    let entry = value.get_mut(&key).ok_or_else(|| invalid(format!("ORMap update of missing key {key:?}")))?;
                    entry.apply_remote(delta)?;
                }
                for e in &m.added {
                    let (key, delta) = entry_delta(e)?;
                    let mut entry = Value::empty_for(delta)?;
                    entry.apply_remote(delta)?;
                    value.insert(key, entry);
                }
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
            (Value::OrMap { value, cleared, removed, added }, Upd::Ormap(m)) => match &m.action {
                Some(or_map_update::Action::Add(key)) if !value.contains_key(key) => {
                    value.insert(key.clone(), Value::named_by(key)?);
                    added.insert(key.clone());
                }
                Some(or_map_update::Action::Update(e)) => {
                    let update = e.update.as_ref().and_then(|u| u.update.as_ref()).ok_or_else(|| invalid("ORMap entry update with no update"))?;
                    if !value.contains_key(&e.key) {
                        value.insert(e.key.clone(), Value::named_by(&e.key)?);
                        added.insert(e.key.clone());
                    }
                    value.get_mut(&e.key).expect("inserted above").update(update)?;
                }
                Some(or_map_update::Action::Remove(key)) if value.remove(key).is_some() => {
                    if !added.remove(key) {
                        removed.insert(key.clone());
                    }
                }
                Some(or_map_update::Action::Clear(_)) if !value.is_empty() => {
                    (*cleared, *value) = (true, BTreeMap::new());
                    added.clear();
                    removed.clear();
                }
                _ => {}
            },
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
            Value::OrMap { value, cleared, removed, added } => {
                let added = std::mem::take(added);
                let mut delta = OrMapDelta {
                    cleared: std::mem::take(cleared),
                    removed: std::mem::take(removed).iter().map(|k| pstr(k)).collect(),
                    ..Default::default()
                };
                for (key, entry) in value.iter_mut() {
                    if added.contains(key) {
                        entry.take_delta();
                        delta.added.push(OrMapEntryDelta { key: Some(pstr(key)), delta: Some(entry.whole()) });
                    } else if let Some(d) = entry.take_delta() {
                        delta.updated.push(OrMapEntryDelta { key: Some(pstr(key)), delta: Some(d) });
                    }
                }
                let changed = delta.cleared || !delta.removed.is_empty() || !delta.added.is_empty() || !delta.updated.is_empty();
                changed.then_some(Delta::Ormap(delta))
            }
            Value::Nothing => None,
        };
        delta.map(|d| CrdtDelta { delta: Some(d) })
    }

    /// The whole value as one delta (a new ORMap entry's).
    fn whole(&self) -> CrdtDelta {
        let all = |s: &BTreeSet<String>| s.iter().map(|e| pstr(e)).collect::<Vec<_>>();
        let delta = match self {
            Value::GCounter { value, .. } => Delta::Gcounter(GCounterDelta { increment: *value }),
            Value::PnCounter { value, .. } => Delta::Pncounter(PnCounterDelta { change: *value }),
            Value::GSet { value, .. } => Delta::Gset(GSetDelta { added: all(value) }),
            Value::OrSet { value, .. } => Delta::Orset(OrSetDelta { added: all(value), ..Default::default() }),
            Value::Lww { value, clock, custom, .. } => {
                Delta::Lwwregister(LwwRegisterDelta { value: Some(pstr(value)), clock: *clock, custom_clock_value: *custom })
            }
            Value::Flag { value, .. } => Delta::Flag(FlagDelta { value: *value }),
            Value::Vote { self_vote, .. } => Delta::Vote(VoteDelta { self_vote: *self_vote, votes_for: 0, total_voters: 0 }),
            Value::OrMap { value, .. } => Delta::Ormap(OrMapDelta {
                added: value.iter().map(|(k, v)| OrMapEntryDelta { key: Some(pstr(k)), delta: Some(v.whole()) }).collect(),
                ..Default::default()
            }),
            Value::Nothing => return CrdtDelta { delta: None },
        };
        CrdtDelta { delta: Some(delta) }
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
            Value::OrMap { value, .. } => state::Value::Ormap(model::OrMapValue {
                entries: value.iter().map(|(key, v)| model::OrMapEntryValue { key: key.clone(), value: v.state() }).collect(),
            }),
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
            Value::OrMap { .. } => "an ORMap",
            Value::Nothing => "no CRDT",
        }
    }
}

/// An ORMap entry delta's key and delta, both required.
fn entry_delta(e: &OrMapEntryDelta) -> Result<(String, &CrdtDelta), Status> {
    let key = unpstr(e.key.as_ref().ok_or_else(|| invalid("ORMapEntryDelta without key"))?)?;
    Ok((key, e.delta.as_ref().ok_or_else(|| invalid("ORMapEntryDelta without delta"))?))
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

    #[test]
    fn ormap_entries_are_typed_by_key_and_report_added_updated_removed() {
        let mut e = Entity::new(init(TCK_MODEL, "ORMap-1", None)).unwrap();
        let om = |a| upd(Upd::Ormap(Box::new(model::OrMapUpdate { action: Some(a) })));
        let inc = |key: &str, n| {
            let update = model::Update { write_consistency: 0, update: Some(Upd::Gcounter(model::GCounterUpdate { increment: n })) };
            om(or_map_update::Action::Update(Box::new(model::OrMapEntryUpdate { key: key.into(), update: Some(Box::new(update)) })))
        };
        use or_map_update::Action as M;
        let out = e.command(&process(1, "ORMap-1", vec![inc("GCounter-a", 2), om(M::Add("Flag-b".into()))])).unwrap();
        let gc = |increment| Some(CrdtDelta { delta: Some(Delta::Gcounter(GCounterDelta { increment })) });
        let added = vec![
            OrMapEntryDelta { key: Some(pstr("Flag-b")), delta: Some(CrdtDelta { delta: Some(Delta::Flag(FlagDelta { value: false })) }) },
            OrMapEntryDelta { key: Some(pstr("GCounter-a")), delta: gc(2) },
        ];
        assert_eq!(delta_of(reply_of(&out[0])), Some(Delta::Ormap(OrMapDelta { added, ..Default::default() })));
        let out = e.command(&process(2, "ORMap-1", vec![inc("GCounter-a", 3), om(M::Remove("Flag-b".into()))])).unwrap();
        let expected = OrMapDelta {
            removed: vec![pstr("Flag-b")],
            updated: vec![OrMapEntryDelta { key: Some(pstr("GCounter-a")), delta: gc(3) }],
            ..Default::default()
        };
        assert_eq!(delta_of(reply_of(&out[0])), Some(Delta::Ormap(expected)));
        let entries = vec![model::OrMapEntryValue {
            key: "GCounter-a".into(),
            value: Some(model::State { value: Some(state::Value::Gcounter(model::GCounterValue { value: 5 })) }),
        }];
        assert_eq!(e.value().state().unwrap().value, Some(state::Value::Ormap(model::OrMapValue { entries: entries.clone() })));
        // Rehydrated from the proxy's initial delta.
        let whole = e.value().whole().delta.unwrap();
        let again = Entity::new(init(TCK_MODEL, "ORMap-2", Some(whole))).unwrap();
        assert_eq!(again.value().state().unwrap().value, Some(state::Value::Ormap(model::OrMapValue { entries })));
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
        assert_eq!(Entity::new(init(TCK_MODEL, "Nope-1", None)).unwrap_err().code, Code::InvalidArgument);
        let mut g = Entity::new(init(TCK_MODEL, "GSet-1", None)).unwrap();
        assert_eq!(g.command(&process(1, "GSet-1", vec![pn(1)])).unwrap_err().code, Code::InvalidArgument);
    }
}
