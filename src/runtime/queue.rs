//! A bounded queue from the tasks of one core to one task on it: an active
//! entity's commands. Every active entity holds one, waiting, so it is
//! kept small: no atomics or locks, and nothing allocated per wait (a
//! flume channel cost ~600 bytes per idle entity, its wait hook included).

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::poll_fn,
    rc::Rc,
    task::{Poll, Waker},
};

struct Inner<T> {
    items: RefCell<VecDeque<T>>,
    cap: usize,
    waker: RefCell<Option<Waker>>,
    senders: Cell<usize>,
    receiver_gone: Cell<bool>,
}

/// Why [`Sender::try_send`] gave the item back.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    Full(T),
    /// The receiver has been dropped.
    Disconnected(T),
}

pub struct Sender<T>(Rc<Inner<T>>);

pub struct Receiver<T>(Rc<Inner<T>>);

/// A queue holding at most `cap` items.
pub fn bounded<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let inner = Rc::new(Inner {
        items: RefCell::new(VecDeque::new()),
        cap,
        waker: RefCell::new(None),
        senders: Cell::new(1),
        receiver_gone: Cell::new(false),
    });
    (Sender(inner.clone()), Receiver(inner))
}

impl<T> Inner<T> {
    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

impl<T> Sender<T> {
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.0.receiver_gone.get() {
            return Err(TrySendError::Disconnected(item));
        }
        let mut items = self.0.items.borrow_mut();
        if items.len() >= self.0.cap {
            return Err(TrySendError::Full(item));
        }
        items.push_back(item);
        drop(items);
        self.0.wake();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.0.senders.set(self.0.senders.get() + 1);
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.senders.set(self.0.senders.get() - 1);
        if self.0.senders.get() == 0 {
            self.0.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once the queue is empty and every sender gone.
    pub async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            if let Some(item) = self.try_recv() {
                return Poll::Ready(Some(item));
            }
            if self.0.senders.get() == 0 {
                return Poll::Ready(None);
            }
            *self.0.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    pub fn try_recv(&self) -> Option<T> {
        self.0.items.borrow_mut().pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.0.items.borrow().is_empty()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.receiver_gone.set(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_in_order_up_to_the_bound() {
        let (tx, rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(tx.try_send(3), Ok(()));
        assert_eq!((rx.try_recv(), rx.try_recv(), rx.try_recv()), (Some(2), Some(3), None));
        assert!(rx.is_empty());
    }

    #[test]
    fn a_dropped_receiver_refuses_items() {
        let (tx, rx) = bounded(4);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(TrySendError::Disconnected(1)));
    }

    #[test]
    fn a_waiting_receiver_wakes_for_an_item_and_ends_after_the_last_sender() {
        monoio::start::<monoio::LegacyDriver, _>(async {
            let (tx, rx) = bounded(4);
            let tx2 = tx.clone();
            let waiter = monoio::spawn(async move {
                let first = rx.recv().await;
                let second = rx.recv().await;
                (first, second)
            });
            monoio::spawn(async move {
                tx2.try_send(7).unwrap();
                drop(tx2);
                drop(tx);
            });
            assert_eq!(waiter.await, (Some(7), None));
        });
    }
}
