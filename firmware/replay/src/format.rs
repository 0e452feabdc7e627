//! The replay log, format version 3.
//!
//! ```text
//! b"KRILLRPL"          8 bytes, magic
//! version              u16 little-endian (3)
//! Header               postcard
//! Entry*               postcard, back to back, in call order
//! Entry::End           postcard, last; no byte may follow it
//! ```
//!
//! Postcard is serde's compact varint encoding: the same bytes on every
//! platform, and a malformed log is a decode error, never a panic. The
//! header says how to rebuild the node (capacities, crypto, identity seed,
//! the peers' public keys, boot time, configuration); each entry is one call
//! into it: a received frame, an own sensor reading, a timer run together
//! with the random words the node drew during it, and every other call a
//! board or the simulator makes (LoRa up/downlinks, batches, time sync,
//! field queries, key registrations). Recorders (the simulator's
//! `krill run --record`, and the host mesh in [`crate::record`]) write it
//! through [`crate::Recorder`]; the replayer reads it with [`LogReader`].
//!
//! Any change to these types is a new [`VERSION`]: a reader refuses other
//! versions instead of misreading them.

use alloc::vec::Vec;
use krill_core::distance::{DeploymentEntry, Environment};
use krill_core::gateway::DustKey;
use krill_core::lifecycle;
use krill_core::node::{DustLink, NodeConfig, Now, Role, TimerConfig};
use krill_core::types::QuantityType;
use serde::{Deserialize, Serialize};

/// First bytes of every log.
pub const MAGIC: [u8; 8] = *b"KRILLRPL";
/// The format version this crate reads and writes.
pub const VERSION: u16 = 3;
/// Magic plus version.
pub const PREAMBLE_LEN: usize = MAGIC.len() + 2;

/// A [`Now`] as stored in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    /// Monotonic milliseconds.
    pub mono_ms: u64,
    /// Synced Unix seconds.
    pub unix_s: u32,
    /// Milliseconds within `unix_s`.
    pub unix_subsec_ms: u16,
}

impl From<Now> for Time {
    fn from(n: Now) -> Self {
        Time { mono_ms: n.mono_ms, unix_s: n.unix_s, unix_subsec_ms: n.unix_subsec_ms }
    }
}

impl From<Time> for Now {
    fn from(t: Time) -> Self {
        Now { mono_ms: t.mono_ms, unix_s: t.unix_s, unix_subsec_ms: t.unix_subsec_ms }
    }
}

/// The node's const-generic capacities (`Node<C, N, D, G, B>`); a replayer
/// rebuilds the node with exactly these (table overflows would differ
/// otherwise) and refuses sets it was not built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacities {
    /// `N`: neighbours, keys, subjects.
    pub neighbors: u32,
    /// `D`: DAG entries and pheromone field.
    pub dag: u32,
    /// `G`: guard device tables.
    pub guard_devices: u32,
    /// `B`: guard rate buckets.
    pub rate_buckets: u32,
}

impl Capacities {
    /// The core's multi-node tests' node, which [`crate::record`]'s host
    /// mesh records.
    pub const SMALL: Capacities = Capacities { neighbors: 8, dag: 512, guard_devices: 16, rate_buckets: 64 };
    /// ES-1.2's Nano: the simulator's Nano, Gateway and Full nodes.
    pub const NANO: Capacities = Capacities {
        neighbors: krill_core::types::MAX_NEIGHBORS as u32,
        dag: krill_core::types::MAX_DAG_ENTRIES as u32,
        guard_devices: krill_core::guards::GUARD_DEVICES as u32,
        rate_buckets: krill_core::guards::RATE_BUCKETS as u32,
    };
    /// The simulator's Dust device.
    pub const DUST: Capacities = Capacities {
        neighbors: 1,
        dag: krill_core::types::MAX_DAG_ENTRIES_DUST as u32,
        guard_devices: 2,
        rate_buckets: 8,
    };

    /// The capacities of `Node<_, N, D, G, B>`.
    pub const fn of<const N: usize, const D: usize, const G: usize, const B: usize>() -> Capacities {
        Capacities { neighbors: N as u32, dag: D as u32, guard_devices: G as u32, rate_buckets: B as u32 }
    }
}

/// How the node signs and verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CryptoSpec {
    /// `ModeledCrypto` under a `ModeledAuthority` with this secret (every
    /// node of the recorded run shares it).
    Modeled {
        /// The authority's secret.
        authority: [u8; 32],
    },
    /// Ed25519 (`RealCrypto`) from the identity seed.
    Real,
}

/// A Dust node's link identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DustSpec {
    /// Short id on the LoRa link.
    pub short_id: u16,
    /// Factory AES-128 key.
    pub key: [u8; 16],
}

/// The part of a `NodeConfig` a log carries; every other field is
/// `NodeConfig::default()`'s. [`ConfigSpec::of`] refuses a configuration
/// that differs elsewhere, so a log never silently drops a setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSpec {
    /// 0 Nano, 1 Dust, 2 Gateway, 3 Full.
    pub role: u8,
    /// Own quantity (`QuantityType::to_u8`).
    pub quantity: u8,
    /// Confidence put into own traces.
    pub confidence: u8,
    /// `TimerConfig` in field order: sensor read, presence pulse, quorum
    /// update, epoch tick, DAG GC, heartbeat, flash flush, state timeouts.
    pub timers_ms: [u64; 8],
    /// Own neonatal duration.
    pub neonatal_duration_ms: u64,
    /// A new subject's learning time.
    pub subject_neonatal_ms: u64,
    /// Fewest readings before a profile can be frozen.
    pub min_profile_samples: u32,
    /// `QuorumConfig::min_transition_interval`, s.
    pub quorum_min_transition_interval: u32,
    /// Own transmit power, dBm.
    pub tx_power_dbm: i8,
    /// Path-loss environment for RSSI distances.
    pub environment: Environment,
    /// Battery level in heartbeats.
    pub battery_level: u8,
    /// Dust link (role Dust only).
    pub dust: Option<DustSpec>,
    /// The ES-11.3 deployment manifest, each entry in its flash layout
    /// (`DeploymentEntry::to_bytes`); empty for RSSI-only distances.
    pub manifest: Vec<[u8; DeploymentEntry::LEN]>,
}

/// Why a log could not be written or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogError {
    /// The first 8 bytes are not [`MAGIC`] (or the log is shorter).
    BadMagic,
    /// A version this reader does not know.
    Version(u16),
    /// A header or entry does not decode (or encode).
    Postcard(postcard::Error),
    /// The role byte names no role.
    Role(u8),
    /// The configuration differs from the defaults outside [`ConfigSpec`].
    ConfigNotRepresentable,
    /// The manifest lists more devices than a node holds
    /// (`MANIFEST_CAPACITY`).
    ManifestTooLong(usize),
    /// Bytes follow [`Entry::End`].
    TrailingBytes,
    /// The log ends without [`Entry::End`].
    NoEnd,
}

impl From<postcard::Error> for LogError {
    fn from(e: postcard::Error) -> Self {
        LogError::Postcard(e)
    }
}

fn role_code(r: Role) -> u8 {
    match r {
        Role::Nano => 0,
        Role::Dust => 1,
        Role::Gateway => 2,
        Role::Full => 3,
    }
}

fn role_of(code: u8) -> Result<Role, LogError> {
    Ok(match code {
        0 => Role::Nano,
        1 => Role::Dust,
        2 => Role::Gateway,
        3 => Role::Full,
        c => return Err(LogError::Role(c)),
    })
}

impl ConfigSpec {
    /// The spec of `cfg`, or `ConfigNotRepresentable` if `cfg` sets
    /// anything a log cannot carry.
    pub fn of(cfg: &NodeConfig) -> Result<Self, LogError> {
        let t = &cfg.timers;
        let spec = ConfigSpec {
            role: role_code(cfg.role),
            quantity: cfg.quantity.to_u8(),
            confidence: cfg.confidence,
            timers_ms: [
                t.sensor_read_ms,
                t.presence_pulse_ms,
                t.quorum_update_ms,
                t.epoch_tick_ms,
                t.dag_gc_ms,
                t.heartbeat_ms,
                t.flash_flush_ms,
                t.state_timeouts_ms,
            ],
            neonatal_duration_ms: cfg.lifecycle.neonatal_duration_ms,
            subject_neonatal_ms: cfg.subject_neonatal_ms,
            min_profile_samples: cfg.min_profile_samples,
            quorum_min_transition_interval: cfg.quorum.min_transition_interval,
            tx_power_dbm: cfg.tx_power_dbm,
            environment: cfg.environment,
            battery_level: cfg.battery_level,
            dust: cfg.dust.map(|d| DustSpec { short_id: d.short_id, key: d.key.0 }),
            manifest: cfg.manifest.iter().map(DeploymentEntry::to_bytes).collect(),
        };
        if spec.config()? == *cfg {
            Ok(spec)
        } else {
            Err(LogError::ConfigNotRepresentable)
        }
    }

    /// The configuration: these fields over `NodeConfig::default()`.
    pub fn config(&self) -> Result<NodeConfig, LogError> {
        let [sensor_read_ms, presence_pulse_ms, quorum_update_ms, epoch_tick_ms, dag_gc_ms, heartbeat_ms, flash_flush_ms, state_timeouts_ms] =
            self.timers_ms;
        let mut cfg = NodeConfig {
            role: role_of(self.role)?,
            quantity: QuantityType::from_u8(self.quantity),
            confidence: self.confidence,
            timers: TimerConfig {
                sensor_read_ms,
                presence_pulse_ms,
                quorum_update_ms,
                epoch_tick_ms,
                dag_gc_ms,
                heartbeat_ms,
                flash_flush_ms,
                state_timeouts_ms,
            },
            subject_neonatal_ms: self.subject_neonatal_ms,
            min_profile_samples: self.min_profile_samples,
            tx_power_dbm: self.tx_power_dbm,
            environment: self.environment,
            battery_level: self.battery_level,
            dust: self.dust.map(|d| DustLink { short_id: d.short_id, key: DustKey(d.key) }),
            ..NodeConfig::default()
        };
        cfg.lifecycle = lifecycle::NodeConfig { neonatal_duration_ms: self.neonatal_duration_ms, ..cfg.lifecycle };
        cfg.quorum.min_transition_interval = self.quorum_min_transition_interval;
        for b in &self.manifest {
            let entry = DeploymentEntry::from_bytes(b).map_err(|_| LogError::ConfigNotRepresentable)?;
            cfg.manifest.push(entry).map_err(|_| LogError::ManifestTooLong(self.manifest.len()))?;
        }
        Ok(cfg)
    }
}

/// Everything needed to rebuild the node before the first entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The capacities it was recorded with.
    pub capacities: Capacities,
    /// Its crypto.
    pub crypto: CryptoSpec,
    /// `Identity::from_seed` input: the node's keys and device id.
    pub identity_seed: [u8; 32],
    /// Public keys registered with `register_peer` before the first entry,
    /// in order (later registrations are [`Entry::RegisterPeer`]s).
    pub peers: Vec<[u8; 32]>,
    /// `Node::new`'s `first_query_id`.
    pub first_query_id: u32,
    /// `Node::new`'s `now`.
    pub boot: Time,
    /// Its configuration.
    pub config: ConfigSpec,
}

/// One call into the node, or the end of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry<'a> {
    /// `handle_frame(now, bytes, rssi, hops)`.
    Frame {
        /// When it was received.
        now: Time,
        /// Received signal strength, dBm.
        rssi: i8,
        /// Relay hops it took.
        hops: u8,
        /// The frame as received.
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// `handle_reading(now, quantity, value)`.
    Reading {
        /// When it was read.
        now: Time,
        /// `QuantityType::to_u8`.
        quantity: u8,
        /// The reading.
        value: i16,
    },
    /// `handle_timers(now)`, with every word the node drew from its RNG
    /// during the call, in order.
    Timers {
        /// When the timers ran.
        now: Time,
        /// The RNG words.
        draws: Vec<u32>,
    },
    /// `handle_uplink(now, bytes)`: a LoRa uplink heard by a gateway.
    Uplink {
        /// When it was received.
        now: Time,
        /// The uplink as received.
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// `handle_downlink(bytes)`: a gateway's downlink heard by a Dust node.
    Downlink {
        /// The downlink as received.
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// `handle_batch(now, bytes)`: a TraceBatch delivered to a Full node.
    Batch {
        /// When it arrived.
        now: Time,
        /// The batch.
        #[serde(borrow)]
        bytes: &'a [u8],
    },
    /// `request_time_sync(now, source)`, with the RNG words drawn.
    TimeSync {
        /// When the request was made.
        now: Time,
        /// The time source's device id.
        source: [u8; 8],
        /// The RNG words.
        draws: Vec<u32>,
    },
    /// `query_field(quantity, now)`: it expires field entries, so it is a
    /// call like any other (its answer goes into the digest).
    Query {
        /// When it was asked.
        now: Time,
        /// `QuantityType::to_u8`.
        quantity: u8,
    },
    /// `register_peer(key)` after the node was built.
    RegisterPeer {
        /// The Ed25519 public key.
        key: [u8; 32],
    },
    /// `register_dust(device, key)` (gateway).
    RegisterDust {
        /// The Dust device's id.
        device: [u8; 8],
        /// Its AES-128 key.
        key: [u8; 16],
    },
    /// `register_dust_served(dust, gateway)`.
    RegisterDustServed {
        /// The Dust device's id.
        dust: [u8; 8],
        /// The gateway that vouches for it.
        gateway: [u8; 8],
    },
    /// The end; what the recorder's own run produced, when it digested it
    /// (see [`crate::ActionDigest`]).
    End {
        /// Actions the node emitted.
        actions: u64,
        /// Their digest, if the recorder computed one.
        digest: Option<[u8; 32]>,
    },
}

impl Entry<'_> {
    /// The RNG words recorded for a call that draws (`Timers`, `TimeSync`).
    pub fn draws(&self) -> Option<&[u32]> {
        match self {
            Entry::Timers { draws, .. } | Entry::TimeSync { draws, .. } => Some(draws),
            _ => None,
        }
    }
}

/// Builds a log in memory.
#[derive(Debug)]
pub struct LogWriter {
    buf: Vec<u8>,
    entries: u64,
}

impl LogWriter {
    /// A log that starts with `header`.
    pub fn new(header: &Header) -> Result<Self, LogError> {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        let buf = postcard::to_extend(header, buf)?;
        Ok(LogWriter { buf, entries: 0 })
    }

    /// Appends one call; an `End` here is refused (use [`LogWriter::finish`]).
    pub fn push(&mut self, entry: &Entry<'_>) -> Result<(), LogError> {
        if matches!(entry, Entry::End { .. }) {
            return Err(LogError::TrailingBytes);
        }
        let buf = core::mem::take(&mut self.buf);
        self.buf = postcard::to_extend(entry, buf)?;
        self.entries += 1;
        Ok(())
    }

    /// Calls appended so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Appends `End` and returns the bytes.
    pub fn finish(self, actions: u64, digest: Option<[u8; 32]>) -> Result<Vec<u8>, LogError> {
        Ok(postcard::to_extend(&Entry::End { actions, digest }, self.buf)?)
    }
}

/// Reads a log: the header at once, then the entries one by one, borrowing
/// frame bytes from the input (nothing is copied but the RNG words).
#[derive(Debug)]
pub struct LogReader<'a> {
    header: Header,
    rest: &'a [u8],
    ended: bool,
}

impl<'a> LogReader<'a> {
    /// Checks magic and version and decodes the header.
    pub fn open(log: &'a [u8]) -> Result<Self, LogError> {
        if log.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(LogError::BadMagic);
        }
        let v = log.get(MAGIC.len()..PREAMBLE_LEN).ok_or(LogError::BadMagic)?;
        let version = u16::from_le_bytes([v[0], v[1]]);
        if version != VERSION {
            return Err(LogError::Version(version));
        }
        let (header, rest) = postcard::take_from_bytes::<Header>(&log[PREAMBLE_LEN..])?;
        Ok(LogReader { header, rest, ended: false })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

impl<'a> Iterator for LogReader<'a> {
    type Item = Result<Entry<'a>, LogError>;

    /// The next entry, `End` last; then `None`. A log cut short yields
    /// `NoEnd`, bytes after `End` yield `TrailingBytes`.
    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        if self.rest.is_empty() {
            self.ended = true;
            return Some(Err(LogError::NoEnd));
        }
        match postcard::take_from_bytes::<Entry<'a>>(self.rest) {
            Ok((e, rest)) => {
                self.rest = rest;
                if matches!(e, Entry::End { .. }) {
                    self.ended = true;
                    if !rest.is_empty() {
                        return Some(Err(LogError::TrailingBytes));
                    }
                }
                Some(Ok(e))
            }
            Err(e) => {
                self.ended = true;
                Some(Err(e.into()))
            }
        }
    }
}
