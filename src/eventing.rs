//! Event-log eventing (spec §5.5): each consumer (a consumer group reading
//! one event-sourced persistence id, see [`Consumer`]) runs as one task on
//! [`EVENTING_CORE`] and turns every event of that persistence id's tag log,
//! in offset order, into an action command with CloudEvent metadata.
//!
//! Events are admitted in offset order, up to [`IN_FLIGHT`] at once, each
//! on its own call. One entity's events reach the function one at a time,
//! in offset order (an event waits for its entity's previous one); events
//! of different entities may overlap, and `ce-id` carries the global
//! order. Delivery is at least once: the group's offset
//! is stored (through the core's group commit, at most one write in flight
//! per consumer) only past events that, with every earlier one, were
//! processed, so a restart resumes after the last stored offset and may
//! repeat the events processed since. A failed event is retried with
//! backoff and never skipped; each consumer is its own task, so one that
//! keeps failing holds up no other.
//!
//! With several proxies sharing the store, each consumer runs on one proxy
//! at a time: the one the placement gives its lease shard (see
//! [`consumer_shard`]), once it holds that shard's lease. Its offset
//! writes are fenced by that lease like any entity's batches, and it stops
//! when the lease or the placement moves, so the proxy taking over resumes
//! from the last offset stored under the old lease (events processed since
//! are delivered again: at least once, across proxies too).

use std::{
    cell::Cell,
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use prost::Message;
use tracing::{info, warn};

use crate::discovery::{report_error, Backoff, Consumer, MethodRoute, Shape};
use crate::dispatch::effects::{decode_response, resolve};
use crate::grpc::{encode_prost, Code, Status};
use crate::userfn::Endpoint;
use crate::proto::cloudstate::{action::ActionCommand, metadata_entry::Value, Metadata, MetadataEntry};
use crate::proto::google::protobuf::Any;
use crate::store::{lease::Leases, Fence, StoreHandle, TaggedEvent, Write};
use crate::userfn::{self, upstream_status, CallResponse};
use crate::worker::Core;

/// The core whose executor runs every consumer. Consumers are few, so one
/// core is enough and the others keep serving clients undisturbed.
pub const EVENTING_CORE: usize = 0;
/// Deliveries a consumer keeps going at once, each its own call. One at a
/// time waits a whole function round trip per event and fell behind the
/// writers (BENCHMARKS.md §8); this many hide that round trip, while a
/// consumer stuck on an event delivers at most this many past it and a
/// restart redelivers at most this many.
const IN_FLIGHT: usize = 64;
/// Events read from the tag log per storage round trip.
const PAGE: usize = 256;
/// Longest wait for new events when no commit wakes the consumer (a
/// safety net: commits with events wake it at once).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often a consumer that is behind by more than a page recounts its lag.
const LAG_RECOUNT: Duration = Duration::from_secs(1);
/// Lag is counted up to this many events, so recounting stays cheap.
const LAG_CAP: usize = 100_000;
/// A delivery the function has not finished within this is failed and
/// retried, so a hung call cannot stall its consumer for good.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// At shutdown, how long a consumer may take to store its last offset.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// With shard leases: how often a consumer checks that it still holds its
/// shard (and that the placement keeps it here), and how often a proxy
/// not running it looks again whether it should.
const TENURE_CHECK: Duration = Duration::from_millis(250);

/// Starts the consumers on their core (other cores start none). The
/// returned count falls to zero once every consumer has stopped after the
/// core's shutdown and stored its last offset; the worker waits for that.
pub fn start(core: &Rc<Core>) -> Rc<Cell<usize>> {
    let running = Rc::new(Cell::new(0));
    if core.id != EVENTING_CORE {
        return running;
    }
    for (index, consumer) in core.router.consumers().iter().enumerate() {
        info!(group = %consumer.group, event_log = %consumer.persistence_id, core = core.id, "event-log consumer starting");
        running.set(running.get() + 1);
        monoio::spawn(run(core.clone(), index, running.clone()));
    }
    running
}

/// Short retry delays: the failures retried here are a function restarting
/// or an event it rejects, not a function still starting up.
fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 0.2)
}

fn jitter() -> f64 {
    monoio::utils::thread_rng_n(1 << 16) as f64 / f64::from(1u32 << 16)
}

/// The lease shard that decides where a consumer group runs: the shard of
/// an entity id no entity of the persistence id can take from it (sharing
/// a shard with entities is harmless: a shard holds many).
fn consumer_shard(leases: &Leases, consumer: &Consumer) -> u32 {
    leases.shard_of(&consumer.persistence_id, &format!("\0consumer group {}", consumer.group))
}

/// The lease a consumer runs under, when proxies share the store.
#[derive(Clone)]
struct Tenure {
    leases: Arc<Leases>,
    fence: Fence,
}

impl Tenure {
    /// Whether the consumer may go on here: the lease is still held and
    /// the placement still puts its shard on this proxy.
    fn holds(&self, core: &Core) -> bool {
        self.leases.holds(self.fence) && core.peers.remote_owner(self.fence.shard).is_none()
    }
}

/// One consumer: stopped when the core shuts down. Alone, it runs from
/// start; with shard leases, whenever this proxy holds its shard.
async fn run(core: Rc<Core>, index: usize, running: Rc<Cell<usize>>) {
    match core.leases.clone() {
        None => run_once(&core, index, None).await,
        Some(leases) => {
            let consumer = &core.router.consumers()[index];
            let shard = consumer_shard(&leases, consumer);
            while let Some(tenure) = take_tenure(&core, &leases, shard).await {
                info!(group = %consumer.group, event_log = %consumer.persistence_id, shard, epoch = tenure.fence.epoch, "event-log consumer runs on this proxy");
                run_once(&core, index, Some(&tenure)).await;
                if core.shutdown.fired() {
                    break;
                }
                info!(group = %consumer.group, event_log = %consumer.persistence_id, shard, "event-log consumer moved to another proxy");
            }
        }
    }
    running.set(running.get() - 1);
}

/// Waits until the placement gives `shard` to this proxy and its lease is
/// taken here; `None` once the core shuts down.
async fn take_tenure(core: &Core, leases: &Arc<Leases>, shard: u32) -> Option<Tenure> {
    loop {
        // Held elsewhere (a hand-off under way) or storage failing: asked
        // again shortly.
        if core.peers.remote_owner(shard).is_none() {
            if let Ok(fence) = leases.acquire_shard(shard, || "event-log consumer".to_owned()).await {
                return Some(Tenure { leases: leases.clone(), fence });
            }
        }
        monoio::select! {
            _ = monoio::time::sleep(TENURE_CHECK) => {}
            _ = core.shutdown.wait() => return None,
        }
    }
}

/// Reads the stored offset, consumes from it until shutdown or until the
/// tenure ends, and stores the last offset processed.
async fn run_once(core: &Rc<Core>, index: usize, tenure: Option<&Tenure>) {
    let consumer = &core.router.consumers()[index];
    if let Some(offset) = until_shutdown(core, || core.store.consumer_offset(&consumer.persistence_id, &consumer.group)).await {
        let saver = OffsetSaver::new(core.store.clone(), consumer, offset, tenure.cloned());
        if let Some(watch) = until_shutdown(core, || core.store.watch_tags()).await {
            consume(core, index, offset, &saver, &watch, tenure).await;
        }
        if !crate::runtime::wait_until(|| saver.idle(), FLUSH_TIMEOUT).await {
            warn!(group = %consumer.group, event_log = %consumer.persistence_id, "last consumer offset not stored");
        }
    }
}

/// Resolves once `tenure` no longer holds (never without one).
async fn tenure_ends(core: &Core, tenure: Option<&Tenure>) {
    let Some(tenure) = tenure else { return std::future::pending().await };
    while tenure.holds(core) {
        monoio::time::sleep(TENURE_CHECK).await;
    }
}

/// A page of the tag log and how many events lie beyond it (when counted);
/// `None` once the core shuts down.
type Page = Option<(Vec<TaggedEvent>, Option<usize>)>;

/// What woke a consumer's loop.
enum Wake {
    /// The delivery of this offset (of this entity) succeeded.
    Done(u64, String),
    /// A page read from the tag log, and how many events lie beyond it
    /// (when counted).
    Page(Vec<TaggedEvent>, Option<usize>),
    /// The core shuts down, or the consumer's tenure here ended.
    Stop,
}

/// Reads ahead of the deliveries, keeps up to [`IN_FLIGHT`] of them going
/// at once, and stores the offset behind them as a contiguous watermark.
async fn consume(core: &Rc<Core>, index: usize, offset: u64, saver: &Rc<OffsetSaver>, watch: &flume::Receiver<()>, tenure: Option<&Tenure>) {
    let pid = core.router.consumers()[index].persistence_id.as_str();
    let (done_tx, done_rx) = flume::unbounded();
    let reported = Rc::new(Cell::new(false));
    let mut window = Window::default();
    let mut ahead: VecDeque<TaggedEvent> = VecDeque::new();
    // Entities with a delivery running, and their admitted events waiting
    // behind it.
    let mut busy: HashMap<String, VecDeque<TaggedEvent>> = HashMap::new();
    let spawn = |event: TaggedEvent| {
        monoio::spawn(deliver_in_turn(core.clone(), index, event, done_tx.clone(), reported.clone()));
    };
    // The next offset to read, whether the last page was short (the log is
    // drained: wait for news first), the events counted beyond it.
    let (mut next, mut drained, mut beyond) = (offset + 1, false, 0);
    let mut last_count: Option<Instant> = None;
    let mut reading: Option<Pin<Box<dyn Future<Output = Page> + '_>>> = None;
    let mut ended = std::pin::pin!(tenure_ends(core, tenure));
    loop {
        while window.len() < IN_FLIGHT {
            let Some(event) = ahead.pop_front() else { break };
            window.start(event.offset);
            match busy.get_mut(&event.entity_id) {
                Some(waiting) => waiting.push_back(event),
                None => {
                    busy.insert(event.entity_id.clone(), VecDeque::new());
                    spawn(event);
                }
            }
        }
        if reading.is_none() && ahead.len() < IN_FLIGHT {
            let count = !drained && last_count.is_none_or(|t| t.elapsed() >= LAG_RECOUNT);
            if count {
                last_count = Some(Instant::now());
            }
            reading = Some(Box::pin(next_page(core, pid, next, drained, count, watch)));
        }
        let read = std::future::poll_fn(|cx| match reading.as_mut() {
            Some(f) => f.as_mut().poll(cx),
            None => std::task::Poll::Pending,
        });
        let wake = monoio::select! {
            done = done_rx.recv_async() => {
                let (offset, entity) = done.expect("the loop holds a sender");
                Wake::Done(offset, entity)
            }
            page = read => page.map_or(Wake::Stop, |(page, counted)| Wake::Page(page, counted)),
            _ = core.shutdown.wait() => Wake::Stop,
            _ = &mut ended => Wake::Stop,
        };
        match wake {
            Wake::Done(offset, entity) => {
                core.metrics.event_delivered(index);
                if let Some(through) = window.finish(offset) {
                    saver.save(through);
                }
                match busy.get_mut(&entity).and_then(VecDeque::pop_front) {
                    Some(next) => spawn(next),
                    None => {
                        busy.remove(&entity);
                    }
                }
            }
            Wake::Page(page, counted) => {
                reading = None;
                drained = page.len() < PAGE;
                beyond = match counted {
                    _ if drained => 0,
                    Some(n) => n,
                    // Uncounted: at least what was counted last, less this page.
                    None => beyond.saturating_sub(page.len()),
                };
                if let Some(last) = page.last() {
                    next = last.offset + 1;
                }
                ahead.extend(page);
            }
            Wake::Stop => return,
        }
        core.metrics.set_consumer_lag(index, (window.len() + ahead.len() + beyond) as u64);
    }
}

/// The page of `pid`'s tag log from `from` on, after waiting for news if
/// the last page drained the log, with a count of the events beyond it if
/// asked.
async fn next_page(core: &Core, pid: &str, from: u64, drained: bool, count: bool, watch: &flume::Receiver<()>) -> Page {
    if drained {
        monoio::select! {
            _ = watch.recv_async() => {}
            _ = monoio::time::sleep(IDLE_POLL) => {}
            _ = core.shutdown.wait() => return None,
        }
    }
    let page = until_shutdown(core, || core.store.read_tagged(pid, from, PAGE)).await?;
    let counted = match page.last() {
        Some(last) if count && page.len() == PAGE => core.store.count_tagged(pid, last.offset, LAG_CAP).await.ok(),
        _ => None,
    };
    Some((page, counted))
}

/// The offsets a consumer has started, in order, with whether each is done:
/// the stored offset may pass an event only once it and every earlier one
/// are done, whatever order the deliveries finish in.
#[derive(Default)]
struct Window {
    started: VecDeque<(u64, bool)>,
}

impl Window {
    fn len(&self) -> usize {
        self.started.len()
    }

    /// `offset` is above every offset started before.
    fn start(&mut self, offset: u64) {
        debug_assert!(self.started.back().is_none_or(|(last, _)| *last < offset));
        self.started.push_back((offset, false));
    }

    /// Marks `offset` done; the new watermark if it advanced.
    fn finish(&mut self, offset: u64) -> Option<u64> {
        if let Ok(i) = self.started.binary_search_by_key(&offset, |(o, _)| *o) {
            self.started[i].1 = true;
        }
        let mut through = None;
        while let Some(&(offset, true)) = self.started.front() {
            through = Some(offset);
            self.started.pop_front();
        }
        through
    }
}

/// One event's own task: delivered until it succeeds, then reported done
/// (unless its consumer stopped first, which leaves its offset unstored).
async fn deliver_in_turn(core: Rc<Core>, index: usize, event: TaggedEvent, done: flume::Sender<(u64, String)>, reported: Rc<Cell<bool>>) {
    if deliver_until_done(&core, index, &event, &reported, &done).await {
        // A closed channel is a consumer that stopped meanwhile.
        let _ = done.send((event.offset, event.entity_id));
    }
}

/// Delivers one event, retrying with backoff until it succeeds; `false` if
/// the core shut down or the consumer stopped (its `done` receiver gone:
/// another proxy took it over) first. `reported` is the consumer's: an
/// event no method takes is reported to the function once, not per event.
async fn deliver_until_done(core: &Rc<Core>, index: usize, event: &TaggedEvent, reported: &Cell<bool>, done: &flume::Sender<(u64, String)>) -> bool {
    let consumer = &core.router.consumers()[index];
    let mut backoff = retry_backoff();
    loop {
        let attempt = monoio::time::timeout(DELIVERY_TIMEOUT, deliver(core, consumer, event));
        let result = monoio::select! {
            r = attempt => r.unwrap_or_else(|_| Err(Status::new(Code::DeadlineExceeded, "the consumer did not finish in time"))),
            _ = core.shutdown.wait() => return false,
        };
        let Err(status) = result else { return true };
        if done.is_disconnected() {
            return false;
        }
        let delay = backoff.next_delay(jitter());
        warn!(
            group = %consumer.group, event_log = %consumer.persistence_id, offset = event.offset, %status, retry_in = ?delay,
            "event delivery failed; redelivering"
        );
        // Events no method takes are the function's mistake: tell it once.
        if status.code == Code::FailedPrecondition && !reported.replace(true) {
            let reporter = core.clone();
            let message = status.message.clone();
            monoio::spawn(async move { report_error(&reporter.pool, &message).await });
        }
        core.metrics.event_redelivered(index);
        monoio::select! {
            _ = monoio::time::sleep(delay) => {}
            _ = core.shutdown.wait() => return false,
        }
    }
}

/// One delivery: the event as a command to the method its type routes to,
/// the response resolved like any action's (side effects, forwards).
async fn deliver(core: &Rc<Core>, consumer: &Consumer, event: &TaggedEvent) -> Result<(), Status> {
    let payload = Any::decode(event.event.clone())
        .map_err(|e| Status::new(Code::DataLoss, format!("stored event at offset {} is not an Any: {e}", event.offset)))?;
    let route = consumer.route_for(&payload.type_url).map(|id| &core.router.routes()[id]).ok_or_else(|| {
        Status::new(
            Code::FailedPrecondition,
            format!(
                "Consumer group [{}] of event log [{}] has no method taking [{}] and no method taking google.protobuf.Any",
                consumer.group, consumer.persistence_id, payload.type_url
            ),
        )
    })?;
    let metadata = cloud_event(consumer, event, &payload.type_url);
    let command = ActionCommand {
        service_name: core.router.service(route).name.clone(),
        name: route.method.clone(),
        payload: Some(payload),
        metadata: Some(metadata),
    };
    let uris = core.action_uris(route.service).expect("consumers are action methods");
    match route.shape {
        Shape::ServerStreaming => streamed_out(core, route, &uris.streamed_out, command).await,
        _ => {
            let (_, body) = userfn::unary(&core.pool, &uris.unary, encode_prost(&command), core.max_message_size()).await?;
            resolve(core, decode_response(body)?, &route.path, 0).await.map(drop)
        }
    }
}

/// A server-streaming consumer: every response is resolved; the call
/// succeeds when the stream ends cleanly.
async fn streamed_out(core: &Rc<Core>, route: &MethodRoute, endpoint: &Endpoint, command: ActionCommand) -> Result<(), Status> {
    let (mut send, response) = core.pool.open(endpoint, None).await?;
    send.send_data(encode_prost(&command), true).map_err(upstream_status)?;
    let mut responses = CallResponse::open(response, core.max_message_size()).await?;
    while let Some(body) = responses.message().await? {
        resolve(core, decode_response(body)?, &route.path, 0).await?;
    }
    Ok(())
}

/// The CloudEvent attributes the reference proxy attaches (spec §5.5);
/// `ce-time` (the append time) only for events stored with one.
fn cloud_event(consumer: &Consumer, event: &TaggedEvent, type_url: &str) -> Metadata {
    let entry = |key: &str, value: &str| MetadataEntry { key: key.to_owned(), value: Some(Value::StringValue(value.to_owned())) };
    let mut entries = vec![
        entry("ce-id", &event.offset.to_string()),
        entry("ce-source", &consumer.persistence_id),
        entry("ce-specversion", "1.0"),
        entry("ce-type", type_url),
        entry("Content-Type", "application/vnd.cloudstate.protobuf.any"),
        entry("ce-subject", &event.entity_id),
    ];
    if let Some(us) = event.appended_us {
        entries.push(entry("ce-time", &rfc3339(us)));
    }
    Metadata { entries }
}

/// Microseconds since the Unix epoch as an RFC 3339 UTC timestamp with
/// microseconds, the form CloudEvents' `time` takes.
fn rfc3339(us: u64) -> String {
    let (secs, micros) = (us / 1_000_000, us % 1_000_000);
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_date(days);
    let (h, m, s) = (day_secs / 3600, day_secs / 60 % 60, day_secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{micros:06}Z")
}

/// The Gregorian (year, month, day) `days` after 1970-01-01, counting in
/// 400-year eras that start on 1 March, so leap days fall at an era-year's
/// end (the usual days-to-civil arithmetic).
fn civil_date(days: u64) -> (u64, u64, u64) {
    const ERA_DAYS: u64 = 146_097;
    // Days from 0000-03-01 to 1970-01-01.
    let z = days + 719_468;
    let (era, day_of_era) = (z / ERA_DAYS, z % ERA_DAYS);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / (ERA_DAYS - 1)) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 0 = March … 11 = February.
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// Retries a storage call with backoff until it succeeds; `None` if the
/// core shut down first.
async fn until_shutdown<T, F, Fut>(core: &Core, mut call: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut backoff = retry_backoff();
    loop {
        let result = monoio::select! {
            r = call() => r,
            _ = core.shutdown.wait() => return None,
        };
        match result {
            Ok(v) => return Some(v),
            Err(status) => {
                let delay = backoff.next_delay(jitter());
                warn!(%status, retry_in = ?delay, "event-log consumer: storage call failed");
                monoio::select! {
                    _ = monoio::time::sleep(delay) => {}
                    _ = core.shutdown.wait() => return None,
                }
            }
        }
    }
}

/// Stores a consumer's offset behind its deliveries: at most one write in
/// flight, each carrying the latest processed offset, so under load many
/// events share one write and a write never delays a delivery.
struct OffsetSaver {
    store: Rc<StoreHandle>,
    persistence_id: String,
    group: String,
    wanted: Cell<u64>,
    saved: Cell<u64>,
    writing: Cell<bool>,
    /// The lease the consumer runs under: every write is fenced by it,
    /// and writing stops once it is lost (the next owner goes on).
    tenure: Option<Tenure>,
}

impl OffsetSaver {
    fn new(store: Rc<StoreHandle>, consumer: &Consumer, saved: u64, tenure: Option<Tenure>) -> Rc<OffsetSaver> {
        Rc::new(OffsetSaver {
            store,
            persistence_id: consumer.persistence_id.clone(),
            group: consumer.group.clone(),
            wanted: Cell::new(saved),
            saved: Cell::new(saved),
            writing: Cell::new(false),
            tenure,
        })
    }

    fn save(self: &Rc<Self>, offset: u64) {
        self.wanted.set(offset);
        if !self.writing.replace(true) {
            monoio::spawn(self.clone().write());
        }
    }

    fn idle(&self) -> bool {
        !self.writing.get()
    }

    async fn write(self: Rc<Self>) {
        let mut backoff = retry_backoff();
        while self.saved.get() < self.wanted.get() {
            let offset = self.wanted.get();
            let write = Write::ConsumerOffset { persistence_id: self.persistence_id.clone(), group: self.group.clone(), offset };
            match self.store.commit(vec![write], self.tenure.as_ref().map(|t| t.fence)).await {
                Ok(()) => self.saved.set(offset),
                Err(status) if self.tenure.as_ref().is_some_and(|t| !t.leases.holds(t.fence)) => {
                    warn!(%status, group = %self.group, "consumer offset not stored: the consumer's lease moved to another proxy");
                    break;
                }
                Err(status) => {
                    let delay = backoff.next_delay(jitter());
                    warn!(%status, retry_in = ?delay, group = %self.group, "storing a consumer offset failed");
                    monoio::time::sleep(delay).await;
                }
            }
        }
        self.writing.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_event_metadata_names_offset_source_type_and_entity() {
        let consumer = Consumer::new("group".into(), "cart".into());
        let mut event = TaggedEvent { offset: 42, entity_id: "ann".into(), sequence: 3, event: Default::default(), appended_us: None };
        let pairs = |m: Metadata| -> Vec<(String, String)> {
            m.entries
                .into_iter()
                .map(|e| match e.value {
                    Some(Value::StringValue(v)) => (e.key, v),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let expected = [
            ("ce-id", "42"),
            ("ce-source", "cart"),
            ("ce-specversion", "1.0"),
            ("ce-type", "type.googleapis.com/x.Added"),
            ("Content-Type", "application/vnd.cloudstate.protobuf.any"),
            ("ce-subject", "ann"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let untimed = pairs(cloud_event(&consumer, &event, "type.googleapis.com/x.Added"));
        assert_eq!(untimed, expected, "an event stored without a time has no ce-time");
        event.appended_us = Some(1_700_000_000_123_456);
        let timed = pairs(cloud_event(&consumer, &event, "type.googleapis.com/x.Added"));
        assert_eq!(timed[..6], expected);
        assert_eq!(timed[6..], [("ce-time".to_owned(), "2023-11-14T22:13:20.123456Z".to_owned())]);
    }

    #[test]
    fn append_times_format_as_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400_000_001, "2000-02-29T00:00:00.000001Z"),
            (951_868_799_999_999, "2000-02-29T23:59:59.999999Z"),
            (4_107_542_400_000_000, "2100-03-01T00:00:00.000000Z"),
            (1_764_629_345_123_000, "2025-12-01T22:49:05.123000Z"),
            (253_402_300_799_000_000, "9999-12-31T23:59:59.000000Z"),
        ];
        for (us, text) in cases {
            assert_eq!(rfc3339(us), text, "{us}");
        }
    }

    #[test]
    fn the_watermark_passes_an_event_only_with_every_earlier_one() {
        let mut w = Window::default();
        for offset in [3, 5, 8, 9] {
            w.start(offset);
        }
        assert_eq!(w.finish(5), None, "3 still in flight");
        assert_eq!(w.finish(9), None);
        assert_eq!(w.finish(3), Some(5), "3 and 5 done, 8 not");
        assert_eq!(w.len(), 2);
        w.start(12);
        assert_eq!(w.finish(8), Some(9));
        assert_eq!((w.finish(12), w.len()), (Some(12), 0));
    }

    #[test]
    fn events_route_by_type_and_untyped_ones_to_the_any_method() {
        let mut c = Consumer::new("g".into(), "p".into());
        c.add("x.One", false, 1);
        c.add("x.Two", false, 2);
        assert_eq!(c.route_for("type.googleapis.com/x.Two"), Some(2));
        assert_eq!(c.route_for("type.googleapis.com/x.Three"), None, "no fallback yet");
        c.add("google.protobuf.Any", true, 9);
        assert_eq!(c.route_for("type.googleapis.com/x.One"), Some(1));
        assert_eq!(c.route_for("type.googleapis.com/x.Three"), Some(9));
        assert_eq!(c.route_for("json.cloudstate.io/x.One"), Some(9), "JSON always goes to Any");
        assert_eq!(c.route_for("p.cloudstate.io/string"), Some(9));
    }
}
