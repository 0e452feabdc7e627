//! ES-4.1 consistency check throughput.

use criterion::{criterion_group, criterion_main, Criterion};
use krill_core::consistency::{check_physical_consistency, ConsistencyInput};
use krill_core::QuantityType;
use std::hint::black_box;

fn consistency(c: &mut Criterion) {
    let inputs = [
        ConsistencyInput {
            my_reading: 2310,
            their_reading: 2340,
            quantity: QuantityType::Temperature,
            distance_cm: 200,
            time_delta_ms: 5000,
        },
        ConsistencyInput {
            my_reading: 2310,
            their_reading: 8500,
            quantity: QuantityType::Temperature,
            distance_cm: 100,
            time_delta_ms: 2000,
        },
        ConsistencyInput {
            my_reading: 420,
            their_reading: 890,
            quantity: QuantityType::Co2,
            distance_cm: 300,
            time_delta_ms: 10000,
        },
    ];
    c.bench_function("consistency_check", |b| {
        b.iter(|| {
            for i in &inputs {
                black_box(check_physical_consistency(black_box(i)));
            }
        })
    });
}

criterion_group!(benches, consistency);
criterion_main!(benches);
