//! Set-up shared by the multi-node tests: a deterministic RNG, identities,
//! the clock and a node configuration with short neonatal periods.

use krill_core::crypto::{Identity, Seed};
use krill_core::node::{NodeConfig, Now, Rng};

/// Unix time at monotonic 0.
pub const UNIX0: u32 = 1_700_000_000;

/// A 64-bit LCG: the caller-supplied RNG of every node under test.
pub struct Lcg(pub u64);

impl Rng for Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

pub fn identity(i: u8) -> Identity {
    Identity::from_seed(&Seed([i.wrapping_add(1); 32]))
}

pub fn now_at(ms: u64) -> Now {
    Now::new(ms, UNIX0 + (ms / 1000) as u32)
}

/// Short neonatal periods so a test runs in simulated minutes.
pub fn fast_config() -> NodeConfig {
    let mut cfg = NodeConfig { subject_neonatal_ms: 60_000, ..NodeConfig::default() };
    cfg.lifecycle.neonatal_duration_ms = 60_000;
    cfg.quorum.min_transition_interval = 0;
    cfg
}
