//! Device identity from the 256-bit PUF seed `S` (ES-13.1 step 3).
//!
//! Every key is an HKDF-SHA256 expansion of `S` with its own salt and info,
//! so learning one key says nothing about another:
//!
//! | key                | salt              | info             | bytes |
//! |--------------------|-------------------|------------------|-------|
//! | Ed25519 secret key | `krill-bia-sign`  | `ed25519-v1`     | 32    |
//! | `network_auth_key` | `krill-bia-net`   | `mesh-auth-v1`   | 16    |
//! | X25519 secret      | `krill-bia-dh`    | `x25519-v1`      | 32    |
//!
//! The first two rows are the spec's; the X25519 row is ours (ES-13.2 needs a
//! Diffie-Hellman key and the spec names none). `device_id` is
//! `BLAKE2s-256(Ed25519 public key)[0..8]`.

use super::{blake2s256, hkdf_sha256, x25519_base};
use crate::types::{DeviceId, Hash32, PublicKey};
use core::fmt;
use ed25519_dalek::SigningKey;

/// Length of the seed `S`.
pub const SEED_LEN: usize = 32;

/// HKDF salt of the Ed25519 key (ES-13.1).
pub const SIGN_SALT: &[u8] = b"krill-bia-sign";
/// HKDF info of the Ed25519 key (ES-13.1).
pub const SIGN_INFO: &[u8] = b"ed25519-v1";
/// HKDF salt of `network_auth_key` (ES-13.1).
pub const NET_SALT: &[u8] = b"krill-bia-net";
/// HKDF info of `network_auth_key` (ES-13.1).
pub const NET_INFO: &[u8] = b"mesh-auth-v1";
/// HKDF salt of the X25519 key (ours).
pub const DH_SALT: &[u8] = b"krill-bia-dh";
/// HKDF info of the X25519 key (ours).
pub const DH_INFO: &[u8] = b"x25519-v1";

/// The 256-bit seed `S` that the fuzzy extractor recovers each boot. Secret:
/// its `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Seed(pub [u8; SEED_LEN]);

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(..)")
    }
}

/// `device_id` of a public key: `BLAKE2s-256(pubkey)[0..8]` (ES-13.1). A
/// node checks this before it trusts a key for a `sender_id`.
pub fn device_id_of(pubkey: &PublicKey) -> DeviceId {
    let h = blake2s256(pubkey.as_bytes());
    DeviceId([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
}

/// `BLAKE2s-256(pubkey)`: DEATH_CERTIFICATE's `old_pubkey_hash` (ES-2.9).
pub fn pubkey_hash(pubkey: &PublicKey) -> Hash32 {
    Hash32(blake2s256(pubkey.as_bytes()))
}

/// Every key a device derives from its seed, held in RAM only (ES-13.1
/// "NEVER written to flash"). Secret parts stay private; `Debug` shows only
/// the public ones.
#[derive(Clone)]
pub struct Identity {
    pub(super) signing: SigningKey,
    pub(super) x25519_secret: [u8; 32],
    network_auth_key: [u8; 16],
    public_key: PublicKey,
    x25519_public: [u8; 32],
    device_id: DeviceId,
}

impl Identity {
    /// Derives the identity of seed `S`.
    pub fn from_seed(seed: &Seed) -> Identity {
        let mut sk = [0u8; 32];
        hkdf_sha256(SIGN_SALT, &seed.0, &[SIGN_INFO], &mut sk);
        let signing = SigningKey::from_bytes(&sk);
        let public_key = PublicKey(signing.verifying_key().to_bytes());

        let mut network_auth_key = [0u8; 16];
        hkdf_sha256(NET_SALT, &seed.0, &[NET_INFO], &mut network_auth_key);

        let mut x25519_secret = [0u8; 32];
        hkdf_sha256(DH_SALT, &seed.0, &[DH_INFO], &mut x25519_secret);
        let x25519_public = x25519_base(x25519_secret);

        Identity {
            signing,
            x25519_secret,
            network_auth_key,
            public_key,
            x25519_public,
            device_id: device_id_of(&public_key),
        }
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// `BLAKE2s-256(public key)[0..8]`.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    /// The 16-byte key for BLE mesh authentication during provisioning
    /// (ES-13.1). Secret.
    pub fn network_auth_key(&self) -> &[u8; 16] {
        &self.network_auth_key
    }

    /// The X25519 public key others seal NetKeys to (ES-13.2).
    pub fn dh_public(&self) -> super::DhPublicKey {
        crate::wire::Bytes(self.x25519_public)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("device_id", &self.device_id)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek_check::*;

    /// An independent path to the same values: HKDF written out from HMAC
    /// (RFC 5869 §2.2–2.3), the Ed25519 public key from the clamped SHA-512
    /// scalar (RFC 8032 §5.1.5) on curve25519-dalek, the X25519 key from the
    /// clamped scalar (RFC 7748 §5) times the base point, BLAKE2s via `Digest`.
    mod curve25519_dalek_check {
        use hkdf::hmac::{Hmac, KeyInit, Mac};
        use sha2::{Digest, Sha256, Sha512};

        pub fn hkdf_by_hand(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
            let mut ext = <Hmac<Sha256> as KeyInit>::new_from_slice(salt).unwrap();
            ext.update(ikm);
            let prk = ext.finalize().into_bytes();
            let mut t: std::vec::Vec<u8> = std::vec::Vec::new();
            let mut done = 0;
            let mut counter = 1u8;
            while done < out.len() {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&prk).unwrap();
                m.update(&t);
                m.update(info);
                m.update(&[counter]);
                t = m.finalize().into_bytes().to_vec();
                let n = (out.len() - done).min(32);
                out[done..done + n].copy_from_slice(&t[..n]);
                done += n;
                counter += 1;
            }
        }

        pub fn ed25519_public_by_hand(secret: &[u8; 32]) -> [u8; 32] {
            let h = Sha512::digest(secret);
            let mut a = [0u8; 32];
            a.copy_from_slice(&h[..32]);
            a[0] &= 248;
            a[31] &= 127;
            a[31] |= 64;
            let s = curve25519_dalek::Scalar::from_bytes_mod_order(a);
            curve25519_dalek::EdwardsPoint::mul_base(&s).compress().to_bytes()
        }
    }

    fn fixed_seed() -> Seed {
        let mut s = [0u8; 32];
        for (i, b) in s.iter_mut().enumerate() {
            *b = i as u8;
        }
        Seed(s)
    }

    #[test]
    fn derivation_matches_an_independent_computation() {
        let seed = fixed_seed();
        let id = Identity::from_seed(&seed);

        let mut sk = [0u8; 32];
        hkdf_by_hand(SIGN_SALT, &seed.0, SIGN_INFO, &mut sk);
        let pk = ed25519_public_by_hand(&sk);
        assert_eq!(id.public_key().0, pk);

        use blake2::Digest;
        let h = blake2::Blake2s256::digest(pk);
        assert_eq!(id.device_id().0.as_slice(), &h[..8]);

        let mut nak = [0u8; 16];
        hkdf_by_hand(NET_SALT, &seed.0, NET_INFO, &mut nak);
        assert_eq!(id.network_auth_key(), &nak);

        let mut xs = [0u8; 32];
        hkdf_by_hand(DH_SALT, &seed.0, DH_INFO, &mut xs);
        xs[0] &= 248;
        xs[31] &= 127;
        xs[31] |= 64;
        let xp = curve25519_dalek::MontgomeryPoint::mul_base(&curve25519_dalek::Scalar::from_bytes_mod_order(xs));
        assert_eq!(id.dh_public().0, xp.to_bytes());
    }

    /// The pinned identity of seed `00 01 .. 1f` (also in `crypto.ron`);
    /// computed here and, independently, with Python `cryptography` 48.
    #[test]
    fn fixed_seed_identity_is_pinned() {
        let id = Identity::from_seed(&fixed_seed());
        assert_eq!(
            id.public_key(),
            PublicKey::from_hex("845de70709b00b0a847c9c9e4a4fbe71e1bb92cd39fa3dcf25c9535ff1b57aac").unwrap()
        );
        assert_eq!(id.device_id(), DeviceId::from_hex("bb8d318f9edeb02a").unwrap());
        assert_eq!(
            id.network_auth_key(),
            &[0x3a, 0xad, 0x86, 0x7b, 0x27, 0x1a, 0x43, 0x41, 0x0e, 0x2b, 0x26, 0x1c, 0xfe, 0x39, 0x03, 0x91]
        );
        assert_eq!(
            id.dh_public(),
            crate::wire::Bytes::from_hex("e2979f4245d223526522afbfde0b8fe69fbd2c3493ceb821fbaaa2cdd80ce973").unwrap()
        );
    }

    #[test]
    fn keys_are_separated_and_seed_dependent() {
        let a = Identity::from_seed(&fixed_seed());
        let mut s = fixed_seed();
        s.0[31] ^= 1;
        let b = Identity::from_seed(&s);
        assert_ne!(a.public_key(), b.public_key());
        assert_ne!(a.device_id(), b.device_id());
        assert_ne!(a.network_auth_key(), b.network_auth_key());
        assert_ne!(a.dh_public(), b.dh_public());
        assert_ne!(a.x25519_secret, a.signing.to_bytes());
        assert_eq!(pubkey_hash(&a.public_key()).0[..8], a.device_id().0);
    }

    #[test]
    fn debug_hides_secrets() {
        let id = Identity::from_seed(&fixed_seed());
        let text = std::format!("{id:?} {:?}", fixed_seed());
        assert!(text.contains("device_id"));
        assert!(!text.contains("signing"));
        assert!(text.contains("Seed(..)"));
    }
}
