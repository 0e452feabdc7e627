//! Recompiles the simulator's conformance-vector runners
//! (`sim/src/vectors/<module>.rs`) for `no_std` + `alloc`, unchanged except
//! for mechanical rewrites, so the target runs the very code the host's
//! `krill vectors` runs:
//!
//! - `//!` module docs become plain comments (the file is inlined in a `mod`);
//! - `std::collections::` becomes `alloc::collections::`, other `std::` paths `core::`;
//! - every `#[derive(.. Deserialize ..)]` also derives `serde::Serialize`, so
//!   the host can encode the parsed RON cases for the target (postcard);
//! - `String`, `Vec`, `Box`, `format!`, `vec!` come from an `alloc` prelude.
//!
//! The `Check` enum (one variant per module) is generated from the
//! `Check::X(c) => x::run(c)` arms of `sim/src/vectors/mod.rs`, so a new
//! module in the sim shows up here without an edit.
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let sim = manifest.join("../../../sim/src/vectors");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", sim.display());

    let mod_rs = std::fs::read_to_string(sim.join("mod.rs")).expect("read sim/src/vectors/mod.rs");
    println!("cargo:rerun-if-changed={}", sim.join("mod.rs").display());
    let mut arms: Vec<(String, String)> = Vec::new();
    for line in mod_rs.lines() {
        let l = line.trim();
        let Some(rest) = l.strip_prefix("Check::") else { continue };
        let Some((variant, rest)) = rest.split_once("(c) => ") else { continue };
        let Some((module, _)) = rest.split_once("::run(c)") else { continue };
        arms.push((variant.to_string(), module.to_string()));
    }
    assert!(!arms.is_empty(), "no `Check::X(c) => x::run(c)` arms found in sim/src/vectors/mod.rs");

    let mut src = String::new();
    for (_, module) in &arms {
        let path = sim.join(format!("{module}.rs"));
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        writeln!(src, "#[allow(warnings, clippy::all, clippy::pedantic)]\npub mod {module} {{").unwrap();
        src.push_str("#[allow(unused_imports)]\nuse crate::prelude::*;\n");
        for line in text.lines() {
            let t = line.trim_start();
            if let Some(doc) = t.strip_prefix("//!") {
                writeln!(src, "//{doc}").unwrap();
                continue;
            }
            let mut l = line.replace("std::collections::", "alloc::collections::").replace("std::", "core::");
            if t.starts_with("#[derive(") && l.contains("Deserialize") {
                l = l.replacen("#[derive(", "#[derive(serde::Serialize, ", 1);
            }
            src.push_str(&l);
            src.push('\n');
        }
        src.push_str("}\n\n");
    }

    src.push_str("/// The kinds of check, one per core module (mirrors the sim's `Check`).\n");
    src.push_str("#[derive(Debug, serde::Serialize, serde::Deserialize)]\npub enum Check {\n");
    for (variant, module) in &arms {
        writeln!(src, "    /// `{module}` cases.\n    {variant}({module}::Case),").unwrap();
    }
    src.push_str("}\n\nimpl Check {\n    /// Runs the check against the core.\n    pub fn run(&self) -> Outcome {\n        match self {\n");
    for (variant, module) in &arms {
        writeln!(src, "            Check::{variant}(c) => {module}::run(c),").unwrap();
    }
    src.push_str("        }\n    }\n}\n");
    std::fs::write(out.join("runners.rs"), src).expect("write runners.rs");
}
