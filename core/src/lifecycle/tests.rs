//! Scenario tests of both ES-3.1 machines (with ES-7.2, ES-10.5 timing) and a
//! model-based proptest of the subject machine against a small pure reference model.

use super::*;
use crate::persist::PersistedState;
use crate::profile::SubjectKind;
use crate::quorum::QuorumMode;
use crate::types::Timestamp;
use crate::wire::immune::{InflammationReply, InflammationReplyV2, Verdict};
use proptest::prelude::*;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
const SUSPECT: DeviceId = DeviceId([0xEE; 8]);

fn id(b: u8) -> DeviceId {
    DeviceId([b; 8])
}

fn sample(sigma: f32) -> DeviationSample {
    DeviationSample { sigma, quantity: QuantityType::Temperature, suspect_reading: 4800, my_reading: 2300 }
}

fn dev(sigma: f32) -> SubjectEvent {
    SubjectEvent::Deviation(sample(sigma))
}

fn reply(responder: u8, verdict: Verdict, query_id: u32) -> SubjectEvent {
    SubjectEvent::Reply {
        responder: id(responder),
        reply: InflammationReply {
            suspect_id: SUSPECT,
            verdict,
            own_reading: 2300,
            own_confidence: 200,
            v2: Some(InflammationReplyV2 { query_id, timestamp: 0 }),
        },
    }
}

fn normal(now: u64) -> SubjectRecord {
    SubjectRecord::new(SUSPECT, SubjectKind::Nano, SubjectState::Normal, now, Timers::default())
}

fn query_id(r: &SubjectRecord) -> u32 {
    r.active_query().map(|q| q.query_id).unwrap_or(0)
}

#[test]
fn pyrexia_escalates_strictly_after_six_hours() {
    let mut c = Cluster::new(10, 4, 1);
    let mut r = normal(0);
    let s = r.handle(dev(1.5), 1000, &mut c);
    assert_eq!(r.state(), SubjectState::Pyrexia);
    assert_eq!(s.actions[0], LifecycleAction::IncreaseMonitoring { subject: SUSPECT, factor: 2 });
    assert_eq!(r.entered_at_ms(), 1000);
    let _ = r.handle(SubjectEvent::Tick, 1000 + 6 * HOUR, &mut c);
    assert_eq!(r.state(), SubjectState::Pyrexia, "exactly 6 h: the spec's `>` does not fire");
    let s = r.handle(SubjectEvent::Tick, 1000 + 6 * HOUR + 1000, &mut c);
    assert_eq!(r.state(), SubjectState::Inflammation);
    assert_eq!(s.audit.reason, Reason::Timeout { elapsed_ms: 6 * HOUR + 1000, limit_ms: 6 * HOUR });
    assert!(matches!(s.actions[0], LifecycleAction::BroadcastInflammationQuery { query_id: 1, suspect: SUSPECT, .. }));
    assert_eq!(r.entered_at_ms(), 1000 + 6 * HOUR + 1000, "SPEC-NOTES 24: entered_at on every transition");
}

#[test]
fn sigma_thresholds_are_in_tenths_and_arms_are_guarded() {
    let mut c = Cluster::new(10, 4, 1);
    for (sigma, want) in [
        (0.99, SubjectState::Normal),
        (1.0, SubjectState::Pyrexia),
        (2.0, SubjectState::Inflammation),
        (3.87, SubjectState::Inflammation),
    ] {
        let mut r = normal(0);
        let _ = r.handle(dev(sigma), 1, &mut c);
        assert_eq!(r.state(), want, "σ = {sigma}");
    }
    let mut dust = SubjectRecord::<4>::new(SUSPECT, SubjectKind::Dust, SubjectState::Normal, 0, Timers::default());
    let _ = dust.handle(dev(1.1), 1, &mut c);
    assert_eq!(dust.state(), SubjectState::Normal, "Dust bands are 1.2/2.4/3.6σ");
}

#[test]
fn majority_of_expected_decides_early_and_rejects_at_three_sigma() {
    let mut c = Cluster::new(10, 5, 40);
    let mut r = normal(0);
    let _ = r.handle(dev(3.5), 10, &mut c);
    let q = query_id(&r);
    assert_eq!(q, 40);
    let s = r.handle(reply(1, Verdict::ContradictsSuspect, q), 20, &mut c);
    assert_eq!(
        (r.state(), s.audit.reason),
        (SubjectState::Inflammation, Reason::ReplyCounted(r.active_query().unwrap().tally))
    );
    let _ = r.handle(reply(2, Verdict::SeesChange, q), 30, &mut c);
    let _ = r.handle(reply(3, Verdict::ContradictsSuspect, q), 40, &mut c);
    assert_eq!(r.state(), SubjectState::Inflammation, "2 of 5 is not a majority yet");
    let _ = r.handle(reply(4, Verdict::ContradictsSuspect, q), 50, &mut c);
    assert_eq!(r.state(), SubjectState::Inflammation, "3 to 1 with one reply out could still end 3 to 2");
    let s = r.handle(reply(5, Verdict::ContradictsSuspect, q), 60, &mut c);
    assert_eq!(r.state(), SubjectState::Rejection);
    assert_eq!(r.assessed_weight(), 0);
    assert_eq!(
        s.actions.as_slice(),
        &[
            LifecycleAction::IsolateFromConsensus { subject: SUSPECT },
            LifecycleAction::SendRejectionNotice {
                subject: SUSPECT,
                reason: RejectionReason::InflammationVote,
                deviation_tenths: 35,
                query_id: 40
            }
        ]
    );
}

#[test]
fn contradicted_below_three_sigma_goes_back_to_pyrexia_and_confirmed_goes_normal() {
    let mut c = Cluster::new(10, 3, 1);
    let mut r = normal(0);
    let _ = r.handle(dev(2.5), 0, &mut c);
    let q = query_id(&r);
    let _ = r.handle(reply(1, Verdict::ContradictsSuspect, q), 1, &mut c);
    let _ = r.handle(reply(2, Verdict::ContradictsSuspect, q), 2, &mut c);
    let _ = r.handle(reply(3, Verdict::ContradictsSuspect, q), 2, &mut c);
    assert_eq!(r.state(), SubjectState::Pyrexia);
    let _ = r.handle(dev(2.1), 3, &mut c);
    let q = query_id(&r);
    let _ = r.handle(reply(1, Verdict::SeesChange, q), 4, &mut c);
    let s = r.handle(reply(2, Verdict::SeesChange, q), 5, &mut c);
    assert_eq!(r.state(), SubjectState::Normal);
    assert_eq!(s.actions[0], LifecycleAction::UpdateProfile { subject: SUSPECT });
}

#[test]
fn bad_replies_are_dropped_with_a_reason() {
    let mut c = Cluster::new(10, 4, 1);
    let mut r = normal(0);
    let s = r.handle(reply(1, Verdict::ContradictsSuspect, 1), 0, &mut c);
    assert_eq!(s.audit.reason, Reason::ReplyDropped(DropReason::NoActiveQuery));
    let _ = r.handle(dev(3.5), 0, &mut c);
    let q = query_id(&r);
    let s = r.handle(reply(1, Verdict::ContradictsSuspect, q + 1), 1, &mut c);
    assert_eq!(s.audit.reason, Reason::ReplyDropped(DropReason::WrongQueryId));
    let s = r.handle(reply(0xEE, Verdict::ContradictsSuspect, q), 2, &mut c);
    assert_eq!(s.audit.reason, Reason::ReplyDropped(DropReason::FromSuspect));
    let _ = r.handle(reply(1, Verdict::ContradictsSuspect, q), 3, &mut c);
    let s = r.handle(reply(1, Verdict::ContradictsSuspect, q), 4, &mut c);
    assert_eq!(s.audit.reason, Reason::ReplyDropped(DropReason::DuplicateResponder));
    assert_eq!(r.active_query().unwrap().responders(), &[id(1)]);
}

#[test]
fn tie_or_silence_at_the_timeout_downgrades_and_learns_the_boundary() {
    let mut c = Cluster::new(10, 4, 1);
    let mut r = normal(0);
    let _ = r.handle(dev(3.5), 0, &mut c);
    let q = query_id(&r);
    let _ = r.handle(reply(1, Verdict::ContradictsSuspect, q), 1, &mut c);
    let _ = r.handle(reply(2, Verdict::SeesChange, q), 2, &mut c);
    let _ = r.handle(SubjectEvent::Tick, 300_000, &mut c);
    assert_eq!(r.state(), SubjectState::Inflammation, "exactly 5 min");
    let s = r.handle(SubjectEvent::Tick, 301_000, &mut c);
    assert_eq!(r.state(), SubjectState::Pyrexia);
    assert!(matches!(s.audit.reason, Reason::VoteDecided { outcome: VoteOutcome::Inconclusive, at_timeout: true, .. }));
    assert_eq!((r.boundary().observations(), r.boundary().offset()), (1, 2500.0));
    let mut silent = normal(0);
    let _ = silent.handle(dev(2.5), 0, &mut c);
    let _ = silent.handle(SubjectEvent::Tick, 300_001, &mut c);
    assert_eq!(silent.state(), SubjectState::Pyrexia, "zero replies no longer stall forever");
}

#[test]
fn the_rejection_cap_defers_and_audits() {
    let mut c = Cluster::new(10, 4, 1);
    let mut rs: [SubjectRecord<4>; 3] = core::array::from_fn(|i| {
        SubjectRecord::new(id(i as u8 + 1), SubjectKind::Nano, SubjectState::Normal, 0, Timers::default())
    });
    let mut steps = [None, None, None];
    for (r, s) in rs.iter_mut().zip(steps.iter_mut()) {
        *s = Some(r.handle(SubjectEvent::InnateViolation(sample(f32::INFINITY)), 1000, &mut c));
    }
    assert_eq!(rs.iter().filter(|r| r.state() == SubjectState::Rejection).count(), 2);
    assert_eq!(rs[2].state(), SubjectState::Normal);
    assert!(rs[2].rejection_pending());
    assert_eq!(
        steps[2].as_ref().unwrap().audit.reason,
        Reason::RejectionDeferred(RejectionCapped { used: 2, cap: 2, cluster_size: 10 })
    );
    let s = rs[2].handle(SubjectEvent::Tick, 59_999, &mut c);
    assert!(matches!(s.audit.reason, Reason::RejectionDeferred(_)));
    let s = rs[2].handle(SubjectEvent::Tick, 60_000, &mut c);
    assert_eq!(rs[2].state(), SubjectState::Rejection);
    assert_eq!(s.audit.reason, Reason::DeferredRejectionAdmitted { sigma: f32::INFINITY });
    assert!(matches!(
        s.actions[1],
        LifecycleAction::SendRejectionNotice { reason: RejectionReason::InnateBounds, deviation_tenths: u16::MAX, .. }
    ));
}

fn quarantined(c: &mut Cluster) -> SubjectRecord {
    let mut r = normal(0);
    let _ = r.handle(SubjectEvent::InnateViolation(sample(f32::INFINITY)), 0, c);
    let _ = r.handle(SubjectEvent::Tick, 72 * HOUR, c);
    assert_eq!(r.state(), SubjectState::Rejection, "exactly 72 h");
    let _ = r.handle(SubjectEvent::Tick, 72 * HOUR + 1000, c);
    assert_eq!(r.state(), SubjectState::Quarantine);
    r
}

#[test]
fn quarantine_tries_once_a_day_not_three_times_in_a_row() {
    let mut c = Cluster::new(10, 4, 1);
    let mut r = quarantined(&mut c);
    let q0 = r.entered_at_ms();
    let mut attempts = 0;
    let mut t = q0;
    while r.state() == SubjectState::Quarantine {
        t += 60_000;
        let s = r.handle(SubjectEvent::Tick, t, &mut c);
        for a in &s.actions {
            if let LifecycleAction::AttemptRemediation { attempt, .. } = a {
                attempts += 1;
                assert_eq!(*attempt, attempts);
                assert!(t > q0 + DAY * attempts as u64, "attempt {attempt} at {t}");
                assert!(t <= q0 + (DAY + 60_000) * attempts as u64, "one interval after the previous attempt");
                let s = r.handle(SubjectEvent::RemediationResult(false), t + 1, &mut c);
                if attempts < 3 {
                    assert_eq!(s.audit.reason, Reason::RemediationFailed { attempts });
                }
            }
        }
        assert!(t < q0 + 4 * DAY);
    }
    assert_eq!((attempts, r.state()), (3, SubjectState::Apoptotic));
}

#[test]
fn unanswered_remediation_counts_as_failed_and_success_restarts_neonatal() {
    let mut c = Cluster::new(10, 4, 1);
    let mut r = quarantined(&mut c);
    let q0 = r.entered_at_ms();
    let s = r.handle(SubjectEvent::Tick, q0 + DAY + 1, &mut c);
    assert_eq!(s.actions[0], LifecycleAction::AttemptRemediation { subject: SUSPECT, attempt: 1 });
    let s = r.handle(SubjectEvent::Tick, q0 + 2 * DAY + 2, &mut c);
    assert_eq!(s.actions[0], LifecycleAction::AttemptRemediation { subject: SUSPECT, attempt: 2 });
    assert_eq!(r.remediation_attempts(), 1);
    let s = r.handle(SubjectEvent::RemediationResult(true), q0 + 2 * DAY + 3, &mut c);
    assert_eq!(r.state(), SubjectState::Neonatal);
    assert_eq!(s.actions[0], LifecycleAction::RelearnProfile { subject: SUSPECT });
    assert_eq!((r.assessed_weight(), r.effective_weight(255), r.effective_weight(10)), (77, 77, 10));
}

#[test]
fn heartbeat_timeout_applies_in_every_state() {
    let mut c = Cluster::new(10, 4, 1);
    let timeout = Timers::default().heartbeat_timeout_ms;
    let mut r = normal(0);
    let _ = r.handle(dev(1.5), 0, &mut c);
    let _ = r.handle(SubjectEvent::Heard, 5 * HOUR, &mut c);
    let _ = r.handle(dev(1.5), 5 * HOUR, &mut c);
    assert_eq!(r.state(), SubjectState::Pyrexia);
    assert_eq!(r.consecutive_pyrexia(), 1);
    let mut q = quarantined(&mut c);
    let s = q.handle(SubjectEvent::Tick, timeout + 1, &mut c);
    assert_eq!(q.state(), SubjectState::Apoptotic, "SPEC-NOTES 10: QUARANTINE too");
    assert_eq!(s.actions[0], LifecycleAction::ForgetSubject { subject: SUSPECT });
    let mut n = normal(0);
    let _ = n.handle(SubjectEvent::Tick, timeout, &mut c);
    assert_eq!(n.state(), SubjectState::Normal);
    let _ = n.handle(SubjectEvent::Tick, timeout + 1000, &mut c);
    assert_eq!(n.state(), SubjectState::Apoptotic);
}

#[test]
fn history_keeps_the_last_64_deviations() {
    let mut c = Cluster::new(10, 4, 1);
    let mut r = SubjectRecord::<4>::new(SUSPECT, SubjectKind::Nano, SubjectState::Neonatal, 0, Timers::default());
    for i in 0..100 {
        let _ = r.handle(dev(i as f32 / 100.0), i, &mut c);
    }
    let h: std::vec::Vec<f32> = r.deviation_history().collect();
    assert_eq!(h.len(), DEVIATION_HISTORY);
    assert!((h[0] - 0.36).abs() < 1e-3 && (h[63] - 0.99).abs() < 1e-3);
    assert_eq!(r.state(), SubjectState::Neonatal, "neonatal subjects are only observed");
    let _ = r.handle(SubjectEvent::ProfileFrozen, 200, &mut c);
    assert_eq!((r.state(), r.assessed_weight()), (SubjectState::Normal, NORMAL_WEIGHT));
}

fn node(presigned: bool) -> NodeLifecycle {
    let cfg =
        NodeConfig { neonatal_duration_ms: 10 * HOUR, presigned_death_certificate: presigned, ..NodeConfig::default() };
    NodeLifecycle::new(id(9), cfg)
}

fn tick(mode: QuorumMode) -> NodeEvent {
    NodeEvent::Tick { mode }
}

#[test]
fn neonatal_time_pauses_in_solo() {
    let mut n = node(true);
    let _ = n.handle(NodeEvent::PowerOn, 0);
    let _ = n.handle(NodeEvent::PufOk, 0);
    assert_eq!((n.state(), n.weight()), (OwnState::Neonatal, 77));
    let _ = n.handle(tick(QuorumMode::Quorum), 0);
    let _ = n.handle(tick(QuorumMode::Solo), 4 * HOUR);
    assert_eq!(n.neonatal_observed_ms(), 4 * HOUR);
    let _ = n.handle(tick(QuorumMode::Swarm), 100 * HOUR);
    assert_eq!(n.neonatal_observed_ms(), 4 * HOUR, "96 h alone do not count");
    let _ = n.handle(tick(QuorumMode::Swarm), 105 * HOUR);
    assert_eq!(n.state(), OwnState::Neonatal);
    let s = n.handle(tick(QuorumMode::Swarm), 106 * HOUR);
    assert_eq!((n.state(), n.weight(), n.profile_frozen()), (OwnState::Normal, 204, true));
    assert_eq!(s.actions[0], LifecycleAction::FreezeProfile);
    assert_eq!(s.audit.reason, Reason::NeonatalComplete { observed_ms: 10 * HOUR });
}

#[test]
fn puf_failure_uses_the_presigned_certificate_or_goes_silent() {
    for (presigned, want) in [
        (true, LifecycleAction::BroadcastDeathCertificate(crate::wire::metabolic::DeathReason::PufAnomaly)),
        (false, LifecycleAction::GoSilent),
    ] {
        let mut n = node(presigned);
        let _ = n.handle(NodeEvent::PowerOn, 0);
        let s = n.handle(NodeEvent::PufFail, 5);
        assert_eq!((n.state(), s.actions[0]), (OwnState::Apoptotic, want));
        let s = n.handle(NodeEvent::PowerOn, 6);
        assert!(!s.transitioned(), "APOPTOTIC is final");
    }
}

#[test]
fn own_sensor_fault_suppresses_traces_then_quarantines_then_dies() {
    let mut n = node(true);
    let _ = n.handle(NodeEvent::PowerOn, 0);
    let _ = n.handle(NodeEvent::PufOk, 0);
    for _ in 0..2 {
        let _ = n.handle(NodeEvent::OwnReading { plausible: false }, 1);
    }
    assert_eq!(n.state(), OwnState::Neonatal);
    let s = n.handle(NodeEvent::OwnReading { plausible: false }, 1);
    assert_eq!((n.state(), s.actions[0]), (OwnState::SensorFault, LifecycleAction::SuppressOwnTraces));
    let s = n.handle(NodeEvent::OwnReading { plausible: true }, 2);
    assert_eq!((n.state(), s.actions[0]), (OwnState::Neonatal, LifecycleAction::ResumeOwnTraces));
    for _ in 0..3 {
        let _ = n.handle(NodeEvent::OwnReading { plausible: false }, 3);
    }
    let _ = n.handle(NodeEvent::HeartbeatSent, 6 * HOUR);
    let _ = n.handle(tick(QuorumMode::Quorum), 6 * HOUR + 3);
    assert_eq!(n.state(), OwnState::SensorFault, "exactly 6 h");
    let _ = n.handle(tick(QuorumMode::Quorum), 6 * HOUR + 4);
    assert_eq!((n.state(), n.weight()), (OwnState::Quarantine, 0));
    let q0 = n.entered_at_ms();
    let mut t = q0;
    let mut tests = 0;
    while n.state() == OwnState::Quarantine {
        t += HOUR;
        let _ = n.handle(NodeEvent::HeartbeatSent, t);
        let s = n.handle(tick(QuorumMode::Quorum), t);
        if let Some(LifecycleAction::RunSelfTest { attempt }) = s.actions.first() {
            tests += 1;
            assert_eq!(*attempt, tests);
            let s = n.handle(NodeEvent::RemediationResult(false), t);
            if tests == 3 {
                assert_eq!(
                    s.actions[0],
                    LifecycleAction::BroadcastDeathCertificate(crate::wire::metabolic::DeathReason::SelfCompromise)
                );
            }
        }
    }
    assert_eq!((tests, n.state()), (3, OwnState::Apoptotic));
    assert!(t >= q0 + 3 * DAY);
}

#[test]
fn rejected_node_remediates_into_a_fresh_neonatal() {
    let mut n = node(true);
    let _ = n.handle(NodeEvent::PowerOn, 0);
    let _ = n.handle(NodeEvent::PufOk, 0);
    let _ = n.handle(tick(QuorumMode::Quorum), 0);
    let _ = n.handle(tick(QuorumMode::Quorum), 11 * HOUR);
    assert_eq!(n.state(), OwnState::Normal);
    let s = n.handle(NodeEvent::RejectedByPeers, 11 * HOUR);
    assert_eq!((n.state(), s.actions[0]), (OwnState::Quarantine, LifecycleAction::SuppressOwnTraces));
    let _ = n.handle(NodeEvent::HeartbeatSent, 35 * HOUR);
    let s = n.handle(tick(QuorumMode::Quorum), 35 * HOUR + 1);
    assert_eq!(s.actions[0], LifecycleAction::RunSelfTest { attempt: 1 });
    let s = n.handle(NodeEvent::RemediationResult(true), 35 * HOUR + 2);
    assert_eq!((n.state(), n.weight(), n.neonatal_observed_ms()), (OwnState::Neonatal, 77, 0));
    assert_eq!(s.actions.as_slice(), &[LifecycleAction::Reenroll, LifecycleAction::ResumeOwnTraces]);
}

#[test]
fn own_heartbeat_silence_is_energy_death_in_any_state() {
    let mut n = node(true);
    let _ = n.handle(NodeEvent::PowerOn, 0);
    let _ = n.handle(NodeEvent::PufOk, 0);
    let s = n.handle(tick(QuorumMode::Solo), Timers::default().heartbeat_timeout_ms + 1);
    assert_eq!(n.state(), OwnState::Apoptotic);
    assert_eq!(
        s.actions[0],
        LifecycleAction::BroadcastDeathCertificate(crate::wire::metabolic::DeathReason::EnergyDepleted)
    );
}

fn own_cfg() -> NodeConfig {
    NodeConfig { neonatal_duration_ms: 10 * HOUR, ..NodeConfig::default() }
}

fn saved(code: u8, frozen: bool, now: Timestamp) -> PersistedState {
    let mut s = PersistedState::first_boot(now);
    s.lifecycle = code;
    s.profile_frozen = frozen;
    s
}

#[test]
fn own_restore_maps_every_state_code() {
    use crate::persist::lifecycle_code as lc;
    const T: Timestamp = 1_700_000_000;
    let cfg = own_cfg();
    for code in 0..=u8::MAX {
        for frozen in [false, true] {
            let n = NodeLifecycle::restore(id(9), cfg, &saved(code, frozen, T), 5_000, T);
            let resume = if frozen { OwnState::Normal } else { OwnState::Neonatal };
            let want = match code {
                lc::OFFLINE | lc::BOOTING => resume,
                lc::NEONATAL => OwnState::Neonatal,
                lc::NORMAL => OwnState::Normal,
                lc::PYREXIA => OwnState::SensorFault,
                lc::QUARANTINE => OwnState::Quarantine,
                lc::APOPTOTIC => OwnState::Apoptotic,
                _ => OwnState::Neonatal,
            };
            assert_eq!(n.state(), want, "code {code} frozen {frozen}");
            let weight = match want {
                OwnState::Normal => NORMAL_WEIGHT,
                OwnState::Neonatal => NEONATAL_WEIGHT,
                OwnState::SensorFault => {
                    if frozen {
                        NORMAL_WEIGHT
                    } else {
                        NEONATAL_WEIGHT
                    }
                }
                _ => 0,
            };
            assert_eq!(n.weight(), weight, "code {code}");
            if matches!(code, lc::NEONATAL | lc::NORMAL | lc::PYREXIA | lc::QUARANTINE | lc::APOPTOTIC) {
                assert_eq!(n.state().persist_code(), code, "stored codes round-trip");
            }
            if code > lc::APOPTOTIC || code == lc::INFLAMMATION || code == lc::REJECTION {
                assert!(!n.profile_frozen(), "an invalid record keeps nothing");
            }
        }
    }
}

#[test]
fn own_restore_keeps_neonatal_credit_and_finishes_it() {
    const T: Timestamp = 1_700_000_000;
    let mut s = saved(crate::persist::lifecycle_code::NEONATAL, false, T);
    s.neonatal_observed_s = 9 * 3600;
    s.entered_at = T - 3600;
    s.weight = 255;
    let mut n = NodeLifecycle::restore(id(9), own_cfg(), &s, 1_000, T);
    assert_eq!((n.state(), n.weight(), n.neonatal_observed_ms()), (OwnState::Neonatal, NEONATAL_WEIGHT, 9 * HOUR));
    assert_eq!(n.entered_at_ms(), 0, "times before the new clock's zero saturate");
    assert!(!n.traces_suppressed());
    let _ = n.handle(tick(QuorumMode::Quorum), 1_000);
    let _ = n.handle(NodeEvent::HeartbeatSent, HOUR);
    let st = n.handle(tick(QuorumMode::Quorum), HOUR);
    assert_eq!(n.neonatal_observed_ms(), 10 * HOUR - 1_000);
    assert_eq!(n.state(), OwnState::Neonatal);
    assert!(st.actions.is_empty());
    let st = n.handle(tick(QuorumMode::Quorum), HOUR + 1_000);
    assert_eq!((n.state(), n.weight(), n.profile_frozen()), (OwnState::Normal, NORMAL_WEIGHT, true));
    assert_eq!(st.actions[0], LifecycleAction::FreezeProfile);

    // Ages are measured against the new monotonic clock.
    let n = NodeLifecycle::restore(id(9), own_cfg(), &s, 10 * DAY, T);
    assert_eq!(n.entered_at_ms(), 10 * DAY - HOUR);
    s.entered_at = T + 50;
    let n = NodeLifecycle::restore(id(9), own_cfg(), &s, 10 * DAY, T);
    assert_eq!(n.entered_at_ms(), 10 * DAY, "a stored time ahead of the clock ages 0");
}

#[test]
fn own_restore_quarantine_keeps_attempts_and_dead_stays_dead() {
    use crate::persist::lifecycle_code as lc;
    const T: Timestamp = 1_700_000_000;
    let mut s = saved(lc::QUARANTINE, true, T);
    s.remediation_attempts = 2;
    let mut n = NodeLifecycle::restore(id(9), own_cfg(), &s, 0, T);
    assert_eq!((n.state(), n.remediation_attempts(), n.weight()), (OwnState::Quarantine, 2, 0));
    assert!(n.traces_suppressed());
    let t = Timers::default().remediation_interval_ms + 1;
    let _ = n.handle(NodeEvent::HeartbeatSent, t);
    let st = n.handle(tick(QuorumMode::Quorum), t);
    assert_eq!(st.actions[0], LifecycleAction::RunSelfTest { attempt: 3 });
    let st = n.handle(NodeEvent::RemediationResult(false), t);
    assert_eq!(n.state(), OwnState::Apoptotic);
    assert_eq!(
        st.actions[0],
        LifecycleAction::BroadcastDeathCertificate(crate::wire::metabolic::DeathReason::SelfCompromise)
    );

    let mut n = NodeLifecycle::restore(id(9), own_cfg(), &saved(lc::APOPTOTIC, true, T), 0, T);
    let _ = n.handle(NodeEvent::PowerOn, 1);
    let _ = n.handle(NodeEvent::PufOk, 2);
    assert_eq!(n.state(), OwnState::Apoptotic, "a dead node does not come back by rebooting");
}

proptest! {
    #[test]
    fn own_restore_never_panics_and_weight_follows_state(
        bytes in proptest::collection::vec(any::<u8>(), PersistedState::LEN),
        now_ms in any::<u64>(),
        now in any::<u32>(),
    ) {
        let mut b = bytes;
        b[0] %= 9;
        b[1] %= 3;
        b[4] &= 3;
        b[44..48].fill(0);
        let s = PersistedState::from_bytes(&b).unwrap();
        let mut n = NodeLifecycle::restore(id(9), NodeConfig::default(), &s, now_ms, now);
        prop_assert!(n.entered_at_ms() <= now_ms);
        let w = match n.state() {
            OwnState::Normal => NORMAL_WEIGHT,
            OwnState::Neonatal => NEONATAL_WEIGHT,
            OwnState::SensorFault => n.weight(),
            _ => 0,
        };
        prop_assert_eq!(n.weight(), w);
        if n.state() == OwnState::Normal {
            prop_assert!(n.profile_frozen());
        }
        let _ = n.handle(tick(QuorumMode::Quorum), now_ms.saturating_add(1));
    }
}

/// The pure reference model: one subject, integer tenths of σ, four
/// expected responders, `min_voters` 2, a cluster too big for the cap.
mod model {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    pub enum Ev {
        Dev(u8),
        Innate,
        Reply { who: u8, verdict: u8, good_id: bool },
        Advance(u64),
        Remedy(bool),
        Heard,
        Frozen,
    }

    #[derive(Clone, Debug, PartialEq)]
    pub struct Model {
        pub st: SubjectState,
        pub entered: u64,
        pub now: u64,
        heard: u64,
        latest: u8,
        votes: std::vec::Vec<(u8, u8)>,
        attempts: u8,
        pending: bool,
        next_rem: u64,
    }

    const EXPECTED: usize = 4;
    const HB: u64 = 7_776_000_000;

    impl Model {
        pub fn new() -> Self {
            Model {
                st: SubjectState::Normal,
                entered: 0,
                now: 0,
                heard: 0,
                latest: 0,
                votes: vec![],
                attempts: 0,
                pending: false,
                next_rem: 0,
            }
        }

        fn go(&mut self, st: SubjectState) {
            self.st = st;
            self.entered = self.now;
            self.votes.clear();
            self.attempts = 0;
            self.pending = false;
            self.next_rem = self.now + DAY;
        }

        fn decide(&mut self, final_: bool) -> bool {
            let s = self.votes.iter().filter(|v| v.1 == 0).count();
            let c = self.votes.iter().filter(|v| v.1 == 1).count();
            let env = if !final_ && self.votes.len() < EXPECTED {
                if s * 2 > EXPECTED && s >= 2 {
                    Some(true)
                } else if c > 2 * (s + EXPECTED - self.votes.len()) && c >= 2 {
                    Some(false)
                } else {
                    return false;
                }
            } else if s + c < 2 {
                None
            } else if s > c {
                Some(true)
            } else if c > 2 * s {
                Some(false)
            } else {
                None
            };
            match env {
                Some(true) => self.go(SubjectState::Normal),
                Some(false) if self.latest >= 30 => self.go(SubjectState::Rejection),
                _ => self.go(SubjectState::Pyrexia),
            }
            true
        }

        fn fail(&mut self) -> bool {
            self.attempts += 1;
            if self.attempts >= 3 {
                self.go(SubjectState::Apoptotic);
                return true;
            }
            false
        }

        pub fn step(&mut self, ev: Ev) {
            use SubjectState::*;
            if self.st == Apoptotic {
                if let Ev::Advance(dt) = ev {
                    self.now += dt;
                }
                return;
            }
            match ev {
                Ev::Dev(t) => {
                    self.latest = t;
                    let band = if t < 10 {
                        0
                    } else if t < 20 {
                        1
                    } else {
                        2
                    };
                    match (self.st, band) {
                        (Normal, 1) => self.go(Pyrexia),
                        (Normal | Pyrexia, 2) => self.go(Inflammation),
                        (Pyrexia, 0) => self.go(Normal),
                        _ => {}
                    }
                }
                Ev::Innate => {
                    self.latest = 255;
                    if !matches!(self.st, Rejection | Quarantine) {
                        self.go(Rejection);
                    }
                }
                Ev::Reply { who, verdict, good_id } => {
                    if self.st == Inflammation && good_id && who != 0 && !self.votes.iter().any(|v| v.0 == who) {
                        self.votes.push((who, verdict));
                        self.decide(false);
                    }
                }
                Ev::Advance(dt) => {
                    self.now += dt;
                    if self.now - self.heard > HB {
                        self.go(Apoptotic);
                        return;
                    }
                    let el = self.now - self.entered;
                    match self.st {
                        Pyrexia if el > 6 * HOUR => self.go(Inflammation),
                        Inflammation if el > 300_000 => {
                            self.decide(true);
                        }
                        Rejection if el > 72 * HOUR => self.go(Quarantine),
                        Quarantine if self.now > self.next_rem => {
                            if self.pending {
                                self.pending = false;
                                if self.fail() {
                                    return;
                                }
                            }
                            self.pending = true;
                            self.next_rem = self.now + DAY;
                        }
                        _ => {}
                    }
                }
                Ev::Remedy(ok) => {
                    if self.st == Quarantine && self.pending {
                        self.pending = false;
                        if ok {
                            self.go(Neonatal);
                        } else {
                            self.fail();
                        }
                    }
                }
                Ev::Heard => self.heard = self.heard.max(self.now),
                Ev::Frozen => {
                    if self.st == Neonatal {
                        self.go(Normal);
                    }
                }
            }
        }
    }

    pub fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            4 => (0u8..45).prop_map(Ev::Dev),
            1 => Just(Ev::Innate),
            5 => (0u8..6, 0u8..3, prop::bool::weighted(0.9))
                .prop_map(|(who, verdict, good_id)| Ev::Reply { who, verdict, good_id }),
            4 => prop_oneof![
                Just(1u64), Just(299_999), Just(300_001), Just(6 * HOUR), Just(6 * HOUR + 1),
                Just(DAY + 1), Just(72 * HOUR + 1), Just(40 * DAY)
            ].prop_map(Ev::Advance),
            1 => any::<bool>().prop_map(Ev::Remedy),
            2 => Just(Ev::Heard),
            1 => Just(Ev::Frozen),
        ]
    }
}

fn responder(who: u8) -> DeviceId {
    if who == 0 {
        SUSPECT
    } else {
        id(who)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn subject_machine_matches_the_reference_model(events in proptest::collection::vec(model::ev(), 1..120)) {
        let mut m = model::Model::new();
        let mut c = Cluster::new(255, 4, 1);
        let mut r = SubjectRecord::<8>::new(SUSPECT, SubjectKind::Nano, SubjectState::Normal, 0, Timers::default());
        for e in events {
            m.step(e);
            let now = m.now;
            let q = r.active_query().map(|q| q.query_id).unwrap_or(0);
            let ev = match e {
                model::Ev::Dev(t) => dev(t as f32 / 10.0),
                model::Ev::Innate => SubjectEvent::InnateViolation(sample(f32::INFINITY)),
                model::Ev::Reply { who, verdict, good_id } => {
                    let v = Verdict::from_u8(verdict).unwrap();
                    let SubjectEvent::Reply { reply: mut rep, .. } = reply(1, v, if good_id { q } else { q ^ 0x8000_0000 }) else {
                        unreachable!()
                    };
                    rep.suspect_id = SUSPECT;
                    SubjectEvent::Reply { responder: responder(who), reply: rep }
                }
                model::Ev::Advance(_) => SubjectEvent::Tick,
                model::Ev::Remedy(ok) => SubjectEvent::RemediationResult(ok),
                model::Ev::Heard => SubjectEvent::Heard,
                model::Ev::Frozen => SubjectEvent::ProfileFrozen,
            };
            let before = r.state();
            let step = r.handle(ev, now, &mut c);
            prop_assert_eq!(r.state(), m.st, "after {:?}", e);
            prop_assert_eq!(r.entered_at_ms(), m.entered, "after {:?}", e);
            prop_assert_eq!(step.transitioned(), before != r.state());
            prop_assert!(r.effective_weight(200) <= 200);
            if let Some(q) = r.active_query() {
                let ids = q.responders();
                prop_assert!(!ids.contains(&SUSPECT));
                prop_assert!(ids.iter().enumerate().all(|(i, a)| !ids[..i].contains(a)));
                prop_assert_eq!(q.tally.responded() as usize, ids.len());
            }
            prop_assert!(r.remediation_attempts() < 3);
        }
    }

    #[test]
    fn node_neonatal_credit_is_the_non_solo_time(steps in proptest::collection::vec((0u64..(2 * HOUR), 0u8..3), 1..80)) {
        let mut n = node(true);
        let _ = n.handle(NodeEvent::PowerOn, 0);
        let _ = n.handle(NodeEvent::PufOk, 0);
        let (mut t, mut mode, mut credit) = (0u64, QuorumMode::Solo, 0u64);
        for (dt, m) in steps {
            t += dt;
            let new_mode = QuorumMode::from_u8(m).unwrap();
            let _ = n.handle(NodeEvent::HeartbeatSent, t);
            let _ = n.handle(NodeEvent::Tick { mode: new_mode }, t);
            if mode != QuorumMode::Solo {
                credit += dt;
            }
            mode = new_mode;
            if credit >= 10 * HOUR {
                prop_assert_eq!(n.state(), OwnState::Normal);
                break;
            }
            prop_assert_eq!((n.state(), n.neonatal_observed_ms()), (OwnState::Neonatal, credit));
        }
    }
}

fn own_event() -> impl Strategy<Value = NodeEvent> {
    let mode = prop_oneof![Just(QuorumMode::Solo), Just(QuorumMode::Quorum), Just(QuorumMode::Swarm)];
    prop_oneof![
        Just(NodeEvent::PowerOn),
        Just(NodeEvent::PufOk),
        Just(NodeEvent::PufFail),
        mode.prop_map(|mode| NodeEvent::Tick { mode }),
        Just(NodeEvent::HeartbeatSent),
        any::<bool>().prop_map(|plausible| NodeEvent::OwnReading { plausible }),
        Just(NodeEvent::RejectedByPeers),
        any::<bool>().prop_map(NodeEvent::RemediationResult),
        Just(NodeEvent::Shutdown),
        Just(NodeEvent::EnergyDepleted),
    ]
}

proptest! {
    /// ES-13.2 asks a provisioner for NORMAL *and* weight ≥ 0.8; the second
    /// condition has no refusal of its own because it cannot fail: every way
    /// into NORMAL sets the weight to 0.8 and nothing lowers it there.
    #[test]
    fn a_normal_node_always_weighs_point_eight(
        steps in proptest::collection::vec((own_event(), 0u64..4 * HOUR), 1..200),
    ) {
        let mut n = NodeLifecycle::new(id(9), own_cfg());
        let _ = n.handle(NodeEvent::PowerOn, 0);
        let _ = n.handle(NodeEvent::PufOk, 0);
        let mut t = 0u64;
        for (ev, dt) in steps {
            t += dt;
            let _ = n.handle(ev, t);
            if n.state() == OwnState::Normal {
                prop_assert_eq!(n.weight(), NORMAL_WEIGHT);
            }
        }
    }
}

/// A vote that would call the suspect anomalous at its timeout, after the
/// suspect moved on from the asked reading by more than the question's
/// difference, or by a real amount while its deviation more than doubled,
/// is outgrown: PYREXIA and a new vote, not REJECTION on stale answers. A
/// suspect that stays where it was asked about is rejected as before.
#[test]
fn a_vote_the_suspect_moved_on_from_is_asked_again() {
    let at = |sigma, suspect_reading| {
        SubjectEvent::Deviation(DeviationSample {
            sigma,
            quantity: QuantityType::Temperature,
            suspect_reading,
            my_reading: 2200,
        })
    };
    let decided = |later: SubjectEvent| {
        let mut c = Cluster::new(10, 8, 1);
        let mut r = normal(0);
        let _ = r.handle(at(3.5, 2340), 0, &mut c);
        let q = query_id(&r);
        for k in 1..=3 {
            let _ = r.handle(reply(k, Verdict::ContradictsSuspect, q), k as u64, &mut c);
        }
        let _ = r.handle(later, 200_000, &mut c);
        let s = r.handle(SubjectEvent::Tick, 301_000, &mut c);
        match s.audit.reason {
            Reason::VoteDecided { outcome, at_timeout: true, .. } => (outcome, r.state()),
            ref other => panic!("{other:?}"),
        }
    };
    // Asked at +1.4 °C over us; it now reads +31 °C over us (a fire's seat).
    assert_eq!(decided(at(210.0, 5300)), (VoteOutcome::Outgrown, SubjectState::Pyrexia));
    // Its deviation grew from 3.5σ to 9σ and it moved 0.6 °C the other way.
    assert_eq!(decided(at(9.0, 2280)), (VoteOutcome::Outgrown, SubjectState::Pyrexia));
    // Still where it was asked about (a spiker): rejected.
    assert_eq!(decided(at(4.0, 2345)), (VoteOutcome::SuspectAnomalous, SubjectState::Rejection));
    // Deviating more, but it barely moved (its profile tightened): rejected.
    assert_eq!(decided(at(9.0, 2360)), (VoteOutcome::SuspectAnomalous, SubjectState::Rejection));
}
