//! The HTTP/1.1 head parser on any bytes: never panics, and an accepted
//! head is a fixed point: printed back as a canonical head and parsed again
//! it yields the same method, path and headers. Fields come back trimmed,
//! without line breaks; a method or path never holds a space, a header
//! name never a colon.
#![no_main]

use libfuzzer_sys::fuzz_target;
use massa::server::http1::parse_head;

fuzz_target!(|data: &[u8]| {
    let Ok(head) = parse_head(data) else { return };
    for part in [&head.method, &head.path] {
        assert!(!part.contains(' ') && !part.contains("\r\n"), "{part:?}");
    }
    for (name, value) in &head.headers {
        assert!(!name.contains(':') && !name.contains("\r\n") && !value.contains("\r\n"), "{name:?}: {value:?}");
        assert_eq!((name.trim(), value.trim()), (name.as_str(), value.as_str()));
    }
    let mut printed = format!("{} {} HTTP/1.1\r\n", head.method, head.path);
    for (name, value) in &head.headers {
        printed.push_str(&format!("{name}: {value}\r\n"));
    }
    printed.push_str("\r\n");
    let again = parse_head(printed.as_bytes()).unwrap_or_else(|e| panic!("reprinted head {printed:?} rejected: {e:?}"));
    assert_eq!(again, head);
});
