//! What the engine drives on each simulated device: the `Firmware` trait,
//! `krill-core`'s node behind it, and a no-immunity baseline to compare with.

use krill_core::crypto::Crypto;
use krill_core::lifecycle::{OwnState, SubjectState};
use krill_core::node::{Action, Node, NodeConfig, Now, Role};
use krill_core::types::PublicKey;
use krill_core::types::{DeviceId, QuantityType, Reading};

use crate::rng::SimRng;

/// A device's software as the simulator sees it: inputs in, actions out.
/// Every method is deterministic in its arguments and the firmware's state.
pub trait Firmware: Send {
    /// The device id it signs with.
    fn id(&self) -> DeviceId;
    /// Its role.
    fn role(&self) -> Role;
    /// Monotonic ms of the next timer.
    fn next_deadline_ms(&self) -> u64;
    /// Runs due timers.
    fn handle_timers(&mut self, now: Now, rng: &mut SimRng, out: &mut Vec<Action>);
    /// A received frame.
    fn handle_frame(&mut self, now: Now, bytes: &[u8], rssi: i8, hops: u8, out: &mut Vec<Action>);
    /// An own sensor reading (answer to [`Action::ReadSensor`]).
    fn handle_reading(&mut self, now: Now, quantity: QuantityType, reading: Reading, out: &mut Vec<Action>);
    /// A LoRa uplink received by a gateway; others ignore it.
    fn handle_uplink(&mut self, _now: Now, _bytes: &[u8], _out: &mut Vec<Action>) {}
    /// A TraceBatch delivered to a Full node; others ignore it.
    fn handle_batch(&mut self, _now: Now, _bytes: &[u8], _out: &mut Vec<Action>) {}
    /// Takes the batch announced by [`Action::SubmitBatch`].
    fn take_batch(&mut self, _buf: &mut [u8]) -> Option<usize> {
        None
    }
    /// The local consensus estimate of `quantity` (reading units), if any.
    fn consensus(&mut self, quantity: QuantityType, now: Now) -> Option<f32>;
    /// What this device thinks of `subject`.
    fn subject_state(&self, subject: DeviceId) -> Option<SubjectState>;
    /// Its own lifecycle state.
    fn own_state(&self) -> OwnState;
    /// Lets it verify `key`'s frames (the deployment's enrolled keys).
    fn register_peer(&mut self, key: PublicKey);
    /// Gateway: serves this Dust device.
    fn register_dust(&mut self, _device: DeviceId, _key: krill_core::gateway::DustKey) {}
    /// Accepts `gateway`'s vouched traces for `dust`.
    fn register_dust_served(&mut self, _dust: DeviceId, _gateway: DeviceId) {}
    /// Power came back after a crash: boot again from whatever the flash
    /// holds (ES-14.3). Returns a one-line account of what was restored.
    fn reboot(&mut self, _now: Now) -> Result<String, String> {
        Err("this firmware keeps no flash; it restarts empty".into())
    }
    /// Flips `bytes` random bytes of the persisted flash; returns how many
    /// were flipped.
    fn corrupt_flash(&mut self, _rng: &mut SimRng, _bytes: u32) -> u32 {
        0
    }
}

/// `krill-core`'s node. `N`, `D`, `G`, `B` are the node's capacities.
pub struct CoreFirmware<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> {
    node: Box<Node<C, N, D, G, B>>,
}

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> CoreFirmware<C, N, D, G, B> {
    /// A freshly booted node.
    pub fn new(cfg: NodeConfig, crypto: C, now: Now, first_query_id: u32) -> Self {
        CoreFirmware { node: Box::new(Node::new(cfg, crypto, now, first_query_id)) }
    }

    /// The node itself.
    pub fn node(&self) -> &Node<C, N, D, G, B> {
        &self.node
    }

    /// The node itself, mutably.
    pub fn node_mut(&mut self) -> &mut Node<C, N, D, G, B> {
        &mut self.node
    }
}

impl<C, const N: usize, const D: usize, const G: usize, const B: usize> Firmware for CoreFirmware<C, N, D, G, B>
where
    C: Crypto + Send,
{
    fn id(&self) -> DeviceId {
        self.node.id()
    }
    fn role(&self) -> Role {
        self.node.config().role
    }
    fn next_deadline_ms(&self) -> u64 {
        self.node.next_deadline()
    }
    fn handle_timers(&mut self, now: Now, rng: &mut SimRng, out: &mut Vec<Action>) {
        self.node.handle_timers(now, rng, &mut |a| out.push(a));
    }
    fn handle_frame(&mut self, now: Now, bytes: &[u8], rssi: i8, hops: u8, out: &mut Vec<Action>) {
        self.node.handle_frame(now, bytes, rssi, hops, &mut |a| out.push(a));
    }
    fn handle_reading(&mut self, now: Now, quantity: QuantityType, reading: Reading, out: &mut Vec<Action>) {
        self.node.handle_reading(now, quantity, reading, &mut |a| out.push(a));
    }
    fn handle_uplink(&mut self, now: Now, bytes: &[u8], out: &mut Vec<Action>) {
        self.node.handle_uplink(now, bytes, &mut |a| out.push(a));
    }
    fn handle_batch(&mut self, now: Now, bytes: &[u8], out: &mut Vec<Action>) {
        let _ = self.node.handle_batch(now, bytes, &mut |a| out.push(a));
    }
    fn take_batch(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.node.take_batch(buf).ok()
    }
    fn consensus(&mut self, quantity: QuantityType, now: Now) -> Option<f32> {
        self.node.query_field(quantity, now).consensus_value.map(f32::from)
    }
    fn subject_state(&self, subject: DeviceId) -> Option<SubjectState> {
        self.node.subject_state(subject)
    }
    fn own_state(&self) -> OwnState {
        self.node.own().state()
    }
    fn register_peer(&mut self, key: PublicKey) {
        let _ = self.node.register_peer(key);
    }
    fn register_dust(&mut self, device: DeviceId, key: krill_core::gateway::DustKey) {
        let _ = self.node.register_dust(device, key);
    }
    fn register_dust_served(&mut self, dust: DeviceId, gateway: DeviceId) {
        let _ = self.node.register_dust_served(dust, gateway);
    }
}

/// How long the baseline keeps a neighbour's last trace, s.
const BASELINE_WINDOW_S: u32 = 60;

/// The firmware without an immune system: it broadcasts its readings as
/// TRACE_DEPOSITs the core accepts, believes every trace it hears (no
/// signature check, no consistency check, no profile), and reports the plain
/// mean of the claimed weights — what a naive mesh would do.
pub struct BaselineFirmware<C: Crypto> {
    crypto: C,
    id: DeviceId,
    role: Role,
    quantity: QuantityType,
    sensor_ms: u64,
    next_read_ms: u64,
    seq: u8,
    /// Last trace per sender: (sender, quantity, reading, weight, timestamp).
    heard: Vec<(DeviceId, QuantityType, Reading, u8, u32)>,
}

impl<C: Crypto> BaselineFirmware<C> {
    /// A baseline device reading `cfg.quantity` every `cfg.timers.sensor_read_ms`.
    pub fn new(cfg: &NodeConfig, crypto: C, now: Now) -> Self {
        let id = crypto.device_id();
        BaselineFirmware {
            crypto,
            id,
            role: cfg.role,
            quantity: cfg.quantity,
            sensor_ms: cfg.timers.sensor_read_ms.max(1),
            next_read_ms: now.mono_ms + cfg.timers.sensor_read_ms.max(1),
            seq: 0,
            heard: Vec::new(),
        }
    }

    fn deposit(&mut self, sender: DeviceId, q: QuantityType, r: Reading, w: u8, ts: u32) {
        match self.heard.iter_mut().find(|h| h.0 == sender && h.1 == q) {
            Some(h) => *h = (sender, q, r, w, ts),
            None => self.heard.push((sender, q, r, w, ts)),
        }
    }
}

impl<C: Crypto + Send> Firmware for BaselineFirmware<C> {
    fn id(&self) -> DeviceId {
        self.id
    }
    fn role(&self) -> Role {
        self.role
    }
    fn next_deadline_ms(&self) -> u64 {
        self.next_read_ms
    }
    fn handle_timers(&mut self, now: Now, _rng: &mut SimRng, out: &mut Vec<Action>) {
        if now.mono_ms >= self.next_read_ms {
            self.next_read_ms = now.mono_ms + self.sensor_ms;
            out.push(Action::ReadSensor { quantity: self.quantity });
        }
    }
    fn handle_frame(&mut self, _now: Now, bytes: &[u8], _rssi: i8, _hops: u8, _out: &mut Vec<Action>) {
        use krill_core::wire::{Body, FrameRepr};
        if let Ok(f) = FrameRepr::parse(bytes) {
            if let Body::TraceDeposit(t) = f.body {
                self.deposit(f.sender_id, t.quantity, t.reading, t.weight, t.timestamp);
            }
        }
    }
    fn handle_reading(&mut self, now: Now, quantity: QuantityType, reading: Reading, out: &mut Vec<Action>) {
        use krill_core::wire::{Body, FrameRepr, TraceDeposit, Version};
        self.seq = self.seq.wrapping_add(1);
        let weight = krill_core::lifecycle::NORMAL_WEIGHT;
        let t = TraceDeposit {
            timestamp: now.unix_s,
            quantity,
            reading,
            confidence: 200,
            weight,
            seq: self.seq,
            prev_hash: Default::default(),
            vouch: None,
        };
        self.deposit(self.id, quantity, reading, weight, now.unix_s);
        let repr = FrameRepr {
            version: Version::V2,
            sender_id: self.id,
            body: Body::TraceDeposit(t),
            signature: krill_core::types::Signature([0; 64]),
        };
        let mut buf = [0u8; krill_core::node::MAX_FRAME];
        let Ok(len) = repr.emit(&mut buf) else { return };
        let frame = &mut buf[..len];
        if krill_core::crypto::sign_frame(&self.crypto, frame, repr.signed_len()).is_ok() {
            if let Ok(f) = krill_core::node::FrameBuf::from_slice(frame) {
                out.push(Action::Broadcast(f));
            }
        }
    }
    fn consensus(&mut self, quantity: QuantityType, now: Now) -> Option<f32> {
        let (mut sw, mut swr) = (0.0f64, 0.0f64);
        for &(_, q, r, w, ts) in &self.heard {
            if q == quantity && now.unix_s.wrapping_sub(ts) <= BASELINE_WINDOW_S {
                sw += f64::from(w);
                swr += f64::from(w) * f64::from(r);
            }
        }
        (sw > 0.0).then(|| (swr / sw) as f32)
    }
    fn subject_state(&self, _subject: DeviceId) -> Option<SubjectState> {
        None
    }
    fn own_state(&self) -> OwnState {
        OwnState::Normal
    }
    fn register_peer(&mut self, _key: PublicKey) {}
}
