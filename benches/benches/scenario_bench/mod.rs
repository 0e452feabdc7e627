//! Whole-scenario speed: builds a scenario, runs it with 1 and then 2
//! threads, each in a fresh child process so that its peak RSS
//! (`VmHWM`) is its own, and prints wall time, events/s, node-seconds per
//! wall second, peak RSS and a hash of the results (equal hashes show the
//! thread count changed nothing but the speed).
//!
//! Environment: `KRILL_BENCH_HOURS` replaces the scenario's duration after
//! warm-up (fractions allowed, e.g. `0.1`); `KRILL_BENCH_THREADS` is a
//! comma-separated list of thread counts (default `1,2`);
//! `KRILL_BENCH_PROFILE` (any value) makes the one-thread run print where
//! its time went (see `krill_sim::engine::RoundProfile`). Every run also
//! prints its wall time per window of `KRILL_BENCH_WINDOW_S` simulated
//! seconds (default 3,600), with the profile's 2-thread bound when there
//! is one: where over a long run the cost and the speed-up change.

/// The `krill` binary's allocator (see `sim/src/main.rs`), so these
/// figures are the CLI's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::Command;
use std::time::Instant;

use krill_sim::check::evaluate;
use krill_sim::engine::{RoundProfile, WindowTime};
use krill_sim::scenario::Scenario;
use krill_sim::sim::{event_class_name, FirmwareKind, Simulation};
use krill_sim::summary::{RunSummary, Series, SIM_STACK};

/// Set (to anything): the one-thread run also prints a [`RoundProfile`].
const PROFILE_ENV: &str = "KRILL_BENCH_PROFILE";

/// Simulated seconds per timed window (default one hour).
const WINDOW_ENV: &str = "KRILL_BENCH_WINDOW_S";

/// Set in a child: the thread count it measures.
const CHILD_ENV: &str = "KRILL_BENCH_CHILD_THREADS";

/// A `/proc/self/status` figure in KiB (Linux); `None` elsewhere.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

/// `s` with its duration replaced by `KRILL_BENCH_HOURS`, if set.
pub fn with_hours_override(mut s: Scenario) -> Scenario {
    if let Some(h) = std::env::var("KRILL_BENCH_HOURS").ok().and_then(|v| v.parse::<f64>().ok()) {
        if h.is_finite() && h > 0.0 {
            s.duration_s = ((h * 3600.0).round() as u64).max(1);
        }
    }
    s
}

/// Largest run whose summary hash is printed: the summary's per-subject
/// pass over all monitors is quadratic in the node count.
const SUMMARY_MAX_NODES: usize = 20_000;

/// FNV-1a over every node's traffic counters and sample count.
fn log_digest(sim: &Simulation) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |v: u64| {
        for b in v.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for n in sim.nodes() {
        let log = n.log();
        eat(log.received);
        eat(log.honest_dropped);
        eat(log.duty_cycle_blocked);
        eat(log.lora_airtime_us);
        eat(log.samples.len() as u64);
        for (&ty, &count) in &log.sent {
            eat(u64::from(ty) << 56 | count);
        }
    }
    format!("{h:016x}")
}

/// Where the one-thread run's time went, and what that allows two and
/// four threads at best with the engine's rounds.
fn print_profile(label: &str, p: &RoundProfile) {
    let pct = |s: f64| 100.0 * s / p.total_s.max(1e-9);
    println!("{label} profile (1 thread, timed: {:.1} s in rounds):", p.total_s);
    println!(
        "  poolable rounds {:.1} s ({:.0} %): at best {:.1} s on 2 threads, {:.1} s on 4; their busiest nodes alone {:.1} s",
        p.pooled_s,
        pct(p.pooled_s),
        p.pooled_best_2_s,
        p.pooled_best_4_s,
        p.pooled_busiest_s
    );
    println!(
        "  small rounds {:.1} s ({:.0} %), one-node rounds {:.1} s, queue and merge {:.1} s",
        p.small_s,
        pct(p.small_s),
        p.single_node_s,
        (p.total_s - p.pooled_s - p.small_s - p.single_node_s).max(0.0)
    );
    println!(
        "  best possible on 2 threads with these rounds: {:.1} s = {:.2}x",
        p.best_2_thread_s(),
        p.total_s / p.best_2_thread_s().max(1e-9)
    );
    for (class, bands) in &p.by_class {
        let cells: Vec<String> = ["<10 us", "<100 us", "<1 ms", ">=1 ms"]
            .iter()
            .zip(bands)
            .filter(|(_, b)| b.0 > 0)
            .map(|(name, b)| format!("{name}: {} events {:.1} s", b.0, b.1))
            .collect();
        println!("  {}: {}", event_class_name(*class), cells.join(", "));
    }
}

/// Each window's events and wall time, and its 2-thread bound when the
/// run was profiled.
fn print_windows(label: &str, threads: usize, width_s: u64, windows: &[WindowTime]) {
    println!(
        "{label}, {threads} thread(s), per {width_s} simulated s: window, events, wall s[, best on 2 threads s = x]"
    );
    for (i, w) in windows.iter().enumerate() {
        let bound = if w.best_2_s > 0.0 {
            format!(", {:.1} = {:.2}x", w.best_2_s, w.wall_s / w.best_2_s)
        } else {
            String::new()
        };
        println!("  {i:>3} {:>10} {:>8.1}{bound}", w.events, w.wall_s);
    }
}

/// Runs the measurement for every thread count (parent) or for one (child).
pub fn main_for(label: &str, scenario: impl FnOnce() -> Scenario) {
    let s = with_hours_override(scenario());
    if let Some(threads) = std::env::var(CHILD_ENV).ok().and_then(|v| v.parse::<usize>().ok()) {
        measure(label, s, threads);
        return;
    }
    let threads: Vec<usize> = std::env::var("KRILL_BENCH_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    println!(
        "{label}: {} nodes, {} s warm-up + {} s simulated, seed {}",
        s.node_count(),
        s.warmup_s(),
        s.duration_s,
        s.seeds.first().copied().unwrap_or(1)
    );
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{label}: cannot find own executable to re-run: {e}");
            return;
        }
    };
    for t in threads {
        match Command::new(&exe).env(CHILD_ENV, t.to_string()).status() {
            Ok(st) if st.success() => {}
            Ok(st) => eprintln!("{label}: run with {t} thread(s) failed: {st}"),
            Err(e) => eprintln!("{label}: cannot start run with {t} thread(s): {e}"),
        }
    }
}

fn measure(label: &str, s: Scenario, threads: usize) {
    let seed = s.seeds.first().copied().unwrap_or(1);
    let name = label.to_string();
    let run = std::thread::Builder::new().stack_size(SIM_STACK).spawn(move || {
        let t0 = Instant::now();
        let mut sim = Simulation::new(&s, seed, FirmwareKind::Core, threads).map_err(|e| e.to_string())?;
        // As `krill check` runs it: no run directory, so no audit events kept.
        sim.keep_audits(&krill_sim::output::AuditLevel::None.into()).expect("no node list");
        let profile = threads == 1 && std::env::var_os(PROFILE_ENV).is_some();
        sim.profile_rounds(profile);
        let width_s =
            std::env::var(WINDOW_ENV).ok().and_then(|v| v.parse::<u64>().ok()).filter(|&w| w > 0).unwrap_or(3_600);
        sim.time_windows(Some(width_s.saturating_mul(1_000_000)));
        let built = t0.elapsed().as_secs_f64();
        let rss_built = proc_status_kib("VmRSS:");
        let t1 = Instant::now();
        sim.run(|_, _| {}).map_err(|e| e.to_string())?;
        let wall = t1.elapsed().as_secs_f64();
        let stats = sim.stats();
        let mut hash = format!("log digest {}", log_digest(&sim));
        if sim.nodes().len() <= SUMMARY_MAX_NODES {
            let summary = RunSummary::from_run(&s, &sim);
            hash += &format!(", summary {}", &summary.hash()[..16]);
            // A fast run that broke the scenario would be no result: say how
            // the run fared against its expectations (a shortened day can
            // miss those that start late).
            let results = evaluate(&s, &sim, &summary, &Series::from_run(&sim));
            let missed: Vec<String> =
                results.iter().filter(|r| !r.pass).map(|r| format!("{} ({})", r.expectation, r.measured)).collect();
            hash += &format!(", expectations met {}/{}", results.len() - missed.len(), results.len());
            if !missed.is_empty() {
                hash += &format!(", missed: {}", missed.join("; "));
            }
        }
        if let Some(p) = sim.round_profile() {
            print_profile(&name, p);
        }
        print_windows(&name, threads, width_s, sim.window_times());
        let nodes = sim.nodes().len() as f64;
        let sim_s = sim.end_us() as f64 / 1e6;
        Ok::<_, String>((built, rss_built, wall, stats, hash, nodes * sim_s))
    });
    let result = match run.map(|h| h.join()) {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("the simulation thread panicked".into()),
        Err(e) => Err(format!("cannot spawn the simulation thread: {e}")),
    };
    match result {
        Ok((built, rss_built, wall, stats, hash, node_s)) => println!(
            "{label}, {threads} thread(s): built in {built:.1} s ({}), ran in {wall:.1} s: {} events = {:.2} M events/s, \
             {:.0} node-s per wall s, {} rounds ({} parallel), peak RSS {}, {hash}",
            mib(rss_built),
            stats.events,
            stats.events as f64 / wall / 1e6,
            node_s / wall,
            stats.rounds,
            stats.parallel_rounds,
            mib(proc_status_kib("VmHWM:")),
        ),
        Err(e) => {
            eprintln!("{label}, {threads} thread(s): {e}");
            std::process::exit(1);
        }
    }
}
