//! The node's own lifecycle (ES-3.1 BOOTING/NEONATAL/NORMAL/QUARANTINE/
//! APOPTOTIC, ES-7.2 neonatal pause, ES-10.2 4b own-sensor fault).
//!
//! - SPEC-NOTES 11 / ES-7.2: neonatal time is OBSERVED time. Each tick
//!   credits the interval since the previous tick only if the quorum mode in
//!   force during it (the one reported at the previous tick) was not SOLO;
//!   the node becomes NORMAL when the credit reaches the neonatal duration.
//! - SPEC-NOTES 32: PUF_FAIL broadcasts the pre-signed certificate if one is
//!   stored, otherwise the node goes silent (`docs/spec-deviations.md`).
//! - ES-10.2 4b sends `DEVIATION(3.0)` into the node's own machine for an
//!   impossible own reading, which ES-3.1 would turn into an inflammation
//!   query about itself. Instead, [`SENSOR_FAULT_LIMIT`] consecutive
//!   impossible readings put the node into SENSOR_FAULT (own traces
//!   suppressed); a plausible reading ends it, and 6 h of it (the PYREXIA
//!   timeout) leads to self-QUARANTINE with self-tests.
//! - SPEC-NOTES 10: the heartbeat timeout (no own heartbeat sent for 90 days,
//!   i.e. no energy to send one) is checked in every live state.
//! - ES-14.3 boot step 3: [`NodeLifecycle::restore`] rebuilds the machine from
//!   a [`PersistedState`], with a defined outcome for every stored code (see
//!   `docs/spec-deviations.md`, "ES-14.3 — own lifecycle restore").

use super::{AnyState, LifecycleAction, Reason, Step, Timers, NEONATAL_WEIGHT, NORMAL_WEIGHT};
use crate::persist::{lifecycle_code as lc, PersistedState};
use crate::quorum::QuorumMode;
use crate::types::{DeviceId, Timestamp, Weight, NEONATAL_DURATION};
use crate::wire::metabolic::DeathReason;

/// Consecutive impossible own readings before own traces are suppressed.
pub const SENSOR_FAULT_LIMIT: u8 = 3;

/// The node's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum OwnState {
    /// Powered off.
    Offline,
    /// Powered on, PUF extraction running.
    Booting,
    /// Building its self-signature, weight 77.
    Neonatal,
    /// Self-signature frozen, weight 204.
    Normal,
    /// The own sensor reads the impossible; traces suppressed.
    SensorFault,
    /// Isolated (rejected by peers or a persistent sensor fault); self-tests.
    Quarantine,
    /// Dead.
    Apoptotic,
}

impl OwnState {
    /// The [`lifecycle_code`](crate::persist::lifecycle_code) this state is
    /// stored as. SENSOR_FAULT has no code of its own and is stored as
    /// PYREXIA, the ES-3.1 state it replaces for the own machine.
    pub fn persist_code(self) -> u8 {
        match self {
            OwnState::Offline => lc::OFFLINE,
            OwnState::Booting => lc::BOOTING,
            OwnState::Neonatal => lc::NEONATAL,
            OwnState::Normal => lc::NORMAL,
            OwnState::SensorFault => lc::PYREXIA,
            OwnState::Quarantine => lc::QUARANTINE,
            OwnState::Apoptotic => lc::APOPTOTIC,
        }
    }
}

/// An input to the node's own machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum NodeEvent {
    /// Power came on.
    PowerOn,
    /// PUF extraction and crypto init succeeded.
    PufOk,
    /// PUF extraction failed.
    PufFail,
    /// Time passed; `mode` is the quorum mode from now on.
    Tick {
        /// Current quorum mode.
        mode: QuorumMode,
    },
    /// This node sent its heartbeat.
    HeartbeatSent,
    /// The own sensor produced a reading; `plausible` is its innate check.
    OwnReading {
        /// False when the reading is physically impossible.
        plausible: bool,
    },
    /// Neighbours rejected this node (a REJECTION_NOTICE naming it, judged
    /// credible by the caller).
    RejectedByPeers,
    /// Answer to [`LifecycleAction::RunSelfTest`].
    RemediationResult(bool),
    /// Operator shutdown.
    Shutdown,
    /// The battery is empty.
    EnergyDepleted,
}

/// Configuration of the own machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeConfig {
    /// Observed time needed to leave NEONATAL (14 days; shorter in tests and
    /// simulations).
    pub neonatal_duration_ms: u64,
    /// Timer lengths.
    pub timers: Timers,
    /// True when a pre-signed PUF_ANOMALY death certificate is stored.
    pub presigned_death_certificate: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            neonatal_duration_ms: NEONATAL_DURATION as u64 * 1000,
            timers: Timers::default(),
            presigned_death_certificate: true,
        }
    }
}

/// The node's own lifecycle.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeLifecycle {
    id: DeviceId,
    state: OwnState,
    entered_at_ms: u64,
    weight: Weight,
    profile_frozen: bool,
    neonatal_observed_ms: u64,
    last_tick_ms: u64,
    mode: QuorumMode,
    last_heartbeat_ms: u64,
    consecutive_faults: u8,
    resume: OwnState,
    remediation_attempts: u8,
    remediation_pending: bool,
    next_remediation_ms: u64,
    cfg: NodeConfig,
}

impl NodeLifecycle {
    /// A node that has never booted.
    pub fn new(id: DeviceId, cfg: NodeConfig) -> Self {
        NodeLifecycle {
            id,
            state: OwnState::Offline,
            entered_at_ms: 0,
            weight: 0,
            profile_frozen: false,
            neonatal_observed_ms: 0,
            last_tick_ms: 0,
            mode: QuorumMode::Solo,
            last_heartbeat_ms: 0,
            consecutive_faults: 0,
            resume: OwnState::Neonatal,
            remediation_attempts: 0,
            remediation_pending: false,
            next_remediation_ms: 0,
            cfg,
        }
    }

    /// The machine of a node rebooting from flash (ES-14.3 step 3), already
    /// past BOOTING (the caller restores only after the PUF came back).
    ///
    /// `now_ms` is the new monotonic clock, `now` the synced Unix clock at
    /// boot. Stored Unix times become monotonic ones by their age at `now`,
    /// saturating at 0 of the new clock: with a boot-relative monotonic clock
    /// powered-off time counts for nothing (it is not observed neonatal time,
    /// SPEC-NOTES 11, and a node that boots has the energy to send a
    /// heartbeat, SPEC-NOTES 10). A stored time ahead of `now` (clock not yet
    /// synced) ages 0.
    ///
    /// Stored code → state: OFFLINE and BOOTING (saved around a shutdown or
    /// mid-boot) resume as the PUF_OK transition would, NORMAL if the profile
    /// is frozen else NEONATAL; NEONATAL keeps its observed seconds; NORMAL
    /// (profile frozen by definition); PYREXIA → SENSOR_FAULT (how the own
    /// fault is stored) resuming to NORMAL/NEONATAL by `profile_frozen`;
    /// QUARANTINE keeps its failed remediation attempts, the next self-test
    /// one interval away; APOPTOTIC stays dead. INFLAMMATION and REJECTION
    /// are never written for the own machine and any other code is invalid:
    /// both start fresh in NEONATAL (step 6), nothing else of the record used.
    /// The weight follows the state (ES-3.1); the stored byte is not trusted.
    pub fn restore(id: DeviceId, cfg: NodeConfig, saved: &PersistedState, now_ms: u64, now: Timestamp) -> Self {
        let mut m = NodeLifecycle::new(id, cfg);
        let at = |t: Timestamp| -> u64 {
            let age_s = now.wrapping_sub(t) as i32;
            now_ms.saturating_sub((age_s.max(0) as u64).saturating_mul(1000))
        };
        let resume = if saved.profile_frozen { OwnState::Normal } else { OwnState::Neonatal };
        let state = match saved.lifecycle {
            lc::OFFLINE | lc::BOOTING => resume,
            lc::NEONATAL => OwnState::Neonatal,
            lc::NORMAL => OwnState::Normal,
            lc::PYREXIA => OwnState::SensorFault,
            lc::QUARANTINE => OwnState::Quarantine,
            lc::APOPTOTIC => OwnState::Apoptotic,
            _ => {
                m.state = OwnState::Neonatal;
                m.entered_at_ms = now_ms;
                m.weight = NEONATAL_WEIGHT;
                m.last_tick_ms = now_ms;
                m.last_heartbeat_ms = now_ms;
                m.next_remediation_ms = now_ms.saturating_add(cfg.timers.remediation_interval_ms);
                return m;
            }
        };
        m.state = state;
        m.resume = resume;
        m.profile_frozen = saved.profile_frozen || state == OwnState::Normal;
        m.neonatal_observed_ms = if m.profile_frozen {
            cfg.neonatal_duration_ms.max((saved.neonatal_observed_s as u64).saturating_mul(1000))
        } else {
            (saved.neonatal_observed_s as u64).saturating_mul(1000)
        };
        m.entered_at_ms =
            if matches!(saved.lifecycle, lc::OFFLINE | lc::BOOTING) { now_ms } else { at(saved.entered_at) };
        m.weight = match state {
            OwnState::Neonatal => NEONATAL_WEIGHT,
            OwnState::Normal => NORMAL_WEIGHT,
            OwnState::SensorFault if resume == OwnState::Normal => NORMAL_WEIGHT,
            OwnState::SensorFault => NEONATAL_WEIGHT,
            _ => 0,
        };
        m.last_tick_ms = now_ms;
        m.last_heartbeat_ms = at(saved.last_heartbeat);
        if state == OwnState::Quarantine {
            m.remediation_attempts = saved.remediation_attempts;
        }
        m.next_remediation_ms = now_ms.saturating_add(cfg.timers.remediation_interval_ms);
        m
    }

    /// Current state.
    pub fn state(&self) -> OwnState {
        self.state
    }

    /// When the current state was entered.
    pub fn entered_at_ms(&self) -> u64 {
        self.entered_at_ms
    }

    /// The weight this node claims in its traces.
    pub fn weight(&self) -> Weight {
        self.weight
    }

    /// True once the self-signature is frozen.
    pub fn profile_frozen(&self) -> bool {
        self.profile_frozen
    }

    /// Neonatal time observed by neighbours so far (persist this, ES-7.2).
    pub fn neonatal_observed_ms(&self) -> u64 {
        self.neonatal_observed_ms
    }

    /// Neonatal time still to be observed.
    pub fn neonatal_remaining_ms(&self) -> u64 {
        self.cfg.neonatal_duration_ms.saturating_sub(self.neonatal_observed_ms)
    }

    /// Failed self-tests in this QUARANTINE.
    pub fn remediation_attempts(&self) -> u8 {
        self.remediation_attempts
    }

    /// True while own traces must not be deposited.
    pub fn traces_suppressed(&self) -> bool {
        !matches!(self.state, OwnState::Neonatal | OwnState::Normal)
    }

    /// Feeds one event at `now_ms` (monotonic).
    pub fn handle(&mut self, event: NodeEvent, now_ms: u64) -> Step {
        let mut step = Step::new(self.id, now_ms, AnyState::Own(self.state), Reason::NotApplicable);
        match (self.state, event) {
            (OwnState::Apoptotic, _) => {}
            (_, NodeEvent::Shutdown | NodeEvent::EnergyDepleted) => {
                step.audit.reason = Reason::Power;
                self.enter(OwnState::Offline, now_ms, &mut step);
            }
            (OwnState::Offline, NodeEvent::PowerOn) => {
                step.audit.reason = Reason::Power;
                self.enter(OwnState::Booting, now_ms, &mut step);
            }
            (OwnState::Booting, NodeEvent::PufOk) => {
                step.audit.reason = Reason::PufOk;
                self.last_tick_ms = now_ms;
                self.last_heartbeat_ms = now_ms;
                // A restored node that already finished neonatal stays NORMAL;
                // otherwise neonatal resumes with its persisted credit.
                let to = if self.profile_frozen { OwnState::Normal } else { OwnState::Neonatal };
                self.enter(to, now_ms, &mut step);
            }
            (OwnState::Booting, NodeEvent::PufFail) => {
                step.audit.reason = Reason::PufFail;
                self.enter(OwnState::Apoptotic, now_ms, &mut step);
                step.push(if self.cfg.presigned_death_certificate {
                    LifecycleAction::BroadcastDeathCertificate(DeathReason::PufAnomaly)
                } else {
                    LifecycleAction::GoSilent
                });
            }
            (OwnState::Offline | OwnState::Booting, _) => {}
            (_, NodeEvent::HeartbeatSent) => {
                self.last_heartbeat_ms = self.last_heartbeat_ms.max(now_ms);
                step.audit.reason = Reason::Idle;
            }
            (_, NodeEvent::Tick { mode }) => self.on_tick(mode, now_ms, &mut step),
            (_, NodeEvent::OwnReading { plausible }) => self.on_reading(plausible, now_ms, &mut step),
            (OwnState::Neonatal | OwnState::Normal | OwnState::SensorFault, NodeEvent::RejectedByPeers) => {
                step.audit.reason = Reason::RejectedByPeers;
                let was_suppressed = self.traces_suppressed();
                self.enter(OwnState::Quarantine, now_ms, &mut step);
                if !was_suppressed {
                    step.push(LifecycleAction::SuppressOwnTraces);
                }
            }
            (OwnState::Quarantine, NodeEvent::RemediationResult(ok)) if self.remediation_pending => {
                self.remediation_pending = false;
                if ok {
                    step.audit.reason = Reason::Remediated;
                    self.profile_frozen = false;
                    self.neonatal_observed_ms = 0;
                    self.enter(OwnState::Neonatal, now_ms, &mut step);
                    step.push(LifecycleAction::Reenroll);
                    step.push(LifecycleAction::ResumeOwnTraces);
                } else {
                    self.fail_remediation(now_ms, &mut step);
                }
            }
            _ => {}
        }
        step
    }

    fn enter(&mut self, to: OwnState, now_ms: u64, step: &mut Step) {
        self.state = to;
        self.entered_at_ms = now_ms;
        self.consecutive_faults = 0;
        self.remediation_attempts = 0;
        self.remediation_pending = false;
        self.next_remediation_ms = now_ms.saturating_add(self.cfg.timers.remediation_interval_ms);
        self.weight = match to {
            OwnState::Neonatal => NEONATAL_WEIGHT,
            OwnState::Normal => NORMAL_WEIGHT,
            OwnState::SensorFault => self.weight,
            OwnState::Offline | OwnState::Booting | OwnState::Quarantine | OwnState::Apoptotic => 0,
        };
        step.audit.to = AnyState::Own(to);
    }

    fn on_tick(&mut self, mode: QuorumMode, now_ms: u64, step: &mut Step) {
        step.audit.reason = Reason::Idle;
        let interval = now_ms.saturating_sub(self.last_tick_ms);
        let counted = self.mode != QuorumMode::Solo;
        self.last_tick_ms = self.last_tick_ms.max(now_ms);
        self.mode = mode;

        let silent_ms = now_ms.saturating_sub(self.last_heartbeat_ms);
        if silent_ms > self.cfg.timers.heartbeat_timeout_ms {
            step.audit.reason = Reason::HeartbeatTimeout { silent_ms };
            self.enter(OwnState::Apoptotic, now_ms, step);
            step.push(LifecycleAction::BroadcastDeathCertificate(DeathReason::EnergyDepleted));
            return;
        }
        let elapsed_ms = now_ms.saturating_sub(self.entered_at_ms);
        match self.state {
            OwnState::Neonatal => {
                if counted {
                    self.neonatal_observed_ms = self.neonatal_observed_ms.saturating_add(interval);
                }
                let observed_ms = self.neonatal_observed_ms;
                if observed_ms >= self.cfg.neonatal_duration_ms {
                    step.audit.reason = Reason::NeonatalComplete { observed_ms };
                    self.profile_frozen = true;
                    self.enter(OwnState::Normal, now_ms, step);
                    step.push(LifecycleAction::FreezeProfile);
                } else {
                    step.audit.reason = Reason::NeonatalProgress { observed_ms, counted };
                }
            }
            OwnState::SensorFault if elapsed_ms > self.cfg.timers.pyrexia_ms => {
                step.audit.reason = Reason::Timeout { elapsed_ms, limit_ms: self.cfg.timers.pyrexia_ms };
                self.enter(OwnState::Quarantine, now_ms, step);
            }
            OwnState::Quarantine if now_ms > self.next_remediation_ms => {
                if self.remediation_pending {
                    self.remediation_pending = false;
                    if self.fail_remediation(now_ms, step) {
                        return;
                    }
                }
                let attempt = self.remediation_attempts.saturating_add(1);
                self.remediation_pending = true;
                self.next_remediation_ms = now_ms.saturating_add(self.cfg.timers.remediation_interval_ms);
                step.audit.reason = Reason::RemediationDue { attempt };
                step.push(LifecycleAction::RunSelfTest { attempt });
            }
            _ => {}
        }
    }

    fn on_reading(&mut self, plausible: bool, now_ms: u64, step: &mut Step) {
        match (self.state, plausible) {
            (OwnState::Neonatal | OwnState::Normal, false) => {
                self.consecutive_faults = self.consecutive_faults.saturating_add(1);
                step.audit.reason = Reason::OwnSensorFault { consecutive: self.consecutive_faults };
                if self.consecutive_faults >= SENSOR_FAULT_LIMIT {
                    self.resume = self.state;
                    self.enter(OwnState::SensorFault, now_ms, step);
                    step.push(LifecycleAction::SuppressOwnTraces);
                }
            }
            (OwnState::Neonatal | OwnState::Normal, true) => {
                self.consecutive_faults = 0;
                step.audit.reason = Reason::Idle;
            }
            (OwnState::SensorFault, true) => {
                step.audit.reason = Reason::OwnSensorRecovered;
                self.enter(self.resume, now_ms, step);
                step.push(LifecycleAction::ResumeOwnTraces);
            }
            _ => {}
        }
    }

    /// Counts a failed self-test; true when the attempts are exhausted.
    fn fail_remediation(&mut self, now_ms: u64, step: &mut Step) -> bool {
        self.remediation_attempts = self.remediation_attempts.saturating_add(1);
        step.audit.reason = Reason::RemediationFailed { attempts: self.remediation_attempts };
        if self.remediation_attempts >= self.cfg.timers.max_remediation_attempts {
            self.enter(OwnState::Apoptotic, now_ms, step);
            step.push(LifecycleAction::BroadcastDeathCertificate(DeathReason::SelfCompromise));
            return true;
        }
        false
    }
}
