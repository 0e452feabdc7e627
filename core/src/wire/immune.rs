//! Immune-system messages: CONSISTENCY_ALERT (ES-2.5), PYREXIA_NOTICE,
//! INFLAMMATION_QUERY/REPLY (ES-2.6, ES-2.7), REJECTION_NOTICE,
//! NK_AUDIT_REQUEST/RESPONSE, VACCINE (ES-2.8) and PROFILE_SYNC (ES-2.11).
//!
//! Version 1 is the spec's layout where it gives one; PYREXIA_NOTICE,
//! REJECTION_NOTICE and the NK audit pair are ours (SPEC-NOTES 8) and the
//! same in both versions. Version 2 adds what the fixes need:
//!
//! - CONSISTENCY_ALERT: the quantity (SPEC-NOTES 16/23: a reading means
//!   nothing without its unit) and a timestamp (SPEC-NOTES 33).
//! - INFLAMMATION_QUERY/REPLY: a `query_id` that the reply echoes, and a
//!   timestamp on the reply (SPEC-NOTES 22, 33). The reply already names the
//!   suspect. Verdicts are named by meaning, see [`Verdict`].
//! - VACCINE: the origin signs only the immutable part; hops and strength
//!   follow the signature as an unsigned tail that relays may only raise
//!   (hops) or lower (strength), bounded by a signed `initial_strength` and
//!   `max_hops` (SPEC-NOTES 31). That frame is not "signature last", so it
//!   has its own [`VaccineV2Frame`]; [`SignedFrame`] parses either shape.
//!   The decay constant d₀ is left to the immunity logic.
//! - PROFILE_SYNC: a u32 `profile_version` and the statistics a merge needs
//!   (SPEC-NOTES 30).
//!
//! Offsets: `docs/wire.md`.

use super::enroll::Bytes;
use super::presence::check_ext;
use super::{BodyRepr, FrameRepr, Header, MessageType, Reader, Version, WireError, Writer, HEADER_LEN, SIGNATURE_LEN};
use crate::types::{Confidence, DeviceId, QuantityType, Reading, Signature, Timestamp, MAX_PROFILE_BINS};

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($(#[$vdoc:meta])* $variant:ident = $code:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// Decodes the byte; codes the layout does not define are refused.
            pub fn from_u8(v: u8) -> Result<Self, WireError> {
                match v {
                    $($code => Ok($name::$variant),)*
                    other => Err(WireError::InvalidField { field: $field, value: other as u32 }),
                }
            }
            /// The byte on the wire.
            pub fn to_u8(self) -> u8 {
                match self {
                    $($name::$variant => $code,)*
                }
            }
        }
    };
}

wire_enum! {
    /// How far a deviation has gone (ES-2.5 `severity`).
    Severity, "severity" {
        /// 0: PYREXIA, 1–2σ.
        Pyrexia = 0,
        /// 1: INFLAMMATION, 2–3σ.
        Inflammation = 1,
        /// 2: REJECTION, above 3σ.
        Rejection = 2,
    }
}

wire_enum! {
    /// A responder's answer to an INFLAMMATION_QUERY, named by what it means
    /// (SPEC-NOTES 22: the spec's names read backwards, since DENY_ANOMALY
    /// leads to rejection of the suspect).
    Verdict, "verdict" {
        /// 0, spec `CONFIRM_ANOMALY`: the responder sees the same change, so
        /// the environment changed and the suspect is believed.
        SeesChange = 0,
        /// 1, spec `DENY_ANOMALY`: the responder does not see it, so the
        /// suspect is anomalous.
        ContradictsSuspect = 1,
        /// 2: no comparable reading.
        Abstain = 2,
    }
}

wire_enum! {
    /// Why a device was isolated (REJECTION_NOTICE, our layout).
    RejectionReason, "reason" {
        /// 0: neighbours contradicted the suspect in an inflammation vote.
        InflammationVote = 0,
        /// 1: the NK audit found its profile drifted (ES-4.3).
        NkAuditDrift = 1,
        /// 2: it reported a physically impossible value (ES-1.4).
        InnateBounds = 2,
        /// 3: it flooded the mesh (ES-15.3).
        Flood = 3,
    }
}

wire_enum! {
    /// Outcome of an NK audit (ES-4.3 `NkAuditResult`).
    AuditResult, "result" {
        /// 0: within the drift threshold.
        Pass = 0,
        /// 1: drift above DRIFT_THRESHOLD.
        DriftDetected = 1,
    }
}

wire_enum! {
    /// Attack classes a VACCINE describes (ES-2.8 `attack_type`).
    AttackType, "attack_type" {
        /// 0.
        ValueSpike = 0,
        /// 1.
        SlowDrift = 1,
        /// 2.
        PatternChange = 2,
        /// 3.
        Flood = 3,
        /// 4.
        Impersonation = 4,
    }
}

wire_enum! {
    /// Which behavioural-profile component a PROFILE_SYNC carries (ES-2.11).
    ProfileComponent, "component" {
        /// 0: reading values.
        Values = 0,
        /// 1: timing.
        Temporal = 1,
        /// 2: communication pattern.
        Comm = 2,
        /// 3: energy.
        Energy = 3,
        /// 4: correlation with neighbours.
        Correlation = 4,
    }
}

/// Version-2 fields of a CONSISTENCY_ALERT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConsistencyAlertV2 {
    /// Quantity of the readings, which fixes their unit (SPEC-NOTES 16).
    pub quantity: QuantityType,
    /// When the violation was observed.
    pub timestamp: Timestamp,
}

/// A CONSISTENCY_ALERT body (ES-2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConsistencyAlert {
    /// The device whose reading broke physics.
    pub suspect_id: DeviceId,
    /// Its reading.
    pub suspect_reading: Reading,
    /// Highest reading physics allowed.
    pub expected_max: Reading,
    /// Lowest reading physics allowed.
    pub expected_min: Reading,
    /// How far it went.
    pub severity: Severity,
    /// Quantity and timestamp; `Some` exactly in version 2.
    pub v2: Option<ConsistencyAlertV2>,
}

/// Body length of a version-1 CONSISTENCY_ALERT (frame 91 bytes).
pub const CONSISTENCY_ALERT_BODY_V1: usize = 15;
/// Body length of a version-2 CONSISTENCY_ALERT (frame 96 bytes).
pub const CONSISTENCY_ALERT_BODY_V2: usize = 20;

impl BodyRepr for ConsistencyAlert {
    const MSG_TYPE: MessageType = MessageType::ConsistencyAlert;

    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut m = ConsistencyAlert {
            suspect_id: r.device_id()?,
            suspect_reading: r.i16()?,
            expected_max: r.i16()?,
            expected_min: r.i16()?,
            severity: Severity::from_u8(r.u8()?)?,
            v2: None,
        };
        if version == Version::V2 {
            m.v2 = Some(ConsistencyAlertV2 { quantity: QuantityType::from_u8(r.u8()?), timestamp: r.u32()? });
        }
        Ok(m)
    }

    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        check_ext(Self::MSG_TYPE, version, &self.v2)?;
        w.device_id(&self.suspect_id)?;
        w.i16(self.suspect_reading)?;
        w.i16(self.expected_max)?;
        w.i16(self.expected_min)?;
        w.u8(self.severity.to_u8())?;
        if let Some(x) = self.v2 {
            w.u8(x.quantity.to_u8())?;
            w.u32(x.timestamp)?;
        }
        Ok(())
    }

    fn body_len(&self, version: Version) -> usize {
        match version {
            Version::V1 => CONSISTENCY_ALERT_BODY_V1,
            Version::V2 => CONSISTENCY_ALERT_BODY_V2,
        }
    }
}

/// A PYREXIA_NOTICE body (our layout, SPEC-NOTES 8): a monitor saw a 1–2σ
/// deviation of a subject. Same in both versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PyrexiaNotice {
    /// The monitored device.
    pub subject_id: DeviceId,
    /// Quantity of the deviating reading.
    pub quantity: QuantityType,
    /// The deviating reading.
    pub reading: Reading,
    /// Deviation in tenths of σ (the ES-1.2 threshold unit), saturated.
    pub deviation_tenths: u16,
    /// When the deviation was observed.
    pub timestamp: Timestamp,
}

/// Body length of PYREXIA_NOTICE (frame 93 bytes).
pub const PYREXIA_NOTICE_BODY: usize = 17;

impl BodyRepr for PyrexiaNotice {
    const MSG_TYPE: MessageType = MessageType::PyrexiaNotice;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PyrexiaNotice {
            subject_id: r.device_id()?,
            quantity: QuantityType::from_u8(r.u8()?),
            reading: r.i16()?,
            deviation_tenths: r.u16()?,
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.device_id(&self.subject_id)?;
        w.u8(self.quantity.to_u8())?;
        w.i16(self.reading)?;
        w.u16(self.deviation_tenths)?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        PYREXIA_NOTICE_BODY
    }
}

/// Version-2 field of an INFLAMMATION_QUERY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct InflammationQueryV2 {
    /// Identifies this vote; replies must echo it.
    pub query_id: u32,
}

/// An INFLAMMATION_QUERY body (ES-2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct InflammationQuery {
    /// The device under investigation.
    pub suspect_id: DeviceId,
    /// Quantity of both readings.
    pub quantity: QuantityType,
    /// The suspect's reading.
    pub suspect_reading: Reading,
    /// The querier's own recent reading.
    pub reporter_reading: Reading,
    /// v1: when the anomaly was observed; v2: when the query was sent,
    /// which receivers hold to the freshness window (SPEC-NOTES 33).
    pub timestamp: Timestamp,
    /// Query id; `Some` exactly in version 2.
    pub v2: Option<InflammationQueryV2>,
}

/// Body length of a version-1 INFLAMMATION_QUERY (frame 93 bytes).
pub const INFLAMMATION_QUERY_BODY_V1: usize = 17;
/// Body length of a version-2 INFLAMMATION_QUERY (frame 97 bytes).
pub const INFLAMMATION_QUERY_BODY_V2: usize = 21;

impl BodyRepr for InflammationQuery {
    const MSG_TYPE: MessageType = MessageType::InflammationQuery;

    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut m = InflammationQuery {
            suspect_id: r.device_id()?,
            quantity: QuantityType::from_u8(r.u8()?),
            suspect_reading: r.i16()?,
            reporter_reading: r.i16()?,
            timestamp: r.u32()?,
            v2: None,
        };
        if version == Version::V2 {
            m.v2 = Some(InflammationQueryV2 { query_id: r.u32()? });
        }
        Ok(m)
    }

    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        check_ext(Self::MSG_TYPE, version, &self.v2)?;
        w.device_id(&self.suspect_id)?;
        w.u8(self.quantity.to_u8())?;
        w.i16(self.suspect_reading)?;
        w.i16(self.reporter_reading)?;
        w.u32(self.timestamp)?;
        if let Some(x) = self.v2 {
            w.u32(x.query_id)?;
        }
        Ok(())
    }

    fn body_len(&self, version: Version) -> usize {
        match version {
            Version::V1 => INFLAMMATION_QUERY_BODY_V1,
            Version::V2 => INFLAMMATION_QUERY_BODY_V2,
        }
    }
}

/// Version-2 fields of an INFLAMMATION_REPLY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct InflammationReplyV2 {
    /// The `query_id` being answered.
    pub query_id: u32,
    /// Send time (SPEC-NOTES 33).
    pub timestamp: Timestamp,
}

/// An INFLAMMATION_REPLY body (ES-2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct InflammationReply {
    /// The suspect the query named.
    pub suspect_id: DeviceId,
    /// The responder's answer.
    pub verdict: Verdict,
    /// The responder's own reading of the same quantity.
    pub own_reading: Reading,
    /// The responder's confidence in it.
    pub own_confidence: Confidence,
    /// Query id and timestamp; `Some` exactly in version 2.
    pub v2: Option<InflammationReplyV2>,
}

/// Body length of a version-1 INFLAMMATION_REPLY (frame 88 bytes).
pub const INFLAMMATION_REPLY_BODY_V1: usize = 12;
/// Body length of a version-2 INFLAMMATION_REPLY (frame 96 bytes).
pub const INFLAMMATION_REPLY_BODY_V2: usize = 20;

impl BodyRepr for InflammationReply {
    const MSG_TYPE: MessageType = MessageType::InflammationReply;

    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut m = InflammationReply {
            suspect_id: r.device_id()?,
            verdict: Verdict::from_u8(r.u8()?)?,
            own_reading: r.i16()?,
            own_confidence: r.u8()?,
            v2: None,
        };
        if version == Version::V2 {
            m.v2 = Some(InflammationReplyV2 { query_id: r.u32()?, timestamp: r.u32()? });
        }
        Ok(m)
    }

    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        check_ext(Self::MSG_TYPE, version, &self.v2)?;
        w.device_id(&self.suspect_id)?;
        w.u8(self.verdict.to_u8())?;
        w.i16(self.own_reading)?;
        w.u8(self.own_confidence)?;
        if let Some(x) = self.v2 {
            w.u32(x.query_id)?;
            w.u32(x.timestamp)?;
        }
        Ok(())
    }

    fn body_len(&self, version: Version) -> usize {
        match version {
            Version::V1 => INFLAMMATION_REPLY_BODY_V1,
            Version::V2 => INFLAMMATION_REPLY_BODY_V2,
        }
    }
}

/// A REJECTION_NOTICE body (our layout, SPEC-NOTES 8): the sender isolated
/// a device. Same in both versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RejectionNotice {
    /// The isolated device.
    pub subject_id: DeviceId,
    /// What decided it.
    pub reason: RejectionReason,
    /// The deviation at the decision, tenths of σ, saturated.
    pub deviation_tenths: u16,
    /// The inflammation vote that decided it, 0 when there was none.
    pub query_id: u32,
    /// When the decision was taken.
    pub timestamp: Timestamp,
}

/// Body length of REJECTION_NOTICE (frame 95 bytes).
pub const REJECTION_NOTICE_BODY: usize = 19;

impl BodyRepr for RejectionNotice {
    const MSG_TYPE: MessageType = MessageType::RejectionNotice;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(RejectionNotice {
            subject_id: r.device_id()?,
            reason: RejectionReason::from_u8(r.u8()?)?,
            deviation_tenths: r.u16()?,
            query_id: r.u32()?,
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.device_id(&self.subject_id)?;
        w.u8(self.reason.to_u8())?;
        w.u16(self.deviation_tenths)?;
        w.u32(self.query_id)?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        REJECTION_NOTICE_BODY
    }
}

/// An NK_AUDIT_REQUEST body (our layout): asks `target_id` to audit the
/// profile it keeps of `subject_id` against its frozen self-signature
/// (ES-4.3). Same in both versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NkAuditRequest {
    /// The device asked to answer (unicast destination, bound by the signature).
    pub target_id: DeviceId,
    /// Whose profile to audit.
    pub subject_id: DeviceId,
    /// Random challenge the response must echo.
    pub nonce: u32,
    /// Send time.
    pub timestamp: Timestamp,
}

/// Body length of NK_AUDIT_REQUEST (frame 100 bytes).
pub const NK_AUDIT_REQUEST_BODY: usize = 24;

impl BodyRepr for NkAuditRequest {
    const MSG_TYPE: MessageType = MessageType::NkAuditRequest;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(NkAuditRequest {
            target_id: r.device_id()?,
            subject_id: r.device_id()?,
            nonce: r.u32()?,
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.device_id(&self.target_id)?;
        w.device_id(&self.subject_id)?;
        w.u32(self.nonce)?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        NK_AUDIT_REQUEST_BODY
    }
}

/// An NK_AUDIT_RESPONSE body (our layout): the audit's outcome. Same in
/// both versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NkAuditResponse {
    /// Who asked.
    pub requester_id: DeviceId,
    /// Whose profile was audited.
    pub subject_id: DeviceId,
    /// The request's nonce.
    pub nonce: u32,
    /// Pass or drift.
    pub result: AuditResult,
    /// Measured drift in tenths of σ, saturated.
    pub drift_tenths: u16,
    /// ES-4.3 `identify_drifted_dimensions` bits (value, timing, comm, energy).
    pub drifted_dims: u8,
    /// Send time.
    pub timestamp: Timestamp,
}

/// Body length of NK_AUDIT_RESPONSE (frame 104 bytes).
pub const NK_AUDIT_RESPONSE_BODY: usize = 28;

impl BodyRepr for NkAuditResponse {
    const MSG_TYPE: MessageType = MessageType::NkAuditResponse;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(NkAuditResponse {
            requester_id: r.device_id()?,
            subject_id: r.device_id()?,
            nonce: r.u32()?,
            result: AuditResult::from_u8(r.u8()?)?,
            drift_tenths: r.u16()?,
            drifted_dims: r.u8()?,
            timestamp: r.u32()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.device_id(&self.requester_id)?;
        w.device_id(&self.subject_id)?;
        w.u32(self.nonce)?;
        w.u8(self.result.to_u8())?;
        w.u16(self.drift_tenths)?;
        w.u8(self.drifted_dims)?;
        w.u32(self.timestamp)
    }

    fn body_len(&self, _: Version) -> usize {
        NK_AUDIT_RESPONSE_BODY
    }
}

/// The 20-byte condensed feature vector of an attack (ES-2.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AttackSignature {
    /// Quantity the attack affects.
    pub quantity: QuantityType,
    /// Mean deviation, in the quantity's reading unit.
    pub deviation_mean: i16,
    /// Standard deviation of the deviation, in the reading unit.
    pub deviation_std: u16,
    /// Temporal pattern descriptor.
    pub temporal_pattern: u32,
    /// Bitfield of affected profile dimensions.
    pub affected_dims: u16,
    /// Reserved bytes, carried verbatim because the origin signs them.
    pub reserved: Bytes<9>,
}

impl AttackSignature {
    fn parse(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(AttackSignature {
            quantity: QuantityType::from_u8(r.u8()?),
            deviation_mean: r.i16()?,
            deviation_std: r.u16()?,
            temporal_pattern: r.u32()?,
            affected_dims: r.u16()?,
            reserved: Bytes(r.array()?),
        })
    }

    fn emit(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u8(self.quantity.to_u8())?;
        w.i16(self.deviation_mean)?;
        w.u16(self.deviation_std)?;
        w.u32(self.temporal_pattern)?;
        w.u16(self.affected_dims)?;
        w.put(self.reserved.as_bytes())
    }
}

/// Version-2 fields of a VACCINE: signed bounds on the unsigned tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct VaccineV2 {
    /// Strength at the origin; a tail strength above it is forged.
    pub initial_strength: u8,
    /// Hop limit (ES-12.2: TTL 10); copies at or past it are not relayed.
    pub max_hops: u8,
}

/// A VACCINE body (ES-2.8). The header's `sender_id` is the ORIGIN in both
/// versions: relays forward the frame, they do not re-sign it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Vaccine {
    /// When the attack was first detected.
    pub origin_timestamp: Timestamp,
    /// Cluster identifier (hash of the founding device set).
    pub origin_cluster: Bytes<8>,
    /// Attack class.
    pub attack_type: AttackType,
    /// Relay count. Signed in v1 (so relays break the signature), unsigned
    /// tail in v2.
    pub hops_from_origin: u8,
    /// The attack's features.
    pub attack_signature: AttackSignature,
    /// Current strength. Signed in v1, unsigned tail in v2.
    pub vaccine_strength: u8,
    /// Signed tail bounds; `Some` exactly in version 2.
    pub v2: Option<VaccineV2>,
}

/// Body length of a version-1 VACCINE, and of the signed body of version 2.
pub const VACCINE_BODY: usize = 35;
/// Length of the unsigned tail of a version-2 VACCINE.
pub const VACCINE_TAIL_LEN: usize = 2;
/// Length of a version-2 VACCINE frame.
pub const VACCINE_V2_LEN: usize = HEADER_LEN + VACCINE_BODY + SIGNATURE_LEN + VACCINE_TAIL_LEN;

impl Vaccine {
    fn parse_v2_signed(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let origin_timestamp = r.u32()?;
        let origin_cluster = Bytes(r.array()?);
        let attack_type = AttackType::from_u8(r.u8()?)?;
        let attack_signature = AttackSignature::parse(r)?;
        let v2 = VaccineV2 { initial_strength: r.u8()?, max_hops: r.u8()? };
        Ok(Vaccine {
            origin_timestamp,
            origin_cluster,
            attack_type,
            hops_from_origin: 0,
            attack_signature,
            vaccine_strength: v2.initial_strength,
            v2: Some(v2),
        })
    }

    fn emit_v2_signed(&self, v2: &VaccineV2, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.u32(self.origin_timestamp)?;
        w.put(self.origin_cluster.as_bytes())?;
        w.u8(self.attack_type.to_u8())?;
        self.attack_signature.emit(w)?;
        w.u8(v2.initial_strength)?;
        w.u8(v2.max_hops)
    }

    /// Refuses a tail strength above the signed initial strength.
    fn check_tail(&self) -> Result<(), WireError> {
        match self.v2 {
            Some(v2) if self.vaccine_strength > v2.initial_strength => {
                Err(WireError::InvalidField { field: "vaccine_strength", value: self.vaccine_strength as u32 })
            }
            _ => Ok(()),
        }
    }
}

/// Through [`FrameRepr`] only version 1 is valid: a version-2 VACCINE has
/// bytes after its signature and goes through [`VaccineV2Frame`] (or
/// [`SignedFrame`]); asking `FrameRepr` for it is a
/// [`WireError::VersionMismatch`].
impl BodyRepr for Vaccine {
    const MSG_TYPE: MessageType = MessageType::Vaccine;

    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        if version == Version::V2 {
            return Err(WireError::VersionMismatch { msg_type: Self::MSG_TYPE.to_u8(), version: 2 });
        }
        Ok(Vaccine {
            origin_timestamp: r.u32()?,
            origin_cluster: Bytes(r.array()?),
            attack_type: AttackType::from_u8(r.u8()?)?,
            hops_from_origin: r.u8()?,
            attack_signature: AttackSignature::parse(r)?,
            vaccine_strength: r.u8()?,
            v2: None,
        })
    }

    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        if version == Version::V2 || self.v2.is_some() {
            return Err(WireError::VersionMismatch { msg_type: Self::MSG_TYPE.to_u8(), version: version.to_u8() });
        }
        w.u32(self.origin_timestamp)?;
        w.put(self.origin_cluster.as_bytes())?;
        w.u8(self.attack_type.to_u8())?;
        w.u8(self.hops_from_origin)?;
        self.attack_signature.emit(w)?;
        w.u8(self.vaccine_strength)
    }

    fn body_len(&self, _: Version) -> usize {
        VACCINE_BODY
    }
}

/// A version-2 VACCINE frame: header, signed immutable body, the origin's
/// signature, then the unsigned 2-byte tail `hops_from_origin`,
/// `vaccine_strength` (SPEC-NOTES 31). The signed range is
/// `bytes[0..47]`; the frame is 113 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct VaccineV2Frame {
    /// The origin (the signer).
    pub sender_id: DeviceId,
    /// The vaccine; `v2` is always `Some`.
    pub body: Vaccine,
    /// The origin's signature over `bytes[0..47]`.
    pub signature: Signature,
}

impl VaccineV2Frame {
    /// Length of the signed range.
    pub const SIGNED_LEN: usize = HEADER_LEN + VACCINE_BODY;

    /// Parses a version-2 VACCINE frame.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let h = Header::parse(bytes)?;
        if h.msg_type != MessageType::Vaccine {
            return Err(WireError::UnknownType(h.msg_type.to_u8()));
        }
        if h.version != Version::V2 {
            return Err(WireError::VersionMismatch { msg_type: h.msg_type.to_u8(), version: h.version.to_u8() });
        }
        if bytes.len() < VACCINE_V2_LEN {
            return Err(WireError::TooShort { needed: VACCINE_V2_LEN, got: bytes.len() });
        }
        if bytes.len() > VACCINE_V2_LEN {
            return Err(WireError::LengthMismatch { expected: VACCINE_V2_LEN, got: bytes.len() });
        }
        let mut r = Reader::new(&bytes[HEADER_LEN..], HEADER_LEN);
        let mut body = Vaccine::parse_v2_signed(&mut r)?;
        let signature = Signature(r.array()?);
        body.hops_from_origin = r.u8()?;
        body.vaccine_strength = r.u8()?;
        r.finish()?;
        body.check_tail()?;
        Ok(VaccineV2Frame { sender_id: h.sender_id, body, signature })
    }

    /// Writes the frame into `out` and returns its length (113).
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let v2 =
            self.body.v2.ok_or(WireError::VersionMismatch { msg_type: MessageType::Vaccine.to_u8(), version: 2 })?;
        self.body.check_tail()?;
        if out.len() < VACCINE_V2_LEN {
            return Err(WireError::BufferTooSmall { needed: VACCINE_V2_LEN, got: out.len() });
        }
        Header { version: Version::V2, msg_type: MessageType::Vaccine, sender_id: self.sender_id }.emit(out)?;
        let mut w = Writer::new(&mut out[HEADER_LEN..VACCINE_V2_LEN]);
        self.body.emit_v2_signed(&v2, &mut w)?;
        w.put(self.signature.as_bytes())?;
        w.u8(self.body.hops_from_origin)?;
        w.u8(self.body.vaccine_strength)?;
        Ok(VACCINE_V2_LEN)
    }

    /// The copy a relay forwards: hops may only rise and strength only
    /// fall, and never above the signed initial strength.
    pub fn relayed(&self, hops_from_origin: u8, vaccine_strength: u8) -> Result<Self, WireError> {
        if hops_from_origin < self.body.hops_from_origin {
            return Err(WireError::InvalidField { field: "hops_from_origin", value: hops_from_origin as u32 });
        }
        if vaccine_strength > self.body.vaccine_strength {
            return Err(WireError::InvalidField { field: "vaccine_strength", value: vaccine_strength as u32 });
        }
        let mut next = *self;
        next.body.hops_from_origin = hops_from_origin;
        next.body.vaccine_strength = vaccine_strength;
        Ok(next)
    }
}

/// Any header-framed signed message: the usual "signature last" shape, or
/// the version-2 VACCINE whose unsigned tail follows the signature.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SignedFrame {
    /// Header, body, signature.
    Framed(FrameRepr),
    /// Header, signed body, signature, unsigned tail.
    VaccineV2(VaccineV2Frame),
}

impl SignedFrame {
    /// Parses either shape, choosing by the header.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let h = Header::parse(bytes)?;
        if h.version == Version::V2 && h.msg_type == MessageType::Vaccine {
            VaccineV2Frame::parse(bytes).map(SignedFrame::VaccineV2)
        } else {
            FrameRepr::parse(bytes).map(SignedFrame::Framed)
        }
    }

    /// Writes the frame and returns its length.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        match self {
            SignedFrame::Framed(f) => f.emit(out),
            SignedFrame::VaccineV2(v) => v.emit(out),
        }
    }

    /// Total frame length.
    pub fn buffer_len(&self) -> usize {
        match self {
            SignedFrame::Framed(f) => f.buffer_len(),
            SignedFrame::VaccineV2(_) => VACCINE_V2_LEN,
        }
    }

    /// Length of the signed range `bytes[0..signed_len]`.
    pub fn signed_len(&self) -> usize {
        match self {
            SignedFrame::Framed(f) => f.signed_len(),
            SignedFrame::VaccineV2(_) => VaccineV2Frame::SIGNED_LEN,
        }
    }

    /// The header.
    pub fn header(&self) -> Header {
        match self {
            SignedFrame::Framed(f) => f.header(),
            SignedFrame::VaccineV2(v) => {
                Header { version: Version::V2, msg_type: MessageType::Vaccine, sender_id: v.sender_id }
            }
        }
    }
}

/// Version-2 fields of a PROFILE_SYNC: what a merge needs (SPEC-NOTES 30).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProfileSyncV2 {
    /// Readings the profile has absorbed.
    pub value_count: u32,
    /// Mean reading, in the quantity's reading unit.
    pub value_mean: f32,
    /// Variance of the readings.
    pub value_var: f32,
    /// Smallest reading seen (the histogram's lower edge).
    pub value_min: Reading,
    /// Largest reading seen (the histogram's upper edge).
    pub value_max: Reading,
    /// When the profile last changed; receivers use it for freshness.
    pub last_updated: Timestamp,
}

/// Histogram counts of a PROFILE_SYNC, at most [`MAX_PROFILE_BINS`].
pub type Bins = heapless::Vec<u16, MAX_PROFILE_BINS>;

/// A PROFILE_SYNC body (ES-2.11).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ProfileSync {
    /// The profiled device.
    pub subject_id: DeviceId,
    /// Profile version: u16 on the v1 wire, u32 in v2; compare wrap-aware.
    pub profile_version: u32,
    /// Which component the bins describe.
    pub component: ProfileComponent,
    /// Histogram counts (`bin_count` on the wire is their number, ≤ 50).
    pub bins: Bins,
    /// Statistics; `Some` exactly in version 2.
    pub v2: Option<ProfileSyncV2>,
}

/// Body length of a version-1 PROFILE_SYNC without bins (frame 88 + 2·bins).
pub const PROFILE_SYNC_FIXED_V1: usize = 12;
/// Body length of a version-2 PROFILE_SYNC without bins (frame 110 + 2·bins).
pub const PROFILE_SYNC_FIXED_V2: usize = 34;

impl BodyRepr for ProfileSync {
    const MSG_TYPE: MessageType = MessageType::ProfileSync;

    fn parse_body(version: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let subject_id = r.device_id()?;
        let profile_version = match version {
            Version::V1 => r.u16()? as u32,
            Version::V2 => r.u32()?,
        };
        let component = ProfileComponent::from_u8(r.u8()?)?;
        let v2 = match version {
            Version::V1 => None,
            Version::V2 => Some(ProfileSyncV2 {
                value_count: r.u32()?,
                value_mean: r.f32()?,
                value_var: r.f32()?,
                value_min: r.i16()?,
                value_max: r.i16()?,
                last_updated: r.u32()?,
            }),
        };
        let count = r.u8()?;
        if count as usize > MAX_PROFILE_BINS {
            return Err(WireError::InvalidField { field: "bin_count", value: count as u32 });
        }
        let mut bins = heapless::Vec::new();
        for _ in 0..count {
            bins.push(r.u16()?).map_err(|_| WireError::InvalidField { field: "bin_count", value: count as u32 })?;
        }
        Ok(ProfileSync { subject_id, profile_version, component, bins, v2 })
    }

    fn emit_body(&self, version: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        check_ext(Self::MSG_TYPE, version, &self.v2)?;
        w.device_id(&self.subject_id)?;
        match version {
            Version::V1 => {
                let v = u16::try_from(self.profile_version)
                    .map_err(|_| WireError::InvalidField { field: "profile_version", value: self.profile_version })?;
                w.u16(v)?;
            }
            Version::V2 => w.u32(self.profile_version)?,
        }
        w.u8(self.component.to_u8())?;
        if let Some(x) = self.v2 {
            w.u32(x.value_count)?;
            w.f32(x.value_mean)?;
            w.f32(x.value_var)?;
            w.i16(x.value_min)?;
            w.i16(x.value_max)?;
            w.u32(x.last_updated)?;
        }
        // The Vec's capacity (50) bounds the length, so it fits a u8.
        w.u8(self.bins.len() as u8)?;
        for &b in self.bins.iter() {
            w.u16(b)?;
        }
        Ok(())
    }

    fn body_len(&self, version: Version) -> usize {
        let fixed = match version {
            Version::V1 => PROFILE_SYNC_FIXED_V1,
            Version::V2 => PROFILE_SYNC_FIXED_V2,
        };
        fixed + 2 * self.bins.len()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil::*;
    use crate::wire::Body;

    const SUSPECT: [u8; 8] = [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18];

    fn alert(v2: Option<ConsistencyAlertV2>) -> ConsistencyAlert {
        ConsistencyAlert {
            suspect_id: DeviceId(SUSPECT),
            suspect_reading: 9000,
            expected_max: 3000,
            expected_min: 1000,
            severity: Severity::Rejection,
            v2,
        }
    }

    #[test]
    fn consistency_alert_v1_and_v2() {
        let fields: &[u8] = &[0x28, 0x23, 0xB8, 0x0B, 0xE8, 0x03, 0x02];
        let b = bytes(1, 0x02, &[&SUSPECT, fields]);
        assert_eq!(b.len(), 91);
        check(&b, &repr(Version::V1, Body::ConsistencyAlert(alert(None))), 27);
        let b = bytes(2, 0x02, &[&SUSPECT, fields, &[0x01], &TS]);
        assert_eq!(b.len(), 96);
        let v2 = Some(ConsistencyAlertV2 { quantity: QuantityType::Temperature, timestamp: T0 });
        check(&b, &repr(Version::V2, Body::ConsistencyAlert(alert(v2))), 32);
        let bad = bytes(1, 0x02, &[&SUSPECT, &[0x28, 0x23, 0xB8, 0x0B, 0xE8, 0x03, 0x03]]);
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::InvalidField { field: "severity", value: 3 }));
    }

    #[test]
    fn inflammation_query_and_reply_carry_query_id_in_v2() {
        let q = |v2| InflammationQuery {
            suspect_id: DeviceId(SUSPECT),
            quantity: QuantityType::Temperature,
            suspect_reading: 9000,
            reporter_reading: 2310,
            timestamp: T0,
            v2,
        };
        let fields: &[u8] = &[0x01, 0x28, 0x23, 0x06, 0x09];
        check(&bytes(1, 0x21, &[&SUSPECT, fields, &TS]), &repr(Version::V1, Body::InflammationQuery(q(None))), 29);
        let v2 = Some(InflammationQueryV2 { query_id: 0x0102_0304 });
        let b = bytes(2, 0x21, &[&SUSPECT, fields, &TS, &[4, 3, 2, 1]]);
        assert_eq!(b.len(), 97);
        check(&b, &repr(Version::V2, Body::InflammationQuery(q(v2))), 33);

        let r = |v2| InflammationReply {
            suspect_id: DeviceId(SUSPECT),
            verdict: Verdict::ContradictsSuspect,
            own_reading: 2310,
            own_confidence: 204,
            v2,
        };
        let fields: &[u8] = &[0x01, 0x06, 0x09, 0xCC];
        let b = bytes(1, 0x22, &[&SUSPECT, fields]);
        assert_eq!(b.len(), 88);
        check(&b, &repr(Version::V1, Body::InflammationReply(r(None))), 24);
        let v2 = Some(InflammationReplyV2 { query_id: 0x0102_0304, timestamp: T0 + 1 });
        let b = bytes(2, 0x22, &[&SUSPECT, fields, &[4, 3, 2, 1], &[0xC1, 0xF5, 0xCA, 0x65]]);
        assert_eq!(b.len(), 96);
        check(&b, &repr(Version::V2, Body::InflammationReply(r(v2))), 32);
    }

    #[test]
    fn verdict_bytes_keep_the_spec_codes_under_meaningful_names() {
        assert_eq!(Verdict::from_u8(0), Ok(Verdict::SeesChange));
        assert_eq!(Verdict::from_u8(1), Ok(Verdict::ContradictsSuspect));
        assert_eq!(Verdict::from_u8(2), Ok(Verdict::Abstain));
        assert_eq!(Verdict::from_u8(3), Err(WireError::InvalidField { field: "verdict", value: 3 }));
        let bad = bytes(1, 0x22, &[&SUSPECT, &[0x03, 0x06, 0x09, 0xCC]]);
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::InvalidField { field: "verdict", value: 3 }));
    }

    #[test]
    fn own_layouts_pyrexia_rejection_and_nk_audit() {
        let p = PyrexiaNotice {
            subject_id: DeviceId(SUSPECT),
            quantity: QuantityType::Temperature,
            reading: 2310,
            deviation_tenths: 15,
            timestamp: T0,
        };
        let b = bytes(1, 0x20, &[&SUSPECT, &[0x01, 0x06, 0x09, 0x0F, 0x00], &TS]);
        assert_eq!(b.len(), 93);
        check(&b, &repr(Version::V1, Body::PyrexiaNotice(p)), 29);

        let rj = RejectionNotice {
            subject_id: DeviceId(SUSPECT),
            reason: RejectionReason::InflammationVote,
            deviation_tenths: 35,
            query_id: 0x0102_0304,
            timestamp: T0,
        };
        let b = bytes(2, 0x23, &[&SUSPECT, &[0x00, 0x23, 0x00, 4, 3, 2, 1], &TS]);
        assert_eq!(b.len(), 95);
        check(&b, &repr(Version::V2, Body::RejectionNotice(rj)), 31);
        let bad = bytes(2, 0x23, &[&SUSPECT, &[0x04, 0x23, 0x00, 4, 3, 2, 1], &TS]);
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::InvalidField { field: "reason", value: 4 }));

        let rq = NkAuditRequest {
            target_id: DeviceId(SENDER),
            subject_id: DeviceId(SUSPECT),
            nonce: 0x1234_5678,
            timestamp: T0,
        };
        let b = bytes(2, 0x24, &[&SENDER, &SUSPECT, &[0x78, 0x56, 0x34, 0x12], &TS]);
        assert_eq!(b.len(), 100);
        check(&b, &repr(Version::V2, Body::NkAuditRequest(rq)), 36);

        let rs = NkAuditResponse {
            requester_id: DeviceId(SENDER),
            subject_id: DeviceId(SUSPECT),
            nonce: 0x1234_5678,
            result: AuditResult::DriftDetected,
            drift_tenths: 60,
            drifted_dims: 0x01,
            timestamp: T0,
        };
        let b = bytes(2, 0x25, &[&SENDER, &SUSPECT, &[0x78, 0x56, 0x34, 0x12, 0x01, 0x3C, 0x00, 0x01], &TS]);
        assert_eq!(b.len(), 104);
        check(&b, &repr(Version::V2, Body::NkAuditResponse(rs)), 40);
    }

    const CLUSTER: [u8; 8] = [0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8];
    const ATTACK: [u8; 20] =
        [0x01, 0xC8, 0x00, 0x32, 0x00, 0x10, 0x0E, 0x00, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    fn vaccine(v2: Option<VaccineV2>) -> Vaccine {
        Vaccine {
            origin_timestamp: T0,
            origin_cluster: Bytes(CLUSTER),
            attack_type: AttackType::SlowDrift,
            hops_from_origin: 3,
            attack_signature: AttackSignature {
                quantity: QuantityType::Temperature,
                deviation_mean: 200,
                deviation_std: 50,
                temporal_pattern: 3600,
                affected_dims: 1,
                reserved: Bytes([0; 9]),
            },
            vaccine_strength: 180,
            v2,
        }
    }

    #[test]
    fn vaccine_v1_is_the_spec_layout_with_hops_and_strength_signed() {
        let b = bytes(1, 0x26, &[&TS, &CLUSTER, &[0x01, 0x03], &ATTACK, &[0xB4]]);
        assert_eq!(b.len(), 111);
        check(&b, &repr(Version::V1, Body::Vaccine(vaccine(None))), 47);
        let bad = bytes(1, 0x26, &[&TS, &CLUSTER, &[0x05, 0x03], &ATTACK, &[0xB4]]);
        assert_eq!(FrameRepr::parse(&bad), Err(WireError::InvalidField { field: "attack_type", value: 5 }));
    }

    #[test]
    fn vaccine_v2_puts_hops_and_strength_after_the_signature() {
        let mut b = bytes(2, 0x26, &[&TS, &CLUSTER, &[0x01], &ATTACK, &[0xFF, 0x0A]]);
        b.extend_from_slice(&[0x03, 0xB4]);
        assert_eq!(b.len(), 113);
        let f = VaccineV2Frame {
            sender_id: DeviceId(SENDER),
            body: vaccine(Some(VaccineV2 { initial_strength: 255, max_hops: 10 })),
            signature: Signature([0x5A; 64]),
        };
        assert_eq!(VaccineV2Frame::parse(&b), Ok(f));
        assert_eq!(SignedFrame::parse(&b), Ok(SignedFrame::VaccineV2(f)));
        let mut out = [0u8; 113];
        assert_eq!(f.emit(&mut out), Ok(113));
        assert_eq!(&out[..], &b[..]);
        assert_eq!(SignedFrame::VaccineV2(f).signed_len(), 47);
        // The generic path refuses rather than misreading the tail as signature.
        assert_eq!(FrameRepr::parse(&b), Err(WireError::VersionMismatch { msg_type: 0x26, version: 2 }));

        let relayed = f.relayed(4, 160).unwrap();
        relayed.emit(&mut out).unwrap();
        assert_eq!(&out[..111], &b[..111]);
        assert_eq!(&out[111..], &[4, 160]);
        assert_eq!(relayed.relayed(2, 160), Err(WireError::InvalidField { field: "hops_from_origin", value: 2 }));
        assert_eq!(relayed.relayed(5, 200), Err(WireError::InvalidField { field: "vaccine_strength", value: 200 }));
    }

    #[test]
    fn vaccine_v2_malformed() {
        let mut b = bytes(2, 0x26, &[&TS, &CLUSTER, &[0x01], &ATTACK, &[0x80, 0x0A]]);
        b.extend_from_slice(&[0x03, 0x81]);
        // Tail strength above the signed initial strength is a forged raise.
        assert_eq!(VaccineV2Frame::parse(&b), Err(WireError::InvalidField { field: "vaccine_strength", value: 0x81 }));
        assert_eq!(VaccineV2Frame::parse(&b[..112]), Err(WireError::TooShort { needed: 113, got: 112 }));
        b.push(0);
        assert_eq!(VaccineV2Frame::parse(&b), Err(WireError::LengthMismatch { expected: 113, got: 114 }));
        let v1 = bytes(1, 0x26, &[&TS, &CLUSTER, &[0x01, 0x03], &ATTACK, &[0xB4]]);
        assert_eq!(VaccineV2Frame::parse(&v1), Err(WireError::VersionMismatch { msg_type: 0x26, version: 1 }));
        let mut out = [0u8; 113];
        let no_ext = VaccineV2Frame { sender_id: DeviceId(SENDER), body: vaccine(None), signature: Signature([0; 64]) };
        assert_eq!(no_ext.emit(&mut out), Err(WireError::VersionMismatch { msg_type: 0x26, version: 2 }));
    }

    #[test]
    fn profile_sync_v1_and_v2() {
        let mut bins = heapless::Vec::new();
        for b in [1u16, 2, 3] {
            bins.push(b).unwrap();
        }
        let p1 = ProfileSync {
            subject_id: DeviceId(SUSPECT),
            profile_version: 0xFFFF,
            component: ProfileComponent::Values,
            bins: bins.clone(),
            v2: None,
        };
        let b = bytes(1, 0x27, &[&SUSPECT, &[0xFF, 0xFF, 0x00, 0x03, 1, 0, 2, 0, 3, 0]]);
        assert_eq!(b.len(), 88 + 6);
        check(&b, &repr(Version::V1, Body::ProfileSync(p1.clone())), 30);

        let stats = ProfileSyncV2 {
            value_count: 100,
            value_mean: 23.5,
            value_var: 0.25,
            value_min: 2000,
            value_max: 2500,
            last_updated: T0,
        };
        let p2 = ProfileSync { profile_version: 0x0001_0000, bins: bins.clone(), v2: Some(stats), ..p1.clone() };
        let b = bytes(
            2,
            0x27,
            &[
                &SUSPECT,
                &[0x00, 0x00, 0x01, 0x00, 0x00],
                &[0x64, 0, 0, 0, 0x00, 0x00, 0xBC, 0x41, 0x00, 0x00, 0x80, 0x3E, 0xD0, 0x07, 0xC4, 0x09],
                &TS,
                &[0x03, 1, 0, 2, 0, 3, 0],
            ],
        );
        assert_eq!(b.len(), 110 + 6);
        check(&b, &repr(Version::V2, Body::ProfileSync(p2.clone())), 52);

        // A u32 version does not fit the v1 u16 field.
        let mut out = [0u8; 256];
        let wide = repr(Version::V1, Body::ProfileSync(ProfileSync { v2: None, ..p2 }));
        assert_eq!(wide.emit(&mut out), Err(WireError::InvalidField { field: "profile_version", value: 0x0001_0000 }));
    }

    #[test]
    fn profile_sync_bins_max_out_at_fifty() {
        let mut body = std::vec![0xFF, 0xFF, 0x04, 50];
        body.extend_from_slice(&[0x34, 0x12].repeat(50));
        let b = bytes(1, 0x27, &[&SUSPECT, &body]);
        assert_eq!(b.len(), 188);
        match FrameRepr::parse(&b) {
            Ok(FrameRepr { body: Body::ProfileSync(p), .. }) => {
                assert_eq!(p.bins.len(), 50);
                assert!(p.bins.iter().all(|&x| x == 0x1234));
                assert_eq!(p.component, ProfileComponent::Correlation);
            }
            other => panic!("{other:?}"),
        }
        body[3] = 51;
        body.extend_from_slice(&[0x34, 0x12]);
        let b = bytes(1, 0x27, &[&SUSPECT, &body]);
        assert_eq!(FrameRepr::parse(&b), Err(WireError::InvalidField { field: "bin_count", value: 51 }));
        body[2] = 5;
        let b = bytes(1, 0x27, &[&SUSPECT, &body]);
        assert_eq!(FrameRepr::parse(&b), Err(WireError::InvalidField { field: "component", value: 5 }));
        // bin_count promises more bins than the frame holds.
        let b = bytes(1, 0x27, &[&SUSPECT, &[0x01, 0x00, 0x00, 0x04, 1, 0]]);
        assert!(matches!(FrameRepr::parse(&b), Err(WireError::TooShort { .. })));
    }

    #[test]
    fn profile_sync_parse_accepts_any_float_bits() {
        let nan = [0xFF, 0xFF, 0xFF, 0x7F];
        let inf = [0x00, 0x00, 0x80, 0x7F];
        let b = bytes(2, 0x27, &[&SUSPECT, &[1, 0, 0, 0, 0], &[0; 4], &nan, &inf, &[0; 4], &TS, &[0]]);
        match FrameRepr::parse(&b) {
            Ok(FrameRepr { body: Body::ProfileSync(ProfileSync { v2: Some(s), .. }), .. }) => {
                assert!(s.value_mean.is_nan());
                assert!(s.value_var.is_infinite());
            }
            other => panic!("{other:?}"),
        }
    }
}
