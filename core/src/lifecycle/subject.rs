//! The per-subject lifecycle record (ES-3.1 transitions, ES-10.5 timeouts),
//! one per monitored neighbour or Dust device (SPEC-NOTES 7).
//!
//! Deviations are graded with [`DeviationVerdict::classify`] on σ (the
//! tenths-stored thresholds converted by `sigma_tenths`, SPEC-NOTES 23; Dust
//! subjects get the relaxed ES-16.2 bands), and the spec's three
//! `(NORMAL, DEVIATION(d))` arms become one match on the band. Every
//! transition goes through one function that sets `entered_at` and resets
//! the per-state counters (SPEC-NOTES 24).

use super::boundary::BoundaryProfile;
use super::budget::RejectionBudget;
use super::vote::{ActiveQuery, DropReason, VoteOutcome};
use super::{to_tenths, AnyState, LifecycleAction, Reason, Step, Timers, NEONATAL_WEIGHT, NORMAL_WEIGHT};
use crate::profile::{DeviationVerdict, SubjectKind};
use crate::types::{DeviceId, QuantityType, Reading, Weight, MAX_NEIGHBORS};
use crate::wire::immune::{InflammationReply, RejectionReason};
use half::f16;

/// Deviation values kept per subject (ES-3.1 `RingBuffer<f16, 64>`).
pub const DEVIATION_HISTORY: usize = 64;

/// Monitoring factor while a subject is in PYREXIA (ES-3.1).
const PYREXIA_MONITORING_FACTOR: u8 = 2;

/// What a monitor believes about one subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SubjectState {
    /// Its profile is still being learned; deviations are only recorded.
    Neonatal,
    /// Behaving.
    Normal,
    /// 1–2σ: watched more closely.
    Pyrexia,
    /// A vote on it is open.
    Inflammation,
    /// Isolated from consensus, weight 0.
    Rejection,
    /// Isolated for 72 h or more; remediation is being tried.
    Quarantine,
    /// Dead: forget it.
    Apoptotic,
}

/// A deviation with the readings it came from (the readings go into the
/// INFLAMMATION_QUERY and into boundary learning).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DeviationSample {
    /// The deviation, σ (NaN counts as the REJECTION band).
    pub sigma: f32,
    /// Quantity of the readings.
    pub quantity: QuantityType,
    /// The subject's reading.
    pub suspect_reading: Reading,
    /// Our own reading (or our expectation) of the same quantity.
    pub my_reading: Reading,
}

/// An input to a subject record.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SubjectEvent {
    /// A deviation from the profile or the consistency check.
    Deviation(DeviationSample),
    /// The subject reported a physically impossible value (Stratum 0).
    InnateViolation(DeviationSample),
    /// An INFLAMMATION_REPLY about this subject, already signature-checked.
    Reply {
        /// Who sent it.
        responder: DeviceId,
        /// The reply.
        reply: InflammationReply,
    },
    /// Time passed; check the timers.
    Tick,
    /// A signed frame (heartbeat or other) came from the subject.
    Heard,
    /// Its profile is learned and frozen: leave NEONATAL.
    ProfileFrozen,
    /// Answer to [`LifecycleAction::AttemptRemediation`].
    RemediationResult(bool),
}

/// What a monitor knows about the cluster, shared by its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Cluster {
    /// Monitored subjects, for the rejection cap.
    pub size: u16,
    /// Neighbours a query reaches, the suspect excluded.
    pub responders: u8,
    /// Rejections made this epoch.
    pub budget: RejectionBudget,
    next_query_id: u32,
}

impl Cluster {
    /// A cluster whose query ids start at `first_query_id` (draw it at
    /// random so ids don't repeat across reboots; 0 is skipped).
    pub fn new(size: u16, responders: u8, first_query_id: u32) -> Self {
        Cluster { size, responders, budget: RejectionBudget::new(), next_query_id: first_query_id }
    }

    /// A fresh non-zero query id.
    pub fn next_query_id(&mut self) -> u32 {
        if self.next_query_id == 0 {
            self.next_query_id = 1;
        }
        let id = self.next_query_id;
        self.next_query_id = self.next_query_id.wrapping_add(1);
        id
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct PendingRejection {
    reason: RejectionReason,
    sigma: f32,
    query_id: u32,
}

/// The lifecycle record of one monitored subject.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SubjectRecord<const R: usize = MAX_NEIGHBORS> {
    subject: DeviceId,
    kind: SubjectKind,
    state: SubjectState,
    entered_at_ms: u64,
    last_heard_ms: u64,
    history: heapless::HistoryBuf<f16, DEVIATION_HISTORY>,
    latest_sigma: f32,
    last_sample: Option<DeviationSample>,
    consecutive_pyrexia: u16,
    query: Option<ActiveQuery<R>>,
    remediation_attempts: u8,
    remediation_pending: bool,
    next_remediation_ms: u64,
    pending_rejection: Option<PendingRejection>,
    boundary: BoundaryProfile,
    timers: Timers,
    /// Time spent in the current state before `entered_at_ms` that the
    /// monotonic clock cannot express: a record [restored](Self::restored)
    /// at boot had been in REJECTION longer than the new clock has run.
    carried_ms: u64,
}

impl<const R: usize> SubjectRecord<R> {
    /// A record first heard at `now_ms`, starting in `state` (NEONATAL for a
    /// new device, NORMAL for one whose frozen profile was adopted).
    pub fn new(subject: DeviceId, kind: SubjectKind, state: SubjectState, now_ms: u64, timers: Timers) -> Self {
        SubjectRecord {
            subject,
            kind,
            state,
            entered_at_ms: now_ms,
            last_heard_ms: now_ms,
            history: heapless::HistoryBuf::new(),
            latest_sigma: 0.0,
            last_sample: None,
            consecutive_pyrexia: 0,
            query: None,
            remediation_attempts: 0,
            remediation_pending: false,
            next_remediation_ms: 0,
            pending_rejection: None,
            boundary: BoundaryProfile::default(),
            timers,
            carried_ms: 0,
        }
    }

    /// A record rebuilt at boot from a stored standing
    /// (`persist::SubjectStanding`): in REJECTION or QUARANTINE for `age_ms`
    /// already (measured on the Unix clock, since the monotonic one restarts
    /// at boot), with `remediation_attempts` failed remediations (QUARANTINE
    /// only; REJECTION starts QUARANTINE with none, as at run time).
    ///
    /// The REJECTION timeout counts the whole age, also when it is longer
    /// than the monotonic clock has run (`now_ms`): the record is entered at
    /// 0 and carries the rest until it leaves REJECTION. QUARANTINE resumes
    /// the ES-3.1 schedule (attempt `k` is due `k` remediation intervals
    /// after entering): with `a` failures behind it, attempt `a + 1` is due
    /// `(a + 1)` intervals after the original entry, at the first tick when
    /// that time has passed (an attempt cut short by the reboot is made
    /// again). `None` for any other state: no other state is stored.
    pub fn restored(
        subject: DeviceId,
        kind: SubjectKind,
        state: SubjectState,
        age_ms: u64,
        remediation_attempts: u8,
        now_ms: u64,
        timers: Timers,
    ) -> Option<Self> {
        if !matches!(state, SubjectState::Rejection | SubjectState::Quarantine) {
            return None;
        }
        let mut r = Self::new(subject, kind, state, now_ms.saturating_sub(age_ms), timers);
        r.last_heard_ms = now_ms;
        r.carried_ms = age_ms.saturating_sub(now_ms);
        if state == SubjectState::Quarantine {
            r.remediation_attempts = remediation_attempts;
            let due_after_entry =
                timers.remediation_interval_ms.saturating_mul(u64::from(remediation_attempts).saturating_add(1));
            r.next_remediation_ms = now_ms.saturating_add(due_after_entry.saturating_sub(age_ms));
        }
        Some(r)
    }

    /// The subject.
    pub fn subject(&self) -> DeviceId {
        self.subject
    }

    /// Current state.
    pub fn state(&self) -> SubjectState {
        self.state
    }

    /// When the current state was entered (0 for a record restored with
    /// more time in its state than the monotonic clock has run; see
    /// [`SubjectRecord::time_in_state_ms`]).
    pub fn entered_at_ms(&self) -> u64 {
        self.entered_at_ms
    }

    /// How long the record has been in its current state at `now_ms`,
    /// including time carried over a reboot.
    pub fn time_in_state_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.entered_at_ms).saturating_add(self.carried_ms)
    }

    /// Last time the subject was heard.
    pub fn last_heard_ms(&self) -> u64 {
        self.last_heard_ms
    }

    /// The latest deviation, σ.
    pub fn latest_sigma(&self) -> f32 {
        self.latest_sigma
    }

    /// Recorded deviations, oldest first (f16, so ~3 significant digits).
    pub fn deviation_history(&self) -> impl Iterator<Item = f32> + '_ {
        self.history.oldest_ordered().map(|d| d.to_f32())
    }

    /// PYREXIA-band deviations seen since entering PYREXIA.
    pub fn consecutive_pyrexia(&self) -> u16 {
        self.consecutive_pyrexia
    }

    /// The open vote, if any.
    pub fn active_query(&self) -> Option<&ActiveQuery<R>> {
        self.query.as_ref()
    }

    /// Failed remediation attempts in this QUARANTINE.
    pub fn remediation_attempts(&self) -> u8 {
        self.remediation_attempts
    }

    /// True while a rejection waits for the per-epoch cap.
    pub fn rejection_pending(&self) -> bool {
        self.pending_rejection.is_some()
    }

    /// The learned boundary offset (ES-7.6).
    pub fn boundary(&self) -> &BoundaryProfile {
        &self.boundary
    }

    /// Our own assessment of the subject's weight.
    pub fn assessed_weight(&self) -> Weight {
        match self.state {
            SubjectState::Neonatal => NEONATAL_WEIGHT,
            SubjectState::Normal | SubjectState::Pyrexia | SubjectState::Inflammation => NORMAL_WEIGHT,
            SubjectState::Rejection | SubjectState::Quarantine | SubjectState::Apoptotic => 0,
        }
    }

    /// The weight the pheromone field may use for a trace claiming
    /// `claimed`: our assessment, never more than the claim (SPEC-NOTES 7).
    pub fn effective_weight(&self, claimed: Weight) -> Weight {
        self.assessed_weight().min(claimed)
    }

    /// Feeds one event at `now_ms` (monotonic; an earlier time than the
    /// last one is treated as no time passing).
    pub fn handle(&mut self, event: SubjectEvent, now_ms: u64, cluster: &mut Cluster) -> Step {
        let mut step = Step::new(self.subject, now_ms, AnyState::Subject(self.state), Reason::NotApplicable);
        if self.state == SubjectState::Apoptotic {
            return step;
        }
        match event {
            SubjectEvent::Deviation(d) => self.on_deviation(d, now_ms, cluster, &mut step),
            SubjectEvent::InnateViolation(d) => {
                self.record(&d);
                if self.pending_rejection.is_none()
                    && !matches!(self.state, SubjectState::Rejection | SubjectState::Quarantine)
                {
                    step.audit.reason = Reason::InnateViolation;
                    self.reject(RejectionReason::InnateBounds, 0, now_ms, cluster, &mut step);
                } else {
                    step.audit.reason = Reason::DeviationRecorded { sigma: d.sigma };
                }
            }
            SubjectEvent::Reply { responder, reply } => self.on_reply(responder, &reply, now_ms, cluster, &mut step),
            SubjectEvent::Tick => self.on_tick(now_ms, cluster, &mut step),
            SubjectEvent::Heard => {
                self.last_heard_ms = self.last_heard_ms.max(now_ms);
                step.audit.reason = Reason::Idle;
            }
            SubjectEvent::ProfileFrozen => {
                if self.state == SubjectState::Neonatal && self.pending_rejection.is_none() {
                    step.audit.reason = Reason::ProfileFrozen;
                    self.enter(SubjectState::Normal, now_ms, &mut step);
                }
            }
            SubjectEvent::RemediationResult(ok) => self.on_remediation(ok, now_ms, &mut step),
        }
        step
    }

    fn band(&self, sigma: f32) -> DeviationVerdict {
        DeviationVerdict::classify(sigma, self.kind)
    }

    fn record(&mut self, d: &DeviationSample) {
        self.history.write(f16::from_f32(d.sigma));
        self.latest_sigma = d.sigma;
        self.last_sample = Some(*d);
    }

    /// The single place states change (SPEC-NOTES 24).
    fn enter(&mut self, to: SubjectState, now_ms: u64, step: &mut Step) {
        self.state = to;
        self.entered_at_ms = now_ms;
        self.carried_ms = 0;
        self.consecutive_pyrexia = 0;
        self.query = None;
        self.remediation_attempts = 0;
        self.remediation_pending = false;
        self.next_remediation_ms = now_ms.saturating_add(self.timers.remediation_interval_ms);
        step.audit.to = AnyState::Subject(to);
    }

    fn open_query(&mut self, now_ms: u64, cluster: &mut Cluster, step: &mut Step) {
        self.enter(SubjectState::Inflammation, now_ms, step);
        let sample = self.last_sample.unwrap_or(DeviationSample {
            sigma: self.latest_sigma,
            quantity: QuantityType::Reserved(0),
            suspect_reading: 0,
            my_reading: 0,
        });
        let q = ActiveQuery::new(cluster.next_query_id(), &sample, self.subject, cluster.responders, now_ms);
        step.push(LifecycleAction::BroadcastInflammationQuery {
            query_id: q.query_id,
            suspect: self.subject,
            quantity: sample.quantity,
            suspect_reading: sample.suspect_reading,
            reporter_reading: sample.my_reading,
        });
        self.query = Some(q);
    }

    fn enter_pyrexia(&mut self, now_ms: u64, step: &mut Step) {
        self.enter(SubjectState::Pyrexia, now_ms, step);
        step.push(LifecycleAction::IncreaseMonitoring { subject: self.subject, factor: PYREXIA_MONITORING_FACTOR });
    }

    fn on_deviation(&mut self, d: DeviationSample, now_ms: u64, cluster: &mut Cluster, step: &mut Step) {
        self.record(&d);
        step.audit.reason = Reason::DeviationRecorded { sigma: d.sigma };
        if self.pending_rejection.is_some() {
            return;
        }
        let band = self.band(d.sigma);
        match (self.state, band) {
            (SubjectState::Normal, DeviationVerdict::Pyrexia) => {
                step.audit.reason = Reason::DeviationBand { sigma: d.sigma };
                self.enter_pyrexia(now_ms, step);
            }
            // ES-3.1: never reject on one deviation, always ask first.
            (
                SubjectState::Normal | SubjectState::Pyrexia,
                DeviationVerdict::Inflammation | DeviationVerdict::Rejection,
            ) => {
                step.audit.reason = Reason::DeviationBand { sigma: d.sigma };
                self.open_query(now_ms, cluster, step);
            }
            (SubjectState::Pyrexia, DeviationVerdict::Normal) => {
                step.audit.reason = Reason::DeviationBand { sigma: d.sigma };
                self.enter(SubjectState::Normal, now_ms, step);
                step.push(LifecycleAction::RestoreMonitoring { subject: self.subject });
            }
            (SubjectState::Pyrexia, DeviationVerdict::Pyrexia) => {
                self.consecutive_pyrexia = self.consecutive_pyrexia.saturating_add(1);
            }
            _ => {}
        }
    }

    fn on_reply(
        &mut self,
        responder: DeviceId,
        reply: &InflammationReply,
        now_ms: u64,
        cluster: &mut Cluster,
        step: &mut Step,
    ) {
        let min_voters = self.timers.min_voters;
        let Some(q) = self.query.as_mut() else {
            step.audit.reason = Reason::ReplyDropped(DropReason::NoActiveQuery);
            return;
        };
        match q.count(responder, reply) {
            Err(why) => step.audit.reason = Reason::ReplyDropped(why),
            Ok(tally) => match tally.outcome(false, min_voters) {
                Some(outcome) => self.decide(outcome, false, now_ms, cluster, step),
                None => step.audit.reason = Reason::ReplyCounted(tally),
            },
        }
    }

    fn decide(&mut self, outcome: VoteOutcome, at_timeout: bool, now_ms: u64, cluster: &mut Cluster, step: &mut Step) {
        let Some(q) = self.query.take() else {
            return;
        };
        step.audit.reason =
            Reason::VoteDecided { outcome, tally: q.tally, at_timeout, latest_sigma: self.latest_sigma };
        match outcome {
            VoteOutcome::EnvironmentChanged => {
                self.enter(SubjectState::Normal, now_ms, step);
                step.push(LifecycleAction::UpdateProfile { subject: self.subject });
                step.push(LifecycleAction::RestoreMonitoring { subject: self.subject });
            }
            VoteOutcome::SuspectAnomalous if self.band(self.latest_sigma) == DeviationVerdict::Rejection => {
                self.reject(RejectionReason::InflammationVote, q.query_id, now_ms, cluster, step);
            }
            VoteOutcome::SuspectAnomalous | VoteOutcome::Outgrown => self.enter_pyrexia(now_ms, step),
            VoteOutcome::Inconclusive => {
                self.boundary.observe(q.suspect_reading, q.my_reading, 0, now_ms);
                self.enter_pyrexia(now_ms, step);
            }
        }
    }

    /// True when the suspect moved on from the reading the open vote asked
    /// about: its latest reading is further from it than
    /// [`MIN_UNEXPLAINED_STEPS`](super::MIN_UNEXPLAINED_STEPS) and deviates
    /// more than twice as much, or it moved on the way it differed from
    /// ours by more than that difference. The answers then judged a
    /// reading that is gone.
    fn outgrown(&self) -> bool {
        let (Some(q), Some(last)) = (self.query.as_ref(), self.last_sample) else {
            return false;
        };
        let asked = i32::from(q.suspect_reading) - i32::from(q.my_reading);
        let since = i32::from(last.suspect_reading) - i32::from(q.suspect_reading);
        let grew = last.sigma > 2.0 * q.sigma && since.unsigned_abs() as f32 >= super::MIN_UNEXPLAINED_STEPS;
        last.quantity == q.quantity && (grew || (asked != 0 && since * asked.signum() > asked.abs()))
    }

    /// Moves into REJECTION if the epoch's cap allows; otherwise the record
    /// stays where it is with the rejection pending, and ticks retry.
    fn reject(&mut self, reason: RejectionReason, query_id: u32, now_ms: u64, cluster: &mut Cluster, step: &mut Step) {
        let sigma = self.latest_sigma;
        match cluster.budget.try_take(now_ms, cluster.size) {
            Ok(()) => {
                self.pending_rejection = None;
                self.enter(SubjectState::Rejection, now_ms, step);
                step.push(LifecycleAction::IsolateFromConsensus { subject: self.subject });
                step.push(LifecycleAction::SendRejectionNotice {
                    subject: self.subject,
                    reason,
                    deviation_tenths: to_tenths(sigma),
                    query_id,
                });
            }
            Err(capped) => {
                self.pending_rejection = Some(PendingRejection { reason, sigma, query_id });
                step.audit.reason = Reason::RejectionDeferred(capped);
            }
        }
    }

    fn on_tick(&mut self, now_ms: u64, cluster: &mut Cluster, step: &mut Step) {
        step.audit.reason = Reason::Idle;
        // SPEC-NOTES 10: the heartbeat timeout applies in every state.
        let silent_ms = now_ms.saturating_sub(self.last_heard_ms);
        if silent_ms > self.timers.heartbeat_timeout_ms {
            step.audit.reason = Reason::HeartbeatTimeout { silent_ms };
            self.pending_rejection = None;
            self.enter(SubjectState::Apoptotic, now_ms, step);
            step.push(LifecycleAction::ForgetSubject { subject: self.subject });
            return;
        }
        if let Some(p) = self.pending_rejection {
            self.latest_sigma = p.sigma;
            self.reject(p.reason, p.query_id, now_ms, cluster, step);
            if self.state == SubjectState::Rejection {
                step.audit.reason = Reason::DeferredRejectionAdmitted { sigma: p.sigma };
            }
            return;
        }
        let elapsed_ms = self.time_in_state_ms(now_ms);
        let timeout = |limit_ms: u64| (elapsed_ms > limit_ms).then_some(Reason::Timeout { elapsed_ms, limit_ms });
        match self.state {
            SubjectState::Pyrexia => {
                if let Some(r) = timeout(self.timers.pyrexia_ms) {
                    step.audit.reason = r;
                    self.open_query(now_ms, cluster, step);
                }
            }
            SubjectState::Inflammation => {
                if timeout(self.timers.inflammation_ms).is_some() {
                    let outcome = self
                        .query
                        .as_ref()
                        .and_then(|q| q.tally.outcome(true, self.timers.min_voters))
                        .unwrap_or(VoteOutcome::Inconclusive);
                    let outcome = match outcome {
                        VoteOutcome::SuspectAnomalous if self.outgrown() => VoteOutcome::Outgrown,
                        o => o,
                    };
                    self.decide(outcome, true, now_ms, cluster, step);
                }
            }
            SubjectState::Rejection => {
                if let Some(r) = timeout(self.timers.rejection_ms) {
                    step.audit.reason = r;
                    self.enter(SubjectState::Quarantine, now_ms, step);
                }
            }
            SubjectState::Quarantine => self.remediation_tick(now_ms, step),
            SubjectState::Neonatal | SubjectState::Normal | SubjectState::Apoptotic => {}
        }
    }

    /// One attempt per interval (SPEC-NOTES 24): an attempt is launched when
    /// the interval since the last one (or since entering) has passed, and
    /// an attempt left unanswered for a whole interval counts as failed.
    fn remediation_tick(&mut self, now_ms: u64, step: &mut Step) {
        if now_ms <= self.next_remediation_ms {
            return;
        }
        if self.remediation_pending {
            self.remediation_pending = false;
            if self.fail_remediation(now_ms, step) {
                return;
            }
        }
        let attempt = self.remediation_attempts.saturating_add(1);
        self.remediation_pending = true;
        self.next_remediation_ms = now_ms.saturating_add(self.timers.remediation_interval_ms);
        step.audit.reason = Reason::RemediationDue { attempt };
        step.push(LifecycleAction::AttemptRemediation { subject: self.subject, attempt });
    }

    /// Counts a failure; true when it exhausted the attempts.
    fn fail_remediation(&mut self, now_ms: u64, step: &mut Step) -> bool {
        self.remediation_attempts = self.remediation_attempts.saturating_add(1);
        step.audit.reason = Reason::RemediationFailed { attempts: self.remediation_attempts };
        if self.remediation_attempts >= self.timers.max_remediation_attempts {
            self.enter(SubjectState::Apoptotic, now_ms, step);
            step.push(LifecycleAction::ForgetSubject { subject: self.subject });
            return true;
        }
        false
    }

    fn on_remediation(&mut self, ok: bool, now_ms: u64, step: &mut Step) {
        if self.state != SubjectState::Quarantine || !self.remediation_pending {
            return;
        }
        self.remediation_pending = false;
        if ok {
            step.audit.reason = Reason::Remediated;
            self.enter(SubjectState::Neonatal, now_ms, step);
            step.push(LifecycleAction::RelearnProfile { subject: self.subject });
        } else {
            let _ = self.fail_remediation(now_ms, step);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 24 * HOUR;
    const ID: DeviceId = DeviceId([0x5A; 8]);

    fn held(state: SubjectState, age_ms: u64, attempts: u8, now_ms: u64) -> SubjectRecord {
        SubjectRecord::restored(ID, SubjectKind::Nano, state, age_ms, attempts, now_ms, Timers::default())
            .expect("REJECTION and QUARANTINE can be restored")
    }

    /// The attempts a tick at `now_ms` launches.
    fn attempts_at(r: &mut SubjectRecord, now_ms: u64) -> heapless::Vec<u8, 4> {
        let step = r.handle(SubjectEvent::Tick, now_ms, &mut Cluster::new(10, 4, 1));
        step.actions
            .iter()
            .filter_map(|a| match a {
                LifecycleAction::AttemptRemediation { subject, attempt } if *subject == ID => Some(*attempt),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn quarantine_keeps_its_attempts_and_the_es31_schedule() {
        // Entered 2.5 days before a boot at mono 0 with 2 failures: ES-3.1
        // makes attempt 3 due 3 days after entering, half a day from now.
        let boot = 0;
        let mut r = held(SubjectState::Quarantine, 5 * DAY / 2, 2, boot);
        assert_eq!((r.state(), r.remediation_attempts(), r.assessed_weight()), (SubjectState::Quarantine, 2, 0));
        assert!(attempts_at(&mut r, boot + DAY / 2 - 1000).is_empty(), "not before entered_at + 3 days");
        assert_eq!(attempts_at(&mut r, boot + DAY / 2 + 1000).as_slice(), &[3]);
        // The third failure is the last one (ES-3.1: attempts >= 3 -> APOPTOTIC).
        let step = r.handle(SubjectEvent::RemediationResult(false), boot + DAY / 2 + 2000, &mut Cluster::new(10, 4, 1));
        assert_eq!(r.state(), SubjectState::Apoptotic);
        assert!(step.actions.contains(&LifecycleAction::ForgetSubject { subject: ID }));

        // Without the stored count the same record would have started over at attempt 1.
        let mut fresh = held(SubjectState::Quarantine, 5 * DAY / 2, 0, boot);
        assert_eq!(attempts_at(&mut fresh, boot + 1000).as_slice(), &[1]);
    }

    #[test]
    fn an_overdue_attempt_runs_at_the_first_tick_and_the_schedule_goes_on() {
        // One failure, entered 5 days ago: attempt 2 was due 3 days ago.
        let boot = 7 * HOUR;
        let mut r = held(SubjectState::Quarantine, 5 * DAY, 1, boot);
        assert_eq!(attempts_at(&mut r, boot + 1000).as_slice(), &[2]);
        let _ = r.handle(SubjectEvent::RemediationResult(false), boot + 2000, &mut Cluster::new(10, 4, 1));
        assert_eq!((r.state(), r.remediation_attempts()), (SubjectState::Quarantine, 2));
        assert!(attempts_at(&mut r, boot + 1000 + DAY - 1000).is_empty(), "one interval between attempts");
        assert_eq!(attempts_at(&mut r, boot + 1000 + DAY + 1000).as_slice(), &[3]);
        // Success restarts the lifecycle.
        let _ = r.handle(SubjectEvent::RemediationResult(true), boot + 2 * DAY, &mut Cluster::new(10, 4, 1));
        assert_eq!((r.state(), r.remediation_attempts()), (SubjectState::Neonatal, 0));
    }

    #[test]
    fn quarantine_schedule_matches_es31_for_every_age() {
        // ES-10.5: attempt when now - entered_at > 86400 * (attempts + 1).
        for attempts in 0..3u8 {
            for age_h in [0u64, 1, 23, 24, 25, 47, 49, 71, 73, 200] {
                for boot in [0, 30 * HOUR] {
                    let mut r = held(SubjectState::Quarantine, age_h * HOUR, attempts, boot);
                    let due_age = DAY * (u64::from(attempts) + 1);
                    let first =
                        if age_h * HOUR >= due_age { boot + 1000 } else { boot + due_age - age_h * HOUR + 1000 };
                    if first > boot + 1000 {
                        assert!(attempts_at(&mut r, first - 2000).is_empty(), "a={attempts} age={age_h} h boot={boot}");
                    }
                    assert_eq!(attempts_at(&mut r, first).as_slice(), &[attempts + 1], "a={attempts} age={age_h} h");
                }
            }
        }
    }

    #[test]
    fn rejection_counts_the_age_the_new_clock_cannot_hold() {
        // 70 h in REJECTION, the board's clock at 0: 2 h of the 72 remain.
        let mut r = held(SubjectState::Rejection, 70 * HOUR, 0, 0);
        assert_eq!((r.entered_at_ms(), r.time_in_state_ms(0)), (0, 70 * HOUR));
        assert!(attempts_at(&mut r, 2 * HOUR - 1000).is_empty());
        assert_eq!(r.state(), SubjectState::Rejection);
        let _ = attempts_at(&mut r, 2 * HOUR + 1000);
        assert_eq!((r.state(), r.remediation_attempts()), (SubjectState::Quarantine, 0));
        assert_eq!(r.time_in_state_ms(2 * HOUR + 1000), 0, "the carried age ends with REJECTION");
        // QUARANTINE then runs on the configured interval from its own entry.
        assert!(attempts_at(&mut r, 2 * HOUR + 1000 + DAY - 1000).is_empty());
        assert_eq!(attempts_at(&mut r, 2 * HOUR + 1000 + DAY + 1000).as_slice(), &[1]);

        // A clock that has run longer than the age enters it in the past.
        let r = held(SubjectState::Rejection, 10 * HOUR, 2, 20 * HOUR);
        assert_eq!(
            (r.entered_at_ms(), r.time_in_state_ms(20 * HOUR), r.remediation_attempts()),
            (10 * HOUR, 10 * HOUR, 0)
        );
    }

    #[test]
    fn only_held_states_are_restored() {
        for s in [
            SubjectState::Neonatal,
            SubjectState::Normal,
            SubjectState::Pyrexia,
            SubjectState::Inflammation,
            SubjectState::Apoptotic,
        ] {
            let r = SubjectRecord::<4>::restored(ID, SubjectKind::Dust, s, HOUR, 1, 0, Timers::default());
            assert!(r.is_none(), "{s:?}");
        }
        let r =
            SubjectRecord::<4>::restored(ID, SubjectKind::Dust, SubjectState::Rejection, HOUR, 0, 0, Timers::default());
        assert_eq!(r.map(|r| (r.state(), r.assessed_weight())), Some((SubjectState::Rejection, 0)));
    }
}
