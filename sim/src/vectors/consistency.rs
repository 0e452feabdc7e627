//! Vector cases for `krill_core::consistency` (ES-4.1, ES-8.1).

use super::Outcome;
use krill_core::consistency::{check_physical_consistency, ConsistencyInput, ConsistencyResult, InnateFailure};
use krill_core::QuantityType;
use serde::Deserialize;

/// Expected verdict, without the σ value (checked separately with a tolerance).
#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
pub enum Verdict {
    /// `CONSISTENT`.
    Consistent,
    /// Innate rejection of the local reading.
    RejectInnateMine,
    /// Innate rejection of the neighbour's reading.
    RejectInnateTheirs,
    /// `PYREXIA(σ)`.
    Pyrexia,
    /// `INFLAMMATION(σ)`.
    Inflammation,
    /// `REJECTION(σ)`.
    Rejection,
    /// No bounds for the quantity.
    Unknown,
}

fn verdict(r: &ConsistencyResult) -> Verdict {
    match r {
        ConsistencyResult::Consistent => Verdict::Consistent,
        ConsistencyResult::RejectInnate(InnateFailure::Mine) => Verdict::RejectInnateMine,
        ConsistencyResult::RejectInnate(InnateFailure::Theirs) => Verdict::RejectInnateTheirs,
        ConsistencyResult::Pyrexia(_) => Verdict::Pyrexia,
        ConsistencyResult::Inflammation(_) => Verdict::Inflammation,
        ConsistencyResult::Rejection(_) => Verdict::Rejection,
        ConsistencyResult::Unknown => Verdict::Unknown,
    }
}

/// One ES-4.1 check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Local reading (wire units).
    pub my_reading: i16,
    /// Neighbour's reading.
    pub their_reading: i16,
    /// Quantity.
    pub quantity: QuantityType,
    /// Distance between the sensors.
    pub distance_cm: u32,
    /// Time between the readings.
    pub time_delta_ms: u32,
    /// Expected verdict (exact).
    pub verdict: Verdict,
    /// Expected permissible difference (exact), if given.
    pub max_diff: Option<i32>,
    /// Expected σ beyond it, if given.
    pub sigma: Option<f64>,
    /// Tolerance on `sigma`.
    #[serde(default)]
    pub tol: f64,
}

/// A consistency case.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// Run `check_physical_consistency` once.
    Check(Check),
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let Case::Check(c) = c;
    let mut o = Outcome::default();
    let r = check_physical_consistency(&ConsistencyInput {
        my_reading: c.my_reading,
        their_reading: c.their_reading,
        quantity: c.quantity,
        distance_cm: c.distance_cm,
        time_delta_ms: c.time_delta_ms,
    });
    o.value("epsilon_spatial", r.epsilon_spatial);
    o.value("epsilon_temporal", r.epsilon_temporal);
    o.value("sigma_sum", r.sigma_sum);
    match c.max_diff {
        Some(want) => o.exact("max_diff", r.max_diff, want),
        None => o.value("max_diff", r.max_diff),
    }
    o.value("actual_diff", r.actual_diff);
    o.exact("verdict", verdict(&r.result), c.verdict);
    match (c.sigma, r.result.sigma()) {
        (Some(want), Some(got)) => o.close("sigma", got as f64, want, c.tol),
        (Some(want), None) => o.fail(format!("sigma: no σ computed, expected {want}")),
        (None, Some(got)) => o.value("sigma", got),
        (None, None) => {}
    }
    o
}
