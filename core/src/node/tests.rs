//! Unit tests of the node: nothing off the air panics, and the dispatch
//! order holds for every kind of junk.

use super::action::{NkRefusal, PeerEvent};
use super::*;
use crate::crypto::device_id_of;
use crate::crypto::{Identity, ModeledAuthority, Seed};
use crate::profile::ProfileMode;
use proptest::prelude::*;

type Small<C> = Node<C, 4, 64, 8, 32>;

fn pair() -> (Small<crate::crypto::ModeledCrypto>, Small<crate::crypto::ModeledCrypto>) {
    let auth = ModeledAuthority::new(&[3; 32]);
    let (ia, ib) = (Identity::from_seed(&Seed([1; 32])), Identity::from_seed(&Seed([2; 32])));
    let now = Now::new(0, 1_700_000_000);
    let mut a = Node::new(NodeConfig::default(), auth.crypto_for(&ia), now, 1);
    let mut b = Node::new(NodeConfig::default(), auth.crypto_for(&ib), now, 2);
    a.register_peer(ib.public_key()).unwrap();
    b.register_peer(ia.public_key()).unwrap();
    (a, b)
}

fn own_trace(a: &mut Small<crate::crypto::ModeledCrypto>, now: Now) -> FrameBuf {
    let mut out: heapless::Vec<Action, 8> = heapless::Vec::new();
    a.handle_reading(now, QuantityType::Temperature, 2200, &mut out);
    out.into_iter()
        .find_map(|x| match x {
            Action::Broadcast(f) => Some(f),
            _ => None,
        })
        .unwrap()
}

#[test]
fn heapless_sink_takes_actions_and_drops_overflow() {
    let (mut a, _) = pair();
    let mut out: heapless::Vec<Action, 1> = heapless::Vec::new();
    a.handle_reading(Now::new(10, 1_700_000_000), QuantityType::Temperature, 2200, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn every_drop_is_counted_once() {
    let (mut a, mut b) = pair();
    let now = Now::new(5_000, 1_700_000_005);
    let f = own_trace(&mut a, now);
    let mut out: heapless::Vec<Action, 16> = heapless::Vec::new();
    b.handle_frame(now, &f, -60, 0, &mut out);
    b.handle_frame(now, &f, -60, 0, &mut out);
    b.handle_frame(now, &f[..20], -60, 0, &mut out);
    assert_eq!(b.guard_drops().total(), 1);
    assert_eq!(b.frame_drops().decode, 1);
    let dropped = out.iter().filter(|x| matches!(x, Action::Audit(AuditEvent::Dropped { .. }))).count();
    assert_eq!(dropped, 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), rssi in any::<i8>(), hops in any::<u8>()) {
        let (_, mut b) = pair();
        let mut out: heapless::Vec<Action, 32> = heapless::Vec::new();
        b.handle_frame(Now::new(1_000, 1_700_000_001), &bytes, rssi, hops, &mut out);
        b.handle_downlink(&bytes, &mut out);
        b.handle_uplink(Now::new(1_000, 1_700_000_001), &bytes, &mut out);
        prop_assert!(b.subjects().count() == 0, "junk creates no subject");
    }

    #[test]
    fn mutated_genuine_frames_never_panic_nor_verify(at in 0usize..117, flip in 1u8..=255) {
        let (mut a, mut b) = pair();
        let now = Now::new(5_000, 1_700_000_005);
        let mut f = own_trace(&mut a, now);
        let i = at % f.len();
        f[i] ^= flip;
        let mut out: heapless::Vec<Action, 32> = heapless::Vec::new();
        b.handle_frame(now, &f, -60, 0, &mut out);
        // A flipped byte is either undecodable, or names another sender,
        // or fails the signature: the frame is never handled.
        prop_assert!(b.subjects().count() == 0);
        let dropped = out.iter().any(|x| matches!(x, Action::Audit(AuditEvent::Dropped { .. })));
        prop_assert!(dropped, "the mutated frame was dropped with a reason");
    }
}

type M = crate::crypto::ModeledCrypto;

/// `n` Small nodes that all know each other's keys.
fn mesh_of(n: u8) -> Vec<Small<M>> {
    let auth = ModeledAuthority::new(&[3; 32]);
    let ids: Vec<_> = (0..n).map(|i| Identity::from_seed(&Seed([i + 1; 32]))).collect();
    let now = Now::new(0, 1_700_000_000);
    let mut nodes: Vec<Small<M>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Node::new(NodeConfig::default(), auth.crypto_for(id), now, i as u32))
        .collect();
    for node in &mut nodes {
        for id in &ids {
            if device_id_of(&id.public_key()) != node.id() {
                node.register_peer(id.public_key()).unwrap();
            }
        }
    }
    nodes
}

fn at(s: u32) -> Now {
    Now::new(s as u64 * 1000, 1_700_000_000 + s)
}

fn deliver(to: &mut Small<M>, now: Now, frame: &[u8]) -> Vec<Action> {
    let mut out = Vec::new();
    to.handle_frame(now, frame, -55, 0, &mut |a| out.push(a));
    out
}

fn signed(from: &Small<M>, body: Body) -> FrameBuf {
    from.encode(body).unwrap()
}

fn send(n: &mut [Small<M>], from: usize, to: usize, now: Now, body: Body) -> Vec<Action> {
    let f = signed(&n[from], body);
    deliver(&mut n[to], now, &f)
}

fn peer_events(out: &[Action]) -> Vec<PeerEvent> {
    out.iter()
        .filter_map(|a| match a {
            Action::Audit(AuditEvent::Peer(e)) => Some(*e),
            _ => None,
        })
        .collect()
}

#[test]
fn retraction_drops_only_the_issuers_covered_entries() {
    use crate::wire::metabolic::{DataRetraction, RetractionReason};
    let mut n = mesh_of(3);
    let (a, c) = (n[0].id(), n[2].id());
    for s in [5, 10, 15, 20] {
        let fa = own_trace(&mut n[0], at(s));
        let fc = own_trace(&mut n[2], at(s));
        deliver(&mut n[1], at(s), &fa);
        deliver(&mut n[1], at(s), &fc);
    }
    let count = |b: &Small<M>, d: DeviceId| {
        (
            b.dag().entries().iter().filter(|e| e.device == d).count(),
            b.field().entries().filter(|e| e.device == d).count(),
        )
    };
    assert_eq!((count(&n[1], a), count(&n[1], c)), ((4, 4), (4, 4)));
    let r = DataRetraction {
        reason: RetractionReason::SensorFault,
        quantity: Some(QuantityType::Temperature),
        from_timestamp: 1_700_000_008,
        to_timestamp: 1_700_000_016,
        timestamp: 1_700_000_021,
    };
    let out = send(&mut n, 0, 1, at(21), Body::DataRetraction(r));
    assert_eq!(count(&n[1], a), (2, 2), "a's traces at 10 s and 15 s are gone");
    assert_eq!(count(&n[1], c), (4, 4), "c's data is untouched");
    let kept: Vec<_> = n[1].dag().entries().iter().filter(|e| e.device == a).map(|e| e.timestamp).collect();
    assert_eq!(kept, [1_700_000_005, 1_700_000_020]);
    assert_eq!(
        peer_events(&out),
        [PeerEvent::Retracted { issuer: a, dag_removed: 2, field_removed: 2, collateral: 0 }]
    );
    // c cannot retract a's data: its retraction covers only its own.
    let out = send(&mut n, 2, 1, at(22), Body::DataRetraction(DataRetraction { timestamp: 1_700_000_022, ..r }));
    assert_eq!(count(&n[1], a), (2, 2));
    assert_eq!(count(&n[1], c), (2, 2));
    assert!(matches!(peer_events(&out)[..], [PeerEvent::Retracted { dag_removed: 2, .. }]));
}

#[test]
fn consistency_alert_is_recorded_never_acted_on() {
    use crate::wire::immune::{ConsistencyAlert, ConsistencyAlertV2, Severity};
    let mut n = mesh_of(4);
    let suspect = n[0].id();
    let f = own_trace(&mut n[0], at(5));
    deliver(&mut n[1], at(5), &f);
    let before = n[1].subject_state(suspect);
    let alert = |ts| ConsistencyAlert {
        suspect_id: suspect,
        suspect_reading: 9000,
        expected_max: 2300,
        expected_min: 2100,
        severity: Severity::Rejection,
        v2: Some(ConsistencyAlertV2 { quantity: QuantityType::Temperature, timestamp: ts }),
    };
    let mut alerters = Vec::new();
    for (k, from) in [2usize, 3, 2].into_iter().enumerate() {
        let frame = signed(&n[from], Body::ConsistencyAlert(alert(1_700_000_006 + k as u32)));
        let out = deliver(&mut n[1], at(6 + k as u32), &frame);
        match peer_events(&out)[..] {
            [PeerEvent::ConsistencyAlert { suspect: s, alerters: k, our_view, .. }] => {
                assert_eq!((s, our_view), (suspect, before));
                alerters.push(k);
            }
            ref other => panic!("{other:?}"),
        }
        assert!(!out.iter().any(|a| matches!(a, Action::Broadcast(_) | Action::Unicast { .. })));
    }
    assert_eq!(alerters, [1, 2, 2], "distinct alerters; a repeat does not add");
    assert_eq!(n[1].subject_state(suspect), before, "alerts alone never move a record");
    // A recorded alert replayed after the freshness window is refused
    // before it is verified or charged, however often: the sender's fresh
    // alert still gets through.
    let stale = signed(&n[3], Body::ConsistencyAlert(alert(1_700_000_100)));
    for s in 400..430 {
        let out = deliver(&mut n[1], at(s), &stale);
        assert_eq!(stale_drops(&out), 1, "{out:?}");
        assert!(peer_events(&out).is_empty());
    }
    let out = send(&mut n, 3, 1, at(431), Body::ConsistencyAlert(alert(1_700_000_431)));
    assert!(matches!(peer_events(&out)[..], [PeerEvent::ConsistencyAlert { .. }]), "{out:?}");
    assert_eq!(n[1].guard_drops().get(crate::guards::DropReason::RateLimited), 0);
}

/// Drops of `out` for a send time outside the freshness window.
fn stale_drops(out: &[Action]) -> usize {
    out.iter()
        .filter(|a| {
            matches!(
                a,
                Action::Audit(AuditEvent::Dropped { reason: FrameDrop::Guard(crate::guards::DropReason::Stale), .. })
            )
        })
        .count()
}

/// SPEC-NOTES 33: a replayed INFLAMMATION_QUERY draws no second reply and
/// is not charged to its querier; a query or reply older than the
/// freshness window is refused before it is verified.
#[test]
fn replayed_and_stale_queries_are_refused_before_they_are_charged() {
    use crate::guards::DropReason;
    use crate::wire::immune::{InflammationQueryV2, InflammationReplyV2, Verdict};
    let mut n = mesh_of(3);
    let suspect = n[2].id();
    let query = |ts, id| {
        Body::InflammationQuery(crate::wire::InflammationQuery {
            suspect_id: suspect,
            quantity: QuantityType::Temperature,
            suspect_reading: 9000,
            reporter_reading: 2200,
            timestamp: ts,
            v2: Some(InflammationQueryV2 { query_id: id }),
        })
    };
    let replies = |out: &[Action]| out.iter().filter(|a| matches!(a, Action::Unicast { .. })).count();
    let drops = |out: &[Action]| -> Vec<FrameDrop> {
        out.iter()
            .filter_map(|a| match a {
                Action::Audit(AuditEvent::Dropped { reason, .. }) => Some(*reason),
                _ => None,
            })
            .collect()
    };
    let q = signed(&n[0], query(1_700_000_010, 7));
    assert_eq!(replies(&deliver(&mut n[1], at(10), &q)), 1);
    // Replayed many times within its freshness window: a duplicate each
    // time, answered never, charged never (the 3-per-epoch bucket holds).
    for s in 11..40 {
        let out = deliver(&mut n[1], at(s), &q);
        assert_eq!((replies(&out), drops(&out)), (0, vec![FrameDrop::Guard(DropReason::Duplicate)]));
    }
    for id in [8, 9] {
        assert_eq!(replies(&send(&mut n, 0, 1, at(41), query(1_700_000_041, id))), 1, "query {id}");
    }
    assert_eq!(n[1].guard_drops().get(DropReason::RateLimited), 0);
    // 70 s on, past the guards' 60 s content window but still fresh.
    let out = deliver(&mut n[1], at(80), &q);
    assert_eq!((replies(&out), drops(&out)), (0, vec![FrameDrop::Guard(DropReason::Duplicate)]));
    // A query sent 100 s before it arrives: stale, unanswered.
    let out = send(&mut n, 0, 1, at(150), query(1_700_000_050, 10));
    assert_eq!((replies(&out), drops(&out)), (0, vec![FrameDrop::Guard(DropReason::Stale)]));
    // So is a reply.
    let reply = Body::InflammationReply(crate::wire::InflammationReply {
        suspect_id: suspect,
        verdict: Verdict::ContradictsSuspect,
        own_reading: 2200,
        own_confidence: 200,
        v2: Some(InflammationReplyV2 { query_id: 3, timestamp: 1_700_000_050 }),
    });
    assert_eq!(drops(&send(&mut n, 1, 0, at(150), reply)), [FrameDrop::Guard(DropReason::Stale)]);
    // A forged copy of a query already answered is refused as a duplicate
    // before its signature is checked: nothing is charged to anyone.
    let mut forged = q.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(drops(&deliver(&mut n[1], at(42), &forged)), [FrameDrop::Guard(DropReason::Duplicate)]);
}

/// A profile of `id` that learned readings around `mean` (±2 LSB).
fn learned<const K: usize>(id: DeviceId, mean: crate::types::Reading) -> BehavioralProfile<K> {
    let mut p = BehavioralProfile::new(id, QuantityType::Temperature, ProfileMode::Learning);
    for k in 0..40u32 {
        let o = Observation {
            reading: mean + (k % 5) as crate::types::Reading - 2,
            quantity: QuantityType::Temperature,
            timestamp: 1_700_000_000 + 5 * k,
            rx_ms: 5_000 * k as u64,
        };
        p.update(&o, None, &[]).unwrap();
    }
    p
}

/// An NK_AUDIT_RESPONSE to `requester` reporting 8σ of value drift in `subject`.
fn drift_report(requester: DeviceId, subject: DeviceId) -> Body {
    use crate::wire::immune::{AuditResult, NkAuditResponse};
    Body::NkAuditResponse(NkAuditResponse {
        requester_id: requester,
        subject_id: subject,
        nonce: 9,
        result: AuditResult::DriftDetected,
        drift_tenths: 80,
        drifted_dims: 1,
        timestamp: 1_700_000_008,
    })
}

#[test]
fn alerts_and_drift_reports_trigger_our_own_audit_only() {
    use crate::profile::NkAuditResult;
    use crate::wire::immune::{ConsistencyAlert, ConsistencyAlertV2, Severity};
    let mut n = mesh_of(4);
    let suspect = n[0].id();
    let f = own_trace(&mut n[0], at(5));
    deliver(&mut n[1], at(5), &f);
    let i = n[1].subject_index(suspect).unwrap();
    let mut base = learned(suspect, 2200);
    base.freeze();
    n[1].subjects[i].1.baseline = Some(base.clone());
    n[1].subjects[i].1.profile = Some(base.running_copy());
    n[1].feed_subject(i, lifecycle::SubjectEvent::ProfileFrozen, at(5), &mut |_| {});
    assert_eq!(n[1].subject_state(suspect), Some(lifecycle::SubjectState::Normal));
    let alert = |ts| {
        Body::ConsistencyAlert(ConsistencyAlert {
            suspect_id: suspect,
            suspect_reading: 9000,
            expected_max: 2300,
            expected_min: 2100,
            severity: Severity::Rejection,
            v2: Some(ConsistencyAlertV2 { quantity: QuantityType::Temperature, timestamp: ts }),
        })
    };
    let triggered = |out: &[Action]| {
        out.iter()
            .filter_map(|a| match a {
                Action::Audit(AuditEvent::NkAuditTriggered { subject, by, result }) => Some((*subject, *by, *result)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let state = |n: &Small<M>| n.subject_state(suspect);
    let before = state(&n[1]);
    // A liar's alert about a subject that has not drifted: our audit passes.
    let out = send(&mut n, 2, 1, at(6), alert(1_700_000_006));
    assert_eq!(triggered(&out), [(suspect, n[2].id(), NkAuditResult::Pass)]);
    assert_eq!(state(&n[1]), before);
    // The same epoch, another alert: no second audit.
    let out = send(&mut n, 3, 1, at(7), alert(1_700_000_007));
    assert!(triggered(&out).is_empty());
    // Next epoch the subject has drifted by 1 °C (our running profile says
    // so): a drift report makes us audit and act on our own finding, but we
    // do not alert again.
    n[1].epoch += 1;
    let mut drifted = learned(suspect, 2300);
    drifted.mode = ProfileMode::Running;
    n[1].subjects[i].1.profile = Some(drifted);
    let report = drift_report(n[1].id(), suspect);
    let out = send(&mut n, 3, 1, at(8), report);
    assert!(matches!(triggered(&out)[..], [(_, _, NkAuditResult::DriftDetected { .. })]), "{out:?}");
    assert_eq!(state(&n[1]), Some(lifecycle::SubjectState::Inflammation));
    let sent: Vec<u8> =
        out.iter().filter_map(|a| if let Action::Broadcast(f) = a { Some(f[3]) } else { None }).collect();
    assert!(!sent.contains(&0x02), "no alert from a follow-up: {sent:?}");
    // From a sender we isolate, nothing.
    n[1].epoch += 1;
    let j = n[1].subject_index(n[2].id()).unwrap_or_else(|| {
        let f = own_trace(&mut n[2], at(9));
        deliver(&mut n[1], at(9), &f);
        n[1].subject_index(n[2].id()).unwrap()
    });
    n[1].subjects[j].1.isolated = true;
    let out = send(&mut n, 2, 1, at(10), alert(1_700_000_010));
    assert!(triggered(&out).is_empty());
}

#[test]
fn rejection_needs_a_majority_of_distinct_live_neighbours() {
    use crate::wire::immune::{RejectionNotice, RejectionReason};
    let mut n = mesh_of(5);
    let victim = n[0].id();
    // The victim hears its four neighbours (presence and a trace).
    for i in 1..5 {
        let mut out = Vec::new();
        n[i].send_presence(at(2), &mut |a| out.push(a));
        let Some(Action::Broadcast(p)) = out.pop() else { panic!() };
        deliver(&mut n[0], at(2), &p);
        let t = own_trace(&mut n[i], at(3));
        deliver(&mut n[0], at(3), &t);
    }
    let notice = |ts| {
        Body::RejectionNotice(RejectionNotice {
            subject_id: victim,
            reason: RejectionReason::InflammationVote,
            deviation_tenths: 80,
            query_id: 7,
            timestamp: ts,
        })
    };
    let mut tallies = Vec::new();
    for (k, from) in [1usize, 1, 2, 3].into_iter().enumerate() {
        let s = 10 + k as u32;
        let out = send(&mut n, from, 0, at(s), notice(1_700_000_000 + s));
        for e in peer_events(&out) {
            if let PeerEvent::RejectionTally { counted, distinct, needed, .. } = e {
                tallies.push((counted, distinct, needed));
            }
        }
        if k < 3 {
            assert_ne!(n[0].own().state(), OwnState::Quarantine, "after notice {k}");
        }
    }
    // Four live neighbours: max(3, 4/2 + 1) = 3 distinct senders needed;
    // the repeated sender counts once.
    assert_eq!(tallies, [(true, 1, 3), (true, 1, 3), (true, 2, 3), (true, 3, 3)]);
    assert_eq!(n[0].own().state(), OwnState::Quarantine);
}

#[test]
fn notices_from_strangers_or_old_ones_do_not_count() {
    use crate::wire::immune::{RejectionNotice, RejectionReason};
    let mut n = mesh_of(4);
    let victim = n[0].id();
    let body = |ts| {
        Body::RejectionNotice(RejectionNotice {
            subject_id: victim,
            reason: RejectionReason::Flood,
            deviation_tenths: 0,
            query_id: 0,
            timestamp: ts,
        })
    };
    // Three verified senders the victim never heard as neighbours.
    for from in 1..4 {
        let out = send(&mut n, from, 0, at(10), body(1_700_000_010));
        assert!(peer_events(&out).iter().any(|e| matches!(e, PeerEvent::RejectionTally { counted: false, .. })));
    }
    assert_ne!(n[0].own().state(), OwnState::Quarantine);
    let out = send(&mut n, 1, 0, at(500), body(1_700_000_100));
    assert_eq!(stale_drops(&out), 1, "{out:?}");
    assert!(!out.iter().any(|a| matches!(a, Action::Audit(AuditEvent::RejectedBy { .. }))));
}

#[test]
fn nk_audit_request_is_refused_without_a_baseline_or_about_the_asker() {
    use crate::wire::immune::NkAuditRequest;
    let mut n = mesh_of(3);
    let (a, b, c) = (n[0].id(), n[1].id(), n[2].id());
    let req = |subject, ts| {
        Body::NkAuditRequest(NkAuditRequest { target_id: b, subject_id: subject, nonce: 9, timestamp: ts })
    };
    let cases = [(c, NkRefusal::NotProfiled), (a, NkRefusal::AboutItself), (b, NkRefusal::AboutUs)];
    for (subject, reason) in cases {
        let out = send(&mut n, 0, 1, at(5), req(subject, 1_700_000_005));
        assert_eq!(peer_events(&out), [PeerEvent::NkRefused { from: a, subject, reason }]);
        assert!(!out.iter().any(|x| matches!(x, Action::Unicast { .. })));
    }
}

#[test]
fn death_certificate_needs_the_key_on_file_and_forgets_the_device() {
    use crate::crypto::{presign_death_certificate, pubkey_hash};
    use crate::wire::metabolic::{DeathCertificate, DeathReason};
    let mut n = mesh_of(3);
    let a = n[0].id();
    let t = own_trace(&mut n[0], at(5));
    deliver(&mut n[1], at(5), &t);
    assert!(n[1].subject(a).is_some());
    // c's certificate names another key than c's: refused, nothing forgotten.
    let wrong = DeathCertificate {
        reason: DeathReason::SelfCompromise,
        timestamp: 1_700_000_006,
        old_pubkey_hash: pubkey_hash(&PublicKey([7; 32])),
    };
    let out = send(&mut n, 2, 1, at(6), Body::DeathCertificate(wrong));
    assert!(matches!(
        peer_events(&out)[..],
        [PeerEvent::DeathRefused { reason: crate::metabolic::DeathError::WrongOldKey, .. }]
    ));
    assert!(n[1].key_of(n[2].id()).is_some());
    // A pre-signed certificate under the real key: forgotten, key dropped.
    let cert = presign_death_certificate(&n[0].crypto, DeathReason::PufAnomaly, 1_700_000_000);
    let out = deliver(&mut n[1], at(7), &cert);
    assert!(out.iter().any(|x| matches!(x, Action::Audit(AuditEvent::Died { device }) if *device == a)));
    assert!(n[1].subject(a).is_none());
    assert_eq!(n[1].dag().entries().iter().filter(|e| e.device == a).count(), 0);
    let t = own_trace(&mut n[0], at(8));
    let out = deliver(&mut n[1], at(8), &t);
    assert!(out
        .iter()
        .any(|x| matches!(x, Action::Audit(AuditEvent::Dropped { reason: FrameDrop::UnknownSender, .. }))));
}

#[test]
fn attack_evidence_gives_mean_and_spread_of_deviating_offsets() {
    let mut e = batch::AttackEvidence::default();
    for off in [3790, 3800, 3810] {
        e.record(batch::Cause::Spike, off);
    }
    let mut twin = e;
    twin.clear();
    assert_eq!(twin, batch::AttackEvidence::default());
    let (mean, std) = e.mean_std_for_test().unwrap();
    assert_eq!(mean, 3800);
    assert!((7..=9).contains(&std), "{std}");
    e.record(batch::Cause::Spike, i32::MIN);
    assert!(e.mean_std_for_test().is_some(), "extreme offsets saturate, never panic");
}

#[test]
fn anomaly_bits_follow_the_record_state() {
    use crate::lifecycle::SubjectState as S;
    assert_eq!(batch::anomaly_flags_of(S::Normal), 0);
    assert_eq!(batch::anomaly_flags_of(S::Pyrexia), 1);
    assert_eq!(batch::anomaly_flags_of(S::Inflammation), 2);
    assert_eq!(batch::anomaly_flags_of(S::Rejection), 4);
    assert_eq!(batch::anomaly_flags_of(S::Quarantine), 4);
}

#[test]
fn no_batch_is_pending_before_an_epoch_closes() {
    let (mut a, _) = pair();
    let mut buf = [0u8; 4096];
    assert_eq!(a.take_batch(&mut buf), Err(TakeBatchError::NonePending));
}

fn full_node() -> Small<crate::crypto::ModeledCrypto> {
    let auth = ModeledAuthority::new(&[3; 32]);
    let cfg = NodeConfig { role: Role::Full, ..NodeConfig::default() };
    let mut f = Node::new(cfg, auth.crypto_for(&Identity::from_seed(&Seed([9; 32]))), Now::new(0, 1_700_000_000), 3);
    f.register_peer(Identity::from_seed(&Seed([1; 32])).public_key()).unwrap();
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn batch_junk_is_refused_and_audited_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut f = full_node();
        let mut out: heapless::Vec<Action, 4> = heapless::Vec::new();
        let r = f.handle_batch(Now::new(1_000, 1_700_000_001), &bytes, &mut out);
        prop_assert!(r.is_err());
        let refused = matches!(out.first(), Some(Action::Audit(AuditEvent::BatchRefused { .. })));
        prop_assert!(refused);
    }
}

/// Three nodes; node 1 monitors node 0 (index `i` of its subjects), whose
/// running profile sits 1 °C above the frozen baseline of 22 °C.
fn drifted_by_a_degree() -> (Vec<Small<M>>, DeviceId, usize) {
    let mut n = mesh_of(3);
    let suspect = n[0].id();
    let f = own_trace(&mut n[0], at(5));
    deliver(&mut n[1], at(5), &f);
    let i = n[1].subject_index(suspect).unwrap();
    let mut base = learned(suspect, 2200);
    base.freeze();
    n[1].subjects[i].1.baseline = Some(base);
    let mut drifted = learned(suspect, 2300);
    drifted.mode = ProfileMode::Running;
    n[1].subjects[i].1.profile = Some(drifted);
    n[1].feed_subject(i, lifecycle::SubjectEvent::ProfileFrozen, at(5), &mut |_| {});
    (n, suspect, i)
}

/// A drift our own readings share (a step that went on after the vote that
/// confirmed it) moves the subject's baseline instead of opening a vote;
/// the same drift while we stayed put is acted on.
#[test]
fn a_drift_our_own_readings_share_rebases_the_baseline() {
    for own_rose in [true, false] {
        let (mut n, suspect, _) = drifted_by_a_degree();
        // Our own slow average sits at 22 °C; our latest reading is 23.5 °C
        // (or still 22 °C).
        let latest = if own_rose { 2350 } else { 2200 };
        for (s, r) in [(6, 2200), (7, latest)] {
            n[1].handle_reading(at(s), QuantityType::Temperature, r, &mut |_| {});
        }
        let report = drift_report(n[1].id(), suspect);
        let out = send(&mut n, 2, 1, at(8), report);
        let rebased = out.iter().any(|a| {
            matches!(a, Action::Audit(AuditEvent::ProfileRebased { subject, delta_steps: 100 }) if *subject == suspect)
        });
        let state = n[1].subject_state(suspect);
        if own_rose {
            assert!(rebased, "{out:?}");
            assert_eq!(state, Some(lifecycle::SubjectState::Normal));
            let s = n[1].subject(suspect).unwrap();
            let (b, p) = (s.baseline().unwrap(), s.profile().unwrap());
            assert!((b.value_mean - p.value_mean).abs() < 0.01, "{} vs {}", b.value_mean, p.value_mean);
        } else {
            assert!(!rebased);
            assert_eq!(state, Some(lifecycle::SubjectState::Inflammation));
        }
    }
}

/// A drift found in a profile we have not fed for the ephemeral lifetime
/// (its last observation decayed) is no vote: the profile's mean is the
/// subject's level when we last heard it, and a query would ask the
/// neighbours about that old level as if the subject read it now (an
/// honest node rejected on a day's swing, `scenarios/drift-long.ron`).
#[test]
fn a_drift_in_a_profile_we_stopped_feeding_opens_no_vote() {
    for heard in [true, false] {
        let (mut n, suspect, i) = drifted_by_a_degree();
        if !heard {
            n[1].subjects[i].1.last_obs = None;
        }
        let report = drift_report(n[1].id(), suspect);
        let out = send(&mut n, 2, 1, at(8), report);
        let queried = out.iter().any(|a| matches!(a, Action::Broadcast(f) if f[3] == 0x21));
        let state = n[1].subject_state(suspect);
        if heard {
            assert!(queried, "{out:?}");
            assert_eq!(state, Some(lifecycle::SubjectState::Inflammation));
        } else {
            assert!(!queried, "{out:?}");
            assert_eq!(state, Some(lifecycle::SubjectState::Normal));
        }
    }
}

#[test]
fn profile_syncs_never_exceed_the_neighbours_rate_limit_and_reach_every_subject() {
    use super::{profile_sync_due, PROFILE_SYNCS_PER_EPOCH, PROFILE_SYNC_EPOCHS};
    for n in 0..=64usize {
        let period = (PROFILE_SYNC_EPOCHS as usize).max(n.div_ceil(2));
        let mut sent = vec![0usize; n];
        for epoch in 1_000..1_000 + period as u32 {
            let due = (0..n).filter(|&i| profile_sync_due(epoch, i, n)).collect::<Vec<_>>();
            assert!(due.len() <= PROFILE_SYNCS_PER_EPOCH, "n {n}, epoch {epoch}: {due:?}");
            due.iter().for_each(|&i| sent[i] += 1);
            if n <= 20 {
                // The spec's schedule, unchanged up to 20 subjects.
                let old =
                    (0..n).filter(|&i| (epoch + i as u32).is_multiple_of(PROFILE_SYNC_EPOCHS)).collect::<Vec<_>>();
                assert_eq!(due, old);
            }
        }
        assert!(sent.iter().all(|&k| k == 1), "n {n}: each profile once per period: {sent:?}");
    }
}

/// A monitor with `drifts.len()` subjects in good standing, all heard at
/// 100 s, whose readings' offsets from ours were learned and then moved by
/// `drifts` (°C); our own latest reading is 22 °C.
fn relative_monitor(drifts: &[f32]) -> (Node<M, 8, 64, 8, 32>, Vec<DeviceId>) {
    let auth = ModeledAuthority::new(&[3; 32]);
    let me = Identity::from_seed(&Seed([1; 32]));
    let mut n: Node<M, 8, 64, 8, 32> = Node::new(NodeConfig::default(), auth.crypto_for(&me), at(0), 0);
    n.handle_reading(at(100), QuantityType::Temperature, 2200, &mut |_| {});
    let mut ids = Vec::new();
    for (k, drift) in drifts.iter().enumerate() {
        let id = DeviceId([k as u8 + 10; 8]);
        let i = n.subject_slot(id, crate::profile::SubjectKind::Nano, at(1)).unwrap();
        n.feed_subject(i, lifecycle::SubjectEvent::ProfileFrozen, at(2), &mut |_| {});
        let s = &mut n.subjects[i].1;
        let mut r = RelativeLevel::new(QuantityType::Temperature);
        // Learned, then a slow drift to `drift` over ten hours.
        for k in 0..RELATIVE_BASE_SAMPLES {
            r.observe(22.3, 22.0, 10_000 * u64::from(k));
        }
        for k in 0..3600u16 {
            r.observe(22.3 + drift * f32::from(k) / 3599.0, 22.0, 400_000 + 10_000 * u64::from(k));
        }
        s.relative = Some(r);
        s.profile = Some(learned(id, 2230));
        s.trend = Some(SlowTrend { quantity: QuantityType::Temperature, mean: 22.3 + drift, last_ms: 100_000 });
        let reading = (2230.0 + drift * 100.0) as crate::types::Reading;
        s.last_obs = Some(Observation {
            reading,
            quantity: QuantityType::Temperature,
            timestamp: 1_700_000_100,
            rx_ms: 100_000,
        });
        ids.push(id);
    }
    (n, ids)
}

fn relative_drift_audited(out: &[Action], subject: DeviceId) -> bool {
    out.iter().any(|a| matches!(a, Action::Audit(AuditEvent::RelativeDrift { subject: s, .. }) if *s == subject))
}

/// A subject whose readings drifted 2.5 °C against ours, alone, gets a
/// DEVIATION that opens a vote, once per RELATIVE_VOTE_EPOCHS; a drift
/// under the 2 °C floor does nothing.
#[test]
fn a_subject_drifting_against_our_level_is_voted_on() {
    let (mut n, ids) = relative_monitor(&[2.5, 0.0, 1.5]);
    let mut out = Vec::new();
    for i in 0..3 {
        n.act_on_relative_drift(i, at(200), &mut |a| out.push(a));
    }
    assert!(relative_drift_audited(&out, ids[0]), "{out:?}");
    assert!(!relative_drift_audited(&out, ids[1]) && !relative_drift_audited(&out, ids[2]));
    assert_eq!(n.subject_state(ids[0]), Some(lifecycle::SubjectState::Inflammation));
    assert_eq!(n.subject_state(ids[2]), Some(lifecycle::SubjectState::Normal));
    let s = n.subject(ids[0]).unwrap();
    assert!(s.evidence.relative, "a relative drift leaves no vaccine signature");
    // Back to PYREXIA after an inconclusive vote: asked again only
    // RELATIVE_VOTE_EPOCHS later.
    let i = n.subject_index(ids[0]).unwrap();
    n.subjects[i].1.record = SubjectRecord::new(
        ids[0],
        crate::profile::SubjectKind::Nano,
        lifecycle::SubjectState::Pyrexia,
        0,
        n.cfg.subject_timers,
    );
    let mut again = Vec::new();
    n.epoch += RELATIVE_VOTE_EPOCHS - 1;
    n.act_on_relative_drift(i, at(800), &mut |a| again.push(a));
    assert!(!relative_drift_audited(&again, ids[0]));
    n.epoch += 1;
    n.act_on_relative_drift(i, at(860), &mut |a| again.push(a));
    assert!(relative_drift_audited(&again, ids[0]));
}

/// The same drift shared by MIN_CORROBORATING other subjects is ours (our
/// sensor or our surroundings moved), both when we act and when we answer
/// a vote; others drifting the other way do not excuse it.
#[test]
fn a_drift_many_subjects_share_against_us_is_ours() {
    let shared = lifecycle::MIN_CORROBORATING as usize;
    for (others, expect) in [(shared - 1, true), (shared, false)] {
        for sign in [1.0f32, -1.0] {
            let mut drifts = vec![2.5];
            drifts.extend(std::iter::repeat_n(2.5 * sign, others));
            let (mut n, ids) = relative_monitor(&drifts);
            let acts = sign < 0.0 || expect;
            assert_eq!(n.relative_drift(0).is_some(), acts, "{others} others, sign {sign}");
            let near =
                crate::distance::DistanceEstimate { cm: 500, method: crate::distance::DistanceMethod::RssiModel };
            let h = n.history_of(ids[0], QuantityType::Temperature, 2480, near, 100_000).unwrap();
            assert_eq!(h.relative_drift, acts, "{others} others, sign {sign}");
            let mut out = Vec::new();
            n.act_on_relative_drift(0, at(200), &mut |a| out.push(a));
            assert_eq!(relative_drift_audited(&out, ids[0]), acts, "{others} others, sign {sign}");
        }
    }
}

/// A vaccine goes out only for a signature whose match window stays
/// MIN_UNEXPLAINED_STEPS clear of a zero offset (a window taken as at least
/// that wide when one or two offsets measure no spread), and never for a
/// subject that drifted against our level.
#[test]
fn only_a_distinctive_attack_is_vaccinated() {
    let cases: [(&[i32], bool, bool); 8] = [
        (&[3790, 3800, 3810], false, true),
        // drift-long's weak signature: 0.9 ± 0.25 °C off the profile, which
        // a day's swing gives every honest device.
        (&[66, 91, 116], false, false),
        (&[0, 0, 1], false, false),
        (&[3790, 3800, 3810], true, false),
        // drift-long's one-sample signature, 0.79 °C ± 0: no spread measured.
        (&[79], false, false),
        (&[79, 79], false, false),
        (&[79, 79, 79], false, true),
        // A +38 °C spiker rejected after one offset.
        (&[3800], false, true),
    ];
    for (offsets, relative, vaccinated) in cases {
        let (mut n, ids) = relative_monitor(&[0.0]);
        let s = &mut n.subjects[0].1;
        for off in offsets {
            s.evidence.record(batch::Cause::Spike, *off);
        }
        if relative {
            s.evidence.mark_relative();
        }
        let mut out = Vec::new();
        n.originate_vaccine(ids[0], at(300), &mut |a| out.push(a));
        let sent = out.iter().any(|a| matches!(a, Action::Audit(AuditEvent::VaccineOriginated { .. })));
        assert_eq!(sent, vaccinated, "{offsets:?} relative {relative}: {out:?}");
    }
}

/// A PROFILE_SYNC of node 2's profile, signed by node 0.
fn sync_about(n: &[Small<M>], version: u32) -> FrameBuf {
    let mut body = profile_sync_of(n[2].id(), &learned::<4>(n[2].id(), 2200)).unwrap();
    body.profile_version = version;
    signed(&n[0], Body::ProfileSync(body))
}

/// A PROFILE_SYNC we would not merge (we are not learning its subject) is
/// ignored before it is verified or charged, so a hundred replays cost its
/// sender nothing (SPEC-NOTES 33); one we would merge is still verified and
/// charged.
#[test]
fn a_sync_we_would_not_merge_is_never_charged() {
    let mut n = mesh_of(3);
    for k in 0..100u32 {
        let f = sync_about(&n, k % 3);
        let out = deliver(&mut n[1], at(10), &f);
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(n[1].guard_drops().total(), 0);
    // Node 1 starts learning node 2: the same sync is now verified.
    let f = own_trace(&mut n[2], at(11));
    deliver(&mut n[1], at(11), &f);
    let mut forged = sync_about(&n, 7);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    deliver(&mut n[1], at(12), &forged);
    assert_eq!(n[1].frame_drops().bad_signature, 1);
    let f = sync_about(&n, 8);
    let out = deliver(&mut n[1], at(12), &f);
    assert!(out.iter().any(|a| matches!(a, Action::Audit(AuditEvent::ProfileMerged { .. }))), "{out:?}");
}

/// Every answer to an INFLAMMATION_QUERY is audited with the verdict the
/// reply carried and what it was judged by, so a rejection can be traced to
/// its voters; a replayed query, which draws no reply, draws no audit.
#[test]
fn each_answer_is_audited_with_the_verdict_it_sent() {
    use crate::wire::immune::InflammationQueryV2;
    use crate::wire::FrameRepr;
    let mut n = mesh_of(3);
    let (querier, suspect) = (n[0].id(), n[2].id());
    let q = signed(
        &n[0],
        Body::InflammationQuery(crate::wire::InflammationQuery {
            suspect_id: suspect,
            quantity: QuantityType::Temperature,
            suspect_reading: 9000,
            reporter_reading: 2200,
            timestamp: 1_700_000_010,
            v2: Some(InflammationQueryV2 { query_id: 7 }),
        }),
    );
    let out = deliver(&mut n[1], at(10), &q);
    let sent: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::Unicast { dest, frame } => match FrameRepr::parse(frame).map(|f| f.body) {
                Ok(Body::InflammationReply(r)) => Some((*dest, r.suspect_id, r.verdict)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let audited: Vec<_> = out
        .iter()
        .filter_map(|a| match a {
            Action::Audit(AuditEvent::Answered { querier, suspect, suspect_reading, verdict, .. }) => {
                Some((*querier, *suspect, *verdict, *suspect_reading))
            }
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(audited, [(sent[0].0, sent[0].1, sent[0].2, 9000)]);
    assert_eq!((audited[0].0, audited[0].1), (querier, suspect));
    let again = deliver(&mut n[1], at(11), &q);
    assert!(!again.iter().any(|a| matches!(a, Action::Audit(AuditEvent::Answered { .. }))), "{again:?}");
}

/// A monitor that, by its deployment manifest, places itself at `me`, a
/// suspect at (0, 0) and one subject in good standing at each of
/// `witnesses` (m), heard at 100 s with its reading `shift` °C above its
/// slow average.
fn placed_monitor(me: (i32, i32), witnesses: &[((i32, i32), f32)]) -> (Node<M, 16, 64, 8, 32>, DeviceId) {
    use crate::distance::DeploymentEntry;
    let auth = ModeledAuthority::new(&[3; 32]);
    let seed = Identity::from_seed(&Seed([1; 32]));
    let mut n: Node<M, 16, 64, 8, 32> = Node::new(NodeConfig::default(), auth.crypto_for(&seed), at(0), 0);
    let place = |id: DeviceId, (x, y): (i32, i32)| DeploymentEntry {
        device_id: id,
        position_cm: [x * 100, y * 100, 0],
        floor: 0,
        zone: 0,
    };
    let suspect = DeviceId([9; 8]);
    n.cfg.manifest.push(place(n.id(), me)).unwrap();
    n.cfg.manifest.push(place(suspect, (0, 0))).unwrap();
    for (k, (pos, shift)) in witnesses.iter().enumerate() {
        let id = DeviceId([k as u8 + 10; 8]);
        n.cfg.manifest.push(place(id, *pos)).unwrap();
        let i = n.subject_slot(id, crate::profile::SubjectKind::Nano, at(1)).unwrap();
        n.feed_subject(i, lifecycle::SubjectEvent::ProfileFrozen, at(2), &mut |_| {});
        let s = &mut n.subjects[i].1;
        s.trend = Some(SlowTrend { quantity: QuantityType::Temperature, mean: 22.0, last_ms: 100_000 });
        s.last_obs = Some(Observation {
            reading: QuantityType::Temperature.to_reading(22.0 + shift),
            quantity: QuantityType::Temperature,
            timestamp: 1_700_000_100,
            rx_ms: 100_000,
        });
    }
    (n, suspect)
}

/// The devices around a suspect, placed by the manifest, explain its shift
/// when they form a slope through it or a peak at it, never when they sit
/// on a uniform level below it or when fewer than MIN_CORROBORATING moved.
#[test]
fn a_placed_field_explains_a_slope_or_a_peak_not_a_plateau() {
    let t = QuantityType::Temperature;
    let ring = |r: i32| [(r, 0), (-r, 0), (0, r), (0, -r)];
    let diagonal = |r: i32| [(r, r), (-r, r), (r, -r), (-r, -r)];
    // A slope rising 0.8 °C/m westward, 8 °C at the suspect.
    let slope: Vec<_> = ring(7).into_iter().chain(diagonal(7)).map(|(x, y)| ((x, y), 8.0 - 0.8 * x as f32)).collect();
    let (n, suspect) = placed_monitor((7, 0), &slope[1..]);
    assert!(n.field_explains(suspect, t, 8.0, Some(2.4), 100_000));
    assert!(!n.field_explains(suspect, t, 16.0, Some(2.4), 100_000), "twice what the slope gives there");
    // The seat of a fire: 12 °C at 7 m, 6 °C at 9.9 m, 2.1 °C at 14 m.
    let mut seat: Vec<_> = ring(7).into_iter().map(|p| (p, 12.0)).collect();
    seat.extend(diagonal(7).into_iter().map(|p| (p, 6.0)));
    seat.extend(ring(14).into_iter().map(|p| (p, 2.1)));
    let (n, suspect) = placed_monitor((7, 0), &seat[1..]);
    assert!(n.field_explains(suspect, t, 30.0, Some(12.0), 100_000));
    assert!(!n.field_explains(suspect, t, 60.0, Some(12.0), 100_000));
    // A zone that warmed 3 °C and a suspect claiming 7: a plateau.
    let plateau: Vec<_> = ring(7).into_iter().chain(diagonal(7)).chain(ring(14)).map(|p| (p, 3.0)).collect();
    let (n, suspect) = placed_monitor((7, 0), &plateau[1..]);
    assert!(n.field_explains(suspect, t, 3.5, Some(3.0), 100_000), "the zone's own level");
    assert!(!n.field_explains(suspect, t, 7.0, Some(3.0), 100_000));
    // Three accomplices at +4 around it, everyone else still.
    let mut group: Vec<_> = [(7, 0), (-7, 0), (0, 7)].into_iter().map(|p| (p, 4.0)).collect();
    group.extend(diagonal(7).into_iter().chain(ring(14)).map(|p| (p, 0.0)));
    let (n, suspect) = placed_monitor((0, -7), &group);
    assert!(!n.field_explains(suspect, t, 4.0, Some(0.0), 100_000));
    // Nobody placed: nothing to fit.
    let (mut n, suspect) = placed_monitor((7, 0), &slope[1..]);
    n.cfg.manifest.clear();
    assert!(!n.field_explains(suspect, t, 8.0, Some(2.4), 100_000));
}
