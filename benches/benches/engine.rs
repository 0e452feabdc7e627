//! Engine-only throughput on the workload other engines were measured with
//! on this machine (issue #4): N = 1,000 entities tick every 1 s, staggered
//! evenly across the second, and each tick delivers a message to the k = 8
//! ring neighbours i+1..i+8 at the same simulated time; 100 simulated
//! seconds = 100,000 ticks + 800,000 deliveries. Goes through the real
//! scheduler (`Engine::schedule`, rounds, barrier merge). Prints events/s
//! for the best of several runs, with 1 thread and with 2.

use krill_sim::engine::{Ctx, Engine, EngineError, Micros, Model};
use std::hint::black_box;
use std::time::Instant;

const N: u32 = 1_000;
const K: u32 = 8;
const SIM_S: u64 = 100;

struct Ring;

#[derive(Default)]
struct Entity {
    received: u64,
    last_from: u32,
}

enum Ev {
    Tick,
    Msg(u32),
}

impl Model for Ring {
    type Node = Entity;
    type Event = Ev;
    fn handle(&self, ctx: &mut Ctx<'_, Ev>, node: &mut Entity, ev: Ev) -> Result<(), EngineError> {
        match ev {
            Ev::Tick => {
                let now = ctx.now();
                if now + 1_000_000 < SIM_S * 1_000_000 {
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

fn run(threads: usize) -> (u64, f64) {
    let nodes = (0..N).map(|_| Entity::default()).collect();
    let mut e = Engine::new(Ring, nodes, 0, threads).expect("engine");
    for i in 0..N {
        let at: Micros = u64::from(i) * 1_000_000 / u64::from(N);
        e.schedule(at, 0, i, Ev::Tick).expect("schedule");
    }
    let t = Instant::now();
    e.run_until(SIM_S * 1_000_000).expect("run");
    let wall = t.elapsed().as_secs_f64();
    let received: u64 = e.nodes().iter().map(|n| n.received).sum();
    assert_eq!(received, u64::from(N * K) * SIM_S, "every delivery must arrive");
    black_box(e.nodes().iter().map(|n| n.last_from).sum::<u32>());
    (e.stats().events, wall)
}

fn main() {
    for threads in [1usize, 2] {
        let mut best = f64::MAX;
        let mut events = 0;
        for _ in 0..5 {
            let (ev, wall) = run(threads);
            events = ev;
            best = best.min(wall);
        }
        println!(
            "engine ring N={N} k={K} {SIM_S} s, {threads} thread(s): {events} events in {:.3} s = {:.2} M events/s",
            best,
            events as f64 / best / 1e6
        );
    }
}
