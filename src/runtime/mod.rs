//! Thread-per-core execution: one monoio executor per worker thread, pinned
//! to a CPU, driven by io_uring where the kernel allows and epoll otherwise.
//! The main thread is the control plane; it talks to workers only through
//! their control channels.

pub mod deadlines;
mod notify;
pub mod queue;

use std::{io, thread, time::Duration};

use monoio::{time::TimeDriver, FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};
use tracing::warn;

pub use notify::{Notify, Wait};

use crate::config::IoDriver;

/// io_uring submission queue depth per worker.
const URING_ENTRIES: u32 = 1024;

type Runtime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// Builds this thread's executor; returns it with the name of its driver.
pub fn build(driver: IoDriver) -> io::Result<(Runtime, &'static str)> {
    let uring = || -> io::Result<Runtime> {
        Ok(RuntimeBuilder::<IoUringDriver>::new().with_entries(URING_ENTRIES).enable_timer().build()?.into())
    };
    let epoll = || -> io::Result<Runtime> { Ok(RuntimeBuilder::<LegacyDriver>::new().enable_timer().build()?.into()) };
    match driver {
        IoDriver::Epoll => Ok((epoll()?, "epoll")),
        IoDriver::Uring => Ok((uring()?, "io_uring")),
        IoDriver::Auto if monoio::utils::detect_uring() => match uring() {
            Ok(rt) => Ok((rt, "io_uring")),
            Err(e) => {
                warn!(error = %e, "io_uring is present but unusable; falling back to epoll");
                Ok((epoll()?, "epoll"))
            }
        },
        IoDriver::Auto => Ok((epoll()?, "epoll")),
    }
}

/// Runs `f` to completion on a fresh executor for this thread.
pub fn block_on<F: std::future::Future>(driver: IoDriver, f: F) -> io::Result<(F::Output, &'static str)> {
    let (mut rt, name) = build(driver)?;
    Ok((rt.block_on(f), name))
}

/// The CPUs this process may run on, in order (its affinity mask).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `set` is a plain bitmask the kernel fills; size is passed.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } == 0;
    if !ok {
        return (0..thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    monoio::utils::bind_to_cpu_set([cpu]).map_err(|e| io::Error::other(format!("pinning to CPU {cpu}: {e:?}")))
}

/// Sleeps in small steps until `done()` or `deadline`; used to drain.
pub async fn wait_until(mut done: impl FnMut() -> bool, deadline: Duration) -> bool {
    let start = std::time::Instant::now();
    while !done() {
        if start.elapsed() >= deadline {
            return false;
        }
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// `monoio::time::timeout`, boxed: monoio's timer is large and 128-byte
/// aligned, and held inline it would grow every future that might wait
/// (and every move of it). For per-connection waits; per-call ones use
/// [`deadlines`].
pub async fn timeout<F: std::future::Future>(deadline: Duration, fut: F) -> Result<F::Output, ()> {
    Box::pin(monoio::time::timeout(deadline, fut)).await.map_err(|_| ())
}
