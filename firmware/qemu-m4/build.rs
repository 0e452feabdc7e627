//! Puts `memory.x` on the linker path, converts `core/vectors/*.ron` into
//! the postcard blob the image embeds (`OUT_DIR/vectors.postcard`) and
//! records the node log it replays (`OUT_DIR/replay.log`).
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::copy("memory.x", out.join("memory.x")).expect("copy memory.x");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");

    // KRILL_VECTORS_DIR lets a test build embed other cases (e.g. a broken one).
    println!("cargo:rerun-if-env-changed=KRILL_VECTORS_DIR");
    let dir =
        std::env::var_os("KRILL_VECTORS_DIR").map(PathBuf::from).unwrap_or_else(krill_conformance::default_vector_dir);
    println!("cargo:rerun-if-changed={}", dir.display());
    for e in std::fs::read_dir(&dir).expect("read core/vectors").flatten() {
        println!("cargo:rerun-if-changed={}", e.path().display());
    }
    let blob = krill_conformance::encode_dir(&dir).unwrap_or_else(|e| panic!("encoding the vectors: {e}"));
    std::fs::write(out.join("vectors.postcard"), blob).expect("write vectors.postcard");

    // KRILL_REPLAY_LOG embeds a given log (e.g. one the simulator wrote)
    // instead of recording the default mesh run.
    println!("cargo:rerun-if-env-changed=KRILL_REPLAY_LOG");
    let log = match std::env::var_os("KRILL_REPLAY_LOG") {
        Some(p) => {
            println!("cargo:rerun-if-changed={}", PathBuf::from(&p).display());
            std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", PathBuf::from(&p).display()))
        }
        None => krill_replay::record::record(krill_replay::record::MeshSpec::default())
            .unwrap_or_else(|e| panic!("recording the replay log: {e}")),
    };
    std::fs::write(out.join("replay.log"), log).expect("write replay.log");
}
