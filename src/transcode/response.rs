//! Reply message → HTTP body (spec §4): protobuf JSON as the reference's
//! `JsonFormat.printer.includingDefaultValueFields()` prints it (lowerCamel
//! names, 64-bit integers as strings, default scalars and empty lists
//! printed, unset messages omitted), or a `google.api.HttpBody`'s data.

use std::borrow::Cow;

use base64::{prelude::BASE64_STANDARD, Engine};
use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MapKey, SerializeOptions, Value};
use serde_json::Value as Json;

use super::rule::{HttpRule, Reply};
use super::{RenderError, Rendered};
use crate::proto::google::api::HttpBody;

const PRINT: SerializeOptions = SerializeOptions::new().skip_default_fields(false);
const JSON: &str = "application/json";
/// What an `HttpBody` without a content type is sent as.
const OCTETS: &str = "application/octet-stream";

impl HttpRule {
    /// One reply message rendered for HTTP: JSON, or an `HttpBody`'s data
    /// as its content type.
    pub fn response(&self, payload: &[u8]) -> Result<Rendered, RenderError> {
        let decode = || {
            DynamicMessage::decode(self.output.clone(), payload).map_err(|e| RenderError(format!("{}: {e}", self.output.full_name())))
        };
        match &self.reply {
            Reply::Raw => raw(payload),
            Reply::Whole => Ok(json_body(json(&decode()?)?)),
            Reply::Message(field) => {
                let message = decode()?;
                Ok(json_body(json(message.get_field(field).as_message().expect("Reply::Message holds a message field"))?))
            }
            Reply::RawField(field) => {
                let message = decode()?;
                raw(&message.get_field(field).as_message().expect("Reply::RawField holds a message field").encode_to_vec())
            }
            Reply::Value(field) => {
                let mut body = Vec::with_capacity(64);
                through_value(&mut body, &decode()?.get_field(field), &field.kind())?;
                Ok(json_body(body))
            }
        }
    }
}

fn raw(encoded: &[u8]) -> Result<Rendered, RenderError> {
    let body = HttpBody::decode(encoded).map_err(|e| RenderError(format!("google.api.HttpBody: {e}")))?;
    let content_type = if body.content_type.is_empty() { Cow::Borrowed(OCTETS) } else { Cow::Owned(body.content_type) };
    Ok(Rendered { content_type, body: body.data.into() })
}

fn json_body(body: Vec<u8>) -> Rendered {
    Rendered { content_type: Cow::Borrowed(JSON), body }
}

fn json(message: &DynamicMessage) -> Result<Vec<u8>, RenderError> {
    let mut body = Vec::with_capacity(128);
    message
        .serialize_with_options(&mut serde_json::Serializer::new(&mut body), &PRINT)
        .map_err(|e| RenderError(e.to_string()))?;
    Ok(body)
}

/// The reference prints a non-message `response_body` field by parsing its
/// JSON into a `google.protobuf.Value` and printing that: every number
/// becomes a double (`7` → `7.0`), while strings (so 64-bit integers) stay
/// strings. Messages inside are printed as usual, then their numbers
/// converted the same way.
pub(super) fn through_value(out: &mut Vec<u8>, value: &Value, kind: &Kind) -> Result<(), RenderError> {
    let write = |out: &mut Vec<u8>, v: Json| serde_json::to_writer(out, &v).expect("JSON scalars write to a Vec");
    match value {
        Value::Bool(b) => write(out, Json::from(*b)),
        Value::I32(n) => write(out, Json::from(f64::from(*n))),
        Value::U32(n) => write(out, Json::from(f64::from(*n))),
        Value::I64(n) => write(out, Json::from(n.to_string())),
        Value::U64(n) => write(out, Json::from(n.to_string())),
        // Printed as a float, then read back as a double: `1.1`, not
        // `1.100000023841858`.
        Value::F32(n) if n.is_finite() => write(out, Json::from(n.to_string().parse::<f64>().expect("a float's text parses"))),
        Value::F64(n) if n.is_finite() => write(out, Json::from(*n)),
        Value::F32(n) => write(out, Json::from(non_finite(f64::from(*n)))),
        Value::F64(n) => write(out, Json::from(non_finite(*n))),
        Value::String(s) => write(out, Json::from(s.as_str())),
        Value::Bytes(b) => write(out, Json::from(BASE64_STANDARD.encode(b))),
        Value::EnumNumber(n) => match kind {
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => out.extend_from_slice(b"null"),
            Kind::Enum(e) => match e.get_value(*n) {
                Some(v) => write(out, Json::from(v.name())),
                None => write(out, Json::from(f64::from(*n))),
            },
            _ => unreachable!("an enum value has an enum kind"),
        },
        Value::Message(m) => integers_as_doubles(out, &json(m)?),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                through_value(out, item, kind)?;
            }
            out.push(b']');
        }
        Value::Map(entries) => {
            let Kind::Message(entry) = kind else { unreachable!("a map has a map-entry kind") };
            let value_kind = entry.map_entry_value_field().kind();
            let mut entries: Vec<_> = entries.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let key = match key {
                    MapKey::Bool(k) => k.to_string(),
                    MapKey::I32(k) => k.to_string(),
                    MapKey::I64(k) => k.to_string(),
                    MapKey::U32(k) => k.to_string(),
                    MapKey::U64(k) => k.to_string(),
                    MapKey::String(k) => k.clone(),
                };
                write(out, Json::from(key));
                out.push(b':');
                through_value(out, value, &value_kind)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn non_finite(n: f64) -> &'static str {
    if n.is_nan() {
        "NaN"
    } else if n > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Copies printed JSON, turning each integer literal outside strings into
/// a double literal (`7` → `7.0`).
fn integers_as_doubles(out: &mut Vec<u8>, json: &[u8]) {
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            (in_string, escaped) = match (escaped, b) {
                (true, _) => (true, false),
                (false, b'\\') => (true, true),
                (false, b'"') => (false, false),
                _ => (true, false),
            };
            out.push(b);
            i += 1;
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while i < json.len() && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                i += 1;
            }
            let number = &json[start..i];
            out.extend_from_slice(number);
            if !number.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                out.extend_from_slice(b".0");
            }
        } else {
            in_string = b == b'"';
            out.push(b);
            i += 1;
        }
    }
}
