//! The gRPC frame decoder fed arbitrary bytes in arbitrary chunks, checked
//! against a one-shot reading of the whole stream: the same messages, the
//! same error, the same leftover whatever the chunking; re-encoding the
//! messages reproduces the bytes consumed; `buffered` is always what was
//! pushed minus what was consumed; a frame wholly inside one chunk comes
//! back as a slice of that chunk, not a copy.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use massa::grpc::{encode_message, Decoder, FrameError, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    // [max size: u16 LE, scaled] [n] [n chunk sizes] [stream]
    let [lo, hi, n, rest @ ..] = data else { return };
    let max = usize::from(u16::from_le_bytes([*lo, *hi])) * 4;
    let (sizes, stream) = rest.split_at(usize::from(*n % 16).min(rest.len()));
    let (want, want_end) = one_shot(stream, max);

    let mut decoder = Decoder::new(max);
    let (mut got, mut got_end) = (Vec::new(), None);
    let mut consumed = 0;
    for (pushed_to, chunk) in chunks(stream, sizes) {
        decoder.push(chunk.clone());
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    let frame_start = consumed;
                    consumed += HEADER_LEN + message.len();
                    let in_chunk = pushed_to - chunk.len()..pushed_to;
                    if !message.is_empty() && in_chunk.contains(&frame_start) && consumed <= pushed_to {
                        let offset = (message.as_ptr() as usize).wrapping_sub(chunk.as_ptr() as usize);
                        assert_eq!(
                            offset,
                            frame_start + HEADER_LEN - in_chunk.start,
                            "frame inside one chunk was copied"
                        );
                    }
                    got.push(message);
                }
                Ok(None) => break,
                Err(e) => {
                    got_end = Some(e);
                    break;
                }
            }
        }
        if got_end.is_some() {
            break;
        }
        assert_eq!(decoder.buffered(), pushed_to - consumed);
    }
    assert_eq!(got, want);
    assert_eq!(got_end, want_end);
    let mut reencoded = Vec::new();
    for message in got {
        let (head, tail) = encode_message(message);
        reencoded.extend_from_slice(&head);
        reencoded.extend_from_slice(tail.as_deref().unwrap_or_default());
    }
    assert_eq!(reencoded, stream[..consumed]);
    if want_end.is_none() {
        match stream.len() - consumed {
            0 => assert_eq!(decoder.finish(), Ok(())),
            have => assert_eq!(decoder.finish(), Err(FrameError::Truncated { have })),
        }
    }
});

/// The stream cut into chunks whose sizes cycle through `sizes` (each + 1;
/// one chunk if none), each with the stream offset at its end.
fn chunks<'a>(stream: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = (usize, Bytes)> + 'a {
    let mut at = 0;
    let mut size = sizes.iter().map(|&s| usize::from(s) + 1).cycle();
    std::iter::from_fn(move || {
        if at == stream.len() {
            return None;
        }
        let end = (at + size.next().unwrap_or(stream.len())).min(stream.len());
        let chunk = Bytes::copy_from_slice(&stream[at..end]);
        at = end;
        Some((end, chunk))
    })
}

/// The whole stream read at once, written straight from the framing rules:
/// the messages, then the error that stops reading, if any.
fn one_shot(mut stream: &[u8], max: usize) -> (Vec<Bytes>, Option<FrameError>) {
    let mut messages = Vec::new();
    while let [flag, l0, l1, l2, l3, body @ ..] = stream {
        let len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
        let error = match flag {
            0 if len > max => FrameError::TooLarge { len, max },
            0 if body.len() < len => break,
            0 => {
                messages.push(Bytes::copy_from_slice(&body[..len]));
                stream = &body[len..];
                continue;
            }
            1 => FrameError::Compressed,
            f => FrameError::BadFlag(*f),
        };
        return (messages, Some(error));
    }
    (messages, None)
}
