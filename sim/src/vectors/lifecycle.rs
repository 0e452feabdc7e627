//! Vector cases for `krill_core::lifecycle` (ES-3.1, ES-7.2, ES-7.6,
//! ES-10.5): scripted event sequences for a subject record and for the
//! node's own machine, the rejection cap and the responder's local verdict.
//!
//! States, reasons and actions are compared by name: a reason prints as its
//! variant (`Timeout`, `ReplyDropped(FromSuspect)`, `VoteDecided(Inconclusive)`),
//! an action as its variant, with the death reason for certificates
//! (`BroadcastDeathCertificate(PufAnomaly)`).

use super::Outcome;
use krill_core::lifecycle::{
    evaluate_inflammation_locally, rejection_cap, Cluster, DeviationSample, LifecycleAction, NodeConfig, NodeEvent,
    NodeLifecycle, OwnState, Reason, Step, SubjectEvent, SubjectRecord, SubjectState, Timers,
};
use krill_core::profile::SubjectKind;
use krill_core::wire::immune::{InflammationReply, InflammationReplyV2, Verdict};
use krill_core::{DeviceId, QuantityType};
use serde::Deserialize;

/// One input to a subject record.
#[derive(Debug, Deserialize)]
pub enum SubjectInput {
    /// A deviation of `sigma`, with the readings behind it.
    Deviation {
        /// σ.
        sigma: f32,
        /// The subject's reading.
        #[serde(default)]
        suspect_reading: i16,
        /// Ours.
        #[serde(default)]
        my_reading: i16,
    },
    /// A physically impossible reading.
    Innate,
    /// An INFLAMMATION_REPLY.
    Reply {
        /// Who sent it.
        responder: DeviceId,
        /// Its verdict.
        verdict: Verdict,
        /// Echoed query id; absent for a version-1 reply.
        query_id: Option<u32>,
        /// Suspect named in the reply; the record's subject if absent.
        suspect: Option<DeviceId>,
    },
    /// Timer check.
    Tick,
    /// A frame from the subject.
    Heard,
    /// Its profile was frozen.
    ProfileFrozen,
    /// A remediation result.
    Remediation(bool),
}

/// One scripted step with optional expectations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectStep {
    /// Monotonic time, ms.
    pub at_ms: u64,
    /// The input.
    pub input: SubjectInput,
    /// Expected state afterwards.
    pub state: Option<SubjectState>,
    /// Expected reason name.
    pub reason: Option<String>,
    /// Expected action names, in order.
    pub actions: Option<Vec<String>>,
}

/// A subject record driven through steps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectScript {
    /// The subject.
    pub subject: DeviceId,
    /// Nano or Dust.
    #[serde(default = "nano")]
    pub kind: SubjectKind,
    /// Initial state.
    pub start: SubjectState,
    /// Monitored cluster size (rejection cap).
    pub cluster_size: u16,
    /// Neighbours a query reaches.
    pub responders: u8,
    /// First query id.
    pub first_query_id: u32,
    /// The steps.
    pub steps: Vec<SubjectStep>,
}

fn nano() -> SubjectKind {
    SubjectKind::Nano
}

/// One scripted step of the own machine.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStep {
    /// Monotonic time, ms.
    pub at_ms: u64,
    /// The input.
    pub input: NodeEvent,
    /// Expected state afterwards.
    pub state: Option<OwnState>,
    /// Expected neonatal observed time afterwards, ms.
    pub observed_ms: Option<u64>,
    /// Expected weight afterwards.
    pub weight: Option<u8>,
    /// Expected reason name.
    pub reason: Option<String>,
    /// Expected action names, in order.
    pub actions: Option<Vec<String>>,
}

/// The node's own machine driven through steps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeScript {
    /// Neonatal duration, ms.
    pub neonatal_duration_ms: u64,
    /// Whether a pre-signed death certificate is stored.
    pub presigned_death_certificate: bool,
    /// The steps.
    pub steps: Vec<NodeStep>,
}

/// Several subjects hit by innate violations in one epoch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapCase {
    /// Cluster size.
    pub cluster_size: u16,
    /// Subjects violating at `at_ms`.
    pub subjects: u8,
    /// When.
    pub at_ms: u64,
    /// Expected per-epoch cap.
    pub cap: u16,
    /// Expected rejections at `at_ms`.
    pub rejected: usize,
    /// A later tick of every record.
    pub retry_at_ms: u64,
    /// Expected rejections in total after it.
    pub rejected_after_retry: usize,
}

/// The responder's local verdict.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalVerdictCase {
    /// Our reading, if we have one of that quantity.
    pub my_reading: Option<i16>,
    /// The suspect's.
    pub suspect_reading: i16,
    /// Quantity.
    pub quantity: QuantityType,
    /// Distance to the suspect.
    pub distance_cm: u32,
    /// Time between the readings.
    pub time_delta_ms: u32,
    /// Expected verdict.
    pub verdict: Verdict,
}

/// A lifecycle case.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// A scripted subject record.
    Subject(SubjectScript),
    /// A scripted own machine.
    Node(NodeScript),
    /// The per-epoch rejection cap.
    Cap(CapCase),
    /// `evaluate_inflammation_locally`.
    LocalVerdict(LocalVerdictCase),
}

fn head(debug: String) -> String {
    match debug.find([' ', '(', '{']) {
        Some(i) => debug[..i].to_string(),
        None => debug,
    }
}

fn reason_name(r: &Reason) -> String {
    match r {
        Reason::ReplyDropped(d) => format!("ReplyDropped({d:?})"),
        Reason::VoteDecided { outcome, .. } => format!("VoteDecided({outcome:?})"),
        other => head(format!("{other:?}")),
    }
}

fn action_name(a: &LifecycleAction) -> String {
    match a {
        LifecycleAction::BroadcastDeathCertificate(r) => format!("BroadcastDeathCertificate({r:?})"),
        other => head(format!("{other:?}")),
    }
}

fn check_step(o: &mut Outcome, i: usize, step: &Step, reason: &Option<String>, actions: &Option<Vec<String>>) {
    let got = reason_name(&step.audit.reason);
    match reason {
        Some(want) => o.exact(&format!("step {i} reason"), got, want.clone()),
        None => o.value(&format!("step {i} reason"), got),
    }
    let got: Vec<String> = step.actions.iter().map(action_name).collect();
    match actions {
        Some(want) => o.exact(&format!("step {i} actions"), got, want.clone()),
        None if !got.is_empty() => o.value(&format!("step {i} actions"), got),
        None => {}
    }
}

fn run_subject(s: &SubjectScript) -> Outcome {
    let mut o = Outcome::default();
    let mut c = Cluster::new(s.cluster_size, s.responders, s.first_query_id);
    let mut r = SubjectRecord::<{ krill_core::MAX_NEIGHBORS }>::new(s.subject, s.kind, s.start, 0, Timers::default());
    let mut last_sample =
        DeviationSample { sigma: 0.0, quantity: QuantityType::Temperature, suspect_reading: 0, my_reading: 0 };
    for (i, st) in s.steps.iter().enumerate() {
        let ev = match &st.input {
            SubjectInput::Deviation { sigma, suspect_reading, my_reading } => {
                last_sample = DeviationSample {
                    sigma: *sigma,
                    quantity: QuantityType::Temperature,
                    suspect_reading: *suspect_reading,
                    my_reading: *my_reading,
                };
                SubjectEvent::Deviation(last_sample)
            }
            SubjectInput::Innate => {
                SubjectEvent::InnateViolation(DeviationSample { sigma: f32::INFINITY, ..last_sample })
            }
            SubjectInput::Reply { responder, verdict, query_id, suspect } => SubjectEvent::Reply {
                responder: *responder,
                reply: InflammationReply {
                    suspect_id: suspect.unwrap_or(s.subject),
                    verdict: *verdict,
                    own_reading: 0,
                    own_confidence: 255,
                    v2: query_id.map(|query_id| InflammationReplyV2 { query_id, timestamp: 0 }),
                },
            },
            SubjectInput::Tick => SubjectEvent::Tick,
            SubjectInput::Heard => SubjectEvent::Heard,
            SubjectInput::ProfileFrozen => SubjectEvent::ProfileFrozen,
            SubjectInput::Remediation(ok) => SubjectEvent::RemediationResult(*ok),
        };
        let step = r.handle(ev, st.at_ms, &mut c);
        match st.state {
            Some(want) => o.exact(&format!("step {i} state"), r.state(), want),
            None => o.value(&format!("step {i} state"), r.state()),
        }
        check_step(&mut o, i, &step, &st.reason, &st.actions);
    }
    o.value("boundary observations", r.boundary().observations());
    o
}

fn run_node(s: &NodeScript) -> Outcome {
    let mut o = Outcome::default();
    let cfg = NodeConfig {
        neonatal_duration_ms: s.neonatal_duration_ms,
        presigned_death_certificate: s.presigned_death_certificate,
        ..NodeConfig::default()
    };
    let mut n = NodeLifecycle::new(DeviceId([0x11; 8]), cfg);
    for (i, st) in s.steps.iter().enumerate() {
        let step = n.handle(st.input, st.at_ms);
        match st.state {
            Some(want) => o.exact(&format!("step {i} state"), n.state(), want),
            None => o.value(&format!("step {i} state"), n.state()),
        }
        if let Some(want) = st.observed_ms {
            o.exact(&format!("step {i} observed_ms"), n.neonatal_observed_ms(), want);
        }
        if let Some(want) = st.weight {
            o.exact(&format!("step {i} weight"), n.weight(), want);
        }
        check_step(&mut o, i, &step, &st.reason, &st.actions);
    }
    o
}

fn run_cap(c: &CapCase) -> Outcome {
    let mut o = Outcome::default();
    o.exact("cap", rejection_cap(c.cluster_size), c.cap);
    let mut cluster = Cluster::new(c.cluster_size, 4, 1);
    let mut records: Vec<SubjectRecord<4>> = (0..c.subjects)
        .map(|i| SubjectRecord::new(DeviceId([i; 8]), SubjectKind::Nano, SubjectState::Normal, 0, Timers::default()))
        .collect();
    let sample = DeviationSample {
        sigma: f32::INFINITY,
        quantity: QuantityType::Temperature,
        suspect_reading: 0,
        my_reading: 0,
    };
    let mut deferred = 0;
    for r in &mut records {
        let step = r.handle(SubjectEvent::InnateViolation(sample), c.at_ms, &mut cluster);
        if matches!(step.audit.reason, Reason::RejectionDeferred(_)) {
            deferred += 1;
        }
    }
    let rejected = |rs: &[SubjectRecord<4>]| rs.iter().filter(|r| r.state() == SubjectState::Rejection).count();
    o.exact("rejected", rejected(&records), c.rejected);
    o.exact("deferred (audited)", deferred, c.subjects as usize - c.rejected);
    for r in &mut records {
        let _ = r.handle(SubjectEvent::Tick, c.retry_at_ms, &mut cluster);
    }
    o.exact("rejected after retry", rejected(&records), c.rejected_after_retry);
    o
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    match c {
        Case::Subject(s) => run_subject(s),
        Case::Node(s) => run_node(s),
        Case::Cap(c) => run_cap(c),
        Case::LocalVerdict(v) => {
            let mut o = Outcome::default();
            let got = evaluate_inflammation_locally(
                v.my_reading,
                v.suspect_reading,
                v.quantity,
                v.distance_cm,
                v.time_delta_ms,
            );
            o.exact("verdict", got, v.verdict);
            o
        }
    }
}
