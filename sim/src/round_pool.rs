//! The threads that run a parallel round's nodes (see `engine`).
//!
//! A city day has tens of millions of rounds of ~50 µs each, so what a
//! round's hand-over costs decides the speed-up. rayon's idle workers go
//! to sleep after a few dozen yields (~30 µs) and are woken by a futex, which
//! on this VM takes longer than many rounds: the round then runs mostly on
//! the thread that started it (see `benches/README.md`). These helpers
//! instead stay awake between rounds — spinning, then yielding so an
//! oversubscribed machine still runs the main thread — and park only after
//! [`IDLE_BEFORE_PARK`] without a round, e.g. between `run_until` calls.
//!
//! Which thread runs which item never shows in a result: every item owns
//! its node and its output buffer, and the engine merges the outputs in node
//! order after [`RoundPool::for_each`] returns.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a helper waits for the next round before it parks.
const IDLE_BEFORE_PARK: Duration = Duration::from_millis(2);
/// Busy-wait iterations before a waiting helper starts yielding.
const SPINS_BEFORE_YIELD: u32 = 2_000;

/// One round's work as the helpers see it: call `f(i)` for each claimed
/// `i < n`.
#[derive(Clone, Copy)]
struct Job {
    /// Borrowed from [`RoundPool::for_each`]'s frame, which does not return
    /// before every helper holding it has let go (`busy` back at 0).
    f: *const (dyn Fn(usize) + Sync + 'static),
    n: usize,
}

// SAFETY: `f` points to a `Sync` closure, so calling it from another thread
// is allowed; `for_each` keeps it alive while a helper may use it.
unsafe impl Send for Job {}

#[derive(Default)]
struct Shared {
    /// Bumped for every published job; what an idle helper watches.
    epoch: AtomicU64,
    /// The current job; `None` once its items are all done.
    job: Mutex<Option<Job>>,
    /// Next unclaimed item of the current job.
    next: AtomicUsize,
    /// Items of the current job finished, by any thread.
    done: AtomicUsize,
    /// Helpers that took the current job and may still touch it.
    busy: AtomicUsize,
    /// Helpers parked, to be unparked when a job is published.
    parked: AtomicUsize,
    /// A panic from an item, handed back to `for_each`'s caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Items run outside these locks, so a poisoned lock holds nothing torn.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The calling thread plus `threads - 1` helper threads.
pub(crate) struct RoundPool {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

impl RoundPool {
    /// A pool of `threads` threads in all, the caller included; `None` if
    /// `threads < 2` or a thread cannot be started.
    pub(crate) fn new(threads: usize) -> Option<RoundPool> {
        if threads < 2 {
            return None;
        }
        let shared = Arc::new(Shared::default());
        let mut pool = RoundPool { shared, helpers: Vec::new() };
        for i in 1..threads {
            let shared = Arc::clone(&pool.shared);
            let spawned = std::thread::Builder::new().name(format!("krill-round-{i}")).spawn(move || helper(&shared));
            // On failure `pool`'s drop stops the helpers already started.
            pool.helpers.push(spawned.ok()?);
        }
        Some(pool)
    }

    /// Calls `f` once on each item, spread over the pool's threads (the
    /// caller's included), and returns when all are done. A panic in `f` is
    /// resumed here, after every item has finished. `&mut self`: one round
    /// at a time is what the helpers' protocol assumes.
    pub(crate) fn for_each<T: Send>(&mut self, items: &mut [T], f: &(impl Fn(&mut T) + Sync)) {
        let n = items.len();
        if n < 2 {
            items.iter_mut().for_each(f);
            return;
        }
        let base = ItemPtr(items.as_mut_ptr());
        let call = move |i: usize| {
            // SAFETY: `i < n` and every index is claimed exactly once
            // (`next.fetch_add`), so no two threads get the same item, and
            // `items` is borrowed mutably by this call for its whole run.
            let item = unsafe { &mut *base.at(i) };
            f(item);
        };
        let call: &(dyn Fn(usize) + Sync) = &call;
        // SAFETY: only the lifetime is erased. The pointer is withdrawn
        // (`job = None`, then `busy == 0`) before this frame returns or
        // unwinds: items run under `catch_unwind`, and nothing between
        // publishing and withdrawing can panic.
        let f_static: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(call) };
        let s = &*self.shared;
        s.next.store(0, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        *lock(&s.job) = Some(Job { f: f_static, n });
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.parked.load(Ordering::SeqCst) > 0 {
            self.helpers.iter().for_each(|h| h.thread().unpark());
        }
        work(s, call, n);
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < n {
            wait(&mut spins);
        }
        *lock(&s.job) = None;
        while s.busy.load(Ordering::Acquire) > 0 {
            wait(&mut spins);
        }
        if let Some(p) = lock(&s.panic).take() {
            resume_unwind(p);
        }
    }
}

impl Drop for RoundPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for h in self.helpers.drain(..) {
            h.thread().unpark();
            // A helper never panics outside `catch_unwind`; nothing to report.
            let _ = h.join();
        }
    }
}

struct ItemPtr<T>(*mut T);

// By hand: the derives would ask for `T: Copy`.
impl<T> Clone for ItemPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ItemPtr<T> {}

impl<T> ItemPtr<T> {
    /// Item `i`; taking `self` whole keeps closures capturing the wrapper
    /// (which is `Sync`), not its raw pointer field.
    fn at(self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}

// SAFETY: an `ItemPtr` only hands out distinct items of a `&mut [T]` to
// different threads (see `for_each`), which is what `T: Send` allows.
unsafe impl<T: Send> Sync for ItemPtr<T> {}
unsafe impl<T: Send> Send for ItemPtr<T> {}

/// Claims and runs items of the current job until none is left.
fn work(s: &Shared, f: &(dyn Fn(usize) + Sync), n: usize) {
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return;
        }
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(i))) {
            lock(&s.panic).get_or_insert(p);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

/// One step of a busy wait: spin a while, then let other threads run.
fn wait(spins: &mut u32) {
    if *spins < SPINS_BEFORE_YIELD {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

fn helper(s: &Shared) {
    let mut seen = s.epoch.load(Ordering::SeqCst);
    loop {
        let idle_since = Instant::now();
        let mut spins = 0u32;
        while s.epoch.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::Relaxed) {
            wait(&mut spins);
            if spins >= SPINS_BEFORE_YIELD && idle_since.elapsed() >= IDLE_BEFORE_PARK {
                s.parked.fetch_add(1, Ordering::SeqCst);
                // Re-checked after announcing the park: a job published in
                // between sees `parked > 0` and unparks this thread, whose
                // token then makes `park` return at once.
                while s.epoch.load(Ordering::SeqCst) == seen && !s.stop.load(Ordering::SeqCst) {
                    std::thread::park();
                }
                s.parked.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        seen = s.epoch.load(Ordering::SeqCst);
        let job = {
            let slot = lock(&s.job);
            let job = *slot;
            if job.is_some() {
                // Under the lock, so `for_each` either sees this helper busy
                // or has already withdrawn the job.
                s.busy.fetch_add(1, Ordering::SeqCst);
            }
            job
        };
        if let Some(job) = job {
            // SAFETY: `busy` counts this helper, so `for_each` keeps `f`
            // alive until the `fetch_sub` below.
            let f = unsafe { &*job.f };
            work(s, f, job.n);
            s.busy.fetch_sub(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_exactly_once_across_many_rounds() {
        for threads in [2, 3, 4] {
            let mut pool = RoundPool::new(threads).expect("threads start");
            for round in 0..2_000u64 {
                let mut items: Vec<(u64, u32)> = (0..(round % 37)).map(|i| (i * round, 0)).collect();
                pool.for_each(&mut items, &|it: &mut (u64, u32)| {
                    it.0 = it.0.wrapping_mul(3).wrapping_add(1);
                    it.1 += 1;
                });
                for (i, it) in items.iter().enumerate() {
                    assert_eq!(it.1, 1, "round {round} item {i} ran {} times", it.1);
                    assert_eq!(it.0, (i as u64 * round).wrapping_mul(3).wrapping_add(1));
                }
            }
        }
    }

    #[test]
    fn a_helper_parked_between_rounds_is_woken_for_the_next() {
        let mut pool = RoundPool::new(2).expect("threads start");
        let mut items = vec![0u32; 64];
        pool.for_each(&mut items, &|x: &mut u32| *x += 1);
        let waited = Instant::now();
        while pool.shared.parked.load(Ordering::SeqCst) == 0 && waited.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(IDLE_BEFORE_PARK);
        }
        assert_eq!(pool.shared.parked.load(Ordering::SeqCst), 1, "the idle helper parked");
        let seen_by = Mutex::new(std::collections::HashSet::new());
        let mut items = vec![0u32; 256];
        pool.for_each(&mut items, &|x: &mut u32| {
            *x += 1;
            std::thread::sleep(Duration::from_micros(200));
            lock(&seen_by).insert(std::thread::current().id());
        });
        assert!(items.iter().all(|&x| x == 1));
        assert_eq!(lock(&seen_by).len(), 2, "both threads took items after the park");
    }

    #[test]
    fn a_panicking_item_is_resumed_after_the_round_and_the_pool_still_works() {
        let mut pool = RoundPool::new(2).expect("threads start");
        let mut items: Vec<u32> = (0..100).collect();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.for_each(&mut items, &|x: &mut u32| {
                if *x == 57 {
                    panic!("item 57");
                }
                *x += 1000;
            })
        }));
        let msg = r.expect_err("the panic reaches the caller");
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"item 57"));
        assert_eq!(items.iter().filter(|&&x| x >= 1000).count(), 99, "every other item ran");
        let mut items = vec![1u32; 10];
        pool.for_each(&mut items, &|x: &mut u32| *x *= 2);
        assert_eq!(items, vec![2; 10]);
    }
}
