//! Settlement (ES-6.1–6.3): assembling TraceBatches from per-device epoch
//! aggregates, and the PLANKTON settlement of one batch.
//!
//! Resolves SPEC-NOTES 40: the settlement follows ES-6.2, `Σ rewards −
//! bandwidth_cost`, over the batch's `trace_count` traces only; the stake is
//! not added (ES-6.3 added it every epoch, minting it anew each time).
//! Integer maths is done in `i128`/`u128` and saturated at the end, so no
//! batch and no parameters can overflow or panic. A device is paid once per
//! (device, quantity) per batch even if a batch lists it twice. More than
//! 256 devices are split over several batches ([`assemble_batches`]).

use crate::types::{Confidence, DeviceId, QuantityType, Reading, Signature, Timestamp, Weight};
use crate::wire::batch::{
    BatchAggregate, BatchedTrace, TraceBatch, ANOMALY_INFLAMMATION, ANOMALY_PYREXIA, ANOMALY_REJECTION,
    MAX_BATCH_TRACES,
};
use crate::wire::Version;
use half::f16;

/// Readings a device sends per epoch on the default schedule (60 s ÷ 5 s).
pub const EXPECTED_READINGS_PER_EPOCH: u8 = 12;

/// Denominator of [`compute_data_value_simple`]: a full value is
/// [`EXPECTED_READINGS_PER_EPOCH`] readings at confidence 255.
pub const DATA_VALUE_SCALE: u64 = EXPECTED_READINGS_PER_EPOCH as u64 * 255;

/// A trace's settlement value out of [`DATA_VALUE_SCALE`] (ES-6.3 leaves
/// `compute_data_value_simple` undefined): `min(reading_count, 12) ×
/// confidence`. Readings beyond the nominal schedule earn nothing, so
/// flooding does not pay; low confidence earns proportionally less.
pub fn compute_data_value_simple(t: &BatchedTrace) -> u64 {
    t.reading_count.min(EXPECTED_READINGS_PER_EPOCH) as u64 * t.confidence as u64
}

/// Prices of one settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SettlementParams {
    /// Reward for one full-value trace.
    pub base_reward: u64,
    /// Network cost per byte of the batch frame.
    pub bandwidth_cost_per_byte: u64,
}

/// The outcome of settling one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Settlement {
    /// Σ `base_reward × value ÷ DATA_VALUE_SCALE` over rewarded traces
    /// (each term rounded down), saturated at `u64::MAX`.
    pub total_reward: u64,
    /// Frame bytes × cost per byte, saturated.
    pub bandwidth_cost: u64,
    /// `total_reward − bandwidth_cost`, saturated to `i64`.
    pub net: i64,
    /// Traces paid.
    pub rewarded: u16,
    /// Traces not paid because `anomaly_flags != 0`.
    pub anomalous: u16,
    /// Traces not paid because their (device, quantity) came earlier.
    pub duplicates: u16,
}

/// PLANKTON settlement of one batch (ES-6.2; SPEC-NOTES 40).
pub fn compute_plankton_settlement<const N: usize>(batch: &TraceBatch<N>, p: &SettlementParams) -> Settlement {
    let traces = batch.traces.get(..batch.traces.len().min(MAX_BATCH_TRACES)).unwrap_or(&[]);
    let mut total: u128 = 0;
    let (mut rewarded, mut anomalous, mut duplicates) = (0u16, 0u16, 0u16);
    for (i, t) in traces.iter().enumerate() {
        if t.anomaly_flags != 0 {
            anomalous = anomalous.saturating_add(1);
            continue;
        }
        let earlier = traces.get(..i).unwrap_or(&[]);
        if earlier.iter().any(|e| e.device_id == t.device_id && e.quantity == t.quantity && e.anomaly_flags == 0) {
            duplicates = duplicates.saturating_add(1);
            continue;
        }
        rewarded = rewarded.saturating_add(1);
        total += p.base_reward as u128 * compute_data_value_simple(t) as u128 / DATA_VALUE_SCALE as u128;
    }
    let cost = batch.buffer_len() as u128 * p.bandwidth_cost_per_byte as u128;
    let net = (total as i128 - cost as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    Settlement {
        total_reward: total.min(u64::MAX as u128) as u64,
        bandwidth_cost: cost.min(u64::MAX as u128) as u64,
        net,
        rewarded,
        anomalous,
        duplicates,
    }
}

/// One device's readings of one quantity over an epoch, as the Nano
/// accumulates them before batching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DeviceEpoch {
    /// The device.
    pub device_id: DeviceId,
    /// What it measures.
    pub quantity: QuantityType,
    /// Σ readings.
    pub reading_sum: i64,
    /// Number of readings.
    pub reading_count: u32,
    /// Σ weight × confidence, for the weighted average confidence.
    pub weighted_confidence_sum: u64,
    /// Σ weight.
    pub weight_sum: u64,
    /// Σ confidence, used when every weight was 0.
    pub confidence_sum: u64,
    /// Anomaly bits seen this epoch (pyrexia 1, inflammation 2, rejection 4).
    pub anomaly_flags: u8,
    /// The device's immunological weight at the end of the epoch.
    pub weight: Weight,
}

impl DeviceEpoch {
    /// An empty accumulator.
    pub fn new(device_id: DeviceId, quantity: QuantityType) -> Self {
        DeviceEpoch {
            device_id,
            quantity,
            reading_sum: 0,
            reading_count: 0,
            weighted_confidence_sum: 0,
            weight_sum: 0,
            confidence_sum: 0,
            anomaly_flags: 0,
            weight: 0,
        }
    }

    /// Adds one reading with its confidence and the monitor's weight for it.
    pub fn add(&mut self, reading: Reading, confidence: Confidence, weight: Weight) {
        self.reading_sum = self.reading_sum.saturating_add(reading as i64);
        self.reading_count = self.reading_count.saturating_add(1);
        self.weighted_confidence_sum = self.weighted_confidence_sum.saturating_add(weight as u64 * confidence as u64);
        self.weight_sum = self.weight_sum.saturating_add(weight as u64);
        self.confidence_sum = self.confidence_sum.saturating_add(confidence as u64);
        self.weight = weight;
    }

    /// The 14-byte trace: mean rounded half away from zero, count
    /// saturated at 255, confidence Σw·c ÷ Σw rounded (plain mean if every
    /// weight was 0), unknown flag bits dropped. `None` without readings.
    pub fn to_trace(&self) -> Option<BatchedTrace> {
        if self.reading_count == 0 {
            return None;
        }
        let n = self.reading_count as i128;
        let s = self.reading_sum as i128;
        let mean = if s >= 0 { (2 * s + n) / (2 * n) } else { -((-2 * s + n) / (2 * n)) };
        let mean = mean.clamp(i16::MIN as i128, i16::MAX as i128) as i16;
        let (num, den) = if self.weight_sum > 0 {
            (self.weighted_confidence_sum as u128, self.weight_sum as u128)
        } else {
            (self.confidence_sum as u128, self.reading_count as u128)
        };
        let confidence = ((2 * num + den) / (2 * den)).min(255) as u8;
        Some(BatchedTrace {
            device_id: self.device_id,
            quantity: self.quantity,
            reading_mean: mean,
            reading_count: self.reading_count.min(255) as u8,
            confidence,
            anomaly_flags: self.anomaly_flags & (ANOMALY_PYREXIA | ANOMALY_INFLAMMATION | ANOMALY_REJECTION),
        })
    }
}

/// Fixed fields of the batches of one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchHeader {
    /// The submitting Nano.
    pub nano_id: DeviceId,
    /// Id of the first batch; later ones count up (wrapping).
    pub first_batch_id: u32,
    /// First second of the epoch.
    pub epoch_start: Timestamp,
    /// Last second of the epoch.
    pub epoch_end: Timestamp,
    /// Pheromone-field entropy; NaN, infinite or negative becomes 0.
    pub field_entropy: f32,
}

/// The aggregate of one batch's devices with readings (others are
/// ignored): distinct devices, those with weight > 0.5 (raw > 127), entries
/// with any anomaly bit, and entries with the rejection bit (saturated).
pub fn aggregate(devices: &[DeviceEpoch], field_entropy: f32) -> BatchAggregate {
    let live = |d: &&DeviceEpoch| d.reading_count != 0;
    let mut total = 0u16;
    let mut healthy = 0u16;
    for (i, d) in devices.iter().enumerate().filter(|(_, d)| d.reading_count != 0) {
        if devices.get(..i).unwrap_or(&[]).iter().filter(live).any(|e| e.device_id == d.device_id) {
            continue;
        }
        total = total.saturating_add(1);
        if d.weight > 127 {
            healthy = healthy.saturating_add(1);
        }
    }
    let anomalies = devices.iter().filter(live).filter(|d| d.anomaly_flags & 0x07 != 0).count();
    let rejections = devices.iter().filter(live).filter(|d| d.anomaly_flags & ANOMALY_REJECTION != 0).count();
    let e = if field_entropy.is_finite() && field_entropy > 0.0 { f16::from_f32(field_entropy) } else { f16::ZERO };
    BatchAggregate {
        total_devices: total,
        healthy_devices: healthy,
        anomalies_detected: anomalies.min(u16::MAX as usize) as u16,
        rejections: rejections.min(u8::MAX as usize) as u8,
        field_entropy: if e.is_finite() { e } else { f16::MAX },
    }
}

/// The epoch's batches, unsigned (the caller emits each, signs
/// `bytes[0..signed_len]` and sets `signature`). Devices without readings
/// are left out; the rest go in order, 256 per batch, each batch with the
/// aggregate of its own devices, so the aggregates add up over the epoch.
/// No devices, no batch.
pub fn assemble_batches<'a>(
    h: &'a BatchHeader,
    devices: &'a [DeviceEpoch],
) -> impl Iterator<Item = TraceBatch<MAX_BATCH_TRACES>> + 'a {
    let mut rest = devices;
    let mut index = 0u32;
    core::iter::from_fn(move || {
        rest = skip_empty(rest);
        if rest.is_empty() {
            return None;
        }
        let mut traces = heapless::Vec::new();
        let mut used = 0usize;
        for d in rest.iter() {
            if traces.is_full() {
                break;
            }
            used += 1;
            if let Some(t) = d.to_trace() {
                // Cannot fail: checked not full above.
                let _ = traces.push(t);
            }
        }
        let (this, next) = rest.split_at(used.min(rest.len()));
        rest = next;
        let batch = TraceBatch {
            version: Version::V2,
            nano_id: h.nano_id,
            batch_id: h.first_batch_id.wrapping_add(index),
            epoch_start: h.epoch_start,
            epoch_end: h.epoch_end,
            traces,
            aggregate: aggregate(this, h.field_entropy),
            signature: Signature([0; 64]),
        };
        index = index.wrapping_add(1);
        Some(batch)
    })
}

fn skip_empty(mut d: &[DeviceEpoch]) -> &[DeviceEpoch] {
    while let Some((first, rest)) = d.split_first() {
        if first.reading_count != 0 {
            break;
        }
        d = rest;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn trace(i: u8, flags: u8, count: u8, conf: u8) -> BatchedTrace {
        BatchedTrace {
            device_id: DeviceId([i; 8]),
            quantity: QuantityType::Temperature,
            reading_mean: 2310,
            reading_count: count,
            confidence: conf,
            anomaly_flags: flags,
        }
    }

    fn batch(traces: &[BatchedTrace]) -> TraceBatch {
        TraceBatch {
            version: Version::V2,
            nano_id: DeviceId([0xAA; 8]),
            batch_id: 1,
            epoch_start: 0,
            epoch_end: 59,
            traces: traces.iter().copied().collect(),
            aggregate: aggregate(&[], 0.0),
            signature: Signature([0; 64]),
        }
    }

    const P: SettlementParams = SettlementParams { base_reward: 1000, bandwidth_cost_per_byte: 1 };

    #[test]
    fn anomalous_traces_earn_nothing_and_cost_is_subtracted() {
        let b = batch(&[trace(1, 0, 12, 255), trace(2, ANOMALY_PYREXIA, 12, 255), trace(3, 0, 24, 102)]);
        let s = compute_plankton_settlement(&b, &P);
        // 1000 + 1000·12·102/3060 = 1000 + 400; frame 99 + 3·14 = 141 bytes.
        assert_eq!(s.total_reward, 1400);
        assert_eq!(s.bandwidth_cost, 141);
        assert_eq!(s.net, 1259);
        assert_eq!((s.rewarded, s.anomalous, s.duplicates), (2, 1, 0));
    }

    #[test]
    fn empty_batch_costs_only_bandwidth_and_stake_is_not_added() {
        let s = compute_plankton_settlement(&batch(&[]), &P);
        assert_eq!((s.total_reward, s.bandwidth_cost, s.net), (0, 99, -99));
    }

    #[test]
    fn duplicates_are_paid_once() {
        let b = batch(&[trace(1, 0, 12, 255), trace(1, 0, 12, 255)]);
        let s = compute_plankton_settlement(&b, &P);
        assert_eq!((s.total_reward, s.rewarded, s.duplicates), (1000, 1, 1));
    }

    #[test]
    fn extreme_prices_saturate() {
        let b = batch(&[trace(1, 0, 12, 255)]);
        let s =
            compute_plankton_settlement(&b, &SettlementParams { base_reward: u64::MAX, bandwidth_cost_per_byte: 0 });
        assert_eq!((s.total_reward, s.net), (u64::MAX, i64::MAX));
        let s =
            compute_plankton_settlement(&b, &SettlementParams { base_reward: 0, bandwidth_cost_per_byte: u64::MAX });
        assert_eq!((s.bandwidth_cost, s.net), (u64::MAX, i64::MIN));
    }

    #[test]
    fn accumulator_means_and_weighted_confidence() {
        let mut d = DeviceEpoch::new(DeviceId([1; 8]), QuantityType::Temperature);
        assert_eq!(d.to_trace(), None);
        d.add(2310, 200, 255);
        d.add(2315, 100, 0);
        d.add(-5, 255, 255);
        let t = d.to_trace().unwrap();
        assert_eq!(t.reading_mean, 1540);
        assert_eq!(t.reading_count, 3);
        assert_eq!(t.confidence, 228, "(200·255 + 255·255) ÷ 510 = 227.5 → 228");
        let mut neg = DeviceEpoch::new(DeviceId([1; 8]), QuantityType::Temperature);
        neg.add(-3, 10, 0);
        neg.add(-2, 20, 0);
        let t = neg.to_trace().unwrap();
        assert_eq!((t.reading_mean, t.confidence), (-3, 15));
    }

    fn dev(i: u16, flags: u8, weight: u8, count: u32) -> DeviceEpoch {
        let b = i.to_le_bytes();
        DeviceEpoch {
            reading_sum: 2310 * count as i64,
            reading_count: count,
            weighted_confidence_sum: 200 * count as u64,
            weight_sum: count as u64,
            confidence_sum: 200 * count as u64,
            anomaly_flags: flags,
            weight,
            ..DeviceEpoch::new(DeviceId([b[0], b[1], 0, 0, 0, 0, 0, 0]), QuantityType::Temperature)
        }
    }

    #[test]
    fn more_than_256_devices_split_into_batches() {
        let mut ds: Vec<DeviceEpoch> = (0..600).map(|i| dev(i, if i % 100 == 0 { 4 } else { 0 }, 204, 12)).collect();
        ds[5].reading_count = 0;
        let h = BatchHeader {
            nano_id: DeviceId([0xAA; 8]),
            first_batch_id: u32::MAX,
            epoch_start: 0,
            epoch_end: 59,
            field_entropy: 2.5,
        };
        let bs: Vec<_> = assemble_batches(&h, &ds).collect();
        assert_eq!(bs.len(), 3);
        assert_eq!(bs.iter().map(|b| b.traces.len()).collect::<Vec<_>>(), [256, 256, 87]);
        assert_eq!(bs.iter().map(|b| b.batch_id).collect::<Vec<_>>(), [u32::MAX, 0, 1]);
        assert_eq!(bs.iter().map(|b| b.aggregate.total_devices as u32).sum::<u32>(), 599);
        assert_eq!(bs.iter().map(|b| b.aggregate.rejections as u32).sum::<u32>(), 6);
        assert_eq!(bs[0].aggregate.healthy_devices, 256);
        assert_eq!(bs[0].aggregate.field_entropy, f16::from_f32(2.5));
        let mut buf = [0u8; crate::wire::batch::MAX_BATCH_LEN];
        for b in &bs {
            let n = b.emit(&mut buf).unwrap();
            assert_eq!(TraceBatch::<MAX_BATCH_TRACES>::parse(&buf[..n]).as_ref(), Ok(b));
        }
        assert_eq!(assemble_batches(&h, &[]).count(), 0);
        assert_eq!(assemble_batches(&h, &ds[5..6]).count(), 0);
    }

    #[test]
    fn aggregate_counts() {
        let ds = [dev(1, 0, 128, 1), dev(1, 1, 128, 1), dev(2, 6, 127, 1)];
        let a = aggregate(&ds, f32::NAN);
        assert_eq!((a.total_devices, a.healthy_devices, a.anomalies_detected, a.rejections), (2, 1, 2, 1));
        assert_eq!(a.field_entropy, f16::ZERO);
        assert_eq!(aggregate(&ds, 1e9).field_entropy, f16::MAX);
    }

    proptest! {
        #[test]
        fn settlement_never_panics(
            ts in proptest::collection::vec((any::<u8>(), 0u8..8, any::<u8>(), any::<u8>()), 0..=256),
            base in any::<u64>(),
            cost in any::<u64>(),
        ) {
            let traces: Vec<_> = ts.iter().map(|(i, f, c, k)| trace(*i, *f, *c, *k)).collect();
            let b = batch(&traces);
            let s = compute_plankton_settlement(&b, &SettlementParams { base_reward: base, bandwidth_cost_per_byte: cost });
            prop_assert_eq!(s.rewarded as usize + s.anomalous as usize + s.duplicates as usize, traces.len());
            if s.total_reward < u64::MAX && s.bandwidth_cost < u64::MAX {
                let exact = s.total_reward as i128 - s.bandwidth_cost as i128;
                prop_assert_eq!(s.net as i128, exact.clamp(i64::MIN as i128, i64::MAX as i128));
            }
        }

        #[test]
        fn accumulator_never_panics(rs in proptest::collection::vec((any::<i16>(), any::<u8>(), any::<u8>()), 1..400)) {
            let mut d = DeviceEpoch::new(DeviceId([1; 8]), QuantityType::Temperature);
            for (r, c, w) in &rs {
                d.add(*r, *c, *w);
            }
            let t = d.to_trace().unwrap();
            let lo = rs.iter().map(|x| x.0).min().unwrap();
            let hi = rs.iter().map(|x| x.0).max().unwrap();
            prop_assert!(t.reading_mean >= lo && t.reading_mean <= hi);
        }
    }
}
