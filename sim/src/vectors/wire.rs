//! Wire-format vectors (ES-2, ES-8.6, ES-13.2, ES-16.4): decode hex into
//! fields (or an exact error) and encode fields into hex, for every
//! header-framed message, through `SignedFrame` so the version-2 VACCINE
//! (signature before its unsigned tail) takes its own path.

use super::Outcome;
use krill_core::types::{DeviceId, Signature};
use krill_core::wire::{Body, FrameRepr, SignedFrame, VaccineV2Frame, Version, WireError};
use serde::Deserialize;

/// A case for this module. Boxed: a body holds up to 160 chunk bytes.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// Bytes in, fields (or an error) out; a frame that decodes must also
    /// re-encode to the same bytes.
    Decode(Box<DecodeCase>),
    /// Fields in, bytes (or an error) out.
    Encode(Box<EncodeCase>),
}

/// Decode `hex` (+ 64 × `signature_fill` + `tail`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeCase {
    /// The frame's first bytes in hex; whitespace is ignored.
    pub hex: String,
    /// If set, 64 signature bytes of this value follow `hex`.
    #[serde(default)]
    pub signature_fill: Option<u8>,
    /// Hex appended after the signature (the VACCINE v2 tail).
    #[serde(default)]
    pub tail: Option<String>,
    /// What decoding must give.
    pub expect: DecodeExpect,
}

/// Expected result of a decode.
#[derive(Debug, Deserialize)]
pub enum DecodeExpect {
    /// It decodes to these fields.
    Frame(ExpectFrame),
    /// It is refused with exactly this error.
    Error(ExpectError),
}

/// Expected fields of a decoded frame.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectFrame {
    /// Protocol version.
    pub version: Version,
    /// Header sender.
    pub sender_id: DeviceId,
    /// The body, as `krill decode` prints it.
    pub body: Body,
    /// Frame length.
    pub total_len: usize,
    /// Length of the signed range `bytes[0..signed_len]`.
    pub signed_len: usize,
}

/// Encode fields with a signature of 64 × `signature_fill`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeCase {
    /// Protocol version.
    pub version: Version,
    /// Header sender.
    pub sender_id: DeviceId,
    /// The body.
    pub body: Body,
    /// Signature byte value (default 0x5A).
    #[serde(default = "default_fill")]
    pub signature_fill: u8,
    /// What encoding must give.
    pub expect: EncodeExpect,
}

fn default_fill() -> u8 {
    0x5A
}

/// Expected result of an encode.
#[derive(Debug, Deserialize)]
pub enum EncodeExpect {
    /// These bytes.
    Bytes {
        /// The signed range in hex (whitespace ignored).
        signed_hex: String,
        /// Hex after the signature (the VACCINE v2 tail).
        #[serde(default)]
        tail: Option<String>,
        /// Frame length.
        total_len: usize,
    },
    /// Refused with exactly this error.
    Error(ExpectError),
}

/// `WireError` with owned strings, so RON can name the field.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub enum ExpectError {
    /// See `WireError::TooShort`.
    TooShort {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// See `WireError::LengthMismatch`.
    LengthMismatch {
        /// Layout length.
        expected: usize,
        /// Length present.
        got: usize,
    },
    /// See `WireError::BadMagic`; the two bytes.
    BadMagic(u8, u8),
    /// See `WireError::UnknownVersion`.
    UnknownVersion(u8),
    /// See `WireError::UnknownType`.
    UnknownType(u8),
    /// See `WireError::BadCrc`.
    BadCrc {
        /// Computed.
        computed: u8,
        /// Carried.
        carried: u8,
    },
    /// See `WireError::InvalidField`.
    InvalidField {
        /// Field name.
        field: String,
        /// Value.
        value: u32,
    },
    /// See `WireError::VersionMismatch`.
    VersionMismatch {
        /// Type byte.
        msg_type: u8,
        /// Version byte.
        version: u8,
    },
    /// See `WireError::BufferTooSmall`.
    BufferTooSmall {
        /// Needed.
        needed: usize,
        /// Available.
        got: usize,
    },
}

impl From<WireError> for ExpectError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::TooShort { needed, got } => ExpectError::TooShort { needed, got },
            WireError::LengthMismatch { expected, got } => ExpectError::LengthMismatch { expected, got },
            WireError::BadMagic([a, b]) => ExpectError::BadMagic(a, b),
            WireError::UnknownVersion(v) => ExpectError::UnknownVersion(v),
            WireError::UnknownType(t) => ExpectError::UnknownType(t),
            WireError::BadCrc { computed, carried } => ExpectError::BadCrc { computed, carried },
            WireError::InvalidField { field, value } => ExpectError::InvalidField { field: field.to_owned(), value },
            WireError::VersionMismatch { msg_type, version } => ExpectError::VersionMismatch { msg_type, version },
            WireError::BufferTooSmall { needed, got } => ExpectError::BufferTooSmall { needed, got },
        }
    }
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&clean).map_err(|e| format!("bad hex {s:?}: {e}"))
}

/// The flat view of either frame shape.
struct Flat {
    version: Version,
    sender_id: DeviceId,
    body: Body,
    signature: Signature,
}

fn flatten(f: &SignedFrame) -> Flat {
    match f {
        SignedFrame::Framed(r) => {
            Flat { version: r.version, sender_id: r.sender_id, body: r.body.clone(), signature: r.signature }
        }
        SignedFrame::VaccineV2(v) => {
            Flat { version: Version::V2, sender_id: v.sender_id, body: Body::Vaccine(v.body), signature: v.signature }
        }
    }
}

fn build(version: Version, sender_id: DeviceId, body: &Body, signature: Signature) -> SignedFrame {
    match (version, body) {
        (Version::V2, Body::Vaccine(v)) => SignedFrame::VaccineV2(VaccineV2Frame { sender_id, body: *v, signature }),
        _ => SignedFrame::Framed(FrameRepr { version, sender_id, body: body.clone(), signature }),
    }
}

fn decode(c: &DecodeCase, o: &mut Outcome) -> Result<(), String> {
    let mut bytes = unhex(&c.hex)?;
    if let Some(fill) = c.signature_fill {
        bytes.extend_from_slice(&[fill; 64]);
    }
    if let Some(t) = &c.tail {
        bytes.extend(unhex(t)?);
    }
    o.value("input_len", bytes.len());
    let parsed = SignedFrame::parse(&bytes);
    match (&c.expect, parsed) {
        (DecodeExpect::Error(want), Err(e)) => o.exact("error", ExpectError::from(e), want.clone()),
        (DecodeExpect::Error(want), Ok(f)) => o.fail(format!("expected error {want:?}, decoded {f:?}")),
        (DecodeExpect::Frame(_), Err(e)) => o.fail(format!("expected a frame, got error {e}")),
        (DecodeExpect::Frame(want), Ok(f)) => {
            let flat = flatten(&f);
            o.exact("version", flat.version, want.version);
            o.exact("sender_id", flat.sender_id, want.sender_id);
            o.exact("body", &flat.body, &want.body);
            o.exact("total_len", f.buffer_len(), want.total_len);
            o.exact("signed_len", f.signed_len(), want.signed_len);
            if let Some(fill) = c.signature_fill {
                o.exact("signature", flat.signature, Signature([fill; 64]));
            }
            let mut out = [0u8; 512];
            match f.emit(&mut out) {
                Ok(n) => o.exact("re-encoded", hex::encode(&out[..n]), hex::encode(&bytes)),
                Err(e) => o.fail(format!("re-encoding failed: {e}")),
            }
        }
    }
    Ok(())
}

fn encode(c: &EncodeCase, o: &mut Outcome) -> Result<(), String> {
    let f = build(c.version, c.sender_id, &c.body, Signature([c.signature_fill; 64]));
    let mut out = [0u8; 512];
    match (&c.expect, f.emit(&mut out)) {
        (EncodeExpect::Error(want), Err(e)) => o.exact("error", ExpectError::from(e), want.clone()),
        (EncodeExpect::Error(want), Ok(n)) => {
            o.fail(format!("expected error {want:?}, encoded {}", hex::encode(&out[..n])))
        }
        (EncodeExpect::Bytes { .. }, Err(e)) => o.fail(format!("expected bytes, got error {e}")),
        (EncodeExpect::Bytes { signed_hex, tail, total_len }, Ok(n)) => {
            let signed = f.signed_len().min(n);
            o.exact("total_len", n, *total_len);
            o.exact("signed_hex", hex::encode(&out[..signed]), hex::encode(unhex(signed_hex)?));
            let sig_end = (signed + 64).min(n);
            o.exact("signature", hex::encode(&out[signed..sig_end]), hex::encode([c.signature_fill; 64]));
            let want_tail = match tail {
                Some(t) => unhex(t)?,
                None => Vec::new(),
            };
            o.exact("tail", hex::encode(&out[sig_end..n]), hex::encode(want_tail));
            match SignedFrame::parse(&out[..n]) {
                Ok(back) => o.exact("decoded_back", back, f),
                Err(e) => o.fail(format!("encoded bytes do not decode: {e}")),
            }
        }
    }
    Ok(())
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut o = Outcome::default();
    let r = match c {
        Case::Decode(d) => decode(d, &mut o),
        Case::Encode(e) => encode(e, &mut o),
    };
    if let Err(why) = r {
        o.fail(why);
    }
    o
}
