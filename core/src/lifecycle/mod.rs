//! Lifecycle state machines and the inflammation protocol (ES-3.1, ES-7.2,
//! ES-7.6, ES-10.3 – ES-10.5).
//!
//! Two machines, kept apart (SPEC-NOTES 7):
//! - [`SubjectRecord`]: what a monitoring node believes about ONE monitored
//!   subject (a neighbour or a Dust device). ES-10.3 feeds a neighbour's
//!   deviation into the receiver's own `NodeState`; here every subject has
//!   its own record, and the record's assessed weight is what the pheromone
//!   field may use, never more than the subject's claim.
//! - [`NodeLifecycle`]: the node's own life (BOOTING → NEONATAL → NORMAL,
//!   own-sensor faults, self-quarantine, death).
//!
//! Both are sans-IO: time is a `u64` monotonic millisecond clock passed in
//! (SPEC-NOTES 25), and every call returns a [`Step`] with the actions the
//! caller must carry out and an [`Audit`] saying why, with the figures.
//!
//! Resolved here (details and pinning tests in `docs/spec-deviations.md`):
//! SPEC-NOTES 7 (per-subject records, capped weight), 10 (heartbeat timeout
//! from every state), 11 (neonatal observed time pauses in SOLO), 22 (vote by
//! query id, distinct non-suspect responders, decided at quorum or timeout,
//! bounded reply set, ties resolved per ES-7.6), 23 (σ thresholds in tenths,
//! guarded arms), 24 (`entered_at` and per-state counters reset on every
//! transition, one remediation attempt per 24 h), 25 (u64 ms timers), 42
//! (`REJECTION_RATE_LIMIT`, [`evaluate_inflammation_locally`],
//! [`handle_consistency_result`]).

mod boundary;
mod budget;
mod node;
mod subject;
#[cfg(test)]
mod tests;
mod vote;

pub use boundary::{
    BoundaryProfile, BOUNDARY_ACCEPT_CONFIDENCE, BOUNDARY_FULL_CONFIDENCE_MS, BOUNDARY_MIN_OBSERVATIONS,
};
pub use budget::{rejection_cap, RejectionBudget, RejectionCapped};
pub use node::{NodeConfig, NodeEvent, NodeLifecycle, OwnState, SENSOR_FAULT_LIMIT};
pub use subject::{Cluster, DeviationSample, SubjectEvent, SubjectRecord, SubjectState, DEVIATION_HISTORY};
pub use vote::{
    evaluate_inflammation_locally, evaluate_inflammation_with_history, handle_consistency_result, ActiveQuery,
    ConsistencyEvent, DropReason, LocalHistory, Tally, VoteOutcome, ANOMALY_MARGIN, FAR_RESPONDER_CM,
    MIN_CORROBORATING, MIN_UNEXPLAINED_STEPS,
};

use crate::types::{DeviceId, QuantityType, Reading, Weight};
use crate::wire::immune::RejectionReason;
use crate::wire::metabolic::DeathReason;

/// Weight of a neonatal device, 0.3 × 255 (ES-3.1).
pub const NEONATAL_WEIGHT: Weight = 77;
/// Weight of a device in NORMAL, 0.8 × 255 (ES-3.1).
pub const NORMAL_WEIGHT: Weight = 204;
/// At most this many actions come out of one step.
pub const MAX_STEP_ACTIONS: usize = 4;

/// Timer lengths and vote rules; [`Timers::default`] holds the spec's values
/// in milliseconds. Every timeout fires strictly AFTER its length, as the
/// spec's `>` says: at exactly 6 h a PYREXIA record stays, at 6 h + 1 ms it
/// escalates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Timers {
    /// PYREXIA escalates to INFLAMMATION after this (21 600 s).
    pub pyrexia_ms: u64,
    /// An unfinished inflammation vote is decided after this (300 s).
    pub inflammation_ms: u64,
    /// REJECTION becomes QUARANTINE after this (259 200 s).
    pub rejection_ms: u64,
    /// One remediation attempt per this interval in QUARANTINE (86 400 s).
    pub remediation_interval_ms: u64,
    /// Failed remediations before APOPTOTIC (3).
    pub max_remediation_attempts: u8,
    /// Silence after which a subject (or the node itself) is dead
    /// (`T_HALF_STRUCTURAL`, 90 days).
    pub heartbeat_timeout_ms: u64,
    /// Fewest non-abstaining distinct voters a vote needs to decide
    /// anything; fewer is inconclusive (ES-7.6: two sensors alone can't
    /// outvote each other).
    pub min_voters: u8,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            pyrexia_ms: 21_600_000,
            inflammation_ms: 300_000,
            rejection_ms: 259_200_000,
            remediation_interval_ms: 86_400_000,
            max_remediation_attempts: 3,
            heartbeat_timeout_ms: crate::types::T_HALF_STRUCTURAL as u64 * 1000,
            min_voters: 2,
        }
    }
}

/// What the caller must do after a step.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum LifecycleAction {
    /// Watch the subject more closely (ES-3.1 `increase_monitoring_frequency`).
    IncreaseMonitoring {
        /// The subject.
        subject: DeviceId,
        /// Multiplier on the monitoring frequency.
        factor: u8,
    },
    /// Back to the normal monitoring frequency.
    RestoreMonitoring {
        /// The subject.
        subject: DeviceId,
    },
    /// Broadcast an INFLAMMATION_QUERY (v2, with this query id).
    BroadcastInflammationQuery {
        /// Id the replies must echo.
        query_id: u32,
        /// The suspect.
        suspect: DeviceId,
        /// Quantity of the readings.
        quantity: QuantityType,
        /// The suspect's reading.
        suspect_reading: Reading,
        /// Our own reading.
        reporter_reading: Reading,
    },
    /// Neighbours saw the same change: accept the subject's latest readings
    /// into its profile (ES-3.1 `update_profile`).
    UpdateProfile {
        /// The subject.
        subject: DeviceId,
    },
    /// Stop counting the subject in consensus and the pheromone field.
    IsolateFromConsensus {
        /// The subject.
        subject: DeviceId,
    },
    /// Broadcast a REJECTION_NOTICE.
    SendRejectionNotice {
        /// The rejected subject.
        subject: DeviceId,
        /// Why.
        reason: RejectionReason,
        /// Latest deviation, tenths of σ, saturated.
        deviation_tenths: u16,
        /// The vote that decided it, 0 if none.
        query_id: u32,
    },
    /// Check whether a quarantined subject behaves again (its recent
    /// readings pass the consistency check); report with
    /// [`SubjectEvent::RemediationResult`].
    AttemptRemediation {
        /// The subject.
        subject: DeviceId,
        /// 1-based attempt number.
        attempt: u8,
    },
    /// The subject was remediated: rebuild its profile from scratch.
    RelearnProfile {
        /// The subject.
        subject: DeviceId,
    },
    /// The subject is dead: drop its profile, invalidate its traces.
    ForgetSubject {
        /// The subject.
        subject: DeviceId,
    },
    /// Broadcast a DEATH_CERTIFICATE for this node (a pre-signed one for
    /// `PufAnomaly`, see `docs/spec-deviations.md` SN-32).
    BroadcastDeathCertificate(DeathReason),
    /// Stop transmitting for good (no certificate can be sent).
    GoSilent,
    /// Freeze this node's self-signature (end of neonatal).
    FreezeProfile,
    /// Stop depositing own traces: the own sensor reads the impossible.
    SuppressOwnTraces,
    /// Deposit own traces again.
    ResumeOwnTraces,
    /// Run the own sensor self-test; report with [`NodeEvent::RemediationResult`].
    RunSelfTest {
        /// 1-based attempt number.
        attempt: u8,
    },
    /// Re-enroll as a fresh device (remediated self-quarantine).
    Reenroll,
}

/// A lifecycle state of either machine, for audit records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AnyState {
    /// A subject record's state.
    Subject(SubjectState),
    /// The node's own state.
    Own(OwnState),
}

/// Why a step did what it did, with the figures it used.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Reason {
    /// Nothing was due.
    Idle,
    /// The event does not apply in this state.
    NotApplicable,
    /// A deviation fell into a band that moves the record.
    DeviationBand {
        /// The deviation, σ.
        sigma: f32,
    },
    /// A deviation was recorded without a transition.
    DeviationRecorded {
        /// The deviation, σ.
        sigma: f32,
    },
    /// A physically impossible reading (Stratum 0).
    InnateViolation,
    /// A state timer ran out.
    Timeout {
        /// Time spent in the state.
        elapsed_ms: u64,
        /// The limit it exceeded.
        limit_ms: u64,
    },
    /// A reply was counted; the vote is still open.
    ReplyCounted(Tally),
    /// A reply was dropped.
    ReplyDropped(DropReason),
    /// The vote was decided.
    VoteDecided {
        /// What it decided.
        outcome: VoteOutcome,
        /// The counts.
        tally: Tally,
        /// True when decided by the timeout rather than at quorum.
        at_timeout: bool,
        /// The latest deviation, σ, that picks REJECTION or PYREXIA.
        latest_sigma: f32,
    },
    /// A rejection had to wait for the per-epoch cap.
    RejectionDeferred(RejectionCapped),
    /// A deferred rejection fit into this epoch's cap.
    DeferredRejectionAdmitted {
        /// The deviation it was decided on, σ.
        sigma: f32,
    },
    /// A remediation attempt is due.
    RemediationDue {
        /// 1-based attempt number.
        attempt: u8,
    },
    /// Remediation succeeded.
    Remediated,
    /// A remediation attempt failed (or was never answered).
    RemediationFailed {
        /// Failed attempts so far.
        attempts: u8,
    },
    /// Nothing heard for longer than the heartbeat timeout.
    HeartbeatTimeout {
        /// Silence, ms.
        silent_ms: u64,
    },
    /// The subject's profile was frozen: it leaves NEONATAL.
    ProfileFrozen,
    /// Neonatal observed time reached its duration.
    NeonatalComplete {
        /// Observed (non-SOLO) time, ms.
        observed_ms: u64,
    },
    /// Neonatal time was credited (or not, in SOLO).
    NeonatalProgress {
        /// Observed time so far, ms.
        observed_ms: u64,
        /// Whether the last interval counted.
        counted: bool,
    },
    /// PUF extraction succeeded.
    PufOk,
    /// PUF extraction failed.
    PufFail,
    /// The own sensor returned a physically impossible value.
    OwnSensorFault {
        /// Consecutive faults.
        consecutive: u8,
    },
    /// The own sensor reads plausibly again.
    OwnSensorRecovered,
    /// Neighbours rejected this node.
    RejectedByPeers,
    /// Power on, shutdown or energy depletion.
    Power,
}

/// One decision, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Audit {
    /// The subject (or the node itself).
    pub subject: DeviceId,
    /// When, on the monotonic clock.
    pub at_ms: u64,
    /// State before.
    pub from: AnyState,
    /// State after.
    pub to: AnyState,
    /// Why.
    pub reason: Reason,
}

/// The result of feeding one event or tick into a machine.
#[must_use = "the actions must be carried out"]
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What was decided and why.
    pub audit: Audit,
    /// What the caller must do, in order.
    pub actions: heapless::Vec<LifecycleAction, MAX_STEP_ACTIONS>,
}

impl Step {
    fn new(subject: DeviceId, at_ms: u64, from: AnyState, reason: Reason) -> Self {
        Step { audit: Audit { subject, at_ms, from, to: from, reason }, actions: heapless::Vec::new() }
    }

    /// Queues an action; a step never needs more than [`MAX_STEP_ACTIONS`],
    /// so a full list is a bug caught by the tests, not a runtime condition.
    fn push(&mut self, a: LifecycleAction) {
        let pushed = self.actions.push(a);
        debug_assert!(pushed.is_ok(), "more than MAX_STEP_ACTIONS actions in one step");
    }

    /// True when the step changed state.
    pub fn transitioned(&self) -> bool {
        self.audit.from != self.audit.to
    }
}

/// Saturating σ → tenths of σ for wire fields (NaN counts as the maximum).
pub fn to_tenths(sigma: f32) -> u16 {
    if sigma.is_nan() {
        return u16::MAX;
    }
    let t = sigma * 10.0;
    if t <= 0.0 {
        0
    } else if t >= u16::MAX as f32 {
        u16::MAX
    } else {
        t as u16
    }
}
