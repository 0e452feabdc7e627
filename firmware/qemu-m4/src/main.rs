//! QEMU Cortex-M4 (mps2-an386) conformance image: decodes the vector cases
//! converted at build time from `core/vectors/*.ron`, runs each through
//! krill-core, prints PASS/FAIL per case, per-module counts, the digest of
//! every computed value and `N passed, M failed` over semihosting, and exits
//! non-zero on any failure or panic. Glue only: the runners are the sim's.
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
            debug::exit(debug::EXIT_FAILURE);
            loop {}
        }
    };
    let s = krill_conformance::run_all(&files, false, |l| hprintln!("{}", l));
    for m in &s.modules {
        hprintln!("module {}: {} passed, {} failed", m.module, m.passed, m.failed);
    }
    hprintln!("digest: {}", Hex32(s.digest));
    hprintln!("{} passed, {} failed", s.passed, s.failed);
    debug::exit(if s.failed == 0 { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {}
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("PANIC: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {}
}
