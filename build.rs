//! Compiles `proto/` with protox (no system `protoc`) into Rust types and into
//! the descriptor sets that the binaries embed.

use std::{env, fs, path::PathBuf};

use prost::Message;

/// Everything the proxy speaks or serves; Rust types are generated for these.
const GENERATED: &[&str] = &[
    "cloudstate/entity.proto",
    "cloudstate/action.proto",
    "cloudstate/event_sourced.proto",
    "cloudstate/value_entity.proto",
    "cloudstate/crdt.proto",
    "cloudstate/entity_key.proto",
    "cloudstate/legacy_entity_key.proto",
    "cloudstate/eventing.proto",
    "google/api/annotations.proto",
    "google/api/httpbody.proto",
    "grpc/reflection/v1alpha/reflection.proto",
    "grpc/health/v1/health.proto",
    "example/echo/echo.proto",
];

/// Descriptor sets embedded as bytes: (output file, root protos).
const EMBEDDED: &[(&str, &[&str])] = &[
    // What `grpc.reflection.v1` describes about Massa's own services.
    (
        "admin.fds",
        &["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto", "grpc/health/v1/health.proto"],
    ),
    // What the example user function reports at discovery.
    ("echo.fds", &["example/echo/echo.proto"]),
];

fn compile(files: &[&str]) -> prost_types::FileDescriptorSet {
    protox::Compiler::new(["proto"])
        .and_then(|mut c| {
            c.include_imports(true).include_source_info(false).open_files(files)?;
            Ok(c.file_descriptor_set())
        })
        .unwrap_or_else(|e| panic!("compiling {files:?}: {e}"))
}

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    // Well-known types are generated too, so `Any.value` is `Bytes` and
    // payloads pass through without copies.
    prost_build::Config::new()
        .compile_well_known_types()
        .bytes(["."])
        .compile_fds(compile(GENERATED))
        .expect("generating Rust from protos");
    for (name, roots) in EMBEDDED {
        fs::write(out.join(name), compile(roots).encode_to_vec()).expect("writing descriptor set");
    }
}
