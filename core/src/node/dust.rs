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
    /// Dust: an own uplink was not sent because its frame counter is above
    /// the reservation granted with [`Node::allow_dust_counter`] (the board
    /// has not persisted a bound that covers it).
    CounterNotReserved,
}

/// Per-node Dust link state (both the Dust and the gateway side).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct DustState {
    up_counter: u32,
    /// Highest counter an uplink may carry; `None`: no limit (a node whose
    /// caller does not persist the counter, e.g. in the simulator).
    up_limit: Option<u32>,
    down_last: Option<u32>,
    last_sent: Option<Timestamp>,
    quarantined: bool,
}

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> Node<C, N, D, G, B> {
    /// True once a Dust node obeyed an authenticated REJECTION_NOTICE.
    pub fn dust_quarantined(&self) -> bool {
        self.dust.quarantined
    }

    /// Dust: the frame counter the next uplink will carry; `None` once the
    /// counter space is exhausted.
    pub fn dust_next_counter(&self) -> Option<u32> {
        self.dust.up_counter.checked_add(1)
    }

    /// Dust, after a (re)boot: every counter up to `reserved` may already
    /// have been sent (the bound read back with
    /// [`crate::persist::DustCounterStore::restore`]), so the next uplink
    /// carries `reserved + 1`. From now on the node sends no counter above
    /// the bound last granted with [`Node::allow_dust_counter`]; until then
    /// it sends nothing (persist before use, see [`crate::persist::dust`]).
    pub fn resume_dust_counter(&mut self, reserved: u32) {
        self.dust.up_counter = self.dust.up_counter.max(reserved);
        self.dust.up_limit = Some(self.dust.up_counter);
    }

    /// Dust: counters up to `bound` are persisted as reserved and may be sent.
    pub fn allow_dust_counter(&mut self, bound: u32) {
        self.dust.up_limit = Some(self.dust.up_limit.map_or(bound, |l| l.max(bound)));
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
        if self.dust.up_limit.is_some_and(|l| counter > l) {
            return out.push(Action::Audit(AuditEvent::DustDropped { reason: DustDrop::CounterNotReserved }));
        }
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::crypto::{DustIdentity, Identity, RealCrypto, Seed};
    use crate::node::{BoardNode, DustSizedNode, NodeConfig};
    use crate::persist::{DustCounterStore, RamFlash, Status, DUST_COUNTER_BLOCK, NRF52840_DUST};
    use std::boxed::Box;
    use std::vec::Vec;

    const KEY: DustKey = DustKey([0x5A; 16]);
    const T0: Timestamp = 1_700_000_000;
    type Flash = RamFlash<0x10_0000>;

    fn at(ms: u64) -> Now {
        Now::new(ms, T0 + (ms / 1000) as u32)
    }

    fn dust_id() -> DeviceId {
        DeviceId([0xD0; 8])
    }

    fn gateway() -> BoardNode<RealCrypto> {
        let cfg = NodeConfig { role: Role::Gateway, ..NodeConfig::default() };
        let mut gw: BoardNode<RealCrypto> =
            Node::new(cfg, RealCrypto::new(&Identity::from_seed(&Seed([7; 32]))), at(0), 1);
        assert_eq!(gw.register_dust(dust_id(), KEY), Ok(0));
        gw
    }

    /// A Dust board's boot: the node, and the counter store read back.
    fn boot(flash: &mut Flash, ms: u64) -> (Box<DustSizedNode<DustIdentity>>, DustCounterStore, Status) {
        let (store, status) = DustCounterStore::restore(flash, NRF52840_DUST.state);
        let cfg = NodeConfig::dust(DustLink { short_id: 0, key: KEY });
        let mut node = Box::new(Node::new(cfg, DustIdentity(dust_id()), at(ms), 1));
        node.resume_dust_counter(store.reserved());
        (node, store, status)
    }

    /// One reading as the board does it: reserve, then read. The uplink
    /// frame, if one was sent.
    fn read(
        node: &mut DustSizedNode<DustIdentity>,
        store: &mut DustCounterStore,
        flash: &mut Flash,
        ms: u64,
    ) -> Option<Vec<u8>> {
        if let Some(Ok(bound)) = node.dust_next_counter().map(|next| store.cover(flash, next)) {
            node.allow_dust_counter(bound);
        }
        let mut out = Vec::new();
        node.handle_reading(at(ms), QuantityType::Temperature, 2150, &mut |a| out.push(a));
        out.into_iter().find_map(|a| match a {
            Action::LoraUplink(f) => Some(f.to_vec()),
            _ => None,
        })
    }

    fn counter_of(up: &[u8]) -> u32 {
        DustUplink::parse(up).unwrap().auth.unwrap().counter
    }

    fn accepted(gw: &mut BoardNode<RealCrypto>, ms: u64, up: &[u8]) -> Result<(), DustDrop> {
        let mut out = Vec::new();
        gw.handle_uplink(at(ms), up, &mut |a| out.push(a));
        for a in out {
            match a {
                Action::Audit(AuditEvent::DustDropped { reason }) => return Err(reason),
                Action::Broadcast(_) => return Ok(()),
                _ => {}
            }
        }
        panic!("the gateway neither vouched nor dropped")
    }

    fn rebooted_dust_node_resumes_above_every_sent_counter_body() {
        let mut flash = Box::new(Flash::new());
        let mut gw = gateway();
        let (mut node, mut store, status) = boot(&mut flash, 0);
        assert_eq!(status, Status::Blank);
        let mut sent = Vec::new();
        for i in 0..(DUST_COUNTER_BLOCK as u64 + 10) {
            let up = read(&mut node, &mut store, &mut flash, 5_000 * (i + 1)).expect("an uplink");
            let c = counter_of(&up);
            assert!(c <= store.reserved(), "counter {c} went out before its reservation");
            assert_eq!(accepted(&mut gw, 5_000 * (i + 1), &up), Ok(()));
            sent.push(c);
        }
        assert_eq!(sent.first(), Some(&1));
        assert_eq!(store.reserved(), 2 * DUST_COUNTER_BLOCK, "two blocks written for 74 uplinks");
        let last = *sent.last().unwrap();

        // Power off and on: the monotonic clock restarts; the node resumes
        // above its bound and the gateway takes the first uplink.
        let (mut node, mut store, status) = boot(&mut flash, 0);
        assert!(matches!(status, Status::Restored { seq: 2, skipped: 0, .. }), "{status:?}");
        let up = read(&mut node, &mut store, &mut flash, 5_000).unwrap();
        assert_eq!(counter_of(&up), 2 * DUST_COUNTER_BLOCK + 1);
        assert!(counter_of(&up) > last);
        assert_eq!(accepted(&mut gw, 900_000, &up), Ok(()));

        // What ES-12.4 alone would do: restart at 1, refused as a replay.
        let cfg = NodeConfig::dust(DustLink { short_id: 0, key: KEY });
        let mut amnesiac: Box<DustSizedNode<DustIdentity>> =
            Box::new(Node::new(cfg, DustIdentity(dust_id()), at(0), 1));
        let mut out = Vec::new();
        amnesiac.handle_reading(at(5_000), QuantityType::Temperature, 2150, &mut |a| out.push(a));
        let Some(Action::LoraUplink(up)) = out.into_iter().find(|a| matches!(a, Action::LoraUplink(_))) else {
            panic!("no uplink");
        };
        assert_eq!(counter_of(&up), 1);
        assert_eq!(accepted(&mut gw, 905_000, &up), Err(DustDrop::Replay));
    }

    #[test]
    fn rebooted_dust_node_resumes_above_every_sent_counter() {
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(rebooted_dust_node_resumes_above_every_sent_counter_body)
            .unwrap()
            .join()
            .unwrap();
    }

    fn no_counter_goes_out_unreserved_body() {
        // A power cut at every point of the first reservation write.
        let mut cut = 0;
        loop {
            let mut flash = Box::new(Flash::new());
            let (mut node, mut store, _) = boot(&mut flash, 0);
            assert!(read(&mut node, &mut store, &mut flash, 5_000).is_some());
            let sent = node.dust_next_counter().unwrap() - 1;
            let before = flash.work_done();
            flash.cut_power_after(cut);
            let mut uplinks = Vec::new();
            for i in 0..DUST_COUNTER_BLOCK as u64 {
                if let Some(up) = read(&mut node, &mut store, &mut flash, 10_000 + 5_000 * i) {
                    uplinks.push(counter_of(&up));
                }
            }
            let finished = !flash.is_dead();
            let max_sent = uplinks.iter().copied().max().unwrap_or(sent).max(sent);
            if !finished {
                assert_eq!(max_sent, DUST_COUNTER_BLOCK, "nothing above the first block without its write");
                let mut out = Vec::new();
                node.handle_reading(at(999_000), QuantityType::Temperature, 2150, &mut |a| out.push(a));
                assert!(!out.iter().any(|a| matches!(a, Action::LoraUplink(_))));
                assert!(out.contains(&Action::Audit(AuditEvent::DustDropped { reason: DustDrop::CounterNotReserved })));
            }
            flash.power_on();
            let (node, _, _) = boot(&mut flash, 0);
            assert!(node.dust_next_counter().unwrap() > max_sent, "cut after {cut} units: a counter would be reused");
            if finished {
                assert!(flash.work_done() > before, "the write happened");
                break;
            }
            cut += 1;
        }
        assert!(cut > 8, "the cut points covered the whole record ({cut})");
    }

    #[test]
    fn no_counter_goes_out_unreserved_even_across_power_cuts() {
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(no_counter_goes_out_unreserved_body)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn without_a_limit_the_counter_is_unbounded() {
        let cfg = NodeConfig::dust(DustLink { short_id: 0, key: KEY });
        let mut node: Box<DustSizedNode<DustIdentity>> = Box::new(Node::new(cfg, DustIdentity(dust_id()), at(0), 1));
        for i in 1..=(DUST_COUNTER_BLOCK + 2) {
            let mut out = Vec::new();
            node.handle_reading(at(5_000 * i as u64), QuantityType::Temperature, 2150, &mut |a| out.push(a));
            assert!(out.iter().any(|a| matches!(a, Action::LoraUplink(_))), "uplink {i}");
        }
        assert_eq!(node.dust_next_counter(), Some(DUST_COUNTER_BLOCK + 3));
    }
}
