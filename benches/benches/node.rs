//! ES-10.3 end to end: one received TRACE_DEPOSIT through a warmed-up
//! ES-1.2 Nano (decode → guards → signature → DAG, field, consistency,
//! profile, lifecycle), with the simulation's modeled tag and with Ed25519.
//! Frames are made and the receiver's own reading taken outside the timed
//! part; virtual time advances 5 s per trace so guards and GC see a steady
//! stream.

use criterion::{criterion_group, criterion_main, Criterion};
use krill_core::crypto::{Crypto, Identity, ModeledAuthority, RealCrypto, Seed};
use krill_core::node::{Action, NanoNode, Node, NodeConfig, Now, Rng};
use krill_core::QuantityType;
use std::hint::black_box;
use std::time::{Duration, Instant};

const UNIX0: u32 = 1_700_000_000;

struct Lcg(u64);

impl Rng for Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

struct Pair<C: Crypto> {
    tx: Box<NanoNode<C>>,
    rx: Box<NanoNode<C>>,
    t_s: u64,
    rng: Lcg,
}

impl<C: Crypto> Pair<C> {
    fn new(a: C, b: C) -> Self {
        let cfg = NodeConfig { subject_neonatal_ms: 60_000, ..NodeConfig::default() };
        let now = Now::new(0, UNIX0);
        let (ka, kb) = (a.public_key(), b.public_key());
        let mut tx = Box::new(Node::new(cfg.clone(), a, now, 1));
        let mut rx = Box::new(Node::new(cfg, b, now, 2));
        tx.register_peer(kb).unwrap();
        rx.register_peer(ka).unwrap();
        let mut p = Pair { tx, rx, t_s: 0, rng: Lcg(7) };
        // Warm up: 30 simulated minutes of traces, the subject's profile
        // learned and frozen, the record NORMAL.
        for _ in 0..360 {
            let f = p.next_frame();
            p.deliver(&f);
        }
        p
    }

    fn now(&self) -> Now {
        Now::new(self.t_s * 1000, UNIX0 + self.t_s as u32)
    }

    /// Advances 5 s: both nodes read their sensors and run their timers;
    /// returns the sender's new trace frame.
    fn next_frame(&mut self) -> Vec<u8> {
        self.t_s += 5;
        let now = self.now();
        let reading = 2200 + (self.t_s / 5 % 3) as i16 - 1;
        let mut frame = None;
        self.rx.handle_timers(now, &mut self.rng, &mut |a| drop(black_box(a)));
        self.tx.handle_timers(now, &mut self.rng, &mut |a| drop(black_box(a)));
        self.rx.handle_reading(now, QuantityType::Temperature, reading, &mut |a| drop(black_box(a)));
        self.tx.handle_reading(now, QuantityType::Temperature, reading, &mut |a| {
            if let Action::Broadcast(f) = a {
                frame = Some(f.to_vec());
            }
        });
        frame.expect("the sender broadcast a trace")
    }

    fn deliver(&mut self, f: &[u8]) {
        let now = self.now();
        self.rx.handle_frame(now, f, -60, 0, &mut |a| drop(black_box(a)));
    }
}

fn bench_pair<C: Crypto>(c: &mut Criterion, name: &str, mut p: Pair<C>) {
    let subject = p.tx.id();
    assert_eq!(p.rx.subject_state(subject), Some(krill_core::lifecycle::SubjectState::Normal), "warmed up");
    c.bench_function(&format!("node_trace_deposit_{name}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let f = p.next_frame();
                let start = Instant::now();
                p.deliver(black_box(&f));
                total += start.elapsed();
            }
            total
        })
    });
}

fn trace_deposit(c: &mut Criterion) {
    let (ia, ib) = (Identity::from_seed(&Seed([1; 32])), Identity::from_seed(&Seed([2; 32])));
    let auth = ModeledAuthority::new(&[5; 32]);
    bench_pair(c, "modeled", Pair::new(auth.crypto_for(&ia), auth.crypto_for(&ib)));
    bench_pair(c, "real", Pair::new(RealCrypto::new(&ia), RealCrypto::new(&ib)));
}

criterion_group!(benches, trace_deposit);
criterion_main!(benches);
