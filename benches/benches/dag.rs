//! Local DAG append with GC (ES-5.2) in steady state on a full 4,096-entry
//! DAG: appends arrive faster than the 3000 s time GC frees room, so the
//! score GC (sort, keep 75 %) runs every 1,024 appends and is amortised.
use criterion::Criterion;
use krill_core::dag::{LocalDag, Trace};
use krill_core::{DeviceId, HashPrefix4, QuantityType};
use std::hint::black_box;

const T0: u32 = 1_707_800_000;

struct Steady {
    dag: Box<LocalDag<4096>>,
    i: u32,
}

impl Steady {
    fn step(&mut self) {
        self.i += 1;
        let now = T0 + self.i / 4;
        let device = DeviceId([(self.i % 61) as u8, 0, 0, 0, 0, 0, 0, 2]);
        let t = Trace {
            device,
            timestamp: now,
            quantity: QuantityType::Temperature,
            reading: (self.i % 500) as i16,
            confidence: 255,
            weight: (self.i % 256) as u8,
            seq: (self.i / 61) as u8,
            prev_hash: HashPrefix4::default(),
        };
        black_box(self.dag.append(&t, now).ok());
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut s = Steady { dag: Box::new(LocalDag::new()), i: 0 };
    for _ in 0..3 * 4096 {
        s.step();
    }
    c.bench_function("dag append with GC, full 4096", |b| b.iter(|| s.step()));
    c.final_summary();
}
