//! Shared fixtures of the wire tests: a sender, TV13's timestamp, frame
//! builders and the deconstruct/parse/construct/emit check every body runs.

use super::{Body, Frame, FrameRepr, Version};
use crate::types::{DeviceId, Signature};
use std::vec::Vec;

/// TV13's sender, in wire order.
pub const SENDER: [u8; 8] = [0x18, 0x07, 0xF6, 0xE5, 0xD4, 0xC3, 0xB2, 0xA1];
/// 1707800000 little-endian.
pub const TS: [u8; 4] = [0xC0, 0xF5, 0xCA, 0x65];
/// TV13's timestamp.
pub const T0: u32 = 1_707_800_000;

/// Header (from [`SENDER`]) + body parts + a 0x5A-filled signature.
pub fn bytes(version: u8, t: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut b = std::vec![0x4B, 0x42, version, t];
    b.extend_from_slice(&SENDER);
    for p in parts {
        b.extend_from_slice(p);
    }
    b.extend_from_slice(&[0x5A; 64]);
    b
}

/// [`bytes`] with a single body slice.
pub fn frame_bytes(version: u8, t: u8, body: &[u8]) -> Vec<u8> {
    bytes(version, t, &[body])
}

/// The repr [`bytes`] should parse into.
pub fn repr(version: Version, body: Body) -> FrameRepr {
    FrameRepr { version, sender_id: DeviceId(SENDER), body, signature: Signature([0x5A; 64]) }
}

/// Deconstruct (view), parse, construct and emit in one go.
pub fn check(b: &[u8], r: &FrameRepr, signed: usize) {
    let f = Frame::new_checked(b).unwrap();
    assert_eq!(f.signed_bytes().len(), signed);
    assert_eq!(f.header().msg_type, r.body.msg_type());
    assert_eq!(FrameRepr::parse(b), Ok(r.clone()));
    let mut out = [0u8; 256];
    let n = r.emit(&mut out).unwrap();
    assert_eq!(&out[..n], b);
    assert_eq!((r.buffer_len(), r.signed_len()), (b.len(), signed));
}
