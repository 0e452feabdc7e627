//! Conformance vectors: RON data files (format in `core/vectors/README.md`)
//! run against `krill-core`, from `cargo test` and from `krill vectors`.
//!
//! Each module of the core has one file here with its case type and a `run`
//! function that computes the values and compares them with the expectation.

use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub mod consistency;
pub mod crypto;
pub mod dag;
pub mod distance;
pub mod dust;
pub mod enroll;
pub mod field;
pub mod gateway;
pub mod guards;
pub mod lifecycle;
pub mod metabolic;
pub mod persist;
pub mod profile;
pub mod quorum;
pub mod vaccine;
pub mod wire;

/// One vector file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// The core module under test, e.g. "consistency".
    pub module: String,
    /// Spec sections the file covers, e.g. "ES-4.1, ES-8.1".
    #[serde(default)]
    pub spec: String,
    /// The cases, run in order.
    pub cases: Vec<Case>,
}

/// One named case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique name within the file, e.g. "TV1".
    pub name: String,
    /// Where the case comes from: a spec test vector ("ES-8.1 TV1") or "own".
    #[serde(default)]
    pub source: String,
    /// What to run and what to expect.
    pub check: Check,
}

/// The kinds of check, one per core module.
#[derive(Debug, Deserialize)]
pub enum Check {
    /// ES-4.1 physical consistency.
    Consistency(consistency::Case),
    /// ES-4.5 pheromone field.
    Field(field::Case),
    /// ES-5 local DAG.
    Dag(dag::Case),
    /// ES-3.2 quorum sensing.
    Quorum(quorum::Case),
    /// ES-11 distance estimation.
    Distance(distance::Case),
    /// ES-15 DoS guards and ES-12.2 segmentation.
    Guards(guards::Case),
    /// ES-16 gateway trust.
    Gateway(gateway::Case),
    /// ES-2 wire formats.
    Wire(wire::Case),
    /// ES-2.3/ES-12.4 Dust LoRa frames and the ES-6.1 TraceBatch.
    Dust(dust::Case),
    /// ES-13 crypto and enrollment.
    Crypto(crypto::Case),
    /// ES-4.2, ES-4.3, ES-7.4 behavioural profiles and NK audit.
    Profile(profile::Case),
    /// ES-14 persistence.
    Persist(persist::Case),
    /// ES-3.1 lifecycle and the inflammation protocol.
    Lifecycle(lifecycle::Case),
    /// ES-2.8 vaccines.
    Vaccine(vaccine::Case),
    /// ES-1.2 metabolic decay, ES-4.4, ES-4.6, ES-6 settlement.
    Metabolic(metabolic::Case),
    /// ES-13.2 enrollment decisions of provisioners and devices.
    Enroll(enroll::Case),
}

/// What running one case produced: the computed values, and the mismatches.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Computed values, `name = value`, for the printout.
    pub computed: Vec<String>,
    /// Each expectation that did not hold, in words.
    pub failures: Vec<String>,
}

impl Outcome {
    /// Records a computed value for the printout.
    pub fn value(&mut self, name: &str, v: impl std::fmt::Debug) {
        self.computed.push(format!("{name} = {v:?}"));
    }

    /// Records a value and checks it equals the expectation exactly.
    pub fn exact<T: PartialEq + std::fmt::Debug>(&mut self, name: &str, got: T, want: T) {
        if got != want {
            self.failures.push(format!("{name}: got {got:?}, expected {want:?}"));
        }
        self.value(name, got);
    }

    /// Records a float and checks it is within `tol` of the expectation.
    pub fn close(&mut self, name: &str, got: f64, want: f64, tol: f64) {
        if !(got - want).abs().le(&tol) {
            self.failures.push(format!("{name}: got {got}, expected {want} ± {tol}"));
        }
        self.computed.push(format!("{name} = {got}"));
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

impl Check {
    /// Runs the check against the core.
    pub fn run(&self) -> Outcome {
        match self {
            Check::Consistency(c) => consistency::run(c),
            Check::Field(c) => field::run(c),
            Check::Dag(c) => dag::run(c),
            Check::Quorum(c) => quorum::run(c),
            Check::Distance(c) => distance::run(c),
            Check::Guards(c) => guards::run(c),
            Check::Gateway(c) => gateway::run(c),
            Check::Wire(c) => wire::run(c),
            Check::Dust(c) => dust::run(c),
            Check::Crypto(c) => crypto::run(c),
            Check::Profile(c) => profile::run(c),
            Check::Persist(c) => persist::run(c),
            Check::Lifecycle(c) => lifecycle::run(c),
            Check::Vaccine(c) => vaccine::run(c),
            Check::Metabolic(c) => metabolic::run(c),
            Check::Enroll(c) => enroll::run(c),
        }
    }
}

/// Why a vector file could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The path could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid vector RON.
    #[error("{path}:{line}:{col}: {msg} (see core/vectors/README.md for the format)")]
    Parse {
        /// The path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// A directory held no `.ron` files.
    #[error("{0}: no .ron vector files found")]
    Empty(PathBuf),
}

/// Reads and parses one vector file.
pub fn load(path: &Path) -> Result<VectorFile, VectorError> {
    let text = std::fs::read_to_string(path).map_err(|source| VectorError::Io { path: path.to_owned(), source })?;
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME).from_str(&text).map_err(
        |e| VectorError::Parse {
            path: path.to_owned(),
            line: e.span.start.line,
            col: e.span.start.col,
            msg: e.code.to_string(),
        },
    )
}

/// Expands files and directories (non-recursive, `.ron` only) into a sorted
/// list of files, so runs are in a stable order.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, VectorError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|source| VectorError::Io { path: p.clone(), source })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "ron"))
                .collect();
            if files.is_empty() {
                return Err(VectorError::Empty(p.clone()));
            }
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The result of one case, for reports and tests.
#[derive(Debug)]
pub struct CaseReport {
    /// File the case came from.
    pub file: PathBuf,
    /// Module named by the file.
    pub module: String,
    /// Case name.
    pub name: String,
    /// Case source.
    pub source: String,
    /// What running it produced.
    pub outcome: Outcome,
}

/// Runs every case of every file; a file that fails to load is an error.
pub fn run_paths(paths: &[PathBuf]) -> Result<Vec<CaseReport>, VectorError> {
    let mut reports = Vec::new();
    for file in collect(paths)? {
        let vf = load(&file)?;
        for case in vf.cases {
            reports.push(CaseReport {
                file: file.clone(),
                module: vf.module.clone(),
                outcome: case.check.run(),
                name: case.name,
                source: case.source,
            });
        }
    }
    Ok(reports)
}

/// Formats one report as the CLI prints it.
pub fn render(r: &CaseReport) -> String {
    let mut s = String::new();
    let verdict = if r.outcome.passed() { "PASS" } else { "FAIL" };
    let _ = write!(s, "{verdict} {}::{}", r.module, r.name);
    if !r.source.is_empty() {
        let _ = write!(s, " ({})", r.source);
    }
    for v in &r.outcome.computed {
        let _ = write!(s, "\n     {v}");
    }
    for f in &r.outcome.failures {
        let _ = write!(s, "\n  !! {f}");
    }
    s
}
