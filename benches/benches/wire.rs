//! TRACE_DEPOSIT decode and encode (ES-2.3): the generic `FrameRepr::parse`
//! (header check, body repr, signature copy) against the zero-copy
//! `TraceDepositPacket` view that reads fixed offsets, and `FrameRepr::emit`.
//! Also a PROFILE_SYNC v2 with 50 bins, the largest common body.
use criterion::Criterion;
use krill_core::types::{DeviceId, HashPrefix4, QuantityType, Signature};
use krill_core::wire::immune::{ProfileComponent, ProfileSyncV2};
use krill_core::wire::{Body, FrameRepr, ProfileSync, TraceDeposit, TraceDepositPacket, Version};
use std::hint::black_box;

fn tv13() -> FrameRepr {
    FrameRepr {
        version: Version::V1,
        sender_id: DeviceId([0x18, 0x07, 0xF6, 0xE5, 0xD4, 0xC3, 0xB2, 0xA1]),
        body: Body::TraceDeposit(TraceDeposit {
            timestamp: 1_707_800_000,
            quantity: QuantityType::Temperature,
            reading: 2310,
            confidence: 204,
            weight: 204,
            seq: 42,
            prev_hash: HashPrefix4([0x34, 0x12, 0xCD, 0xAB]),
            vouch: None,
        }),
        signature: Signature([0x5A; 64]),
    }
}

fn profile_sync() -> FrameRepr {
    let mut bins = heapless_bins();
    for (i, b) in bins.iter_mut().enumerate() {
        *b = i as u16 * 7;
    }
    FrameRepr {
        version: Version::V2,
        sender_id: DeviceId([1; 8]),
        body: Body::ProfileSync(ProfileSync {
            subject_id: DeviceId([2; 8]),
            profile_version: 70_000,
            component: ProfileComponent::Values,
            bins,
            v2: Some(ProfileSyncV2 {
                value_count: 1000,
                value_mean: 2310.5,
                value_var: 42.0,
                value_min: 2000,
                value_max: 2600,
                last_updated: 1_707_800_000,
            }),
        }),
        signature: Signature([0x5A; 64]),
    }
}

fn heapless_bins() -> krill_core::wire::immune::Bins {
    let mut v = krill_core::wire::immune::Bins::new();
    while v.push(0).is_ok() {}
    v
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut frame = [0u8; 90];
    tv13().emit(&mut frame).expect("TV13 fits 90 bytes");

    c.bench_function("trace_deposit/decode/frame_repr", |b| b.iter(|| FrameRepr::parse(black_box(&frame[..]))));
    c.bench_function("trace_deposit/decode/packet_view", |b| {
        b.iter(|| {
            let p = TraceDepositPacket::new_checked(black_box(&frame[..])).expect("valid TV13");
            (p.timestamp(), p.quantity(), p.reading(), p.confidence(), p.weight(), p.seq(), p.prev_hash())
        })
    });
    let repr = tv13();
    c.bench_function("trace_deposit/encode/frame_repr", |b| {
        let mut out = [0u8; 128];
        b.iter(|| black_box(&repr).emit(black_box(&mut out)))
    });

    let big = profile_sync();
    let mut buf = [0u8; 256];
    let n = big.emit(&mut buf).expect("210-byte PROFILE_SYNC fits");
    c.bench_function("profile_sync_v2_50_bins/decode", |b| b.iter(|| FrameRepr::parse(black_box(&buf[..n]))));
    c.bench_function("profile_sync_v2_50_bins/encode", |b| {
        let mut out = [0u8; 256];
        b.iter(|| black_box(&big).emit(black_box(&mut out)))
    });
    c.final_summary();
}
