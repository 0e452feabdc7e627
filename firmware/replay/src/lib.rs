//! Recorded input logs of one krill-core `Node`, replayed anywhere the core
//! runs: the format ([`format`]), the recorder and the driver that feeds one
//! entry to a node and digests every action it emits ([`Recorder`],
//! [`feed`], [`ActionDigest`]), and the replayer ([`replay`]). `no_std` +
//! `alloc`, so the QEMU Cortex-M4 image, the host and the simulator run the
//! same code on the same bytes; with feature `gen`, [`record`] records a log
//! from a small multi-node run of the core.
//!
//! Recorders and replayer all drive their node through [`feed`], so a log
//! replays to exactly the recorder's actions unless the core behaves
//! differently on the replaying platform, which is what the digest is for.
#![cfg_attr(not(feature = "gen"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod format;
#[cfg(feature = "gen")]
pub mod record;

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use blake2::{Blake2s256, Digest};
use core::fmt::Write as _;
use krill_core::crypto::{Crypto, Identity, ModeledAuthority, ModeledCrypto, RealCrypto, Seed};
use krill_core::gateway::DustKey;
use krill_core::node::{Action, Node, Rng};
use krill_core::types::{DeviceId, PublicKey, QuantityType, Signature};

pub use format::{Capacities, ConfigSpec, CryptoSpec, Entry, Header, LogError, LogReader, LogWriter, Time};

/// The node [`record`]'s host mesh runs: [`Capacities::SMALL`].
pub type ReplayNode = Node<AnyCrypto, 8, 512, 16, 64>;
/// A running digest is reported every this many entries, so a mismatch
/// can be narrowed down to a stretch of the log.
pub const CHECKPOINT_EVERY: u64 = 256;

/// Either crypto backend, chosen by the log header at run time.
#[derive(Clone, Debug)]
pub enum AnyCrypto {
    /// The simulator's keyed tags.
    Modeled(ModeledCrypto),
    /// Ed25519.
    Real(RealCrypto),
}

impl Crypto for AnyCrypto {
    fn device_id(&self) -> DeviceId {
        match self {
            AnyCrypto::Modeled(c) => c.device_id(),
            AnyCrypto::Real(c) => c.device_id(),
        }
    }
    fn public_key(&self) -> PublicKey {
        match self {
            AnyCrypto::Modeled(c) => c.public_key(),
            AnyCrypto::Real(c) => c.public_key(),
        }
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        match self {
            AnyCrypto::Modeled(c) => c.sign(msg),
            AnyCrypto::Real(c) => c.sign(msg),
        }
    }
    fn verify(&self, signer: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        match self {
            AnyCrypto::Modeled(c) => c.verify(signer, msg, sig),
            AnyCrypto::Real(c) => c.verify(signer, msg, sig),
        }
    }
}

impl CryptoSpec {
    /// The backend for the identity with `seed`.
    pub fn crypto(&self, seed: &[u8; 32]) -> AnyCrypto {
        let identity = Identity::from_seed(&Seed(*seed));
        match self {
            CryptoSpec::Modeled { authority } => {
                AnyCrypto::Modeled(ModeledAuthority::new(authority).crypto_for(&identity))
            }
            CryptoSpec::Real => AnyCrypto::Real(RealCrypto::new(&identity)),
        }
    }
}

/// Why a log could not be replayed to the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// The log itself is malformed.
    Log(LogError),
    /// It was recorded with capacities this replayer was not built for
    /// (it knows [`Capacities::SMALL`], [`Capacities::NANO`] and
    /// [`Capacities::DUST`]).
    Capacities(Capacities),
    /// More peers than the key table holds.
    KeyTableFull,
    /// The node drew more random words than were recorded for the entry:
    /// its behaviour diverged from the recording.
    RngOverrun {
        /// Entry index (0 = first after the header).
        entry: u64,
    },
    /// The node drew fewer random words than were recorded.
    RngUnused {
        /// Entry index.
        entry: u64,
        /// Words left over.
        left: u32,
    },
}

impl From<LogError> for ReplayError {
    fn from(e: LogError) -> Self {
        ReplayError::Log(e)
    }
}

impl Header {
    /// The node as it was when the first entry was recorded, boxed: even a
    /// small node is tens of kilobytes. Its capacities must be the header's.
    pub fn build_node<const N: usize, const D: usize, const G: usize, const B: usize>(
        &self,
    ) -> Result<Box<Node<AnyCrypto, N, D, G, B>>, ReplayError> {
        if self.capacities != Capacities::of::<N, D, G, B>() {
            return Err(ReplayError::Capacities(self.capacities));
        }
        let cfg = self.config.config()?;
        let crypto = self.crypto.crypto(&self.identity_seed);
        let mut node = Box::new(Node::new(cfg, crypto, self.boot.into(), self.first_query_id));
        for k in &self.peers {
            node.register_peer(PublicKey(*k)).map_err(|_| ReplayError::KeyTableFull)?;
        }
        Ok(node)
    }
}

/// Actions by kind, for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionCounts {
    /// `Broadcast`.
    pub broadcast: u64,
    /// `Unicast`.
    pub unicast: u64,
    /// `Audit`.
    pub audit: u64,
    /// `PersistState`, `PersistDagAppend`, `PersistDagCompact`, `PersistProfiles`.
    pub persist: u64,
    /// `ReadSensor`.
    pub read_sensor: u64,
    /// Everything else (lifecycle requests, batches, keys, clock offsets, uplinks).
    pub other: u64,
}

/// BLAKE2s-256 over a canonical text of every action a node emitted.
///
/// The text, line by line: `@{entry} {frame|reading|timers}` before each
/// call's actions; each action's `Debug` (frames as byte lists, audit events
/// with every figure; `f32` through core's formatting, which is the same on
/// every target for the same bits); after `SubmitBatch` the batch taken with
/// `take_batch` (`batch` + hex, or `batch error …`); after
/// `PersistProfiles` each `stored_profiles()` entry (`profile …`); after
/// `PersistDagCompact` each DAG entry (`dag …`). The extra lines are what a
/// board would write or send for those actions.
#[derive(Clone, Debug)]
pub struct ActionDigest {
    hash: Blake2s256,
    actions: u64,
    counts: ActionCounts,
}

impl Default for ActionDigest {
    fn default() -> Self {
        ActionDigest { hash: Blake2s256::new(), actions: 0, counts: ActionCounts::default() }
    }
}

impl core::fmt::Write for ActionDigest {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.hash.update(s.as_bytes());
        Ok(())
    }
}

impl ActionDigest {
    /// Actions digested so far.
    pub fn actions(&self) -> u64 {
        self.actions
    }

    /// By kind.
    pub fn counts(&self) -> ActionCounts {
        self.counts
    }

    /// The digest so far (the digest itself keeps running).
    pub fn snapshot(&self) -> [u8; 32] {
        self.hash.clone().finalize().into()
    }

    fn action(&mut self, a: &Action) {
        self.actions += 1;
        let c = &mut self.counts;
        match a {
            Action::Broadcast(_) => c.broadcast += 1,
            Action::Unicast { .. } => c.unicast += 1,
            Action::Audit(_) => c.audit += 1,
            Action::PersistState(_)
            | Action::PersistDagAppend(_)
            | Action::PersistDagCompact
            | Action::PersistProfiles => c.persist += 1,
            Action::ReadSensor { .. } => c.read_sensor += 1,
            _ => c.other += 1,
        }
        let _ = writeln!(self, "{a:?}");
    }
}

/// Random words replayed from a [`Entry::Timers`] entry.
struct Draws<'a> {
    words: &'a [u32],
    used: usize,
    overrun: bool,
}

impl Rng for Draws<'_> {
    fn next_u32(&mut self) -> u32 {
        match self.words.get(self.used) {
            Some(w) => {
                self.used += 1;
                *w
            }
            None => {
                self.overrun = true;
                0
            }
        }
    }
}

/// Feeds one entry to `node`: makes the call, digests every action it
/// emitted (plus what a board would fetch for it, see [`ActionDigest`], and
/// the answer of a call that returns one) and hands each action to `out` in
/// order. `Timers` and `TimeSync` draw from `rng`, not from the entry's
/// words: a recorder passes its live RNG, the replayer the recorded words.
/// `End` does nothing. Returns the batch taken for a `SubmitBatch` (the last
/// one if several), which a recorder hands on in its node's place.
pub fn feed<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize>(
    node: &mut Node<C, N, D, G, B>,
    index: u64,
    entry: &Entry<'_>,
    rng: &mut impl Rng,
    digest: &mut ActionDigest,
    out: &mut impl FnMut(&Action),
) -> Option<Vec<u8>> {
    let mut actions = Vec::new();
    let sink = &mut |a| actions.push(a);
    let mut answer = None;
    let kind = match entry {
        Entry::Frame { now, rssi, hops, bytes } => {
            node.handle_frame((*now).into(), bytes, *rssi, *hops, sink);
            "frame"
        }
        Entry::Reading { now, quantity, value } => {
            node.handle_reading((*now).into(), QuantityType::from_u8(*quantity), *value, sink);
            "reading"
        }
        Entry::Timers { now, .. } => {
            node.handle_timers((*now).into(), rng, sink);
            "timers"
        }
        Entry::Uplink { now, bytes } => {
            node.handle_uplink((*now).into(), bytes, sink);
            "uplink"
        }
        Entry::Downlink { bytes } => {
            node.handle_downlink(bytes, sink);
            "downlink"
        }
        Entry::Batch { now, bytes } => {
            answer = Some(alloc::format!("{:?}", node.handle_batch((*now).into(), bytes, sink)));
            "batch"
        }
        Entry::TimeSync { now, source, .. } => {
            node.request_time_sync((*now).into(), DeviceId(*source), rng, sink);
            "time-sync"
        }
        Entry::Query { now, quantity } => {
            answer = Some(alloc::format!("{:?}", node.query_field(QuantityType::from_u8(*quantity), (*now).into())));
            "query"
        }
        Entry::RegisterPeer { key } => {
            answer = Some(alloc::format!("{:?}", node.register_peer(PublicKey(*key))));
            "register-peer"
        }
        Entry::RegisterDust { device, key } => {
            answer = Some(alloc::format!("{:?}", node.register_dust(DeviceId(*device), DustKey(*key))));
            "register-dust"
        }
        Entry::RegisterDustServed { dust, gateway } => {
            answer = Some(alloc::format!("{:?}", node.register_dust_served(DeviceId(*dust), DeviceId(*gateway))));
            "register-dust-served"
        }
        Entry::End { .. } => return None,
    };
    let _ = writeln!(digest, "@{index} {kind}");
    if let Some(a) = answer {
        let _ = writeln!(digest, "= {a}");
    }
    let mut taken = None;
    for a in &actions {
        digest.action(a);
        match a {
            Action::SubmitBatch { len, .. } => {
                let mut buf = vec![0u8; *len];
                match node.take_batch(&mut buf) {
                    Ok(n) => {
                        buf.truncate(n);
                        let _ = digest.write_str("batch ");
                        for b in &buf {
                            let _ = write!(digest, "{b:02x}");
                        }
                        let _ = digest.write_str("\n");
                        taken = Some(buf);
                    }
                    Err(e) => {
                        let _ = writeln!(digest, "batch error {e:?}");
                    }
                }
            }
            Action::PersistProfiles => {
                for p in node.stored_profiles() {
                    let _ = writeln!(digest, "profile {p:?}");
                }
            }
            Action::PersistDagCompact => {
                for e in node.dag().entries() {
                    let _ = writeln!(digest, "dag {e:?}");
                }
            }
            _ => {}
        }
        out(a);
    }
    taken
}

/// Passes a live RNG's words through and keeps them for the log.
struct Taped<'a, R> {
    inner: &'a mut R,
    tape: Vec<u32>,
}

impl<R: Rng> Rng for Taped<'_, R> {
    fn next_u32(&mut self) -> u32 {
        let w = self.inner.next_u32();
        self.tape.push(w);
        w
    }
}

/// Records one node's calls as they happen: each [`Recorder::call`] feeds
/// the node (see [`feed`]) and appends the entry, with the RNG words the
/// call drew; [`Recorder::finish`] ends the log with the digest of every
/// action the node emitted meanwhile, which a replay must reproduce.
#[derive(Debug)]
pub struct Recorder {
    log: LogWriter,
    digest: ActionDigest,
}

impl Recorder {
    /// A log of the node `header` describes; record from its first call on.
    pub fn new(header: &Header) -> Result<Self, LogError> {
        Ok(Recorder { log: LogWriter::new(header)?, digest: ActionDigest::default() })
    }

    /// Makes the call `entry` names on `node`, drawing from `rng` (its words
    /// replace whatever `draws` the entry holds), and logs it. Returns the
    /// batch taken for a `SubmitBatch`, as [`feed`] does.
    pub fn call<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize>(
        &mut self,
        node: &mut Node<C, N, D, G, B>,
        entry: Entry<'_>,
        rng: &mut impl Rng,
        out: &mut impl FnMut(&Action),
    ) -> Result<Option<Vec<u8>>, LogError> {
        let mut taped = Taped { inner: rng, tape: Vec::new() };
        let batch = feed(node, self.log.entries(), &entry, &mut taped, &mut self.digest, out);
        let entry = match entry {
            Entry::Timers { now, .. } => Entry::Timers { now, draws: taped.tape },
            Entry::TimeSync { now, source, .. } => Entry::TimeSync { now, source, draws: taped.tape },
            e => e,
        };
        self.log.push(&entry)?;
        Ok(batch)
    }

    /// Calls logged so far.
    pub fn entries(&self) -> u64 {
        self.log.entries()
    }

    /// Actions the node emitted so far.
    pub fn actions(&self) -> u64 {
        self.digest.actions()
    }

    /// The log, ended with the action count and digest.
    pub fn finish(self) -> Result<Vec<u8>, LogError> {
        let (actions, digest) = (self.digest.actions(), self.digest.snapshot());
        self.log.finish(actions, Some(digest))
    }
}

/// Entries by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryCounts {
    /// `Frame`.
    pub frames: u64,
    /// `Reading`.
    pub readings: u64,
    /// `Timers`.
    pub timers: u64,
    /// Every other call (uplinks, downlinks, batches, time syncs, queries,
    /// registrations).
    pub other: u64,
    /// Random words replayed.
    pub draws: u64,
}

/// What a replay produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The replayed node's id.
    pub node: DeviceId,
    /// Entries by kind.
    pub entries: EntryCounts,
    /// Actions by kind.
    pub counts: ActionCounts,
    /// Actions in all.
    pub actions: u64,
    /// Their digest.
    pub digest: [u8; 32],
    /// What the recorder's `End` says: action count and digest, if any.
    pub recorded: (u64, Option<[u8; 32]>),
}

impl Report {
    /// True if the replay emitted what the recorder's own run emitted
    /// (count, and digest when the recorder gave one).
    pub fn matches_recording(&self) -> bool {
        self.recorded.0 == self.actions && self.recorded.1.is_none_or(|d| d == self.digest)
    }
}

impl core::fmt::Display for Report {
    /// The lines both the image and the host print; compared verbatim.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (e, c) = (&self.entries, &self.counts);
        writeln!(
            f,
            "replay node {}: {} frames, {} readings, {} timer runs ({} rng words), {} other calls",
            self.node, e.frames, e.readings, e.timers, e.draws, e.other
        )?;
        writeln!(
            f,
            "replay actions: {} ({} broadcast, {} unicast, {} audit, {} persist, {} read-sensor, {} other)",
            self.actions, c.broadcast, c.unicast, c.audit, c.persist, c.read_sensor, c.other
        )?;
        write!(f, "replay digest: {}", Hex(&self.digest))
    }
}

/// `replay: PASS`, or `replay: FAIL` with what the recording says; the last
/// line both the image and the host print.
pub struct Verdict<'a>(pub &'a Report);

impl core::fmt::Display for Verdict<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let r = self.0;
        if r.matches_recording() {
            return f.write_str("replay: PASS");
        }
        write!(f, "replay: FAIL (the recording emitted {} actions", r.recorded.0)?;
        match &r.recorded.1 {
            Some(d) => write!(f, ", digest {})", Hex(d)),
            None => f.write_str(")"),
        }
    }
}

/// Replays `log` into a fresh node with the header's capacities.
/// `checkpoint(entries, digest)` is called every [`CHECKPOINT_EVERY`]
/// entries with the running digest.
pub fn replay(log: &[u8], checkpoint: impl FnMut(u64, &[u8; 32])) -> Result<Report, ReplayError> {
    let reader = LogReader::open(log)?;
    match reader.header().capacities {
        Capacities::SMALL => replay_into::<8, 512, 16, 64>(reader, checkpoint),
        Capacities::NANO => replay_into::<
            { krill_core::types::MAX_NEIGHBORS },
            { krill_core::types::MAX_DAG_ENTRIES },
            { krill_core::guards::GUARD_DEVICES },
            { krill_core::guards::RATE_BUCKETS },
        >(reader, checkpoint),
        Capacities::DUST => replay_into::<1, { krill_core::types::MAX_DAG_ENTRIES_DUST }, 2, 8>(reader, checkpoint),
        other => Err(ReplayError::Capacities(other)),
    }
}

fn replay_into<const N: usize, const D: usize, const G: usize, const B: usize>(
    mut reader: LogReader<'_>,
    mut checkpoint: impl FnMut(u64, &[u8; 32]),
) -> Result<Report, ReplayError> {
    let mut node = reader.header().build_node::<N, D, G, B>()?;
    let mut digest = ActionDigest::default();
    let mut counts = EntryCounts::default();
    let mut index = 0u64;
    for entry in &mut reader {
        let entry = entry?;
        let words = entry.draws().unwrap_or(&[]);
        counts.draws += words.len() as u64;
        let mut draws = Draws { words, used: 0, overrun: false };
        match &entry {
            Entry::Frame { .. } => counts.frames += 1,
            Entry::Reading { .. } => counts.readings += 1,
            Entry::Timers { .. } => counts.timers += 1,
            Entry::End { actions, digest: d } => {
                return Ok(Report {
                    node: node.id(),
                    entries: counts,
                    counts: digest.counts(),
                    actions: digest.actions(),
                    digest: digest.snapshot(),
                    recorded: (*actions, *d),
                });
            }
            _ => counts.other += 1,
        }
        feed(&mut *node, index, &entry, &mut draws, &mut digest, &mut |_| {});
        if draws.overrun {
            return Err(ReplayError::RngOverrun { entry: index });
        }
        if draws.used < draws.words.len() {
            let left = (draws.words.len() - draws.used).min(u32::MAX as usize) as u32;
            return Err(ReplayError::RngUnused { entry: index, left });
        }
        index += 1;
        if index.is_multiple_of(CHECKPOINT_EVERY) {
            checkpoint(index, &digest.snapshot());
        }
    }
    Err(ReplayError::Log(LogError::NoEnd))
}

/// Lower-case hex of a digest, without allocating.
pub struct Hex<'a>(pub &'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// BLAKE2s-256 of `bytes` (to show both sides replayed the same log).
pub fn blake2s(bytes: &[u8]) -> [u8; 32] {
    Blake2s256::digest(bytes).into()
}
