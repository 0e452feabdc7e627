//! Conformance vectors for the local DAG (ES-5.1 – ES-5.3).
//!
//! `Hash` pins the sender-content serialization and its SHA-1; `TwoNodes`
//! appends the same trace on two nodes with different histories; `Script`
//! appends traces (and GCs) on one DAG and checks what is kept; `Sync` runs
//! offer/accept between two DAGs with corrupted and unverifiable entries.
use super::Outcome;
use krill_core::dag::{AppendError, DagEntry, LocalDag, SyncReport, Trace};
use krill_core::{DeviceId, Hash20, HashPrefix4, QuantityType};
use serde::Deserialize;

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// The hash of one trace.
    Hash(HashCase),
    /// The same trace appended on two nodes.
    TwoNodes(TwoNodesCase),
    /// Appends and GCs on one DAG.
    Script(ScriptCase),
    /// Reconnect sync between two DAGs.
    Sync(SyncCase),
}

fn full() -> u8 {
    255
}

fn temperature() -> QuantityType {
    QuantityType::Temperature
}

/// Sender-provided trace content.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TraceIn {
    /// Sender.
    pub device: DeviceId,
    /// Sender's timestamp.
    pub timestamp: u32,
    /// Quantity (default Temperature).
    #[serde(default = "temperature")]
    pub quantity: QuantityType,
    /// Reading (default 0).
    #[serde(default)]
    pub reading: i16,
    /// Confidence (default 255).
    #[serde(default = "full")]
    pub confidence: u8,
    /// Claimed weight (default 255).
    #[serde(default = "full")]
    pub weight: u8,
    /// Sequence number; when absent, the DAG's `next_own` for the device.
    #[serde(default)]
    pub seq: Option<u8>,
    /// `prev_hash`; when absent, the DAG's `next_own` for the device.
    #[serde(default)]
    pub prev_hash: Option<HashPrefix4>,
}

impl TraceIn {
    fn build<const N: usize>(&self, dag: &LocalDag<N>) -> Trace {
        let (seq, prev) = dag.next_own(self.device);
        Trace {
            device: self.device,
            timestamp: self.timestamp,
            quantity: self.quantity,
            reading: self.reading,
            confidence: self.confidence,
            weight: self.weight,
            seq: self.seq.unwrap_or(seq),
            prev_hash: self.prev_hash.unwrap_or(prev),
        }
    }
}

/// The hash of one trace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashCase {
    /// The trace (seq and prev_hash default to 0).
    pub trace: TraceIn,
    /// Expected SHA-1 over the 22-byte serialization.
    pub hash: Hash20,
}

/// Two nodes with different histories append the same trace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoNodesCase {
    /// Receiver clock for every append.
    pub now: u32,
    /// Node A's earlier traces.
    pub history_a: Vec<TraceIn>,
    /// Node B's earlier traces.
    pub history_b: Vec<TraceIn>,
    /// The shared trace.
    pub trace: TraceIn,
    /// Expected: the hashes agree.
    pub same_hash: bool,
    /// Expected: the local parent links agree.
    pub same_parent: bool,
}

/// One step of a script.
#[derive(Debug, Deserialize)]
pub enum Step {
    /// Append a trace at the receiver's `now`, expecting `reject` if set.
    Append {
        /// The trace.
        trace: TraceIn,
        /// Receiver clock.
        now: u32,
        /// Expected rejection.
        #[serde(default)]
        reject: Option<AppendError>,
    },
    /// Run GC at `now`, expecting (by_time, by_score).
    Gc {
        /// Receiver clock.
        now: u32,
        /// Expected removals by time and by score.
        removed: (usize, usize),
    },
}

/// Appends and GCs on a DAG of capacity 4, 8, 16 or 4096.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptCase {
    /// Capacity.
    pub capacity: usize,
    /// Steps.
    pub steps: Vec<Step>,
    /// Expected (device, seq) of every held entry, oldest first.
    pub held: Vec<(DeviceId, u8)>,
    /// Expected: every parent link names the previous held entry of the
    /// same device (or zero for the first).
    pub linked: bool,
}

/// Reconnect sync: B offers its recent hashes, A answers, B accepts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncCase {
    /// Receiver clock.
    pub now: u32,
    /// A's traces.
    pub a: Vec<TraceIn>,
    /// How many of A's traces B also holds (the first ones).
    pub b_holds: usize,
    /// Offer limit.
    pub limit: usize,
    /// Offered entries whose reading is altered in flight (by index).
    #[serde(default)]
    pub corrupt: Vec<usize>,
    /// Extra entries a forger appends to the offer (valid hash, bad signature).
    #[serde(default)]
    pub forged: Vec<TraceIn>,
    /// Expected offer size.
    pub offered: usize,
    /// Expected report.
    pub report: SyncReport,
    /// Expected: B's tip equals A's tip afterwards.
    pub tips_match: bool,
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut o = Outcome::default();
    match c {
        Case::Hash(h) => {
            let t = Trace {
                seq: h.trace.seq.unwrap_or(0),
                prev_hash: h.trace.prev_hash.unwrap_or_default(),
                ..h.trace.build(&LocalDag::<1>::new())
            };
            o.value("hash_input", hex::encode(t.hash_input()));
            o.exact("hash", t.hash(), h.hash);
        }
        Case::TwoNodes(c) => {
            let mut a = LocalDag::<64>::new();
            let mut b = LocalDag::<64>::new();
            for t in &c.history_a {
                let _ = a.append(&t.build(&a), c.now);
            }
            for t in &c.history_b {
                let _ = b.append(&t.build(&b), c.now);
            }
            let shared = c.trace.build(&a);
            let (ha, hb) = (a.append(&shared, c.now), b.append(&shared, c.now));
            o.exact("same_hash", ha.is_ok() && ha == hb, c.same_hash);
            let pa = a.latest_by_device(shared.device).map(|e| e.parent_hash);
            let pb = b.latest_by_device(shared.device).map(|e| e.parent_hash);
            o.exact("same_parent", pa == pb, c.same_parent);
        }
        Case::Script(s) => match s.capacity {
            4 => script::<4>(s, &mut o),
            8 => script::<8>(s, &mut o),
            16 => script::<16>(s, &mut o),
            4096 => script::<4096>(s, &mut o),
            n => o.fail(format!("capacity {n} not supported by the runner")),
        },
        Case::Sync(s) => sync(s, &mut o),
    }
    o
}

fn script<const N: usize>(s: &ScriptCase, o: &mut Outcome) {
    let mut d = Box::new(LocalDag::<N>::new());
    for (i, step) in s.steps.iter().enumerate() {
        match step {
            Step::Append { trace, now, reject } => {
                let got = d.append(&trace.build(&d), *now).err();
                if got.is_some() || reject.is_some() {
                    o.exact(&format!("step[{i}].reject"), got, *reject);
                }
            }
            Step::Gc { now, removed } => {
                let r = d.gc(*now);
                o.exact(&format!("step[{i}].gc"), (r.by_time, r.by_score), *removed);
            }
        }
    }
    let held: Vec<(DeviceId, u8)> = d.entries().iter().map(|e| (e.device, e.seq)).collect();
    o.exact("held", held, s.held.clone());
    let linked = d.entries().iter().enumerate().all(|(k, e)| {
        let prev = d.entries()[..k].iter().rev().find(|p| p.device == e.device);
        e.parent_hash == prev.map(|p| p.hash).unwrap_or_default()
    });
    o.exact("linked", linked, s.linked);
}

fn sync(s: &SyncCase, o: &mut Outcome) {
    let mut a = LocalDag::<64>::new();
    let mut b = LocalDag::<64>::new();
    for (i, t) in s.a.iter().enumerate() {
        let tr = t.build(&a);
        if let Err(e) = a.append(&tr, s.now) {
            o.fail(format!("A could not append trace {i}: {e:?}"));
        }
        if i < s.b_holds {
            let _ = b.append(&tr, s.now);
        }
    }
    let theirs: Vec<Hash20> = b.recent_hashes(krill_core::dag::SYNC_RECENT).collect();
    let mut offer: Vec<DagEntry> = a.sync_offer(&theirs, s.limit).copied().collect();
    o.exact("offered", offer.len(), s.offered);
    for &i in &s.corrupt {
        match offer.get_mut(i) {
            Some(e) => e.reading = e.reading.wrapping_add(1),
            None => o.fail(format!("corrupt index {i} outside the offer")),
        }
    }
    let forged: Vec<DeviceId> = s.forged.iter().map(|t| t.device).collect();
    for t in &s.forged {
        offer.push(DagEntry::new(&t.build(&b), Hash20::default()));
    }
    let report = b.sync_accept(offer, s.now, |e| !forged.contains(&e.device));
    o.exact("report", report, s.report);
    o.exact("tips_match", a.tip_hash() == b.tip_hash(), s.tips_match);
}
