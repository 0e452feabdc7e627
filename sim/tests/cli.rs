//! Runs the built `krill` binary: `decode`, `encode` and `vectors`, their
//! output and exit codes.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const TV13_SIGNED: &str = "4B42 0101 1807F6E5D4C3B2A1 C0F5CA65 01 0609 CC CC 2A 3412CDAB";

fn krill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_krill"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("krill binary runs")
}

fn krill_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_krill"))
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("krill binary runs");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("krill finishes")
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tv13_hex() -> String {
    format!("{TV13_SIGNED} {}", "5a".repeat(64))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn normalise(hex: &str) -> String {
    hex.chars().filter(|c| c.is_ascii_hexdigit()).collect::<String>().to_lowercase()
}

/// A temporary file that is removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!("krill-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Exit 2, exactly one line on stderr, no panic.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
}

#[test]
fn decode_tv13_prints_every_field() {
    let o = krill(&["decode", &tv13_hex()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for field in [
        "magic 4b42",
        "version 0x01",
        "msg_type 0x01 TraceDeposit",
        "sender_id: \"1807f6e5d4c3b2a1\"",
        "timestamp: 1707800000",
        "quantity: Temperature",
        "reading: 2310",
        "confidence: 204",
        "weight: 204",
        "seq: 42",
        "prev_hash: \"3412cdab\"",
        "vouch: None",
        "length: 90 bytes",
        "signed range bytes[0..26]",
    ] {
        assert!(out.contains(field), "missing {field:?} in\n{out}");
    }
    assert!(out.contains(&format!("signature: \"{}\"", "5a".repeat(64))), "{out}");
}

#[test]
fn hex_may_be_split_over_arguments_and_use_colons() {
    let spaced = krill(&["decode", &tv13_hex()]);
    let mut args = vec!["decode"];
    let colon = tv13_hex().replace(' ', ":");
    args.push(&colon);
    let o = krill(&args);
    assert_eq!(stdout(&o), stdout(&spaced));
    let words: Vec<String> = tv13_hex().split(' ').map(str::to_owned).collect();
    let mut args = vec!["decode"];
    args.extend(words.iter().map(String::as_str));
    assert_eq!(stdout(&krill(&args)), stdout(&spaced));
}

#[test]
fn decode_then_encode_gives_the_same_hex() {
    let frames = [
        tv13_hex(),
        "1807 0609 0500 80 42".into(),
        "02 1807 0609 0500 80 2a000000 deadbeef".into(),
        "23 00 1807".into(),
        "23 02 1807 07000000 01020304".into(),
        "26 02 04 06 ff 0cfe ffff 08000000 aabbccdd".into(),
        format!(
            "4b42 0271 1807f6e5d4c3b2a1 07000000 c0f5ca65 fbf5ca65 0100 \
             0001020304050607 01 0609 0c cc 00 \
             0100 0100 0000 00 0041 {}",
            "5a".repeat(64)
        ),
    ];
    for (i, hex) in frames.iter().enumerate() {
        let d = krill(&["decode", hex]);
        assert!(d.status.success(), "{hex}: {}", stderr(&d));
        let f = TempFile::new(&format!("roundtrip{i}.ron"), &stdout(&d));
        let e = krill(&["encode", f.path()]);
        assert!(e.status.success(), "{hex}: {}", stderr(&e));
        assert_eq!(normalise(&stdout(&e)), normalise(hex), "{}", stdout(&d));
    }
}

#[test]
fn encode_reads_stdin_and_kind_selects_the_v1_vaccine() {
    let d = krill(&["decode", "--kind", "dust-downlink", "26 01 01 c8 f401 3200"]);
    assert!(d.status.success(), "{}", stderr(&d));
    assert!(stdout(&d).contains("Vaccine(DustVaccine("), "{}", stdout(&d));
    let e = krill_stdin(&["encode", "-"], &stdout(&d));
    assert_eq!(normalise(&stdout(&e)), "260101c8f4013200");
    let auto = krill(&["decode", "26 01 01 c8 f401 3200"]);
    assert_clean_failure(&auto, "bad CRC-8");
}

#[test]
fn malformed_frames_fail_with_one_line() {
    let short = &tv13_hex()[..tv13_hex().len() - 20];
    assert_clean_failure(&krill(&["decode", short]), "krill decode: frame too short");
    assert_clean_failure(&krill(&["decode", "4b42 0901"]), "krill decode:");
    let bad_version = tv13_hex().replacen("4B42 01", "4B42 07", 1);
    assert_clean_failure(&krill(&["decode", &bad_version]), "unknown protocol version 0x07");
    assert_clean_failure(&krill(&["decode", "99 88 77"]), "pass --kind");
    assert_clean_failure(&krill(&["decode", "xyz"]), "bad hex");
    assert_clean_failure(&krill(&["decode", "123"]), "odd number of hex digits");
    assert_clean_failure(&krill(&["decode", "02 1807 0609"]), "frame too short: 5 bytes, need at least 8");
    assert_clean_failure(&krill(&["decode", "02 1807 0609 0500 80 2a000000"]), "need at least 16");
    assert_clean_failure(&krill(&["decode", "4b42 0171 1807f6e5d4c3b2a1 00"]), "frame too short");
    assert_clean_failure(&krill(&["decode", "--kind", "batch", &tv13_hex()]), "unknown message type 0x01");
}

#[test]
fn bad_crc_is_reported_with_both_values() {
    let o = krill(&["decode", "1807 0609 0500 80 43"]);
    assert_clean_failure(&o, "bad CRC-8: carried 0x43, computed 0x42");
    let out = stdout(&o);
    assert!(out.contains("computed 0x42, carried 0x43, BAD"), "{out}");
    assert!(out.contains("reading: 2310"), "{out}");
    let good = krill(&["decode", "1807 0609 0500 80 42"]);
    assert!(good.status.success());
    assert!(stdout(&good).contains("computed 0x42, carried 0x42, OK"));
}

#[test]
fn encode_errors_fail_with_one_line() {
    let bad_ron = TempFile::new("bad.ron", "DustUplink(DustUplink(\n    version: V3,\n))\n");
    assert_clean_failure(&krill(&["encode", bad_ron.path()]), "bad.ron:2:");
    let v1_with_mac = TempFile::new(
        "v1mac.ron",
        "DustUplink(DustUplink(version: V1, sender_id_short: \"1807\", reading: 1, timestamp_delta: 5, \
         confidence: 1, auth: Some(DustAuth(counter: 1, mac: \"00000000\"))))",
    );
    assert_clean_failure(&krill(&["encode", v1_with_mac.path()]), "cannot be written as version 1");
    assert_clean_failure(&krill(&["encode", "/nonexistent/krill.ron"]), "cannot read /nonexistent/krill.ron");
}

#[test]
fn vectors_exit_code_follows_the_verdicts() {
    let ok = krill(&["vectors", "--quiet", "core/vectors/dust.ron"]);
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    let failing = TempFile::new(
        "failing.ron",
        r#"VectorFile(module: "dust", cases: [
            Case(name: "wrong on purpose", check: Dust(Crc8((hex: "313233343536373839", want: 0x00)))),
        ])"#,
    );
    let bad = krill(&["vectors", failing.path()]);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    assert!(stdout(&bad).contains("FAIL dust::wrong on purpose"), "{}", stdout(&bad));
    let broken = TempFile::new("broken.ron", "VectorFile(");
    assert_eq!(krill(&["vectors", broken.path()]).status.code(), Some(2));
}
