//! Conformance vectors for persistence (ES-14).
//!
//! `Record` pins the byte layout of one critical-state journal record and its
//! CRC-32; `Script` runs writes, power cuts and bit flips on an in-memory NOR
//! flash with a small layout and checks what boot restore brings back.
use super::Outcome;
use krill_core::dag::{DagEntry, LocalDag, Trace};
use krill_core::persist::{
    restore, Flash, Layout, MetaRecord, Partition, PersistedState, RamFlash, Status, StoredProfile,
};
use krill_core::profile::{ProfileMode, ProfileSummary};
use krill_core::{DeviceId, Hash20, HashPrefix4, PublicKey, QuantityType, MAX_PROFILE_BINS};
use serde::Deserialize;

const SIZE: usize = 0x10000;
const T0: u32 = 1_707_800_000;

/// The layout the scripts run on: 16 KB per partition.
const SMALL: Layout = Layout {
    flash_size: SIZE as u32,
    meta: Partition { offset: 0, len: 0x4000 },
    state: Partition { offset: 0x4000, len: 0x4000 },
    dag: Partition { offset: 0x8000, len: 0x4000 },
    profiles: Some(Partition { offset: 0xC000, len: 0x4000 }),
    others: &[],
};

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// The first journal record written for a state.
    Record(RecordCase),
    /// Operations on a fresh flash, then a boot restore.
    Script(ScriptCase),
}

/// Layout of one state record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordCase {
    /// The state.
    pub state: PersistedState,
    /// Expected record bytes (header, payload, CRC) as hex.
    pub record_hex: String,
    /// Expected CRC-32 (the last four bytes, LE).
    pub crc: u32,
}

/// One step of a script.
#[derive(Debug, Deserialize)]
pub enum Op {
    /// Save a [`state`](PersistedState::first_boot) at T0 with this `boot_count`.
    SaveState(u32),
    /// Save an enrollment record whose bytes derive from this tag.
    SaveMeta(u8),
    /// Save this many profiles.
    SaveProfiles(u8),
    /// Record one trace from this device (1 s apart) in the DAG, compacting when needed.
    DagAppend(u8),
    /// Cut power after this many units of work (bytes; an erase is 2).
    Cut(usize),
    /// Restore power.
    PowerOn,
    /// Flip bit `.1` of byte `.0`.
    Flip(u32, u8),
}

/// What the restore must bring back; absent fields are not checked.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// An enrollment record was restored.
    pub enrolled: Option<bool>,
    /// "Blank", "Restored" or "Fallback".
    pub state_status: Option<String>,
    /// Sequence of the state record used.
    pub state_seq: Option<u32>,
    /// Reason reported for the first invalid state copy (Debug form).
    pub state_why: Option<String>,
    /// Restored lifecycle code.
    pub lifecycle: Option<u8>,
    /// Restored boot count.
    pub boot_count: Option<u32>,
    /// Entries in the restored DAG.
    pub dag_len: Option<usize>,
    /// Why the DAG append log ended early (Debug form), or "none".
    pub dag_tail: Option<String>,
    /// Profiles restored.
    pub profiles: Option<usize>,
    /// Sequence of the profile image used.
    pub profiles_seq: Option<u32>,
}

/// A script.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptCase {
    /// The steps, in order.
    pub ops: Vec<Op>,
    /// Results of the writes ("ok" or the error's Debug form), in order.
    #[serde(default)]
    pub results: Option<Vec<String>>,
    /// What the final restore must give.
    pub expect: Expect,
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    match c {
        Case::Record(r) => record(r),
        Case::Script(s) => script(s),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn boot(f: &mut RamFlash<SIZE>) -> krill_core::persist::Restored<64, 16> {
    restore::<_, 64, 16>(f, &SMALL, T0 + 100)
}

fn record(c: &RecordCase) -> Outcome {
    let mut o = Outcome::default();
    let mut f = Box::new(RamFlash::<SIZE>::new());
    let mut st = boot(&mut f).store;
    if let Err(e) = st.save_state(&mut *f, &c.state) {
        o.fail(format!("save failed: {e:?}"));
        return o;
    }
    let mut buf = [0u8; krill_core::persist::STATE_RECORD];
    let _ = f.read(SMALL.state.offset, &mut buf);
    o.exact("record_hex", hex(&buf), c.record_hex.to_lowercase());
    let n = buf.len();
    o.exact("crc", u32::from_le_bytes([buf[n - 4], buf[n - 3], buf[n - 2], buf[n - 1]]), c.crc);
    o.exact("crc32(record[..56])", krill_core::persist::crc32(&buf[..n - 4]), c.crc);
    o
}

fn meta(n: u8) -> MetaRecord {
    let mut helper = [0u8; 4096];
    for (i, b) in helper.iter_mut().enumerate() {
        *b = (i as u8) ^ n;
    }
    MetaRecord {
        protocol_version: 2,
        hw_version: 1,
        pubkey: PublicKey([n; 32]),
        device_id: DeviceId([n; 8]),
        enrolled_at: T0,
        deployment_zone: 1,
        netkey_sealed: [n; 32],
        helper,
    }
}

fn profile(n: u8) -> StoredProfile {
    StoredProfile {
        device: DeviceId([n; 8]),
        quantity: QuantityType::Temperature,
        mode: ProfileMode::Running,
        summary: ProfileSummary {
            profile_version: n as u32,
            value_count: 10,
            value_mean: 2300.0,
            value_var: 4.0,
            value_min: 2000,
            value_max: 2600,
            last_updated: T0,
            bins: [1; MAX_PROFILE_BINS],
        },
    }
}

fn status_name(s: &Status) -> &'static str {
    match s {
        Status::Blank => "Blank",
        Status::Restored { .. } => "Restored",
        Status::Fallback { .. } => "Fallback",
    }
}

fn script(c: &ScriptCase) -> Outcome {
    let mut o = Outcome::default();
    let mut f = Box::new(RamFlash::<SIZE>::new());
    let mut st = boot(&mut f).store;
    let mut dag = LocalDag::<64>::new();
    let mut results = Vec::new();
    let mut dt = 0u32;
    for op in &c.ops {
        let r = match op {
            Op::SaveState(n) => {
                let mut s = PersistedState::first_boot(T0);
                s.boot_count = *n;
                Some(st.save_state(&mut *f, &s).map(|_| ()))
            }
            Op::SaveMeta(n) => Some(st.save_meta(&mut *f, &meta(*n)).map(|_| ())),
            Op::SaveProfiles(n) => {
                let ps: Vec<_> = (0..*n).map(profile).collect();
                Some(st.save_profiles(&mut *f, &ps).map(|_| ()))
            }
            Op::DagAppend(d) => {
                let t = Trace {
                    device: DeviceId([*d; 8]),
                    timestamp: T0 + dt,
                    quantity: QuantityType::Temperature,
                    reading: 2300,
                    confidence: 255,
                    weight: 200,
                    seq: dt as u8,
                    prev_hash: HashPrefix4::default(),
                };
                dt += 1;
                let e = DagEntry::new(&t, Hash20::default());
                dag.sync_accept([e], T0 + dt, |_| true);
                Some(st.record_dag(&mut *f, &dag, &e))
            }
            Op::Cut(k) => {
                f.cut_power_after(*k);
                None
            }
            Op::PowerOn => {
                f.power_on();
                let r = boot(&mut f);
                st = r.store;
                dag = r.dag;
                None
            }
            Op::Flip(at, bit) => {
                f.flip_bit(*at as usize, *bit);
                None
            }
        };
        if let Some(r) = r {
            results.push(match r {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("{e:?}"),
            });
        }
    }
    f.power_on();
    let r = boot(&mut f);
    if let Some(want) = &c.results {
        o.exact("results", results, want.clone());
    }
    let e = &c.expect;
    if let Some(w) = e.enrolled {
        o.exact("enrolled", r.meta.is_some(), w);
    }
    if let Some(w) = &e.state_status {
        o.exact("state_status", status_name(&r.report.state).to_string(), w.clone());
    }
    let (seq, why) = match r.report.state {
        Status::Restored { seq, why, .. } => (Some(seq), why),
        Status::Fallback { why } => (None, Some(why)),
        Status::Blank => (None, None),
    };
    if e.state_seq.is_some() {
        o.exact("state_seq", seq, e.state_seq);
    }
    if let Some(w) = &e.state_why {
        o.exact("state_why", why.map_or("none".to_string(), |x| format!("{x:?}")), w.clone());
    }
    if let Some(w) = e.lifecycle {
        o.exact("lifecycle", r.state.lifecycle, w);
    }
    if let Some(w) = e.boot_count {
        o.exact("boot_count", r.state.boot_count, w);
    }
    if let Some(w) = e.dag_len {
        o.exact("dag_len", r.dag.len(), w);
    }
    if let Some(w) = &e.dag_tail {
        o.exact("dag_tail", r.report.dag_tail.map_or("none".to_string(), |x| format!("{x:?}")), w.clone());
    }
    if let Some(w) = e.profiles {
        o.exact("profiles", r.profiles.len(), w);
    }
    if e.profiles_seq.is_some() {
        let s = match r.report.profiles {
            Status::Restored { seq, .. } => Some(seq),
            _ => None,
        };
        o.exact("profiles_seq", s, e.profiles_seq);
    }
    o
}
