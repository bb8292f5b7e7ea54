//! The map of `docs/ARCHITECTURE.md`, checked against every `crate::…` reference in
//! `src/`: a module may use only the modules listed above it, exactly those its "may use"
//! column names, and no two files of a crate import each other in a circle.

use std::collections::{BTreeSet, HashMap};
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
    let code = without_comment(line);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        let paths = match rest.strip_prefix('{') {
            Some(group) => group_items(group),
            None => vec![item_path(rest)],
        };
        for path in paths {
            let name = path.split("::").next().unwrap_or_default().to_owned();
            found.push(match name.as_str() {
                "write_transaction" => "db".to_owned(),
                _ => name,
            });
        }
    }
    found
}

/// The line up to a comment: `//` at its start or after a space (so `"http://…"` in a
/// string stays code).
fn without_comment(line: &str) -> &str {
    if line.trim_start().starts_with("//") {
        return "";
    }
    line.split(" //").next().unwrap_or_default()
}

/// A file's code on one line, comments dropped: a `use` group written over several lines
/// reads as one.
fn one_line(text: &str) -> String {
    text.lines()
        .map(without_comment)
        .collect::<Vec<_>>()
        .join(" ")
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

/// The "may use" column: for each module, the modules it names, or `None` for
/// "everything above". Backticked names inside parentheses are notes, not modules.
fn may_use() -> HashMap<String, Option<BTreeSet<String>>> {
    let doc =
        std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let table = doc
        .split("| layer | what it is | may use |\n")
        .nth(1)
        .expect("the layer table in docs/ARCHITECTURE.md");
    let mut columns = HashMap::new();
    for row in table.lines().skip(1).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        let module = cells[0].trim().trim_matches('`').to_owned();
        let column = cells.last().expect("a may-use cell").trim();
        let names = (column != "everything above").then(|| names_outside_parentheses(column));
        columns.insert(module, names);
    }
    columns
}

fn names_outside_parentheses(cell: &str) -> BTreeSet<String> {
    let mut depth = 0;
    let mut outside = String::new();
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Which top-level modules each module of `src/` uses.
fn uses() -> HashMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found: HashMap<String, BTreeSet<String>> = HashMap::new();
    for file in files {
        let Some(module) = module_path(file.strip_prefix(&src).expect("under src/"))
            .first()
            .cloned()
        else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a source file");
        let used = referenced(&one_line(&text))
            .into_iter()
            .filter(|other| *other != module);
        found.entry(module.clone()).or_default().extend(used);
    }
    found
}

/// Every way the "may use" column and the code disagree.
fn column_drift() -> Vec<String> {
    let columns = may_use();
    let actual = uses();
    let mut drift = Vec::new();
    for module in layers() {
        let uses = actual.get(&module).cloned().unwrap_or_default();
        match columns.get(&module) {
            None => drift.push(format!("{module} has no row in the layer table")),
            Some(None) => {}
            Some(Some(named)) => {
                for extra in uses.difference(named) {
                    drift.push(format!(
                        "{module} uses {extra}, which its \"may use\" column does not name"
                    ));
                }
                for stale in named.difference(&uses) {
                    drift.push(format!(
                        "{module}'s \"may use\" column names {stale}, which it does not use"
                    ));
                }
            }
        }
    }
    drift
}

/// The module path of a file under a crate's `src/` (`approvals/queries.rs` →
/// `[approvals, queries]`, `graphql/mod.rs` → `[graphql]`, `lib.rs` → `[]`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut path: Vec<String> = relative
        .with_extension("")
        .components()
        .filter_map(|c| c.as_os_str().to_str().map(str::to_owned))
        .collect();
    if path.last().is_some_and(|l| l == "mod") || path == ["lib"] || path == ["main"] {
        path.pop();
    }
    path
}

/// The module paths a line names through `crate::`, `super::` or `self::`, as written
/// (not yet resolved to a file).
fn named_paths(line: &str, own: &[String]) -> Vec<Vec<String>> {
    let code = without_comment(line);
    let mut found = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(start) {
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
                continue;
            }
            let mut rest = &code[at..];
            let mut base: Vec<String> = match start {
                "crate::" => Vec::new(),
                _ => own.to_vec(),
            };
            rest = rest.strip_prefix("self::").unwrap_or(rest);
            rest = rest.strip_prefix("crate::").unwrap_or(rest);
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            let items = match rest.strip_prefix('{') {
                Some(group) => group_items(group),
                None => vec![item_path(rest)],
            };
            for item in items {
                let mut path = base.clone();
                path.extend(
                    item.split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
                found.push(path);
            }
        }
    }
    found
}

fn item_path(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_owned()
}

/// The path of each item of a `{a::b, c, d::{e, f}}` group, up to any inner group.
fn group_items(group: &str) -> Vec<String> {
    let mut items = vec![item_path(group)];
    let mut depth = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(item_path(&group[at + 1..])),
            _ => {}
        }
    }
    items.retain(|i| !i.is_empty());
    items
}

/// For each file of the crate under `src`, the files it uses, each resolved to the longest
/// module path that is a file. A module using its own children (`mod.rs` re-exporting or
/// calling them) is not an edge: it owns them.
fn file_edges(src: &Path) -> HashMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: HashMap<Vec<String>, PathBuf> = files
        .into_iter()
        .map(|f| (module_path(f.strip_prefix(src).expect("under src/")), f))
        .collect();
    let mut edges = HashMap::new();
    for (own, file) in &modules {
        let text = std::fs::read_to_string(file).expect("a source file");
        let mut targets = BTreeSet::new();
        for path in named_paths(&one_line(&text), own) {
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|prefix| modules.contains_key(prefix))
                .unwrap_or_default();
            if !target.starts_with(own) {
                targets.insert(target);
            }
        }
        edges.insert(own.clone(), targets);
    }
    edges
}

/// One circle of files importing each other, if there is one, as `a → b → a`.
fn circle(edges: &HashMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<String> {
    fn visit(
        at: &Vec<String>,
        edges: &HashMap<Vec<String>, BTreeSet<Vec<String>>>,
        trail: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<String> {
        if let Some(from) = trail.iter().position(|t| t == at) {
            let mut names: Vec<String> = trail[from..].iter().map(|p| p.join("/")).collect();
            names.push(at.join("/"));
            return Some(names.join(" → "));
        }
        if !done.insert(at.clone()) {
            return None;
        }
        trail.push(at.clone());
        for next in edges.get(at).into_iter().flatten() {
            if let Some(found) = visit(next, edges, trail, done) {
                return Some(found);
            }
        }
        trail.pop();
        None
    }
    let mut done = BTreeSet::new();
    let mut starts: Vec<&Vec<String>> = edges.keys().collect();
    starts.sort();
    starts
        .into_iter()
        .find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

plain_tests!(the_may_use_column_names_exactly_what_each_module_uses);

async fn the_may_use_column_names_exactly_what_each_module_uses() {
    let drift = column_drift();
    assert!(
        drift.is_empty(),
        "docs/ARCHITECTURE.md is out of date:\n{}",
        drift.join("\n")
    );
}

plain_tests!(no_files_import_each_other_in_a_circle);

async fn no_files_import_each_other_in_a_circle() {
    for crate_src in ["src", "bench/src"] {
        let found = circle(&file_edges(&root().join(crate_src)));
        assert_eq!(found, None, "an import circle in {crate_src}/");
    }
}

plain_tests!(the_circle_check_resolves_paths_and_sees_a_circle);

async fn the_circle_check_resolves_paths_and_sees_a_circle() {
    let own = vec!["approvals".to_owned(), "loader".to_owned()];
    assert_eq!(
        named_paths("use super::{queries::role_holders, model};", &own),
        [
            vec!["approvals", "queries", "role_holders"],
            vec!["approvals", "model"]
        ]
    );
    // A group over several lines, and `//` inside a string, read as code.
    let grouped = one_line(
        "use super::{\n    queries,\n    model, // a note\n};\nlet u = \"http://x\"; crate::db::a();",
    );
    assert_eq!(
        named_paths(&grouped, &own),
        [
            vec!["db", "a"],
            vec!["approvals", "queries"],
            vec!["approvals", "model"]
        ]
    );
    assert_eq!(
        named_paths("let x = crate::access::grants::of(); self::y::z()", &own),
        [
            vec!["access", "grants", "of"],
            vec!["approvals", "loader", "y", "z"]
        ]
    );
    let path = |p: &str| p.split('/').map(str::to_owned).collect::<Vec<_>>();
    let mut edges = HashMap::new();
    edges.insert(path("a/x"), BTreeSet::from([path("a/y")]));
    edges.insert(path("a/y"), BTreeSet::from([path("a/z")]));
    edges.insert(path("a/z"), BTreeSet::new());
    assert_eq!(circle(&edges), None);
    edges.insert(path("a/z"), BTreeSet::from([path("a/x")]));
    assert_eq!(circle(&edges).as_deref(), Some("a/x → a/y → a/z → a/x"));
    assert_eq!(
        names_outside_parentheses("`config`, `graphql` (`AppState`, its page)"),
        BTreeSet::from(["config".to_owned(), "graphql".to_owned()])
    );
}

plain_tests!(no_module_uses_a_layer_above_it);

async fn no_module_uses_a_layer_above_it() {
    let found = violations(&layers());
    assert!(found.is_empty(), "upward imports:\n{}", found.join("\n"));
}

plain_tests!(the_check_sees_an_upward_import);

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
