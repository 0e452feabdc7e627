//! Distance estimation (ES-11): the static deployment manifest, the RSSI
//! log-distance model, and their combination.
//!
//! Resolves SPEC-NOTES 34 (distance is sender-controlled): the RSSI model
//! works on path loss `tx_power − rssi` against a reference taken at 0 dBm,
//! so a sender that declares its low transmit power reads as near as it is;
//! when both a manifest position and an RSSI estimate exist the SMALLER is
//! used; every estimate says which method made it, so a consistency check
//! run on the unknown-distance fallback can be flagged. Also the
//! `DeploymentEntry` size part of SPEC-NOTES 37: the record is 23 bytes.

use crate::types::{le, DeviceId};

/// ES-11.4: RSSI at 1 m, dBm, from a sender transmitting at 0 dBm.
pub const RSSI_REF_1M: i8 = -59;
/// ES-11.4: typical indoor path-loss exponent.
pub const PATH_LOSS_EXPONENT_INDOOR: f32 = 2.7;
/// ES-11.4: typical outdoor path-loss exponent.
pub const PATH_LOSS_EXPONENT_OUTDOOR: f32 = 2.2;
/// ES-11.4: at or below this RSSI, dBm, the signal is noise.
pub const RSSI_FLOOR: i8 = -95;
/// ES-11.4: 30 m, the distance assumed when estimation fails, cm.
pub const MAX_REASONABLE_DISTANCE: u32 = 3000;
/// ES-11.4: readings kept by an [`RssiTracker`].
pub const RSSI_HISTORY: usize = 8;
/// Entries a node's deployment manifest holds: itself and the devices in
/// its radio range (a 49-node room fits; a larger site lists the nearest).
/// 64 × 24 bytes in RAM, 64 × 23 in flash.
pub const MANIFEST_CAPACITY: usize = 64;
/// An RSSI median this many dB or more above the floor can shorten a
/// surveyed distance; a weaker one cannot. Frames from a far device arrive
/// only on links whose shadowing and fading happen to be favourable, so
/// near the floor the received RSSI is biased high and the model reads
/// 25–35 m as 11–13 m: such a median says "in range", not "near". A
/// median 15 dB above the floor (−80 dBm at 0 dBm, 6 m indoors) is beyond
/// what survivorship gives a device 15 m or more away (4σ of shadowing).
pub const SURVIVOR_MARGIN_DB: i8 = 15;

/// A node's deployment manifest (ES-11.3), fixed capacity, no heap.
pub type Manifest = heapless::Vec<DeploymentEntry, MANIFEST_CAPACITY>;

/// ES-11.2, with the wire byte as its discriminant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DistanceMethod {
    /// Both positions come from the deployment manifest.
    StaticConfig = 0,
    /// The RSSI log-distance model.
    RssiModel = 1,
    /// Round-trip timing; reserved for UWB (ES-11.5), never produced.
    RoundTripTime = 2,
    /// Nothing known: [`MAX_REASONABLE_DISTANCE`] was assumed.
    Unknown = 3,
}

impl DistanceMethod {
    /// Decodes the byte; `None` for 4–255.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(DistanceMethod::StaticConfig),
            1 => Some(DistanceMethod::RssiModel),
            2 => Some(DistanceMethod::RoundTripTime),
            3 => Some(DistanceMethod::Unknown),
            _ => None,
        }
    }

    /// The byte.
    pub fn to_u8(self) -> u8 {
        self as u8
    }
}

/// A distance and how it was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DistanceEstimate {
    /// Distance in centimetres.
    pub cm: u32,
    /// The method that produced `cm`.
    pub method: DistanceMethod,
}

impl DistanceEstimate {
    /// The ES-11.6 fallback: 30 m, flagged as unknown.
    pub const UNKNOWN: DistanceEstimate =
        DistanceEstimate { cm: MAX_REASONABLE_DISTANCE, method: DistanceMethod::Unknown };

    /// False for the fallback, whose spatial check proves little.
    pub fn is_known(&self) -> bool {
        self.method != DistanceMethod::Unknown
    }
}

/// Why a manifest record could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ManifestError {
    /// Fewer than [`DeploymentEntry::LEN`] bytes were given.
    Truncated,
}

/// One device of the deployment manifest (ES-11.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DeploymentEntry {
    /// The device.
    pub device_id: DeviceId,
    /// (x, y, z) in cm from the deployment origin; z is the height.
    pub position_cm: [i32; 3],
    /// Floor number; a label only, the distance uses z.
    pub floor: u8,
    /// Logical zone.
    pub zone: u16,
}

impl DeploymentEntry {
    /// Stored size: 8 + 3 × 4 + 1 + 2 = 23 bytes, not ES-11.3's 21
    /// (SPEC-NOTES 37).
    pub const LEN: usize = 23;

    /// Flash layout, little-endian: `device_id` @0 (8), `x` @8, `y` @12,
    /// `z` @16 (i32 each), `floor` @20, `zone` @21 (u16).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.device_id.0);
        for (i, v) in self.position_cm.iter().enumerate() {
            b[8 + 4 * i..12 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[20] = self.floor;
        b[21..23].copy_from_slice(&self.zone.to_le_bytes());
        b
    }

    /// Reads the first [`Self::LEN`] bytes of `b`.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ManifestError> {
        let t = ManifestError::Truncated;
        let device_id = DeviceId::from_slice(b).ok_or(t)?;
        let at = |o| le::u32_at(b, o).map(|v| v as i32).ok_or(t);
        Ok(DeploymentEntry {
            device_id,
            position_cm: [at(8)?, at(12)?, at(16)?],
            floor: *b.get(20).ok_or(t)?,
            zone: le::u16_at(b, 21).ok_or(t)?,
        })
    }
}

/// Floor of the square root of `v`, exact (Newton's method on integers).
fn isqrt_u128(v: u128) -> u128 {
    if v < 2 {
        return v;
    }
    let mut x = 1u128 << ((128 - v.leading_zeros()).div_ceil(2));
    loop {
        let y = (x + v / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

/// Euclidean distance between two positions in cm, exact and rounded down
/// like the spec's `as u32`; saturates at `u32::MAX` (the widest corners of
/// the i32 cube are 7.4 × 10⁹ cm apart). Squares are summed in `u128`, so no
/// pair of positions can overflow.
pub fn position_distance_cm(a: [i32; 3], b: [i32; 3]) -> u32 {
    let sq: u128 = a
        .iter()
        .zip(b.iter())
        .map(|(p, q)| {
            let d = (*p as i64 - *q as i64).unsigned_abs() as u128;
            d * d
        })
        .sum();
    isqrt_u128(sq).min(u32::MAX as u128) as u32
}

/// The manifest record of `id`; the first one if listed twice.
pub fn find_entry<'m>(manifest: &'m [DeploymentEntry], id: &DeviceId) -> Option<&'m DeploymentEntry> {
    manifest.iter().find(|e| &e.device_id == id)
}

/// ES-11.3 `static_distance`: `None` unless both devices are listed.
pub fn static_distance(a: &DeviceId, b: &DeviceId, manifest: &[DeploymentEntry]) -> Option<u32> {
    let pa = find_entry(manifest, a)?.position_cm;
    let pb = find_entry(manifest, b)?.position_cm;
    Some(position_distance_cm(pa, pb))
}

/// Propagation environment (ES-11.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Environment {
    /// Walls and multipath: n = 2.7.
    #[default]
    Indoor,
    /// Open air: n = 2.2.
    Outdoor,
}

/// Per-deployment calibration of the RSSI model (ES-11.4, kept in flash).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RssiCalibration {
    /// RSSI at 1 m from a sender transmitting at 0 dBm.
    pub rssi_ref_1m: i8,
    /// Path-loss exponent indoors.
    pub exponent_indoor: f32,
    /// Path-loss exponent outdoors.
    pub exponent_outdoor: f32,
    /// At or below this RSSI the reading is noise.
    pub rssi_floor: i8,
    /// Largest distance the model reports, cm; also the noise answer.
    pub max_distance_cm: u32,
}

impl RssiCalibration {
    /// The ES-11.4 constants.
    pub const SPEC: RssiCalibration = RssiCalibration {
        rssi_ref_1m: RSSI_REF_1M,
        exponent_indoor: PATH_LOSS_EXPONENT_INDOOR,
        exponent_outdoor: PATH_LOSS_EXPONENT_OUTDOOR,
        rssi_floor: RSSI_FLOOR,
        max_distance_cm: MAX_REASONABLE_DISTANCE,
    };

    fn exponent(&self, env: Environment) -> f32 {
        match env {
            Environment::Indoor => self.exponent_indoor,
            Environment::Outdoor => self.exponent_outdoor,
        }
    }
}

impl Default for RssiCalibration {
    fn default() -> Self {
        Self::SPEC
    }
}

/// ES-11.4 `rssi_to_distance_cm` on path loss (SPEC-NOTES 34).
///
/// The path loss is `tx_power − rssi` dB; the reference loss at 1 m is
/// `0 − rssi_ref_1m` (59 dB) because the reference was measured at 0 dBm.
/// With `tx_power = 0` this is the spec's formula exactly. A loss at or
/// under the reference clamps to 100 cm; an RSSI at or under the floor is
/// noise and gives `max_distance_cm`, which also caps the result: a false
/// tx-power claim can buy no more allowance than silence does.
pub fn rssi_to_distance_cm(rssi: i8, tx_power: i8, env: Environment, cal: &RssiCalibration) -> u32 {
    if rssi <= cal.rssi_floor {
        return cal.max_distance_cm;
    }
    let loss = tx_power as i32 - rssi as i32;
    let excess = loss + cal.rssi_ref_1m as i32;
    if excess <= 0 {
        return 100.min(cal.max_distance_cm);
    }
    let exponent = excess as f32 / (10.0 * cal.exponent(env));
    let metres = libm::powf(10.0, exponent);
    let cm = metres * 100.0;
    if cm.is_nan() {
        return cal.max_distance_cm;
    }
    (cm as u32).min(cal.max_distance_cm)
}

/// One received signal: its strength and the power it was sent at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RssiSample {
    /// Received strength, dBm.
    pub rssi: i8,
    /// The sender's declared transmit power, dBm (0 for a v1 pulse).
    pub tx_power: i8,
}

impl RssiSample {
    /// The RSSI the sample would have had at 0 dBm; noise sorts weakest.
    fn equivalent_rssi(&self, cal: &RssiCalibration) -> i16 {
        if self.rssi <= cal.rssi_floor {
            i16::MIN
        } else {
            self.rssi as i16 - self.tx_power as i16
        }
    }
}

/// The last [`RSSI_HISTORY`] samples of one neighbour (ES-11.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RssiTracker {
    history: [RssiSample; RSSI_HISTORY],
    len: u8,
    next: u8,
}

impl RssiTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample, dropping the oldest once eight are held.
    pub fn push(&mut self, s: RssiSample) {
        let at = self.next as usize % RSSI_HISTORY;
        if let Some(slot) = self.history.get_mut(at) {
            *slot = s;
        }
        self.next = ((at + 1) % RSSI_HISTORY) as u8;
        self.len = (self.len + 1).min(RSSI_HISTORY as u8);
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True before the first sample.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// ES-11.4 `smoothed_rssi`: the median sample, ordered by the RSSI it
    /// would have had at 0 dBm (so mixed transmit powers compare fairly),
    /// taking the upper middle of an even count as the spec's
    /// `sorted[len / 2]` does. Sorts a stack copy; `None` when empty.
    pub fn median(&self, cal: &RssiCalibration) -> Option<RssiSample> {
        let mut sorted = self.history;
        let held = sorted.get_mut(..self.len())?;
        held.sort_unstable_by_key(|s| s.equivalent_rssi(cal));
        held.get(held.len() / 2).copied()
    }
}

/// The smaller of the two distances, saying which one it was (SPEC-NOTES
/// 34); a tie is reported as static. Neither → the unknown fallback.
pub fn combine(static_cm: Option<u32>, rssi_cm: Option<u32>) -> DistanceEstimate {
    match (static_cm, rssi_cm) {
        (Some(s), Some(r)) if r < s => DistanceEstimate { cm: r, method: DistanceMethod::RssiModel },
        (Some(s), _) => DistanceEstimate { cm: s, method: DistanceMethod::StaticConfig },
        (None, Some(r)) => DistanceEstimate { cm: r, method: DistanceMethod::RssiModel },
        (None, None) => DistanceEstimate::UNKNOWN,
    }
}

/// ES-11.6 `estimate_distance` between us and `them`: the manifest
/// distance if both are listed, the RSSI distance from the median of
/// `tracker` if it holds samples, the smaller of the two, else 30 m flagged
/// [`DistanceMethod::Unknown`]. An RSSI median less than
/// [`SURVIVOR_MARGIN_DB`] above the floor does not shorten a manifest
/// distance (it is biased near by the links that survive), so the result
/// never exceeds the surveyed distance and a sender's power claim can only
/// make it smaller.
pub fn estimate_distance(
    me: &DeviceId,
    them: &DeviceId,
    manifest: &[DeploymentEntry],
    tracker: Option<&RssiTracker>,
    env: Environment,
    cal: &RssiCalibration,
) -> DistanceEstimate {
    let fixed = static_distance(me, them, manifest);
    let strong = |s: &RssiSample| s.rssi as i16 >= cal.rssi_floor as i16 + SURVIVOR_MARGIN_DB as i16;
    let radio = tracker
        .and_then(|t| t.median(cal))
        .filter(|s| fixed.is_none() || strong(s))
        .map(|s| rssi_to_distance_cm(s.rssi, s.tx_power, env, cal));
    combine(fixed, radio)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u8) -> DeviceId {
        DeviceId([n; 8])
    }

    const CAL: RssiCalibration = RssiCalibration::SPEC;

    #[test]
    fn rssi_model_clamps_at_reference_and_floor() {
        assert_eq!(rssi_to_distance_cm(-59, 0, Environment::Indoor, &CAL), 100);
        assert_eq!(rssi_to_distance_cm(-30, 0, Environment::Indoor, &CAL), 100);
        assert_eq!(rssi_to_distance_cm(-95, 0, Environment::Indoor, &CAL), 3000);
        assert_eq!(rssi_to_distance_cm(-128, 0, Environment::Outdoor, &CAL), 3000);
        // 10^(27/27) = 10 m indoors.
        assert_eq!(rssi_to_distance_cm(-86, 0, Environment::Indoor, &CAL), 1000);
    }

    #[test]
    fn declared_low_power_reads_as_near_as_it_is() {
        // SPEC-NOTES 34: −20 dBm at 1 m reads −79 dBm.
        assert_eq!(rssi_to_distance_cm(-79, -20, Environment::Indoor, &CAL), 100);
        let blind = rssi_to_distance_cm(-79, 0, Environment::Indoor, &CAL);
        assert!((549..=550).contains(&blind), "{blind}");
    }

    #[test]
    fn outdoor_distance_is_capped_at_the_fallback() {
        // 10^(35/22) m = 39.0 m before the cap.
        assert_eq!(rssi_to_distance_cm(-94, 0, Environment::Outdoor, &CAL), 3000);
        assert_eq!(rssi_to_distance_cm(-90, 20, Environment::Indoor, &CAL), 3000);
    }

    #[test]
    fn median_ignores_outliers_and_keeps_eight() {
        let mut t = RssiTracker::new();
        assert_eq!(t.median(&CAL), None);
        for r in [-70, -20, -71, -72, -100, -69, -70, -73] {
            t.push(RssiSample { rssi: r, tx_power: 0 });
        }
        assert_eq!(t.median(&CAL).map(|s| s.rssi), Some(-70));
        for _ in 0..8 {
            t.push(RssiSample { rssi: -80, tx_power: 0 });
        }
        assert_eq!(t.len(), 8);
        assert_eq!(t.median(&CAL).map(|s| s.rssi), Some(-80));
    }

    #[test]
    fn estimate_takes_the_smaller_and_names_it() {
        let m = [
            DeploymentEntry { device_id: id(1), position_cm: [0, 0, 0], floor: 0, zone: 1 },
            DeploymentEntry { device_id: id(2), position_cm: [300, 400, 0], floor: 0, zone: 1 },
        ];
        let mut t = RssiTracker::new();
        t.push(RssiSample { rssi: -59, tx_power: 0 });
        let e = estimate_distance(&id(1), &id(2), &m, Some(&t), Environment::Indoor, &CAL);
        assert_eq!(e, DistanceEstimate { cm: 100, method: DistanceMethod::RssiModel });
        let e = estimate_distance(&id(1), &id(2), &m, None, Environment::Indoor, &CAL);
        assert_eq!(e, DistanceEstimate { cm: 500, method: DistanceMethod::StaticConfig });
        let e = estimate_distance(&id(1), &id(3), &m, None, Environment::Indoor, &CAL);
        assert_eq!(e, DistanceEstimate::UNKNOWN);
        assert!(!e.is_known());
    }

    #[test]
    fn weak_rssi_does_not_shorten_a_surveyed_distance() {
        let m = [
            DeploymentEntry { device_id: id(1), position_cm: [0, 0, 0], floor: 0, zone: 1 },
            DeploymentEntry { device_id: id(2), position_cm: [3000, 0, 0], floor: 0, zone: 1 },
        ];
        let with = |rssi: i8, tx_power: i8| {
            let mut t = RssiTracker::new();
            t.push(RssiSample { rssi, tx_power });
            t
        };
        // −89 dBm reads 12.9 m: what a 30 m link that survives looks like.
        let weak = with(-89, 0);
        let e = estimate_distance(&id(1), &id(2), &m, Some(&weak), Environment::Indoor, &CAL);
        assert_eq!(e, DistanceEstimate { cm: 3000, method: DistanceMethod::StaticConfig });
        // Without the manifest the same median is all there is.
        let e = estimate_distance(&id(1), &id(2), &[], Some(&weak), Environment::Indoor, &CAL);
        assert_eq!(e.method, DistanceMethod::RssiModel);
        assert!((1290..=1291).contains(&e.cm), "{e:?}");
        // −81 dBm is 14 dB above the floor: still weak. −80 dBm is not.
        let e = estimate_distance(&id(1), &id(2), &m, Some(&with(-81, 0)), Environment::Indoor, &CAL);
        assert_eq!(e.method, DistanceMethod::StaticConfig);
        let e = estimate_distance(&id(1), &id(2), &m, Some(&with(-80, 0)), Environment::Indoor, &CAL);
        assert_eq!(e.method, DistanceMethod::RssiModel);
        assert!((598..=599).contains(&e.cm), "{e:?}");
        // A power claim cannot push a weak median past the survey.
        let e = estimate_distance(&id(1), &id(2), &m, Some(&with(-90, -40)), Environment::Indoor, &CAL);
        assert_eq!(e, DistanceEstimate { cm: 3000, method: DistanceMethod::StaticConfig });
    }

    #[test]
    fn entry_is_23_bytes_little_endian() {
        let e = DeploymentEntry { device_id: id(7), position_cm: [1, -1, 0x0102_0304], floor: 9, zone: 0xBEEF };
        let b = e.to_bytes();
        assert_eq!(b.len(), 23);
        assert_eq!(&b[8..12], &[1, 0, 0, 0]);
        assert_eq!(&b[12..16], &[0xff; 4]);
        assert_eq!(&b[16..20], &[4, 3, 2, 1]);
        assert_eq!(b[20], 9);
        assert_eq!(&b[21..23], &[0xEF, 0xBE]);
        assert_eq!(DeploymentEntry::from_bytes(&b), Ok(e));
        assert_eq!(DeploymentEntry::from_bytes(&b[..22]), Err(ManifestError::Truncated));
    }

    #[test]
    fn extreme_positions_do_not_overflow() {
        let lo = [i32::MIN; 3];
        let hi = [i32::MAX; 3];
        assert_eq!(position_distance_cm(lo, hi), u32::MAX);
        assert_eq!(position_distance_cm([i32::MIN, 0, 0], [i32::MAX, 0, 0]), u32::MAX);
        assert_eq!(position_distance_cm([i32::MIN, 0, 0], [0, 0, 0]), 1 << 31);
    }

    proptest! {
        #[test]
        fn entry_round_trips(id_b in any::<[u8; 8]>(), p in any::<[i32; 3]>(), floor in any::<u8>(), zone in any::<u16>()) {
            let e = DeploymentEntry { device_id: DeviceId(id_b), position_cm: p, floor, zone };
            prop_assert_eq!(DeploymentEntry::from_bytes(&e.to_bytes()), Ok(e));
        }

        #[test]
        fn integer_distance_is_the_floor_of_the_true_one(a in any::<[i32; 3]>(), b in any::<[i32; 3]>()) {
            let d = position_distance_cm(a, b) as u128;
            let sq: u128 = (0..3).map(|i| {
                let x = (a[i] as i128 - b[i] as i128).unsigned_abs();
                x * x
            }).sum();
            if d < u32::MAX as u128 {
                prop_assert!(d * d <= sq && (d + 1) * (d + 1) > sq);
            } else {
                prop_assert!(d * d <= sq);
            }
        }

        #[test]
        fn rssi_distance_is_monotone_and_bounded(r1 in any::<i8>(), r2 in any::<i8>(), tx in any::<i8>(), outdoor in any::<bool>()) {
            let env = if outdoor { Environment::Outdoor } else { Environment::Indoor };
            let (strong, weak) = if r1 >= r2 { (r1, r2) } else { (r2, r1) };
            let ds = rssi_to_distance_cm(strong, tx, env, &CAL);
            let dw = rssi_to_distance_cm(weak, tx, env, &CAL);
            prop_assert!(ds <= dw);
            prop_assert!((100..=3000).contains(&ds));
        }

        #[test]
        fn a_listed_pair_is_never_farther_than_surveyed(
            d in 0i32..10_000, rs in proptest::collection::vec((any::<i8>(), any::<i8>()), 0..10)
        ) {
            let m = [
                DeploymentEntry { device_id: id(1), position_cm: [0, 0, 0], floor: 0, zone: 0 },
                DeploymentEntry { device_id: id(2), position_cm: [0, d, 0], floor: 0, zone: 0 },
            ];
            let mut t = RssiTracker::new();
            for (rssi, tx_power) in &rs {
                t.push(RssiSample { rssi: *rssi, tx_power: *tx_power });
            }
            let e = estimate_distance(&id(1), &id(2), &m, Some(&t), Environment::Indoor, &CAL);
            prop_assert!(e.cm <= d as u32 && e.is_known());
        }

        #[test]
        fn median_matches_a_sorted_vec(rs in proptest::collection::vec(any::<i8>(), 1..20)) {
            let mut t = RssiTracker::new();
            for r in &rs {
                t.push(RssiSample { rssi: *r, tx_power: 0 });
            }
            let tail = &rs[rs.len().saturating_sub(8)..];
            let mut keys: std::vec::Vec<i16> = tail.iter()
                .map(|r| if *r <= RSSI_FLOOR { i16::MIN } else { *r as i16 })
                .collect();
            keys.sort();
            let got = t.median(&CAL).map(|s| if s.rssi <= RSSI_FLOOR { i16::MIN } else { s.rssi as i16 });
            prop_assert_eq!(got, Some(keys[keys.len() / 2]));
        }
    }
}
