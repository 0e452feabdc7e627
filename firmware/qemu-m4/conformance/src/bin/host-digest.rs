//! Host half of the QEMU comparison: encodes `core/vectors/*.ron` exactly as
//! the image's build script does, decodes the blob again, runs every case
//! through the same runner code and core on the host and prints the same
//! lines and digest as the Cortex-M4 image. `-v` prints computed values.
use std::process::ExitCode;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() -> ExitCode {
    let verbose = std::env::args().any(|a| a == "-v");
    let dir = std::env::args()
        .skip(1)
        .find(|a| a != "-v")
        .map(Into::into)
        .unwrap_or_else(krill_conformance::default_vector_dir);
    let blob = match krill_conformance::encode_dir(&dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("host-digest: {e}");
            return ExitCode::from(2);
        }
    };
    let files = match krill_conformance::decode(&blob) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("host-digest: decoding the blob: {e}");
            return ExitCode::from(2);
        }
    };
    println!("vectors: {} bytes, blake2s {}", blob.len(), hex(&krill_conformance::blake2s(&blob)));
    let s = krill_conformance::run_all(&files, verbose, |l| println!("{l}"));
    for m in &s.modules {
        println!("module {}: {} passed, {} failed", m.module, m.passed, m.failed);
    }
    println!("digest: {}", hex(&s.digest));
    println!("{} passed, {} failed", s.passed, s.failed);
    if s.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
