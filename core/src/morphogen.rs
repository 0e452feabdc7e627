//! Morphogenetic signals (ES-4.6, interface level; runs on Nano+): a
//! reaction-diffusion pair per node whose difference decides whether to
//! expand or contract radio range, frequency and relaying.
//!
//! The update is the spec's Euler step with two gaps filled
//! (`docs/spec-deviations.md`): `bandwidth_saturation()` is an input
//! ([`LocalMetrics::bandwidth_saturation`]), and an empty neighbour slice
//! contributes no diffusion (Laplacian 0) instead of dividing by zero.
//! NaN in an input is read as 0 and a NaN result keeps the old value, so
//! the state stays in [0, 1] whatever arrives.

/// The half-precision float the state is stored in (re-exported so callers
/// need no `half` dependency of their own).
pub use half::f16;

/// Default activator diffusion rate (slow), per epoch. Ours: the spec
/// leaves the parameters to governance.
pub const DEFAULT_D_A: f32 = 0.05;
/// Default inhibitor diffusion rate (fast, > `d_a`), per epoch.
pub const DEFAULT_D_I: f32 = 0.2;
/// Default decision margin.
pub const DEFAULT_MARGIN: f32 = 0.1;

/// The ES-4.6 state, stored as f16 like the spec.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MorphogeneticState {
    /// A: local "more connectivity needed" signal, in [0, 1].
    pub activator: f16,
    /// I: local "capacity saturated" signal, in [0, 1].
    pub inhibitor: f16,
    /// Activator diffusion rate (slow).
    pub d_a: f16,
    /// Inhibitor diffusion rate (fast, `d_i > d_a`).
    pub d_i: f16,
    /// Decision margin.
    pub margin: f16,
}

/// Why parameters were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MorphogenError {
    /// A parameter is NaN, infinite or negative.
    NotFiniteNonNegative,
    /// `d_i ≤ d_a`: without a faster inhibitor there is no Turing pattern,
    /// every node just follows its neighbours.
    InhibitorNotFaster,
}

impl Default for MorphogeneticState {
    fn default() -> Self {
        MorphogeneticState {
            activator: f16::ZERO,
            inhibitor: f16::ZERO,
            d_a: f16::from_f32(DEFAULT_D_A),
            d_i: f16::from_f32(DEFAULT_D_I),
            margin: f16::from_f32(DEFAULT_MARGIN),
        }
    }
}

impl MorphogeneticState {
    /// A zero state with checked parameters.
    pub fn new(d_a: f32, d_i: f32, margin: f32) -> Result<Self, MorphogenError> {
        if [d_a, d_i, margin].iter().any(|x| !x.is_finite() || *x < 0.0) {
            return Err(MorphogenError::NotFiniteNonNegative);
        }
        let (d_a, d_i) = (f16::from_f32(d_a), f16::from_f32(d_i));
        if d_i <= d_a {
            return Err(MorphogenError::InhibitorNotFaster);
        }
        Ok(MorphogeneticState { activator: f16::ZERO, inhibitor: f16::ZERO, d_a, d_i, margin: f16::from_f32(margin) })
    }
}

/// The local measurements that drive the reaction terms.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LocalMetrics {
    /// Fraction of packets dropped, 0–1.
    pub packet_drop_rate: f16,
    /// Current latency ÷ latency threshold.
    pub latency_ratio: f16,
    /// Energy left, 0–1.
    pub energy_reserve: f16,
    /// Fraction of the send budget used in the last window, 0–1 (e.g.
    /// tokens spent ÷ tokens available in the ES-15.1 limiter, or LoRa
    /// airtime ÷ the duty-cycle allowance). The spec calls an undefined
    /// `bandwidth_saturation()`; the caller measures it.
    pub bandwidth_saturation: f16,
}

/// ES-4.6 topology decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum TopologyAction {
    /// Increase range, frequency or relaying.
    Expand,
    /// Decrease them.
    Contract,
    /// Keep them.
    Hold,
}

fn num(x: f16) -> f32 {
    let v = x.to_f32();
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

/// Mean of the neighbours minus own value; 0 with no neighbours.
fn laplacian(neighbours: &[f16], own: f32) -> f32 {
    if neighbours.is_empty() {
        return 0.0;
    }
    neighbours.iter().map(|x| num(*x)).sum::<f32>() / neighbours.len() as f32 - own
}

fn step(old: f16, new: f32) -> f16 {
    if new.is_nan() {
        old
    } else {
        f16::from_f32(new.clamp(0.0, 1.0))
    }
}

/// One Euler step of ES-4.6 `update_morphogenetic`, `dt` in epochs.
pub fn update_morphogenetic(
    state: &mut MorphogeneticState,
    m: &LocalMetrics,
    neighbor_a: &[f16],
    neighbor_i: &[f16],
    dt: f32,
) {
    let dt = if dt.is_finite() && dt > 0.0 { dt } else { 0.0 };
    let f_a = num(m.packet_drop_rate) + (num(m.latency_ratio) - 1.0).max(0.0);
    let f_i = (1.0 - num(m.energy_reserve)) + num(m.bandwidth_saturation).clamp(0.0, 1.0);
    let a = num(state.activator);
    let i = num(state.inhibitor);
    let new_a = a + dt * (num(state.d_a) * laplacian(neighbor_a, a) + f_a);
    let new_i = i + dt * (num(state.d_i) * laplacian(neighbor_i, i) + f_i);
    state.activator = step(state.activator, new_a);
    state.inhibitor = step(state.inhibitor, new_i);
}

/// ES-4.6 `morphogenetic_decision`: A − I beyond ±margin.
pub fn morphogenetic_decision(state: &MorphogeneticState) -> TopologyAction {
    let diff = num(state.activator) - num(state.inhibitor);
    let margin = num(state.margin);
    if diff > margin {
        TopologyAction::Expand
    } else if diff < -margin {
        TopologyAction::Contract
    } else {
        TopologyAction::Hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(x: f32) -> f16 {
        f16::from_f32(x)
    }

    fn metrics(drop: f32, lat: f32, energy: f32, bw: f32) -> LocalMetrics {
        LocalMetrics {
            packet_drop_rate: h(drop),
            latency_ratio: h(lat),
            energy_reserve: h(energy),
            bandwidth_saturation: h(bw),
        }
    }

    #[test]
    fn euler_step_by_hand() {
        let mut s = MorphogeneticState::new(0.1, 0.5, 0.1).unwrap();
        s.activator = h(0.2);
        s.inhibitor = h(0.3);
        // f_a = 0.1 + 0.5 = 0.6; f_i = 0.2 + 0.1 = 0.3.
        // lap_A = 0.4 − 0.2 = 0.2; lap_I = 0.1 − 0.3 = −0.2.
        update_morphogenetic(&mut s, &metrics(0.1, 1.5, 0.8, 0.1), &[h(0.3), h(0.5)], &[h(0.1)], 0.1);
        // A = 0.2 + 0.1·(0.1·0.2 + 0.6) = 0.262; I = 0.3 + 0.1·(0.5·(−0.2) + 0.3) = 0.32.
        assert!((s.activator.to_f32() - 0.262).abs() < 1e-3, "{}", s.activator);
        assert!((s.inhibitor.to_f32() - 0.32).abs() < 1e-3, "{}", s.inhibitor);
        assert_eq!(morphogenetic_decision(&s), TopologyAction::Hold);
    }

    #[test]
    fn empty_neighbours_mean_no_diffusion() {
        let mut s = MorphogeneticState { activator: h(0.5), ..Default::default() };
        update_morphogenetic(&mut s, &metrics(0.0, 1.0, 1.0, 0.0), &[], &[], 1.0);
        assert_eq!(s.activator, h(0.5));
        assert_eq!(s.inhibitor, f16::ZERO);
    }

    #[test]
    fn clamps_and_decides() {
        let mut s = MorphogeneticState::default();
        update_morphogenetic(&mut s, &metrics(1.0, 10.0, 1.0, 0.0), &[], &[], 5.0);
        assert_eq!(s.activator, f16::ONE);
        assert_eq!(morphogenetic_decision(&s), TopologyAction::Expand);
        let mut t = MorphogeneticState::default();
        update_morphogenetic(&mut t, &metrics(0.0, 0.5, 0.0, 1.0), &[], &[], 5.0);
        assert_eq!(t.inhibitor, f16::ONE);
        assert_eq!(morphogenetic_decision(&t), TopologyAction::Contract);
    }

    #[test]
    fn parameters_are_checked() {
        assert_eq!(MorphogeneticState::new(0.2, 0.1, 0.1), Err(MorphogenError::InhibitorNotFaster));
        assert_eq!(MorphogeneticState::new(f32::NAN, 0.1, 0.1), Err(MorphogenError::NotFiniteNonNegative));
        assert_eq!(MorphogeneticState::new(0.1, 0.2, -0.1), Err(MorphogenError::NotFiniteNonNegative));
    }

    proptest! {
        #[test]
        fn state_stays_in_unit_interval(
            bits in proptest::collection::vec(any::<u16>(), 8),
            na in proptest::collection::vec(any::<u16>(), 0..5),
            ni in proptest::collection::vec(any::<u16>(), 0..5),
            dt in any::<f32>(),
        ) {
            let f = |i: usize| f16::from_bits(bits[i]);
            let mut s = MorphogeneticState { activator: h(0.5), inhibitor: h(0.5), d_a: f(0), d_i: f(1), margin: f(2) };
            let m = LocalMetrics { packet_drop_rate: f(3), latency_ratio: f(4), energy_reserve: f(5), bandwidth_saturation: f(6) };
            let na: std::vec::Vec<f16> = na.into_iter().map(f16::from_bits).collect();
            let ni: std::vec::Vec<f16> = ni.into_iter().map(f16::from_bits).collect();
            update_morphogenetic(&mut s, &m, &na, &ni, dt);
            prop_assert!((0.0..=1.0).contains(&s.activator.to_f32()));
            prop_assert!((0.0..=1.0).contains(&s.inhibitor.to_f32()));
            let _ = morphogenetic_decision(&s);
        }
    }
}
