//! A single-threaded, fire-once broadcast: every waiter wakes when it fires.
//! Used for a core's shutdown, where hundreds of connection tasks wait.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

#[derive(Default)]
struct State {
    fired: bool,
    /// Waiter slots; `None` marks a free slot, reused to keep this bounded
    /// by the number of live waiters.
    waiters: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// Fire-once notification shared by the tasks of one core.
#[derive(Clone, Default)]
pub struct Notify(Rc<RefCell<State>>);

impl Notify {
    pub fn new() -> Notify {
        Notify::default()
    }

    pub fn fire(&self) {
        let waiters = {
            let mut s = self.0.borrow_mut();
            s.fired = true;
            s.free.clear();
            std::mem::take(&mut s.waiters)
        };
        waiters.into_iter().flatten().for_each(Waker::wake);
    }

    pub fn fired(&self) -> bool {
        self.0.borrow().fired
    }

    /// Resolves once [`fire`](Self::fire) was called.
    pub fn wait(&self) -> Wait {
        Wait { notify: self.clone(), slot: None }
    }
}

/// Future returned by [`Notify::wait`].
pub struct Wait {
    notify: Notify,
    slot: Option<usize>,
}

impl Future for Wait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut s = this.notify.0.borrow_mut();
        if s.fired {
            this.slot = None;
            return Poll::Ready(());
        }
        match this.slot {
            Some(i) => s.waiters[i] = Some(cx.waker().clone()),
            None => {
                let i = match s.free.pop() {
                    Some(i) => i,
                    None => {
                        s.waiters.push(None);
                        s.waiters.len() - 1
                    }
                };
                s.waiters[i] = Some(cx.waker().clone());
                this.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut s = self.notify.0.borrow_mut();
            if !s.fired && i < s.waiters.len() {
                s.waiters[i] = None;
                s.free.push(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;
    use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_every_live_waiter_once_and_reuses_slots() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let n = Notify::new();
        let mut a = Box::pin(n.wait());
        let mut b = Box::pin(n.wait());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        drop(b);
        let mut c = Box::pin(n.wait());
        assert!(c.as_mut().poll(&mut cx).is_pending());
        assert_eq!(n.0.borrow().waiters.len(), 2, "dropped waiter's slot is reused");
        n.fire();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(c.as_mut().poll(&mut cx).is_ready());
        assert!(Box::pin(n.wait()).as_mut().poll(&mut cx).is_ready());
    }
}
