//! Event-sourced and value entities: the parts both kinds share.
//!
//! Each active entity is one task on its owning core (see [`crate::shard`])
//! holding one `handle` stream to the function. Commands queue in a bounded
//! per-entity channel and run one at a time: send `Command{id}`, read the
//! reply, persist what it decided (through the core's group-committing
//! [`StoreHandle`](crate::store::StoreHandle)), and only then release the
//! answer. The kind-specific halves live in [`super::eventsourced`] and
//! [`super::value`]. CRDT entities ([`super::crdt`]) share the registry, the
//! cap, the routing and the sweeper, but run their own session loop: their
//! commands overlap and may stream.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeMap, HashMap},
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_channel::oneshot;
use crate::http2::{client::ResponseFuture, SendStream};
use tracing::{debug, warn};

use super::cache::Cached;
use super::{crdt, eventsourced, value};
use crate::discovery::{report_error, EntityKind, EntityService};
use super::{Context, Outcome};
use crate::grpc::{wait_capacity, Code, Status};
use crate::proto::cloudstate::{Command, SideEffect};
use crate::proto::google::protobuf::Any;
use crate::runtime::queue;
use crate::store::{Fence, Write};
use crate::userfn::{upstream_status, CallResponse};

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
        core: &Context,
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

pub(super) enum Msg {
    Command(Cmd),
    /// Passivate now if idle (the per-core cap needs room).
    Passivate,
}

pub(super) struct Cmd {
    pub route: usize,
    pub payload: Bytes,
    pub reply: Reply,
}

/// Where a command's answers go.
pub enum Reply {
    /// A unary call's one answer.
    Once(oneshot::Sender<Result<Answer, Status>>),
    /// A server-streaming call (CRDT entities): answers until the sink drops.
    Stream(StreamSink),
}

/// Answers a streamed call may have waiting before its client counts as
/// too slow and the call is cancelled.
const STREAM_BACKLOG: usize = 64;

/// The entity's end of a streamed call.
pub struct StreamSink {
    answers: flume::Sender<Result<Answer, Status>>,
    /// Cancelled when the caller drops [`StreamAnswers`].
    gone: oneshot::Sender<()>,
}

/// The caller's end of a streamed call; dropping it cancels the call.
pub struct StreamAnswers {
    answers: flume::Receiver<Result<Answer, Status>>,
    _alive: oneshot::Receiver<()>,
}

impl Reply {
    /// The last answer: a unary call's only one, or a stream's final one.
    pub fn finish(self, answer: Result<Answer, Status>) {
        match self {
            Reply::Once(tx) => drop(tx.send(answer)),
            Reply::Stream(sink) => drop(sink.push(answer)),
        }
    }
}

impl StreamSink {
    /// Queues one answer; `false` when the caller is gone or too slow.
    pub fn push(&self, answer: Result<Answer, Status>) -> bool {
        self.answers.try_send(answer).is_ok()
    }

    /// Whether the caller has gone (registers the waker otherwise).
    pub fn poll_gone(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        self.gone.poll_canceled(cx).is_ready()
    }
}

impl StreamAnswers {
    /// The next answer; `None` once the entity ended the stream.
    pub async fn next(&self) -> Option<Result<Answer, Status>> {
        self.answers.recv_async().await.ok()
    }
}

pub fn streamed() -> (StreamSink, StreamAnswers) {
    let (answers, rx) = flume::bounded(STREAM_BACKLOG);
    let (gone, alive) = oneshot::channel();
    (StreamSink { answers, gone }, StreamAnswers { answers: rx, _alive: alive })
}

struct Handle {
    tx: queue::Sender<Msg>,
    generation: u64,
    idle: Rc<Idle>,
    /// Passivate after this long idle.
    timeout: Duration,
}

/// An entity's idleness and queue, shared between its task and the core's
/// bookkeeping. One sweeper per core replaces a timer armed and dropped per
/// entity per command, and a passivation request can no longer strand
/// commands queued behind it.
#[derive(Default)]
pub(super) struct Idle {
    pub busy: Cell<bool>,
    /// Idle since (when not busy), or running its command since (when busy);
    /// `None` for neither (a CRDT entity serving only streamed calls).
    pub since: Cell<Option<Instant>>,
    /// Set by the sweeper when the command in flight is past its timeout.
    pub overdue: Cell<bool>,
    alarm: RefCell<Option<std::task::Waker>>,
    /// A Passivate is on its way (not sent twice).
    pub asked: Cell<bool>,
    /// Its place in the core's idle order while idle.
    idle_tick: Cell<Option<u64>>,
    /// Request bytes waiting in its queue.
    pub queued_bytes: Cell<usize>,
}

pub(super) type EntityKey = (usize, String);

/// A core's active entities, by (service index, entity id), and the hard
/// cap on them.
///
/// A slot is taken before an entity activates and given back only when its
/// task has ended (stream closed), so entities still passivating count: the
/// cap bounds what entities hold, not just the registry. Idle entities sit
/// in an order by when they became idle, so finding the one to passivate is
/// O(log n).
#[derive(Default)]
pub struct Entities {
    active: RefCell<HashMap<EntityKey, Handle>>,
    idle: RefCell<BTreeMap<u64, EntityKey>>,
    slots: Cell<usize>,
    /// Activations waiting for a slot.
    waiting: RefCell<Vec<oneshot::Sender<()>>>,
    clock: Cell<u64>,
    /// Activations since start (for `/metrics`).
    activated: Cell<u64>,
}

/// How long an activation at the cap waits for an idle entity to passivate.
const SLOT_WAIT: Duration = Duration::from_secs(5);

impl Entities {
    /// Entities holding a slot on this core (active or still closing).
    pub fn len(&self) -> usize {
        self.slots.get()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entities activated on this core since start.
    pub fn activated(&self) -> u64 {
        self.activated.get()
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

    /// Takes a slot for a new entity; at the cap, passivates the least
    /// recently idle entity first, or refuses when every entity is busy.
    async fn take_slot(&self, cap: usize) -> Result<(), Status> {
        let deadline = Instant::now() + SLOT_WAIT;
        loop {
            if self.slots.get() < cap {
                self.slots.set(self.slots.get() + 1);
                return Ok(());
            }
            let victim = self.idle.borrow_mut().pop_first();
            match victim {
                Some((_, key)) => {
                    if let Some(h) = self.active.borrow().get(&key) {
                        h.idle.idle_tick.set(None);
                        h.ask_to_passivate();
                    }
                }
                // Nothing idle and nothing closing: waiting would not help.
                None if self.slots.get() <= self.active.borrow().len() => return Err(at_cap(cap)),
                None => {}
            }
            let (tx, rx) = oneshot::channel();
            self.waiting.borrow_mut().push(tx);
            let left = deadline.saturating_duration_since(Instant::now());
            // A victim may decline (a command raced in), so look again soon.
            if monoio::time::timeout(left.min(Duration::from_millis(50)), rx).await.is_err() && left.is_zero() {
                return Err(at_cap(cap));
            }
        }
    }

    fn release_slot(&self) {
        self.slots.set(self.slots.get() - 1);
        for w in self.waiting.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }

    pub(super) fn became_idle(&self, key: &EntityKey, idle: &Idle) {
        let tick = self.tick();
        idle.idle_tick.set(Some(tick));
        self.idle.borrow_mut().insert(tick, key.clone());
    }

    pub(super) fn became_busy(&self, idle: &Idle) {
        if let Some(tick) = idle.idle_tick.take() {
            self.idle.borrow_mut().remove(&tick);
        }
    }

    /// Asks every entity idle past its timeout to passivate, and wakes
    /// every one whose command has run past `command_timeout`.
    fn sweep(&self, now: Instant, command_timeout: Duration) {
        for h in self.active.borrow().values() {
            let elapsed = h.idle.since.get().map(|t| now.saturating_duration_since(t));
            match h.idle.busy.get() {
                false if elapsed.is_some_and(|d| d >= h.timeout) => h.ask_to_passivate(),
                true if elapsed.is_some_and(|d| d >= command_timeout) => h.idle.ring(),
                _ => {}
            }
        }
    }
}

impl Idle {
    /// `cmd` left the queue.
    pub(super) fn dequeued(&self, cmd: &Cmd) {
        self.queued_bytes.set(self.queued_bytes.get().saturating_sub(cmd.payload.len()));
    }

    fn ring(&self) {
        self.overdue.set(true);
        if let Some(waker) = self.alarm.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Resolves once the sweeper found the command in flight overdue.
    pub(super) async fn overdue(&self) {
        std::future::poll_fn(|cx| {
            if self.overdue.get() {
                return std::task::Poll::Ready(());
            }
            *self.alarm.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }
}

impl Handle {
    fn ask_to_passivate(&self) {
        if !self.idle.asked.replace(true) && self.tx.try_send(Msg::Passivate).is_err() {
            self.idle.asked.set(false);
        }
    }
}

/// Passivates idle entities on this core and fails overdue commands,
/// checking a few times per the shortest of the passivation timeouts and
/// the command timeout. One sweeper per core instead of a timer per
/// command keeps timers off the command path.
pub async fn sweep_idle(core: Rc<Context>) {
    let command_timeout = core.limits.command_timeout;
    let shortest = core
        .router
        .services()
        .iter()
        .filter(|s| s.kind != EntityKind::Action)
        .map(|s| s.passivation_timeout.unwrap_or(core.limits.passivation_timeout))
        .min();
    let Some(shortest) = shortest else { return };
    let every = (shortest.min(command_timeout) / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        monoio::time::sleep(every).await;
        core.entities.sweep(Instant::now(), command_timeout);
    }
}

/// Queues a command on this core's entity, activating it if needed.
pub async fn submit(core: &Rc<Context>, route: usize, entity_id: String, payload: Bytes, reply: Reply) {
    let service = core.router.routes()[route].service;
    let key = (service, entity_id);
    let existing = core.entities.active.borrow().get(&key).map(|h| (h.tx.clone(), h.idle.clone()));
    let (tx, idle) = match existing {
        Some(found) => found,
        None => {
            // Boxed: the rare path stays out of every command's future.
            if let Err(status) = Box::pin(core.entities.take_slot(core.limits.max_active)).await {
                return reply.finish(Err(status));
            }
            // Another command may have activated it while this one waited.
            let raced = core.entities.active.borrow().get(&key).map(|h| (h.tx.clone(), h.idle.clone()));
            match raced {
                Some(found) => {
                    core.entities.release_slot();
                    found
                }
                None => start(core, key),
            }
        }
    };
    let (len, limit) = (payload.len(), core.limits.queue_bytes);
    if idle.queued_bytes.get() + len > limit && idle.queued_bytes.get() > 0 {
        let status = Status::new(Code::ResourceExhausted, format!("too many request bytes queued for this entity (limit {limit})"));
        return reply.finish(Err(status));
    }
    match tx.try_send(Msg::Command(Cmd { route, payload, reply })) {
        Ok(()) => idle.queued_bytes.set(idle.queued_bytes.get() + len),
        Err(queue::TrySendError::Full(Msg::Command(cmd))) => cmd.reply.finish(Err(Status::new(
            Code::ResourceExhausted,
            format!("too many commands queued for this entity (limit {})", core.limits.queue),
        ))),
        Err(queue::TrySendError::Disconnected(Msg::Command(cmd))) => cmd.reply.finish(Err(terminated())),
        Err(_) => unreachable!("a command was sent"),
    }
}

/// Starts an entity's task in a slot already taken.
fn start(core: &Rc<Context>, key: EntityKey) -> (queue::Sender<Msg>, Rc<Idle>) {
    let (tx, rx) = queue::bounded(core.limits.queue);
    let idle = Rc::new(Idle::default());
    let generation = core.entities.tick();
    let svc = &core.router.services()[key.0];
    let timeout = svc.passivation_timeout.unwrap_or(core.limits.passivation_timeout);
    core.entities.active.borrow_mut().insert(key.clone(), Handle { tx: tx.clone(), generation, idle: idle.clone(), timeout });
    core.entities.activated.set(core.entities.activated.get() + 1);
    monoio::spawn(run(core.clone(), key, rx, generation, idle.clone()));
    (tx, idle)
}

fn at_cap(cap: usize) -> Status {
    Status::new(Code::ResourceExhausted, format!("active entity limit reached on this core ({cap}) and none is idle"))
}

/// How one stream to the function ended.
pub(super) enum End {
    /// Idle or evicted; the state goes to the hot cache.
    Passivated(Closing, Option<Cached>),
    /// Re-activate now, from the state this session knew.
    Restart(Option<Cached>),
    Crashed(Status),
    /// A CRDT entity's tombstone is durable: close its stream (if one is
    /// open), and fail what is still queued.
    Deleted(Option<Closing>),
}

/// A function-side stream to close once the entity has left the registry.
pub(super) enum Closing {
    Stream(Box<Stream>),
    Crdt(Box<crdt::Link>),
}

impl Closing {
    async fn close(self, max: usize) {
        match self {
            Closing::Stream(s) => s.close(max).await,
            Closing::Crdt(l) => l.close().await,
        }
    }
}

/// The function-side stream of a live event-sourced or value entity.
pub(super) struct Stream {
    send: SendStream,
    response: Option<ResponseFuture>,
    upstream: Option<CallResponse>,
}

impl Stream {
    async fn send(&mut self, framed: Bytes) -> Result<(), Status> {
        wait_capacity(&mut self.send).await.map_err(upstream_status)?;
        self.send.send_data(framed, false).map_err(upstream_status)
    }

    /// The next message from the function; `None` when it ended the stream.
    async fn next(&mut self, max: usize) -> Result<Option<Bytes>, Status> {
        if let Some(response) = self.response.take() {
            self.upstream = Some(CallResponse::open(response, max).await?.without_headers());
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

async fn run(core: Rc<Context>, key: EntityKey, rx: queue::Receiver<Msg>, generation: u64, idle: Rc<Idle>) {
    let (service, entity_id) = (key.0, key.1.as_str());
    let svc = &core.router.services()[service];
    let fence = match &core.leases {
        None => None,
        Some(leases) => match Box::pin(leases.acquire(&svc.persistence_id, entity_id)).await {
            Ok(fence) => Some(fence),
            // Another proxy owns it: refuse what is queued, as is.
            Err(status) => {
                core.entities.remove(service, entity_id, generation);
                fail_queued(&rx, &status);
                return core.entities.release_slot();
            }
        },
    };
    let mut cached = core.cache.borrow_mut().take(&key, fence);
    let end = loop {
        let end = match svc.kind {
            // Boxed: the larger CRDT loop does not grow every entity's task.
            EntityKind::Crdt => Box::pin(crdt::session(&core, svc, &key, &rx, &idle, cached, fence)).await,
            _ => session(&core, svc, &key, &rx, &idle, cached, fence).await,
        };
        match end {
            End::Restart(state) => cached = state,
            end => break end,
        }
    };
    // Leave the registry before anything awaits, so the next command
    // starts a fresh entity instead of queueing behind a dead one.
    core.entities.became_busy(&idle);
    core.entities.remove(service, entity_id, generation);
    match end {
        End::Passivated(stream, state) => {
            debug!(service = %svc.name, entity = %entity_id, "passivated");
            if let Some(state) = state {
                core.cache.borrow_mut().put(key.clone(), state, fence);
            }
            Box::pin(stream.close(core.max_message_size())).await;
        }
        End::Crashed(status) => {
            warn!(service = %svc.name, entity = %entity_id, %status, "entity stopped");
            // The queued commands never ran, whatever became of the one
            // that crashed it (its outcome may be unknown; theirs is not).
            let code = if status.code == Code::DeadlineExceeded { Code::Unavailable } else { status.code };
            fail_queued(&rx, &Status::new(code, format!("Entity terminated: {}", status.message)));
        }
        End::Deleted(stream) => {
            debug!(service = %svc.name, entity = %entity_id, "deleted");
            core.cache.borrow_mut().put(key.clone(), Cached::CrdtDeleted, fence);
            fail_queued(&rx, &crdt::deleted());
            if let Some(stream) = stream {
                Box::pin(stream.close(core.max_message_size())).await;
            }
        }
        End::Restart(_) => unreachable!("restarts loop above"),
    }
    core.entities.release_slot();
}

/// Answers the commands still queued for an entity that has ended.
fn fail_queued(rx: &queue::Receiver<Msg>, status: &Status) {
    while let Some(msg) = rx.try_recv() {
        if let Msg::Command(cmd) = msg {
            cmd.reply.finish(Err(status.clone()));
        }
    }
}

/// One activation: load the state, open the stream and replay it.
async fn activate(core: &Context, svc: &EntityService, entity_id: &str, cached: Option<Cached>) -> Result<(Session, Stream), Status> {
    let (session, opening) = Session::activate(core, svc, entity_id, cached).await?;
    let (send, response) = {
        // Dropped once open: an idle entity does not hold the endpoint.
        let uri = core.pool.endpoint(&format!("/{}/handle", svc.protocol));
        core.pool.open(&uri, None).await?
    };
    let mut stream = Stream { send, response: Some(response), upstream: None };
    for framed in opening {
        stream.send(framed).await?;
    }
    Ok((session, stream))
}

/// Serves commands one at a time until passivation, a restart or a crash.
///
/// An idle entity's task is mostly this future waiting for its next
/// command, so only what lives across commands is held here: activation
/// and each command run in futures of their own, boxed (BENCHMARKS.md §10).
async fn session(
    core: &Rc<Context>,
    svc: &EntityService,
    key: &EntityKey,
    rx: &queue::Receiver<Msg>,
    idle: &Idle,
    cached: Option<Cached>,
    fence: Option<Fence>,
) -> End {
    let (mut session, mut stream) = match Box::pin(activate(core, svc, &key.1, cached)).await {
        Ok(opened) => opened,
        Err(status) => return End::Crashed(status),
    };
    let mut next_id = 1i64;
    loop {
        idle.busy.set(false);
        idle.since.set(Some(Instant::now()));
        if rx.is_empty() {
            core.entities.became_idle(key, idle);
        }
        let received = rx.recv().await;
        core.entities.became_busy(idle);
        let cmd = match received {
            Some(Msg::Command(cmd)) => cmd,
            // Commands that arrived after the request win: stay active. Once
            // it passivates, `run` leaves the registry before anything
            // awaits, so no command can land in this queue after it.
            Some(Msg::Passivate) if !rx.is_empty() => {
                idle.asked.set(false);
                continue;
            }
            Some(Msg::Passivate) | None => return End::Passivated(Closing::Stream(Box::new(stream)), session.into_cached()),
        };
        idle.asked.set(false);
        idle.busy.set(true);
        idle.overdue.set(false);
        idle.since.set(Some(Instant::now()));
        idle.dequeued(&cmd);
        if let Some(status) = lease_lost(core, fence) {
            cmd.reply.finish(Err(status.clone()));
            return End::Crashed(status);
        }
        let id = next_id;
        next_id += 1;
        match Box::pin(command(core, &key.1, idle, &mut session, &mut stream, cmd, id, fence)).await {
            Ok(false) => {}
            Ok(true) => {
                Box::pin(stream.close(core.max_message_size())).await;
                return End::Restart(session.into_cached());
            }
            Err(status) => return End::Crashed(status),
        }
    }
}

/// Runs one command: send it, read the reply, persist what it decided,
/// then answer. `Ok(true)` asks for a restart; `Err` crashes the entity
/// (the command's caller already has its answer).
async fn command(
    core: &Rc<Context>,
    entity_id: &str,
    idle: &Idle,
    session: &mut Session,
    stream: &mut Stream,
    cmd: Cmd,
    id: i64,
    fence: Option<Fence>,
) -> Result<bool, Status> {
    let route = &core.router.routes()[cmd.route];
    let max = core.max_message_size();
    let command = Command {
        entity_id: entity_id.to_owned(),
        id,
        name: route.method.clone(),
        payload: Some(Any { type_url: route.input_type_url.clone(), value: cmd.payload }),
        streamed: false,
        metadata: None,
    };
    let exchange = async {
        stream.send(session.command(command)).await?;
        match stream.next(max).await? {
            Some(body) => session.decide(body, id),
            None => Err(Status::new(Code::Unavailable, "Unexpected entity termination")),
        }
    };
    // A hung function fails this command and restarts the entity
    // (dropping the stream resets it) instead of wedging it for ever.
    let outcome = monoio::select! {
        outcome = exchange => outcome,
        _ = idle.overdue() => Err(Status::new(
            Code::DeadlineExceeded,
            format!(
                "user function did not answer command {id} of entity {entity_id:?} within {:?}",
                core.limits.command_timeout
            ),
        )),
    };
    let decision = match outcome {
        Ok(d) => d,
        Err(status) => {
            if status.code == Code::Internal {
                // A protocol violation by the function: tell it, as the reference does.
                let (core, message) = (core.clone(), status.message.clone());
                monoio::spawn(async move { report_error(&core.pool, &message).await });
            }
            cmd.reply.finish(Err(status.clone()));
            return Err(status);
        }
    };
    if !decision.writes.is_empty() {
        if let Err(status) = commit(core, decision.writes, fence).await {
            cmd.reply.finish(Err(status.clone()));
            return Err(status);
        }
        session.committed();
    }
    cmd.reply.finish(Ok(decision.answer));
    Ok(decision.restart)
}

/// Persists an entity's writes under its lease; a failure may mean the
/// lease is lost, so the lease thread looks at once.
pub(super) async fn commit(core: &Context, writes: Vec<Write>, fence: Option<Fence>) -> Result<(), Status> {
    let result = core.store.commit(writes, fence).await;
    if let (Err(_), Some(leases), Some(fence)) = (&result, &core.leases, fence) {
        leases.check(fence);
    }
    result
}

/// An entity whose lease is gone must not serve another command from its
/// in-memory state: another proxy may own it now.
pub(super) fn lease_lost(core: &Context, fence: Option<Fence>) -> Option<Status> {
    let (leases, fence) = (core.leases.as_ref()?, fence?);
    (!leases.holds_here(&core.held_leases, fence)).then(|| {
        Status::new(
            Code::Unavailable,
            format!("lease lost: shard {} (epoch {}) is no longer this proxy's; retry the command", fence.shard, fence.epoch),
        )
    })
}

pub fn terminated() -> Status {
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
