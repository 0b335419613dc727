//! A connection's two loops over the socket: the reader parses frames in
//! place and applies them; the writer sends what the handles queued, one
//! `write` per wake-up, so frames written during one turn of the event loop
//! leave together.

use std::{future::poll_fn, pin::pin, task::Poll, time::Duration};

use bytes::{Bytes, BytesMut};
use monoio::buf::SliceMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::conn::{ConnError, Incoming, Shared};
use super::frame::{self, Head};
use super::{Error, Reason};

/// Read buffer growth: two full frames per read under load, little held
/// by an idle connection.
const READ_CHUNK: usize = 32 * 1024;
/// After the connection ended, how long the writer may still try to get
/// its last frames (GOAWAY) to a peer that does not read.
const WRITE_GRACE: Duration = Duration::from_secs(1);
/// An output buffer grown past this is not kept for the next write.
const KEEP_OUT: usize = 256 * 1024;

/// The largest frame we accept: our SETTINGS_MAX_FRAME_SIZE (the default).
const MAX_FRAME: usize = frame::DEFAULT_MAX_FRAME as usize;

/// Reads and applies frames until the peer closes, the socket fails or the
/// connection ends; new requests go to `incoming`. `buf` holds bytes
/// already read (the server's sniffed preface).
pub async fn read_loop<R: AsyncReadRent>(conn: &Shared, mut io: R, mut buf: BytesMut, mut incoming: impl FnMut(Incoming)) {
    loop {
        while let Some(head) = complete_frame(&buf) {
            if head.len > MAX_FRAME {
                conn.borrow_mut().go_away_error(ConnError(Reason::FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE"));
                return;
            }
            let mut raw = buf.split_to(frame::HEADER_LEN + head.len);
            let payload: Bytes = raw.split_off(frame::HEADER_LEN).freeze();
            let result = conn.borrow_mut().on_frame(conn, head, payload);
            match result {
                Ok(Some(request)) => incoming(request),
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(reason = ?e.0, detail = e.1, "HTTP/2 connection error");
                    conn.borrow_mut().go_away_error(e);
                    return;
                }
            }
        }
        if !conn.borrow().is_open() {
            return;
        }
        if buf.capacity() - buf.len() < MAX_FRAME + frame::HEADER_LEN {
            buf.reserve(READ_CHUNK);
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let (result, slice) = io.read(SliceMut::new(buf, len, cap)).await;
        buf = slice.into_inner();
        match result {
            Ok(0) => return conn.borrow_mut().fail(Error::Io("peer closed the connection".into())),
            Ok(_) => {}
            Err(e) => return conn.borrow_mut().fail(Error::Io(e.to_string())),
        }
    }
}

/// Reads until `buf` holds at least `n` bytes.
pub async fn read_at_least<R: AsyncReadRent>(io: &mut R, buf: &mut BytesMut, n: usize) -> std::io::Result<()> {
    while buf.len() < n {
        buf.reserve(READ_CHUNK);
        let (len, cap) = (buf.len(), buf.capacity());
        let (result, slice) = io.read(SliceMut::new(std::mem::take(buf), len, cap)).await;
        *buf = slice.into_inner();
        if result? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// The next frame's header, if the whole frame (or an oversized header) is
/// in `buf`.
fn complete_frame(buf: &[u8]) -> Option<Head> {
    let head = Head::parse(buf.get(..frame::HEADER_LEN)?.try_into().expect("9 bytes"));
    (head.len > MAX_FRAME || buf.len() >= frame::HEADER_LEN + head.len).then_some(head)
}

/// Writes whatever the connection queued until it is closed and drained.
pub async fn write_loop<W: AsyncWriteRent>(conn: Shared, mut io: W) {
    let mut spare = Vec::new();
    loop {
        let next = poll_fn(|cx| {
            let mut st = conn.borrow_mut();
            if !st.out.is_empty() {
                return Poll::Ready(Some(std::mem::replace(&mut st.out, std::mem::take(&mut spare))));
            }
            if !st.is_open() {
                return Poll::Ready(None);
            }
            st.park_writer(cx.waker());
            Poll::Pending
        })
        .await;
        let Some(out) = next else { break };
        let (result, mut out) = {
            let mut write = pin!(io.write_all(out));
            monoio::select! {
                done = &mut write => done,
                // A peer that stopped reading cannot keep the socket (and
                // this buffer) once the connection is over.
                _ = abandoned(&conn) => break,
            }
        };
        if let Err(e) = result {
            conn.borrow_mut().fail(Error::Io(e.to_string()));
            break;
        }
        out.clear();
        if out.capacity() > KEEP_OUT {
            out = Vec::new();
        }
        spare = out;
        // Room in the output again: streams waiting for it go on.
        conn.borrow_mut().unblock_all();
    }
    let _ = monoio::time::timeout(WRITE_GRACE, io.shutdown()).await;
}

/// Resolves [`WRITE_GRACE`] after the connection ended.
async fn abandoned(conn: &Shared) {
    poll_fn(|cx| conn.borrow_mut().poll_closed(cx)).await;
    monoio::time::sleep(WRITE_GRACE).await;
}
