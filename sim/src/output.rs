//! The run directory: everything needed to replay a run and verify it
//! (`manifest.json`, a copy of the scenario), what it showed
//! (`summary.json`, CSV time series, `report.html`), every immune decision
//! (`audit.jsonl`; lifecycle ticks that decided nothing are left out) and
//! Prometheus text metrics (`metrics.prom`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use krill_core::lifecycle::{AnyState, Reason};
use krill_core::node::action::PeerEvent;
use krill_core::node::AuditEvent;
use krill_core::types::{DeviceId, QuantityType};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::check::ExpectationResult;
use crate::scenario::NodeClass;
use crate::sim::{FirmwareKind, Simulation};
use crate::summary::{own_name, subject_name, Finished, RunSummary, SummaryFile, OWN_STATES};

/// Version of the run-directory layout.
pub const FORMAT: u32 = 1;

/// Transmit power drawn while the radio is on air, W: nRF52840 at 0 dBm
/// (4.8 mA at 3 V) and an SX1262 at 14 dBm (45 mA at 3.3 V). Receive and
/// sleep currents are not modelled, so energy is a transmit-only figure.
const BLE_TX_W: f64 = 0.0144;
const LORA_TX_W: f64 = 0.1485;
/// ESP-NOW's transmit power draw, W: an ESP32-C3 sending 802.11b at 1 Mb/s
/// and 20 dBm (about 335 mA at 3.3 V, datasheet).
const WIFI_TX_W: f64 = 1.1;

/// Why a run directory could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A JSON file did not parse.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// Prometheus text could not be encoded.
    #[error("metrics.prom: encoding failed")]
    Metrics,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.display().to_string(), source }
}

/// `manifest.json`: enough to re-run the run and verify it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// Scenario name.
    pub scenario: String,
    /// The scenario file as given on the command line.
    pub scenario_file: String,
    /// BLAKE2s-256 of the scenario file's bytes; the copy in the run
    /// directory (`scenario.ron`) must hash to it.
    pub scenario_hash: String,
    /// Seed.
    pub seed: u64,
    /// Firmware.
    pub firmware: FirmwareKind,
    /// Engine threads (results do not depend on it).
    pub threads: usize,
    /// Crate version, with `git describe` when the build knew it.
    pub code_version: String,
    /// [`RunSummary::hash`] of the run.
    pub summary_hash: String,
}

/// Crate version plus `git describe` if `KRILL_GIT_DESCRIBE` was set at build time.
pub fn code_version() -> String {
    match option_env!("KRILL_GIT_DESCRIBE") {
        Some(g) if !g.is_empty() => format!("{} ({g})", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// BLAKE2s-256 of `bytes`, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(krill_core::crypto::blake2s256(bytes))
}

/// Reads a JSON file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, OutputError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|source| OutputError::Json { path: path.display().to_string(), source })
}

/// One line of `audit.jsonl`: an immune or dispatch decision with the
/// figures behind it. Node references are indices; ids that are not
/// simulated nodes (Sybil identities, Dust short ids) stay as hex.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Scenario time, s (negative during warm-up).
    pub t_s: f64,
    /// The deciding node.
    pub node: u32,
    /// Event kind (`trace`, `lifecycle`, `dropped`, `peer`, …).
    pub kind: String,
    /// Sub-kind or reason name (`deviation_band`, `vote_decided`, `consistency_alert`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub what: Option<String>,
    /// The node the decision is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<u32>,
    /// The subject's device id when it is not a simulated node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
    /// Another node involved (sender, alerter, rejecter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<u32>,
    /// State before (lifecycle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// State after (lifecycle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Deviation, σ (the σ fed to the record for traces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    /// Profile deviation alone, σ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_sigma: Option<f64>,
    /// The subject's reading, physical units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading: Option<f64>,
    /// The deciding node's own reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub my_reading: Option<f64>,
    /// What correlated neighbours predicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<f64>,
    /// Unit of the readings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Physical consistency verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    /// Largest difference physics allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_diff: Option<f64>,
    /// The difference seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_diff: Option<f64>,
    /// Distance used, m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    /// False when the distance is the 30 m fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_known: Option<bool>,
    /// Weight the sender claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_weight: Option<u8>,
    /// Weight the field used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_weight: Option<u8>,
    /// Vote tally: responders that saw the same change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sees_change: Option<u8>,
    /// Vote tally: responders that contradicted the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contradicts: Option<u8>,
    /// Vote tally: abstentions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abstains: Option<u8>,
    /// Vote tally: responders asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked: Option<u8>,
    /// Vote outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// True when a vote was decided by its timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_timeout: Option<bool>,
    /// Time spent (timeouts, silence), s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_s: Option<f64>,
    /// The limit it exceeded, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_s: Option<f64>,
    /// A count (alerters, distinct rejecters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The count needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed: Option<u32>,
    /// A vote answer: the suspect's shift from its slow average, physical units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<f64>,
    /// A vote answer: the responder's own shift from its slow average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_shift: Option<f64>,
    /// A vote answer: devices the responder hears that moved the suspect's way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corroborating: Option<u8>,
    /// A vote answer: devices that read at least as far out as the suspect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bracketing: Option<u8>,
    /// A vote answer: the responder counts itself far from the suspect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub far: Option<bool>,
    /// A vote answer: the devices around, placed by the manifest, form a
    /// field (a slope or a peak) that explains the suspect's shift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_explains: Option<bool>,
    /// The whole event, Rust debug text.
    pub event: String,
}

/// Snake-case name of an enum variant from its debug text.
fn variant(debug: &str) -> String {
    let head: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
    crate::summary::snake(&head)
}

fn state_name(s: AnyState) -> String {
    match s {
        AnyState::Subject(x) => subject_name(x).into(),
        AnyState::Own(x) => own_name(x).into(),
    }
}

fn value(q: QuantityType, steps: f64) -> f64 {
    steps * f64::from(q.scale().unit_per_step)
}

/// Builds audit records with node indices for ids.
pub struct AuditWriter {
    ids: BTreeMap<DeviceId, u32>,
}

impl AuditWriter {
    /// For the nodes of `sim`.
    pub fn new(sim: &Simulation) -> Self {
        AuditWriter { ids: crate::summary::index_of_ids(sim) }
    }

    fn subject(&self, r: &mut AuditRecord, id: DeviceId) {
        match self.ids.get(&id) {
            Some(&i) => r.subject = Some(i),
            None => r.subject_id = Some(id.to_string()),
        }
    }

    /// The record of `e`, taken by `node` at scenario time `t_s`.
    pub fn record(&self, t_s: f64, node: u32, e: &AuditEvent) -> AuditRecord {
        let mut r =
            AuditRecord { t_s, node, kind: variant(&format!("{e:?}")), event: format!("{e:?}"), ..Default::default() };
        match e {
            AuditEvent::Dropped { sender, msg_type, reason } => {
                r.what = Some(crate::sim::drop_name(reason).to_string());
                r.peer = self.ids.get(sender).copied();
                r.count = Some(u32::from(*msg_type));
            }
            AuditEvent::Trace(a) => {
                self.subject(&mut r, a.subject);
                let q = a.quantity;
                r.unit = Some(q.scale().unit.to_string());
                r.reading = Some(f64::from(q.to_value(a.reading)));
                r.my_reading = a.my_reading.map(|m| f64::from(q.to_value(m)));
                r.sigma = Some(f64::from(a.fed_sigma));
                r.claimed_weight = Some(a.claimed_weight);
                r.used_weight = Some(a.used_weight);
                if let Some(d) = a.deviation {
                    r.profile_sigma = Some(f64::from(d.total));
                    r.expected = d.expected.map(f64::from);
                }
                if let Some(c) = a.consistency {
                    r.consistency = Some(variant(&format!("{:?}", c.result)));
                    r.allowed_diff = (c.max_diff != i32::MAX).then(|| value(q, f64::from(c.max_diff)));
                    r.actual_diff = Some(value(q, f64::from(c.actual_diff)));
                }
                r.distance_m = Some(f64::from(a.distance.cm) / 100.0);
                r.distance_known = Some(a.distance.is_known());
            }
            AuditEvent::Lifecycle(a) => {
                self.subject(&mut r, a.subject);
                r.from = Some(state_name(a.from));
                r.to = Some(state_name(a.to));
                r.what = Some(variant(&format!("{:?}", a.reason)));
                match a.reason {
                    Reason::DeviationBand { sigma }
                    | Reason::DeviationRecorded { sigma }
                    | Reason::DeferredRejectionAdmitted { sigma } => r.sigma = Some(f64::from(sigma)),
                    Reason::ReplyCounted(t) => {
                        (r.sees_change, r.contradicts, r.abstains, r.asked) =
                            (Some(t.sees_change), Some(t.contradicts), Some(t.abstains), Some(t.expected));
                    }
                    Reason::VoteDecided { outcome, tally: t, at_timeout, latest_sigma } => {
                        (r.sees_change, r.contradicts, r.abstains, r.asked) =
                            (Some(t.sees_change), Some(t.contradicts), Some(t.abstains), Some(t.expected));
                        r.outcome = Some(variant(&format!("{outcome:?}")));
                        r.at_timeout = Some(at_timeout);
                        r.sigma = Some(f64::from(latest_sigma));
                    }
                    Reason::Timeout { elapsed_ms, limit_ms } => {
                        r.elapsed_s = Some(elapsed_ms as f64 / 1e3);
                        r.limit_s = Some(limit_ms as f64 / 1e3);
                    }
                    Reason::HeartbeatTimeout { silent_ms } => r.elapsed_s = Some(silent_ms as f64 / 1e3),
                    Reason::RejectionDeferred(c) => {
                        r.count = Some(u32::from(c.used));
                        r.needed = Some(u32::from(c.cap));
                    }
                    _ => {}
                }
            }
            AuditEvent::NkAudit { subject, result, .. } => {
                self.subject(&mut r, *subject);
                r.what = Some(variant(&format!("{result:?}")));
            }
            AuditEvent::RelativeDrift { subject, quantity, drift_steps, sigma } => {
                self.subject(&mut r, *subject);
                r.unit = Some(quantity.scale().unit.to_string());
                r.actual_diff = Some(value(*quantity, f64::from(*drift_steps)));
                r.sigma = Some(f64::from(*sigma));
            }
            AuditEvent::Answered {
                querier,
                suspect,
                quantity: q,
                suspect_reading,
                my_reading,
                distance_cm,
                history,
                verdict,
            } => {
                self.subject(&mut r, *suspect);
                r.peer = self.ids.get(querier).copied();
                r.what = Some(variant(&format!("{verdict:?}")));
                r.unit = Some(q.scale().unit.to_string());
                let theirs = f64::from(q.to_value(*suspect_reading));
                let mine = my_reading.map(|m| f64::from(q.to_value(m)));
                r.reading = Some(theirs);
                r.my_reading = mine;
                r.distance_m = Some(f64::from(*distance_cm) / 100.0);
                if let Some(h) = history {
                    r.shift = Some(theirs - f64::from(h.suspect_mean));
                    r.own_shift = mine.map(|m| m - f64::from(h.own_mean));
                    r.corroborating = Some(h.corroborating);
                    r.bracketing = Some(h.bracketing);
                    r.far = Some(h.far);
                    r.field_explains = Some(h.field_explains);
                }
            }
            AuditEvent::RejectedBy { by } => r.peer = self.ids.get(by).copied(),
            AuditEvent::ProfileMerged { subject, from } => {
                self.subject(&mut r, *subject);
                r.peer = self.ids.get(from).copied();
            }
            AuditEvent::Died { device } => self.subject(&mut r, *device),
            AuditEvent::Vaccine { origin, outcome } => {
                r.peer = self.ids.get(origin).copied();
                r.what = Some(variant(&format!("{outcome:?}")));
            }
            AuditEvent::VaccineOriginated { subject, attack_type, .. } => {
                self.subject(&mut r, *subject);
                r.what = Some(variant(&format!("{attack_type:?}")));
            }
            AuditEvent::Peer(p) => {
                r.what = Some(variant(&format!("{p:?}")));
                self.peer(&mut r, p);
            }
            _ => {}
        }
        r
    }

    fn peer(&self, r: &mut AuditRecord, p: &PeerEvent) {
        let who = |id: &DeviceId| self.ids.get(id).copied();
        match p {
            PeerEvent::ConsistencyAlert { from, suspect, alerters, severity, .. } => {
                r.peer = who(from);
                self.subject(r, *suspect);
                r.count = Some(u32::from(*alerters));
                r.needed = Some(u32::from(*severity));
            }
            PeerEvent::Retracted { issuer, .. } => r.peer = who(issuer),
            PeerEvent::NkAnswered { to, subject, drift_sigma, .. } => {
                r.peer = who(to);
                self.subject(r, *subject);
                r.sigma = Some(f64::from(*drift_sigma));
            }
            PeerEvent::NkRefused { from, subject, .. } => {
                r.peer = who(from);
                self.subject(r, *subject);
            }
            PeerEvent::NkReport { from, subject, drift_tenths, .. } => {
                r.peer = who(from);
                self.subject(r, *subject);
                r.sigma = Some(f64::from(*drift_tenths) / 10.0);
            }
            PeerEvent::RejectionTally { by, distinct, needed, .. } => {
                r.peer = who(by);
                r.count = Some(u32::from(*distinct));
                r.needed = Some(u32::from(*needed));
            }
            PeerEvent::DeathRefused { device, .. } => self.subject(r, *device),
        }
    }
}

fn class_name(c: NodeClass) -> &'static str {
    match c {
        NodeClass::Nano => "Nano",
        NodeClass::Dust => "Dust",
        NodeClass::Gateway => "Gateway",
        NodeClass::Full => "Full",
    }
}

/// How much of the audit trail `audit.jsonl` gets: a city-sized day is
/// gigabytes of trace assessments, which `decisions` leaves out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditLevel {
    /// Every kept audit event.
    #[default]
    Full,
    /// Lifecycle moves, votes and peer statements; no trace assessments or drops.
    Decisions,
    /// No `audit.jsonl`.
    None,
}

impl AuditLevel {
    /// Whether an event at this level is kept (in memory during a run, and
    /// in `audit.jsonl`).
    pub fn keeps(self, e: &AuditEvent) -> bool {
        match self {
            AuditLevel::Full => true,
            AuditLevel::Decisions => !matches!(e, AuditEvent::Trace(_) | AuditEvent::Dropped { .. }),
            AuditLevel::None => false,
        }
    }
}

/// Which audit events a run keeps: a level, at every node or only at some.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditScope {
    /// What is kept.
    pub level: AuditLevel,
    /// The nodes that keep it; `None` = all.
    pub nodes: Option<Vec<u32>>,
}

impl From<AuditLevel> for AuditScope {
    fn from(level: AuditLevel) -> Self {
        AuditScope { level, nodes: None }
    }
}

/// Everything `write_run_dir` writes from.
pub struct RunOutput<'a> {
    /// The scenario file's text.
    pub scenario_text: &'a str,
    /// The manifest.
    pub manifest: &'a Manifest,
    /// The run.
    pub run: &'a Finished,
    /// Its expectations' verdicts.
    pub expectations: &'a [ExpectationResult],
    /// What goes into `audit.jsonl`.
    pub audit: AuditLevel,
}

struct Writer<'a> {
    dir: &'a Path,
}

impl Writer<'_> {
    fn write(&self, name: &str, contents: &[u8]) -> Result<PathBuf, OutputError> {
        let p = self.dir.join(name);
        std::fs::write(&p, contents).map_err(io(&p))?;
        Ok(p)
    }

    fn json<T: Serialize>(&self, name: &str, v: &T) -> Result<PathBuf, OutputError> {
        let p = self.dir.join(name);
        let mut text = serde_json::to_string_pretty(v)
            .map_err(|source| OutputError::Json { path: p.display().to_string(), source })?;
        text.push('\n');
        self.write(name, text.as_bytes())
    }
}

/// Writes the run directory `dir` (created if needed).
pub fn write_run_dir(dir: &Path, out: &RunOutput<'_>) -> Result<(), OutputError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let w = Writer { dir };
    let run = out.run;
    let sim = &run.sim;
    w.json("manifest.json", out.manifest)?;
    w.write("scenario.ron", out.scenario_text.as_bytes())?;
    let file = SummaryFile {
        summary_hash: run.hash.clone(),
        summary: run.summary.clone(),
        timing: run.timing.clone(),
        expectations: out.expectations.to_vec(),
    };
    w.json("summary.json", &file)?;
    w.write("nodes.csv", nodes_csv(sim).as_bytes())?;
    w.write("consensus_error.csv", consensus_csv(run).as_bytes())?;
    w.write("node_states.csv", states_csv(run).as_bytes())?;
    w.write("messages.csv", messages_csv(sim).as_bytes())?;
    w.write("energy.csv", energy_csv(sim).as_bytes())?;
    if out.audit != AuditLevel::None {
        write_audit(dir, sim, out.audit)?;
    }
    w.write("metrics.prom", metrics(run)?.as_bytes())?;
    w.write("report.html", report_html(out).as_bytes())?;
    Ok(())
}

fn nodes_csv(sim: &Simulation) -> String {
    let zones = sim.model().world().zones();
    let mut o = String::from("node,id,class,quantity,x_m,y_m,zone,attacker\n");
    for i in sim.model().info() {
        let zone = i.zone.and_then(|z| zones.get(z)).map_or("", |z| z.name.as_str());
        let _ = writeln!(
            o,
            "{},{},{},{:?},{:.2},{:.2},{},{}",
            i.index,
            i.id,
            class_name(i.class),
            i.quantity,
            i.pos.0,
            i.pos.1,
            csv_field(zone),
            i.attacker
        );
    }
    o
}

/// Zone names come from the scenario: keep commas and quotes out of the CSV.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn consensus_csv(run: &Finished) -> String {
    let s = &run.series;
    let mut o = String::from("t_s");
    for z in &s.zones {
        let _ = write!(o, ",{}", csv_field(z));
    }
    o.push('\n');
    for (t, row) in s.times_s.iter().zip(&s.error) {
        let _ = write!(o, "{t}");
        for v in row {
            if v.is_finite() {
                let _ = write!(o, ",{v:.4}");
            } else {
                o.push(',');
            }
        }
        o.push('\n');
    }
    o
}

fn states_csv(run: &Finished) -> String {
    let s = &run.series;
    let mut o = String::from("t_s");
    for st in OWN_STATES {
        let _ = write!(o, ",{}", own_name(st));
    }
    o.push('\n');
    for (t, row) in s.times_s.iter().zip(&s.states) {
        let _ = write!(o, "{t}");
        for v in row {
            let _ = write!(o, ",{v}");
        }
        o.push('\n');
    }
    o
}

fn messages_csv(sim: &Simulation) -> String {
    let mut types = std::collections::BTreeSet::new();
    let mut reasons = std::collections::BTreeSet::new();
    for n in sim.nodes() {
        types.extend(n.log().sent.keys().copied());
        reasons.extend(n.log().drops.keys().cloned());
    }
    let mut o = String::from("node,class,attacker");
    for t in &types {
        let _ = write!(o, ",sent_{}", crate::summary::message_name(*t));
    }
    o.push_str(
        ",received,honest_received,honest_dropped,duty_cycle_blocked,ble_collisions,ble_deaf,lora_collisions,reboots",
    );
    for r in &reasons {
        let _ = write!(o, ",drop_{r}");
    }
    o.push('\n');
    for (i, n) in sim.nodes().iter().enumerate() {
        let l = n.log();
        let inf = &sim.model().info()[i];
        let _ = write!(o, "{i},{},{}", class_name(inf.class), inf.attacker);
        for t in &types {
            let _ = write!(o, ",{}", l.sent.get(t).copied().unwrap_or(0));
        }
        let _ = write!(
            o,
            ",{},{},{},{},{},{},{},{}",
            l.received,
            l.honest_received,
            l.honest_dropped,
            l.duty_cycle_blocked,
            l.ble_collisions,
            l.ble_deaf,
            l.lora_collisions,
            l.reboots.len()
        );
        for r in &reasons {
            let _ = write!(o, ",{}", l.drops.get(r).copied().unwrap_or(0));
        }
        o.push('\n');
    }
    o
}

/// Airtime per class: (nodes, mesh µs, LoRa µs), classes in a fixed order.
fn airtime(sim: &Simulation) -> Vec<(&'static str, u64, u64, u64)> {
    let mut v: Vec<(&'static str, u64, u64, u64)> = Vec::new();
    for (i, n) in sim.nodes().iter().enumerate() {
        let c = class_name(sim.model().info()[i].class);
        let l = n.log();
        match v.iter_mut().find(|e| e.0 == c) {
            Some(e) => {
                e.1 += 1;
                e.2 += l.ble_airtime_us;
                e.3 += l.lora_airtime_us;
            }
            None => v.push((c, 1, l.ble_airtime_us, l.lora_airtime_us)),
        }
    }
    v.sort_by_key(|e| e.0);
    v
}

/// Transmit energy per class. Under `radio.bearer: EspNow` the mesh column
/// is WiFi airtime at the WiFi power draw.
fn energy_csv(sim: &Simulation) -> String {
    let (mesh, mesh_w) = match sim.model().radio().config().bearer {
        crate::scenario::Bearer::Ble => ("ble", BLE_TX_W),
        crate::scenario::Bearer::EspNow => ("wifi", WIFI_TX_W),
    };
    let mut o = format!("class,nodes,{mesh}_airtime_s,lora_airtime_s,tx_energy_j,tx_energy_per_node_j\n");
    for (c, n, ble, lora) in airtime(sim) {
        let e = ble as f64 / 1e6 * mesh_w + lora as f64 / 1e6 * LORA_TX_W;
        let _ = writeln!(o, "{c},{n},{:.6},{:.6},{e:.6},{:.6}", ble as f64 / 1e6, lora as f64 / 1e6, e / n as f64);
    }
    o
}

/// Lifecycle steps that decided nothing (neonatal progress ticks every
/// second, idle ticks): they would be most of the file and explain nothing.
fn bookkeeping(e: &AuditEvent) -> bool {
    matches!(
        e,
        AuditEvent::Lifecycle(a)
            if a.from == a.to && matches!(a.reason, Reason::NeonatalProgress { .. } | Reason::Idle | Reason::NotApplicable)
    )
}

fn write_audit(dir: &Path, sim: &Simulation, level: AuditLevel) -> Result<(), OutputError> {
    use std::io::Write as _;
    let p = dir.join("audit.jsonl");
    let f = std::fs::File::create(&p).map_err(io(&p))?;
    let mut f = std::io::BufWriter::new(f);
    let aw = AuditWriter::new(sim);
    let model = sim.model();
    // Time order across nodes; node index breaks ties (each log is in time order).
    let mut all: Vec<(u64, u32, usize)> = Vec::new();
    for (i, n) in sim.nodes().iter().enumerate() {
        all.extend(n.log().audits.iter().enumerate().map(|(k, (t, _))| (*t, i as u32, k)));
    }
    all.sort_unstable();
    for (t, i, k) in all {
        let e = &sim.nodes()[i as usize].log().audits[k].1;
        if bookkeeping(e) || !level.keeps(e) {
            continue;
        }
        let rec = aw.record(model.scenario_s(t), i, e);
        let line = serde_json::to_string(&rec)
            .map_err(|source| OutputError::Json { path: p.display().to_string(), source })?;
        writeln!(f, "{line}").map_err(io(&p))?;
    }
    f.flush().map_err(io(&p))
}

/// Metric families in a fixed order (prometheus-client's `Family` keeps a
/// `HashMap`, whose order would change the file from run to run).
#[derive(Debug)]
struct RunMetrics {
    families: Vec<MetricFamily>,
}

#[derive(Debug)]
struct MetricFamily {
    name: &'static str,
    help: &'static str,
    counter: bool,
    samples: Vec<(Vec<(String, String)>, f64)>,
}

impl Collector for RunMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let ty = if f.counter { MetricType::Counter } else { MetricType::Gauge };
            let mut me = enc.encode_descriptor(f.name, f.help, None, ty)?;
            for (labels, v) in &f.samples {
                let fe = me.encode_family(labels)?;
                if f.counter && v.fract() == 0.0 && *v >= 0.0 && *v < 9e15 {
                    ConstCounter::new(*v as u64).encode(fe)?;
                } else if f.counter {
                    ConstCounter::new(*v).encode(fe)?;
                } else {
                    ConstGauge::new(*v).encode(fe)?;
                }
            }
        }
        Ok(())
    }
}

fn l1(k: &str, v: impl ToString) -> Vec<(String, String)> {
    vec![(k.to_string(), v.to_string())]
}

fn metrics(run: &Finished) -> Result<String, OutputError> {
    let s: &RunSummary = &run.summary;
    let fam = |name, help, counter, samples| MetricFamily { name, help, counter, samples };
    let mut consensus = Vec::new();
    for z in &s.consensus {
        for (stat, v) in [("mean", z.mean), ("p95", z.p95), ("max", z.max)] {
            if v.is_finite() {
                consensus.push((vec![("zone".into(), z.zone.clone()), ("stat".into(), stat.into())], v));
            }
        }
    }
    let mut air = Vec::new();
    for (c, _, ble, lora) in airtime(&run.sim) {
        air.push((vec![("class".into(), c.into()), ("radio".into(), "ble".into())], ble as f64 / 1e6));
        air.push((vec![("class".into(), c.into()), ("radio".into(), "lora".into())], lora as f64 / 1e6));
    }
    let families = vec![
        fam(
            "krill_messages_sent",
            "Frames sent, by message type",
            true,
            s.sent.iter().map(|(k, v)| (l1("type", k), *v as f64)).collect(),
        ),
        fam(
            "krill_frames_dropped",
            "Frames dropped by the receiving firmware, by reason",
            true,
            s.drops.iter().map(|(k, v)| (l1("reason", k), *v as f64)).collect(),
        ),
        fam(
            "krill_honest_frames_received",
            "Honest frames delivered to honest nodes",
            true,
            vec![(vec![], s.honest_received as f64)],
        ),
        fam(
            "krill_honest_frames_dropped",
            "Honest frames dropped by honest nodes",
            true,
            vec![(vec![], s.honest_dropped as f64)],
        ),
        fam(
            "krill_duty_cycle_blocked",
            "LoRa uplinks refused by the duty cycle",
            true,
            vec![(vec![], s.duty_cycle_blocked as f64)],
        ),
        fam(
            "krill_radio_collisions",
            "Receptions lost to overlapping frames, by radio and cause",
            true,
            vec![
                (
                    vec![("radio".into(), "ble".into()), ("cause".into(), "overlap".into())],
                    s.collisions.ble_overlap as f64,
                ),
                (
                    vec![("radio".into(), "ble".into()), ("cause".into(), "transmitting".into())],
                    s.collisions.ble_deaf as f64,
                ),
                (
                    vec![("radio".into(), "lora".into()), ("cause".into(), "overlap".into())],
                    s.collisions.lora_overlap as f64,
                ),
            ],
        ),
        fam("krill_airtime_seconds", "Transmit airtime, by class and radio", true, air),
        fam("krill_events", "Events handled by the engine", true, vec![(vec![], s.events as f64)]),
        fam(
            "krill_attacker_flagged_by",
            "Honest monitors that moved the attacker out of NORMAL after its start",
            false,
            s.attackers.iter().map(|a| (l1("attacker", a.node), a.flagged_by.len() as f64)).collect(),
        ),
        fam(
            "krill_attacker_rejected_by",
            "Honest monitors holding the attacker in REJECTION or QUARANTINE at the end",
            false,
            s.attackers.iter().map(|a| (l1("attacker", a.node), a.rejected_at_end.len() as f64)).collect(),
        ),
        fam(
            "krill_honest_nodes_rejected",
            "Honest nodes ever rejected by an honest monitor",
            false,
            vec![(vec![], s.honest_rejected.len() as f64)],
        ),
        fam("krill_consensus_error", "Consensus error |consensus - truth| after warm-up", false, consensus),
        fam("krill_run_wall_seconds", "Wall time of the run", false, vec![(vec![], run.timing.wall_s)]),
    ];
    let labels = [
        ("scenario".into(), s.scenario.clone().into()),
        ("seed".into(), s.seed.to_string().into()),
        ("firmware".into(), format!("{:?}", s.firmware).to_lowercase().into()),
    ];
    let mut reg = Registry::with_labels(labels.into_iter());
    reg.register_collector(Box::new(RunMetrics { families }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).map_err(|_| OutputError::Metrics)?;
    Ok(text)
}

fn report_html(out: &RunOutput<'_>) -> String {
    use krill_reports::page::{Line, Page, Plot, Row, Table};
    let run = out.run;
    let s = &run.summary;
    let mut tables = Vec::new();
    if !out.expectations.is_empty() {
        tables.push(Table {
            title: "Expectations".into(),
            header: vec!["expectation".into(), "measured".into(), "bound".into()],
            rows: out
                .expectations
                .iter()
                .map(|e| Row {
                    cells: vec![e.expectation.clone(), e.measured.clone(), e.bound.clone()],
                    status: Some(e.pass),
                })
                .collect(),
        });
    }
    tables.push(Table {
        title: "Attackers".into(),
        header: vec![
            "node".into(),
            "attack".into(),
            "start s".into(),
            "flagged by".into(),
            "first flag".into(),
            "rejected at end".into(),
        ],
        rows: s
            .attackers
            .iter()
            .map(|a| Row {
                cells: vec![
                    a.node.to_string(),
                    a.attack.clone(),
                    a.start_s.to_string(),
                    a.flagged_by
                        .iter()
                        .map(|f| format!("{}@{:.0}s→{}", f.monitor, f.at_s, f.worst))
                        .collect::<Vec<_>>()
                        .join(", "),
                    a.kth_flag_after_start(1).map_or("-".into(), |d| format!("+{d:.0} s")),
                    a.rejected_at_end.len().to_string(),
                ],
                status: None,
            })
            .collect(),
    });
    tables.push(Table {
        title: "Consensus error after warm-up".into(),
        header: vec!["zone".into(), "mean".into(), "p95".into(), "max".into(), "samples".into(), "missing".into()],
        rows: s
            .consensus
            .iter()
            .map(|z| Row {
                cells: vec![
                    z.zone.clone(),
                    format!("{:.3}", z.mean),
                    format!("{:.3}", z.p95),
                    format!("{:.3}", z.max),
                    z.samples.to_string(),
                    z.missing.to_string(),
                ],
                status: None,
            })
            .collect(),
    });
    let kv = |title: &str, m: &BTreeMap<String, u64>| Table {
        title: title.into(),
        header: vec!["name".into(), "count".into()],
        rows: m.iter().map(|(k, v)| Row { cells: vec![k.clone(), v.to_string()], status: None }).collect(),
    };
    tables.push(kv("Messages sent", &s.sent));
    tables.push(kv("Drops by reason", &s.drops));
    let series = &run.series;
    let err_plot = Plot {
        title: "Consensus error vs truth (mean over honest nodes)".into(),
        x_label: "scenario time, s".into(),
        y_label: "|consensus − truth|".into(),
        lines: series
            .zones
            .iter()
            .enumerate()
            .map(|(k, z)| Line {
                name: z.clone(),
                points: series.times_s.iter().zip(&series.error).map(|(t, r)| (*t, r[k])).collect(),
            })
            .collect(),
    };
    let state_plot = Plot {
        title: "Own states of the nodes".into(),
        x_label: "scenario time, s".into(),
        y_label: "nodes".into(),
        lines: OWN_STATES
            .iter()
            .enumerate()
            .filter(|(k, _)| series.states.iter().any(|r| r[*k] > 0))
            .map(|(k, st)| Line {
                name: own_name(*st).into(),
                points: series.times_s.iter().zip(&series.states).map(|(t, r)| (*t, f64::from(r[k]))).collect(),
            })
            .collect(),
    };
    let m = out.manifest;
    let page = Page {
        title: format!("KRILL run: {} (seed {})", s.scenario, s.seed),
        intro: vec![
            format!(
                "{} nodes, {:?} firmware, {} s after a {} s warm-up; {} events in {:.2} s on {} thread(s).",
                s.nodes, s.firmware, s.duration_s, s.warmup_s, s.events, run.timing.wall_s, run.timing.threads
            ),
            format!("Summary hash {}; scenario hash {}; code {}.", run.hash, m.scenario_hash, m.code_version),
            format!(
                "Honest delivery {}; honest nodes ever rejected: {}.",
                s.honest_delivery.map_or("-".into(), |d| format!("{:.2} %", d * 100.0)),
                s.honest_rejected.len()
            ),
        ],
        tables,
        plots: vec![err_plot, state_plot],
    };
    krill_reports::page::page_html(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_are_snake_case_heads() {
        assert_eq!(variant("DeviationBand { sigma: 2.0 }"), "deviation_band");
        assert_eq!(variant("Trace(TraceAssessment { .. })"), "trace");
        assert_eq!(variant("Pass"), "pass");
    }

    #[test]
    fn csv_fields_with_commas_are_quoted() {
        assert_eq!(csv_field("room"), "room");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn metrics_collector_keeps_label_order() {
        let families = vec![MetricFamily {
            name: "krill_x",
            help: "x",
            counter: true,
            samples: vec![(l1("reason", "b"), 2.0), (l1("reason", "a"), 1.0)],
        }];
        let mut reg = Registry::default();
        reg.register_collector(Box::new(RunMetrics { families }));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        let b = text.find("reason=\"b\"").unwrap();
        let a = text.find("reason=\"a\"").unwrap();
        assert!(b < a, "{text}");
        assert!(text.contains("# TYPE krill_x counter") && text.contains("krill_x_total{reason=\"b\"} 2"), "{text}");
    }
}
