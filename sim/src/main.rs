//! `krill`: the KRILL command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Vectors { paths, quiet } => run_vectors(paths, quiet),
    }
}

fn run_vectors(mut paths: Vec<PathBuf>, quiet: bool) -> ExitCode {
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
    println!("vectors: {} passed, {} failed", reports.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
