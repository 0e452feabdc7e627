use super::*;
use crate::dag::Trace;
use crate::gateway::DustKey;
use crate::types::{HashPrefix4, MAX_DAG_ENTRIES};
use proptest::prelude::*;
use std::boxed::Box;
use std::vec::Vec;

const T0: Timestamp = 1_707_800_000;
const SIZE: usize = 0x10000;
type TestFlash = RamFlash<SIZE>;

const SMALL: Layout = Layout {
    flash_size: SIZE as u32,
    meta: Partition { offset: 0, len: 0x4000 },
    state: Partition { offset: 0x4000, len: 0x4000 },
    dag: Partition { offset: 0x8000, len: 0x4000 },
    profiles: Some(Partition { offset: 0xC000, len: 0x4000 }),
    others: &[],
};

type R = Restored<16, 8>;

/// Every cut point of the 4 KB meta image in release; every 7th in debug
/// builds to keep `cargo test` fast (`cargo test --release` runs them all).
const META_CUT_STRIDE: usize = if cfg!(debug_assertions) { 7 } else { 1 };

fn boot(f: &mut TestFlash) -> R {
    restore::<_, 16, 8>(f, &SMALL, T0 + 10)
}

fn state(n: u32) -> PersistedState {
    let mut s = PersistedState::first_boot(T0);
    s.lifecycle = lifecycle_code::NORMAL;
    s.neonatal_observed_s = 1000 * n;
    s.boot_count = n;
    s.weight = 204;
    s.profile_frozen = true;
    s.ber_history = [n as u8; 8];
    s
}

fn meta(n: u8) -> MetaRecord {
    let mut helper = [0u8; PUF_BYTES];
    for (i, b) in helper.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(n);
    }
    MetaRecord {
        protocol_version: 2,
        hw_version: 3,
        pubkey: PublicKey([n; 32]),
        device_id: DeviceId([n; 8]),
        enrolled_at: T0,
        deployment_zone: 7,
        netkey_sealed: [n ^ 0x5A; 32],
        helper,
    }
}

fn entry(d: u8, dt: u32) -> DagEntry {
    let t = Trace {
        device: DeviceId([d, 1, 2, 3, 4, 5, 6, 7]),
        timestamp: T0 + dt,
        quantity: QuantityType::Temperature,
        reading: 2300 + dt as i16,
        confidence: 255,
        weight: 200,
        seq: dt as u8,
        prev_hash: HashPrefix4::default(),
    };
    DagEntry::new(&t, Hash20::default())
}

fn profile(n: u8) -> StoredProfile {
    StoredProfile {
        device: DeviceId([n; 8]),
        quantity: QuantityType::Humidity,
        mode: if n == 0 { ProfileMode::Frozen } else { ProfileMode::Running },
        summary: ProfileSummary {
            profile_version: 100 + n as u32,
            value_count: 50,
            value_mean: 4500.5,
            value_var: 12.25,
            value_min: 4000,
            value_max: 5000,
            last_updated: T0,
            bins: [n as u16; MAX_PROFILE_BINS],
        },
    }
}

/// Commits `payload` as the next krill_profiles image, whatever it holds.
fn commit_raw_profile_image(f: &mut TestFlash, payload: &[u8]) {
    let mut banks = Banks::scan(f, SMALL.profiles.unwrap(), KIND_PROFILES).0;
    let mut w = banks.begin(f).unwrap();
    w.push(f, payload).unwrap();
    banks.commit(f, w).unwrap();
}

fn relative(n: u8) -> StoredRelative {
    StoredRelative {
        device: DeviceId([0x60 + n; 8]),
        quantity: QuantityType::Temperature,
        samples: 32 - u16::from(n),
        base_mean: -0.25 * f32::from(n),
        base_m2: 0.5 + f32::from(n),
        running: 0.1 * f32::from(n),
        hour: 0.05 * f32::from(n),
    }
}

fn standing(n: u8, state: u8) -> SubjectStanding {
    SubjectStanding {
        device: DeviceId([0x40 + n; 8]),
        state,
        kind: if n.is_multiple_of(2) { SubjectKind::Nano } else { SubjectKind::Dust },
        remediation_attempts: n % 3,
        entered_at: T0 - 3600 * n as u32,
    }
}

fn hashes(r: &R) -> Vec<Hash20> {
    r.dag.entries().iter().map(|e| e.hash).collect()
}

/// The key property: tearing `op` at every cut point, and flipping every bit
/// of `flip_range` after it, restores either the state before or after it
/// (as seen by `observe`), never anything else; and after a torn `op`, doing
/// it again succeeds. A flipped bit may also roll back to an `earlier`
/// persisted state (the copy before `old`, or empty when `old` was the only
/// copy), which is what ES-14.3 step 6 asks for; it never yields data that
/// was not persisted. `cut_stride` > 1 samples the cut points (debug builds
/// of the 4 KB meta image only).
fn torn_and_flipped<S: PartialEq + core::fmt::Debug>(
    setup: impl Fn(&mut TestFlash, &mut Store),
    op: impl Fn(&mut TestFlash, &mut Store) -> Result<(), WriteError>,
    observe: impl Fn(&R) -> S,
    flip_range: core::ops::Range<usize>,
    flip_stride: usize,
    earlier: &[S],
    cut_stride: usize,
) -> usize {
    let mut base = Box::new(TestFlash::new());
    let mut st = boot(&mut base).store;
    setup(&mut base, &mut st);
    let old = observe(&boot(&mut base));

    let mut after = base.clone();
    let mut st = boot(&mut after).store;
    let w0 = after.work_done();
    op(&mut after, &mut st).unwrap();
    let cost = after.work_done() - w0;
    let new = observe(&boot(&mut after));
    assert_ne!(old, new, "the operation must change something");

    let st0 = boot(&mut base).store;
    for k in (0..=cost).step_by(cut_stride).chain([cost]) {
        let mut f = base.clone();
        let mut st = st0;
        f.cut_power_after(k);
        let res = op(&mut f, &mut st);
        assert_eq!(res.is_ok(), k == cost, "cut at {k} of {cost}");
        f.power_on();
        let got = observe(&boot(&mut f));
        assert!(got == old || got == new, "cut at {k}/{cost}: {got:?}");
        if k < cost {
            let mut st = boot(&mut f).store;
            op(&mut f, &mut st).unwrap_or_else(|e| panic!("retry after cut at {k}: {e:?}"));
            assert_eq!(observe(&boot(&mut f)), new, "retry after cut at {k}");
        }
    }
    for byte in flip_range.step_by(flip_stride) {
        for bit in 0..8 {
            let mut f = after.clone();
            f.flip_bit(byte, bit);
            let got = observe(&boot(&mut f));
            assert!(got == old || got == new || earlier.contains(&got), "flip {byte:#x}.{bit}: {got:?}");
        }
    }
    cost
}

fn restored_state(r: &R) -> Option<PersistedState> {
    matches!(r.report.state, Status::Restored { .. }).then_some(r.state)
}

#[test]
fn crc32_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    let mut c = Crc32::new();
    c.update(b"1234");
    c.update(b"56789");
    assert_eq!(c.finish(), 0xCBF4_3926);
}

/// The CRC a bit at a time, straight from the polynomial.
fn crc32_bitwise(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

proptest! {
    #[test]
    fn crc32_four_bytes_a_step_matches_the_bitwise_definition(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        cut in 0usize..600,
    ) {
        prop_assert_eq!(crc32(&data), crc32_bitwise(&data));
        // Fed in two pieces that break the 4-byte steps anywhere.
        let cut = cut.min(data.len());
        let mut c = Crc32::new();
        c.update(&data[..cut]);
        c.update(&data[cut..]);
        prop_assert_eq!(c.finish(), crc32_bitwise(&data));
    }
}

#[test]
fn ram_flash_enforces_nor_rules_and_tears() {
    let mut f = RamFlash::<8192>::new();
    f.write(0, &[0xF0, 0x0F]).unwrap();
    f.write(0, &[0x30, 0x0F]).unwrap();
    assert_eq!(f.write(0, &[0xFF]), Err(FlashError::NotErased));
    assert_eq!(&f.bytes()[..2], &[0x30, 0x0F]);
    assert_eq!(f.erase(100), Err(FlashError::Unaligned));
    assert_eq!(f.write(8190, &[0; 4]), Err(FlashError::OutOfBounds));
    f.cut_power_after(3);
    assert_eq!(f.write(10, &[0; 5]), Err(FlashError::PowerLoss));
    assert_eq!(&f.bytes()[10..15], &[0, 0, 0, 0xFF, 0xFF]);
    assert!(f.is_dead());
    let mut b = [0u8; 1];
    assert_eq!(f.read(0, &mut b), Err(FlashError::PowerLoss));
    f.power_on();
    f.cut_power_after(1);
    assert_eq!(f.erase(0), Err(FlashError::PowerLoss));
    f.power_on();
    assert_eq!(f.bytes()[0], 0xFF, "first half erased");
    f.write(4096, &[0]).unwrap();
    f.cut_power_after(1);
    let _ = f.erase(4096);
    assert_eq!(f.bytes()[4096], 0xFF);
}

#[test]
fn erased_flash_is_first_boot() {
    let mut f = Box::new(TestFlash::new());
    let r = boot(&mut f);
    assert!(r.meta.is_none());
    assert_eq!(r.state, PersistedState::first_boot(T0 + 10));
    assert_eq!(r.state.lifecycle, lifecycle_code::NEONATAL);
    assert!(r.dag.is_empty() && r.profiles.is_empty());
    assert_eq!(r.report.meta, Status::Blank);
    assert_eq!(r.report.state, Status::Blank);
    assert_eq!(r.report.dag, Status::Blank);
    assert_eq!(r.report.profiles, Status::Blank);
}

#[test]
fn enrolled_marker_is_neither_erased_nor_zero() {
    let mut b = [0u8; MetaRecord::LEN];
    meta(1).write_bytes(&mut b).unwrap();
    assert_eq!(b[0], ENROLLED_MARKER);
    for bad in [0x00, 0xFF] {
        b[0] = bad;
        assert_eq!(MetaRecord::from_bytes(&b), Err(Invalid::BadField));
    }
}

#[test]
fn state_layout_is_fixed() {
    let s = state(3);
    let b = s.to_bytes();
    assert_eq!(b.len(), 48);
    assert_eq!(b[0], lifecycle_code::NORMAL);
    assert_eq!(b[4], 1);
    assert_eq!(&b[16..20], &3000u32.to_le_bytes());
    assert_eq!(&b[28..32], &3u32.to_le_bytes());
    assert_eq!(PersistedState::from_bytes(&b), Ok(s));
    let mut bad = b;
    bad[0] = 9;
    assert_eq!(PersistedState::from_bytes(&bad), Err(Invalid::BadField));
    assert_eq!(STATE_RECORD, 60);
}

#[test]
fn state_journal_survives_every_cut_and_flip() {
    torn_and_flipped(
        |_, _| {},
        |f, s| s.save_state(f, &state(1)).map(|_| ()),
        restored_state,
        0x4000..0x4000 + STATE_RECORD + 4,
        1,
        &[],
        1,
    );
    torn_and_flipped(
        |f, s| {
            s.save_state(f, &state(1)).unwrap();
        },
        |f, s| s.save_state(f, &state(2)).map(|_| ()),
        restored_state,
        0x4000..0x4000 + 2 * STATE_RECORD + 4,
        1,
        &[],
        1,
    );
}

#[test]
fn state_journal_wraps_sectors_and_survives_cut_at_the_erase() {
    let per = SECTOR_SIZE / STATE_RECORD;
    let cost = torn_and_flipped(
        |f, s| {
            for n in 0..per as u32 {
                s.save_state(f, &state(n)).unwrap();
            }
        },
        |f, s| s.save_state(f, &state(999)).map(|_| ()),
        restored_state,
        0x5000..0x5000 + STATE_RECORD,
        1,
        &[],
        1,
    );
    assert!(cost > STATE_RECORD, "the write into a new sector erases it first");
    let mut f = Box::new(TestFlash::new());
    let mut st = boot(&mut f).store;
    for n in 0..(5 * per) as u32 {
        st.save_state(&mut *f, &state(n)).unwrap();
    }
    let r = boot(&mut f);
    assert_eq!(r.state, state(5 * per as u32 - 1));
    assert!(matches!(r.report.state, Status::Restored { seq, skipped: 0, .. } if seq == 5 * per as u32));
}

#[test]
fn bad_state_checksum_falls_back_to_neonatal_and_says_why() {
    let mut f = Box::new(TestFlash::new());
    let mut st = boot(&mut f).store;
    st.save_state(&mut *f, &state(1)).unwrap();
    f.flip_bit(0x4000 + 20, 0);
    let r = boot(&mut f);
    assert_eq!(r.state.lifecycle, lifecycle_code::NEONATAL);
    assert_eq!(r.report.state, Status::Fallback { why: Invalid::BadChecksum });
}

#[test]
fn meta_survives_every_cut_and_sampled_flips() {
    let bank = 0x2000;
    torn_and_flipped(
        |_, _| {},
        |f, s| s.save_meta(f, &meta(1)).map(|_| ()),
        |r| r.meta.clone(),
        0..128,
        1,
        &[],
        META_CUT_STRIDE,
    );
    torn_and_flipped(
        |f, s| {
            s.save_meta(f, &meta(1)).unwrap();
        },
        |f, s| s.save_meta(f, &meta(2)).map(|_| ()),
        |r| r.meta.clone(),
        bank..bank + META_IMAGE_LEN,
        37,
        &[],
        META_CUT_STRIDE,
    );
}

#[test]
fn dag_append_survives_every_cut_and_flip() {
    let dag_at = 0x8000;
    let obs = |r: &R| hashes(r);
    torn_and_flipped(
        |_, _| {},
        |f, s| {
            let mut d = LocalDag::<16>::new();
            let e = entry(1, 0);
            d.sync_accept([e], T0, |_| true);
            s.record_dag(f, &d, &e)
        },
        obs,
        dag_at..dag_at + 0x100,
        1,
        &[],
        1,
    );
    let three = [entry(1, 0), entry(2, 1), entry(3, 2)];
    torn_and_flipped(
        |f, s| {
            s.compact_dag(f, &three[..2]).unwrap();
        },
        |f, s| {
            let mut d = LocalDag::<16>::new();
            d.sync_accept(three, T0, |_| true);
            s.record_dag(f, &d, &three[2])
        },
        obs,
        dag_at..dag_at + dag_image_len(2) + DAG_APPEND_RECORD + 8,
        1,
        &[Vec::new()],
        1,
    );
}

#[test]
fn dag_compaction_survives_every_cut_and_flip() {
    let six: Vec<DagEntry> = (0..6).map(|i| entry(i, i as u32)).collect();
    let cost = torn_and_flipped(
        |f, s| {
            s.compact_dag(f, &six[..3]).unwrap();
            for e in &six[3..] {
                s.append_dag(f, e).unwrap();
            }
        },
        |f, s| s.compact_dag(f, &six[2..5]).map(|_| ()),
        hashes,
        0xA000..0xA000 + dag_image_len(3) + 8,
        1,
        &[],
        1,
    );
    assert!(cost >= dag_image_len(3));
}

#[test]
fn torn_append_is_dropped_and_next_append_compacts() {
    let mut f = Box::new(TestFlash::new());
    let mut r = boot(&mut f);
    let mut dag = LocalDag::<16>::new();
    for i in 0..3u8 {
        let e = entry(i, i as u32);
        dag.sync_accept([e], T0, |_| true);
        r.store.record_dag(&mut *f, &dag, &e).unwrap();
    }
    f.cut_power_after(10);
    let e = entry(9, 5);
    assert!(r.store.append_dag(&mut *f, &e).is_err());
    f.power_on();
    let mut r = boot(&mut f);
    assert_eq!(hashes(&r), dag.entries().iter().map(|e| e.hash).collect::<Vec<_>>());
    assert_eq!(r.report.dag_tail, Some(Invalid::BadChecksum));
    assert_eq!(r.store.append_dag(&mut *f, &e), Err(WriteError::NeedsCompaction));
    dag.sync_accept([e], T0, |_| true);
    r.store.record_dag(&mut *f, &dag, &e).unwrap();
    let r = boot(&mut f);
    assert_eq!(r.dag.len(), 4);
    assert_eq!(r.report.dag_tail, None);
}

#[test]
fn full_append_log_compacts_through_record_dag() {
    let mut f = Box::new(TestFlash::new());
    let mut st = boot(&mut f).store;
    let mut dag = LocalDag::<256>::new();
    let room = (0x2000 - dag_image_len(0)) / DAG_APPEND_RECORD;
    for i in 0..(room + 5) as u32 {
        let e = entry((i % 200) as u8, i);
        dag.sync_accept([e], T0 + i, |_| true);
        st.record_dag(&mut *f, &dag, &e).unwrap();
    }
    let r = restore::<_, 256, 8>(&mut *f, &SMALL, T0 + room as u32 + 5);
    assert_eq!(r.dag.len(), dag.len());
    assert!(r.report.dag_appended < room as u16);
}

#[test]
fn profiles_survive_every_cut_and_flip() {
    let obs = |r: &R| r.profiles.iter().copied().collect::<Vec<_>>();
    torn_and_flipped(
        |f, s| {
            s.save_profiles(f, &[profile(0)]).unwrap();
        },
        |f, s| s.save_profiles(f, &[profile(0), profile(1)]).map(|_| ()),
        obs,
        0xE000..0xE000 + profile_image_len(2),
        1,
        &[],
        1,
    );
}

/// Rejections survive every cut and flip with their profiles: a torn image
/// that adds a standing leaves the image without it, never a half-read one.
#[test]
fn standings_survive_every_cut_and_flip() {
    let obs = |r: &R| (r.profiles.iter().copied().collect::<Vec<_>>(), r.standings.iter().copied().collect::<Vec<_>>());
    let rej = standing(1, lifecycle_code::REJECTION);
    let quar = standing(2, lifecycle_code::QUARANTINE);
    torn_and_flipped(
        |f, s| {
            s.save_profile_image(f, &[profile(0)], &[rej], &[]).unwrap();
        },
        |f, s| s.save_profile_image(f, &[profile(0), profile(1)], &[rej, quar], &[]).map(|_| ()),
        obs,
        0xE000..0xE000 + profile_image_len_with(2, 2),
        1,
        &[],
        1,
    );
}

/// An image written before standings existed (header bytes 2..4 zero, no
/// table) restores as before; a profiles-only write drops the table.
#[test]
fn profile_images_without_standings_still_restore() {
    let mut f = Box::new(TestFlash::new());
    let mut st = boot(&mut f).store;
    st.save_profile_image(&mut *f, &[profile(1)], &[standing(1, lifecycle_code::REJECTION)], &[]).unwrap();
    let r = boot(&mut f);
    assert_eq!(r.profiles.as_slice(), &[profile(1)]);
    assert_eq!(r.standings.as_slice(), &[standing(1, lifecycle_code::REJECTION)]);
    let mut st = r.store;
    st.save_profiles(&mut *f, &[profile(2)]).unwrap();
    let r = boot(&mut f);
    assert_eq!(r.profiles.as_slice(), &[profile(2)]);
    assert!(r.standings.is_empty());
    assert_eq!(profile_image_len(3), profile_image_len_with(3, 0));
}

/// Relative levels survive every cut and flip with the rest of the image.
#[test]
fn relatives_survive_every_cut_and_flip() {
    let obs =
        |r: &R| (r.standings.iter().copied().collect::<Vec<_>>(), r.relatives.iter().copied().collect::<Vec<_>>());
    let rej = standing(1, lifecycle_code::REJECTION);
    torn_and_flipped(
        |f, s| {
            s.save_profile_image(f, &[profile(0)], &[rej], &[relative(0)]).unwrap();
        },
        |f, s| s.save_profile_image(f, &[profile(0), profile(1)], &[rej], &[relative(0), relative(1)]).map(|_| ()),
        obs,
        0xE000..0xE000 + profile_image_len_all(2, 1, 2),
        1,
        &[],
        1,
    );
}

#[test]
fn relative_round_trips_and_refuses_bad_fields() {
    for n in 0..3 {
        let r = relative(n);
        assert_eq!(StoredRelative::from_bytes(&r.to_bytes()), Ok(r));
    }
    let good = relative(2).to_bytes();
    assert_eq!(&good[8..12], &[QuantityType::Temperature.to_u8(), 0, 30, 0]);
    assert_eq!(&good[12..16], &(-0.5f32).to_bits().to_le_bytes());
    for (at, v) in [(12, f32::NAN), (16, f32::INFINITY), (20, f32::NEG_INFINITY), (24, f32::NAN), (16, -1.0)] {
        let mut b = good;
        b[at..at + 4].copy_from_slice(&v.to_bits().to_le_bytes());
        assert_eq!(StoredRelative::from_bytes(&b), Err(Invalid::BadField), "{v} at {at}");
    }
    let mut b = good;
    b[9] = 1;
    assert_eq!(StoredRelative::from_bytes(&b), Err(Invalid::BadField));
    assert_eq!(StoredRelative::from_bytes(&good[..27]), Err(Invalid::BadLength));
}

/// Images end after the standings (as before relative levels were
/// stored) or after whole relative records; anything else is refused as a
/// whole.
#[test]
fn relative_records_must_fill_the_rest_of_the_payload() {
    let mut f = Box::new(TestFlash::new());
    let mut st = boot(&mut f).store;
    st.save_profile_image(&mut *f, &[profile(1)], &[], &[relative(1), relative(2)]).unwrap();
    let r = boot(&mut f);
    assert_eq!(r.relatives.as_slice(), &[relative(1), relative(2)]);
    assert_eq!(r.profiles.as_slice(), &[profile(1)]);
    let mut payload = Vec::new();
    payload.extend_from_slice(&[1, 0, 0, 0]);
    payload.extend_from_slice(&profile(1).to_bytes());
    payload.extend_from_slice(&relative(1).to_bytes()[..20]);
    commit_raw_profile_image(&mut f, &payload);
    let r = boot(&mut f);
    assert!(r.profiles.is_empty() && r.relatives.is_empty());
    assert_eq!(r.report.profiles, Status::Fallback { why: Invalid::BadLength });
}

#[test]
fn standing_round_trips_and_refuses_bad_fields() {
    for (n, code) in [(0, lifecycle_code::REJECTION), (1, lifecycle_code::QUARANTINE)] {
        let s = standing(n, code);
        assert_eq!(SubjectStanding::from_bytes(&s.to_bytes()), Ok(s));
    }
    let good = standing(1, lifecycle_code::REJECTION).to_bytes();
    assert_eq!(&good[8..12], &[6, 1, 1, 0]);
    assert_eq!(&good[12..16], &(T0 - 3600).to_le_bytes());
    for code in (0..=255u8).filter(|c| !matches!(*c, lifecycle_code::REJECTION | lifecycle_code::QUARANTINE)) {
        let mut b = good;
        b[8] = code;
        assert_eq!(SubjectStanding::from_bytes(&b), Err(Invalid::BadField), "state {code}");
    }
    let mut b = good;
    b[9] = 2;
    assert_eq!(SubjectStanding::from_bytes(&b), Err(Invalid::BadField));
    let mut b = good;
    b[11] = 1;
    assert_eq!(SubjectStanding::from_bytes(&b), Err(Invalid::BadField));
    assert_eq!(SubjectStanding::from_bytes(&good[..15]), Err(Invalid::BadLength));
}

/// A table that claims more standings than the payload holds is refused as a
/// whole (profiles included), never read past the image.
#[test]
fn standing_count_must_match_the_payload() {
    let mut f = Box::new(TestFlash::new());
    let mut st = boot(&mut f).store;
    st.save_profile_image(&mut *f, &[profile(1)], &[standing(1, lifecycle_code::REJECTION)], &[]).unwrap();
    // Rewrite the same payload with a header claiming two standings.
    let mut payload = Vec::new();
    payload.extend_from_slice(&[1, 0, 2, 0]);
    payload.extend_from_slice(&profile(1).to_bytes());
    payload.extend_from_slice(&standing(1, lifecycle_code::REJECTION).to_bytes());
    commit_raw_profile_image(&mut f, &payload);
    let r = boot(&mut f);
    assert!(r.profiles.is_empty() && r.standings.is_empty());
    assert_eq!(r.report.profiles, Status::Fallback { why: Invalid::BadLength });
}

#[test]
fn newest_of_a_and_b_wins_and_a_corrupt_newer_bank_falls_back() {
    let mut f = Box::new(TestFlash::new());
    let mut st = boot(&mut f).store;
    st.save_profiles(&mut *f, &[profile(1)]).unwrap();
    st.save_profiles(&mut *f, &[profile(2)]).unwrap();
    st.save_profiles(&mut *f, &[profile(3)]).unwrap();
    let r = boot(&mut f);
    assert_eq!(r.profiles.as_slice(), &[profile(3)]);
    assert_eq!(r.report.profiles, Status::Restored { seq: 3, skipped: 0, why: None });
    f.flip_bit(0xC000 + BANK_HEADER + 40, 3);
    let mut r = boot(&mut f);
    assert_eq!(r.profiles.as_slice(), &[profile(2)]);
    assert_eq!(r.report.profiles, Status::Restored { seq: 2, skipped: 1, why: Some(Invalid::BadChecksum) });
    r.store.save_profiles(&mut *f, &[profile(4)]).unwrap();
    let r = boot(&mut f);
    assert_eq!(r.profiles.as_slice(), &[profile(4)]);
    assert!(matches!(r.report.profiles, Status::Restored { seq: 4, skipped: 0, .. }));
}

#[test]
fn profiles_beyond_capacity_are_counted() {
    let mut f = Box::new(TestFlash::new());
    let mut st = boot(&mut f).store;
    let many: Vec<_> = (0..10).map(profile).collect();
    st.save_profiles(&mut *f, &many).unwrap();
    let r = boot(&mut f);
    assert_eq!(r.profiles.len(), 8);
    assert_eq!(r.report.profiles_dropped, 2);
}

fn check_layout(l: &Layout) {
    let mut all: Vec<(&str, Partition)> = l.others.iter().map(|r| (r.name, r.part)).collect();
    all.push(("meta", l.meta));
    all.push(("state", l.state));
    all.push(("dag", l.dag));
    if let Some(p) = l.profiles {
        all.push(("profiles", p));
    }
    all.sort_by_key(|(_, p)| p.offset);
    let mut at = 0;
    for (name, p) in &all {
        assert_eq!(p.offset, at, "{name} must follow the previous region without gap or overlap");
        at = p.end();
    }
    assert_eq!(at, l.flash_size);
    for p in [l.meta, l.state, l.dag].into_iter().chain(l.profiles) {
        assert!(p.is_well_formed(), "{p:?}");
    }
    let bank = |p: Partition| p.len as usize / 2;
    assert!(META_IMAGE_LEN <= bank(l.meta));
    assert!(STATE_RECORD <= SECTOR_SIZE && l.state.sectors() >= 2);
}

#[test]
fn esp32_c3_layout_fits_es14_sizes() {
    let l = ESP32_C3_LAYOUT;
    check_layout(&l);
    assert_eq!(l.others[0].part.offset, 0);
    assert_eq!(l.others[1].part.offset, 0x8000);
    for r in l.others.iter().filter(|r| r.name.starts_with("app")) {
        assert_eq!(r.part.offset % 0x1_0000, 0);
    }
    let dag_bank = l.dag.len as usize / 2;
    assert!(dag_image_len(MAX_DAG_ENTRIES) <= dag_bank);
    assert_eq!((dag_bank - dag_image_len(MAX_DAG_ENTRIES)) / DAG_APPEND_RECORD, 2047);
    assert!(dag_image_len(MAX_DAG_ENTRIES) - BANK_HEADER <= 256 * 1024, "one image fits ES-14's 256 KB");
    let prof_bank = l.profiles.unwrap().len as usize / 2;
    assert_eq!((prof_bank - profile_image_len(0)) / StoredProfile::LEN, 488);
    assert!(profile_image_len(256) <= prof_bank, "ES-14's ~256 profiles fit one bank");
    let nano = crate::types::MAX_NEIGHBORS;
    assert_eq!(profile_image_len_with(2 * nano, nano), 9_124, "a full Nano: 2 profiles + 1 standing per subject");
    assert!(profile_image_len_with(256, 256) <= prof_bank, "~256 profiles and as many standings");
    assert_eq!(MetaRecord::LEN, 4180);
    assert_eq!(META_IMAGE_LEN, 4212);
}

#[test]
fn nrf52840_layout_fits_the_dust_dag() {
    let l = NRF52840_LAYOUT;
    check_layout(&l);
    let bank = l.dag.len as usize / 2;
    assert!(dag_image_len(crate::types::MAX_DAG_ENTRIES_DUST) <= bank);
    assert_eq!(0x3800 / 58, 247, "ES-14.4's dust_dag holds 247 spec entries, not 256");
}

#[test]
fn nrf52840_layout_has_es14_profiles_and_dust_partitions() {
    let l = NRF52840_LAYOUT;
    let region = |name: &str| l.others.iter().find(|r| r.name == name).map(|r| r.part);
    assert_eq!(region("dust_meta"), Some(NRF52840_DUST.meta));
    assert_eq!(region("dust_state"), Some(NRF52840_DUST.state));
    assert_eq!(NRF52840_DUST.meta.len, 0x1000, "ES-14.4's 4 KB");
    assert!(NRF52840_DUST.state.is_well_formed(), "a journal needs two sectors");
    let prof_bank = l.profiles.expect("ES-14.3 item 3 on a Nano").len as usize / 2;
    assert_eq!((prof_bank - profile_image_len(0)) / StoredProfile::LEN, 122);
    assert!(profile_image_len(64) <= prof_bank, "an ES-1.2 guard table's worth of profiles");
    let nano = crate::types::MAX_NEIGHBORS;
    assert!(profile_image_len_with(2 * nano, nano) <= prof_bank, "a full Nano's profiles and standings");
    assert_eq!((prof_bank - profile_image_len_with(2 * nano, 0)) / SubjectStanding::LEN, 485);
    let app = region("application").unwrap();
    assert!(app.len >= 112 * 1024 + 0x2_7000, "the whole ES-14.4 image area below it");
}

#[test]
fn dust_meta_round_trips_and_refuses_every_flipped_bit() {
    let m = DustMeta { short_id: 0x1234, device_id: DeviceId([9, 8, 7, 6, 5, 4, 3, 2]), key: DustKey([0x3C; 16]) };
    let b = m.to_bytes();
    assert_eq!(&b[..6], b"KRD1\xA5\x00");
    assert_eq!(DustMeta::from_bytes(&b), Ok(m));
    for bit in 0..8 * DustMeta::LEN {
        let mut bad = b;
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(DustMeta::from_bytes(&bad).is_err(), "bit {bit}");
    }
    assert_eq!(DustMeta::from_bytes(&b[..35]), Err(Invalid::BadLength));

    let mut f = Box::new(TestFlash::new());
    let part = Partition { offset: 0x1000, len: 0x1000 };
    assert_eq!(DustMeta::read(&mut *f, part), Ok(None), "erased: never provisioned");
    f.write(0x1000, &b).unwrap();
    assert_eq!(DustMeta::read(&mut *f, part), Ok(Some(m)));
    f.flip_bit(0x1000 + 20, 3);
    assert_eq!(DustMeta::read(&mut *f, part), Err(Invalid::BadChecksum));
}

#[test]
fn dust_counter_reserves_blocks_and_reads_back_the_newest() {
    let part = Partition { offset: 0x4000, len: 0x2000 };
    let mut f = Box::new(TestFlash::new());
    let (mut st, status) = DustCounterStore::restore(&mut *f, part);
    assert_eq!((st.reserved(), status), (0, Status::Blank));
    assert_eq!(st.cover(&mut *f, 1), Ok(DUST_COUNTER_BLOCK));
    let written = f.work_done();
    for c in 2..=DUST_COUNTER_BLOCK {
        assert_eq!(st.cover(&mut *f, c), Ok(DUST_COUNTER_BLOCK));
    }
    assert_eq!(f.work_done(), written, "no write inside a reserved block");
    assert_eq!(st.cover(&mut *f, DUST_COUNTER_BLOCK + 1), Ok(2 * DUST_COUNTER_BLOCK));
    // More records than the two sectors hold: the ring wraps, the newest wins.
    let mut next = 2 * DUST_COUNTER_BLOCK + 1;
    for _ in 0..600 {
        next = st.cover(&mut *f, next).unwrap() + 1;
    }
    let (back, status) = DustCounterStore::restore(&mut *f, part);
    assert_eq!(back.reserved(), next - 1);
    assert!(matches!(status, Status::Restored { seq: 602, skipped: 0, .. }), "{status:?}");
    // Only garbage: a fallback to 0, said so.
    let mut g = Box::new(TestFlash::new());
    g.write(0x4000, &[0x4B, KIND_DUST_COUNTER, 4, 0, 1, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0]).unwrap();
    let (st, status) = DustCounterStore::restore(&mut *g, part);
    assert_eq!((st.reserved(), status), (0, Status::Fallback { why: Invalid::BadChecksum }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn state_round_trips(lc in 0u8..=8, q in 0u8..=2, w in any::<u8>(), f in any::<bool>(), words in any::<[u32; 7]>(), ber in any::<[u8; 8]>(), py in any::<u16>()) {
        let s = PersistedState {
            lifecycle: lc, quorum_mode: q, weight: w, profile_frozen: f, puf_warning: !f,
            remediation_attempts: w / 3, quarantine_reason: w / 5, consecutive_pyrexia: py,
            entered_at: words[0], neonatal_start: words[1], neonatal_observed_s: words[2],
            last_heartbeat: words[3], last_mode_change: words[4], boot_count: words[5], last_boot: words[6],
            ber_history: ber,
        };
        prop_assert_eq!(PersistedState::from_bytes(&s.to_bytes()), Ok(s));
    }

    #[test]
    fn restore_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512), at in 0usize..SIZE - 512) {
        let mut f = Box::new(TestFlash::new());
        let mut st = boot(&mut f).store;
        st.save_state(&mut *f, &state(1)).unwrap();
        let mut raw = f.bytes().to_vec();
        raw[at..at + bytes.len()].copy_from_slice(&bytes);
        let mut g = Box::new(TestFlash::new());
        for (i, b) in raw.iter().enumerate() {
            if *b != 0xFF {
                g.write(i as u32, &[*b]).unwrap();
            }
        }
        let r = boot(&mut g);
        if let Status::Restored { .. } = r.report.state {
            prop_assert!(PersistedState::from_bytes(&r.state.to_bytes()).is_ok());
        }
    }
}
