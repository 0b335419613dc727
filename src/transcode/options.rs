//! The `google.api.http` method option, read into the list of bindings a
//! method is served on (spec §4: the rule, then its additional bindings,
//! one level deep; the default `POST /<service>/<Method>` with `body: "*"`
//! when the option is absent).

use prost::Message;
use prost_reflect::MethodDescriptor;

use super::matcher::Method;
use crate::proto::google::api::{http_rule::Pattern, HttpRule as RuleProto};

/// `MethodOptions` seen only for `(google.api.http)`, field 72295728; read
/// from the encoded options so it works whether or not the function's
/// descriptor set declares the extension.
#[derive(Clone, PartialEq, prost::Message)]
struct HttpOption {
    #[prost(message, optional, tag = "72295728")]
    http: Option<RuleProto>,
}

/// One HTTP binding of a method, as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub method: Method,
    pub path: String,
    pub body: String,
    pub response_body: String,
}

/// The method's bindings and whether they were declared (not the default),
/// plus the problems of the declared ones that cannot be served.
pub fn bindings(method: &MethodDescriptor) -> (Vec<Binding>, bool, Vec<String>) {
    let options = method.options().encode_to_vec();
    let rule = match HttpOption::decode(options.as_slice()) {
        Ok(HttpOption { http: Some(rule) }) => rule,
        Ok(HttpOption { http: None }) => return (vec![default(method)], false, Vec::new()),
        Err(e) => return (Vec::new(), true, vec![format!("its (google.api.http) option does not decode: {e}")]),
    };
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (rule, nested) in std::iter::once((&rule, false)).chain(rule.additional_bindings.iter().map(|r| (r, true))) {
        if nested && !rule.additional_bindings.is_empty() {
            problems.push("additional_bindings nest only one level deep; the inner ones are ignored".to_owned());
        }
        match pattern(rule) {
            Ok((method, path)) => out.push(Binding {
                method,
                path: path.to_owned(),
                body: rule.body.clone(),
                response_body: rule.response_body.clone(),
            }),
            Err(e) => problems.push(e),
        }
    }
    (out, true, problems)
}

fn default(method: &MethodDescriptor) -> Binding {
    Binding {
        method: Method::Post,
        path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        body: "*".to_owned(),
        response_body: String::new(),
    }
}

fn pattern(rule: &RuleProto) -> Result<(Method, &str), String> {
    Ok(match &rule.pattern {
        Some(Pattern::Get(p)) => (Method::Get, p),
        Some(Pattern::Put(p)) => (Method::Put, p),
        Some(Pattern::Post(p)) => (Method::Post, p),
        Some(Pattern::Delete(p)) => (Method::Delete, p),
        Some(Pattern::Patch(p)) => (Method::Patch, p),
        Some(Pattern::Custom(c)) if c.kind == "*" => (Method::Any, &c.path),
        Some(Pattern::Custom(c)) => {
            return Err(format!("custom pattern kind [{}] is not supported (only `*`); binding [{}] ignored", c.kind, c.path))
        }
        None => return Err("a binding names no pattern (get, put, post, delete, patch or custom); ignored".to_owned()),
    })
}
