//! Between HTTP/2 headers and Cloudstate `Metadata`.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::proto::cloudstate::{metadata_entry::Value, Metadata, MetadataEntry};

/// All request headers as string entries (binary `-bin` headers keep their
/// base64 text), as the reference proxy passes them to actions.
pub fn from_headers(headers: &HeaderMap) -> Metadata {
    let entries = headers
        .iter()
        .filter_map(|(k, v)| {
            let value = v.to_str().ok()?;
            Some(MetadataEntry { key: k.as_str().to_owned(), value: Some(Value::StringValue(value.to_owned())) })
        })
        .collect();
    Metadata { entries }
}

/// String entries of reply metadata as response headers; entries that are
/// not valid header names or values, and protocol-reserved ones, are dropped.
pub fn to_headers(metadata: Option<&Metadata>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for entry in metadata.map(|m| m.entries.as_slice()).unwrap_or_default() {
        let Some(Value::StringValue(value)) = &entry.value else { continue };
        let key = entry.key.to_ascii_lowercase();
        if key.starts_with(':') || key.starts_with("grpc-") || matches!(key.as_str(), "content-type" | "te" | "connection") {
            continue;
        }
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(k, v);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_reserved_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("ann"));
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        let m = from_headers(&h);
        assert_eq!(m.entries.len(), 2);
        let back = to_headers(Some(&m));
        assert_eq!(back.get("x-user").unwrap(), "ann");
        assert!(back.get("content-type").is_none());
        let bad = Metadata {
            entries: vec![MetadataEntry { key: "bad key".into(), value: Some(Value::StringValue("v".into())) }],
        };
        assert!(to_headers(Some(&bad)).is_empty());
    }
}
