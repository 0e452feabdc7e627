//! Conformance vectors for persistence (ES-14).
//!
//! `Record` pins the byte layout of one critical-state journal record and its
//! CRC-32; `Script` runs writes, power cuts and bit flips on an in-memory NOR
//! flash with a small layout and checks what boot restore brings back. A
//! script can write krill_profiles images with subject standings (REJECTION /
//! QUARANTINE, `persist::SubjectStanding`) and then boot a real `Node` from
//! the restored image and tick it, to check what the standings become.
use super::Outcome;
use krill_core::crypto::{Identity, RealCrypto, Seed};
use krill_core::dag::{DagEntry, LocalDag, Trace};
use krill_core::lifecycle::{LifecycleAction, SubjectState};
use krill_core::node::{Action, Node, NodeConfig, Now, Rng};
use krill_core::persist::{
    restore, Flash, Layout, MetaRecord, Partition, PersistedState, RamFlash, Status, StoredProfile, SubjectStanding,
};
use krill_core::profile::{ProfileMode, ProfileSummary, SubjectKind};
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

/// The monitor booted from a script's flash: small tables, as in the
/// enrollment vectors.
type Monitor = Node<RealCrypto, 8, 64, 16, 64>;

/// A case for this module.
#[derive(Clone, Debug, Deserialize)]
pub enum Case {
    /// The first journal record written for a state.
    Record(RecordCase),
    /// Operations on a fresh flash, then a boot restore (boxed: a script
    /// is several times the size of a record case).
    Script(Box<ScriptCase>),
}

/// Layout of one state record.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordCase {
    /// The state.
    pub state: PersistedState,
    /// Expected record bytes (header, payload, CRC) as hex.
    pub record_hex: String,
    /// Expected CRC-32 (the last four bytes, LE).
    pub crc: u32,
}

/// One standing in a profile image.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StandingCase {
    /// The subject: eight copies of this byte.
    pub device: u8,
    /// Lifecycle code: 6 REJECTION, 7 QUARANTINE (others are written as
    /// given, to test that restore refuses them).
    pub state: u8,
    /// Nano or Dust.
    pub kind: SubjectKind,
    /// Failed remediations.
    pub attempts: u8,
    /// Unix seconds the monitor entered the state.
    pub entered_at: u32,
}

impl StandingCase {
    fn of(s: &SubjectStanding) -> Self {
        StandingCase {
            device: s.device.0[0],
            state: s.state,
            kind: s.kind,
            attempts: s.remediation_attempts,
            entered_at: s.entered_at,
        }
    }

    fn standing(&self) -> SubjectStanding {
        SubjectStanding {
            device: DeviceId([self.device; 8]),
            state: self.state,
            kind: self.kind,
            remediation_attempts: self.attempts,
            entered_at: self.entered_at,
        }
    }
}

/// A subject of the monitor booted from the final flash.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubjectCase {
    /// The subject: eight copies of this byte.
    pub device: u8,
    /// Its record's state.
    pub state: SubjectState,
    /// Failed remediations on its record.
    pub attempts: u8,
    /// Its assessed weight.
    pub weight: u8,
    /// Kept out of the consensus.
    pub isolated: bool,
}

/// One tick of the booted monitor and what it must show for one subject.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TickCase {
    /// Seconds after the boot (monotonic clock from 0, Unix from T0 + 100).
    pub at_s: u32,
    /// The subject looked at.
    pub device: u8,
    /// Its state after the tick; `None`: no longer in the table.
    pub state: Option<SubjectState>,
    /// Remediation attempts the tick launched for it
    /// (`LifecycleAction::AttemptRemediation`).
    pub attempts_launched: Vec<u8>,
}

/// One step of a script.
#[derive(Clone, Debug, Deserialize)]
pub enum Op {
    /// Save a [`state`](PersistedState::first_boot) at T0 with this `boot_count`.
    SaveState(u32),
    /// Save an enrollment record whose bytes derive from this tag.
    SaveMeta(u8),
    /// Save this many profiles.
    SaveProfiles(u8),
    /// Save this many profiles and these standings as one krill_profiles
    /// image (`Store::save_profile_image`).
    SaveImage(u8, Vec<StandingCase>),
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
#[derive(Clone, Debug, Deserialize, Default)]
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
    /// "Blank", "Restored" or "Fallback" for krill_profiles.
    pub profiles_status: Option<String>,
    /// Reason reported for the first refused profile copy (Debug form), or "none".
    pub profiles_why: Option<String>,
    /// The restored standings, in stored order.
    pub standings: Option<Vec<StandingCase>>,
    /// Raw flash bytes (hex) at absolute offsets, to pin the layout.
    pub bytes: Option<Vec<(u32, String)>>,
    /// Subjects of a monitor booted from the restored image at T0 + 100
    /// (monotonic clock 0), in table order.
    pub subjects: Option<Vec<SubjectCase>>,
    /// Ticks of that monitor, in time order.
    pub ticks: Option<Vec<TickCase>>,
}

/// A script.
#[derive(Clone, Debug, Deserialize)]
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
            Op::SaveImage(n, standings) => {
                let ps: Vec<_> = (0..*n).map(profile).collect();
                let ss: Vec<_> = standings.iter().map(StandingCase::standing).collect();
                Some(st.save_profile_image(&mut *f, &ps, &ss, &[]).map(|_| ()))
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
    let mut r = boot(&mut f);
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
    if let Some(w) = &e.profiles_status {
        o.exact("profiles_status", status_name(&r.report.profiles).to_string(), w.clone());
    }
    if let Some(w) = &e.profiles_why {
        let why = match r.report.profiles {
            Status::Restored { why, .. } => why,
            Status::Fallback { why } => Some(why),
            Status::Blank => None,
        };
        o.exact("profiles_why", why.map_or("none".to_string(), |x| format!("{x:?}")), w.clone());
    }
    if let Some(w) = &e.standings {
        o.exact("standings", r.standings.iter().map(StandingCase::of).collect::<Vec<_>>(), w.clone());
    }
    if let Some(w) = &e.bytes {
        for (at, want) in w {
            let mut buf = vec![0u8; want.len() / 2];
            let got = match f.read(*at, &mut buf) {
                Ok(()) => hex(&buf),
                Err(e) => format!("{e:?}"),
            };
            o.exact(&format!("bytes@{at}"), got, want.to_lowercase());
        }
    }
    if e.subjects.is_some() || e.ticks.is_some() {
        monitor(&mut r, e, &mut o);
    }
    o
}

/// Draws nothing random: the monitor only ticks.
struct Fixed;

impl Rng for Fixed {
    fn next_u32(&mut self) -> u32 {
        0x5EED
    }
}

/// What the table says about `device`.
fn subject_case(node: &Monitor, device: u8) -> Option<SubjectCase> {
    let s = node.subject(DeviceId([device; 8]))?;
    let r = s.record();
    Some(SubjectCase {
        device,
        state: r.state(),
        attempts: r.remediation_attempts(),
        weight: r.assessed_weight(),
        isolated: s.is_isolated(),
    })
}

/// Boots a monitor (its own id is none of the subjects') from the restored
/// image on a clock restarted at 0, then ticks it.
fn monitor(r: &mut krill_core::persist::Restored<64, 16>, e: &Expect, o: &mut Outcome) {
    let boot_unix = T0 + 100;
    let crypto = RealCrypto::new(&Identity::from_seed(&Seed([0x42; 32])));
    let mut node = Box::new(Monitor::restore(NodeConfig::default(), crypto, Now::new(0, boot_unix), 1, r.node_image()));
    if let Some(w) = &e.subjects {
        let got: Vec<_> = node.subjects().filter_map(|(id, _)| subject_case(&node, id.0[0])).collect();
        o.exact("subjects", got, w.clone());
    }
    for (i, t) in e.ticks.iter().flatten().enumerate() {
        let now = Now::new(u64::from(t.at_s) * 1000, boot_unix + t.at_s);
        let mut launched = Vec::new();
        node.handle_timers(now, &mut Fixed, &mut |a| {
            if let Action::Lifecycle(LifecycleAction::AttemptRemediation { subject, attempt }) = a {
                if subject == DeviceId([t.device; 8]) {
                    launched.push(attempt);
                }
            }
        });
        let got = TickCase {
            at_s: t.at_s,
            device: t.device,
            state: subject_case(&node, t.device).map(|s| s.state),
            attempts_launched: launched,
        };
        o.exact(&format!("tick {i}"), got, t.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wrong expectations for the standing-related parts of `c`, one each.
    fn mutations(c: &ScriptCase) -> Vec<ScriptCase> {
        let mut out = Vec::new();
        let mut with = |f: &dyn Fn(&mut Expect)| {
            let mut m = c.clone();
            f(&mut m.expect);
            out.push(m);
        };
        let e = &c.expect;
        if let Some(n) = e.profiles {
            with(&|x| x.profiles = Some(n + 1));
        }
        if let Some(s) = e.profiles_seq {
            with(&|x| x.profiles_seq = Some(s + 1));
        }
        if e.profiles_status.is_some() {
            with(&|x| x.profiles_status = Some("Blank".into()));
        }
        if let Some(w) = &e.profiles_why {
            let other = if w == "none" { "BadChecksum" } else { "none" };
            with(&|x| x.profiles_why = Some(other.into()));
        }
        if let Some(ss) = &e.standings {
            with(&|x| x.standings.iter_mut().for_each(|v| v.push(v.first().cloned().unwrap_or(sample()))));
            for i in 0..ss.len() {
                with(&|x| edit(&mut x.standings, i, |s: &mut StandingCase| s.attempts += 1));
                with(&|x| edit(&mut x.standings, i, |s: &mut StandingCase| s.entered_at += 1));
                with(&|x| edit(&mut x.standings, i, |s: &mut StandingCase| s.state ^= 1));
                with(&|x| edit(&mut x.standings, i, |s: &mut StandingCase| s.device ^= 1));
                with(&|x| {
                    edit(&mut x.standings, i, |s: &mut StandingCase| {
                        s.kind = if s.kind == SubjectKind::Nano { SubjectKind::Dust } else { SubjectKind::Nano }
                    })
                });
            }
        }
        for i in 0..e.bytes.as_ref().map_or(0, Vec::len) {
            with(&|x| {
                edit(&mut x.bytes, i, |(_, h): &mut (u32, String)| {
                    let last = if h.ends_with('0') { '1' } else { '0' };
                    h.pop();
                    h.push(last);
                })
            });
        }
        for i in 0..e.subjects.as_ref().map_or(0, Vec::len) {
            with(&|x| edit(&mut x.subjects, i, |s: &mut SubjectCase| s.attempts += 1));
            with(&|x| edit(&mut x.subjects, i, |s: &mut SubjectCase| s.weight ^= 1));
            with(&|x| edit(&mut x.subjects, i, |s: &mut SubjectCase| s.isolated = !s.isolated));
            with(&|x| edit(&mut x.subjects, i, |s: &mut SubjectCase| s.state = SubjectState::Neonatal));
        }
        for i in 0..e.ticks.as_ref().map_or(0, Vec::len) {
            with(&|x| edit(&mut x.ticks, i, |t: &mut TickCase| t.attempts_launched.push(9)));
            with(&|x| {
                edit(&mut x.ticks, i, |t: &mut TickCase| {
                    t.state = match t.state {
                        None => Some(SubjectState::Quarantine),
                        Some(_) => None,
                    }
                })
            });
        }
        out
    }

    fn sample() -> StandingCase {
        StandingCase { device: 9, state: 6, kind: SubjectKind::Nano, attempts: 0, entered_at: T0 }
    }

    fn edit<T>(v: &mut Option<Vec<T>>, i: usize, f: impl Fn(&mut T)) {
        if let Some(x) = v.as_mut().and_then(|v| v.get_mut(i)) {
            f(x);
        }
    }

    /// Every standings case passes as written and fails under each wrong
    /// expectation (the monitor is a small node; the default test stack
    /// holds it boxed).
    #[test]
    fn every_standings_case_fails_on_a_wrong_expectation() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/vectors/persist.ron");
        let file = crate::vectors::load(&path).expect("persist.ron loads");
        let mut cases = 0;
        for case in &file.cases {
            let crate::vectors::Check::Persist(Case::Script(c)) = &case.check else { continue };
            let e = &c.expect;
            if e.standings.is_none() && e.subjects.is_none() && e.ticks.is_none() {
                continue;
            }
            cases += 1;
            assert!(script(c).passed(), "{} must pass as written", case.name);
            let ms = mutations(c);
            assert!(ms.len() >= 3, "{}: only {} mutations", case.name, ms.len());
            for (i, m) in ms.iter().enumerate() {
                let o = script(m);
                assert!(!o.passed(), "{}: mutation {i} was not caught: {:?}", case.name, o.computed);
            }
        }
        assert!(cases >= 8, "{cases} standings cases");
    }
}
