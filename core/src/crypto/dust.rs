//! Dust frame authentication (ES-13.3), the MAC part of SPEC-NOTES 21:
//! AES-128-CMAC (RFC 4493, NIST SP 800-38B) under the node's factory
//! 128-bit key, truncated to its first 4 bytes.
//!
//! The wire layer (`wire::dust`) says which bytes a v2 Dust frame's MAC
//! covers (`mac_input`) and where the 4 bytes go (`set_mac`); this module
//! computes and checks them. A 32-bit tag gives a forger one chance in 2³²
//! per frame, and LoRa's duty cycle allows an attacker at most a few
//! thousand frames a day; the frame counter under the MAC, checked by the
//! gateway, stops replays of genuine frames.

use super::{ct_eq, Crypto};
use crate::types::{DeviceId, PublicKey, Signature};
use crate::wire::SIGNATURE_LEN;
use aes::Aes128;
use cmac::{Cmac, KeyInit, Mac};

/// Length of a Dust node's AES-128 key.
pub const DUST_KEY_LEN: usize = 16;
/// Length of the truncated MAC on the air.
pub const DUST_MAC_LEN: usize = 4;

/// The full 16-byte AES-128-CMAC of `msg` under `key`.
pub fn aes_cmac(key: &[u8; DUST_KEY_LEN], msg: &[u8]) -> [u8; 16] {
    let mut m = <Cmac<Aes128> as KeyInit>::new(key.into());
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// The first 4 bytes of the AES-128-CMAC of `bytes`: the MAC a v2 Dust
/// frame (uplink or downlink) carries.
pub fn dust_mac(key: &[u8; DUST_KEY_LEN], bytes: &[u8]) -> [u8; DUST_MAC_LEN] {
    let full = aes_cmac(key, bytes);
    [full[0], full[1], full[2], full[3]]
}

/// True iff `mac` is the truncated MAC of `bytes`, compared without an
/// early exit.
pub fn dust_mac_verify(key: &[u8; DUST_KEY_LEN], bytes: &[u8], mac: &[u8; DUST_MAC_LEN]) -> bool {
    ct_eq(&dust_mac(key, bytes), mac)
}

/// A Dust node's [`Crypto`]: the device id its gateway registered and no
/// signing key (ES-12.4 step 6: "Dust has no Ed25519"; its uplinks carry
/// the AES-CMAC above instead). The Dust role never signs or verifies a
/// frame, so `sign` returns an all-zero signature that verifies nowhere and
/// `verify` refuses everything; and it cannot enroll, so a node over this
/// type drops the whole enrollment path at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DustIdentity(pub DeviceId);

impl Crypto for DustIdentity {
    fn device_id(&self) -> DeviceId {
        self.0
    }
    fn public_key(&self) -> PublicKey {
        PublicKey::default()
    }
    fn sign(&self, _msg: &[u8]) -> Signature {
        Signature([0; SIGNATURE_LEN])
    }
    fn verify(&self, _signer: &PublicKey, _msg: &[u8], _sig: &Signature) -> bool {
        false
    }
    #[inline]
    fn can_enroll(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K: [u8; 16] =
        [0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c];
    const M: [u8; 64] = [
        0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a, 0xae, 0x2d,
        0x8a, 0x57, 0x1e, 0x03, 0xac, 0x9c, 0x9e, 0xb7, 0x6f, 0xac, 0x45, 0xaf, 0x8e, 0x51, 0x30, 0xc8, 0x1c, 0x46,
        0xa3, 0x5c, 0xe4, 0x11, 0xe5, 0xfb, 0xc1, 0x19, 0x1a, 0x0a, 0x52, 0xef, 0xf6, 0x9f, 0x24, 0x45, 0xdf, 0x4f,
        0x9b, 0x17, 0xad, 0x2b, 0x41, 0x7b, 0xe6, 0x6c, 0x37, 0x10,
    ];

    #[test]
    fn rfc4493_examples() {
        let cases: [(usize, [u8; 16]); 4] = [
            (0, [0xbb, 0x1d, 0x69, 0x29, 0xe9, 0x59, 0x37, 0x28, 0x7f, 0xa3, 0x7d, 0x12, 0x9b, 0x75, 0x67, 0x46]),
            (16, [0x07, 0x0a, 0x16, 0xb4, 0x6b, 0x4d, 0x41, 0x44, 0xf7, 0x9b, 0xdd, 0x9d, 0xd0, 0x4a, 0x28, 0x7c]),
            (40, [0xdf, 0xa6, 0x67, 0x47, 0xde, 0x9a, 0xe6, 0x30, 0x30, 0xca, 0x32, 0x61, 0x14, 0x97, 0xc8, 0x27]),
            (64, [0x51, 0xf0, 0xbe, 0xbf, 0x7e, 0x3b, 0x9d, 0x92, 0xfc, 0x49, 0x74, 0x17, 0x79, 0x36, 0x3c, 0xfe]),
        ];
        for (len, tag) in cases {
            assert_eq!(aes_cmac(&K, &M[..len]), tag, "{len}-byte message");
            assert_eq!(dust_mac(&K, &M[..len]), [tag[0], tag[1], tag[2], tag[3]]);
        }
    }

    #[test]
    fn verify_refuses_any_single_change() {
        let frame = [0x02, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        let mac = dust_mac(&K, &frame);
        assert!(dust_mac_verify(&K, &frame, &mac));
        for i in 0..4 {
            let mut bad = mac;
            bad[i] ^= 1;
            assert!(!dust_mac_verify(&K, &frame, &bad));
        }
        let mut key2 = K;
        key2[15] ^= 1;
        assert!(!dust_mac_verify(&key2, &frame, &mac));
    }

    proptest! {
        #[test]
        fn a_flipped_message_bit_changes_the_full_tag(msg in proptest::collection::vec(any::<u8>(), 1..51), bit in any::<usize>()) {
            let mut m2 = msg.clone();
            let b = bit % (8 * m2.len());
            m2[b / 8] ^= 1 << (b % 8);
            prop_assert_ne!(aes_cmac(&K, &msg), aes_cmac(&K, &m2));
            prop_assert!(dust_mac_verify(&K, &msg, &dust_mac(&K, &msg)));
        }
    }
}
