//! One run in figures: who flagged each attacker and when, honest nodes
//! wrongly rejected, consensus error against the truth, traffic and drops.
//! The deterministic part is hashed so that a replay, or a run on another
//! thread count, can be compared with one string; wall-clock figures sit
//! beside it, outside the hash.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use krill_core::lifecycle::{OwnState, SubjectState};
use krill_core::types::DeviceId;
use serde::{Deserialize, Serialize};

use crate::engine::Micros;
use crate::scenario::{AttackKind, NodeClass, Scenario};
use crate::sim::{FirmwareKind, SimError, Simulation};

/// Stack for the thread that builds a simulation: an ES-1.2 Nano is about
/// half a megabyte and is built on the stack before it is boxed.
pub const SIM_STACK: usize = 256 << 20;

/// The deterministic result of a run; [`RunSummary::hash`] covers all of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Firmware the nodes ran.
    pub firmware: FirmwareKind,
    /// Nodes simulated.
    pub nodes: u32,
    /// Warm-up before scenario time 0, s.
    pub warmup_s: u64,
    /// Scenario time simulated after warm-up, s.
    pub duration_s: u64,
    /// Every attacking node, in scenario order.
    pub attackers: Vec<AttackerReport>,
    /// Honest nodes an honest monitor ever moved to REJECTION or QUARANTINE.
    pub honest_rejected: Vec<FalseRejection>,
    /// |consensus − truth| of honest nodes from t = 0: overall ("all") first, then per zone.
    pub consensus: Vec<ZoneError>,
    /// Frames sent, by message type.
    pub sent: BTreeMap<String, u64>,
    /// Frames dropped by the receiving firmware, by reason.
    pub drops: BTreeMap<String, u64>,
    /// LoRa uplinks the 1 % duty cycle refused.
    pub duty_cycle_blocked: u64,
    /// Frames the radio lost to other frames (`radio.collisions: true`).
    #[serde(default)]
    pub collisions: Collisions,
    /// Relaying; absent (and out of the hash) when no node relayed.
    #[serde(default, skip_serializing_if = "Relaying::is_none")]
    pub relaying: Relaying,
    /// Downlinks; absent (and out of the hash) when there were none.
    #[serde(default, skip_serializing_if = "Downlinks::is_none")]
    pub downlinks: Downlinks,
    /// Frames from honest transmitters delivered to honest nodes.
    pub honest_received: u64,
    /// Of those, dropped by the receiver.
    pub honest_dropped: u64,
    /// `1 − honest_dropped / honest_received`; `None` without honest traffic.
    pub honest_delivery: Option<f64>,
    /// Reboots after crashes and flash corruption.
    pub reboots: u64,
    /// Own states at the end, by state.
    pub final_states: BTreeMap<String, u32>,
    /// Events the engine handled.
    pub events: u64,
}

/// Receptions lost to the collision model, summed over receivers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collisions {
    /// BLE frames that overlapped a frame they did not capture against.
    pub ble_overlap: u64,
    /// BLE frames that arrived while the receiver was transmitting.
    pub ble_deaf: u64,
    /// LoRa uplinks a gateway lost to an overlapping uplink.
    pub lora_overlap: u64,
}

/// BLE Mesh relaying (`radio.relay_ttl` > 0), summed over nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relaying {
    /// Frames rebroadcast for other nodes.
    pub relayed: u64,
    /// Frames a relay should have passed on but its firmware dropped.
    pub refused: u64,
    /// Copies receivers' mesh layers dropped as already handled.
    pub mesh_duplicates: u64,
}

impl Relaying {
    fn is_none(&self) -> bool {
        *self == Relaying::default()
    }
}

/// Gateway → Dust downlinks (LoRa Class A), summed over nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downlinks {
    /// Queued by gateways for a Dust node's next receive window.
    pub queued: u64,
    /// Put on air in an RX1 slot.
    pub sent: u64,
    /// Dropped from a full queue.
    pub dropped: u64,
    /// Arrived at a Dust node whose receiver was off.
    pub missed: u64,
}

impl Downlinks {
    fn is_none(&self) -> bool {
        *self == Downlinks::default()
    }
}

/// What the mesh did about one attacker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackerReport {
    /// The attacking node.
    pub node: u32,
    /// The attack, as written in the scenario.
    pub attack: String,
    /// Attack start, scenario s.
    pub start_s: u64,
    /// Honest monitors that moved it out of NORMAL after the start, first first.
    pub flagged_by: Vec<Flag>,
    /// Honest monitors holding it in REJECTION or QUARANTINE at the end.
    pub rejected_at_end: Vec<u32>,
}

impl AttackerReport {
    /// Seconds from the attack's start to the `k`-th flag (1-based).
    pub fn kth_flag_after_start(&self, k: usize) -> Option<f64> {
        let f = self.flagged_by.get(k.checked_sub(1)?)?;
        Some(f.at_s - self.start_s as f64)
    }
}

/// One monitor's view of one subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    /// The monitoring node.
    pub monitor: u32,
    /// First move out of NORMAL/NEONATAL (or into REJECTION for a false rejection), scenario s.
    pub at_s: f64,
    /// The state it moved to then.
    pub first: String,
    /// The most severe state it reached.
    pub worst: String,
}

/// An honest node wrongly rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FalseRejection {
    /// The honest node.
    pub node: u32,
    /// The honest monitors that rejected it.
    pub by: Vec<Flag>,
}

/// Consensus error statistics of one zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneError {
    /// Zone name, or "all".
    pub zone: String,
    /// Samples with a consensus.
    pub samples: u64,
    /// Samples of mesh nodes without a consensus yet.
    pub missing: u64,
    /// Mean, quantity units.
    pub mean: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

/// Wall-clock figures: they vary between runs and are never hashed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Build and run, s.
    pub wall_s: f64,
    /// Events per wall second.
    pub events_per_s: f64,
    /// Engine threads.
    pub threads: usize,
    /// Engine rounds.
    pub rounds: u64,
    /// Rounds that ran on the pool.
    pub parallel_rounds: u64,
}

/// `summary.json`: the summary, its hash, and the timing beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryFile {
    /// [`RunSummary::hash`].
    pub summary_hash: String,
    /// The deterministic part.
    pub summary: RunSummary,
    /// Not hashed.
    pub timing: Timing,
    /// The scenario's expectations against this run.
    pub expectations: Vec<crate::check::ExpectationResult>,
}

/// Sampled time series of a run (consensus error and own states).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Sample times, scenario s.
    pub times_s: Vec<f64>,
    /// Column names of `error`: "all" then each zone.
    pub zones: Vec<String>,
    /// Mean |consensus − truth| of honest nodes, `[time][zone]`; NaN when none had a consensus.
    pub error: Vec<Vec<f64>>,
    /// Own-state counts `[time][OWN_STATES index]`.
    pub states: Vec<[u32; OWN_STATES.len()]>,
}

/// Own states in CSV column order.
pub const OWN_STATES: [OwnState; 7] = [
    OwnState::Offline,
    OwnState::Booting,
    OwnState::Neonatal,
    OwnState::Normal,
    OwnState::SensorFault,
    OwnState::Quarantine,
    OwnState::Apoptotic,
];

/// The spec's name of an own state.
pub fn own_name(s: OwnState) -> &'static str {
    match s {
        OwnState::Offline => "OFFLINE",
        OwnState::Booting => "BOOTING",
        OwnState::Neonatal => "NEONATAL",
        OwnState::Normal => "NORMAL",
        OwnState::SensorFault => "SENSOR_FAULT",
        OwnState::Quarantine => "QUARANTINE",
        OwnState::Apoptotic => "APOPTOTIC",
    }
}

/// The spec's name of a subject state.
pub fn subject_name(s: SubjectState) -> &'static str {
    match s {
        SubjectState::Neonatal => "NEONATAL",
        SubjectState::Normal => "NORMAL",
        SubjectState::Pyrexia => "PYREXIA",
        SubjectState::Inflammation => "INFLAMMATION",
        SubjectState::Rejection => "REJECTION",
        SubjectState::Quarantine => "QUARANTINE",
        SubjectState::Apoptotic => "APOPTOTIC",
    }
}

/// How far a subject state is from trusted: 0 for NEONATAL/NORMAL.
pub fn severity(s: SubjectState) -> u8 {
    match s {
        SubjectState::Neonatal | SubjectState::Normal => 0,
        SubjectState::Pyrexia => 1,
        SubjectState::Inflammation => 2,
        SubjectState::Rejection => 3,
        SubjectState::Quarantine => 4,
        SubjectState::Apoptotic => 5,
    }
}

/// A message-type byte's stable name (summary key, CSV column).
pub fn message_name(ty: u8) -> String {
    match ty {
        0xD0 => "lora_uplink".into(),
        0xD1 => "lora_downlink".into(),
        0x71 => "trace_batch".into(),
        _ => match krill_core::wire::MessageType::from_u8(ty) {
            Ok(m) => snake(&format!("{m:?}")),
            Err(_) => format!("type_0x{ty:02x}"),
        },
    }
}

/// `CamelCase` → `camel_case`.
pub(crate) fn snake(camel: &str) -> String {
    let mut s = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// Each attacking node with its attack and start, in scenario order;
/// collusion members share their leader's attack.
pub fn attackers(s: &Scenario) -> Vec<(u32, String, u64)> {
    let mut v: Vec<(u32, String, u64)> = Vec::new();
    for a in &s.attacks {
        let mut nodes = vec![a.node];
        if let AttackKind::Collusion { members, .. } = &a.kind {
            nodes.extend(members);
        }
        for n in nodes {
            match v.iter_mut().find(|e| e.0 == n) {
                Some(e) => {
                    e.1 = format!("{}; {:?}", e.1, a.kind);
                    e.2 = e.2.min(a.start_s);
                }
                None => v.push((n, format!("{:?}", a.kind), a.start_s)),
            }
        }
    }
    v
}

/// Per honest monitor, the first move of `subject` to a state of at least
/// `min_severity` at or after `from_us`, and the worst state it reached.
fn flags(sim: &Simulation, subject: u32, from_us: Micros, min_severity: u8) -> Vec<Flag> {
    let model = sim.model();
    let info = model.info();
    let Some(id) = info.get(subject as usize).map(|i| i.id) else { return Vec::new() };
    let mut out = Vec::new();
    for (m, node) in sim.nodes().iter().enumerate() {
        if info[m].attacker || m as u32 == subject {
            continue;
        }
        let mut first: Option<(Micros, SubjectState)> = None;
        let mut worst: Option<SubjectState> = None;
        for &(t, subj, to) in &node.log().transitions {
            if subj != id || t < from_us || severity(to) < min_severity.max(1) {
                continue;
            }
            first.get_or_insert((t, to));
            if worst.is_none_or(|w| severity(to) > severity(w)) {
                worst = Some(to);
            }
        }
        if let (Some((t, f)), Some(w)) = (first, worst) {
            out.push(Flag {
                monitor: m as u32,
                at_s: model.scenario_s(t),
                first: subject_name(f).into(),
                worst: subject_name(w).into(),
            });
        }
    }
    out.sort_by(|a, b| a.at_s.total_cmp(&b.at_s).then(a.monitor.cmp(&b.monitor)));
    out
}

/// True for classes that keep a consensus (Dust only senses).
fn mesh_class(c: NodeClass) -> bool {
    matches!(c, NodeClass::Nano | NodeClass::Gateway | NodeClass::Full)
}

/// Mean, 95th percentile and max of finite values.
fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len());
    (mean, v[rank - 1], v[v.len() - 1])
}

impl RunSummary {
    /// Computes the summary of a finished run of `s`.
    pub fn from_run(s: &Scenario, sim: &Simulation) -> RunSummary {
        let model = sim.model();
        let info = model.info();
        let warm = model.warmup_us();
        let attackers = attackers(s)
            .into_iter()
            .map(|(node, attack, start_s)| {
                let from = info.get(node as usize).map_or(warm, |i| i.watch_from_us);
                let rejected_at_end = (0..info.len() as u32)
                    .filter(|&m| !info[m as usize].attacker && m != node)
                    .filter(|&m| sim.view(m, node).is_some_and(|v| severity(v) >= 3 && severity(v) <= 4))
                    .collect();
                AttackerReport { node, attack, start_s, flagged_by: flags(sim, node, from, 1), rejected_at_end }
            })
            .collect();
        let honest_rejected = info
            .iter()
            .filter(|i| !i.attacker)
            .filter_map(|i| {
                let by = flags(sim, i.index, 0, 3);
                (!by.is_empty()).then_some(FalseRejection { node: i.index, by })
            })
            .collect();

        let zones: Vec<String> = model.world().zones().iter().map(|z| z.name.clone()).collect();
        let mut errs: Vec<Vec<f64>> = vec![Vec::new(); zones.len() + 1];
        let mut missing = vec![0u64; zones.len() + 1];
        let mut sent = BTreeMap::new();
        let mut drops = BTreeMap::new();
        let (mut duty, mut hr, mut hd, mut reboots) = (0, 0, 0, 0);
        let mut collisions = Collisions::default();
        let mut relaying = Relaying::default();
        let mut downlinks = Downlinks::default();
        for (i, n) in sim.nodes().iter().enumerate() {
            let l = n.log();
            for (&ty, &c) in &l.sent {
                *sent.entry(message_name(ty)).or_insert(0) += c;
            }
            for (r, &c) in &l.drops {
                *drops.entry(r.clone()).or_insert(0) += c;
            }
            duty += l.duty_cycle_blocked;
            collisions.ble_overlap += l.ble_collisions;
            collisions.ble_deaf += l.ble_deaf;
            collisions.lora_overlap += l.lora_collisions;
            relaying.relayed += l.relayed;
            relaying.refused += l.relay_refused;
            relaying.mesh_duplicates += l.mesh_duplicates;
            downlinks.queued += l.downlinks_queued;
            downlinks.sent += l.sent.get(&0xD1).copied().unwrap_or(0);
            downlinks.dropped += l.downlinks_dropped;
            downlinks.missed += l.downlinks_missed;
            reboots += l.reboots.len() as u64;
            let inf = &info[i];
            if inf.attacker {
                continue;
            }
            hr += l.honest_received;
            hd += l.honest_dropped;
            if !mesh_class(inf.class) {
                continue;
            }
            for &(t, e, _) in &l.samples {
                if t < warm {
                    continue;
                }
                let cols = [Some(0), inf.zone.map(|z| z + 1)];
                for c in cols.into_iter().flatten() {
                    if e.is_finite() {
                        errs[c].push(f64::from(e));
                    } else {
                        missing[c] += 1;
                    }
                }
            }
        }
        let consensus = std::iter::once("all".to_string())
            .chain(zones)
            .zip(errs.into_iter().zip(missing))
            .map(|(zone, (v, missing))| {
                let samples = v.len() as u64;
                let (mean, p95, max) = stats(v);
                ZoneError { zone, samples, missing, mean, p95, max }
            })
            .collect();
        let mut final_states = BTreeMap::new();
        for st in sim.own_states() {
            *final_states.entry(own_name(st).to_string()).or_insert(0) += 1;
        }
        RunSummary {
            scenario: s.name.clone(),
            seed: sim.seed,
            firmware: sim.firmware,
            nodes: info.len() as u32,
            warmup_s: s.warmup_s(),
            duration_s: s.duration_s,
            attackers,
            honest_rejected,
            consensus,
            sent,
            drops,
            duty_cycle_blocked: duty,
            collisions,
            relaying,
            downlinks,
            honest_received: hr,
            honest_dropped: hd,
            honest_delivery: (hr > 0).then(|| 1.0 - hd as f64 / hr as f64),
            reboots,
            final_states,
            events: sim.stats().events,
        }
    }

    /// BLAKE2s-256 of the canonical JSON (fields in declaration order, maps
    /// sorted), in hex.
    pub fn hash(&self) -> String {
        // Serialising plain structs, maps with string keys and numbers cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(krill_core::crypto::blake2s256(&bytes))
    }

    /// The consensus error row of `zone` ("all" for every node).
    pub fn zone(&self, zone: &str) -> Option<&ZoneError> {
        self.consensus.iter().find(|z| z.zone == zone)
    }

    /// A plain-text table for the terminal.
    pub fn table(&self, timing: Option<&Timing>, hash: &str) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} · seed {} · {:?} firmware · {} nodes · {} s after {} s warm-up",
            self.scenario, self.seed, self.firmware, self.nodes, self.duration_s, self.warmup_s
        );
        o.push('\n');
        if self.attackers.is_empty() {
            o.push_str("attackers: none\n");
        } else {
            let _ = writeln!(
                o,
                "{:<8} {:<30} {:>7} {:>8} {:>10} {:>9}  flagged by (monitor@s)",
                "attacker", "attack", "start s", "flagged", "1st flag s", "rej. end"
            );
            for a in &self.attackers {
                let first = a.kth_flag_after_start(1).map_or("-".to_string(), |d| format!("+{d:.0}"));
                let who: Vec<String> =
                    a.flagged_by.iter().take(8).map(|f| format!("{}@{:.0}", f.monitor, f.at_s)).collect();
                let more = a.flagged_by.len().saturating_sub(8);
                let _ = writeln!(
                    o,
                    "{:<8} {:<30} {:>7} {:>8} {:>10} {:>9}  {}{}",
                    a.node,
                    clip(&a.attack, 30),
                    a.start_s,
                    a.flagged_by.len(),
                    first,
                    a.rejected_at_end.len(),
                    who.join(" "),
                    if more > 0 { format!(" +{more}") } else { String::new() }
                );
            }
        }
        o.push('\n');
        if self.honest_rejected.is_empty() {
            o.push_str("honest nodes ever rejected by honest monitors: none\n");
        } else {
            let list: Vec<String> = self
                .honest_rejected
                .iter()
                .map(|r| format!("{} (by {}, first @{:.0} s)", r.node, r.by.len(), r.by[0].at_s))
                .collect();
            let _ = writeln!(o, "honest nodes ever rejected by honest monitors: {}", list.join(", "));
        }
        o.push('\n');
        let _ = writeln!(
            o,
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "consensus error", "mean", "p95", "max", "samples", "missing"
        );
        for z in &self.consensus {
            let _ = writeln!(
                o,
                "{:<16} {:>9} {:>9} {:>9} {:>9} {:>8}",
                clip(&z.zone, 16),
                num(z.mean),
                num(z.p95),
                num(z.max),
                z.samples,
                z.missing
            );
        }
        o.push('\n');
        let _ = writeln!(o, "messages sent: {}", kv(&self.sent));
        let _ = writeln!(o, "drops: {}", if self.drops.is_empty() { "none".into() } else { kv(&self.drops) });
        if self.duty_cycle_blocked > 0 {
            let _ = writeln!(o, "LoRa uplinks refused by the duty cycle: {}", self.duty_cycle_blocked);
        }
        if !self.downlinks.is_none() {
            let d = &self.downlinks;
            let _ = writeln!(
                o,
                "Dust downlinks: {} queued, {} sent in RX1, {} dropped from full queues, {} missed (receiver off)",
                d.queued, d.sent, d.dropped, d.missed
            );
        }
        if !self.relaying.is_none() {
            let r = &self.relaying;
            let _ = writeln!(
                o,
                "frames relayed: {} ({} refused by selective relays); copies dropped by the mesh layer: {}",
                r.relayed, r.refused, r.mesh_duplicates
            );
        }
        let c = &self.collisions;
        if c.ble_overlap + c.ble_deaf + c.lora_overlap > 0 {
            let _ = writeln!(
                o,
                "radio collisions: BLE {} overlapped, {} while transmitting; LoRa {} overlapped",
                c.ble_overlap, c.ble_deaf, c.lora_overlap
            );
        }
        let _ = writeln!(
            o,
            "honest delivery: {} ({} of {} honest frames dropped)",
            self.honest_delivery.map_or("-".to_string(), |d| format!("{:.2} %", d * 100.0)),
            self.honest_dropped,
            self.honest_received
        );
        let states: Vec<String> = self.final_states.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "own states at the end: {}", states.join(", "));
        match timing {
            Some(t) => {
                let _ = writeln!(
                    o,
                    "events: {} in {:.2} s = {:.0} events/s ({} thread{})",
                    self.events,
                    t.wall_s,
                    t.events_per_s,
                    t.threads,
                    if t.threads == 1 { "" } else { "s" }
                );
            }
            None => {
                let _ = writeln!(o, "events: {}", self.events);
            }
        }
        let _ = writeln!(o, "summary hash: {hash}");
        o
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "-".into()
    }
}

fn kv(m: &BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// One sample instant: per column (sum of errors, count), and own-state counts.
type SampleSlot = (Vec<(f64, u32)>, [u32; OWN_STATES.len()]);

impl Series {
    /// The sampled time series of a finished run.
    pub fn from_run(sim: &Simulation) -> Series {
        let model = sim.model();
        let info = model.info();
        let mut zones = vec!["all".to_string()];
        zones.extend(model.world().zones().iter().map(|z| z.name.clone()));
        // Every node samples at the same instants; a BTreeMap keeps time order.
        let mut at: BTreeMap<Micros, SampleSlot> = BTreeMap::new();
        for (i, n) in sim.nodes().iter().enumerate() {
            let inf = &info[i];
            for &(t, e, st) in &n.log().samples {
                let slot = at.entry(t).or_insert_with(|| (vec![(0.0, 0); zones.len()], [0; OWN_STATES.len()]));
                if let Some(k) = OWN_STATES.iter().position(|&o| o == st) {
                    slot.1[k] += 1;
                }
                if inf.attacker || !mesh_class(inf.class) || !e.is_finite() {
                    continue;
                }
                for c in [Some(0), inf.zone.map(|z| z + 1)].into_iter().flatten() {
                    slot.0[c].0 += f64::from(e);
                    slot.0[c].1 += 1;
                }
            }
        }
        let mut s = Series { zones, ..Series::default() };
        for (t, (sums, states)) in at {
            s.times_s.push(model.scenario_s(t));
            s.error.push(sums.iter().map(|&(sum, n)| if n == 0 { f64::NAN } else { sum / f64::from(n) }).collect());
            s.states.push(states);
        }
        s
    }
}

/// A finished run: the simulation (for its logs), its summary and series.
pub struct Finished {
    /// The simulation, after its last event.
    pub sim: Simulation,
    /// Its summary.
    pub summary: RunSummary,
    /// [`RunSummary::hash`].
    pub hash: String,
    /// Its time series.
    pub series: Series,
    /// Wall-clock figures.
    pub timing: Timing,
}

/// Builds and runs `s` for one seed. Call it on a thread with a
/// [`SIM_STACK`]-sized stack.
pub fn simulate(
    s: &Scenario,
    seed: u64,
    firmware: FirmwareKind,
    threads: usize,
    progress: impl FnMut(Micros, Micros),
) -> Result<Finished, SimError> {
    simulate_recording(s, seed, firmware, threads, None, crate::output::AuditLevel::Full, progress)
}

/// [`simulate`], recording node `record`'s calls (take the log with
/// `Finished::sim.finish_recording()`) and keeping the audit events `audit`
/// keeps (see [`Simulation::keep_audits`]).
pub fn simulate_recording(
    s: &Scenario,
    seed: u64,
    firmware: FirmwareKind,
    threads: usize,
    record: Option<u32>,
    audit: impl Into<crate::output::AuditScope>,
    progress: impl FnMut(Micros, Micros),
) -> Result<Finished, SimError> {
    let start = std::time::Instant::now();
    let mut sim = Simulation::recording(s, seed, firmware, threads, record)?;
    sim.keep_audits(&audit.into())?;
    sim.run(progress)?;
    let wall_s = start.elapsed().as_secs_f64();
    let summary = RunSummary::from_run(s, &sim);
    let series = Series::from_run(&sim);
    let st = sim.stats();
    let timing = Timing {
        wall_s,
        events_per_s: if wall_s > 0.0 { st.events as f64 / wall_s } else { 0.0 },
        threads,
        rounds: st.rounds,
        parallel_rounds: st.parallel_rounds,
    };
    let hash = summary.hash();
    Ok(Finished { sim, summary, hash, series, timing })
}

/// Runs `f` on a new thread with a [`SIM_STACK`] stack and returns its
/// result; `None` if the thread could not start or panicked.
pub fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::Builder::new().name("krill-sim".into()).stack_size(SIM_STACK).spawn(f).ok()?.join().ok()
}

/// Device id → node index of a run.
pub fn index_of_ids(sim: &Simulation) -> BTreeMap<DeviceId, u32> {
    sim.model().info().iter().map(|i| (i.id, i.index)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_are_snake_case_and_cover_unknown_bytes() {
        assert_eq!(message_name(0x01), "trace_deposit");
        assert_eq!(message_name(0x21), "inflammation_query");
        assert_eq!(message_name(0xD0), "lora_uplink");
        assert_eq!(message_name(0xEE), "type_0xee");
    }

    #[test]
    fn p95_is_a_rank_not_an_interpolation() {
        let (mean, p95, max) = stats((1..=100).map(f64::from).collect());
        assert_eq!((mean, p95, max), (50.5, 95.0, 100.0));
        let (m, p, x) = stats(vec![]);
        assert!(m.is_nan() && p.is_nan() && x.is_nan());
    }

    #[test]
    fn collusion_members_share_the_attack_and_the_earliest_start() {
        let text = r#"(
            name: "c", duration_s: 60,
            area: (width_m: 10, height_m: 10),
            nodes: [(layout: Grid(rows: 2, cols: 2, spacing_m: 3))],
            attacks: [
                (node: 0, start_s: 30, kind: Collusion(members: [1], offset: 2.0)),
                (node: 1, start_s: 10, kind: Spike(offset: 1.0)),
            ],
        )"#;
        let s = Scenario::parse(text, "c.ron").unwrap();
        let a = attackers(&s);
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].0, a[0].2), (0, 30));
        assert_eq!((a[1].0, a[1].2), (1, 10));
        assert!(a[1].1.contains("Collusion") && a[1].1.contains("Spike"), "{}", a[1].1);
    }
}
