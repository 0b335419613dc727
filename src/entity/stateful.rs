//! Event-sourced and value entities: the parts both kinds share.
//!
//! Each active entity is one task on its owning core (see [`crate::shard`])
//! holding one `handle` stream to the function. Commands queue in a bounded
//! per-entity channel and run one at a time: send `Command{id}`, read the
//! reply, persist what it decided (through the core's group-committing
//! [`StoreHandle`](crate::store::StoreHandle)), and only then release the
//! answer. The kind-specific halves live in [`super::eventsourced`] and
//! [`super::value`].

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_channel::oneshot;
use h2::{client::ResponseFuture, SendStream};
use tracing::{debug, warn};

use super::cache::Cached;
use super::{eventsourced, key, value};
use crate::discovery::{report_error, EntityKind, EntityService, MethodRoute};
use crate::dispatch::End as DispatchEnd;
use crate::effects::{self, Outcome};
use crate::grpc::{wait_capacity, Code, MessageReader, Responder, Status};
use crate::proto::cloudstate::{Command, SideEffect};
use crate::proto::google::protobuf::Any;
use crate::shard::{self, Envelope};
use crate::store::Write;
use crate::userfn::{upstream_status, CallResponse};
use crate::worker::Core;

/// What an entity decided for one command, released after persistence.
pub struct Answer {
    pub side_effects: Vec<SideEffect>,
    pub outcome: Outcome,
}

/// A reply, read and checked by the kind-specific half.
pub struct Decision {
    pub writes: Vec<Write>,
    pub answer: Answer,
    /// Close the stream and re-activate (event-sourced `restart`).
    pub restart: bool,
}

/// Per-kind state of a live entity session.
pub enum Session {
    EventSourced(eventsourced::Session),
    Value(value::Session),
}

impl Session {
    /// Loads the state (from `cached` when given) and returns the messages
    /// that open the stream.
    async fn activate(
        core: &Core,
        svc: &EntityService,
        entity_id: &str,
        cached: Option<Cached>,
    ) -> Result<(Session, Vec<Bytes>), Status> {
        match svc.kind {
            EntityKind::EventSourced => {
                let (s, opening) = eventsourced::Session::activate(core, svc, entity_id, cached).await?;
                Ok((Session::EventSourced(s), opening))
            }
            _ => {
                let (s, opening) = value::Session::activate(core, svc, entity_id, cached).await?;
                Ok((Session::Value(s), opening))
            }
        }
    }

    fn committed(&mut self) {
        match self {
            Session::EventSourced(s) => s.committed(),
            Session::Value(s) => s.committed(),
        }
    }

    fn into_cached(self) -> Option<Cached> {
        match self {
            Session::EventSourced(s) => s.into_cached(),
            Session::Value(s) => s.into_cached(),
        }
    }

    fn command(&self, command: Command) -> Bytes {
        match self {
            Session::EventSourced(_) => eventsourced::command(command),
            Session::Value(_) => value::command(command),
        }
    }

    /// Checks a reply against the command in flight; `Err` crashes the
    /// entity with that reason.
    fn decide(&mut self, body: Bytes, command_id: i64) -> Result<Decision, Status> {
        match self {
            Session::EventSourced(s) => s.decide(body, command_id),
            Session::Value(s) => s.decide(body, command_id),
        }
    }
}

enum Msg {
    Command(Cmd),
    /// Passivate now if idle (the per-core cap needs room).
    Passivate,
}

struct Cmd {
    route: usize,
    payload: Bytes,
    reply: oneshot::Sender<Result<Answer, Status>>,
}

struct Handle {
    tx: flume::Sender<Msg>,
    generation: u64,
    last_used: Cell<u64>,
    idle: Rc<Idle>,
    /// Passivate after this long idle.
    timeout: Duration,
}

/// An entity's idleness, shared between its task and the core's sweeper.
/// One sweeper per core replaces a timer armed and dropped per entity per
/// command, and a passivation request can no longer strand commands queued
/// behind it.
#[derive(Default)]
struct Idle {
    busy: Cell<bool>,
    since: Cell<Option<Instant>>,
    /// A Passivate is on its way (not sent twice).
    asked: Cell<bool>,
}

/// A core's active entities, by (service index, entity id).
#[derive(Default)]
pub struct Entities {
    active: RefCell<HashMap<(usize, String), Handle>>,
    clock: Cell<u64>,
}

impl Entities {
    /// Active entities on this core.
    pub fn len(&self) -> usize {
        self.active.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn tick(&self) -> u64 {
        self.clock.set(self.clock.get() + 1);
        self.clock.get()
    }

    fn remove(&self, service: usize, entity_id: &str, generation: u64) {
        let mut active = self.active.borrow_mut();
        if active.get(&(service, entity_id.to_owned())).is_some_and(|h| h.generation == generation) {
            active.remove(&(service, entity_id.to_owned()));
        }
    }

    /// Asks the least recently used idle entity to passivate.
    fn make_room(&self, cap: usize) {
        let active = self.active.borrow();
        if active.len() < cap {
            return;
        }
        if let Some(lru) = active.values().filter(|h| !h.idle.busy.get()).min_by_key(|h| h.last_used.get()) {
            lru.ask_to_passivate();
        }
    }

    /// Asks every entity idle past its timeout to passivate.
    fn sweep(&self, now: Instant) {
        for h in self.active.borrow().values() {
            let idle_for = h.idle.since.get().map(|t| now.saturating_duration_since(t));
            if !h.idle.busy.get() && idle_for.is_some_and(|d| d >= h.timeout) {
                h.ask_to_passivate();
            }
        }
    }
}

impl Handle {
    fn ask_to_passivate(&self) {
        if !self.idle.asked.replace(true) && self.tx.try_send(Msg::Passivate).is_err() {
            self.idle.asked.set(false);
        }
    }
}

/// Passivates idle entities on this core, checking a few times per the
/// shortest passivation timeout of the served entity types.
pub async fn sweep_idle(core: Rc<Core>) {
    let shortest = core
        .router
        .services()
        .iter()
        .filter(|s| matches!(s.kind, EntityKind::EventSourced | EntityKind::ValueEntity))
        .map(|s| s.passivation_timeout.unwrap_or(core.shared.config.passivation_timeout))
        .min();
    let Some(shortest) = shortest else { return };
    let every = (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        monoio::time::sleep(every).await;
        core.entities.sweep(Instant::now());
    }
}

/// Serves a client's unary call of an entity method.
pub async fn serve(core: &Rc<Core>, route: &MethodRoute, request: http::Request<h2::RecvStream>, responder: &mut Responder) -> DispatchEnd {
    let reader = MessageReader::new(request.into_body(), core.max_message_size());
    let payload = match reader.single().await {
        Ok(p) => p,
        Err(status) => return DispatchEnd::Status(status),
    };
    let work = async {
        let answer = call(core, route, payload).await?;
        effects::finish(core, answer.side_effects, answer.outcome, &route.path, 0).await
    };
    super::respond_unary(responder, work).await
}

/// Serves one command for an entity method: reads the entity id from the
/// request bytes, and runs it on the owning core.
pub async fn call(core: &Rc<Core>, route: &MethodRoute, payload: Bytes) -> Result<Answer, Status> {
    let entity_id = key::extract(&payload, &route.key_fields)
        .map_err(|e| Status::new(Code::InvalidArgument, format!("{}: {e}", route.path)))?;
    let svc = core.router.service(route);
    let owner = shard::owner(&svc.persistence_id, &entity_id, core.mailboxes.len());
    if owner == core.id {
        return submit(core, route.id, entity_id, payload).await;
    }
    let (reply, answer) = oneshot::channel();
    core.mailboxes[owner]
        .send_async(Envelope { route: route.id, entity_id, payload, reply })
        .await
        .map_err(|_| Status::new(Code::Unavailable, "the owning core has stopped"))?;
    answer.await.map_err(|_| terminated())?
}

/// Runs the commands other cores route to this one.
pub async fn serve_mailbox(core: Rc<Core>, inbox: flume::Receiver<Envelope>) {
    while let Ok(env) = inbox.recv_async().await {
        let core = core.clone();
        monoio::spawn(async move {
            let answer = submit(&core, env.route, env.entity_id, env.payload).await;
            let _ = env.reply.send(answer);
        });
    }
}

/// Queues a command on this core's entity, activating it if needed.
async fn submit(core: &Rc<Core>, route: usize, entity_id: String, payload: Bytes) -> Result<Answer, Status> {
    let service = core.router.routes()[route].service;
    let (reply, answer) = oneshot::channel();
    let msg = Msg::Command(Cmd { route, payload, reply });
    let tick = core.entities.tick();
    let sent = {
        let existing = core.entities.active.borrow().get(&(service, entity_id.clone())).map(|h| {
            h.last_used.set(tick);
            h.tx.clone()
        });
        let tx = match existing {
            Some(tx) => tx,
            None => start(core, service, entity_id, tick),
        };
        tx.try_send(msg)
    };
    match sent {
        Ok(()) => answer.await.map_err(|_| terminated())?,
        Err(flume::TrySendError::Full(_)) => Err(Status::new(
            Code::ResourceExhausted,
            format!("too many commands queued for this entity (limit {})", core.shared.config.entity_queue),
        )),
        Err(flume::TrySendError::Disconnected(_)) => Err(terminated()),
    }
}

fn start(core: &Rc<Core>, service: usize, entity_id: String, tick: u64) -> flume::Sender<Msg> {
    core.entities.make_room(core.shared.config.max_active_entities_per_core);
    let (tx, rx) = flume::bounded(core.shared.config.entity_queue);
    let idle = Rc::new(Idle::default());
    let generation = tick;
    let svc = &core.router.services()[service];
    let timeout = svc.passivation_timeout.unwrap_or(core.shared.config.passivation_timeout);
    core.entities.active.borrow_mut().insert(
        (service, entity_id.clone()),
        Handle { tx: tx.clone(), generation, last_used: Cell::new(tick), idle: idle.clone(), timeout },
    );
    core.metrics.entity_activated();
    monoio::spawn(run(core.clone(), service, entity_id, rx, generation, idle));
    tx
}

/// How one stream to the function ended.
enum End {
    /// Idle or evicted; the state goes to the hot cache.
    Passivated(Box<Stream>, Option<Cached>),
    /// Re-activate now, from the state this session knew.
    Restart(Option<Cached>),
    Crashed(Status),
}

/// The function-side stream of a live entity.
struct Stream {
    send: SendStream<Bytes>,
    response: Option<ResponseFuture>,
    upstream: Option<CallResponse>,
}

impl Stream {
    async fn send(&mut self, framed: Bytes) -> Result<(), Status> {
        wait_capacity(&mut self.send, framed.len()).await.map_err(upstream_status)?;
        self.send.send_data(framed, false).map_err(upstream_status)
    }

    /// The next message from the function; `None` when it ended the stream.
    async fn next(&mut self, max: usize) -> Result<Option<Bytes>, Status> {
        if let Some(response) = self.response.take() {
            self.upstream = Some(CallResponse::open(response, max).await?);
        }
        match self.upstream.as_mut() {
            Some(up) => up.message().await,
            None => Ok(None),
        }
    }

    /// Half-closes our side and waits (bounded) for the function to end
    /// its side, so both directions complete cleanly.
    async fn close(mut self, max: usize) {
        let _ = self.send.send_data(Bytes::new(), true);
        let drain = async {
            while let Ok(Some(_)) = self.next(max).await {}
        };
        let _ = monoio::time::timeout(Duration::from_secs(5), drain).await;
    }
}

async fn run(core: Rc<Core>, service: usize, entity_id: String, rx: flume::Receiver<Msg>, generation: u64, idle: Rc<Idle>) {
    let svc = core.router.services()[service].clone();
    let key = (service, entity_id.clone());
    let mut cached = core.cache.borrow_mut().take(&key);
    let end = loop {
        match session(&core, &svc, &entity_id, &rx, &idle, cached).await {
            End::Restart(state) => cached = state,
            end => break end,
        }
    };
    // Leave the registry before anything awaits, so the next command
    // starts a fresh entity instead of queueing behind a dead one.
    core.entities.remove(service, &entity_id, generation);
    match end {
        End::Passivated(stream, state) => {
            debug!(service = %svc.name, entity = %entity_id, "passivated");
            if let Some(state) = state {
                core.cache.borrow_mut().put(key, state);
            }
            Box::pin(stream.close(core.max_message_size())).await;
        }
        End::Crashed(status) => {
            warn!(service = %svc.name, entity = %entity_id, %status, "entity stopped");
            while let Ok(msg) = rx.try_recv() {
                if let Msg::Command(cmd) = msg {
                    let _ = cmd.reply.send(Err(Status::new(status.code, format!("Entity terminated: {}", status.message))));
                }
            }
        }
        End::Restart(_) => unreachable!("restarts loop above"),
    }
}

/// One activation: open the stream, replay, then serve commands until
/// passivation, a restart or a crash.
async fn session(
    core: &Rc<Core>,
    svc: &EntityService,
    entity_id: &str,
    rx: &flume::Receiver<Msg>,
    idle: &Idle,
    cached: Option<Cached>,
) -> End {
    let max = core.max_message_size();
    // The rare, large steps (activation, commit, close) are boxed so that
    // an idle entity's task stays small: it is most of an entity's memory.
    let (mut session, opening) = match Box::pin(Session::activate(core, svc, entity_id, cached)).await {
        Ok(s) => s,
        Err(status) => return End::Crashed(status),
    };
    let uri = core.pool.uri(&format!("/{}/handle", svc.protocol));
    let mut stream = match core.pool.open(&uri, None).await {
        Ok((send, response)) => Stream { send, response: Some(response), upstream: None },
        Err(status) => return End::Crashed(status),
    };
    for framed in opening {
        if let Err(status) = stream.send(framed).await {
            return End::Crashed(status);
        }
    }
    let mut next_id = 1i64;
    loop {
        idle.busy.set(false);
        idle.since.set(Some(Instant::now()));
        let cmd = match rx.recv_async().await {
            Ok(Msg::Command(cmd)) => cmd,
            // Commands that arrived after the request win: stay active. Once
            // it passivates, `run` leaves the registry before anything
            // awaits, so no command can land in this queue after it.
            Ok(Msg::Passivate) if !rx.is_empty() => {
                idle.asked.set(false);
                continue;
            }
            Ok(Msg::Passivate) | Err(_) => return End::Passivated(Box::new(stream), session.into_cached()),
        };
        idle.asked.set(false);
        idle.busy.set(true);
        let route = &core.router.routes()[cmd.route];
        let id = next_id;
        next_id += 1;
        let command = Command {
            entity_id: entity_id.to_owned(),
            id,
            name: route.method.clone(),
            payload: Some(Any { type_url: route.input_type_url.clone(), value: cmd.payload }),
            streamed: false,
            metadata: None,
        };
        let outcome = Box::pin(async {
            stream.send(session.command(command)).await?;
            match stream.next(max).await? {
                Some(body) => session.decide(body, id),
                None => Err(Status::new(Code::Unavailable, "Unexpected entity termination")),
            }
        })
        .await;
        let decision = match outcome {
            Ok(d) => d,
            Err(status) => {
                if status.code == Code::Internal {
                    // A protocol violation by the function: tell it, as the reference does.
                    let (core, message) = (core.clone(), status.message.clone());
                    monoio::spawn(async move { report_error(&core.pool, &message).await });
                }
                let _ = cmd.reply.send(Err(status.clone()));
                return End::Crashed(status);
            }
        };
        if !decision.writes.is_empty() {
            if let Err(status) = Box::pin(core.store.commit(decision.writes)).await {
                let _ = cmd.reply.send(Err(status.clone()));
                return End::Crashed(status);
            }
            session.committed();
        }
        let _ = cmd.reply.send(Ok(decision.answer));
        if decision.restart {
            Box::pin(stream.close(max)).await;
            return End::Restart(session.into_cached());
        }
    }
}

fn terminated() -> Status {
    Status::new(Code::Unavailable, "Entity terminated")
}

/// A reply must answer the command in flight.
pub(super) fn check_id(expected: i64, got: i64) -> Result<(), Status> {
    if expected == got {
        Ok(())
    } else {
        Err(Status::new(Code::Internal, format!("Incorrect command id in reply, expecting {expected} but got {got}")))
    }
}

/// A message from the function that does not decode is a protocol violation.
pub(super) fn undecodable(what: &str, e: prost::DecodeError) -> Status {
    Status::new(Code::Internal, format!("user function sent an undecodable {what}: {e}"))
}

/// Decodes a stored `Any`.
pub(super) fn stored_any(bytes: Bytes) -> Result<Any, Status> {
    use prost::Message;
    Any::decode(bytes).map_err(|e| Status::new(Code::DataLoss, format!("stored state does not decode: {e}")))
}
