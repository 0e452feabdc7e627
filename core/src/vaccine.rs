//! Vaccines (ES-2.8, ES-10.3): building one from a confirmed attack, the
//! relay rules, and the bounded table of active signatures that makes a
//! node more sensitive to a known attack.
//!
//! Resolves the behaviour part of SPEC-NOTES 31 (the wire part, the v2
//! frame with its unsigned relay tail, is `wire::immune`):
//!
//! - A [`SeenSet`] keyed by (origin, `origin_timestamp`, `origin_cluster`)
//!   drops every copy after the first, so a vaccine crosses each node once.
//! - Relays may only raise hops and lower strength ([`check_relay`]); a
//!   receiver also never believes a strength above `initial × e^{−hops/d₀}`
//!   ([`effective_strength`]), so a relay that skips the decay gains nothing.
//! - d₀, undefined in the spec, is [`D0_HOPS`] = 4 hops.
//! - `apply_vaccine`, undefined in the spec, is [`VaccineTable::apply`] plus
//!   [`VaccineTable::deviation_multiplier`]: a matching observation's
//!   deviation is scaled up by at most ×2, which halves the thresholds.
//!
//! The origin's signature over the frame's signed range is checked by the
//! caller (`crypto::verify_frame`) before anything here runs.

use crate::types::{DeviceId, QuantityType, Timestamp};
use crate::wire::enroll::Bytes;
use crate::wire::immune::{AttackSignature, AttackType, Vaccine, VaccineV2, VaccineV2Frame};

/// Hop limit of a vaccine (ES-2.8 "TTL = 10 − hops", ES-12.2 "TTL=10").
pub const MAX_HOPS: u8 = 10;

/// Decay length d₀ of `strength = initial × e^{−hops/d₀}`, in hops.
///
/// With 4 hops a vaccine is at half strength after ≈ 2.8 hops (one BLE
/// cluster and its neighbours) and still at 8 % at the hop limit, so the
/// last ring of nodes is primed, not armed: a single forged or mistaken
/// vaccine mostly affects the origin's own neighbourhood.
pub const D0_HOPS: f32 = 4.0;

/// How much a full-strength vaccine scales a matching deviation up: the
/// multiplier is `1 + VACCINE_GAIN × strength/255`, so at most ×2, which
/// halves every threshold (INFLAMMATION at 1σ instead of 2σ). The cap
/// bounds what a forged vaccine can do: honest nodes never reject below
/// 1.5σ because of one.
pub const VACCINE_GAIN: f32 = 1.0;

/// An observation matches a vaccine when its offset lies within this many
/// of the vaccine's standard deviations of the vaccine's mean deviation.
pub const MATCH_STD_MULTIPLE: i32 = 3;

/// How long an applied vaccine stays active by default, in seconds: one
/// OPERATIONAL half-life (ES-1.2), i.e. immune memory of about a day.
pub const VACCINE_LIFETIME_S: u32 = crate::types::T_HALF_OPERATIONAL;

/// Default number of active vaccines a node keeps.
pub const DEFAULT_VACCINE_SLOTS: usize = 16;

/// Default number of vaccine identities a node remembers having seen.
pub const DEFAULT_SEEN_SLOTS: usize = 64;

/// The strength a vaccine has after `hops` relays, by the ES-2.8 decay with
/// d₀ = [`D0_HOPS`], rounded to the nearest step. Never increases with
/// `hops` and never exceeds `initial`.
pub fn decayed_strength(initial: u8, hops: u8) -> u8 {
    let s = initial as f32 * libm::expf(-(hops as f32) / D0_HOPS);
    libm::roundf(s).clamp(0.0, initial as f32) as u8
}

/// Remaining relays: `min(max_hops, 10) − hops`, 0 once exhausted.
pub fn ttl(hops: u8, max_hops: u8) -> u8 {
    max_hops.min(MAX_HOPS).saturating_sub(hops)
}

/// What a node believes a vaccine's strength to be: the smaller of the
/// tail's claim and the decay of the signed initial strength.
pub fn effective_strength(v: &Vaccine) -> u8 {
    let initial = v.v2.map(|x| x.initial_strength).unwrap_or(v.vaccine_strength);
    v.vaccine_strength.min(decayed_strength(initial, v.hops_from_origin))
}

/// An attack the local immune system has confirmed (e.g. by an
/// inflammation vote), with the features a vaccine carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConfirmedAttack {
    /// When the attack was first detected.
    pub detected_at: Timestamp,
    /// The origin's cluster identifier.
    pub cluster: Bytes<8>,
    /// Attack class.
    pub attack_type: AttackType,
    /// Quantity the attack affects.
    pub quantity: QuantityType,
    /// Mean deviation (reading − expected), reading units.
    pub deviation_mean: i16,
    /// Standard deviation of that deviation, reading units.
    pub deviation_std: u16,
    /// Temporal pattern descriptor, carried opaquely.
    pub temporal_pattern: u32,
    /// Bitfield of affected profile dimensions; 0 = any dimension.
    pub affected_dims: u16,
}

/// The version-2 VACCINE body for `attack`, as the origin sends it: hops 0,
/// strength = `initial_strength`, hop limit [`MAX_HOPS`].
pub fn build_vaccine(attack: &ConfirmedAttack, initial_strength: u8) -> Vaccine {
    Vaccine {
        origin_timestamp: attack.detected_at,
        origin_cluster: attack.cluster,
        attack_type: attack.attack_type,
        hops_from_origin: 0,
        attack_signature: AttackSignature {
            quantity: attack.quantity,
            deviation_mean: attack.deviation_mean,
            deviation_std: attack.deviation_std,
            temporal_pattern: attack.temporal_pattern,
            affected_dims: attack.affected_dims,
            reserved: Bytes([0; 9]),
        },
        vaccine_strength: initial_strength,
        v2: Some(VaccineV2 { initial_strength, max_hops: MAX_HOPS }),
    }
}

/// Why a vaccine copy was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum VaccineError {
    /// A version-1 vaccine: its hops and strength are signed, so no relay
    /// can change them without breaking the origin's signature.
    NotVersion2,
    /// The relayed copy has fewer hops than the copy it came from: someone
    /// is trying to extend its reach.
    HopsLowered {
        /// Hops of the earlier copy.
        from: u8,
        /// Hops of the relayed copy.
        to: u8,
    },
    /// The relayed copy did not count its own hop.
    HopsNotIncreased,
    /// The relayed copy is stronger than the copy it came from.
    StrengthRaised {
        /// Strength of the earlier copy.
        from: u8,
        /// Strength of the relayed copy.
        to: u8,
    },
    /// The strength exceeds the origin's signed initial strength.
    AboveInitial,
    /// The relayed copy differs in a signed field: it is another vaccine.
    SignedPartChanged,
    /// The copy's hop limit is exhausted (TTL 0); it is neither applied nor
    /// relayed.
    TtlExpired,
}

fn bounds(v: &Vaccine) -> Result<VaccineV2, VaccineError> {
    v.v2.ok_or(VaccineError::NotVersion2)
}

/// Checks that `next` is a legal relay of `prev`: same signed part, hops
/// strictly up, strength never up, never above the signed initial.
pub fn check_relay(prev: &Vaccine, next: &Vaccine) -> Result<(), VaccineError> {
    let b = bounds(prev)?;
    let signed = |v: &Vaccine| (v.origin_timestamp, v.origin_cluster, v.attack_type, v.attack_signature, v.v2);
    if signed(prev) != signed(next) {
        return Err(VaccineError::SignedPartChanged);
    }
    if next.hops_from_origin < prev.hops_from_origin {
        return Err(VaccineError::HopsLowered { from: prev.hops_from_origin, to: next.hops_from_origin });
    }
    if next.hops_from_origin == prev.hops_from_origin {
        return Err(VaccineError::HopsNotIncreased);
    }
    if next.vaccine_strength > prev.vaccine_strength {
        return Err(VaccineError::StrengthRaised { from: prev.vaccine_strength, to: next.vaccine_strength });
    }
    if next.vaccine_strength > b.initial_strength {
        return Err(VaccineError::AboveInitial);
    }
    Ok(())
}

/// The copy this node forwards: one more hop, strength the decayed value
/// (never more than what it received). `None` when the forwarded copy
/// would arrive with TTL 0, since its receivers would drop it anyway.
pub fn relay_copy(frame: &VaccineV2Frame) -> Result<Option<VaccineV2Frame>, VaccineError> {
    let b = bounds(&frame.body)?;
    let hops = frame.body.hops_from_origin.saturating_add(1);
    if ttl(hops, b.max_hops) == 0 {
        return Ok(None);
    }
    let strength = effective_strength(&frame.body).min(decayed_strength(b.initial_strength, hops));
    let next = frame
        .relayed(hops, strength)
        .map_err(|_| VaccineError::StrengthRaised { from: frame.body.vaccine_strength, to: strength })?;
    check_relay(&frame.body, &next.body)?;
    Ok(Some(next))
}

/// Identity of one vaccine across all its relayed copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct VaccineKey {
    /// The origin (header `sender_id`, the signer).
    pub origin: DeviceId,
    /// The origin's detection time.
    pub origin_timestamp: Timestamp,
    /// The origin's cluster.
    pub origin_cluster: Bytes<8>,
}

impl VaccineKey {
    /// The key of a frame.
    pub fn of(frame: &VaccineV2Frame) -> Self {
        VaccineKey {
            origin: frame.sender_id,
            origin_timestamp: frame.body.origin_timestamp,
            origin_cluster: frame.body.origin_cluster,
        }
    }
}

/// The vaccines this node has already handled, first-in first-out: when
/// full the oldest key is forgotten. A forgotten vaccine that comes back is
/// handled again, but its hops keep rising, so it still dies out.
#[derive(Clone, Debug)]
pub struct SeenSet<const S: usize = DEFAULT_SEEN_SLOTS> {
    keys: heapless::Deque<VaccineKey, S>,
}

impl<const S: usize> Default for SeenSet<S> {
    fn default() -> Self {
        SeenSet { keys: heapless::Deque::new() }
    }
}

impl<const S: usize> SeenSet<S> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if `key` was handled before.
    pub fn contains(&self, key: &VaccineKey) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// Records `key`; returns false (and changes nothing) if it was there.
    pub fn insert(&mut self, key: VaccineKey) -> bool {
        if S == 0 {
            return true;
        }
        if self.contains(&key) {
            return false;
        }
        if self.keys.is_full() {
            self.keys.pop_front();
        }
        // Cannot fail: a slot was freed above.
        let _ = self.keys.push_back(key);
        true
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One active vaccine in the local immune state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ActiveVaccine {
    /// Which vaccine.
    pub key: VaccineKey,
    /// Attack class.
    pub attack_type: AttackType,
    /// The attack's features.
    pub signature: AttackSignature,
    /// Effective strength on arrival.
    pub strength: u8,
    /// When it was applied (receiver's clock).
    pub applied_at: Timestamp,
    /// Seconds it stays active.
    pub lifetime_s: u32,
}

impl ActiveVaccine {
    /// True while `now` is less than `lifetime_s` after `applied_at`
    /// (wrap-aware; a `now` before `applied_at` counts as age 0).
    pub fn is_active(&self, now: Timestamp) -> bool {
        crate::metabolic::age_s(self.applied_at, now) < self.lifetime_s
    }
}

/// What an observation looked like, for matching against vaccines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Observation {
    /// Quantity of the reading.
    pub quantity: QuantityType,
    /// Reading minus what the profile expected, reading units.
    pub offset: i32,
    /// Profile dimensions in which the deviation shows.
    pub dims: u16,
}

impl ActiveVaccine {
    /// Same quantity, a shared dimension (or the vaccine names none), and
    /// an offset within [`MATCH_STD_MULTIPLE`] σ of the attack's mean.
    pub fn matches(&self, o: &Observation) -> bool {
        let s = &self.signature;
        let dims_ok = s.affected_dims == 0 || s.affected_dims & o.dims != 0;
        let spread = MATCH_STD_MULTIPLE.saturating_mul((s.deviation_std as i32).max(1));
        let off = (o.offset as i64 - s.deviation_mean as i64).abs();
        s.quantity == o.quantity && dims_ok && off <= spread as i64
    }
}

/// What happened to an applied vaccine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ApplyOutcome {
    /// Stored in a free (or expired) slot.
    Stored,
    /// Stored in place of the weakest active vaccine.
    Replaced(VaccineKey),
    /// Every slot holds a stronger vaccine; not stored.
    Weaker,
}

/// The bounded set of active vaccines (ES-10.3 `apply_vaccine`).
#[derive(Clone, Debug)]
pub struct VaccineTable<const N: usize = DEFAULT_VACCINE_SLOTS> {
    slots: heapless::Vec<ActiveVaccine, N>,
}

impl<const N: usize> Default for VaccineTable<N> {
    fn default() -> Self {
        VaccineTable { slots: heapless::Vec::new() }
    }
}

impl<const N: usize> VaccineTable<N> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a vaccine; when full, expired entries go first, then the
    /// weakest (oldest among equals) if the newcomer is at least as strong.
    pub fn apply(&mut self, v: ActiveVaccine, now: Timestamp) -> ApplyOutcome {
        if let Some(e) = self.slots.iter_mut().find(|e| e.key == v.key) {
            e.strength = e.strength.max(v.strength);
            e.applied_at = v.applied_at;
            e.lifetime_s = v.lifetime_s;
            return ApplyOutcome::Stored;
        }
        self.slots.retain(|e| e.is_active(now));
        if self.slots.push(v).is_ok() {
            return ApplyOutcome::Stored;
        }
        let weakest = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| (e.strength, core::cmp::Reverse(crate::metabolic::age_s(e.applied_at, now))))
            .map(|(i, e)| (i, *e));
        match weakest {
            Some((i, w)) if w.strength <= v.strength => {
                if let Some(slot) = self.slots.get_mut(i) {
                    *slot = v;
                }
                ApplyOutcome::Replaced(w.key)
            }
            _ => ApplyOutcome::Weaker,
        }
    }

    /// Active vaccines at `now`.
    pub fn active(&self, now: Timestamp) -> impl Iterator<Item = &ActiveVaccine> {
        self.slots.iter().filter(move |e| e.is_active(now))
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now: Timestamp) {
        self.slots.retain(|e| e.is_active(now));
    }

    /// Number of entries held (active or not yet expired by [`Self::expire`]).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// `1 + VACCINE_GAIN × s/255` for the strongest active vaccine that
    /// matches `o`, 1.0 if none does; always in [1, 2].
    pub fn deviation_multiplier(&self, o: &Observation, now: Timestamp) -> f32 {
        let s = self.active(now).filter(|e| e.matches(o)).map(|e| e.strength).max().unwrap_or(0);
        1.0 + VACCINE_GAIN * s as f32 / 255.0
    }

    /// The deviation (in σ) the immune state machine should act on: the
    /// measured one scaled by [`Self::deviation_multiplier`]. Non-finite or
    /// negative input is passed through unchanged.
    pub fn scaled_deviation(&self, o: &Observation, deviation_sigma: f32, now: Timestamp) -> f32 {
        if !deviation_sigma.is_finite() || deviation_sigma < 0.0 {
            return deviation_sigma;
        }
        deviation_sigma * self.deviation_multiplier(o, now)
    }
}

/// What to do with a received vaccine copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaccineAction {
    /// Already handled this vaccine: drop the copy (no storm).
    DuplicateDropped,
    /// Applied locally; forward `relay` if `Some`.
    Applied {
        /// Outcome of storing it.
        stored: ApplyOutcome,
        /// The copy to broadcast, if its TTL allows another hop.
        relay: Option<VaccineV2Frame>,
    },
}

/// ES-10.3 VACCINE dispatch for a copy whose signature already verified:
/// version and TTL checks, the seen-set, apply with `lifetime_s`, relay.
/// A copy refused with an error is not recorded as seen, so a later legal
/// copy of the same vaccine still gets through.
pub fn on_vaccine<const N: usize, const S: usize>(
    table: &mut VaccineTable<N>,
    seen: &mut SeenSet<S>,
    frame: &VaccineV2Frame,
    now: Timestamp,
    lifetime_s: u32,
) -> Result<VaccineAction, VaccineError> {
    let b = bounds(&frame.body)?;
    if frame.body.vaccine_strength > b.initial_strength {
        return Err(VaccineError::AboveInitial);
    }
    if ttl(frame.body.hops_from_origin, b.max_hops) == 0 {
        return Err(VaccineError::TtlExpired);
    }
    let key = VaccineKey::of(frame);
    if !seen.insert(key) {
        return Ok(VaccineAction::DuplicateDropped);
    }
    let stored = table.apply(
        ActiveVaccine {
            key,
            attack_type: frame.body.attack_type,
            signature: frame.body.attack_signature,
            strength: effective_strength(&frame.body),
            applied_at: now,
            lifetime_s,
        },
        now,
    );
    Ok(VaccineAction::Applied { stored, relay: relay_copy(frame)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Signature;
    use proptest::prelude::*;

    const ORIGIN: DeviceId = DeviceId([1, 2, 3, 4, 5, 6, 7, 8]);

    fn attack() -> ConfirmedAttack {
        ConfirmedAttack {
            detected_at: 1_707_800_000,
            cluster: Bytes([9; 8]),
            attack_type: AttackType::ValueSpike,
            quantity: QuantityType::Temperature,
            deviation_mean: 5000,
            deviation_std: 400,
            temporal_pattern: 0,
            affected_dims: 0b1,
        }
    }

    fn frame(initial: u8, hops: u8, strength: u8) -> VaccineV2Frame {
        let mut body = build_vaccine(&attack(), initial);
        body.hops_from_origin = hops;
        body.vaccine_strength = strength;
        VaccineV2Frame { sender_id: ORIGIN, body, signature: Signature([0; 64]) }
    }

    #[test]
    fn strength_decays_with_d0_of_four_hops() {
        let want = [255u8, 199, 155, 120, 94, 73, 57, 44, 35, 27, 21];
        for (h, w) in want.iter().enumerate() {
            let exact = 255.0 * (-(h as f64) / 4.0).exp();
            assert_eq!(decayed_strength(255, h as u8), *w, "hop {h}");
            assert!((*w as f64 - exact).abs() <= 0.5);
        }
        assert_eq!(decayed_strength(0, 3), 0);
        assert_eq!(decayed_strength(255, 255), 0);
    }

    #[test]
    fn ttl_is_ten_minus_hops_and_caps_max_hops() {
        assert_eq!(ttl(0, 10), 10);
        assert_eq!(ttl(9, 10), 1);
        assert_eq!(ttl(10, 10), 0);
        assert_eq!(ttl(200, 10), 0);
        assert_eq!(ttl(0, 255), 10);
    }

    #[test]
    fn built_vaccine_round_trips_through_the_v2_frame() {
        let f = frame(200, 0, 200);
        let mut buf = [0u8; 113];
        assert_eq!(f.emit(&mut buf), Ok(113));
        assert_eq!(VaccineV2Frame::parse(&buf), Ok(f));
        assert_eq!(f.body.attack_signature.deviation_mean, 5000);
        assert_eq!(f.body.v2, Some(VaccineV2 { initial_strength: 200, max_hops: 10 }));
    }

    #[test]
    fn relays_add_a_hop_and_decay() {
        let f = frame(255, 0, 255);
        let r1 = relay_copy(&f).unwrap().unwrap();
        assert_eq!((r1.body.hops_from_origin, r1.body.vaccine_strength), (1, 199));
        let f9 = frame(255, 9, 27);
        assert_eq!(relay_copy(&f9), Ok(None), "a copy at hop 10 would be dead on arrival");
        // A relay that kept full strength does not help: receivers decay it.
        let cheat = frame(255, 3, 255);
        assert_eq!(effective_strength(&cheat.body), 120);
        assert_eq!(relay_copy(&cheat).unwrap().unwrap().body.vaccine_strength, 94);
    }

    #[test]
    fn check_relay_refuses_raising_strength_or_lowering_hops() {
        let a = frame(255, 3, 120).body;
        let mut up = a;
        up.hops_from_origin = 4;
        up.vaccine_strength = 130;
        assert_eq!(check_relay(&a, &up), Err(VaccineError::StrengthRaised { from: 120, to: 130 }));
        let mut back = a;
        back.hops_from_origin = 1;
        back.vaccine_strength = 100;
        assert_eq!(check_relay(&a, &back), Err(VaccineError::HopsLowered { from: 3, to: 1 }));
        let mut same = a;
        same.vaccine_strength = 100;
        assert_eq!(check_relay(&a, &same), Err(VaccineError::HopsNotIncreased));
        let mut other = a;
        other.hops_from_origin = 4;
        other.attack_signature.deviation_mean = 1;
        assert_eq!(check_relay(&a, &other), Err(VaccineError::SignedPartChanged));
        let mut ok = a;
        ok.hops_from_origin = 4;
        ok.vaccine_strength = 94;
        assert_eq!(check_relay(&a, &ok), Ok(()));
        let mut v1 = a;
        v1.v2 = None;
        assert_eq!(check_relay(&v1, &ok), Err(VaccineError::NotVersion2));
    }

    #[test]
    fn seen_copies_are_dropped_and_ttl_zero_refused() {
        let mut t: VaccineTable = VaccineTable::new();
        let mut s: SeenSet = SeenSet::new();
        let now = 1_707_800_100;
        let a = on_vaccine(&mut t, &mut s, &frame(255, 2, 155), now, VACCINE_LIFETIME_S).unwrap();
        assert!(matches!(a, VaccineAction::Applied { stored: ApplyOutcome::Stored, relay: Some(_) }));
        let b = on_vaccine(&mut t, &mut s, &frame(255, 1, 199), now, VACCINE_LIFETIME_S).unwrap();
        assert_eq!(b, VaccineAction::DuplicateDropped);
        assert_eq!(on_vaccine(&mut t, &mut s, &frame(255, 10, 21), now, 60), Err(VaccineError::TtlExpired));
        assert_eq!(on_vaccine(&mut t, &mut s, &frame(100, 0, 101), now, 60), Err(VaccineError::AboveInitial));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn seen_set_forgets_oldest_when_full() {
        let mut s: SeenSet<2> = SeenSet::new();
        let k = |t| VaccineKey { origin: ORIGIN, origin_timestamp: t, origin_cluster: Bytes([0; 8]) };
        assert!(s.insert(k(1)));
        assert!(s.insert(k(2)));
        assert!(!s.insert(k(1)));
        assert!(s.insert(k(3)));
        assert!(!s.contains(&k(1)));
        assert!(s.contains(&k(2)) && s.contains(&k(3)));
    }

    fn active(ts: Timestamp, strength: u8, applied_at: Timestamp) -> ActiveVaccine {
        let f = frame(255, 0, 255);
        ActiveVaccine {
            key: VaccineKey { origin: ORIGIN, origin_timestamp: ts, origin_cluster: Bytes([0; 8]) },
            attack_type: AttackType::ValueSpike,
            signature: f.body.attack_signature,
            strength,
            applied_at,
            lifetime_s: 100,
        }
    }

    #[test]
    fn applied_vaccine_scales_matching_deviations_until_it_expires() {
        let mut t: VaccineTable<4> = VaccineTable::new();
        t.apply(active(1, 255, 1000), 1000);
        let hit = Observation { quantity: QuantityType::Temperature, offset: 4800, dims: 1 };
        assert_eq!(t.deviation_multiplier(&hit, 1050), 2.0);
        assert_eq!(t.scaled_deviation(&hit, 1.2, 1050), 2.4);
        let far = Observation { offset: 6300, ..hit };
        assert_eq!(t.deviation_multiplier(&far, 1050), 1.0);
        let other_q = Observation { quantity: QuantityType::Humidity, ..hit };
        assert_eq!(t.deviation_multiplier(&other_q, 1050), 1.0);
        let other_dim = Observation { dims: 2, ..hit };
        assert_eq!(t.deviation_multiplier(&other_dim, 1050), 1.0);
        assert_eq!(t.deviation_multiplier(&hit, 1100), 1.0, "expired after 100 s");
        assert!(t.scaled_deviation(&hit, f32::NAN, 1050).is_nan());
    }

    #[test]
    fn full_table_replaces_the_weakest_or_refuses() {
        let mut t: VaccineTable<2> = VaccineTable::new();
        assert_eq!(t.apply(active(1, 50, 1000), 1000), ApplyOutcome::Stored);
        assert_eq!(t.apply(active(2, 80, 1000), 1000), ApplyOutcome::Stored);
        assert_eq!(t.apply(active(3, 40, 1000), 1000), ApplyOutcome::Weaker);
        assert_eq!(t.apply(active(4, 60, 1000), 1000), ApplyOutcome::Replaced(active(1, 0, 0).key));
        // Expired entries make room first.
        assert_eq!(t.apply(active(5, 1, 1200), 1200), ApplyOutcome::Stored);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn expiry_is_wrap_aware() {
        let v = active(1, 10, u32::MAX - 10);
        assert!(v.is_active(u32::MAX));
        assert!(v.is_active(50));
        assert!(!v.is_active(90));
    }

    proptest! {
        #[test]
        fn strength_never_increases_along_a_relay_chain(initial in any::<u8>(), tail in any::<u8>(), hops in 0u8..10) {
            let mut f = frame(initial, hops, tail.min(initial));
            let mut last = effective_strength(&f.body);
            while let Some(next) = relay_copy(&f).unwrap() {
                prop_assert_eq!(check_relay(&f.body, &next.body), Ok(()));
                let s = effective_strength(&next.body);
                prop_assert!(s <= last);
                prop_assert!(next.body.hops_from_origin > f.body.hops_from_origin);
                last = s;
                f = next;
            }
            prop_assert!(f.body.hops_from_origin < MAX_HOPS);
        }

        #[test]
        fn decay_is_monotone_and_bounded(initial in any::<u8>(), h in any::<u8>()) {
            prop_assert!(decayed_strength(initial, h) <= initial);
            prop_assert!(decayed_strength(initial, h.saturating_add(1)) <= decayed_strength(initial, h));
        }

        #[test]
        fn multiplier_stays_in_one_to_two(s in any::<u8>(), off in any::<i32>(), dims in any::<u16>(), now in any::<u32>()) {
            let mut t: VaccineTable<2> = VaccineTable::new();
            t.apply(active(1, s, now), now);
            let m = t.deviation_multiplier(&Observation { quantity: QuantityType::Temperature, offset: off, dims }, now);
            prop_assert!((1.0..=2.0).contains(&m));
        }
    }
}
