//! Set-up shared by the simulator's integration tests.

/// Runs `f` on a thread with a 256 MiB stack: a simulation builds its
/// ES-1.2 nodes (half a megabyte each) by value, which a test thread's
/// default stack cannot hold in debug builds.
pub fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(256 << 20).spawn(f).unwrap().join().unwrap()
}
