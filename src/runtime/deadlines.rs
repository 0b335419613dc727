//! Coarse per-core deadlines for the per-call timeouts (request bodies,
//! stalled replies). A monoio timer is large, 128-byte aligned and
//! registered in the driver's wheel; one per call showed up as allocation,
//! page faults and memmove in the worker's profile. Here a call registers a
//! plain entry (no allocation once the table has grown) and one ticking task
//! per core expires them, so a deadline fires up to one tick late.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

struct Entry {
    at: Instant,
    waker: Option<Waker>,
    expired: bool,
}

/// One core's deadlines.
#[derive(Default)]
pub struct Deadlines {
    entries: RefCell<Vec<Option<Entry>>>,
    free: RefCell<Vec<usize>>,
}

impl Deadlines {
    pub fn new() -> Rc<Deadlines> {
        Rc::default()
    }

    /// Expires every entry due by `now`.
    pub fn expire(&self, now: Instant) {
        for entry in self.entries.borrow_mut().iter_mut().flatten() {
            if !entry.expired && entry.at <= now {
                entry.expired = true;
                if let Some(w) = entry.waker.take() {
                    w.wake();
                }
            }
        }
    }

    /// Ticks every `every`, expiring what is due, for as long as the core runs.
    pub async fn tick(self: Rc<Self>, every: Duration) {
        loop {
            monoio::time::sleep(every).await;
            self.expire(Instant::now());
        }
    }

    fn watch(self: &Rc<Self>, at: Instant) -> Ticket {
        let entry = Some(Entry { at, waker: None, expired: false });
        let key = match self.free.borrow_mut().pop() {
            Some(key) => {
                self.entries.borrow_mut()[key] = entry;
                key
            }
            None => {
                let mut entries = self.entries.borrow_mut();
                entries.push(entry);
                entries.len() - 1
            }
        };
        Ticket { owner: self.clone(), key }
    }

    /// `fut`, or `Err(())` once `timeout` has passed. Registers nothing
    /// when `fut` finishes on its first poll (a body already buffered).
    pub async fn within<F: Future>(self: &Rc<Self>, timeout: Duration, fut: F) -> Result<F::Output, ()> {
        let mut fut = std::pin::pin!(fut);
        if let Poll::Ready(out) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
            return Ok(out);
        }
        let mut ticket = self.watch(Instant::now() + timeout);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            Pin::new(&mut ticket).poll(cx).map(Err)
        })
        .await
    }
}

/// A registered deadline; resolves once expired, unregisters on drop.
struct Ticket {
    owner: Rc<Deadlines>,
    key: usize,
}

impl Future for Ticket {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut entries = self.owner.entries.borrow_mut();
        let entry = entries[self.key].as_mut().expect("a live ticket's entry");
        if entry.expired {
            return Poll::Ready(());
        }
        match &entry.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => entry.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.owner.entries.borrow_mut()[self.key] = None;
        self.owner.free.borrow_mut().push(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_fire_only_when_expired_and_slots_are_reused() {
        let d = Deadlines::new();
        let now = Instant::now();
        let (a, b) = (d.watch(now + Duration::from_secs(1)), d.watch(now + Duration::from_secs(3)));
        d.expire(now + Duration::from_secs(2));
        let expired = |t: &Ticket| d.entries.borrow()[t.key].as_ref().unwrap().expired;
        assert!(expired(&a) && !expired(&b));
        let key = a.key;
        drop(a);
        assert_eq!(d.watch(now).key, key, "a dropped ticket's slot is reused");
    }
}
