//! `krill run --record`: one node's calls recorded as a `krill-replay` log
//! (what the QEMU image replays) replay on the host to exactly the actions
//! the node emitted in the run, recording does not change the run, and what
//! cannot be recorded is refused with a reason.

mod common;

use common::on_big_stack;
use krill_replay::{Entry, Header, LogReader, LogWriter};
use krill_sim::firmware::{verify_recording, RecordedLog};
use krill_sim::output::AuditLevel;
use krill_sim::scenario::Scenario;
use krill_sim::sim::{FirmwareKind, SimError, Simulation};
use krill_sim::summary::{simulate, simulate_recording};

/// Nine Nanos around a spiking centre node 4, and a gateway (node 9) the
/// Nanos sync their clocks with: frames, readings, timers with NK draws,
/// field queries, key registrations and time syncs all reach node 1.
fn scenario(faults: &str) -> Scenario {
    scenario_with(faults, false)
}

fn scenario_with(faults: &str, manifest: bool) -> Scenario {
    let text = format!(
        r#"(
            name: "recording-test",
            deployment_manifest: {manifest},
            duration_s: 600,
            start: Warm(warmup_s: 300),
            area: (width_m: 20, height_m: 20),
            nodes: [
                (class: Nano, quantity: Temperature, layout: Grid(rows: 3, cols: 3, spacing_m: 4, origin: (4, 4))),
                (class: Gateway, quantity: Temperature, layout: Explicit([(10, 16)])),
            ],
            world: (fields: [(quantity: Temperature, base: 21.5, noise_sd: 0.05, bias_sd: 0.05)]),
            clocks: (sync: true, sync_interval_s: 300),
            attacks: [(node: 4, start_s: 60, kind: Spike(offset: 8.0))],
            faults: [{faults}],
        )"#
    );
    Scenario::parse(&text, "recording-test.ron").expect("test scenario parses")
}

fn record(s: Scenario, node: u32) -> (String, RecordedLog) {
    on_big_stack(move || {
        let mut run =
            simulate_recording(&s, 1, FirmwareKind::Core, 1, Some(node), AuditLevel::Full, |_, _| {}).expect("runs");
        let (recorded, log) = run.sim.finish_recording().expect("a node was recorded");
        assert_eq!(recorded, node);
        (run.hash, log.expect("the log was written"))
    })
}

/// `log` rewritten with its header changed by `header` and every entry
/// before `End` mapped by `entry`, ending with the recorder's `End`.
fn rewritten(
    log: &RecordedLog,
    header: impl FnOnce(&mut Header),
    mut entry: impl FnMut(Entry<'_>) -> Entry<'_>,
) -> RecordedLog {
    let mut reader = LogReader::open(&log.bytes).unwrap();
    let mut h = reader.header().clone();
    header(&mut h);
    let mut w = LogWriter::new(&h).unwrap();
    let mut end = None;
    for e in &mut reader {
        match e.unwrap() {
            Entry::End { actions, digest } => end = Some((actions, digest)),
            e => w.push(&entry(e)).unwrap(),
        }
    }
    let (actions, digest) = end.unwrap();
    RecordedLog { bytes: w.finish(actions, digest).unwrap(), ..log.clone() }
}

#[test]
fn a_recorded_node_replays_to_its_own_actions_and_recording_changes_nothing() {
    let (hash, log) = record(scenario(""), 1);
    let plain = on_big_stack(|| simulate(&scenario(""), 1, FirmwareKind::Core, 1, |_, _| {}).expect("runs").hash);
    assert_eq!(hash, plain, "recording must not change the run");
    assert_eq!(log.cut_short, None);

    let report = verify_recording(&log).expect("the host replays the run's actions");
    assert_eq!(report.actions, log.actions);
    let e = report.entries;
    assert!(e.frames > 100 && e.readings > 10 && e.timers > 10, "{e:?}");
    assert!(e.draws > 0, "NK audits and time syncs draw words: {e:?}");
    assert_eq!(e.frames + e.readings + e.timers + e.other, log.entries);

    let reader = LogReader::open(&log.bytes).unwrap();
    let kinds: Vec<&'static str> = reader
        .map(|e| match e.unwrap() {
            Entry::TimeSync { .. } => "time-sync",
            Entry::Query { .. } => "query",
            Entry::RegisterPeer { .. } => "register-peer",
            _ => "",
        })
        .collect();
    for k in ["time-sync", "query", "register-peer"] {
        assert!(kinds.contains(&k), "no {k} entry");
    }
}

/// A node given the ES-11.3 manifest takes its distances from it, so a
/// log without the manifest would replay to other votes: the header carries
/// every entry and the replay matches.
#[test]
fn a_node_with_a_deployment_manifest_records_and_replays() {
    let (_, log) = record(scenario_with("", true), 1);
    let header = LogReader::open(&log.bytes).unwrap().header().clone();
    assert_eq!(header.config.manifest.len(), 10, "itself and the nine nodes it hears");
    let cfg = header.config.config().unwrap();
    assert_eq!(cfg.manifest.len(), 10);
    verify_recording(&log).expect("the host replays the run's actions with the manifest");

    let without = rewritten(&log, |h| h.config.manifest.clear(), |e| e);
    assert!(verify_recording(&without).is_err(), "without its manifest the node must vote differently");
}

#[test]
fn a_changed_log_no_longer_matches_the_recording() {
    let (_, log) = record(scenario(""), 1);
    let mut changed = false;
    let altered = rewritten(
        &log,
        |_| {},
        |e| match e {
            Entry::Reading { now, quantity, value } if !changed => {
                changed = true;
                Entry::Reading { now, quantity, value: value + 300 }
            }
            e => e,
        },
    );
    assert!(verify_recording(&altered).is_err(), "a +3 °C reading must change what the node did");
}

#[test]
fn a_reboot_ends_the_recording_at_the_boot_it_covers() {
    let (_, log) = record(scenario("(at_s: 120, kind: Crash(node: 1, down_s: 30))"), 1);
    let why = log.cut_short.clone().expect("the crash cut the log short");
    assert!(why.contains("rebooted"), "{why}");
    verify_recording(&log).expect("the part before the reboot replays");
}

#[test]
fn what_cannot_be_recorded_is_refused_with_a_reason() {
    let err = |node: u32, fw: FirmwareKind| -> String {
        on_big_stack(move || match Simulation::recording(&scenario(""), 1, fw, 1, Some(node)) {
            Ok(_) => String::new(),
            Err(SimError::Setup(why)) => why,
            Err(e) => format!("unexpected {e}"),
        })
    };
    assert!(err(4, FirmwareKind::Core).contains("attacker"));
    assert!(err(10, FirmwareKind::Core).contains("10 nodes"));
    assert!(err(1, FirmwareKind::Baseline).contains("baseline"));
}
