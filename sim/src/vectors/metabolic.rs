//! Vector cases for metabolic decay (ES-1.2), entropic valuation (ES-4.4),
//! morphogenetic signals (ES-4.6) and settlement (ES-6, SPEC-NOTES 40).

use super::Outcome;
use krill_core::metabolic::{decay_between, MetabolicClock, StateClass};
use krill_core::morphogen::{
    f16, morphogenetic_decision, update_morphogenetic, LocalMetrics, MorphogeneticState, TopologyAction,
};
use krill_core::settlement::{aggregate, compute_plankton_settlement, SettlementParams};
use krill_core::valuation::{compute_data_value, estimate_entropy};
use krill_core::wire::batch::{BatchedTrace, TraceBatch};
use krill_core::wire::{TraceDeposit, Version};
use krill_core::{DeviceId, HashPrefix4, QuantityType, Signature};
use serde::Deserialize;

/// Decay factor of state stamped `then` at `now`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decay {
    /// State class.
    pub class: StateClass,
    /// Stamp.
    pub then: u32,
    /// Now (may have wrapped past `then`).
    pub now: u32,
    /// Expected factor.
    pub factor: f64,
    /// Tolerance.
    pub tol: f64,
}

/// First second at which a class decays below a threshold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifetime {
    /// State class.
    pub class: StateClass,
    /// Threshold.
    pub threshold: f32,
    /// Expected lifetime, `None` for never (exact).
    pub lifetime_s: Option<u32>,
}

/// Histogram entropy of a reading set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entropy {
    /// Quantity (fixes the bin width).
    pub quantity: QuantityType,
    /// Readings.
    pub readings: Vec<i16>,
    /// Expected entropy, bits.
    pub entropy: f64,
    /// Tolerance.
    pub tol: f64,
}

/// ES-4.4 data value of one reading.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataValue {
    /// Quantity of all readings.
    pub quantity: QuantityType,
    /// The valued reading.
    pub reading: i16,
    /// Neighbour readings.
    pub local: Vec<i16>,
    /// Sender health, 0–255.
    pub health: u8,
    /// Expected value.
    pub value: f64,
    /// Tolerance.
    pub tol: f64,
}

/// One ES-4.6 Euler step and decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Morphogen {
    /// Activator before.
    pub activator: f32,
    /// Inhibitor before.
    pub inhibitor: f32,
    /// Activator diffusion.
    pub d_a: f32,
    /// Inhibitor diffusion.
    pub d_i: f32,
    /// Margin.
    pub margin: f32,
    /// Packet drop rate.
    pub packet_drop_rate: f32,
    /// Latency ratio.
    pub latency_ratio: f32,
    /// Energy reserve.
    pub energy_reserve: f32,
    /// Bandwidth saturation (our input for the spec's undefined function).
    pub bandwidth_saturation: f32,
    /// Neighbour activators.
    pub neighbor_a: Vec<f32>,
    /// Neighbour inhibitors.
    pub neighbor_i: Vec<f32>,
    /// Step, epochs.
    pub dt: f32,
    /// Expected activator after.
    pub want_activator: f64,
    /// Expected inhibitor after.
    pub want_inhibitor: f64,
    /// Tolerance (f16 precision).
    pub tol: f64,
    /// Expected decision.
    pub action: TopologyAction,
}

/// One trace of a settled batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// Device.
    pub device: DeviceId,
    /// Anomaly bits.
    pub flags: u8,
    /// Readings.
    pub count: u8,
    /// Confidence.
    pub confidence: u8,
}

/// Settlement of one batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settle {
    /// The traces.
    pub traces: Vec<Trace>,
    /// Reward of a full-value trace.
    pub base_reward: u64,
    /// Cost per frame byte.
    pub cost_per_byte: u64,
    /// Expected Σ rewards (exact).
    pub total_reward: u64,
    /// Expected bandwidth cost (exact).
    pub bandwidth_cost: u64,
    /// Expected net (exact).
    pub net: i64,
}

/// A metabolic / plane case.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// `decay_between`.
    Decay(Decay),
    /// `MetabolicClock::lifetime_s`.
    Lifetime(Lifetime),
    /// `estimate_entropy`.
    Entropy(Entropy),
    /// `compute_data_value`.
    DataValue(DataValue),
    /// `update_morphogenetic` + `morphogenetic_decision`.
    Morphogen(Morphogen),
    /// `compute_plankton_settlement`.
    Settle(Settle),
}

fn deposit(q: QuantityType, r: i16) -> TraceDeposit {
    TraceDeposit {
        timestamp: 0,
        quantity: q,
        reading: r,
        confidence: 255,
        weight: 204,
        seq: 0,
        prev_hash: HashPrefix4([0; 4]),
        vouch: None,
    }
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut o = Outcome::default();
    match c {
        Case::Decay(d) => o.close("factor", decay_between(d.class, d.then, d.now) as f64, d.factor, d.tol),
        Case::Lifetime(l) => {
            let clock = MetabolicClock { class: l.class, threshold: l.threshold };
            o.exact("lifetime_s", clock.lifetime_s(), l.lifetime_s);
        }
        Case::Entropy(e) => match estimate_entropy(&e.readings, e.quantity) {
            Ok(h) => o.close("entropy", h as f64, e.entropy, e.tol),
            Err(err) => o.fail(format!("estimate_entropy: {err:?}")),
        },
        Case::DataValue(d) => {
            let local: Vec<_> = d.local.iter().map(|r| deposit(d.quantity, *r)).collect();
            match compute_data_value(&deposit(d.quantity, d.reading), &local, d.health) {
                Ok(v) => o.close("value", v as f64, d.value, d.tol),
                Err(err) => o.fail(format!("compute_data_value: {err:?}")),
            }
        }
        Case::Morphogen(m) => {
            let h = f16::from_f32;
            let mut s = MorphogeneticState {
                activator: h(m.activator),
                inhibitor: h(m.inhibitor),
                d_a: h(m.d_a),
                d_i: h(m.d_i),
                margin: h(m.margin),
            };
            let metrics = LocalMetrics {
                packet_drop_rate: h(m.packet_drop_rate),
                latency_ratio: h(m.latency_ratio),
                energy_reserve: h(m.energy_reserve),
                bandwidth_saturation: h(m.bandwidth_saturation),
            };
            let na: Vec<f16> = m.neighbor_a.iter().map(|x| h(*x)).collect();
            let ni: Vec<f16> = m.neighbor_i.iter().map(|x| h(*x)).collect();
            update_morphogenetic(&mut s, &metrics, &na, &ni, m.dt);
            o.close("activator", s.activator.to_f64(), m.want_activator, m.tol);
            o.close("inhibitor", s.inhibitor.to_f64(), m.want_inhibitor, m.tol);
            o.exact("action", morphogenetic_decision(&s), m.action);
        }
        Case::Settle(s) => {
            let traces = s.traces.iter().map(|t| BatchedTrace {
                device_id: t.device,
                quantity: QuantityType::Temperature,
                reading_mean: 2310,
                reading_count: t.count,
                confidence: t.confidence,
                anomaly_flags: t.flags,
            });
            let mut batch: TraceBatch = TraceBatch {
                version: Version::V2,
                nano_id: DeviceId([0xAA; 8]),
                batch_id: 1,
                epoch_start: 0,
                epoch_end: 59,
                traces: Default::default(),
                aggregate: aggregate(&[], 0.0),
                signature: Signature([0; 64]),
            };
            for t in traces {
                if batch.traces.push(t).is_err() {
                    o.fail("more than 256 traces in the case");
                    return o;
                }
            }
            let r = compute_plankton_settlement(
                &batch,
                &SettlementParams { base_reward: s.base_reward, bandwidth_cost_per_byte: s.cost_per_byte },
            );
            o.exact("total_reward", r.total_reward, s.total_reward);
            o.exact("bandwidth_cost", r.bandwidth_cost, s.bandwidth_cost);
            o.exact("net", r.net, s.net);
            o.value("rewarded", r.rewarded);
            o.value("anomalous", r.anomalous);
            o.value("duplicates", r.duplicates);
        }
    }
    o
}
