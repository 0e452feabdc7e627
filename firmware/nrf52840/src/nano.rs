//! The Nano role (ES-10, ES-12.2): the full node on the BLE advertising
//! bearer, Ed25519 from a stored seed, ES-14 persistence in the layout's
//! partitions. Listens whenever the node has nothing due.

use crate::ble::AdvBearer;
use crate::platform::{Clock, HwRng, TempSensor};
use embassy_time::Instant;
use heapless::Deque;
use krill_board::Persistence;
use krill_core::crypto::RealCrypto;
use krill_core::node::{Action, BoardNode};
use krill_core::persist::Flash;

/// `Persist*` writes at most this many profiles at once (the node's `N`).
pub const PROFILES: usize = 8;

/// The Nano run loop. Never returns.
pub async fn run<F: Flash>(
    node: &mut BoardNode<RealCrypto>,
    mut clock: Clock,
    mut rng: HwRng,
    mut temp: TempSensor,
    mut ble: AdvBearer,
    mut persist: Persistence<F, PROFILES>,
) -> ! {
    let mut queue: Deque<Action, 16> = Deque::new();
    let mut batch = [0u8; 4096];
    loop {
        let deadline = node.next_deadline().min(Clock::mono_ms().saturating_add(1_000));
        if let Some((frame, rssi)) = ble.listen(Instant::from_millis(deadline)).await {
            node.handle_frame(clock.now(), &frame.frame, rssi, 0, &mut |a| {
                let _ = queue.push_back(a);
            });
        }
        if node.next_deadline() <= Clock::mono_ms() {
            node.handle_timers(clock.now(), &mut rng, &mut |a| {
                let _ = queue.push_back(a);
            });
        }
        while let Some(action) = queue.pop_front() {
            if let Some(r) = persist.apply(node, &action) {
                if r.is_err() {
                    warn!("flash write failed ({} since boot)", persist.failures);
                }
                continue;
            }
            match action {
                Action::Broadcast(f) | Action::Unicast { frame: f, .. } => {
                    ble.send(&f).await;
                }
                Action::ReadSensor { quantity } => {
                    let reading = temp.read().await;
                    node.handle_reading(clock.now(), quantity, reading, &mut |a| {
                        let _ = queue.push_back(a);
                    });
                }
                Action::ClockOffset { offset_ms, .. } => clock.adjust(offset_ms),
                Action::SubmitBatch { .. } => {
                    // No Full-node link on this board: take it and drop it.
                    let _ = node.take_batch(&mut batch);
                }
                _ => {}
            }
        }
    }
}
