//! `krill`: the KRILL command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use krill_sim::codec::{self, Kind};
use krill_sim::vectors;

#[derive(Parser)]
#[command(name = "krill", version, about = "KRILL-BIA mesh: conformance vectors, frame codec, simulator")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run conformance vector files or directories (default: core/vectors).
    Vectors {
        /// Vector files or directories of `.ron` files.
        paths: Vec<PathBuf>,
        /// Print only failing cases and the totals.
        #[arg(long)]
        quiet: bool,
        /// Also write a self-contained HTML report of the run to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// Decode a frame given in hex (spaces and colons allowed; `-` reads stdin)
    /// and print every field as RON that `krill encode` accepts.
    Decode {
        /// The frame's bytes in hex; several arguments are joined.
        #[arg(required = true, num_args = 1..)]
        hex: Vec<String>,
        /// Which decoder to use; `auto` tells from length and first bytes.
        #[arg(long, value_enum, default_value_t = Kind::Auto)]
        kind: Kind,
    },
    /// Encode a RON frame description (as `krill decode` prints it) to hex.
    Encode {
        /// The RON file, or `-` for stdin.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Vectors { paths, quiet, html } => run_vectors(paths, quiet, html),
        Cmd::Decode { hex, kind } => run_decode(&hex, kind),
        Cmd::Encode { file } => run_encode(&file),
    }
}

/// Exit code for input that is not a valid frame or description.
const EXIT_BAD_INPUT: u8 = 2;

fn fail(cmd: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("krill {cmd}: {e}");
    ExitCode::from(EXIT_BAD_INPUT)
}

fn read_input(path: &std::path::Path) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
}

fn run_decode(hex: &[String], kind: Kind) -> ExitCode {
    let text = if hex.len() == 1 && hex[0] == "-" {
        match std::io::read_to_string(std::io::stdin()) {
            Ok(t) => t,
            Err(e) => return fail("decode", format!("cannot read stdin: {e}")),
        }
    } else {
        hex.join(" ")
    };
    let decoded =
        codec::parse_hex(&text).and_then(|b| codec::decode(&b, kind)).and_then(|d| Ok((codec::render(&d)?, d)));
    match decoded {
        Ok((out, d)) => {
            print!("{out}");
            match d.error {
                Some(e) => fail("decode", e),
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => fail("decode", e),
    }
}

fn run_encode(file: &std::path::Path) -> ExitCode {
    let text = match read_input(file) {
        Ok(t) => t,
        Err(e) => return fail("encode", format!("cannot read {}: {e}", file.display())),
    };
    match codec::parse_ron(&text, &file.display().to_string()).and_then(|f| codec::encode(&f)) {
        Ok(bytes) => {
            println!("{}", codec::to_hex(&bytes));
            ExitCode::SUCCESS
        }
        Err(e) => fail("encode", e),
    }
}

fn run_vectors(mut paths: Vec<PathBuf>, quiet: bool, html: Option<PathBuf>) -> ExitCode {
    if paths.is_empty() {
        paths.push(PathBuf::from("core/vectors"));
    }
    let reports = match vectors::run_paths(&paths) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("krill vectors: {e}");
            return ExitCode::from(2);
        }
    };
    let failed = reports.iter().filter(|r| !r.outcome.passed()).count();
    for r in &reports {
        if !quiet || !r.outcome.passed() {
            println!("{}", vectors::render(r));
        }
    }
    if let Some(path) = html {
        let rows: Vec<krill_reports::VectorRow> = reports
            .iter()
            .map(|r| krill_reports::VectorRow {
                module: r.module.clone(),
                name: r.name.clone(),
                source: r.source.clone(),
                computed: r.outcome.computed.clone(),
                failures: r.outcome.failures.clone(),
            })
            .collect();
        if let Err(e) = std::fs::write(&path, krill_reports::vector_report_html("KRILL conformance vectors", &rows)) {
            eprintln!("krill vectors: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    println!("vectors: {} passed, {} failed", reports.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
