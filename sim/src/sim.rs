//! A scenario as an engine model: each node is a [`Firmware`] with a clock,
//! a sensor and its random streams; frames travel through the radio model;
//! faults and samples are events. A run is a pure function of (scenario,
//! seed, firmware kind, code): the thread count changes only the speed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use krill_core::crypto::{Crypto, Identity, ModeledAuthority, RealCrypto, Seed};
use krill_core::guards::RelayCache;
use krill_core::lifecycle::{AnyState, OwnState, SubjectState};
use krill_core::node::{Action, AuditEvent, DustLink, NodeConfig, Now, Role};
use krill_core::types::PublicKey;
use krill_core::types::{DeviceId, QuantityType};
use krill_replay::CryptoSpec;

use crate::engine::{Ctx, Engine, EngineError, EngineStats, Micros, Model, RoundProfile, WindowTime};
use crate::firmware::{BaselineFirmware, CoreFirmware, Firmware, RecordedLog};
use crate::output::{AuditLevel, AuditScope};
use crate::radio::{lora_channel, lora_sf12_airtime_us, Radio, ReceiverState};
use crate::rng::{Purpose, SimRng};
use crate::scenario::{CryptoMode, FaultKind, Layout, NodeClass, Quantity, Scenario, Start};
use crate::verify_memo::{MemoCrypto, VerifyMemo};
use crate::world::{Sensor, World};

/// The simulator's Nano: the ES-1.2 capacities.
pub type SimNano<C> = CoreFirmware<
    C,
    { krill_core::types::MAX_NEIGHBORS },
    { krill_core::types::MAX_DAG_ENTRIES },
    { krill_core::guards::GUARD_DEVICES },
    { krill_core::guards::RATE_BUCKETS },
>;
/// The simulator's Dust device: the core's Dust-sized capacities.
pub type SimDust<C> = CoreFirmware<C, 1, { krill_core::types::MAX_DAG_ENTRIES_DUST }, 2, 8>;

/// Unix time at simulation start (the start of warm-up), s.
pub const UNIX0: u32 = 1_750_000_000;
/// LoRaWAN Class A: RX1 opens 1 s after an uplink ends, RX2 after 2 s.
const RX1_DELAY_US: Micros = 1_000_000;
const RX2_DELAY_US: Micros = 2_000_000;
/// How long a window stays open for a preamble to start, µs (SF12 symbols
/// are 32.8 ms; a receiver waits a few of them).
const RX_WINDOW_US: Micros = 200_000;

/// When a Class A Dust node listens after an uplink that ended at `end`:
/// from RX1 to the end of RX2.
fn rx_window_after(end: Micros) -> (Micros, Micros) {
    (end + RX1_DELAY_US, end + RX2_DELAY_US + RX_WINDOW_US)
}

/// Whether a downlink that went on air at `start` finds the receiver open.
fn hears_downlink(window: Option<(Micros, Micros)>, start: Micros) -> bool {
    window.is_some_and(|(open, close)| (open..=close).contains(&start))
}
/// Downlinks a gateway holds per Dust node; older ones are dropped.
const DOWNLINK_QUEUE: usize = 4;

/// Latency of a Nano→Full TCP batch upload, µs.
const BATCH_LATENCY_US: u64 = 50_000;
/// Largest boot stagger, µs: nodes do not power on in the same instant.
const BOOT_STAGGER_US: u64 = 5_000_000;
/// Drop audits kept per node (all are counted).
const MAX_DROP_AUDITS: usize = 200;

/// A node asks for the time this long after it boots: once it has heard its
/// neighbours (ES-10.2 phase 3 runs "if quorum.neighbor_count > 0").
const SYNC_AFTER_BOOT_US: Micros = 30_000_000;
/// A time-sync request unanswered after this long is sent again, up to
/// [`SYNC_TRIES`] times, before the node waits for the next interval: the
/// exchange is two unacknowledged unicasts, and a clock left stepped for a
/// whole interval costs thousands of frames (the board glue's policy, not
/// the spec's, which asks once).
const SYNC_RETRY_US: Micros = 5_000_000;
/// Requests per time sync, the first included.
const SYNC_TRIES: u8 = 3;

/// Event classes, in the order events of the same µs run.
mod class {
    pub const FAULT: u8 = 0;
    pub const SAMPLE: u8 = 1;
    pub const WAKE: u8 = 2;
    pub const DELIVERY: u8 = 3;
}

/// What the events of engine class `c` are, for profiles.
pub fn event_class_name(c: u8) -> &'static str {
    match c {
        class::FAULT => "fault",
        class::SAMPLE => "sample",
        class::WAKE => "timer wake",
        class::DELIVERY => "delivery",
        _ => "other",
    }
}

/// Which firmware the nodes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
pub enum FirmwareKind {
    /// `krill-core`'s node with the immune system.
    Core,
    /// No immune system: trusts every trace, plain weighted mean.
    Baseline,
}

/// Everything that happens to a node.
pub enum SimEvent {
    /// The firmware's timer deadline.
    Wake,
    /// A BLE frame arrives.
    Frame {
        /// The bytes, shared by every delivery of one transmission.
        bytes: Arc<[u8]>,
        /// Received power.
        rssi: i8,
        /// The physical transmitter.
        from: u32,
        /// BLE Mesh relay hops it took (0 = from its origin directly).
        hops: u8,
        /// Sent to every node in range (a unicast is not relayed).
        broadcast: bool,
    },
    /// A LoRa uplink reaches a gateway.
    Uplink {
        /// The bytes.
        bytes: Arc<[u8]>,
        /// Received power at this gateway, dBm.
        rssi_dbm: f32,
        /// EU868 channel of the uplink.
        channel: u8,
        /// The transmitting node.
        from: u32,
    },
    /// A gateway's RX1 slot for `dust` (1 s after its uplink ended): the
    /// oldest downlink queued for it goes out now.
    DownlinkSlot {
        /// The Dust node's index.
        dust: u32,
    },
    /// A TraceBatch reaches a Full node.
    Batch {
        /// The bytes.
        bytes: Arc<[u8]>,
    },
    /// Take a time-series sample.
    Sample,
    /// A fault hits the node.
    Fault(FaultKind),
    /// The node comes back after a crash.
    PowerOn,
    /// Ask the node's time source for the time (ES-10.2 phase 3).
    TimeSync,
}

/// One device's simulation state.
pub struct SimNode {
    fw: Box<dyn Firmware>,
    rng: SimRng,
    radio_rng: SimRng,
    sensor: Sensor,
    quantity: Quantity,
    boot_us: Micros,
    /// Own clock error: offset µs, drift ppm.
    clock_offset_us: i64,
    drift_ppm: f64,
    /// The gateway or Full node this node syncs its clock with.
    sync_source: Option<u32>,
    /// When the pending [`SimEvent::TimeSync`] is due (older ones are stale).
    sync_at: Option<Micros>,
    /// Requests sent in the current time sync.
    sync_tries: u8,
    wake_at: Option<Micros>,
    alive: bool,
    dead: bool,
    out: Vec<Action>,
    /// End of the LoRa off-time after the last uplink.
    lora_free_at: Micros,
    /// Recent BLE receptions and own transmissions (collisions).
    ble_rx: ReceiverState,
    /// Recent LoRa uplinks heard (gateways; capture).
    lora_rx: ReceiverState,
    /// Frames this node has sent or relayed (ES-12.2, ES-15.4).
    relay_cache: RelayCache,
    /// Dust: when its receiver is open for a downlink (after its last
    /// uplink, RX1 to the end of RX2), µs.
    rx_window: Option<(Micros, Micros)>,
    /// Gateway: downlinks waiting for an RX1 slot of their Dust node.
    downlinks: BTreeMap<u32, VecDeque<Arc<[u8]>>>,
    /// Gateway: when each Dust node's last uplink it heard ended, µs.
    uplink_ended: BTreeMap<u32, Micros>,
    /// What this node saw and did.
    pub log: NodeLog,
    /// Whether this node keeps the audit events the level keeps (all nodes
    /// unless the run audits only some, see [`Simulation::keep_audits`]).
    keeps_audits: bool,
}

/// Per-node results.
#[derive(Clone, Debug, Default)]
pub struct NodeLog {
    /// Broadcasts and unicasts sent, by message type.
    pub sent: BTreeMap<u8, u64>,
    /// Frames delivered to it.
    pub received: u64,
    /// Of those, sent by an honest transmitter.
    pub honest_received: u64,
    /// Of those, dropped.
    pub honest_dropped: u64,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
    /// Dust uplinks refused by the duty cycle.
    pub duty_cycle_blocked: u64,
    /// Time-sync requests sent.
    pub time_syncs: u64,
    /// Clock corrections applied from time-sync responses, µs (signed).
    pub clock_corrections_us: Vec<(Micros, i64)>,
    /// BLE frames lost to an overlapping frame (collisions on).
    pub ble_collisions: u64,
    /// BLE frames lost while this node was transmitting (collisions on).
    pub ble_deaf: u64,
    /// LoRa uplinks this gateway lost to another uplink (collisions on).
    pub lora_collisions: u64,
    /// LoRa airtime used, µs.
    pub lora_airtime_us: u64,
    /// Mesh airtime used, µs: BLE, or WiFi under `radio.bearer: EspNow`.
    pub ble_airtime_us: u64,
    /// Legacy frames sent whose segments spanned the reassembly timeout.
    pub reassembly_timeouts: u64,
    /// Frames of other nodes relayed (BLE Mesh relay, ES-12.2).
    pub relayed: u64,
    /// Frames it should have relayed but its firmware declined to.
    pub relay_refused: u64,
    /// Copies its mesh layer dropped as already handled (relay cache).
    pub mesh_duplicates: u64,
    /// Gateway: downlinks queued for a Dust node's next RX window.
    pub downlinks_queued: u64,
    /// Gateway: downlinks dropped because the node's queue was full.
    pub downlinks_dropped: u64,
    /// Dust: downlinks that arrived while its receiver was off.
    pub downlinks_missed: u64,
    /// Audit events kept, with their simulation time.
    pub audits: Vec<(Micros, AuditEvent)>,
    /// Subject lifecycle transitions: (time, subject, to), each subject's
    /// first move into each state, once before and once from the subject's
    /// [`NodeInfo::watch_from_us`]. Repeats are not kept: the summary needs
    /// first times and worst states only, and a city day of subjects
    /// flapping between NORMAL and PYREXIA is tens of millions of moves.
    pub transitions: Vec<(Micros, DeviceId, SubjectState)>,
    /// (subject, state, from its watch start) already in `transitions`.
    transitions_seen: BTreeSet<(DeviceId, u8, bool)>,
    /// Samples: (time, |consensus − truth| or NaN, own state).
    pub samples: Vec<(Micros, f32, OwnState)>,
    /// Reboots: (time, what the firmware restored, or why it could not).
    pub reboots: Vec<(Micros, Result<String, String>)>,
    drop_audits: usize,
}

/// Static facts about a node.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// Index.
    pub index: u32,
    /// Device id.
    pub id: DeviceId,
    /// Class.
    pub class: NodeClass,
    /// Quantity.
    pub quantity: Quantity,
    /// Position, m.
    pub pos: (f64, f64),
    /// Zone index.
    pub zone: Option<usize>,
    /// True if some attack runs on it.
    pub attacker: bool,
    /// When the summary starts looking for monitors' flags of this node:
    /// 0 for an honest node, warm-up plus its first attack's start for an
    /// attacker.
    pub watch_from_us: Micros,
}

/// The model the engine drives.
pub struct SimModel {
    radio: Radio,
    world: World,
    info: Vec<NodeInfo>,
    by_id: HashMap<DeviceId, u32>,
    gateways: Vec<u32>,
    fulls: Vec<u32>,
    warmup_us: Micros,
    sample_us: Micros,
    end_us: Micros,
    duty_cycle: f64,
    partitions: Vec<(f64, Micros, Micros)>,
    /// Re-sync period of node clocks, µs; 0 = at boot only.
    sync_interval_us: Micros,
    /// Which audit events nodes keep.
    audit: AuditLevel,
}

/// A node's "now": monotonic since its boot, Unix from its own clock.
fn node_now(n: &SimNode, t: Micros) -> Now {
    let mono_ms = t.saturating_sub(n.boot_us) / 1_000;
    let drift = (t as f64 * n.drift_ppm * 1e-6) as i64;
    let wall_us = (t as i64 + n.clock_offset_us + drift).max(0) as u64;
    Now {
        mono_ms,
        unix_s: UNIX0.wrapping_add((wall_us / 1_000_000) as u32),
        unix_subsec_ms: ((wall_us / 1_000) % 1_000) as u16,
    }
}

impl SimModel {
    /// Scenario time (s after warm-up) of simulation time `t`.
    pub fn scenario_s(&self, t: Micros) -> f64 {
        (t as f64 - self.warmup_us as f64) / 1e6
    }

    /// Static node facts.
    pub fn info(&self) -> &[NodeInfo] {
        &self.info
    }

    /// The world.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The radio.
    pub fn radio(&self) -> &Radio {
        &self.radio
    }

    /// Warm-up length, µs.
    pub fn warmup_us(&self) -> Micros {
        self.warmup_us
    }

    fn partitioned(&self, t: Micros, a: u32, b: u32) -> bool {
        let pa = self.info[a as usize].pos.0;
        let pb = self.info[b as usize].pos.0;
        self.partitions.iter().any(|&(x, from, to)| t >= from && t < to && (pa - x) * (pb - x) < 0.0)
    }

    fn schedule_sync(&self, ctx: &mut Ctx<'_, SimEvent>, n: &mut SimNode, at: Micros) -> Result<(), EngineError> {
        if n.sync_source.is_none() || at > self.end_us {
            return Ok(());
        }
        n.sync_at = Some(at);
        ctx.schedule(at, class::WAKE, ctx.node(), SimEvent::TimeSync)
    }

    fn schedule_wake(&self, ctx: &mut Ctx<'_, SimEvent>, n: &mut SimNode) -> Result<(), EngineError> {
        if !n.alive {
            return Ok(());
        }
        let d = n.fw.next_deadline_ms();
        let at = n.boot_us.saturating_add(d.saturating_mul(1_000)).max(ctx.now());
        if at > self.end_us {
            n.wake_at = None;
            return Ok(());
        }
        if n.wake_at != Some(at) {
            n.wake_at = Some(at);
            ctx.schedule(at, class::WAKE, ctx.node(), SimEvent::Wake)?;
        }
        Ok(())
    }

    /// One LoRa transmission at SF12 (counted under `kind` in
    /// `NodeLog::sent`) to each of `receivers` it reaches: refused while the
    /// sender's ES-12.4 1 % duty-cycle off-time runs, otherwise one channel
    /// draw and a link budget with per-packet fading per receiver. Returns
    /// whether it went on air.
    fn lora_transmit(
        &self,
        ctx: &mut Ctx<'_, SimEvent>,
        n: &mut SimNode,
        frame: &[u8],
        kind: u8,
        receivers: &[u32],
    ) -> Result<bool, EngineError> {
        let (me, t) = (ctx.node(), ctx.now());
        if t < n.lora_free_at {
            n.log.duty_cycle_blocked += 1;
            return Ok(false);
        }
        let air = lora_sf12_airtime_us(frame.len());
        n.log.lora_airtime_us += air;
        n.lora_free_at = t + (air as f64 / self.duty_cycle) as u64;
        *n.log.sent.entry(kind).or_default() += 1;
        let bytes: Arc<[u8]> = Arc::from(frame);
        let lat = self.radio.min_latency_us() + air;
        let channel = lora_channel(&mut n.radio_rng);
        for &r in receivers {
            if self.partitioned(t, me, r) {
                continue;
            }
            if let Some(rx) = self.radio.lora_receive(me, r, &mut n.radio_rng) {
                let ev = SimEvent::Uplink { bytes: bytes.clone(), rssi_dbm: rx.rssi_dbm, channel, from: me };
                ctx.schedule(t + lat, class::DELIVERY, r, ev)?;
            }
        }
        Ok(true)
    }

    /// Carries out the actions in `n.out` (and those they cause).
    fn execute(&self, ctx: &mut Ctx<'_, SimEvent>, n: &mut SimNode) -> Result<(), EngineError> {
        let me = ctx.node();
        let t = ctx.now();
        let mut i = 0;
        while i < n.out.len() {
            let a = std::mem::replace(&mut n.out[i], Action::PersistProfiles);
            i += 1;
            match a {
                Action::Broadcast(f) => self.transmit(ctx, n, &f, None, 0)?,
                Action::Unicast { dest, frame } => {
                    if let Some(&to) = self.by_id.get(&dest) {
                        self.transmit(ctx, n, &frame, Some(to), 0)?;
                    }
                }
                Action::ReadSensor { quantity } => {
                    let info = &self.info[me as usize];
                    let truth = self.world.truth(n.quantity, info.pos.0, info.pos.1, self.scenario_s(t));
                    let value = n.sensor.sample(truth);
                    let reading = Sensor::quantise(n.quantity, value);
                    let now = node_now(n, t);
                    let mut more = Vec::new();
                    n.fw.handle_reading(now, quantity, reading, &mut more);
                    n.out.extend(more);
                }
                Action::ClockOffset { offset_ms, .. } => {
                    n.clock_offset_us += offset_ms * 1_000;
                    n.log.clock_corrections_us.push((t, offset_ms * 1_000));
                    if n.sync_tries > 0 {
                        // Answered: no retry; the next sync an interval on.
                        n.sync_tries = 0;
                        n.sync_at = None;
                        if self.sync_interval_us > 0 {
                            self.schedule_sync(ctx, n, t + self.sync_interval_us)?;
                        }
                    }
                }
                Action::LoraUplink(f) => {
                    if self.lora_transmit(ctx, n, &f, 0xD0, &self.gateways)? {
                        // Class A: the receiver opens for RX1 and RX2 after
                        // the uplink, then sleeps again.
                        n.rx_window = Some(rx_window_after(t + lora_sf12_airtime_us(f.len())));
                    }
                }
                Action::LoraDownlink { dest, frame } => {
                    // A sleeping Dust node hears nothing: the downlink goes
                    // out in the RX1 slot of the uplink it answers, or else
                    // after the node's next uplink (Class A).
                    if let Some(&to) = self.by_id.get(&dest) {
                        let q = n.downlinks.entry(to).or_default();
                        if q.len() >= DOWNLINK_QUEUE {
                            q.pop_front();
                            n.log.downlinks_dropped += 1;
                        }
                        q.push_back(Arc::from(&frame[..]));
                        n.log.downlinks_queued += 1;
                        if let Some(&end) = n.uplink_ended.get(&to) {
                            let slot = end + RX1_DELAY_US;
                            if slot >= t && slot <= self.end_us {
                                ctx.schedule(slot, class::WAKE, me, SimEvent::DownlinkSlot { dust: to })?;
                            }
                        }
                    }
                }
                Action::SubmitBatch { len, .. } => {
                    let mut buf = vec![0u8; len];
                    if let Some(k) = n.fw.take_batch(&mut buf) {
                        buf.truncate(k);
                        let bytes: Arc<[u8]> = Arc::from(buf);
                        *n.log.sent.entry(0x71).or_default() += 1;
                        for &f in &self.fulls {
                            if f != me {
                                let at = t + BATCH_LATENCY_US.max(self.radio.min_latency_us());
                                ctx.schedule(at, class::DELIVERY, f, SimEvent::Batch { bytes: bytes.clone() })?;
                            }
                        }
                    }
                }
                Action::Audit(e) => {
                    let watch_from =
                        |id: &DeviceId| self.by_id.get(id).map_or(0, |&i| self.info[i as usize].watch_from_us);
                    n.record_audit(t, e, self.audit, watch_from)
                }
                Action::PersistState(_)
                | Action::PersistDagAppend(_)
                | Action::PersistDagCompact
                | Action::PersistProfiles
                | Action::Lifecycle(_)
                | Action::NetworkKey { .. } => {}
            }
        }
        n.out.clear();
        Ok(())
    }

    /// BLE Mesh relay (ES-12.2, ES-15.4): a Nano, gateway or Full node
    /// rebroadcasts a frame new to its relay cache (checked on reception)
    /// while its TTL, `relay_ttl − hops`, is above 0, unless its firmware
    /// declines (a selective-relay attacker). The frame goes out unchanged:
    /// the relay is the transport's, the signature the origin's.
    fn relay(
        &self,
        ctx: &mut Ctx<'_, SimEvent>,
        n: &mut SimNode,
        now: Now,
        frame: &[u8],
        hops: u8,
    ) -> Result<(), EngineError> {
        let ttl = self.radio.config().relay_ttl;
        if krill_core::guards::relay::should_relay(ttl.saturating_sub(hops)).is_none() || n.fw.role() == Role::Dust {
            return Ok(());
        }
        if !n.fw.relays(now, frame) {
            n.log.relay_refused += 1;
            return Ok(());
        }
        self.transmit(ctx, n, frame, None, hops + 1)
    }

    /// Puts `frame` on air: to every node in range, or only to `only`;
    /// `hops` > 0 for a relayed copy.
    fn transmit(
        &self,
        ctx: &mut Ctx<'_, SimEvent>,
        n: &mut SimNode,
        frame: &[u8],
        only: Option<u32>,
        hops: u8,
    ) -> Result<(), EngineError> {
        let me = ctx.node();
        let t = ctx.now();
        if hops > 0 {
            n.log.relayed += 1;
        } else {
            if let Some(&ty) = frame.get(3) {
                *n.log.sent.entry(ty).or_default() += 1;
            }
            if self.radio.config().relay_ttl > 0 {
                // Its own frames coming back over a relay are not relayed again.
                n.relay_cache.check_and_insert(relay_key(frame));
            }
        }
        let airtime = self.radio.frame_airtime_us(frame.len());
        n.log.ble_airtime_us += airtime * self.radio.transmissions(only.is_some());
        let bytes: Arc<[u8]> = Arc::from(frame);
        let timing = self.radio.frame_timing(frame.len(), &mut n.radio_rng);
        let lat = timing.latency_us;
        if self.radio.config().collisions {
            // Half duplex: the node hears nothing while its frame is on air.
            n.ble_rx.transmitting(t + lat - airtime, t + lat);
        }
        if self.radio.reassembly_times_out(&timing) {
            // Its segments went out, but no receiver can put them together.
            n.log.reassembly_timeouts += 1;
            return Ok(());
        }
        for link in self.radio.links(me) {
            if only.is_some_and(|o| o != link.to) || self.partitioned(t, me, link.to) {
                continue;
            }
            let rx = match only {
                None => self.radio.receive_frame(link, frame.len(), &mut n.radio_rng).map(|r| (r, 0)),
                Some(_) => self.radio.receive_unicast(me, link, frame.len(), &mut n.radio_rng),
            };
            if let Some((rssi, retry_us)) = rx {
                let ev = SimEvent::Frame { bytes: bytes.clone(), rssi, from: me, hops, broadcast: only.is_none() };
                ctx.schedule(t + lat + retry_us, class::DELIVERY, link.to, ev)?;
            }
        }
        Ok(())
    }
}

impl SimNode {
    /// Counts a drop and notes a lifecycle move (the summary's inputs, at
    /// every level), then keeps the event itself if `level` does.
    fn record_audit(&mut self, t: Micros, e: AuditEvent, level: AuditLevel, watch_from: impl Fn(&DeviceId) -> Micros) {
        match e {
            AuditEvent::Dropped { reason, .. } => {
                let name = drop_name(&reason);
                match self.log.drops.get_mut(name) {
                    Some(n) => *n += 1,
                    None => {
                        self.log.drops.insert(name.to_string(), 1);
                    }
                }
                if self.log.drop_audits >= MAX_DROP_AUDITS {
                    return;
                }
                self.log.drop_audits += 1;
            }
            AuditEvent::Trace(a) if a.fed_sigma < 1.0 => return,
            AuditEvent::Lifecycle(a) => {
                if let AnyState::Subject(to) = a.to {
                    let first = a.to != a.from
                        && self.log.transitions_seen.insert((a.subject, to as u8, t >= watch_from(&a.subject)));
                    if first {
                        self.log.transitions.push((t, a.subject, to));
                    }
                }
            }
            _ => {}
        }
        if self.keeps_audits && level.keeps(&e) {
            self.log.audits.push((t, e));
        }
    }
}

/// A drop reason's stable name (CSV column, summary key). Static, since a
/// city day counts hundreds of millions of drops.
pub fn drop_name(d: &krill_core::node::FrameDrop) -> &'static str {
    use krill_core::guards::DropReason as G;
    use krill_core::node::FrameDrop as F;
    match d {
        F::Decode(_) => "decode",
        F::OwnEcho => "own_echo",
        F::Guard(G::RateLimited) => "guard_ratelimited",
        F::Guard(G::Flooded) => "guard_flooded",
        F::Guard(G::Blacklisted) => "guard_blacklisted",
        F::Guard(G::Duplicate) => "guard_duplicate",
        F::Guard(G::Stale) => "guard_stale",
        F::Guard(G::FromFuture) => "guard_fromfuture",
        F::Guard(G::Replay) => "guard_replay",
        F::Guard(G::TableFull) => "guard_tablefull",
        F::UnknownSender => "unknown_sender",
        F::BadSignature => "bad_signature",
        F::NotServed => "not_served",
    }
}

impl Model for SimModel {
    type Node = SimNode;
    type Event = SimEvent;
    /// A delivery takes ~3 µs and a timer wake that transmits ~20 µs, so
    /// rounds of a few events gain from the pool. City, 2 threads, 2,100
    /// simulated s, three alternated pairs: 28.6–36.3 s with 4 against
    /// 32.5–38.1 s with 16 (the engine's default); the one-thread
    /// `RoundProfile` puts the best possible 2-thread speed-up at 1.75×
    /// with 4 and about 1.6× with 16.
    const PARALLEL_MIN_EVENTS: usize = 4;

    /// A timer wake (transmissions, compactions, assessments) took ~20 µs
    /// against a delivery's ~1.6 µs in the city profile.
    fn event_cost(class: u8) -> u32 {
        if class == class::WAKE {
            12
        } else {
            1
        }
    }

    fn handle(&self, ctx: &mut Ctx<'_, SimEvent>, n: &mut SimNode, ev: SimEvent) -> Result<(), EngineError> {
        let t = ctx.now();
        match ev {
            SimEvent::Wake => {
                if n.wake_at != Some(t) || !n.alive {
                    return Ok(());
                }
                n.wake_at = None;
                let now = node_now(n, t);
                n.fw.handle_timers(now, &mut n.rng, &mut n.out);
            }
            SimEvent::Frame { bytes, rssi, from, hops, broadcast } => {
                if !n.alive {
                    return Ok(());
                }
                let airtime = self.radio.frame_airtime_us(bytes.len());
                if self.radio.config().collisions && !n.ble_rx.admit_ble(ctx.node(), t, airtime, rssi) {
                    (n.log.ble_collisions, n.log.ble_deaf) = (n.ble_rx.collided, n.ble_rx.deaf);
                    return Ok(());
                }
                if self.radio.config().relay_ttl > 0 && !n.relay_cache.check_and_insert(relay_key(&bytes)) {
                    // The mesh's network layer drops copies it has already
                    // handled (or sent) before the firmware sees them.
                    n.log.mesh_duplicates += 1;
                    return Ok(());
                }
                n.log.received += 1;
                // Delivery is counted on direct copies: a relayed copy of a
                // frame already heard is a duplicate by design.
                let honest = !self.info[from as usize].attacker && hops == 0;
                let now = node_now(n, t);
                n.fw.handle_frame(now, &bytes, rssi, hops, &mut n.out);
                if honest {
                    n.log.honest_received += 1;
                    if n.out.iter().any(|a| matches!(a, Action::Audit(AuditEvent::Dropped { .. }))) {
                        n.log.honest_dropped += 1;
                    }
                }
                if broadcast {
                    self.relay(ctx, n, now, &bytes, hops)?;
                }
            }
            SimEvent::Uplink { bytes, rssi_dbm, channel, from } => {
                if !n.alive {
                    return Ok(());
                }
                let start = t.saturating_sub(lora_sf12_airtime_us(bytes.len()));
                if self.info[ctx.node() as usize].class == NodeClass::Dust {
                    let on_air = start.saturating_sub(self.radio.min_latency_us());
                    if !hears_downlink(n.rx_window, on_air) {
                        n.log.downlinks_missed += 1;
                        return Ok(());
                    }
                }
                if self.radio.config().collisions && !n.lora_rx.admit(start, t, channel, rssi_dbm) {
                    n.log.lora_collisions += 1;
                    return Ok(());
                }
                let now = node_now(n, t);
                n.fw.handle_uplink(now, &bytes, &mut n.out);
                // The uplink ended `min_latency` ago at the Dust node.
                let ended = t.saturating_sub(self.radio.min_latency_us());
                n.uplink_ended.insert(from, ended);
                if n.downlinks.get(&from).is_some_and(|q| !q.is_empty()) && ended + RX1_DELAY_US <= self.end_us {
                    ctx.schedule(ended + RX1_DELAY_US, class::WAKE, ctx.node(), SimEvent::DownlinkSlot { dust: from })?;
                }
            }
            SimEvent::DownlinkSlot { dust } => {
                if !n.alive {
                    return Ok(());
                }
                if let Some(frame) = n.downlinks.get_mut(&dust).and_then(|q| q.pop_front()) {
                    // The gateway's radio keeps the 1 % duty cycle too
                    // (ES-12.4); a refused downlink is lost.
                    self.lora_transmit(ctx, n, &frame, 0xD1, &[dust])?;
                }
            }
            SimEvent::Batch { bytes } => {
                if !n.alive {
                    return Ok(());
                }
                let now = node_now(n, t);
                n.fw.handle_batch(now, &bytes, &mut n.out);
            }
            SimEvent::Sample => {
                if t + self.sample_us <= self.end_us {
                    ctx.schedule(t + self.sample_us, class::SAMPLE, ctx.node(), SimEvent::Sample)?;
                }
                let info = &self.info[ctx.node() as usize];
                let err = if n.alive && matches!(info.class, NodeClass::Nano | NodeClass::Gateway | NodeClass::Full) {
                    let now = node_now(n, t);
                    let truth = self.world.truth(n.quantity, info.pos.0, info.pos.1, self.scenario_s(t));
                    let q: QuantityType = n.quantity.core();
                    n.fw.consensus(q, now).map_or(f32::NAN, |c| (f64::from(q.to_value(c as i16)) - truth).abs() as f32)
                } else {
                    f32::NAN
                };
                let state = if n.alive { n.fw.own_state() } else { OwnState::Offline };
                n.log.samples.push((t, err, state));
                return Ok(());
            }
            SimEvent::Fault(kind) => match kind {
                FaultKind::Crash { down_s, .. } => {
                    n.alive = false;
                    n.wake_at = None;
                    let back = t.saturating_add(down_s.saturating_mul(1_000_000));
                    if back <= self.end_us && !n.dead {
                        ctx.schedule(back, class::FAULT, ctx.node(), SimEvent::PowerOn)?;
                    }
                }
                FaultKind::BatteryDepletion { .. } => {
                    n.alive = false;
                    n.dead = true;
                    n.wake_at = None;
                }
                FaultKind::ClockStep { step_ms, .. } => n.clock_offset_us += step_ms * 1_000,
                FaultKind::FlashCorruption { bytes, .. } => {
                    // The corruption is found at the next boot: power-cycle now.
                    n.fw.corrupt_flash(&mut n.rng, bytes);
                    n.alive = false;
                    n.wake_at = None;
                    if !n.dead {
                        ctx.schedule(t + 1_000_000, class::FAULT, ctx.node(), SimEvent::PowerOn)?;
                    }
                }
                FaultKind::Partition { .. } => {}
            },
            SimEvent::PowerOn => {
                if n.dead {
                    return Ok(());
                }
                n.alive = true;
                // The board's monotonic clock restarts at power-on.
                n.boot_us = t;
                let now = node_now(n, t);
                let r = n.fw.reboot(now);
                n.log.reboots.push((t, r));
                self.schedule_sync(ctx, n, t + SYNC_AFTER_BOOT_US)?;
            }
            SimEvent::TimeSync => {
                if n.sync_at != Some(t) || !n.alive {
                    return Ok(());
                }
                n.sync_at = None;
                if let Some(src) = n.sync_source {
                    let now = node_now(n, t);
                    n.fw.request_time_sync(now, self.info[src as usize].id, &mut n.rng, &mut n.out);
                    n.log.time_syncs += 1;
                    n.sync_tries += 1;
                }
                if n.sync_tries < SYNC_TRIES {
                    self.schedule_sync(ctx, n, t + SYNC_RETRY_US)?;
                } else {
                    n.sync_tries = 0;
                    if self.sync_interval_us > 0 {
                        self.schedule_sync(ctx, n, t + self.sync_interval_us)?;
                    }
                }
            }
        }
        self.execute(ctx, n)?;
        self.schedule_wake(ctx, n)
    }
}

/// A scenario ready to run.
pub struct Simulation {
    engine: Engine<SimModel>,
    end_us: Micros,
    /// Scenario seed.
    pub seed: u64,
    /// Firmware in use.
    pub firmware: FirmwareKind,
    /// The node whose calls are recorded, if any.
    recorded: Option<u32>,
}

/// Why a simulation could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The engine refused an event.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    /// The scenario asks for something the simulator cannot build.
    #[error("{0}")]
    Setup(String),
}

fn positions(s: &Scenario, seed: u64) -> Vec<(f64, f64, NodeClass, Quantity)> {
    let mut rng = SimRng::stream(seed, Purpose::Placement, 0);
    let mut v = Vec::new();
    for p in &s.nodes {
        match &p.layout {
            Layout::Grid { rows, cols, spacing_m, origin } => {
                for r in 0..*rows {
                    for c in 0..*cols {
                        v.push((
                            origin.0 + f64::from(c) * spacing_m,
                            origin.1 + f64::from(r) * spacing_m,
                            p.class,
                            p.quantity,
                        ));
                    }
                }
            }
            Layout::Random { count, region } => {
                let r = region.unwrap_or(crate::scenario::Rect {
                    x0: 0.0,
                    y0: 0.0,
                    x1: s.area.width_m,
                    y1: s.area.height_m,
                });
                for _ in 0..*count {
                    v.push((rng.range(r.x0, r.x1), rng.range(r.y0, r.y1), p.class, p.quantity));
                }
            }
            Layout::Explicit(ps) => v.extend(ps.iter().map(|&(x, y)| (x, y, p.class, p.quantity))),
        }
    }
    v
}

/// For each receiver, the nodes it has a radio link from, nearest first
/// (then by index): what an installer's survey of the building lists as
/// within its range.
fn heard_from(radio: &Radio, n: usize) -> Vec<Vec<u32>> {
    let mut heard: Vec<Vec<(f32, u32)>> = vec![Vec::new(); n];
    for from in 0..n as u32 {
        for l in radio.links(from) {
            if let Some(v) = heard.get_mut(l.to as usize) {
                v.push((l.distance_m, from));
            }
        }
    }
    heard
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            v.into_iter().map(|(_, j)| j).collect()
        })
        .collect()
}

/// Node `i`'s ES-11.3 deployment manifest: its own entry, then the nodes
/// it hears (`heard`, nearest first) until the core's capacity is full.
/// Positions are the placement's, in cm, on one floor at height 0; the
/// zone is the world zone's index + 1 (0: none).
fn manifest_for(
    i: usize,
    heard: &[u32],
    placed: &[(f64, f64, NodeClass, Quantity)],
    ids: &[DeviceId],
    world: &World,
) -> krill_core::distance::Manifest {
    let mut m = krill_core::distance::Manifest::new();
    let entry = |j: usize| {
        let (x, y, _, _) = *placed.get(j)?;
        let zone = world.zone_of(x, y).map_or(0, |z| u16::try_from(z + 1).unwrap_or(u16::MAX));
        let cm = |v: f64| (v * 100.0).round().clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        Some(krill_core::distance::DeploymentEntry {
            device_id: *ids.get(j)?,
            position_cm: [cm(x), cm(y), 0],
            floor: 0,
            zone,
        })
    };
    for j in std::iter::once(i).chain(heard.iter().map(|&j| j as usize)) {
        if let Some(e) = entry(j) {
            if m.push(e).is_err() {
                break;
            }
        }
    }
    m
}

/// Builds the firmware of every node, its keys registered at every node it
/// may hear from.
enum Keys {
    Modeled(ModeledAuthority),
    Real,
}

impl Simulation {
    /// Builds a scenario for one seed. Run it on a thread with a large
    /// stack: an ES-1.2 Nano is half a megabyte.
    pub fn new(s: &Scenario, seed: u64, firmware: FirmwareKind, threads: usize) -> Result<Simulation, SimError> {
        Simulation::recording(s, seed, firmware, threads, None)
    }

    /// [`Simulation::new`], recording node `record`'s calls from boot as a
    /// replay log ([`Simulation::finish_recording`]). An attacker cannot be
    /// recorded: its wrapper is not the core.
    pub fn recording(
        s: &Scenario,
        seed: u64,
        firmware: FirmwareKind,
        threads: usize,
        record: Option<u32>,
    ) -> Result<Simulation, SimError> {
        let warmup_us = s.warmup_s() * 1_000_000;
        let end_us = warmup_us + s.duration_s * 1_000_000;
        let world = World::new(&s.world);
        let placed = positions(s, seed);
        let n = placed.len();
        if let Some(r) = record.filter(|&r| r as usize >= n) {
            return Err(SimError::Setup(format!("cannot record node {r}: the scenario has {n} nodes (0..{n})")));
        }
        let keys = match s.crypto {
            CryptoMode::Modeled => Keys::Modeled(ModeledAuthority::new(&seed_bytes(seed, 0xA11))),
            CryptoMode::Real => Keys::Real,
        };
        let mut cfg_base = NodeConfig::default();
        if let Some(v) = s.timers.sensor_read_ms {
            cfg_base.timers.sensor_read_ms = v;
        }
        if let Some(v) = s.timers.presence_pulse_ms {
            cfg_base.timers.presence_pulse_ms = v;
        }
        if let Some(v) = s.timers.heartbeat_ms {
            cfg_base.timers.heartbeat_ms = v;
        }
        cfg_base.environment = s.radio.environment.core();
        cfg_base.tx_power_dbm = Radio::node_tx_dbm(&s.radio).round().clamp(-40.0, 20.0) as i8;
        if let Start::Warm { warmup_s } = s.start {
            // Neonatal periods end shortly before t = 0 so profiles are frozen
            // from the benign warm-up.
            let neo = (warmup_s * 1_000).saturating_sub(BOOT_STAGGER_US / 1_000 + 60_000).max(60_000);
            cfg_base.lifecycle.neonatal_duration_ms = neo;
            cfg_base.subject_neonatal_ms = neo;
        }
        let watch_from: BTreeMap<u32, Micros> = crate::summary::attackers(s)
            .into_iter()
            .map(|(node, _, start_s)| (node, warmup_us + start_s.saturating_mul(1_000_000)))
            .collect();
        let attackers: Vec<u32> = s
            .attacks
            .iter()
            .flat_map(|a| {
                let mut v = vec![a.node];
                if let crate::scenario::AttackKind::Collusion { members, .. } = &a.kind {
                    v.extend(members);
                }
                v
            })
            .collect();

        let mut identities = Vec::with_capacity(n);
        for i in 0..n {
            identities.push(Identity::from_seed(&Seed(seed_bytes(seed, i as u64 + 1))));
        }
        let memo = VerifyMemo::new();
        let make_crypto = |i: usize| -> Box<dyn CryptoBox> {
            match &keys {
                Keys::Modeled(a) => Box::new(MemoCrypto::new(a.crypto_for(&identities[i]), memo.clone())),
                Keys::Real => Box::new(MemoCrypto::new(RealCrypto::new(&identities[i]), memo.clone())),
            }
        };
        let ids: Arc<Vec<DeviceId>> = Arc::new(identities.iter().map(|id| id.device_id()).collect());
        let crypto_for: crate::attack::CryptoFor = match &keys {
            Keys::Modeled(a) => {
                let a = a.clone();
                Arc::new(move |id: &Identity| Box::new(a.crypto_for(id)) as Box<dyn crate::attack::DynCrypto>)
            }
            Keys::Real => Arc::new(|id: &Identity| Box::new(RealCrypto::new(id)) as Box<dyn crate::attack::DynCrypto>),
        };
        let pos_only: Vec<(f64, f64)> = placed.iter().map(|p| (p.0, p.1)).collect();
        let tx: Vec<f64> = vec![Radio::node_tx_dbm(&s.radio); n];
        let mut radio = Radio::new(&s.radio, &world, &pos_only, &tx, seed);
        if s.radio.bearer == crate::scenario::Bearer::EspNow {
            let no_wifi: Vec<u32> = (0..n as u32).filter(|&i| placed[i as usize].2 == NodeClass::Dust).collect();
            radio = radio.without_nodes(&no_wifi);
        }
        let gateways: Vec<u32> = (0..n as u32).filter(|&i| placed[i as usize].2 == NodeClass::Gateway).collect();
        let fulls: Vec<u32> = (0..n as u32).filter(|&i| placed[i as usize].2 == NodeClass::Full).collect();

        let surveyed = s.deployment_manifest.then(|| heard_from(&radio, n));
        let mut nodes: Vec<SimNode> = Vec::with_capacity(n);
        let mut info = Vec::with_capacity(n);
        let mut by_id = HashMap::with_capacity(n);
        let mut dust_of_gateway: BTreeMap<u32, Vec<(u32, DeviceId)>> = BTreeMap::new();
        for i in 0..n {
            let (x, y, class, quantity) = placed[i];
            let mut jitter = SimRng::stream(seed, Purpose::Jitter, i as u32);
            let boot_us = jitter.below(BOOT_STAGGER_US);
            let mut cfg = cfg_base.clone();
            cfg.quantity = quantity.core();
            cfg.role = match class {
                NodeClass::Nano => Role::Nano,
                NodeClass::Gateway => Role::Gateway,
                NodeClass::Full => Role::Full,
                NodeClass::Dust => Role::Dust,
            };
            if let Some(heard) = &surveyed {
                cfg.manifest = manifest_for(i, heard.get(i).map_or(&[], |v| v.as_slice()), &placed, &ids, &world);
            }
            let now = Now::new(0, UNIX0);
            let id = identities[i].device_id();
            let fw: Box<dyn Firmware> = match (firmware, class) {
                (FirmwareKind::Baseline, _) => make_crypto(i).baseline(&cfg, now),
                (FirmwareKind::Core, NodeClass::Dust) => {
                    let gw = radio.lora_receivers(i as u32, &gateways).into_iter().next();
                    let key = krill_core::gateway::DustKey(
                        seed_bytes(seed ^ 0xD057, i as u64)[..16].try_into().unwrap_or([0; 16]),
                    );
                    let short_id = match gw {
                        Some(g) => {
                            dust_of_gateway.entry(g).or_default().push((i as u32, id));
                            (dust_of_gateway[&g].len() - 1) as u16
                        }
                        None => 0,
                    };
                    let mut dcfg = NodeConfig::dust(DustLink { short_id, key });
                    dcfg.timers.sensor_read_ms = s.timers.sensor_read_ms.unwrap_or(60_000);
                    dcfg.quantity = quantity.core();
                    make_crypto(i).dust(dcfg, now, i as u32)
                }
                (FirmwareKind::Core, _) => make_crypto(i).nano(cfg, now, i as u32),
            };
            let mine: Vec<crate::scenario::Attack> = s
                .attacks
                .iter()
                .filter(|a| {
                    a.node == i as u32
                        || matches!(&a.kind, crate::scenario::AttackKind::Collusion { members, .. } if members.contains(&(i as u32)))
                })
                .cloned()
                .collect();
            let mut fw = fw;
            if record == Some(i as u32) {
                if !mine.is_empty() {
                    return Err(SimError::Setup(format!(
                        "cannot record node {i}: it is an attacker; record an honest node (one of its monitors)"
                    )));
                }
                let crypto = match &keys {
                    Keys::Modeled(_) => CryptoSpec::Modeled { authority: seed_bytes(seed, 0xA11) },
                    Keys::Real => CryptoSpec::Real,
                };
                fw.start_recording(crypto, seed_bytes(seed, i as u64 + 1))
                    .map_err(|e| SimError::Setup(format!("cannot record node {i}: {e}")))?;
            }
            let fw = if mine.is_empty() {
                fw
            } else {
                let env = crate::attack::AttackEnv {
                    node: i as u32,
                    id,
                    quantity,
                    warmup_us,
                    boot_us,
                    seed,
                    crypto: make_crypto(i).into_crypto(),
                    ids: ids.clone(),
                    crypto_for: crypto_for.clone(),
                };
                crate::attack::wrap(fw, &mine, env)
            };
            let mut bias_rng = SimRng::stream(seed, Purpose::Bias, i as u32);
            let sensor = Sensor::new(&world, quantity, &mut bias_rng, SimRng::stream(seed, Purpose::Sensor, i as u32));
            let mut clock = SimRng::stream(seed, Purpose::Clock, i as u32);
            let (mut clock_offset_us, mut drift_ppm) =
                ((clock.normal() * s.clocks.offset_sd_ms * 1e3) as i64, clock.normal() * s.clocks.drift_sd_ppm);
            if matches!(class, NodeClass::Gateway | NodeClass::Full) {
                // Disciplined by GPS/NTP: the mesh's time sources.
                (clock_offset_us, drift_ppm) = (0, 0.0);
            }
            by_id.insert(id, i as u32);
            info.push(NodeInfo {
                index: i as u32,
                id,
                class,
                quantity,
                pos: (x, y),
                zone: world.zone_of(x, y),
                attacker: attackers.contains(&(i as u32)),
                watch_from_us: watch_from.get(&(i as u32)).copied().unwrap_or(0),
            });
            nodes.push(SimNode {
                fw,
                rng: SimRng::stream(seed, Purpose::Firmware, i as u32),
                radio_rng: SimRng::stream(seed, Purpose::Radio, i as u32),
                sensor,
                quantity,
                boot_us,
                clock_offset_us,
                drift_ppm,
                sync_source: None,
                sync_at: None,
                sync_tries: 0,
                wake_at: None,
                alive: true,
                dead: false,
                out: Vec::new(),
                log: NodeLog::default(),
                lora_free_at: 0,
                rx_window: None,
                downlinks: BTreeMap::new(),
                uplink_ended: BTreeMap::new(),
                ble_rx: radio.ble_receiver(),
                lora_rx: ReceiverState::lora(),
                relay_cache: RelayCache::new(),
                keeps_audits: true,
            });
        }
        // Keys: every node knows the keys of the nodes it can hear (its
        // deployment's enrolled neighbours), up to its table size.
        let pubkeys: Vec<PublicKey> = identities.iter().map(|id| id.public_key()).collect();
        // Gateways and Full nodes first, then the strongest links: a Nano's
        // key table holds MAX_NEIGHBORS keys (ES-1.2).
        for (i, node) in nodes.iter_mut().enumerate() {
            let mut links: Vec<&crate::radio::Link> = radio.links(i as u32).iter().collect();
            links.sort_by(|a, b| b.mean_rssi.total_cmp(&a.mean_rssi).then(a.to.cmp(&b.to)));
            let mut heard: Vec<u32> = fulls.iter().chain(&gateways).copied().collect();
            heard.extend(links.iter().map(|l| l.to));
            if s.radio.relay_ttl > 0 {
                // Relayed frames come from up to relay_ttl + 1 radio hops away.
                heard.extend(radio.within_hops(i as u32, u32::from(s.radio.relay_ttl) + 1));
            }
            let mut seen = std::collections::BTreeSet::new();
            for j in heard {
                if j as usize != i && seen.insert(j) {
                    node.fw.register_peer(pubkeys[j as usize]);
                }
            }
        }
        // ES-10.2 phase 3: the strongest time source in radio range.
        if s.clocks.sync {
            for (i, node) in nodes.iter_mut().enumerate() {
                if matches!(info[i].class, NodeClass::Gateway | NodeClass::Full | NodeClass::Dust) {
                    continue;
                }
                node.sync_source = radio
                    .links(i as u32)
                    .iter()
                    .filter(|l| matches!(info[l.to as usize].class, NodeClass::Gateway | NodeClass::Full))
                    .max_by(|a, b| a.mean_rssi.total_cmp(&b.mean_rssi).then(b.to.cmp(&a.to)))
                    .map(|l| l.to);
            }
        }
        for (g, dusts) in &dust_of_gateway {
            for (d, _) in dusts {
                let key = krill_core::gateway::DustKey(
                    seed_bytes(seed ^ 0xD057, u64::from(*d))[..16].try_into().unwrap_or([0; 16]),
                );
                nodes[*g as usize].fw.register_dust(info[*d as usize].id, key);
            }
            // Mesh neighbours of the gateway accept its vouched traces.
            for l in radio.links(*g) {
                for (_, did) in dusts {
                    nodes[l.to as usize].fw.register_dust_served(*did, info[*g as usize].id);
                }
            }
        }
        let partitions = s
            .faults
            .iter()
            .filter_map(|f| match f.kind {
                FaultKind::Partition { x, duration_s } => {
                    let from = warmup_us + f.at_s * 1_000_000;
                    Some((x, from, from + duration_s * 1_000_000))
                }
                _ => None,
            })
            .collect();
        let model = SimModel {
            radio,
            world,
            info,
            by_id,
            gateways,
            fulls,
            warmup_us,
            sample_us: s.sample_interval_s * 1_000_000,
            end_us,
            duty_cycle: s.radio.lora_duty_cycle,
            partitions,
            sync_interval_us: s.clocks.sync_interval_s.saturating_mul(1_000_000),
            audit: AuditLevel::Full,
        };
        let lookahead = model.radio.min_latency_us().min(BATCH_LATENCY_US);
        let mut engine = Engine::new(model, nodes, lookahead, threads)?;
        for i in 0..n {
            let boot = engine.nodes()[i].boot_us;
            let first = boot + engine.nodes()[i].fw.next_deadline_ms() * 1_000;
            engine.nodes_mut()[i].wake_at = Some(first);
            engine.schedule(first, class::WAKE, i as u32, SimEvent::Wake)?;
            engine.schedule(warmup_us, class::SAMPLE, i as u32, SimEvent::Sample)?;
            if engine.nodes()[i].sync_source.is_some() {
                let at = boot + SYNC_AFTER_BOOT_US;
                if at <= end_us {
                    engine.nodes_mut()[i].sync_at = Some(at);
                    engine.schedule(at, class::WAKE, i as u32, SimEvent::TimeSync)?;
                }
            }
        }
        for f in &s.faults {
            let at = warmup_us + f.at_s * 1_000_000;
            let node = match f.kind {
                FaultKind::Crash { node, .. }
                | FaultKind::ClockStep { node, .. }
                | FaultKind::FlashCorruption { node, .. }
                | FaultKind::BatteryDepletion { node } => node,
                FaultKind::Partition { .. } => continue,
            };
            if at <= end_us {
                engine.schedule(at, class::FAULT, node, SimEvent::Fault(f.kind.clone()))?;
            }
        }
        Ok(Simulation { engine, end_us, seed, firmware, recorded: record })
    }

    /// Runs to the end, calling `progress(done, total)` now and then (µs).
    pub fn run(&mut self, mut progress: impl FnMut(Micros, Micros)) -> Result<(), SimError> {
        let step = (self.end_us / 200).max(1_000_000);
        let mut t = 0;
        while t < self.end_us {
            t = (t + step).min(self.end_us);
            self.engine.run_until(t)?;
            progress(t, self.end_us);
        }
        Ok(())
    }

    /// The recorded node's log (see [`Simulation::recording`]): `None` if
    /// no node was recorded.
    pub fn finish_recording(&mut self) -> Option<(u32, Result<RecordedLog, String>)> {
        let i = self.recorded?;
        let fw = &mut self.engine.nodes_mut().get_mut(i as usize)?.fw;
        Some((i, fw.finish_recording()?))
    }

    /// Which audit events the nodes keep from now on (all by default). A
    /// run that writes no `audit.jsonl` (`krill check`, sweeps, benches)
    /// keeps none: the summary needs only the counts and lifecycle moves
    /// recorded at every level, and a day of a thousand nodes' assessments
    /// is gigabytes.
    ///
    /// `scope.nodes`, when given, limits that to the listed nodes: one
    /// monitor's full trail through a city day fits in memory, every
    /// node's does not. An index outside the scenario is an error.
    pub fn keep_audits(&mut self, scope: &AuditScope) -> Result<(), SimError> {
        self.engine.model_mut().audit = scope.level;
        if let Some(only) = &scope.nodes {
            let n = self.engine.nodes().len();
            if let Some(bad) = only.iter().find(|&&i| i as usize >= n) {
                return Err(SimError::Setup(format!("cannot audit node {bad}: the scenario has {n} nodes (0..{n})")));
            }
            for (i, node) in self.engine.nodes_mut().iter_mut().enumerate() {
                node.keeps_audits = only.contains(&(i as u32));
            }
        }
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &SimModel {
        self.engine.model()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[SimNode] {
        self.engine.nodes()
    }

    /// Engine counters.
    pub fn stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// See [`Engine::profile_rounds`] (a one-thread run only).
    pub fn profile_rounds(&mut self, on: bool) {
        self.engine.profile_rounds(on);
    }

    /// See [`Engine::time_windows`].
    pub fn time_windows(&mut self, width_us: Option<Micros>) {
        self.engine.time_windows(width_us);
    }

    /// See [`Engine::window_times`].
    pub fn window_times(&self) -> &[WindowTime] {
        self.engine.window_times()
    }

    /// See [`Engine::round_profile`].
    pub fn round_profile(&self) -> Option<&RoundProfile> {
        self.engine.round_profile()
    }

    /// End of the run, µs.
    pub fn end_us(&self) -> Micros {
        self.end_us
    }

    /// What `monitor` holds about `subject` now.
    pub fn view(&self, monitor: u32, subject: u32) -> Option<SubjectState> {
        let id = self.model().info.get(subject as usize)?.id;
        self.nodes().get(monitor as usize)?.fw.subject_state(id)
    }

    /// The own state of every node now.
    pub fn own_states(&self) -> Vec<OwnState> {
        self.nodes().iter().map(|n| if n.alive { n.fw.own_state() } else { OwnState::Offline }).collect()
    }
}

impl SimNode {
    /// What this node saw and did.
    pub fn log(&self) -> &NodeLog {
        &self.log
    }

    /// How far this node's wall clock is from true time at `t`, µs
    /// (positive = ahead).
    pub fn clock_error_us(&self, t: Micros) -> i64 {
        self.clock_offset_us + (t as f64 * self.drift_ppm * 1e-6) as i64
    }
}

/// A frame's relay-cache key: the first 4 bytes of its BLAKE2s (ES-15.4;
/// relays do not change the frame, so the whole frame can be hashed).
fn relay_key(frame: &[u8]) -> [u8; 4] {
    let h = krill_core::crypto::blake2s256(frame);
    [h[0], h[1], h[2], h[3]]
}

fn seed_bytes(seed: u64, index: u64) -> [u8; 32] {
    let mut input = [0u8; 24];
    input[..8].copy_from_slice(&seed.to_le_bytes());
    input[8..16].copy_from_slice(&index.to_le_bytes());
    input[16..].copy_from_slice(b"krillsim");
    krill_core::crypto::blake2s256(&input)
}

/// A crypto that can build each firmware type (object-safe over the
/// concrete `Crypto`s).
trait CryptoBox {
    fn nano(self: Box<Self>, cfg: NodeConfig, now: Now, q: u32) -> Box<dyn Firmware>;
    fn dust(self: Box<Self>, cfg: NodeConfig, now: Now, q: u32) -> Box<dyn Firmware>;
    fn baseline(self: Box<Self>, cfg: &NodeConfig, now: Now) -> Box<dyn Firmware>;
    fn into_crypto(self: Box<Self>) -> Box<dyn crate::attack::DynCrypto>;
}

impl<C: Crypto + Send + 'static> CryptoBox for C {
    fn nano(self: Box<Self>, cfg: NodeConfig, now: Now, q: u32) -> Box<dyn Firmware> {
        Box::new(SimNano::new(cfg, *self, now, q))
    }
    fn dust(self: Box<Self>, cfg: NodeConfig, now: Now, q: u32) -> Box<dyn Firmware> {
        Box::new(SimDust::new(cfg, *self, now, q))
    }
    fn baseline(self: Box<Self>, cfg: &NodeConfig, now: Now) -> Box<dyn Firmware> {
        Box::new(BaselineFirmware::new(cfg, *self, now))
    }
    fn into_crypto(self: Box<Self>) -> Box<dyn crate::attack::DynCrypto> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The static names are the CSV columns and summary keys earlier runs
    /// wrote (`guard_` + the reason in lower case).
    #[test]
    fn drop_names_are_the_stable_column_names() {
        use krill_core::guards::DropReason as G;
        use krill_core::node::FrameDrop as F;
        let guards = [
            G::RateLimited,
            G::Flooded,
            G::Blacklisted,
            G::Duplicate,
            G::Stale,
            G::FromFuture,
            G::Replay,
            G::TableFull,
        ];
        for g in guards {
            assert_eq!(drop_name(&F::Guard(g)), format!("guard_{}", format!("{g:?}").to_lowercase()));
        }
        assert_eq!(drop_name(&F::UnknownSender), "unknown_sender");
    }

    #[test]
    fn a_class_a_dust_node_hears_only_rx1_and_rx2_after_its_uplink() {
        let end = 50_000_000;
        let w = Some(rx_window_after(end));
        // The gateway's RX1 slot, one second after the uplink ended.
        assert!(hears_downlink(w, end + RX1_DELAY_US));
        assert!(hears_downlink(w, end + RX2_DELAY_US));
        assert!(!hears_downlink(w, end + RX1_DELAY_US - 1), "before RX1 the radio is still off");
        assert!(!hears_downlink(w, end + RX2_DELAY_US + RX_WINDOW_US + 1), "after RX2 it sleeps");
        assert!(!hears_downlink(None, end + RX1_DELAY_US), "no uplink, no window");
    }
}
