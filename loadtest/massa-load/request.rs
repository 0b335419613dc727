//! What to send: the method (from descriptors) and each request's bytes.

use std::path::PathBuf;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};

use massa::discovery::Shape;

/// Where the request comes from.
pub enum Source {
    /// JSON with `{{i}}` placeholders, split at them; encoded per request
    /// because every index yields a different message. `counter`: it also
    /// holds [`COUNTER`].
    Json { parts: Vec<String>, method: MethodDescriptor, counter: bool },
    /// Every distinct request encoded up front (`--keys N` with a small N),
    /// so the send loop spends no CPU on JSON.
    Table(Vec<Bytes>),
    /// Raw protobuf bytes (or JSON without placeholders, encoded once).
    Binary(Bytes),
}

/// The request-index placeholders: ours and ghz's, so ghz data strings work
/// unchanged.
const PLACEHOLDERS: [&str; 2] = ["{{i}}", "{{.RequestNumber}}"];

/// The request number itself, never wrapped by `--keys`: distinct values
/// within the same keys (e.g. new set elements for the same entity).
const COUNTER: &str = "{{n}}";

/// Up to this many distinct `--keys` requests are encoded before the run.
const MAX_TABLE: u64 = 1 << 16;

/// Splits a template at its placeholders; joining the parts with an index
/// renders request number `i`.
pub fn split_template(json: &str) -> Vec<String> {
    let canonical = json.replace(PLACEHOLDERS[1], PLACEHOLDERS[0]);
    canonical.split(PLACEHOLDERS[0]).map(str::to_owned).collect()
}

/// The call to make.
pub struct Plan {
    /// `/pkg.Service/Method`.
    pub path: String,
    pub shape: Shape,
    pub source: Source,
    /// Request index is taken modulo this (spreads calls over N keys).
    pub keys: Option<u64>,
}

impl Plan {
    /// The encoded request number `i`.
    pub fn request(&self, n: u64) -> Result<Bytes, String> {
        let i = self.keys.map_or(n, |k| n % k.max(1));
        match &self.source {
            Source::Binary(b) => Ok(b.clone()),
            Source::Table(t) => Ok(t[(i % t.len() as u64) as usize].clone()),
            Source::Json { parts, method, counter } => {
                let json = parts.join(&i.to_string());
                let json = if *counter { json.replace(COUNTER, &n.to_string()) } else { json };
                encode_json(method, &json)
            }
        }
    }
}

fn encode_json(method: &MethodDescriptor, json: &str) -> Result<Bytes, String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(method.input(), &mut de).map_err(|e| format!("request JSON: {e}"))?;
    de.end().map_err(|e| format!("request JSON: {e}"))?;
    Ok(message.encode_to_vec().into())
}

/// Loads descriptors from a descriptor set or `.proto` files.
pub fn descriptors(protoset: Option<&PathBuf>, protos: &[PathBuf], import_paths: &[PathBuf]) -> Result<Option<DescriptorPool>, String> {
    if let Some(path) = protoset {
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        return DescriptorPool::decode(bytes.as_slice()).map(Some).map_err(|e| format!("{}: {e}", path.display()));
    }
    if protos.is_empty() {
        return Ok(None);
    }
    let includes: Vec<PathBuf> = if import_paths.is_empty() { vec![PathBuf::from(".")] } else { import_paths.to_vec() };
    let mut compiler = protox::Compiler::new(includes).map_err(|e| e.to_string())?;
    compiler.include_imports(true);
    compiler.open_files(protos).map_err(|e| e.to_string())?;
    DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).map(Some).map_err(|e| e.to_string())
}

/// Resolves `pkg.Service/Method` (or `pkg.Service.Method`) and the request.
pub fn plan(
    call: &str,
    pool: Option<&DescriptorPool>,
    data: Option<&str>,
    binary: Option<Bytes>,
    keys: Option<u64>,
) -> Result<Plan, String> {
    let (service, method) = call
        .trim_start_matches('/')
        .rsplit_once(['/', '.'])
        .ok_or_else(|| format!("--call {call:?}: expected package.Service/Method"))?;
    let path = format!("/{service}/{method}");
    let descriptor = match pool {
        Some(pool) => Some(
            pool.get_service_by_name(service)
                .ok_or_else(|| format!("unknown service {service}"))?
                .methods()
                .find(|m| m.name() == method)
                .ok_or_else(|| format!("unknown method {method} in {service}"))?,
        ),
        None => None,
    };
    let shape = descriptor.as_ref().map_or(Shape::Unary, |m| Shape::new(m.is_client_streaming(), m.is_server_streaming()));
    let source = match (binary, data, descriptor) {
        (Some(bytes), _, _) => Source::Binary(bytes),
        (None, Some(json), Some(method)) => {
            let parts = split_template(json);
            let counter = json.contains(COUNTER);
            // Fail on bad JSON now, not per request.
            let first = encode_json(&method, &parts.join("0").replace(COUNTER, "0"))?;
            match keys {
                _ if counter => Source::Json { parts, method, counter },
                _ if parts.len() == 1 => Source::Binary(first),
                Some(k) if k <= MAX_TABLE => {
                    Source::Table((0..k.max(1)).map(|i| encode_json(&method, &parts.join(&i.to_string()))).collect::<Result<_, _>>()?)
                }
                _ => Source::Json { parts, method, counter },
            }
        }
        (None, Some(_), None) => return Err("-d needs --proto or --protoset to encode JSON".to_owned()),
        (None, None, Some(method)) => Source::Json { parts: vec!["{}".to_owned()], method, counter: false },
        (None, None, None) => Source::Binary(Bytes::new()),
    };
    Ok(Plan { path, shape, source, keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_pool() -> DescriptorPool {
        DescriptorPool::decode(massa::proto::EXAMPLE_DESCRIPTORS).unwrap()
    }

    #[test]
    fn templates_vary_per_request_and_keys_wrap() {
        let pool = echo_pool();
        let plan = plan("example.echo.Echo/Say", Some(&pool), Some(r#"{"text":"cart-{{i}}"}"#), None, Some(3)).unwrap();
        assert_eq!(plan.path, "/example.echo.Echo/Say");
        let text = |i| massa::proto::example::echo::EchoRequest::decode(plan.request(i).unwrap()).unwrap().text;
        assert_eq!([text(0), text(1), text(4)], ["cart-0", "cart-1", "cart-1"]);
    }

    #[test]
    fn ghz_placeholder_is_an_alias_and_constant_json_is_encoded_once() {
        assert_eq!(split_template(r#"{"a":"x-{{.RequestNumber}}-{{i}}"}"#), [r#"{"a":"x-"#, "-", r#""}"#]);
        let pool = echo_pool();
        let text = |plan: &Plan, i| massa::proto::example::echo::EchoRequest::decode(plan.request(i).unwrap()).unwrap().text;
        let ghz = plan("example.echo.Echo/Say", Some(&pool), Some(r#"{"text":"c{{.RequestNumber}}"}"#), None, None).unwrap();
        assert!(matches!(ghz.source, Source::Json { .. }));
        assert_eq!(text(&ghz, 123_456), "c123456");
        let fixed = plan("example.echo.Echo/Say", Some(&pool), Some(r#"{"text":"same"}"#), None, None).unwrap();
        assert!(matches!(fixed.source, Source::Binary(_)));
        assert_eq!(text(&fixed, 9), "same");
        let many = plan("example.echo.Echo/Say", Some(&pool), Some(r#"{"text":"k{{i}}"}"#), None, Some(MAX_TABLE + 1)).unwrap();
        assert!(matches!(many.source, Source::Json { .. }));
        assert_eq!(text(&many, MAX_TABLE + 2), "k1");
    }

    #[test]
    fn the_counter_placeholder_is_never_wrapped() {
        let pool = echo_pool();
        let plan = plan("example.echo.Echo/Say", Some(&pool), Some(r#"{"text":"k{{i}}-e{{n}}"}"#), None, Some(3)).unwrap();
        let text = |i| massa::proto::example::echo::EchoRequest::decode(plan.request(i).unwrap()).unwrap().text;
        assert_eq!([text(1), text(4), text(7)], ["k1-e1", "k1-e4", "k1-e7"]);
    }

    #[test]
    fn binary_requests_are_sent_as_given_and_default_to_unary() {
        let p = plan("any.Svc/M", None, None, Some(Bytes::from_static(b"\x0a\x01x")), None).unwrap();
        assert_eq!(p.shape, Shape::Unary);
        assert_eq!(p.request(7).unwrap(), Bytes::from_static(b"\x0a\x01x"));
        assert_eq!(p.path, "/any.Svc/M");
        assert!(plan("any.Svc/M", None, Some("{}"), None, None).is_err());
    }

    #[test]
    fn shapes_come_from_descriptors_and_bad_input_is_one_clear_error() {
        let pool = echo_pool();
        assert_eq!(plan("example.echo.Echo.Split", Some(&pool), None, None, None).unwrap().shape, Shape::ServerStreaming);
        assert_eq!(plan("example.echo.Echo/Chat", Some(&pool), None, None, None).unwrap().shape, Shape::Bidi);
        let err = |call, data| plan(call, Some(&pool), data, None, None).err().unwrap();
        assert_eq!(err("example.echo.Echo/Nope", None), "unknown method Nope in example.echo.Echo");
        assert_eq!(err("no.Such/Say", None), "unknown service no.Such");
        assert!(err("example.echo.Echo/Say", Some("{nope")).starts_with("request JSON:"));
        assert!(err("example.echo.Echo/Say", Some(r#"{"nope": 1}"#)).starts_with("request JSON:"));
    }
}
