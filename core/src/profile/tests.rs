use super::*;
use proptest::prelude::*;

const T: QuantityType = QuantityType::Temperature;
const ID: DeviceId = DeviceId([0x42; 8]);

fn obs(reading: Reading, rx_ms: u64) -> Observation {
    Observation { reading, quantity: T, timestamp: 1_707_800_000 + (rx_ms / 1000) as u32, rx_ms }
}

fn learning() -> BehavioralProfile<4> {
    BehavioralProfile::new(ID, T, ProfileMode::Learning)
}

/// Feeds `readings` 5 s apart (plus `jitter[i]` ms) with no neighbours.
fn feed<const N: usize>(p: &mut BehavioralProfile<N>, readings: &[Reading], jitter: &[i64]) {
    let mut prev: Option<Observation> = None;
    let mut rx = 1_000_000u64;
    for (i, &r) in readings.iter().enumerate() {
        rx = (rx as i64 + 5000 + jitter.get(i).copied().unwrap_or(0)) as u64;
        let o = obs(r, rx);
        p.update(&o, prev.as_ref(), &[]).unwrap();
        prev = Some(o);
    }
}

fn naive_mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    (m, xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n)
}

/// A deterministic noise source for the behavioural tests.
struct Lcg(u64);
impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of 12 uniforms), mean 0, σ 1.
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

#[test]
fn learning_mode_is_welford_against_a_naive_reference() {
    let readings: Vec<Reading> = (0..200).map(|i| 2310 + ((i * 37) % 61) as Reading - 30).collect();
    let jitter: Vec<i64> = (0..200).map(|i| ((i * 53) % 401) as i64 - 200).collect();
    let mut p = learning();
    feed(&mut p, &readings, &jitter);
    let xs: Vec<f64> = readings.iter().map(|&r| r as f64 * 0.01).collect();
    let (m, v) = naive_mean_var(&xs);
    assert!((p.value_mean as f64 - m).abs() < 1e-4, "{} vs {m}", p.value_mean);
    assert!((p.value_var as f64 - v).abs() < 1e-4, "{} vs {v}", p.value_var);
    let gaps: Vec<f64> = jitter[1..].iter().map(|j| 5000.0 + *j as f64).collect();
    let (gm, gv) = naive_mean_var(&gaps);
    assert_eq!(p.interval_count, 199);
    assert!((p.avg_interval_ms as f64 - gm).abs() < 0.05, "{} vs {gm}", p.avg_interval_ms);
    assert!((p.interval_var_ms as f64 - gv).abs() / gv < 1e-3, "{} vs {gv}", p.interval_var_ms);
    assert_eq!(p.value_count, 200);
    assert_eq!(p.profile_version, 200);
}

#[test]
fn running_mode_becomes_the_spec_ema_after_warm_up() {
    let mut p = BehavioralProfile::<4>::new(ID, T, ProfileMode::Running);
    feed(&mut p, &[2000; 100], &[]);
    assert!((p.value_mean - 20.0).abs() < 1e-4);
    let before = p.value_mean;
    feed(&mut p, &[3000], &[]);
    // 101st reading: α = max(1/101, 0.01) = 0.01.
    assert!((p.value_mean - (0.99 * before + 0.01 * 30.0)).abs() < 1e-4, "{}", p.value_mean);
    let mut reference = before as f64;
    let mut q = p.clone();
    for _ in 0..300 {
        feed(&mut q, &[3000], &[]);
    }
    reference = 0.99 * reference + 0.01 * 30.0;
    for _ in 0..300 {
        reference = 0.99 * reference + 0.01 * 30.0;
    }
    assert!((q.value_mean as f64 - reference).abs() < 1e-3, "{} vs {reference}", q.value_mean);
}

#[test]
fn intervals_come_from_local_receive_time_not_wire_seconds() {
    // SPEC-NOTES 12: two traces stamped in the same wire second, 4.8 s and
    // 5.2 s apart locally.
    let mut p = learning();
    let a = Observation { reading: 2310, quantity: T, timestamp: 100, rx_ms: 10_000 };
    let b = Observation { rx_ms: 14_800, ..a };
    let c = Observation { rx_ms: 20_000, ..a };
    p.update(&a, None, &[]).unwrap();
    p.update(&b, Some(&a), &[]).unwrap();
    p.update(&c, Some(&b), &[]).unwrap();
    assert_eq!(p.avg_interval_ms, 5000.0);
    assert_eq!(p.interval_var_ms, 40_000.0);
    // The trace itself as "previous" adds no interval (SPEC-NOTES 26).
    p.update(&c, Some(&c), &[]).unwrap();
    assert_eq!(p.interval_count, 2);
}

#[test]
fn frozen_profiles_never_change() {
    let mut p = learning();
    feed(&mut p, &[2300, 2310, 2320], &[]);
    p.freeze();
    let snapshot = p.clone();
    assert_eq!(p.update(&obs(9999, 1), None, &[Some(1)]), Err(ProfileError::Frozen));
    assert_eq!(p.end_epoch(9), Err(ProfileError::Frozen));
    assert_eq!(p.end_day(9), Err(ProfileError::Frozen));
    assert_eq!(p.record_battery(9, 9), Err(ProfileError::Frozen));
    assert_eq!(p.record_energy_ratio(0.5), Err(ProfileError::Frozen));
    assert_eq!(p, snapshot);
    let r = p.running_copy();
    assert_eq!(r.mode, ProfileMode::Running);
    assert_eq!(r.value_mean, p.value_mean);
}

#[test]
fn rebase_moves_the_level_and_keeps_the_shape_even_when_frozen() {
    let mut p = learning();
    let mut rng = Lcg(3);
    let readings: Vec<Reading> = (0..200).map(|_| (2200.0 + 20.0 * rng.normal()) as Reading).collect();
    feed(&mut p, &readings, &[]);
    p.freeze();
    let before = p.clone();
    let old = obs(2200, 9_000_000);
    let z_old = compute_deviation(&before, &old, None, &[]).unwrap().total;
    p.rebase_level(500);
    assert!((p.value_mean - (before.value_mean + 5.0)).abs() < 1e-4);
    assert_eq!((p.value_var, p.value_hist, p.value_count), (before.value_var, before.value_hist, before.value_count));
    assert_eq!((p.value_min, p.value_max), (before.value_min + 500, before.value_max + 500));
    assert_eq!((p.avg_interval_ms, p.interval_var_ms), (before.avg_interval_ms, before.interval_var_ms));
    assert!(p.is_frozen(), "still a self-signature");
    assert_eq!(p.profile_version, before.profile_version.wrapping_add(1));
    // The same reading 5 °C up scores as the old one did.
    let z_new = compute_deviation(&p, &obs(2700, 9_000_000), None, &[]).unwrap().total;
    assert!((z_new - z_old).abs() < 1e-3, "{z_new} vs {z_old}");
    assert_eq!(p.histogram_bin(2700), before.histogram_bin(2200));
    // No NK drift against the re-based self-signature for the re-based running profile.
    let mut cur = before.running_copy();
    cur.rebase_level(500);
    assert_eq!(run_nk_audit(ID, &p, &cur, SubjectKind::Nano), NkAuditResult::Pass);
    assert!(matches!(run_nk_audit(ID, &before, &cur, SubjectKind::Nano), NkAuditResult::DriftDetected { .. }));
    // The histogram range stops at the i16 edge; the mean still moves.
    let mut edge = before.clone();
    edge.rebase_level(i32::from(i16::MAX));
    assert_eq!(edge.value_max, i16::MAX);
    assert_eq!(edge.value_max - edge.value_min, before.value_max - before.value_min);
    assert!(edge.value_mean > 300.0);
}

#[test]
fn other_quantities_are_refused() {
    let mut p = learning();
    let o = Observation { quantity: QuantityType::Humidity, ..obs(5000, 1) };
    assert_eq!(p.update(&o, None, &[]), Err(ProfileError::QuantityMismatch));
    assert_eq!(p.value_count, 0);
}

#[test]
fn hourly_activity_buckets_by_utc_hour_and_saturates() {
    let mut p = learning();
    let o = Observation { reading: 1, quantity: T, timestamp: 86_400 * 19_000 + 13 * 3600 + 59, rx_ms: 0 };
    p.hourly_activity[13] = u32::MAX - 1;
    p.update(&o, None, &[]).unwrap();
    p.update(&Observation { rx_ms: 5000, ..o }, Some(&o), &[]).unwrap();
    assert_eq!(p.hourly_activity[13], u32::MAX);
    assert_eq!(p.hourly_activity.iter().filter(|&&h| h != 0).count(), 1);
}

#[test]
fn version_wraps() {
    let mut p = learning();
    p.profile_version = u32::MAX;
    feed(&mut p, &[1], &[]);
    assert_eq!(p.profile_version, 0);
    assert!(version_newer(p.profile_version, u32::MAX));
}

#[test]
fn correlation_matches_a_naive_pearson_and_waits_for_enough_pairs() {
    let mut p = learning();
    let mut rng = Lcg(7);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..400u64 {
        let common = 2300.0 + 200.0 * rng.normal();
        let x = (common + 20.0 * rng.normal()) as Reading;
        let y = (common + 60.0 * rng.normal()) as Reading;
        let anti = (4600.0 - common) as Reading;
        let flat = 1000;
        p.update(&obs(x, i * 5000), None, &[Some(y), Some(anti), Some(flat), None]).unwrap();
        xs.push(x as f64);
        ys.push(y as f64);
        if i + 1 < MIN_CORRELATION_PAIRS as u64 {
            assert_eq!(p.correlation_scores[0], 0.0);
        }
    }
    let (mx, vx) = naive_mean_var(&xs);
    let (my, vy) = naive_mean_var(&ys);
    let cov = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / xs.len() as f64;
    let r = cov / (vx * vy).sqrt();
    assert!((p.correlation_scores[0] as f64 - r).abs() < 1e-3, "{} vs {r}", p.correlation_scores[0]);
    assert!(p.correlation_scores[0] > 0.9);
    assert!(p.correlation_scores[1] < -0.99);
    assert_eq!(p.correlation_scores[2], 0.0, "a constant neighbour predicts nothing");
    assert_eq!(p.correlation_scores[3], 0.0);
    assert_eq!(p.correlation_state[3].n, 0);
    p.reset_neighbor_slot(0);
    assert_eq!((p.correlation_scores[0], p.correlation_state[0].n), (0.0, 0));
    p.reset_neighbor_slot(99);
}

#[test]
fn message_rate_follows_es_10_4() {
    let mut p = BehavioralProfile::<4>::new(ID, T, ProfileMode::Running);
    for _ in 0..10 {
        p.end_epoch(12).unwrap();
    }
    assert!((p.msg_rate_per_epoch - 12.0).abs() < 1e-5);
    p.end_epoch(2).unwrap();
    assert!((p.msg_rate_per_epoch - (0.9 * 12.0 + 0.1 * 2.0)).abs() < 1e-5);
}

#[test]
fn unique_neighbours_average_over_days() {
    let mut p = learning();
    for d in [8, 6, 7, 9] {
        p.end_day(d).unwrap();
    }
    assert!((p.unique_neighbors - 7.5).abs() < 1e-5);
}

#[test]
fn battery_trend_is_steps_per_day_and_ignores_mains_and_short_gaps() {
    let mut p = learning();
    p.record_battery(200, 1000).unwrap();
    p.record_battery(BATTERY_MAINS, 50_000).unwrap();
    p.record_battery(199, 1600).unwrap();
    assert_eq!(p.battery_count, 0);
    p.record_battery(198, 1000 + 43_200).unwrap();
    assert!((p.battery_trend + 4.0).abs() < 1e-4, "{}", p.battery_trend);
    p.record_battery(190, 10).unwrap();
    assert_eq!(p.battery_count, 1, "an older sample is ignored");
    p.record_battery(197, 1000 + 86_400).unwrap();
    assert!((p.battery_trend + 3.0).abs() < 1e-4, "{}", p.battery_trend);
    assert_eq!(p.battery_trend_i8(), -3);
    p.battery_trend = -1e9;
    assert_eq!(p.battery_trend_i8(), i8::MIN);
}

#[test]
fn energy_ratio_refuses_impossible_samples() {
    let mut p = learning();
    assert_eq!(p.record_energy_ratio(f32::NAN), Err(ProfileError::NonFinite));
    assert_eq!(p.record_energy_ratio(-0.1), Err(ProfileError::Negative));
    p.record_energy_ratio(0.2).unwrap();
    p.record_energy_ratio(0.4).unwrap();
    assert!((p.active_energy_ratio - 0.3).abs() < 1e-6);
}

#[test]
fn summary_round_trips_in_reading_units() {
    let mut p = learning();
    feed(&mut p, &[2300, 2310, 2320, 2330], &[]);
    let s = p.summary();
    assert!((s.value_mean - 2315.0).abs() < 1e-2);
    assert!((s.value_var - 125.0).abs() < 1e-2);
    assert_eq!(s.bins, p.value_hist);
    assert_eq!((s.value_min, s.value_max, s.profile_version, s.value_count), (2275, 2375, 4, 4));
    let q = BehavioralProfile::<4>::from_summary(ID, T, &s).unwrap();
    assert_eq!(q.mode, ProfileMode::Running);
    assert!((q.value_mean - p.value_mean).abs() < 1e-5);
    assert!((q.value_var - p.value_var).abs() < 1e-6);
    assert_eq!(q.value_hist, p.value_hist);
    assert_eq!(q.last_updated, p.last_updated);
}

#[test]
fn impossible_summaries_are_refused() {
    let good = learning().summary();
    let bad = |f: fn(&mut ProfileSummary)| {
        let mut s = good;
        f(&mut s);
        BehavioralProfile::<4>::from_summary(ID, T, &s).err()
    };
    assert_eq!(bad(|s| s.value_mean = f32::NAN), Some(ProfileError::NonFinite));
    assert_eq!(bad(|s| s.value_var = f32::INFINITY), Some(ProfileError::NonFinite));
    assert_eq!(bad(|s| s.value_var = -1.0), Some(ProfileError::Negative));
    assert_eq!(bad(|s| (s.value_min, s.value_max) = (5, 4)), Some(ProfileError::InvertedRange));
    // Light steps are 5 lx: a variance near f32::MAX overflows in lux².
    let mut s = good;
    s.value_var = 1e38;
    assert_eq!(BehavioralProfile::<4>::from_summary(ID, QuantityType::Light, &s).err(), Some(ProfileError::NonFinite));
    // A v1 sync has no range: accepted, the next reading opens it.
    let mut q = BehavioralProfile::<4>::from_summary(ID, T, &good).unwrap();
    q.update(&obs(2310, 0), None, &[]).unwrap();
    assert_eq!(q.histogram_bin(2310), Some(25));
}

#[test]
fn nk_catches_a_slow_drift_that_per_reading_scores_miss() {
    // SPEC-NOTES 29: a running profile (EMA) follows a 0.1σ/day drift, so
    // per-reading deviation stays normal while the NK audit against the
    // frozen self-signature sees the accumulated shift. One reading per
    // 10 min keeps the test short.
    let per_day = 144u64;
    let mut rng = Lcg(11);
    let mut base = learning();
    let mut prev: Option<Observation> = None;
    let mut rx = 0u64;
    let mut next = |drift_sigma: f64, rng: &mut Lcg| {
        rx += 600_000;
        obs((2310.0 + 50.0 * (drift_sigma + rng.normal())) as Reading, rx)
    };
    for _ in 0..14 * per_day {
        let o = next(0.0, &mut rng);
        base.update(&o, prev.as_ref(), &[]).unwrap();
        prev = Some(o);
    }
    base.freeze();
    assert!((base.value_mean - 23.10).abs() < 0.05 && (base.value_var - 0.25).abs() < 0.04);
    let mut cur = base.running_copy();
    let mut detected_day = None;
    let mut worst = 0.0f32;
    for day in 1..=80u64 {
        for k in 0..per_day {
            let o = next(0.1 * (day as f64 - 1.0 + k as f64 / per_day as f64), &mut rng);
            let d = compute_deviation(&cur, &o, prev.as_ref(), &[]).unwrap();
            worst = worst.max(d.total);
            cur.update(&o, prev.as_ref(), &[]).unwrap();
            prev = Some(o);
        }
        if detected_day.is_none() {
            if let NkAuditResult::DriftDetected { dimensions, .. } = run_nk_audit(ID, &base, &cur, SubjectKind::Nano) {
                assert_eq!(dimensions & DIM_VALUE, DIM_VALUE);
                detected_day = Some(day);
            }
        }
    }
    let day = detected_day.expect("drift detected");
    assert!((45..=60).contains(&day), "detected on day {day}");
    assert!(worst < 5.0, "per-reading deviation stays bounded: {worst}");
    assert!(cur.value_var < 0.5, "the running variance is not inflated by the drift: {}", cur.value_var);
}

#[cfg(feature = "serde")]
#[test]
fn arrays_longer_than_32_serialise() {
    fn assert_serde<T: serde::Serialize + for<'de> serde::Deserialize<'de>>() {}
    assert_serde::<BehavioralProfile<40>>();
    assert_serde::<ProfileSummary>();
}

#[derive(Debug, Clone)]
enum Op {
    Reading(i16, u32, u64, bool, [Option<i16>; 3]),
    Epoch(u16),
    Day(u8),
    Battery(u8, u32),
    Energy(f32),
    Freeze,
    Reset(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<i16>(), any::<u32>(), any::<u64>(), any::<bool>(), proptest::array::uniform3(proptest::option::of(any::<i16>())))
            .prop_map(|(r, t, rx, p, n)| Op::Reading(r, t, rx, p, n)),
        1 => any::<u16>().prop_map(Op::Epoch),
        1 => any::<u8>().prop_map(Op::Day),
        1 => (any::<u8>(), any::<u32>()).prop_map(|(l, t)| Op::Battery(l, t)),
        1 => any::<f32>().prop_map(Op::Energy),
        1 => Just(Op::Freeze),
        1 => (0usize..6).prop_map(Op::Reset),
    ]
}

proptest! {
    #[test]
    fn any_sequence_of_inputs_keeps_the_profile_sane(
        running in any::<bool>(), ops in proptest::collection::vec(op(), 0..80),
    ) {
        let mode = if running { ProfileMode::Running } else { ProfileMode::Learning };
        let mut p = BehavioralProfile::<2>::new(ID, T, mode);
        let mut prev: Option<Observation> = None;
        for op in ops {
            match op {
                Op::Reading(r, ts, rx, use_prev, n) => {
                    let o = Observation { reading: r, quantity: T, timestamp: ts, rx_ms: rx };
                    let d = compute_deviation(&p, &o, if use_prev { prev.as_ref() } else { None }, &n).unwrap();
                    prop_assert!(d.total.is_finite() && d.total >= 0.0);
                    let _ = p.update(&o, if use_prev { prev.as_ref() } else { None }, &n);
                    prev = Some(o);
                }
                Op::Epoch(c) => { let _ = p.end_epoch(c); }
                Op::Day(c) => { let _ = p.end_day(c); }
                Op::Battery(l, t) => { let _ = p.record_battery(l, t); }
                Op::Energy(e) => { let _ = p.record_energy_ratio(e); }
                Op::Freeze => p.freeze(),
                Op::Reset(s) => p.reset_neighbor_slot(s),
            }
            for v in [p.value_mean, p.value_var, p.avg_interval_ms, p.interval_var_ms, p.msg_rate_per_epoch,
                      p.unique_neighbors, p.battery_trend, p.active_energy_ratio] {
                prop_assert!(v.is_finite(), "{p:?}");
            }
            prop_assert!(p.value_var >= 0.0 && p.interval_var_ms >= 0.0);
            prop_assert!(p.correlation_scores.iter().all(|c| (-1.0..=1.0).contains(c)));
            if p.value_count > 0 && !p.is_frozen() {
                prop_assert!(p.value_max > p.value_min);
            }
            let s = p.summary();
            if let Ok(q) = BehavioralProfile::<2>::from_summary(ID, T, &s) {
                prop_assert_eq!(q.value_hist, p.value_hist);
            }
        }
    }

    #[test]
    fn from_summary_never_panics(
        v in any::<u32>(), n in any::<u32>(), m in any::<f32>(), var in any::<f32>(),
        lo in any::<i16>(), hi in any::<i16>(), t in any::<u32>(), bins in proptest::array::uniform32(any::<u16>()),
        r in any::<i16>(),
    ) {
        let mut b = [0u16; MAX_PROFILE_BINS];
        b[..32].copy_from_slice(&bins);
        let s = ProfileSummary { profile_version: v, value_count: n, value_mean: m, value_var: var,
                                 value_min: lo, value_max: hi, last_updated: t, bins: b };
        if let Ok(mut p) = BehavioralProfile::<2>::from_summary(ID, QuantityType::Light, &s) {
            let o = Observation { reading: r, quantity: QuantityType::Light, timestamp: t, rx_ms: 0 };
            let d = compute_deviation(&p, &o, None, &[]).unwrap();
            prop_assert!(d.total.is_finite());
            p.update(&o, None, &[]).unwrap();
            prop_assert!(p.value_min <= r && r <= p.value_max);
        }
    }
}

#[test]
fn profile_memory_stays_within_budget() {
    // The spec's ~500 B omits the correlation estimators; 24 B per slot.
    let full = core::mem::size_of::<BehavioralProfile>();
    let small = core::mem::size_of::<BehavioralProfile<8>>();
    std::println!("BehavioralProfile<32> = {full} B, <8> = {small} B");
    assert!(full <= 1_280, "{full}");
    assert!(small <= 512, "{small}");
}
