//! Vectors for the Dust LoRa frames (ES-2.3, ES-12.4, SPEC-NOTES 21) and the
//! ES-6.1 TraceBatch with its ES-12.3 TCP framing (`core/vectors/dust.ron`).
//!
//! Expectations are `Ok(repr)` or `Err("<WireError as Debug>")`. Accepted
//! frames are also emitted again and must give back the same bytes. Large
//! batches are described by a trace count and built here by an independent
//! byte-level encoder, so a 257-trace frame can be tested at all.

use super::Outcome;
use krill_core::types::{DeviceId, QuantityType};
use krill_core::wire::batch::{decode_length_prefixed, TraceBatch, MAX_BATCH_LEN};
use krill_core::wire::dust::{crc8, DustDownlink, DustUplink, DustUplinkPacket};
use krill_core::wire::WireError;
use serde::Deserialize;
use std::fmt::Debug;

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// CRC-8/SMBUS of some bytes.
    Crc8(Crc8Case),
    /// Parse a Dust uplink.
    Uplink(UplinkCase),
    /// Parse a Dust downlink.
    Downlink(DownlinkCase),
    /// Parse a TraceBatch given in hex.
    Batch(BatchCase),
    /// Parse a TraceBatch built from a trace count.
    SyntheticBatch(SyntheticBatchCase),
    /// Split a length-prefixed batch off a TCP stream.
    LengthPrefix(LengthPrefixCase),
}

/// CRC input and value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crc8Case {
    /// Input bytes in hex (may be empty).
    pub hex: String,
    /// Expected CRC.
    pub want: u8,
}

/// A Dust uplink and its decoding.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkCase {
    /// The LoRa payload in hex.
    pub hex: String,
    /// The repr, or the error's `Debug` text.
    pub want: Result<DustUplink, String>,
    /// CRC-8 computed over bytes[0..7] of a v1 frame, even a rejected one.
    #[serde(default)]
    pub computed_crc: Option<u8>,
    /// Length of the MAC-covered prefix of a v2 frame.
    #[serde(default)]
    pub mac_input_len: Option<usize>,
}

/// A Dust downlink and its decoding.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownlinkCase {
    /// The LoRa payload in hex.
    pub hex: String,
    /// The repr, or the error's `Debug` text.
    pub want: Result<DustDownlink, String>,
    /// Length of the MAC-covered prefix of a v2 frame.
    #[serde(default)]
    pub mac_input_len: Option<usize>,
}

/// A TraceBatch frame in hex.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchCase {
    /// The frame in hex.
    pub hex: String,
    /// The repr, or the error's `Debug` text.
    pub want: Result<Box<TraceBatch>, String>,
    /// Length of the signed range.
    #[serde(default)]
    pub signed_len: Option<usize>,
}

/// A TraceBatch of `traces` generated traces.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticBatchCase {
    /// Traces actually present in the frame.
    pub traces: usize,
    /// `trace_count` written into the frame; defaults to `traces`.
    #[serde(default)]
    pub declared_count: Option<u16>,
    /// Expected frame length when accepted, or the error's `Debug` text.
    pub want: Result<usize, String>,
}

/// What splitting a stream should give.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub enum PrefixWant {
    /// A whole message, consuming this many bytes (prefix included).
    Complete(usize),
    /// Not enough bytes yet.
    NeedMore,
    /// The prefix is refused, with the error's `Debug` text.
    Error(String),
}

/// A stream of a length prefix followed by `available` payload bytes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthPrefixCase {
    /// The announced length, written as 4 LE bytes (omitted when
    /// `prefix_bytes` < 4).
    pub prefix: u32,
    /// How many prefix bytes have arrived (default 4).
    #[serde(default)]
    pub prefix_bytes: Option<usize>,
    /// Payload bytes present after the prefix.
    pub available: usize,
    /// Expected result.
    pub want: PrefixWant,
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut o = Outcome::default();
    match c {
        Case::Crc8(c) => {
            if let Some(b) = hex_bytes(&c.hex, &mut o) {
                o.exact("crc8", crc8(&b), c.want);
            }
        }
        Case::Uplink(c) => {
            let Some(b) = hex_bytes(&c.hex, &mut o) else { return o };
            let got = DustUplink::parse(&b);
            check_result(&mut o, "uplink", &got, &c.want);
            if let Ok(p) = DustUplinkPacket::new_checked(&b[..]) {
                if let Some(want) = c.computed_crc {
                    o.exact("computed_crc", p.computed_crc(), Some(want));
                }
                if let Some(want) = c.mac_input_len {
                    o.exact("mac_input_len", p.mac_input().map(<[u8]>::len), Some(want));
                }
            }
            if let Ok(u) = got {
                let mut out = [0u8; 64];
                reemit(&mut o, u.emit(&mut out).map(|n| &out[..n]), &b);
            }
        }
        Case::Downlink(c) => {
            let Some(b) = hex_bytes(&c.hex, &mut o) else { return o };
            let got = DustDownlink::parse(&b);
            check_result(&mut o, "downlink", &got, &c.want);
            if let Ok(d) = got {
                if let Some(want) = c.mac_input_len {
                    o.exact("mac_input_len", d.mac_input_len(), Some(want));
                }
                let mut out = [0u8; 64];
                reemit(&mut o, d.emit(&mut out).map(|n| &out[..n]), &b);
            }
        }
        Case::Batch(c) => {
            let Some(b) = hex_bytes(&c.hex, &mut o) else { return o };
            let got = TraceBatch::<256>::parse(&b).map(Box::new);
            check_result(&mut o, "batch", &got, &c.want);
            if let Ok(batch) = got {
                if let Some(want) = c.signed_len {
                    o.exact("signed_len", batch.signed_len(), want);
                }
                let mut out = vec![0u8; MAX_BATCH_LEN];
                reemit(&mut o, batch.emit(&mut out).map(|n| &out[..n]), &b);
            }
        }
        Case::SyntheticBatch(c) => {
            let b = synthetic_batch(c.traces, c.declared_count.unwrap_or(c.traces as u16));
            let got = TraceBatch::<256>::parse(&b);
            let len = got.as_ref().map(|_| b.len()).map_err(|e| format!("{e:?}"));
            o.exact("result", len, c.want.clone());
            if let Ok(batch) = got {
                o.exact("trace_count", batch.traces.len(), c.traces);
                let mut out = vec![0u8; MAX_BATCH_LEN];
                reemit(&mut o, batch.emit(&mut out).map(|n| &out[..n]), &b);
            }
        }
        Case::LengthPrefix(c) => {
            let mut stream = c.prefix.to_le_bytes()[..c.prefix_bytes.unwrap_or(4).min(4)].to_vec();
            if stream.len() == 4 {
                stream.resize(4 + c.available, 0xA5);
            }
            let got = match decode_length_prefixed(&stream) {
                Ok(Some((payload, consumed))) => {
                    o.exact("payload_len", payload.len(), c.prefix as usize);
                    PrefixWant::Complete(consumed)
                }
                Ok(None) => PrefixWant::NeedMore,
                Err(e) => PrefixWant::Error(format!("{e:?}")),
            };
            o.exact("split", got, c.want.clone());
        }
    }
    o
}

/// Checks that emitting an accepted frame gives back the input bytes.
fn reemit(o: &mut Outcome, emitted: Result<&[u8], WireError>, input: &[u8]) {
    o.exact("re-emitted identical", emitted.map(|e| e == input), Ok(true));
}

fn hex_bytes(text: &str, o: &mut Outcome) -> Option<Vec<u8>> {
    if text.trim().is_empty() {
        return Some(Vec::new());
    }
    match crate::codec::parse_hex(text) {
        Ok(b) => Some(b),
        Err(e) => {
            o.fail(format!("case data: {e}"));
            None
        }
    }
}

fn check_result<T: PartialEq + Debug + Clone>(
    o: &mut Outcome,
    name: &str,
    got: &Result<T, WireError>,
    want: &Result<T, String>,
) {
    let got = got.clone().map_err(|e| format!("{e:?}"));
    o.exact(name, got, want.clone());
}

/// An independent byte-level TraceBatch encoder (ES-6.1 field order, our
/// header framing), able to write any `trace_count`.
fn synthetic_batch(traces: usize, declared: u16) -> Vec<u8> {
    let mut b = vec![0x4B, 0x42, 0x02, 0x71];
    b.extend(DeviceId([0x18, 0x07, 0xF6, 0xE5, 0xD4, 0xC3, 0xB2, 0xA1]).0);
    b.extend(1u32.to_le_bytes());
    b.extend(1_707_800_000u32.to_le_bytes());
    b.extend(1_707_800_059u32.to_le_bytes());
    b.extend(declared.to_le_bytes());
    for i in 0..traces {
        b.extend([(i & 0xFF) as u8, (i >> 8) as u8, 0, 0, 0, 0, 0, 0xD0]);
        b.push(QuantityType::Humidity.to_u8());
        b.extend((4000 + i as i16).to_le_bytes());
        b.extend([12, 200, (i % 8) as u8]);
    }
    b.extend((traces as u16).to_le_bytes());
    b.extend((traces as u16).to_le_bytes());
    b.extend(0u16.to_le_bytes());
    b.push(0);
    b.extend(0x3C00u16.to_le_bytes());
    b.extend([0x5A; 64]);
    b
}
