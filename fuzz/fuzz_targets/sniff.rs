//! Protocol sniffing, read byte by byte as a connection might deliver it:
//! `classify` answers "need more" only for a strict prefix of something it
//! could still accept, never beyond the 24-byte HTTP/2 preface, and once it
//! decides, every longer buffer gets the same answer. The answer matches
//! the rules: H2 exactly for the preface, HTTP/1.1 for a request line's
//! `METHOD ` start.
#![no_main]

use libfuzzer_sys::fuzz_target;
use massa::server::{classify, Protocol};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    // Everything is decided by the preface's length; look a little further.
    let data = &data[..data.len().min(PREFACE.len() + 8)];
    let mut decided = None;
    for end in 1..=data.len() {
        let buf = &data[..end];
        let answer = classify(buf);
        match (decided, answer) {
            (None, None) => assert!(buf.len() < PREFACE.len(), "still undecided after {buf:?}"),
            (None, Some(p)) => {
                assert_eq!(p, expected(buf), "{buf:?}");
                decided = Some(p);
            }
            (Some(p), a) => assert_eq!(a, Some(p), "{buf:?} changed its mind"),
        }
    }
});

/// The protocol a decided buffer speaks.
fn expected(buf: &[u8]) -> Protocol {
    if buf.starts_with(PREFACE) {
        return Protocol::H2;
    }
    let method = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match buf.get(method) {
        Some(b' ') if (3..=7).contains(&method) => Protocol::Http1,
        _ => Protocol::Unknown,
    }
}
