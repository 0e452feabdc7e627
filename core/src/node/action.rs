//! What a [`Node`](super::Node) hands back (ES-10.2 outputs, sans-IO): frames
//! to send, time-sync results for the caller's clock, lifecycle requests that
//! need the outside world, and an audit record for every immune decision
//! with the figures behind it.

use crate::consistency::ConsistencyCheck;
use crate::dag::DagEntry;
use crate::distance::DistanceEstimate;
use crate::guards::DropReason;
use crate::lifecycle::{Audit, LifecycleAction};
use crate::persist::PersistedState;
use crate::profile::{Deviation, NkAuditResult};
use crate::types::{Confidence, DeviceId, QuantityType, Reading, Weight};
use crate::wire::WireError;

/// Largest frame a node emits or accepts (BLE extended advertising payload).
pub const MAX_FRAME: usize = 255;

/// One encoded, signed frame.
pub type FrameBuf = heapless::Vec<u8, MAX_FRAME>;

/// Something the caller must do, or be told.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send this frame to every neighbour in radio range.
    Broadcast(FrameBuf),
    /// Send this frame to one device (an INFLAMMATION_REPLY, a TIME_SYNC_RESPONSE).
    Unicast {
        /// The addressee.
        dest: DeviceId,
        /// The frame.
        frame: FrameBuf,
    },
    /// The sensor timer fired: read `quantity` and call
    /// [`Node::handle_reading`](super::Node::handle_reading).
    ReadSensor {
        /// What to read.
        quantity: QuantityType,
    },
    /// A time-sync exchange finished: the node's wall clock is `offset_ms`
    /// behind `source` (add it). The node never sets a clock itself.
    ClockOffset {
        /// The clock source that answered.
        source: DeviceId,
        /// `((t2 − t1) + (t3 − t4)) / 2`, ms.
        offset_ms: i64,
        /// Round trip minus the responder's hold time, ms.
        rtt_ms: i64,
    },
    /// Dust: send this uplink on LoRa (duty cycle is the caller's to enforce).
    LoraUplink(FrameBuf),
    /// Gateway: send this v2 Dust downlink (a REJECTION_NOTICE with counter
    /// and MAC, ES-12.4) on LoRa to `dest`. It answers `dest`'s uplink just
    /// handled, so it falls in the receive window the Dust node opens after
    /// sending (ES-10.6 step 4); the Dust node takes it with
    /// [`Node::handle_downlink`](super::Node::handle_downlink). The node
    /// keeps ES-12.4's one-downlink-per-ten-uplinks budget; the 1 % duty
    /// cycle is the caller's to enforce.
    LoraDownlink {
        /// The Dust device addressed.
        dest: DeviceId,
        /// The downlink frame.
        frame: FrameBuf,
    },
    /// Append this critical state to the krill_state journal
    /// (`persist::Store::save_state`, ES-14, every `TIMER_FLASH_FLUSH`).
    PersistState(PersistedState),
    /// Append this new DAG entry to the krill_dag log (ES-14.3 item 2):
    /// `persist::Store::record_dag(flash, node.dag(), &entry)`, which
    /// compacts by itself when the log is full or no image exists yet.
    PersistDagAppend(DagEntry),
    /// Entries left the DAG (GC, a death certificate's invalidation, an
    /// eviction) or were added without an append: write
    /// `Node::dag().entries()` as a fresh image (`persist::Store::compact_dag`),
    /// or the removed entries come back at the next boot.
    PersistDagCompact,
    /// Every tenth epoch (ES-14.3 item 3): write `Node::stored_profiles()`
    /// as a fresh krill_profiles image (`persist::Store::save_profiles`).
    PersistProfiles,
    /// A lifecycle decision that needs the outside world (self-test,
    /// remediation probe, re-enrolment, going silent); the node has already
    /// carried out everything it can do alone.
    Lifecycle(LifecycleAction),
    /// Enrollment or KEY_ROTATION delivered a NetKey (ES-13.2): hand it to
    /// the transport. With `switch_by`, keep accepting the old key until
    /// then; devices still on it afterwards are excluded.
    NetworkKey {
        /// The key (secret; its `Debug` prints nothing).
        key: crate::crypto::NetKey,
        /// Its epoch (0 from enrollment).
        epoch: u32,
        /// The provisioner that sent it (ourselves for our own rotation).
        from: DeviceId,
        /// The rotation deadline; `None` from enrollment.
        switch_by: Option<crate::types::Timestamp>,
    },
    /// Why a decision was taken.
    Audit(AuditEvent),
    /// A signed TraceBatch (ES-6.1) of `len` bytes is ready for a Full
    /// node. Batches are up to 3.6 KB, too big for a [`FrameBuf`]: call
    /// [`Node::take_batch`](super::Node::take_batch) with a buffer of at
    /// least `len` bytes, once per such action, in order.
    SubmitBatch {
        /// The batch's id.
        batch_id: u32,
        /// Its frame length, bytes.
        len: usize,
    },
}

/// Why a received frame was not handled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FrameDrop {
    /// It does not decode (length, magic, version, type, field values).
    Decode(WireError),
    /// Our own frame came back over a relay.
    OwnEcho,
    /// A guard refused it (ES-15, SPEC-NOTES 17, 20).
    Guard(DropReason),
    /// No public key is registered for the sender: nothing can be verified,
    /// and unverified ids must not create state (SPEC-NOTES 20).
    UnknownSender,
    /// The signature is not the registered key's: forged or corrupted.
    BadSignature,
    /// A gateway-vouched trace for a Dust device that gateway was not
    /// registered to serve (ES-16.1).
    NotServed,
}

/// Drops the guards do not count: decoding, unknown senders, bad
/// signatures, echoes. Together with [`crate::guards::DropCounts`] every
/// dropped frame is counted exactly once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameDropCounts {
    /// Frames that did not decode.
    pub decode: u32,
    /// Our own frames heard back.
    pub own_echo: u32,
    /// Frames from ids without a registered key.
    pub unknown_sender: u32,
    /// Frames whose signature did not verify.
    pub bad_signature: u32,
    /// Vouched traces from a gateway not serving that Dust device.
    pub not_served: u32,
}

impl FrameDropCounts {
    /// Counts one drop (guard drops are counted by `DropCounts`).
    pub fn record(&mut self, d: FrameDrop) {
        let c = match d {
            FrameDrop::Decode(_) => &mut self.decode,
            FrameDrop::OwnEcho => &mut self.own_echo,
            FrameDrop::UnknownSender => &mut self.unknown_sender,
            FrameDrop::BadSignature => &mut self.bad_signature,
            FrameDrop::NotServed => &mut self.not_served,
            FrameDrop::Guard(_) => return,
        };
        *c = c.saturating_add(1);
    }
}

/// How a received trace was judged (ES-10.3 TRACE_DEPOSIT), with every figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TraceAssessment {
    /// The sender.
    pub subject: DeviceId,
    /// Its quantity.
    pub quantity: QuantityType,
    /// Its reading.
    pub reading: Reading,
    /// The weight it claimed.
    pub claimed_weight: Weight,
    /// The weight the field used: min(our assessment, claim) (SPEC-NOTES 7).
    pub used_weight: Weight,
    /// The profile deviation, computed before the trace joined the profile
    /// (SPEC-NOTES 26); `None` before the subject has a profile.
    pub deviation: Option<Deviation>,
    /// Our own latest reading of the same quantity, if any.
    pub my_reading: Option<Reading>,
    /// The physical consistency check against it.
    pub consistency: Option<ConsistencyCheck>,
    /// The distance the check used; `method == Unknown` flags a check made
    /// with the 30 m fallback (SPEC-NOTES 34).
    pub distance: DistanceEstimate,
    /// `|t_theirs − t_mine|`, ms (SPEC-NOTES 26).
    pub time_delta_ms: u32,
    /// The σ fed to the subject's lifecycle record: the larger of the
    /// profile deviation and the consistency σ.
    pub fed_sigma: f32,
    /// True when the trace also joined the profile (below the inflammation band).
    pub profile_updated: bool,
    /// For a gateway-vouched Dust trace, what ES-16 made of its gateway.
    pub gateway: Option<GatewayAssessment>,
}

/// The gateway side of a vouched trace's assessment (ES-16.2, ES-16.3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GatewayAssessment {
    /// The gateway that signed it.
    pub gateway: DeviceId,
    /// The confidence the pheromone field multiplied into the trace's
    /// weight (`gateway::vouched_confidence`): 180 corroborated, 128 single,
    /// 64 unverified, 0 suspect.
    pub confidence: Confidence,
    /// True when the trace counted as an anomaly against the gateway (its
    /// σ reached the Dust INFLAMMATION band).
    pub anomalous: bool,
    /// The gateway's anomaly rate after this trace.
    pub anomaly_rate: f32,
}

/// What a node concluded about an LPWAN gateway or did for one (ES-16,
/// ES-12.4 downlinks).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GatewayEvent {
    /// Two copies of one Dust transmission carry different readings
    /// (ES-16.3): neither copy is assessed, both gateways are charged one
    /// anomaly.
    Disagreement {
        /// The Dust device.
        device: DeviceId,
        /// Its frame counter (the transmission).
        frame_counter: u32,
        /// The gateway whose copy came first.
        first: DeviceId,
        /// The gateway of the conflicting copy.
        second: DeviceId,
    },
    /// A gateway's trust level changed with the trace just handled.
    TrustChanged {
        /// The gateway.
        gateway: DeviceId,
        /// Its confidence before.
        from: Confidence,
        /// Its confidence now.
        to: Confidence,
        /// Its anomaly rate now.
        anomaly_rate: f32,
    },
    /// A REJECTION_NOTICE about a Dust device this gateway serves was
    /// weighed (same rule as a notice about ourselves, see `dispatch.rs`).
    NoticeTally {
        /// The Dust device.
        device: DeviceId,
        /// Who sent the notice.
        by: DeviceId,
        /// True if it counts.
        counted: bool,
        /// Distinct counted senders within the window.
        distinct: u8,
        /// How many are needed.
        needed: u8,
    },
    /// A Dust device this gateway serves is rejected: a REJECTION_NOTICE
    /// downlink waits for its next uplink.
    RejectionQueued {
        /// The Dust device.
        device: DeviceId,
        /// Distinct peers whose notices decided it; 0 when our own record did.
        by_peers: u8,
    },
    /// A REJECTION_NOTICE downlink went out ([`Action::LoraDownlink`]).
    RejectionSent {
        /// The Dust device.
        device: DeviceId,
        /// Its short id on the LoRa link.
        short_id: u16,
        /// The downlink counter.
        counter: u32,
    },
}

/// One immune or dispatch decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AuditEvent {
    /// A received frame was dropped.
    Dropped {
        /// The header's sender id (unverified), all zero if unreadable.
        sender: DeviceId,
        /// The message-type byte, 0 if unreadable.
        msg_type: u8,
        /// Why.
        reason: FrameDrop,
    },
    /// A received trace was assessed.
    Trace(TraceAssessment),
    /// A lifecycle machine (a subject's record or our own) moved or decided.
    Lifecycle(Audit),
    /// An NK audit ran on a subject's profile (ES-4.3).
    NkAudit {
        /// The audited subject.
        subject: DeviceId,
        /// The random byte that selected it.
        draw: u8,
        /// What it found.
        result: NkAuditResult,
    },
    /// Our own reading failed the innate (absolute bounds) check.
    OwnReadingImpossible {
        /// The quantity.
        quantity: QuantityType,
        /// The reading.
        reading: Reading,
    },
    /// A peer's CONSISTENCY_ALERT or NK drift report made us audit the
    /// subject ourselves, outside the epoch draw (ES-4.3).
    NkAuditTriggered {
        /// The audited subject.
        subject: DeviceId,
        /// The peer whose claim triggered it.
        by: DeviceId,
        /// What our own audit found.
        result: NkAuditResult,
    },
    /// A REJECTION_NOTICE naming us arrived; it is only recorded, since a
    /// single peer must not be able to quarantine a node.
    RejectedBy {
        /// Who sent it.
        by: DeviceId,
    },
    /// A Dust frame (uplink at a gateway, downlink at a Dust node) was refused.
    DustDropped {
        /// Why.
        reason: super::dust::DustDrop,
    },
    /// A Dust node obeyed an authenticated REJECTION_NOTICE.
    DustQuarantined,
    /// LPWAN gateway trust and downlinks (ES-16, ES-12.4).
    Gateway(GatewayEvent),
    /// A Dust node received an authenticated VACCINE.
    DustVaccine {
        /// ES-2.8 attack type code.
        attack_type: u8,
        /// The quantity it targets.
        quantity: QuantityType,
    },
    /// A VACCINE (v2) was handled: applied, possibly relayed, or refused.
    Vaccine {
        /// Its origin (the signer).
        origin: DeviceId,
        /// What happened.
        outcome: VaccineOutcome,
    },
    /// A neighbour's PROFILE_SYNC was merged into a profile still learning.
    ProfileMerged {
        /// The profiled subject.
        subject: DeviceId,
        /// Who sent the sync.
        from: DeviceId,
    },
    /// An inflammation vote confirmed an environment change: the subject's
    /// running profile and baseline were moved to its new level (ES-3.1).
    ProfileRebased {
        /// The subject.
        subject: DeviceId,
        /// The shift, reading steps.
        delta_steps: i32,
    },
    /// We answered an INFLAMMATION_QUERY: what we told the querier, and
    /// what we judged it by, so a rejection can be traced to its voters.
    Answered {
        /// Who asked.
        querier: DeviceId,
        /// The suspect.
        suspect: DeviceId,
        /// Quantity of the readings.
        quantity: QuantityType,
        /// The suspect's reading the query carried.
        suspect_reading: Reading,
        /// Our latest reading of the quantity, if any.
        my_reading: Option<Reading>,
        /// Our distance estimate to the suspect, cm.
        distance_cm: u32,
        /// What we remembered of the suspect and around us, if enough.
        history: Option<crate::lifecycle::LocalHistory>,
        /// The verdict sent.
        verdict: crate::wire::immune::Verdict,
    },
    /// The subject's level drifted against ours beyond the floor and the
    /// record was fed a deviation ([`super::RelativeLevel`]).
    RelativeDrift {
        /// The subject.
        subject: DeviceId,
        /// Quantity of the readings.
        quantity: QuantityType,
        /// Running offset minus learned offset, reading steps.
        drift_steps: i32,
        /// The σ fed to the record.
        sigma: f32,
    },
    /// The metabolic sweep (ES-1.2) dropped per-subject state that had
    /// decayed below 2⁻⁵ in its class: how many subjects lost some.
    MetabolicDecay {
        /// Last observations (ephemeral, 50 min old).
        ephemeral: u16,
        /// RSSI samples and attack evidence (operational, 5 days silent).
        operational: u16,
        /// Profiles and baselines (structural, 450 days without update).
        structural: u16,
    },
    /// A DEATH_CERTIFICATE removed a device from our tables.
    Died {
        /// The dead device.
        device: DeviceId,
    },
    /// A peer's statement (alert, retraction, NK audit, rejection notice)
    /// and what it did here (ES-10.3 handlers in `dispatch.rs`).
    Peer(PeerEvent),
    /// An enrollment or key-rotation decision (ES-13.2).
    Enrollment(super::EnrollEvent),
    /// A Full node settled a Nano's TraceBatch (ES-6.2): the figures to
    /// submit as the settlement transaction.
    Settled {
        /// The submitting Nano.
        nano: DeviceId,
        /// Its batch id.
        batch_id: u32,
        /// The PLANKTON settlement.
        settlement: crate::settlement::Settlement,
    },
    /// A TraceBatch was refused; nothing was settled.
    BatchRefused {
        /// The header's Nano id (unverified), all zero if unreadable.
        nano: DeviceId,
        /// The batch id, 0 if unreadable.
        batch_id: u32,
        /// Why.
        reason: BatchRefusal,
    },
    /// We confirmed an attack by a subject and originated a VACCINE (ES-2.8).
    VaccineOriginated {
        /// The rejected subject.
        subject: DeviceId,
        /// The attack class inferred from what was seen.
        attack_type: crate::wire::immune::AttackType,
        /// Mean offset (reading − expected) of the deviating readings.
        deviation_mean: i16,
        /// Their standard deviation.
        deviation_std: u16,
    },
}

/// Why a Full node refused a TraceBatch (ES-6.2 validation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BatchRefusal {
    /// Only a [`Role::Full`](super::Role::Full) node settles batches.
    NotFull,
    /// It does not decode (length, trace count, flags, entropy).
    Decode(WireError),
    /// It names us as the Nano: never settle our own batch.
    OwnBatch,
    /// No public key is registered for the Nano: nothing can be verified.
    UnknownNano,
    /// The signature is not the Nano's registered key: forged or altered.
    BadSignature,
    /// A trace names a device that is neither a registered peer nor a
    /// served Dust device, so it could be invented to collect rewards.
    UnregisteredDevice(DeviceId),
    /// A trace claims a clean epoch (flags 0) for a device we hold in
    /// REJECTION or QUARANTINE: it would pay for data the mesh isolated.
    AnomalyHidden(DeviceId),
    /// The aggregate does not match the traces (device, anomaly or
    /// rejection counts), so the on-chain summary would lie.
    AggregateMismatch,
    /// `epoch_end` is before `epoch_start`.
    EpochInverted,
    /// This (Nano, batch id) was settled before: paying twice is a replay.
    Replayed,
}

/// Why [`Node::take_batch`](super::Node::take_batch) gave nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeBatchError {
    /// Every batch of the last epoch was taken (or none was made).
    NonePending,
    /// The buffer is shorter than the batch; nothing was consumed.
    BufferTooSmall {
        /// Bytes the batch needs.
        needed: usize,
    },
    /// Signing failed (crypto backend error); the batch is dropped.
    Sign,
}

/// What a peer's immune or metabolic frame did at this node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PeerEvent {
    /// A CONSISTENCY_ALERT, kept as evidence only (never acted on alone).
    ConsistencyAlert {
        /// Who raised it.
        from: DeviceId,
        /// The device it accuses.
        suspect: DeviceId,
        /// The accused reading.
        reading: Reading,
        /// The range the alerter's physics allowed.
        expected: (Reading, Reading),
        /// Its severity code (0 PYREXIA, 1 INFLAMMATION, 2 REJECTION).
        severity: u8,
        /// Distinct peers alerting about `suspect` within the evidence window.
        alerters: u8,
        /// Our own record of the suspect, if we monitor it.
        our_view: Option<crate::lifecycle::SubjectState>,
    },
    /// A DATA_RETRACTION withdrew the issuer's own entries.
    Retracted {
        /// The issuer (only its own data is touched).
        issuer: DeviceId,
        /// DAG entries removed.
        dag_removed: u16,
        /// Pheromone-field entries removed.
        field_removed: u16,
        /// Uncovered entries of the issuer dropped as well because the
        /// re-insertion buffer was too small (0 normally).
        collateral: u16,
    },
    /// We answered an NK_AUDIT_REQUEST about a subject we profile.
    NkAnswered {
        /// Who asked.
        to: DeviceId,
        /// The audited subject.
        subject: DeviceId,
        /// Our audit of it.
        result: NkAuditResult,
        /// The measured drift, σ.
        drift_sigma: f32,
    },
    /// An NK_AUDIT_REQUEST we could not or would not answer.
    NkRefused {
        /// Who asked.
        from: DeviceId,
        /// The subject asked about.
        subject: DeviceId,
        /// Why.
        reason: NkRefusal,
    },
    /// A peer's NK_AUDIT_RESPONSE: evidence only.
    NkReport {
        /// Who audited.
        from: DeviceId,
        /// The audited subject.
        subject: DeviceId,
        /// True if it answers a request of ours (nonce and target match).
        solicited: bool,
        /// Its verdict: true = drift detected.
        drift: bool,
        /// The drift it measured, tenths of σ.
        drift_tenths: u16,
        /// Its drifted-dimension bits.
        dims: u8,
    },
    /// A REJECTION_NOTICE naming us was weighed by the rule in `dispatch.rs`.
    RejectionTally {
        /// Who sent it.
        by: DeviceId,
        /// True if it counts (a live, non-rejected, Nano neighbour of ours).
        counted: bool,
        /// Distinct counted senders within the window.
        distinct: u8,
        /// How many are needed.
        needed: u8,
    },
    /// A DEATH_CERTIFICATE failed `metabolic::plan_death` and was ignored.
    DeathRefused {
        /// The claimed dead device.
        device: DeviceId,
        /// Why.
        reason: crate::metabolic::DeathError,
    },
}

/// Why an NK_AUDIT_REQUEST was not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NkRefusal {
    /// We hold no frozen baseline and running profile for the subject, so
    /// there is nothing to measure drift against.
    NotProfiled,
    /// The requester asked about itself: answering would let a drifting
    /// device measure how close it is to the threshold.
    AboutItself,
    /// It asked about us; our own drift is for others to judge.
    AboutUs,
}

/// What happened to a received VACCINE copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaccineOutcome {
    /// Stored in the vaccine table; `relayed` when a copy went out.
    Applied {
        /// What storing it did.
        stored: crate::vaccine::ApplyOutcome,
        /// True when its TTL allowed another hop.
        relayed: bool,
    },
    /// Refused by the relay rules (TTL, strength above the signed initial).
    Refused(crate::vaccine::VaccineError),
}

/// Where a node puts its actions. Implemented for `heapless::Vec` (drops
/// what does not fit and counts nothing: size the vector for one call) and
/// for closures, so a std caller writes `&mut |a| out.push(a)`.
pub trait Sink {
    /// Takes one action.
    fn push(&mut self, action: Action);
}

impl<const K: usize> Sink for heapless::Vec<Action, K> {
    fn push(&mut self, action: Action) {
        let _ = heapless::Vec::push(self, action);
    }
}

impl<F: FnMut(Action)> Sink for F {
    fn push(&mut self, action: Action) {
        self(action)
    }
}
