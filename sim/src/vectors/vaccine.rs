//! Vector cases for `krill_core::vaccine` (ES-2.8, ES-10.3, SPEC-NOTES 31).

use super::Outcome;
use krill_core::vaccine::{
    build_vaccine, check_relay, decayed_strength, effective_strength, on_vaccine, ttl, ActiveVaccine, ConfirmedAttack,
    Observation, SeenSet, VaccineAction, VaccineError, VaccineKey, VaccineTable, MAX_HOPS,
};
use krill_core::wire::immune::{AttackType, VaccineV2Frame};
use krill_core::wire::Bytes;
use krill_core::{DeviceId, QuantityType, Signature};
use serde::Deserialize;

/// Strength decay and TTL after `hops` relays.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decay {
    /// Signed initial strength.
    pub initial: u8,
    /// Relays so far.
    pub hops: u8,
    /// Expected `initial × e^{−hops/4}`, rounded (exact).
    pub strength: u8,
    /// Expected TTL with the spec's hop limit of 10 (exact).
    pub ttl: u8,
}

/// What a received copy should lead to.
#[derive(Debug, Deserialize, PartialEq, Clone)]
pub enum Expect {
    /// Applied; the relayed copy's (hops, strength), or `None` if not relayed.
    Applied(Option<(u8, u8)>),
    /// Dropped as seen before.
    Duplicate,
    /// Refused with this error.
    Refused(VaccineError),
}

/// One received copy (v2, origin-signed; the signature is not checked here).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    /// Origin device.
    pub origin: DeviceId,
    /// Origin timestamp (part of the seen-set key).
    pub origin_timestamp: u32,
    /// Signed initial strength.
    pub initial: u8,
    /// Tail hops.
    pub hops: u8,
    /// Tail strength.
    pub strength: u8,
    /// Expected outcome.
    pub expect: Expect,
}

/// A sequence of copies through one node's table and seen-set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receive {
    /// The copies, in arrival order.
    pub copies: Vec<Arrival>,
}

/// A relay step from `prev` to `next` (hops, strength) of one vaccine.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// Signed initial strength.
    pub initial: u8,
    /// Earlier copy (hops, strength).
    pub prev: (u8, u8),
    /// Relayed copy (hops, strength).
    pub next: (u8, u8),
    /// Expected refusal, `None` if legal.
    pub error: Option<VaccineError>,
}

/// An applied vaccine's effect on one observation's deviation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Vaccine quantity.
    pub quantity: QuantityType,
    /// Vaccine mean deviation (reading units).
    pub deviation_mean: i16,
    /// Vaccine deviation std.
    pub deviation_std: u16,
    /// Vaccine dims bitfield.
    pub affected_dims: u16,
    /// Effective strength stored.
    pub strength: u8,
    /// When it was applied.
    pub applied_at: u32,
    /// Lifetime in seconds.
    pub lifetime_s: u32,
    /// Observation quantity.
    pub obs_quantity: QuantityType,
    /// Observation offset from expectation (reading units).
    pub obs_offset: i32,
    /// Observation dims.
    pub obs_dims: u16,
    /// Observation time.
    pub now: u32,
    /// Measured deviation in σ.
    pub deviation: f32,
    /// Expected scaled deviation.
    pub scaled: f64,
    /// Tolerance on `scaled`.
    pub tol: f64,
}

/// A vaccine case.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// `decayed_strength` and `ttl`.
    Decay(Decay),
    /// `on_vaccine` over a sequence of copies.
    Receive(Receive),
    /// `check_relay`.
    Relay(Relay),
    /// `VaccineTable::scaled_deviation`.
    Threshold(Threshold),
}

fn attack(ts: u32) -> ConfirmedAttack {
    ConfirmedAttack {
        detected_at: ts,
        cluster: Bytes([0x11; 8]),
        attack_type: AttackType::ValueSpike,
        quantity: QuantityType::Temperature,
        deviation_mean: 5000,
        deviation_std: 400,
        temporal_pattern: 0,
        affected_dims: 1,
    }
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut o = Outcome::default();
    match c {
        Case::Decay(d) => {
            o.exact("strength", decayed_strength(d.initial, d.hops), d.strength);
            o.exact("ttl", ttl(d.hops, MAX_HOPS), d.ttl);
        }
        Case::Receive(r) => {
            let mut table: VaccineTable = VaccineTable::new();
            let mut seen: SeenSet = SeenSet::new();
            for (i, cp) in r.copies.iter().enumerate() {
                let mut body = build_vaccine(&attack(cp.origin_timestamp), cp.initial);
                body.hops_from_origin = cp.hops;
                body.vaccine_strength = cp.strength;
                let f = VaccineV2Frame { sender_id: cp.origin, body, signature: Signature([0; 64]) };
                let got = match on_vaccine(&mut table, &mut seen, &f, 1_707_800_100, 86_400) {
                    Ok(VaccineAction::Applied { relay, .. }) => {
                        Expect::Applied(relay.map(|x| (x.body.hops_from_origin, x.body.vaccine_strength)))
                    }
                    Ok(VaccineAction::DuplicateDropped) => Expect::Duplicate,
                    Err(e) => Expect::Refused(e),
                };
                o.exact(&format!("copy[{i}]"), got, cp.expect.clone());
            }
            o.value("active", table.len());
        }
        Case::Relay(r) => {
            let mut prev = build_vaccine(&attack(1), r.initial);
            prev.hops_from_origin = r.prev.0;
            prev.vaccine_strength = r.prev.1;
            let mut next = prev;
            next.hops_from_origin = r.next.0;
            next.vaccine_strength = r.next.1;
            o.exact("error", check_relay(&prev, &next).err(), r.error);
            o.value("effective_strength_next", effective_strength(&next));
        }
        Case::Threshold(t) => {
            let mut a = attack(1);
            a.quantity = t.quantity;
            a.deviation_mean = t.deviation_mean;
            a.deviation_std = t.deviation_std;
            a.affected_dims = t.affected_dims;
            let body = build_vaccine(&a, t.strength);
            let mut table: VaccineTable = VaccineTable::new();
            let key = VaccineKey { origin: DeviceId([1; 8]), origin_timestamp: 1, origin_cluster: a.cluster };
            table.apply(
                ActiveVaccine {
                    key,
                    attack_type: a.attack_type,
                    signature: body.attack_signature,
                    strength: t.strength,
                    applied_at: t.applied_at,
                    lifetime_s: t.lifetime_s,
                },
                t.applied_at,
            );
            let obs = Observation { quantity: t.obs_quantity, offset: t.obs_offset, dims: t.obs_dims };
            o.value("multiplier", table.deviation_multiplier(&obs, t.now));
            o.close("scaled", table.scaled_deviation(&obs, t.deviation, t.now) as f64, t.scaled, t.tol);
        }
    }
    o
}
