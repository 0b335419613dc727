//! HTTP request → protobuf request message (spec §4): the body per the
//! rule, then query parameters, then path variables, each overriding what
//! came before, as the reference proxy merges them.

use std::borrow::Cow;

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value};

use super::matcher::Method;
use super::rule::{Body, HttpRule, PathVar};
use super::{BadRequest, Bindings};
use crate::proto::google::api::HttpBody;

/// Unknown JSON fields are rejected (the reference's parser does not
/// ignore them); both JSON and proto field names are accepted.
const PARSE: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(true);

/// Bytes in paths and queries: standard or URL-safe base64, padded or not.
const PADDING_OPTIONAL: GeneralPurposeConfig = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, PADDING_OPTIONAL);
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, PADDING_OPTIONAL);

fn bad(reason: impl Into<String>) -> BadRequest {
    BadRequest(reason.into())
}

impl HttpRule {
    /// The protobuf request message: body per the rule, then the query
    /// string (raw, after `?`) unless the body is the whole message, then
    /// the path variables.
    pub fn request(&self, bindings: &Bindings, query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Result<Vec<u8>, BadRequest> {
        let mut message = self.body_message(content_type, body)?;
        if let Some(query) = query.filter(|_| self.body.takes_query()) {
            apply_query(&mut message, query)?;
        }
        for (var, raw) in self.vars.iter().zip(&bindings.0) {
            apply_path_var(&mut message, var, raw)?;
        }
        Ok(message.encode_to_vec())
    }

    fn body_message(&self, content_type: Option<&str>, body: &[u8]) -> Result<DynamicMessage, BadRequest> {
        if self.method == Method::Get && !body.is_empty() {
            return Err(bad("A GET request must not have a body"));
        }
        let mut message = DynamicMessage::new(self.input.clone());
        if self.method == Method::Get {
            return Ok(message);
        }
        match &self.body {
            Body::None => {}
            Body::Whole => {
                check_json(content_type)?;
                message = parse_json(self.input.clone(), body)?;
            }
            Body::Message(field) => {
                check_json(content_type)?;
                let Kind::Message(desc) = field.kind() else { unreachable!("Body::Message holds a message field") };
                message.set_field(field, Value::Message(parse_json(desc, body)?));
            }
            Body::Value(field) => {
                check_json(content_type)?;
                // Parsed as a value first, so a body like `1,"other":2`
                // cannot smuggle in other fields.
                let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(format!("Malformed JSON body: {e}")))?;
                let wrapped = serde_json::Value::Object([(field.name().to_owned(), value)].into_iter().collect());
                message = DynamicMessage::deserialize_with_options(self.input.clone(), wrapped, &PARSE)
                    .map_err(|e| bad(format!("Malformed JSON body: {e}")))?;
            }
            Body::Raw(None) => message = http_body(self.input.clone(), content_type, body),
            Body::Raw(Some(field)) => {
                let Kind::Message(desc) = field.kind() else { unreachable!("Body::Raw holds a message field") };
                message.set_field(field, Value::Message(http_body(desc, content_type, body)));
            }
        }
        Ok(message)
    }
}

/// A body rule needs `application/json` (parameters such as `charset`
/// allowed).
fn check_json(content_type: Option<&str>) -> Result<(), BadRequest> {
    let Some(content_type) = content_type else {
        return Err(bad("Content-Type application/json is required for a request with a body"));
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(bad(format!("Content-Type must be application/json, not [{content_type}]")))
    }
}

fn parse_json(desc: MessageDescriptor, body: &[u8]) -> Result<DynamicMessage, BadRequest> {
    let mut json = serde_json::Deserializer::from_slice(body);
    DynamicMessage::deserialize_with_options(desc, &mut json, &PARSE)
        .and_then(|m| json.end().map(|()| m))
        .map_err(|e| bad(format!("Malformed JSON body: {e}")))
}

fn http_body(desc: MessageDescriptor, content_type: Option<&str>, body: &[u8]) -> DynamicMessage {
    let raw = HttpBody {
        content_type: content_type.unwrap_or_default().to_owned(),
        data: body.to_vec().into(),
        extensions: Vec::new(),
    };
    DynamicMessage::decode(desc, raw.encode_to_vec().as_slice()).expect("google.api.HttpBody decodes as itself")
}

/// `a.b=1&a.b=2&c=x`: form-encoded; `a.b` names a field path (proto or
/// JSON names); repeated fields take every value, others exactly one.
fn apply_query(message: &mut DynamicMessage, query: &str) -> Result<(), BadRequest> {
    let mut set: Vec<Vec<FieldDescriptor>> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key, true, false).map_err(|e| bad(format!("Query parameter {e}")))?;
        let value = percent_decode(value, true, false).map_err(|e| bad(format!("Query parameter [{key}]: {e}")))?;
        let fields = query_fields(&message.descriptor(), &key)?;
        let last = fields.last().expect("a field path has a field");
        let value = parse_scalar(last, &value).map_err(|e| bad(format!("Query parameter [{key}]: {e}")))?;
        if last.is_list() {
            let slot = field_slot(message, &fields);
            slot.as_list_mut().expect("a repeated field holds a list").push(value);
        } else if set.contains(&fields) {
            return Err(bad(format!("Multiple values sent for non-repeated field by query parameter [{key}]")));
        } else {
            *field_slot(message, &fields) = value;
            set.push(fields);
        }
    }
    Ok(())
}

/// The field path a query key names: singular messages down to a scalar
/// or repeated scalar (spec §4: query parameters cannot address messages).
fn query_fields(desc: &MessageDescriptor, key: &str) -> Result<Vec<FieldDescriptor>, BadRequest> {
    let mut desc = desc.clone();
    let mut fields = Vec::new();
    let mut names = key.split('.').peekable();
    while let Some(name) = names.next() {
        let field = desc
            .get_field_by_name(name)
            .or_else(|| desc.get_field_by_json_name(name))
            .ok_or_else(|| bad(format!("Query parameter [{key}] refers to a non-existent field")))?;
        let kind = field.kind();
        let is_message = matches!(kind, Kind::Message(_));
        fields.push(field);
        match kind {
            Kind::Message(inner) if names.peek().is_some() && !fields.last().is_some_and(FieldDescriptor::is_list) => desc = inner,
            _ if names.peek().is_some() => {
                return Err(bad(format!("Query parameter [{key}]: [{name}] is not a singular message field")))
            }
            _ if is_message => return Err(bad(format!("Query parameter [{key}] refers to a message type"))),
            _ => {}
        }
    }
    Ok(fields)
}

fn apply_path_var(message: &mut DynamicMessage, var: &PathVar, raw: &str) -> Result<(), BadRequest> {
    let text = percent_decode(raw, false, var.multi).map_err(|e| bad(format!("Path parameter [{}]: {e}", var.name)))?;
    let field = var.fields.last().expect("a path variable has a field");
    let value = parse_scalar(field, &text).map_err(|e| bad(format!("Path parameter [{}]: {e}", var.name)))?;
    *field_slot(message, &var.fields) = value;
    Ok(())
}

/// The value slot of a field path, creating the messages on the way.
fn field_slot<'m>(message: &'m mut DynamicMessage, fields: &[FieldDescriptor]) -> &'m mut Value {
    let (last, outer) = fields.split_last().expect("a field path has a field");
    let mut message = message;
    for field in outer {
        message = message.get_field_mut(field).as_message_mut().expect("a path's inner fields are messages");
    }
    message.get_field_mut(last)
}

/// A path or query value as the field's type (an element's, for repeated
/// fields).
fn parse_scalar(field: &FieldDescriptor, text: &str) -> Result<Value, String> {
    fn number<T: std::str::FromStr>(text: &str, kind: &str, wrap: fn(T) -> Value) -> Result<Value, String> {
        text.parse().map(wrap).map_err(|_| format!("[{text}] is not a valid {kind}"))
    }
    match field.kind() {
        Kind::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("[{text}] is not a valid bool (true or false)")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => number(text, "int32", Value::I32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => number(text, "int64", Value::I64),
        Kind::Uint32 | Kind::Fixed32 => number(text, "uint32", Value::U32),
        Kind::Uint64 | Kind::Fixed64 => number(text, "uint64", Value::U64),
        Kind::Float => number(text, "float", Value::F32),
        Kind::Double => number(text, "double", Value::F64),
        Kind::String => Ok(Value::String(text.to_owned())),
        Kind::Bytes => BASE64
            .decode(text)
            .or_else(|_| BASE64_URL.decode(text))
            .map(|b| Value::Bytes(b.into()))
            .map_err(|_| format!("[{text}] is not valid base64")),
        Kind::Enum(e) => e
            .get_value_by_name(text)
            .map(|v| v.number())
            .or_else(|| text.parse().ok())
            .map(Value::EnumNumber)
            .ok_or_else(|| format!("[{text}] is not a value of enum [{}]", e.full_name())),
        Kind::Message(m) => Err(format!("message [{}] values cannot be given here", m.full_name())),
    }
}

/// Percent-decodes; `plus`: `+` is a space (query strings only);
/// `keep_slash`: `%2F` stays encoded (captures of several segments).
fn percent_decode(text: &str, plus: bool, keep_slash: bool) -> Result<Cow<'_, str>, String> {
    if !text.bytes().any(|b| b == b'%' || (plus && b == b'+')) {
        return Ok(Cow::Borrowed(text));
    }
    fn hex(b: Option<&u8>) -> Option<u8> {
        b.and_then(|b| (*b as char).to_digit(16)).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                    return Err(format!("[{text}] has an invalid percent-encoding"));
                };
                let decoded = hi << 4 | lo;
                if keep_slash && decoded == b'/' {
                    out.extend_from_slice(&bytes[i..i + 3]);
                } else {
                    out.push(decoded);
                }
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| format!("[{text}] is not UTF-8 once percent-decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", false, false).unwrap(), "a b+c");
        assert_eq!(percent_decode("a%20b+c", true, false).unwrap(), "a b c");
        assert_eq!(percent_decode("x%2Fy/z", false, true).unwrap(), "x%2Fy/z");
        assert_eq!(percent_decode("x%2fy", false, false).unwrap(), "x/y");
        assert_eq!(percent_decode("%C3%A9", false, false).unwrap(), "é");
        assert!(matches!(percent_decode("plain", true, false).unwrap(), Cow::Borrowed("plain")));
        for bad in ["%", "%2", "%zz", "%+1", "a%FF"] {
            assert!(percent_decode(bad, false, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert!(check_json(Some("application/json")).is_ok());
        assert!(check_json(Some("Application/JSON; charset=utf-8")).is_ok());
        assert_eq!(
            check_json(Some("text/plain")).unwrap_err().0,
            "Content-Type must be application/json, not [text/plain]"
        );
        assert!(check_json(None).unwrap_err().0.contains("required"));
    }
}
