//! Enrollment crypto (ES-13.2): the deployment root of trust that
//! SPEC-NOTES 41 asks for, and the sealed NetKey of ENROLLMENT_RESPONSE and
//! KEY_ROTATION (SPEC-NOTES 37: 16-byte NetKey, 32 bytes on the wire).
//!
//! **Root of trust.** Each deployment has an Ed25519 root key, kept offline
//! by the operator; its public key is written into every device before it
//! ships. A provisioner carries a [`ProvisionerCertificate`]: the root's
//! signature over the provisioner's Ed25519 key and a validity window. A
//! new device accepts an ENROLLMENT_RESPONSE only if the certificate
//! verifies under its root key, names the response's sender
//! (`device_id_of(key) == sender_id`) and the response is signed by that key
//! ([`verify_provisioned_frame`]). Without this, any node in radio range
//! could hand out a NetKey and a clock.
//!
//! **Sealed NetKey.** The provisioner draws a fresh X25519 ephemeral secret
//! per response (the caller passes it in) and sends its public half in the
//! response's 32-byte `provisioner_pubkey` field. Both sides compute
//! `X25519(eph, device)`, refuse an all-zero result (low-order point), and
//! derive the AEAD key as `HKDF-SHA256(salt = "krill-bia-seal", ikm =
//! shared, info = "netkey-v1" ‖ eph_pub ‖ recipient_pub)`. ChaCha20-Poly1305
//! encrypts the 16-byte NetKey; ciphertext ‖ tag is the 32-byte
//! `network_key_enc`. The nonce is `target_device_id ‖ time_sync` (LE) for
//! enrollment, `target_device_id ‖ key_epoch` for rotation; the associated
//! data binds the message type, both ids and every other field of the
//! context. A (key, nonce) pair cannot repeat: the key changes with every
//! ephemeral secret, and for a reused ephemeral the nonce still changes
//! with the time or the epoch. The device's X25519 key is its own HKDF
//! branch of the seed ([`super::identity`]), so it must reach the
//! provisioner: ENROLLMENT_REQUEST has to carry it (`docs/spec-deviations.md`).

use super::identity::{device_id_of, Identity};
use super::sign::{verify_frame, Crypto, FrameSigError};
use super::{hkdf_sha256, x25519, x25519_base};
use crate::types::{DeviceId, PublicKey, Signature, Timestamp};
use crate::wire::{Bytes, MessageType, HEADER_LEN};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use core::fmt;

/// An X25519 public key, in wire order.
pub type DhPublicKey = Bytes<32>;

/// Length of a NetKey (a BLE mesh NetKey is 128 bits).
pub const NETKEY_LEN: usize = 16;
/// Length of a sealed NetKey: ciphertext plus Poly1305 tag.
pub const SEALED_NETKEY_LEN: usize = NETKEY_LEN + 16;
/// Length of a serialized [`ProvisionerCertificate`].
pub const CERTIFICATE_LEN: usize = 32 + 4 + 4 + 64;

/// HKDF salt of the sealing key.
pub const SEAL_SALT: &[u8] = b"krill-bia-seal";
/// HKDF info prefix of the sealing key.
pub const SEAL_INFO: &[u8] = b"netkey-v1";
/// Prefix of the bytes the root signs, so a root signature over anything
/// else can never pass as a certificate.
pub const CERTIFICATE_DOMAIN: &[u8] = b"krill-bia-provisioner-cert-v1";

/// The mesh network key (ES-12.2). Secret: `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct NetKey(pub [u8; NETKEY_LEN]);

impl fmt::Debug for NetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetKey(..)")
    }
}

/// What a sealed NetKey is bound to: the message that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SealContext {
    /// ENROLLMENT_RESPONSE (0x61).
    Enrollment {
        /// The provisioner (the response's `sender_id`).
        provisioner_id: DeviceId,
        /// The enrolling device.
        target_device_id: DeviceId,
        /// The response's `time_sync`.
        time_sync: Timestamp,
        /// The response's `deployment_zone`.
        deployment_zone: u16,
    },
    /// KEY_ROTATION (0x62).
    KeyRotation {
        /// The provisioner (the message's `sender_id`).
        provisioner_id: DeviceId,
        /// The device this copy is for.
        target_device_id: DeviceId,
        /// Epoch of the new key.
        key_epoch: u32,
        /// The rotation deadline.
        deadline: Timestamp,
    },
}

impl SealContext {
    fn target(&self) -> DeviceId {
        match *self {
            SealContext::Enrollment { target_device_id, .. } | SealContext::KeyRotation { target_device_id, .. } => {
                target_device_id
            }
        }
    }

    /// `target_device_id ‖ time_sync` or `target_device_id ‖ key_epoch`.
    fn nonce(&self) -> [u8; 12] {
        let counter = match *self {
            SealContext::Enrollment { time_sync, .. } => time_sync,
            SealContext::KeyRotation { key_epoch, .. } => key_epoch,
        };
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(self.target().as_bytes());
        n[8..].copy_from_slice(&counter.to_le_bytes());
        n
    }

    /// Type byte, provisioner, target and the remaining fields, and the
    /// length used.
    fn aad(&self) -> ([u8; 25], usize) {
        let mut a = [0u8; 25];
        match *self {
            SealContext::Enrollment { provisioner_id, target_device_id, time_sync, deployment_zone } => {
                a[0] = MessageType::EnrollmentResponse.to_u8();
                a[1..9].copy_from_slice(provisioner_id.as_bytes());
                a[9..17].copy_from_slice(target_device_id.as_bytes());
                a[17..21].copy_from_slice(&time_sync.to_le_bytes());
                a[21..23].copy_from_slice(&deployment_zone.to_le_bytes());
                (a, 23)
            }
            SealContext::KeyRotation { provisioner_id, target_device_id, key_epoch, deadline } => {
                a[0] = MessageType::KeyRotation.to_u8();
                a[1..9].copy_from_slice(provisioner_id.as_bytes());
                a[9..17].copy_from_slice(target_device_id.as_bytes());
                a[17..21].copy_from_slice(&key_epoch.to_le_bytes());
                a[21..25].copy_from_slice(&deadline.to_le_bytes());
                (a, 25)
            }
        }
    }
}

/// A NetKey sealed to one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SealedNetKey {
    /// The provisioner's ephemeral X25519 public key (`provisioner_pubkey`
    /// of ENROLLMENT_RESPONSE, `ephemeral_pubkey` of KEY_ROTATION).
    pub ephemeral_public: DhPublicKey,
    /// Ciphertext ‖ tag (`network_key_enc`).
    pub ciphertext: Bytes<SEALED_NETKEY_LEN>,
}

/// Why enrollment crypto refused its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EnrollError {
    /// The peer's X25519 key is a low-order point, so the shared secret is
    /// all zeros and known to anyone: refused rather than used.
    LowOrderPoint,
    /// The AEAD tag did not verify: the NetKey was sealed to another
    /// device, for another context, or altered on the way.
    Unauthentic,
    /// The certificate's signature is not the deployment root's: forged, or
    /// from another deployment.
    CertificateForged,
    /// `now` is before the certificate's `not_before`.
    CertificateNotYetValid,
    /// `now` is after the certificate's `not_after`.
    CertificateExpired,
    /// `not_after` does not follow `not_before` (within 2³¹ s): the window
    /// is empty or ambiguous across the u32 wrap.
    CertificateWindowInvalid,
    /// The frame's `sender_id` is not the certified provisioner's
    /// `device_id`, or the frame is too short to have a header.
    ProvisionerMismatch,
    /// The frame is not signed by the certified provisioner's key.
    Frame(FrameSigError),
}

fn x25519_checked(secret: [u8; 32], public: &DhPublicKey) -> Result<[u8; 32], EnrollError> {
    let shared = x25519(secret, public.0);
    if shared == [0u8; 32] {
        Err(EnrollError::LowOrderPoint)
    } else {
        Ok(shared)
    }
}

fn aead(shared: &[u8; 32], eph: &DhPublicKey, recipient: &DhPublicKey) -> ChaCha20Poly1305 {
    let mut key = [0u8; 32];
    hkdf_sha256(SEAL_SALT, shared, &[SEAL_INFO, &eph.0, &recipient.0], &mut key);
    ChaCha20Poly1305::new(&key.into())
}

/// Seals `netkey` to `recipient` (the provisioner side of ES-13.2 and of
/// KEY_ROTATION). `ephemeral_secret` must be fresh random bytes for each
/// call; it is used once and dropped.
pub fn seal_netkey(
    ephemeral_secret: &[u8; 32],
    recipient: &DhPublicKey,
    netkey: &NetKey,
    ctx: &SealContext,
) -> Result<SealedNetKey, EnrollError> {
    let eph = Bytes(x25519_base(*ephemeral_secret));
    let shared = x25519_checked(*ephemeral_secret, recipient)?;
    let (aad, aad_len) = ctx.aad();
    let mut buf = netkey.0;
    let tag = aead(&shared, &eph, recipient)
        .encrypt_inout_detached(&ctx.nonce().into(), &aad[..aad_len], buf.as_mut_slice().into())
        .map_err(|_| EnrollError::Unauthentic)?;
    let mut ct = [0u8; SEALED_NETKEY_LEN];
    ct[..NETKEY_LEN].copy_from_slice(&buf);
    ct[NETKEY_LEN..].copy_from_slice(&tag);
    Ok(SealedNetKey { ephemeral_public: eph, ciphertext: Bytes(ct) })
}

/// Opens a NetKey sealed to `recipient` (the device side: "decrypts
/// network_key using Diffie-Hellman(my_privkey, provisioner_pubkey)").
/// Check the frame first with [`verify_provisioned_frame`].
pub fn open_netkey(recipient: &Identity, sealed: &SealedNetKey, ctx: &SealContext) -> Result<NetKey, EnrollError> {
    let shared = x25519_checked(recipient.x25519_secret, &sealed.ephemeral_public)?;
    let (aad, aad_len) = ctx.aad();
    let mut buf = [0u8; NETKEY_LEN];
    buf.copy_from_slice(&sealed.ciphertext.0[..NETKEY_LEN]);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&sealed.ciphertext.0[NETKEY_LEN..]);
    aead(&shared, &sealed.ephemeral_public, &recipient.dh_public())
        .decrypt_inout_detached(&ctx.nonce().into(), &aad[..aad_len], buf.as_mut_slice().into(), &tag.into())
        .map_err(|_| EnrollError::Unauthentic)?;
    Ok(NetKey(buf))
}

/// The deployment root's word that a key may provision devices
/// (SPEC-NOTES 41). 104 bytes when serialized: key, `not_before`,
/// `not_after` (LE), signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProvisionerCertificate {
    /// The provisioner's Ed25519 public key.
    pub provisioner_key: PublicKey,
    /// First second of validity.
    pub not_before: Timestamp,
    /// Last second of validity.
    pub not_after: Timestamp,
    /// The root's signature over [`ProvisionerCertificate::signed_message`].
    pub signature: Signature,
}

/// Length of the bytes a root signs for a certificate.
const CERT_MSG_LEN: usize = 29 + 32 + 4 + 4;

impl ProvisionerCertificate {
    /// `"krill-bia-provisioner-cert-v1" ‖ key ‖ not_before ‖ not_after`.
    pub fn signed_message(&self) -> [u8; CERT_MSG_LEN] {
        let mut m = [0u8; CERT_MSG_LEN];
        m[..29].copy_from_slice(CERTIFICATE_DOMAIN);
        m[29..61].copy_from_slice(self.provisioner_key.as_bytes());
        m[61..65].copy_from_slice(&self.not_before.to_le_bytes());
        m[65..69].copy_from_slice(&self.not_after.to_le_bytes());
        m
    }

    /// The 104 bytes a provisioner sends along with its response.
    pub fn to_bytes(&self) -> [u8; CERTIFICATE_LEN] {
        let mut b = [0u8; CERTIFICATE_LEN];
        b[..32].copy_from_slice(self.provisioner_key.as_bytes());
        b[32..36].copy_from_slice(&self.not_before.to_le_bytes());
        b[36..40].copy_from_slice(&self.not_after.to_le_bytes());
        b[40..].copy_from_slice(self.signature.as_bytes());
        b
    }

    /// Parses exactly [`CERTIFICATE_LEN`] bytes; `None` for any other length.
    pub fn from_bytes(b: &[u8]) -> Option<ProvisionerCertificate> {
        if b.len() != CERTIFICATE_LEN {
            return None;
        }
        let u32_at = |i: usize| b.get(i..i + 4).and_then(|s| s.try_into().ok()).map(u32::from_le_bytes);
        Some(ProvisionerCertificate {
            provisioner_key: PublicKey::from_slice(b.get(..32)?)?,
            not_before: u32_at(32)?,
            not_after: u32_at(36)?,
            signature: Signature::from_slice(b.get(40..)?)?,
        })
    }
}

/// The root signs `provisioner_key` for `[not_before, not_after]`.
pub fn issue_provisioner_certificate<C: Crypto + ?Sized>(
    root: &C,
    provisioner_key: &PublicKey,
    not_before: Timestamp,
    not_after: Timestamp,
) -> ProvisionerCertificate {
    let mut cert = ProvisionerCertificate {
        provisioner_key: *provisioner_key,
        not_before,
        not_after,
        signature: Signature([0; 64]),
    };
    cert.signature = root.sign(&cert.signed_message());
    cert
}

/// Checks `cert` against the deployment root key at time `now`.
///
/// The window is wrap-aware (u32 seconds wrap in 2106). A device that has
/// no clock yet can only pass the response's own `time_sync`, which the
/// provisioner chooses: for it expiry limits an honest-but-stale
/// provisioner, not a thief of a provisioner key; that needs a new root.
pub fn verify_provisioner_certificate<C: Crypto + ?Sized>(
    crypto: &C,
    root: &PublicKey,
    cert: &ProvisionerCertificate,
    now: Timestamp,
) -> Result<(), EnrollError> {
    if !crypto.verify(root, &cert.signed_message(), &cert.signature) {
        return Err(EnrollError::CertificateForged);
    }
    let span = cert.not_after.wrapping_sub(cert.not_before);
    if span > i32::MAX as u32 {
        return Err(EnrollError::CertificateWindowInvalid);
    }
    if now.wrapping_sub(cert.not_before) <= span {
        Ok(())
    } else if cert.not_before.wrapping_sub(now) <= i32::MAX as u32 {
        Err(EnrollError::CertificateNotYetValid)
    } else {
        Err(EnrollError::CertificateExpired)
    }
}

/// Everything a new device checks on an ENROLLMENT_RESPONSE (or a
/// KEY_ROTATION) before it opens the NetKey: the certificate under `root`
/// at `now`, the header's `sender_id` against the certified key, and the
/// frame's signature over `frame[0..signed_len]`.
pub fn verify_provisioned_frame<C: Crypto + ?Sized>(
    crypto: &C,
    root: &PublicKey,
    cert: &ProvisionerCertificate,
    frame: &[u8],
    signed_len: usize,
    now: Timestamp,
) -> Result<(), EnrollError> {
    verify_provisioner_certificate(crypto, root, cert, now)?;
    let sender = frame.get(4..HEADER_LEN).and_then(DeviceId::from_slice).ok_or(EnrollError::ProvisionerMismatch)?;
    if sender != device_id_of(&cert.provisioner_key) {
        return Err(EnrollError::ProvisionerMismatch);
    }
    verify_frame(crypto, &cert.provisioner_key, frame, signed_len).map_err(EnrollError::Frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::identity::Seed;
    use crate::crypto::sign::{sign_frame, ModeledAuthority, RealCrypto};
    use proptest::prelude::*;

    fn identity(n: u8) -> Identity {
        Identity::from_seed(&Seed([n; 32]))
    }

    fn enrollment_ctx(provisioner: DeviceId, target: DeviceId) -> SealContext {
        SealContext::Enrollment {
            provisioner_id: provisioner,
            target_device_id: target,
            time_sync: 1_707_800_000,
            deployment_zone: 7,
        }
    }

    #[test]
    fn sealed_netkey_opens_only_for_its_device_and_context() {
        let dev = identity(1);
        let other = identity(2);
        let prov = DeviceId([9; 8]);
        let ctx = enrollment_ctx(prov, dev.device_id());
        let nk = NetKey([0x42; 16]);
        let sealed = seal_netkey(&[5; 32], &dev.dh_public(), &nk, &ctx).unwrap();
        assert_eq!(open_netkey(&dev, &sealed, &ctx), Ok(nk.clone()));
        assert_eq!(open_netkey(&other, &sealed, &ctx), Err(EnrollError::Unauthentic));
        let SealContext::Enrollment { provisioner_id, target_device_id, deployment_zone, .. } = ctx else {
            unreachable!()
        };
        let later =
            SealContext::Enrollment { provisioner_id, target_device_id, time_sync: 1_707_800_001, deployment_zone };
        assert_eq!(open_netkey(&dev, &sealed, &later), Err(EnrollError::Unauthentic));
        let rot = SealContext::KeyRotation {
            provisioner_id: prov,
            target_device_id: dev.device_id(),
            key_epoch: 1_707_800_000,
            deadline: 0,
        };
        assert_eq!(open_netkey(&dev, &sealed, &rot), Err(EnrollError::Unauthentic));
        for i in 0..SEALED_NETKEY_LEN {
            let mut bad = sealed;
            bad.ciphertext.0[i] ^= 0x80;
            assert_eq!(open_netkey(&dev, &bad, &ctx), Err(EnrollError::Unauthentic), "byte {i}");
        }
    }

    #[test]
    fn ciphertext_is_chacha20poly1305_under_the_documented_key_and_nonce() {
        let dev = identity(1);
        let ctx = enrollment_ctx(DeviceId([9; 8]), dev.device_id());
        let sealed = seal_netkey(&[5; 32], &dev.dh_public(), &NetKey([0x42; 16]), &ctx).unwrap();
        let shared = crate::crypto::x25519([5; 32], dev.dh_public().0);
        let mut key = [0u8; 32];
        hkdf_sha256(
            b"krill-bia-seal",
            &shared,
            &[b"netkey-v1", &sealed.ephemeral_public.0, &dev.dh_public().0],
            &mut key,
        );
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&dev.device_id().0);
        nonce[8..].copy_from_slice(&1_707_800_000u32.to_le_bytes());
        let mut aad = std::vec![0x61u8];
        aad.extend_from_slice(&[9; 8]);
        aad.extend_from_slice(&dev.device_id().0);
        aad.extend_from_slice(&1_707_800_000u32.to_le_bytes());
        aad.extend_from_slice(&7u16.to_le_bytes());
        let mut buf = [0x42u8; 16];
        let tag = ChaCha20Poly1305::new(&key.into())
            .encrypt_inout_detached(&nonce.into(), &aad, buf.as_mut_slice().into())
            .unwrap();
        assert_eq!(sealed.ciphertext.0[..16], buf);
        assert_eq!(sealed.ciphertext.0[16..], tag[..]);
    }

    #[test]
    fn fresh_ephemerals_give_unrelated_ciphertexts() {
        let dev = identity(1);
        let ctx = enrollment_ctx(DeviceId([9; 8]), dev.device_id());
        let a = seal_netkey(&[5; 32], &dev.dh_public(), &NetKey([0; 16]), &ctx).unwrap();
        let b = seal_netkey(&[6; 32], &dev.dh_public(), &NetKey([0; 16]), &ctx).unwrap();
        assert_ne!(a.ephemeral_public, b.ephemeral_public);
        assert_ne!(a.ciphertext.0[..16], b.ciphertext.0[..16]);
    }

    #[test]
    fn low_order_keys_are_refused() {
        let dev = identity(1);
        let ctx = enrollment_ctx(DeviceId([9; 8]), dev.device_id());
        for low in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert_eq!(seal_netkey(&[5; 32], &Bytes(low), &NetKey([0; 16]), &ctx), Err(EnrollError::LowOrderPoint));
            let sealed = SealedNetKey { ephemeral_public: Bytes(low), ciphertext: Bytes([0; 32]) };
            assert_eq!(open_netkey(&dev, &sealed, &ctx), Err(EnrollError::LowOrderPoint));
        }
    }

    #[test]
    fn certificate_round_trip_and_window() {
        let root = RealCrypto::from_secret_key(&[0xAA; 32]);
        let prov = identity(3);
        let cert = issue_provisioner_certificate(&root, &prov.public_key(), 1000, 2000);
        assert_eq!(ProvisionerCertificate::from_bytes(&cert.to_bytes()), Some(cert));
        assert_eq!(ProvisionerCertificate::from_bytes(&cert.to_bytes()[..103]), None);
        let v = |now| verify_provisioner_certificate(&root, &root.public_key(), &cert, now);
        assert_eq!(v(1000), Ok(()));
        assert_eq!(v(2000), Ok(()));
        assert_eq!(v(999), Err(EnrollError::CertificateNotYetValid));
        assert_eq!(v(2001), Err(EnrollError::CertificateExpired));
        let other_root = RealCrypto::from_secret_key(&[0xBB; 32]);
        assert_eq!(
            verify_provisioner_certificate(&root, &other_root.public_key(), &cert, 1500),
            Err(EnrollError::CertificateForged)
        );
        let mut longer = cert;
        longer.not_after = 3000;
        assert_eq!(
            verify_provisioner_certificate(&root, &root.public_key(), &longer, 1500),
            Err(EnrollError::CertificateForged)
        );
    }

    #[test]
    fn certificate_window_wraps_in_2106() {
        let root = ModeledAuthority::new(&[1; 32]).crypto_for(&identity(9));
        let cert = issue_provisioner_certificate(&root, &identity(3).public_key(), u32::MAX - 10, 20);
        let v = |now| verify_provisioner_certificate(&root, &root.public_key(), &cert, now);
        assert_eq!(v(u32::MAX), Ok(()));
        assert_eq!(v(5), Ok(()));
        assert_eq!(v(21), Err(EnrollError::CertificateExpired));
        assert_eq!(v(u32::MAX - 11), Err(EnrollError::CertificateNotYetValid));
        let inverted = issue_provisioner_certificate(&root, &identity(3).public_key(), 2000, 1000);
        assert_eq!(
            verify_provisioner_certificate(&root, &root.public_key(), &inverted, 1500),
            Err(EnrollError::CertificateWindowInvalid)
        );
    }

    #[test]
    fn provisioned_frame_needs_certificate_sender_and_signature() {
        let root = RealCrypto::from_secret_key(&[0xAA; 32]);
        let prov_id = identity(3);
        let prov = RealCrypto::new(&prov_id);
        let cert = issue_provisioner_certificate(&root, &prov.public_key(), 1000, 2000);
        let mut frame = [0u8; 20 + 64];
        frame[4..12].copy_from_slice(&prov.device_id().0);
        sign_frame(&prov, &mut frame, 20).unwrap();
        let rk = root.public_key();
        assert_eq!(verify_provisioned_frame(&root, &rk, &cert, &frame, 20, 1500), Ok(()));
        assert_eq!(verify_provisioned_frame(&root, &rk, &cert, &frame, 20, 2500), Err(EnrollError::CertificateExpired));
        // A rogue node signs its own response: its key is not certified.
        let rogue = RealCrypto::new(&identity(4));
        let mut forged = frame;
        forged[4..12].copy_from_slice(&rogue.device_id().0);
        sign_frame(&rogue, &mut forged, 20).unwrap();
        assert_eq!(
            verify_provisioned_frame(&root, &rk, &cert, &forged, 20, 1500),
            Err(EnrollError::ProvisionerMismatch)
        );
        // ... nor does claiming the provisioner's id help it.
        forged[4..12].copy_from_slice(&prov.device_id().0);
        sign_frame(&rogue, &mut forged, 20).unwrap();
        assert_eq!(
            verify_provisioned_frame(&root, &rk, &cert, &forged, 20, 1500),
            Err(EnrollError::Frame(FrameSigError::BadSignature))
        );
        assert_eq!(
            verify_provisioned_frame(&root, &rk, &cert, &frame[..8], 20, 1500),
            Err(EnrollError::ProvisionerMismatch)
        );
    }

    proptest! {
        #[test]
        fn seal_open_round_trips(eph in any::<[u8; 32]>(), key in any::<[u8; 16]>(), seed in any::<u8>(), epoch in any::<u32>()) {
            let dev = identity(seed);
            let ctx = SealContext::KeyRotation {
                provisioner_id: DeviceId([1; 8]), target_device_id: dev.device_id(), key_epoch: epoch, deadline: epoch.wrapping_add(86_400),
            };
            let sealed = seal_netkey(&eph, &dev.dh_public(), &NetKey(key), &ctx).unwrap();
            prop_assert_eq!(open_netkey(&dev, &sealed, &ctx), Ok(NetKey(key)));
        }
    }
}
