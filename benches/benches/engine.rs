//! Engine-only throughput on the workload other engines were measured with
//! on this machine (issue #4): N = 1,000 entities tick every 1 s, staggered
//! evenly across the second, and each tick delivers a message to the k = 8
//! ring neighbours i+1..i+8 at the same simulated time; 100 simulated
//! seconds = 100,000 ticks + 800,000 deliveries. Goes through the real
//! scheduler (`Engine::schedule`, rounds, barrier merge). Prints events/s
//! for the best of several runs, with 1 thread and with 2.
//!
//! The ring's rounds (one tick, or one tick's 8 deliveries) are below the
//! engine's pool threshold, so the 2-thread figure runs no round on the
//! pool. Two more runs lower the threshold to 2 events, so each delivery
//! round is handed to the pool, and print what that costs per pooled round
//! (2-thread time minus 1-thread time): once back to back, and once with
//! ~40 µs of serial work (the tick) before each delivery round, as in the
//! city, where the pool's threads idle between rounds.

use krill_sim::engine::{Ctx, Engine, EngineError, EngineStats, Micros, Model};
use std::hint::black_box;
use std::time::Instant;

const N: u32 = 1_000;
const K: u32 = 8;
const SIM_S: u64 = 100;

/// The ring; `MIN` is its [`Model::PARALLEL_MIN_EVENTS`]. A tick first
/// spins `tick_work` dependent multiply-adds.
struct Ring<const MIN: usize> {
    tick_work: u32,
    sim_s: u64,
}

#[derive(Default)]
struct Entity {
    received: u64,
    last_from: u32,
}

enum Ev {
    Tick,
    Msg(u32),
}

impl<const MIN: usize> Model for Ring<MIN> {
    type Node = Entity;
    type Event = Ev;
    const PARALLEL_MIN_EVENTS: usize = MIN;
    fn handle(&self, ctx: &mut Ctx<'_, Ev>, node: &mut Entity, ev: Ev) -> Result<(), EngineError> {
        match ev {
            Ev::Tick => {
                if self.tick_work > 0 {
                    let mut x = u64::from(ctx.node());
                    for _ in 0..self.tick_work {
                        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                    }
                    node.last_from ^= x as u32;
                }
                let now = ctx.now();
                if now + 1_000_000 < self.sim_s * 1_000_000 {
                    ctx.schedule(now + 1_000_000, 0, ctx.node(), Ev::Tick)?;
                }
                for j in 1..=K {
                    ctx.schedule(now, 1, (ctx.node() + j) % N, Ev::Msg(ctx.node()))?;
                }
            }
            Ev::Msg(from) => {
                node.received += 1;
                node.last_from = from;
            }
        }
        Ok(())
    }
}

fn run<const MIN: usize>(threads: usize, tick_work: u32, sim_s: u64) -> (EngineStats, f64) {
    let nodes = (0..N).map(|_| Entity::default()).collect();
    let mut e = Engine::new(Ring::<MIN> { tick_work, sim_s }, nodes, 0, threads).expect("engine");
    for i in 0..N {
        let at: Micros = u64::from(i) * 1_000_000 / u64::from(N);
        e.schedule(at, 0, i, Ev::Tick).expect("schedule");
    }
    let t = Instant::now();
    e.run_until(sim_s * 1_000_000).expect("run");
    let wall = t.elapsed().as_secs_f64();
    let received: u64 = e.nodes().iter().map(|n| n.received).sum();
    assert_eq!(received, u64::from(N * K) * sim_s, "every delivery must arrive");
    black_box(e.nodes().iter().map(|n| n.last_from).sum::<u32>());
    (e.stats(), wall)
}

/// The best of 5 runs.
fn best<const MIN: usize>(threads: usize, tick_work: u32, sim_s: u64) -> (EngineStats, f64) {
    (0..5).map(|_| run::<MIN>(threads, tick_work, sim_s)).min_by(|a, b| a.1.total_cmp(&b.1)).expect("5 runs")
}

fn main() {
    for threads in [1usize, 2] {
        let (stats, wall) = best::<16>(threads, 0, SIM_S);
        println!(
            "engine ring N={N} k={K} {SIM_S} s, {threads} thread(s): {} events in {wall:.3} s = {:.2} M events/s",
            stats.events,
            stats.events as f64 / wall / 1e6
        );
    }
    // 40,000 dependent multiply-adds took ~36 µs here.
    for (what, tick_work, sim_s) in [("back to back", 0, SIM_S), ("after ~40 µs of serial work", 40_000, 10)] {
        let (_, wall_1) = best::<2>(1, tick_work, sim_s);
        let (stats, wall_2) = best::<2>(2, tick_work, sim_s);
        println!(
            "engine ring, delivery rounds on the pool {what}: {} rounds ({} pooled), 1 thread {wall_1:.3} s, \
             2 threads {wall_2:.3} s: {:.2} µs more per pooled round",
            stats.rounds,
            stats.parallel_rounds,
            (wall_2 - wall_1) / stats.parallel_rounds.max(1) as f64 * 1e6
        );
    }
}
