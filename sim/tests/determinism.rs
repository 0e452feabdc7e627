//! A run is a pure function of (scenario, seed, code): the same with 1, 2
//! or 4 threads, different with another seed.

use krill_sim::scenario::Scenario;
use krill_sim::sim::{FirmwareKind, Simulation};

const SCENARIO: &str = r#"(
    name: "determinism",
    duration_s: 240,
    start: Warm(warmup_s: 240),
    area: (width_m: 30, height_m: 30),
    nodes: [(layout: Grid(rows: 4, cols: 4, spacing_m: 6))],
    world: (fields: [(quantity: Temperature, base: 21.0, noise_sd: 0.05, bias_sd: 0.05)]),
    attacks: [(node: 5, start_s: 60, kind: Spike(offset: 6.0))],
    sample_interval_s: 30,
)"#;

/// Everything a run's results are made of, as text.
fn fingerprint(seed: u64, threads: usize, firmware: FirmwareKind) -> (String, krill_sim::engine::EngineStats) {
    let s = Scenario::parse(SCENARIO, "determinism.ron").expect("scenario");
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let mut sim = Simulation::new(&s, seed, firmware, threads).expect("build");
            sim.run(|_, _| {}).expect("run");
            let mut out = String::new();
            for n in sim.nodes() {
                let l = n.log();
                out += &format!(
                    "{:?}|{}|{}|{}|{:?}|{:?}|{:?}|{:?}\n",
                    l.sent,
                    l.received,
                    l.honest_received,
                    l.honest_dropped,
                    l.drops,
                    l.transitions,
                    l.samples,
                    l.audits
                );
            }
            (out, sim.stats())
        })
        .expect("thread")
        .join()
        .expect("join")
}

#[test]
fn same_results_with_one_two_and_four_threads() {
    let (one, stats) = fingerprint(7, 1, FirmwareKind::Core);
    assert!(stats.events > 10_000, "the run did work: {stats:?}");
    assert!(one.contains("Temperature"), "audits were recorded");
    let (two, stats2) = fingerprint(7, 2, FirmwareKind::Core);
    assert!(stats2.parallel_rounds > 0, "the pool was used: {stats2:?}");
    assert_eq!(stats.events, stats2.events);
    assert!(one == two, "1 vs 2 threads differ");
    let (four, _) = fingerprint(7, 4, FirmwareKind::Core);
    assert!(one == four, "1 vs 4 threads differ");
}

#[test]
fn another_seed_gives_another_run() {
    let (a, _) = fingerprint(7, 1, FirmwareKind::Baseline);
    let (b, _) = fingerprint(8, 1, FirmwareKind::Baseline);
    assert_ne!(a, b);
    let (a2, _) = fingerprint(7, 2, FirmwareKind::Baseline);
    assert_eq!(a, a2);
}
