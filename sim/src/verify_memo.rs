//! Signature checks shared by the receivers of one transmission.
//!
//! A broadcast reaches 10–20 nodes, and each runs the core's ES-15 check of
//! the same (signer, signed bytes, signature). `Crypto::verify` is a pure
//! function of those three (Ed25519's `verify_strict` and the modeled tag
//! alike), so the first receiver's success can serve the others: the
//! simulator keeps recent successes in a small direct-mapped table shared by
//! every node of one simulation. A hit needs all three to be byte-identical
//! to a check that succeeded, so every answer is the one the crypto would
//! give and results do not change; only the CPU time does. Failures are
//! never kept: a forgery is checked in full by every receiver.
//!
//! The table belongs to one simulation: two simulations have different
//! modeled authorities, and a tag valid under one is not under the other.

use std::sync::{Arc, Mutex, PoisonError};

use krill_core::crypto::Crypto;
use krill_core::types::{DeviceId, PublicKey, Signature};

/// Slots in the table: far more than the transmissions in flight at once
/// (a thousand nodes send about 300 frames a second, each heard within a few
/// ms), so a receiver rarely finds its slot taken by another frame.
const SLOTS: usize = 1024;

/// Longest message kept; longer ones are checked in full every time.
const MAX_MSG: usize = 256;

#[derive(Default)]
struct Verified {
    signer: [u8; 32],
    sig: Option<[u8; 64]>,
    msg: Vec<u8>,
}

/// Recent successful checks of one simulation.
pub struct VerifyMemo {
    slots: Box<[Mutex<Verified>]>,
}

impl VerifyMemo {
    /// An empty table.
    pub fn new() -> Arc<VerifyMemo> {
        Arc::new(VerifyMemo { slots: (0..SLOTS).map(|_| Mutex::new(Verified::default())).collect() })
    }

    fn slot(&self, sig: &Signature) -> &Mutex<Verified> {
        // A signature's first bytes are uniform (a hash output, or Ed25519's R).
        let mut k = [0u8; 8];
        k.copy_from_slice(&sig.0[..8]);
        &self.slots[(u64::from_le_bytes(k) % SLOTS as u64) as usize]
    }

    /// `check()`'s answer for (signer, msg, sig), from the table when this
    /// exact triple succeeded before.
    fn verify(&self, signer: &PublicKey, msg: &[u8], sig: &Signature, check: impl FnOnce() -> bool) -> bool {
        if msg.len() > MAX_MSG {
            return check();
        }
        let slot = self.slot(sig);
        {
            let v = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if v.sig == Some(sig.0) && v.signer == signer.0 && v.msg == msg {
                return true;
            }
        }
        let ok = check();
        if ok {
            let mut v = slot.lock().unwrap_or_else(PoisonError::into_inner);
            v.signer = signer.0;
            v.sig = Some(sig.0);
            v.msg.clear();
            v.msg.extend_from_slice(msg);
        }
        ok
    }
}

/// A node's crypto whose signature checks go through its simulation's
/// [`VerifyMemo`].
pub struct MemoCrypto<C> {
    inner: C,
    memo: Arc<VerifyMemo>,
}

impl<C> MemoCrypto<C> {
    /// `inner`, sharing `memo`.
    pub fn new(inner: C, memo: Arc<VerifyMemo>) -> Self {
        MemoCrypto { inner, memo }
    }
}

impl<C: Crypto> Crypto for MemoCrypto<C> {
    fn device_id(&self) -> DeviceId {
        self.inner.device_id()
    }
    fn public_key(&self) -> PublicKey {
        self.inner.public_key()
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        self.inner.sign(msg)
    }
    fn verify(&self, signer: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        self.memo.verify(signer, msg, sig, || self.inner.verify(signer, msg, sig))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use krill_core::crypto::{Identity, ModeledAuthority, RealCrypto, Seed};
    use proptest::prelude::*;

    use super::*;

    /// Counts the checks that reach the crypto.
    struct Counting<C>(C, Arc<AtomicU32>);

    impl<C: Crypto> Crypto for Counting<C> {
        fn device_id(&self) -> DeviceId {
            self.0.device_id()
        }
        fn public_key(&self) -> PublicKey {
            self.0.public_key()
        }
        fn sign(&self, msg: &[u8]) -> Signature {
            self.0.sign(msg)
        }
        fn verify(&self, signer: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.verify(signer, msg, sig)
        }
    }

    fn identity(i: u8) -> Identity {
        Identity::from_seed(&Seed([i; 32]))
    }

    #[test]
    fn receivers_after_the_first_are_served_from_the_table() {
        let auth = ModeledAuthority::new(&[9; 32]);
        let memo = VerifyMemo::new();
        let calls = Arc::new(AtomicU32::new(0));
        let rx: Vec<_> = (1..=5)
            .map(|i| MemoCrypto::new(Counting(auth.crypto_for(&identity(i)), calls.clone()), memo.clone()))
            .collect();
        let tx = auth.crypto_for(&identity(0));
        let msg = b"a trace deposit";
        let sig = tx.sign(msg);
        assert!(rx.iter().all(|r| r.verify(&tx.public_key(), msg, &sig)));
        assert_eq!(calls.load(Ordering::Relaxed), 1, "one real check for five receivers");

        // A forgery is checked, and refused, by every receiver.
        let forged = Signature([7; 64]);
        assert!(rx.iter().all(|r| !r.verify(&tx.public_key(), msg, &forged)));
        assert_eq!(calls.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn a_table_belongs_to_one_authority() {
        let (a, b) = (ModeledAuthority::new(&[1; 32]), ModeledAuthority::new(&[2; 32]));
        let memo_a = VerifyMemo::new();
        let tx = a.crypto_for(&identity(0));
        let sig = tx.sign(b"m");
        assert!(MemoCrypto::new(a.crypto_for(&identity(1)), memo_a).verify(&tx.public_key(), b"m", &sig));
        // Another simulation's node, with its own table, does not accept it.
        let other = MemoCrypto::new(b.crypto_for(&identity(1)), VerifyMemo::new());
        assert!(!other.verify(&tx.public_key(), b"m", &sig));
    }

    #[test]
    fn real_signatures_go_through_the_table_too() {
        let memo = VerifyMemo::new();
        let tx = RealCrypto::new(&identity(0));
        let rx = MemoCrypto::new(RealCrypto::new(&identity(1)), memo.clone());
        let sig = tx.sign(b"frame");
        assert!(rx.verify(&tx.public_key(), b"frame", &sig));
        assert!(rx.verify(&tx.public_key(), b"frame", &sig));
        assert!(!rx.verify(&tx.public_key(), b"framE", &sig));
    }

    proptest! {
        /// With any earlier successes in the table, every answer is the
        /// crypto's own: a change to the signer, the message or the
        /// signature of a remembered success is checked afresh.
        #[test]
        fn answers_are_the_cryptos(
            msg in proptest::collection::vec(any::<u8>(), 0..300),
            flip in any::<(u8, u16)>(),
            signer in 0u8..3,
        ) {
            let auth = ModeledAuthority::new(&[3; 32]);
            let memo = VerifyMemo::new();
            let rx = MemoCrypto::new(auth.crypto_for(&identity(9)), memo);
            let plain = auth.crypto_for(&identity(9));
            let txs: Vec<_> = (0..3).map(|i| auth.crypto_for(&identity(i))).collect();
            let sig = txs[0].sign(&msg);
            prop_assert!(rx.verify(&txs[0].public_key(), &msg, &sig));
            let mut m2 = msg.clone();
            if !m2.is_empty() {
                let at = flip.1 as usize % m2.len();
                m2[at] ^= flip.0 | 1;
            }
            let mut s2 = sig;
            s2.0[flip.1 as usize % 32] ^= flip.0;
            let who = txs[signer as usize].public_key();
            for (m, s) in [(&msg, &sig), (&m2, &sig), (&msg, &s2), (&m2, &s2)] {
                prop_assert_eq!(rx.verify(&who, m, s), plain.verify(&who, m, s));
            }
        }
    }
}
