//! The suite and the contract it checks stay twins: each `# Behavior` bullet of a
//! `ResultStore` method in `stent-core/src/store.rs` has exactly one case, in
//! `conformance/src/<method>.rs`, whose first doc paragraph is the bullet's text; each case of
//! such a file is a bullet of its method; and the `conformance_tests!` macro stamps every case.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Files whose cases check the wrapper, keys, the local tier or its broadcast rather than one
/// operation.
const AREAS: &[&str] = &[
    "wrapper",
    "keys",
    "bad_input",
    "transactional",
    "local",
    "broadcast",
];
/// Files of the crate that hold no case.
const NOT_CASES: &[&str] = &["lib", "support", "servers"];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The `# Behavior` bullets of each method of the `ResultStore` trait, a wrapped bullet
/// joined into one line.
fn bullets(store_rs: &str) -> BTreeMap<String, Vec<String>> {
    let start = store_rs
        .find("pub trait ResultStore")
        .expect("store.rs declares `pub trait ResultStore`");
    let mut methods = BTreeMap::new();
    let mut doc: Vec<&str> = Vec::new();
    for line in store_rs[start..].lines().skip(1) {
        if line == "}" {
            break;
        }
        let trimmed = line.trim_start();
        if let Some(text) = trimmed.strip_prefix("///") {
            doc.push(text.strip_prefix(' ').unwrap_or(text));
            continue;
        }
        if let Some(name) = fn_name(trimmed) {
            methods.insert(name.to_owned(), behavior_bullets(&doc));
        }
        doc.clear();
    }
    methods
}

fn behavior_bullets(doc: &[&str]) -> Vec<String> {
    let mut bullets: Vec<String> = Vec::new();
    let mut in_behavior = false;
    let mut in_bullet = false;
    for line in doc {
        if line.starts_with('#') {
            in_behavior = *line == "# Behavior";
            in_bullet = false;
        } else if !in_behavior {
            continue;
        } else if let Some(text) = line.strip_prefix("- ") {
            bullets.push(text.to_owned());
            in_bullet = true;
        } else if in_bullet && line.starts_with("  ") {
            let last = bullets.last_mut().expect("a bullet to continue");
            last.push(' ');
            last.push_str(line.trim());
        } else {
            in_bullet = false;
        }
    }
    bullets
}

/// The function declared on `line` (trimmed), if any.
fn fn_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("pub ").unwrap_or(line);
    let rest = rest.strip_prefix("async ").unwrap_or(rest);
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(['(', '<'])?;
    Some(&rest[..end])
}

/// A case: a `pub async fn` of the crate and its first doc paragraph, joined into one line.
#[derive(Debug)]
struct Case {
    name: String,
    doc: String,
}

fn cases(source: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut doc: Vec<&str> = Vec::new();
    for line in source.lines() {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.strip_prefix(' ').unwrap_or(text));
            continue;
        }
        if let Some(name) = line
            .strip_prefix("pub async fn ")
            .and_then(|rest| rest.split(['(', '<']).next())
        {
            let first = doc.split(|l| l.trim().is_empty()).next().unwrap_or(&[]);
            cases.push(Case {
                name: name.to_owned(),
                doc: first.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" "),
            });
        }
        doc.clear();
    }
    cases
}

/// Every case file of `conformance/src`, by module name.
fn case_files() -> BTreeMap<String, Vec<Case>> {
    let dir = manifest_dir().join("src");
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(&dir).expect("conformance/src") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let module = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a UTF-8 file name")
            .to_owned();
        if !NOT_CASES.contains(&module.as_str()) {
            files.insert(module, cases(&read(&path)));
        }
    }
    files
}

fn contract() -> BTreeMap<String, Vec<String>> {
    let methods = bullets(&read(&manifest_dir().join("../stent-core/src/store.rs")));
    let total: usize = methods.values().map(Vec::len).sum();
    assert!(
        methods.contains_key("claim") && total >= 10,
        "the parser found too few bullets in store.rs, is it still reading the trait? {methods:#?}"
    );
    methods
        .into_iter()
        .filter(|(_, bullets)| !bullets.is_empty())
        .collect()
}

fn fail_with(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn every_behavior_bullet_has_a_twin_case() {
    let files = case_files();
    let mut problems = Vec::new();
    for (method, bullets) in contract() {
        let Some(cases) = files.get(&method) else {
            problems.push(format!(
                "`{method}` has `# Behavior` bullets but there is no conformance/src/{method}.rs"
            ));
            continue;
        };
        for bullet in bullets {
            let twins: Vec<_> = cases.iter().filter(|c| c.doc == bullet).collect();
            match twins.len() {
                1 => {}
                0 => problems.push(format!(
                    "`{method}` bullet without a twin case in conformance/src/{method}.rs: {bullet:?}"
                )),
                _ => problems.push(format!(
                    "`{method}` bullet with {} cases, {:?}, instead of one: {bullet:?}",
                    twins.len(),
                    twins.iter().map(|c| &c.name).collect::<Vec<_>>()
                )),
            }
        }
    }
    fail_with(&problems);
}

#[test]
fn every_operation_case_is_a_behavior_bullet() {
    let contract = contract();
    let mut problems = Vec::new();
    for (module, cases) in case_files() {
        if AREAS.contains(&module.as_str()) {
            continue;
        }
        let Some(bullets) = contract.get(&module) else {
            problems.push(format!(
                "conformance/src/{module}.rs is named after no `ResultStore` method with `# Behavior` bullets"
            ));
            continue;
        };
        for case in cases {
            if !case.name.starts_with(&format!("{module}_")) {
                problems.push(format!(
                    "{module}::{} is not named `{module}_<expected_behaviour>`",
                    case.name
                ));
            }
            if !bullets.contains(&case.doc) {
                problems.push(format!(
                    "{module}::{}'s doc line is no `# Behavior` bullet of `{module}`: {:?}",
                    case.name, case.doc
                ));
            }
        }
    }
    fail_with(&problems);
}

#[test]
fn every_case_is_stamped_by_the_macro() {
    let lib = read(&manifest_dir().join("src/lib.rs"));
    let mut problems = Vec::new();
    for (module, cases) in case_files() {
        for case in cases {
            if case.doc.is_empty() {
                problems.push(format!("{module}::{} has no doc line", case.name));
            }
            if !lib.contains(&format!("{module}::{},", case.name))
                && !lib.contains(&format!("{module}::{}\n", case.name))
            {
                problems.push(format!(
                    "{module}::{} is not in the `conformance_tests!` list",
                    case.name
                ));
            }
        }
    }
    fail_with(&problems);
}
