//! Metabolic state (ES-1.2 half-lives, ES-5.2 GC, ES-10.3 dispatch): how
//! much a piece of state is still worth after some time, which traces a
//! DATA_RETRACTION covers, and what a DEATH_CERTIFICATE does.
//!
//! Ages are wrap-aware `u32` seconds: a timestamp up to 2³¹ s "in the
//! future" counts as age 0, never as a huge age or a factor above 1.
//! A death certificate is accepted only under the dying device's OLD key
//! (ES-2.9) and, per SPEC-NOTES 32 (`docs/spec-deviations.md`), with no
//! freshness window: a pre-signed PUF_ANOMALY certificate's timestamp means
//! "valid since".

use crate::crypto::identity::{device_id_of, pubkey_hash};
use crate::crypto::sign::{verify_frame, Crypto};
use crate::types::{
    DeviceId, Hash32, PublicKey, QuantityType, Timestamp, T_HALF_ARCHIVAL, T_HALF_EPHEMERAL, T_HALF_OPERATIONAL,
    T_HALF_STRUCTURAL,
};
use crate::wire::metabolic::{DataRetraction, DeathCertificate, DeathReason};
use crate::wire::{Body, FrameRepr, WireError};

/// The ES-1.2 metabolic classes of state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum StateClass {
    /// T½ = 10 min: traces, pheromone deposits, presence.
    Ephemeral,
    /// T½ = 1 day: neighbour state, vaccines, recent anomalies.
    Operational,
    /// T½ = 90 days: profiles, topology.
    Structural,
    /// Never decays (it is compressed instead).
    Archival,
}

impl StateClass {
    /// Half-life in seconds; [`T_HALF_ARCHIVAL`] (`u32::MAX`) means never.
    pub const fn half_life_s(self) -> u32 {
        match self {
            StateClass::Ephemeral => T_HALF_EPHEMERAL,
            StateClass::Operational => T_HALF_OPERATIONAL,
            StateClass::Structural => T_HALF_STRUCTURAL,
            StateClass::Archival => T_HALF_ARCHIVAL,
        }
    }
}

/// Seconds from `then` to `now`, modulo 2³²; a `then` up to 2³¹ s after
/// `now` (clock skew, a sender ahead of us) is age 0.
pub fn age_s(then: Timestamp, now: Timestamp) -> u32 {
    let d = now.wrapping_sub(then);
    if d > i32::MAX as u32 {
        0
    } else {
        d
    }
}

/// `0.5^(age / T½)`, in [0, 1]; archival state is always 1.
pub fn decay_factor(class: StateClass, age_s: u32) -> f32 {
    let t = class.half_life_s();
    if t == T_HALF_ARCHIVAL {
        return 1.0;
    }
    libm::exp2(-(age_s as f64) / t as f64) as f32
}

/// [`decay_factor`] of state stamped `then`, seen at `now`.
pub fn decay_between(class: StateClass, then: Timestamp, now: Timestamp) -> f32 {
    decay_factor(class, age_s(then, now))
}

/// The threshold ES-5.2's DAG GC implies: entries older than 5 ×
/// T½_EPHEMERAL are "effectively dead", i.e. below 2⁻⁵.
pub const DAG_GC_THRESHOLD: f32 = 1.0 / 32.0;

/// Says when state of one class has decayed below a threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MetabolicClock {
    /// The class of the state.
    pub class: StateClass,
    /// Decay factor below which the state counts as dead.
    pub threshold: f32,
}

impl MetabolicClock {
    /// The clock at which state of `class` is "effectively dead": ES-5.2's
    /// DAG cutoff (below 2⁻⁵, five half-lives) applied to every class, as
    /// the node's metabolic sweep does.
    pub const fn dead(class: StateClass) -> Self {
        MetabolicClock { class, threshold: DAG_GC_THRESHOLD }
    }

    /// The smallest age at which the factor is below the threshold, or
    /// `None` if it never is (archival, threshold ≤ 0 or NaN, or an age
    /// beyond 2³¹ s, which [`age_s`] cannot express). A threshold above 1
    /// gives 0.
    pub fn lifetime_s(&self) -> Option<u32> {
        let thr = self.threshold;
        if self.class == StateClass::Archival || thr.is_nan() || thr <= 0.0 {
            return None;
        }
        let below = |a: u32| decay_factor(self.class, a) < thr;
        if below(0) {
            return Some(0);
        }
        let est = self.class.half_life_s() as f64 * libm::log2(1.0 / thr as f64);
        if est.is_nan() || est >= i32::MAX as f64 {
            return None;
        }
        let mut a = libm::ceil(est) as u32;
        // The estimate is within a few seconds of the f32 predicate's edge.
        for _ in 0..64 {
            if a > 0 && below(a - 1) {
                a -= 1;
            } else if !below(a) {
                a = a.checked_add(1)?;
            } else {
                return Some(a);
            }
        }
        below(a).then_some(a)
    }

    /// True when state stamped `then` has decayed below the threshold at `now`.
    pub fn is_decayed(&self, then: Timestamp, now: Timestamp) -> bool {
        decay_between(self.class, then, now) < self.threshold
    }

    /// The first second at which state stamped `then` is decayed (modulo
    /// 2³²), or `None` if it never is.
    pub fn decays_at(&self, then: Timestamp) -> Option<Timestamp> {
        self.lifetime_s().map(|l| then.wrapping_add(l))
    }
}

/// True if a DATA_RETRACTION issued by `issuer` withdraws a trace of
/// `device` for `quantity` stamped `t`: only the issuer's own traces, of the
/// named quantity (or all), inside `from..=to` (wrap-aware), and not stamped
/// after the retraction itself was issued (nobody retracts the future, so a
/// wide or wrapped range cannot pre-empt later data).
pub fn retraction_covers(
    issuer: DeviceId,
    r: &DataRetraction,
    device: DeviceId,
    quantity: QuantityType,
    t: Timestamp,
) -> bool {
    let quantity_ok = r.quantity.is_none_or(|q| q == quantity);
    let not_after_issue = r.timestamp.wrapping_sub(t) <= i32::MAX as u32;
    device == issuer && quantity_ok && r.covers(t) && not_after_issue
}

/// What a receiver does about a verified DEATH_CERTIFICATE (ES-10.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DeathPlan {
    /// The device that died.
    pub device: DeviceId,
    /// Hash of its invalidated key, to refuse anything signed with it later.
    pub old_pubkey_hash: Hash32,
    /// Why it died.
    pub reason: DeathReason,
    /// The certificate's timestamp: "valid since", not "time of death"
    /// (SPEC-NOTES 32); no freshness window applies.
    pub valid_since: Timestamp,
    /// Remove it from the neighbour table.
    pub remove_neighbor: bool,
    /// Mark all its traces untrusted (DAG and pheromone field).
    pub invalidate_traces: bool,
    /// Drop its behavioural profile.
    pub drop_profile: bool,
}

/// Why a DEATH_CERTIFICATE was not acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum DeathError {
    /// The bytes are not a well-formed frame.
    Malformed(WireError),
    /// The frame is some other message.
    NotADeathCertificate,
    /// The key on file is not the sender's (its hash prefix is another
    /// device id): the caller looked up the wrong key.
    KeyNotSenders,
    /// The certificate names another key than the one on file: a device
    /// may only kill the key it holds.
    WrongOldKey,
    /// Not signed by the old key: anyone else could otherwise kill it.
    BadSignature,
}

/// Checks a DEATH_CERTIFICATE frame against `old_key`, the key on file for
/// its header's `sender_id`, and returns what to do. There is no time check:
/// a certificate stays valid once made (SPEC-NOTES 32), and replaying it
/// only repeats a death that already holds.
pub fn plan_death<C: Crypto + ?Sized>(crypto: &C, frame: &[u8], old_key: &PublicKey) -> Result<DeathPlan, DeathError> {
    let repr = FrameRepr::parse(frame).map_err(DeathError::Malformed)?;
    let cert: DeathCertificate = match repr.body {
        Body::DeathCertificate(c) => c,
        _ => return Err(DeathError::NotADeathCertificate),
    };
    if device_id_of(old_key) != repr.sender_id {
        return Err(DeathError::KeyNotSenders);
    }
    if pubkey_hash(old_key) != cert.old_pubkey_hash {
        return Err(DeathError::WrongOldKey);
    }
    verify_frame(crypto, old_key, frame, repr.signed_len()).map_err(|_| DeathError::BadSignature)?;
    Ok(DeathPlan {
        device: repr.sender_id,
        old_pubkey_hash: cert.old_pubkey_hash,
        reason: cert.reason,
        valid_since: cert.timestamp,
        remove_neighbor: true,
        invalidate_traces: true,
        drop_profile: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::{Identity, Seed};
    use crate::crypto::sign::{presign_death_certificate, RealCrypto};
    use crate::wire::metabolic::RetractionReason;
    use proptest::prelude::*;

    #[test]
    fn one_half_life_halves() {
        for c in [StateClass::Ephemeral, StateClass::Operational, StateClass::Structural] {
            let t = c.half_life_s();
            assert_eq!(decay_factor(c, t), 0.5);
            assert_eq!(decay_factor(c, 2 * t), 0.25);
            assert_eq!(decay_factor(c, 0), 1.0);
        }
        assert_eq!(decay_factor(StateClass::Archival, u32::MAX), 1.0);
    }

    #[test]
    fn ages_are_wrap_aware_and_never_negative() {
        assert_eq!(age_s(u32::MAX - 99, 500), 600);
        assert_eq!(decay_between(StateClass::Ephemeral, u32::MAX - 99, 500), 0.5);
        assert_eq!(age_s(1000, 990), 0);
        assert_eq!(decay_between(StateClass::Ephemeral, 1000, 990), 1.0);
    }

    #[test]
    fn clock_lifetimes() {
        let gc = MetabolicClock { class: StateClass::Ephemeral, threshold: DAG_GC_THRESHOLD };
        assert_eq!(gc.lifetime_s(), Some(3001), "exactly 1/32 at 3000 s is not below it");
        assert!(!gc.is_decayed(0, 3000));
        assert!(gc.is_decayed(0, 3001));
        assert_eq!(gc.decays_at(u32::MAX), Some(3000));
        let half = MetabolicClock { class: StateClass::Operational, threshold: 0.5 };
        assert_eq!(half.lifetime_s(), Some(86_401));
        assert_eq!(MetabolicClock { class: StateClass::Archival, threshold: 0.9 }.lifetime_s(), None);
        assert_eq!(MetabolicClock { class: StateClass::Ephemeral, threshold: 0.0 }.lifetime_s(), None);
        assert_eq!(MetabolicClock { class: StateClass::Ephemeral, threshold: f32::NAN }.lifetime_s(), None);
        assert_eq!(MetabolicClock { class: StateClass::Ephemeral, threshold: 1.5 }.lifetime_s(), Some(0));
        let long = MetabolicClock { class: StateClass::Structural, threshold: 1e-30 }.lifetime_s().unwrap();
        assert!(long > 770_000_000 && long < i32::MAX as u32);
    }

    #[test]
    fn every_class_dies_after_five_half_lives() {
        for c in [StateClass::Ephemeral, StateClass::Operational, StateClass::Structural] {
            assert_eq!(MetabolicClock::dead(c).lifetime_s(), Some(5 * c.half_life_s() + 1), "{c:?}");
        }
        assert_eq!(MetabolicClock::dead(StateClass::Archival).lifetime_s(), None);
    }

    #[test]
    fn retraction_predicate() {
        let me = DeviceId([1; 8]);
        let r = DataRetraction {
            reason: RetractionReason::SensorFault,
            quantity: Some(QuantityType::Temperature),
            from_timestamp: 1000,
            to_timestamp: 2000,
            timestamp: 1500,
        };
        assert!(retraction_covers(me, &r, me, QuantityType::Temperature, 1000));
        assert!(retraction_covers(me, &r, me, QuantityType::Temperature, 1500));
        assert!(!retraction_covers(me, &r, me, QuantityType::Temperature, 1501), "after issue");
        assert!(!retraction_covers(me, &r, me, QuantityType::Humidity, 1200));
        assert!(!retraction_covers(me, &r, DeviceId([2; 8]), QuantityType::Temperature, 1200));
        let all = DataRetraction { quantity: None, from_timestamp: u32::MAX - 5, to_timestamp: 10, timestamp: 20, ..r };
        assert!(retraction_covers(me, &all, me, QuantityType::Humidity, u32::MAX));
        assert!(retraction_covers(me, &all, me, QuantityType::Humidity, 3));
        assert!(!retraction_covers(me, &all, me, QuantityType::Humidity, 11));
    }

    #[test]
    fn presigned_death_certificate_plans_all_three_effects() {
        let id = Identity::from_seed(&Seed([4; 32]));
        let c = RealCrypto::new(&id);
        let f = presign_death_certificate(&c, DeathReason::PufAnomaly, 1_707_800_000);
        let p = plan_death(&c, &f, &id.public_key()).unwrap();
        assert_eq!(p.device, id.device_id());
        assert_eq!(p.valid_since, 1_707_800_000);
        assert_eq!(p.reason, DeathReason::PufAnomaly);
        assert!(p.remove_neighbor && p.invalidate_traces && p.drop_profile);

        let other = Identity::from_seed(&Seed([5; 32]));
        assert_eq!(plan_death(&c, &f, &other.public_key()), Err(DeathError::KeyNotSenders));
        let mut forged = f;
        forged[20] ^= 1;
        assert_eq!(plan_death(&c, &forged, &id.public_key()), Err(DeathError::WrongOldKey));
        let mut bad_sig = f;
        bad_sig[112] ^= 1;
        assert_eq!(plan_death(&c, &bad_sig, &id.public_key()), Err(DeathError::BadSignature));
        // Signed by someone else over a certificate naming this key.
        let oc = RealCrypto::new(&other);
        let mut by_other = f;
        let sig = oc.sign(&by_other[..49]);
        by_other[49..].copy_from_slice(&sig.0);
        assert_eq!(plan_death(&c, &by_other, &id.public_key()), Err(DeathError::BadSignature));
        assert!(matches!(plan_death(&c, &f[..50], &id.public_key()), Err(DeathError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn decay_in_unit_interval_and_monotone(a in any::<u32>(), c in 0usize..4) {
            let class = [StateClass::Ephemeral, StateClass::Operational, StateClass::Structural, StateClass::Archival][c];
            let d = decay_factor(class, a);
            prop_assert!((0.0..=1.0).contains(&d));
            prop_assert!(decay_factor(class, a.saturating_add(1)) <= d);
        }

        #[test]
        fn lifetime_is_the_first_decayed_second(thr in 0.0001f32..1.0, c in 0usize..3) {
            let class = [StateClass::Ephemeral, StateClass::Operational, StateClass::Structural][c];
            let clock = MetabolicClock { class, threshold: thr };
            if let Some(l) = clock.lifetime_s() {
                prop_assert!(clock.is_decayed(0, l));
                prop_assert!(l == 0 || !clock.is_decayed(0, l - 1));
            }
        }
    }
}
