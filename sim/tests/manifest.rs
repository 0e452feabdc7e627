//! `deployment_manifest: true` gives each mesh node the surveyed positions
//! of the nodes in its range (ES-11.3), and the nodes measure with them.

use std::collections::BTreeMap;

use krill_core::distance::DistanceMethod;
use krill_core::node::AuditEvent;
use krill_sim::scenario::Scenario;
use krill_sim::sim::{FirmwareKind, Simulation};

/// A row of Nanos 0, 6, 12, 18, 24 and 30 m along x, 20 min in all.
fn row(manifest: bool) -> Scenario {
    let text = format!(
        r#"(
        name: "manifest-row",
        duration_s: 600,
        start: Warm(warmup_s: 600),
        area: (width_m: 40, height_m: 10),
        radio: (environment: Indoor),
        deployment_manifest: {manifest},
        nodes: [(layout: Explicit([(0, 5), (6, 5), (12, 5), (18, 5), (24, 5), (30, 5)]))],
        world: (fields: [(quantity: Temperature, base: 21.5, noise_sd: 0.05, bias_sd: 0.05)]),
    )"#
    );
    Scenario::parse(&text, "manifest-row.ron").expect("test scenario parses")
}

/// The last distance each node recorded for each subject, by node index:
/// (monitor, subject) → (cm, method).
fn distances(s: Scenario) -> BTreeMap<(u32, u32), (u32, DistanceMethod)> {
    let h = std::thread::Builder::new().stack_size(256 << 20).spawn(move || {
        let mut sim = Simulation::new(&s, 1, FirmwareKind::Core, 1).expect("builds");
        sim.run(|_, _| {}).expect("runs");
        let index: BTreeMap<_, _> = sim.model().info().iter().map(|n| (n.id, n.index)).collect();
        let mut last = BTreeMap::new();
        for (i, n) in sim.nodes().iter().enumerate() {
            for (_, a) in &n.log().audits {
                if let AuditEvent::Trace(t) = a {
                    if let Some(&j) = index.get(&t.subject) {
                        last.insert((i as u32, j), (t.distance.cm, t.distance.method));
                    }
                }
            }
        }
        last
    });
    h.expect("spawns").join().expect("runs to the end")
}

#[test]
fn surveyed_nodes_measure_far_neighbours_at_their_distance() {
    let surveyed = distances(row(true));
    // Pairs 12 m and more apart: their RSSI medians sit near the floor.
    let far: Vec<_> = surveyed.iter().filter(|((i, j), _)| i.abs_diff(*j) >= 2).collect();
    assert!(far.len() >= 4, "nodes 12 m and more apart hear each other: {surveyed:?}");
    for (&(i, j), &(cm, method)) in &surveyed {
        let true_cm = 600 * i.abs_diff(j);
        match method {
            DistanceMethod::StaticConfig => assert_eq!(cm, true_cm, "{i} → {j}"),
            // Only a strong median may shorten the survey.
            DistanceMethod::RssiModel => assert!(cm < true_cm && cm < 700, "{i} → {j}: {cm} cm"),
            m => panic!("{i} → {j}: {m:?}"),
        }
    }
    for (&(i, j), &(cm, method)) in far {
        assert_eq!((cm, method), (600 * i.abs_diff(j), DistanceMethod::StaticConfig), "{i} → {j}");
    }

    // Without the field nodes have RSSI only.
    let rssi = distances(row(false));
    assert!(!rssi.is_empty() && rssi.values().all(|(_, m)| *m == DistanceMethod::RssiModel), "{rssi:?}");
}
