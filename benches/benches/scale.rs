//! Scale (issue #4): 1,000 Nano + 99,000 Dust devices reporting over LoRa
//! through 121 gateways, 1 simulated hour after a 10-minute warm start,
//! modeled crypto. Must fit in 24 GiB; prints time and memory. Set
//! `KRILL_BENCH_HOURS` for a shorter hour.
//!
//! Layout, built here: an 11 × 11 km district with a gateway at the centre
//! of each square kilometre, a cluster of 8–9 Nanos within 75 m of each
//! gateway, and the Dust scattered over the whole area. A core gateway
//! serves at most 1,024 Dust devices (`DustRegistry`), so 99,000 Dust need
//! about a hundred gateways; with the LoRa range at 1 km each uplink reaches
//! the nearest few.

mod scenario_bench;

use std::fmt::Write as _;

use krill_sim::scenario::Scenario;

const SIDE: u32 = 11;
const SPACING_M: f64 = 1_000.0;
const NANOS: u32 = 1_000;
const DUST: u32 = 99_000;

fn scenario_text() -> String {
    let gateways = SIDE * SIDE;
    let mut nodes = String::new();
    let mut gw = Vec::new();
    for r in 0..SIDE {
        for c in 0..SIDE {
            gw.push((SPACING_M * (f64::from(c) + 0.5), SPACING_M * (f64::from(r) + 0.5)));
        }
    }
    let list: Vec<String> = gw.iter().map(|(x, y)| format!("({x}, {y})")).collect();
    let _ = writeln!(nodes, "(class: Gateway, quantity: Temperature, layout: Explicit([{}])),", list.join(", "));
    for (i, (x, y)) in gw.iter().enumerate() {
        let count = NANOS / gateways + u32::from((i as u32) < NANOS % gateways);
        let _ = writeln!(
            nodes,
            "(class: Nano, quantity: Temperature, layout: Random(count: {count}, \
             region: Some((x0: {}, y0: {}, x1: {}, y1: {})))),",
            x - 75.0,
            y - 75.0,
            x + 75.0,
            y + 75.0
        );
    }
    let _ = writeln!(nodes, "(class: Dust, quantity: Temperature, layout: Random(count: {DUST})),");
    let side_m = SPACING_M * f64::from(SIDE);
    format!(
        "(
    name: \"scale-100k\",
    description: \"1,000 Nano + 121 gateways + 99,000 Dust over LoRa, 1 h\",
    duration_s: 3600,
    seeds: [1],
    crypto: Modeled,
    start: Warm(warmup_s: 600),
    area: (width_m: {side_m}, height_m: {side_m}),
    radio: (environment: Outdoor, lora_range_m: 1000, lora_duty_cycle: 0.01),
    nodes: [
{nodes}    ],
    world: (
        fields: [(quantity: Temperature, base: 16.0, gradient: (0.0005, 0.0), noise_sd: 0.1, bias_sd: 0.1)],
        zones: [(name: \"all\", rect: (x0: 0, y0: 0, x1: {side_m}, y1: {side_m}))],
    ),
)"
    )
}

fn main() {
    scenario_bench::main_for("scale-100k", || match Scenario::parse(&scenario_text(), "scale.rs") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    });
}
