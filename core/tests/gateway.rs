//! LPWAN gateways in the sans-IO node (ES-12.4, ES-16), real Ed25519: Nanos
//! and gateways on a virtual clock, Dust devices over a hand-wired LoRa
//! link. (1) A lying Dust device is rejected by the mesh, its gateway
//! answers its next uplink with a REJECTION_NOTICE downlink and the Dust
//! node quarantines itself. (2) Two gateways relaying the same device are
//! corroborated (VOUCHED_OK); when one relays different readings both are
//! flagged and their traces lose weight.

use krill_core::crypto::{DustIdentity, Identity, RealCrypto};
use krill_core::gateway::{
    DustKey, GATEWAY_SUSPECT, GATEWAY_UNVERIFIED, GATEWAY_VOUCHED_1, GATEWAY_VOUCHED_OK, UPLINKS_PER_DOWNLINK,
};
use krill_core::lifecycle::SubjectState;
use krill_core::node::{
    Action, AuditEvent, DustLink, DustSizedNode, GatewayEvent, Node, NodeConfig, Role, TraceAssessment,
};
use krill_core::types::{DeviceId, Reading};
use std::collections::VecDeque;

mod common;
use common::{fast_config, identity, now_at, Lcg};

const KEY: DustKey = DustKey([0x5A; 16]);
/// Honest Nanos in the mesh.
const NANOS: usize = 6;
/// The Dust device starts lying here.
const LIE_FROM_MS: u64 = 150_000;

/// Nano capacities trimmed so that several nodes fit a test thread.
type TestNode = Node<RealCrypto, 8, 512, 16, 64>;
type DustNode = DustSizedNode<DustIdentity>;

fn dust_id() -> DeviceId {
    DeviceId([0xD0, 0x57, 0, 0, 0, 0, 0, 1])
}

/// ±1 LSB around 22.00 °C, deterministic per node and time.
fn honest(i: usize, ms: u64) -> Reading {
    2200 + ((i as u64 * 7 + ms / 5000) % 3) as Reading - 1
}

type DustReader = Box<dyn Fn(usize, u64) -> Reading>;

/// Who an action came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum From {
    Mesh(usize),
    Dust(usize),
}

/// Nanos and gateways on one BLE hop, Dust devices each heard by the
/// gateways listed in `lora[d]`.
struct World {
    mesh: Vec<TestNode>,
    dust: Vec<Box<DustNode>>,
    lora: Vec<Vec<usize>>,
    dust_read: DustReader,
    now_ms: u64,
    rng: Lcg,
    audits: Vec<Vec<AuditEvent>>,
    dust_audits: Vec<Vec<AuditEvent>>,
    /// (time, gateway, dest, frame) of every LoRa downlink.
    downlinks: Vec<(u64, usize, DeviceId, Vec<u8>)>,
    /// Uplinks each Dust device sent.
    uplinks: Vec<u64>,
    deliver_downlinks: bool,
}

impl World {
    /// `gateways` mesh nodes after the Nanos are gateways; every Dust device
    /// is registered with its gateways (under the same short id) and every
    /// Nano is told which gateways serve it.
    fn new(gateways: usize, lora: Vec<Vec<usize>>, dust_read: DustReader) -> Self {
        let n = NANOS + gateways;
        let ids: Vec<Identity> = (0..n as u8).map(identity).collect();
        let mut mesh: Vec<TestNode> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let role = if i >= NANOS { Role::Gateway } else { Role::Nano };
                Node::new(NodeConfig { role, ..fast_config() }, RealCrypto::new(id), now_at(0), 1 + i as u32)
            })
            .collect();
        for node in &mut mesh {
            for id in &ids {
                if id.device_id() != node.id() {
                    node.register_peer(id.public_key()).unwrap();
                }
            }
        }
        let mut dust = Vec::new();
        for (d, gws) in lora.iter().enumerate() {
            let device = DeviceId([0xD0, 0x57, 0, 0, 0, 0, 0, 1 + d as u8]);
            let mut short = None;
            for &g in gws {
                let s = mesh[g].register_dust(device, KEY).unwrap();
                assert!(short.is_none_or(|x| x == s), "gateways agree on the short id");
                short = Some(s);
                for node in mesh.iter_mut() {
                    node.register_dust_served(device, ids[g].device_id()).unwrap();
                }
            }
            let link = DustLink { short_id: short.unwrap_or(0), key: KEY };
            dust.push(Box::new(Node::new(NodeConfig::dust(link), DustIdentity(device), now_at(0), 100 + d as u32)));
        }
        let nd = dust.len();
        World {
            mesh,
            dust,
            lora,
            dust_read,
            now_ms: 0,
            rng: Lcg(7),
            audits: vec![Vec::new(); n],
            dust_audits: vec![Vec::new(); nd],
            downlinks: Vec::new(),
            uplinks: vec![0; nd],
            deliver_downlinks: true,
        }
    }

    fn index_of(&self, id: DeviceId) -> Option<usize> {
        self.mesh.iter().position(|n| n.id() == id)
    }

    fn dust_index(&self, id: DeviceId) -> Option<usize> {
        self.dust.iter().position(|d| d.id() == id)
    }

    fn drain(&mut self, mut queue: VecDeque<(From, Action)>) {
        while let Some((from, a)) = queue.pop_front() {
            let now = now_at(self.now_ms);
            let mut out: Vec<(From, Action)> = Vec::new();
            match (from, a) {
                (From::Mesh(i), Action::Broadcast(f)) => {
                    for to in (0..self.mesh.len()).filter(|&to| to != i) {
                        self.mesh[to].handle_frame(now, &f, -59, 0, &mut |a| out.push((From::Mesh(to), a)));
                    }
                }
                (From::Mesh(_), Action::Unicast { dest, frame }) => {
                    if let Some(to) = self.index_of(dest) {
                        self.mesh[to].handle_frame(now, &frame, -59, 0, &mut |a| out.push((From::Mesh(to), a)));
                    }
                }
                (From::Mesh(i), Action::ReadSensor { quantity }) => {
                    let r = honest(i, self.now_ms);
                    self.mesh[i].handle_reading(now, quantity, r, &mut |a| out.push((From::Mesh(i), a)));
                }
                (From::Mesh(i), Action::LoraDownlink { dest, frame }) => {
                    self.downlinks.push((self.now_ms, i, dest, frame.to_vec()));
                    if let (true, Some(d)) = (self.deliver_downlinks, self.dust_index(dest)) {
                        self.dust[d].handle_downlink(&frame, &mut |a| out.push((From::Dust(d), a)));
                    }
                }
                (From::Mesh(i), Action::Audit(e)) => self.audits[i].push(e),
                (From::Dust(d), Action::ReadSensor { quantity }) => {
                    let r = (self.dust_read)(d, self.now_ms);
                    self.dust[d].handle_reading(now, quantity, r, &mut |a| out.push((From::Dust(d), a)));
                }
                (From::Dust(d), Action::LoraUplink(f)) => {
                    self.uplinks[d] += 1;
                    for g in self.lora[d].clone() {
                        self.mesh[g].handle_uplink(now, &f, &mut |a| out.push((From::Mesh(g), a)));
                    }
                }
                (From::Dust(d), Action::Audit(e)) => self.dust_audits[d].push(e),
                _ => {}
            }
            queue.extend(out);
        }
    }

    fn next_deadline(&self) -> u64 {
        let m = self.mesh.iter().map(|n| n.next_deadline()).min().unwrap_or(u64::MAX);
        let d = self.dust.iter().map(|n| n.next_deadline()).min().unwrap_or(u64::MAX);
        m.min(d)
    }

    fn run_until(&mut self, ms: u64) {
        while self.next_deadline() <= ms {
            self.now_ms = self.next_deadline().max(self.now_ms);
            let now = now_at(self.now_ms);
            let mut queue = VecDeque::new();
            for i in 0..self.mesh.len() {
                if self.mesh[i].next_deadline() <= self.now_ms {
                    let mut out = Vec::new();
                    self.mesh[i].handle_timers(now, &mut self.rng, &mut |a| out.push((From::Mesh(i), a)));
                    queue.extend(out);
                }
            }
            for d in 0..self.dust.len() {
                if self.dust[d].next_deadline() <= self.now_ms {
                    let mut out = Vec::new();
                    self.dust[d].handle_timers(now, &mut self.rng, &mut |a| out.push((From::Dust(d), a)));
                    queue.extend(out);
                }
            }
            self.drain(queue);
        }
        self.now_ms = ms;
    }

    /// Assessments of `device`'s traces at mesh node `i`, from audit `from` on.
    fn assessments(&self, i: usize, device: DeviceId, from: usize) -> Vec<TraceAssessment> {
        self.audits[i][from..]
            .iter()
            .filter_map(|e| match e {
                AuditEvent::Trace(t) if t.subject == device => Some(*t),
                _ => None,
            })
            .collect()
    }

    fn gateway_events(&self, i: usize) -> Vec<GatewayEvent> {
        self.audits[i]
            .iter()
            .filter_map(|e| match e {
                AuditEvent::Gateway(g) => Some(*g),
                _ => None,
            })
            .collect()
    }
}

/// Runs `f` on a thread with room for the nodes.
fn big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(64 << 20).spawn(f).unwrap().join().unwrap();
}

/// A Dust device that reads like its neighbours, then 7 °C too hot.
fn liar(_: usize, ms: u64) -> Reading {
    if ms >= LIE_FROM_MS {
        2900
    } else {
        honest(9, ms)
    }
}

fn lying_dust_device_is_quarantined_by_its_gateways_downlink_body() {
    const GW: usize = NANOS;
    let mut w = World::new(1, vec![vec![GW]], Box::new(liar));
    let dust = dust_id();
    let gw_id = w.mesh[GW].id();
    w.run_until(LIE_FROM_MS - 1);

    // Before the lie: the Dust device is NORMAL everywhere, its traces are
    // vouched by one gateway (ES-16.2: VOUCHED_1, half a signed trace's
    // weight in the field), and no downlink was sent.
    for i in 0..NANOS {
        assert_eq!(w.mesh[i].subject_state(dust), Some(SubjectState::Normal), "nano {i}");
        let a = w.assessments(i, dust, 0);
        assert!(a.len() > 20, "nano {i} assessed {} Dust traces", a.len());
        let g = a.last().unwrap().gateway.expect("a vouched trace carries its gateway assessment");
        assert_eq!((g.gateway, g.confidence, g.anomalous), (gw_id, GATEWAY_VOUCHED_1, false));
        let field: Vec<_> = w.mesh[i].field().entries().filter(|e| e.device == dust).collect();
        assert!(!field.is_empty() && field.iter().all(|e| e.confidence == GATEWAY_VOUCHED_1), "nano {i}: {field:?}");
        let p = w.mesh[i].gateway_monitor().profile(&gw_id).expect("the gateway is profiled");
        assert!(p.serves(&dust) && p.anomaly_rate() == 0.0 && p.traces_received() as usize == a.len());
    }
    assert!(w.downlinks.is_empty());
    let sent_before = w.uplinks[0];
    let marks: Vec<usize> = w.audits.iter().map(Vec::len).collect();

    w.run_until(LIE_FROM_MS + 120_000);

    // The mesh rejects the liar: its honest monitors' records, then their
    // REJECTION_NOTICEs (or the gateway's own record) make the gateway queue
    // the downlink.
    let rejected = (0..NANOS).filter(|&i| w.mesh[i].subject_state(dust) == Some(SubjectState::Rejection)).count();
    assert!(rejected > NANOS / 2, "{rejected} of {NANOS} Nanos rejected the liar");
    let gw_events = w.gateway_events(GW);
    let queued = gw_events.iter().find_map(|e| match e {
        GatewayEvent::RejectionQueued { device, by_peers } if *device == dust => Some(*by_peers),
        _ => None,
    });
    assert!(queued.is_some(), "the gateway queued a rejection: {gw_events:?}");

    // The gateway answered an uplink of the liar with one authenticated
    // downlink, and the Dust node obeyed it.
    assert_eq!(w.downlinks.len(), 1, "{:?}", w.downlinks);
    let (at, from, dest, frame) = w.downlinks[0].clone();
    assert_eq!((from, dest, frame.len()), (GW, dust, 12));
    assert_eq!(frame[0], 0x23, "REJECTION_NOTICE downlink");
    assert!(gw_events
        .iter()
        .any(|e| matches!(e, GatewayEvent::RejectionSent { device, short_id: 0, .. } if *device == dust)));
    assert!(w.dust_audits[0].contains(&AuditEvent::DustQuarantined), "{:?}", w.dust_audits[0]);
    assert!(w.dust[0].dust_quarantined());

    // Quarantined, the Dust device stops transmitting; it transmitted while
    // the mesh was deciding.
    let sent_after = w.uplinks[0];
    assert!(sent_after > sent_before);
    let quiet_from = w.uplinks[0];
    w.run_until(LIE_FROM_MS + 240_000);
    assert_eq!(w.uplinks[0], quiet_from, "a quarantined Dust node sends nothing");
    assert!(at >= LIE_FROM_MS);

    // The same downlink replayed is refused; a downlink from a gateway
    // without the key does not verify.
    let mut replayed = Vec::new();
    w.dust[0].handle_downlink(&frame, &mut |a| replayed.push(a));
    assert!(matches!(replayed.as_slice(), [Action::Audit(AuditEvent::DustDropped { .. })]), "{replayed:?}");

    // The lie made the gateway suspect at its monitors, who now discount
    // whatever it vouches for.
    for (i, node) in w.mesh.iter().enumerate().take(NANOS) {
        let lies = w.assessments(i, dust, marks[i]);
        assert!(lies.iter().any(|a| a.gateway.is_some_and(|g| g.anomalous)), "nano {i}");
        let p = node.gateway_monitor().profile(&gw_id).unwrap();
        assert!(p.anomalies_flagged() > 0 && p.anomaly_rate() > 0.0, "nano {i}");
        let conf: Vec<u8> = lies.iter().filter_map(|a| a.gateway.map(|g| g.confidence)).collect();
        assert!(conf.windows(2).all(|w| w[1] <= w[0]), "nano {i}: confidence only falls during the lie: {conf:?}");
    }
    // Honest Nanos never left NORMAL themselves.
    for i in 0..NANOS {
        assert_eq!(w.mesh[i].own().state(), krill_core::lifecycle::OwnState::Normal, "nano {i}");
    }
}

#[test]
fn lying_dust_device_is_quarantined_by_its_gateways_downlink() {
    big_stack(lying_dust_device_is_quarantined_by_its_gateways_downlink_body);
}

fn lost_downlinks_are_resent_within_the_budget_body() {
    const GW: usize = NANOS;
    let mut w = World::new(1, vec![vec![GW]], Box::new(liar));
    w.deliver_downlinks = false;
    w.run_until(LIE_FROM_MS + 300_000);
    let sent = w.uplinks[0];
    let n = w.downlinks.len() as u64;
    assert!(n >= 2, "a lost downlink is sent again: {n}");
    // ES-12.4: at most one downlink per ten uplinks, the first after ten.
    assert!(n * u64::from(UPLINKS_PER_DOWNLINK) <= sent, "{n} downlinks for {sent} uplinks");
    let counters: Vec<u32> = w.downlinks.iter().map(|d| u32::from_le_bytes([d.3[4], d.3[5], d.3[6], d.3[7]])).collect();
    assert!(counters.windows(2).all(|c| c[1] > c[0]), "fresh counters: {counters:?}");
    assert!(!w.dust[0].dust_quarantined());
    // The latest one still works when it finally arrives.
    let last = w.downlinks.last().unwrap().3.clone();
    let mut out = Vec::new();
    w.dust[0].handle_downlink(&last, &mut |a| out.push(a));
    assert!(out.contains(&Action::Audit(AuditEvent::DustQuarantined)), "{out:?}");
}

#[test]
fn lost_downlinks_are_resent_within_the_budget() {
    big_stack(lost_downlinks_are_resent_within_the_budget_body);
}

fn two_gateways_corroborate_and_a_forging_one_is_flagged_body() {
    const G1: usize = NANOS;
    const G2: usize = NANOS + 1;
    // Dust 0 is heard by both gateways. Dust 1 is a second copy of it (same
    // id, key and counters, i.e. what a gateway holding the key can forge)
    // heard only by G2, and reading 3 °C higher from LIE_FROM_MS on, so G2
    // relays its own version of every transmission.
    let read: DustReader = Box::new(|d, ms| if d == 1 && ms >= LIE_FROM_MS { 2500 } else { honest(9, ms) });
    let mut w = World::new(2, vec![vec![G1, G2], vec![]], read);
    // A gateway holding the key can get the device quarantined too; that
    // is ES-16.1's trust dependency, not what this test is about.
    w.deliver_downlinks = false;
    w.dust.pop();
    let twin = Node::new(NodeConfig::dust(DustLink { short_id: 0, key: KEY }), DustIdentity(dust_id()), now_at(0), 200);
    w.dust.push(Box::new(twin));
    w.run_until(LIE_FROM_MS - 1);
    let (g1, g2, dust) = (w.mesh[G1].id(), w.mesh[G2].id(), dust_id());
    // Until the lie the twin sends what the device sends: copies agree.
    w.lora[0] = vec![G1];
    w.lora[1] = vec![G2];
    for i in 0..NANOS {
        let a = w.assessments(i, dust, 0);
        let conf: Vec<u8> = a.iter().filter_map(|t| t.gateway.map(|g| g.confidence)).collect();
        // One assessment per transmission, not one per copy.
        assert_eq!(a.len() as u64, w.uplinks[0], "nano {i}: one assessment per transmission");
        assert_eq!(conf.first(), Some(&GATEWAY_VOUCHED_1), "nano {i}: nothing corroborated yet");
        assert!(conf[1..].iter().all(|&c| c == GATEWAY_VOUCHED_OK), "nano {i}: corroborated: {conf:?}");
        let m = w.mesh[i].gateway_monitor();
        for g in [g1, g2] {
            assert!(m.profile(&g).unwrap().last_cross_validated().is_some(), "nano {i}");
        }
    }
    let marks: Vec<usize> = w.audits.iter().map(Vec::len).collect();
    w.run_until(LIE_FROM_MS + 300_000);
    for (i, &mark) in marks.iter().enumerate().take(NANOS) {
        let events = &w.gateway_events(i)[..];
        let disagreements = events.iter().filter(|e| matches!(e, GatewayEvent::Disagreement { .. })).count();
        assert!(disagreements >= 20, "nano {i}: {disagreements} disagreements");
        let m = w.mesh[i].gateway_monitor();
        let (p1, p2) = (m.profile(&g1).unwrap(), m.profile(&g2).unwrap());
        // ES-16.3 cannot tell the liar from the honest one: both are
        // flagged, and past 5 % their traces are UNVERIFIED.
        assert!(p1.anomaly_rate() > 0.05 && p2.anomaly_rate() > 0.05, "nano {i}: {p1:?} {p2:?}");
        assert!(events.iter().any(|e| matches!(e, GatewayEvent::TrustChanged { gateway, to, .. }
            if *gateway == g2 && *to == GATEWAY_UNVERIFIED)));
        let after = w.assessments(i, dust, mark);
        let last = after.last().and_then(|t| t.gateway).expect("first copies are still assessed");
        assert!(last.confidence <= GATEWAY_UNVERIFIED, "nano {i}: {last:?}");
        assert!([GATEWAY_UNVERIFIED, GATEWAY_SUSPECT].contains(&last.confidence));
        // A disagreeing copy is nobody's evidence against the Dust device.
        assert!(after.iter().all(|t| t.reading != 2500), "nano {i} assessed a conflicting copy");
        assert_ne!(w.mesh[i].subject_state(dust), Some(SubjectState::Rejection), "nano {i}");
        // The field holds the device's readings at the reduced confidence.
        let newest = w.mesh[i].field().entries().filter(|e| e.device == dust).max_by_key(|e| e.timestamp).unwrap();
        assert!(newest.confidence <= GATEWAY_UNVERIFIED, "nano {i}: {newest:?}");
    }
}

#[test]
fn two_gateways_corroborate_and_a_forging_one_is_flagged() {
    big_stack(two_gateways_corroborate_and_a_forging_one_is_flagged_body);
}
