//! Conformance vectors for the pheromone field (ES-4.5, ES-8.3 TV9/TV10).
//!
//! A case deposits traces into a field of a chosen capacity (each deposit at
//! its own receiver clock `now`, with an expected rejection if any), then
//! runs queries and compares every value: counts, ranges and consensus
//! exactly, weights within the case's `tol`.
use super::Outcome;
use krill_core::dag::Trace;
use krill_core::field::{DepositError, PheromoneField};
use krill_core::{DeviceId, HashPrefix4, QuantityType};
use serde::Deserialize;

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// Deposits, optional invalidations, then queries.
    Query(QueryCase),
}

/// Inputs and expectations of one field scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryCase {
    /// Field capacity; one of 2, 3, 4, 8, 64, 4096 (default 64).
    #[serde(default)]
    pub capacity: Option<usize>,
    /// Decay rate (default LAMBDA_DEFAULT); ES-10.2 4d scales it per mode.
    #[serde(default)]
    pub lambda: Option<f32>,
    /// Skew tolerance in seconds (default 30).
    #[serde(default)]
    pub skew: Option<u32>,
    /// Traces, deposited in order.
    pub deposits: Vec<DepositIn>,
    /// Devices whose entries are dropped after the deposits.
    #[serde(default)]
    pub invalidate: Vec<DeviceId>,
    /// Queries, run in order after the deposits.
    pub queries: Vec<QueryIn>,
}

fn full() -> u8 {
    255
}

/// One deposit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositIn {
    /// Sender.
    pub device: DeviceId,
    /// Quantity (default Temperature).
    #[serde(default = "temperature")]
    pub quantity: QuantityType,
    /// Reading in wire units.
    pub reading: i16,
    /// The trace's own timestamp.
    pub timestamp: u32,
    /// The sender's claimed weight.
    pub weight: u8,
    /// The monitor's assessed weight (default 255).
    #[serde(default = "full")]
    pub assessed: u8,
    /// Confidence (default 255).
    #[serde(default = "full")]
    pub confidence: u8,
    /// The receiver's clock at deposit.
    pub now: u32,
    /// The expected rejection, if any.
    #[serde(default)]
    pub reject: Option<DepositError>,
}

fn temperature() -> QuantityType {
    QuantityType::Temperature
}

/// One query and what it must return.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryIn {
    /// Quantity (default Temperature).
    #[serde(default = "temperature")]
    pub quantity: QuantityType,
    /// The receiver's clock.
    pub now: u32,
    /// Expected consensus value.
    pub consensus: Option<i16>,
    /// Expected live entry count.
    pub active: u16,
    /// Expected (min, max).
    pub range: Option<(i16, i16)>,
    /// Expected total weight.
    pub total_weight: f64,
    /// Tolerance on the total weight.
    pub tol: f64,
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    match c {
        Case::Query(q) => match q.capacity.unwrap_or(64) {
            2 => run_query::<2>(q),
            3 => run_query::<3>(q),
            4 => run_query::<4>(q),
            8 => run_query::<8>(q),
            64 => run_query::<64>(q),
            4096 => run_query::<4096>(q),
            other => {
                let mut o = Outcome::default();
                o.fail(format!("capacity {other} not supported by the runner"));
                o
            }
        },
    }
}

fn run_query<const N: usize>(c: &QueryCase) -> Outcome {
    let mut o = Outcome::default();
    let mut f = Box::new(PheromoneField::<N>::new());
    if let Some(l) = c.lambda {
        if let Err(e) = f.set_lambda(l) {
            o.fail(format!("lambda {l} refused: {e:?}"));
            return o;
        }
    }
    if let Some(s) = c.skew {
        f.set_skew_tolerance(s);
    }
    o.value("max_age", f.max_age());
    for (i, d) in c.deposits.iter().enumerate() {
        let t = Trace {
            device: d.device,
            timestamp: d.timestamp,
            quantity: d.quantity,
            reading: d.reading,
            confidence: d.confidence,
            weight: d.weight,
            seq: i as u8,
            prev_hash: HashPrefix4::default(),
        };
        let got = f.deposit(&t, d.assessed, d.now).err();
        if got.is_some() || d.reject.is_some() {
            o.exact(&format!("deposit[{i}].reject"), got, d.reject);
        }
    }
    for dev in &c.invalidate {
        o.value(&format!("invalidated {dev}"), f.invalidate_device(*dev));
    }
    for (i, q) in c.queries.iter().enumerate() {
        let r = f.query(q.quantity, q.now);
        let p = format!("query[{i}]@{}", q.now);
        o.exact(&format!("{p}.consensus"), r.consensus_value, q.consensus);
        o.exact(&format!("{p}.active"), r.active_traces, q.active);
        o.exact(&format!("{p}.range"), r.range, q.range);
        o.close(&format!("{p}.total_weight"), r.total_weight as f64, q.total_weight, q.tol);
    }
    o
}
