//! The dependency rule of the dispatcher step (issue #13): entity modules
//! decide and persist; they never reach back into the dispatcher, its
//! effects, or the worker that hosts them. Read as text, so a `use` added
//! anywhere under `src/entity/` fails here with the file and the line.

use std::{fs, path::Path};

const FORBIDDEN: &[&str] = &["crate::dispatch", "crate::worker", "crate::effects", "crate::front", "crate::server"];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn entity_modules_do_not_import_the_dispatcher_effects_or_worker() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/entity");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() >= 5, "expected the entity modules under {}", root.display());
    let mut found = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            // Doc links name other modules on purpose; code paths do not.
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for bad in FORBIDDEN {
                if code.contains(bad) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, code));
                }
            }
        }
    }
    assert!(found.is_empty(), "src/entity/ must not depend on the dispatcher, effects or worker:\n{}", found.join("\n"));
}
