//! Pheromone field deposit + query (ES-4.5, SPEC-NOTES 13): a 64-entry field
//! against a full 4,096-entry one, both in steady state (every deposit
//! evicts or expires one entry). The issue asks the full field to cost at
//! most 2× the small one; the ratio is printed at the end.
use criterion::Criterion;
use krill_core::dag::Trace;
use krill_core::field::PheromoneField;
use krill_core::{DeviceId, HashPrefix4, QuantityType};
use std::hint::black_box;
use std::time::Instant;

const T0: u32 = 1_707_800_000;

fn trace(i: u32, now: u32) -> Trace {
    let q = if i.is_multiple_of(3) { QuantityType::Humidity } else { QuantityType::Temperature };
    Trace {
        device: DeviceId([(i % 97) as u8, (i % 89) as u8, 0, 0, 0, 0, 0, 1]),
        timestamp: now.wrapping_sub(i % 3),
        quantity: q,
        reading: 2000 + (i.wrapping_mul(2_654_435_761) >> 22) as i16,
        confidence: 255,
        weight: 128 + (i % 128) as u8,
        seq: i as u8,
        prev_hash: HashPrefix4::default(),
    }
}

/// A field in steady state: `per_second` traces a second, filled past
/// capacity (and past the cutoff when the capacity allows it).
struct Steady<const N: usize> {
    field: Box<PheromoneField<N>>,
    i: u32,
    per_second: u32,
}

impl<const N: usize> Steady<N> {
    fn new(per_second: u32) -> Self {
        let mut s = Steady { field: Box::new(PheromoneField::new()), i: 0, per_second };
        for _ in 0..(2 * N as u32).max(4 * 3023 * per_second / 2) {
            s.step();
        }
        s
    }

    fn step(&mut self) -> Option<i16> {
        self.i += 1;
        let now = T0 + self.i / self.per_second;
        let _ = self.field.deposit(&trace(self.i, now), 200, now);
        self.field.query(QuantityType::Temperature, now).consensus_value
    }
}

fn time_per_op<const N: usize>(s: &mut Steady<N>, n: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        black_box(s.step());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    // 1 trace/s keeps ~3023 live entries in the big field by expiry alone;
    // 2 traces/s fills it so eviction happens too.
    let mut small = Steady::<64>::new(2);
    let mut full = Steady::<4096>::new(2);
    let mut g = c.benchmark_group("field deposit+query");
    g.bench_function("64 entries", |b| b.iter(|| black_box(small.step())));
    g.bench_function("4096 entries, full", |b| b.iter(|| black_box(full.step())));
    g.finish();
    c.final_summary();
    assert_eq!(full.field.len(), 4096, "the big field must be full in steady state");
    let (a, b) = (time_per_op(&mut small, 2_000_000), time_per_op(&mut full, 2_000_000));
    println!("field steady state: 64 entries {a:.1} ns/op, 4096 entries {b:.1} ns/op, ratio {:.2} (limit 2.00)", b / a);
}
