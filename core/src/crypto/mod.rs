//! Cryptographic identity, signatures and enrollment (ES-13, ES-2.9),
//! resolving SPEC-NOTES 9 (fuzzy extractor), 21 (Dust MAC), 32 (PUF_FAIL
//! death certificate), 41 (enrollment trust anchor) and the NetKey part of 37.
//!
//! Sans-IO like the rest of the core: no RNG and no clock in here. Seeds,
//! ephemeral secrets and times are arguments.
//!
//! * [`identity`]: seed `S` → Ed25519 signing key, `device_id`,
//!   `network_auth_key`, X25519 key (ES-13.1 step 3).
//! * [`fuzzy`]: the code-offset fuzzy extractor over the 4096-byte SRAM PUF
//!   response, with BER monitoring (ES-13.1 step 2, SPEC-NOTES 9).
//! * [`sign`]: the [`Crypto`] trait with [`RealCrypto`] (Ed25519) and
//!   [`ModeledCrypto`] (a keyed BLAKE2s tag for large simulations), frame
//!   signing over a signed byte range, and the pre-signed death certificate.
//! * [`enroll`]: provisioner certificates from a deployment root key and the
//!   sealed NetKey of ENROLLMENT_RESPONSE / KEY_ROTATION (ES-13.2).
//! * [`dust`]: the truncated AES-128-CMAC of Dust frames (ES-13.3) and
//!   [`DustIdentity`], the keyless [`Crypto`] of a Dust node.
//!
//! Decisions and their tests: `docs/spec-deviations.md`.

pub mod dust;
pub mod enroll;
pub mod fuzzy;
pub mod identity;
pub mod sign;

pub use dust::{aes_cmac, dust_mac, dust_mac_verify, DustIdentity, DUST_KEY_LEN, DUST_MAC_LEN};
pub use enroll::{
    issue_provisioner_certificate, open_netkey, seal_netkey, verify_provisioned_frame, verify_provisioner_certificate,
    DhPublicKey, EnrollError, NetKey, ProvisionerCertificate, SealContext, SealedNetKey, CERTIFICATE_LEN, NETKEY_LEN,
    SEALED_NETKEY_LEN,
};
pub use fuzzy::{
    enroll as enroll_puf, reconstruct as reconstruct_puf, PufError, PufHealth, Reconstruction, PUF_BITS, PUF_BYTES,
};
pub use identity::{device_id_of, pubkey_hash, Identity, Seed, SEED_LEN};
pub use sign::{
    presign_death_certificate, sign_frame, verify_frame, Crypto, FrameSigError, ModeledAuthority, ModeledCrypto,
    RealCrypto, DEATH_CERTIFICATE_LEN,
};

use hkdf::Hkdf;
use sha2::Sha256;

/// HKDF-SHA256 (RFC 5869) of `ikm` into `out`; `info` parts are concatenated.
///
/// `out` is at most 32 bytes everywhere in this module, far below HKDF's
/// 255 × 32 limit, so the expand cannot fail; a longer request leaves `out`
/// zeroed rather than panicking.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    if hk.expand_multi_info(info, out).is_err() {
        out.fill(0);
    }
}

/// BLAKE2s-256 of `data` (the spec's `hash32`).
pub fn blake2s256(data: &[u8]) -> [u8; 32] {
    use blake2::{Blake2s256, Digest};
    Blake2s256::digest(data).into()
}

/// X25519 (RFC 7748) of secret `k` (clamped here) and u-coordinate `u`.
pub fn x25519(k: [u8; 32], u: [u8; 32]) -> [u8; 32] {
    curve25519_dalek::MontgomeryPoint(u).mul_clamped(k).to_bytes()
}

/// The X25519 public key of secret `k`: `x25519(k, 9)`.
pub fn x25519_base(k: [u8; 32]) -> [u8; 32] {
    curve25519_dalek::MontgomeryPoint::mul_base_clamped(k).to_bytes()
}

/// Equality of two byte strings whose running time depends only on their
/// length, not on where they first differ (tags and MACs).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    core::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> std::vec::Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn hkdf_rfc5869_case_1() {
        let mut okm = [0u8; 42];
        hkdf_sha256(&hex("000102030405060708090a0b0c"), &[0x0b; 22], &[&hex("f0f1f2f3f4f5f6f7f8f9")], &mut okm);
        assert_eq!(
            okm.as_slice(),
            hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }

    #[test]
    fn hkdf_info_parts_concatenate() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        hkdf_sha256(b"s", b"k", &[b"ab", b"cd"], &mut a);
        hkdf_sha256(b"s", b"k", &[b"abcd"], &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn hkdf_overlong_output_is_zeroed_not_panicking() {
        let mut out = [0xAAu8; 255 * 32 + 1];
        hkdf_sha256(b"s", b"k", &[b""], &mut out);
        assert!(out.iter().all(|&b| b == 0));
    }

    #[test]
    fn blake2s_known_answers() {
        assert_eq!(blake2s256(b"").as_slice(), hex("69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9"));
        assert_eq!(
            blake2s256(b"abc").as_slice(),
            hex("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
        );
    }

    #[test]
    fn x25519_rfc7748_section_6_1() {
        let a: [u8; 32] = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a").try_into().unwrap();
        let b: [u8; 32] = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb").try_into().unwrap();
        let pa = x25519_base(a);
        let pb = x25519_base(b);
        assert_eq!(pa.as_slice(), hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
        assert_eq!(pb.as_slice(), hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"));
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(x25519(a, pb).as_slice(), shared);
        assert_eq!(x25519(b, pa).as_slice(), shared);
        let mut nine = [0u8; 32];
        nine[0] = 9;
        assert_eq!(x25519(a, nine), pa);
    }

    #[test]
    fn ct_eq_compares_whole_strings() {
        assert!(ct_eq(b"abcd", b"abcd"));
        assert!(!ct_eq(b"abcd", b"abce"));
        assert!(!ct_eq(b"abcd", b"xbcd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }
}
