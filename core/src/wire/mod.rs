//! Wire formats (ES-2, ES-6.1, ES-13.2, ES-16.4): every frame that starts
//! with the common 12-byte header (ES-2.1) and ends with a 64-byte Ed25519
//! signature, plus the header-less Dust frames ([`dust`]).
//!
//! Two layers per message, as in smoltcp: [`Frame`] is a zero-copy view that
//! checks the length, magic, version and type once (after which no accessor
//! panics), and each message has a `Repr` value type that is parsed from and
//! emitted into a body. [`FrameRepr`] ties them together.
//!
//! Version 1 layouts are the spec's, decodable exactly as written; version 2
//! adds the fields that `docs/spec-deviations.md` needs (freshness, query
//! ids, gateway ids, tx power...). Messages the spec leaves unchanged have
//! the same body in both versions. Layouts with offsets: `docs/wire.md`.

use crate::types::{DeviceId, Signature, MAGIC_BYTES, PROTOCOL_VERSION_1, PROTOCOL_VERSION_2};

pub mod batch;
pub mod dust;
pub mod enroll;
pub mod immune;
pub mod metabolic;
pub mod module;
pub mod presence;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testutil;
pub mod timesync;
pub mod trace;

pub use crate::crypto::enroll::ProvisionerCertificate;
pub use enroll::{Bytes, EnrollmentRequest, EnrollmentResponse, GatewayStatus, KeyRotation};
pub use immune::{
    ConsistencyAlert, InflammationQuery, InflammationReply, NkAuditRequest, NkAuditResponse, ProfileSync,
    PyrexiaNotice, RejectionNotice, SignedFrame, Vaccine, VaccineV2Frame, Verdict,
};
pub use metabolic::{DataRetraction, DeathCertificate};
pub use module::{ModuleAdvertise, ModuleFitness, ModuleRequest, ModuleTransfer};
pub use presence::{capability, Heartbeat, Mode, ModeAnnounce, PresencePulse};
pub use timesync::{TimeSyncRequest, TimeSyncResponse};
pub use trace::{TraceDeposit, TraceDepositPacket};

/// Length of the common header (ES-2.1).
pub const HEADER_LEN: usize = 12;
/// Length of the trailing Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why a byte string is not a valid frame. Every decoder returns one of
/// these instead of panicking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WireError {
    /// Fewer bytes than the layout needs.
    TooShort {
        /// Bytes the layout needs.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The frame is longer or shorter than its type's layout allows.
    LengthMismatch {
        /// Length the layout gives.
        expected: usize,
        /// Length present.
        got: usize,
    },
    /// The first two bytes are not "KB".
    BadMagic([u8; 2]),
    /// The version byte is neither 1 nor 2.
    UnknownVersion(u8),
    /// The message-type byte names no known message.
    UnknownType(u8),
    /// A CRC did not match (Dust frames).
    BadCrc {
        /// CRC computed over the frame.
        computed: u8,
        /// CRC carried in the frame.
        carried: u8,
    },
    /// A field holds a value its layout forbids.
    InvalidField {
        /// The field's name as `krill decode` prints it.
        field: &'static str,
        /// The offending value, widened.
        value: u32,
    },
    /// The value cannot be written in the requested version (a v2-only
    /// field in a v1 frame, or a missing v2 field).
    VersionMismatch {
        /// The message type.
        msg_type: u8,
        /// The version asked for.
        version: u8,
    },
    /// The output buffer is too small for `emit`.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            WireError::TooShort { needed, got } => write!(f, "frame too short: {got} bytes, need at least {needed}"),
            WireError::LengthMismatch { expected, got } => {
                write!(f, "length mismatch: {got} bytes, this message type is {expected}")
            }
            WireError::BadMagic(m) => write!(f, "bad magic {:02x}{:02x}, expected 4b42 (\"KB\")", m[0], m[1]),
            WireError::UnknownVersion(v) => write!(f, "unknown protocol version {v:#04x} (known: 0x01, 0x02)"),
            WireError::UnknownType(t) => write!(f, "unknown message type {t:#04x}"),
            WireError::BadCrc { computed, carried } => {
                write!(f, "bad CRC-8: carried {carried:#04x}, computed {computed:#04x}")
            }
            WireError::InvalidField { field, value } => write!(f, "invalid value {value} in field `{field}`"),
            WireError::VersionMismatch { msg_type, version } => {
                write!(f, "message type {msg_type:#04x} cannot be written as version {version} with these fields")
            }
            WireError::BufferTooSmall { needed, got } => write!(f, "output buffer of {got} bytes, need {needed}"),
        }
    }
}

/// Protocol version of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Version {
    /// The spec's layouts (0x01).
    V1,
    /// Our layouts with the spec fixes (0x02); what nodes send.
    V2,
}

impl Version {
    /// Decodes the version byte.
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        match v {
            PROTOCOL_VERSION_1 => Ok(Version::V1),
            PROTOCOL_VERSION_2 => Ok(Version::V2),
            other => Err(WireError::UnknownVersion(other)),
        }
    }
    /// The version byte.
    pub fn to_u8(self) -> u8 {
        match self {
            Version::V1 => PROTOCOL_VERSION_1,
            Version::V2 => PROTOCOL_VERSION_2,
        }
    }
}

macro_rules! message_types {
    ($($(#[$doc:meta])* $name:ident = $code:expr,)*) => {
        /// Message type byte (ES-2.2, plus ES-13.2, ES-16.4 and the ES-6.1 batch).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub enum MessageType {
            $($(#[$doc])* $name,)*
        }

        impl MessageType {
            /// Every known type, in code order.
            pub const ALL: &'static [MessageType] = &[$(MessageType::$name,)*];

            /// Decodes a type byte.
            pub fn from_u8(v: u8) -> Result<Self, WireError> {
                match v {
                    $($code => Ok(MessageType::$name),)*
                    other => Err(WireError::UnknownType(other)),
                }
            }

            /// The type byte.
            pub const fn to_u8(self) -> u8 {
                match self {
                    $(MessageType::$name => $code,)*
                }
            }
        }
    };
}

message_types! {
    /// 0x01, ES-2.3.
    TraceDeposit = 0x01,
    /// 0x02, ES-2.5.
    ConsistencyAlert = 0x02,
    /// 0x10, ES-2.4.
    PresencePulse = 0x10,
    /// 0x11, laid out here (SPEC-NOTES 8).
    ModeAnnounce = 0x11,
    /// 0x20, laid out here.
    PyrexiaNotice = 0x20,
    /// 0x21, ES-2.6.
    InflammationQuery = 0x21,
    /// 0x22, ES-2.7.
    InflammationReply = 0x22,
    /// 0x23, laid out here.
    RejectionNotice = 0x23,
    /// 0x24, laid out here.
    NkAuditRequest = 0x24,
    /// 0x25, laid out here.
    NkAuditResponse = 0x25,
    /// 0x26, ES-2.8.
    Vaccine = 0x26,
    /// 0x27, ES-2.11.
    ProfileSync = 0x27,
    /// 0x30, ES-2.10.
    Heartbeat = 0x30,
    /// 0x31, ES-2.9.
    DeathCertificate = 0x31,
    /// 0x32, laid out here.
    DataRetraction = 0x32,
    /// 0x40, laid out here (HGT, interface only).
    ModuleAdvertise = 0x40,
    /// 0x41, laid out here.
    ModuleRequest = 0x41,
    /// 0x42, laid out here.
    ModuleTransfer = 0x42,
    /// 0x43, laid out here.
    ModuleFitness = 0x43,
    /// 0x50, laid out here.
    TimeSyncRequest = 0x50,
    /// 0x51, laid out here.
    TimeSyncResponse = 0x51,
    /// 0x60, ES-13.2.
    EnrollmentRequest = 0x60,
    /// 0x61, ES-13.2.
    EnrollmentResponse = 0x61,
    /// 0x62, laid out here (ES-13.2 step 4).
    KeyRotation = 0x62,
    /// 0x63, laid out here (SPEC-NOTES 41).
    ProvisionerCertificate = 0x63,
    /// 0x70, laid out here (ES-16.4).
    GatewayStatus = 0x70,
    /// 0x71, the ES-6.1 TraceBatch framed with the common header.
    TraceBatch = 0x71,
}

/// The common header (ES-2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Header {
    /// Protocol version.
    pub version: Version,
    /// Message type.
    pub msg_type: MessageType,
    /// `device_id` of the sender.
    pub sender_id: DeviceId,
}

impl Header {
    /// Parses and checks the first 12 bytes.
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < HEADER_LEN {
            return Err(WireError::TooShort { needed: HEADER_LEN, got: b.len() });
        }
        let magic = [b[0], b[1]];
        if magic != MAGIC_BYTES {
            return Err(WireError::BadMagic(magic));
        }
        Ok(Header {
            version: Version::from_u8(b[2])?,
            msg_type: MessageType::from_u8(b[3])?,
            sender_id: DeviceId([b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11]]),
        })
    }

    /// Writes the 12 header bytes.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), WireError> {
        let got = out.len();
        let dst = out.get_mut(..HEADER_LEN).ok_or(WireError::BufferTooSmall { needed: HEADER_LEN, got })?;
        dst[..2].copy_from_slice(&MAGIC_BYTES);
        dst[2] = self.version.to_u8();
        dst[3] = self.msg_type.to_u8();
        dst[4..12].copy_from_slice(self.sender_id.as_bytes());
        Ok(())
    }
}

/// A zero-copy view of a header-framed message: header, body, signature.
///
/// [`Frame::new_checked`] validates the header and that there is room for a
/// signature; after that every accessor is infallible and panic-free. It
/// does not check the body's layout: that is the body repr's job.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    header: Header,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer, checking header and minimum length.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        let header = Header::parse(b)?;
        let min = HEADER_LEN + SIGNATURE_LEN;
        if b.len() < min {
            return Err(WireError::TooShort { needed: min, got: b.len() });
        }
        Ok(Frame { buffer, header })
    }

    /// The parsed header.
    pub fn header(&self) -> Header {
        self.header
    }

    /// The bytes between header and signature.
    pub fn body(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[HEADER_LEN..b.len() - SIGNATURE_LEN]
    }

    /// The bytes the signature covers (header and body).
    pub fn signed_bytes(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..b.len() - SIGNATURE_LEN]
    }

    /// The trailing signature.
    pub fn signature(&self) -> Signature {
        let b = self.buffer.as_ref();
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(&b[b.len() - SIGNATURE_LEN..]);
        Signature(s)
    }

    /// The whole frame.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Bounds-checked little-endian reader over a body. Every read returns
/// [`WireError::TooShort`] rather than panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the whole frame, so errors report frame sizes.
    base: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, whose first byte sits at `base` within the frame.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::TooShort { needed: usize::MAX, got: self.buf.len() })?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(WireError::TooShort { needed: self.base + end, got: self.base + self.buf.len() })?;
        self.pos = end;
        Ok(s)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    /// Reads an `i8`.
    pub fn i8(&mut self) -> Result<i8, WireError> {
        Ok(self.u8()? as i8)
    }
    /// Reads a little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian `i16`.
    pub fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// Reads a little-endian IEEE-754 `f32`.
    pub fn f32(&mut self) -> Result<f32, WireError> {
        Ok(f32::from_le_bytes(self.array()?))
    }
    /// Reads a `device_id`.
    pub fn device_id(&mut self) -> Result<DeviceId, WireError> {
        Ok(DeviceId(self.array()?))
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(self) -> Result<(), WireError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(WireError::LengthMismatch { expected: self.base + self.pos, got: self.base + self.buf.len() })
        }
    }
}

/// Bounds-checked little-endian writer; the mirror of [`Reader`].
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Writes into `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    /// Appends raw bytes.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        let end = self.pos + bytes.len();
        let got = self.buf.len();
        let dst = self.buf.get_mut(self.pos..end).ok_or(WireError::BufferTooSmall { needed: end, got })?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
    /// Appends a `u8`.
    pub fn u8(&mut self, v: u8) -> Result<(), WireError> {
        self.put(&[v])
    }
    /// Appends an `i8`.
    pub fn i8(&mut self, v: i8) -> Result<(), WireError> {
        self.put(&[v as u8])
    }
    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> Result<(), WireError> {
        self.put(&v.to_le_bytes())
    }
    /// Appends a little-endian `i16`.
    pub fn i16(&mut self, v: i16) -> Result<(), WireError> {
        self.put(&v.to_le_bytes())
    }
    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> Result<(), WireError> {
        self.put(&v.to_le_bytes())
    }
    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> Result<(), WireError> {
        self.put(&v.to_le_bytes())
    }
    /// Appends a little-endian IEEE-754 `f32`.
    pub fn f32(&mut self, v: f32) -> Result<(), WireError> {
        self.put(&v.to_le_bytes())
    }
    /// Appends a `device_id`.
    pub fn device_id(&mut self, v: &DeviceId) -> Result<(), WireError> {
        self.put(v.as_bytes())
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.pos
    }
    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }
}

/// A message body: the bytes between header and signature.
pub trait BodyRepr: Sized {
    /// The type byte this body is sent under.
    const MSG_TYPE: MessageType;
    /// Parses a body of the given version. Must consume every byte.
    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError>;
    /// Writes the body in the given version.
    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError>;
    /// Length of the body in the given version.
    fn body_len(&self, version: Version) -> usize;
}

/// A parsed header-framed message: header fields, body and signature.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FrameRepr {
    /// Protocol version.
    pub version: Version,
    /// `device_id` of the sender.
    pub sender_id: DeviceId,
    /// The message.
    pub body: Body,
    /// The Ed25519 signature as carried (checked by the crypto layer).
    pub signature: Signature,
}

macro_rules! bodies {
    ($($(#[$doc:meta])* $variant:ident($ty:ty),)*) => {
        /// Every header-framed message body.
        #[derive(Clone, Debug, PartialEq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub enum Body {
            $($(#[$doc])* $variant($ty),)*
        }

        impl Body {
            /// The type byte of this body.
            pub fn msg_type(&self) -> MessageType {
                match self {
                    $(Body::$variant(_) => <$ty as BodyRepr>::MSG_TYPE,)*
                }
            }

            /// Length of the body in `version`.
            pub fn body_len(&self, version: Version) -> usize {
                match self {
                    $(Body::$variant(b) => b.body_len(version),)*
                }
            }

            fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
                match self {
                    $(Body::$variant(b) => b.emit_body(version, w),)*
                }
            }

            fn parse_body(msg_type: MessageType, version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
                $(if msg_type == <$ty as BodyRepr>::MSG_TYPE {
                    return <$ty as BodyRepr>::parse_body(version, r).map(Body::$variant);
                })*
                Err(WireError::UnknownType(msg_type.to_u8()))
            }
        }
    };
}

bodies! {
    /// ES-2.3.
    TraceDeposit(TraceDeposit),
    /// ES-2.5.
    ConsistencyAlert(ConsistencyAlert),
    /// ES-2.4.
    PresencePulse(PresencePulse),
    /// 0x11, our layout.
    ModeAnnounce(ModeAnnounce),
    /// 0x20, our layout.
    PyrexiaNotice(PyrexiaNotice),
    /// ES-2.6.
    InflammationQuery(InflammationQuery),
    /// ES-2.7.
    InflammationReply(InflammationReply),
    /// 0x23, our layout.
    RejectionNotice(RejectionNotice),
    /// 0x24, our layout.
    NkAuditRequest(NkAuditRequest),
    /// 0x25, our layout.
    NkAuditResponse(NkAuditResponse),
    /// ES-2.8, version 1 only here; version 2 is [`VaccineV2Frame`].
    Vaccine(Vaccine),
    /// ES-2.11.
    ProfileSync(ProfileSync),
    /// ES-2.10.
    Heartbeat(Heartbeat),
    /// ES-2.9.
    DeathCertificate(DeathCertificate),
    /// 0x32, our layout.
    DataRetraction(DataRetraction),
    /// 0x40, our layout.
    ModuleAdvertise(ModuleAdvertise),
    /// 0x41, our layout.
    ModuleRequest(ModuleRequest),
    /// 0x42, our layout.
    ModuleTransfer(ModuleTransfer),
    /// 0x43, our layout.
    ModuleFitness(ModuleFitness),
    /// 0x50, our layout.
    TimeSyncRequest(TimeSyncRequest),
    /// 0x51, our layout.
    TimeSyncResponse(TimeSyncResponse),
    /// ES-13.2.
    EnrollmentRequest(EnrollmentRequest),
    /// ES-13.2.
    EnrollmentResponse(EnrollmentResponse),
    /// 0x62, our layout.
    KeyRotation(KeyRotation),
    /// 0x63, our layout.
    ProvisionerCertificate(ProvisionerCertificate),
    /// 0x70, our layout.
    GatewayStatus(GatewayStatus),
}

impl FrameRepr {
    /// Parses a whole frame: header, body (all bytes consumed) and signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let frame = Frame::new_checked(bytes)?;
        let h = frame.header();
        let mut r = Reader::new(frame.body(), HEADER_LEN);
        let body = Body::parse_body(h.msg_type, h.version, &mut r).map_err(|e| widen_short(e, bytes.len()))?;
        r.finish().map_err(|_| WireError::LengthMismatch {
            expected: HEADER_LEN + body.body_len(h.version) + SIGNATURE_LEN,
            got: bytes.len(),
        })?;
        Ok(FrameRepr { version: h.version, sender_id: h.sender_id, body, signature: frame.signature() })
    }

    /// Total length of the emitted frame.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.body_len(self.version) + SIGNATURE_LEN
    }

    /// Length of the signed range `bytes[0..signed_len]`.
    pub fn signed_len(&self) -> usize {
        HEADER_LEN + self.body.body_len(self.version)
    }

    /// The header of this frame.
    pub fn header(&self) -> Header {
        Header { version: self.version, msg_type: self.body.msg_type(), sender_id: self.sender_id }
    }

    /// Writes the frame into `out` and returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        if out.len() < len {
            return Err(WireError::BufferTooSmall { needed: len, got: out.len() });
        }
        self.header().emit(out)?;
        let signed = self.signed_len();
        let mut w = Writer::new(&mut out[HEADER_LEN..signed]);
        self.body.emit_body(self.version, &mut w)?;
        if w.len() != signed - HEADER_LEN {
            return Err(WireError::LengthMismatch { expected: signed, got: HEADER_LEN + w.len() });
        }
        out[signed..len].copy_from_slice(self.signature.as_bytes());
        Ok(len)
    }
}

/// A body that ran out of bytes was short by the signature as well: report
/// the frame length the whole layout needs.
fn widen_short(e: WireError, got: usize) -> WireError {
    match e {
        WireError::TooShort { needed, .. } => WireError::TooShort { needed: needed + SIGNATURE_LEN, got },
        other => other,
    }
}
