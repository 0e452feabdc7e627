//! Signing and verification behind one trait (ES-2 "all messages are
//! signed"), frame signing over a signed byte range, and the pre-signed
//! death certificate of SPEC-NOTES 32 (ES-2.9).
//!
//! [`RealCrypto`] is Ed25519 (RFC 8032, `verify_strict`). [`ModeledCrypto`]
//! has the same interface at a fraction of the cost, for simulations of
//! thousands of nodes; what it does and does not model is on its type.

use super::ct_eq;
use super::identity::{device_id_of, pubkey_hash, Identity};
use crate::types::{DeviceId, PublicKey, Signature, Timestamp, MAGIC_BYTES, PROTOCOL_VERSION_2};
use crate::wire::metabolic::DeathReason;
use crate::wire::{MessageType, HEADER_LEN, SIGNATURE_LEN};
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2sMac256;
use core::fmt;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// What a node signs and verifies with. The node and the simulator hold a
/// `dyn Crypto` or a generic `C: Crypto` and never see which one it is.
pub trait Crypto {
    /// This device's `device_id`.
    fn device_id(&self) -> DeviceId;
    /// This device's public key (`device_id` is its BLAKE2s prefix).
    fn public_key(&self) -> PublicKey;
    /// Signs `msg` as this device.
    fn sign(&self, msg: &[u8]) -> Signature;
    /// True iff `sig` is `signer`'s signature over `msg`. The caller picks
    /// `signer` from its own key table (by `sender_id`, or by gateway id),
    /// which is what binds an id to a key.
    fn verify(&self, signer: &PublicKey, msg: &[u8], sig: &Signature) -> bool;

    /// False for an identity that cannot take part in enrollment (ES-13.2):
    /// one without a signing key, such as a Dust node's
    /// ([`super::DustIdentity`]; ES-12.4: "Dust has no Ed25519"), which can
    /// neither sign an ENROLLMENT_REQUEST nor answer one. The node then
    /// never runs its enrollment poll. A method, not an associated const,
    /// so that `dyn Crypto` stays possible; an implementation returning a
    /// constant is inlined, and a board's node monomorphised over it links
    /// none of the enrollment path (X25519, HKDF-SHA256,
    /// ChaCha20-Poly1305).
    #[inline]
    fn can_enroll(&self) -> bool {
        true
    }
}

/// Ed25519 with the identity's PUF-derived key.
#[derive(Clone)]
pub struct RealCrypto {
    signing: SigningKey,
    public_key: PublicKey,
    device_id: DeviceId,
}

impl RealCrypto {
    /// Signs as `identity`.
    pub fn new(identity: &Identity) -> RealCrypto {
        RealCrypto {
            signing: identity.signing.clone(),
            public_key: identity.public_key(),
            device_id: identity.device_id(),
        }
    }

    /// Signs with a raw RFC 8032 secret key (test vectors, deployment root
    /// keys that do not come from a PUF).
    pub fn from_secret_key(secret: &[u8; 32]) -> RealCrypto {
        let signing = SigningKey::from_bytes(secret);
        let public_key = PublicKey(signing.verifying_key().to_bytes());
        RealCrypto { signing, device_id: device_id_of(&public_key), public_key }
    }
}

impl fmt::Debug for RealCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealCrypto").field("device_id", &self.device_id).finish_non_exhaustive()
    }
}

impl Crypto for RealCrypto {
    fn device_id(&self) -> DeviceId {
        self.device_id
    }

    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.signing.sign(msg).to_bytes())
    }

    /// Strict RFC 8032 verification: small-order keys, non-canonical `R`
    /// and `s ≥ ℓ` are refused, so a signature has one valid encoding.
    fn verify(&self, signer: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        match VerifyingKey::from_bytes(signer.as_bytes()) {
            Ok(vk) => vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig.0)).is_ok(),
            Err(_) => false,
        }
    }
}

/// The simulation's secret behind every [`ModeledCrypto`] tag. Only the
/// simulator holds one; it hands each node a [`ModeledCrypto`] bound to that
/// node's public key.
#[derive(Clone)]
pub struct ModeledAuthority {
    mac: Blake2sMac256,
}

impl ModeledAuthority {
    /// An authority with a 32-byte secret (draw it from the run's seed).
    pub fn new(secret: &[u8; 32]) -> ModeledAuthority {
        ModeledAuthority { mac: <Blake2sMac256 as KeyInit>::new(secret.into()) }
    }

    /// The signer of `identity`: same `device_id` and public key as its
    /// [`RealCrypto`], so a run's ids do not change with the crypto mode.
    pub fn crypto_for(&self, identity: &Identity) -> ModeledCrypto {
        ModeledCrypto { authority: self.clone(), public_key: identity.public_key(), device_id: identity.device_id() }
    }

    /// The tag `signer` would put on `msg`: BLAKE2s-256 keyed with the
    /// authority's secret over `signer ‖ msg`, then 32 zero bytes.
    fn tag(&self, signer: &PublicKey, msg: &[u8]) -> Signature {
        let mut m = self.mac.clone();
        m.update(signer.as_bytes());
        m.update(msg);
        let mut sig = [0u8; SIGNATURE_LEN];
        sig[..32].copy_from_slice(&m.finalize().into_bytes());
        Signature(sig)
    }

    /// True iff `sig` is the tag of `signer` over `msg`.
    pub fn verify(&self, signer: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        ct_eq(&self.tag(signer, msg).0, &sig.0)
    }
}

impl fmt::Debug for ModeledAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ModeledAuthority(..)")
    }
}

/// A cheap stand-in for Ed25519 in simulations (≈ 17 M signatures for
/// 1000 nodes × one trace per 5 s × 24 h).
///
/// **Guarantees, inside the simulation:** a tag verifies only for the public
/// key and message it was made for; code that holds no [`ModeledAuthority`]
/// and no `ModeledCrypto` of a device can make a tag that verifies for that
/// device except by guessing 256 bits; tags are deterministic like Ed25519,
/// so a replayed frame is byte-identical, as on the air; `device_id` and the
/// public key are the real Ed25519 ones of the same seed.
///
/// **Not modeled:** real-world security (every instance carries the
/// authority's secret, so a process that reads memory or calls private code
/// forges at will: the simulated adversary must go through this trait); the
/// CPU and energy cost of Ed25519 on a board; interoperability (a modeled
/// tag is not an Ed25519 signature: its last 32 bytes are zero, and real and
/// modeled nodes cannot verify each other); attacks on Ed25519 itself
/// (malleability, small-order keys, fault attacks).
#[derive(Clone)]
pub struct ModeledCrypto {
    authority: ModeledAuthority,
    public_key: PublicKey,
    device_id: DeviceId,
}

impl fmt::Debug for ModeledCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModeledCrypto").field("device_id", &self.device_id).finish_non_exhaustive()
    }
}

impl Crypto for ModeledCrypto {
    fn device_id(&self) -> DeviceId {
        self.device_id
    }

    fn public_key(&self) -> PublicKey {
        self.public_key
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        self.authority.tag(&self.public_key, msg)
    }

    fn verify(&self, signer: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        self.authority.verify(signer, msg, sig)
    }
}

/// Why a frame could not be signed or did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum FrameSigError {
    /// The buffer ends before the signed range plus the 64-byte signature,
    /// so there is no signature slot where the layout puts one.
    TooShort {
        /// Bytes needed: `signed_len + 64`.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The signature is not the given key's over the signed range: forged,
    /// corrupted in transit, or made by another key.
    BadSignature,
}

/// The signed range and the signature slot that follows it, or why not.
fn split(frame_len: usize, signed_len: usize) -> Result<usize, FrameSigError> {
    match signed_len.checked_add(SIGNATURE_LEN) {
        Some(end) if end <= frame_len => Ok(end),
        _ => Err(FrameSigError::TooShort { needed: signed_len.saturating_add(SIGNATURE_LEN), got: frame_len }),
    }
}

/// Signs `frame[0..signed_len]` and writes the signature into
/// `frame[signed_len..signed_len + 64]` (`FrameRepr::signed_len()`). Bytes
/// after the signature, such as VACCINE v2's relay tail, are left alone.
pub fn sign_frame<C: Crypto + ?Sized>(crypto: &C, frame: &mut [u8], signed_len: usize) -> Result<(), FrameSigError> {
    let end = split(frame.len(), signed_len)?;
    let (signed, rest) = frame.split_at_mut(signed_len);
    let sig = crypto.sign(signed);
    rest[..end - signed_len].copy_from_slice(&sig.0);
    Ok(())
}

/// Checks that `frame[signed_len..signed_len + 64]` is `signer`'s signature
/// over `frame[0..signed_len]`.
pub fn verify_frame<C: Crypto + ?Sized>(
    crypto: &C,
    signer: &PublicKey,
    frame: &[u8],
    signed_len: usize,
) -> Result<(), FrameSigError> {
    let end = split(frame.len(), signed_len)?;
    let mut sig = [0u8; SIGNATURE_LEN];
    sig.copy_from_slice(&frame[signed_len..end]);
    if crypto.verify(signer, &frame[..signed_len], &Signature(sig)) {
        Ok(())
    } else {
        Err(FrameSigError::BadSignature)
    }
}

/// Length of a DEATH_CERTIFICATE frame (ES-2.9).
pub const DEATH_CERTIFICATE_LEN: usize = 113;

/// A complete, signed version-2 DEATH_CERTIFICATE frame for this device,
/// made while its key still exists (SPEC-NOTES 32).
///
/// Made at enrollment with `reason = PufAnomaly` and `not_before` = the
/// enrollment time, stored in flash next to the helper data, and broadcast
/// verbatim if the PUF later fails: the key that signed it can no longer be
/// derived then. Its timestamp therefore means "valid since", not "time of
/// death": receivers must not apply freshness windows to death certificates
/// (a replay only repeats a death that already holds).
pub fn presign_death_certificate<C: Crypto + ?Sized>(
    crypto: &C,
    reason: DeathReason,
    not_before: Timestamp,
) -> [u8; DEATH_CERTIFICATE_LEN] {
    let mut f = [0u8; DEATH_CERTIFICATE_LEN];
    f[0..2].copy_from_slice(&MAGIC_BYTES);
    f[2] = PROTOCOL_VERSION_2;
    f[3] = MessageType::DeathCertificate.to_u8();
    f[4..HEADER_LEN].copy_from_slice(crypto.device_id().as_bytes());
    f[12] = reason.to_u8();
    f[13..17].copy_from_slice(&not_before.to_le_bytes());
    f[17..49].copy_from_slice(pubkey_hash(&crypto.public_key()).as_bytes());
    let sig = crypto.sign(&f[..DEATH_CERTIFICATE_LEN - SIGNATURE_LEN]);
    f[DEATH_CERTIFICATE_LEN - SIGNATURE_LEN..].copy_from_slice(&sig.0);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::Seed;
    use crate::wire::{Body, FrameRepr};
    use proptest::prelude::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn identity(n: u8) -> Identity {
        Identity::from_seed(&Seed([n; 32]))
    }

    #[test]
    fn rfc8032_test_1_empty_message() {
        let c = RealCrypto::from_secret_key(&unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
        assert_eq!(c.public_key().0, unhex::<32>("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
        let sig = c.sign(b"");
        assert_eq!(
            sig.0,
            unhex::<64>(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065\
                 224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
        assert!(c.verify(&c.public_key(), b"", &sig));
        assert!(!c.verify(&c.public_key(), b"x", &sig));
    }

    #[test]
    fn real_rejects_non_canonical_and_garbage_keys() {
        let c = RealCrypto::new(&identity(1));
        let sig = c.sign(b"m");
        // s + ℓ: the same signature with a non-canonical scalar.
        let mut bad = sig;
        let l: [u8; 32] = unhex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut carry = 0u16;
        for (s, li) in bad.0[32..].iter_mut().zip(l) {
            let v = *s as u16 + li as u16 + carry;
            *s = v as u8;
            carry = v >> 8;
        }
        assert!(!c.verify(&c.public_key(), b"m", &bad));
        // The identity point is a small-order key.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert!(!c.verify(&PublicKey(ident), b"m", &sig));
        assert!(!c.verify(&PublicKey([0xFF; 32]), b"m", &sig));
    }

    #[test]
    fn modeled_keeps_the_real_identity() {
        let id = identity(2);
        let auth = ModeledAuthority::new(&[7; 32]);
        let m = auth.crypto_for(&id);
        let r = RealCrypto::new(&id);
        assert_eq!(m.device_id(), r.device_id());
        assert_eq!(m.public_key(), r.public_key());
    }

    #[test]
    fn modeled_tags_verify_only_for_their_key_and_message() {
        let auth = ModeledAuthority::new(&[7; 32]);
        let a = auth.crypto_for(&identity(1));
        let b = auth.crypto_for(&identity(2));
        let sig = a.sign(b"trace");
        assert!(b.verify(&a.public_key(), b"trace", &sig));
        assert!(auth.verify(&a.public_key(), b"trace", &sig));
        assert!(!b.verify(&b.public_key(), b"trace", &sig), "A's tag claimed for B");
        assert!(!b.verify(&a.public_key(), b"tracf", &sig));
        assert!(!b.verify(&a.public_key(), b"trace", &Signature([0; 64])));
        // A different simulation's authority: tags don't carry over.
        let other = ModeledAuthority::new(&[8; 32]).crypto_for(&identity(1));
        assert!(!b.verify(&a.public_key(), b"trace", &other.sign(b"trace")));
        // A real Ed25519 signature is not a modeled tag, and vice versa.
        let real = RealCrypto::new(&identity(1));
        assert!(!b.verify(&a.public_key(), b"trace", &real.sign(b"trace")));
        assert!(!real.verify(&a.public_key(), b"trace", &sig));
    }

    #[test]
    fn modeled_tag_is_keyed_blake2s_then_zeros() {
        let auth = ModeledAuthority::new(&[7; 32]);
        let a = auth.crypto_for(&identity(1));
        let sig = a.sign(b"xy");
        let mut m = <Blake2sMac256 as KeyInit>::new_from_slice(&[7; 32]).unwrap();
        m.update(&a.public_key().0);
        m.update(b"xy");
        assert_eq!(&sig.0[..32], m.finalize().into_bytes().as_slice());
        assert_eq!(sig.0[32..], [0u8; 32]);
        let mut tail = sig;
        tail.0[63] = 1;
        assert!(!a.verify(&a.public_key(), b"xy", &tail));
    }

    #[test]
    fn frame_sign_and_verify_over_the_signed_range() {
        for c in
            [&RealCrypto::new(&identity(3)) as &dyn Crypto, &ModeledAuthority::new(&[1; 32]).crypto_for(&identity(3))]
        {
            let mut f = [0x11u8; 26 + 64 + 3];
            sign_frame(c, &mut f, 26).unwrap();
            assert_eq!(f[90..], [0x11; 3], "tail after the signature untouched");
            assert_eq!(verify_frame(c, &c.public_key(), &f, 26), Ok(()));
            f[91] ^= 0xFF;
            assert_eq!(verify_frame(c, &c.public_key(), &f, 26), Ok(()), "tail is not signed");
            f[5] ^= 1;
            assert_eq!(verify_frame(c, &c.public_key(), &f, 26), Err(FrameSigError::BadSignature));
            assert_eq!(sign_frame(c, &mut f[..89], 26), Err(FrameSigError::TooShort { needed: 90, got: 89 }));
            assert_eq!(
                verify_frame(c, &c.public_key(), &f, usize::MAX),
                Err(FrameSigError::TooShort { needed: usize::MAX, got: 93 })
            );
        }
    }

    #[test]
    fn death_certificate_parses_and_verifies() {
        let id = identity(4);
        let c = RealCrypto::new(&id);
        let f = presign_death_certificate(&c, DeathReason::PufAnomaly, 1_707_800_000);
        let repr = FrameRepr::parse(&f).unwrap();
        assert_eq!(repr.sender_id, id.device_id());
        assert_eq!(repr.signed_len(), DEATH_CERTIFICATE_LEN - SIGNATURE_LEN);
        match repr.body {
            Body::DeathCertificate(d) => {
                assert_eq!(d.reason, DeathReason::PufAnomaly);
                assert_eq!(d.timestamp, 1_707_800_000);
                assert_eq!(d.old_pubkey_hash, pubkey_hash(&id.public_key()));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(verify_frame(&c, &id.public_key(), &f, repr.signed_len()), Ok(()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_message_round_trips_and_any_bit_flip_fails(
            msg in proptest::collection::vec(any::<u8>(), 0..200),
            flip in any::<usize>(),
            seed in any::<u8>(),
        ) {
            let id = identity(seed);
            let auth = ModeledAuthority::new(&[9; 32]);
            for c in [&RealCrypto::new(&id) as &dyn Crypto, &auth.crypto_for(&id)] {
                let sig = c.sign(&msg);
                prop_assert!(c.verify(&c.public_key(), &msg, &sig));
                let mut s2 = sig;
                let bit = flip % 512;
                s2.0[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(!c.verify(&c.public_key(), &msg, &s2));
                if !msg.is_empty() {
                    let mut m2 = msg.clone();
                    let bit = flip % (8 * m2.len());
                    m2[bit / 8] ^= 1 << (bit % 8);
                    prop_assert!(!c.verify(&c.public_key(), &m2, &sig));
                }
            }
        }
    }

    /// Rough per-operation cost; run with
    /// `cargo test --release -p krill-core crypto::sign::tests::timing -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn timing() {
        let id = identity(5);
        let auth = ModeledAuthority::new(&[1; 32]);
        let msg = [0x5Au8; 26];
        for (name, c) in [("real", &RealCrypto::new(&id) as &dyn Crypto), ("modeled", &auth.crypto_for(&id))] {
            let n: u32 = if name == "real" { 2_000 } else { 200_000 };
            let t = std::time::Instant::now();
            let sigs: std::vec::Vec<Signature> = (0..n)
                .map(|i| {
                    let mut m = msg;
                    m[..4].copy_from_slice(&i.to_le_bytes());
                    c.sign(&m)
                })
                .collect();
            let sign = t.elapsed() / n;
            let t = std::time::Instant::now();
            let ok = sigs
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    let mut m = msg;
                    m[..4].copy_from_slice(&(*i as u32).to_le_bytes());
                    c.verify(&c.public_key(), &m, s)
                })
                .count();
            let verify = t.elapsed() / n;
            assert_eq!(ok, n as usize);
            std::println!("{name}: sign {sign:?}, verify {verify:?} per 26-byte message");
        }
    }
}
