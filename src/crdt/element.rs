//! Element identity for GSet/ORSet elements and ORMap keys (spec §5.6).
//!
//! Elements arrive as `Any`s and are the same element when their type URLs
//! and bytes are equal. Protobuf encoding is not canonical, though: an SDK
//! may write a default field explicitly, repeat a field or use an over-long
//! varint. Cloudstate's primitives (`p.cloudstate.io/<type>`, field 1 of that
//! type) and JSON values (`json.cloudstate.io/*`, `bytes json = 1`) have a
//! known shape, so they are decoded and re-encoded into one canonical form;
//! any other message is compared by its bytes as sent, which is what the
//! reference proxy does and why SDKs must serialise set elements stably.

use std::fmt;

use bytes::Bytes;
use prost::Message;

use super::error::CrdtError;
use crate::proto::google::protobuf::Any;

/// Type URL prefix of Cloudstate's primitive encodings.
const PRIMITIVE: &str = "p.cloudstate.io/";
/// Type URL prefix of Cloudstate's JSON encoding.
const JSON: &str = "json.cloudstate.io/";

/// A set element or map key in canonical form; ordered by type URL, then
/// bytes, so every iteration (and every delta sent) is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    type_url: String,
    value: Bytes,
}

impl Element {
    /// The canonical element for `any`; a primitive whose bytes do not
    /// decode as its type is refused.
    pub fn from_any(any: &Any) -> Result<Element, CrdtError> {
        let value = canonical(&any.type_url, &any.value)
            .map_err(|e| CrdtError::BadElement { type_url: any.type_url.clone(), reason: e.to_string() })?;
        Ok(Element { type_url: any.type_url.clone(), value })
    }

    /// All of `anys`, or the first refusal (so nothing is half-applied).
    pub fn from_anys(anys: &[Any]) -> Result<Vec<Element>, CrdtError> {
        anys.iter().map(Element::from_any).collect()
    }

    /// The element as sent to the user function (its canonical bytes).
    pub fn to_any(&self) -> Any {
        Any { type_url: self.type_url.clone(), value: self.value.clone() }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.type_url, self.value)
    }
}

/// Declares the one-field messages the primitives are encoded as.
macro_rules! wrapper {
    ($name:ident, [$($kind:tt)+], $ty:ty) => {
        #[derive(Clone, PartialEq, prost::Message)]
        struct $name {
            #[prost($($kind)+, tag = "1")]
            value: $ty,
        }
    };
}
wrapper!(StringValue, [string], String);
wrapper!(BytesValue, [bytes = "bytes"], Bytes);
wrapper!(BoolValue, [bool], bool);
wrapper!(Int32Value, [int32], i32);
wrapper!(Int64Value, [int64], i64);
wrapper!(FloatValue, [float], f32);
wrapper!(DoubleValue, [double], f64);

fn canonical(type_url: &str, value: &Bytes) -> Result<Bytes, prost::DecodeError> {
    if type_url.starts_with(JSON) {
        return reencode::<BytesValue>(value);
    }
    match type_url.strip_prefix(PRIMITIVE) {
        Some("string") => reencode::<StringValue>(value),
        Some("bytes") => reencode::<BytesValue>(value),
        Some("bool") => reencode::<BoolValue>(value),
        Some("int32") => reencode::<Int32Value>(value),
        Some("int64") => reencode::<Int64Value>(value),
        Some("float") => reencode::<FloatValue>(value),
        Some("double") => reencode::<DoubleValue>(value),
        _ => Ok(value.clone()),
    }
}

/// Decoding keeps the last occurrence of field 1 and drops unknown fields;
/// encoding omits a default value, so all spellings of a value meet here.
fn reencode<T: Message + Default>(value: &Bytes) -> Result<Bytes, prost::DecodeError> {
    let canonical = T::decode(value.clone())?.encode_to_vec();
    Ok(if canonical == value[..] { value.clone() } else { canonical.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: &[u8]) -> Any {
        Any { type_url: type_url.into(), value: Bytes::copy_from_slice(value) }
    }
    fn element(type_url: &str, value: &[u8]) -> Element {
        Element::from_any(&any(type_url, value)).unwrap()
    }

    #[test]
    fn primitive_spellings_of_one_value_are_one_element() {
        let s = "p.cloudstate.io/string";
        // Explicit empty string versus the default's empty encoding.
        assert_eq!(element(s, &[0x0a, 0x00]), element(s, &[]));
        assert_eq!(element(s, &[0x0a, 0x00]).to_any(), any(s, &[]));
        // A repeated field: the last one counts; unknown field 2 is dropped.
        assert_eq!(element(s, &[0x0a, 0x01, b'x', 0x0a, 0x01, b'y', 0x10, 0x05]), element(s, &[0x0a, 0x01, b'y']));
        // An over-long varint.
        let i = "p.cloudstate.io/int32";
        assert_eq!(element(i, &[0x08, 0x81, 0x00]), element(i, &[0x08, 0x01]));
        // Negative zero is the default and encodes as nothing.
        let d = "p.cloudstate.io/double";
        let mut negative_zero = vec![0x09];
        negative_zero.extend((-0.0f64).to_le_bytes());
        assert_eq!(element(d, &negative_zero), element(d, &[]));
        // JSON values are `bytes json = 1`.
        let j = "json.cloudstate.io/Thing";
        assert_eq!(element(j, &[0x0a, 0x00]), element(j, &[]));
    }

    #[test]
    fn distinct_values_and_types_stay_distinct() {
        let s = "p.cloudstate.io/string";
        assert_ne!(element(s, &[0x0a, 0x01, b'a']), element(s, &[0x0a, 0x01, b'b']));
        assert_ne!(element(s, &[0x0a, 0x01, b'a']), element("p.cloudstate.io/bytes", &[0x0a, 0x01, b'a']));
        assert!(element(s, &[0x0a, 0x01, b'a']) < element(s, &[0x0a, 0x01, b'b']));
    }

    #[test]
    fn other_messages_compare_by_bytes_as_sent() {
        let t = "type.googleapis.com/some.Message";
        // Not canonicalised: the explicit default stays distinct.
        assert_ne!(element(t, &[0x0a, 0x00]), element(t, &[]));
        assert_eq!(element(t, &[0x0a, 0x00]).to_any(), any(t, &[0x0a, 0x00]));
    }

    #[test]
    fn malformed_primitives_are_refused() {
        for (type_url, bytes) in [
            ("p.cloudstate.io/string", &[0x0a, 0x01, 0xff][..]),
            ("p.cloudstate.io/string", &[0x0a, 0x05, b'a']),
            ("p.cloudstate.io/int64", &[0x08]),
        ] {
            let err = Element::from_any(&any(type_url, bytes)).unwrap_err();
            assert!(matches!(err, CrdtError::BadElement { .. }), "{type_url} {bytes:?}: {err}");
        }
    }
}
