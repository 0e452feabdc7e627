//! The simulator's conformance-vector runners (`sim/src/vectors/`), compiled
//! `no_std` + `alloc` so the QEMU Cortex-M4 image runs the same checks, on
//! the same case data, as `krill vectors` on the host.
//!
//! The host side (feature `gen`) parses `core/vectors/*.ron` with the sim's
//! own case types and encodes them with postcard; the target decodes that
//! blob into the same types and runs each case. Every computed value a case
//! records goes into a BLAKE2s-256 digest, so the host and the target can
//! prove they computed bit-identical results (floats are hashed by their
//! bits, everything else by its `Debug` text).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "gen")]
extern crate std;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use blake2::{Blake2s256, Digest};
use serde::{Deserialize, Serialize};

/// What the sim's runner files expect from `std`'s prelude.
mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

/// The part of the sim's `codec` module the runners call.
pub mod codec {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    /// Why case data is not hex (the sim's `CodecError::Hex`, as text).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct HexError(pub String);

    impl core::fmt::Display for HexError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "bad hex: {}", self.0)
        }
    }

    /// Parses hex as the sim's `codec::parse_hex` does: optional `0x`, and
    /// whitespace, `:`, `-`, `_` between digits ignored.
    pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
        let t = text.trim();
        let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        let digits: String = t.chars().filter(|c| !(c.is_whitespace() || matches!(c, ':' | '-' | '_'))).collect();
        if digits.is_empty() {
            return Err(HexError("no hex digits".into()));
        }
        if let Some((i, c)) = digits.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(HexError(format!("{c:?} at digit {} is not a hex digit", i + 1)));
        }
        if !digits.len().is_multiple_of(2) {
            return Err(HexError(format!("odd number of hex digits ({})", digits.len())));
        }
        hex::decode(&digits).map_err(|e| HexError(format!("{e}")))
    }
}

/// The runners, one module per core module, and the `Check` enum.
pub mod vectors {
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    /// What running one case produced (the sim's `Outcome`, same API).
    #[derive(Debug, Default)]
    pub struct Outcome {
        /// Computed values, `name = value`.
        pub computed: Vec<String>,
        /// Each expectation that did not hold, in words.
        pub failures: Vec<String>,
    }

    impl Outcome {
        /// Records a computed value.
        pub fn value(&mut self, name: &str, v: impl core::fmt::Debug) {
            self.computed.push(format!("{name} = {v:?}"));
        }

        /// Records a value and checks it equals the expectation exactly.
        pub fn exact<T: PartialEq + core::fmt::Debug>(&mut self, name: &str, got: T, want: T) {
            if got != want {
                self.failures.push(format!("{name}: got {got:?}, expected {want:?}"));
            }
            self.value(name, got);
        }

        /// Records a float and checks it is within `tol` of the expectation.
        /// The recorded text carries the value's bits, so the digest is exact.
        pub fn close(&mut self, name: &str, got: f64, want: f64, tol: f64) {
            let d = got - want;
            let d = if d < 0.0 { -d } else { d };
            // `le` is false for NaN, so a NaN result fails as on the host.
            if !d.le(&tol) {
                self.failures.push(format!("{name}: got {got}, expected {want} ± {tol}"));
            }
            self.computed.push(format!("{name} = {got} [bits {:016x}]", got.to_bits()));
        }

        /// Records a failure that is not a value comparison.
        pub fn fail(&mut self, why: impl Into<String>) {
            self.failures.push(why.into());
        }

        /// True when no expectation failed.
        pub fn passed(&self) -> bool {
            self.failures.is_empty()
        }
    }

    include!(concat!(env!("OUT_DIR"), "/runners.rs"));
}

/// One vector file (the sim's `VectorFile`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// The core module under test.
    pub module: String,
    /// Spec sections the file covers.
    #[serde(default)]
    pub spec: String,
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One named case (the sim's `Case`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique name within the file.
    pub name: String,
    /// A spec test vector ("ES-8.1 TV1") or "own".
    #[serde(default)]
    pub source: String,
    /// What to run and what to expect.
    pub check: vectors::Check,
}

/// Decodes the blob the host encoded.
pub fn decode(blob: &[u8]) -> Result<Vec<VectorFile>, postcard::Error> {
    postcard::from_bytes(blob)
}

/// Per-module pass/fail counts.
#[derive(Debug, Clone)]
pub struct ModuleCount {
    /// Module name from the vector file.
    pub module: String,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
}

/// Totals of one run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Counts per vector file, in run order.
    pub modules: Vec<ModuleCount>,
    /// BLAKE2s-256 over every case's module, name, verdict and computed values.
    pub digest: [u8; 32],
}

/// Runs every case in order. `out` gets one line per case (`PASS m::name`
/// or `FAIL m::name` followed by `  !! why` lines); `verbose` adds the
/// computed values. The digest covers, per case:
/// `module 0x00 name 0x00 verdict '\n'` then each computed value and `'\n'`.
pub fn run_all(files: &[VectorFile], verbose: bool, mut out: impl FnMut(&str)) -> Summary {
    let mut h = Blake2s256::new();
    let mut s = Summary { passed: 0, failed: 0, modules: Vec::new(), digest: [0; 32] };
    for f in files {
        let mut m = ModuleCount { module: f.module.clone(), passed: 0, failed: 0 };
        for c in &f.cases {
            let o = c.check.run();
            let verdict = if o.passed() { "PASS" } else { "FAIL" };
            h.update(f.module.as_bytes());
            h.update([0]);
            h.update(c.name.as_bytes());
            h.update([0]);
            h.update(verdict.as_bytes());
            h.update(b"\n");
            for v in &o.computed {
                h.update(v.as_bytes());
                h.update(b"\n");
            }
            out(&format!("{verdict} {}::{}", f.module, c.name));
            if verbose {
                for v in &o.computed {
                    out(&format!("     {v}"));
                }
            }
            for why in &o.failures {
                out(&format!("  !! {why}"));
            }
            if o.passed() {
                m.passed += 1;
            } else {
                m.failed += 1;
            }
        }
        s.passed += m.passed;
        s.failed += m.failed;
        s.modules.push(m);
    }
    s.digest.copy_from_slice(&h.finalize());
    s
}

/// BLAKE2s-256 of a byte string, for naming the encoded case blob.
pub fn blake2s(bytes: &[u8]) -> [u8; 32] {
    let mut d = [0; 32];
    d.copy_from_slice(&Blake2s256::digest(bytes));
    d
}

/// Reads every `*.ron` in `dir` (sorted, as the sim does) with the sim's
/// RON options and encodes them for the target.
#[cfg(feature = "gen")]
pub fn encode_dir(dir: &std::path::Path) -> Result<Vec<u8>, String> {
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{}: no .ron vector files", dir.display()));
    }
    let opts = ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
    let mut files = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let vf: VectorFile = opts.from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        files.push(vf);
    }
    postcard::to_stdvec(&files).map_err(|e| format!("postcard: {e}"))
}

/// The vector directory of this checkout (`core/vectors`).
#[cfg(feature = "gen")]
pub fn default_vector_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../core/vectors")
}
