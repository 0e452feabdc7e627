//! Parameter sweeps: one scenario run over a range of one parameter and a
//! number of seeds, runs spread over a thread pool. A sweep can be cut into
//! shards (`--shard i/n`, task k goes to shard k mod n) for a cluster
//! scheduler; each shard writes JSON lines and `krill report` merges them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::check::ExpectationResult;
use crate::scenario::{AttackKind, Scenario};
use crate::summary::{Finished, SIM_STACK};

/// Why a sweep could not be set up or its output read.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// `--param` is not `NAME=a..b[:steps]` or `NAME=v1,v2,…`.
    #[error("--param {0:?}: write NAME=a..b[:steps] or NAME=v1,v2,...")]
    ParamSyntax(String),
    /// No such parameter.
    #[error("unknown parameter {0:?}; known: {known}", known = known_params())]
    UnknownParam(String),
    /// The parameter changes nothing in this scenario.
    #[error("parameter {0} changes nothing in this scenario (no attack or field has it)")]
    NoEffect(String),
    /// A value does not fit the parameter.
    #[error("{name} = {value}: {why}")]
    BadValue {
        /// Parameter.
        name: String,
        /// Value.
        value: f64,
        /// What is wrong.
        why: String,
    },
    /// `--shard` is not `i/n` with `i < n`.
    #[error("--shard {0:?}: write i/n with 0 <= i < n")]
    Shard(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A JSON line did not parse.
    #[error("{path}:{line}: {msg}")]
    Record {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The thread pool could not start.
    #[error("thread pool: {0}")]
    Pool(String),
}

/// The parameters a sweep can vary, with what they change.
pub const PARAMS: &[(&str, &str)] = &[
    (
        "attack.offset",
        "offset of every attack that has one (Spike, Forgery, Sybil, WeightInflation, Collusion, GatewayCompromise)",
    ),
    ("attack.start_s", "start of every attack, s"),
    ("attack.rate_per_s", "frames per second of every Flood"),
    ("attack.rate_per_h", "rate of every Drift, per hour"),
    ("noise_sd", "sensor noise σ of every field"),
    ("bias_sd", "σ of the sensors' fixed bias, every field"),
    ("duration_s", "scenario duration after warm-up, s"),
    ("warmup_s", "warm-up length, s (warm start only)"),
    ("tx_power_dbm", "Nano transmit power, dBm"),
    ("shadowing_sd_db", "static shadowing σ per link, dB"),
    ("fading_sd_db", "per-packet fading σ, dB"),
    ("ble_unicast_transmits", "BLE Mesh transmissions of each unicast, 1 to 8"),
];

fn known_params() -> String {
    PARAMS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
}

/// A parameter and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamRange {
    /// Parameter name (one of [`PARAMS`]).
    pub name: String,
    /// Values, in order.
    pub values: Vec<f64>,
}

/// Steps of `a..b` when none are given.
const DEFAULT_STEPS: usize = 5;
/// Most values one `--param` may produce.
const MAX_STEPS: usize = 10_000;

impl FromStr for ParamRange {
    type Err = SweepError;

    fn from_str(text: &str) -> Result<Self, SweepError> {
        let syntax = || SweepError::ParamSyntax(text.to_string());
        let (name, spec) = text.split_once('=').ok_or_else(syntax)?;
        let name = name.trim();
        if !PARAMS.iter().any(|p| p.0 == name) {
            return Err(SweepError::UnknownParam(name.to_string()));
        }
        let num = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(syntax);
        let values = if let Some((a, rest)) = spec.split_once("..") {
            let (b, steps) = match rest.split_once(':') {
                Some((b, k)) => (b, k.trim().parse::<usize>().map_err(|_| syntax())?),
                None => (rest, DEFAULT_STEPS),
            };
            let (a, b) = (num(a)?, num(b)?);
            if steps == 0 || steps > MAX_STEPS {
                return Err(syntax());
            }
            if steps == 1 {
                vec![a]
            } else {
                (0..steps).map(|i| a + (b - a) * i as f64 / (steps - 1) as f64).collect()
            }
        } else {
            spec.split(',').map(num).collect::<Result<Vec<f64>, _>>()?
        };
        Ok(ParamRange { name: name.to_string(), values })
    }
}

fn whole(name: &str, v: f64) -> Result<u64, SweepError> {
    if !(0.0..=1e12).contains(&v) {
        return Err(SweepError::BadValue { name: name.into(), value: v, why: "needs a whole number ≥ 0".into() });
    }
    Ok(v.round() as u64)
}

/// Sets parameter `name` to `v` in `s`, then validates the scenario again.
pub fn apply(s: &mut Scenario, name: &str, v: f64) -> Result<(), SweepError> {
    let mut touched = 0;
    match name {
        "attack.offset" => {
            for a in &mut s.attacks {
                match &mut a.kind {
                    AttackKind::Spike { offset }
                    | AttackKind::Forgery { offset, .. }
                    | AttackKind::Sybil { offset, .. }
                    | AttackKind::WeightInflation { offset }
                    | AttackKind::Collusion { offset, .. }
                    | AttackKind::GatewayCompromise { offset } => {
                        *offset = v;
                        touched += 1;
                    }
                    _ => {}
                }
            }
        }
        "attack.start_s" => {
            let t = whole(name, v)?;
            for a in &mut s.attacks {
                a.start_s = t;
                touched += 1;
            }
        }
        "attack.rate_per_s" => {
            for a in &mut s.attacks {
                if let AttackKind::Flood { rate_per_s, .. } = &mut a.kind {
                    *rate_per_s = v;
                    touched += 1;
                }
            }
        }
        "attack.rate_per_h" => {
            for a in &mut s.attacks {
                if let AttackKind::Drift { rate_per_h } = &mut a.kind {
                    *rate_per_h = v;
                    touched += 1;
                }
            }
        }
        "noise_sd" | "bias_sd" => {
            for f in &mut s.world.fields {
                if name == "noise_sd" {
                    f.noise_sd = v;
                } else {
                    f.bias_sd = v;
                }
                touched += 1;
            }
        }
        "duration_s" => {
            s.duration_s = whole(name, v)?;
            touched = 1;
        }
        "warmup_s" => {
            let w = whole(name, v)?;
            if let crate::scenario::Start::Warm { warmup_s } = &mut s.start {
                *warmup_s = w;
                touched = 1;
            }
        }
        "tx_power_dbm" => {
            s.radio.tx_power_dbm = v;
            touched = 1;
        }
        "shadowing_sd_db" => {
            s.radio.shadowing_sd_db = v;
            touched = 1;
        }
        "fading_sd_db" => {
            s.radio.fading_sd_db = v;
            touched = 1;
        }
        "ble_unicast_transmits" => {
            // Out of u8's range is the validator's "give 1 to 8", not a wrap.
            s.radio.ble_unicast_transmits = u8::try_from(whole(name, v)?).unwrap_or(u8::MAX);
            touched = 1;
        }
        other => return Err(SweepError::UnknownParam(other.to_string())),
    }
    if touched == 0 {
        return Err(SweepError::NoEffect(name.to_string()));
    }
    s.validate().map_err(|why| SweepError::BadValue { name: name.into(), value: v, why })
}

/// A slice of a sweep: task `k` belongs to shard `k mod count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl FromStr for Shard {
    type Err = SweepError;

    fn from_str(text: &str) -> Result<Self, SweepError> {
        let bad = || SweepError::Shard(text.to_string());
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// `n` seeds: the scenario's own first, then the integers after its largest.
pub fn seeds(s: &Scenario, n: usize) -> Vec<u64> {
    let mut v: Vec<u64> = s.seeds.iter().copied().take(n).collect();
    let mut next = s.seeds.iter().copied().max().unwrap_or(0);
    while v.len() < n {
        next = next.wrapping_add(1);
        if !v.contains(&next) {
            v.push(next);
        }
    }
    v
}

/// One run of a sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Task {
    /// Position in the whole sweep (value-major, then seed).
    pub index: usize,
    /// Parameter value.
    pub value: f64,
    /// Seed.
    pub seed: u64,
}

/// The tasks of shard `shard` of a sweep over `values × seeds`.
pub fn tasks(values: &[f64], seeds: &[u64], shard: Shard) -> Vec<Task> {
    let all = values.iter().flat_map(|&value| seeds.iter().map(move |&seed| (value, seed)));
    all.enumerate()
        .filter(|(k, _)| k % shard.count == shard.index)
        .map(|(index, (value, seed))| Task { index, value, seed })
        .collect()
}

/// One JSON line of sweep output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    /// Scenario name.
    pub scenario: String,
    /// Parameter.
    pub param: String,
    /// Its value.
    pub value: f64,
    /// Seed.
    pub seed: u64,
    /// Firmware.
    pub firmware: String,
    /// Task index in the whole sweep.
    pub task: usize,
    /// Summary hash of the run.
    pub summary_hash: String,
    /// True if every expectation held.
    pub pass: bool,
    /// Expectations that missed, in words with the figure measured.
    pub misses: Vec<String>,
    /// Seconds from an attack's start to its first flag, earliest attacker.
    pub first_flag_s: Option<f64>,
    /// Fewest honest monitors flagging any attacker.
    pub flagged_by: Option<u32>,
    /// Fewest honest monitors rejecting any attacker at the end.
    pub rejected_by: Option<u32>,
    /// Honest nodes ever rejected.
    pub honest_rejected: u32,
    /// Mean consensus error over all honest nodes after warm-up.
    pub consensus_mean: Option<f64>,
    /// Its 95th percentile.
    pub consensus_p95: Option<f64>,
    /// Honest delivery ratio.
    pub honest_delivery: Option<f64>,
    /// Engine events.
    pub events: u64,
    /// Wall time, s (varies between runs).
    pub wall_s: f64,
}

impl SweepRecord {
    /// The record of one finished run.
    pub fn new(param: &str, task: &Task, run: &Finished, results: &[ExpectationResult]) -> SweepRecord {
        let s = &run.summary;
        let all = s.zone("all");
        let finite = |v: f64| v.is_finite().then_some(v);
        SweepRecord {
            scenario: s.scenario.clone(),
            param: param.to_string(),
            value: task.value,
            seed: task.seed,
            firmware: format!("{:?}", s.firmware).to_lowercase(),
            task: task.index,
            summary_hash: run.hash.clone(),
            pass: results.iter().all(|r| r.pass),
            misses: results.iter().filter(|r| !r.pass).map(|r| format!("{}: {}", r.expectation, r.measured)).collect(),
            first_flag_s: s.attackers.iter().filter_map(|a| a.kth_flag_after_start(1)).min_by(f64::total_cmp),
            flagged_by: s.attackers.iter().map(|a| a.flagged_by.len() as u32).min(),
            rejected_by: s.attackers.iter().map(|a| a.rejected_at_end.len() as u32).min(),
            honest_rejected: s.honest_rejected.len() as u32,
            consensus_mean: all.and_then(|z| finite(z.mean)),
            consensus_p95: all.and_then(|z| finite(z.p95)),
            honest_delivery: s.honest_delivery,
            events: s.events,
            wall_s: run.timing.wall_s,
        }
    }

    /// JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Runs `f(0..n)` on a pool of `jobs` threads with simulation-sized
/// stacks; results come back in index order whatever finishes first.
pub fn par_runs<T: Send>(jobs: usize, n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Result<Vec<T>, SweepError> {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .stack_size(SIM_STACK)
        .thread_name(|i| format!("krill-run-{i}"))
        .build()
        .map_err(|e| SweepError::Pool(e.to_string()))?;
    Ok(pool.install(|| (0..n).into_par_iter().map(&f).collect()))
}

/// Reads sweep records from `.jsonl` files and directories of them.
pub fn read_records(paths: &[PathBuf]) -> Result<Vec<SweepRecord>, SweepError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|source| SweepError::Io { path: p.display().to_string(), source })?;
            let mut inside: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    let mut out = Vec::new();
    for f in files {
        out.extend(read_file(&f)?);
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<Vec<SweepRecord>, SweepError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| SweepError::Io { path: path.display().to_string(), source })?;
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        v.push(serde_json::from_str(line).map_err(|e| SweepError::Record {
            path: path.display().to_string(),
            line: i + 1,
            msg: e.to_string(),
        })?);
    }
    Ok(v)
}

/// Shards concatenated: sorted by (scenario, parameter, value, seed,
/// firmware), a run present in two shards kept once.
pub fn merge(mut records: Vec<SweepRecord>) -> Vec<SweepRecord> {
    records.sort_by(|a, b| {
        (a.scenario.as_str(), a.param.as_str())
            .cmp(&(b.scenario.as_str(), b.param.as_str()))
            .then(a.value.total_cmp(&b.value))
            .then(a.seed.cmp(&b.seed))
            .then(a.firmware.cmp(&b.firmware))
    });
    records.dedup_by(|b, a| {
        a.scenario == b.scenario
            && a.param == b.param
            && a.value == b.value
            && a.seed == b.seed
            && a.firmware == b.firmware
    });
    records
}

/// Per (scenario, parameter, value, firmware): the means over seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Scenario.
    pub scenario: String,
    /// Parameter.
    pub param: String,
    /// Value.
    pub value: f64,
    /// Firmware.
    pub firmware: String,
    /// Runs.
    pub runs: usize,
    /// Runs meeting every expectation.
    pub passed: usize,
    /// Mean first-flag delay over the runs that flagged, s.
    pub first_flag_s: Option<f64>,
    /// Mean of the fewest flagging monitors.
    pub flagged_by: Option<f64>,
    /// Honest nodes ever rejected, summed over runs.
    pub honest_rejected: u32,
    /// Mean consensus error.
    pub consensus_mean: Option<f64>,
    /// Mean honest delivery.
    pub honest_delivery: Option<f64>,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in v {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// Groups merged records into points.
pub fn points(records: &[SweepRecord]) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let r0 = &records[start];
        let end = records[start..]
            .iter()
            .position(|r| r.scenario != r0.scenario || r.param != r0.param || r.value != r0.value)
            .map_or(records.len(), |k| start + k);
        let mut group: Vec<&SweepRecord> = records[start..end].iter().collect();
        group.sort_by(|a, b| a.firmware.cmp(&b.firmware));
        for fw in group.iter().map(|r| r.firmware.clone()).collect::<std::collections::BTreeSet<_>>() {
            let g: Vec<&&SweepRecord> = group.iter().filter(|r| r.firmware == fw).collect();
            out.push(Point {
                scenario: r0.scenario.clone(),
                param: r0.param.clone(),
                value: r0.value,
                firmware: fw,
                runs: g.len(),
                passed: g.iter().filter(|r| r.pass).count(),
                first_flag_s: mean(g.iter().filter_map(|r| r.first_flag_s)),
                flagged_by: mean(g.iter().filter_map(|r| r.flagged_by.map(f64::from))),
                honest_rejected: g.iter().map(|r| r.honest_rejected).sum(),
                consensus_mean: mean(g.iter().filter_map(|r| r.consensus_mean)),
                honest_delivery: mean(g.iter().filter_map(|r| r.honest_delivery)),
            });
        }
        start = end;
    }
    out
}

/// A plain-text table of the points.
pub fn table(points: &[Point]) -> String {
    let opt = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<16} {:<18} {:>10} {:<8} {:>5} {:>6} {:>10} {:>8} {:>9} {:>10} {:>9}",
        "scenario",
        "param",
        "value",
        "firmware",
        "runs",
        "passed",
        "1st flag s",
        "flagged",
        "honest rj",
        "cons. err",
        "delivery"
    );
    for p in points {
        let _ = writeln!(
            o,
            "{:<16} {:<18} {:>10} {:<8} {:>5} {:>6} {:>10} {:>8} {:>9} {:>10} {:>9}",
            p.scenario,
            p.param,
            format!("{:.4}", p.value).trim_end_matches('0').trim_end_matches('.'),
            p.firmware,
            p.runs,
            p.passed,
            opt(p.first_flag_s, 0),
            opt(p.flagged_by, 1),
            p.honest_rejected,
            opt(p.consensus_mean, 3),
            p.honest_delivery.map_or("-".into(), |d| format!("{:.2} %", d * 100.0)),
        );
    }
    o
}

/// An HTML page of a merged sweep: the table and one plot per figure.
pub fn report_html(points: &[Point]) -> String {
    use krill_reports::page::{Line, Page, Plot, Row, Table};
    let mut keys: Vec<(String, String, String)> =
        points.iter().map(|p| (p.scenario.clone(), p.param.clone(), p.firmware.clone())).collect();
    keys.dedup();
    let line = |k: &(String, String, String), f: &dyn Fn(&Point) -> Option<f64>| Line {
        name: format!("{} ({})", k.0, k.2),
        points: points
            .iter()
            .filter(|p| p.scenario == k.0 && p.param == k.1 && p.firmware == k.2)
            .map(|p| (p.value, f(p).unwrap_or(f64::NAN)))
            .collect(),
    };
    let param = points.first().map_or(String::new(), |p| p.param.clone());
    let plot = |title: &str, y: &str, f: &dyn Fn(&Point) -> Option<f64>| Plot {
        title: title.into(),
        x_label: param.clone(),
        y_label: y.into(),
        lines: keys.iter().map(|k| line(k, f)).collect(),
    };
    let page = Page {
        title: "KRILL sweep".into(),
        intro: vec![format!("{} points, {} runs.", points.len(), points.iter().map(|p| p.runs).sum::<usize>())],
        tables: vec![Table {
            title: "Means over seeds".into(),
            header: [
                "scenario",
                "param",
                "value",
                "firmware",
                "runs",
                "passed",
                "1st flag s",
                "flagged by",
                "honest rejected",
                "consensus error",
                "delivery",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            rows: points
                .iter()
                .map(|p| Row {
                    cells: vec![
                        p.scenario.clone(),
                        p.param.clone(),
                        format!("{}", p.value),
                        p.firmware.clone(),
                        p.runs.to_string(),
                        p.passed.to_string(),
                        p.first_flag_s.map_or("-".into(), |v| format!("{v:.0}")),
                        p.flagged_by.map_or("-".into(), |v| format!("{v:.1}")),
                        p.honest_rejected.to_string(),
                        p.consensus_mean.map_or("-".into(), |v| format!("{v:.3}")),
                        p.honest_delivery.map_or("-".into(), |v| format!("{:.2} %", v * 100.0)),
                    ],
                    status: Some(p.passed == p.runs),
                })
                .collect(),
        }],
        plots: vec![
            plot("Seconds to first flag", "s", &|p| p.first_flag_s),
            plot("Honest monitors flagging (fewest over attackers)", "monitors", &|p| p.flagged_by),
            plot("Consensus error vs truth", "|consensus − truth|", &|p| p.consensus_mean),
            plot("Share of runs meeting every expectation", "fraction", &|p| {
                Some(p.passed as f64 / p.runs.max(1) as f64)
            }),
        ],
    };
    krill_reports::page::page_html(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = r#"(
        name: "s", duration_s: 60, seeds: [4, 9],
        area: (width_m: 10, height_m: 10),
        nodes: [(layout: Grid(rows: 2, cols: 2, spacing_m: 3))],
        world: (fields: [(quantity: Temperature, base: 21.0, noise_sd: 0.1)]),
        attacks: [(node: 1, start_s: 10, kind: Spike(offset: 5.0))],
    )"#;

    #[test]
    fn ranges_lists_and_bad_syntax() {
        let r: ParamRange = "attack.offset=1..3:3".parse().unwrap();
        assert_eq!(r.values, vec![1.0, 2.0, 3.0]);
        assert_eq!("noise_sd=0.1,0.2".parse::<ParamRange>().unwrap().values, vec![0.1, 0.2]);
        assert_eq!("duration_s=0..100".parse::<ParamRange>().unwrap().values.len(), DEFAULT_STEPS);
        assert!(matches!("nope=1..2".parse::<ParamRange>(), Err(SweepError::UnknownParam(_))));
        for bad in ["noise_sd", "noise_sd=a..b", "noise_sd=1..2:0", "noise_sd=inf"] {
            assert!(matches!(bad.parse::<ParamRange>(), Err(SweepError::ParamSyntax(_))), "{bad}");
        }
    }

    #[test]
    fn apply_changes_the_field_and_revalidates() {
        let mut s = Scenario::parse(S, "s.ron").unwrap();
        apply(&mut s, "attack.offset", 7.5).unwrap();
        assert_eq!(s.attacks[0].kind, AttackKind::Spike { offset: 7.5 });
        apply(&mut s, "duration_s", 120.4).unwrap();
        assert_eq!(s.duration_s, 120);
        assert!(matches!(apply(&mut s, "duration_s", 0.0), Err(SweepError::BadValue { .. })));
        assert!(matches!(apply(&mut s, "attack.rate_per_s", 3.0), Err(SweepError::NoEffect(_))));
        let mut s = Scenario::parse(S, "s.ron").unwrap();
        apply(&mut s, "ble_unicast_transmits", 3.0).unwrap();
        assert_eq!(s.radio.ble_unicast_transmits, 3);
        for bad in [0.0, 9.0, 300.0, -1.0] {
            assert!(matches!(apply(&mut s, "ble_unicast_transmits", bad), Err(SweepError::BadValue { .. })), "{bad}");
        }
    }

    #[test]
    fn shards_partition_the_tasks() {
        let values = [1.0, 2.0, 3.0];
        let seeds = [4, 9];
        let all: Vec<usize> = tasks(&values, &seeds, Shard::default()).iter().map(|t| t.index).collect();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
        let mut union: Vec<usize> = (0..4)
            .flat_map(|i| tasks(&values, &seeds, Shard { index: i, count: 4 }).into_iter().map(|t| t.index))
            .collect();
        union.sort();
        assert_eq!(union, all);
        assert!("4/4".parse::<Shard>().is_err() && "1/0".parse::<Shard>().is_err());
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
    }

    #[test]
    fn seeds_start_with_the_scenarios_own() {
        let s = Scenario::parse(S, "s.ron").unwrap();
        assert_eq!(seeds(&s, 1), vec![4]);
        assert_eq!(seeds(&s, 4), vec![4, 9, 10, 11]);
    }

    fn rec(value: f64, seed: u64, pass: bool) -> SweepRecord {
        SweepRecord {
            scenario: "s".into(),
            param: "noise_sd".into(),
            value,
            seed,
            firmware: "core".into(),
            task: 0,
            summary_hash: format!("{value}-{seed}"),
            pass,
            misses: vec![],
            first_flag_s: Some(10.0 * seed as f64),
            flagged_by: Some(2),
            rejected_by: Some(0),
            honest_rejected: 0,
            consensus_mean: Some(0.1),
            consensus_p95: Some(0.2),
            honest_delivery: Some(1.0),
            events: 1,
            wall_s: 0.1,
        }
    }

    #[test]
    fn merge_sorts_and_drops_duplicates_then_points_average_seeds() {
        let merged = merge(vec![rec(0.2, 2, true), rec(0.1, 1, true), rec(0.2, 1, false), rec(0.1, 1, true)]);
        assert_eq!(merged.iter().map(|r| (r.value, r.seed)).collect::<Vec<_>>(), vec![(0.1, 1), (0.2, 1), (0.2, 2)]);
        let p = points(&merged);
        assert_eq!(p.len(), 2);
        assert_eq!((p[1].runs, p[1].passed, p[1].first_flag_s), (2, 1, Some(15.0)));
        let line = merged[0].to_line();
        assert_eq!(serde_json::from_str::<SweepRecord>(&line).unwrap(), merged[0]);
        assert!(table(&p).lines().count() == 3);
    }
}
