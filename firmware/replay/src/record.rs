//! Records a replay log on the host from a small multi-node run of the
//! core, wired like `core/tests/node.rs`'s `Mesh`: every node a
//! [`ReplayNode`] with modeled crypto, one shared LCG, broadcasts delivered
//! to every other node until the mesh is idle, then on to the earliest
//! deadline. One node's calls are written to the log as they happen. The
//! simulator records real scenarios (`krill run --record`); this small,
//! self-contained run is what the image embeds when it is built without a
//! simulator log, and what this crate's own tests record.
//!
//! The default run ([`MeshSpec::default`]): six Nanos with short neonatal
//! periods, node 5 starts reporting 60 °C at 150 s (a spiking attacker, so
//! the recorded node's consistency checks, inflammation vote, rejection and
//! vaccine paths run), and every 37th frame delivered to the recorded node
//! is also delivered twice more: once verbatim (duplicate guard) and once
//! with its last byte flipped (bad signature).

use crate::{
    feed, ActionDigest, Capacities, ConfigSpec, CryptoSpec, Entry, Header, LogError, Recorder, ReplayError, ReplayNode,
    Time,
};
use krill_core::crypto::{Identity, Seed};
use krill_core::node::{Action, NodeConfig, Now, Rng};
use krill_core::types::Reading;
use std::collections::VecDeque;
use std::vec::Vec;

/// Unix time at mono 0.
pub const UNIX0: u32 = 1_700_000_000;

/// What to run and whom to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeshSpec {
    /// Nodes in the mesh (≤ 9: a node's key table holds 8 peers).
    pub nodes: usize,
    /// The node whose calls are logged.
    pub recorded: usize,
    /// The node that spikes, if any.
    pub spiker: Option<usize>,
    /// When it starts, ms.
    pub spike_from_ms: u64,
    /// The run ends at this monotonic time, ms.
    pub until_ms: u64,
    /// Every this many frames to the recorded node, a duplicate and a
    /// corrupted copy follow (0: never).
    pub hostile_every: u64,
    /// Modeled-crypto authority secret.
    pub authority: [u8; 32],
    /// Seed of the shared LCG.
    pub rng_seed: u64,
}

impl Default for MeshSpec {
    fn default() -> Self {
        MeshSpec {
            nodes: 6,
            recorded: 0,
            spiker: Some(5),
            spike_from_ms: 150_000,
            until_ms: 240_000,
            hostile_every: 37,
            authority: [9; 32],
            rng_seed: 42,
        }
    }
}

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The spec names nodes outside the mesh or more than a key table holds.
    #[error("bad mesh spec: {0}")]
    Spec(&'static str),
    /// Building a node failed.
    #[error("building a node: {0:?}")]
    Node(ReplayError),
    /// Writing the log failed.
    #[error("writing the log: {0:?}")]
    Log(LogError),
}

impl From<LogError> for RecordError {
    fn from(e: LogError) -> Self {
        RecordError::Log(e)
    }
}

/// The core tests' LCG.
struct Lcg(u64);

impl Rng for Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

fn now_at(ms: u64) -> Now {
    Now::new(ms, UNIX0 + (ms / 1000) as u32)
}

/// The core tests' `fast_config`: minute-long neonatal periods.
pub fn fast_config() -> NodeConfig {
    let mut cfg = NodeConfig { subject_neonatal_ms: 60_000, ..NodeConfig::default() };
    cfg.lifecycle.neonatal_duration_ms = 60_000;
    cfg.quorum.min_transition_interval = 0;
    cfg
}

fn seed_of(i: usize) -> [u8; 32] {
    [(i as u8).wrapping_add(1); 32]
}

/// Honest sensor noise of ±1 LSB around 22.00 °C, as in the core tests.
fn honest(i: usize, ms: u64) -> Reading {
    2200 + ((i as u64 * 7 + ms / 5000) % 3) as Reading - 1
}

/// RSSI between two nodes: nearer indices are closer.
fn rssi(from: usize, to: usize) -> i8 {
    -50 - 3 * from.abs_diff(to).min(10) as i8
}

struct Mesh {
    spec: MeshSpec,
    nodes: Vec<Box<ReplayNode>>,
    now_ms: u64,
    rng: Lcg,
    log: Recorder,
    scratch: ActionDigest,
    delivered: u64,
}

impl Mesh {
    fn reading(&self, i: usize, ms: u64) -> Reading {
        match self.spec.spiker {
            Some(s) if s == i && ms >= self.spec.spike_from_ms => 6000,
            _ => honest(i, ms),
        }
    }

    /// Calls node `i` with `entry` (logging it when `i` is recorded) and
    /// queues what it emitted.
    fn call(&mut self, i: usize, entry: Entry<'_>, queue: &mut VecDeque<(usize, Action)>) -> Result<(), LogError> {
        let mut out = |a: &Action| queue.push_back((i, a.clone()));
        if i != self.spec.recorded {
            feed(&mut *self.nodes[i], 0, &entry, &mut self.rng, &mut self.scratch, &mut out);
            return Ok(());
        }
        self.log.call(&mut *self.nodes[i], entry, &mut self.rng, &mut out).map(drop)
    }

    fn deliver(
        &mut self,
        from: usize,
        to: usize,
        frame: &[u8],
        q: &mut VecDeque<(usize, Action)>,
    ) -> Result<(), LogError> {
        let now = Time::from(now_at(self.now_ms));
        let (rssi, hops) = (rssi(from, to), 0);
        self.call(to, Entry::Frame { now, rssi, hops, bytes: frame }, q)?;
        if to == self.spec.recorded && self.spec.hostile_every > 0 {
            self.delivered += 1;
            if self.delivered.is_multiple_of(self.spec.hostile_every) {
                self.call(to, Entry::Frame { now, rssi, hops, bytes: frame }, q)?;
                let mut bad = frame.to_vec();
                if let Some(b) = bad.last_mut() {
                    *b ^= 0x01;
                }
                self.call(to, Entry::Frame { now, rssi, hops, bytes: &bad }, q)?;
            }
        }
        Ok(())
    }

    /// Carries out queued actions, delivering frames until idle.
    fn drain(&mut self, mut q: VecDeque<(usize, Action)>) -> Result<(), LogError> {
        while let Some((from, a)) = q.pop_front() {
            match a {
                Action::Broadcast(f) => {
                    for to in (0..self.nodes.len()).filter(|&to| to != from) {
                        self.deliver(from, to, &f, &mut q)?;
                    }
                }
                Action::Unicast { dest, frame } => {
                    if let Some(to) = self.nodes.iter().position(|n| n.id() == dest) {
                        self.deliver(from, to, &frame, &mut q)?;
                    }
                }
                Action::ReadSensor { quantity } => {
                    let value = self.reading(from, self.now_ms);
                    let entry = Entry::Reading { now: now_at(self.now_ms).into(), quantity: quantity.to_u8(), value };
                    self.call(from, entry, &mut q)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn earliest(&self) -> u64 {
        self.nodes.iter().map(|n| n.next_deadline()).min().unwrap_or(u64::MAX)
    }

    fn run(&mut self) -> Result<(), LogError> {
        while self.earliest() <= self.spec.until_ms {
            self.now_ms = self.earliest().max(self.now_ms);
            let mut q = VecDeque::new();
            for i in 0..self.nodes.len() {
                if self.nodes[i].next_deadline() <= self.now_ms {
                    let entry = Entry::Timers { now: now_at(self.now_ms).into(), draws: Vec::new() };
                    self.call(i, entry, &mut q)?;
                }
            }
            self.drain(q)?;
        }
        Ok(())
    }
}

/// Runs the mesh and returns the recorded node's log, ending with the
/// digest of the actions it emitted during the live run.
pub fn record(spec: MeshSpec) -> Result<Vec<u8>, RecordError> {
    if spec.recorded >= spec.nodes || spec.spiker.is_some_and(|s| s >= spec.nodes) {
        return Err(RecordError::Spec("a node index is outside the mesh"));
    }
    if spec.nodes > Capacities::SMALL.neighbors as usize + 1 {
        return Err(RecordError::Spec("more peers than a key table holds"));
    }
    let crypto = CryptoSpec::Modeled { authority: spec.authority };
    let config = ConfigSpec::of(&fast_config())?;
    let keys: Vec<[u8; 32]> = (0..spec.nodes).map(|i| Identity::from_seed(&Seed(seed_of(i))).public_key().0).collect();
    let header = |i: usize| Header {
        capacities: Capacities::SMALL,
        crypto,
        identity_seed: seed_of(i),
        peers: keys.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, k)| *k).collect(),
        first_query_id: 1 + i as u32,
        boot: now_at(0).into(),
        config: config.clone(),
    };
    let mut nodes = Vec::with_capacity(spec.nodes);
    for i in 0..spec.nodes {
        nodes.push(header(i).build_node().map_err(RecordError::Node)?);
    }
    let mut mesh = Mesh {
        spec,
        nodes,
        now_ms: 0,
        rng: Lcg(spec.rng_seed),
        log: Recorder::new(&header(spec.recorded))?,
        scratch: ActionDigest::default(),
        delivered: 0,
    };
    mesh.run()?;
    Ok(mesh.log.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{replay, LogReader, LogWriter};

    fn small() -> MeshSpec {
        MeshSpec { nodes: 4, spiker: Some(3), spike_from_ms: 90_000, until_ms: 150_000, ..MeshSpec::default() }
    }

    #[test]
    fn a_recorded_log_replays_to_the_recorded_digest() {
        let log = record(small()).unwrap();
        let r = replay(&log, |_, _| {}).unwrap();
        assert!(r.matches_recording(), "{r:?}");
        assert!(r.entries.frames > 100 && r.entries.readings > 10 && r.entries.timers > 10, "{r:?}");
        assert!(r.entries.draws > 0, "epoch ticks drew NK audit words");
        assert!(r.counts.broadcast > 0 && r.counts.audit > 0, "{r:?}");
        // Same spec, same bytes: recording is deterministic.
        assert_eq!(log, record(small()).unwrap());
    }

    #[test]
    fn a_changed_input_changes_the_digest_or_is_refused() {
        let log = record(small()).unwrap();
        let good = replay(&log, |_, _| {}).unwrap();
        // Rewrite the log with one reading changed.
        let mut reader = LogReader::open(&log).unwrap();
        let mut w = LogWriter::new(reader.header()).unwrap();
        let mut changed = false;
        let mut end = None;
        for e in &mut reader {
            match e.unwrap() {
                Entry::Reading { now, quantity, value } if !changed => {
                    changed = true;
                    w.push(&Entry::Reading { now, quantity, value: value + 40 }).unwrap();
                }
                Entry::End { actions, digest } => end = Some((actions, digest)),
                e => w.push(&e).unwrap(),
            }
        }
        let (actions, digest) = end.unwrap();
        let altered = w.finish(actions, digest).unwrap();
        match replay(&altered, |_, _| {}) {
            Ok(r) => {
                assert_ne!(r.digest, good.digest);
                assert!(!r.matches_recording());
            }
            Err(e) => assert!(matches!(e, ReplayError::RngOverrun { .. } | ReplayError::RngUnused { .. }), "{e:?}"),
        }
    }

    #[test]
    fn the_default_log_exercises_the_immune_paths() {
        use krill_core::lifecycle::{AnyState, SubjectState};
        use krill_core::node::AuditEvent;
        let log = record(MeshSpec::default()).unwrap();
        assert!(log.len() < 200 * 1024, "{} bytes", log.len());
        let mut reader = LogReader::open(&log).unwrap();
        let mut node = reader.header().build_node::<8, 512, 16, 64>().unwrap();
        let mut audits = Vec::new();
        for (i, e) in (&mut reader).enumerate() {
            let e = e.unwrap();
            let words = match &e {
                Entry::Timers { draws, .. } => draws.clone(),
                _ => Vec::new(),
            };
            let mut rng = words.into_iter();
            let mut rng = move || rng.next().unwrap();
            struct F<T>(T);
            impl<T: FnMut() -> u32> Rng for F<T> {
                fn next_u32(&mut self) -> u32 {
                    (self.0)()
                }
            }
            feed(&mut *node, i as u64, &e, &mut F(&mut rng), &mut ActionDigest::default(), &mut |a| {
                if let Action::Audit(ev) = a {
                    audits.push(*ev)
                }
            });
        }
        let has = |f: &dyn Fn(&AuditEvent) -> bool| audits.iter().any(f);
        assert!(has(&|e| matches!(e, AuditEvent::Trace(t) if t.consistency.is_some())));
        assert!(has(&|e| matches!(e, AuditEvent::Lifecycle(a) if a.to == AnyState::Subject(SubjectState::Rejection))));
        assert!(has(&|e| matches!(e, AuditEvent::Dropped { .. })), "duplicates and forgeries were dropped");
        assert!(has(&|e| matches!(e, AuditEvent::VaccineOriginated { .. } | AuditEvent::Vaccine { .. })));
    }

    #[test]
    fn malformed_logs_are_errors_not_panics() {
        let log = record(small()).unwrap();
        assert_eq!(replay(&log[..4], |_, _| {}).unwrap_err(), ReplayError::Log(LogError::BadMagic));
        let mut v = log.clone();
        v[8] = 9;
        assert_eq!(replay(&v, |_, _| {}).unwrap_err(), ReplayError::Log(LogError::Version(9)));
        for cut in [20, 200, log.len() / 2, log.len() - 1] {
            assert!(replay(&log[..cut], |_, _| {}).is_err(), "cut at {cut}");
        }
        let mut trailing = log.clone();
        trailing.push(0);
        assert_eq!(replay(&trailing, |_, _| {}).unwrap_err(), ReplayError::Log(LogError::TrailingBytes));
        // A version 2 log has no manifest field: refused, not misread.
        let mut v2 = log.clone();
        v2[8..10].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(replay(&v2, |_, _| {}).unwrap_err(), ReplayError::Log(LogError::Version(2)));
    }

    #[test]
    fn a_header_listing_more_devices_than_a_node_holds_is_refused() {
        use krill_core::distance::{DeploymentEntry, MANIFEST_CAPACITY};
        let log = record(small()).unwrap();
        let reader = LogReader::open(&log).unwrap();
        let entry = |i: u8| DeploymentEntry {
            device_id: krill_core::types::DeviceId([i; 8]),
            position_cm: [i32::from(i) * 100, 0, 0],
            floor: 0,
            zone: 1,
        };
        let mut header = reader.header().clone();
        header.config.manifest = (0..MANIFEST_CAPACITY as u8).map(|i| entry(i).to_bytes()).collect();
        let cfg = header.config.config().unwrap();
        assert_eq!(cfg.manifest[3], entry(3), "entries come back as written");
        assert_eq!(ConfigSpec::of(&cfg).unwrap(), header.config, "and the spec of that config is the same");
        header.config.manifest.push(entry(200).to_bytes());
        assert_eq!(header.config.config().unwrap_err(), LogError::ManifestTooLong(MANIFEST_CAPACITY + 1));
        let bytes = LogWriter::new(&header).unwrap().finish(0, None).unwrap();
        assert_eq!(
            replay(&bytes, |_, _| {}).unwrap_err(),
            ReplayError::Log(LogError::ManifestTooLong(MANIFEST_CAPACITY + 1))
        );
    }
}
