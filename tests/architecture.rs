//! The shape ARCHITECTURE.md promises, checked on the source: modules import downward only
//! (no cycle), only `storage` knows object storage, no blocking call inside the runtime, the
//! sandbox stays out of real runs, and no file grows past what a reader can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Source files below `src/`, as (path relative to `src/`, text without comment lines and
/// without the `#[cfg(test)]` part at the end).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, code.join("\n"))
        })
        .collect()
}

/// The top-level module a file belongs to (`run/pipeline/write.rs` -> `run`).
fn module_of(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string()
}

/// Which top-level modules each module names (`crate::x`, `use crate::{x::…}`).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = sources().iter().map(|(rel, _)| module_of(rel)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in sources() {
        let from = module_of(&rel);
        if from == "main" || from == "cli" || from == "lib" {
            continue;
        }
        let mut named = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let rest = rest.trim_start_matches('{').trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            named.insert(name);
        }
        // `use crate::{a::X, b::Y}`: every module in the braces.
        for (i, _) in code.match_indices("use crate::{") {
            let inner = &code[i..];
            let inner = &inner[..inner.find(';').unwrap_or(inner.len())];
            for word in inner.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if modules.contains(word) {
                    named.insert(word.to_string());
                }
            }
        }
        let entry = graph.entry(from.clone()).or_default();
        for name in named {
            if name != from && modules.contains(&name) {
                entry.insert(name);
            }
        }
    }
    graph
}

#[test]
fn modules_import_downward_only() {
    let graph = imports();
    // Depth-first search for a back edge; the cycle found is named in the failure.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|n| n == node) {
            panic!("an import cycle: {} -> {node}", path[at..].join(" -> "));
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(node.to_string());
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
    // The leaves import nothing of apisnap's but other leaves.
    let leaves = ["vocab", "http", "secret", "env", "storage"];
    for leaf in leaves {
        let above: Vec<&String> = graph
            .get(leaf)
            .into_iter()
            .flatten()
            .filter(|m| !leaves.contains(&m.as_str()))
            .collect();
        assert!(above.is_empty(), "`{leaf}` imports {above:?}");
    }
}

#[test]
fn only_storage_knows_object_storage() {
    for (rel, code) in sources() {
        if rel.starts_with("storage/") {
            continue;
        }
        assert!(
            !code.contains("object_store"),
            "{rel} uses object_store: go through storage::Store"
        );
    }
}

#[test]
fn nothing_blocks_inside_the_runtime() {
    for (rel, code) in sources() {
        assert!(
            !code.contains("block_in_place"),
            "{rel} uses block_in_place, which panics on a current-thread runtime"
        );
    }
}

#[test]
fn the_sandbox_stays_out_of_real_runs() {
    let graph = imports();
    for (module, names) in &graph {
        if module == "sandbox" || module == "demo" {
            continue;
        }
        assert!(
            !names.contains("sandbox"),
            "`{module}` imports the sandbox: only tests, benchmarks and the demo start it"
        );
    }
}

#[test]
fn no_file_a_reader_would_not_open() {
    for (rel, _) in sources() {
        if rel.starts_with("sandbox/") {
            continue;
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(&rel);
        let lines = std::fs::read_to_string(path).unwrap().lines().count();
        assert!(
            lines <= 750,
            "src/{rel} has {lines} lines: split it by responsibility"
        );
    }
}
