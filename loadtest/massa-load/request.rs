//! What to send: the method (from descriptors) and each request's bytes.

use std::path::PathBuf;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};

use massa::discovery::Shape;

/// Where the request comes from.
pub enum Source {
    /// JSON with optional `{{i}}` placeholders, split at them.
    Json { parts: Vec<String>, method: MethodDescriptor },
    /// Raw protobuf bytes, sent as is.
    Binary(Bytes),
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
    pub fn request(&self, i: u64) -> Result<Bytes, String> {
        let i = self.keys.map_or(i, |k| i % k.max(1));
        match &self.source {
            Source::Binary(b) => Ok(b.clone()),
            Source::Json { parts, method } => {
                let json = parts.join(&i.to_string());
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
            let parts: Vec<String> = json.split("{{i}}").map(str::to_owned).collect();
            // Fail on bad JSON now, not per request.
            encode_json(&method, &parts.join("0"))?;
            Source::Json { parts, method }
        }
        (None, Some(_), None) => return Err("-d needs --proto or --protoset to encode JSON".to_owned()),
        (None, None, Some(method)) => Source::Json { parts: vec!["{}".to_owned()], method },
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
