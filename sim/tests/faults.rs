//! Fault injection end to end: a crash reboots a node from its flash with
//! its sequence numbers, damaged flash restores a written copy or falls
//! back cleanly, a depleted battery stops a node for good, a partition cuts
//! the links across it while it lasts.

mod common;

use common::on_big_stack;
use std::collections::BTreeSet;

use krill_core::crypto::{Identity, ModeledAuthority, ModeledCrypto, Seed};
use krill_core::guards::DropReason;
use krill_core::lifecycle::OwnState;
use krill_core::node::{Action, AuditEvent, FrameDrop, NodeConfig, Now};
use krill_core::persist::{restore, PersistedState, Restored, Status, StoredProfile, ESP32_C3_LAYOUT};
use krill_core::types::DeviceId;
use krill_sim::firmware::Firmware;
use krill_sim::rng::{Purpose, SimRng};
use krill_sim::scenario::Scenario;
use krill_sim::sim::{FirmwareKind, SimNano, Simulation, UNIX0};

/// A small room of Nanos at `positions`, with `faults`.
fn scenario(positions: &str, start: &str, duration_s: u64, faults: &str) -> Scenario {
    let text = format!(
        r#"(
            name: "faults-test",
            duration_s: {duration_s},
            start: {start},
            area: (width_m: 30, height_m: 30),
            nodes: [(class: Nano, quantity: Temperature, layout: Explicit([{positions}]))],
            world: (fields: [(quantity: Temperature, base: 21.5, noise_sd: 0.05, bias_sd: 0.05)]),
            faults: [{faults}],
        )"#
    );
    Scenario::parse(&text, "faults-test.ron").expect("test scenario parses")
}

fn run(s: Scenario) -> Simulation {
    on_big_stack(move || {
        let mut sim = Simulation::new(&s, 1, FirmwareKind::Core, 1).expect("builds");
        sim.run(|_, _| {}).expect("runs");
        sim
    })
}

/// TRACE_DEPOSITs from `node` that other nodes dropped as duplicates at or
/// after `from_us`.
fn duplicate_drops_of(sim: &Simulation, node: u32, from_us: u64) -> usize {
    const TRACE_DEPOSIT: u8 = 0x01;
    let id = sim.model().info()[node as usize].id;
    let duplicate = |e: &AuditEvent| match e {
        AuditEvent::Dropped { sender, msg_type, reason } => {
            *sender == id && *msg_type == TRACE_DEPOSIT && matches!(reason, FrameDrop::Guard(DropReason::Duplicate))
        }
        _ => false,
    };
    sim.nodes().iter().flat_map(|n| n.log().audits.iter()).filter(|(t, e)| *t >= from_us && duplicate(e)).count()
}

const ROOM: &str = "(2, 2), (7, 2), (12, 2), (2, 7), (7, 7), (12, 7)";

#[test]
fn crash_reboot_resumes_sequence_numbers_and_a_wiped_flash_does_not() {
    // Node 0 has sent ~23 traces when it goes down at the end of the warm-up.
    let crash = run(scenario(ROOM, "Warm(warmup_s: 120)", 240, "(at_s: 0, kind: Crash(node: 0, down_s: 60))"));
    let reboots = &crash.nodes()[0].log().reboots;
    assert_eq!(reboots.len(), 1);
    let (at, line) = (reboots[0].0, reboots[0].1.as_ref().expect("reboot works"));
    assert!(!line.contains("fallback") && !line.contains("DAG 0 entries"), "{line}");
    assert_eq!(duplicate_drops_of(&crash, 0, at), 0, "its traces continue its sequence: {line}");
    assert_eq!(crash.own_states()[0], crash.own_states()[1], "back in the state its neighbours are in");

    // The same node with every written byte damaged: everything falls back,
    // its sequence restarts at 0, inside its neighbours' duplicate windows.
    let wiped =
        run(scenario(ROOM, "Warm(warmup_s: 120)", 240, "(at_s: 0, kind: FlashCorruption(node: 0, bytes: 100000000))"));
    let reboots = &wiped.nodes()[0].log().reboots;
    let (at, line) = (reboots[0].0, reboots[0].1.as_ref().expect("reboot works on any flash"));
    for part in ["state fallback", "dag fallback"] {
        assert!(line.contains(part), "{line}");
    }
    assert!(line.contains("Neonatal weight 77"), "ES-14.3 step 6: NEONATAL: {line}");
    let dropped = duplicate_drops_of(&wiped, 0, at);
    assert!(dropped >= 20, "a restart at sequence 0 is dropped as duplicates: {dropped}");
}

#[test]
fn battery_depletion_stops_a_node_for_good() {
    let faults = "(at_s: 10, kind: BatteryDepletion(node: 0)), (at_s: 30, kind: Crash(node: 0, down_s: 20)), \
                  (at_s: 60, kind: FlashCorruption(node: 0, bytes: 8))";
    let short = run(scenario(ROOM, "Warm(warmup_s: 60)", 90, faults));
    let long = run(scenario(ROOM, "Warm(warmup_s: 60)", 240, faults));
    let (a, b) = (short.nodes()[0].log(), long.nodes()[0].log());
    assert!(b.reboots.is_empty(), "neither a power-on nor a reboot after corruption revives it");
    assert_eq!(a.sent, b.sent, "nothing sent after the battery ran out");
    assert!(!b.sent.is_empty());
    let after: Vec<OwnState> = b.samples.iter().filter(|s| long.model().scenario_s(s.0) >= 10.0).map(|s| s.2).collect();
    assert!(!after.is_empty() && after.iter().all(|s| *s == OwnState::Offline), "{after:?}");
    assert_eq!(long.own_states()[0], OwnState::Offline);
    let others = |sim: &Simulation| sim.nodes()[1].log().sent.values().sum::<u64>();
    assert!(others(&long) > others(&short), "the others carry on");
}

#[test]
fn partition_stops_deliveries_across_the_cut_while_it_lasts() {
    // Nodes 0 and 1 west of x = 10, node 2 east of it; all hear each other.
    let nodes = "(2, 5), (7, 5), (13, 5)";
    let received = |faults: &str| {
        let sim = run(scenario(nodes, "Cold", 120, faults));
        let l: Vec<(u64, u64)> =
            sim.nodes().iter().map(|n| (n.log().received, n.log().sent.values().sum::<u64>())).collect();
        l
    };
    let open = received("");
    let cut = received("(at_s: 0, kind: Partition(x: 10, duration_s: 1000))");
    let half = received("(at_s: 0, kind: Partition(x: 10, duration_s: 60))");
    assert!(open.iter().all(|&(rx, tx)| rx > 0 && tx > 0), "{open:?}");
    assert_eq!(cut[2].0, 0, "nothing crosses the cut: {cut:?}");
    assert!(cut[2].1 > 0, "node 2 still transmits");
    assert!(cut[0].0 > 0 && cut[1].0 > 0, "the west side still hears itself: {cut:?}");
    assert!(cut[0].0 < open[0].0, "the west side no longer hears node 2");
    assert!(half[2].0 > 0 && half[2].0 < open[2].0, "deliveries resume when it ends: {half:?} vs {open:?}");
}

#[test]
fn a_rebooted_gateway_still_serves_its_dust() {
    // Three Nanos and a gateway in a room, two Dust sensors over LoRa.
    let text = r#"(
        name: "gateway-reboot",
        duration_s: 600,
        start: Warm(warmup_s: 120),
        area: (width_m: 400, height_m: 400),
        timers: (sensor_read_ms: Some(30000)),
        nodes: [
            (class: Nano, quantity: Temperature, layout: Explicit([(2, 2), (7, 2), (2, 7)])),
            (class: Gateway, quantity: Temperature, layout: Explicit([(7, 7)])),
            (class: Dust, quantity: Temperature, layout: Explicit([(200, 10), (10, 300)])),
        ],
        world: (fields: [(quantity: Temperature, base: 21.5, noise_sd: 0.05, bias_sd: 0.05)]),
        faults: [(at_s: 0, kind: Crash(node: 3, down_s: 30))],
    )"#;
    let sim = run(Scenario::parse(text, "gateway-reboot.ron").expect("parses"));
    let gw = sim.nodes()[3].log();
    let at = gw.reboots.first().map(|r| r.0).expect("the gateway rebooted");
    let dust_drops: Vec<_> =
        gw.audits.iter().filter(|(t, e)| *t >= at && matches!(e, AuditEvent::DustDropped { .. })).collect();
    assert!(dust_drops.is_empty(), "it re-read its Dust registrations: {dust_drops:?}");
    let uplinks: u64 = (4..6).map(|d| sim.nodes()[d].log().sent.get(&0xD0).copied().unwrap_or(0)).sum();
    assert!(uplinks >= 6, "the Dust kept sending: {uplinks}");
}

/// Three Nanos driven directly (no radio model: every frame reaches every
/// other node), recording what node 0 persisted.
struct Bench {
    fws: Vec<SimNano<ModeledCrypto>>,
    boot_ms: Vec<u64>,
    t_ms: u64,
    rng: SimRng,
    /// Every critical state node 0 wrote.
    states: Vec<PersistedState>,
    /// Every DAG entry node 0 held.
    entries: BTreeSet<[u8; 20]>,
    /// Every profile set node 0 wrote.
    profiles: Vec<Vec<StoredProfile>>,
}

impl Bench {
    fn new() -> Self {
        let authority = ModeledAuthority::new(&[0x3C; 32]);
        let mut cfg = NodeConfig::default();
        cfg.lifecycle.neonatal_duration_ms = 60_000;
        cfg.subject_neonatal_ms = 60_000;
        let ids: Vec<Identity> = (0..3u8).map(|i| Identity::from_seed(&Seed([i + 1; 32]))).collect();
        let mut fws: Vec<SimNano<ModeledCrypto>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| SimNano::new(cfg.clone(), authority.crypto_for(id), Now::new(0, UNIX0), i as u32))
            .collect();
        for (i, fw) in fws.iter_mut().enumerate() {
            for (j, id) in ids.iter().enumerate() {
                if i != j {
                    fw.register_peer(id.public_key());
                }
            }
        }
        Bench {
            fws,
            boot_ms: vec![0; 3],
            t_ms: 0,
            rng: SimRng::stream(5, Purpose::Firmware, 0),
            states: Vec::new(),
            entries: BTreeSet::new(),
            profiles: Vec::new(),
        }
    }

    fn now(&self, i: usize) -> Now {
        Now::new(self.t_ms - self.boot_ms[i], UNIX0 + (self.t_ms / 1000) as u32)
    }

    fn id(&self, i: usize) -> DeviceId {
        self.fws[i].id()
    }

    /// Notes what node `i` just persisted, then carries out its actions.
    fn after_call(&mut self, i: usize, out: Vec<Action>) {
        if i == 0 {
            for a in &out {
                match a {
                    Action::PersistState(s) => self.states.push(*s),
                    Action::PersistDagAppend(e) => {
                        self.entries.insert(e.hash.0);
                    }
                    Action::PersistProfiles => self.profiles.push(self.fws[0].node().stored_profiles().collect()),
                    _ => {}
                }
            }
            self.entries.extend(self.fws[0].node().dag().entries().iter().map(|e| e.hash.0));
        }
        for a in out {
            match a {
                Action::Broadcast(f) => {
                    for j in (0..3).filter(|&j| j != i) {
                        let (mut o, now) = (Vec::new(), self.now(j));
                        self.fws[j].handle_frame(now, &f, -60, 0, &mut o);
                        self.after_call(j, o);
                    }
                }
                Action::Unicast { dest, frame } => {
                    if let Some(j) = (0..3).find(|&j| self.id(j) == dest) {
                        let (mut o, now) = (Vec::new(), self.now(j));
                        self.fws[j].handle_frame(now, &frame, -60, 0, &mut o);
                        self.after_call(j, o);
                    }
                }
                Action::ReadSensor { quantity } => {
                    let (mut o, now) = (Vec::new(), self.now(i));
                    let reading = 2150 + i as i16 * 3 + (self.rng.below(5) as i16);
                    self.fws[i].handle_reading(now, quantity, reading, &mut o);
                    self.after_call(i, o);
                }
                _ => {}
            }
        }
    }

    fn run_for(&mut self, ms: u64) {
        let end = self.t_ms + ms;
        loop {
            let (at, i) =
                (0..3).map(|i| (self.boot_ms[i] + self.fws[i].next_deadline_ms(), i)).min().unwrap_or((end, 0));
            if at > end {
                self.t_ms = end;
                return;
            }
            self.t_ms = self.t_ms.max(at);
            let mut out = Vec::new();
            let now = self.now(i);
            self.fws[i].handle_timers(now, &mut self.rng, &mut out);
            self.after_call(i, out);
        }
    }
}

#[test]
fn corrupt_flash_restores_a_written_copy_or_falls_back_and_never_panics() {
    on_big_stack(corrupt_flash_body);
}

fn corrupt_flash_body() {
    let mut b = Bench::new();
    b.run_for(11 * 60_000);
    let stats = b.fws[0].flash_stats().expect("the core firmware keeps a flash");
    assert_eq!(stats.state_saves, b.states.len() as u64);
    assert!(stats.state_saves >= 10 && stats.dag_appends > 100 && stats.profile_saves >= 1, "{stats:?}");
    assert!(stats.bytes_programmed > 0 && stats.write_errors == 0, "{stats:?}");
    assert!(!b.profiles.last().is_some_and(Vec::is_empty), "subjects were profiled");

    let mut rng = SimRng::stream(9, Purpose::Firmware, 1);
    let mut fallbacks = 0;
    for (round, bytes) in [1u32, 1, 2, 4, 8, 16, 64, 256, 1_000, 4_000, 20_000, u32::MAX].into_iter().enumerate() {
        let flipped = b.fws[0].corrupt_flash(&mut rng, bytes);
        assert!(flipped >= 1 && flipped <= bytes, "round {round}: {flipped} of {bytes}");
        let now = b.now(0);
        let mut copy = b.fws[0].flash().clone();
        let r: Restored<{ krill_core::types::MAX_DAG_ENTRIES }, 64> = restore(&mut copy, &ESP32_C3_LAYOUT, now.unix_s);
        match r.report.state {
            Status::Restored { .. } => assert!(b.states.contains(&r.state), "round {round}: a state nobody wrote"),
            _ => assert_eq!(r.state, PersistedState::first_boot(now.unix_s), "round {round}"),
        }
        for e in r.dag.entries() {
            assert!(b.entries.contains(&e.hash.0), "round {round}: an entry the node never held");
        }
        match r.report.profiles {
            Status::Restored { .. } => {
                assert!(
                    b.profiles.iter().any(|p| p[..] == r.profiles[..]),
                    "round {round}: a profile set never written"
                )
            }
            _ => assert!(r.profiles.is_empty()),
        }
        let fell_back =
            [r.report.state, r.report.dag, r.report.profiles].iter().any(|s| matches!(s, Status::Fallback { .. }));
        fallbacks += usize::from(fell_back);

        // Power-cycle the node on the damaged flash and let it write again.
        b.boot_ms[0] = b.t_ms;
        let now = b.now(0);
        let line = b.fws[0].reboot(now).expect("reboots on any flash");
        assert_eq!(line.contains("fallback"), fell_back, "round {round}: {line}");
        assert_eq!(b.fws[0].last_restore(), Some(&r.report), "the firmware read what restore reads");
        let restored = b.fws[0].node().dag().entries().len();
        assert_eq!(restored, r.dag.entries().len(), "round {round}");
        b.run_for(90_000);
    }
    assert!(fallbacks >= 2, "heavy damage falls back: {fallbacks}");
    assert_eq!(b.fws[0].flash_stats().map(|s| s.reboots), Some(12));
}

/// Six Nanos and a gateway (the time source); node 2's clock jumps 10 min
/// ahead at 200 s.
fn clock_room(sync: bool) -> Scenario {
    let text = format!(
        r#"(
            name: "clock-sync-test",
            duration_s: 900,
            start: Warm(warmup_s: 120),
            area: (width_m: 30, height_m: 30),
            clocks: (sync: {sync}, sync_interval_s: 300),
            nodes: [
                (class: Nano, quantity: Temperature, layout: Explicit([(5, 5), (10, 5), (15, 5), (5, 10), (10, 10), (15, 10)])),
                (class: Gateway, quantity: Temperature, layout: Explicit([(10, 7)])),
            ],
            world: (fields: [(quantity: Temperature, base: 21.5, noise_sd: 0.05, bias_sd: 0.05)]),
            faults: [(at_s: 200, kind: ClockStep(node: 2, step_ms: 600000))],
        )"#
    );
    Scenario::parse(&text, "clock-sync-test.ron").expect("test scenario parses")
}

#[test]
fn time_sync_through_the_core_corrects_offsets_drift_and_steps() {
    let end_us = (120 + 900) * 1_000_000;
    let synced = run(clock_room(true));
    let free = run(clock_room(false));
    for i in 0..6 {
        let (s, f) = (&synced.nodes()[i], &free.nodes()[i]);
        let err = s.clock_error_us(end_us);
        // Latency asymmetry and whole-ms stamps leave a few ms.
        assert!(err.abs() < 20_000, "node {i}: {err} µs off after syncing");
        assert!(s.log().time_syncs >= 3, "node {i}: {} syncs", s.log().time_syncs);
        assert!(!s.log().clock_corrections_us.is_empty(), "node {i} never applied a response");
        assert_eq!(f.log().time_syncs, 0);
    }
    // The stepped clock is pulled back by about the step.
    let back: i64 =
        synced.nodes()[2].log().clock_corrections_us.iter().map(|c| c.1).filter(|&c| c < -500_000_000).sum();
    assert!((back + 600_000_000).abs() < 1_000_000, "node 2 corrected by {back} µs");
    assert!(free.nodes()[2].clock_error_us(end_us) > 590_000_000);
    // The gateway is the disciplined source: never corrected.
    assert_eq!(synced.nodes()[6].clock_error_us(end_us), 0);
}
