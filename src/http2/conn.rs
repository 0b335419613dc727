//! One connection's state, shared by its reader, its writer and every
//! stream handle on the same core: frame processing for both roles, flow
//! control in both directions, and the output buffer frames are written to.

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    future::poll_fn,
    hash::{BuildHasherDefault, Hasher},
    rc::Rc,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;

use super::frame::{self, Head};
use super::hpack;
use super::{Config, Error, Headers, Reason};

/// Output bytes DATA may fill (flow control towards a peer that reads
/// slowly is then ours, charged to the call's budget, not hidden in this
/// buffer).
const OUT_HIGH: usize = 256 * 1024;
/// Output bytes beyond which a peer that keeps sending frames that need
/// answers (PING, SETTINGS) without reading them is dropped.
const OUT_LIMIT: usize = 1024 * 1024;
/// CONTINUATION frames one header block may span.
const MAX_CONTINUATIONS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// A connection error: GOAWAY with this code and text.
#[derive(Debug)]
pub struct ConnError(pub Reason, pub &'static str);

/// A request the server side has just received.
pub struct Incoming {
    pub head: Headers,
    pub recv: RecvStream,
    pub send: SendStream,
}

/// Multiplicative hashing is plenty for stream ids (odd, increasing).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u32 stream ids are hashed")
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Default)]
struct Stream {
    // Receiving.
    recv: VecDeque<Bytes>,
    /// Bytes in `recv` (not yet handed to the reader).
    recv_buffered: usize,
    recv_closed: bool,
    /// The reader is gone: data is dropped and its window returned.
    recv_gone: bool,
    /// Client: the response head, until the response future takes it.
    head: Option<Headers>,
    got_head: bool,
    trailers: Option<Headers>,
    recv_window: i64,
    recv_release: u32,
    recv_waker: Option<Waker>,
    // Sending.
    send_window: i64,
    pending: VecDeque<Bytes>,
    pending_len: usize,
    pending_end: bool,
    pending_trailers: Option<Headers>,
    /// No more sends allowed (END_STREAM queued).
    send_closed: bool,
    /// END_STREAM is in the output buffer.
    send_done: bool,
    send_waker: Option<Waker>,
    /// In the connection's list of streams waiting for window or room.
    blocked: bool,
    reset: Option<Error>,
    reset_waker: Option<Waker>,
    handles: u8,
    /// Counts towards its side's concurrent streams.
    counted: bool,
}

impl Stream {
    fn finished(&self) -> bool {
        self.reset.is_some() || (self.recv_closed && self.send_done)
    }

    /// Fails the stream with `error`, dropping what it buffered either way;
    /// returns the received bytes to give back to the connection window.
    fn abort(&mut self, error: Error) -> usize {
        self.reset = Some(error);
        self.recv.clear();
        self.pending.clear();
        self.pending_len = 0;
        self.wake_all();
        std::mem::take(&mut self.recv_buffered)
    }

    fn wake_all(&mut self) {
        for w in [self.recv_waker.take(), self.send_waker.take(), self.reset_waker.take()].into_iter().flatten() {
            w.wake();
        }
    }
}

/// A header block being received across CONTINUATION frames.
struct Partial {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
    frames: usize,
}

pub struct State {
    role: Role,
    config: Config,
    streams: HashMap<u32, Stream, BuildHasherDefault<IdHasher>>,
    peer_initial_window: u32,
    peer_max_frame: usize,
    peer_max_streams: u32,
    pub peer_settings_seen: bool,
    send_window: i64,
    recv_window: i64,
    recv_release: u32,
    encoder: hpack::Encoder,
    decoder: hpack::Decoder,
    pub out: Vec<u8>,
    writer: Option<Waker>,
    /// The writer, waiting to learn that the connection ended.
    closing: Option<Waker>,
    /// The connection is over; every stream failed with this.
    pub closed: Option<Error>,
    goaway_sent: bool,
    goaway_received: bool,
    last_peer_stream: u32,
    next_stream: u32,
    /// Open streams this side started (client) and the peer started (server).
    pub local_streams: usize,
    pub peer_streams: usize,
    /// Streams ever accepted (server), for the idle check.
    pub accepted: u64,
    blocked: VecDeque<u32>,
    continuation: Option<Partial>,
    reset_budget: i64,
    reset_budget_max: i64,
}

/// Shared by the connection's tasks and handles.
pub type Shared = Rc<RefCell<State>>;

impl State {
    pub fn new(role: Role, config: Config) -> State {
        let reset_budget_max = (config.max_concurrent_streams as i64).clamp(100, 1000) * 2;
        State {
            role,
            config,
            streams: HashMap::default(),
            peer_initial_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME as usize,
            // Until the peer's SETTINGS say otherwise (RFC 9113 asks for
            // at least 100).
            peer_max_streams: 100,
            peer_settings_seen: false,
            send_window: frame::DEFAULT_WINDOW as i64,
            recv_window: config.connection_window as i64,
            recv_release: 0,
            encoder: hpack::Encoder::new(),
            decoder: hpack::Decoder::new(4096),
            out: Vec::new(),
            writer: None,
            closing: None,
            closed: None,
            goaway_sent: false,
            goaway_received: false,
            last_peer_stream: 0,
            next_stream: 1,
            local_streams: 0,
            peer_streams: 0,
            accepted: 0,
            blocked: VecDeque::new(),
            continuation: None,
            reset_budget: reset_budget_max,
            reset_budget_max,
        }
    }

    /// Our SETTINGS and connection window, the first thing on the wire
    /// (after the client's preface).
    pub fn start(&mut self) {
        if self.role == Role::Client {
            self.out.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        }
        let mut settings = vec![
            (frame::SETTINGS_INITIAL_WINDOW_SIZE, self.config.stream_window),
            (frame::SETTINGS_MAX_HEADER_LIST_SIZE, self.config.max_header_list_size),
        ];
        match self.role {
            Role::Server => settings.push((frame::SETTINGS_MAX_CONCURRENT_STREAMS, self.config.max_concurrent_streams)),
            Role::Client => settings.push((frame::SETTINGS_ENABLE_PUSH, 0)),
        }
        frame::put_settings(&mut self.out, &settings);
        let extra = self.config.connection_window.saturating_sub(frame::DEFAULT_WINDOW);
        if extra > 0 {
            frame::put_window_update(&mut self.out, 0, extra);
        }
        self.wake_writer();
    }

    pub fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    pub fn park_writer(&mut self, waker: &Waker) {
        if !self.writer.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.writer = Some(waker.clone());
        }
    }

    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// Whether this connection takes new local streams at all (client).
    pub fn can_open_any(&self) -> bool {
        self.closed.is_none() && !self.goaway_received
    }

    pub fn max_send_streams(&self) -> usize {
        self.peer_max_streams as usize
    }

    /// Ends the connection: every stream fails with `error`.
    pub fn fail(&mut self, error: Error) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(error.clone());
        for s in self.streams.values_mut() {
            if s.reset.is_none() && !(s.recv_closed && s.send_done) {
                s.reset = Some(error.clone());
            }
            s.pending.clear();
            s.pending_len = 0;
            s.counted = false;
            s.wake_all();
        }
        self.local_streams = 0;
        self.peer_streams = 0;
        self.wake_writer();
        if let Some(w) = self.closing.take() {
            w.wake();
        }
    }

    /// Resolves once the connection has ended.
    pub fn poll_closed(&mut self, cx: &Context<'_>) -> Poll<()> {
        if self.closed.is_some() {
            return Poll::Ready(());
        }
        set_waker(&mut self.closing, cx);
        Poll::Pending
    }

    /// A connection error of ours: GOAWAY, then close.
    pub fn go_away_error(&mut self, e: ConnError) {
        if self.closed.is_some() {
            return;
        }
        frame::put_goaway(&mut self.out, self.last_peer_stream, e.0, e.1.as_bytes());
        self.goaway_sent = true;
        self.fail(Error::GoAway { reason: e.0, remote: false });
    }

    /// Graceful shutdown (server): GOAWAY naming the last stream we will
    /// serve; streams in flight finish.
    pub fn go_away(&mut self) {
        if self.goaway_sent || self.closed.is_some() {
            return;
        }
        self.goaway_sent = true;
        frame::put_goaway(&mut self.out, self.last_peer_stream, Reason::NO_ERROR, b"");
        self.wake_writer();
    }

    pub fn active_streams(&self) -> usize {
        self.local_streams + self.peer_streams
    }

    // ----- frames from the peer -----

    /// Handles one frame; a new request comes back to the caller to serve.
    pub fn on_frame(&mut self, shared: &Shared, head: Head, payload: Bytes) -> Result<Option<Incoming>, ConnError> {
        if let Some(p) = &self.continuation {
            if head.kind != frame::CONTINUATION || head.stream != p.stream {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "header block interrupted before END_HEADERS"));
            }
        }
        if !self.peer_settings_seen && head.kind != frame::SETTINGS {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "the first frame must be SETTINGS"));
        }
        match head.kind {
            frame::DATA => self.on_data(head, payload).map(|()| None),
            frame::HEADERS => self.on_headers(shared, head, &payload),
            frame::CONTINUATION => self.on_continuation(shared, head, &payload),
            frame::PRIORITY => {
                if head.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if head.len != 5 {
                    self.reset_stream(head.stream, Reason::FRAME_SIZE_ERROR);
                }
                Ok(None)
            }
            frame::RST_STREAM => self.on_rst(head, &payload).map(|()| None),
            frame::SETTINGS => self.on_settings(head, &payload).map(|()| None),
            frame::PUSH_PROMISE => Err(ConnError(Reason::PROTOCOL_ERROR, "PUSH_PROMISE is not accepted")),
            frame::PING => {
                if head.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PING on a stream"));
                }
                if head.len != 8 {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "PING must be 8 bytes"));
                }
                if !head.has(frame::ACK) {
                    let data: [u8; 8] = payload[..8].try_into().expect("length checked");
                    frame::put_ping(&mut self.out, frame::ACK, &data);
                    self.control_written()?;
                }
                Ok(None)
            }
            frame::GOAWAY => self.on_goaway(head, &payload).map(|()| None),
            frame::WINDOW_UPDATE => self.on_window_update(head, &payload).map(|()| None),
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(None),
        }
    }

    fn control_written(&mut self) -> Result<(), ConnError> {
        if self.out.len() > OUT_LIMIT {
            return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "peer sends frames that need answers but reads none"));
        }
        self.wake_writer();
        Ok(())
    }

    /// Whether `id` names a stream that was never opened.
    fn idle(&self, id: u32) -> bool {
        match (self.role, id % 2 == 1) {
            (Role::Server, true) => id > self.last_peer_stream,
            (Role::Client, true) => id >= self.next_stream,
            // Even ids are server-initiated, and we take no push.
            (Role::Server, false) | (Role::Client, false) => true,
        }
    }

    fn on_data(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on stream 0"));
        }
        let len = head.len as i64;
        if len > self.recv_window {
            return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "DATA beyond the connection window"));
        }
        self.recv_window -= len;
        let (start, end) = frame::unpad(&head, &payload).map_err(|r| ConnError(r, "bad DATA padding"))?;
        let Some(s) = self.streams.get_mut(&head.stream) else {
            if self.idle(head.stream) {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "DATA on a stream that was never opened"));
            }
            // A stream we closed or reset: its data only returns window.
            self.release_connection(head.len);
            return Ok(());
        };
        if s.recv_closed || s.reset.is_some() || (self.role == Role::Client && !s.got_head) {
            let reason = if s.recv_closed { Reason::STREAM_CLOSED } else { Reason::PROTOCOL_ERROR };
            let was_reset = s.reset.is_some();
            self.release_connection(head.len);
            if !was_reset {
                self.reset_stream(head.stream, reason);
            }
            return Ok(());
        }
        if len > s.recv_window {
            self.release_connection(head.len);
            self.reset_stream(head.stream, Reason::FLOW_CONTROL_ERROR);
            return Ok(());
        }
        s.recv_window -= len;
        let data_len = end - start;
        let padding = head.len - data_len;
        if head.has(frame::END_STREAM) {
            s.recv_closed = true;
        }
        let gone = s.recv_gone;
        if data_len > 0 && !gone {
            s.recv.push_back(payload.slice(start..end));
            s.recv_buffered += data_len;
        }
        if let Some(w) = s.recv_waker.take() {
            w.wake();
        }
        let returned = padding + if gone { data_len } else { 0 };
        if returned > 0 {
            self.release_connection(returned);
        }
        if head.has(frame::END_STREAM) {
            self.settle(head.stream);
        }
        Ok(())
    }

    fn on_headers(&mut self, shared: &Shared, head: Head, payload: &[u8]) -> Result<Option<Incoming>, ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        let (mut start, end) = frame::unpad(&head, payload).map_err(|r| ConnError(r, "bad HEADERS padding"))?;
        if head.has(frame::PRIORITY_FLAG) {
            if end - start < 5 {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "HEADERS too short for its priority"));
            }
            start += 5;
        }
        let fragment = &payload[start..end];
        if !head.has(frame::END_HEADERS) {
            self.continuation =
                Some(Partial { stream: head.stream, end_stream: head.has(frame::END_STREAM), block: fragment.to_vec(), frames: 0 });
            return Ok(None);
        }
        self.on_header_block(shared, head.stream, head.has(frame::END_STREAM), fragment)
    }

    fn on_continuation(&mut self, shared: &Shared, head: Head, payload: &[u8]) -> Result<Option<Incoming>, ConnError> {
        let Some(p) = self.continuation.as_mut() else {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
        };
        p.frames += 1;
        p.block.extend_from_slice(payload);
        if p.frames > MAX_CONTINUATIONS || p.block.len() > self.config.max_header_list_size as usize + 16 * 1024 {
            return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "header block too long (CONTINUATION flood)"));
        }
        if !head.has(frame::END_HEADERS) {
            return Ok(None);
        }
        let p = self.continuation.take().expect("checked above");
        self.on_header_block(shared, p.stream, p.end_stream, &p.block)
    }

    fn decode(&mut self, block: &[u8]) -> Result<(Headers, bool), ConnError> {
        let mut headers = Headers::with_capacity(block.len() * 2, 12);
        let decoded = self
            .decoder
            .decode(block, self.config.max_header_list_size as usize, |n, v| headers.push(n, v))
            .map_err(|_| ConnError(Reason::COMPRESSION_ERROR, "undecodable header block"))?;
        Ok((headers, decoded.oversize))
    }

    fn on_header_block(&mut self, shared: &Shared, id: u32, end_stream: bool, block: &[u8]) -> Result<Option<Incoming>, ConnError> {
        // Decoded first, whatever becomes of the stream: the HPACK table
        // must see every block.
        let (headers, oversize) = self.decode(block)?;
        if self.streams.contains_key(&id) {
            return self.on_stream_headers(id, end_stream, headers, oversize).map(|()| None);
        }
        if self.role == Role::Client || !self.idle(id) || id % 2 == 0 {
            if self.role == Role::Client && !self.idle(id) {
                // A response for a stream we already gave up on.
                return Ok(None);
            }
            return Err(ConnError(Reason::PROTOCOL_ERROR, "HEADERS on a closed or invalid stream"));
        }
        self.last_peer_stream = id;
        if self.goaway_sent {
            // Beyond the last stream our GOAWAY promised to serve.
            return Ok(None);
        }
        if oversize {
            self.respond_headers(id, b":status", b"431", true);
            self.reset_raw(id, Reason::NO_ERROR);
            return Ok(None);
        }
        if let Err(reason) = check_request(&headers) {
            self.reset_raw(id, reason);
            return Ok(None);
        }
        if self.peer_streams >= self.config.max_concurrent_streams as usize {
            self.reset_raw(id, Reason::REFUSED_STREAM);
            return Ok(None);
        }
        let stream = Stream {
            recv_closed: end_stream,
            recv_window: self.config.stream_window as i64,
            send_window: self.peer_initial_window as i64,
            handles: 2,
            counted: true,
            ..Stream::default()
        };
        self.streams.insert(id, stream);
        self.peer_streams += 1;
        self.accepted += 1;
        Ok(Some(Incoming {
            head: headers,
            recv: RecvStream(StreamRef { conn: shared.clone(), id }),
            send: SendStream(StreamRef { conn: shared.clone(), id }),
        }))
    }

    /// A second HEADERS (trailers), or a client's response head.
    fn on_stream_headers(&mut self, id: u32, end_stream: bool, headers: Headers, oversize: bool) -> Result<(), ConnError> {
        let role = self.role;
        let s = self.streams.get_mut(&id).expect("caller checked");
        if s.recv_closed {
            self.reset_stream(id, Reason::STREAM_CLOSED);
            return Ok(());
        }
        if oversize {
            self.reset_stream(id, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        if role == Role::Client && !s.got_head {
            let status = headers.get(b":status").unwrap_or_default();
            if status.len() == 3 && status[0] == b'1' {
                // Informational (1xx): the real head follows.
                return Ok(());
            }
            // A trailers-only response (END_STREAM here) carries its status
            // in the head; there are no separate trailers.
            s.got_head = true;
            s.head = Some(headers);
        } else {
            if !end_stream {
                self.reset_stream(id, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
            s.trailers = Some(headers);
        }
        if end_stream {
            s.recv_closed = true;
        }
        if let Some(w) = s.recv_waker.take() {
            w.wake();
        }
        if end_stream {
            self.settle(id);
        }
        Ok(())
    }

    fn on_rst(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
        }
        if head.len != 4 {
            return Err(ConnError(Reason::FRAME_SIZE_ERROR, "RST_STREAM must be 4 bytes"));
        }
        if self.idle(head.stream) {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "RST_STREAM on a stream that was never opened"));
        }
        let reason = Reason(u32::from_be_bytes(payload[..4].try_into().expect("length checked")));
        let role = self.role;
        let Some(s) = self.streams.get_mut(&head.stream) else { return Ok(()) };
        if s.finished() {
            return Ok(());
        }
        let unanswered = !s.send_done;
        let returned = s.abort(Error::Reset { reason, remote: true });
        self.release_connection(returned);
        self.settle(head.stream);
        if role == Role::Server && unanswered {
            // Rapid reset (CVE-2023-44487): streams the peer cancels before
            // we answer cost a token, streams that complete earn one back.
            self.reset_budget -= 1;
            if self.reset_budget < 0 {
                return Err(ConnError(Reason::ENHANCE_YOUR_CALM, "too many streams reset before their response"));
            }
        }
        Ok(())
    }

    fn on_settings(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.stream != 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if head.has(frame::ACK) {
            if head.len != 0 {
                return Err(ConnError(Reason::FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"));
            }
            return Ok(());
        }
        if head.len % 6 != 0 {
            return Err(ConnError(Reason::FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6"));
        }
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                frame::SETTINGS_HEADER_TABLE_SIZE => self.encoder.set_max_table_size(value as usize),
                frame::SETTINGS_ENABLE_PUSH if value > 1 || (self.role == Role::Client && value != 0) => {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "invalid SETTINGS_ENABLE_PUSH"));
                }
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => self.peer_max_streams = value,
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    if value as i64 > frame::MAX_WINDOW {
                        return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"));
                    }
                    let delta = value as i64 - self.peer_initial_window as i64;
                    self.peer_initial_window = value;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > frame::MAX_WINDOW {
                            return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "a stream window passed 2^31-1"));
                        }
                    }
                    if delta > 0 {
                        self.unblock_all();
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..=frame::MAX_MAX_FRAME).contains(&value) {
                        return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range"));
                    }
                    self.peer_max_frame = value as usize;
                }
                // The peer's header list limit: our blocks are small and
                // fixed in shape. Unknown settings are ignored.
                _ => {}
            }
        }
        self.peer_settings_seen = true;
        frame::put_settings_ack(&mut self.out);
        self.control_written()
    }

    fn on_goaway(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.stream != 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
        }
        if head.len < 8 {
            return Err(ConnError(Reason::FRAME_SIZE_ERROR, "GOAWAY shorter than 8 bytes"));
        }
        let last = u32::from_be_bytes(payload[..4].try_into().expect("length checked")) & 0x7fff_ffff;
        let reason = Reason(u32::from_be_bytes(payload[4..8].try_into().expect("length checked")));
        self.goaway_received = true;
        // Our streams above `last` were never seen by the peer: safe to
        // retry elsewhere.
        let refused: Vec<u32> =
            self.streams.keys().copied().filter(|&id| id > last && (id % 2 == 1) == (self.role == Role::Client)).collect();
        for id in refused {
            let s = self.streams.get_mut(&id).expect("listed");
            if s.reset.is_none() {
                s.reset = Some(Error::GoAway { reason: if reason == Reason::NO_ERROR { Reason::REFUSED_STREAM } else { reason }, remote: true });
                s.wake_all();
            }
            self.settle(id);
        }
        if reason != Reason::NO_ERROR && self.active_streams() == 0 {
            self.fail(Error::GoAway { reason, remote: true });
        }
        Ok(())
    }

    fn on_window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), ConnError> {
        if head.len != 4 {
            return Err(ConnError(Reason::FRAME_SIZE_ERROR, "WINDOW_UPDATE must be 4 bytes"));
        }
        let increment = (u32::from_be_bytes(payload[..4].try_into().expect("length checked")) & 0x7fff_ffff) as i64;
        if head.stream == 0 {
            if increment == 0 {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
            }
            self.send_window += increment;
            if self.send_window > frame::MAX_WINDOW {
                return Err(ConnError(Reason::FLOW_CONTROL_ERROR, "connection window passed 2^31-1"));
            }
            self.unblock_all();
            return Ok(());
        }
        let Some(s) = self.streams.get_mut(&head.stream) else {
            if self.idle(head.stream) {
                return Err(ConnError(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE on a stream that was never opened"));
            }
            return Ok(());
        };
        if increment == 0 {
            self.reset_stream(head.stream, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        s.send_window += increment;
        if s.send_window > frame::MAX_WINDOW {
            self.reset_stream(head.stream, Reason::FLOW_CONTROL_ERROR);
            return Ok(());
        }
        self.flush_stream(head.stream);
        if let Some(s) = self.streams.get_mut(&head.stream) {
            if let Some(w) = s.send_waker.take() {
                w.wake();
            }
        }
        Ok(())
    }

    // ----- flow control -----

    fn release_connection(&mut self, n: usize) {
        self.recv_release += n as u32;
        self.recv_window += n as i64;
        if self.recv_release >= self.config.connection_window / 2 && self.closed.is_none() {
            frame::put_window_update(&mut self.out, 0, self.recv_release);
            self.recv_release = 0;
            self.wake_writer();
        }
    }

    /// The reader consumed `n` bytes of stream `id`: its window and the
    /// connection's open again (announced in halves, not per frame).
    pub fn release(&mut self, id: u32, n: usize) {
        if n == 0 {
            return;
        }
        let half = self.config.stream_window / 2;
        if let Some(s) = self.streams.get_mut(&id) {
            s.recv_buffered = s.recv_buffered.saturating_sub(n);
            if !s.recv_closed && s.reset.is_none() {
                s.recv_release += n as u32;
                if s.recv_release >= half {
                    let inc = std::mem::take(&mut s.recv_release);
                    s.recv_window += inc as i64;
                    frame::put_window_update(&mut self.out, id, inc);
                    self.wake_writer();
                }
            }
        }
        self.release_connection(n);
    }

    fn capacity(&self, s: &Stream) -> usize {
        let room = OUT_HIGH.saturating_sub(self.out.len()) as i64;
        let window = s.send_window.min(self.send_window).min(room) - s.pending_len as i64;
        window.max(0) as usize
    }

    fn block(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.blocked {
                s.blocked = true;
                self.blocked.push_back(id);
            }
        }
    }

    /// Windows opened or output drained: streams waiting get another go
    /// (those that still find no room block again).
    pub fn unblock_all(&mut self) {
        let waiting = std::mem::take(&mut self.blocked);
        for id in waiting {
            let Some(s) = self.streams.get_mut(&id) else { continue };
            s.blocked = false;
            if let Some(w) = s.send_waker.take() {
                w.wake();
            }
            if !s.pending.is_empty() {
                self.flush_stream(id);
            }
        }
    }

    /// Moves a stream's queued data into the output as windows allow, then
    /// its END_STREAM or trailers.
    fn flush_stream(&mut self, id: u32) {
        let max_frame = self.peer_max_frame;
        let mut ended = false;
        loop {
            let s = self.streams.get(&id).expect("flushing a live stream");
            if s.reset.is_some() {
                return;
            }
            if s.send_done {
                break;
            }
            let Some(front) = s.pending.front() else { break };
            let room = self.capacity_raw(s);
            if room == 0 && !front.is_empty() {
                self.block(id);
                break;
            }
            let s = self.streams.get_mut(&id).expect("checked");
            let front = s.pending.front_mut().expect("checked");
            let n = room.min(front.len());
            let chunk = front.split_to(n);
            let emptied = front.is_empty();
            let last = emptied && s.pending.len() == 1;
            if emptied {
                s.pending.pop_front();
            }
            s.pending_len -= n;
            s.send_window -= n as i64;
            let end = last && s.pending_end && s.pending_trailers.is_none();
            if end {
                s.send_done = true;
                ended = true;
            }
            if n > 0 || end {
                frame::put_data(&mut self.out, id, &chunk, end, max_frame);
            }
            self.send_window -= n as i64;
        }
        let s = self.streams.get_mut(&id).expect("checked");
        if s.pending.is_empty() && s.pending_end && !s.send_done {
            s.send_done = true;
            ended = true;
            match s.pending_trailers.take() {
                Some(trailers) => self.write_headers(id, &trailers, true),
                None => frame::put_data(&mut self.out, id, &[], true, max_frame),
            }
        }
        self.wake_writer();
        if ended {
            self.on_sent_end(id);
        }
    }

    /// Like [`capacity`](Self::capacity) without the pending data (which is
    /// what is being flushed).
    fn capacity_raw(&self, s: &Stream) -> usize {
        let room = OUT_HIGH.saturating_sub(self.out.len()) as i64;
        s.send_window.min(self.send_window).min(room).max(0) as usize
    }

    fn on_sent_end(&mut self, id: u32) {
        if self.role == Role::Server {
            self.reset_budget = (self.reset_budget + 1).min(self.reset_budget_max);
        }
        self.settle(id);
    }

    // ----- sending -----

    fn write_headers(&mut self, id: u32, headers: &Headers, end_stream: bool) {
        let start = frame::reserve_head(&mut self.out);
        self.encoder.begin_block(&mut self.out);
        for (n, v) in headers.iter() {
            self.encoder.field(n, v, &mut self.out);
        }
        frame::finish_headers(&mut self.out, start, id, end_stream, self.peer_max_frame);
    }

    /// Writes a header block of a pre-encoded part and extra fields.
    fn write_block(&mut self, id: u32, encoded: &[u8], extra: Option<&Headers>, end_stream: bool) {
        let start = frame::reserve_head(&mut self.out);
        self.encoder.begin_block(&mut self.out);
        self.out.extend_from_slice(encoded);
        for (n, v) in extra.into_iter().flat_map(Headers::iter) {
            self.encoder.field(n, v, &mut self.out);
        }
        frame::finish_headers(&mut self.out, start, id, end_stream, self.peer_max_frame);
        self.wake_writer();
    }

    fn respond_headers(&mut self, id: u32, name: &[u8], value: &[u8], end_stream: bool) {
        let mut h = Headers::with_capacity(16, 1);
        h.push(name, value);
        self.write_headers(id, &h, end_stream);
        self.wake_writer();
    }

    fn reset_raw(&mut self, id: u32, reason: Reason) {
        frame::put_rst(&mut self.out, id, reason);
        self.wake_writer();
    }

    /// Resets a stream from our side (RST_STREAM), failing its handles.
    pub fn reset_stream(&mut self, id: u32, reason: Reason) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.finished() {
            return;
        }
        let returned = s.abort(Error::Reset { reason, remote: false });
        frame::put_rst(&mut self.out, id, reason);
        self.release_connection(returned);
        self.wake_writer();
        self.settle(id);
    }

    /// Uncounts a finished stream; forgets it once no handle is left
    /// (resetting it if it was abandoned half way).
    fn settle(&mut self, id: u32) {
        let role = self.role;
        let Some(s) = self.streams.get_mut(&id) else { return };
        let finished = s.finished();
        let mut uncount = finished && s.counted;
        let mut rst = None;
        if s.handles == 0 {
            if !finished {
                rst = Some(if s.send_done { Reason::NO_ERROR } else { Reason::CANCEL });
                uncount = s.counted;
            }
            let returned = s.recv_buffered;
            self.streams.remove(&id);
            if returned > 0 {
                self.release_connection(returned);
            }
        } else if uncount {
            s.counted = false;
        }
        if uncount {
            match role {
                Role::Server => self.peer_streams -= 1,
                Role::Client => self.local_streams -= 1,
            }
        }
        if let (Some(reason), None) = (rst, &self.closed) {
            frame::put_rst(&mut self.out, id, reason);
            self.wake_writer();
        }
    }

    /// Opens a client stream with a request head; the stream's handles
    /// come back.
    pub fn open_stream(&mut self, encoded: &[u8], extra: Option<&Headers>, end_stream: bool) -> Result<u32, Error> {
        if let Some(e) = &self.closed {
            return Err(e.clone());
        }
        if self.goaway_received || self.next_stream > frame::MAX_WINDOW as u32 {
            return Err(Error::GoAway { reason: Reason::REFUSED_STREAM, remote: true });
        }
        let id = self.next_stream;
        self.next_stream += 2;
        self.streams.insert(
            id,
            Stream {
                recv_window: self.config.stream_window as i64,
                send_window: self.peer_initial_window as i64,
                handles: 2,
                counted: true,
                send_closed: end_stream,
                send_done: end_stream,
                ..Stream::default()
            },
        );
        self.local_streams += 1;
        self.write_block(id, encoded, extra, end_stream);
        Ok(id)
    }

    fn stream(&self, id: u32) -> &Stream {
        self.streams.get(&id).expect("a handle keeps its stream")
    }

    fn stream_mut(&mut self, id: u32) -> &mut Stream {
        self.streams.get_mut(&id).expect("a handle keeps its stream")
    }
}

/// Checks a request head (RFC 9113 §8.2, §8.3): pseudo-headers first and
/// complete, lower-case names, no connection-specific fields.
fn check_request(h: &Headers) -> Result<(), Reason> {
    let mut regular = false;
    let (mut method, mut path, mut scheme) = (false, false, false);
    for (name, value) in h.iter() {
        if name.is_empty() || name.iter().any(|b| b.is_ascii_uppercase()) {
            return Err(Reason::PROTOCOL_ERROR);
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular {
                return Err(Reason::PROTOCOL_ERROR);
            }
            let seen = match pseudo {
                b"method" => &mut method,
                b"path" => &mut path,
                b"scheme" => &mut scheme,
                b"authority" => continue,
                _ => return Err(Reason::PROTOCOL_ERROR),
            };
            if *seen || (pseudo == b"path" && value.is_empty()) {
                return Err(Reason::PROTOCOL_ERROR);
            }
            *seen = true;
            continue;
        }
        regular = true;
        let forbidden = matches!(name, b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade");
        if forbidden || (name == b"te" && value != b"trailers") {
            return Err(Reason::PROTOCOL_ERROR);
        }
    }
    if method && path && scheme {
        Ok(())
    } else {
        Err(Reason::PROTOCOL_ERROR)
    }
}

/// A counted reference to one stream of a connection.
struct StreamRef {
    conn: Shared,
    id: u32,
}

impl Drop for StreamRef {
    fn drop(&mut self) {
        let mut st = self.conn.borrow_mut();
        if let Some(s) = st.streams.get_mut(&self.id) {
            s.handles -= 1;
            st.settle(self.id);
        }
    }
}

/// The receiving half of a stream: DATA payloads, then trailers.
pub struct RecvStream(StreamRef);

impl RecvStream {
    /// The next DATA payload; `None` at END_STREAM.
    pub async fn data(&mut self) -> Option<Result<Bytes, Error>> {
        poll_fn(|cx| self.poll_data(cx)).await
    }

    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        let mut st = self.0.conn.borrow_mut();
        let s = st.stream_mut(self.0.id);
        if let Some(chunk) = s.recv.pop_front() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        if s.recv_closed {
            return Poll::Ready(None);
        }
        if let Some(e) = &s.reset {
            return Poll::Ready(Some(Err(e.clone())));
        }
        set_waker(&mut s.recv_waker, cx);
        Poll::Pending
    }

    /// Returns `n` consumed bytes to the peer's windows.
    pub fn release_capacity(&mut self, n: usize) {
        self.0.conn.borrow_mut().release(self.0.id, n);
    }

    /// The trailers, once the data is read; `None` if the stream ended
    /// without them.
    pub async fn trailers(&mut self) -> Result<Option<Headers>, Error> {
        poll_fn(|cx| {
            let mut st = self.0.conn.borrow_mut();
            let s = st.stream_mut(self.0.id);
            if s.recv_closed {
                return Poll::Ready(Ok(s.trailers.take()));
            }
            if let Some(e) = &s.reset {
                return Poll::Ready(Err(e.clone()));
            }
            set_waker(&mut s.recv_waker, cx);
            Poll::Pending
        })
        .await
    }

    /// Client: the response head, once it arrived.
    pub(crate) fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Result<Headers, Error>> {
        let mut st = self.0.conn.borrow_mut();
        let s = st.stream_mut(self.0.id);
        if let Some(head) = s.head.take() {
            return Poll::Ready(Ok(head));
        }
        if let Some(e) = &s.reset {
            return Poll::Ready(Err(e.clone()));
        }
        if s.recv_closed {
            return Poll::Ready(Err(Error::Reset { reason: Reason::PROTOCOL_ERROR, remote: true }));
        }
        set_waker(&mut s.recv_waker, cx);
        Poll::Pending
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        let mut st = self.0.conn.borrow_mut();
        if let Some(s) = st.streams.get_mut(&self.0.id) {
            s.recv_gone = true;
            s.recv.clear();
            let returned = std::mem::take(&mut s.recv_buffered);
            st.release_connection(returned);
        }
    }
}

/// The sending half of a stream.
pub struct SendStream(StreamRef);

impl SendStream {
    fn with<R>(&self, f: impl FnOnce(&mut State, u32) -> R) -> R {
        f(&mut self.0.conn.borrow_mut(), self.0.id)
    }

    fn check(st: &State, id: u32) -> Result<(), Error> {
        let s = st.stream(id);
        if let Some(e) = &s.reset {
            return Err(e.clone());
        }
        if s.send_closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Server: the response head, from a pre-encoded part and extra fields.
    pub fn send_head(&mut self, encoded: &[u8], extra: Option<&Headers>, end_stream: bool) -> Result<(), Error> {
        self.with(|st, id| {
            Self::check(st, id)?;
            if end_stream {
                let s = st.stream_mut(id);
                s.send_closed = true;
                s.send_done = true;
            }
            st.write_block(id, encoded, extra, end_stream);
            if end_stream {
                st.on_sent_end(id);
            }
            Ok(())
        })
    }

    /// Queues data; it goes out as the peer's windows allow. Callers that
    /// must not buffer wait for [`capacity`](Self::capacity) first.
    pub fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), Error> {
        self.with(|st, id| {
            Self::check(st, id)?;
            let s = st.stream_mut(id);
            if end_stream {
                s.send_closed = true;
                s.pending_end = true;
            }
            if !data.is_empty() || end_stream {
                s.pending_len += data.len();
                s.pending.push_back(data);
            }
            st.flush_stream(id);
            Ok(())
        })
    }

    /// Ends the stream with trailers (after any queued data).
    pub fn send_trailers(&mut self, trailers: Headers) -> Result<(), Error> {
        self.with(|st, id| {
            Self::check(st, id)?;
            let s = st.stream_mut(id);
            s.send_closed = true;
            s.pending_end = true;
            s.pending_trailers = Some(trailers);
            st.flush_stream(id);
            Ok(())
        })
    }

    pub fn send_reset(&mut self, reason: Reason) {
        self.with(|st, id| st.reset_stream(id, reason));
    }

    /// What can be sent now without queueing.
    pub fn capacity(&self) -> usize {
        self.with(|st, id| st.capacity(st.stream(id)))
    }

    /// Waits until some capacity is free (or the stream failed).
    pub fn poll_capacity(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        let id = self.0.id;
        let mut st = self.0.conn.borrow_mut();
        let s = st.stream(id);
        if let Some(e) = &s.reset {
            return Poll::Ready(Err(e.clone()));
        }
        let cap = st.capacity(s);
        if cap > 0 {
            return Poll::Ready(Ok(cap));
        }
        set_waker(&mut st.stream_mut(id).send_waker, cx);
        st.block(id);
        Poll::Pending
    }

    /// Resolves when the peer resets the stream (or the connection ends).
    pub fn poll_reset(&mut self, cx: &mut Context<'_>) -> Poll<Reason> {
        let mut st = self.0.conn.borrow_mut();
        let s = st.stream_mut(self.0.id);
        match &s.reset {
            Some(Error::Reset { reason, remote: true }) => Poll::Ready(*reason),
            Some(_) => Poll::Ready(Reason::CANCEL),
            None => {
                set_waker(&mut s.reset_waker, cx);
                Poll::Pending
            }
        }
    }
}

fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

pub(crate) fn handles(shared: &Shared, id: u32) -> (SendStream, RecvStream) {
    (SendStream(StreamRef { conn: shared.clone(), id }), RecvStream(StreamRef { conn: shared.clone(), id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(fields: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in fields {
            h.push(n.as_bytes(), v.as_bytes());
        }
        h
    }

    #[test]
    fn request_heads_are_checked() {
        let ok = [(":method", "POST"), (":scheme", "http"), (":path", "/a/B"), ("te", "trailers")];
        assert_eq!(check_request(&req(&ok)), Ok(()));
        let cases: &[&[(&str, &str)]] = &[
            &[(":method", "POST"), (":path", "/a/B")],
            &[(":method", "POST"), (":scheme", "http"), ("x", "1"), (":path", "/a")],
            &[(":method", "POST"), (":scheme", "http"), (":path", "/a"), ("Upper", "1")],
            &[(":method", "POST"), (":scheme", "http"), (":path", "/a"), ("connection", "close")],
            &[(":method", "POST"), (":scheme", "http"), (":path", "/a"), ("te", "gzip")],
            &[(":method", "POST"), (":scheme", "http"), (":path", "/a"), (":bogus", "1")],
            &[(":method", "POST"), (":method", "GET"), (":scheme", "http"), (":path", "/a")],
            &[(":method", "POST"), (":scheme", "http"), (":path", "")],
        ];
        for case in cases {
            assert_eq!(check_request(&req(case)), Err(Reason::PROTOCOL_ERROR), "{case:?}");
        }
    }
}
