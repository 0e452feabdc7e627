//! Gateway-trust vectors (ES-16): the anomaly EMA, cross-gateway
//! corroboration, the Dust short-id registry and the birthday figures.
use super::Outcome;
use krill_core::gateway::{
    short_id_collision_probability, CrossCheck, DustFrame, DustKey, DustRegistry, FrameError, GatewayMonitor,
    GatewayProfile, GatewayTrace, RegistryError,
};
use krill_core::{Confidence, DeviceId};
use serde::Deserialize;

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// A sequence of traces through one gateway profile.
    Profile(ProfileCase),
    /// How many consecutive anomalies push the rate above a threshold.
    Crossing(CrossingCase),
    /// Traces through several gateways, with corroboration.
    Cross(CrossCase),
    /// Operations on a gateway's Dust registry.
    Registry(RegistryCase),
    /// Birthday collision probability of short ids.
    Collision(CollisionCase),
}

/// Inputs and expectations for [`Case::Profile`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileCase {
    /// Corroboration time set before the traces, if any.
    pub cross_validated_at: Option<u32>,
    /// Traces, in order.
    pub traces: Vec<ProfileStep>,
    /// Expected anomaly rate at the end.
    pub rate: f64,
    /// Tolerance on the rate.
    pub tol: f64,
}

/// One trace of [`ProfileCase`]; `repeat` identical traces.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileStep {
    /// Clock.
    pub t: u32,
    /// Whether the immune checks flagged it.
    pub anomalous: bool,
    /// How many identical traces (default 1).
    #[serde(default = "one")]
    pub repeat: u32,
    /// Expected confidence of the last of them.
    pub confidence: Confidence,
}

fn one() -> u32 {
    1
}

/// Inputs and expectations for [`Case::Crossing`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossingCase {
    /// Rate threshold (strictly above counts).
    pub threshold: f32,
    /// Expected number of consecutive anomalies from a clean profile.
    pub anomalies: u32,
}

/// Inputs and expectations for [`Case::Cross`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossCase {
    /// Pairing window, seconds.
    pub window: u32,
    /// Gateways, each declaring every Dust device of `dust`.
    pub gateways: Vec<DeviceId>,
    /// Dust devices.
    pub dust: Vec<DeviceId>,
    /// Traces, in order.
    pub traces: Vec<CrossStep>,
    /// Expected `last_cross_validated` per gateway at the end.
    pub validated: Vec<(DeviceId, Option<u32>)>,
}

/// One trace of [`CrossCase`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossStep {
    /// Clock.
    pub t: u32,
    /// The wrapped trace.
    pub trace: GatewayTrace,
    /// Whether the immune checks flagged it.
    pub anomalous: bool,
    /// Expected confidence.
    pub confidence: Confidence,
    /// Expected corroboration result.
    pub cross: CrossCheck,
}

/// Inputs and expectations for [`Case::Registry`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCase {
    /// The gateway.
    pub gateway: DeviceId,
    /// Capacity: 4 or 1024.
    pub capacity: usize,
    /// Short-id range to assign from; whole space if absent.
    pub range: Option<(u16, u16)>,
    /// Operations, in order.
    pub ops: Vec<RegOp>,
}

/// One operation of [`RegistryCase`].
#[derive(Debug, Deserialize)]
pub enum RegOp {
    /// Register and let the gateway assign the short id.
    Register {
        /// Device.
        device: DeviceId,
        /// Expected result.
        expect: Result<u16, RegistryError>,
    },
    /// Register under a given short id.
    RegisterAs {
        /// Short id.
        short_id: u16,
        /// Device.
        device: DeviceId,
        /// Expected result.
        expect: Result<(), RegistryError>,
    },
    /// Unregister a short id.
    Unregister {
        /// Short id.
        short_id: u16,
        /// Expected device removed.
        expect: Option<DeviceId>,
    },
    /// An uplink frame; `mac_ok` is the outcome of the (future) MAC check.
    Frame {
        /// Short id.
        short_id: u16,
        /// Frame counter.
        counter: u32,
        /// MAC check result.
        mac_ok: bool,
        /// Expected device the wrapped trace names, or the error.
        expect: Result<DeviceId, FrameError>,
    },
}

/// Inputs and expectations for [`Case::Collision`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollisionCase {
    /// Devices.
    pub devices: u32,
    /// Id space.
    pub space: u32,
    /// Expected probability of at least one collision.
    pub p: f64,
    /// Tolerance.
    pub tol: f64,
}

fn run_profile(c: &ProfileCase, out: &mut Outcome) {
    let mut p: GatewayProfile<1> = GatewayProfile::new(DeviceId::default());
    if let Some(t) = c.cross_validated_at {
        p.mark_cross_validated(t);
    }
    for (i, s) in c.traces.iter().enumerate() {
        let mut got = None;
        for _ in 0..s.repeat {
            got = Some(p.evaluate_gateway_trust(s.t, s.anomalous));
        }
        out.exact(&format!("#{i} confidence @{}", s.t), got, Some(s.confidence));
    }
    out.close("rate", p.anomaly_rate() as f64, c.rate, c.tol);
    out.value("traces_received", p.traces_received());
}

fn run_crossing(c: &CrossingCase, out: &mut Outcome) {
    let mut p: GatewayProfile<1> = GatewayProfile::new(DeviceId::default());
    let mut k = 0u32;
    while p.anomaly_rate() <= c.threshold && k < 10_000 {
        p.evaluate_gateway_trust(0, true);
        k += 1;
    }
    out.exact("anomalies", k, c.anomalies);
    out.value("rate", p.anomaly_rate());
}

fn run_cross(c: &CrossCase, out: &mut Outcome) {
    let mut m: GatewayMonitor<4, 8, 16> = GatewayMonitor::new(c.window);
    for g in &c.gateways {
        match m.add_gateway(*g) {
            Ok(p) => {
                for d in &c.dust {
                    if let Err(e) = p.add_dust(*d) {
                        out.fail(format!("add_dust {d} to {g}: {e:?}"));
                    }
                }
            }
            Err(e) => out.fail(format!("add_gateway {g}: {e:?}")),
        }
    }
    for (i, s) in c.traces.iter().enumerate() {
        match m.on_trace(s.t, &s.trace, s.anomalous) {
            Ok(v) => {
                out.exact(&format!("#{i} confidence"), v.confidence, s.confidence);
                out.exact(&format!("#{i} cross"), v.cross, s.cross);
                if let Some(sus) = v.cross.suspects() {
                    out.value(&format!("#{i} suspects"), sus);
                }
            }
            Err(e) => out.fail(format!("#{i}: {e:?}")),
        }
    }
    for (g, want) in &c.validated {
        let got = m.profile(g).and_then(|p| p.last_cross_validated());
        out.exact(&format!("{g} last_cross_validated"), got, *want);
    }
}

fn run_registry<const N: usize>(c: &RegistryCase, out: &mut Outcome) {
    let mut r: DustRegistry<N> = match c.range {
        Some((a, b)) => DustRegistry::with_id_range(c.gateway, a, b),
        None => DustRegistry::new(c.gateway),
    };
    let key = |d: &DeviceId| {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&d.0);
        DustKey(k)
    };
    for (i, op) in c.ops.iter().enumerate() {
        match op {
            RegOp::Register { device, expect } => {
                out.exact(&format!("#{i} register {device}"), r.register(*device, key(device)), *expect);
            }
            RegOp::RegisterAs { short_id, device, expect } => {
                let got = r.register_as(*short_id, *device, key(device));
                out.exact(&format!("#{i} register_as {short_id} {device}"), got, *expect);
            }
            RegOp::Unregister { short_id, expect } => {
                let got = r.unregister(*short_id).map(|e| e.device_id);
                out.exact(&format!("#{i} unregister {short_id}"), got, *expect);
            }
            RegOp::Frame { short_id, counter, mac_ok, expect } => {
                let f = DustFrame { short_id: *short_id, frame_counter: *counter, reading: 0 };
                let got = r.accept_frame(&f, 0, |e| *mac_ok && e.key == key(&e.device_id));
                if let Ok(t) = &got {
                    out.exact(&format!("#{i} names gateway"), t.gateway, c.gateway);
                }
                out.exact(&format!("#{i} frame {short_id}/{counter}"), got.map(|t| t.device), *expect);
            }
        }
    }
    out.value("registered", r.len());
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut out = Outcome::default();
    match c {
        Case::Profile(p) => run_profile(p, &mut out),
        Case::Crossing(x) => run_crossing(x, &mut out),
        Case::Cross(x) => run_cross(x, &mut out),
        Case::Registry(r) => match r.capacity {
            4 => run_registry::<4>(r, &mut out),
            1024 => run_registry::<1024>(r, &mut out),
            n => out.fail(format!("capacity {n} not supported (4 or 1024)")),
        },
        Case::Collision(x) => {
            out.close("p", short_id_collision_probability(x.devices, x.space), x.p, x.tol);
        }
    }
    out
}
