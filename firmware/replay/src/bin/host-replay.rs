//! Host half of the QEMU replay comparison: records the default mesh log
//! exactly as the image's build script does (or reads the log file given as
//! the argument), replays it through the same code and core on the host and
//! prints the same lines as the Cortex-M4 image. `--write FILE` only writes
//! the recorded log.
use krill_replay::record::{record, MeshSpec};
use krill_replay::{blake2s, replay, Hex, Verdict};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let log = match args.as_slice() {
        [] | [_, _] => match record(MeshSpec::default()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("host-replay: {e}");
                return ExitCode::from(2);
            }
        },
        [file] => match std::fs::read(file) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("host-replay: {file}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: host-replay [LOG | --write FILE]");
            return ExitCode::from(2);
        }
    };
    if let [flag, file] = args.as_slice() {
        if flag != "--write" {
            eprintln!("usage: host-replay [LOG | --write FILE]");
            return ExitCode::from(2);
        }
        return match std::fs::write(file, &log) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("host-replay: {file}: {e}");
                ExitCode::from(2)
            }
        };
    }
    println!("replay log: {} bytes, blake2s {}", log.len(), Hex(&blake2s(&log)));
    match replay(&log, |n, d| println!("replay @{n}: {}", Hex(d))) {
        Ok(r) => {
            println!("{r}");
            println!("{}", Verdict(&r));
            if r.matches_recording() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("replay: FAIL {e:?}");
            ExitCode::FAILURE
        }
    }
}
