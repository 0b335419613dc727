//! gRPC status codes and the `grpc-status` / `grpc-message` trailers.

use std::fmt;

use crate::http2::Headers;

/// The gRPC status codes, numbered as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// Maps a wire value; unknown values become `Unknown`, as gRPC specifies.
    pub fn from_u32(v: u32) -> Code {
        use Code::*;
        const ALL: [Code; 17] = [
            Ok, Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists, PermissionDenied,
            ResourceExhausted, FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal, Unavailable, DataLoss,
            Unauthenticated,
        ];
        ALL.get(v as usize).copied().unwrap_or(Unknown)
    }

    /// The trailer value, without allocating.
    pub fn wire_value(self) -> &'static [u8] {
        const TEXT: [&str; 17] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"];
        TEXT[self as usize].as_bytes()
    }

    /// The canonical upper-case name (`RESOURCE_EXHAUSTED`), used in metrics labels.
    pub fn name(self) -> &'static str {
        const NAMES: [&str; 17] = [
            "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
            "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
            "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
        ];
        NAMES[self as usize]
    }
}

/// A call's outcome: a code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub message: String,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for Status {}

impl Status {
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status { code, message: message.into() }
    }

    pub fn ok() -> Status {
        Status::new(Code::Ok, "")
    }

    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }

    /// Writes `grpc-status` and, when non-empty, the percent-encoded `grpc-message`.
    pub fn write_to(&self, headers: &mut Headers) {
        headers.push(b"grpc-status", self.code.wire_value());
        if !self.message.is_empty() {
            headers.push(b"grpc-message", percent_encode(&self.message).as_bytes());
        }
    }

    /// The trailer fields on their own.
    pub fn to_headers(&self) -> Headers {
        let mut h = Headers::with_capacity(16 + self.message.len(), 2);
        self.write_to(&mut h);
        h
    }

    /// Reads `grpc-status` / `grpc-message` from trailers (or a trailers-only
    /// response). `None` when there is no `grpc-status`.
    pub fn from_headers(headers: &Headers) -> Option<Status> {
        let code = headers.get(b"grpc-status")?;
        let code = std::str::from_utf8(code).ok().and_then(|s| s.parse().ok()).map(Code::from_u32);
        let message = headers.get(b"grpc-message").map(percent_decode).unwrap_or_default();
        Some(Status::new(code.unwrap_or(Code::Unknown), message))
    }
}

/// Percent-encodes everything outside printable ASCII, and `%` itself, as the
/// gRPC HTTP/2 spec requires for `grpc-message`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`percent_encode`]; malformed escapes are kept verbatim.
pub fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_through_percent_encoding() {
        for s in ["plain", "100% sure", "naïve ✓", "line\nbreak", ""] {
            let enc = percent_encode(s);
            assert!(enc.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{enc}");
            assert_eq!(percent_decode(enc.as_bytes()), s);
        }
        assert_eq!(percent_decode(b"50%"), "50%");
        assert_eq!(percent_decode(b"%zz"), "%zz");
    }

    #[test]
    fn status_round_trips_through_headers() {
        let h = Status::new(Code::ResourceExhausted, "too big: 13 MiB").to_headers();
        assert_eq!(h.get(b"grpc-status"), Some(&b"8"[..]));
        assert_eq!(Status::from_headers(&h), Some(Status::new(Code::ResourceExhausted, "too big: 13 MiB")));
        assert_eq!(Code::from_u32(99), Code::Unknown);
    }
}
