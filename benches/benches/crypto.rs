//! ES-13 crypto costs: Ed25519 vs the simulation's modeled tag (per 90-byte
//! TRACE_DEPOSIT), the fuzzy extractor's boot-time decode, and the Dust MAC.

use criterion::{criterion_group, criterion_main, Criterion};
use krill_core::crypto::fuzzy::{enroll, reconstruct, PUF_BYTES};
use krill_core::crypto::{dust_mac, sign_frame, verify_frame, Crypto, Identity, ModeledAuthority, RealCrypto, Seed};
use std::hint::black_box;

fn signers(c: &mut Criterion) {
    let id = Identity::from_seed(&Seed([7; 32]));
    let auth = ModeledAuthority::new(&[1; 32]);
    let impls: [(&str, Box<dyn Crypto>); 2] =
        [("real", Box::new(RealCrypto::new(&id))), ("modeled", Box::new(auth.crypto_for(&id)))];
    for (name, cr) in &impls {
        let mut frame = [0x5Au8; 90];
        c.bench_function(&format!("crypto_sign_trace_{name}"), |b| {
            b.iter(|| sign_frame(cr.as_ref(), black_box(&mut frame), 26))
        });
        let pk = cr.public_key();
        c.bench_function(&format!("crypto_verify_trace_{name}"), |b| {
            b.iter(|| verify_frame(cr.as_ref(), &pk, black_box(&frame), 26))
        });
    }
}

fn puf(c: &mut Criterion) {
    let mut r = [0u8; PUF_BYTES];
    for (i, b) in r.iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    let mut w = [0u8; PUF_BYTES];
    enroll(&r, &Seed([3; 32]), &mut w);
    for i in (0..PUF_BYTES).step_by(7) {
        r[i] ^= 1;
    }
    c.bench_function("crypto_puf_reconstruct", |b| b.iter(|| reconstruct(black_box(&r), &w)));
    c.bench_function("crypto_identity_from_seed", |b| b.iter(|| Identity::from_seed(black_box(&Seed([3; 32])))));
}

fn dust(c: &mut Criterion) {
    let key = [0x2Bu8; 16];
    let frame = [0x02u8; 12];
    c.bench_function("crypto_dust_mac", |b| b.iter(|| dust_mac(&key, black_box(&frame))));
}

criterion_group!(benches, signers, puf, dust);
criterion_main!(benches);
