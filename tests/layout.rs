//! The workspace's shape, checked: each crate depends only on crates below it, SQL
//! stays in the store, and only the binary and the clock read the system time. A
//! new upward edge or a stray `rusqlite`/`Utc::now()` fails here, not in review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Lower layers first; a crate may depend (normally) only on crates of lower layers.
/// Dev-dependencies are free: a crate's tests may use a crate above it.
const LAYERS: &[&[&str]] = &[
    &["arrears-core", "arrears-secret", "arrears-proto"],
    &[
        "arrears-finance",
        "arrears-statements",
        "arrears-import",
        "arrears-delivery",
        "arrears-pdf",
    ],
    &["arrears-rules"],
    &["arrears-engine"],
    &["arrears-store"],
    &[
        "arrears-app",
        "arrears-connectors",
        "arrears-kpi",
        "arrears-demo",
    ],
    &["arrears-server"],
    // Test helpers sit at the top: with `daemon` they start the server in-process.
    &["arrears", "arrears-test-support"],
];

fn layer(name: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("{name} is in no layer of tests/layout.rs: place it"))
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(arrears_test_support::repo_root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Normal (not dev, not build) dependencies of every workspace package.
fn normal_deps() -> BTreeMap<String, Vec<String>> {
    let m = metadata();
    m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn every_crate_depends_only_downwards_and_only_the_store_on_sqlite() {
    let packages = normal_deps();
    assert!(packages.len() >= 15, "{packages:?}");
    let mut problems = Vec::new();
    for (name, deps) in &packages {
        let mine = layer(name);
        for d in deps {
            if d.starts_with("arrears") && layer(d) >= mine {
                problems.push(format!("{name} → {d} points up or sideways"));
            }
            if d == "rusqlite" && name != "arrears-store" {
                problems.push(format!(
                    "{name} depends on rusqlite; SQL belongs in the store"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for l in LAYERS.iter().flat_map(|l| l.iter()) {
        assert!(packages.contains_key(*l), "{l} is listed but not a package");
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Business dates and record stamps come from the `Clock` the binary passes down, so
/// a replay with `--as-of` or a fixed test clock reaches every layer.
#[test]
fn only_the_binary_and_the_clock_read_the_system_time() {
    let crates = arrears_test_support::repo_root().join("crates");
    let mut files = Vec::new();
    rust_files(&crates, &mut files);
    let allowed = |p: &Path| {
        p.starts_with(crates.join("arrears-cli")) || p.ends_with("arrears-core/src/clock.rs")
    };
    let mut problems = Vec::new();
    for f in files.iter().filter(|f| !allowed(f)) {
        let text = std::fs::read_to_string(f).unwrap();
        // Tests may fix their own dates; production code may not read the clock.
        let production = text.split("#[cfg(test)]").next().unwrap_or("");
        for needle in ["Utc::now()", "Local::now()", "SystemTime::now()"] {
            for (i, _) in production.match_indices(needle) {
                let line = production[..i].lines().count();
                problems.push(format!("{}:{line}: {needle}", f.display()));
            }
        }
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
