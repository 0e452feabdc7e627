//! Conformance vectors for behavioural profiles, deviation scoring, the NK
//! audit and profile merge (ES-4.2, ES-4.3, ES-7.4, ES-8.2 TV6–8, ES-8.4 TV11).
//!
//! Profiles are stated by their statistics ([`Stats`], physical units, as in
//! the spec's vectors); histograms are sparse `(bin, count)` lists. Verdicts,
//! bits, versions, ranges and bins are compared exactly, σ figures within the
//! case's `tol`.
use super::Outcome;
use krill_core::profile::{
    compute_deviation, maybe_run_nk_audit, merge_profiles, nk_audit_due, run_nk_audit, version_newer,
    BehavioralProfile, DeviationVerdict, NkAuditResult, Observation, ProfileMode, SubjectKind,
};
use krill_core::{DeviceId, QuantityType, MAX_PROFILE_BINS};
use serde::Deserialize;

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// Score one reading against a profile (ES-4.2 `compute_deviation`).
    Deviation(DeviationCase),
    /// Audit a current profile against a self-signature (ES-4.3).
    Drift(DriftCase),
    /// Merge two profiles (ES-7.4).
    Merge(MergeCase),
    /// Wrap-aware version order.
    Version(VersionCase),
    /// Feed readings into a histogram and check range and bins.
    Histogram(HistogramCase),
    /// Which per-profile random bytes select an NK audit.
    AuditDraw(AuditDrawCase),
    /// Classify a σ figure into a verdict band.
    Classify(ClassifyCase),
}

fn temperature() -> QuantityType {
    QuantityType::Temperature
}

/// A profile given by its statistics; unset fields are zero / empty.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Quantity (default Temperature).
    #[serde(default = "temperature")]
    pub quantity: QuantityType,
    /// Mean value, physical units.
    #[serde(default)]
    pub value_mean: f32,
    /// Value variance, physical units squared.
    #[serde(default)]
    pub value_var: f32,
    /// Mean interval, ms.
    #[serde(default)]
    pub avg_interval_ms: f32,
    /// Interval variance, ms².
    #[serde(default)]
    pub interval_var_ms: f32,
    /// Distinct neighbours per day.
    #[serde(default)]
    pub unique_neighbors: f32,
    /// Correlation per neighbour slot, from slot 0.
    #[serde(default)]
    pub correlations: Vec<f32>,
    /// Profile version.
    #[serde(default)]
    pub version: u32,
    /// Readings absorbed.
    #[serde(default)]
    pub count: u32,
    /// Histogram range (min, max), reading units.
    #[serde(default)]
    pub range: (i16, i16),
    /// Non-zero histogram bins as (index, count).
    #[serde(default)]
    pub bins: Vec<(usize, u16)>,
}

const SUBJECT: DeviceId = DeviceId([0xD0, 0x57, 0, 0, 0, 0, 0, 1]);

impl Stats {
    fn build(&self, mode: ProfileMode) -> Result<BehavioralProfile, String> {
        let mut p = BehavioralProfile::new(SUBJECT, self.quantity, mode);
        p.value_mean = self.value_mean;
        p.value_var = self.value_var;
        p.avg_interval_ms = self.avg_interval_ms;
        p.interval_var_ms = self.interval_var_ms;
        p.unique_neighbors = self.unique_neighbors;
        p.profile_version = self.version;
        p.value_count = self.count;
        (p.value_min, p.value_max) = self.range;
        for (slot, c) in self.correlations.iter().enumerate() {
            *p.correlation_scores.get_mut(slot).ok_or(format!("correlation slot {slot} out of range"))? = *c;
        }
        for &(i, c) in &self.bins {
            *p.value_hist.get_mut(i).ok_or(format!("bin {i} ≥ {MAX_PROFILE_BINS}"))? = c;
        }
        Ok(p)
    }
}

fn sparse(bins: &[u16; MAX_PROFILE_BINS]) -> Vec<(usize, u16)> {
    bins.iter().enumerate().filter(|(_, &c)| c != 0).map(|(i, &c)| (i, c)).collect()
}

fn nano() -> SubjectKind {
    SubjectKind::Nano
}

/// One deviation score.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviationCase {
    /// The profile (running).
    pub profile: Stats,
    /// The new reading, wire units.
    pub reading: i16,
    /// Local receive gap to the previous reading; none = no previous reading.
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// Latest neighbour readings by slot (`None` = dead / no reading).
    #[serde(default)]
    pub neighbors: Vec<Option<i16>>,
    /// Subject kind for the verdict bands (default Nano).
    #[serde(default = "nano")]
    pub kind: SubjectKind,
    /// Expected total deviation, σ.
    pub total: f64,
    /// Tolerance on `total`.
    pub tol: f64,
    /// Expected verdict (exact).
    pub verdict: DeviationVerdict,
    /// Expected value z-score.
    #[serde(default)]
    pub z_value: Option<f64>,
    /// Expected timing z-score.
    #[serde(default)]
    pub z_timing: Option<f64>,
    /// Expected neighbour expectation, physical units.
    #[serde(default)]
    pub expected: Option<f64>,
    /// Expected correlation z-score.
    #[serde(default)]
    pub z_corr: Option<f64>,
    /// Tolerance on the component figures.
    #[serde(default)]
    pub ztol: f64,
}

/// Expected audit outcome.
#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
pub enum Audit {
    /// The random byte did not select an audit.
    NotRun,
    /// Audited, within threshold.
    Pass,
    /// Audited, drift beyond threshold.
    DriftDetected,
}

/// One NK audit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftCase {
    /// The frozen self-signature.
    pub baseline: Stats,
    /// The current profile.
    pub current: Stats,
    /// Subject kind (default Nano): Dust uses 6.0σ.
    #[serde(default = "nano")]
    pub kind: SubjectKind,
    /// The per-profile random byte; none = audit unconditionally.
    #[serde(default)]
    pub rng_byte: Option<u8>,
    /// Expected outcome (exact).
    pub result: Audit,
    /// Expected drift, σ.
    #[serde(default)]
    pub drift: Option<f64>,
    /// Tolerance on `drift`.
    #[serde(default)]
    pub tol: f64,
    /// Expected drifted-dimension bits (exact).
    #[serde(default)]
    pub dims: Option<u8>,
}

/// Which input a merge took as primary.
#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
pub enum Which {
    /// Profile `a`.
    A,
    /// Profile `b`.
    B,
}

/// One merge; `a` and `b` must have different `count`s so that the primary
/// (whose fields the merge keeps) can be recognised.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeCase {
    /// First argument.
    pub a: Stats,
    /// Second argument.
    pub b: Stats,
    /// Expected primary (exact).
    pub primary: Which,
    /// Expected merged mean.
    pub mean: f64,
    /// Expected merged variance.
    pub var: f64,
    /// Tolerance on mean and variance.
    pub tol: f64,
    /// Expected merged version (exact).
    pub version: u32,
    /// Expected merged range (exact).
    #[serde(default)]
    pub range: Option<(i16, i16)>,
    /// Expected non-zero bins, all of them (exact).
    #[serde(default)]
    pub bins: Option<Vec<(usize, u16)>>,
}

/// `version_newer(a, b)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionCase {
    /// Candidate newer version.
    pub a: u32,
    /// Candidate older version.
    pub b: u32,
    /// Expected answer.
    pub newer: bool,
}

/// Histogram updates on a running profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramCase {
    /// Starting profile (range and bins matter).
    pub start: Stats,
    /// Readings fed in order, wire units.
    pub readings: Vec<i16>,
    /// Expected final range (exact).
    pub range: (i16, i16),
    /// Expected non-zero bins, all of them (exact).
    pub bins: Vec<(usize, u16)>,
}

/// Audit draws.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditDrawCase {
    /// Random bytes, one per profile.
    pub bytes: Vec<u8>,
    /// Whether each selects an audit.
    pub due: Vec<bool>,
    /// How many of the 256 byte values select an audit.
    pub per_256: usize,
}

/// A verdict band.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyCase {
    /// The σ figure.
    pub sigma: f32,
    /// Subject kind.
    pub kind: SubjectKind,
    /// Expected verdict.
    pub verdict: DeviationVerdict,
}

fn close_opt(o: &mut Outcome, name: &str, got: Option<f32>, want: Option<f64>, tol: f64) {
    match (got, want) {
        (Some(g), Some(w)) => o.close(name, g as f64, w, tol),
        (None, Some(w)) => o.fail(format!("{name}: not computed, expected {w}")),
        (g, None) => o.value(name, g),
    }
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut o = Outcome::default();
    if let Err(e) = run_into(c, &mut o) {
        o.fail(e);
    }
    o
}

fn run_into(c: &Case, o: &mut Outcome) -> Result<(), String> {
    match c {
        Case::Deviation(c) => {
            let p = c.profile.build(ProfileMode::Running)?;
            let q = p.quantity;
            let t0 = 1_000_000u64;
            let prev = c.interval_ms.map(|_| Observation { reading: c.reading, quantity: q, timestamp: 0, rx_ms: t0 });
            let new =
                Observation { reading: c.reading, quantity: q, timestamp: 5, rx_ms: t0 + c.interval_ms.unwrap_or(0) };
            let d = compute_deviation(&p, &new, prev.as_ref(), &c.neighbors).map_err(|e| format!("{e:?}"))?;
            close_opt(o, "z_value", Some(d.z_value), c.z_value, c.ztol);
            close_opt(o, "z_timing", d.z_timing, c.z_timing, c.ztol);
            close_opt(o, "expected", d.expected, c.expected, c.ztol);
            close_opt(o, "z_corr", d.z_corr, c.z_corr, c.ztol);
            o.close("total", d.total as f64, c.total, c.tol);
            o.exact("verdict", d.verdict(c.kind), c.verdict);
        }
        Case::Drift(c) => {
            let mut base = c.baseline.build(ProfileMode::Learning)?;
            base.freeze();
            let cur = c.current.build(ProfileMode::Running)?;
            let r = match c.rng_byte {
                Some(b) => maybe_run_nk_audit(SUBJECT, &base, &cur, b, c.kind),
                None => Some(run_nk_audit(SUBJECT, &base, &cur, c.kind)),
            };
            let drift = krill_core::profile::compute_profile_drift(&base, &cur);
            let dims = krill_core::profile::identify_drifted_dimensions(&base, &cur);
            let got = match r {
                None => Audit::NotRun,
                Some(NkAuditResult::Pass) => Audit::Pass,
                Some(NkAuditResult::DriftDetected { device_id, drift_sigma, dimensions }) => {
                    o.exact("device_id", device_id, SUBJECT);
                    o.exact("result.drift_sigma", drift_sigma, drift);
                    o.exact("result.dimensions", dimensions, dims);
                    Audit::DriftDetected
                }
            };
            o.exact("result", got, c.result);
            close_opt(o, "drift", Some(drift), c.drift, c.tol);
            match c.dims {
                Some(w) => o.exact("dims", dims, w),
                None => o.value("dims", dims),
            }
        }
        Case::Merge(c) => {
            let a = c.a.build(ProfileMode::Running)?;
            let b = c.b.build(ProfileMode::Running)?;
            if a.value_count == b.value_count {
                return Err("a and b need different counts to tell the primary".into());
            }
            let m = merge_profiles(&a, &b).map_err(|e| format!("{e:?}"))?;
            let primary = if m.value_count == a.value_count { Which::A } else { Which::B };
            o.exact("primary", primary, c.primary);
            o.close("mean", m.value_mean as f64, c.mean, c.tol);
            o.close("var", m.value_var as f64, c.var, c.tol);
            o.exact("version", m.profile_version, c.version);
            match c.range {
                Some(w) => o.exact("range", (m.value_min, m.value_max), w),
                None => o.value("range", (m.value_min, m.value_max)),
            }
            match &c.bins {
                Some(w) => o.exact("bins", sparse(&m.value_hist), w.clone()),
                None => o.value("bins", sparse(&m.value_hist)),
            }
        }
        Case::Version(c) => o.exact("newer", version_newer(c.a, c.b), c.newer),
        Case::Histogram(c) => {
            let mut p = c.start.build(ProfileMode::Running)?;
            let q = p.quantity;
            for (i, &r) in c.readings.iter().enumerate() {
                let obs = Observation { reading: r, quantity: q, timestamp: 0, rx_ms: i as u64 * 5000 };
                p.update(&obs, None, &[]).map_err(|e| format!("{e:?}"))?;
            }
            o.exact("range", (p.value_min, p.value_max), c.range);
            o.exact("bins", sparse(&p.value_hist), c.bins.clone());
        }
        Case::AuditDraw(c) => {
            let due: Vec<bool> = c.bytes.iter().map(|&b| nk_audit_due(b)).collect();
            o.exact("due", due, c.due.clone());
            o.exact("per_256", (0..=255u8).filter(|&b| nk_audit_due(b)).count(), c.per_256);
        }
        Case::Classify(c) => o.exact("verdict", DeviationVerdict::classify(c.sigma, c.kind), c.verdict),
    }
    Ok(())
}
