//! Runs every conformance vector file in `core/vectors/` and requires each
//! case to pass, and each core module to have at least five cases.

use krill_sim::vectors::{self, render};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn vector_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/vectors")
}

#[test]
fn every_vector_passes() {
    let reports = vectors::run_paths(&[vector_dir()]).expect("vector files load");
    let failed: Vec<String> = reports.iter().filter(|r| !r.outcome.passed()).map(render).collect();
    assert!(failed.is_empty(), "{} failing vector case(s):\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn every_module_has_own_edge_cases() {
    let reports = vectors::run_paths(&[vector_dir()]).expect("vector files load");
    let mut own: BTreeMap<String, usize> = BTreeMap::new();
    for r in &reports {
        if r.source.starts_with("own") {
            *own.entry(r.module.clone()).or_default() += 1;
        }
    }
    for module in ["consistency", "field", "dag", "quorum", "distance", "guards", "gateway", "wire", "dust", "enroll"] {
        let n = own.get(module).copied().unwrap_or(0);
        assert!(n >= 5, "module {module} has {n} own vector cases, need at least 5");
    }
}

#[test]
fn spec_vectors_are_all_present() {
    let reports = vectors::run_paths(&[vector_dir()]).expect("vector files load");
    for tv in ["TV1", "TV2", "TV3", "TV4", "TV5", "TV9", "TV10", "TV12", "TV13"] {
        assert!(
            reports.iter().any(|r| r.source.split(|c: char| !c.is_alphanumeric()).any(|w| w == tv)),
            "spec test vector {tv} has no case"
        );
    }
}

#[test]
fn a_broken_file_is_a_load_error_with_position() {
    let dir = std::env::temp_dir().join(format!("krill-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("broken.ron");
    std::fs::write(&f, "VectorFile(module: \"x\", cases: [Case(name: 1)])").unwrap();
    let err = vectors::run_paths(&[f]).unwrap_err().to_string();
    assert!(err.contains("broken.ron:1:"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
