//! Compiles `proto/` with protox (no system `protoc`) into Rust types and into
//! the descriptor sets that the binaries embed.

use std::{env, fs, path::PathBuf};

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
    "example/shoppingcart/shoppingcart.proto",
    "example/shoppingcart/persistence/domain.proto",
    "example/valueentity/shoppingcart/shoppingcart.proto",
    "example/valueentity/shoppingcart/persistence/domain.proto",
    "example/eventing/ledger.proto",
    // The Cloudstate TCK model services (proto/tck/README.md).
    "tck/cloudstate/tck/model/action.proto",
    "tck/cloudstate/tck/model/valueentity.proto",
    "tck/cloudstate/tck/model/eventsourced.proto",
    "tck/cloudstate/tck/model/crdt.proto",
    "tck/cloudstate/tck/model/eventlogeventing.proto",
];

/// Descriptor sets embedded as bytes: (output file, root protos).
const EMBEDDED: &[(&str, &[&str])] = &[
    // What `grpc.reflection.v1` describes about Massa's own services.
    (
        "admin.fds",
        &["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto", "grpc/health/v1/health.proto"],
    ),
    // What the example user function reports at discovery.
    (
        "example.fds",
        &[
            "example/echo/echo.proto",
            "example/shoppingcart/shoppingcart.proto",
            "example/shoppingcart/persistence/domain.proto",
            "example/valueentity/shoppingcart/shoppingcart.proto",
            "example/valueentity/shoppingcart/persistence/domain.proto",
        ],
    ),
    // What the example function reports with `--eventing`: the above plus
    // the ledgers and their consumers.
    (
        "example_eventing.fds",
        &[
            "example/echo/echo.proto",
            "example/shoppingcart/shoppingcart.proto",
            "example/shoppingcart/persistence/domain.proto",
            "example/valueentity/shoppingcart/shoppingcart.proto",
            "example/valueentity/shoppingcart/persistence/domain.proto",
            "example/eventing/ledger.proto",
        ],
    ),
    // What the TCK model user function (massa-tck-model) reports at discovery.
    (
        "tck.fds",
        &[
            "tck/cloudstate/tck/model/action.proto",
            "tck/cloudstate/tck/model/valueentity.proto",
            "tck/cloudstate/tck/model/eventsourced.proto",
            "tck/cloudstate/tck/model/crdt.proto",
            "tck/cloudstate/tck/model/eventlogeventing.proto",
        ],
    ),
];

fn compiler(files: &[&str]) -> protox::Compiler {
    protox::Compiler::new(["proto"])
        .and_then(|mut c| {
            c.include_imports(true).include_source_info(false).open_files(files)?;
            Ok(c)
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
        .compile_fds(compiler(GENERATED).file_descriptor_set())
        .expect("generating Rust from protos");
    for (name, roots) in EMBEDDED {
        // Encoded by protox itself: prost_types would drop custom options
        // such as `(cloudstate.entity_key)`, which discovery relies on.
        fs::write(out.join(name), compiler(roots).encode_file_descriptor_set()).expect("writing descriptor set");
    }
    link_static_rocksdb_deps();
}

/// With `ROCKSDB_STATIC` set, librocksdb-sys links Debian's `librocksdb.a`
/// instead of the shared library (only the objects the proxy uses, and no
/// pages of an 11 MiB library touched at start by a proxy that never opens
/// RocksDB), but names none of the libraries RocksDB itself needs. They are
/// named here, as libraries of this crate, so every binary that links it
/// (the fuzz targets and benches too) gets them; rustc places upstream
/// native libraries after every crate's archive, and `--as-needed` drops
/// the ones nothing references.
fn link_static_rocksdb_deps() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_STATIC");
    if env::var_os("ROCKSDB_STATIC").is_some() {
        for lib in ["snappy", "z", "bz2", "lz4", "zstd", "gflags"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
}
