//! The workspace's structural rules, checked on every test run so they stay
//! true (docs/architecture.md):
//!
//! - no module of any crate imports a module that imports it back (within a
//!   crate, `use` paths and qualified paths through `crate::`, `super::`,
//!   `self::` or a child module's name count as imports; test modules do not);
//! - the engine knows nothing of the network: `baton-broker` depends on
//!   neither tonic nor HTTP crates, and takes `baton-proto` without its gRPC
//!   stubs;
//! - `baton-proto` compiles `.proto` files inside its own folder, so it can
//!   be packaged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module as a path of names below its crate root (`[]` is the root).
type Module = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

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

/// The module a source file holds, and whether it is a directory module
/// (`lib.rs`, `main.rs`, `mod.rs`), whose `super` is its parent's parent.
fn module_of(src: &Path, file: &Path) -> (Module, bool) {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let is_dir = matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    );
    if is_dir {
        parts.pop();
    }
    (parts, is_dir)
}

/// The file's code without comments and without its `#[cfg(test)]` tail.
fn code(text: &str) -> String {
    let without_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    without_tests
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `a::b::c` path in `code`, as its segments.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let starts_path = ident(chars[i])
            && (i == 0 || !(ident(chars[i - 1]) || chars[i - 1] == ':'))
            && !chars[i].is_ascii_digit();
        if !starts_path {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < chars.len() && ident(chars[j]) {
                j += 1;
            }
            segments.push(chars[start..j].iter().collect::<String>());
            // `::` then another segment (a `{` group ends the path here).
            let mut k = j;
            while k < chars.len() && chars[k] == ' ' {
                k += 1;
            }
            if k + 2 < chars.len() && chars[k] == ':' && chars[k + 1] == ':' {
                let mut m = k + 2;
                while m < chars.len() && chars[m].is_whitespace() {
                    m += 1;
                }
                if m < chars.len() && ident(chars[m]) {
                    j = m;
                    continue;
                }
            }
            break;
        }
        if segments.len() > 1 {
            found.push(segments);
        }
        i = j.max(i + 1);
    }
    found
}

/// The module a path leads into, if it is one of the crate's own.
fn target(
    from: &Module,
    is_dir: bool,
    path: &[String],
    modules: &BTreeSet<Module>,
) -> Option<Module> {
    let (mut at, rest): (Module, &[String]) = match path[0].as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (from.clone(), &path[1..]),
        "super" => {
            let mut parent = from.clone();
            // In `a/b.rs`, `super` is `a`; in `a/b/mod.rs` (module a::b) too.
            let _ = is_dir;
            parent.pop();
            (parent, &path[1..])
        }
        // A child module's name.
        first => {
            let mut child = from.clone();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            (child, &path[1..])
        }
    };
    for segment in rest {
        let mut deeper = at.clone();
        deeper.push(segment.clone());
        if modules.contains(&deeper) {
            at = deeper;
        } else {
            break;
        }
    }
    modules.contains(&at).then_some(at)
}

/// The modules of a crate that import one another, directly or through
/// others: each cycle's members.
fn cycles(src: &Path) -> Vec<Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules_of: Vec<(Module, bool, PathBuf)> = files
        .iter()
        .map(|file| {
            let (module, is_dir) = module_of(src, file);
            (module, is_dir, file.clone())
        })
        .collect();
    let modules: BTreeSet<Module> = modules_of.iter().map(|(m, _, _)| m.clone()).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, is_dir, file) in &modules_of {
        let text = std::fs::read_to_string(file).unwrap();
        let entry = edges.entry(module.clone()).or_default();
        for path in paths(&code(&text)) {
            if let Some(to) = target(module, *is_dir, &path, &modules)
                && &to != module
            {
                entry.insert(to);
            }
        }
    }
    // Strongly connected components with more than one module.
    let mut found = Vec::new();
    let nodes: Vec<&Module> = edges.keys().collect();
    let reach = |from: &Module| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(next) = todo.pop() {
            for to in edges.get(&next).into_iter().flatten() {
                if seen.insert(to.clone()) {
                    todo.push(to.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&Module, BTreeSet<Module>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut done = BTreeSet::new();
    for node in &nodes {
        if done.contains(*node) {
            continue;
        }
        let component: Vec<&Module> = nodes
            .iter()
            .filter(|other| {
                reachable[*node].contains(**other) && reachable[**other].contains(*node)
            })
            .copied()
            .collect();
        if component.len() > 1 {
            found.push(
                component
                    .iter()
                    .map(|m| {
                        if m.is_empty() {
                            "<root>".into()
                        } else {
                            m.join("::")
                        }
                    })
                    .collect(),
            );
        }
        done.extend(component.into_iter().cloned());
        done.insert((*node).clone());
    }
    found
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let crates = workspace().join("crates");
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            for cycle in cycles(&src) {
                all.push(format!("{}: {cycle:?}", src.display()));
            }
        }
    }
    assert!(all.is_empty(), "import cycles:\n{}", all.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let dir = std::env::temp_dir().join(format!("baton-cycles-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    // a -> b -> a, while a's child `inner` importing its parent is not a
    // cycle of a with b.
    std::fs::write(
        src.join("a/mod.rs"),
        "mod inner;\npub struct A;\nfn f() -> crate::b::B { crate::b::B }\n",
    )
    .unwrap();
    std::fs::write(src.join("a/inner.rs"), "use super::A;\n").unwrap();
    std::fs::write(src.join("b.rs"), "use super::a::A;\npub struct B;\n").unwrap();
    let found = cycles(&src);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found, vec![vec!["a".to_string(), "b".to_string()]]);
}

/// `cargo metadata` of the workspace's own packages.
fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_broker_knows_nothing_of_the_network() {
    let metadata = metadata();
    let broker = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "baton-broker")
        .unwrap();
    let normal: Vec<&serde_json::Value> = broker["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"].is_null())
        .collect();
    for network in [
        "tonic",
        "tonic-prost",
        "axum",
        "hyper",
        "hyper-util",
        "reqwest",
        "http",
    ] {
        assert!(
            normal.iter().all(|d| d["name"] != network),
            "baton-broker depends on {network}"
        );
    }
    let proto = normal.iter().find(|d| d["name"] == "baton-proto").unwrap();
    assert_eq!(
        proto["features"],
        serde_json::json!([]),
        "the broker takes baton-proto without gRPC stubs"
    );
    assert_eq!(proto["uses_default_features"], true);
    let proto_package = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "baton-proto")
        .unwrap();
    assert_eq!(
        proto_package["features"]["default"],
        serde_json::Value::Null,
        "baton-proto has no default features that would pull tonic in"
    );
}

#[test]
fn baton_proto_compiles_protos_from_its_own_folder() {
    let proto = workspace().join("crates/baton-proto");
    let build = std::fs::read_to_string(proto.join("build.rs")).unwrap();
    assert!(build.contains("const PROTO_ROOT: &str = \"proto\";"));
    assert!(!build.contains("../"), "build.rs reads outside the crate");
    assert!(proto.join("proto/google/pubsub/v1/pubsub.proto").is_file());
}
