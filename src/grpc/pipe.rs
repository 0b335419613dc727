//! An in-process reply stream: what a call sends when its client is not an
//! HTTP/2 gRPC stream (HTTP/JSON, gRPC-Web), read by the front that
//! translates it for that client. One core, one call: `Rc`, no locks.
//!
//! Bounded in bytes: the sender waits once [`Pipe::limit`] bytes are
//! queued, so a slow client applies backpressure to the call exactly as a
//! closed HTTP/2 window does.

use std::{
    cell::RefCell,
    collections::VecDeque,
    future::poll_fn,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;

use super::Status;
use crate::http2::{Headers, Reason};

/// What a call produced, in order: at most one head, messages, one end.
#[derive(Debug)]
pub enum Event {
    /// Response metadata (from the function's first reply).
    Head(Option<Headers>),
    Message(Bytes),
    End(Status),
    /// The call was cancelled rather than answered.
    Reset(Reason),
}

struct Shared {
    queue: VecDeque<Event>,
    queued_bytes: usize,
    limit: usize,
    /// The reading front went away (its client did).
    closed: bool,
    reader: Option<Waker>,
    /// The sender waiting for room, or for the reader to go.
    writer: Option<Waker>,
}

/// Creates a pipe holding at most `limit` message bytes (one message of any
/// size always fits, so a large reply is not refused, only paced).
pub fn pipe(limit: usize) -> (Pipe, PipeReader) {
    let shared = Rc::new(RefCell::new(Shared {
        queue: VecDeque::new(),
        queued_bytes: 0,
        limit,
        closed: false,
        reader: None,
        writer: None,
    }));
    (Pipe(shared.clone()), PipeReader(shared))
}

/// The call's end.
pub struct Pipe(Rc<RefCell<Shared>>);

/// The reader went away; nothing sent now reaches anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl Pipe {
    /// Queues `event` whatever the fill (heads, ends, small replies).
    pub fn push(&self, event: Event) -> Result<(), Gone> {
        let mut s = self.0.borrow_mut();
        if s.closed {
            return Err(Gone);
        }
        if let Event::Message(m) = &event {
            s.queued_bytes += m.len();
        }
        s.queue.push_back(event);
        if let Some(w) = s.reader.take() {
            w.wake();
        }
        Ok(())
    }

    /// Waits until the queue is below its limit.
    pub async fn room(&self) -> Result<(), Gone> {
        poll_fn(|cx| {
            let mut s = self.0.borrow_mut();
            if s.closed {
                return Poll::Ready(Err(Gone));
            }
            if s.queued_bytes < s.limit {
                return Poll::Ready(Ok(()));
            }
            s.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Resolves when the reader is gone.
    pub async fn gone(&self) {
        poll_fn(|cx| {
            let mut s = self.0.borrow_mut();
            if s.closed {
                return Poll::Ready(());
            }
            s.writer = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// The front's end. Dropping it tells the call its client is gone.
pub struct PipeReader(Rc<RefCell<Shared>>);

impl PipeReader {
    pub fn poll_next(&mut self, cx: &Context<'_>) -> Poll<Event> {
        match self.try_next() {
            Some(event) => Poll::Ready(event),
            None => {
                self.0.borrow_mut().reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The next event if one is queued already (to batch what is ready
    /// into one write).
    pub fn try_next(&mut self) -> Option<Event> {
        let mut s = self.0.borrow_mut();
        let event = s.queue.pop_front()?;
        if let Event::Message(m) = &event {
            s.queued_bytes -= m.len();
            if s.queued_bytes < s.limit {
                if let Some(w) = s.writer.take() {
                    w.wake();
                }
            }
        }
        Some(event)
    }

    /// The next event. A call always ends with [`Event::End`] or
    /// [`Event::Reset`]; one dropped without either reads as a reset.
    pub async fn next(&mut self) -> Event {
        poll_fn(|cx| {
            if Rc::strong_count(&self.0) == 1 && self.0.borrow().queue.is_empty() {
                return Poll::Ready(Event::Reset(Reason::INTERNAL_ERROR));
            }
            self.poll_next(cx)
        })
        .await
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        let mut s = self.0.borrow_mut();
        s.closed = true;
        s.queue.clear();
        if let Some(w) = s.writer.take() {
            w.wake();
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        if let Some(w) = self.0.borrow_mut().reader.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::Waker;

    fn poll<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn paces_by_bytes_and_reports_a_gone_reader() {
        let (pipe, mut reader) = pipe(10);
        pipe.push(Event::Message(Bytes::from_static(&[0; 16]))).unwrap();
        assert!(poll(pin!(pipe.room())).is_pending(), "over the limit");
        assert!(matches!(reader.poll_next(&Context::from_waker(Waker::noop())), Poll::Ready(Event::Message(_))));
        assert_eq!(poll(pin!(pipe.room())), Poll::Ready(Ok(())));
        assert!(poll(pin!(pipe.gone())).is_pending());
        drop(reader);
        assert_eq!(poll(pin!(pipe.gone())), Poll::Ready(()));
        assert_eq!(pipe.push(Event::End(Status::ok())), Err(Gone));
    }

    #[test]
    fn a_dropped_call_reads_as_reset() {
        let (pipe, mut reader) = pipe(10);
        pipe.push(Event::Head(None)).unwrap();
        drop(pipe);
        assert!(matches!(poll(pin!(reader.next())), Poll::Ready(Event::Head(None))));
        assert!(matches!(poll(pin!(reader.next())), Poll::Ready(Event::Reset(_))));
    }
}
