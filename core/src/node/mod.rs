//! The sans-IO node (ES-10): one state machine that ties the wire format,
//! the guards, the pheromone field, the DAG, quorum sensing, behavioural
//! profiles and the lifecycle machines together.
//!
//! The caller drives it, as in quinn-proto: [`Node::handle_frame`] for a
//! received frame, [`Node::handle_reading`] for an own sensor reading,
//! [`Node::handle_timers`] when [`Node::next_deadline`] has passed. Every
//! output is an [`Action`] pushed into a caller-supplied [`Sink`]: frames to
//! send, requests that need the outside world, and an [`AuditEvent`] for
//! every immune decision with its figures. The node reads no clock (time is
//! a [`Now`]: u64 monotonic ms for timers, synced Unix seconds for wire
//! timestamps, SPEC-NOTES 25) and draws no random number of its own (a
//! caller's [`Rng`]).
//!
//! Resolved here: SPEC-NOTES 7 (assessed weight, per-subject records), 18
//! (receiver clock for DAG and field), 20 (dispatch order, in
//! [`dispatch`]), 25, 26 (deviation before the trace joins the profile,
//! same-quantity own reading, `|t_theirs − t_mine|`) and 33 (relayed
//! presence not counted). Details and pinning tests: `docs/spec-deviations.md`.

pub mod action;
mod batch;
mod dispatch;
mod dust;
mod enroll;
mod relative;
mod restore;
#[cfg(test)]
mod tests;
pub mod timers;

pub use action::{
    Action, AuditEvent, BatchRefusal, FrameBuf, FrameDrop, FrameDropCounts, GatewayAssessment, GatewayEvent, Sink,
    TakeBatchError, TraceAssessment, VaccineOutcome, MAX_FRAME,
};
pub use dust::{DustDrop, DustLink};
pub use enroll::{Authorised, EnrollConfig, EnrollEvent, EnrollRefusal, MAX_MANIFEST};
pub use relative::{RelativeLevel, PAIR_MAX_DELTA_MS, RELATIVE_BASE_SAMPLES, RELATIVE_FLOOR_STEPS};
pub use timers::{Timer, TimerConfig, TimerTable};

use crate::crypto::{device_id_of, sign_frame, Crypto};
use crate::dag::{AppendError, DagEntry, LocalDag, Trace};
use crate::distance::{Environment, RssiCalibration, RssiTracker};
use crate::field::PheromoneField;
use crate::guards::{DropCounts, GuardConfig, Guards, GUARD_DEVICES, RATE_BUCKETS};
use crate::lifecycle::{
    self, Cluster, LifecycleAction, NodeEvent, NodeLifecycle, OwnState, Reason, Step, SubjectRecord, SubjectState,
};
use crate::persist::{PersistedState, StoredProfile};
use crate::profile::{BehavioralProfile, Observation};
use crate::quorum::{QuorumConfig, QuorumState};
use crate::types::{
    Confidence, DeviceId, Hash20, PublicKey, QuantityType, Signature, Timestamp, MAX_DAG_ENTRIES, MAX_DAG_ENTRIES_DUST,
    MAX_NEIGHBORS,
};
use crate::wire::{Body, FrameRepr, Version};

/// Profiles are broadcast every this many epochs (ES-10.4 step 5).
pub const PROFILE_SYNC_EPOCHS: u32 = 10;
/// PROFILE_SYNCs a node sends per epoch at most: the ES-15.1 limit its
/// neighbours hold it to.
pub const PROFILE_SYNCS_PER_EPOCH: usize = 2;

/// Whether subject `i` of `n` has its profile broadcast at `epoch`: when
/// `(epoch + i) % period == 0`, with the spec's period of
/// [`PROFILE_SYNC_EPOCHS`] stretched to `⌈n / 2⌉` epochs for tables over 20
/// subjects, so that at most [`PROFILE_SYNCS_PER_EPOCH`] are due in any
/// epoch (ES-10.4 sends every profile each tenth epoch, ES-15.1 lets a
/// neighbour accept 2 a minute: with relaying or ESP-NOW a node profiles
/// up to 64 subjects, and the excess was rate-limited at every receiver).
pub fn profile_sync_due(epoch: u32, i: usize, n: usize) -> bool {
    let period = (PROFILE_SYNC_EPOCHS as usize).max(n.div_ceil(PROFILE_SYNCS_PER_EPOCH)) as u32;
    epoch.wrapping_add(i as u32).is_multiple_of(period)
}
/// Profiles are written to flash every this many epochs (ES-14.3 item 3).
pub const PROFILE_PERSIST_EPOCHS: u32 = 10;
/// Default settlement prices: 1 000 units per full-value trace, 1 per
/// batch byte (ES-6.3 gives no figures).
pub const DEFAULT_SETTLEMENT: crate::settlement::SettlementParams =
    crate::settlement::SettlementParams { base_reward: 1_000, bandwidth_cost_per_byte: 1 };
/// Strength an originated vaccine starts with (full: the origin saw the
/// attack itself).
pub const VACCINE_INITIAL_STRENGTH: u8 = 255;

/// The caller's notion of "now".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Now {
    /// Monotonic milliseconds since boot; drives every timer.
    pub mono_ms: u64,
    /// The node's synced Unix clock, seconds; goes into wire timestamps and
    /// ages received traces (SPEC-NOTES 18).
    pub unix_s: Timestamp,
    /// Milliseconds within `unix_s` (0–999), for time sync.
    pub unix_subsec_ms: u16,
}

impl Now {
    /// `mono_ms` and `unix_s`, whole seconds.
    pub fn new(mono_ms: u64, unix_s: Timestamp) -> Self {
        Now { mono_ms, unix_s, unix_subsec_ms: 0 }
    }
}

/// Randomness supplied by the caller (NK audit draws, query ids, nonces).
pub trait Rng {
    /// A uniformly distributed word.
    fn next_u32(&mut self) -> u32;
}

/// What kind of device the node is (ES-1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Role {
    /// A BLE mesh sensor node with the full immune system.
    Nano,
    /// A LoRa leaf sensor (ES-10.6): readings become MACed uplinks, no
    /// profiling, no votes. Needs [`NodeConfig::dust`].
    Dust,
    /// A Nano that also wraps its Dust devices' uplinks into signed traces
    /// (ES-16.4).
    Gateway,
    /// A Full node: behaves as a Nano on the mesh, makes no batches of its
    /// own, and settles the Nanos' TraceBatches ([`Node::handle_batch`]).
    Full,
}

/// Everything a node is configured with; `Default` is a Nano measuring
/// temperature with the spec's values.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// The role.
    pub role: Role,
    /// What the own sensor measures.
    pub quantity: QuantityType,
    /// Confidence put into own traces.
    pub confidence: Confidence,
    /// ES-10.1 intervals.
    pub timers: TimerConfig,
    /// The own lifecycle (neonatal duration, timeouts).
    pub lifecycle: lifecycle::NodeConfig,
    /// Timeouts and vote rules of the per-subject records.
    pub subject_timers: lifecycle::Timers,
    /// How long a newly heard subject's profile learns before it is frozen
    /// into a baseline and the record leaves NEONATAL (the monitor's side of
    /// ES-7.2's neonatal period).
    pub subject_neonatal_ms: u64,
    /// Fewest readings a profile needs before it can be frozen.
    pub min_profile_samples: u32,
    /// ES-15 guards.
    pub guards: GuardConfig,
    /// Quorum sensing.
    pub quorum: QuorumConfig,
    /// Own transmit power, carried in PRESENCE v2 (SPEC-NOTES 34).
    pub tx_power_dbm: i8,
    /// Path-loss environment for RSSI distances.
    pub environment: Environment,
    /// RSSI model constants.
    pub rssi_calibration: RssiCalibration,
    /// The ES-11.3 deployment manifest loaded at installation: our own
    /// surveyed position and our neighbours'. Empty (the default) for an
    /// ad-hoc deployment, where distances come from RSSI alone.
    pub manifest: crate::distance::Manifest,
    /// Battery level put into heartbeats (`0xFF` = mains).
    pub battery_level: u8,
    /// A Dust node's link identity; `None` for every other role.
    pub dust: Option<DustLink>,
    /// What a gateway's Dust devices measure (put into wrapped traces).
    pub dust_quantity: QuantityType,
    /// Enrollment (ES-13.2); `None`: enrolled by configuration, not a provisioner.
    pub enroll: Option<EnrollConfig>,
    /// Prices a Full node settles batches with (ES-6.2).
    pub settlement: crate::settlement::SettlementParams,
}

impl NodeConfig {
    /// A Dust node (ES-10.6): no presence, quorum, epoch, heartbeat or
    /// state-timeout work, only the sensor timer.
    pub fn dust(link: DustLink) -> Self {
        let timers = TimerConfig {
            sensor_read_ms: 5_000,
            presence_pulse_ms: 0,
            quorum_update_ms: 0,
            epoch_tick_ms: 0,
            dag_gc_ms: 0,
            heartbeat_ms: 0,
            flash_flush_ms: 0,
            state_timeouts_ms: 0,
        };
        NodeConfig { role: Role::Dust, timers, dust: Some(link), ..NodeConfig::default() }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            role: Role::Nano,
            quantity: QuantityType::Temperature,
            confidence: 200,
            timers: TimerConfig::default(),
            lifecycle: lifecycle::NodeConfig::default(),
            subject_timers: lifecycle::Timers::default(),
            subject_neonatal_ms: crate::types::NEONATAL_DURATION as u64 * 1000,
            min_profile_samples: 10,
            guards: GuardConfig::recommended(),
            quorum: QuorumConfig::default(),
            tx_power_dbm: 0,
            environment: Environment::Indoor,
            rssi_calibration: RssiCalibration::SPEC,
            manifest: crate::distance::Manifest::new(),
            battery_level: crate::wire::presence::BATTERY_MAINS,
            dust: None,
            dust_quantity: dust::DEFAULT_DUST_QUANTITY,
            enroll: None,
            settlement: DEFAULT_SETTLEMENT,
        }
    }
}

/// Why a configuration call was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeError {
    /// The key table is full: a node verifies only the keys it holds, so a
    /// device beyond capacity cannot be heard.
    KeyTableFull,
}

/// What a monitor keeps about one subject (a neighbour whose traces it hears).
#[derive(Clone, Debug)]
pub struct Subject<const N: usize> {
    kind: crate::profile::SubjectKind,
    record: SubjectRecord<N>,
    profile: Option<BehavioralProfile<N>>,
    baseline: Option<BehavioralProfile<N>>,
    last_obs: Option<Observation>,
    first_heard_ms: u64,
    msgs_epoch: u16,
    rssi: RssiTracker,
    isolated: bool,
    acc: Option<crate::settlement::DeviceEpoch>,
    evidence: batch::AttackEvidence,
    vaccinated: bool,
    trend: Option<SlowTrend>,
    profile_updated_ms: u64,
    followed_up: Option<u32>,
    relative: Option<RelativeLevel>,
}

impl<const N: usize> Subject<N> {
    /// The lifecycle record.
    pub fn record(&self) -> &SubjectRecord<N> {
        &self.record
    }
    /// The running profile, once the subject sent a trace.
    pub fn profile(&self) -> Option<&BehavioralProfile<N>> {
        self.profile.as_ref()
    }
    /// The frozen baseline the NK audit compares against.
    pub fn baseline(&self) -> Option<&BehavioralProfile<N>> {
        self.baseline.as_ref()
    }
    /// Nano (signed its own traces) or Dust (vouched for by a gateway).
    pub fn kind(&self) -> crate::profile::SubjectKind {
        self.kind
    }
    /// True once the record asked to stop counting it in consensus.
    pub fn is_isolated(&self) -> bool {
        self.isolated
    }
    /// True once we originated a vaccine against it in its current
    /// REJECTION (at most one per rejection).
    pub fn vaccinated(&self) -> bool {
        self.vaccinated
    }
    /// Its readings' learned offset from ours, once we paired one.
    pub fn relative(&self) -> Option<&RelativeLevel> {
        self.relative.as_ref()
    }
}

/// A node. `N` sizes the neighbour, key and subject tables (and profile
/// correlation slots), `D` the DAG and the pheromone field, `G`/`B` the
/// guards' device tables and rate buckets. Defaults are ES-1.2's Nano.
pub struct Node<
    C: Crypto,
    const N: usize = MAX_NEIGHBORS,
    const D: usize = MAX_DAG_ENTRIES,
    const G: usize = GUARD_DEVICES,
    const B: usize = RATE_BUCKETS,
> {
    cfg: NodeConfig,
    crypto: C,
    id: DeviceId,
    keys: heapless::Vec<(DeviceId, PublicKey), N>,
    guards: Guards<G, B>,
    guard_drops: DropCounts,
    frame_drops: FrameDropCounts,
    field: PheromoneField<D>,
    dag: LocalDag<D>,
    quorum: QuorumState<N>,
    own: NodeLifecycle,
    subjects: heapless::Vec<(DeviceId, Subject<N>), N>,
    cluster: Cluster,
    timers: TimerTable,
    epoch: u32,
    pending_sync: Option<(DeviceId, u32)>,
    boot: BootInfo,
    dust: dust::DustState,
    registry: crate::gateway::DustRegistry<N>,
    served: heapless::Vec<(DeviceId, DeviceId), N>,
    gateways: GatewayMonitorOf<N>,
    downlinks: crate::gateway::DownlinkPlanner<N>,
    vaccines: crate::vaccine::VaccineTable,
    vaccines_seen: crate::vaccine::SeenSet,
    dag_synced: DagSynced,
    peers: dispatch::PeerEvidence<N>,
    enroll: enroll::EnrollState<N>,
    batches: batch::Outbox<N>,
    own_trend: Option<SlowTrend>,
    queries: heapless::Vec<crate::wire::InflammationQuery, N>,
    query_pacer: timers::SendPacer,
    standings: heapless::Vec<restore::Standing, N>,
    /// The (querier, query id)s of the last INFLAMMATION_QUERYs answered,
    /// oldest first: a replayed query is refused before it is charged.
    answered: heapless::Deque<(DeviceId, u32), ANSWERED_QUERIES>,
}

/// The v2 PROFILE_SYNC (values component) of `subject`'s profile `p`, or
/// `None` if its bins do not fit the wire.
fn profile_sync_of<const N: usize>(
    subject: DeviceId,
    p: &BehavioralProfile<N>,
) -> Option<crate::wire::immune::ProfileSync> {
    use crate::wire::immune::{Bins, ProfileComponent, ProfileSync, ProfileSyncV2};
    let sum = p.summary();
    Some(ProfileSync {
        subject_id: subject,
        profile_version: sum.profile_version,
        component: ProfileComponent::Values,
        bins: Bins::from_slice(&sum.bins).ok()?,
        v2: Some(ProfileSyncV2 {
            value_count: sum.value_count,
            value_mean: sum.value_mean,
            value_var: sum.value_var,
            value_min: sum.value_min,
            value_max: sum.value_max,
            last_updated: sum.last_updated,
        }),
    })
}

/// Queries remembered in [`Node`]'s `answered` ring: a vote asks once per
/// suspect, so 16 cover far more than the 90 s a query stays fresh.
pub const ANSWERED_QUERIES: usize = 16;

/// Epochs between two votes a monitor opens on one subject's relative
/// drift ([`RelativeLevel`]): a vote times out well within them, and a
/// drift that the vote left standing is asked about again ten minutes later.
pub const RELATIVE_VOTE_EPOCHS: u32 = 10;

/// Time constant of [`SlowTrend`], ms: slow enough that a change of the
/// last minutes still stands out against it when a vote asks.
const TREND_TAU_MS: f32 = 3_600_000.0;

/// A slow exponential average of one device's readings, ours or a
/// subject's: an inflammation responder compares the suspect's shift from
/// its trend with its own shift from its own trend
/// ([`lifecycle::evaluate_inflammation_with_history`]), two figures with
/// the same time constant, so a step everyone saw is explained however long
/// ago the suspect's baseline was frozen.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SlowTrend {
    quantity: QuantityType,
    mean: f32,
    last_ms: u64,
}

impl SlowTrend {
    fn update(trend: &mut Option<SlowTrend>, quantity: QuantityType, value: f32, now_ms: u64) {
        match trend {
            Some(t) if t.quantity == quantity => {
                let dt = now_ms.saturating_sub(t.last_ms) as f32;
                let a = 1.0 - libm::expf(-dt / TREND_TAU_MS);
                t.mean += a * (value - t.mean);
                t.last_ms = now_ms;
            }
            _ => *trend = Some(SlowTrend { quantity, mean: value, last_ms: now_ms }),
        }
    }
}

/// What the node believes krill_dag holds (image plus appended log): the
/// entry count and a wrapping sum of the entries' 64-bit hash prefixes. A
/// flush or GC that finds the DAG different (entries removed, or added
/// without an [`Action::PersistDagAppend`]) asks for a compaction. The
/// check is on entry hashes only: re-linked parent hashes are rebuilt by
/// `persist::restore` anyway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DagSynced {
    len: usize,
    digest: u64,
}

impl DagSynced {
    fn of(entries: &[DagEntry]) -> Self {
        let mut s = DagSynced::default();
        for e in entries {
            s.add(&e.hash);
        }
        s
    }

    fn add(&mut self, h: &Hash20) {
        let mut w = [0u8; 8];
        w.copy_from_slice(&h.0[..8]);
        self.len = self.len.saturating_add(1);
        self.digest = self.digest.wrapping_add(u64::from_le_bytes(w));
    }
}

/// What the persisted state carries across boots that the node does not
/// otherwise track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BootInfo {
    boot_count: u32,
    last_boot: Timestamp,
    neonatal_start: Timestamp,
    last_heartbeat: Timestamp,
    ber_history: [u8; 8],
    puf_warning: bool,
}

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> core::fmt::Debug
    for Node<C, N, D, G, B>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("role", &self.cfg.role)
            .field("own", &self.own.state())
            .field("subjects", &self.subjects.len())
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// The ES-16.3 gateway profiles a node keeps: [`crate::gateway::MONITORED_GATEWAYS`]
/// gateways, listing up to `N` Dust devices each, and `N` recent Dust
/// transmissions to corroborate.
pub type GatewayMonitorOf<const N: usize> =
    crate::gateway::GatewayMonitor<{ crate::gateway::MONITORED_GATEWAYS }, N, N>;

/// A Nano with ES-1.2 capacities (32 neighbours, 4096 DAG entries).
pub type NanoNode<C> = Node<C>;
/// A Nano sized for a 256 KiB board: 8 neighbours, 256 DAG entries.
pub type BoardNode<C> = Node<C, 8, MAX_DAG_ENTRIES_DUST, 16, 64>;
/// The footprint a Dust configuration would have: one peer (its gateway),
/// 256 DAG entries, minimal guard tables.
pub type DustSizedNode<C> = Node<C, 1, MAX_DAG_ENTRIES_DUST, 2, 8>;

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> Node<C, N, D, G, B> {
    /// A node that has just booted at `now` with a working PUF: NEONATAL,
    /// SOLO, empty tables. `first_query_id` seeds the vote ids (draw it at
    /// random so they don't repeat across reboots).
    pub fn new(cfg: NodeConfig, crypto: C, now: Now, first_query_id: u32) -> Self {
        let id = crypto.device_id();
        let enroll_state = enroll::EnrollState::new(cfg.enroll.as_ref(), now);
        let mut own = NodeLifecycle::new(id, cfg.lifecycle);
        let guards = Guards::new(cfg.guards.clone());
        let quorum = QuorumState::new(now.unix_s, &cfg.quorum);
        let timers = TimerTable::new(cfg.timers, now.mono_ms);
        let _ = own.handle(NodeEvent::PowerOn, now.mono_ms);
        let _ = own.handle(NodeEvent::PufOk, now.mono_ms);
        let mut field = PheromoneField::new();
        let _ = field.set_lambda(crate::quorum::QuorumMode::Solo.lambda());
        let rate = &cfg.guards.rate;
        let query_pacer = timers::SendPacer::new(rate.limit(crate::guards::msg::INFLAMMATION_QUERY), rate.epoch_secs);
        Node {
            cfg,
            crypto,
            id,
            keys: heapless::Vec::new(),
            guards,
            guard_drops: DropCounts::default(),
            frame_drops: FrameDropCounts::default(),
            field,
            dag: LocalDag::new(),
            quorum,
            own,
            subjects: heapless::Vec::new(),
            cluster: Cluster::new(0, 0, first_query_id),
            timers,
            epoch: 0,
            pending_sync: None,
            boot: BootInfo {
                boot_count: 0,
                last_boot: now.unix_s,
                neonatal_start: now.unix_s,
                last_heartbeat: now.unix_s,
                ber_history: [0; 8],
                puf_warning: false,
            },
            dust: dust::DustState::default(),
            registry: crate::gateway::DustRegistry::new(id),
            served: heapless::Vec::new(),
            gateways: GatewayMonitorOf::new(crate::gateway::CORROBORATION_WINDOW_S),
            downlinks: crate::gateway::DownlinkPlanner::new(),
            vaccines: crate::vaccine::VaccineTable::new(),
            vaccines_seen: crate::vaccine::SeenSet::new(),
            dag_synced: DagSynced::default(),
            peers: dispatch::PeerEvidence::default(),
            enroll: enroll_state,
            batches: batch::Outbox::new(now.unix_s),
            own_trend: None,
            queries: heapless::Vec::new(),
            query_pacer,
            standings: heapless::Vec::new(),
            answered: heapless::Deque::new(),
        }
    }

    /// The profiles to write at [`Action::PersistProfiles`]: per subject its
    /// frozen baseline (mode `Frozen`) and its running profile, as
    /// PROFILE_SYNC summaries.
    pub fn stored_profiles(&self) -> impl Iterator<Item = StoredProfile> + '_ {
        self.subjects.iter().flat_map(|(id, s)| {
            [s.baseline.as_ref(), s.profile.as_ref()].into_iter().flatten().map(move |p| StoredProfile {
                device: *id,
                quantity: p.quantity,
                mode: p.mode,
                summary: p.summary(),
            })
        })
    }

    /// Appends `trace` to the DAG at `now` and asks for it to be persisted:
    /// [`Action::PersistDagAppend`] with the new entry, or
    /// [`Action::PersistDagCompact`] when the append evicted entries (a full
    /// DAG collects garbage first).
    pub(crate) fn dag_append(&mut self, trace: &Trace, now: Now, out: &mut impl Sink) -> Result<Hash20, AppendError> {
        let before = self.dag.len();
        let h = self.dag.append(trace, now.unix_s)?;
        let entry = self.dag.entries().iter().rev().find(|e| e.hash == h).copied();
        match entry {
            Some(e) if self.dag.len() == before + 1 => {
                self.dag_synced.add(&e.hash);
                out.push(Action::PersistDagAppend(e));
            }
            _ => self.sync_dag(out),
        }
        Ok(h)
    }

    /// Asks for a compaction when the DAG is not what krill_dag holds.
    fn sync_dag(&mut self, out: &mut impl Sink) {
        let now = DagSynced::of(self.dag.entries());
        if now != self.dag_synced {
            self.dag_synced = now;
            out.push(Action::PersistDagCompact);
        }
    }

    /// The critical state as ES-14 stores it, at `now`.
    pub fn persisted_state(&self, now: Now) -> PersistedState {
        use crate::persist::quorum_code as qc;
        let lifecycle = self.own.state().persist_code();
        let quorum_mode = match self.quorum.mode() {
            crate::quorum::QuorumMode::Solo => qc::SOLO,
            crate::quorum::QuorumMode::Quorum => qc::QUORUM,
            crate::quorum::QuorumMode::Swarm => qc::SWARM,
        };
        let in_state_s = (now.mono_ms.saturating_sub(self.own.entered_at_ms()) / 1000).min(u32::MAX as u64) as u32;
        PersistedState {
            lifecycle,
            entered_at: now.unix_s.wrapping_sub(in_state_s),
            neonatal_start: self.boot.neonatal_start,
            neonatal_observed_s: (self.own.neonatal_observed_ms() / 1000).min(u32::MAX as u64) as u32,
            profile_frozen: self.own.profile_frozen(),
            weight: self.own.weight(),
            last_heartbeat: self.boot.last_heartbeat,
            remediation_attempts: self.own.remediation_attempts(),
            quarantine_reason: 0,
            consecutive_pyrexia: 0,
            quorum_mode,
            last_mode_change: self.quorum.machine().last_mode_change(),
            boot_count: self.boot.boot_count,
            last_boot: self.boot.last_boot,
            ber_history: self.boot.ber_history,
            puf_warning: self.boot.puf_warning,
        }
    }

    /// Registers a peer's public key (from enrolment or deployment config);
    /// frames from ids without one are dropped unverified.
    pub fn register_peer(&mut self, key: PublicKey) -> Result<(), NodeError> {
        let id = device_id_of(&key);
        if let Some(slot) = self.keys.iter_mut().find(|(k, _)| *k == id) {
            slot.1 = key;
            return Ok(());
        }
        self.keys.push((id, key)).map_err(|_| NodeError::KeyTableFull)
    }

    /// The pheromone field's view of `quantity` now (ES-4.5 `query_field`):
    /// the local consensus a display, an actuator or a simulator reads.
    pub fn query_field(&mut self, quantity: QuantityType, now: Now) -> crate::field::FieldQuery {
        self.field.query(quantity, now.unix_s)
    }

    /// This node's id.
    pub fn id(&self) -> DeviceId {
        self.id
    }
    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }
    /// The own lifecycle.
    pub fn own(&self) -> &NodeLifecycle {
        &self.own
    }
    /// Guard drops by reason.
    pub fn guard_drops(&self) -> &DropCounts {
        &self.guard_drops
    }
    /// Drops before and around the guards (decode, unknown id, signature).
    pub fn frame_drops(&self) -> &FrameDropCounts {
        &self.frame_drops
    }
    /// The pheromone field.
    pub fn field(&self) -> &PheromoneField<D> {
        &self.field
    }
    /// The local DAG.
    pub fn dag(&self) -> &LocalDag<D> {
        &self.dag
    }
    /// Quorum sensing state.
    pub fn quorum(&self) -> &QuorumState<N> {
        &self.quorum
    }
    /// What we keep about `id`, if it is monitored.
    pub fn subject(&self, id: DeviceId) -> Option<&Subject<N>> {
        self.subjects.iter().find(|(d, _)| *d == id).map(|(_, s)| s)
    }
    /// The state of `id`'s record, if it is monitored.
    pub fn subject_state(&self, id: DeviceId) -> Option<SubjectState> {
        self.subject(id).map(|s| s.record.state())
    }
    /// Every monitored subject.
    pub fn subjects(&self) -> impl Iterator<Item = (DeviceId, &Subject<N>)> {
        self.subjects.iter().map(|(d, s)| (*d, s))
    }
    /// The LPWAN gateways this node monitors (ES-16.3): anomaly rates,
    /// corroboration, trust.
    pub fn gateway_monitor(&self) -> &GatewayMonitorOf<N> {
        &self.gateways
    }
    /// Vaccines applied here (ES-2.8).
    pub fn vaccines(&self) -> &crate::vaccine::VaccineTable {
        &self.vaccines
    }
    /// Epochs ticked since boot.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The earliest time [`Node::handle_timers`] has work, monotonic ms.
    #[must_use]
    pub fn next_deadline(&self) -> u64 {
        let t = self.timers.next_deadline();
        self.enroll.deadline().map_or(t, |e| t.min(e))
    }

    fn key_of(&self, id: DeviceId) -> Option<PublicKey> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, p)| *p)
    }

    fn subject_index(&self, id: DeviceId) -> Option<usize> {
        self.subjects.iter().position(|(d, _)| *d == id)
    }

    /// The subject slot of a verified sender, created on first contact:
    /// only ids with a registered key get here, so the table cannot be
    /// filled by forged ids (SPEC-NOTES 20).
    fn subject_slot(&mut self, id: DeviceId, kind: crate::profile::SubjectKind, now: Now) -> Option<usize> {
        if let Some(i) = self.subject_index(id) {
            return Some(i);
        }
        let record = SubjectRecord::new(id, kind, SubjectState::Neonatal, now.mono_ms, self.cfg.subject_timers);
        let s = Subject {
            kind,
            record,
            profile: None,
            baseline: None,
            last_obs: None,
            first_heard_ms: now.mono_ms,
            msgs_epoch: 0,
            rssi: RssiTracker::new(),
            isolated: false,
            acc: None,
            evidence: batch::AttackEvidence::default(),
            vaccinated: false,
            trend: None,
            profile_updated_ms: now.mono_ms,
            followed_up: None,
            relative: None,
        };
        self.subjects.push((id, s)).ok()?;
        Some(self.subjects.len() - 1)
    }

    /// Signs and encodes `body` as a version-2 frame from this node.
    fn encode(&self, body: Body) -> Option<FrameBuf> {
        self.encode_as(self.id, body)
    }

    /// Signs `body` with our key under `sender_id` (ours, or a Dust
    /// device's for a vouched trace).
    fn encode_as(&self, sender_id: DeviceId, body: Body) -> Option<FrameBuf> {
        let repr = FrameRepr { version: Version::V2, sender_id, body, signature: Signature([0; 64]) };
        let mut buf = [0u8; MAX_FRAME];
        let len = repr.emit(&mut buf).ok()?;
        let frame = buf.get_mut(..len)?;
        sign_frame(&self.crypto, frame, repr.signed_len()).ok()?;
        FrameBuf::from_slice(frame).ok()
    }

    fn broadcast(&self, body: Body, out: &mut impl Sink) {
        if self.own.state() == OwnState::Apoptotic || !self.enroll.enrolled() {
            return;
        }
        if let Some(f) = self.encode(body) {
            out.push(Action::Broadcast(f));
        }
    }

    fn unicast(&self, dest: DeviceId, body: Body, out: &mut impl Sink) {
        if let Some(frame) = self.encode(body) {
            out.push(Action::Unicast { dest, frame });
        }
    }

    /// Keeps the cluster figures the records use current.
    fn refresh_cluster(&mut self, now: Now) {
        self.cluster.size = self.subjects.len() as u16;
        let alive = self.quorum.table().alive_count(now.unix_s);
        self.cluster.responders = alive.saturating_sub(1).min(u8::MAX as usize) as u8;
    }

    /// Feeds `event` into subject `i`'s record and carries out the step.
    fn feed_subject(&mut self, i: usize, event: lifecycle::SubjectEvent, now: Now, out: &mut impl Sink) {
        self.refresh_cluster(now);
        let Some((_, s)) = self.subjects.get_mut(i) else {
            return;
        };
        let step = s.record.handle(event, now.mono_ms, &mut self.cluster);
        self.track_standing(&step, now, out);
        self.apply_step(step, now, out);
    }

    /// Feeds `event` into the own lifecycle and carries out the step.
    fn feed_own(&mut self, event: NodeEvent, now: Now, out: &mut impl Sink) {
        let step = self.own.handle(event, now.mono_ms);
        self.apply_step(step, now, out);
    }

    /// Audits a step and carries out its actions.
    fn apply_step(&mut self, step: Step, now: Now, out: &mut impl Sink) {
        let chatty =
            matches!(step.audit.reason, Reason::Idle | Reason::NotApplicable | Reason::DeviationRecorded { .. });
        if step.transitioned() || !chatty {
            out.push(Action::Audit(AuditEvent::Lifecycle(step.audit)));
        }
        for a in step.actions {
            self.apply_action(a, now, out);
        }
    }

    fn apply_action(&mut self, a: LifecycleAction, now: Now, out: &mut impl Sink) {
        use crate::wire::immune::{InflammationQuery, InflammationQueryV2, RejectionNotice};
        match a {
            LifecycleAction::BroadcastInflammationQuery {
                query_id,
                suspect,
                quantity,
                suspect_reading,
                reporter_reading,
            } => {
                let q = InflammationQuery {
                    suspect_id: suspect,
                    quantity,
                    suspect_reading,
                    reporter_reading,
                    timestamp: now.unix_s,
                    v2: Some(InflammationQueryV2 { query_id }),
                };
                if self.queries.is_full() {
                    self.queries.remove(0);
                }
                let _ = self.queries.push(q);
                self.flush_queries(now, out);
            }
            LifecycleAction::SendRejectionNotice { subject, reason, deviation_tenths, query_id } => {
                let n =
                    RejectionNotice { subject_id: subject, reason, deviation_tenths, query_id, timestamp: now.unix_s };
                self.broadcast(Body::RejectionNotice(n), out);
                if reason == crate::wire::immune::RejectionReason::InflammationVote {
                    self.originate_vaccine(subject, now, out);
                }
                self.queue_dust_rejection(subject, 0, now, out);
            }
            LifecycleAction::IsolateFromConsensus { subject } => {
                if let Some(i) = self.subject_index(subject) {
                    if let Some((_, s)) = self.subjects.get_mut(i) {
                        s.isolated = true;
                    }
                }
                self.field.invalidate_device(subject);
            }
            LifecycleAction::UpdateProfile { subject } => self.rebase_subject(subject, out),
            LifecycleAction::RelearnProfile { subject } => {
                if let Some((_, s)) = self.subject_index(subject).and_then(|i| self.subjects.get_mut(i)) {
                    s.profile = None;
                    s.baseline = None;
                    s.isolated = false;
                    s.first_heard_ms = now.mono_ms;
                    s.evidence.clear();
                    s.vaccinated = false;
                    s.trend = None;
                }
            }
            LifecycleAction::ForgetSubject { subject } => self.forget(subject),
            LifecycleAction::IncreaseMonitoring { .. }
            | LifecycleAction::RestoreMonitoring { .. }
            | LifecycleAction::FreezeProfile
            | LifecycleAction::SuppressOwnTraces
            | LifecycleAction::ResumeOwnTraces => {}
            other => out.push(Action::Lifecycle(other)),
        }
    }

    /// ES-3.1 "confirm (update profile)": the neighbours confirmed that the
    /// environment moved, so the subject's latest reading is its new level.
    /// Its running profile and its frozen baseline are shifted by the same
    /// step (`BehavioralProfile::rebase_level`, the shape is kept), then the
    /// confirmed reading joins the running profile. Shifting both by the
    /// same amount keeps any drift the subject had before the step visible
    /// to the NK audit, and without the shift the next reading at the new
    /// level would open another vote and the audit would report the
    /// environment as the subject's drift.
    fn rebase_subject(&mut self, subject: DeviceId, out: &mut impl Sink) {
        let Some((_, s)) = self.subject_index(subject).and_then(|i| self.subjects.get_mut(i)) else {
            return;
        };
        let (Some(p), Some(obs)) = (s.profile.as_mut(), s.last_obs) else {
            return;
        };
        if obs.quantity != p.quantity {
            return;
        }
        let step = p.quantity.scale().unit_per_step;
        let delta = libm::roundf((p.quantity.to_value(obs.reading) - p.value_mean) / step);
        if !delta.is_finite() {
            return;
        }
        let delta = delta.clamp(-(u16::MAX as f32), u16::MAX as f32) as i32;
        p.rebase_level(delta);
        let _ = p.update(&obs, None, &[]);
        if let Some(b) = s.baseline.as_mut() {
            b.rebase_level(delta);
        }
        out.push(Action::Audit(AuditEvent::ProfileRebased { subject, delta_steps: delta }));
    }

    /// Sends the queued INFLAMMATION_QUERYs the neighbours' rate limit
    /// admits now (a step seen by every neighbour opens one vote per
    /// subject at once, twice what ES-15.1 lets one sender ask per minute),
    /// stamped with the send time. A query whose vote is no longer open
    /// (decided, timed out) is dropped unsent.
    fn flush_queries(&mut self, now: Now, out: &mut impl Sink) {
        while let Some(q) = self.queries.first().copied() {
            let open = q.v2.is_some_and(|v| {
                self.subject(q.suspect_id)
                    .and_then(|s| s.record.active_query())
                    .is_some_and(|a| a.query_id == v.query_id)
            });
            if open && !self.query_pacer.try_send(now.mono_ms) {
                return;
            }
            self.queries.remove(0);
            if open {
                let q = crate::wire::InflammationQuery { timestamp: now.unix_s, ..q };
                self.broadcast(Body::InflammationQuery(q), out);
            }
        }
    }

    /// Drops everything held about `device` (death, ES-10.3).
    fn forget(&mut self, device: DeviceId) {
        if let Some(i) = self.subject_index(device) {
            self.subjects.swap_remove(i);
        }
        self.quorum.remove(&device);
        self.dag.invalidate_device(device);
        self.field.invalidate_device(device);
        self.downlinks.cancel(&device);
    }

    /// An own sensor reading (ES-10.2 4b): innate check, then a signed
    /// TRACE_DEPOSIT v2 broadcast and deposited locally with our own weight.
    pub fn handle_reading(
        &mut self,
        now: Now,
        quantity: QuantityType,
        reading: crate::types::Reading,
        out: &mut impl Sink,
    ) {
        let plausible = crate::consistency::check_absolute_bounds(reading, quantity).unwrap_or(true);
        self.feed_own(NodeEvent::OwnReading { plausible }, now, out);
        if !plausible {
            out.push(Action::Audit(AuditEvent::OwnReadingImpossible { quantity, reading }));
            return;
        }
        SlowTrend::update(&mut self.own_trend, quantity, quantity.to_value(reading), now.mono_ms);
        if self.cfg.role == Role::Dust {
            return self.dust_uplink(now, reading, out);
        }
        if self.own.traces_suppressed() {
            return;
        }
        let (seq, prev_hash) = self.dag.next_own(self.id);
        let weight = self.own.weight();
        let t = crate::wire::TraceDeposit {
            timestamp: now.unix_s,
            quantity,
            reading,
            confidence: self.cfg.confidence,
            weight,
            seq,
            prev_hash,
            vouch: None,
        };
        self.broadcast(Body::TraceDeposit(t), out);
        let trace = crate::dag::Trace::from_deposit(self.id, &t);
        let _ = self.dag_append(&trace, now, out);
        let _ = self.field.deposit(&trace, weight, now.unix_s);
    }

    /// Starts a time sync with `source` (ES-10.2 phase 3); the answer comes
    /// back as [`Action::ClockOffset`].
    pub fn request_time_sync(&mut self, now: Now, source: DeviceId, rng: &mut impl Rng, out: &mut impl Sink) {
        let nonce = rng.next_u32();
        self.pending_sync = Some((source, nonce));
        let req = crate::wire::TimeSyncRequest { target_id: source, nonce, t1: sync_time(now) };
        self.unicast(source, Body::TimeSyncRequest(req), out);
    }

    /// Runs every due timer (ES-10.1, ES-10.2 4b–4i).
    pub fn handle_timers(&mut self, now: Now, rng: &mut impl Rng, out: &mut impl Sink) {
        self.enroll_poll(now, rng, out);
        for t in self.timers.take_due(now.mono_ms) {
            match t {
                Timer::SensorRead => out.push(Action::ReadSensor { quantity: self.cfg.quantity }),
                Timer::PresencePulse => self.send_presence(now, out),
                Timer::QuorumUpdate => {
                    self.quorum.update(now.unix_s);
                    let _ = self.field.set_lambda(self.quorum.lambda());
                }
                Timer::EpochTick => self.epoch_tick(now, rng, out),
                Timer::DagGc => {
                    self.dag.gc(now.unix_s);
                    self.sync_dag(out);
                    self.field.expire(now.unix_s);
                    self.vaccines.expire(now.unix_s);
                    self.metabolic_sweep(now, out);
                }
                Timer::Heartbeat => self.send_heartbeat(now, out),
                Timer::FlashFlush => {
                    out.push(Action::PersistState(self.persisted_state(now)));
                    self.sync_dag(out);
                }
                Timer::StateTimeouts => self.state_timeouts(now, out),
            }
        }
    }

    /// ES-1.2 metabolic decay of what the node keeps per subject, at the
    /// DAG GC (ES-10.2 4f). Each piece of state belongs to a class and is
    /// dropped once it is "effectively dead" in it (`MetabolicClock::dead`,
    /// below 2⁻⁵, the DAG's own cutoff), measured from when it was last
    /// refreshed on our monotonic clock:
    /// - ephemeral (dead after 50 min): the subject's last observation, so
    ///   no interval, vaccine offset or confirmed-level update is computed
    ///   from a reading that old; DAG and field entries are collected above;
    /// - operational (5 days without hearing the subject): its RSSI samples
    ///   (where it stood a week ago is no distance today) and the attack
    ///   evidence gathered for a vaccine;
    /// - structural (450 days without a profile update): profile and
    ///   baseline, relearnt from scratch. The 90-day heartbeat timeout
    ///   (SPEC-NOTES 10) forgets a silent subject first unless configured
    ///   longer.
    fn metabolic_sweep(&mut self, now: Now, out: &mut impl Sink) {
        use crate::metabolic::{MetabolicClock, StateClass};
        let dead_ms = |c| MetabolicClock::dead(c).lifetime_s().map_or(u64::MAX, |s| u64::from(s) * 1000);
        let (eph, op, st) =
            (dead_ms(StateClass::Ephemeral), dead_ms(StateClass::Operational), dead_ms(StateClass::Structural));
        let age = |since: u64| now.mono_ms.saturating_sub(since);
        let (mut ephemeral, mut operational, mut structural) = (0u16, 0u16, 0u16);
        for (_, s) in self.subjects.iter_mut() {
            if s.last_obs.is_some_and(|o| age(o.rx_ms) >= eph) {
                s.last_obs = None;
                ephemeral = ephemeral.saturating_add(1);
            }
            if age(s.record.last_heard_ms()) >= op && (!s.rssi.is_empty() || !s.evidence.is_empty()) {
                s.rssi = RssiTracker::new();
                s.evidence.clear();
                operational = operational.saturating_add(1);
            }
            if s.profile.is_some() && age(s.profile_updated_ms) >= st {
                s.profile = None;
                s.baseline = None;
                structural = structural.saturating_add(1);
            }
        }
        if ephemeral | operational | structural != 0 {
            out.push(Action::Audit(AuditEvent::MetabolicDecay { ephemeral, operational, structural }));
        }
    }

    fn send_presence(&mut self, now: Now, out: &mut impl Sink) {
        use crate::wire::presence::{PresencePulse, PresencePulseV2};
        let p = PresencePulse {
            mode: self.quorum.mode(),
            neighbor_count: self.quorum.machine().neighbor_count_u8(),
            v2: Some(PresencePulseV2 { timestamp: now.unix_s, tx_power_dbm: self.cfg.tx_power_dbm }),
        };
        self.broadcast(Body::PresencePulse(p), out);
    }

    fn send_heartbeat(&mut self, now: Now, out: &mut impl Sink) {
        let hb = crate::wire::Heartbeat {
            timestamp: now.unix_s,
            uptime: (now.mono_ms / 1000).min(u32::MAX as u64) as u32,
            battery_level: self.cfg.battery_level,
            mode: self.quorum.mode(),
            dag_tip_hash: self.dag.tip_hash().prefix2(),
        };
        self.broadcast(Body::Heartbeat(hb), out);
        self.boot.last_heartbeat = now.unix_s;
        self.feed_own(NodeEvent::HeartbeatSent, now, out);
    }

    /// ES-10.4: message-rate EMA, one NK audit draw per profile, neonatal
    /// time (paused in SOLO, inside [`NodeLifecycle`]), flood counters.
    fn epoch_tick(&mut self, now: Now, rng: &mut impl Rng, out: &mut impl Sink) {
        self.epoch = self.epoch.wrapping_add(1);
        self.guards.epoch_tick();
        self.close_epoch_batches(now, out);
        let mut i = 0;
        while i < self.subjects.len() {
            let draw = (rng.next_u32() & 0xFF) as u8;
            let mut drift = None;
            if let Some((id, s)) = self.subjects.get_mut(i) {
                let msgs = core::mem::take(&mut s.msgs_epoch);
                if let Some(p) = s.profile.as_mut() {
                    let _ = p.end_epoch(msgs);
                }
                if let (Some(base), Some(cur)) = (s.baseline.as_ref(), s.profile.as_ref()) {
                    if let Some(result) = crate::profile::maybe_run_nk_audit(*id, base, cur, draw, s.kind) {
                        out.push(Action::Audit(AuditEvent::NkAudit { subject: *id, draw, result }));
                        if let crate::profile::NkAuditResult::DriftDetected { drift_sigma, .. } = result {
                            drift = Some(drift_sigma);
                        }
                    }
                }
            }
            if let Some(sigma) = drift {
                self.act_on_drift(i, sigma, true, now, out);
            }
            self.act_on_relative_drift(i, now, out);
            i += 1;
        }
        self.sync_profiles(out);
        if self.epoch.checked_rem(PROFILE_PERSIST_EPOCHS) == Some(0) {
            out.push(Action::PersistProfiles);
        }
        let mode = self.quorum.mode();
        self.feed_own(NodeEvent::Tick { mode }, now, out);
    }

    /// What an NK audit that found drift does (ES-10.4 step 2): the offset
    /// of the running profile from the baseline becomes vaccine evidence,
    /// the record gets `DEVIATION(drift)`, and with `alert` a
    /// CONSISTENCY_ALERT (severity REJECTION) tells the neighbours, who
    /// audit the subject themselves (`follow_up_audit`). The
    /// alert's readings, which the spec leaves at 0, carry the running mean
    /// and the band of the baseline mean ± 2σ outside which ES-4.3 counts
    /// the value dimension as drifted. A drift we share ourselves, or that
    /// [`lifecycle::MIN_CORROBORATING`] other subjects share, is the
    /// environment: the baseline follows instead (`rebase_baseline`).
    fn act_on_drift(&mut self, i: usize, sigma: f32, alert: bool, now: Now, out: &mut impl Sink) {
        use crate::wire::immune::{ConsistencyAlert, ConsistencyAlertV2, Severity};
        if self.drift_explained(i) || self.drift_shared(i) >= lifecycle::MIN_CORROBORATING {
            return self.rebase_baseline(i, out);
        }
        let Some((id, s)) = self.subjects.get_mut(i) else {
            return;
        };
        // A profile we have not fed for the ephemeral lifetime describes the
        // subject as it was when we last heard it (at night, on a day's
        // swing), not a drift we can vote on: the vote would ask about that
        // old mean as if the subject read it now.
        if s.last_obs.is_none() {
            return;
        }
        let (id, mut body, mut level) = (*id, None, None);
        if let (Some(base), Some(cur)) = (s.baseline.as_ref(), s.profile.as_ref()) {
            let step = cur.quantity.scale().unit_per_step;
            let to_steps = |v: f32| libm::roundf(v / step).clamp(i32::MIN as f32, i32::MAX as f32) as i32;
            let to_reading = |v: f32| to_steps(v).clamp(i16::MIN as i32, i16::MAX as i32) as crate::types::Reading;
            let offset = cur.value_mean - base.value_mean;
            if offset.is_finite() {
                s.evidence.record(batch::Cause::Drift, to_steps(offset));
            }
            let latest = s.last_obs.filter(|o| o.quantity == cur.quantity).map(|o| o.reading);
            level = Some((cur.quantity, latest.unwrap_or_else(|| to_reading(cur.value_mean))));
            let band = 2.0 * (libm::sqrtf(base.value_var.max(0.0)) + 0.01);
            body = Some(ConsistencyAlert {
                suspect_id: id,
                suspect_reading: to_reading(cur.value_mean),
                expected_max: to_reading(base.value_mean + band),
                expected_min: to_reading(base.value_mean - band),
                severity: Severity::Rejection,
                v2: Some(ConsistencyAlertV2 { quantity: cur.quantity, timestamp: now.unix_s }),
            });
        }
        let (quantity, suspect_reading) = level.unwrap_or((self.cfg.quantity, 0));
        let my_reading = self.dag.recent_by_device(self.id, quantity).next().map_or(suspect_reading, |e| e.reading);
        let sample = lifecycle::DeviationSample { sigma, quantity, suspect_reading, my_reading };
        self.feed_subject(i, lifecycle::SubjectEvent::Deviation(sample), now, out);
        if let (true, Some(a)) = (alert, body) {
            self.broadcast(Body::ConsistencyAlert(a), out);
        }
    }

    /// Subjects other than the one at index `i` in good standing (not
    /// isolated; NORMAL, PYREXIA or INFLAMMATION): those whose moves can
    /// show that `i`'s is shared.
    fn others_in_standing(&self, i: usize) -> impl Iterator<Item = &(DeviceId, Subject<N>)> + '_ {
        self.subjects.iter().enumerate().filter_map(move |(j, x)| {
            let good =
                matches!(x.1.record.state(), SubjectState::Normal | SubjectState::Pyrexia | SubjectState::Inflammation);
            (j != i && !x.1.isolated && good).then_some(x)
        })
    }

    /// Subject `i`'s level drifted against ours ([`RelativeLevel`]) and no
    /// more than [`lifecycle::MIN_CORROBORATING`] − 1 other subjects in good
    /// standing drifted that way by half as much or more (if they did, it
    /// is our sensor or our surroundings that moved, or a zone the subject
    /// shares with them; half, because such a change reaches each device in
    /// its own time): the drift, physical units. Only a subject
    /// heard within the ephemeral lifetime: an old offset is about the past.
    fn relative_drift(&self, i: usize) -> Option<(QuantityType, f32)> {
        let (_, s) = self.subjects.get(i)?;
        let r = s.relative.as_ref()?;
        let d = r.drifted()?;
        s.last_obs.filter(|o| o.quantity == r.quantity())?;
        let shared = self
            .others_in_standing(i)
            .filter(|(_, o)| o.last_obs.is_some())
            .filter(|(_, o)| {
                o.relative
                    .as_ref()
                    .filter(|x| x.quantity() == r.quantity())
                    .and_then(RelativeLevel::drift)
                    .is_some_and(|x| x * d > 0.0 && libm::fabsf(x) >= 0.5 * libm::fabsf(d))
            })
            .count();
        (shared < usize::from(lifecycle::MIN_CORROBORATING)).then_some((r.quantity(), d))
    }

    /// A subject in good standing whose level drifted against ours
    /// ([`Node::relative_drift`]) gets `DEVIATION(drift)` on the σ scale
    /// whose REJECTION band starts at the drift floor, so our record asks
    /// the neighbours (ES-3.1: never reject on one deviation); at most once
    /// every [`RELATIVE_VOTE_EPOCHS`]. A rejection it leads to originates
    /// no vaccine (`originate_vaccine`).
    fn act_on_relative_drift(&mut self, i: usize, now: Now, out: &mut impl Sink) {
        let Some((quantity, drift)) = self.relative_drift(i) else {
            return;
        };
        let Some(my_reading) = self.my_latest(quantity).map(|(r, _)| r) else {
            return;
        };
        let epoch = self.epoch;
        let Some((id, s)) = self.subjects.get_mut(i) else {
            return;
        };
        let (Some(r), Some(obs)) = (s.relative.as_mut(), s.last_obs) else {
            return;
        };
        let idle = matches!(s.record.state(), SubjectState::Normal | SubjectState::Pyrexia) && !s.isolated;
        if !idle || r.voted_epoch.is_some_and(|e| epoch.wrapping_sub(e) < RELATIVE_VOTE_EPOCHS) {
            return;
        }
        r.voted_epoch = Some(epoch);
        let sigma = r.sigma(crate::types::sigma_tenths(crate::types::SIGMA_REJECTION));
        let steps = libm::roundf(drift / quantity.scale().unit_per_step).clamp(i32::MIN as f32, i32::MAX as f32) as i32;
        s.evidence.mark_relative();
        out.push(Action::Audit(AuditEvent::RelativeDrift { subject: *id, quantity, drift_steps: steps, sigma }));
        let sample = lifecycle::DeviationSample { sigma, quantity, suspect_reading: obs.reading, my_reading };
        self.feed_subject(i, lifecycle::SubjectEvent::Deviation(sample), now, out);
    }

    /// Other subjects in good standing whose own NK audit finds their level
    /// drifted from their baseline the same way as subject `i`'s: a drift
    /// many devices share is the environment moving (a step that went on
    /// after the vote that confirmed it, a slow warming), not one sensor.
    fn drift_shared(&self, i: usize) -> u8 {
        use crate::profile::{run_nk_audit, NkAuditResult, DIM_VALUE};
        let offset = |s: &Subject<N>| match (s.baseline.as_ref(), s.profile.as_ref()) {
            (Some(b), Some(c)) if b.quantity == c.quantity => Some((c.quantity, c.value_mean - b.value_mean)),
            _ => None,
        };
        let Some((quantity, mine)) = self.subjects.get(i).and_then(|(_, s)| offset(s)) else {
            return 0;
        };
        let n = self
            .others_in_standing(i)
            .filter(|(id, s)| {
                let (Some(b), Some(c)) = (s.baseline.as_ref(), s.profile.as_ref()) else {
                    return false;
                };
                let same_way = offset(s).is_some_and(|(q, o)| q == quantity && o * mine > 0.0);
                same_way
                    && matches!(run_nk_audit(*id, b, c, s.kind),
                        NkAuditResult::DriftDetected { dimensions, .. } if dimensions & DIM_VALUE != 0)
            })
            .count();
        n.min(u8::MAX as usize) as u8
    }

    /// True if our own readings moved from our slow average the way subject
    /// `i`'s level drifted from its baseline, at least as far and beyond
    /// noise ([`dispatch::CORROBORATION_FLOOR_STEPS`]): the
    /// vote-time lag rule applied to drift (a step we saw too went on
    /// after the vote that confirmed it).
    fn drift_explained(&self, i: usize) -> bool {
        let Some((_, s)) = self.subjects.get(i) else {
            return false;
        };
        let (Some(b), Some(c)) = (s.baseline.as_ref(), s.profile.as_ref()) else {
            return false;
        };
        let q = c.quantity;
        let drift = c.value_mean - b.value_mean;
        let own = self.own_trend.filter(|t| t.quantity == q).and_then(|t| {
            let latest = self.dag.recent_by_device(self.id, q).next()?;
            Some(q.to_value(latest.reading) - t.mean)
        });
        let floor = dispatch::CORROBORATION_FLOOR_STEPS * q.scale().unit_per_step;
        own.is_some_and(|o| o * drift > 0.0 && libm::fabsf(drift) <= libm::fabsf(o) && libm::fabsf(o) >= floor)
    }

    /// A drift our own readings or the neighbourhood share
    /// ([`Node::drift_explained`], [`Node::drift_shared`]): the subject's
    /// baseline follows its running level (the shape is kept),
    /// as after a vote that confirmed an environment change.
    fn rebase_baseline(&mut self, i: usize, out: &mut impl Sink) {
        let Some((id, s)) = self.subjects.get_mut(i) else {
            return;
        };
        let (Some(b), Some(c)) = (s.baseline.as_mut(), s.profile.as_ref()) else {
            return;
        };
        let delta = libm::roundf((c.value_mean - b.value_mean) / c.quantity.scale().unit_per_step);
        if !delta.is_finite() {
            return;
        }
        let delta = delta.clamp(-(u16::MAX as f32), u16::MAX as f32) as i32;
        b.rebase_level(delta);
        out.push(Action::Audit(AuditEvent::ProfileRebased { subject: *id, delta_steps: delta }));
    }

    /// ES-10.4 step 5: each profile is broadcast every tenth epoch, the
    /// subjects spread over the epochs by [`profile_sync_due`] so that no
    /// epoch carries more than our neighbours' PROFILE_SYNC rate limit.
    /// Profiles still learning (subject NEONATAL) are not sent.
    fn sync_profiles(&mut self, out: &mut impl Sink) {
        let n = self.subjects.len();
        for i in 0..n {
            if !profile_sync_due(self.epoch, i, n) {
                continue;
            }
            let Some((id, s)) = self.subjects.get(i) else {
                continue;
            };
            if s.record.state() == SubjectState::Neonatal {
                continue;
            }
            let Some(body) = s.profile.as_ref().and_then(|p| profile_sync_of(*id, p)) else {
                continue;
            };
            self.broadcast(Body::ProfileSync(body), out);
        }
    }

    /// ES-10.5 for the node and every record, plus freezing the profiles of
    /// subjects whose neonatal learning time is over.
    fn state_timeouts(&mut self, now: Now, out: &mut impl Sink) {
        self.flush_queries(now, out);
        let mode = self.quorum.mode();
        self.feed_own(NodeEvent::Tick { mode }, now, out);
        let mut i = 0;
        while i < self.subjects.len() {
            let before = self.subjects.len();
            let mut freeze = false;
            if let Some((_, s)) = self.subjects.get_mut(i) {
                let learned = s.profile.as_ref().is_some_and(|p| p.value_count >= self.cfg.min_profile_samples);
                if s.record.state() == SubjectState::Neonatal
                    && learned
                    && now.mono_ms.saturating_sub(s.first_heard_ms) >= self.cfg.subject_neonatal_ms
                {
                    if let Some(p) = s.profile.as_ref() {
                        let mut base = p.clone();
                        base.freeze();
                        s.profile = Some(p.running_copy());
                        s.baseline = Some(base);
                    }
                    freeze = true;
                }
            }
            if freeze {
                self.feed_subject(i, lifecycle::SubjectEvent::ProfileFrozen, now, out);
            }
            self.feed_subject(i, lifecycle::SubjectEvent::Tick, now, out);
            if let Some((_, s)) = self.subjects.get_mut(i).filter(|(_, s)| s.record.state() != SubjectState::Rejection)
            {
                // The rejection is over: a new one may vaccinate again.
                s.vaccinated = false;
            }
            if self.subjects.len() == before {
                i += 1;
            }
        }
    }
}

/// `now` as a time-sync instant.
fn sync_time(now: Now) -> crate::wire::timesync::SyncTime {
    crate::wire::timesync::SyncTime { secs: now.unix_s, millis: now.unix_subsec_ms.min(999) }
}
