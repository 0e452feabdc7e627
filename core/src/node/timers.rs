//! The ES-10.1 timer table as `u64` monotonic-millisecond deadlines
//! (SPEC-NOTES 25: the spec's `u32` `millis()` wraps in 49.7 days, before
//! the 90-day heartbeat timeout).
//!
//! Each timer fires at most once per [`TimerTable::take_due`] call and is
//! re-armed one interval after the time it fired, not after its old
//! deadline, so a node that slept through several intervals does one
//! catch-up run instead of a burst.

/// The node's periodic timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Timer {
    /// Read the sensor (ES-10.2 4b).
    SensorRead,
    /// Broadcast a PRESENCE_PULSE (4c).
    PresencePulse,
    /// Update quorum sensing and λ (4d).
    QuorumUpdate,
    /// Epoch boundary (4e, ES-10.4).
    EpochTick,
    /// DAG and field garbage collection (4f).
    DagGc,
    /// Broadcast a HEARTBEAT (4g).
    Heartbeat,
    /// Persist critical state (4h).
    FlashFlush,
    /// Lifecycle timeouts of every record and of the node (4i, ES-10.5).
    StateTimeouts,
}

impl Timer {
    /// Every timer, in the order ES-10.2 runs them within one loop pass.
    pub const ALL: [Timer; 8] = [
        Timer::SensorRead,
        Timer::PresencePulse,
        Timer::QuorumUpdate,
        Timer::EpochTick,
        Timer::DagGc,
        Timer::Heartbeat,
        Timer::FlashFlush,
        Timer::StateTimeouts,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Timer intervals in ms; `Default` is ES-10.1. A zero interval disables
/// the timer (a Dust node has no presence pulse or epoch work).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TimerConfig {
    /// `TIMER_SENSOR_READ`, 5 000.
    pub sensor_read_ms: u64,
    /// `TIMER_PRESENCE_PULSE`, 10 000.
    pub presence_pulse_ms: u64,
    /// `TIMER_QUORUM_UPDATE`, 10 000.
    pub quorum_update_ms: u64,
    /// `TIMER_EPOCH_TICK`, 60 000.
    pub epoch_tick_ms: u64,
    /// `TIMER_DAG_GC`, 300 000.
    pub dag_gc_ms: u64,
    /// `TIMER_HEARTBEAT`, 30 000.
    pub heartbeat_ms: u64,
    /// `TIMER_FLASH_FLUSH`, 60 000.
    pub flash_flush_ms: u64,
    /// How often ES-10.5 timeouts are checked; the spec checks every loop
    /// pass, 1 s is far below the shortest timeout (300 s).
    pub state_timeouts_ms: u64,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            sensor_read_ms: 5_000,
            presence_pulse_ms: 10_000,
            quorum_update_ms: 10_000,
            epoch_tick_ms: 60_000,
            dag_gc_ms: 300_000,
            heartbeat_ms: 30_000,
            flash_flush_ms: 60_000,
            state_timeouts_ms: 1_000,
        }
    }
}

impl TimerConfig {
    /// The interval of `t`, 0 if disabled.
    pub fn interval(&self, t: Timer) -> u64 {
        match t {
            Timer::SensorRead => self.sensor_read_ms,
            Timer::PresencePulse => self.presence_pulse_ms,
            Timer::QuorumUpdate => self.quorum_update_ms,
            Timer::EpochTick => self.epoch_tick_ms,
            Timer::DagGc => self.dag_gc_ms,
            Timer::Heartbeat => self.heartbeat_ms,
            Timer::FlashFlush => self.flash_flush_ms,
            Timer::StateTimeouts => self.state_timeouts_ms,
        }
    }
}

/// Deadlines of the eight timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TimerTable {
    cfg: TimerConfig,
    deadline: [Option<u64>; 8],
}

impl TimerTable {
    /// Arms every enabled timer one interval after `now_ms`.
    pub fn new(cfg: TimerConfig, now_ms: u64) -> Self {
        let mut t = TimerTable { cfg, deadline: [None; 8] };
        for timer in Timer::ALL {
            t.rearm(timer, now_ms);
        }
        t
    }

    /// The intervals in force.
    pub fn config(&self) -> &TimerConfig {
        &self.cfg
    }

    /// Moves `t`'s deadline to `at_ms` (e.g. a jittered first pulse).
    pub fn set(&mut self, t: Timer, at_ms: u64) {
        if self.cfg.interval(t) > 0 {
            self.deadline[t.index()] = Some(at_ms);
        }
    }

    /// When `t` fires next, `None` if disabled.
    pub fn deadline(&self, t: Timer) -> Option<u64> {
        self.deadline[t.index()]
    }

    fn rearm(&mut self, t: Timer, now_ms: u64) {
        let iv = self.cfg.interval(t);
        self.deadline[t.index()] = (iv > 0).then(|| now_ms.saturating_add(iv));
    }

    /// Removes and re-arms the timers due at `now_ms`, in ES-10.2 order.
    pub fn take_due(&mut self, now_ms: u64) -> heapless::Vec<Timer, 8> {
        let mut due = heapless::Vec::new();
        for t in Timer::ALL {
            if self.deadline[t.index()].is_some_and(|d| d <= now_ms) {
                let _ = due.push(t);
                self.rearm(t, now_ms);
            }
        }
        due
    }

    /// The earliest deadline, `u64::MAX` when every timer is disabled.
    pub fn next_deadline(&self) -> u64 {
        self.deadline.iter().flatten().copied().min().unwrap_or(u64::MAX)
    }
}

/// Margin the [`SendPacer`] adds to each refill period, ms: covers the
/// whole-second rounding of the receivers' clocks and up to 2 s of skew.
pub const PACER_MARGIN_MS: u64 = 2_000;

/// The sender's mirror of the token bucket its neighbours keep for one of
/// its broadcast message types (ES-15.1): a node that sends more than the
/// limit only gets its frames dropped by every receiver, so it holds them
/// back instead. Same capacity as the receivers' bucket and a refill period
/// [`PACER_MARGIN_MS`] longer, so the mirror never has a token the
/// receivers' buckets lack (each receiver has refilled at least as often).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendPacer {
    cap: u16,
    period_ms: u64,
    tokens: u16,
    last_refill_ms: Option<u64>,
}

impl SendPacer {
    /// A full bucket of `cap` tokens refilled every `epoch_s` seconds
    /// (plus the margin).
    pub fn new(cap: u16, epoch_s: u32) -> Self {
        let period_ms = u64::from(epoch_s.max(1)) * 1000 + PACER_MARGIN_MS;
        SendPacer { cap, period_ms, tokens: cap, last_refill_ms: None }
    }

    /// Takes a token at `now_ms` if one is left; whole periods refill.
    pub fn try_send(&mut self, now_ms: u64) -> bool {
        let last = *self.last_refill_ms.get_or_insert(now_ms);
        let periods = now_ms.saturating_sub(last) / self.period_ms;
        if periods > 0 {
            let add = periods.saturating_mul(u64::from(self.cap));
            self.tokens = (u64::from(self.tokens).saturating_add(add)).min(u64::from(self.cap)) as u16;
            self.last_refill_ms = Some(last.saturating_add(periods.saturating_mul(self.period_ms)));
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guards::{msg, FrameMeta, GuardConfig, Guards};
    use crate::types::DeviceId;

    #[test]
    fn pacer_never_sends_what_a_receiver_would_drop() {
        // A receiver's guards, with its clock up to 2 s ahead or behind.
        for skew_s in [-2i64, 0, 2] {
            let mut rx: Guards<4, 8> = Guards::new(GuardConfig::default());
            let mut pacer = SendPacer::new(3, 60);
            let mut sent = 0;
            for ms in (0..1_800_000u64).step_by(250) {
                if pacer.try_send(ms) {
                    sent += 1;
                    let now = (1_700_000_000 + ms as i64 / 1000 + skew_s) as u32;
                    let meta = FrameMeta {
                        sender: DeviceId([1; 8]),
                        msg_type: msg::INFLAMMATION_QUERY,
                        seq: None,
                        timestamp: None,
                    };
                    let u = rx.precheck(meta, now).unwrap();
                    assert!(rx.admit_verified(u.signature_verified(), now).is_ok(), "query {sent} at {ms} ms dropped");
                }
            }
            // 3 per 62 s over 30 min.
            assert_eq!(sent, 3 * (1_800_000 / 62_000 + 1), "skew {skew_s}");
        }
    }

    #[test]
    fn default_intervals_are_es_10_1() {
        let c = TimerConfig::default();
        assert_eq!(c.sensor_read_ms, 5_000);
        assert_eq!(c.presence_pulse_ms, 10_000);
        assert_eq!(c.epoch_tick_ms, 60_000);
        assert_eq!(c.dag_gc_ms, 300_000);
        assert_eq!(c.heartbeat_ms, 30_000);
        assert_eq!(c.flash_flush_ms, 60_000);
        assert_eq!(c.quorum_update_ms, 10_000);
    }

    #[test]
    fn fires_once_per_call_and_rearms_from_now() {
        let mut t = TimerTable::new(TimerConfig::default(), 0);
        assert_eq!(t.next_deadline(), 1_000);
        assert!(t.take_due(999).is_empty());
        let due = t.take_due(5_000);
        assert_eq!(due.as_slice(), &[Timer::SensorRead, Timer::StateTimeouts]);
        assert_eq!(t.deadline(Timer::SensorRead), Some(10_000));
        // Slept 100 s: one catch-up run, re-armed from now.
        let due = t.take_due(100_000);
        assert!(due.contains(&Timer::EpochTick));
        assert_eq!(t.deadline(Timer::EpochTick), Some(160_000));
    }

    #[test]
    fn zero_interval_disables() {
        let cfg = TimerConfig { presence_pulse_ms: 0, ..TimerConfig::default() };
        let mut t = TimerTable::new(cfg, 0);
        assert_eq!(t.deadline(Timer::PresencePulse), None);
        t.set(Timer::PresencePulse, 5);
        assert_eq!(t.deadline(Timer::PresencePulse), None);
        assert!(!t.take_due(u64::MAX - 1).contains(&Timer::PresencePulse));
    }

    #[test]
    fn no_overflow_near_u64_max() {
        let mut t = TimerTable::new(TimerConfig::default(), u64::MAX - 10);
        assert_eq!(t.next_deadline(), u64::MAX);
        let due = t.take_due(u64::MAX);
        assert_eq!(due.len(), 8);
    }
}
