//! Event-log eventing (spec §5.5): each consumer (a consumer group reading
//! one event-sourced persistence id, see [`Consumer`]) runs as one task on
//! [`EVENTING_CORE`] and turns every event of that persistence id's tag log,
//! in offset order, into an action command with CloudEvent metadata.
//!
//! Delivery is at least once: the group's offset is stored (through the
//! core's group commit, at most one write in flight per consumer) only
//! after the event was processed, so a restart resumes after the last
//! stored offset and may repeat the events processed since. A failed event
//! is retried with backoff and never skipped; each consumer is its own
//! task, so one that keeps failing holds up no other.

use std::{cell::Cell, rc::Rc, time::Duration};

use prost::Message;
use tracing::{info, warn};

use crate::discovery::{report_error, Backoff, Consumer, MethodRoute, Shape};
use crate::effects::{decode_response, resolve};
use crate::grpc::{encode_prost, Code, Status};
use crate::userfn::Endpoint;
use crate::proto::cloudstate::{action::ActionCommand, metadata_entry::Value, Metadata, MetadataEntry};
use crate::proto::google::protobuf::Any;
use crate::store::{StoreHandle, TaggedEvent, Write};
use crate::userfn::{self, upstream_status, CallResponse};
use crate::worker::Core;

/// The core whose executor runs every consumer. Consumers are few and each
/// delivers one event at a time, so one core is enough and the others keep
/// serving clients undisturbed.
pub const EVENTING_CORE: usize = 0;
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

/// One consumer: read pages from the tag log, deliver each event until it
/// succeeds, store the offset; stops when the core shuts down.
async fn run(core: Rc<Core>, index: usize, running: Rc<Cell<usize>>) {
    let consumer = &core.router.consumers()[index];
    if let Some(offset) = until_shutdown(&core, || core.store.consumer_offset(&consumer.persistence_id, &consumer.group)).await {
        let saver = OffsetSaver::new(core.store.clone(), consumer, offset);
        if let Some(watch) = until_shutdown(&core, || core.store.watch_tags()).await {
            consume(&core, index, offset, &saver, &watch).await;
        }
        if !crate::runtime::wait_until(|| saver.idle(), FLUSH_TIMEOUT).await {
            warn!(group = %consumer.group, event_log = %consumer.persistence_id, "last consumer offset not stored at shutdown");
        }
    }
    running.set(running.get() - 1);
}

async fn consume(core: &Rc<Core>, index: usize, mut offset: u64, saver: &Rc<OffsetSaver>, watch: &flume::Receiver<()>) {
    let consumer = &core.router.consumers()[index];
    let pid = consumer.persistence_id.as_str();
    let mut last_count: Option<std::time::Instant> = None;
    while !core.shutdown.fired() {
        let Some(page) = until_shutdown(core, || core.store.read_tagged(pid, offset + 1, PAGE)).await else { return };
        if page.len() < PAGE {
            core.metrics.set_consumer_lag(index, page.len() as u64);
        } else if last_count.is_none_or(|t| t.elapsed() >= LAG_RECOUNT) {
            last_count = Some(std::time::Instant::now());
            let lag = core.store.count_tagged(pid, offset, LAG_CAP).await.unwrap_or(page.len());
            core.metrics.set_consumer_lag(index, lag as u64);
        } else {
            core.metrics.set_consumer_lag(index, core.metrics.consumer_lag(index).max(page.len() as u64));
        }
        if page.is_empty() {
            monoio::select! {
                _ = watch.recv_async() => {}
                _ = monoio::time::sleep(IDLE_POLL) => {}
                _ = core.shutdown.wait() => return,
            }
            continue;
        }
        for event in &page {
            if !deliver_until_done(core, index, event).await {
                return;
            }
            offset = event.offset;
            saver.save(offset);
            core.metrics.event_delivered(index);
        }
    }
}

/// Delivers one event, retrying with backoff until it succeeds; `false` if
/// the core shut down first.
async fn deliver_until_done(core: &Rc<Core>, index: usize, event: &TaggedEvent) -> bool {
    let consumer = &core.router.consumers()[index];
    let mut backoff = retry_backoff();
    let mut reported = false;
    loop {
        let attempt = monoio::time::timeout(DELIVERY_TIMEOUT, deliver(core, consumer, event));
        let result = monoio::select! {
            r = attempt => r.unwrap_or_else(|_| Err(Status::new(Code::DeadlineExceeded, "the consumer did not finish in time"))),
            _ = core.shutdown.wait() => return false,
        };
        let Err(status) = result else { return true };
        let delay = backoff.next_delay(jitter());
        warn!(
            group = %consumer.group, event_log = %consumer.persistence_id, offset = event.offset, %status, retry_in = ?delay,
            "event delivery failed; redelivering"
        );
        // Events no method takes are the function's mistake: tell it once.
        if status.code == Code::FailedPrecondition && !std::mem::replace(&mut reported, true) {
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

/// The CloudEvent attributes the reference proxy attaches (spec §5.5).
/// `ce-time` is left out: the tag log records no event time.
fn cloud_event(consumer: &Consumer, event: &TaggedEvent, type_url: &str) -> Metadata {
    let entry = |key: &str, value: &str| MetadataEntry { key: key.to_owned(), value: Some(Value::StringValue(value.to_owned())) };
    Metadata {
        entries: vec![
            entry("ce-id", &event.offset.to_string()),
            entry("ce-source", &consumer.persistence_id),
            entry("ce-specversion", "1.0"),
            entry("ce-type", type_url),
            entry("Content-Type", "application/vnd.cloudstate.protobuf.any"),
            entry("ce-subject", &event.entity_id),
        ],
    }
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
}

impl OffsetSaver {
    fn new(store: Rc<StoreHandle>, consumer: &Consumer, saved: u64) -> Rc<OffsetSaver> {
        Rc::new(OffsetSaver {
            store,
            persistence_id: consumer.persistence_id.clone(),
            group: consumer.group.clone(),
            wanted: Cell::new(saved),
            saved: Cell::new(saved),
            writing: Cell::new(false),
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
            match self.store.commit(vec![write]).await {
                Ok(()) => self.saved.set(offset),
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
        let event = TaggedEvent { offset: 42, entity_id: "ann".into(), sequence: 3, event: Default::default() };
        let m = cloud_event(&consumer, &event, "type.googleapis.com/x.Added");
        let pairs: Vec<_> = m
            .entries
            .iter()
            .map(|e| match &e.value {
                Some(Value::StringValue(v)) => (e.key.as_str(), v.as_str()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("ce-id", "42"),
                ("ce-source", "cart"),
                ("ce-specversion", "1.0"),
                ("ce-type", "type.googleapis.com/x.Added"),
                ("Content-Type", "application/vnd.cloudstate.protobuf.any"),
                ("ce-subject", "ann"),
            ]
        );
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
