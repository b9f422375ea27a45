//! The library's layers point one way (docs/architecture.md): no module of `crate/src` uses,
//! through `crate::` paths, a module that uses it back, directly or through others. Read from the
//! source as text: comments and `#[cfg(test)]` items are left out (tests may reach anywhere), and so
//! are the CLI (`bin/`) and the test helpers (`testing`, `trace`, `tests.rs`, `test_util.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LEFT_OUT: [&str; 3] = ["bin", "testing", "trace"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read crate/src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments and without the items under `#[cfg(test)]` (a block or a line).
fn code_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "#[cfg(test)]" {
            let mut depth = 0i32;
            let mut opened = false;
            i += 1;
            while i < lines.len() {
                depth += lines[i].matches('{').count() as i32 - lines[i].matches('}').count() as i32;
                opened |= lines[i].contains('{');
                i += 1;
                if (opened && depth <= 0) || (!opened && lines[i - 1].trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(lines[i]);
        out.push('\n');
        i += 1;
    }
    out
}

/// module → the other top-level modules its code names as `crate::<module>`.
fn uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let top = |p: &Path| -> String {
        let rel = p.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().into_owned();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|p| top(p)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let (m, name) = (top(f), f.file_name().unwrap_or_default().to_string_lossy().into_owned());
        if LEFT_OUT.contains(&m.as_str()) || m == "lib" || name == "tests.rs" || name == "test_util.rs" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(f).expect("read source"));
        for (at, _) in code.match_indices("crate::") {
            let used: String = code[at + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if used != m && modules.contains(&used) && !LEFT_OUT.contains(&used.as_str()) {
                edges.entry(m.clone()).or_default().insert(used);
            }
        }
    }
    edges
}

/// A path from `from` back to itself through the modules it uses, if there is one.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        for next in edges.get(path.last().expect("non-empty")).into_iter().flatten() {
            let mut p = path.clone();
            p.push(next.clone());
            if next == from {
                return Some(p);
            }
            if seen.insert(next.clone()) {
                stack.push(p);
            }
        }
    }
    None
}

#[test]
fn no_module_of_the_library_uses_one_that_uses_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = uses(&src);
    assert!(edges.get("models").is_some_and(|u| u.contains("kernels")), "the scan found no uses: {edges:?}");
    let circles: Vec<String> = edges.keys().filter_map(|m| circle(&edges, m)).map(|p| p.join(" → ")).collect();
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn a_circle_is_found() {
    let edges: BTreeMap<String, BTreeSet<String>> =
        [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")].iter().fold(BTreeMap::new(), |mut m, (x, y)| {
            m.entry(x.to_string()).or_default().insert(y.to_string());
            m
        });
    assert_eq!(circle(&edges, "a"), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    assert_eq!(circle(&edges, "d"), None);
    let code = code_of("use crate::x;\n// crate::y\n#[cfg(test)]\nmod tests {\n    use crate::z;\n}\n#[cfg(test)]\nuse crate::w;\nfn f() {}\n");
    assert!(code.contains("crate::x") && !code.contains("crate::y") && !code.contains("crate::z") && !code.contains("crate::w"), "{code}");
}
