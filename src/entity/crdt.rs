//! CRDT entities (spec §5.4): the proxy owns the state ([`crate::crdt`]),
//! the function holds a value and sends deltas.
//!
//! Activation sends the whole stored value as `init`'s delta (none for a
//! new entity). Unlike event-sourced and value entities, several commands
//! are in flight at once and replies are matched by `command_id`; a
//! server-streaming method's call stays open after a `streamed` reply and
//! receives `streamed_message`s until either side ends it. Every delta is
//! applied here and written (as a delta record, or the whole state: see
//! [`super::crdt_store`]) through the core's group commit before any answer
//! that follows it is released. Replies read
//! together are committed together. A delete writes a tombstone, answers,
//! and closes the stream; the entity then answers "Entity deleted".
//!
//! One node: every write consistency (LOCAL, MAJORITY, ALL) means durable
//! here, and a Vote has one voter. No replica pushes remote deltas.

use std::{
    collections::{BTreeMap, BTreeSet},
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_channel::oneshot;
use crate::http2::{client::ResponseFuture, SendStream};
use tracing::debug;

use super::cache::Cached;
use super::crdt_store::Durable;
use super::stateful::{self, undecodable, Answer, Closing, End, EntityKey, Idle, Msg, Reply, StreamSink};
use crate::crdt::{AppliedDeltas, Crdt, ReplicaId, Writer};
use crate::discovery::{report_error, EntityService, Shape};
use super::{Context, Orphaned, Outcome};
use crate::grpc::{encode_prost, wait_capacity, Code, Status};
use crate::proto::cloudstate::crdt::{
    crdt_state_action, crdt_stream_in, crdt_stream_out, CrdtInit, CrdtReply, CrdtStateAction, CrdtStreamIn, CrdtStreamOut,
    CrdtStreamedMessage,
};
use crate::proto::cloudstate::{Command, Failure, SideEffect, StreamCancelled};
use crate::proto::google::protobuf::Any;
use crate::runtime::queue;
use crate::store::Fence;
use crate::userfn::{upstream_status, CallResponse};

/// This node's replica id. A single node needs one fixed id; a cluster
/// would give each member its own.
const THIS_NODE: ReplicaId = ReplicaId(0);
/// Function messages read ahead of the entity loop; also the most
/// committed together.
const INCOMING: usize = 16;

/// What later commands of a deleted entity get.
pub(super) fn deleted() -> Status {
    Status::new(Code::Unknown, "Entity deleted")
}

/// The namespace of a service's stored states: its persistence id, or
/// (what SDKs declare for CRDTs, which have none) its name when empty.
fn store_id(svc: &EntityService) -> &str {
    if svc.persistence_id.is_empty() {
        &svc.name
    } else {
        &svc.persistence_id
    }
}

/// The function side of a live CRDT entity: our half of the stream, and a
/// task reading theirs, so the loop can wait for replies, commands and
/// cancellations at once.
pub(super) struct Link {
    send: SendStream,
    incoming: flume::Receiver<Result<Bytes, Status>>,
    /// Dropped with the link: stops the reader, which resets the stream.
    _stop: oneshot::Sender<()>,
}

impl Link {
    async fn open(core: &Context, svc: &EntityService) -> Result<Link, Status> {
        let uri = core.pool.endpoint(&format!("/{}/handle", svc.protocol));
        let (send, response) = core.pool.open(&uri, None).await?;
        let (tx, incoming) = flume::bounded(INCOMING);
        let (stop, stopped) = oneshot::channel();
        monoio::spawn(read(response, core.max_message_size(), tx, stopped));
        Ok(Link { send, incoming, _stop: stop })
    }

    async fn send(&mut self, message: crdt_stream_in::Message) -> Result<(), Status> {
        let framed = encode_prost(&CrdtStreamIn { message: Some(message) });
        wait_capacity(&mut self.send).await.map_err(upstream_status)?;
        self.send.send_data(framed, false).map_err(upstream_status)
    }

    /// Half-closes our side and waits (bounded) for the function to end its.
    pub(super) async fn close(mut self) {
        let _ = self.send.send_data(Bytes::new(), true);
        let drain = async { while self.incoming.recv_async().await.is_ok() {} };
        let _ = monoio::time::timeout(Duration::from_secs(5), drain).await;
    }
}

/// Forwards the function's messages until it ends its side, fails, or the
/// link is dropped.
async fn read(response: ResponseFuture, max: usize, tx: flume::Sender<Result<Bytes, Status>>, stopped: oneshot::Receiver<()>) {
    let work = async {
        let mut upstream = match CallResponse::open(response, max).await {
            Ok(up) => up.without_headers(),
            Err(status) => return drop(tx.send_async(Err(status)).await),
        };
        loop {
            match upstream.message().await {
                Ok(Some(body)) => {
                    if tx.send_async(Ok(body)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(status) => return drop(tx.send_async(Err(status)).await),
            }
        }
    };
    monoio::select! {
        _ = work => {},
        _ = stopped => {},
    }
}

/// A command sent to the function, waiting for its reply.
struct Pending {
    reply: Reply,
    /// Sent with `streamed = true` (a server-streaming method).
    streamed: bool,
    since: Instant,
}

/// An answer decided by a function message, released once the batch it
/// came in is durable.
enum Release {
    Reply { reply: Reply, answer: Answer, stream: Option<i64> },
    Streamed { id: i64, answer: Answer, end: bool },
    /// A cancelled call's side effects.
    SideEffects(Vec<SideEffect>),
}

/// Why the loop stops after a batch.
enum Stop {
    /// A protocol violation: reported to the function, the entity restarts
    /// from what was committed. Fails `command` (if known) with the reason.
    Violation(Status, Option<i64>),
    /// A top-level failure of the whole entity.
    Failed(Status),
    Deleted,
}

/// One activation's state.
struct Live<'a> {
    core: &'a Rc<Context>,
    /// The shard lease the entity activated under.
    fence: Option<Fence>,
    svc: &'a EntityService,
    entity_id: &'a str,
    link: Link,
    /// The state, as committed between batches.
    state: Durable,
    /// The deltas applied in the batch being decided.
    applied: AppliedDeltas,
    pending: BTreeMap<i64, Pending>,
    /// Streamed calls open after their reply; `None` while the reply that
    /// opens one waits for its commit.
    streams: BTreeMap<i64, Option<StreamSink>>,
    /// Cancelled calls waiting for the function's `stream_cancelled_response`.
    cancelling: BTreeSet<i64>,
    next_id: i64,
    /// In the core's idle order (nothing in flight, nothing streaming).
    resting: bool,
}

/// One activation of a CRDT entity: load, open, serve until passivation,
/// deletion, a restart or a crash.
pub(super) async fn session(
    core: &Rc<Context>,
    svc: &EntityService,
    key: &EntityKey,
    rx: &queue::Receiver<Msg>,
    idle: &Idle,
    cached: Option<Cached>,
    fence: Option<Fence>,
) -> End {
    let entity_id = key.1.as_str();
    let loaded = match cached {
        Some(Cached::Crdt(state)) => Some(state),
        Some(Cached::CrdtDeleted) => None,
        _ => match core.store.read_crdt(store_id(svc), entity_id).await.map(Durable::load) {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => return End::Crashed(Status::new(Code::DataLoss, format!("entity {entity_id:?}: {e}"))),
            Err(status) => return End::Crashed(status),
        },
    };
    let Some(state) = loaded else { return End::Deleted(None) };
    let mut link = match Link::open(core, svc).await {
        Ok(link) => link,
        Err(status) => return End::Crashed(status),
    };
    let delta = state.crdt.as_ref().map(|c| c.to_initial_delta(THIS_NODE));
    let init = CrdtInit { service_name: svc.name.clone(), entity_id: entity_id.to_owned(), delta };
    if let Err(status) = link.send(crdt_stream_in::Message::Init(init)).await {
        return End::Crashed(status);
    }
    idle.overdue.set(false);
    let live = Live {
        core,
        fence,
        svc,
        entity_id,
        link,
        state,
        applied: AppliedDeltas::default(),
        pending: BTreeMap::new(),
        streams: BTreeMap::new(),
        cancelling: BTreeSet::new(),
        next_id: 1,
        resting: false,
    };
    live.serve(key, rx, idle).await
}

/// What woke the loop.
enum Event {
    Queue(Option<Msg>),
    Function(Result<Result<Bytes, Status>, flume::RecvError>),
    Gone(i64),
    Overdue,
}

impl Live<'_> {
    async fn serve(mut self, key: &EntityKey, rx: &queue::Receiver<Msg>, idle: &Idle) -> End {
        loop {
            self.account(key, rx, idle);
            let streams = &mut self.streams;
            let gone = std::future::poll_fn(|cx| {
                let found = streams.iter_mut().find_map(|(id, s)| s.as_mut().is_some_and(|s| s.poll_gone(cx)).then_some(*id));
                found.map_or(std::task::Poll::Pending, std::task::Poll::Ready)
            });
            let event = monoio::select! {
                m = rx.recv() => Event::Queue(m),
                m = self.link.incoming.recv_async() => Event::Function(m),
                id = gone => Event::Gone(id),
                _ = idle.overdue() => Event::Overdue,
            };
            let result = match event {
                Event::Queue(Some(Msg::Command(cmd))) => {
                    idle.asked.set(false);
                    idle.dequeued(&cmd);
                    if let Some(status) = stateful::lease_lost(self.core, self.fence) {
                        cmd.reply.finish(Err(status.clone()));
                        return End::Crashed(status);
                    }
                    self.command(cmd.route, cmd.payload, cmd.reply).await
                }
                Event::Queue(Some(Msg::Passivate)) => {
                    idle.asked.set(false);
                    if self.resting && rx.is_empty() {
                        return End::Passivated(Closing::Crdt(Box::new(self.link)), Some(Cached::Crdt(self.state)));
                    }
                    Ok(())
                }
                // The registry holds a sender while the entity is active.
                Event::Queue(None) => return End::Passivated(Closing::Crdt(Box::new(self.link)), Some(Cached::Crdt(self.state))),
                Event::Function(Ok(Ok(body))) => match self.batch(body).await {
                    Ok(None) => Ok(()),
                    Ok(Some(stop)) => return self.stop(stop),
                    Err(status) => Err(status),
                },
                Event::Function(Ok(Err(status))) => Err(status),
                Event::Function(Err(_)) => Err(terminated_unexpectedly()),
                Event::Gone(id) => self.cancel(id).await,
                Event::Overdue => {
                    let oldest = self.pending.iter().min_by_key(|(_, p)| p.since).map_or(0, |(id, _)| *id);
                    let timeout = self.core.limits.command_timeout;
                    Err(Status::new(
                        Code::DeadlineExceeded,
                        format!("user function did not answer command {oldest} of entity {:?} within {timeout:?}", self.entity_id),
                    ))
                }
            };
            if let Err(status) = result {
                self.fail_all(&status);
                return End::Crashed(status);
            }
        }
    }

    /// Keeps the sweeper's view current: busy (with the oldest command's
    /// start, for its timeout) while replies are awaited; neither busy nor
    /// idle while only streamed calls are open, which rules out
    /// passivation; idle otherwise.
    fn account(&mut self, key: &EntityKey, rx: &queue::Receiver<Msg>, idle: &Idle) {
        let resting = self.pending.is_empty() && self.streams.is_empty() && self.cancelling.is_empty();
        if resting {
            if !self.resting {
                self.resting = true;
                idle.busy.set(false);
                idle.since.set(Some(Instant::now()));
                if rx.is_empty() {
                    self.core.entities.became_idle(key, idle);
                }
            }
            return;
        }
        if std::mem::take(&mut self.resting) {
            self.core.entities.became_busy(idle);
        }
        let oldest = self.pending.values().map(|p| p.since).min();
        idle.busy.set(oldest.is_some());
        idle.since.set(oldest);
    }

    async fn command(&mut self, route: usize, payload: Bytes, reply: Reply) -> Result<(), Status> {
        let route = &self.core.router.routes()[route];
        let (id, streamed) = (self.next_id, route.shape == Shape::ServerStreaming);
        self.next_id += 1;
        let command = Command {
            entity_id: self.entity_id.to_owned(),
            id,
            name: route.method.clone(),
            payload: Some(Any { type_url: route.input_type_url.clone(), value: payload }),
            streamed,
            metadata: None,
        };
        self.pending.insert(id, Pending { reply, streamed, since: Instant::now() });
        self.link.send(crdt_stream_in::Message::Command(command)).await
    }

    /// The client of streamed call `id` went away (or could not keep up).
    async fn cancel(&mut self, id: i64) -> Result<(), Status> {
        self.streams.remove(&id);
        self.cancelling.insert(id);
        let cancelled = StreamCancelled { entity_id: self.entity_id.to_owned(), id };
        self.link.send(crdt_stream_in::Message::StreamCancelled(cancelled)).await
    }

    /// Decides `first` and whatever else the function has sent meanwhile,
    /// commits the resulting state once, then releases the answers in
    /// order. `Err` crashes the entity.
    async fn batch(&mut self, first: Bytes) -> Result<Option<Stop>, Status> {
        let mut releases = Vec::new();
        let (mut dirty, mut stop, mut trailing) = (false, None, None);
        let mut next = Some(first);
        while let Some(body) = next.take() {
            match self.decide(body, &mut releases) {
                Ok(Effect::None) => {}
                Ok(Effect::Changed) => dirty = true,
                Ok(Effect::Deleted) => {
                    stop = Some(Stop::Deleted);
                    break;
                }
                Err(s) => {
                    stop = Some(s);
                    break;
                }
            }
            // Nothing awaits in this loop, so the reader cannot refill the
            // channel: a batch is at most its capacity.
            match self.link.incoming.try_recv() {
                Ok(Ok(body)) => next = Some(body),
                Ok(Err(status)) => trailing = Some(status),
                Err(flume::TryRecvError::Disconnected) => trailing = Some(terminated_unexpectedly()),
                Err(flume::TryRecvError::Empty) => {}
            }
        }
        let applied = std::mem::take(&mut self.applied);
        let (pid, eid) = (store_id(self.svc), self.entity_id);
        let write = match &stop {
            Some(Stop::Deleted) => Some(self.state.tombstone(pid, eid)),
            _ if dirty => Some(self.state.write(pid, eid, &applied)),
            _ => None,
        };
        if let Some(write) = write {
            // A failed commit crashes the entity, so the next activation
            // reads what storage holds: nothing to roll back here.
            if let Err(status) = Box::pin(stateful::commit(self.core, vec![write], self.fence)).await {
                for release in releases {
                    if let Release::Reply { reply, .. } = release {
                        reply.finish(Err(status.clone()));
                    }
                }
                return Err(status);
            }
        }
        for release in releases {
            self.release(release).await?;
        }
        match trailing {
            Some(status) if stop.is_none() => Err(status),
            _ => Ok(stop),
        }
    }

    async fn release(&mut self, release: Release) -> Result<(), Status> {
        match release {
            Release::Reply { reply, answer, stream: None } => reply.finish(Ok(answer)),
            Release::Reply { reply: Reply::Stream(sink), answer, stream: Some(id) } => {
                if sink.push(Ok(answer)) {
                    self.streams.insert(id, Some(sink));
                } else {
                    return self.cancel(id).await;
                }
            }
            // A forward or side effect calling a streamed method wants one
            // answer: the first one, then the call is cancelled.
            Release::Reply { reply, answer, stream: Some(id) } => {
                reply.finish(Ok(answer));
                return self.cancel(id).await;
            }
            Release::Streamed { id, answer, end } => {
                let Some(Some(sink)) = self.streams.get(&id) else { return Ok(()) };
                if !sink.push(Ok(answer)) {
                    return self.cancel(id).await;
                }
                if end {
                    self.streams.remove(&id);
                }
            }
            Release::SideEffects(side_effects) => {
                let origin = format!("{} (cancelled streamed call)", self.svc.name);
                if self.core.orphaned.try_send(Orphaned { side_effects, origin }).is_err() {
                    tracing::warn!(service = %self.svc.name, "side effects of a cancelled call dropped: too many waiting");
                }
            }
        }
        Ok(())
    }

    /// Checks one function message and applies its state action; the
    /// answers it decides join `releases`.
    fn decide(&mut self, body: Bytes, releases: &mut Vec<Release>) -> Result<Effect, Stop> {
        use crdt_stream_out::Message as Out;
        let out = <CrdtStreamOut as prost::Message>::decode(body).map_err(|e| Stop::Violation(undecodable("CrdtStreamOut", e), None))?;
        match out.message {
            Some(Out::Reply(reply)) => self.reply(reply, releases),
            Some(Out::StreamedMessage(m)) => self.streamed(m, releases),
            Some(Out::StreamCancelledResponse(r)) => {
                if !self.cancelling.remove(&r.command_id) {
                    return Err(violation(format!("Received stream cancelled response for unknown command id {}", r.command_id), None));
                }
                let effect = self.state_action(r.state_action, None)?;
                if !r.side_effects.is_empty() {
                    releases.push(Release::SideEffects(r.side_effects));
                }
                Ok(effect)
            }
            Some(Out::Failure(f)) => self.failure(f, releases),
            None => Err(violation("user function sent an empty CrdtStreamOut".into(), None)),
        }
    }

    fn reply(&mut self, reply: CrdtReply, releases: &mut Vec<Release>) -> Result<Effect, Stop> {
        let id = reply.command_id;
        let Some(pending) = self.pending.get(&id) else {
            return Err(violation(format!("Received reply for unknown command id {id}"), None));
        };
        if reply.streamed && !pending.streamed {
            return Err(violation(format!("Received streamed reply for non-streamed command {id}"), Some(id)));
        }
        let action = reply.client_action.and_then(|c| c.action);
        // A failed command changes nothing.
        let failed = matches!(action, Some(crate::proto::cloudstate::client_action::Action::Failure(_)));
        let effect = match reply.state_action {
            _ if failed => Effect::None,
            state_action => self.state_action(state_action, Some(id))?,
        };
        let pending = self.pending.remove(&id).expect("checked above");
        let stream = (reply.streamed && effect != Effect::Deleted).then_some(id);
        if let Some(id) = stream {
            self.streams.insert(id, None);
        }
        let answer = Answer { side_effects: reply.side_effects, outcome: action.into() };
        releases.push(Release::Reply { reply: pending.reply, answer, stream });
        Ok(effect)
    }

    fn streamed(&mut self, m: CrdtStreamedMessage, releases: &mut Vec<Release>) -> Result<Effect, Stop> {
        let id = m.command_id;
        if self.cancelling.contains(&id) {
            return Ok(Effect::None); // raced its cancellation
        }
        if !self.streams.contains_key(&id) {
            return Err(violation(format!("Received streamed message for unknown command id {id}"), None));
        }
        let answer = Answer { side_effects: m.side_effects, outcome: m.client_action.and_then(|c| c.action).into() };
        let end = m.end_stream || matches!(answer.outcome, Outcome::Failure(_));
        releases.push(Release::Streamed { id, answer, end });
        Ok(Effect::None)
    }

    /// A failure of one command (its id), else of the whole entity.
    fn failure(&mut self, f: Failure, releases: &mut Vec<Release>) -> Result<Effect, Stop> {
        let answer = || Answer { side_effects: Vec::new(), outcome: Outcome::Failure(f.description.clone()) };
        if let Some(pending) = self.pending.remove(&f.command_id) {
            releases.push(Release::Reply { reply: pending.reply, answer: answer(), stream: None });
            return Ok(Effect::None);
        }
        if self.streams.contains_key(&f.command_id) {
            releases.push(Release::Streamed { id: f.command_id, answer: answer(), end: true });
            return Ok(Effect::None);
        }
        Err(Stop::Failed(Status::new(Code::Unknown, f.description)))
    }

    /// Applies an update (any write consistency: all are durable here once
    /// committed) or notes a delete.
    fn state_action(&mut self, action: Option<CrdtStateAction>, command: Option<i64>) -> Result<Effect, Stop> {
        match action.and_then(|a| a.action) {
            None => Ok(Effect::None),
            Some(crdt_state_action::Action::Delete(_)) => Ok(Effect::Deleted),
            Some(crdt_state_action::Action::Update(delta)) => {
                let writer = Writer::now(THIS_NODE);
                let applied = match &mut self.state.crdt {
                    Some(crdt) => crdt.apply(&delta, writer),
                    None => Crdt::from_delta(&delta, writer).map(|crdt| self.state.crdt = Some(crdt)),
                };
                applied.map_err(|e| violation(format!("entity {:?}: {e}", self.entity_id), command))?;
                self.applied.push(&delta, writer);
                Ok(Effect::Changed)
            }
        }
    }

    /// Ends the activation after a batch was released.
    fn stop(mut self, stop: Stop) -> End {
        match stop {
            Stop::Deleted => {
                self.fail_all(&deleted());
                End::Deleted(Some(Closing::Crdt(Box::new(self.link))))
            }
            Stop::Violation(status, command) => {
                debug!(entity = %self.entity_id, %status, "protocol violation; restarting");
                let (core, message) = (self.core.clone(), status.message.clone());
                monoio::spawn(async move { report_error(&core.pool, &message).await });
                if let Some(pending) = command.and_then(|id| self.pending.remove(&id)) {
                    pending.reply.finish(Err(status.clone()));
                }
                self.fail_all(&status);
                End::Restart(Some(Cached::Crdt(self.state)))
            }
            Stop::Failed(status) => {
                self.fail_all(&status);
                End::Crashed(status)
            }
        }
    }

    /// Fails every call in flight or streaming.
    fn fail_all(&mut self, status: &Status) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            pending.reply.finish(Err(status.clone()));
        }
        for sink in std::mem::take(&mut self.streams).into_values().flatten() {
            sink.push(Err(status.clone()));
        }
    }
}

/// What one function message did to the state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Effect {
    None,
    Changed,
    Deleted,
}

fn terminated_unexpectedly() -> Status {
    Status::new(Code::Unavailable, "Unexpected entity termination")
}

fn violation(message: String, command: Option<i64>) -> Stop {
    Stop::Violation(Status::new(Code::Internal, message), command)
}
