//! Driving the load: worker threads, each with its own executor,
//! connections and in-flight lanes, sharing only a request counter.

use std::{
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};


use massa::config::IoDriver;
use massa::discovery::Shape;
use massa::grpc::{encode_message, wait_capacity, Code};
use massa::userfn::{CallResponse, Endpoint, Pool, Target};

use crate::report::Stats;
use crate::request::Plan;

/// How long calls in flight may run past `--duration`.
pub const GRACE: Duration = Duration::from_secs(2);

/// Largest response message accepted.
const MAX_MESSAGE: usize = 64 << 20;

pub struct Load {
    pub plan: Arc<Plan>,
    pub target: Target,
    pub connections: usize,
    pub concurrency: usize,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    pub rps: Option<f64>,
    pub timeout: Duration,
    pub stream_messages: usize,
    pub threads: usize,
    pub cpus: Vec<usize>,
}

/// When request `i` is due under an open-loop rate, relative to the start.
pub fn scheduled(i: u64, rps: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rps)
}

/// Shared between workers and the watcher thread: one counter hands out
/// request indexes (so `{{i}}` and the rate schedule are global, not per
/// thread), and flags end the run.
pub struct Progress {
    /// The next request index to send.
    pub next: AtomicU64,
    /// Calls completed, for the progress line.
    pub done: AtomicU64,
    /// No new calls once set (duration reached, or the run is over).
    pub stop: AtomicBool,
    /// Every worker has returned its results.
    pub finished: AtomicBool,
}

/// Runs the load; returns the merged results and the wall time.
pub fn run(load: Load, progress: Arc<Progress>) -> (Stats, Duration) {
    let load = Arc::new(load);
    let start = Instant::now();
    let workers: Vec<_> = (0..load.threads)
        .map(|t| {
            let (load, progress) = (load.clone(), progress.clone());
            thread::Builder::new()
                .name(format!("massa-load-{t}"))
                .spawn(move || worker(t, load, progress, start))
                .expect("spawning a load thread")
        })
        .collect();
    let mut stats = Stats::default();
    for w in workers {
        if let Ok(s) = w.join() {
            stats.merge(&s);
        }
    }
    (stats, start.elapsed())
}

fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

fn worker(t: usize, load: Arc<Load>, progress: Arc<Progress>, start: Instant) -> Stats {
    if let Some(&cpu) = load.cpus.get(t % load.cpus.len().max(1)) {
        let _ = massa::runtime::pin_to(cpu);
    }
    let connections = share(load.connections, load.threads, t).max(1);
    let lanes = share(load.concurrency, load.threads, t).max(1);
    let body = async {
        let pool = Rc::new(Pool::new(load.target.clone(), connections));
        let uri = Rc::new(pool.endpoint(&load.plan.path));
        let handles: Vec<_> = (0..lanes)
            .map(|_| monoio::spawn(lane(pool.clone(), uri.clone(), load.clone(), progress.clone(), start)))
            .collect();
        let mut stats = Stats::default();
        for h in handles {
            stats.merge(&h.await);
        }
        drop(pool);
        stats
    };
    massa::runtime::block_on(IoDriver::Auto, body).map(|(s, _)| s).unwrap_or_default()
}

/// One in-flight slot: takes the next request index until the run ends.
async fn lane(pool: Rc<Pool>, uri: Rc<Endpoint>, load: Arc<Load>, progress: Arc<Progress>, start: Instant) -> Stats {
    let mut stats = Stats::default();
    let deadline = load.duration.map(|d| start + d);
    loop {
        if progress.stop.load(Ordering::Relaxed) {
            break;
        }
        let i = progress.next.fetch_add(1, Ordering::Relaxed);
        if load.total.is_some_and(|n| i >= n) {
            break;
        }
        let due = match load.rps {
            Some(rps) => start + scheduled(i, rps),
            None => Instant::now(),
        };
        if deadline.is_some_and(|d| due >= d) {
            break;
        }
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            monoio::time::sleep(wait).await;
        }
        // With a duration, no call outlives it by more than the grace.
        let limit = deadline.map_or(load.timeout, |d| load.timeout.min((d + GRACE).saturating_duration_since(Instant::now())));
        let outcome = monoio::time::timeout(limit, call(&pool, &uri, &load, i)).await;
        let (code, error) = match outcome {
            Ok(Ok(())) => (Code::Ok.name(), None),
            Ok(Err((code, message))) => (code.name(), Some(message)),
            // One message per cause, so the error distribution stays short.
            Err(_) if limit < load.timeout => {
                (Code::DeadlineExceeded.name(), Some(format!("no answer by the end of --duration plus {GRACE:?}")))
            }
            Err(_) => (Code::DeadlineExceeded.name(), Some(format!("no answer within {:?}", load.timeout))),
        };
        // Latency from when the request was due: a late send counts.
        stats.record(due.elapsed(), code, error);
        progress.done.fetch_add(1, Ordering::Relaxed);
    }
    stats
}

async fn call(pool: &Pool, uri: &Endpoint, load: &Load, i: u64) -> Result<(), (Code, String)> {
    let request = load.plan.request(i).map_err(|e| (Code::InvalidArgument, e))?;
    let (mut send, response) = pool.open(uri, None).await.map_err(|s| (s.code, s.message))?;
    let messages = match load.plan.shape {
        Shape::Unary | Shape::ServerStreaming => 1,
        Shape::ClientStreaming | Shape::Bidi => load.stream_messages,
    };
    let failed = |e: massa::http2::Error| (Code::Unavailable, e.to_string());
    for m in 0..messages {
        if messages > 1 {
            // Streams wait for window like real clients; a unary request
            // always fits the initial window.
            wait_capacity(&mut send).await.map_err(failed)?;
        }
        let (head, tail) = encode_message(request.clone());
        let last = m + 1 == messages && tail.is_none();
        send.send_data(head, last).map_err(failed)?;
        if let Some(tail) = tail {
            send.send_data(tail, m + 1 == messages).map_err(failed)?;
        }
    }
    if messages == 0 {
        send.send_data(bytes::Bytes::new(), true).map_err(failed)?;
    }
    let mut response = CallResponse::open(response, MAX_MESSAGE).await.map_err(|s| (s.code, s.message))?;
    while response.message().await.map_err(|s| (s.code, s.message))?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_schedule_is_evenly_spaced_from_the_start() {
        assert_eq!(scheduled(0, 1000.0), Duration::ZERO);
        assert_eq!(scheduled(1, 1000.0), Duration::from_millis(1));
        assert_eq!(scheduled(2500, 1000.0), Duration::from_millis(2500));
        assert_eq!(scheduled(3, 4.0), Duration::from_millis(750));
    }

    #[test]
    fn open_loop_schedule_does_not_drift_over_long_runs() {
        // Computed from the index, not accumulated, so rounding never adds up.
        assert_eq!(scheduled(3_000_000, 3.0), Duration::from_secs(1_000_000));
        assert_eq!(scheduled(1_000_000, 100_000.0), Duration::from_secs(10));
        let gaps: Vec<Duration> = (0..5).map(|i| scheduled(i + 1, 3.0) - scheduled(i, 3.0)).collect();
        assert!(gaps.iter().all(|g| g.abs_diff(Duration::from_nanos(333_333_333)) <= Duration::from_nanos(1)), "{gaps:?}");
    }

    #[test]
    fn lanes_and_connections_are_shared_out_exactly() {
        let parts: Vec<usize> = (0..3).map(|t| share(10, 3, t)).collect();
        assert_eq!(parts, [4, 3, 3]);
        assert_eq!(parts.iter().sum::<usize>(), 10);
    }
}
