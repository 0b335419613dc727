//! HTTP/2 frame layout (RFC 9113 §4, §6): the 9-byte header, parsed in
//! place from the read buffer, and writers that append frames to a
//! connection's output buffer.

use super::Reason;

pub const HEADER_LEN: usize = 9;
/// The smallest (and default) SETTINGS_MAX_FRAME_SIZE.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The largest legal SETTINGS_MAX_FRAME_SIZE.
pub const MAX_MAX_FRAME: u32 = (1 << 24) - 1;
/// The largest legal window (and SETTINGS_INITIAL_WINDOW_SIZE).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;
/// What every peer's windows start at before SETTINGS say otherwise.
pub const DEFAULT_WINDOW: u32 = 65_535;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    /// Parses the 9 header bytes (the reserved stream-id bit is ignored, as
    /// RFC 9113 §4.1 requires).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Head {
        Head {
            len: (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize,
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Strips padding (PADDED flag) from a DATA or HEADERS payload.
pub fn unpad(head: &Head, payload: &[u8]) -> Result<(usize, usize), Reason> {
    if !head.has(PADDED) {
        return Ok((0, payload.len()));
    }
    let pad = *payload.first().ok_or(Reason::FRAME_SIZE_ERROR)? as usize;
    if pad >= payload.len() {
        return Err(Reason::PROTOCOL_ERROR);
    }
    Ok((1, payload.len() - pad))
}

/// Appends a frame header.
pub fn put_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len <= MAX_MAX_FRAME as usize);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

pub fn put_settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    put_head(out, settings.len() * 6, SETTINGS, 0, 0);
    for (id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn put_settings_ack(out: &mut Vec<u8>) {
    put_head(out, 0, SETTINGS, ACK, 0);
}

pub fn put_ping(out: &mut Vec<u8>, flags: u8, data: &[u8; 8]) {
    put_head(out, 8, PING, flags, 0);
    out.extend_from_slice(data);
}

pub fn put_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

pub fn put_rst(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    put_head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn put_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason, debug: &[u8]) {
    put_head(out, 8 + debug.len(), GOAWAY, 0, 0);
    out.extend_from_slice(&last_stream.to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
    out.extend_from_slice(debug);
}

/// Appends DATA frames carrying `data` (split at `max_frame`); END_STREAM
/// on the last when `end`.
pub fn put_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end: bool, max_frame: usize) {
    let mut chunks = data.chunks(max_frame).peekable();
    if chunks.peek().is_none() {
        put_head(out, 0, DATA, if end { END_STREAM } else { 0 }, stream);
        return;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        put_head(out, chunk.len(), DATA, if end && last { END_STREAM } else { 0 }, stream);
        out.extend_from_slice(chunk);
    }
}

/// Appends a header block as HEADERS plus CONTINUATION frames. The block
/// was encoded at the end of `out`, starting at `start`, with room left for
/// a frame header before it (see [`reserve_head`]).
pub fn finish_headers(out: &mut Vec<u8>, start: usize, stream: u32, end_stream: bool, max_frame: usize) {
    let block_len = out.len() - start;
    let first = block_len.min(max_frame);
    let flags = if end_stream { END_STREAM } else { 0 } | if first == block_len { END_HEADERS } else { 0 };
    let mut head = Vec::with_capacity(HEADER_LEN);
    put_head(&mut head, first, HEADERS, flags, stream);
    out[start - HEADER_LEN..start].copy_from_slice(&head);
    if first == block_len {
        return;
    }
    // Rare (header blocks beyond the peer's frame size): move the rest into
    // CONTINUATION frames.
    let rest = out.split_off(start + first);
    let mut chunks = rest.chunks(max_frame).peekable();
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() { END_HEADERS } else { 0 };
        put_head(out, chunk.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

/// Leaves room for a HEADERS frame header; returns where the block starts.
pub fn reserve_head(out: &mut Vec<u8>) -> usize {
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trips_and_ignores_reserved_bit() {
        let mut out = Vec::new();
        put_head(&mut out, 0x012345, HEADERS, END_HEADERS, 7);
        let mut b: [u8; 9] = out[..9].try_into().unwrap();
        assert_eq!(Head::parse(&b), Head { len: 0x012345, kind: HEADERS, flags: END_HEADERS, stream: 7 });
        b[5] |= 0x80;
        assert_eq!(Head::parse(&b).stream, 7);
    }

    #[test]
    fn data_splits_at_frame_size() {
        let mut out = Vec::new();
        put_data(&mut out, 1, &[7; 40], true, 16);
        let heads: Vec<Head> = [0, 25, 50].iter().map(|&o| Head::parse(out[o..o + 9].try_into().unwrap())).collect();
        assert_eq!(heads.iter().map(|h| h.len).collect::<Vec<_>>(), [16, 16, 8]);
        assert_eq!(heads.iter().map(|h| h.has(END_STREAM)).collect::<Vec<_>>(), [false, false, true]);
        out.clear();
        put_data(&mut out, 1, &[], true, 16);
        assert_eq!(out.len(), 9);
    }

    #[test]
    fn long_header_blocks_continue() {
        let mut out = vec![1, 2, 3];
        let start = reserve_head(&mut out);
        out.extend_from_slice(&[9; 40]);
        finish_headers(&mut out, start, 3, true, 16);
        let h = Head::parse(out[3..12].try_into().unwrap());
        assert_eq!((h.len, h.kind, h.has(END_STREAM), h.has(END_HEADERS)), (16, HEADERS, true, false));
        let c1 = Head::parse(out[28..37].try_into().unwrap());
        assert_eq!((c1.kind, c1.len, c1.has(END_HEADERS)), (CONTINUATION, 16, false));
        let c2 = Head::parse(out[53..62].try_into().unwrap());
        assert_eq!((c2.kind, c2.len, c2.has(END_HEADERS)), (CONTINUATION, 8, true));
        assert_eq!(out.len(), 62 + 8);
    }

    #[test]
    fn padding_is_checked() {
        let h = Head { len: 4, kind: DATA, flags: PADDED, stream: 1 };
        assert_eq!(unpad(&h, &[2, 9, 0, 0]), Ok((1, 2)));
        assert_eq!(unpad(&h, &[4, 9, 0, 0]), Err(Reason::PROTOCOL_ERROR));
        assert_eq!(unpad(&h, &[]), Err(Reason::FRAME_SIZE_ERROR));
    }
}
