//! city-1000 (issue #4): 1,000 Nano nodes, 24 h simulated after a 30-minute
//! warm start, modeled crypto, from `scenarios/city-1000.ron`. Target:
//! ≤ 60 s wall, ≥ 1.7× speed-up on 2 threads, peak RSS ≤ 1 GiB. Set
//! `KRILL_BENCH_HOURS` for a shorter day.

mod scenario_bench;

use krill_sim::scenario::Scenario;

fn main() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/city-1000.ron");
    scenario_bench::main_for("city-1000", || match Scenario::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    });
}
