//! Randomness: one ChaCha8 stream per (master seed, purpose, node), so that
//! adding a draw for one purpose or one node never shifts another's.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng as _, SeedableRng};

/// What a stream is used for; part of the stream id, so the numbering is
/// fixed (never reorder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Purpose {
    /// Placement of `Random` node layouts.
    Placement = 1,
    /// A node's firmware (NK draws, query ids, nonces).
    Firmware = 2,
    /// A node's sensor noise.
    Sensor = 3,
    /// Per-packet fading and packet errors of a node's transmissions.
    Radio = 4,
    /// Per-link static shadowing.
    Shadowing = 5,
    /// A node's clock (offset, drift).
    Clock = 6,
    /// An attacker's choices.
    Attack = 7,
    /// A fault's choices.
    Fault = 8,
    /// A sensor's fixed bias.
    Bias = 9,
    /// Timer start jitter.
    Jitter = 10,
}

/// A deterministic random stream.
#[derive(Clone, Debug)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// The stream of `(seed, purpose, index)`.
    pub fn stream(seed: u64, purpose: Purpose, index: u32) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        r.set_stream((u64::from(purpose as u32) << 32) | u64::from(index));
        SimRng(r)
    }

    /// A uniform word.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller; one draw per call keeps the stream
    /// position independent of earlier calls' parity).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        box_muller(u1, u2)
    }

    /// [`SimRng::normal`] for a caller that only uses draws of at least
    /// `z_min`: the same two uniforms are taken and any value returned is
    /// the one `normal` gives, but a draw that is certainly below a
    /// positive `z_min` is `None`, found without the logarithm and cosine
    /// (a weak link's fading draws are mostly such).
    pub fn normal_reaching(&mut self, z_min: f64) -> Option<f64> {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        if z_min >= MIN_SHORTCUT_Z {
            // cos(2π·u2) < 0, so the draw is ≤ 0.
            if (0.25 + SHORTCUT_MARGIN..=0.75 - SHORTCUT_MARGIN).contains(&u2) {
                return None;
            }
            // u1 > e^(−x) with x = z_min²/2 means √(−2 ln u1) < z_min. The
            // bound uses e^x ≥ 1 + x + x²/2 + x³/6 (x ≥ 0), so no exp.
            let x = 0.5 * z_min * z_min;
            let above_exp = 1.0 / (1.0 + x * (1.0 + x * (0.5 + x / 6.0)));
            if u1 > above_exp * (1.0 + SHORTCUT_MARGIN) {
                return None;
            }
        }
        Some(box_muller(u1, u2))
    }
}

/// Smallest `z_min` [`SimRng::normal_reaching`] shortcuts for: below it the
/// relative margin would shrink towards rounding error.
const MIN_SHORTCUT_Z: f64 = 1e-3;
/// Slack of the shortcut's tests, far above the error of `ln`, `cos` and
/// the arithmetic around them.
const SHORTCUT_MARGIN: f64 = 1e-9;

/// Box–Muller of two uniforms: the one formula both normal draws use.
fn box_muller(u1: f64, u2: f64) -> f64 {
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl krill_core::node::Rng for SimRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = SimRng::stream(7, Purpose::Radio, 3);
                move |_| r.next_u64()
            })
            .collect();
        let mut again = SimRng::stream(7, Purpose::Radio, 3);
        assert_eq!(a, (0..4).map(|_| again.next_u64()).collect::<Vec<_>>());
        let mut other_node = SimRng::stream(7, Purpose::Radio, 4);
        let mut other_purpose = SimRng::stream(7, Purpose::Sensor, 3);
        let mut other_seed = SimRng::stream(8, Purpose::Radio, 3);
        assert_ne!(a[0], other_node.next_u64());
        assert_ne!(a[0], other_purpose.next_u64());
        assert_ne!(a[0], other_seed.next_u64());
    }

    #[test]
    fn the_reaching_shortcut_changes_no_draw() {
        // Same stream, same positions: every value the shortcut returns is
        // `normal`'s, and every draw it refuses is below `z_min`.
        for z_min in [-1.0, 0.0, 1e-4, 1e-3, 0.3, 1.0, 2.0, 3.5, f64::NAN] {
            let (mut a, mut b) = (SimRng::stream(3, Purpose::Radio, 1), SimRng::stream(3, Purpose::Radio, 1));
            let mut refused = 0;
            for _ in 0..50_000 {
                let z = a.normal();
                match b.normal_reaching(z_min) {
                    Some(r) => assert_eq!(r.to_bits(), z.to_bits()),
                    None => {
                        assert!(z < z_min, "refused {z} ≥ {z_min}");
                        refused += 1;
                    }
                }
            }
            assert_eq!(a.next_u64(), b.next_u64());
            if z_min >= 1.0 {
                assert!(refused > 25_000, "z_min {z_min}: only {refused} refused");
            } else if z_min < MIN_SHORTCUT_Z || z_min.is_nan() {
                assert_eq!(refused, 0);
            }
        }
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = SimRng::stream(1, Purpose::Sensor, 0);
        let xs: Vec<f64> = (0..20_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
