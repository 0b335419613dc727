//! Per-core metrics without locks: each core counts into its own cells, and a
//! scrape asks every core for a snapshot over its control channel, merges
//! them and renders Prometheus text. Nothing on the request path touches
//! memory another core writes.

use crate::entity::cache::CacheStats;
use std::{
    cell::{Cell, RefCell},
    fmt::Write,
    time::Duration,
};

use hdrhistogram::Histogram;

use crate::cluster::{MemberState, Members};
use crate::discovery::Router;
use crate::grpc::Code;

/// Latency histogram range: 1 µs to 10 min, 2 significant digits.
const MAX_LATENCY_US: u64 = 600_000_000;
/// Prometheus bucket bounds, seconds.
const BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("static histogram bounds are valid")
}

/// The protocol a call came in on: gRPC, or one of the fronts that
/// translate to it on the same port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    Grpc = 0,
    GrpcWeb = 1,
    HttpJson = 2,
}

impl Front {
    const ALL: [Front; 3] = [Front::Grpc, Front::GrpcWeb, Front::HttpJson];

    fn label(self) -> &'static str {
        match self {
            Front::Grpc => "grpc",
            Front::GrpcWeb => "grpc-web",
            Front::HttpJson => "http-json",
        }
    }
}

/// Counters of one method (or of everything that is not a routed method).
struct MethodMetrics {
    in_flight: Cell<i64>,
    /// By front, then by gRPC status code.
    by_code: [[Cell<u64>; 17]; 3],
    latency_sum_us: Cell<u64>,
    latency: RefCell<Histogram<u64>>,
}

impl MethodMetrics {
    fn new() -> MethodMetrics {
        MethodMetrics {
            in_flight: Cell::new(0),
            by_code: Default::default(),
            latency_sum_us: Cell::new(0),
            latency: RefCell::new(histogram()),
        }
    }
}

/// Figures of one event-log consumer (on the core that runs it).
#[derive(Clone, Default)]
struct ConsumerMetrics {
    delivered: Cell<u64>,
    redeliveries: Cell<u64>,
    /// Committed events not yet processed.
    lag: Cell<u64>,
}

/// One core's metrics. Index `routes.len()` is the "other" bucket
/// (reflection, health, unknown paths).
pub struct CoreMetrics {
    methods: Vec<MethodMetrics>,
    user_fn_errors: Cell<u64>,
    /// By index into `Router::consumers`.
    consumers: Vec<ConsumerMetrics>,
}

impl CoreMetrics {
    pub fn new(routes: usize, consumers: usize) -> CoreMetrics {
        CoreMetrics {
            methods: (0..=routes).map(|_| MethodMetrics::new()).collect(),
            user_fn_errors: Cell::new(0),
            consumers: vec![ConsumerMetrics::default(); consumers],
        }
    }

    /// Consumer `i` processed an event.
    pub fn event_delivered(&self, i: usize) {
        let c = &self.consumers[i];
        c.delivered.set(c.delivered.get() + 1);
        c.lag.set(c.lag.get().saturating_sub(1));
    }

    /// Consumer `i` retries an event that failed.
    pub fn event_redelivered(&self, i: usize) {
        let c = &self.consumers[i];
        c.redeliveries.set(c.redeliveries.get() + 1);
    }

    pub fn set_consumer_lag(&self, i: usize, lag: u64) {
        self.consumers[i].lag.set(lag);
    }

    pub fn consumer_lag(&self, i: usize) -> u64 {
        self.consumers[i].lag.get()
    }

    fn slot(&self, route: Option<usize>) -> &MethodMetrics {
        &self.methods[route.unwrap_or(self.methods.len() - 1)]
    }

    pub fn started(&self, route: Option<usize>) {
        let m = self.slot(route);
        m.in_flight.set(m.in_flight.get() + 1);
    }

    pub fn finished(&self, route: Option<usize>, front: Front, code: Code, elapsed: Duration) {
        let m = self.slot(route);
        m.in_flight.set(m.in_flight.get() - 1);
        let c = &m.by_code[front as usize][code as usize];
        c.set(c.get() + 1);
        let us = (elapsed.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        m.latency_sum_us.set(m.latency_sum_us.get() + us);
        let _ = m.latency.borrow_mut().record(us);
    }

    pub fn user_fn_error(&self) {
        self.user_fn_errors.set(self.user_fn_errors.get() + 1);
    }

    /// A copy for the admin thread, with the core's entity figures (kept by
    /// the entities' own registry).
    pub fn snapshot(&self, cache: CacheStats, active_entities: usize, entities_activated: u64, forwarded_calls: u64) -> Snapshot {
        Snapshot {
            methods: self
                .methods
                .iter()
                .map(|m| MethodSnapshot {
                    in_flight: m.in_flight.get(),
                    by_code: std::array::from_fn(|f| std::array::from_fn(|i| m.by_code[f][i].get())),
                    latency_sum_us: m.latency_sum_us.get(),
                    latency: m.latency.borrow().clone(),
                })
                .collect(),
            user_fn_errors: self.user_fn_errors.get(),
            entities_activated,
            forwarded_calls,
            consumers: self.consumers.iter().map(|c| [c.delivered.get(), c.redeliveries.get(), c.lag.get()]).collect(),
            active_entities,
            cache,
        }
    }
}

/// A copy of one core's metrics, sent to the admin thread.
pub struct Snapshot {
    methods: Vec<MethodSnapshot>,
    user_fn_errors: u64,
    entities_activated: u64,
    /// Entity commands sent on to the proxy owning their shard.
    forwarded_calls: u64,
    /// Per consumer: delivered, redeliveries, lag.
    consumers: Vec<[u64; 3]>,
    active_entities: usize,
    cache: CacheStats,
}

struct MethodSnapshot {
    in_flight: i64,
    by_code: [[u64; 17]; 3],
    latency_sum_us: u64,
    latency: Histogram<u64>,
}

impl Snapshot {
    /// Adds `other` (another core's snapshot of the same routes) into self.
    fn merge(&mut self, other: &Snapshot) {
        for (a, b) in self.methods.iter_mut().zip(&other.methods) {
            a.in_flight += b.in_flight;
            a.by_code.iter_mut().flatten().zip(b.by_code.iter().flatten()).for_each(|(x, y)| *x += y);
            a.latency_sum_us += b.latency_sum_us;
            let _ = a.latency.add(&b.latency);
        }
        self.user_fn_errors += other.user_fn_errors;
        self.entities_activated += other.entities_activated;
        self.forwarded_calls += other.forwarded_calls;
        for (a, b) in self.consumers.iter_mut().zip(&other.consumers) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self.active_entities += other.active_entities;
        self.cache.hits += other.cache.hits;
        self.cache.misses += other.cache.misses;
        self.cache.evictions += other.cache.evictions;
        self.cache.bytes += other.cache.bytes;
    }
}

const ALL_CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

/// Process-level facts rendered with the per-core figures.
pub struct Process<'a> {
    pub ready: bool,
    pub workers: usize,
    /// This proxy's view of the cluster.
    pub members: &'a Members,
    /// Membership changes seen since start ([`crate::cluster::Cluster::version`]).
    pub membership_changes: u64,
    /// With shared storage: the shard leases' counters.
    pub leases: Option<crate::store::lease::LeaseFigures>,
}

/// Renders merged snapshots as Prometheus text exposition.
pub fn render(router: Option<&Router>, snapshots: Vec<Snapshot>, process: &Process) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(out, "# HELP massa_ready Whether discovery succeeded and the proxy serves calls.");
    let _ = writeln!(out, "# TYPE massa_ready gauge\nmassa_ready {}", u8::from(process.ready));
    let _ = writeln!(out, "# HELP massa_workers Worker threads (one executor per core).");
    let _ = writeln!(out, "# TYPE massa_workers gauge\nmassa_workers {}", process.workers);
    let _ = writeln!(out, "# HELP massa_cluster_members Live cluster members (this proxy included), by state.");
    let _ = writeln!(out, "# TYPE massa_cluster_members gauge");
    for state in MemberState::ALL {
        let n = process.members.members().iter().filter(|m| m.state == state).count();
        let _ = writeln!(out, "massa_cluster_members{{state=\"{}\"}} {n}", state.as_str());
    }
    let _ = writeln!(out, "# HELP massa_cluster_membership_changes_total Changes of the live member set or of a member's state.");
    let _ = writeln!(out, "# TYPE massa_cluster_membership_changes_total counter");
    let _ = writeln!(out, "massa_cluster_membership_changes_total {}", process.membership_changes);
    if let Some(l) = process.leases {
        let _ = writeln!(out, "# HELP massa_lease_renewals_total Renewals of this proxy's shard leases that succeeded.");
        let _ = writeln!(out, "# TYPE massa_lease_renewals_total counter\nmassa_lease_renewals_total {}", l.renewals);
        let _ = writeln!(out, "# HELP massa_ownership_changes_total Shard leases this proxy took, lost or handed off.");
        let _ = writeln!(out, "# TYPE massa_ownership_changes_total counter");
        for (change, n) in [("taken", l.taken), ("lost", l.lost), ("handed_off", l.handed_off)] {
            let _ = writeln!(out, "massa_ownership_changes_total{{change=\"{change}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP massa_fencing_rejections_total Batches refused because their shard lease had moved.");
        let _ = writeln!(out, "# TYPE massa_fencing_rejections_total counter\nmassa_fencing_rejections_total {}", l.fencing_rejections);
    }
    let (Some(router), Some(mut total)) = (router, snapshots.into_iter().reduce(|mut a, b| {
        a.merge(&b);
        a
    })) else {
        return out;
    };
    let names: Vec<&str> = router.routes().iter().map(|r| r.path.as_str()).chain(["other"]).collect();

    let _ = writeln!(out, "# HELP massa_user_function_errors_total Calls to the user function that failed in transport or protocol.");
    let _ = writeln!(out, "# TYPE massa_user_function_errors_total counter\nmassa_user_function_errors_total {}", total.user_fn_errors);

    let _ = writeln!(out, "# HELP massa_entity_activations_total Entities activated (state loaded, stream opened).");
    let _ = writeln!(out, "# TYPE massa_entity_activations_total counter\nmassa_entity_activations_total {}", total.entities_activated);
    let _ = writeln!(out, "# TYPE massa_forwarded_calls_total counter\nmassa_forwarded_calls_total {}", total.forwarded_calls);
    let _ = writeln!(out, "# HELP massa_active_entities Entities currently active, all cores.");
    let _ = writeln!(out, "# TYPE massa_active_entities gauge\nmassa_active_entities {}", total.active_entities);
    let c = total.cache;
    let _ = writeln!(out, "# HELP massa_entity_cache_hits_total Activations served from the per-core hot cache.");
    let _ = writeln!(out, "# TYPE massa_entity_cache_hits_total counter\nmassa_entity_cache_hits_total {}", c.hits);
    let _ = writeln!(out, "# HELP massa_entity_cache_misses_total Activations that read storage.");
    let _ = writeln!(out, "# TYPE massa_entity_cache_misses_total counter\nmassa_entity_cache_misses_total {}", c.misses);
    let _ = writeln!(out, "# HELP massa_entity_cache_evictions_total Cached states dropped to stay within the bound.");
    let _ = writeln!(out, "# TYPE massa_entity_cache_evictions_total counter\nmassa_entity_cache_evictions_total {}", c.evictions);
    let _ = writeln!(out, "# HELP massa_entity_cache_bytes Bytes held by the hot caches, all cores.");
    let _ = writeln!(out, "# TYPE massa_entity_cache_bytes gauge\nmassa_entity_cache_bytes {}", c.bytes);

    let _ = writeln!(out, "# HELP massa_requests_total Calls finished, by method, gRPC status and the protocol they came in on.");
    let _ = writeln!(out, "# TYPE massa_requests_total counter");
    for (name, m) in names.iter().zip(&total.methods) {
        for front in Front::ALL {
            for code in ALL_CODES {
                let n = m.by_code[front as usize][code as usize];
                if n > 0 {
                    let (code, front) = (code.name(), front.label());
                    let _ = writeln!(out, "massa_requests_total{{method=\"{name}\",code=\"{code}\",protocol=\"{front}\"}} {n}");
                }
            }
        }
    }
    let _ = writeln!(out, "# HELP massa_requests_in_flight Calls being served.");
    let _ = writeln!(out, "# TYPE massa_requests_in_flight gauge");
    for (name, m) in names.iter().zip(&total.methods) {
        let _ = writeln!(out, "massa_requests_in_flight{{method=\"{name}\"}} {}", m.in_flight);
    }
    let _ = writeln!(out, "# HELP massa_request_duration_seconds Time from request headers to the end of the response.");
    let _ = writeln!(out, "# TYPE massa_request_duration_seconds histogram");
    for (name, m) in names.iter().zip(total.methods.iter_mut()) {
        let count = m.latency.len();
        if count == 0 {
            continue;
        }
        for le in BUCKETS {
            let n = m.latency.count_between(0, (le * 1e6) as u64);
            let _ = writeln!(out, "massa_request_duration_seconds_bucket{{method=\"{name}\",le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "massa_request_duration_seconds_bucket{{method=\"{name}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "massa_request_duration_seconds_sum{{method=\"{name}\"}} {}", m.latency_sum_us as f64 / 1e6);
        let _ = writeln!(out, "massa_request_duration_seconds_count{{method=\"{name}\"}} {count}");
    }
    render_consumers(&mut out, router, &total.consumers);
    out
}

/// A label value in the exposition format's escaping; consumer groups and
/// persistence ids are the function's free text.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render_consumers(out: &mut String, router: &Router, figures: &[[u64; 3]]) {
    if figures.is_empty() {
        return;
    }
    let metrics = [
        ("massa_eventing_delivered_total", "counter", "Events an event-log consumer processed."),
        ("massa_eventing_redeliveries_total", "counter", "Deliveries retried after the consumer failed."),
        ("massa_eventing_lag_events", "gauge", "Committed events a consumer has not processed yet."),
    ];
    for (i, (name, kind, help)) in metrics.into_iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (c, f) in router.consumers().iter().zip(figures) {
            let _ = writeln!(out, "{name}{{group=\"{}\",event_log=\"{}\"}} {}", label(&c.group), label(&c.persistence_id), f[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_cores_and_renders_counts() {
        let a = CoreMetrics::new(1, 0);
        let b = CoreMetrics::new(1, 0);
        a.started(Some(0));
        a.finished(Some(0), Front::Grpc, Code::Ok, Duration::from_micros(300));
        b.started(Some(0));
        b.finished(Some(0), Front::HttpJson, Code::Ok, Duration::from_millis(3));
        b.started(Some(0));
        b.started(None);
        b.finished(None, Front::Grpc, Code::Unimplemented, Duration::from_micros(50));
        let mut merged = a.snapshot(CacheStats::default(), 0, 0, 0);
        merged.merge(&b.snapshot(CacheStats::default(), 0, 0, 0));
        let m = &merged.methods[0];
        assert_eq!((m.by_code[0][0], m.by_code[2][0], m.in_flight, m.latency.len()), (1, 1, 1, 2));
        assert_eq!(m.latency.count_between(0, 1000), 1);
        assert_eq!(merged.methods[1].by_code[0][Code::Unimplemented as usize], 1);
    }
}
