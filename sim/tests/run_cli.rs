//! Runs the built `krill` binary on a nine-node scenario: `run` writes the
//! run directory, the summary hash does not depend on the thread count and
//! `--replay` verifies it; `check` gates on expectations; `validate` points
//! at line and column; `explain` tells what the monitors saw; `sweep`
//! shards merge with `report`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Nine Nanos, the centre one spiking +8 °C from 60 s.
fn scenario(warmup_s: u64, duration_s: u64, expect: &str) -> String {
    format!(
        r#"(
    name: "tiny",
    duration_s: {duration_s},
    seeds: [3],
    start: Warm(warmup_s: {warmup_s}),
    area: (width_m: 20, height_m: 20),
    nodes: [(layout: Grid(rows: 3, cols: 3, spacing_m: 6, origin: (4, 4)))],
    world: (
        fields: [(quantity: Temperature, base: 21.0, noise_sd: 0.05, bias_sd: 0.05)],
        zones: [(name: "room", rect: (x0: 0, y0: 0, x1: 20, y1: 20))],
    ),
    attacks: [(node: 4, start_s: 60, kind: Spike(offset: 8.0))],
    expect: [{expect}],
    sample_interval_s: 30,
)"#
    )
}

const PASSING: &str = r#"Detected(attacker: 4, by_at_least: 3, within_s: 120),
        ConsensusError(zone: Some("room"), max: 1.0, after_s: 0)"#;

fn krill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_krill")).args(args).output().expect("krill binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory under Cargo's per-target temp dir, per test.
fn temp_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("krill-run-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write scenario");
    p.to_str().expect("utf-8 path").to_string()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("valid json")
}

/// One run (300 s warm-up, 300 s, 1 thread) shared by the tests that only read it.
fn shared_run() -> &'static PathBuf {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let d = temp_dir("shared");
        let s = write(&d, "tiny.ron", &scenario(300, 300, PASSING));
        let out = d.join("run");
        let o = krill(&["run", &s, "--threads", "1", "--out", out.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
        out
    })
}

#[test]
fn run_writes_the_run_directory_and_prints_the_summary() {
    let run = shared_run();
    for f in [
        "manifest.json",
        "scenario.ron",
        "summary.json",
        "nodes.csv",
        "consensus_error.csv",
        "node_states.csv",
        "messages.csv",
        "energy.csv",
        "audit.jsonl",
        "metrics.prom",
        "report.html",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let manifest = json(&run.join("manifest.json"));
    let summary = json(&run.join("summary.json"));
    let hash = manifest["summary_hash"].as_str().expect("hash");
    assert_eq!(hash.len(), 64);
    assert_eq!(summary["summary_hash"], manifest["summary_hash"]);
    assert_eq!((manifest["seed"].as_u64(), manifest["threads"].as_u64()), (Some(3), Some(1)));
    assert_eq!(manifest["firmware"], "Core");

    // The spiking node was flagged by honest monitors after its start.
    let attackers = summary["summary"]["attackers"].as_array().expect("attackers");
    assert_eq!(attackers.len(), 1);
    assert_eq!(attackers[0]["node"], 4);
    let flags = attackers[0]["flagged_by"].as_array().expect("flags");
    assert!(flags.len() >= 3, "{flags:?}");
    for f in flags {
        assert_ne!(f["monitor"], 4);
        assert!(f["at_s"].as_f64().expect("at_s") >= 60.0, "{f}");
    }
    assert!(summary["expectations"].as_array().expect("results").iter().all(|r| r["pass"] == true));

    let csv = std::fs::read_to_string(run.join("consensus_error.csv")).expect("csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("t_s,all,room"));
    assert_eq!(lines.count(), 11, "a sample every 30 s from 0 to 300 s");
    let states = std::fs::read_to_string(run.join("node_states.csv")).expect("csv");
    for row in states.lines().skip(1) {
        let total: u32 = row.split(',').skip(1).map(|v| v.parse::<u32>().expect("count")).sum();
        assert_eq!(total, 9, "{row}");
    }

    let audit = std::fs::read_to_string(run.join("audit.jsonl")).expect("audit");
    let mut kinds = std::collections::BTreeSet::new();
    for line in audit.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert!(v["t_s"].is_f64() && v["node"].is_u64() && v["event"].is_string(), "{line}");
        kinds.insert(v["kind"].as_str().expect("kind").to_string());
    }
    assert!(kinds.contains("trace") && kinds.contains("lifecycle"), "{kinds:?}");

    let prom = std::fs::read_to_string(run.join("metrics.prom")).expect("prom");
    assert!(prom.contains("# TYPE krill_messages_sent counter"), "{prom}");
    assert!(prom.contains("krill_attacker_flagged_by{scenario=\"tiny\",seed=\"3\",firmware=\"core\",attacker=\"4\"}"));
    assert!(prom.trim_end().ends_with("# EOF"));
    let html = std::fs::read_to_string(run.join("report.html")).expect("html");
    assert!(html.contains("<svg") && html.contains(hash));
}

#[test]
fn thread_count_does_not_change_the_hash_and_replay_verifies_it() {
    let one = shared_run();
    let d = temp_dir("threads");
    let s = write(&d, "tiny.ron", &scenario(300, 300, PASSING));
    let out = d.join("two");
    let o = krill(&["run", &s, "--threads", "2", "--out", out.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let h1 = json(&one.join("manifest.json"))["summary_hash"].clone();
    let h2 = json(&out.join("manifest.json"))["summary_hash"].clone();
    assert_eq!(h1, h2);
    assert!(stdout(&o).contains(h2.as_str().expect("hash")), "the table ends with the hash");

    // Replay the 2-thread run on 1 thread: same hash, exit 0.
    let manifest = out.join("manifest.json");
    let o = krill(&["run", "--replay", manifest.to_str().expect("utf-8"), "--threads", "1"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(stdout(&o).contains("replay: summary hash matches"), "{}", stdout(&o));

    // A manifest whose hash does not match the run: exit 1.
    let mut m = json(&manifest);
    m["summary_hash"] = serde_json::Value::String("00".repeat(32));
    std::fs::write(&manifest, serde_json::to_string(&m).expect("json")).expect("write");
    let o = krill(&["run", "--replay", manifest.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("differs"), "{}", stderr(&o));

    // An edited scenario copy is refused before anything runs: exit 2.
    std::fs::write(out.join("scenario.ron"), scenario(300, 301, PASSING)).expect("write");
    let o = krill(&["run", "--replay", manifest.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1);
    assert!(stderr(&o).contains("scenario hash"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn audit_node_keeps_exactly_those_nodes_trail() {
    let full = shared_run();
    let d = temp_dir("audit-node");
    let s = write(&d, "tiny.ron", &scenario(300, 300, PASSING));
    let out = d.join("run");
    let o = krill(&["run", &s, "--out", out.to_str().expect("utf-8"), "--audit-node", "1", "--audit-node", "4"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let hash = |dir: &Path| json(&dir.join("manifest.json"))["summary_hash"].clone();
    assert_eq!(hash(full), hash(&out), "which trail is kept does not change the run");
    let of = |dir: &Path, nodes: &[u64]| -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("audit.jsonl")).expect("audit");
        text.lines()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                nodes.contains(&v["node"].as_u64().expect("node"))
            })
            .map(str::to_string)
            .collect()
    };
    let kept = of(&out, &[0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(!kept.is_empty());
    assert_eq!(kept, of(full, &[1, 4]), "the full run's lines of nodes 1 and 4, in order, and nothing else");

    let o = krill(&["run", &s, "--out", out.to_str().expect("utf-8"), "--audit-node", "9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot audit node 9: the scenario has 9 nodes"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn check_passes_and_fails_on_expectations() {
    let d = temp_dir("check");
    let good = write(&d, "good.ron", &scenario(120, 150, PASSING));
    let o = krill(&["check", &good, "--jobs", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("2 expectation(s), 0 missed"), "{}", stdout(&o));

    // A consensus bound no sensor noise can meet, and a detection by more
    // monitors than the attacker has neighbours.
    let bad = write(
        &d,
        "bad.ron",
        &scenario(
            120,
            150,
            r#"ConsensusError(zone: None, max: 0.0001, after_s: 0),
               Detected(attacker: 4, by_at_least: 9, within_s: 60),
               HonestDelivery(min: 0.5)"#,
        ),
    );
    let o = krill(&["check", &bad, "--jobs", "1"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("3 expectation(s), 2 missed"), "{out}");
    let missed = out.split("missed:").nth(1).expect("a table of misses");
    assert_eq!(missed.matches("MISS").count(), 2, "{missed}");
    assert!(missed.contains("consensus error in all zones") && missed.contains("by ≥9"), "{missed}");
    assert!(!missed.contains("honest delivery"), "{missed}");

    // Other seeds than the file's, and only the misses.
    let o = krill(&["check", &good, "--jobs", "1", "--seeds", "3..4"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.contains("2 run(s) of 1 scenario(s), 4 expectation(s), 0 missed"), "{out}");
    let seeds: Vec<&str> =
        out.lines().filter(|l| l.starts_with("ok")).filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(seeds, ["3", "3", "4", "4"], "{out}");
    let o = krill(&["check", &bad, "--jobs", "1", "--misses-only"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("ok")), "{out}");
    assert_eq!(out.matches("MISS").count(), 2, "{out}");
    // A known-misses file: exactly its misses pass; one left out is a new
    // miss, one listed that passes is stale; a malformed line is an error.
    let consensus = "consensus error in all zones below 0.0001 from 0 s";
    let detected = "attacker 4 flagged by ≥9 honest monitors within 60 s";
    let known = |lines: &[&str]| write(&d, "known.txt", &format!("# known\n{}\n", lines.join("\n")));
    let both = known(&[&format!("tiny 3 {consensus}"), &format!("tiny 3 {detected}")]);
    let o = krill(&["check", &bad, "--jobs", "1", "--known-misses", &both]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("every miss is a known one, none worse than listed (2 listed)"), "{}", stdout(&o));
    // With figures: a floor the miss meets holds, one it falls short of
    // (fewer than the 9 monitors it missed on) fails as worse.
    let floors = |detected_floor: &str| {
        known(&[&format!("tiny 3 {consensus} | 1000"), &format!("tiny 3 {detected} | {detected_floor}")])
    };
    let o = krill(&["check", &bad, "--jobs", "1", "--known-misses", &floors("0")]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = krill(&["check", &bad, "--jobs", "1", "--known-misses", &floors("8.5")]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let worse = stdout(&o);
    assert!(worse.contains("worse than the known-misses file allows: tiny 3 attacker 4"), "{worse}");
    assert!(!worse.contains("new misses") && !worse.contains("allows: tiny 3 consensus"), "{worse}");
    // --write-misses writes the file that then holds exactly.
    let written = d.join("written.txt");
    let o = krill(&["check", &bad, "--jobs", "1", "--write-misses", written.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = std::fs::read_to_string(&written).expect("the misses file");
    assert_eq!(text.lines().filter(|l| l.starts_with("tiny 3 ")).count(), 2, "{text}");
    assert!(text.contains(&format!("tiny 3 {detected} | ")), "{text}");
    let o = krill(&["check", &bad, "--jobs", "1", "--known-misses", written.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let one = known(&[&format!("tiny 3 {consensus}")]);
    let o = krill(&["check", &bad, "--jobs", "1", "--known-misses", &one]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let new = stdout(&o).split("new misses").nth(1).unwrap_or_default().to_string();
    assert!(new.contains("by ≥9") && !new.contains("consensus"), "{}", stdout(&o));
    let stale =
        known(&[&format!("tiny 3 {consensus}"), &format!("tiny 3 {detected}"), "tiny 3 honest delivery ≥ 50.0 %"]);
    let o = krill(&["check", &bad, "--jobs", "1", "--known-misses", &stale]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("no longer missed, remove from the known-misses file: tiny 3 honest"),
        "{}",
        stdout(&o)
    );
    let garbled = known(&["bad one consensus"]);
    let o = krill(&["check", &bad, "--known-misses", &garbled]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 2") && stderr(&o).lines().count() == 1, "{}", stderr(&o));
    let o = krill(&["check", &good, "--seeds", "4..3"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("smaller seed first") && stderr(&o).lines().count() == 1, "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn validate_points_at_line_and_column() {
    let d = temp_dir("validate");
    let good = write(&d, "good.ron", &scenario(60, 120, PASSING));
    let o = krill(&["validate", &good]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("ok ") && stdout(&o).contains("9 nodes"), "{}", stdout(&o));

    let bad = write(&d, "bad.ron", "(\n  name: \"x\",\n  duration_s: sixty,\n)");
    let o = krill(&["validate", &bad]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // `path:line:col: message`, the column within the bad value's reach.
    let at = err.split("bad.ron:").nth(1).expect("file named");
    let mut parts = at.splitn(3, ':');
    assert_eq!(parts.next(), Some("3"), "{err}");
    let col: usize = parts.next().and_then(|c| c.parse().ok()).expect("a column");
    assert!((13..=16).contains(&col), "{err}");
    assert!(parts.next().is_some_and(|m| m.contains("integer")), "{err}");

    let invalid = write(&d, "invalid.ron", &scenario(60, 120, PASSING).replace("node: 4,", "node: 40,"));
    let o = krill(&["validate", &invalid]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("node 40") && stderr(&o).contains("0..8"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn explain_tells_what_the_attackers_monitors_saw() {
    let run = shared_run();
    let dir = run.to_str().expect("utf-8");
    let o = krill(&["explain", dir, "--node", "4"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(text.contains("Node 4") && text.contains("is an attacker"), "{text}");
    // A monitor's trace judgement with its figures, and its state move.
    assert!(text.contains("judged a trace from node 4 (attacker)"), "{text}");
    assert!(text.contains("°C") && text.contains("allowed") && text.contains("σ"), "{text}");
    assert!(text.contains("moved node 4 (attacker) from NORMAL to INFLAMMATION"), "{text}");
    assert!(text.contains("INFLAMMATION_REPLY"), "{text}");

    // From a monitor's side: what it decided about the attacker.
    let summary = json(&run.join("summary.json"));
    let monitor = summary["summary"]["attackers"][0]["flagged_by"][0]["monitor"].as_u64().expect("monitor");
    let o = krill(&["explain", dir, "--node", &monitor.to_string()]);
    let text = stdout(&o);
    assert!(text.contains("is honest"), "{text}");
    assert!(
        text.contains("it moved node 4 (attacker) from") || text.contains("It moved node 4 (attacker) from"),
        "{text}"
    );

    let o = krill(&["explain", dir, "--node", "99"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("node 99 is not in this run"), "{}", stderr(&o));

    // A vote's answers, named: who, how far, and what they said.
    let o = krill(&["explain", dir, "--node", "4"]);
    assert!(stdout(&o).contains("The answers it was sent: node "), "{}", stdout(&o));

    // A reader that went away (`| head`) ends the output quietly.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_krill"))
        .args(["explain", dir, "--node", "4"])
        .stdout(writer)
        .output()
        .expect("krill binary runs");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

#[test]
fn sweep_shards_merge_with_report() {
    let d = temp_dir("sweep");
    let s = write(&d, "tiny.ron", &scenario(60, 90, PASSING));
    let out = d.join("shards");
    let out_s = out.to_str().expect("utf-8");
    for shard in ["0/2", "1/2"] {
        let o =
            krill(&["sweep", &s, "--param", "attack.offset=4..8:2", "--shard", shard, "--out", out_s, "--jobs", "1"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let html = d.join("sweep.html");
    let merged = d.join("merged.jsonl");
    let o =
        krill(&["report", out_s, "--html", html.to_str().expect("utf-8"), "--out", merged.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&merged)
        .expect("merged")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let values: Vec<f64> = lines.iter().map(|v| v["value"].as_f64().expect("value")).collect();
    assert_eq!(values, vec![4.0, 8.0], "one run per value, from two shards");
    assert_ne!(lines[0]["summary_hash"], lines[1]["summary_hash"]);
    assert!(stdout(&o).contains("attack.offset"), "{}", stdout(&o));
    assert!(std::fs::read_to_string(&html).expect("html").contains("<svg"));

    let o = krill(&["sweep", &s, "--param", "attack.rate_per_s=1..2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("changes nothing"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(d);
}
