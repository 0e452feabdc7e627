//! Relay cache and TTL (ES-12.2 "RELAY", ES-15.4 items 2 and 3).
//!
//! The cache remembers the last 32 message keys in a ring: a frame whose
//! key is there is not relayed again, and the 33rd key pushes out the
//! first. A hit does not refresh a key's place (the spec keeps "the last 32
//! message hashes", not the 32 most recently seen).
//!
//! The caller computes the 4-byte key: BLAKE2s is not a dependency of the
//! core. The spec's key, `BLAKE2s(msg[0..header_size + 8])[0..4]`, covers
//! only 20 bytes, which for INFLAMMATION_REPLY and CONSISTENCY_ALERT is the
//! header plus `suspect_id`: a second reply about the same suspect (another
//! verdict) would not be relayed. Hash the signature instead (64 bytes,
//! deterministic Ed25519, so equal for equal signed content and different
//! otherwise, and untouched by relays that raise VACCINE's hop count).

use super::{msg, RELAY_CACHE_LEN};

/// Relay TTLs (ES-15.4; "adjustable via governance").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RelayConfig {
    /// TTL a node puts on frames it originates.
    pub default_ttl: u8,
    /// TTL for VACCINE (wider propagation).
    pub vaccine_ttl: u8,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig { default_ttl: 3, vaccine_ttl: 10 }
    }
}

impl RelayConfig {
    /// The TTL to originate a frame of `msg_type` with.
    pub fn initial_ttl(&self, msg_type: u8) -> u8 {
        if msg_type == msg::VACCINE {
            self.vaccine_ttl
        } else {
            self.default_ttl
        }
    }
}

/// The TTL to relay a frame received with `ttl`: TTL 0 is not relayed,
/// anything else goes out decremented. A frame originated with TTL t is
/// thus relayed at most t times.
pub fn should_relay(ttl: u8) -> Option<u8> {
    ttl.checked_sub(1)
}

/// The last `N` relay keys, oldest overwritten first.
#[derive(Clone, Debug)]
pub struct RelayCache<const N: usize = RELAY_CACHE_LEN> {
    keys: [[u8; 4]; N],
    len: usize,
    next: usize,
}

impl<const N: usize> RelayCache<N> {
    /// An empty cache.
    pub fn new() -> Self {
        RelayCache { keys: [[0; 4]; N], len: 0, next: 0 }
    }

    /// True if `key` is among the cached keys.
    pub fn contains(&self, key: [u8; 4]) -> bool {
        self.keys.iter().take(self.len).any(|k| *k == key)
    }

    /// True, and `key` recorded, if it was not cached: the frame is new to
    /// this relay. False for a frame relayed before.
    pub fn check_and_insert(&mut self, key: [u8; 4]) -> bool {
        if N == 0 {
            return true;
        }
        if self.contains(key) {
            return false;
        }
        if let Some(slot) = self.keys.get_mut(self.next) {
            *slot = key;
        }
        self.next = (self.next + 1) % N;
        self.len = (self.len + 1).min(N);
        true
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for RelayCache<N> {
    fn default() -> Self {
        RelayCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn k(n: u32) -> [u8; 4] {
        n.to_le_bytes()
    }

    #[test]
    fn thirty_third_key_evicts_the_first() {
        let mut c: RelayCache = RelayCache::new();
        for i in 0..32 {
            assert!(c.check_and_insert(k(i)));
        }
        assert!(!c.check_and_insert(k(0)), "hit does not refresh");
        assert!(c.check_and_insert(k(32)));
        assert!(!c.contains(k(0)));
        assert!(c.contains(k(1)));
        assert!(c.check_and_insert(k(0)), "relayed again once forgotten");
        assert!(!c.contains(k(1)));
        assert_eq!(c.len(), 32);
    }

    #[test]
    fn ttl_rules() {
        assert_eq!(should_relay(0), None);
        assert_eq!(should_relay(1), Some(0));
        assert_eq!(should_relay(3), Some(2));
        let cfg = RelayConfig::default();
        assert_eq!(cfg.initial_ttl(msg::VACCINE), 10);
        assert_eq!(cfg.initial_ttl(msg::TRACE_DEPOSIT), 3);
        // TTL 3 is relayed 3 times.
        let mut ttl = cfg.initial_ttl(msg::TRACE_DEPOSIT);
        let mut hops = 0;
        while let Some(t) = should_relay(ttl) {
            ttl = t;
            hops += 1;
        }
        assert_eq!(hops, 3);
    }

    proptest! {
        #[test]
        fn matches_last_n_model(keys in proptest::collection::vec(0u32..48, 0..300)) {
            let mut c: RelayCache = RelayCache::new();
            let mut model: std::collections::VecDeque<u32> = Default::default();
            for key in keys {
                let fresh = !model.contains(&key);
                if fresh {
                    model.push_back(key);
                    if model.len() > 32 {
                        model.pop_front();
                    }
                }
                prop_assert_eq!(c.check_and_insert(k(key)), fresh);
            }
        }
    }
}
