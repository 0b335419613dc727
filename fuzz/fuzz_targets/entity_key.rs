//! The entity-key scanner against a full protobuf decoder: whenever
//! prost-reflect accepts the bytes as the key message, the scanner must
//! produce exactly the id the decoded message implies (or `Missing` when a
//! string key is empty). Bytes the decoder rejects may be scanned leniently,
//! but never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use massa::entity::key::{extract, KeyError};
use massa_fuzz::{key_fields, KEY_SPECS};
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else { return };
    let spec = &KEY_SPECS[usize::from(selector) % KEY_SPECS.len()];
    let scanned = extract(message, &key_fields(spec));
    if let Ok(decoded) = DynamicMessage::decode(spec.clone(), message) {
        assert_eq!(scanned, expected_id(spec, &decoded), "spec {}, input {message:02x?}", spec.name());
    }
});

/// The id as the reference proxy derives it from a decoded message.
fn expected_id(spec: &MessageDescriptor, decoded: &DynamicMessage) -> Result<String, KeyError> {
    let mut parts = Vec::new();
    for field in spec.fields() {
        parts.push(match &*decoded.get_field(&field) {
            Value::String(s) if s.is_empty() => return Err(KeyError::Missing),
            Value::String(s) => s.clone(),
            Value::I32(v) | Value::EnumNumber(v) => v.to_string(),
            Value::I64(v) => v.to_string(),
            Value::U32(v) => v.to_string(),
            Value::U64(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
            other => unreachable!("fixture key field holds {other:?}"),
        });
    }
    Ok(parts.join("-"))
}
