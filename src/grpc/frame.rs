//! The gRPC length-prefixed message frame: 1 byte compression flag, 4 bytes
//! big-endian length, then the message.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes before each message.
pub const HEADER_LEN: usize = 5;

/// Messages up to this size are copied behind their header into one buffer;
/// larger ones are sent as two chunks so the payload is never copied.
const COPY_LIMIT: usize = 16 * 1024;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("compressed messages are not supported (send with grpc-encoding identity)")]
    Compressed,
    #[error("invalid compression flag {0}")]
    BadFlag(u8),
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("stream ended inside a gRPC frame ({have} bytes of an unfinished frame)")]
    Truncated { have: usize },
}

/// Frames one message, copying it behind the header (small messages) or
/// returning header and payload separately (large ones).
pub fn encode_message(payload: Bytes) -> (Bytes, Option<Bytes>) {
    if payload.len() <= COPY_LIMIT {
        let mut framed = BytesMut::with_capacity(HEADER_LEN + payload.len());
        put_frame(&mut framed, 0, &payload);
        return (framed.freeze(), None);
    }
    let mut head = BytesMut::with_capacity(HEADER_LEN);
    head.put_u8(0);
    head.put_u32(payload.len() as u32);
    (head.freeze(), Some(payload))
}

/// Appends one frame with the given flag byte (gRPC-Web marks its trailer
/// frame with 0x80).
pub fn put_frame(out: &mut BytesMut, flag: u8, payload: &[u8]) {
    out.reserve(HEADER_LEN + payload.len());
    out.put_u8(flag);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
}

/// Encodes a protobuf message directly behind its frame header, one buffer,
/// one pass.
pub fn encode_prost<M: prost::Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    msg.encode(&mut buf).expect("buffer reserved for the whole message");
    buf.freeze()
}

/// Splits a byte stream (h2 DATA chunks) into messages. A message wholly
/// inside one chunk is returned as a slice of that chunk (no copy); only
/// messages that straddle chunks are reassembled, from just their own bytes.
#[derive(Debug)]
pub struct Decoder {
    /// What is left of the latest chunk; follows `spill` in the stream.
    head: Bytes,
    /// Reassembly buffer for a message spread over chunks.
    spill: BytesMut,
    max: usize,
}

impl Decoder {
    pub fn new(max_message_size: usize) -> Decoder {
        Decoder { head: Bytes::new(), spill: BytesMut::new(), max: max_message_size }
    }

    pub fn push(&mut self, chunk: Bytes) {
        // Left in `head`: the start of a frame that continues in `chunk`.
        if !self.head.is_empty() {
            self.spill.extend_from_slice(&self.head);
        }
        self.head = chunk;
    }

    /// Bytes held that do not yet form a whole message.
    pub fn buffered(&self) -> usize {
        self.head.len() + self.spill.len()
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        if !self.spill.is_empty() {
            // Complete the straddling frame from `head`, copying only its own
            // bytes so that the frames after it are still sliced, not copied.
            self.fill(HEADER_LEN);
            let Some(len) = header(&self.spill, self.max)? else { return Ok(None) };
            // No reserve for the declared length: a peer that announces a
            // large message and sends little must not make us hold it.
            self.fill(HEADER_LEN + len);
            if self.spill.len() < HEADER_LEN + len {
                return Ok(None);
            }
            let _ = self.spill.split_to(HEADER_LEN);
            return Ok(Some(self.spill.split_to(len).freeze()));
        }
        let Some(len) = header(&self.head, self.max)? else { return Ok(None) };
        if self.head.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let _ = self.head.split_to(HEADER_LEN);
        Ok(Some(self.head.split_to(len)))
    }

    /// Moves bytes from `head` to `spill` until it holds `want`, or `head`
    /// runs out.
    fn fill(&mut self, want: usize) {
        let n = want.saturating_sub(self.spill.len()).min(self.head.len());
        self.spill.extend_from_slice(&self.head.split_to(n));
    }

    /// Called at end of stream: an error if a partial frame is left.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buffered() {
            0 => Ok(()),
            have => Err(FrameError::Truncated { have }),
        }
    }
}

/// Validates a frame header at the start of `buf`; `None` if incomplete.
fn header(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    match buf[0] {
        0 => {}
        1 => return Err(FrameError::Compressed),
        f => return Err(FrameError::BadFlag(f)),
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(msgs: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            let (h, tail) = encode_message(Bytes::copy_from_slice(m));
            out.extend_from_slice(&h);
            if let Some(t) = tail {
                out.extend_from_slice(&t);
            }
        }
        out
    }

    fn drain(d: &mut Decoder) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(m) = d.next_message().unwrap() {
            out.push(m.to_vec());
        }
        out
    }

    #[test]
    fn every_chunking_yields_the_same_messages() {
        let big = vec![7u8; COPY_LIMIT + 3];
        let msgs: Vec<&[u8]> = vec![b"hello", b"", &big, b"x"];
        let wire = framed(&msgs);
        for step in [1, 2, 3, 5, 7, 64, wire.len()] {
            let mut d = Decoder::new(1 << 20);
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                d.push(Bytes::copy_from_slice(chunk));
                got.extend(drain(&mut d));
            }
            assert_eq!(got, msgs.iter().map(|m| m.to_vec()).collect::<Vec<_>>(), "step {step}");
            d.finish().unwrap();
        }
    }

    #[test]
    fn a_message_inside_one_chunk_is_not_copied() {
        let wire = Bytes::from(framed(&[b"abc", b"defg"]));
        let mut d = Decoder::new(100);
        d.push(wire.clone());
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.as_ptr(), wire[HEADER_LEN..].as_ptr());
    }

    #[test]
    fn frames_after_a_straddling_one_are_not_copied() {
        let wire = framed(&[b"abc", b"defg", b"hi"]);
        let (first, second) = wire.split_at(4);
        let second = Bytes::copy_from_slice(second);
        let mut d = Decoder::new(100);
        d.push(Bytes::copy_from_slice(first));
        assert_eq!(d.next_message(), Ok(None));
        d.push(second.clone());
        assert_eq!(d.next_message().unwrap().unwrap(), &b"abc"[..]);
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.as_ptr(), second[4 + HEADER_LEN..].as_ptr(), "sliced from the second chunk");
        assert_eq!(drain(&mut d), [b"hi".to_vec()]);
        d.finish().unwrap();
    }

    #[test]
    fn rejects_bad_frames() {
        let mut d = Decoder::new(4);
        d.push(Bytes::from_static(&[0, 0, 0, 0, 5, 1, 2, 3, 4, 5]));
        assert_eq!(d.next_message(), Err(FrameError::TooLarge { len: 5, max: 4 }));
        let mut d = Decoder::new(4);
        d.push(Bytes::from_static(&[1, 0, 0, 0, 1, 9]));
        assert_eq!(d.next_message(), Err(FrameError::Compressed));
        let mut d = Decoder::new(4);
        d.push(Bytes::from_static(&[2, 0, 0, 0, 1, 9]));
        assert_eq!(d.next_message(), Err(FrameError::BadFlag(2)));
        let mut d = Decoder::new(4);
        d.push(Bytes::from_static(&[0, 0, 0, 0, 3, 9]));
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated { have: 6 }));
    }
}
