//! One compiled binding: its template's variables resolved to field
//! descriptors, its body and response body resolved to fields, so serving a
//! request never looks a descriptor up by name.

use std::fmt;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};

use super::matcher::Method;
use super::options::Binding;
use super::template::{self, Segment, Template};

pub(super) const HTTP_BODY: &str = "google.api.HttpBody";

/// One HTTP binding of a gRPC method, ready to serve.
#[derive(Debug)]
pub struct HttpRule {
    pub(super) route_id: usize,
    pub(super) server_streaming: bool,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) input: MessageDescriptor,
    pub(super) vars: Vec<PathVar>,
    pub(super) body: Body,
    pub(super) output: MessageDescriptor,
    pub(super) reply: Reply,
}

/// A template variable: the fields it sets and the segments it captures.
#[derive(Debug)]
pub(super) struct PathVar {
    /// `a.b`, for error messages.
    pub name: String,
    /// The field path, outermost first; the last is a singular scalar.
    pub fields: Vec<FieldDescriptor>,
    pub start: usize,
    pub end: usize,
    /// Captures more than one segment, or `**`: `/` stays as it is, and
    /// `%2F` stays encoded.
    pub multi: bool,
    /// Ends in `**`: captures up to the end of the path.
    pub to_end: bool,
}

/// Where the request body goes.
#[derive(Debug)]
pub(super) enum Body {
    /// `body: ""`: no body; query and path parameters only.
    None,
    /// `body: "*"`: the JSON body is the message; no query parameters.
    Whole,
    /// `body: "<field>"` naming a singular message field: the JSON body is
    /// that message.
    Message(FieldDescriptor),
    /// `body: "<field>"` naming any other field: the JSON body is its value.
    Value(FieldDescriptor),
    /// The body is a `google.api.HttpBody` (the input itself, or a field):
    /// the raw bytes and their content type, any content type.
    Raw(Option<FieldDescriptor>),
}

impl Body {
    /// Whether the rest of the message comes from the query string.
    pub fn takes_query(&self) -> bool {
        !matches!(self, Body::Whole | Body::Raw(None))
    }
}

/// What of the reply becomes the HTTP body.
#[derive(Debug)]
pub(super) enum Reply {
    /// The reply message as JSON.
    Whole,
    /// The reply is a `google.api.HttpBody`: its data, as its content type.
    Raw,
    /// `response_body` naming a singular message field: that message.
    Message(FieldDescriptor),
    /// `response_body` naming a singular `google.api.HttpBody` field.
    RawField(FieldDescriptor),
    /// `response_body` naming any other field: its JSON value, converted
    /// through `google.protobuf.Value` as the reference proxy does, so
    /// numbers print as doubles (`7.0`).
    Value(FieldDescriptor),
}

impl HttpRule {
    /// `MethodRoute::id` of the gRPC method this binding calls.
    pub fn route_id(&self) -> usize {
        self.route_id
    }

    /// Whether the method streams its replies (the HTTP body is then a
    /// sequence of rendered messages).
    pub fn server_streaming(&self) -> bool {
        self.server_streaming
    }
}

/// `GET /carts/{user_id}`: the binding as declared.
impl fmt::Display for HttpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method.as_str(), self.path)
    }
}

/// Compiles one binding of `method`; `Err` says why it cannot be served.
pub(super) fn compile(route_id: usize, method: &MethodDescriptor, binding: &Binding) -> Result<(HttpRule, Template), String> {
    let template = template::parse(&binding.path)?;
    let input = method.input();
    let output = method.output();
    let mut vars: Vec<PathVar> = Vec::with_capacity(template.variables.len());
    for var in &template.variables {
        let name = var.field_path.join(".");
        let fields = path_fields(&input, &var.field_path)?;
        if vars.iter().any(|v| v.fields == fields) {
            return Err(format!("path variable [{name}] is bound twice"));
        }
        let to_end = template.segments[var.start..var.end].contains(&Segment::Multi);
        vars.push(PathVar { name, fields, start: var.start, end: var.end, multi: to_end || var.end - var.start > 1, to_end });
    }
    let body = match binding.body.as_str() {
        "" => Body::None,
        "*" if input.full_name() == HTTP_BODY => Body::Raw(None),
        "*" => Body::Whole,
        name => {
            let field = top_field(&input, name, "body")?;
            match field.kind() {
                Kind::Message(m) if !field.is_list() && m.full_name() == HTTP_BODY => Body::Raw(Some(field)),
                Kind::Message(_) if !field.is_list() => Body::Message(field),
                _ => Body::Value(field),
            }
        }
    };
    let reply = match binding.response_body.as_str() {
        "" if output.full_name() == HTTP_BODY => Reply::Raw,
        "" => Reply::Whole,
        name => {
            let field = top_field(&output, name, "response_body")?;
            match field.kind() {
                Kind::Message(m) if !field.is_list() && m.full_name() == HTTP_BODY => Reply::RawField(field),
                Kind::Message(_) if !field.is_list() => Reply::Message(field),
                _ => Reply::Value(field),
            }
        }
    };
    let rule = HttpRule {
        route_id,
        server_streaming: method.is_server_streaming(),
        method: binding.method,
        path: binding.path.clone(),
        input,
        vars,
        body,
        output,
        reply,
    };
    Ok((rule, template))
}

fn top_field(message: &MessageDescriptor, name: &str, what: &str) -> Result<FieldDescriptor, String> {
    message.get_field_by_name(name).ok_or_else(|| format!("{what} [{name}]: [{}] has no such field", message.full_name()))
}

/// Resolves a path variable's field path: singular messages down to a
/// singular scalar (spec §4: no enum or message path parameters).
fn path_fields(input: &MessageDescriptor, names: &[String]) -> Result<Vec<FieldDescriptor>, String> {
    let var = names.join(".");
    let mut message = input.clone();
    let mut fields = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let field = message
            .get_field_by_name(name)
            .ok_or_else(|| format!("path variable [{var}]: [{}] has no field [{name}]", message.full_name()))?;
        if field.is_list() {
            return Err(format!("path variable [{var}]: field [{}] is repeated", field.full_name()));
        }
        match field.kind() {
            Kind::Message(inner) if i + 1 < names.len() => message = inner,
            Kind::Message(_) => return Err(format!("path variable [{var}]: message path parameters are not supported")),
            Kind::Enum(_) => return Err(format!("path variable [{var}]: enum path parameters are not supported")),
            _ if i + 1 < names.len() => {
                return Err(format!("path variable [{var}]: field [{}] is not a message", field.full_name()))
            }
            _ => {}
        }
        fields.push(field);
    }
    Ok(fields)
}
