//! A scenario's expectations against a finished run: each one passes or
//! misses with the figure measured and the bound it was held to, so that
//! `krill check` can gate CI on detection and false-positive figures.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::scenario::{Expectation, NodeClass, Scenario};
use crate::sim::Simulation;
use crate::summary::{RunSummary, Series};

/// One expectation's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExpectationResult {
    /// The expectation, in words.
    pub expectation: String,
    /// True if the run meets it.
    pub pass: bool,
    /// What the run showed.
    pub measured: String,
    /// What it had to show.
    pub bound: String,
    /// The measured figure as a number, where there is one.
    pub value: Option<f64>,
}

/// An expectation in one line.
pub fn describe(e: &Expectation) -> String {
    match e {
        Expectation::Detected { attacker, by_at_least, within_s } => {
            format!("attacker {attacker} flagged by ≥{by_at_least} honest monitors within {within_s} s")
        }
        Expectation::Rejected { attacker, by_at_least } => {
            format!("attacker {attacker} rejected by ≥{by_at_least} honest monitors at the end")
        }
        Expectation::NoHonestRejected => "no honest node rejected by an honest monitor".into(),
        Expectation::HonestRejectedAtMost { max } => format!("at most {max} honest nodes rejected by honest monitors"),
        Expectation::ConsensusError { zone, max, after_s, until_s } => format!(
            "consensus error in {} below {max} from {after_s} s{}",
            zone.as_deref().map_or("all zones".to_string(), |z| format!("zone {z}")),
            until_s.map_or(String::new(), |u| format!(" to {u} s"))
        ),
        Expectation::HonestDelivery { min } => format!("honest delivery ≥ {:.1} %", min * 100.0),
        Expectation::FollowsEvent { zone, after_s, within_s, min_rise } => {
            format!("zone {zone} consensus rises ≥ {min_rise} within {within_s} s of {after_s} s")
        }
    }
}

/// Whether a larger measured figure ([`ExpectationResult::value`]) is
/// closer to meeting `e`: counts of monitors, delivery and rises are; counts
/// of honest nodes rejected and consensus errors are not.
pub fn higher_is_better(e: &Expectation) -> bool {
    match e {
        Expectation::Detected { .. }
        | Expectation::Rejected { .. }
        | Expectation::HonestDelivery { .. }
        | Expectation::FollowsEvent { .. } => true,
        Expectation::NoHonestRejected
        | Expectation::HonestRejectedAtMost { .. }
        | Expectation::ConsensusError { .. } => false,
    }
}

/// Evaluates every expectation of `s` against its finished run.
pub fn evaluate(s: &Scenario, sim: &Simulation, summary: &RunSummary, series: &Series) -> Vec<ExpectationResult> {
    s.expect.iter().map(|e| evaluate_one(e, sim, summary, series)).collect()
}

fn result(e: &Expectation, pass: bool, measured: String, bound: String, value: Option<f64>) -> ExpectationResult {
    ExpectationResult { expectation: describe(e), pass, measured, bound, value }
}

fn evaluate_one(e: &Expectation, sim: &Simulation, summary: &RunSummary, series: &Series) -> ExpectationResult {
    match e {
        Expectation::Detected { attacker, by_at_least, within_s } => {
            let bound = format!("≥ {by_at_least} within {within_s} s");
            let Some(a) = summary.attackers.iter().find(|a| a.node == *attacker) else {
                return result(e, false, "not an attacker".into(), bound, None);
            };
            let deadline = a.start_s as f64 + *within_s as f64;
            let k = a.flagged_by.iter().filter(|f| f.at_s >= a.start_s as f64 && f.at_s <= deadline).count();
            let measured = match a.kth_flag_after_start((*by_at_least).max(1) as usize) {
                Some(d) if k >= *by_at_least as usize => format!("{k} (#{by_at_least} after {d:.0} s)"),
                _ => format!("{k}"),
            };
            result(e, k >= *by_at_least as usize, measured, bound, Some(k as f64))
        }
        Expectation::Rejected { attacker, by_at_least } => {
            let k = summary.attackers.iter().find(|a| a.node == *attacker).map_or(0, |a| a.rejected_at_end.len());
            result(e, k >= *by_at_least as usize, format!("{k}"), format!("≥ {by_at_least}"), Some(k as f64))
        }
        Expectation::NoHonestRejected => {
            let k = summary.honest_rejected.len();
            let measured = if k == 0 {
                "0".to_string()
            } else {
                let nodes: Vec<String> = summary.honest_rejected.iter().take(5).map(|r| r.node.to_string()).collect();
                format!("{k} (nodes {})", nodes.join(", "))
            };
            result(e, k == 0, measured, "0".into(), Some(k as f64))
        }
        Expectation::HonestRejectedAtMost { max } => {
            let k = summary.honest_rejected.len();
            result(e, k <= *max as usize, format!("{k}"), format!("≤ {max}"), Some(k as f64))
        }
        Expectation::ConsensusError { zone, max, after_s, until_s } => {
            let name = zone.as_deref().unwrap_or("all");
            let bound = format!("< {max} at every sample");
            let Some(col) = series.zones.iter().position(|z| z == name) else {
                return result(e, false, format!("no zone {name}"), bound, None);
            };
            // "Stays below": the worst per-sample mean after `after_s`.
            let mut worst: Option<(f64, f64)> = None;
            let mut missing = 0;
            for (t, row) in series.times_s.iter().zip(&series.error) {
                if *t < *after_s as f64 || until_s.is_some_and(|u| *t > u as f64) {
                    continue;
                }
                match row.get(col).copied().filter(|v| v.is_finite()) {
                    Some(v) if worst.is_none_or(|w| v > w.0) => worst = Some((v, *t)),
                    Some(_) => {}
                    None => missing += 1,
                }
            }
            match worst {
                Some((v, t)) if missing == 0 => {
                    result(e, v < *max, format!("{v:.3} (worst, at {t:.0} s)"), bound, Some(v))
                }
                Some((v, _)) => {
                    result(e, false, format!("{v:.3}, but {missing} samples without consensus"), bound, Some(v))
                }
                None => result(e, false, "no consensus sampled".into(), bound, None),
            }
        }
        Expectation::HonestDelivery { min } => {
            let bound = format!("≥ {:.2} %", min * 100.0);
            match summary.honest_delivery {
                Some(d) => result(e, d >= *min, format!("{:.2} %", d * 100.0), bound, Some(d)),
                None => result(e, false, "no honest traffic".into(), bound, None),
            }
        }
        Expectation::FollowsEvent { zone, after_s, within_s, min_rise } => {
            let bound = format!("≥ {min_rise}");
            match rise_lower_bound(sim, zone, *after_s as f64, (*after_s + *within_s) as f64) {
                Some((rise, n)) => {
                    result(e, rise >= *min_rise, format!("≥ {rise:.3} (lower bound over {n} nodes)"), bound, Some(rise))
                }
                None => result(e, false, "no node of the zone had a consensus at both times".into(), bound, None),
            }
        }
    }
}

/// The run logs |consensus − truth|, not the consensus, so the rise is
/// bounded from below: per node, `(truth₁ − err₁) − (truth₀ + err₀)`, the
/// smallest rise the two samples allow; averaged over honest nodes of the
/// zone with a consensus at the last sample at or before `t0` and `t1`.
fn rise_lower_bound(sim: &Simulation, zone: &str, t0: f64, t1: f64) -> Option<(f64, usize)> {
    let model = sim.model();
    let z = model.world().zones().iter().position(|w| w.name == zone)?;
    let mut sum = 0.0;
    let mut n = 0;
    for (i, node) in sim.nodes().iter().enumerate() {
        let inf = &model.info()[i];
        if inf.attacker
            || inf.zone != Some(z)
            || !matches!(inf.class, NodeClass::Nano | NodeClass::Gateway | NodeClass::Full)
        {
            continue;
        }
        let at =
            |lim: f64| node.log().samples.iter().rev().map(|s| (model.scenario_s(s.0), s.1)).find(|(t, _)| *t <= lim);
        let (Some((s0, e0)), Some((s1, e1))) = (at(t0), at(t1)) else { continue };
        if !e0.is_finite() || !e1.is_finite() {
            continue;
        }
        let truth = |t: f64| model.world().truth(inf.quantity, inf.pos.0, inf.pos.1, t);
        sum += (truth(s1) - f64::from(e1)) - (truth(s0) + f64::from(e0));
        n += 1;
    }
    (n > 0).then(|| (sum / n as f64, n))
}

/// One expectation of one run, for tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
    /// Scenario file.
    pub file: String,
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// The verdict.
    pub result: ExpectationResult,
    /// [`higher_is_better`] for the expectation, so a miss can be compared
    /// with a known one's figure.
    pub higher_is_better: bool,
}

/// One run's verdicts as rows: `results` are [`evaluate`]'s, in the order
/// of `s.expect`.
pub fn rows(s: &Scenario, file: &str, seed: u64, results: Vec<ExpectationResult>) -> Vec<CheckRow> {
    results
        .into_iter()
        .zip(&s.expect)
        .map(|(result, e)| CheckRow {
            file: file.to_string(),
            scenario: s.name.clone(),
            seed,
            result,
            higher_is_better: higher_is_better(e),
        })
        .collect()
}

/// A plain-text table of `rows` (all of them, or only the misses).
pub fn table(rows: &[CheckRow], misses_only: bool) -> String {
    let shown: Vec<&CheckRow> = rows.iter().filter(|r| !misses_only || !r.result.pass).collect();
    let w_name = shown.iter().map(|r| r.scenario.chars().count()).max().unwrap_or(8).clamp(8, 28);
    let w_exp = shown.iter().map(|r| r.result.expectation.chars().count()).max().unwrap_or(11).clamp(11, 64);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<4} {:<w_name$} {:>6}  {:<w_exp$}  {:<28} bound",
        "", "scenario", "seed", "expectation", "measured"
    );
    for r in shown {
        let _ = writeln!(
            o,
            "{:<4} {:<w_name$} {:>6}  {:<w_exp$}  {:<28} {}",
            if r.result.pass { "ok" } else { "MISS" },
            r.scenario,
            r.seed,
            r.result.expectation,
            r.result.measured,
            r.result.bound
        );
    }
    o
}

/// Most seeds one `--seeds` may name: a typo like `1..1000000` should be
/// an error, not a day of runs.
pub const MAX_SEEDS: u64 = 10_000;

/// Why a `--seeds` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeedsError {
    /// Neither a range nor a list of integers.
    #[error("`{0}` is not a seed list: write a range like `3..8` (both ends included) or a list like `1,5,9`")]
    Syntax(String),
    /// A range that ends before it starts.
    #[error("`{0}` ends before it starts: write the smaller seed first")]
    Backwards(String),
    /// More seeds than [`MAX_SEEDS`].
    #[error("`{0}` names {1} seeds; at most {MAX_SEEDS} per check")]
    TooMany(String, u64),
}

/// Parses `--seeds`: `a..b` (inclusive) or `s1,s2,…` (kept in order,
/// repeats dropped).
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, SeedsError> {
    let t = text.trim();
    let syntax = || SeedsError::Syntax(text.to_string());
    if let Some((a, b)) = t.split_once("..") {
        let b = b.strip_prefix('=').unwrap_or(b);
        let (a, b): (u64, u64) = (a.trim().parse().map_err(|_| syntax())?, b.trim().parse().map_err(|_| syntax())?);
        if b < a {
            return Err(SeedsError::Backwards(text.to_string()));
        }
        let n = (b - a).saturating_add(1);
        if n > MAX_SEEDS {
            return Err(SeedsError::TooMany(text.to_string(), n));
        }
        return Ok((a..=b).collect());
    }
    let mut seeds = Vec::new();
    for part in t.split(',') {
        let seed: u64 = part.trim().parse().map_err(|_| syntax())?;
        if !seeds.contains(&seed) {
            seeds.push(seed);
        }
    }
    if seeds.len() as u64 > MAX_SEEDS {
        return Err(SeedsError::TooMany(text.to_string(), seeds.len() as u64));
    }
    Ok(seeds)
}

/// One line of a known-misses file: `scenario seed expectation… [| figure]`.
#[derive(Clone, Debug, PartialEq)]
pub struct KnownMiss {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// The expectation, in the words [`describe`] gives it.
    pub expectation: String,
    /// The worst figure ([`ExpectationResult::value`]) the miss may show:
    /// a miss further from its bound than this is a regression, not the
    /// known miss.
    pub figure: Option<f64>,
}

impl KnownMiss {
    fn matches(&self, r: &CheckRow) -> bool {
        self.scenario == r.scenario && self.seed == r.seed && self.expectation == r.result.expectation
    }

    /// True if `r`'s figure is further from the bound than the listed one
    /// (or `r` has no figure to compare).
    fn is_worse(&self, r: &CheckRow) -> bool {
        let Some(f) = self.figure else { return false };
        match r.result.value {
            Some(v) if r.higher_is_better => v < f,
            Some(v) => v > f,
            None => true,
        }
    }
}

/// A known-misses file that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "line {line}: `{text}` is not `SCENARIO SEED EXPECTATION [| FIGURE]` (the words `krill check` prints, then \
     optionally the worst figure allowed, a number)"
)]
pub struct KnownMissError {
    /// 1-based line number.
    pub line: usize,
    /// The line.
    pub text: String,
}

/// Parses a known-misses file: one miss per line as `scenario seed
/// expectation`, the expectation exactly as `krill check` prints it, then
/// optionally ` | figure`, the worst measured figure the miss may show (in
/// the units of [`ExpectationResult::value`]: a count, or a fraction for
/// delivery); blank lines and `#` comments are skipped.
pub fn parse_known_misses(text: &str) -> Result<Vec<KnownMiss>, KnownMissError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || KnownMissError { line: i + 1, text: line.to_string() };
        let mut parts = line.splitn(3, char::is_whitespace);
        let (Some(scenario), Some(seed), Some(expectation)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let seed = seed.parse().map_err(|_| bad())?;
        let (expectation, figure) = match expectation.rsplit_once(" | ") {
            Some((e, f)) => {
                let f: f64 = f.trim().parse().map_err(|_| bad())?;
                if !f.is_finite() {
                    return Err(bad());
                }
                (e.trim(), Some(f))
            }
            None => (expectation.trim(), None),
        };
        if expectation.is_empty() || expectation.contains('|') {
            return Err(bad());
        }
        out.push(KnownMiss { scenario: scenario.to_string(), seed, expectation: expectation.to_string(), figure });
    }
    Ok(out)
}

/// The misses of `rows` as a known-misses file ([`parse_known_misses`]),
/// each with its measured figure, in run order.
pub fn misses_file(rows: &[CheckRow]) -> String {
    let mut o = String::from(
        "# Written by `krill check --write-misses`: SCENARIO SEED EXPECTATION | FIGURE,\n\
         # the figure being the worst the miss may show (see --known-misses).\n",
    );
    for r in rows.iter().filter(|r| !r.result.pass) {
        let _ = write!(o, "{} {} {}", r.scenario, r.seed, r.result.expectation);
        if let Some(v) = r.result.value {
            let _ = write!(o, " | {v}");
        }
        o.push('\n');
    }
    o
}

/// A check's misses held against a known-misses file.
#[derive(Debug, Default)]
pub struct AgainstKnown<'a> {
    /// Misses the file does not list.
    pub new: Vec<&'a CheckRow>,
    /// Listed misses whose figure is worse than the file allows.
    pub worse: Vec<(&'a CheckRow, &'a KnownMiss)>,
    /// Entries that no longer miss (passed, or were not run).
    pub stale: Vec<&'a KnownMiss>,
}

impl AgainstKnown<'_> {
    /// True if the misses are exactly the listed ones, none worse.
    pub fn holds(&self) -> bool {
        self.new.is_empty() && self.worse.is_empty() && self.stale.is_empty()
    }
}

/// Holds `rows` against `known`.
pub fn against_known<'a>(rows: &'a [CheckRow], known: &'a [KnownMiss]) -> AgainstKnown<'a> {
    let mut out = AgainstKnown::default();
    for r in rows.iter().filter(|r| !r.result.pass) {
        match known.iter().find(|k| k.matches(r)) {
            None => out.new.push(r),
            Some(k) if k.is_worse(r) => out.worse.push((r, k)),
            Some(_) => {}
        }
    }
    out.stale = known.iter().filter(|k| !rows.iter().any(|r| !r.result.pass && k.matches(r))).collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_misses_name_exactly_which_expectations_may_miss() {
        let text =
            "# seeds 3..10\n\nfire 3 no honest node rejected by an honest monitor\nrelay 6 attacker 4 rejected\n";
        let known = parse_known_misses(text).unwrap();
        assert_eq!(known.len(), 2);
        assert_eq!((known[0].scenario.as_str(), known[0].seed), ("fire", 3));
        assert_eq!(known[0].expectation, "no honest node rejected by an honest monitor");
        let rows = [
            known_row("fire", 3, "no honest node rejected by an honest monitor", false, 1.0),
            known_row("fire", 4, "no honest node rejected by an honest monitor", false, 1.0),
            known_row("relay", 6, "attacker 4 rejected", true, 6.0),
        ];
        let found = against_known(&rows, &known);
        assert_eq!(found.new.len(), 1);
        assert_eq!(found.new[0].seed, 4, "the same expectation on another seed is a new miss");
        assert_eq!(found.stale.len(), 1);
        assert_eq!(found.stale[0].scenario, "relay", "a known miss that passes now is stale");
        assert!(found.worse.is_empty() && !found.holds());
        for bad in
            ["fire", "fire 3", "fire x no honest", "fire 3   ", "fire 3 | 2", "fire 3 no honest | x", "a 1 b | inf"]
        {
            assert!(parse_known_misses(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_known_misses("a b c\n").unwrap_err().line, 1);
    }

    #[test]
    fn written_misses_read_back_as_exactly_these_misses() {
        let rows = [
            known_row("slow-drift", 5, "attacker 24 rejected by ≥15", false, 13.0),
            known_row("fire", 6, "no honest node rejected", true, 0.0),
            known_row("clock-step", 8, "honest delivery ≥ 88.0 %", false, 0.869_312_5),
        ];
        let text = misses_file(&rows);
        let known = parse_known_misses(&text).unwrap();
        assert_eq!(known.len(), 2, "{text}");
        assert_eq!(known[1].figure, Some(0.869_312_5), "figures keep their precision");
        assert!(against_known(&rows, &known).holds(), "{text}");
    }

    fn known_row(scenario: &str, seed: u64, what: &str, pass: bool, value: f64) -> CheckRow {
        CheckRow {
            file: "x.ron".into(),
            scenario: scenario.into(),
            seed,
            result: ExpectationResult {
                expectation: what.into(),
                pass,
                measured: format!("{value}"),
                bound: "-".into(),
                value: Some(value),
            },
            higher_is_better: what.starts_with("attacker"),
        }
    }

    #[test]
    fn a_known_miss_with_a_figure_fails_when_the_figure_gets_worse() {
        let text = "slow-drift 5 attacker 24 rejected by ≥15 | 13\nfire 6 no honest node rejected | 2\n";
        let known = parse_known_misses(text).unwrap();
        assert_eq!(known[0].expectation, "attacker 24 rejected by ≥15");
        assert_eq!((known[0].figure, known[1].figure), (Some(13.0), Some(2.0)));
        let run = |drift: f64, fire: f64| {
            [
                known_row("slow-drift", 5, "attacker 24 rejected by ≥15", false, drift),
                known_row("fire", 6, "no honest node rejected", false, fire),
            ]
        };
        let rows = run(13.0, 2.0);
        assert!(against_known(&rows, &known).holds(), "exactly as listed");
        let rows = run(14.0, 1.0);
        assert!(against_known(&rows, &known).holds(), "better than listed, still missing");
        let rows = run(10.0, 2.0);
        let found = against_known(&rows, &known);
        assert_eq!(found.worse.len(), 1, "fewer monitors than listed");
        assert_eq!(found.worse[0].0.scenario, "slow-drift");
        let rows = run(13.0, 3.0);
        let found = against_known(&rows, &known);
        assert_eq!(found.worse.len(), 1, "more honest nodes rejected than listed");
        assert_eq!(found.worse[0].0.scenario, "fire");
        assert!(found.new.is_empty() && found.stale.is_empty());
    }

    #[test]
    fn seeds_parse_as_inclusive_ranges_or_lists() {
        assert_eq!(parse_seeds("3..6"), Ok(vec![3, 4, 5, 6]));
        assert_eq!(parse_seeds("3..=4"), Ok(vec![3, 4]));
        assert_eq!(parse_seeds(" 7 "), Ok(vec![7]));
        assert_eq!(parse_seeds("9,1,9,5"), Ok(vec![9, 1, 5]));
        assert_eq!(parse_seeds("5..5"), Ok(vec![5]));
        assert_eq!(parse_seeds("6..3"), Err(SeedsError::Backwards("6..3".into())));
        assert_eq!(parse_seeds("0..10000"), Err(SeedsError::TooMany("0..10000".into(), 10_001)));
        let all = "0..18446744073709551615";
        assert_eq!(parse_seeds(all), Err(SeedsError::TooMany(all.into(), u64::MAX)));
        for bad in ["", "a..3", "1..", "1,,2", "-1", "1.5"] {
            assert_eq!(parse_seeds(bad), Err(SeedsError::Syntax(bad.into())), "{bad}");
        }
    }

    fn row(pass: bool, what: &str) -> CheckRow {
        CheckRow {
            file: "a.ron".into(),
            scenario: "a".into(),
            seed: 3,
            result: ExpectationResult {
                expectation: what.into(),
                pass,
                measured: "1".into(),
                bound: "≥ 2".into(),
                value: Some(1.0),
            },
            higher_is_better: true,
        }
    }

    #[test]
    fn miss_table_lists_only_misses() {
        let rows = [row(true, "kept quiet"), row(false, "flagged enough")];
        let t = table(&rows, true);
        assert!(t.contains("MISS") && t.contains("flagged enough"), "{t}");
        assert!(!t.contains("kept quiet"), "{t}");
        assert_eq!(table(&rows, false).lines().count(), 3);
    }

    #[test]
    fn descriptions_carry_the_bounds() {
        let d = describe(&Expectation::Detected { attacker: 24, by_at_least: 3, within_s: 600 });
        assert!(d.contains("24") && d.contains("≥3") && d.contains("600 s"), "{d}");
        let d = describe(&Expectation::ConsensusError { zone: None, max: 0.5, after_s: 60, until_s: None });
        assert!(d.contains("all zones") && d.contains("0.5") && !d.contains(" to "), "{d}");
        let d = describe(&Expectation::ConsensusError { zone: None, max: 0.5, after_s: 60, until_s: Some(900) });
        assert!(d.ends_with("from 60 s to 900 s"), "{d}");
    }
}
