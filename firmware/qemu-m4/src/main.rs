//! QEMU Cortex-M4 (mps2-an386) conformance image. (1) Decodes the vector
//! cases converted at build time from `core/vectors/*.ron`, runs each
//! through krill-core, prints PASS/FAIL per case, per-module counts, the
//! digest of every computed value and `N passed, M failed`. (2) Replays the
//! recorded input log of one node (`krill-replay`) and prints the digest of
//! every action it emitted. Output goes over semihosting; the exit code is
//! non-zero on any failure or panic. Glue only: the runners are the sim's,
//! the replayer is the host's.
#![no_std]
#![no_main]

extern crate alloc;

use core::mem::MaybeUninit;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use embedded_alloc::LlffHeap as Heap;

/// Case data in memory (strings, vectors, boxed DAGs): the runners allocate.
const HEAP_SIZE: usize = 2 * 1024 * 1024;

#[global_allocator]
static HEAP: Heap = Heap::empty();

static VECTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vectors.postcard"));
static REPLAY_LOG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/replay.log"));

/// Lower-case hex of a 32-byte digest, printed without allocating.
struct Hex32([u8; 32]);

impl core::fmt::Display for Hex32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    static mut HEAP_MEM: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
    // SAFETY: `entry` runs once; cortex-m-rt turns the `static mut` into a
    // unique `&'static mut`, handed to the allocator before any allocation.
    unsafe { HEAP.init(HEAP_MEM.as_mut_ptr() as usize, HEAP_SIZE) }

    hprintln!(
        "krill qemu-m4: {} bytes of vectors, blake2s {}",
        VECTORS.len(),
        Hex32(krill_conformance::blake2s(VECTORS))
    );
    let files = match krill_conformance::decode(VECTORS) {
        Ok(f) => f,
        Err(e) => {
            hprintln!("cannot decode the vectors: {:?}", e);
            exit(debug::EXIT_FAILURE)
        }
    };
    let s = krill_conformance::run_all(&files, false, |l| hprintln!("{}", l));
    for m in &s.modules {
        hprintln!("module {}: {} passed, {} failed", m.module, m.passed, m.failed);
    }
    hprintln!("digest: {}", Hex32(s.digest));
    hprintln!("{} passed, {} failed", s.passed, s.failed);
    let replayed = replay();
    exit(if s.failed == 0 && replayed { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE })
}

/// Part (2): the recorded node log, with the same lines as `host-replay`.
fn replay() -> bool {
    use krill_replay::Hex;
    hprintln!("replay log: {} bytes, blake2s {}", REPLAY_LOG.len(), Hex(&krill_replay::blake2s(REPLAY_LOG)));
    match krill_replay::replay(REPLAY_LOG, |n, d| hprintln!("replay @{}: {}", n, Hex(d))) {
        Ok(r) => {
            hprintln!("{}", r);
            hprintln!("{}", krill_replay::Verdict(&r));
            r.matches_recording()
        }
        Err(e) => {
            hprintln!("replay: FAIL {:?}", e);
            false
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("PANIC: {}", info);
    exit(debug::EXIT_FAILURE)
}

/// Ends the QEMU run with `code`; should semihosting be off, sleeps.
fn exit(code: debug::ExitStatus) -> ! {
    debug::exit(code);
    loop {
        cortex_m::asm::wfi();
    }
}
