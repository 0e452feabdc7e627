//! Duplicate check for frames without a sequence number.
//!
//! ES-15.2's window covers only TRACE_DEPOSIT; a PRESENCE_PULSE, HEARTBEAT,
//! INFLAMMATION_QUERY/REPLY or PROFILE_SYNC has no sequence number, so
//! every relayed copy that the mesh's own relay cache missed used to be
//! admitted again and charged to its origin's rate bucket: with relay TTL 3
//! in a dense room, honest nodes were rate-limited and then blacklisted by
//! copies of their own frames.
//!
//! The key is the first 8 bytes of the frame's signature. Ed25519 (and the
//! modeled tag) is deterministic, so equal signed content from one signer
//! gives an equal key and anything else a different one (collision 2⁻⁶⁴),
//! and relays do not touch it. Keys enter only after the signature
//! verified and the frame was charged (admitted or rate-limited), so a
//! forger cannot plant one.
//!
//! A ring of [`CONTENT_CACHE_LEN`] keys with the time each was charged: a
//! key counts only within the configured window (an identical re-send
//! after it is a new frame again), and the oldest key is overwritten first.
//! Nodes send v2 layouts, whose sequence-less frames all carry a send time
//! or query id, so two distinct frames with equal content are rare; the
//! window bounds what a legacy sender's exact repeat can lose.

use super::secs_since;
use crate::types::Timestamp;

/// Keys the content cache holds: 64 × 13 bytes. A 49-node room sends about
/// 9 sequence-less frames a second (pulses, heartbeats, profile syncs), so
/// the ring covers ~7 s, far more than relayed copies take to arrive.
pub const CONTENT_CACHE_LEN: usize = 64;

/// Default window (s) in which a key counts: one rate epoch, far longer
/// than any relay delay; in busy meshes the ring forgets sooner.
pub const CONTENT_WINDOW_S: u32 = 60;

/// Bytes of the signature that form the key.
pub const CONTENT_KEY_LEN: usize = 8;

/// A content key: the first [`CONTENT_KEY_LEN`] bytes of a signature.
pub type ContentKey = [u8; CONTENT_KEY_LEN];

/// The key of a frame whose signature is `signature`; `None` if it is
/// shorter than the key.
pub fn content_key(signature: &[u8]) -> Option<ContentKey> {
    signature.get(..CONTENT_KEY_LEN)?.try_into().ok()
}

/// What the cache knows about a verified copy's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentVerdict {
    /// Not seen within the window: a new frame.
    New,
    /// Admitted or rate-limited already, and this copy adds nothing: a
    /// duplicate. A copy of a rate-limited frame is the same frame over
    /// quota, not another one: charging it again would feed the flood
    /// counter once per relaying neighbour.
    Copy,
    /// Admitted already but only over relays, and this copy came directly
    /// from its sender: it still tells the receiver that the sender is a
    /// neighbour (SPEC-NOTES 33), so it is handled, though not charged
    /// again. The index is for [`ContentCache::mark_direct`].
    FirstDirect(usize),
}

/// Entry flag: a copy came directly from its sender.
const DIRECT: u8 = 1;
/// Entry flag: the frame was admitted (else it was rate-limited).
const ADMITTED: u8 = 2;

/// The last `N` content keys the guards charged, with the time, whether
/// the frame was admitted or rate-limited, and whether a direct copy was
/// among those seen.
#[derive(Clone, Debug)]
pub struct ContentCache<const N: usize = CONTENT_CACHE_LEN> {
    keys: [ContentKey; N],
    at: [Timestamp; N],
    flags: [u8; N],
    len: usize,
    next: usize,
}

impl<const N: usize> ContentCache<N> {
    /// An empty cache.
    pub fn new() -> Self {
        ContentCache { keys: [[0; CONTENT_KEY_LEN]; N], at: [0; N], flags: [0; N], len: 0, next: 0 }
    }

    /// The verdict for a copy of content `key`, `direct` if heard from its
    /// sender without relays. A key counts while it was recorded no more
    /// than `window` seconds from `now`, either way: a clock stepped back by
    /// time sync must not keep a key alive for ever.
    pub fn check(&self, key: &ContentKey, direct: bool, now: Timestamp, window: u32) -> ContentVerdict {
        let hit = self
            .keys
            .iter()
            .zip(&self.at)
            .take(self.len)
            .position(|(k, at)| k == key && secs_since(now, *at).unsigned_abs() <= u64::from(window));
        let Some(i) = hit else {
            return ContentVerdict::New;
        };
        match self.flags.get(i).copied().unwrap_or(DIRECT) {
            f if direct && f & (DIRECT | ADMITTED) == ADMITTED => ContentVerdict::FirstDirect(i),
            _ => ContentVerdict::Copy,
        }
    }

    /// True if `key` counts at `now` (any copy of it).
    pub fn contains(&self, key: &ContentKey, now: Timestamp, window: u32) -> bool {
        self.check(key, false, now, window) != ContentVerdict::New
    }

    /// Records `key` at `now` as `admitted` or rate-limited, overwriting
    /// the oldest key when full.
    pub fn insert(&mut self, key: ContentKey, direct: bool, admitted: bool, now: Timestamp) {
        if N == 0 {
            return;
        }
        let i = self.next;
        let flags = if direct { DIRECT } else { 0 } | if admitted { ADMITTED } else { 0 };
        if let (Some(k), Some(at), Some(f)) = (self.keys.get_mut(i), self.at.get_mut(i), self.flags.get_mut(i)) {
            (*k, *at, *f) = (key, now, flags);
        }
        self.next = (i + 1) % N;
        self.len = (self.len + 1).min(N);
    }

    /// Records that entry `i` (from [`ContentVerdict::FirstDirect`]) has
    /// now been heard directly.
    pub fn mark_direct(&mut self, i: usize) {
        if let Some(f) = self.flags.get_mut(i) {
            *f |= DIRECT;
        }
    }

    /// Keys held (expired ones included until overwritten).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for ContentCache<N> {
    fn default() -> Self {
        ContentCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn k(n: u32) -> ContentKey {
        let b = n.to_le_bytes();
        [b[0], b[1], b[2], b[3], 0xC0, 0xFF, 0xEE, 0x00]
    }

    #[test]
    fn key_is_the_signature_prefix() {
        let sig: [u8; 64] = core::array::from_fn(|i| i as u8);
        assert_eq!(content_key(&sig), Some([0, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!(content_key(&sig[..7]), None);
    }

    #[test]
    fn window_bounds_a_key() {
        let mut c: ContentCache = ContentCache::new();
        c.insert(k(1), true, true, 1_000);
        assert!(c.contains(&k(1), 1_000, 60));
        assert!(c.contains(&k(1), 1_060, 60));
        assert!(!c.contains(&k(1), 1_061, 60), "an identical frame after the window is new");
        assert!(c.contains(&k(1), 940, 60), "clock stepped back within the window");
        assert!(!c.contains(&k(1), 939, 60));
        assert!(!c.contains(&k(2), 1_000, 60));
    }

    #[test]
    fn a_direct_copy_after_relayed_ones_counts_once() {
        let mut c: ContentCache = ContentCache::new();
        c.insert(k(7), false, true, 100);
        assert_eq!(c.check(&k(7), false, 100, 60), ContentVerdict::Copy, "another relayed copy");
        let ContentVerdict::FirstDirect(i) = c.check(&k(7), true, 101, 60) else {
            panic!("the first direct copy is not a plain duplicate");
        };
        c.mark_direct(i);
        assert_eq!(c.check(&k(7), true, 102, 60), ContentVerdict::Copy, "a second direct copy is");
        c.insert(k(8), true, true, 100);
        assert_eq!(c.check(&k(8), true, 100, 60), ContentVerdict::Copy);
        assert_eq!(c.check(&k(8), false, 100, 60), ContentVerdict::Copy);
        assert_eq!(c.check(&k(9), true, 100, 60), ContentVerdict::New);
        // A rate-limited frame heard over relays: its direct copy is the same
        // frame over quota.
        c.insert(k(10), false, false, 100);
        assert_eq!(c.check(&k(10), true, 100, 60), ContentVerdict::Copy);
    }

    #[test]
    fn wraps_without_panic_and_forgets_the_oldest() {
        let mut c: ContentCache<4> = ContentCache::new();
        for i in 0..4 {
            c.insert(k(i), true, true, 10);
        }
        assert!(c.contains(&k(0), 10, 60));
        c.insert(k(4), true, true, 11);
        assert!(!c.contains(&k(0), 11, 60));
        assert!((1..=4).all(|i| c.contains(&k(i), 11, 60)));
        for i in 5..1_000 {
            c.insert(k(i), true, true, 12);
        }
        assert_eq!(c.len(), 4);
        assert!(c.contains(&k(999), 12, 60) && !c.contains(&k(995), 12, 60));
        let mut z: ContentCache<0> = ContentCache::new();
        z.insert(k(1), true, true, 0);
        assert!(z.is_empty() && !z.contains(&k(1), 0, 60));
    }

    proptest! {
        #[test]
        fn matches_last_n_model(ops in proptest::collection::vec((0u32..40, 0u32..30), 0..300)) {
            let mut c: ContentCache<16> = ContentCache::new();
            let mut model: std::collections::VecDeque<(u32, u32)> = Default::default();
            let mut now = 0u32;
            for (key, dt) in ops {
                now += dt;
                let want = model.iter().any(|&(m, at)| m == key && now - at <= 20);
                prop_assert_eq!(c.contains(&k(key), now, 20), want);
                if !want {
                    c.insert(k(key), false, true, now);
                    model.push_back((key, now));
                    if model.len() > 16 {
                        model.pop_front();
                    }
                }
            }
        }
    }
}
