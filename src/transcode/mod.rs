//! HTTP/JSON transcoding (spec §4): `google.api.http` rules compiled at
//! discovery into a matcher, HTTP requests turned into the protobuf request
//! the gRPC path would get (so entity keys come from the same bytes), and
//! replies rendered as protobuf JSON or raw `google.api.HttpBody` data.
//! Pure code: the HTTP server calls [`Routes::find`], then
//! [`HttpRule::request`] and [`HttpRule::response`].

mod matcher;
mod options;
mod request;
mod response;
mod rule;
mod template;

use std::{borrow::Cow, fmt};

use prost_reflect::MethodDescriptor;

use matcher::{Lookup, Matcher};
pub use rule::HttpRule;

/// Every served binding, compiled once; shared read-only by all cores.
#[derive(Debug, Default)]
pub struct Routes {
    matcher: Matcher,
    rules: Vec<HttpRule>,
}

/// The result of matching a request line.
#[derive(Debug)]
pub enum Found<'a> {
    Route(&'a HttpRule, Bindings),
    /// Some binding has this path, none this method: 405.
    MethodNotAllowed,
    NotFound,
}

/// The raw (still percent-encoded) text each of the rule's path variables
/// captured, in template order.
#[derive(Debug, PartialEq, Eq)]
pub struct Bindings(Vec<String>);

/// A request the binding cannot turn into a message; the text is the 400
/// body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRequest {}

/// A reply the user function sent that cannot be rendered: its bytes do
/// not decode as the output type, or an `Any` names an unknown type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the user function's reply cannot be rendered as HTTP: {}", self.0)
    }
}

impl std::error::Error for RenderError {}

/// One reply message as an HTTP body.
#[derive(Debug, PartialEq, Eq)]
pub struct Rendered {
    pub content_type: Cow<'static, str>,
    pub body: Vec<u8>,
}

impl Routes {
    /// Compiles the bindings of the given methods (each with its
    /// `MethodRoute::id`). Bindings that cannot be served are skipped and
    /// described in the returned problems; the rest are served.
    pub fn compile(methods: impl IntoIterator<Item = (usize, MethodDescriptor)>) -> (Routes, Vec<String>) {
        let mut routes = Routes::default();
        let mut problems = Vec::new();
        for (route_id, method) in methods {
            let (bindings, declared, method_problems) = options::bindings(&method);
            let here = format!("Service [{}] method [{}]", method.parent_service().full_name(), method.name());
            problems.extend(method_problems.into_iter().map(|p| format!("{here}: HTTP rule: {p}")));
            if method.is_client_streaming() {
                if declared {
                    problems.push(format!("{here}: client-streaming methods cannot be served over HTTP/JSON; its HTTP rules are ignored"));
                }
                continue;
            }
            for binding in bindings {
                let display = format!("{} {}", binding.method.as_str(), binding.path);
                match rule::compile(route_id, &method, &binding) {
                    Ok((rule, template)) => {
                        let index = routes.rules.len();
                        match routes.matcher.insert(&template.segments, template.verb.as_deref(), rule.method, index) {
                            Ok(()) => routes.rules.push(rule),
                            Err(other) => problems.push(format!(
                                "{here}: HTTP rule [{display}] is ambiguous with [{}] of an earlier method or binding; it is ignored",
                                routes.rules[other]
                            )),
                        }
                    }
                    Err(e) => problems.push(format!("{here}: HTTP rule [{display}]: {e}; it is ignored")),
                }
            }
        }
        (routes, problems)
    }

    /// The binding for a request line: its method and its path without the
    /// query string, still percent-encoded.
    pub fn find(&self, method: &str, path: &str) -> Found<'_> {
        match self.matcher.find(method, path) {
            Lookup::Found(m) => {
                let rule = &self.rules[m.rule];
                Found::Route(rule, rule.bindings(path, &m.segments))
            }
            Lookup::MethodNotAllowed => Found::MethodNotAllowed,
            Lookup::NotFound => Found::NotFound,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl HttpRule {
    /// Cuts each variable's text out of the path, by the matched segments'
    /// byte ranges.
    fn bindings(&self, path: &str, segments: &[(usize, usize)]) -> Bindings {
        let captured = self.vars.iter().map(|var| {
            let end = if var.to_end { segments.len() } else { var.end };
            match (segments.get(var.start), end.checked_sub(1).and_then(|e| segments.get(e))) {
                (Some(first), Some(last)) if end > var.start => path[first.0..last.1].to_owned(),
                _ => String::new(),
            }
        });
        Bindings(captured.collect())
    }
}

#[cfg(test)]
mod tests;
