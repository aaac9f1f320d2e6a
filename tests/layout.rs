//! The layout of `src/` as the README draws it: every file's references to other modules
//! (`use crate::...`, `crate::...` paths, `super::...`) run one way. Between folders they
//! only go down the order below; between files there is no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The folders of `src/`, each allowed to use only those before it.
const ORDER: &[&str] = &[
    "base", "db", "config", "service", "queue", "capture", "replay", "verify", "demo", "cli",
];

/// Every module of `src/` (`replay::batch`, `db` for `db/mod.rs`) with its source text.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if path.is_dir() {
                walk(&path, &format!("{prefix}{name}::"), out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let module = match stem {
                    "mod" => prefix.trim_end_matches("::").to_string(),
                    _ => format!("{prefix}{stem}"),
                };
                out.insert(module, fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut out,
    );
    out.remove("lib");
    out.remove("main");
    out
}

/// The code of `text` without comments, string and character literals, and unit tests.
fn code(text: &str) -> String {
    let text: Vec<char> = text.split("#[cfg(test)]").next().unwrap().chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        let next = text.get(i + 1).copied();
        match text[i] {
            '/' if next == Some('/') => {
                while i < text.len() && text[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => {
                while i + 1 < text.len() && !(text[i] == '*' && text[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
                continue;
            }
            '"' => {
                i += 1;
                while i < text.len() && text[i] != '"' {
                    i += if text[i] == '\\' { 2 } else { 1 };
                }
            }
            // A character literal ('x', '\n', '"'), not a lifetime ('a).
            '\'' if next == Some('\\') || text.get(i + 2) == Some(&'\'') => {
                i += 1;
                while i < text.len() && text[i] != '\'' {
                    i += if text[i] == '\\' { 2 } else { 1 };
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// The paths `text` names: `crate::a::b` and `super::c` written out, and each path of a
/// `use` tree (`use crate::a::{b, c::{d}}`) expanded.
fn paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let boundary = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        if boundary && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let (tree, end) = use_tree(&bytes, i);
            expand("", &tree, &mut out);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// The path or `use` tree starting at `start`, without spaces, and where it ends.
fn use_tree(text: &[char], start: usize) -> (String, usize) {
    let mut depth = 0;
    let mut tree = String::new();
    let mut i = start;
    while i < text.len() {
        let c = text[i];
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            c if c.is_alphanumeric() || c == '_' || c == ':' || c == ',' => {}
            c if c.is_whitespace() && depth > 0 => {
                i += 1;
                continue;
            }
            _ if depth == 0 => break,
            _ => {}
        }
        tree.push(c);
        i += 1;
    }
    (tree, i)
}

/// Every full path of a `use` tree, each prefixed with `prefix`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => out.push(format!("{prefix}{tree}")),
        Some(open) => {
            let head = format!("{prefix}{}", &tree[..open]);
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut part = String::new();
            for c in inner.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&head, &std::mem::take(&mut part), out);
                        continue;
                    }
                    _ => {}
                }
                part.push(c);
            }
            if !part.is_empty() {
                expand(&head, &part, out);
            }
        }
    }
}

/// The module `path` (written in `module`) refers to: the longest known module it starts
/// with, `self` and `super` resolved.
fn target(module: &str, path: &str, known: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
    match segments.next()? {
        "crate" => {}
        "super" => {
            parts = module.split("::").collect();
            parts.pop();
            while segments.peek() == Some(&"super") {
                segments.next();
                parts.pop();
            }
        }
        _ => return None,
    }
    parts.extend(segments.filter(|s| *s != "self"));
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|candidate| known.contains(candidate))
}

/// Each module's set of the other modules it refers to.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(module, text)| {
            let used = paths(&code(text))
                .iter()
                .filter_map(|path| target(module, path, &known))
                .filter(|used| used != module)
                .collect();
            (module.clone(), used)
        })
        .collect()
}

/// A cycle through the graph, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut done, &mut Vec::new()))
}

#[test]
fn the_checker_sees_use_trees_paths_and_cycles() {
    let mut found = paths(&code(
        "use crate::a::{b, c::{self, d}};\nfn f() { crate::e::g(); super::h::i(); }\n\
         // crate::commented\nconst S: &str = \"crate::quoted \\\" crate::still\";\n\
         /* crate::block */ const C: char = '\"'; fn g<'a>() { crate::j::k(); }",
    ));
    found.sort();
    assert_eq!(
        found,
        [
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::self",
            "crate::e::g",
            "crate::j::k",
            "super::h::i"
        ]
    );
    let known: BTreeSet<String> = ["x", "x::y", "x::z"].map(String::from).into();
    assert_eq!(
        target("x::y", "super::z::f", &known).as_deref(),
        Some("x::z")
    );
    assert_eq!(target("x::y", "crate::x::q", &known).as_deref(), Some("x"));
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "a"]);
}

#[test]
fn folders_use_only_the_folders_before_them() {
    let rank = |module: &str| {
        let folder = module.split("::").next().unwrap();
        ORDER
            .iter()
            .position(|f| *f == folder)
            .unwrap_or_else(|| panic!("src/{folder} is not in the layout (tests/layout.rs)"))
    };
    let mut wrong = Vec::new();
    for (module, used) in edges() {
        for other in used {
            if rank(&other) > rank(&module) {
                wrong.push(format!("{module} uses {other}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses against the folder order {ORDER:?}:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_file_uses_a_file_that_uses_it() {
    let edges = edges();
    assert!(edges.len() > 40, "found only {} modules", edges.len());
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}
