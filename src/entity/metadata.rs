//! Between HTTP/2 headers and Cloudstate `Metadata`.

use crate::http2::Headers;

use crate::proto::cloudstate::{metadata_entry::Value, Metadata, MetadataEntry};

/// All request headers (not the pseudo-headers) as string entries (binary
/// `-bin` headers keep their base64 text), as the reference proxy passes
/// them to actions.
pub fn from_headers(headers: &Headers) -> Metadata {
    let entries = headers
        .regular()
        .filter_map(|(k, v)| {
            let key = std::str::from_utf8(k).ok()?;
            let value = std::str::from_utf8(v).ok().filter(|v| v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))?;
            Some(MetadataEntry { key: key.to_owned(), value: Some(Value::StringValue(value.to_owned())) })
        })
        .collect();
    Metadata { entries }
}

/// Whether `name` is a valid lower-case HTTP/2 field name (RFC 9110 token).
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` is a valid field value (visible ASCII, spaces and tabs
/// inside, none at the ends).
fn valid_value(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) && !value.first().is_some_and(|b| *b == b' ' || *b == b'\t')
        && !value.last().is_some_and(|b| *b == b' ' || *b == b'\t')
}

/// String entries of reply metadata as response headers; entries that are
/// not valid header names or values, and protocol-reserved ones, are dropped.
pub fn to_headers(metadata: Option<&Metadata>) -> Headers {
    let mut headers = Headers::new();
    for entry in metadata.map(|m| m.entries.as_slice()).unwrap_or_default() {
        let Some(Value::StringValue(value)) = &entry.value else { continue };
        let key = entry.key.to_ascii_lowercase();
        if key.starts_with(':') || key.starts_with("grpc-") || matches!(key.as_str(), "content-type" | "te" | "connection") {
            continue;
        }
        if valid_name(key.as_bytes()) && valid_value(value.as_bytes()) {
            headers.push(key.as_bytes(), value.as_bytes());
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_reserved_are_dropped() {
        let mut h = Headers::new();
        h.push(b":path", b"/a/B");
        h.push(b"x-user", b"ann");
        h.push(b"content-type", b"application/grpc");
        let m = from_headers(&h);
        assert_eq!(m.entries.len(), 2);
        let back = to_headers(Some(&m));
        assert_eq!(back.get(b"x-user"), Some(&b"ann"[..]));
        assert!(back.get(b"content-type").is_none());
        let bad = Metadata {
            entries: vec![MetadataEntry { key: "bad key".into(), value: Some(Value::StringValue("v".into())) }],
        };
        assert!(to_headers(Some(&bad)).is_empty());
    }
}
