//! Dust and gateway roles (ES-10.6, ES-16.4, SPEC-NOTES 21).
//!
//! A Dust node reads, runs the innate check, and sends a v2 uplink with a
//! frame counter and a truncated AES-CMAC under its factory key; it obeys a
//! REJECTION_NOTICE downlink only when its MAC and counter check out. A
//! gateway looks the uplink up in its registry (counter above the last
//! accepted one, MAC verified with the device's key), then wraps it into a
//! TRACE_DEPOSIT v2 whose `sender_id` is the Dust device, signed by the
//! gateway and naming it in `vouch` with the Dust counter. Receivers verify
//! a vouched trace with the *gateway's* registered key, and only for Dust
//! devices that gateway was registered to serve (ES-16.1: a compromised
//! gateway must not speak for every device).

use super::action::{Action, AuditEvent, FrameBuf, Sink};
use super::{Node, Now, Role};
use crate::crypto::{dust_mac, dust_mac_verify, Crypto};
use crate::gateway::{DustFrame, DustKey, FrameError, RegistryError, GATEWAY_VOUCHED_1};
use crate::profile::SubjectKind;
use crate::types::{DeviceId, HashPrefix4, QuantityType, Reading, Timestamp};
use crate::wire::dust::{set_mac, DustAuth, DustDownlink, DustUplink, Mac4, ShortId, MAC_LEN, UPLINK_V2_LEN};
use crate::wire::trace::GatewayVouch;
use crate::wire::{Body, TraceDeposit, Version, WireError};

/// A Dust node's link identity: the short id its gateway assigned
/// (SPEC-NOTES 38) and its factory AES-128 key (ES-13.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DustLink {
    /// Short id on the LoRa link.
    pub short_id: u16,
    /// The per-device key both ends hold.
    pub key: DustKey,
}

/// Why a Dust frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DustDrop {
    /// It does not decode.
    Decode(WireError),
    /// A v1 frame: CRC-8 authenticates nothing (SPEC-NOTES 21).
    Unauthenticated,
    /// Gateway: no registered device holds the short id.
    UnknownShortId,
    /// The counter is not above the last accepted one.
    Replay,
    /// The MAC does not verify under the device's key.
    BadMac,
    /// This node's role does not take this frame.
    WrongRole,
}

/// Per-node Dust link state (both the Dust and the gateway side).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct DustState {
    up_counter: u32,
    down_last: Option<u32>,
    last_sent: Option<Timestamp>,
    quarantined: bool,
}

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> Node<C, N, D, G, B> {
    /// True once a Dust node obeyed an authenticated REJECTION_NOTICE.
    pub fn dust_quarantined(&self) -> bool {
        self.dust.quarantined
    }

    /// Gateway: registers a Dust device it serves and returns the short id
    /// assigned to it.
    pub fn register_dust(&mut self, device: DeviceId, key: DustKey) -> Result<u16, RegistryError> {
        self.registry.register(device, key)
    }

    /// Receiver: accepts traces about `dust` vouched for by `gateway`
    /// (whose key must be registered with [`Node::register_peer`]).
    pub fn register_dust_served(&mut self, dust: DeviceId, gateway: DeviceId) -> Result<(), super::NodeError> {
        if self.served.contains(&(dust, gateway)) {
            return Ok(());
        }
        self.served.push((dust, gateway)).map_err(|_| super::NodeError::KeyTableFull)
    }

    pub(super) fn serves(&self, dust: DeviceId, gateway: DeviceId) -> bool {
        self.served.contains(&(dust, gateway))
    }

    /// Dust, ES-10.6 step 3: a v2 uplink with counter and MAC.
    pub(super) fn dust_uplink(&mut self, now: Now, reading: Reading, out: &mut impl Sink) {
        let Some(link) = self.cfg.dust else {
            return;
        };
        if self.dust.quarantined {
            return;
        }
        let Some(counter) = self.dust.up_counter.checked_add(1) else {
            // Counter exhausted: the key must be rotated before sending again.
            return;
        };
        let delta = self.dust.last_sent.map_or(0, |t| now.unix_s.wrapping_sub(t).min(u16::MAX as u32) as u16);
        let up = DustUplink {
            version: Version::V2,
            sender_id_short: ShortId(link.short_id.to_le_bytes()),
            reading,
            timestamp_delta: delta,
            confidence: self.cfg.confidence,
            auth: Some(DustAuth { counter, mac: Mac4([0; MAC_LEN]) }),
        };
        let mut buf = [0u8; UPLINK_V2_LEN];
        if up.emit(&mut buf).is_err() {
            return;
        }
        let mac = dust_mac(&link.key.0, &buf[..UPLINK_V2_LEN - MAC_LEN]);
        if set_mac(&mut buf, &Mac4(mac)).is_err() {
            return;
        }
        if let Ok(f) = FrameBuf::from_slice(&buf) {
            self.dust.up_counter = counter;
            self.dust.last_sent = Some(now.unix_s);
            out.push(Action::LoraUplink(f));
        }
    }

    /// Dust: a LoRa downlink (ES-10.6 step 4). A REJECTION_NOTICE naming us
    /// with a valid MAC and a fresh counter quarantines the node; a VACCINE
    /// is audited (applying it is the vaccine module's job).
    pub fn handle_downlink(&mut self, bytes: &[u8], out: &mut impl Sink) {
        let drop = |out: &mut dyn FnMut(Action), reason| out(Action::Audit(AuditEvent::DustDropped { reason }));
        let mut emit = |a: Action| out.push(a);
        let Some(link) = self.cfg.dust.filter(|_| self.cfg.role == Role::Dust) else {
            return drop(&mut emit, DustDrop::WrongRole);
        };
        let dl = match DustDownlink::parse(bytes) {
            Ok(d) => d,
            Err(e) => return drop(&mut emit, DustDrop::Decode(e)),
        };
        let auth = match dl {
            DustDownlink::Rejection(r) => r.auth,
            DustDownlink::Vaccine(v) => v.auth,
        };
        let (Some(auth), Some(n)) = (auth, dl.mac_input_len()) else {
            return drop(&mut emit, DustDrop::Unauthenticated);
        };
        if self.dust.down_last.is_some_and(|last| auth.counter <= last) {
            return drop(&mut emit, DustDrop::Replay);
        }
        let covered = bytes.get(..n).unwrap_or(&[]);
        if !dust_mac_verify(&link.key.0, covered, &auth.mac.0) {
            return drop(&mut emit, DustDrop::BadMac);
        }
        self.dust.down_last = Some(auth.counter);
        match dl {
            DustDownlink::Rejection(r) if r.target == ShortId(link.short_id.to_le_bytes()) => {
                self.dust.quarantined = true;
                emit(Action::Audit(AuditEvent::DustQuarantined));
            }
            DustDownlink::Rejection(_) => {}
            DustDownlink::Vaccine(v) => {
                emit(Action::Audit(AuditEvent::DustVaccine { attack_type: v.attack_type, quantity: v.quantity }))
            }
        }
    }

    /// Gateway: a Dust uplink heard on LoRa. Registry lookup, counter and
    /// MAC check, then a signed TRACE_DEPOSIT v2 vouching for it, broadcast
    /// and assessed locally like any received trace.
    pub fn handle_uplink(&mut self, now: Now, bytes: &[u8], out: &mut impl Sink) {
        if self.cfg.role != Role::Gateway {
            return out.push(Action::Audit(AuditEvent::DustDropped { reason: DustDrop::WrongRole }));
        }
        let up = match DustUplink::parse(bytes) {
            Ok(u) => u,
            Err(e) => return out.push(Action::Audit(AuditEvent::DustDropped { reason: DustDrop::Decode(e) })),
        };
        let Some(auth) = up.auth else {
            return out.push(Action::Audit(AuditEvent::DustDropped { reason: DustDrop::Unauthenticated }));
        };
        let frame =
            DustFrame { short_id: up.sender_id_short.to_u16(), frame_counter: auth.counter, reading: up.reading };
        let covered = bytes.get(..UPLINK_V2_LEN - MAC_LEN).unwrap_or(&[]);
        let accepted =
            self.registry.accept_frame(&frame, now.unix_s, |e| dust_mac_verify(&e.key.0, covered, &auth.mac.0));
        let gt = match accepted {
            Ok(t) => t,
            Err(e) => {
                let reason = match e {
                    FrameError::UnknownShortId => DustDrop::UnknownShortId,
                    FrameError::Replay => DustDrop::Replay,
                    FrameError::BadMac => DustDrop::BadMac,
                };
                return out.push(Action::Audit(AuditEvent::DustDropped { reason }));
            }
        };
        let t = TraceDeposit {
            timestamp: now.unix_s,
            quantity: self.cfg.dust_quantity,
            reading: gt.reading,
            confidence: up.confidence.min(GATEWAY_VOUCHED_1),
            weight: self.own.weight(),
            seq: gt.frame_counter as u8,
            prev_hash: HashPrefix4::default(),
            vouch: Some(GatewayVouch { gateway_id: self.id, dust_counter: gt.frame_counter }),
        };
        if let Some(f) = self.encode_as(gt.device, Body::TraceDeposit(t)) {
            out.push(Action::Broadcast(f));
        }
        self.on_trace(now, gt.device, &t, SubjectKind::Dust, out);
    }
}

/// The quantity a gateway's Dust devices measure, when not configured.
pub(super) const DEFAULT_DUST_QUANTITY: QuantityType = QuantityType::Temperature;
