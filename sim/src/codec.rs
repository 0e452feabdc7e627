//! The frame codec behind `krill decode` and `krill encode`.
//!
//! One RON format covers every frame: [`AnyFrame`], whose variants hold the
//! core's reprs with their own field names. `decode` prints the repr as
//! pretty RON preceded by `//` comment lines (header bytes, lengths, signed
//! range, CRC check), so its output saved to a file is valid input for
//! `encode`, which gives back the same bytes.

use krill_core::types::{MAGIC_BYTES, PROTOCOL_VERSION_2};
use krill_core::wire::batch::{TraceBatch, MAX_BATCH_LEN};
use krill_core::wire::dust::{
    DustDownlink, DustUplink, DustUplinkPacket, DOWNLINK_REJECTION, DOWNLINK_VACCINE, MAC_LEN, UPLINK_V1_LEN,
};
use krill_core::wire::immune::VaccineV2Frame;
use krill_core::wire::{FrameRepr, Header, MessageType, Version, WireError, HEADER_LEN, SIGNATURE_LEN};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Any frame `krill` can decode or encode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnyFrame {
    /// A header-framed mesh message (ES-2), signed by its sender.
    Mesh(Box<FrameRepr>),
    /// A version-2 VACCINE: signature before the relays' mutable tail
    /// (hops, strength), so it is not laid out like other mesh frames.
    MeshVaccineV2(Box<VaccineV2Frame>),
    /// An ES-6.1 TraceBatch (header type 0x71).
    Batch(Box<TraceBatch>),
    /// A Dust → gateway LoRa uplink (ES-2.3 compressed variant).
    DustUplink(DustUplink),
    /// A gateway → Dust LoRa downlink (ES-12.4).
    DustDownlink(DustDownlink),
}

/// Which decoder to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Tell from the length and first bytes (rules in `detect`).
    Auto,
    /// Header-framed mesh message.
    Mesh,
    /// TraceBatch.
    Batch,
    /// Dust uplink (v1 or v2).
    DustUplink,
    /// Dust downlink (REJECTION_NOTICE or VACCINE, v1 or v2).
    DustDownlink,
}

/// Why a frame could not be decoded or encoded. Each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The input is not hex.
    #[error("bad hex: {0}")]
    Hex(String),
    /// The bytes are not a valid frame of the kind.
    #[error("{0}")]
    Wire(WireError),
    /// Auto-detection found no decoder.
    #[error("cannot tell the frame kind of {len} bytes starting {first}; pass --kind")]
    UnknownKind {
        /// Frame length.
        len: usize,
        /// The first byte(s), in hex.
        first: String,
    },
    /// The RON description does not parse.
    #[error("{origin}:{line}:{col}: {msg}")]
    Ron {
        /// File name (or `-`).
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
}

impl From<WireError> for CodecError {
    fn from(e: WireError) -> Self {
        CodecError::Wire(e)
    }
}

/// A decoded frame, with the facts that are not part of its repr.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The frame's fields.
    pub frame: AnyFrame,
    /// Comment lines: header, lengths, signed range, CRC.
    pub notes: Vec<String>,
    /// Set when the fields could be read but the frame is invalid (a bad
    /// CRC): the caller prints the fields and still fails.
    pub error: Option<WireError>,
}

/// Parses hex, ignoring whitespace, `:`, `-`, `_` and a leading `0x`.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, CodecError> {
    let t = text.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    let digits: String = t.chars().filter(|c| !(c.is_whitespace() || matches!(c, ':' | '-' | '_'))).collect();
    if digits.is_empty() {
        return Err(CodecError::Hex("no hex digits".into()));
    }
    if let Some((i, c)) = digits.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(CodecError::Hex(format!("{c:?} at digit {} is not a hex digit", i + 1)));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(CodecError::Hex(format!("odd number of hex digits ({})", digits.len())));
    }
    hex::decode(&digits).map_err(|e| CodecError::Hex(e.to_string()))
}

/// Lowercase hex without separators.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Tells the frame kind from the bytes:
///
/// 1. 8 bytes: Dust v1 uplink (a header frame is at least 76 bytes; an
///    8-byte v1 VACCINE downlink needs `--kind dust-downlink`);
/// 2. starts with "KB": header frame, type 0x71 a TraceBatch;
/// 3. starts with 0x02: Dust v2 uplink;
/// 4. starts with 0x23 or 0x26: Dust downlink.
pub fn detect(bytes: &[u8]) -> Result<Kind, CodecError> {
    if bytes.len() == UPLINK_V1_LEN {
        return Ok(Kind::DustUplink);
    }
    match bytes {
        [m0, m1, _, 0x71, ..] if [*m0, *m1] == MAGIC_BYTES => Ok(Kind::Batch),
        [m0, m1, ..] if [*m0, *m1] == MAGIC_BYTES => Ok(Kind::Mesh),
        [PROTOCOL_VERSION_2, ..] => Ok(Kind::DustUplink),
        [DOWNLINK_REJECTION | DOWNLINK_VACCINE, ..] => Ok(Kind::DustDownlink),
        _ => Err(CodecError::UnknownKind {
            len: bytes.len(),
            first: bytes.iter().take(2).map(|b| format!("{b:02x}")).collect::<String>(),
        }),
    }
}

/// Decodes `bytes` as `kind` (or the detected kind).
pub fn decode(bytes: &[u8], kind: Kind) -> Result<Decoded, CodecError> {
    let kind = if kind == Kind::Auto { detect(bytes)? } else { kind };
    let len = bytes.len();
    match kind {
        Kind::Auto | Kind::Mesh if is_vaccine_v2(bytes) => {
            let f = VaccineV2Frame::parse(bytes)?;
            let signed = VaccineV2Frame::SIGNED_LEN;
            let sig_end = signed + SIGNATURE_LEN;
            let h = Header { version: Version::V2, msg_type: MessageType::Vaccine, sender_id: f.sender_id };
            let notes = vec![
                header_note(&h),
                format!(
                    "length: {len} bytes; signed range bytes[0..{signed}]; signature bytes[{signed}..{sig_end}]; \
                     unsigned relay tail (hops, strength) bytes[{sig_end}..{len}]"
                ),
            ];
            Ok(Decoded { frame: AnyFrame::MeshVaccineV2(Box::new(f)), notes, error: None })
        }
        Kind::Auto | Kind::Mesh => {
            let f = FrameRepr::parse(bytes)?;
            let signed = f.signed_len();
            let notes = vec![
                header_note(&f.header()),
                format!("length: {len} bytes; signed range bytes[0..{signed}]; signature bytes[{signed}..{len}]"),
            ];
            Ok(Decoded { frame: AnyFrame::Mesh(Box::new(f)), notes, error: None })
        }
        Kind::Batch => {
            let b = TraceBatch::parse(bytes)?;
            let signed = b.signed_len();
            let notes = vec![
                header_note(&b.header()),
                format!(
                    "length: {len} bytes; trace_count: {}; signed range bytes[0..{signed}]; signature bytes[{signed}..{len}]",
                    b.traces.len()
                ),
                format!("TCP framing (ES-12.3): 4-byte LE length prefix {len}, at most {MAX_BATCH_LEN}"),
            ];
            Ok(Decoded { frame: AnyFrame::Batch(Box::new(b)), notes, error: None })
        }
        Kind::DustUplink => {
            let p = DustUplinkPacket::new_checked(bytes)?;
            let u = DustUplink::from_packet(&p);
            let mut notes = vec![format!(
                "Dust uplink {:?}, {len} bytes, no header, no signature; sender_id_short {} (u16 LE {:#06x})",
                u.version,
                u.sender_id_short,
                u.sender_id_short.to_u16()
            )];
            let error = p.check_crc().err();
            if let (Some(computed), Some(carried)) = (p.computed_crc(), p.carried_crc()) {
                let verdict = if computed == carried { "OK" } else { "BAD" };
                notes.push(format!(
                    "checksum: CRC-8/SMBUS over bytes[0..7]: computed {computed:#04x}, carried {carried:#04x}, {verdict}"
                ));
            }
            if let Some(n) = u.mac_input_len() {
                notes.push(mac_note(n, len));
            }
            Ok(Decoded { frame: AnyFrame::DustUplink(u), notes, error })
        }
        Kind::DustDownlink => {
            let d = DustDownlink::parse(bytes)?;
            let name = match d {
                DustDownlink::Rejection(_) => "REJECTION_NOTICE",
                DustDownlink::Vaccine(_) => "VACCINE",
            };
            let mut notes = vec![format!(
                "Dust downlink {name} (type {:#04x}) {:?}, {len} bytes, no signature",
                d.type_byte(),
                d.version()
            )];
            match d.mac_input_len() {
                Some(n) => notes.push(mac_note(n, len)),
                None => notes.push("unauthenticated (v1): anyone can send this frame".into()),
            }
            Ok(Decoded { frame: AnyFrame::DustDownlink(d), notes, error: None })
        }
    }
}

/// A v2 VACCINE frame, which [`FrameRepr`] refuses by design.
fn is_vaccine_v2(bytes: &[u8]) -> bool {
    matches!(Header::parse(bytes), Ok(Header { version: Version::V2, msg_type: MessageType::Vaccine, .. }))
}

fn header_note(h: &Header) -> String {
    format!(
        "header: magic 4b42 (\"KB\"), version {:#04x}, msg_type {:#04x} {:?}, sender_id {}; bytes[0..{HEADER_LEN}]",
        h.version.to_u8(),
        h.msg_type.to_u8(),
        h.msg_type,
        h.sender_id
    )
}

fn mac_note(n: usize, len: usize) -> String {
    format!(
        "MAC input bytes[0..{n}]; truncated AES-CMAC bytes[{n}..{len}] ({MAC_LEN} bytes, checked by the crypto layer)"
    )
}

/// Renders a decoded frame: `//` notes, then pretty RON of the frame.
pub fn render(d: &Decoded) -> Result<String, CodecError> {
    let mut s = String::new();
    for n in &d.notes {
        let _ = writeln!(s, "// {n}");
    }
    let cfg = ron::ser::PrettyConfig::new().struct_names(true);
    let body = ron::ser::to_string_pretty(&d.frame, cfg).map_err(|e| CodecError::Hex(e.to_string()))?;
    s.push_str(&body);
    s.push('\n');
    Ok(s)
}

/// Parses a RON frame description; `origin` names it in errors.
pub fn parse_ron(text: &str, origin: &str) -> Result<AnyFrame, CodecError> {
    ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME).from_str(text).map_err(
        |e| CodecError::Ron {
            origin: origin.to_owned(),
            line: e.span.start.line,
            col: e.span.start.col,
            msg: e.code.to_string(),
        },
    )
}

/// Emits a frame into bytes.
pub fn encode(frame: &AnyFrame) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![0u8; MAX_BATCH_LEN.max(HEADER_LEN + SIGNATURE_LEN + 512)];
    let n = match frame {
        AnyFrame::Mesh(f) => {
            out.resize(f.buffer_len(), 0);
            f.emit(&mut out)?
        }
        AnyFrame::MeshVaccineV2(f) => f.emit(&mut out)?,
        AnyFrame::Batch(b) => b.emit(&mut out)?,
        AnyFrame::DustUplink(u) => u.emit(&mut out)?,
        AnyFrame::DustDownlink(d) => d.emit(&mut out)?,
    };
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TV13_SIGNED: &str = "4B42 0101 1807F6E5D4C3B2A1 C0F5CA65 01 0609 CC CC 2A 3412CDAB";

    fn tv13() -> Vec<u8> {
        let mut b = parse_hex(TV13_SIGNED).unwrap();
        b.extend([0x5A; 64]);
        b
    }

    #[test]
    fn vaccine_v2_decodes_with_its_relay_tail_and_encodes_back() {
        let mut b = parse_hex(
            "4B42 0226 1807F6E5D4C3B2A1 C0F5CA65 C1C2C3C4C5C6C7C8 01 01 C800 3200 100E0000 0100 000000000000000000 FF 0A",
        )
        .unwrap();
        b.extend([0x5A; 64]);
        b.extend([0x03, 0xB4]);
        let d = decode(&b, Kind::Auto).unwrap();
        assert!(matches!(d.frame, AnyFrame::MeshVaccineV2(_)));
        let text = render(&d).unwrap();
        assert!(text.contains("unsigned relay tail (hops, strength) bytes[111..113]"), "{text}");
        assert_eq!(encode(&parse_ron(&text, "test").unwrap()).unwrap(), b);
    }

    #[test]
    fn hex_accepts_separators_and_rejects_junk() {
        assert_eq!(parse_hex("4b:42 01-01_ff").unwrap(), vec![0x4B, 0x42, 1, 1, 0xFF]);
        assert_eq!(parse_hex("0x0102").unwrap(), vec![1, 2]);
        assert!(matches!(parse_hex("4b4"), Err(CodecError::Hex(_))));
        assert!(matches!(parse_hex("zz"), Err(CodecError::Hex(_))));
        assert!(matches!(parse_hex("  "), Err(CodecError::Hex(_))));
    }

    #[test]
    fn detects_kinds() {
        assert_eq!(detect(&tv13()).unwrap(), Kind::Mesh);
        assert_eq!(detect(&[0x4B, 0x42, 1, 0x71, 0]).unwrap(), Kind::Batch);
        assert_eq!(detect(&[0x4B, 0x42, 1, 0x71, 0, 0, 0, 0]).unwrap(), Kind::DustUplink);
        assert_eq!(detect(&[2; 16]).unwrap(), Kind::DustUplink);
        assert_eq!(detect(&[0x23, 0, 1, 2]).unwrap(), Kind::DustDownlink);
        assert!(matches!(detect(&[0x99; 5]), Err(CodecError::UnknownKind { len: 5, .. })));
        assert!(matches!(detect(&[]), Err(CodecError::UnknownKind { len: 0, .. })));
    }

    #[test]
    fn decode_render_parse_encode_round_trips() {
        let frames: Vec<(Vec<u8>, Kind)> = vec![
            (tv13(), Kind::Auto),
            (parse_hex("1807 0609 0500 80 42").unwrap(), Kind::Auto),
            (parse_hex("02 1807 0609 0500 80 2a000000 deadbeef").unwrap(), Kind::Auto),
            (parse_hex("23 00 1807").unwrap(), Kind::Auto),
            (parse_hex("26 01 01 c8 f401 3200").unwrap(), Kind::DustDownlink),
            (parse_hex("26 02 01 01 c8 f401 3200 08000000 aabbccdd").unwrap(), Kind::Auto),
        ];
        for (bytes, kind) in frames {
            let d = decode(&bytes, kind).unwrap();
            assert!(d.error.is_none());
            let text = render(&d).unwrap();
            let back = parse_ron(&text, "test").unwrap();
            assert_eq!(back, d.frame, "{text}");
            assert_eq!(encode(&back).unwrap(), bytes, "{text}");
        }
    }

    #[test]
    fn bad_crc_is_decoded_and_flagged() {
        let d = decode(&parse_hex("1807 0609 0500 80 43").unwrap(), Kind::Auto).unwrap();
        assert_eq!(d.error, Some(WireError::BadCrc { computed: 0x42, carried: 0x43 }));
        assert!(d.notes.iter().any(|n| n.contains("BAD")));
    }

    #[test]
    fn ron_errors_have_positions() {
        match parse_ron("DustUplink((\n  version: V3,\n))", "f.ron") {
            Err(CodecError::Ron { line: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
    }
}
