//! The layer order of `docs/ARCHITECTURE.md`, checked against every `crate::…` reference
//! in `src/`: a module may use only the modules listed above it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn layers() -> Vec<String> {
    let doc =
        std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let block = doc
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```layers block in docs/ARCHITECTURE.md");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src/") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The top-level modules a source line refers to through `crate::` (macros exported at
/// the crate root, like `write_transaction!`, belong to the module defining them).
fn referenced(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or_default();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        let names = match rest.strip_prefix('{') {
            Some(group) => top_level_items(group),
            None => vec![ident(rest)],
        };
        for name in names {
            found.push(match name.as_str() {
                "write_transaction" => "db".to_owned(),
                _ => name,
            });
        }
    }
    found
}

fn ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first name of each item of a `{a::b, c, d::{e, f}}` group (`group` starts after
/// its opening brace).
fn top_level_items(group: &str) -> Vec<String> {
    let mut items = vec![ident(group)];
    let mut depth = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(ident(&group[at + 1..])),
            _ => {}
        }
    }
    items.retain(|i| !i.is_empty());
    items
}

/// Every `crate::` reference in `src/` that points at a module not below its own.
fn violations(layers: &[String]) -> Vec<String> {
    let rank: HashMap<&str, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|m| m.trim_end_matches(".rs").to_owned())
            .expect("a module");
        if module == "lib" || module == "main" {
            continue;
        }
        let own = *rank
            .get(module.as_str())
            .unwrap_or_else(|| panic!("src/{module} is in no layer of docs/ARCHITECTURE.md"));
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (number, line) in (1..).zip(text.lines()) {
            for other in referenced(line) {
                let Some(&theirs) = rank.get(other.as_str()) else {
                    panic!(
                        "{}:{number}: crate::{other} is in no layer",
                        relative.display()
                    );
                };
                if theirs > own {
                    found.push(format!(
                        "src/{}:{number}: {module} (layer {own}) uses {other} (layer {theirs}): {}",
                        relative.display(),
                        line.trim()
                    ));
                }
            }
        }
    }
    found
}

plain_tests! {
    async fn no_module_uses_a_layer_above_it() {
        let found = violations(&layers());
        assert!(found.is_empty(), "upward imports:\n{}", found.join("\n"));
    }
}

plain_tests! {
    async fn the_check_sees_an_upward_import() {
        assert_eq!(
            referenced("use crate::approvals::model::Status; // crate::cli"),
            ["approvals"]
        );
        assert_eq!(
            referenced("let x = $crate::db::begin(); crate::write_transaction!(db, |t| {})"),
            ["db"]
        );
        assert_eq!(
            referenced("use crate::{db, jobs::{a, b}, cli};"),
            ["db", "jobs", "cli"]
        );
        // With `access` listed above `kernel`, kernel's own use of it would be upward.
        let mut swapped = layers();
        let kernel = swapped.iter().position(|m| m == "kernel").expect("kernel");
        let error = swapped.iter().position(|m| m == "error").expect("error");
        swapped.swap(kernel, error);
        assert!(
            violations(&swapped)
                .iter()
                .any(|v| v.contains("kernel (layer 0) uses error")),
            "reordering the layers must expose kernel's use of error"
        );
    }
}
