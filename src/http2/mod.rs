//! Massa's own HTTP/2 (RFC 9113), for both legs of the proxy: the public
//! server and the client to the user function.
//!
//! Why not the `h2` crate: on unary passthrough it, its `HeaderMap`s and the
//! copies and allocations around them were about three quarters of a
//! worker's CPU (BENCHMARKS.md §10). This stack is built for one thread per
//! connection and for gRPC's shape of traffic:
//!
//! - a connection's state (streams, windows, HPACK tables, the output
//!   buffer) lives in one `RefCell` on its core: no locks, no atomics;
//! - frames are parsed in place from one read buffer, DATA payloads handed
//!   out as slices of it;
//! - every stream handle writes its frames straight into the connection's
//!   output buffer, and one writer sends whatever accumulated in one
//!   `write` per turn of the event loop;
//! - headers are a flat list ([`Headers`]), never a map; the constant gRPC
//!   blocks are encoded once.
//!
//! Only what gRPC uses is implemented; what it does not (server push,
//! priorities) is refused or ignored as the RFC allows. Defences: bounded
//! header lists and CONTINUATION sequences, a reset budget against rapid
//! reset, a bound on control frames queued for a peer that does not read,
//! flow control with bounded output.

mod conn;
mod frame;
mod headers;
pub mod hpack;
mod io;

pub mod client;
#[cfg(test)]
mod tests;
pub mod server;

use std::fmt;

pub use conn::{RecvStream, SendStream};
pub use headers::Headers;

/// An HTTP/2 error code (RFC 9113 §7).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(pub u32);

impl Reason {
    pub const NO_ERROR: Reason = Reason(0x0);
    pub const PROTOCOL_ERROR: Reason = Reason(0x1);
    pub const INTERNAL_ERROR: Reason = Reason(0x2);
    pub const FLOW_CONTROL_ERROR: Reason = Reason(0x3);
    pub const SETTINGS_TIMEOUT: Reason = Reason(0x4);
    pub const STREAM_CLOSED: Reason = Reason(0x5);
    pub const FRAME_SIZE_ERROR: Reason = Reason(0x6);
    pub const REFUSED_STREAM: Reason = Reason(0x7);
    pub const CANCEL: Reason = Reason(0x8);
    pub const COMPRESSION_ERROR: Reason = Reason(0x9);
    pub const CONNECT_ERROR: Reason = Reason(0xa);
    pub const ENHANCE_YOUR_CALM: Reason = Reason(0xb);
    pub const INADEQUATE_SECURITY: Reason = Reason(0xc);
    pub const HTTP_1_1_REQUIRED: Reason = Reason(0xd);

    fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 14] = [
            "NO_ERROR",
            "PROTOCOL_ERROR",
            "INTERNAL_ERROR",
            "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT",
            "STREAM_CLOSED",
            "FRAME_SIZE_ERROR",
            "REFUSED_STREAM",
            "CANCEL",
            "COMPRESSION_ERROR",
            "CONNECT_ERROR",
            "ENHANCE_YOUR_CALM",
            "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED",
        ];
        NAMES.get(self.0 as usize).copied()
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Reason({:#x})", self.0),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a stream or connection failed, and who ended it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// RST_STREAM on this stream, sent by the peer (`remote`) or by us.
    #[error("stream reset {}: {reason}", if *.remote { "by the peer" } else { "locally" })]
    Reset { reason: Reason, remote: bool },
    /// The connection ended with GOAWAY (or a connection error) before this
    /// stream completed.
    #[error("connection closed {}: {reason}", if *.remote { "by the peer" } else { "locally" })]
    GoAway { reason: Reason, remote: bool },
    /// The socket failed or closed under the connection.
    #[error("connection lost: {0}")]
    Io(String),
    /// This side used the stream wrongly (sent after END_STREAM).
    #[error("stream already closed for sending")]
    Closed,
}

impl Error {
    pub fn is_reset(&self) -> bool {
        matches!(self, Error::Reset { .. })
    }

    pub fn reason(&self) -> Option<Reason> {
        match self {
            Error::Reset { reason, .. } | Error::GoAway { reason, .. } => Some(*reason),
            Error::Io(_) | Error::Closed => None,
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self, Error::Reset { remote: true, .. } | Error::GoAway { remote: true, .. })
    }
}

/// Limits and windows one connection advertises.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub max_concurrent_streams: u32,
    /// What the peer may send on one stream before we release it.
    pub stream_window: u32,
    /// ... and on the whole connection.
    pub connection_window: u32,
    /// Decoded header list size per block (RFC 9113 §6.5.2).
    pub max_header_list_size: u32,
}
