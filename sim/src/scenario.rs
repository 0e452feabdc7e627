//! Scenario files (RON): the world, the nodes, the radio, attacks, faults
//! and the expectations a run is checked against. `scenarios/README.md`
//! documents every field; this module parses and validates them, and
//! reports a problem with its line and column and what to change.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// A whole scenario.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Simulated duration after warm-up, s.
    pub duration_s: u64,
    /// Seeds; `run` uses the first unless `--seed` is given, `check` runs all.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    /// Real Ed25519 or the modeled keyed tag.
    #[serde(default)]
    pub crypto: CryptoMode,
    /// Warm or cold start.
    #[serde(default)]
    pub start: Start,
    /// The area nodes are placed in, m.
    pub area: Area,
    /// Radio models.
    #[serde(default)]
    pub radio: RadioConfig,
    /// Node placements, in order; node indices count through them.
    pub nodes: Vec<Placement>,
    /// Ground truth.
    #[serde(default)]
    pub world: WorldConfig,
    /// Node overrides of the spec's timers.
    #[serde(default)]
    pub timers: TimerOverrides,
    /// Node clocks and time sync.
    #[serde(default)]
    pub clocks: ClockConfig,
    /// Attacks, each around one (or several) otherwise honest nodes.
    #[serde(default)]
    pub attacks: Vec<Attack>,
    /// Faults.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// What the run must show.
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// Time-series sampling interval, s.
    #[serde(default = "default_sample_s")]
    pub sample_interval_s: u64,
    /// Give every mesh node (Nano, Gateway, Full) the ES-11.3 deployment
    /// manifest an installer would load for a surveyed building: its own
    /// position and that of each node it has a radio link from, nearest
    /// first, up to the core's `MANIFEST_CAPACITY`. Without it (the
    /// default) distances come from RSSI alone, as in an ad-hoc deployment.
    #[serde(default)]
    pub deployment_manifest: bool,
}

fn default_seeds() -> Vec<u64> {
    vec![1]
}

fn default_sample_s() -> u64 {
    60
}

/// Which signature scheme the nodes use.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum CryptoMode {
    /// A keyed tag: unforgeable inside the simulation, ~100× cheaper.
    #[default]
    Modeled,
    /// Ed25519 as on the boards.
    Real,
}

/// How the nodes begin.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Start {
    /// Nodes boot at t = 0 with the spec's neonatal periods.
    Cold,
    /// Nodes run `warmup_s` on the benign world first (attacks and faults
    /// off) with their neonatal periods shortened to fit, so that at t = 0
    /// they are NORMAL with trained profiles.
    Warm {
        /// Warm-up length, s.
        warmup_s: u64,
    },
}

impl Default for Start {
    fn default() -> Self {
        Start::Warm { warmup_s: 1_800 }
    }
}

/// A rectangle, m.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Area {
    /// Width (x), m.
    pub width_m: f64,
    /// Height (y), m.
    pub height_m: f64,
}

/// An axis-aligned region, m.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rect {
    /// Left.
    pub x0: f64,
    /// Bottom.
    pub y0: f64,
    /// Right.
    pub x1: f64,
    /// Top.
    pub y1: f64,
}

impl Rect {
    /// True if `(x, y)` lies inside (edges included).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        x >= self.x0 && x <= self.x1 && y >= self.y0 && y <= self.y1
    }
}

/// How a BLE frame goes on air (ES-12.2).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum BleAdv {
    /// BT 5 extended advertising: the whole frame in one packet.
    #[default]
    Extended,
    /// Legacy advertising: 31-byte segments (v2 headers, 25 frame bytes
    /// each), every segment on all three advertising channels; a receiver
    /// scanning one channel needs every segment to reassemble the frame.
    Legacy,
}

/// The link between ESP32-class nodes (Nano, Gateway, Full; ES-12.2,
/// ES-12.3). Dust nodes (nRF52840) have no WiFi: under `EspNow` they reach
/// the mesh only through LoRa gateways.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Bearer {
    /// BLE advertising (see [`BleAdv`]), the spec's primary bearer.
    #[default]
    Ble,
    /// ESP-NOW on the WiFi PHY (802.11b DSSS at 1 Mb/s): broadcasts without
    /// acknowledgement, unicasts to a registered peer acknowledged and
    /// retried by the MAC, unicasts to anyone else over the UDP multicast
    /// fallback (no acknowledgement).
    EspNow,
}

/// ESP-NOW parameters (ES-12.3); used when `radio.bearer` is `EspNow`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EspNowConfig {
    /// WiFi transmit power, dBm (ESP32-C3: up to 21 dBm at 802.11b 1 Mb/s).
    pub tx_power_dbm: f64,
    /// Receiver sensitivity, dBm (ESP32-C3 datasheet: −98 dBm at 1 Mb/s).
    pub sensitivity_dbm: f64,
    /// Hardware peer table size (ES-12.3: 20): a node's peers are its
    /// strongest links; unicasts to anyone else take the multicast fallback.
    pub max_peers: u8,
    /// MAC retransmissions of an unacknowledged unicast to a peer.
    pub retries: u8,
}

impl Default for EspNowConfig {
    fn default() -> Self {
        EspNowConfig { tx_power_dbm: 20.0, sensitivity_dbm: -98.0, max_peers: 20, retries: 7 }
    }
}

/// Largest `radio.relay_ttl`: ES-15.4's widest TTL (vaccines).
pub const MAX_RELAY_TTL: u8 = 10;

/// Radio parameters (ES-11.4, ES-12).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RadioConfig {
    /// Path-loss environment (ES-11.4 exponent): Indoor or Outdoor.
    pub environment: Environment,
    /// Static shadowing σ per link, dB.
    pub shadowing_sd_db: f64,
    /// Per-packet fading σ, dB.
    pub fading_sd_db: f64,
    /// Receiver sensitivity, dBm.
    pub sensitivity_dbm: f64,
    /// Noise floor, dBm.
    pub noise_floor_dbm: f64,
    /// Transmit power of Nano nodes, dBm.
    pub tx_power_dbm: f64,
    /// Fixed stack latency before a frame is on air, µs (the engine's
    /// lookahead is the smallest link latency).
    pub stack_latency_us: u64,
    /// Largest extra random advertising delay, µs (BLE advDelay).
    pub adv_jitter_us: u64,
    /// Model collisions on the three advertising channels.
    pub collisions: bool,
    /// BLE bearer: extended advertising (one packet per frame) or legacy
    /// advertising with ES-12.2 segmentation (the nRF52840 image's bearer).
    pub ble_adv: BleAdv,
    /// Legacy advertising interval, ms: one segment per advertising event
    /// (ES-12.2: 100 ms in the active phase, 1000 ms asleep).
    pub legacy_interval_ms: u32,
    /// Legacy reassembly timeout, ms (ES-12.2: 500), from the first segment.
    pub reassembly_timeout_ms: u32,
    /// BLE Mesh relay TTL (ES-12.2, ES-15.4; the spec's default is 3):
    /// Nano, gateway and Full nodes rebroadcast each new frame while
    /// `relay_ttl − hops` > 0, so frames reach `relay_ttl + 1` radio hops.
    /// 0 (the default here) turns relaying off.
    pub relay_ttl: u8,
    /// BLE Mesh network-layer transmissions of each unicast frame
    /// (Network Transmit Count + 1), [`crate::radio::NETWORK_TRANSMIT_INTERVAL_US`]
    /// plus an advertising delay apart; the receiver keeps the first copy it
    /// hears (its relay cache drops the rest). 1 sends each unicast once.
    pub ble_unicast_transmits: u8,
    /// Bearer between ESP32-class nodes: BLE (default) or ESP-NOW.
    pub bearer: Bearer,
    /// ESP-NOW settings, for `bearer: EspNow`.
    pub esp_now: EspNowConfig,
    /// LoRa duty cycle, fraction (ES-12.4: 1 %).
    pub lora_duty_cycle: f64,
    /// LoRa range with SF12, m.
    pub lora_range_m: f64,
}

/// [`RadioConfig::ble_unicast_transmits`] when a file gives none.
pub const DEFAULT_UNICAST_TRANSMITS: u8 = 1;

impl Default for RadioConfig {
    fn default() -> Self {
        RadioConfig {
            environment: Environment::Indoor,
            shadowing_sd_db: 4.0,
            fading_sd_db: 2.0,
            sensitivity_dbm: -95.0,
            noise_floor_dbm: -100.0,
            tx_power_dbm: 0.0,
            stack_latency_us: 2_000,
            adv_jitter_us: 10_000,
            collisions: false,
            ble_adv: BleAdv::Extended,
            legacy_interval_ms: 100,
            reassembly_timeout_ms: 500,
            relay_ttl: 0,
            ble_unicast_transmits: DEFAULT_UNICAST_TRANSMITS,
            bearer: Bearer::Ble,
            esp_now: EspNowConfig::default(),
            lora_duty_cycle: 0.01,
            lora_range_m: 2_000.0,
        }
    }
}

/// ES-11.4 environments (the exponents are the core's calibration).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Environment {
    /// Walls and multipath.
    #[default]
    Indoor,
    /// Open air.
    Outdoor,
}

impl Environment {
    /// The core's environment.
    pub fn core(self) -> krill_core::distance::Environment {
        match self {
            Environment::Indoor => krill_core::distance::Environment::Indoor,
            Environment::Outdoor => krill_core::distance::Environment::Outdoor,
        }
    }
}

/// Device classes.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum NodeClass {
    /// BLE mesh sensor with the immune system.
    #[default]
    Nano,
    /// LoRa leaf sensor.
    Dust,
    /// Nano that relays Dust uplinks.
    Gateway,
    /// Batch sink.
    Full,
}

/// Quantities a scenario can name.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quantity {
    /// °C.
    #[default]
    Temperature,
    /// %RH.
    Humidity,
    /// hPa.
    Pressure,
    /// ppm.
    Co2,
    /// lx.
    Light,
}

impl Quantity {
    /// The core's quantity type.
    pub fn core(self) -> krill_core::types::QuantityType {
        use krill_core::types::QuantityType as Q;
        match self {
            Quantity::Temperature => Q::Temperature,
            Quantity::Humidity => Q::Humidity,
            Quantity::Pressure => Q::Pressure,
            Quantity::Co2 => Q::Co2,
            Quantity::Light => Q::Light,
        }
    }
}

/// A group of nodes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// Device class.
    #[serde(default)]
    pub class: NodeClass,
    /// What they measure.
    #[serde(default)]
    pub quantity: Quantity,
    /// Where they stand.
    pub layout: Layout,
}

/// Where a group's nodes stand.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Layout {
    /// `rows × cols` nodes, `spacing_m` apart, from `origin`.
    Grid {
        /// Rows.
        rows: u32,
        /// Columns.
        cols: u32,
        /// Distance between neighbours, m.
        spacing_m: f64,
        /// First node's position.
        #[serde(default)]
        origin: (f64, f64),
    },
    /// `count` nodes uniformly in `region` (the whole area if `None`).
    Random {
        /// How many.
        count: u32,
        /// Where.
        #[serde(default)]
        region: Option<Rect>,
    },
    /// Given positions.
    Explicit(Vec<(f64, f64)>),
}

impl Layout {
    /// Nodes in the group.
    pub fn count(&self) -> u64 {
        match self {
            Layout::Grid { rows, cols, .. } => u64::from(*rows) * u64::from(*cols),
            Layout::Random { count, .. } => u64::from(*count),
            Layout::Explicit(v) => v.len() as u64,
        }
    }
}

/// Ground truth: one field per quantity, and named zones for reporting.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    /// Fields; a quantity without one reads a constant typical value.
    pub fields: Vec<FieldConfig>,
    /// Named regions for per-zone consensus error.
    pub zones: Vec<Zone>,
}

/// A named region.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Name used by expectations and CSV columns.
    pub name: String,
    /// Its extent.
    pub rect: Rect,
}

/// The truth of one quantity over space and time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// Which quantity.
    pub quantity: Quantity,
    /// Value at the origin, in the quantity's unit (°C, hPa, ppm, …).
    pub base: f64,
    /// Change per metre along x and y.
    #[serde(default)]
    pub gradient: (f64, f64),
    /// Daily swing amplitude (sine, peak at 15:00).
    #[serde(default)]
    pub diurnal_amplitude: f64,
    /// Sensor noise σ per reading.
    #[serde(default)]
    pub noise_sd: f64,
    /// σ of each sensor's fixed bias.
    #[serde(default)]
    pub bias_sd: f64,
    /// Events changing the truth.
    #[serde(default)]
    pub events: Vec<WorldEvent>,
}

/// Something that changes the truth.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum WorldEvent {
    /// A fire at `at` from `start_s`: +`peak` at its centre, spreading at
    /// `growth_m_per_s`, falling off over `falloff_m` outside its front.
    Fire {
        /// Centre.
        at: (f64, f64),
        /// Start, s.
        start_s: u64,
        /// Front speed, m/s.
        growth_m_per_s: f64,
        /// Rise inside the front.
        peak: f64,
        /// Fall-off length outside the front, m.
        falloff_m: f64,
    },
    /// An HVAC step in `zone` at `start_s`, approaching `delta` with time
    /// constant `tau_s`.
    HvacStep {
        /// Zone name.
        zone: String,
        /// Start, s.
        start_s: u64,
        /// Final change.
        delta: f64,
        /// Time constant, s.
        tau_s: f64,
    },
    /// A wall at x = `x`: the side x > `x` differs by `delta` (and the wall
    /// attenuates radio by `attenuation_db`).
    Wall {
        /// Position, m.
        x: f64,
        /// Difference behind it.
        delta: f64,
        /// Radio loss through it, dB.
        #[serde(default)]
        attenuation_db: f64,
    },
    /// A door in the wall at x = `x` between y0 and y1, open from `open_s`
    /// to `close_s`: both sides mix towards the mean with time constant
    /// `tau_s` near the door (within `reach_m`).
    Door {
        /// The wall's x.
        x: f64,
        /// Door extent along y.
        y0: f64,
        /// Door extent along y.
        y1: f64,
        /// Opens, s.
        open_s: u64,
        /// Closes, s.
        close_s: u64,
        /// Mixing reach from the door, m.
        reach_m: f64,
        /// Mixing time constant, s.
        tau_s: f64,
    },
}

impl WorldEvent {
    /// Refuses numbers the world model could only clamp or turn into NaN.
    fn validate(&self) -> Result<(), String> {
        let finite = |vs: &[f64]| vs.iter().all(|v| v.is_finite());
        match self {
            WorldEvent::Fire { at, growth_m_per_s, peak, falloff_m, .. } => {
                if !finite(&[at.0, at.1, *growth_m_per_s, *peak, *falloff_m]) {
                    return Err("Fire: every number must be finite".into());
                }
                if *growth_m_per_s < 0.0 || *falloff_m <= 0.0 {
                    return Err("Fire: give `growth_m_per_s` ≥ 0 and `falloff_m` > 0".into());
                }
            }
            WorldEvent::HvacStep { delta, tau_s, .. } => {
                if !finite(&[*delta, *tau_s]) || *tau_s <= 0.0 {
                    return Err("HvacStep: give a finite `delta` and a time constant `tau_s` > 0".into());
                }
            }
            WorldEvent::Wall { x, delta, attenuation_db } => {
                if !finite(&[*x, *delta, *attenuation_db]) || *attenuation_db < 0.0 {
                    return Err("Wall: give finite `x` and `delta`, and `attenuation_db` ≥ 0".into());
                }
            }
            WorldEvent::Door { x, y0, y1, open_s, close_s, reach_m, tau_s } => {
                if !finite(&[*x, *y0, *y1, *reach_m, *tau_s]) || y0 >= y1 || *reach_m <= 0.0 || *tau_s <= 0.0 {
                    return Err("Door: give finite numbers with y0 < y1, `reach_m` > 0 and `tau_s` > 0".into());
                }
                if close_s <= open_s {
                    return Err(format!("Door: it closes at {close_s} s, not after it opens at {open_s} s"));
                }
            }
        }
        Ok(())
    }
}

/// Timer overrides (ms); `None` keeps ES-10.1's value.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TimerOverrides {
    /// Sensor read interval.
    pub sensor_read_ms: Option<u64>,
    /// Presence pulse interval.
    pub presence_pulse_ms: Option<u64>,
    /// Heartbeat interval.
    pub heartbeat_ms: Option<u64>,
}

/// Node clocks: every node's wall clock starts off by a normal offset and
/// runs fast or slow by a normal drift; gateways and Full nodes keep
/// disciplined (GPS/NTP) time and serve ES-10.2 phase-3 time syncs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// σ of the initial offset, ms.
    pub offset_sd_ms: f64,
    /// σ of the drift, ppm.
    pub drift_sd_ppm: f64,
    /// Time sync with the strongest gateway or Full node in radio range:
    /// at boot (ES-10.2 phase 3) and then every `sync_interval_s` (0 = at
    /// boot only, as the spec has it).
    pub sync: bool,
    /// Re-sync period, s; 0 = only at boot.
    pub sync_interval_s: u64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig { offset_sd_ms: 200.0, drift_sd_ppm: 20.0, sync: true, sync_interval_s: 0 }
    }
}

/// One attack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Attack {
    /// The attacking node's index.
    pub node: u32,
    /// Start, s after warm-up.
    pub start_s: u64,
    /// End, s; `None` = to the end.
    #[serde(default)]
    pub end_s: Option<u64>,
    /// What it does.
    pub kind: AttackKind,
}

/// Attack behaviours (wrappers around an honest node).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum AttackKind {
    /// Reports truth + `offset` (quantity units).
    Spike {
        /// Offset.
        offset: f64,
    },
    /// Reports truth + `rate_per_h` × hours since start.
    Drift {
        /// Drift rate per hour.
        rate_per_h: f64,
    },
    /// Reports a square wave of `amplitude` with `period_s` around truth.
    Pattern {
        /// Amplitude.
        amplitude: f64,
        /// Period, s.
        period_s: u64,
    },
    /// Sends `rate_per_s` extra frames per second (forged ids if
    /// `forged_ids`, its own otherwise).
    Flood {
        /// Frames per second.
        rate_per_s: f64,
        /// Use forged sender ids (drains victims' rate limits if unfixed).
        #[serde(default)]
        forged_ids: bool,
    },
    /// Re-broadcasts frames it heard `delay_s` earlier.
    Replay {
        /// Delay, s.
        delay_s: u64,
    },
    /// Sends traces in `victim`'s name signed with its own key.
    Forgery {
        /// Impersonated node.
        victim: u32,
        /// Offset of the forged readings.
        offset: f64,
    },
    /// Claims `identities` extra identities, each sending traces.
    Sybil {
        /// Extra identities.
        identities: u32,
        /// Offset of their readings.
        offset: f64,
    },
    /// Claims the maximum weight with offset readings.
    WeightInflation {
        /// Offset of its readings.
        offset: f64,
    },
    /// Several nodes report the same offset together.
    Collusion {
        /// The other members (besides `node`).
        members: Vec<u32>,
        /// Shared offset.
        offset: f64,
    },
    /// A gateway that forges its Dust devices' readings.
    GatewayCompromise {
        /// Offset given to wrapped Dust traces.
        offset: f64,
    },
    /// Drops a fraction of frames it should relay.
    SelectiveRelay {
        /// Fraction dropped.
        drop_fraction: f64,
    },
    /// Sends a DEATH_CERTIFICATE in `victim`'s name.
    ForgedDeathCertificate {
        /// The device declared dead.
        victim: u32,
    },
}

/// Largest reading offset (or drift per hour, or pattern amplitude) an
/// attack may give, in the quantity's units: far beyond any sensor's range,
/// small enough that sums of readings stay finite.
pub const MAX_ATTACK_OFFSET: f64 = 1e6;

impl AttackKind {
    /// The number the attack adds to readings (offset, drift rate or
    /// amplitude), if it has one.
    fn offset(&self) -> Option<f64> {
        match self {
            AttackKind::Spike { offset }
            | AttackKind::Forgery { offset, .. }
            | AttackKind::Sybil { offset, .. }
            | AttackKind::WeightInflation { offset }
            | AttackKind::Collusion { offset, .. }
            | AttackKind::GatewayCompromise { offset } => Some(*offset),
            AttackKind::Drift { rate_per_h } => Some(*rate_per_h),
            AttackKind::Pattern { amplitude, .. } => Some(*amplitude),
            AttackKind::Flood { .. }
            | AttackKind::Replay { .. }
            | AttackKind::SelectiveRelay { .. }
            | AttackKind::ForgedDeathCertificate { .. } => None,
        }
    }
}

/// One fault.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When, s after warm-up.
    pub at_s: u64,
    /// What.
    pub kind: FaultKind,
}

/// Fault kinds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum FaultKind {
    /// Node powers off for `down_s`, then reboots from its flash.
    Crash {
        /// Node.
        node: u32,
        /// Time off, s.
        down_s: u64,
    },
    /// Links crossing x = `x` are cut for `duration_s`.
    Partition {
        /// Cut position, m.
        x: f64,
        /// Length, s.
        duration_s: u64,
    },
    /// Node's clock jumps by `step_ms`.
    ClockStep {
        /// Node.
        node: u32,
        /// Jump, ms.
        step_ms: i64,
    },
    /// `bytes` random bytes of the node's flash are flipped, then it reboots.
    FlashCorruption {
        /// Node.
        node: u32,
        /// Bytes flipped.
        bytes: u32,
    },
    /// Node's battery runs out: it stops for good.
    BatteryDepletion {
        /// Node.
        node: u32,
    },
}

/// What a run must show.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Expectation {
    /// At least `by_at_least` honest nodes hold `attacker` outside NORMAL
    /// (PYREXIA or worse) within `within_s` of its attack's start.
    Detected {
        /// Attacker's index.
        attacker: u32,
        /// Fewest honest monitors.
        by_at_least: u32,
        /// Deadline after the attack's start, s.
        within_s: u64,
    },
    /// At least `by_at_least` honest nodes hold `attacker` in REJECTION or
    /// QUARANTINE by the end.
    Rejected {
        /// Attacker's index.
        attacker: u32,
        /// Fewest honest monitors.
        by_at_least: u32,
    },
    /// No honest node is ever held in REJECTION by an honest monitor.
    NoHonestRejected,
    /// At most `max` honest nodes are ever held in REJECTION by an honest
    /// monitor: a regression bound on a known false-positive rate, for
    /// scenarios where `NoHonestRejected` is not met yet.
    HonestRejectedAtMost {
        /// Bound.
        max: u32,
    },
    /// Mean |consensus − truth| over honest nodes in `zone` (all if
    /// `None`) stays below `max` from `after_s` on, up to `until_s` if set.
    ConsensusError {
        /// Zone name.
        #[serde(default)]
        zone: Option<String>,
        /// Bound, quantity units.
        max: f64,
        /// Ignore the first seconds.
        #[serde(default)]
        after_s: u64,
        /// Ignore the samples after this scenario time, s.
        #[serde(default)]
        until_s: Option<u64>,
    },
    /// Fraction of honest broadcasts' deliveries to in-range nodes that
    /// were handled (not dropped) is at least `min`.
    HonestDelivery {
        /// Lower bound, 0–1.
        min: f64,
    },
    /// The mean consensus of `zone` rises by at least `min_rise` within
    /// `within_s` of `after_s` (a real event is followed, not suppressed).
    FollowsEvent {
        /// Zone name.
        zone: String,
        /// Event start, s.
        after_s: u64,
        /// Deadline, s after the start.
        within_s: u64,
        /// Rise required.
        min_rise: f64,
    },
}

/// A scenario that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// RON syntax or schema error.
    #[error("{path}:{line}:{col}: {msg}")]
    Parse {
        /// File.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// Parsed but not usable.
    #[error("{path}: {msg}")]
    Invalid {
        /// File.
        path: String,
        /// What to change.
        msg: String,
    },
}

/// Most nodes a scenario may declare.
pub const MAX_SCENARIO_NODES: u64 = 1_000_000;
/// Longest simulated time, s (one year).
pub const MAX_DURATION_S: u64 = 365 * 86_400;

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io { path: p.clone(), source })?;
        Scenario::parse(&text, &p)
    }

    /// Parses and validates scenario text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = ron::Options::default().from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_string(),
            line: e.span.start.line,
            col: e.span.start.col,
            msg: e.code.to_string(),
        })?;
        s.validate().map_err(|msg| ScenarioError::Invalid { path: path.to_string(), msg })?;
        Ok(s)
    }

    /// Number of nodes.
    pub fn node_count(&self) -> u64 {
        self.nodes.iter().map(|p| p.layout.count()).sum()
    }

    /// Warm-up length, s.
    pub fn warmup_s(&self) -> u64 {
        match self.start {
            Start::Cold => 0,
            Start::Warm { warmup_s } => warmup_s,
        }
    }

    /// Checks everything the type system cannot; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.node_count();
        if n == 0 {
            return Err("`nodes` places no node: add a placement with a count above 0".into());
        }
        if n > MAX_SCENARIO_NODES {
            return Err(format!("{n} nodes is more than the simulator's limit of {MAX_SCENARIO_NODES}"));
        }
        if self.duration_s == 0 || self.duration_s > MAX_DURATION_S {
            return Err(format!("`duration_s` is {}: give 1..={MAX_DURATION_S}", self.duration_s));
        }
        if self.warmup_s() > MAX_DURATION_S {
            return Err(format!("`warmup_s` is {}: give at most {MAX_DURATION_S}", self.warmup_s()));
        }
        if self.seeds.is_empty() {
            return Err("`seeds` is empty: give at least one seed".into());
        }
        if self.sample_interval_s == 0 {
            return Err("`sample_interval_s` must be at least 1".into());
        }
        let finite_pos = |v: f64| v.is_finite() && v > 0.0;
        if !finite_pos(self.area.width_m) || !finite_pos(self.area.height_m) || self.area.width_m > 1e6 {
            return Err("`area` needs finite positive `width_m`/`height_m` up to 1,000 km".into());
        }
        let r = &self.radio;
        for (name, v) in
            [("shadowing_sd_db", r.shadowing_sd_db), ("fading_sd_db", r.fading_sd_db), ("lora_range_m", r.lora_range_m)]
        {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("`radio.{name}` is {v}: give a finite value ≥ 0"));
            }
        }
        if r.relay_ttl > MAX_RELAY_TTL {
            return Err(format!(
                "`radio.relay_ttl` is {}: give 0 (no relaying) up to {MAX_RELAY_TTL} (ES-15.4 uses 3, 10 for vaccines)",
                r.relay_ttl
            ));
        }
        if !(r.lora_duty_cycle > 0.0 && r.lora_duty_cycle <= 1.0) {
            return Err(format!("`radio.lora_duty_cycle` is {}: give a fraction in (0, 1]", r.lora_duty_cycle));
        }
        let c = &self.clocks;
        for (name, v) in [("offset_sd_ms", c.offset_sd_ms), ("drift_sd_ppm", c.drift_sd_ppm)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("`clocks.{name}` is {v}: give a finite value ≥ 0"));
            }
        }
        if c.offset_sd_ms > 86_400_000.0 || c.drift_sd_ppm > 1_000_000.0 {
            return Err("`clocks`: give an offset σ of at most a day and a drift σ below 10⁶ ppm".into());
        }
        if c.sync_interval_s > 0 && c.sync_interval_s < 10 {
            return Err(format!(
                "`clocks.sync_interval_s` is {}: give 0 (boot only) or at least 10",
                c.sync_interval_s
            ));
        }
        if r.stack_latency_us == 0 {
            return Err("`radio.stack_latency_us` must be at least 1 (it is the engine's lookahead)".into());
        }
        if !(20..=10_240).contains(&r.legacy_interval_ms) {
            return Err(format!(
                "`radio.legacy_interval_ms` is {}: give a BLE advertising interval of 20 to 10240 ms",
                r.legacy_interval_ms
            ));
        }
        if !(1..=8).contains(&r.ble_unicast_transmits) {
            return Err(format!(
                "`radio.ble_unicast_transmits` is {}: give 1 to 8 (BLE Mesh Network Transmit Count 0..7, plus one)",
                r.ble_unicast_transmits
            ));
        }
        if !(1..=60_000).contains(&r.reassembly_timeout_ms) {
            return Err(format!("`radio.reassembly_timeout_ms` is {}: give 1 to 60000 ms", r.reassembly_timeout_ms));
        }
        if r.bearer == Bearer::EspNow {
            let e = &r.esp_now;
            if !(-40.0..=21.0).contains(&e.tx_power_dbm) {
                return Err(format!("`radio.esp_now.tx_power_dbm` is {}: give −40 to 21 dBm", e.tx_power_dbm));
            }
            if !(-110.0..=-50.0).contains(&e.sensitivity_dbm) {
                return Err(format!("`radio.esp_now.sensitivity_dbm` is {}: give −110 to −50 dBm", e.sensitivity_dbm));
            }
            if e.max_peers == 0 || e.retries > 15 {
                return Err("`radio.esp_now`: give `max_peers` ≥ 1 and `retries` ≤ 15".into());
            }
            let ble_only = [
                (r.relay_ttl > 0, "`relay_ttl` (ESP-NOW has no mesh relay)"),
                (r.ble_adv == BleAdv::Legacy, "`ble_adv: Legacy`"),
                (r.collisions, "`collisions` (WiFi's CSMA/CA is not modelled)"),
            ];
            if let Some((_, what)) = ble_only.iter().find(|(on, _)| *on) {
                return Err(format!("`radio.bearer: EspNow` cannot be combined with {what}: remove one of them"));
            }
        }
        for (i, p) in self.nodes.iter().enumerate() {
            match &p.layout {
                Layout::Grid { spacing_m, .. } if !finite_pos(*spacing_m) => {
                    return Err(format!("`nodes[{i}]`: `spacing_m` must be a finite positive distance"));
                }
                Layout::Explicit(v) if v.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) => {
                    return Err(format!("`nodes[{i}]`: positions must be finite"));
                }
                _ => {}
            }
        }
        if self.deployment_manifest && self.nodes.iter().all(|p| p.class == NodeClass::Dust || p.layout.count() == 0) {
            return Err("`deployment_manifest: true` needs mesh nodes (Nano, Gateway or Full): a Dust device stores \
                        only its own position (ES-11.3); remove the field or place mesh nodes"
                .into());
        }
        for (i, z) in self.world.zones.iter().enumerate() {
            let r = &z.rect;
            if ![r.x0, r.y0, r.x1, r.y1].iter().all(|v| v.is_finite()) || r.x0 >= r.x1 || r.y0 >= r.y1 {
                return Err(format!("zone `{}`: `rect` needs finite corners with x0 < x1 and y0 < y1", z.name));
            }
            if self.world.zones[..i].iter().any(|w| w.name == z.name) {
                return Err(format!("zone `{}` is named twice: give each zone its own name", z.name));
            }
        }
        let zone_exists = |z: &str| self.world.zones.iter().any(|w| w.name == z);
        let before_end = |t: u64, what: &str| {
            if t < self.duration_s {
                Ok(())
            } else {
                Err(format!(
                    "{what} starts at {t} s, not before the run ends (`duration_s` {}): lower it or run longer",
                    self.duration_s
                ))
            }
        };
        for f in &self.world.fields {
            for v in [f.base, f.gradient.0, f.gradient.1, f.diurnal_amplitude, f.noise_sd, f.bias_sd] {
                if !v.is_finite() {
                    return Err(format!("field {:?}: every number must be finite", f.quantity));
                }
            }
            if f.noise_sd < 0.0 || f.bias_sd < 0.0 {
                return Err(format!("field {:?}: `noise_sd`/`bias_sd` must be ≥ 0", f.quantity));
            }
            for e in &f.events {
                e.validate()?;
                match e {
                    WorldEvent::HvacStep { zone, .. } if !zone_exists(zone) => {
                        return Err(format!("HvacStep names zone `{zone}`: add it to `world.zones`"));
                    }
                    WorldEvent::Fire { start_s, .. } => before_end(*start_s, "a Fire")?,
                    WorldEvent::HvacStep { start_s, .. } => before_end(*start_s, "an HvacStep")?,
                    WorldEvent::Door { open_s, .. } => before_end(*open_s, "a Door")?,
                    WorldEvent::Wall { .. } => {}
                }
            }
        }
        let node_ok = |k: u32, what: &str| {
            if u64::from(k) < n {
                Ok(())
            } else {
                Err(format!("{what} names node {k}, but the scenario has nodes 0..{}", n - 1))
            }
        };
        for a in &self.attacks {
            node_ok(a.node, "an attack")?;
            before_end(a.start_s, &format!("the attack on node {}", a.node))?;
            if a.end_s.is_some_and(|e| e <= a.start_s) {
                return Err(format!("attack on node {}: `end_s` must be after `start_s`", a.node));
            }
            if let Some(v) = a.kind.offset().filter(|v| !v.is_finite() || v.abs() > MAX_ATTACK_OFFSET) {
                return Err(format!(
                    "attack on node {}: its offset or rate {v:e} is not a finite number within ±{MAX_ATTACK_OFFSET}",
                    a.node
                ));
            }
            match &a.kind {
                AttackKind::Pattern { period_s, .. } if *period_s < 2 => {
                    return Err("Pattern `period_s` must be at least 2 (a square wave has two halves)".into());
                }
                AttackKind::Replay { delay_s: 0 } => {
                    return Err("Replay `delay_s` must be at least 1: a replay at once is the frame itself".into());
                }
                AttackKind::Forgery { victim, .. } | AttackKind::ForgedDeathCertificate { victim } => {
                    node_ok(*victim, "an attack's victim")?
                }
                AttackKind::Collusion { members, .. } => {
                    for m in members {
                        node_ok(*m, "a collusion member")?;
                    }
                }
                AttackKind::Flood { rate_per_s, .. } if !(rate_per_s.is_finite() && *rate_per_s > 0.0) => {
                    return Err("Flood `rate_per_s` must be a positive number".into());
                }
                AttackKind::Flood { rate_per_s, .. } if *rate_per_s > 10_000.0 => {
                    return Err("Flood `rate_per_s` above 10,000 frames/s is beyond any BLE radio".into());
                }
                AttackKind::SelectiveRelay { drop_fraction } if !(0.0..=1.0).contains(drop_fraction) => {
                    return Err("SelectiveRelay `drop_fraction` must be in 0..=1".into());
                }
                AttackKind::Sybil { identities, .. } if *identities == 0 || *identities > 1_000 => {
                    return Err("Sybil `identities` must be 1..=1000".into());
                }
                _ => {}
            }
        }
        for f in &self.faults {
            before_end(f.at_s, "a fault")?;
            match &f.kind {
                FaultKind::Crash { node, .. }
                | FaultKind::ClockStep { node, .. }
                | FaultKind::FlashCorruption { node, .. }
                | FaultKind::BatteryDepletion { node } => node_ok(*node, "a fault")?,
                FaultKind::Partition { x, .. } if !x.is_finite() => return Err("Partition `x` must be finite".into()),
                FaultKind::Partition { .. } => {}
            }
        }
        for e in &self.expect {
            match e {
                Expectation::Detected { attacker, .. } | Expectation::Rejected { attacker, .. } => {
                    node_ok(*attacker, "an expectation")?;
                    if !self.attacks.iter().any(|a| a.node == *attacker) {
                        return Err(format!("an expectation names node {attacker} as attacker, but no attack uses it"));
                    }
                }
                Expectation::ConsensusError { zone: Some(z), .. } | Expectation::FollowsEvent { zone: z, .. }
                    if !zone_exists(z) =>
                {
                    return Err(format!("an expectation names zone `{z}`: add it to `world.zones`"));
                }
                Expectation::ConsensusError { after_s, until_s: Some(until), .. } if until <= after_s => {
                    return Err(format!(
                        "a ConsensusError window ends at {until} s, not after its start at {after_s} s: \
                         raise `until_s` or lower `after_s`"
                    ));
                }
                Expectation::ConsensusError { after_s, .. } | Expectation::FollowsEvent { after_s, .. }
                    if *after_s >= self.duration_s =>
                {
                    return Err(format!(
                        "an expectation looks from {after_s} s, not before the run ends (`duration_s` {}): \
                         lower `after_s` or run longer",
                        self.duration_s
                    ));
                }
                Expectation::HonestDelivery { min } if !(0.0..=1.0).contains(min) => {
                    return Err("HonestDelivery `min` must be in 0..=1".into());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"(
        name: "mini",
        duration_s: 60,
        area: (width_m: 10, height_m: 10),
        nodes: [(layout: Grid(rows: 2, cols: 2, spacing_m: 3))],
    )"#;

    #[test]
    fn minimal_scenario_gets_defaults() {
        let s = Scenario::parse(MINI, "mini.ron").unwrap();
        assert_eq!(s.node_count(), 4);
        assert_eq!(s.seeds, vec![1]);
        assert_eq!(s.crypto, CryptoMode::Modeled);
        assert_eq!(s.warmup_s(), 1_800);
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let bad = "(\n  name: \"x\",\n  duration_s: sixty,\n)";
        match Scenario::parse(bad, "bad.ron") {
            Err(ScenarioError::Parse { line, col, .. }) => {
                assert!(line == 3 && (13..=16).contains(&col), "{line}:{col}")
            }
            other => panic!("{other:?}"),
        }
        let unknown = MINI.replace("duration_s", "duraton_s");
        let e = Scenario::parse(&unknown, "u.ron").unwrap_err().to_string();
        assert!(e.starts_with("u.ron:3:"), "{e}");
        assert!(e.contains("duraton_s"), "{e}");
    }

    #[test]
    fn absurd_values_are_refused_with_what_to_change() {
        for (from, to, needle) in [
            ("duration_s: 60", "duration_s: 0", "duration_s"),
            ("rows: 2", "rows: 2000000", "limit"),
            ("spacing_m: 3", "spacing_m: -3", "spacing_m"),
            ("width_m: 10", "width_m: inf", "area"),
        ] {
            let e = Scenario::parse(&MINI.replace(from, to), "x.ron").unwrap_err().to_string();
            assert!(e.contains(needle), "{from} → {to}: {e}");
        }
        let attack =
            MINI.replace("nodes:", "attacks: [(node: 9, start_s: 0, kind: Spike(offset: 5))],\n        nodes:");
        let e = Scenario::parse(&attack, "a.ron").unwrap_err().to_string();
        assert!(e.contains("node 9") && e.contains("0..3"), "{e}");
        let window = |w: &str| {
            MINI.replace("duration_s: 60", "duration_s: 3600")
                .replace("nodes:", &format!("expect: [ConsensusError(max: 1.0, {w})],\n        nodes:"))
        };
        let e = Scenario::parse(&window("after_s: 600, until_s: Some(600)"), "w.ron").unwrap_err().to_string();
        assert!(e.contains("until_s") && e.contains("600 s"), "{e}");
        assert!(Scenario::parse(&window("after_s: 600, until_s: Some(601)"), "w.ron").is_ok());
        assert!(Scenario::parse(&window("after_s: 600"), "w.ron").is_ok(), "the window's end is optional");
    }

    #[test]
    fn numbers_the_models_could_only_clamp_are_refused() {
        let with = |section: &str| {
            MINI.replace("nodes:", &format!("{section},\n        nodes:")).replace(
                "name: \"mini\",",
                "name: \"mini\",\n        world: (fields: [(quantity: Temperature, base: 20, events: [EVENTS])], \
                 zones: [ZONES]),",
            )
        };
        let refused = |text: String, needle: &str| {
            let e = Scenario::parse(&text, "h.ron").unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        };
        let world = |events: &str, zones: &str| with("seeds: [1]").replace("EVENTS", events).replace("ZONES", zones);
        let ok_zone = r#"(name: "z", rect: (x0: 0, y0: 0, x1: 5, y1: 5))"#;
        assert!(Scenario::parse(&world("", ok_zone), "h.ron").is_ok());
        refused(world("", r#"(name: "z", rect: (x0: 0, y0: 0, x1: NaN, y1: 5))"#), "zone `z`");
        refused(world("", r#"(name: "z", rect: (x0: 5, y0: 0, x1: 5, y1: 5))"#), "x0 < x1");
        refused(world("", &format!("{ok_zone}, {ok_zone}")), "named twice");
        for (event, needle) in [
            ("Fire(at: (1, 1), start_s: 10, growth_m_per_s: NaN, peak: 50, falloff_m: 4)", "Fire"),
            ("Fire(at: (1, 1), start_s: 10, growth_m_per_s: 0.1, peak: 50, falloff_m: 0)", "falloff_m"),
            ("Fire(at: (1, 1), start_s: 60, growth_m_per_s: 0.1, peak: 50, falloff_m: 4)", "a Fire starts at 60 s"),
            (r#"HvacStep(zone: "z", start_s: 10, delta: 3, tau_s: 0)"#, "tau_s"),
            (r#"HvacStep(zone: "z", start_s: 10, delta: inf, tau_s: 30)"#, "delta"),
            ("Wall(x: 5, delta: 3, attenuation_db: -4)", "attenuation_db"),
            ("Door(x: 5, y0: 4, y1: 2, open_s: 1, close_s: 9, reach_m: 5, tau_s: 60)", "y0 < y1"),
            ("Door(x: 5, y0: 2, y1: 4, open_s: 9, close_s: 9, reach_m: 5, tau_s: 60)", "closes at 9 s"),
        ] {
            refused(world(event, ok_zone), needle);
        }
        let attack = |kind: &str, start: u64| {
            MINI.replace("nodes:", &format!("attacks: [(node: 1, start_s: {start}, kind: {kind})],\n        nodes:"))
        };
        assert!(Scenario::parse(&attack("Spike(offset: 5)", 10), "a.ron").is_ok());
        refused(attack("Spike(offset: NaN)", 10), "not a finite number");
        refused(attack("Drift(rate_per_h: 1e300)", 10), "within ±1000000");
        refused(attack("Pattern(amplitude: 2, period_s: 0)", 10), "period_s");
        refused(attack("Replay(delay_s: 0)", 10), "delay_s");
        refused(attack("Spike(offset: 5)", 60), "the attack on node 1 starts at 60 s");
        let fault = MINI.replace("nodes:", "faults: [(at_s: 600, kind: BatteryDepletion(node: 1))],\n        nodes:");
        refused(fault, "a fault starts at 600 s");
        let late = MINI.replace("nodes:", "expect: [ConsensusError(max: 1.0, after_s: 60)],\n        nodes:");
        refused(late, "looks from 60 s");
        for n in [0, 9] {
            let radio = MINI.replace("nodes:", &format!("radio: (ble_unicast_transmits: {n}),\n        nodes:"));
            refused(radio, "Network Transmit Count");
        }
    }

    #[test]
    fn deployment_manifest_is_opt_in_and_needs_mesh_nodes() {
        assert!(!Scenario::parse(MINI, "m.ron").unwrap().deployment_manifest);
        let on = MINI.replace("nodes:", "deployment_manifest: true,\n        nodes:");
        assert!(Scenario::parse(&on, "m.ron").unwrap().deployment_manifest);
        let dust_only = on.replace("(layout: Grid", "(class: Dust, layout: Grid");
        let e = Scenario::parse(&dust_only, "d.ron").unwrap_err().to_string();
        assert!(e.contains("deployment_manifest") && e.contains("mesh nodes"), "{e}");
        let mixed = on.replace("nodes: [", "nodes: [(class: Dust, layout: Explicit([(1, 1)])), ");
        assert!(Scenario::parse(&mixed, "x.ron").unwrap().deployment_manifest);
        let e = Scenario::parse(&on.replace("true", "3"), "t.ron").unwrap_err().to_string();
        assert!(e.starts_with("t.ron:"), "{e}");
    }

    #[test]
    fn espnow_refuses_the_ble_only_settings() {
        let with = |radio: &str| MINI.replace("nodes:", &format!("radio: ({radio}),\n        nodes:"));
        let ok = Scenario::parse(&with("bearer: EspNow, esp_now: (max_peers: 8)"), "e.ron").unwrap();
        assert_eq!((ok.radio.bearer, ok.radio.esp_now.max_peers), (Bearer::EspNow, 8));
        for (radio, needle) in [
            ("bearer: EspNow, relay_ttl: 3", "relay_ttl"),
            ("bearer: EspNow, ble_adv: Legacy", "Legacy"),
            ("bearer: EspNow, collisions: true", "collisions"),
            ("bearer: EspNow, esp_now: (tx_power_dbm: 30)", "tx_power_dbm"),
            ("bearer: EspNow, esp_now: (max_peers: 0)", "max_peers"),
            ("bearer: Wifi", "Wifi"),
        ] {
            let e = Scenario::parse(&with(radio), "e.ron").unwrap_err().to_string();
            assert!(e.contains(needle), "{radio}: {e}");
        }
    }
}
