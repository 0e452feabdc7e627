//! Each attack wrapper against the core: small runs built here, each
//! asserting the effect the fixed core must show (SPEC-NOTES 7 claimed
//! weight, 17/18 replays, 20 forged ids, forged traces, Sybils, forged
//! death certificates), most of them next to the no-immunity baseline. One
//! ignored test pins a gap the core still has (SPEC-NOTES 33).
//!
//! `measure_library` (ignored; run it with `cargo test --release -p
//! krill-sim --test attacks -- --ignored --nocapture measure_library`,
//! `KRILL_ONLY=spike,flood` to pick) runs every attack scenario in
//! `scenarios/` with the core and the baseline, each next to the same run
//! without the attack, and prints the figures their expectations were set
//! from.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use krill_core::lifecycle::{SubjectState, NORMAL_WEIGHT};
use krill_core::node::AuditEvent;
use krill_core::types::DeviceId;
use krill_sim::scenario::Scenario;
use krill_sim::sim::{FirmwareKind, Simulation};

/// What a run showed, reduced to the figures the assertions need.
#[derive(Clone, Debug, Default)]
struct Outcome {
    /// Drops by reason at honest nodes.
    drops: BTreeMap<String, u64>,
    /// Frames from honest transmitters delivered to honest nodes, and of those dropped.
    honest_received: u64,
    honest_dropped: u64,
    /// Per sample time (scenario s): mean |consensus − truth| over honest nodes.
    error: Vec<(f64, f64)>,
    /// Every transition out of NORMAL after warm-up at an honest monitor:
    /// (subject, monitor, scenario s).
    detections: Vec<(u32, u32, f64)>,
    /// Honest monitors holding each node in REJECTION/QUARANTINE at the end.
    rejected_at_end: BTreeMap<u32, u32>,
    /// REJECTION transitions of an honest subject at an honest monitor after warm-up.
    honest_rejections: u32,
    /// The same during warm-up.
    honest_rejections_warmup: u32,
    /// `Died` audits at honest nodes, by device index.
    died: BTreeMap<u32, u32>,
    /// Honest nodes' own states at the end, counted.
    own_states: BTreeMap<String, u32>,
    /// Frames sent by the attackers, by message type.
    attacker_sent: BTreeMap<u8, u64>,
    /// Frames sent by honest nodes, by message type.
    honest_sent: BTreeMap<u8, u64>,
    /// Honest drop audits kept, with (sender index or u32::MAX, msg type, reason).
    drop_audits: Vec<(u32, u8, String)>,
    /// Worst state each (subject, honest monitor) reached after warm-up, as [`rank`].
    worst: BTreeMap<(u32, u32), u8>,
    /// What each monitor holds about each subject at the end: `views[monitor][subject]`.
    views: Vec<Vec<Option<SubjectState>>>,
    /// Frames each node sent, by message type.
    sent_by: Vec<BTreeMap<u8, u64>>,
    /// Trace assessments kept at honest nodes after warm-up: (subject, claimed weight, used weight).
    trace_weights: Vec<(u32, u8, u8)>,
}

/// Severity of a subject state, NORMAL = 0.
fn rank(s: SubjectState) -> u8 {
    match s {
        SubjectState::Neonatal | SubjectState::Normal => 0,
        SubjectState::Pyrexia => 1,
        SubjectState::Inflammation => 2,
        SubjectState::Rejection => 3,
        SubjectState::Quarantine => 4,
        SubjectState::Apoptotic => 5,
    }
}

impl Outcome {
    fn delivery(&self) -> f64 {
        1.0 - self.honest_dropped as f64 / self.honest_received.max(1) as f64
    }
    /// Mean of the per-sample honest mean error from `after_s` on.
    fn mean_error(&self, after_s: f64) -> f64 {
        let v: Vec<f64> = self.error.iter().filter(|e| e.0 >= after_s && e.1.is_finite()).map(|e| e.1).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }
    /// Largest per-sample honest mean error from `after_s` on.
    fn max_error(&self, after_s: f64) -> f64 {
        self.error.iter().filter(|e| e.0 >= after_s && e.1.is_finite()).map(|e| e.1).fold(0.0, f64::max)
    }
    /// Distinct honest monitors that saw `attacker` leave NORMAL within
    /// `within_s` of `start_s`.
    fn detected_by(&self, attacker: u32, start_s: f64, within_s: f64) -> u32 {
        let mut m: Vec<u32> = self
            .detections
            .iter()
            .filter(|d| d.0 == attacker && d.2 >= start_s && d.2 <= start_s + within_s)
            .map(|d| d.1)
            .collect();
        m.sort_unstable();
        m.dedup();
        m.len() as u32
    }
    fn drop(&self, reason: &str) -> u64 {
        self.drops.get(reason).copied().unwrap_or(0)
    }
    /// Honest monitors that took `subject` to `state` or worse after warm-up.
    fn reached(&self, subject: u32, state: SubjectState) -> usize {
        self.worst.iter().filter(|((s, _), r)| *s == subject && **r >= rank(state)).count()
    }
    /// Distinct (monitor, subject) pairs with an honest subject that left NORMAL after `after_s`.
    fn honest_flicker(&self, attackers: &[u32], after_s: f64) -> usize {
        let mut v: Vec<(u32, u32)> = self
            .detections
            .iter()
            .filter(|d| d.2 >= after_s && !attackers.contains(&d.0))
            .map(|d| (d.0, d.1))
            .collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    }
}

/// Runs `s` with `fw` on a big-stack thread.
fn run(s: &Scenario, seed: u64, fw: FirmwareKind) -> Outcome {
    run_excluding(s, seed, fw, &attackers_of(s))
}

/// Runs `s`, leaving the nodes in `exclude` out of the honest figures (a
/// control run without the attacks compares like with like).
fn run_excluding(s: &Scenario, seed: u64, fw: FirmwareKind, exclude: &[u32]) -> Outcome {
    let s = s.clone();
    let exclude = exclude.to_vec();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut sim = Simulation::new(&s, seed, fw, 1).expect("build");
            sim.run(|_, _| {}).expect("run");
            outcome(&sim, &exclude)
        })
        .expect("thread")
        .join()
        .expect("join")
}

fn outcome(sim: &Simulation, exclude: &[u32]) -> Outcome {
    let info = sim.model().info();
    let warm = sim.model().warmup_us();
    let scen = |t: u64| (t as f64 - warm as f64) / 1e6;
    let index: BTreeMap<DeviceId, u32> = info.iter().map(|i| (i.id, i.index)).collect();
    let attacker = |i: u32| info[i as usize].attacker || exclude.contains(&i);
    let mut o = Outcome::default();
    let mut err: BTreeMap<u64, (f64, u32)> = BTreeMap::new();
    for (i, n) in sim.nodes().iter().enumerate() {
        let i = i as u32;
        let l = n.log();
        o.sent_by.push(l.sent.clone());
        if attacker(i) {
            for (k, v) in &l.sent {
                *o.attacker_sent.entry(*k).or_default() += v;
            }
            continue;
        }
        for (k, v) in &l.sent {
            *o.honest_sent.entry(*k).or_default() += v;
        }
        for (k, v) in &l.drops {
            *o.drops.entry(k.clone()).or_default() += v;
        }
        o.honest_received += l.honest_received;
        o.honest_dropped += l.honest_dropped;
        for &(t, e, _) in &l.samples {
            if e.is_finite() {
                let x = err.entry(t).or_default();
                x.0 += f64::from(e);
                x.1 += 1;
            }
        }
        for &(t, subject, to) in &l.transitions {
            let Some(&j) = index.get(&subject) else { continue };
            if t >= warm && !matches!(to, SubjectState::Normal | SubjectState::Neonatal) {
                o.detections.push((j, i, scen(t)));
                let w = o.worst.entry((j, i)).or_default();
                *w = (*w).max(rank(to));
            }
            if !attacker(j) && to == SubjectState::Rejection {
                if t >= warm {
                    o.honest_rejections += 1;
                } else {
                    o.honest_rejections_warmup += 1;
                }
            }
        }
        for (at, a) in &l.audits {
            match a {
                AuditEvent::Died { device } => {
                    *o.died.entry(index.get(device).copied().unwrap_or(u32::MAX)).or_default() += 1;
                }
                AuditEvent::Trace(a) if *at >= warm => o.trace_weights.push((
                    index.get(&a.subject).copied().unwrap_or(u32::MAX),
                    a.claimed_weight,
                    a.used_weight,
                )),
                AuditEvent::Dropped { sender, msg_type, reason } => o.drop_audits.push((
                    index.get(sender).copied().unwrap_or(u32::MAX),
                    *msg_type,
                    krill_sim::sim::drop_name(reason).to_string(),
                )),
                _ => {}
            }
        }
        *o.own_states.entry(format!("{:?}", sim.own_states()[i as usize])).or_default() += 1;
    }
    for subject in 0..info.len() as u32 {
        let held = (0..info.len() as u32)
            .filter(|&m| m != subject && !attacker(m))
            .filter(|&m| matches!(sim.view(m, subject), Some(SubjectState::Rejection | SubjectState::Quarantine)))
            .count() as u32;
        o.rejected_at_end.insert(subject, held);
    }
    let n = info.len() as u32;
    o.views = (0..n).map(|m| (0..n).map(|s| sim.view(m, s)).collect()).collect();
    o.error = err.into_iter().map(|(t, (sum, k))| (scen(t), sum / f64::from(k))).collect();
    o
}

/// A small indoor grid scenario: `rows × cols` Nanos 7 m apart, warm
/// start, one temperature field, the given attacks.
fn grid(rows: u32, cols: u32, warmup_s: u64, duration_s: u64, attacks: &str, extra: &str) -> Scenario {
    let w = f64::from(cols) * 7.0;
    let h = f64::from(rows) * 7.0;
    let text = format!(
        r#"(
        name: "attack-test",
        duration_s: {duration_s},
        start: Warm(warmup_s: {warmup_s}),
        area: (width_m: {w}, height_m: {h}),
        nodes: [(layout: Grid(rows: {rows}, cols: {cols}, spacing_m: 7, origin: (3, 3)))],
        world: (fields: [(quantity: Temperature, base: 21.5, gradient: (0.02, 0.0), noise_sd: 0.05, bias_sd: 0.05)]),
        attacks: [{attacks}],
        sample_interval_s: 30,
        {extra}
    )"#
    );
    Scenario::parse(&text, "attack-test.ron").expect("test scenario parses")
}

/// Every node some attack runs on (collusion members included).
fn attackers_of(s: &Scenario) -> Vec<u32> {
    let mut v = Vec::new();
    for a in &s.attacks {
        v.push(a.node);
        if let krill_sim::scenario::AttackKind::Collusion { members, .. } = &a.kind {
            v.extend(members);
        }
    }
    v
}

fn scenarios_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// The attacker in the small runs: the centre of a 3 × 3 grid, which every
/// other node hears.
const A: u32 = 4;
/// The neighbour it impersonates.
const VICTIM: u32 = 5;

/// 3 × 3 Nanos, 300 s warm-up, 300 s with `attacks` on [`A`] from 0 s.
fn small(attacks: &str) -> Scenario {
    grid(3, 3, 300, 300, attacks, "")
}

fn shared(cell: &'static OnceLock<Outcome>, attacks: &str, fw: FirmwareKind) -> &'static Outcome {
    cell.get_or_init(|| run_excluding(&small(attacks), 1, fw, &[A]))
}

/// The small run without attacks ([`A`] left out of the figures).
fn control(fw: FirmwareKind) -> &'static Outcome {
    static CORE: OnceLock<Outcome> = OnceLock::new();
    static BASE: OnceLock<Outcome> = OnceLock::new();
    match fw {
        FirmwareKind::Core => shared(&CORE, "", fw),
        FirmwareKind::Baseline => shared(&BASE, "", fw),
    }
}

/// Extra mean consensus error (after the first minute) an attack causes.
fn pull(attack: &Outcome, fw: FirmwareKind) -> f64 {
    attack.mean_error(60.0) - control(fw).mean_error(60.0)
}

/// A spiker reaches INFLAMMATION at its neighbours at once; the core's
/// decaying field and the rejection that follows keep its pull well under
/// the baseline's. (On a 3 × 3 grid nobody rejects it within 300 s and
/// its pull catches up with the baseline's: 4 × 4 is the smallest grid
/// that shows the bound.)
#[test]
fn a_spiker_is_inflamed_at_its_neighbours_and_pulls_less_than_in_the_baseline() {
    const SPIKE: &str = "(node: 5, start_s: 0, kind: Spike(offset: 6.0))";
    let s = grid(4, 4, 300, 300, SPIKE, "");
    let core = run_excluding(&s, 1, FirmwareKind::Core, &[5]);
    let base = run_excluding(&s, 1, FirmwareKind::Baseline, &[5]);
    let inflamed = core.reached(5, SubjectState::Inflammation);
    assert!(inflamed >= 6, "INFLAMMATION at {inflamed} monitors");
    let (c, b) = (core.mean_error(60.0), base.mean_error(60.0));
    assert!(b > 0.3, "the +6 °C spiker puts the baseline {b:.3} °C off");
    assert!(c < 0.6 * b, "core {c:.3} °C off, baseline {b:.3} °C");
}

/// SPEC-NOTES 7: the field uses the monitor's assessed weight, never the
/// claim; the baseline believes the claim.
#[test]
fn a_claimed_weight_of_255_is_capped_at_the_monitors_assessment() {
    const INFLATE: &str = "(node: 4, start_s: 0, kind: WeightInflation(offset: 3.0))";
    const SPIKE: &str = "(node: 4, start_s: 0, kind: Spike(offset: 3.0))";
    let core = run_excluding(&small(INFLATE), 1, FirmwareKind::Core, &[A]);
    let seen: Vec<(u8, u8)> = core.trace_weights.iter().filter(|w| w.0 == A).map(|w| (w.1, w.2)).collect();
    assert!(seen.len() >= 20, "assessments of the attacker's traces kept: {}", seen.len());
    assert!(seen.iter().all(|&(claimed, used)| claimed == 255 && used <= NORMAL_WEIGHT), "{seen:?}");
    let base = |attack: &str| run_excluding(&small(attack), 1, FirmwareKind::Baseline, &[A]).mean_error(60.0);
    let (inflated, plain) = (base(INFLATE), base(SPIKE));
    assert!(inflated > plain + 0.03, "baseline error {inflated:.3} °C claiming 255, {plain:.3} °C claiming 204");
}

/// SPEC-NOTES 20: frames are charged to a sender only after its signature
/// verified, so forged ids drain nobody's bucket; the flooder's own id is
/// rate-limited and blacklisted.
#[test]
fn floods_charge_only_the_flooder() {
    let attacks = "(node: 4, start_s: 0, kind: Flood(rate_per_s: 20.0, forged_ids: true)),
                   (node: 4, start_s: 0, kind: Flood(rate_per_s: 20.0, forged_ids: false))";
    let o = run_excluding(&small(attacks), 1, FirmwareKind::Core, &[A]);
    let quiet = control(FirmwareKind::Core);
    let forged = 20 * 300;
    assert!(o.drop("bad_signature") >= 2 * forged, "forged frames refused: {:?}", o.drops);
    assert!(
        o.drop("guard_flooded") >= 4 && o.drop("guard_blacklisted") >= forged,
        "flooder blacklisted: {:?}",
        o.drops
    );
    let blamed: Vec<u32> = o
        .drop_audits
        .iter()
        .filter(|d| matches!(d.2.as_str(), "guard_flooded" | "guard_blacklisted" | "guard_ratelimited"))
        .filter(|d| d.1 == 0x01)
        .map(|d| d.0)
        .collect();
    assert!(!blamed.is_empty() && blamed.iter().all(|&s| s == A), "only the flooder's traces are limited: {blamed:?}");
    assert!(
        o.delivery() >= quiet.delivery() - 0.002,
        "honest delivery {:.4} under the flood, {:.4} without",
        o.delivery(),
        quiet.delivery()
    );
}

/// SPEC-NOTES 17 and 18: a trace replayed after 200 s (the old sequence
/// window's "far ahead" hole) is stale by its signed timestamp; one
/// replayed after 15 s is a duplicate. Neither moves the consensus.
#[test]
fn replayed_traces_are_refused_by_freshness_and_duplicate_guards() {
    let attacks = "(node: 4, start_s: 0, kind: Replay(delay_s: 200)), (node: 4, start_s: 0, kind: Replay(delay_s: 15))";
    let o = run_excluding(&small(attacks), 1, FirmwareKind::Core, &[A]);
    let quiet = control(FirmwareKind::Core);
    let own = quiet.sent_by[A as usize].get(&0x01).copied().unwrap_or(0);
    let replayed = o.attacker_sent.get(&0x01).copied().unwrap_or(0).saturating_sub(own);
    assert!(replayed >= 300 / 5 * 8, "two replayers repeat the traces of 8 neighbours: {replayed}");
    let refused = |x: &Outcome| x.drop("guard_stale") + x.drop("guard_replay") + x.drop("guard_duplicate");
    let more = refused(&o) - refused(quiet);
    assert!(more >= replayed * 7 / 2, "{replayed} replayed traces, {more} more refused: {:?}", o.drops);
    // The world is static here (scenarios/replay.ron has the hour-long run):
    // replays of accepted frame types perturb the run a little, not the field.
    let c = pull(&o, FirmwareKind::Core);
    assert!(c.abs() < 0.05, "replays moved the consensus by {c:.3} °C");
}

/// SPEC-NOTES 33: a replayed PRESENCE_PULSE or HEARTBEAT older than its
/// sender's last one is refused before it is verified or charged, so the
/// replayers cannot drain the honest sender's rate bucket. Before that
/// screen honest delivery fell from 100 % to 96.9 % here (653 rate-limited
/// pulses); the 4 rate-limited frames left were replayed PROFILE_SYNCs,
/// which are now ignored before they are charged unless we would merge them.
#[test]
fn replays_cost_honest_nodes_nothing() {
    let attacks = "(node: 4, start_s: 0, kind: Replay(delay_s: 200)), (node: 4, start_s: 0, kind: Replay(delay_s: 15))";
    let o = run_excluding(&small(attacks), 1, FirmwareKind::Core, &[A]);
    let quiet = control(FirmwareKind::Core);
    assert!(
        o.delivery() >= quiet.delivery() - 0.002,
        "honest delivery {:.4} under replay, {:.4} without: {:?}",
        o.delivery(),
        quiet.delivery(),
        o.drops
    );
    let limited = o.drop("guard_ratelimited").saturating_sub(quiet.drop("guard_ratelimited"));
    assert_eq!(limited, 0, "more honest frames rate-limited under replay: {:?}", o.drops);
    assert!(o.drop("guard_replay") > 0, "the 15 s replays of pulses are refused as replays: {:?}", o.drops);
}

#[test]
fn forged_traces_fail_the_signature_check() {
    const FORGE: &str = "(node: 4, start_s: 0, kind: Forgery(victim: 5, offset: 6.0))";
    let o = run_excluding(&small(FORGE), 1, FirmwareKind::Core, &[A]);
    let forged = 300 / 5;
    assert!(o.drop("bad_signature") >= forged * 3, "{:?}", o.drops);
    let bad: Vec<&(u32, u8, String)> = o.drop_audits.iter().filter(|d| d.2 == "bad_signature").collect();
    assert!(bad.iter().all(|d| d.0 == VICTIM && d.1 == 0x01), "every bad signature is a forged trace: {bad:?}");
    let c = pull(&o, FirmwareKind::Core);
    let b = pull(&run_excluding(&small(FORGE), 1, FirmwareKind::Baseline, &[A]), FirmwareKind::Baseline);
    assert!(c.abs() < 0.02 && b > 0.2, "pull: core {c:.3} °C, baseline {b:.3} °C");
}

#[test]
fn sybil_identities_are_unknown_senders() {
    const SYBIL: &str = "(node: 4, start_s: 0, kind: Sybil(identities: 5, offset: 6.0))";
    let o = run_excluding(&small(SYBIL), 1, FirmwareKind::Core, &[A]);
    let unknown = o.drop("unknown_sender") - control(FirmwareKind::Core).drop("unknown_sender");
    assert!(unknown >= 5 * (300 / 5) * 5, "Sybil traces refused as unknown: {unknown}");
    let c = pull(&o, FirmwareKind::Core);
    let b = pull(&run_excluding(&small(SYBIL), 1, FirmwareKind::Baseline, &[A]), FirmwareKind::Baseline);
    assert!(c.abs() < 0.02 && b > 1.0, "pull: core {c:.3} °C, baseline {b:.3} °C");
}

#[test]
fn forged_death_certificates_kill_nobody() {
    const DEATH: &str = "(node: 4, start_s: 0, kind: ForgedDeathCertificate(victim: 5))";
    let o = run_excluding(&small(DEATH), 1, FirmwareKind::Core, &[A]);
    assert!(o.died.is_empty(), "{:?}", o.died);
    let refused = o.drop_audits.iter().filter(|d| d.0 == VICTIM && d.1 == 0x31 && d.2 == "bad_signature").count();
    assert!(refused >= 5 * 3, "five certificates, each refused by the honest nodes in range: {refused}");
    let quiet = control(FirmwareKind::Core);
    for m in (0..9).filter(|&m| m != A && m != VICTIM) {
        let (before, after) = (quiet.views[m as usize][VICTIM as usize], o.views[m as usize][VICTIM as usize]);
        assert!(
            before.is_none() || after.is_some_and(|s| s != SubjectState::Apoptotic),
            "monitor {m} held the victim as {before:?} without the attack, {after:?} with it"
        );
    }
}

/// The attack scenarios of the library, with the figures their
/// expectations were set from: core and baseline, every seed, each next to
/// the same run without the attacks (the attackers' nodes left out).
#[test]
#[ignore = "minutes in release; prints the figures behind the scenario expectations"]
fn measure_library() {
    let only = std::env::var("KRILL_ONLY").ok();
    for name in [
        "spike",
        "slow-drift",
        "pattern",
        "flood",
        "replay",
        "forgery",
        "sybil",
        "weight-inflation",
        "collusion",
        "forged-death",
    ] {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|x| x == name)) {
            continue;
        }
        let path = scenarios_dir().join(format!("{name}.ron"));
        let s = match Scenario::load(&path) {
            Ok(s) => s,
            Err(e) => {
                println!("{name}: {e}");
                continue;
            }
        };
        let attackers = attackers_of(&s);
        let mut quiet = s.clone();
        quiet.attacks.clear();
        quiet.expect.clear();
        for &seed in &s.seeds {
            for fw in [FirmwareKind::Core, FirmwareKind::Baseline] {
                let c = run_excluding(&quiet, seed, fw, &attackers);
                let t = std::time::Instant::now();
                let o = run(&s, seed, fw);
                let secs = t.elapsed().as_secs_f64();
                let start = |k: u32| {
                    s.attacks
                        .iter()
                        .find(|a| a.node == k)
                        .map_or(s.attacks.first().map_or(0, |a| a.start_s), |a| a.start_s)
                };
                let per_attack = |o: &Outcome| -> Vec<String> {
                    attackers
                        .iter()
                        .map(|&k| {
                            let st = start(k) as f64;
                            format!(
                                "{k}: left NORMAL at {}/{}/{} monitors (300 s/600 s/end), rejected by {} at end",
                                o.detected_by(k, st, 300.0),
                                o.detected_by(k, st, 600.0),
                                o.detected_by(k, st, 1e9),
                                o.rejected_at_end.get(&k).copied().unwrap_or(0)
                            )
                        })
                        .collect()
                };
                println!("{name} seed {seed} {fw:?} ({secs:.1} s)");
                for (what, x) in [("attack ", &o), ("control", &c)] {
                    println!(
                        "  {what}: err mean {:.3} max {:.3} (after 600 s: mean {:.3} max {:.3}) | delivery {:.4} | honest flicker pairs {} | honest rejections {} (warm-up {}) | died {:?}\n           {:?}\n           drops {:?}",
                        x.mean_error(0.0),
                        x.max_error(0.0),
                        x.mean_error(600.0),
                        x.max_error(600.0),
                        x.delivery(),
                        x.honest_flicker(&attackers, 0.0),
                        x.honest_rejections,
                        x.honest_rejections_warmup,
                        x.died,
                        per_attack(x),
                        x.drops,
                    );
                }
                println!(
                    "  attacker sent {:?}\n  honest sent {:?} own {:?}",
                    o.attacker_sent, o.honest_sent, o.own_states
                );
            }
        }
    }
}
