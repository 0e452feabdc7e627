//! Quorum sensing (ES-3.2): the SOLO / QUORUM / SWARM machine, the
//! neighbour table it counts, and the per-mode decay rate of ES-10.2 4d.
//!
//! Resolves SPEC-NOTES 1 (the neighbour-count EMA is kept as an `f32`
//! fraction and the 120 s transition interval is a configuration value, so
//! TV12 holds with 0 s and a second vector pins what 120 s really does) and
//! the neighbour part of SPEC-NOTES 33: a relayed pulse is not a neighbour,
//! a pulse not newer than the last one accepted from its sender is a replay,
//! a pulse outside the freshness window is refused, and a full table only
//! gives up dead entries, never a live one.
//!
//! All times are the receiver's synced clock (`Timestamp`), compared with
//! serial-number arithmetic so that the 2106 wrap is harmless.

use crate::types::{
    DeviceId, Timestamp, Weight, HYSTERESIS_DELTA, LAMBDA_DEFAULT, MAX_NEIGHBORS, PRESENCE_INTERVAL, THETA_HIGH,
    THETA_LOW,
};

/// EMA weight of the newest alive count (ES-3.2, α = 0.3).
pub const QUORUM_EMA_ALPHA: f32 = 0.3;
/// The spec's minimum time between mode changes, seconds (ES-3.2).
pub const SPEC_MIN_TRANSITION_INTERVAL: u32 = 120;
/// A neighbour is alive while last heard at most this long ago (ES-3.2).
pub const LIVENESS_WINDOW: u32 = 3 * PRESENCE_INTERVAL;

/// Smoothed count at or above which SOLO goes up to QUORUM (≥ 5).
pub const SOLO_TO_QUORUM: f32 = (THETA_LOW + HYSTERESIS_DELTA) as f32;
/// Smoothed count below which QUORUM falls back to SOLO (< 3).
pub const QUORUM_TO_SOLO: f32 = THETA_LOW as f32;
/// Smoothed count at or above which QUORUM goes up to SWARM (≥ 12).
pub const QUORUM_TO_SWARM: f32 = (THETA_HIGH + HYSTERESIS_DELTA) as f32;
/// Smoothed count below which SWARM falls back to QUORUM (< 8).
pub const SWARM_TO_QUORUM: f32 = (THETA_HIGH - HYSTERESIS_DELTA) as f32;

/// True when `a` is strictly later than `b` in serial-number order.
fn is_after(a: Timestamp, b: Timestamp) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Signed seconds from `then` to `now`, serial-number order.
fn elapsed(now: Timestamp, then: Timestamp) -> i64 {
    now.wrapping_sub(then) as i32 as i64
}

/// Density mode (ES-3.2); the byte is the PRESENCE_PULSE `mode` field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum QuorumMode {
    /// Fewer than 3 neighbours: alone.
    #[default]
    Solo = 0,
    /// 3 to 10 neighbours.
    Quorum = 1,
    /// More than 10 neighbours.
    Swarm = 2,
}

impl QuorumMode {
    /// Decodes the wire byte; `None` for anything but 0, 1, 2.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(QuorumMode::Solo),
            1 => Some(QuorumMode::Quorum),
            2 => Some(QuorumMode::Swarm),
            _ => None,
        }
    }

    /// The wire byte.
    pub fn to_u8(self) -> u8 {
        self as u8
    }

    /// Pheromone decay rate for this mode (ES-10.2 4d): a lone node forgets
    /// twice as fast, a dense swarm half as fast.
    pub fn lambda(self) -> f32 {
        match self {
            QuorumMode::Solo => LAMBDA_DEFAULT * 2.0,
            QuorumMode::Quorum => LAMBDA_DEFAULT,
            QuorumMode::Swarm => LAMBDA_DEFAULT * 0.5,
        }
    }

    /// The mode ES-3.2's thresholds lead to from `self` with a smoothed
    /// count of `count`, ignoring the rate limit. Moves one step at most.
    pub fn target(self, count: f32) -> Self {
        match self {
            QuorumMode::Solo if count >= SOLO_TO_QUORUM => QuorumMode::Quorum,
            QuorumMode::Quorum if count < QUORUM_TO_SOLO => QuorumMode::Solo,
            QuorumMode::Quorum if count >= QUORUM_TO_SWARM => QuorumMode::Swarm,
            QuorumMode::Swarm if count < SWARM_TO_QUORUM => QuorumMode::Quorum,
            m => m,
        }
    }
}

/// Tunables of quorum sensing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QuorumConfig {
    /// Minimum seconds between mode changes (spec 120; TV12 assumes 0).
    pub min_transition_interval: u32,
    /// A neighbour is alive while last heard at most this many seconds ago.
    pub liveness_window: u32,
    /// A pulse whose own timestamp is further than this from our clock is
    /// refused, so an old recording cannot bring a node back. `None` only
    /// while our clock is not yet synced (ES-10.2 phase 3 needs neighbours
    /// to sync from).
    pub pulse_window: Option<u32>,
}

impl QuorumConfig {
    /// The spec's values: 120 s interval, 30 s liveness, 30 s freshness.
    pub const SPEC: QuorumConfig = QuorumConfig {
        min_transition_interval: SPEC_MIN_TRANSITION_INTERVAL,
        liveness_window: LIVENESS_WINDOW,
        pulse_window: Some(LIVENESS_WINDOW),
    };
}

impl Default for QuorumConfig {
    fn default() -> Self {
        Self::SPEC
    }
}

/// The mode machine alone: EMA of the alive count plus rate-limited
/// transitions. [`QuorumState`] feeds it from a [`NeighborTable`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QuorumMachine {
    mode: QuorumMode,
    neighbor_count: f32,
    last_mode_change: Timestamp,
    min_transition_interval: u32,
}

impl QuorumMachine {
    /// A machine in SOLO with a count of 0. Boot counts as entering SOLO at
    /// `now`, so a node in a reboot loop cannot flap faster than the
    /// interval either.
    pub fn new(now: Timestamp, min_transition_interval: u32) -> Self {
        QuorumMachine { mode: QuorumMode::Solo, neighbor_count: 0.0, last_mode_change: now, min_transition_interval }
    }

    /// Current mode.
    pub fn mode(&self) -> QuorumMode {
        self.mode
    }

    /// Smoothed neighbour count, with its fraction (SPEC-NOTES 1).
    pub fn neighbor_count(&self) -> f32 {
        self.neighbor_count
    }

    /// The count as the PRESENCE_PULSE `neighbor_count` byte: rounded and
    /// saturated, never truncated.
    pub fn neighbor_count_u8(&self) -> u8 {
        libm::roundf(self.neighbor_count).clamp(0.0, 255.0) as u8
    }

    /// When the mode last changed (or the machine was created).
    pub fn last_mode_change(&self) -> Timestamp {
        self.last_mode_change
    }

    /// One ES-3.2 `update_quorum` step with `alive` live neighbours: EMA
    /// first (even while rate-limited), then at most one transition.
    /// Returns true when the mode changed.
    ///
    /// A clock that stepped backwards past the last change re-anchors the
    /// interval at `now` instead of reading as 136 years elapsed.
    pub fn step(&mut self, now: Timestamp, alive: usize) -> bool {
        let alive = alive.min(u16::MAX as usize) as f32;
        self.neighbor_count = QUORUM_EMA_ALPHA * alive + (1.0 - QUORUM_EMA_ALPHA) * self.neighbor_count;

        let since = elapsed(now, self.last_mode_change);
        if since < 0 {
            self.last_mode_change = now;
            return false;
        }
        if (since as u64) < self.min_transition_interval as u64 {
            return false;
        }
        let next = self.mode.target(self.neighbor_count);
        if next == self.mode {
            return false;
        }
        self.mode = next;
        self.last_mode_change = now;
        true
    }
}

/// A PRESENCE_PULSE as seen by the receiver: the signed, decoded fields plus
/// what the radio and the relay layer know about this copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Presence {
    /// Who sent the pulse (signature already checked).
    pub sender: DeviceId,
    /// The sender's own timestamp in the pulse (PRESENCE v2, SPEC-NOTES 33).
    pub sent_at: Timestamp,
    /// The mode the sender reports.
    pub mode: QuorumMode,
    /// The neighbour count the sender reports.
    pub neighbor_count: u8,
    /// The sender's declared transmit power in dBm (PRESENCE v2); `None`
    /// for a v1 pulse (SPEC-NOTES 34).
    pub tx_power: Option<i8>,
    /// Signal strength of this copy, dBm.
    pub rssi: i8,
    /// Relay hops this copy took; 0 = heard from the sender itself.
    pub hops: u8,
}

/// One neighbour (ES-3.2 `NeighborEntry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NeighborEntry {
    /// The neighbour.
    pub device_id: DeviceId,
    /// Our clock when its last accepted pulse arrived.
    pub last_seen: Timestamp,
    /// The sender timestamp of its last accepted pulse (replay guard).
    pub last_pulse: Timestamp,
    /// RSSI of its last direct pulse, dBm.
    pub rssi: i8,
    /// Its declared transmit power, if its pulses carry one.
    pub tx_power: Option<i8>,
    /// The mode it reports.
    pub mode: QuorumMode,
    /// The neighbour count it reports.
    pub reported_count: u8,
    /// OUR assessment of its immunological weight (SPEC-NOTES 7), never a
    /// value it claims.
    pub weight: Weight,
    /// Alive as of the last [`NeighborTable::prune`].
    pub alive: bool,
}

impl NeighborEntry {
    /// Alive at `now`: heard within `window` seconds.
    pub fn is_alive(&self, now: Timestamp, window: u32) -> bool {
        elapsed(now, self.last_seen) <= window as i64
    }
}

/// What an accepted pulse did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PulseAccepted {
    /// A new neighbour took a free slot.
    Inserted,
    /// A known neighbour was refreshed.
    Refreshed,
    /// A new neighbour took the slot of this dead one.
    Replaced(DeviceId),
}

/// Why a pulse changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PulseRejected {
    /// It came through a relay: the sender is not within radio range, and
    /// the RSSI is the relayer's (SPEC-NOTES 33).
    Relayed,
    /// Its timestamp is older than the freshness window: a recording.
    TooOld,
    /// Its timestamp is further ahead than the freshness window.
    FromFuture,
    /// Not newer than the last pulse accepted from this sender: a replay.
    Replayed,
    /// The table is full of live neighbours; none is pushed out.
    TableFull,
}

/// The neighbour table (ES-3.2), `N` entries (default `MAX_NEIGHBORS`).
///
/// Eviction: a new neighbour may take the slot of the dead entry heard
/// longest ago (ties: the smallest id); live entries are never evicted, so a flood of fresh ids
/// cannot push real neighbours out. A table full of live neighbours is
/// already far above the SWARM threshold, so refusing more loses nothing.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NeighborTable<const N: usize = MAX_NEIGHBORS> {
    entries: heapless::Vec<NeighborEntry, N>,
    liveness_window: u32,
    pulse_window: Option<u32>,
}

impl<const N: usize> Default for NeighborTable<N> {
    fn default() -> Self {
        Self::new(&QuorumConfig::SPEC)
    }
}

impl<const N: usize> NeighborTable<N> {
    /// An empty table using `cfg`'s windows.
    pub fn new(cfg: &QuorumConfig) -> Self {
        NeighborTable {
            entries: heapless::Vec::new(),
            liveness_window: cfg.liveness_window,
            pulse_window: cfg.pulse_window,
        }
    }

    /// Applies a verified pulse received at `now`; `weight` is our own
    /// current assessment of the sender.
    pub fn observe(&mut self, now: Timestamp, p: &Presence, weight: Weight) -> Result<PulseAccepted, PulseRejected> {
        if p.hops != 0 {
            return Err(PulseRejected::Relayed);
        }
        self.check_window(now, p.sent_at)?;
        let fresh = NeighborEntry {
            device_id: p.sender,
            last_seen: now,
            last_pulse: p.sent_at,
            rssi: p.rssi,
            tx_power: p.tx_power,
            mode: p.mode,
            reported_count: p.neighbor_count,
            weight,
            alive: true,
        };
        if let Some(e) = self.entries.iter_mut().find(|e| e.device_id == p.sender) {
            if !is_after(p.sent_at, e.last_pulse) {
                return Err(PulseRejected::Replayed);
            }
            *e = fresh;
            return Ok(PulseAccepted::Refreshed);
        }
        if self.entries.push(fresh).is_ok() {
            return Ok(PulseAccepted::Inserted);
        }
        let window = self.liveness_window;
        let victim = self
            .entries
            .iter_mut()
            .filter(|e| !e.is_alive(now, window))
            .max_by_key(|e| (now.wrapping_sub(e.last_seen), core::cmp::Reverse(e.device_id)));
        match victim {
            Some(slot) => {
                let gone = slot.device_id;
                *slot = fresh;
                Ok(PulseAccepted::Replaced(gone))
            }
            None => Err(PulseRejected::TableFull),
        }
    }

    /// Read-only, before a frame is verified or charged (SPEC-NOTES 33):
    /// whether a pulse or heartbeat `sender` timestamped `sent_at`, direct
    /// or relayed, can only be a recording: outside the freshness window,
    /// or strictly older than the last one accepted from `sender`. Equal
    /// timestamps pass: a relayed copy of the pulse just accepted, or a
    /// heartbeat sent in the pulse's second, is not a replay, and
    /// [`observe`](Self::observe) still refuses what it must.
    pub fn screen(&self, now: Timestamp, sender: &DeviceId, sent_at: Timestamp) -> Result<(), PulseRejected> {
        self.check_window(now, sent_at)?;
        match self.get(sender) {
            Some(e) if is_after(e.last_pulse, sent_at) => Err(PulseRejected::Replayed),
            _ => Ok(()),
        }
    }

    fn check_window(&self, now: Timestamp, sent_at: Timestamp) -> Result<(), PulseRejected> {
        if let Some(w) = self.pulse_window {
            let age = elapsed(now, sent_at);
            if age > w as i64 {
                return Err(PulseRejected::TooOld);
            }
            if age < -(w as i64) {
                return Err(PulseRejected::FromFuture);
            }
        }
        Ok(())
    }

    /// Recomputes every `alive` flag at `now` and returns the alive count.
    /// A `last_seen` ahead of `now` (our clock stepped back) is pulled back
    /// to `now`, so the entry dies one window later rather than never.
    pub fn prune(&mut self, now: Timestamp) -> usize {
        let window = self.liveness_window;
        let mut alive = 0;
        for e in self.entries.iter_mut() {
            if elapsed(now, e.last_seen) < 0 {
                e.last_seen = now;
            }
            e.alive = e.is_alive(now, window);
            alive += e.alive as usize;
        }
        alive
    }

    /// Live neighbours at `now`, without touching the flags.
    pub fn alive_count(&self, now: Timestamp) -> usize {
        self.entries.iter().filter(|e| e.is_alive(now, self.liveness_window)).count()
    }

    /// Drops a neighbour (DEATH_CERTIFICATE); returns its entry if known.
    pub fn remove(&mut self, id: &DeviceId) -> Option<NeighborEntry> {
        let at = self.entries.iter().position(|e| &e.device_id == id)?;
        Some(self.entries.swap_remove(at))
    }

    /// Sets our assessment of a neighbour's weight; false if unknown.
    pub fn set_weight(&mut self, id: &DeviceId, weight: Weight) -> bool {
        match self.entries.iter_mut().find(|e| &e.device_id == id) {
            Some(e) => {
                e.weight = weight;
                true
            }
            None => false,
        }
    }

    /// The entry for `id`, dead or alive.
    pub fn get(&self, id: &DeviceId) -> Option<&NeighborEntry> {
        self.entries.iter().find(|e| &e.device_id == id)
    }

    /// All entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &NeighborEntry> {
        self.entries.iter()
    }

    /// Entries held, dead or alive.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Quorum sensing state (ES-3.2): the table plus the machine.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QuorumState<const N: usize = MAX_NEIGHBORS> {
    machine: QuorumMachine,
    table: NeighborTable<N>,
}

impl<const N: usize> QuorumState<N> {
    /// A fresh SOLO state at `now`.
    pub fn new(now: Timestamp, cfg: &QuorumConfig) -> Self {
        QuorumState { machine: QuorumMachine::new(now, cfg.min_transition_interval), table: NeighborTable::new(cfg) }
    }

    /// Applies a verified pulse; see [`NeighborTable::observe`].
    pub fn observe(&mut self, now: Timestamp, p: &Presence, weight: Weight) -> Result<PulseAccepted, PulseRejected> {
        self.table.observe(now, p, weight)
    }

    /// See [`NeighborTable::screen`].
    pub fn screen(&self, now: Timestamp, sender: &DeviceId, sent_at: Timestamp) -> Result<(), PulseRejected> {
        self.table.screen(now, sender, sent_at)
    }

    /// Drops a neighbour that sent a DEATH_CERTIFICATE.
    pub fn remove(&mut self, id: &DeviceId) -> Option<NeighborEntry> {
        self.table.remove(id)
    }

    /// ES-3.2 `update_quorum` at `now`: prune, EMA, transition. Returns
    /// true when the mode changed.
    pub fn update(&mut self, now: Timestamp) -> bool {
        let alive = self.table.prune(now);
        self.machine.step(now, alive)
    }

    /// Current mode.
    pub fn mode(&self) -> QuorumMode {
        self.machine.mode()
    }

    /// Decay rate for the current mode (ES-10.2 4d).
    pub fn lambda(&self) -> f32 {
        self.machine.mode().lambda()
    }

    /// Smoothed neighbour count.
    pub fn neighbor_count(&self) -> f32 {
        self.machine.neighbor_count()
    }

    /// The machine.
    pub fn machine(&self) -> &QuorumMachine {
        &self.machine
    }

    /// The neighbour table.
    pub fn table(&self) -> &NeighborTable<N> {
        &self.table
    }

    /// The neighbour table, e.g. to set weights.
    pub fn table_mut(&mut self) -> &mut NeighborTable<N> {
        &mut self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn id(n: u8) -> DeviceId {
        DeviceId([n, 0, 0, 0, 0, 0, 0, 0])
    }

    fn pulse(n: u8, sent_at: Timestamp) -> Presence {
        Presence {
            sender: id(n),
            sent_at,
            mode: QuorumMode::Solo,
            neighbor_count: 0,
            tx_power: None,
            rssi: -60,
            hops: 0,
        }
    }

    const TV12: [(u32, usize, f32, QuorumMode); 15] = [
        (0, 0, 0.0, QuorumMode::Solo),
        (10, 1, 0.30, QuorumMode::Solo),
        (20, 3, 1.11, QuorumMode::Solo),
        (30, 5, 2.28, QuorumMode::Solo),
        (40, 7, 3.70, QuorumMode::Solo),
        (50, 10, 5.59, QuorumMode::Quorum),
        (60, 12, 7.51, QuorumMode::Quorum),
        (70, 15, 9.76, QuorumMode::Quorum),
        (80, 18, 12.23, QuorumMode::Swarm),
        (90, 10, 11.56, QuorumMode::Swarm),
        (100, 5, 9.59, QuorumMode::Swarm),
        (110, 3, 7.61, QuorumMode::Quorum),
        (120, 1, 5.63, QuorumMode::Quorum),
        (130, 0, 3.94, QuorumMode::Quorum),
        (140, 0, 2.76, QuorumMode::Solo),
    ];

    #[test]
    fn tv12_holds_with_zero_interval() {
        let mut m = QuorumMachine::new(0, 0);
        for (t, alive, count, mode) in TV12 {
            m.step(t, alive);
            assert!((m.neighbor_count() - count).abs() < 0.01, "t={t}");
            assert_eq!(m.mode(), mode, "t={t}");
        }
    }

    #[test]
    fn tv12_with_spec_interval_delays_every_transition() {
        let mut m = QuorumMachine::new(0, SPEC_MIN_TRANSITION_INTERVAL);
        let mut changes = Vec::new();
        for (t, alive, _, _) in TV12 {
            if m.step(t, alive) {
                changes.push((t, m.mode()));
            }
        }
        for t in (150..=250).step_by(10) {
            if m.step(t, 0) {
                changes.push((t, m.mode()));
            }
        }
        assert_eq!(changes, [(120, QuorumMode::Quorum), (240, QuorumMode::Solo)]);
    }

    #[test]
    fn count_byte_rounds_instead_of_truncating() {
        let mut m = QuorumMachine::new(0, 0);
        for (t, alive, _, _) in TV12.iter().take(6) {
            m.step(*t, *alive);
        }
        assert_eq!(m.neighbor_count_u8(), 6);
    }

    #[test]
    fn six_neighbours_reach_quorum_where_the_truncating_ema_stalls() {
        let mut truncated: u8 = 0;
        let mut m = QuorumMachine::new(0, 0);
        for t in 1..=50 {
            truncated = (0.3 * 6.0 + 0.7 * truncated as f32) as u8;
            m.step(t * 10, 6);
        }
        assert_eq!(truncated, 3);
        assert_eq!(m.mode(), QuorumMode::Quorum);
    }

    #[test]
    fn count_hovering_between_thresholds_does_not_oscillate() {
        let mut m = QuorumMachine::new(0, 0);
        for t in 0..40 {
            m.step(t * 10, 6);
        }
        assert_eq!(m.mode(), QuorumMode::Quorum);
        let mut flips = 0;
        for t in 40..200 {
            flips += m.step(t * 10, if t % 2 == 0 { 3 } else { 4 }) as u32;
        }
        assert_eq!(flips, 0);
        assert_eq!(m.mode(), QuorumMode::Quorum);
    }

    #[test]
    fn clock_stepping_back_reanchors_the_interval() {
        let mut m = QuorumMachine::new(1000, 120);
        assert!(!m.step(500, 20));
        assert_eq!(m.last_mode_change(), 500);
        assert!(!m.step(600, 20));
        assert!(m.step(620, 20));
    }

    #[test]
    fn lambda_follows_the_mode() {
        assert_eq!(QuorumMode::Solo.lambda(), 2.0 * LAMBDA_DEFAULT);
        assert_eq!(QuorumMode::Quorum.lambda(), LAMBDA_DEFAULT);
        assert_eq!(QuorumMode::Swarm.lambda(), 0.5 * LAMBDA_DEFAULT);
    }

    #[test]
    fn mode_bytes_round_trip_and_reject_unknown() {
        for b in 0..=255u8 {
            match QuorumMode::from_u8(b) {
                Some(m) => assert_eq!(m.to_u8(), b),
                None => assert!(b > 2),
            }
        }
    }

    #[test]
    fn relayed_pulse_is_not_a_neighbour() {
        let mut t: NeighborTable<4> = NeighborTable::default();
        let mut p = pulse(1, 100);
        p.hops = 1;
        assert_eq!(t.observe(100, &p, 255), Err(PulseRejected::Relayed));
        assert!(t.is_empty());
    }

    #[test]
    fn replayed_pulse_cannot_keep_a_dead_node_alive() {
        let mut t: NeighborTable<4> = NeighborTable::default();
        assert_eq!(t.observe(100, &pulse(1, 100), 255), Ok(PulseAccepted::Inserted));
        assert_eq!(t.observe(125, &pulse(1, 100), 255), Err(PulseRejected::Replayed));
        assert_eq!(t.observe(140, &pulse(1, 100), 255), Err(PulseRejected::TooOld));
        assert_eq!(t.prune(140), 0);
        t.remove(&id(1));
        assert_eq!(t.observe(140, &pulse(1, 100), 255), Err(PulseRejected::TooOld));
    }

    #[test]
    fn screen_refuses_only_what_observe_would_and_older() {
        let mut t: NeighborTable<4> = NeighborTable::default();
        assert_eq!(t.screen(100, &id(1), 100), Ok(()), "an unknown sender passes");
        t.observe(100, &pulse(1, 100), 255).unwrap();
        t.observe(110, &pulse(1, 110), 255).unwrap();
        assert_eq!(t.screen(112, &id(1), 100), Err(PulseRejected::Replayed));
        assert_eq!(t.screen(112, &id(1), 110), Ok(()), "same second: a relayed copy or a heartbeat");
        assert_eq!(t.screen(112, &id(1), 111), Ok(()));
        assert_eq!(t.screen(141, &id(1), 110), Err(PulseRejected::TooOld));
        assert_eq!(t.screen(100, &id(2), 131), Err(PulseRejected::FromFuture));
        let ids = [1, 2];
        for sender in ids {
            for sent in 95..145 {
                let seen = t.clone().observe(120, &pulse(sender, sent), 255);
                if seen == Err(PulseRejected::Replayed) || seen == Err(PulseRejected::TooOld) {
                    assert!(t.screen(120, &id(sender), sent).is_err() || sent == 110, "{sender} {sent}");
                }
                if t.screen(120, &id(sender), sent).is_err() {
                    assert!(seen.is_err(), "screen refused {sender} {sent}, which observe accepts");
                }
            }
        }
    }

    #[test]
    fn full_table_gives_up_only_dead_entries() {
        let mut t: NeighborTable<2> = NeighborTable::default();
        t.observe(0, &pulse(1, 0), 255).unwrap();
        t.observe(10, &pulse(2, 10), 255).unwrap();
        assert_eq!(t.observe(20, &pulse(3, 20), 255), Err(PulseRejected::TableFull));
        assert_eq!(t.observe(35, &pulse(3, 35), 255), Ok(PulseAccepted::Replaced(id(1))));
        assert!(t.get(&id(2)).is_some());
    }

    #[test]
    fn liveness_survives_the_u32_wrap() {
        let start = u32::MAX - 15;
        let mut q: QuorumState<4> = QuorumState::new(start, &QuorumConfig::SPEC);
        q.observe(start, &pulse(1, start), 255).unwrap();
        assert_eq!(q.table_mut().prune(start.wrapping_add(30)), 1);
        assert_eq!(q.table_mut().prune(start.wrapping_add(31)), 0);
        let later = start.wrapping_add(20);
        assert_eq!(q.observe(later, &pulse(1, later), 255), Ok(PulseAccepted::Refreshed));
        assert_eq!(q.table_mut().prune(later.wrapping_add(30)), 1);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Pulse { who: u8, skew: i8, hops: u8 },
        Replay { who: u8 },
        Advance(u8),
        Update,
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6, -40i8..40, prop_oneof![3 => Just(0u8), 1 => 1u8..3])
                .prop_map(|(who, skew, hops)| Op::Pulse { who, skew, hops }),
            1 => (0u8..6).prop_map(|who| Op::Replay { who }),
            3 => (0u8..40).prop_map(Op::Advance),
            3 => Just(Op::Update),
            1 => (0u8..6).prop_map(Op::Remove),
        ]
    }

    /// Naive reference: plain Vec, i64 time, the spec's rules written out.
    struct Model {
        now: i64,
        cap: usize,
        interval: i64,
        entries: Vec<(u8, i64, i64)>,
        count: f32,
        mode: QuorumMode,
        last_change: i64,
        last_sent: Vec<(u8, i64)>,
    }

    impl Model {
        fn pulse(&mut self, who: u8, sent: i64, hops: u8) -> Result<PulseAccepted, PulseRejected> {
            if hops > 0 {
                return Err(PulseRejected::Relayed);
            }
            if self.now - sent > 30 {
                return Err(PulseRejected::TooOld);
            }
            if sent - self.now > 30 {
                return Err(PulseRejected::FromFuture);
            }
            if let Some(e) = self.entries.iter_mut().find(|e| e.0 == who) {
                if sent <= e.2 {
                    return Err(PulseRejected::Replayed);
                }
                *e = (who, self.now, sent);
                return Ok(PulseAccepted::Refreshed);
            }
            if self.entries.len() < self.cap {
                self.entries.push((who, self.now, sent));
                return Ok(PulseAccepted::Inserted);
            }
            let now = self.now;
            let mut dead: Vec<&mut (u8, i64, i64)> = self.entries.iter_mut().filter(|e| now - e.1 > 30).collect();
            dead.sort_by_key(|e| (e.1, e.0));
            match dead.into_iter().next() {
                Some(e) => {
                    let gone = e.0;
                    *e = (who, now, sent);
                    Ok(PulseAccepted::Replaced(id(gone)))
                }
                None => Err(PulseRejected::TableFull),
            }
        }

        fn update(&mut self) -> bool {
            let alive = self.entries.iter().filter(|e| self.now - e.1 <= 30).count();
            self.count = 0.3 * alive as f32 + 0.7 * self.count;
            if self.now - self.last_change < self.interval {
                return false;
            }
            let c = self.count;
            let next = match self.mode {
                QuorumMode::Solo if c >= 5.0 => QuorumMode::Quorum,
                QuorumMode::Quorum if c < 3.0 => QuorumMode::Solo,
                QuorumMode::Quorum if c >= 12.0 => QuorumMode::Swarm,
                QuorumMode::Swarm if c < 8.0 => QuorumMode::Quorum,
                m => m,
            };
            if next == self.mode {
                return false;
            }
            self.mode = next;
            self.last_change = self.now;
            true
        }
    }

    proptest! {
        #[test]
        fn machine_and_table_match_the_reference_model(
            start in any::<u32>(),
            interval in prop_oneof![Just(0u32), Just(120u32), 0u32..200],
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let cfg = QuorumConfig { min_transition_interval: interval, ..QuorumConfig::SPEC };
            let mut real: QuorumState<4> = QuorumState::new(start, &cfg);
            let mut model = Model {
                now: 0, cap: 4, interval: interval as i64, entries: Vec::new(),
                count: 0.0, mode: QuorumMode::Solo, last_change: 0, last_sent: Vec::new(),
            };
            let at = |t: i64| start.wrapping_add(t as u32);
            for op in ops {
                match op {
                    Op::Pulse { who, skew, hops } => {
                        let sent = model.now + skew as i64;
                        let got = real.observe(at(model.now), &Presence { hops, ..pulse(who, at(sent)) }, 200);
                        prop_assert_eq!(got, model.pulse(who, sent, hops));
                        model.last_sent.retain(|s| s.0 != who);
                        model.last_sent.push((who, sent));
                    }
                    Op::Replay { who } => {
                        if let Some(&(_, sent)) = model.last_sent.iter().find(|s| s.0 == who) {
                            let got = real.observe(at(model.now), &pulse(who, at(sent)), 200);
                            prop_assert_eq!(got, model.pulse(who, sent, 0));
                        }
                    }
                    Op::Advance(dt) => model.now += dt as i64,
                    Op::Update => {
                        prop_assert_eq!(real.update(at(model.now)), model.update());
                    }
                    Op::Remove(who) => {
                        let had = model.entries.iter().any(|e| e.0 == who);
                        model.entries.retain(|e| e.0 != who);
                        prop_assert_eq!(real.remove(&id(who)).is_some(), had);
                    }
                }
                prop_assert_eq!(real.mode(), model.mode);
                prop_assert!((real.neighbor_count() - model.count).abs() < 1e-4);
                prop_assert!(real.table().len() <= 4);
                prop_assert_eq!(
                    real.table().alive_count(at(model.now)),
                    model.entries.iter().filter(|e| model.now - e.1 <= 30).count()
                );
            }
        }

        #[test]
        fn count_stays_within_the_alive_range(alive in proptest::collection::vec(0usize..40, 1..100)) {
            let mut m = QuorumMachine::new(0, 0);
            let max = *alive.iter().max().unwrap_or(&0) as f32;
            for (i, a) in alive.iter().enumerate() {
                m.step(i as u32 * 10, *a);
                prop_assert!(m.neighbor_count() >= 0.0 && m.neighbor_count() <= max + 1e-3);
            }
        }
    }
}
