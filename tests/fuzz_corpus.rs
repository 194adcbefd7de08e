//! Every committed fuzz corpus input (`fuzz/corpus/<target>/`), and any crash input kept under
//! `fuzz/artifacts/<target>/`, replayed once through the harness the `cargo fuzz` targets call
//! (`scalper::fuzzing`). Fast, and needs neither cargo-fuzz nor a nightly compiler: a parser
//! crash found by a campaign stays fixed once its input is in the corpus.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use scalper::fuzzing::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for (name, harness) in TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(corpus.len() >= 5, "fuzz/corpus/{name} holds only {} inputs", corpus.len());
        let crashes = inputs(&root.join("artifacts").join(name));
        for file in corpus.iter().chain(&crashes) {
            let data = std::fs::read(file).expect("readable corpus input");
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| harness(&data))) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {why}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "harness panicked on:\n{}", failures.join("\n"));
}
