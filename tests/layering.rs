//! The layers are honest: the lower modules (`exec`, `publish`, `store`, `broker`, `feed`)
//! never import `engine`, which wires them together. Types they share live below (`exec::seams`,
//! `exec::positions`); `engine` re-exports some of them.
//!
//! Workers get typed handles, not the whole of the engine's wiring: no worker module names
//! `Shared` (the container the engine builds each worker's handles from, in `engine::shared`),
//! and a worker that only reads holds a read-only handle: the trading state's `TradingView`
//! rather than its `TradingCell`, the paper wallet's `PaperCash` rather than its mutex.

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

/// The worker modules besides those under `src/exec` and `src/publish`.
const ENGINE_WORKERS: [&str; 2] = ["engine/api.rs", "engine/instruments.rs"];

/// Lines of `text` that name the type `Shared` as code (comments and longer names aside).
fn shared_references(text: &str) -> Vec<(usize, String)> {
    type_references(text, "Shared")
}

/// Lines of `text` that name `ty` as code (comments and longer names aside).
fn type_references(text: &str, ty: &str) -> Vec<(usize, String)> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let code = line.split("//").next().unwrap_or("");
            code.match_indices(ty).any(|(i, w)| {
                let before = code[..i].chars().next_back();
                let after = code[i + w.len()..].chars().next();
                !before.is_some_and(ident) && !after.is_some_and(ident)
            })
        })
        .map(|(n, line)| (n + 1, line.trim().to_string()))
        .collect()
}

/// The worker modules' files (`src/exec`, `src/publish`, the API, the instruments reload).
fn worker_files(src: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for module in ["exec", "publish"] {
        rust_files(&src.join(module), &mut files);
    }
    files.extend(ENGINE_WORKERS.iter().map(|f| src.join(f)));
    assert!(files.len() > 30, "the worker modules were found: {}", files.len());
    files
}

/// `file:line: code` for every line of `files` (relative to `src`) that names `ty`, except in
/// the files or folders of `owners`.
fn holders(src: &Path, files: &[PathBuf], ty: &str, owners: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        if owners.iter().any(|o| rel.starts_with(o)) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (line, code) in type_references(&text, ty) {
            found.push(format!("{}:{line}: {code}", file.display()));
        }
    }
    found
}

#[test]
fn no_worker_holds_the_engines_shared_state() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = holders(&src, &worker_files(&src), "Shared", &[]);
    assert!(
        found.is_empty(),
        "workers take the engine's whole `Shared` instead of their handles:\n{}",
        found.join("\n")
    );
}

/// A worker that only reads gets a read-only handle. The writers: the exit core changes the
/// trading state (the supervisor's escalation, the halt on a lost lease and the feed's fatal
/// hook do too, outside the workers); the paper gateway alone trades on the paper wallet.
#[test]
fn no_worker_holds_a_writer_where_it_only_reads() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = worker_files(&src);
    let writers: [(&str, &[&str], &str); 2] = [
        ("TradingCell", &["exec/core.rs", "exec/core"], "TradingView"),
        ("Mutex<PaperBroker>", &["exec/paper_gateway.rs"], "PaperCash"),
    ];
    let mut found = Vec::new();
    for (ty, owners, read_only) in writers {
        for hit in holders(&src, &files, ty, owners) {
            found.push(format!("{hit}  (read through a `{read_only}`)"));
        }
    }
    assert!(
        found.is_empty(),
        "workers hold a writer where a read-only handle would do:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_writer_check_sees_the_wallet_mutex_in_any_spelling() {
    let text = "    pub paper_wallet: Option<Arc<Mutex<PaperBroker>>>,\n\
                w: Arc<parking_lot::Mutex<PaperBroker>>,\n\
                pub paper_cash: Option<PaperCash>,\n\
                // was Arc<Mutex<PaperBroker>>\n\
                pub trading: TradingCell,\npub trading: TradingView,";
    let lines = |ty| type_references(text, ty).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(lines("Mutex<PaperBroker>"), [1, 2]);
    assert_eq!(lines("TradingCell"), [5]);
}

#[test]
fn the_shared_check_sees_the_type_and_ignores_longer_names_and_comments() {
    let text = "    shared: Arc<Shared>,\nuse crate::exec::shared::Shared;\n\
                pub fn take(s: &Shared) {}\n\
                let s: PublisherShared = x; // not Arc<Shared>\n\
                instruments: SharedInstruments,\n/// Lives in [`Shared`].";
    let lines: Vec<usize> = shared_references(text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(lines, [1, 2, 3]);
}
