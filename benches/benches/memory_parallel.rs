//! What this machine allows two threads doing the city's kind of work:
//! a dependent random walk over 256 MiB (every step a cache and TLB miss,
//! like an event landing on a cold node) and a pure arithmetic loop, each
//! run on one thread and then on two threads with the same work each.
//! Prints each one's 2-thread throughput over 1 thread. The arithmetic
//! loop gives about 2 on two real cores and well below that on two
//! hyperthreads of one core; the walk shows what the memory system takes
//! on top. The city's 2-thread speed-up (`benches/README.md`) is read
//! against both.

use std::hint::black_box;
use std::time::Instant;

/// 64 Mi slots of 4 B: 256 MiB, eight times the L3 cache here.
const SLOTS: usize = 64 << 20;
const WALK_STEPS: u64 = 40_000_000;
const SPIN_STEPS: u64 = 800_000_000;

/// One random cycle through every slot (Sattolo), from a fixed xorshift.
fn cycle() -> Vec<u32> {
    let mut next: Vec<u32> = (0..SLOTS as u32).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..SLOTS).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        next.swap(i, (x % i as u64) as usize);
    }
    next
}

fn walk(next: &[u32], start: u32) -> u32 {
    let mut i = start;
    for _ in 0..WALK_STEPS {
        i = next[i as usize];
    }
    i
}

fn spin(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..SPIN_STEPS {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    x
}

/// Seconds for `f` on one thread, and for `f` on each of two threads.
fn one_and_two<T: Send>(f: impl Fn(u64) -> T + Sync) -> (f64, f64) {
    let t = Instant::now();
    black_box(f(1));
    let one = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::thread::scope(|s| {
        let a = s.spawn(|| black_box(f(2)));
        black_box(f(3));
        let _ = a.join();
    });
    (one, t.elapsed().as_secs_f64())
}

fn main() {
    let next = cycle();
    // The slots are a permutation: start anywhere but on the same cycle.
    let (one, two) = one_and_two(|s| walk(&next, (s as u32) * 12_345));
    println!(
        "random walk over 256 MiB: 1 thread {one:.2} s ({:.0} ns a step), 2 threads {two:.2} s: 2-thread throughput {:.2}x",
        one / WALK_STEPS as f64 * 1e9,
        2.0 * one / two
    );
    let (one, two) = one_and_two(spin);
    println!("arithmetic loop: 1 thread {one:.2} s, 2 threads {two:.2} s: 2-thread throughput {:.2}x", 2.0 * one / two);
}
