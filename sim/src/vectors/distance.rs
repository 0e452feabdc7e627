//! Distance-estimation vectors (ES-11): the RSSI model, the median
//! tracker, manifest records and the composite estimate.
use super::Outcome;
use krill_core::distance::{
    estimate_distance, position_distance_cm, rssi_to_distance_cm, DeploymentEntry, DistanceMethod, Environment,
    RssiCalibration, RssiSample, RssiTracker,
};
use krill_core::DeviceId;
use serde::Deserialize;

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// One RSSI reading through the log-distance model.
    Rssi(RssiCase),
    /// The median of a tracker fed these samples.
    Median(MedianCase),
    /// Distance between two manifest positions.
    Static(StaticCase),
    /// A manifest record's 23-byte layout.
    Entry(EntryCase),
    /// The composite ES-11.6 estimate.
    Estimate(EstimateCase),
}

/// Inputs and expectations for [`Case::Rssi`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RssiCase {
    /// Received strength, dBm.
    pub rssi: i8,
    /// Declared transmit power, dBm.
    pub tx_power: i8,
    /// Environment.
    pub env: Environment,
    /// Expected distance, cm.
    pub cm: u32,
}

/// Inputs and expectations for [`Case::Median`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedianCase {
    /// Samples pushed, oldest first.
    pub samples: Vec<RssiSample>,
    /// Expected median sample, `None` if empty.
    pub median: Option<RssiSample>,
}

/// Inputs and expectations for [`Case::Static`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCase {
    /// First position, cm.
    pub a: [i32; 3],
    /// Second position, cm.
    pub b: [i32; 3],
    /// Expected distance, cm (floor).
    pub cm: u32,
}

/// Inputs and expectations for [`Case::Entry`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryCase {
    /// The record.
    pub entry: DeploymentEntry,
    /// Its expected bytes, hex.
    pub bytes: String,
}

/// Inputs and expectations for [`Case::Estimate`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateCase {
    /// The estimating node.
    pub me: DeviceId,
    /// The other node.
    pub them: DeviceId,
    /// The deployment manifest.
    pub manifest: Vec<DeploymentEntry>,
    /// RSSI samples of `them`; `None` = no tracker.
    pub samples: Option<Vec<RssiSample>>,
    /// Environment.
    pub env: Environment,
    /// Expected distance, cm.
    pub cm: u32,
    /// Expected method.
    pub method: DistanceMethod,
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut out = Outcome::default();
    let cal = RssiCalibration::SPEC;
    match c {
        Case::Rssi(r) => {
            out.exact("cm", rssi_to_distance_cm(r.rssi, r.tx_power, r.env, &cal), r.cm);
        }
        Case::Median(m) => {
            let mut t = RssiTracker::new();
            for s in &m.samples {
                t.push(*s);
            }
            out.exact("held", t.len(), m.samples.len().min(8));
            out.exact("median", t.median(&cal), m.median);
        }
        Case::Static(s) => out.exact("cm", position_distance_cm(s.a, s.b), s.cm),
        Case::Entry(e) => {
            let bytes = e.entry.to_bytes();
            out.exact("bytes", hex::encode(bytes), e.bytes.to_lowercase());
            out.exact("length", bytes.len(), 23);
            out.exact("decoded", DeploymentEntry::from_bytes(&bytes), Ok(e.entry));
        }
        Case::Estimate(e) => {
            let tracker = e.samples.as_ref().map(|ss| {
                let mut t = RssiTracker::new();
                for s in ss {
                    t.push(*s);
                }
                t
            });
            let got = estimate_distance(&e.me, &e.them, &e.manifest, tracker.as_ref(), e.env, &cal);
            out.exact("cm", got.cm, e.cm);
            out.exact("method", got.method, e.method);
            out.exact("known", got.is_known(), e.method != DistanceMethod::Unknown);
        }
    }
    out
}
