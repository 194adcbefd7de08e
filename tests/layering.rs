//! The layers are honest: the lower modules (`exec`, `publish`, `store`, `broker`, `feed`)
//! never import `engine`, which wires them together. Types they share live below (`exec::seams`,
//! `exec::shared`); `engine` re-exports them.

use std::path::{Path, PathBuf};

const LOWER: [&str; 5] = ["exec", "publish", "store", "broker", "feed"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of `text` that refer to the engine module as code (comments aside).
fn engine_references(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or("");
            code.contains("crate::engine") || code.contains("super::super::engine")
        })
        .map(|(n, line)| (n + 1, line.trim().to_string()))
        .collect()
}

#[test]
fn no_lower_module_imports_the_engine() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for module in LOWER {
        rust_files(&src.join(module), &mut files);
    }
    assert!(files.len() > 50, "the lower modules were found: {}", files.len());
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, code) in engine_references(&text) {
            found.push(format!("{}:{line}: {code}", file.display()));
        }
    }
    assert!(found.is_empty(), "lower modules import crate::engine:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_an_import_and_ignores_a_comment() {
    let text = "use crate::engine::seams::EngineEvent;\n// see crate::engine::build\nlet x = 1;";
    assert_eq!(engine_references(text), [(1, "use crate::engine::seams::EngineEvent;".into())]);
}
