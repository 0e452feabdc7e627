//! The node measures distance with its deployment manifest (ES-11.3,
//! ES-11.6): a surveyed pair is as far apart as the survey says, whatever a
//! weak RSSI median reads; a strong median may still shorten it; without a
//! manifest RSSI is all there is.

use krill_core::crypto::RealCrypto;
use krill_core::distance::{DeploymentEntry, DistanceEstimate, DistanceMethod, Manifest, MANIFEST_CAPACITY};
use krill_core::node::{Action, AuditEvent, Node, NodeConfig, Now};
use krill_core::types::QuantityType;

mod common;
use common::{fast_config, identity, now_at, Lcg};

type TestNode = Node<RealCrypto, 8, 512, 16, 64>;

/// Monitor 0 at the origin, subject 1 at 25 m along x.
fn surveyed(a: &TestNode, b: &TestNode) -> Manifest {
    let mut m = Manifest::new();
    for (id, x) in [(a.id(), 0), (b.id(), 2_500)] {
        m.push(DeploymentEntry { device_id: id, position_cm: [x, 0, 0], floor: 0, zone: 1 }).unwrap();
    }
    m
}

fn broadcasts(acts: Vec<Action>) -> Vec<Vec<u8>> {
    acts.into_iter()
        .filter_map(|a| match a {
            Action::Broadcast(f) => Some(f.to_vec()),
            _ => None,
        })
        .collect()
}

fn trace_of(b: &mut TestNode, now: Now, reading: i16) -> Vec<u8> {
    let mut out = Vec::new();
    b.handle_reading(now, QuantityType::Temperature, reading, &mut |a| out.push(a));
    broadcasts(out).pop().expect("a trace")
}

/// The distance monitor `a` (configured by `cfg`) records for subject `b`
/// after hearing its presence pulses at `rssi`.
fn distance_seen(manifest: bool, rssi: i8) -> DistanceEstimate {
    let (ia, ib) = (identity(0), identity(1));
    let mut b: TestNode = Node::new(fast_config(), RealCrypto::new(&ib), now_at(0), 2);
    let probe: TestNode = Node::new(fast_config(), RealCrypto::new(&ia), now_at(0), 1);
    let cfg = NodeConfig { manifest: if manifest { surveyed(&probe, &b) } else { Manifest::new() }, ..fast_config() };
    let mut a: TestNode = Node::new(cfg, RealCrypto::new(&ia), now_at(0), 1);
    a.register_peer(ib.public_key()).unwrap();
    let mut sink = |_: Action| {};
    // A trace first: the monitor keeps RSSI only of subjects it tracks.
    let f = trace_of(&mut b, now_at(1_000), 2150);
    a.handle_frame(now_at(1_000), &f, rssi, 0, &mut sink);
    let mut rng = Lcg(3);
    for t in (10_000..=80_000).step_by(10_000) {
        let mut out = Vec::new();
        b.handle_timers(now_at(t), &mut rng, &mut |x| out.push(x));
        for f in broadcasts(out) {
            a.handle_frame(now_at(t), &f, rssi, 0, &mut sink);
        }
    }
    a.handle_reading(now_at(85_000), QuantityType::Temperature, 2150, &mut sink);
    let f = trace_of(&mut b, now_at(90_000), 2160);
    let mut out = Vec::new();
    a.handle_frame(now_at(90_000), &f, rssi, 0, &mut |x| out.push(x));
    out.iter()
        .find_map(|x| match x {
            Action::Audit(AuditEvent::Trace(t)) if t.subject == b.id() => Some(t.distance),
            _ => None,
        })
        .expect("the trace was assessed")
}

#[test]
fn node_uses_the_manifest_distance_over_a_weak_rssi() {
    // −89 dBm: what a 25 m link that gets through at all looks like; the
    // RSSI model reads 12.9 m.
    let rssi_only = distance_seen(false, -89);
    assert_eq!(rssi_only.method, DistanceMethod::RssiModel);
    assert!((1290..=1291).contains(&rssi_only.cm), "{rssi_only:?}");
    let with = distance_seen(true, -89);
    assert_eq!(with, DistanceEstimate { cm: 2_500, method: DistanceMethod::StaticConfig });
}

#[test]
fn a_strong_rssi_still_shortens_a_surveyed_distance() {
    // −70 dBm is 25 dB above the floor: no survivor of a 25 m link reads
    // that; the device is nearer than the survey says (moved), and the
    // nearer (stricter) distance is used.
    let with = distance_seen(true, -70);
    assert_eq!(with.method, DistanceMethod::RssiModel);
    assert!((255..=256).contains(&with.cm), "{with:?}");
}

#[test]
fn manifest_capacity_and_its_cost() {
    let entry = std::mem::size_of::<DeploymentEntry>();
    let manifest = std::mem::size_of::<Manifest>();
    println!("DeploymentEntry in RAM = {entry} B; Manifest ({MANIFEST_CAPACITY} entries) = {manifest} B");
    // A 49-node room's survey fits.
    const { assert!(MANIFEST_CAPACITY >= 49) };
    assert!(manifest <= MANIFEST_CAPACITY * 24 + 8, "{manifest}");
    assert!(NodeConfig::default().manifest.is_empty(), "RSSI only unless installed");
}
