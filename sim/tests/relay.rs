//! BLE Mesh relay (ES-12.2, ES-15.4) in the simulator's transport: frames
//! reach beyond radio range, the TTL bounds how far, the relay cache keeps
//! each node from handling or relaying a frame twice, and a selective relay
//! passes nothing on.

mod common;

use common::on_big_stack;
use krill_sim::scenario::Scenario;
use krill_sim::sim::{FirmwareKind, Simulation};

/// Eight Nanos 10 m apart in a line: each hears only its nearest neighbours.
fn corridor(relay_ttl: u8, attacks: &str) -> Scenario {
    let text = format!(
        r#"(
            name: "relay-test",
            duration_s: 300,
            start: Warm(warmup_s: 120),
            area: (width_m: 90, height_m: 10),
            radio: (environment: Indoor, relay_ttl: {relay_ttl}),
            nodes: [(class: Nano, quantity: Temperature, layout: Grid(rows: 1, cols: 8, spacing_m: 10, origin: (5, 5)))],
            world: (fields: [(quantity: Temperature, base: 21.5, noise_sd: 0.05, bias_sd: 0.05)]),
            attacks: [{attacks}],
        )"#
    );
    Scenario::parse(&text, "relay-test.ron").expect("test scenario parses")
}

/// Per node: frames handed to the firmware, frames relayed, relays
/// refused, copies the mesh layer dropped.
fn run(s: Scenario) -> Vec<(u64, u64, u64, u64)> {
    on_big_stack(move || {
        let mut sim = Simulation::new(&s, 1, FirmwareKind::Core, 1).expect("builds");
        sim.run(|_, _| {}).expect("runs");
        sim.nodes()
            .iter()
            .map(|n| {
                let l = n.log();
                (l.received, l.relayed, l.relay_refused, l.mesh_duplicates)
            })
            .collect()
    })
}

#[test]
fn relaying_reaches_past_radio_range_within_the_ttl() {
    let off = run(corridor(0, ""));
    let one = run(corridor(1, ""));
    let three = run(corridor(3, ""));
    assert!(off.iter().all(|n| n.1 == 0 && n.3 == 0), "relay_ttl 0 relays nothing: {off:?}");
    // The end node hears about two neighbours directly; relayed copies bring
    // the frames of nodes farther down the line.
    assert!(one[0].0 > off[0].0 * 3 / 2, "ttl 1: {} vs {} frames at node 0", one[0].0, off[0].0);
    assert!(three[0].0 > one[0].0, "ttl 3 reaches farther than ttl 1: {} vs {}", three[0].0, one[0].0);
    let relayed = |v: &[(u64, u64, u64, u64)]| v.iter().map(|n| n.1).sum::<u64>();
    assert!(relayed(&three) > relayed(&one) && relayed(&one) > 0);
    // Every copy a node hears again (its own echoes included) stops at its
    // mesh layer: a node relays a frame at most once, so relays never
    // outnumber the frames handed to firmwares.
    assert!(three.iter().all(|n| n.3 > 0), "{three:?}");
    assert!(relayed(&three) <= three.iter().map(|n| n.0).sum::<u64>());
}

#[test]
fn a_selective_relay_passes_nothing_on_and_the_mesh_still_reaches_past_it() {
    let honest = run(corridor(3, ""));
    let attacked = run(corridor(3, "(node: 3, start_s: 0, kind: SelectiveRelay(drop_fraction: 1.0))"));
    let (received, relayed, refused, _) = attacked[3];
    assert!(received > 0 && refused > 0, "{:?}", attacked[3]);
    // Relays started in the warm-up, before the attack window opened.
    assert!(relayed < honest[3].1 / 2, "{relayed} relayed vs {} when honest", honest[3].1);
    // Node 7, at the far end, still hears node 0's side through direct links
    // and the other relays, just less of it.
    assert!(attacked[7].0 > 0 && attacked[7].0 <= honest[7].0, "{:?} vs {:?}", attacked[7], honest[7]);
}

#[test]
fn an_absurd_ttl_is_refused_with_what_to_change() {
    let text = r#"(
        name: "relay-ttl",
        duration_s: 60,
        area: (width_m: 10, height_m: 10),
        radio: (relay_ttl: 40),
        nodes: [(layout: Grid(rows: 2, cols: 2, spacing_m: 3))],
    )"#;
    let err = Scenario::parse(text, "relay-ttl.ron").unwrap_err().to_string();
    assert!(err.contains("relay_ttl") && err.contains("up to 10"), "{err}");
}
