//! Clock sync TIME_SYNC_REQUEST/RESPONSE (0x50/0x51, ES-2.2). The spec
//! names them only, so the layouts are ours (SPEC-NOTES 8), the same in
//! both versions: an NTP-style exchange with millisecond fields. The
//! requester computes offset `((t2 − t1) + (t3 − t4)) / 2` with `t4` its own
//! receive time; the random nonce makes each response answer one request, so
//! a replayed response cannot set an old time (SPEC-NOTES 33). Offsets:
//! `docs/wire.md`.

use super::{BodyRepr, MessageType, Reader, Version, WireError, Writer};
use crate::types::{DeviceId, Timestamp};

/// A wall-clock instant with millisecond resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SyncTime {
    /// Unix seconds.
    pub secs: Timestamp,
    /// Milliseconds within the second, 0–999.
    pub millis: u16,
}

impl SyncTime {
    /// Length on the wire.
    pub const LEN: usize = 6;

    /// Milliseconds since the epoch, widened so it cannot overflow.
    pub fn as_millis(&self) -> u64 {
        self.secs as u64 * 1000 + self.millis as u64
    }

    fn parse(field: &'static str, r: &mut Reader<'_>) -> Result<Self, WireError> {
        let secs = r.u32()?;
        let millis = r.u16()?;
        if millis > 999 {
            return Err(WireError::InvalidField { field, value: millis as u32 });
        }
        Ok(SyncTime { secs, millis })
    }

    fn emit(&self, field: &'static str, w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.millis > 999 {
            return Err(WireError::InvalidField { field, value: self.millis as u32 });
        }
        w.u32(self.secs)?;
        w.u16(self.millis)
    }
}

/// A TIME_SYNC_REQUEST body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TimeSyncRequest {
    /// The clock source asked.
    pub target_id: DeviceId,
    /// Random nonce the response must echo.
    pub nonce: u32,
    /// t1: the requester's clock when sending.
    pub t1: SyncTime,
}

/// Body length of TIME_SYNC_REQUEST (frame 94 bytes).
pub const TIME_SYNC_REQUEST_BODY: usize = 18;

impl BodyRepr for TimeSyncRequest {
    const MSG_TYPE: MessageType = MessageType::TimeSyncRequest;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(TimeSyncRequest { target_id: r.device_id()?, nonce: r.u32()?, t1: SyncTime::parse("t1.millis", r)? })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.device_id(&self.target_id)?;
        w.u32(self.nonce)?;
        self.t1.emit("t1.millis", w)
    }

    fn body_len(&self, _: Version) -> usize {
        TIME_SYNC_REQUEST_BODY
    }
}

/// A TIME_SYNC_RESPONSE body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TimeSyncResponse {
    /// The requester.
    pub requester_id: DeviceId,
    /// The request's nonce.
    pub nonce: u32,
    /// t1 echoed from the request.
    pub t1: SyncTime,
    /// t2: the responder's clock when the request arrived.
    pub t2: SyncTime,
    /// t3: the responder's clock when sending this response.
    pub t3: SyncTime,
    /// Hops from an authoritative clock (0 = the responder is one).
    pub stratum: u8,
}

/// Body length of TIME_SYNC_RESPONSE (frame 107 bytes).
pub const TIME_SYNC_RESPONSE_BODY: usize = 31;

impl BodyRepr for TimeSyncResponse {
    const MSG_TYPE: MessageType = MessageType::TimeSyncResponse;

    fn parse_body(_: Version, r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(TimeSyncResponse {
            requester_id: r.device_id()?,
            nonce: r.u32()?,
            t1: SyncTime::parse("t1.millis", r)?,
            t2: SyncTime::parse("t2.millis", r)?,
            t3: SyncTime::parse("t3.millis", r)?,
            stratum: r.u8()?,
        })
    }

    fn emit_body(&self, _: Version, w: &mut Writer<'_>) -> Result<(), WireError> {
        w.device_id(&self.requester_id)?;
        w.u32(self.nonce)?;
        self.t1.emit("t1.millis", w)?;
        self.t2.emit("t2.millis", w)?;
        self.t3.emit("t3.millis", w)?;
        w.u8(self.stratum)
    }

    fn body_len(&self, _: Version) -> usize {
        TIME_SYNC_RESPONSE_BODY
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::testutil::*;
    use crate::wire::{Body, FrameRepr};

    const PEER: [u8; 8] = [0x22; 8];

    const T1: [u8; 6] = [0xC0, 0xF5, 0xCA, 0x65, 0xF4, 0x01];

    #[test]
    fn request_and_response() {
        let t1 = SyncTime { secs: T0, millis: 500 };
        let q = TimeSyncRequest { target_id: DeviceId(PEER), nonce: 0x1234_5678, t1 };
        let b = bytes(2, 0x50, &[&PEER, &[0x78, 0x56, 0x34, 0x12], &T1]);
        assert_eq!(b.len(), 94);
        check(&b, &repr(Version::V2, Body::TimeSyncRequest(q)), 30);

        let r = TimeSyncResponse {
            requester_id: DeviceId(PEER),
            nonce: 0x1234_5678,
            t1,
            t2: SyncTime { secs: T0 + 1, millis: 0 },
            t3: SyncTime { secs: T0 + 1, millis: 999 },
            stratum: 1,
        };
        let b = bytes(
            1,
            0x51,
            &[
                &PEER,
                &[0x78, 0x56, 0x34, 0x12],
                &T1,
                &[0xC1, 0xF5, 0xCA, 0x65, 0, 0],
                &[0xC1, 0xF5, 0xCA, 0x65, 0xE7, 0x03],
                &[1],
            ],
        );
        assert_eq!(b.len(), 107);
        check(&b, &repr(Version::V1, Body::TimeSyncResponse(r)), 43);
        assert_eq!(r.t3.as_millis() - r.t1.as_millis(), 1499);
    }

    #[test]
    fn millis_above_999_are_refused() {
        let b = bytes(2, 0x50, &[&PEER, &[0, 0, 0, 0], &[0, 0, 0, 0, 0xE8, 0x03]]);
        assert_eq!(FrameRepr::parse(&b), Err(WireError::InvalidField { field: "t1.millis", value: 1000 }));
        let q = TimeSyncRequest { target_id: DeviceId(PEER), nonce: 0, t1: SyncTime { secs: 0, millis: 1000 } };
        let mut out = [0u8; 128];
        assert_eq!(
            repr(Version::V2, Body::TimeSyncRequest(q)).emit(&mut out),
            Err(WireError::InvalidField { field: "t1.millis", value: 1000 })
        );
    }
}
