//! A monitor that rejected a spiker reboots from its flash and still holds it
//! REJECTED (ES-14.3, ES-3.1): weight 0, its traces kept out of the field,
//! and the 72 h REJECTION timeout running from the original rejection, not
//! from the boot. Seven Nanos with real Ed25519 on a virtual clock; every
//! honest node carries out its persistence actions on its own `RamFlash`.

use krill_core::crypto::{Crypto, RealCrypto};
use krill_core::lifecycle::{AnyState, LifecycleAction, SubjectState};
use krill_core::node::{Action, AuditEvent, Node, NodeConfig, Now};
use krill_core::persist::{restore, NodeImage, RamFlash, Restored, Store, ESP32_C3_LAYOUT};
use krill_core::types::{DeviceId, Reading};
use std::collections::VecDeque;

mod common;
use common::{fast_config, identity, now_at, Lcg};

type TestNode = Node<RealCrypto, 8, 512, 16, 64>;
type Flash = RamFlash<0x40_0000>;

const SPIKER: usize = 6;
const SPIKE_FROM_MS: u64 = 150_000;
const REJECTION_MS: u64 = 259_200_000;

struct Mesh {
    nodes: Vec<TestNode>,
    flashes: Vec<Box<Flash>>,
    stores: Vec<Store>,
    now_ms: u64,
    rng: Lcg,
    /// (node, mono ms) of every krill_profiles write.
    profile_writes: Vec<(usize, u64)>,
    audits: Vec<Vec<AuditEvent>>,
}

fn reading(i: usize, ms: u64) -> Reading {
    if i == SPIKER && ms >= SPIKE_FROM_MS {
        6000
    } else {
        2200 + ((i as u64 * 7 + ms / 5000) % 3) as Reading - 1
    }
}

/// What a firmware main loop does with a persistence action: the profiles
/// image carries the rejected subjects too.
fn persist(store: &mut Store, flash: &mut Flash, node: &TestNode, a: &Action) -> bool {
    match a {
        Action::PersistState(s) => store.save_state(flash, s).map(drop).is_ok(),
        Action::PersistDagAppend(e) => store.record_dag(flash, node.dag(), e).is_ok(),
        Action::PersistDagCompact => store.compact_dag(flash, node.dag().entries()).is_ok(),
        Action::PersistProfiles => {
            let profiles: Vec<_> = node.stored_profiles().collect();
            let standings: Vec<_> = node.stored_standings().collect();
            let relatives: Vec<_> = node.stored_relatives().collect();
            store.save_profile_image(flash, &profiles, &standings, &relatives).unwrap();
            true
        }
        _ => false,
    }
}

impl Mesh {
    fn new(cfg: NodeConfig) -> Self {
        let cryptos: Vec<RealCrypto> = (0..7).map(|i| RealCrypto::new(&identity(i))).collect();
        let keys: Vec<_> = cryptos.iter().map(|c| c.public_key()).collect();
        let mut nodes: Vec<TestNode> =
            cryptos.into_iter().enumerate().map(|(i, c)| Node::new(cfg.clone(), c, now_at(0), 1 + i as u32)).collect();
        for node in &mut nodes {
            for k in &keys {
                if krill_core::crypto::device_id_of(k) != node.id() {
                    node.register_peer(*k).unwrap();
                }
            }
        }
        let mut flashes: Vec<Box<Flash>> = (0..7).map(|_| Box::default()).collect();
        let stores = flashes
            .iter_mut()
            .map(|f| restore::<_, 512, 64>(&mut **f, &ESP32_C3_LAYOUT, now_at(0).unix_s).store)
            .collect();
        Mesh { nodes, flashes, stores, now_ms: 0, rng: Lcg(42), profile_writes: Vec::new(), audits: vec![vec![]; 7] }
    }

    fn drain(&mut self, mut queue: VecDeque<(usize, Action)>) {
        while let Some((from, a)) = queue.pop_front() {
            let now = now_at(self.now_ms);
            let mut out = Vec::new();
            match &a {
                Action::Broadcast(f) => {
                    for to in (0..self.nodes.len()).filter(|&to| to != from) {
                        self.nodes[to].handle_frame(now, f, -59, 0, &mut |a| out.push((to, a)));
                    }
                }
                Action::Unicast { dest, frame } => {
                    if let Some(to) = self.nodes.iter().position(|n| n.id() == *dest) {
                        self.nodes[to].handle_frame(now, frame, -59, 0, &mut |a| out.push((to, a)));
                    }
                }
                Action::ReadSensor { quantity } => {
                    let r = reading(from, self.now_ms);
                    self.nodes[from].handle_reading(now, *quantity, r, &mut |a| out.push((from, a)));
                }
                Action::Audit(e) => self.audits[from].push(*e),
                _ if from != SPIKER
                    && persist(&mut self.stores[from], &mut self.flashes[from], &self.nodes[from], &a)
                    && matches!(a, Action::PersistProfiles) =>
                {
                    self.profile_writes.push((from, self.now_ms));
                }
                _ => {}
            }
            queue.extend(out);
        }
    }

    fn run_until(&mut self, ms: u64) {
        while let Some(next) = self.nodes.iter().map(|n| n.next_deadline()).min().filter(|&t| t <= ms) {
            self.now_ms = next.max(self.now_ms);
            let now = now_at(self.now_ms);
            let mut queue = VecDeque::new();
            for i in 0..self.nodes.len() {
                if self.nodes[i].next_deadline() <= self.now_ms {
                    let mut out = Vec::new();
                    self.nodes[i].handle_timers(now, &mut self.rng, &mut |a| out.push((i, a)));
                    queue.extend(out);
                }
            }
            self.drain(queue);
        }
        self.now_ms = ms;
    }

    /// When monitor `i` moved the spiker into REJECTION, monotonic ms.
    fn rejected_at(&self, i: usize) -> Option<u64> {
        let spiker = self.nodes[SPIKER].id();
        self.audits[i].iter().find_map(|e| match e {
            AuditEvent::Lifecycle(a) if a.subject == spiker && a.to == AnyState::Subject(SubjectState::Rejection) => {
                Some(a.at_ms)
            }
            _ => None,
        })
    }
}

/// Restores monitor `i` from its flash at `now` and registers its peers.
fn reboot(mesh: &mut Mesh, i: usize, cfg: &NodeConfig, now: Now) -> TestNode {
    let mut back: Restored<512, 64> = restore(&mut *mesh.flashes[i], &ESP32_C3_LAYOUT, now.unix_s);
    let crypto = RealCrypto::new(&identity(i as u8));
    let mut node: TestNode = Node::restore(cfg.clone(), crypto, now, 99, back.node_image());
    for j in (0..7).filter(|&j| j != i) {
        node.register_peer(RealCrypto::new(&identity(j as u8)).public_key()).unwrap();
    }
    node
}

fn spiker_weight_in_field(node: &TestNode, spiker: DeviceId) -> Option<u8> {
    node.field().entries().filter(|e| e.device == spiker).map(|e| e.weight).max()
}

/// A fresh TRACE_DEPOSIT from the spiker (its firmware restarted too, so it
/// is not suppressed by its own lifecycle) reading 60.00 °C at `now`.
fn spiker_frame(cfg: &NodeConfig, now: Now) -> Vec<u8> {
    let crypto = RealCrypto::new(&identity(SPIKER as u8));
    let mut n: TestNode = Node::new(cfg.clone(), crypto, now, 5);
    let mut frames = Vec::new();
    n.handle_reading(now, cfg.quantity, 6000, &mut |a| {
        if let Action::Broadcast(f) = a {
            frames.push(f.to_vec())
        }
    });
    assert_eq!(frames.len(), 1);
    frames.remove(0)
}

fn tick(node: &mut TestNode, now: Now) {
    let mut rng = Lcg(7);
    node.handle_timers(now, &mut rng, &mut |_| {});
}

fn body() {
    let cfg = fast_config();
    let mut mesh = Mesh::new(cfg.clone());
    mesh.run_until(SPIKE_FROM_MS + 30_000);
    let spiker = mesh.nodes[SPIKER].id();
    let monitor = (0..SPIKER)
        .find(|&i| mesh.nodes[i].subject_state(spiker) == Some(SubjectState::Rejection))
        .expect("some honest monitor rejected the spiker");
    let rej_ms = mesh.rejected_at(monitor).unwrap();
    let rej_unix = now_at(rej_ms).unix_s;
    assert!(
        mesh.profile_writes.contains(&(monitor, rej_ms)),
        "the rejection itself wrote krill_profiles, not the next 10th epoch: {:?}",
        mesh.profile_writes
    );
    let standing: Vec<_> = mesh.nodes[monitor].stored_standings().collect();
    assert_eq!(standing.len(), 1);
    assert_eq!((standing[0].device, standing[0].entered_at), (spiker, rej_unix));

    // Powered off for 10 h; the board's monotonic clock restarts at 0.
    let off_s = 10 * 3600;
    let boot_unix = now_at(mesh.now_ms).unix_s + off_s;
    let boot = Now::new(0, boot_unix);
    let mut node = reboot(&mut mesh, monitor, &cfg, boot);
    let s = node.subject(spiker).expect("the rejected spiker is remembered");
    assert_eq!(s.record().state(), SubjectState::Rejection);
    assert_eq!(s.record().assessed_weight(), 0);
    assert!(s.is_isolated());
    assert_eq!(spiker_weight_in_field(&node, spiker), None, "its restored traces left the field");
    // Its traces are not fed after the reboot either; the same frame reaches
    // the field of a monitor restored without the standings.
    let frame_now = Now::new(1_000, boot_unix + 1);
    let frame = spiker_frame(&cfg, frame_now);
    node.handle_frame(frame_now, &frame, -59, 0, &mut |_| {});
    assert_eq!(spiker_weight_in_field(&node, spiker).unwrap_or(0), 0, "deposited with weight 0 at most");
    let mut amnesiac = {
        let back: Restored<512, 64> = restore(&mut *mesh.flashes[monitor], &ESP32_C3_LAYOUT, boot.unix_s);
        let crypto = RealCrypto::new(&identity(monitor as u8));
        let image =
            NodeImage { state: &back.state, dag: back.dag, profiles: &back.profiles, standings: &[], relatives: &[] };
        let mut n: TestNode = Node::restore(cfg.clone(), crypto, boot, 99, image);
        for j in (0..7).filter(|&j| j != monitor) {
            n.register_peer(RealCrypto::new(&identity(j as u8)).public_key()).unwrap();
        }
        n
    };
    amnesiac.handle_frame(frame_now, &frame, -59, 0, &mut |_| {});
    assert_eq!(amnesiac.subject_state(spiker), Some(SubjectState::Neonatal), "without standings: NEONATAL");
    assert!(spiker_weight_in_field(&amnesiac, spiker).is_some_and(|w| w > 0), "without standings it is fed");
    drop(amnesiac);

    // The 72 h run from the rejection: (72 h − time already spent) after boot.
    let spent_ms = u64::from(boot_unix - rej_unix) * 1000;
    let remaining_ms = REJECTION_MS - spent_ms;
    assert!(remaining_ms < REJECTION_MS - 10 * 3_600_000);
    let at = |ms: u64| Now::new(ms, boot_unix + (ms / 1000) as u32);
    tick(&mut node, at(remaining_ms - 60_000));
    assert_eq!(node.subject_state(spiker), Some(SubjectState::Rejection), "one minute before the original 72 h");
    tick(&mut node, at(remaining_ms + 60_000));
    assert_eq!(node.subject_state(spiker), Some(SubjectState::Quarantine), "released into QUARANTINE on time");
    assert_eq!(node.subject(spiker).unwrap().record().assessed_weight(), 0);
    let q: Vec<_> = node.stored_standings().collect();
    assert_eq!(q.len(), 1, "QUARANTINE is persisted too");
    assert_eq!(
        (q[0].state, q[0].entered_at),
        (krill_core::persist::lifecycle_code::QUARANTINE, at(remaining_ms + 60_000).unix_s)
    );

    // A board whose monotonic clock had run long enough resumes the same
    // deadline without cutting the record's timer.
    let late = 20 * 3_600_000;
    let mut node = reboot(&mut mesh, monitor, &cfg, Now::new(late, boot_unix));
    assert_eq!(node.subject_state(spiker), Some(SubjectState::Rejection));
    let at = |ms: u64| Now::new(late + ms, boot_unix + (ms / 1000) as u32);
    tick(&mut node, at(remaining_ms - 60_000));
    assert_eq!(node.subject_state(spiker), Some(SubjectState::Rejection));
    tick(&mut node, at(remaining_ms + 60_000));
    assert_eq!(node.subject_state(spiker), Some(SubjectState::Quarantine));

    // QUARANTINE launches one remediation per day; an unanswered attempt
    // counts as failed when the next one is launched, and that is written
    // at once.
    let q_ms = remaining_ms + 60_000;
    let acts = tick_out(&mut node, at(q_ms + DAY_MS + 1000));
    assert_eq!(attempts(&acts, spiker), [1]);
    let acts = tick_out(&mut node, at(q_ms + 2 * DAY_MS + 2000));
    assert_eq!(attempts(&acts, spiker), [2]);
    assert!(acts.iter().any(|a| matches!(a, Action::PersistProfiles)), "the failure is written at once");
    assert_eq!(node.subject(spiker).unwrap().record().remediation_attempts(), 1);
    assert!(persist(&mut mesh.stores[monitor], &mut mesh.flashes[monitor], &node, &Action::PersistProfiles));

    // Off for 6 h, back at mono 0: the failure is remembered and the ES-3.1
    // schedule goes on (attempt 2 was due 2 days after entering, so the one
    // cut short by the power-off is made again at once).
    let boot2 = at(q_ms + 2 * DAY_MS + 2000).unix_s + 6 * 3600;
    let mut node = reboot(&mut mesh, monitor, &cfg, Now::new(0, boot2));
    let r = node.subject(spiker).unwrap().record();
    assert_eq!((r.state(), r.remediation_attempts(), r.assessed_weight()), (SubjectState::Quarantine, 1, 0));
    let at = |ms: u64| Now::new(ms, boot2 + (ms / 1000) as u32);
    assert_eq!(attempts(&tick_out(&mut node, at(1000)), spiker), [2]);
    assert_eq!(attempts(&tick_out(&mut node, at(DAY_MS)), spiker), [] as [u8; 0]);
    assert_eq!(attempts(&tick_out(&mut node, at(DAY_MS + 2000)), spiker), [3]);
    assert_eq!(node.subject(spiker).unwrap().record().remediation_attempts(), 2);
}

const DAY_MS: u64 = 86_400_000;

fn tick_out(node: &mut TestNode, now: Now) -> Vec<Action> {
    let mut rng = Lcg(7);
    let mut out = Vec::new();
    node.handle_timers(now, &mut rng, &mut |a| out.push(a));
    out
}

/// The remediation attempts `acts` launch for `subject`.
fn attempts(acts: &[Action], subject: DeviceId) -> Vec<u8> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Lifecycle(LifecycleAction::AttemptRemediation { subject: s, attempt }) if *s == subject => {
                Some(*attempt)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn rebooted_monitor_keeps_the_spiker_rejected_until_the_original_72_hours() {
    std::thread::Builder::new().stack_size(256 << 20).spawn(body).unwrap().join().unwrap();
}

#[test]
fn a_rejection_that_expired_while_off_comes_back_in_its_quarantine() {
    use krill_core::persist::{lifecycle_code, PersistedState, SubjectStanding};
    use krill_core::profile::SubjectKind;
    // Rejected 80 h before a boot at mono 0: the 72 h ended 8 h ago, so it
    // has been in QUARANTINE for 8 h and its first remediation is due 24 h
    // after that entry, 16 h from now (not 24 h from the first tick).
    let boot = Now::new(0, 1_800_000_000);
    let spiker = RealCrypto::new(&identity(SPIKER as u8)).device_id();
    let state = PersistedState::first_boot(boot.unix_s - 100 * 3600);
    let standings = [SubjectStanding {
        device: spiker,
        state: lifecycle_code::REJECTION,
        kind: SubjectKind::Nano,
        remediation_attempts: 0,
        entered_at: boot.unix_s - 80 * 3600,
    }];
    let image =
        NodeImage { state: &state, dag: Default::default(), profiles: &[], standings: &standings, relatives: &[] };
    let mut node: TestNode = Node::restore(fast_config(), RealCrypto::new(&identity(0)), boot, 7, image);
    let r = node.subject(spiker).expect("remembered").record();
    assert_eq!((r.state(), r.remediation_attempts(), r.assessed_weight()), (SubjectState::Quarantine, 0, 0));
    let q: Vec<_> = node.stored_standings().collect();
    assert_eq!((q[0].state, q[0].entered_at), (lifecycle_code::QUARANTINE, boot.unix_s - 8 * 3600));
    let at = |ms: u64| Now::new(ms, boot.unix_s + (ms / 1000) as u32);
    let h16 = 16 * 3_600_000;
    assert_eq!(attempts(&tick_out(&mut node, at(1000)), spiker), [] as [u8; 0]);
    assert_eq!(attempts(&tick_out(&mut node, at(h16 - 2000)), spiker), [] as [u8; 0]);
    assert_eq!(attempts(&tick_out(&mut node, at(h16 + 2000)), spiker), [1]);
}

/// A monitor's learned offsets of its subjects from its own readings (the
/// relative-drift check) come back from flash, so a drift that began before
/// a reboot is still measured from the level before it; an image without
/// them (as written before they were stored) leaves the subjects to learn
/// afresh.
#[test]
fn rebooted_monitor_keeps_its_learned_relative_levels() {
    std::thread::Builder::new().stack_size(256 << 20).spawn(relative_levels_body).unwrap().join().unwrap();
}

fn relative_levels_body() {
    let cfg = fast_config();
    let mut mesh = Mesh::new(cfg.clone());
    mesh.run_until(600_000);
    let monitor = 0;
    let before: Vec<_> = mesh.nodes[monitor].stored_relatives().collect();
    let learned = before.iter().filter(|r| r.samples == krill_core::node::RELATIVE_BASE_SAMPLES).count();
    assert!(learned >= 3, "ten minutes learn the offsets of most neighbours: {before:?}");
    assert!(persist(
        &mut mesh.stores[monitor],
        &mut mesh.flashes[monitor],
        &mesh.nodes[monitor],
        &Action::PersistProfiles
    ));

    let boot = Now::new(0, now_at(mesh.now_ms).unix_s + 3600);
    let node = reboot(&mut mesh, monitor, &cfg, boot);
    let after: Vec<_> = node.stored_relatives().collect();
    assert_eq!(after.len(), before.len());
    for r in &before {
        let level = node.subject(r.device).and_then(|s| s.relative()).expect("the level came back");
        assert_eq!(level.stored(r.device), *r);
        assert_eq!(level.drift(), mesh.nodes[monitor].subject(r.device).unwrap().relative().unwrap().drift());
    }

    let back: Restored<512, 64> = restore(&mut *mesh.flashes[monitor], &ESP32_C3_LAYOUT, boot.unix_s);
    assert_eq!(back.relatives.as_slice(), before.as_slice());
    let image =
        NodeImage { state: &back.state, dag: back.dag, profiles: &back.profiles, standings: &[], relatives: &[] };
    let crypto = RealCrypto::new(&identity(monitor as u8));
    let amnesiac: TestNode = Node::restore(cfg.clone(), crypto, boot, 99, image);
    assert_eq!(amnesiac.stored_relatives().count(), 0, "without them every offset is learnt again");
}
