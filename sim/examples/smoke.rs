use krill_sim::scenario::Scenario;
use krill_sim::sim::{FirmwareKind, Simulation};
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let threads: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(1);
    let s = Scenario::load(std::path::Path::new(&path)).unwrap();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let t = std::time::Instant::now();
            let mut sim = Simulation::new(&s, s.seeds[0], FirmwareKind::Core, threads).unwrap();
            println!("built in {:?}", t.elapsed());
            sim.run(|_, _| {}).unwrap();
            println!("ran in {:?}: {:?}", t.elapsed(), sim.stats());
            let mut drops = std::collections::BTreeMap::new();
            let mut sent = std::collections::BTreeMap::new();
            for n in sim.nodes() {
                for (k, v) in &n.log().drops {
                    *drops.entry(k.clone()).or_insert(0u64) += v;
                }
                for (k, v) in &n.log().sent {
                    *sent.entry(*k).or_insert(0u64) += v;
                }
            }
            println!("sent {sent:?}\ndrops {drops:?}");
            let tr: Vec<_> = sim
                .nodes()
                .iter()
                .enumerate()
                .flat_map(|(i, n)| n.log().transitions.iter().map(move |t| (i, t.0 / 1_000_000, t.1, t.2)))
                .collect();
            println!("transitions {}: {:?}", tr.len(), &tr[..tr.len().min(20)]);
            let att = sim.model().info()[24].id;
            let mut by = std::collections::BTreeMap::new();
            for (i, n) in sim.nodes().iter().enumerate() {
                for t in &n.log().transitions {
                    if t.0 > sim.model().warmup_us() {
                        *by.entry((t.1 == att, format!("{:?}", t.2))).or_insert(0) += 1;
                    }
                    let _ = i;
                }
            }
            println!("post-warmup transitions (is_attacker, to): {by:?}");
            let views: Vec<_> = (0..49).filter_map(|m| sim.view(m, 24)).collect();
            println!("views of 24: {views:?}");
            println!(
                "own {:?}",
                sim.own_states().iter().fold(std::collections::BTreeMap::new(), |mut m, s| {
                    *m.entry(format!("{s:?}")).or_insert(0) += 1;
                    m
                })
            );
            let errs: Vec<f32> = sim.nodes().iter().filter_map(|n| n.log().samples.last().map(|s| s.1)).collect();
            println!("last errors {:?}", &errs[..errs.len().min(10)]);
        })
        .unwrap()
        .join()
        .unwrap();
}
