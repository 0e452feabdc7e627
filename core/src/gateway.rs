//! LPWAN gateway trust (ES-16): confidence levels, the per-gateway anomaly
//! profile a Nano keeps, cross-gateway corroboration of Dust traces, and
//! the gateway's own registry of Dust devices.
//!
//! Resolves SPEC-NOTES 38 (the gateway assigns unique short ids instead of
//! hoping 16 bits never collide: with 1000 devices a collision is 99.95 %
//! likely, see [`short_id_collision_probability`]) and the gateway part of
//! SPEC-NOTES 21: every wrapped trace names its gateway, each Dust device's
//! frame counter must increase, and the registry keeps the AES key and
//! takes the MAC check as a parameter so the crypto layer can plug in
//! AES-CMAC without the registry changing. SPEC-NOTES 28: the confidence
//! computed here is meant to scale the pheromone weight; applying it is
//! the field's job.

use crate::types::{Confidence, DeviceId, Reading, Timestamp};
use core::fmt;

/// Device signed with its own Ed25519 key (Nano nodes).
pub const DIRECT_SIGNED: Confidence = 255;
/// Gateway vouches and at least two gateways agree.
pub const GATEWAY_VOUCHED_OK: Confidence = 180;
/// A single gateway vouches (default for LPWAN).
pub const GATEWAY_VOUCHED_1: Confidence = 128;
/// Gateway vouches but something is off (disagreement, anomaly rate > 5 %).
pub const GATEWAY_UNVERIFIED: Confidence = 64;
/// Gateway under investigation (anomaly rate > 20 %).
pub const GATEWAY_SUSPECT: Confidence = 0;

/// Share of the old anomaly rate kept per trace (ES-16.3).
pub const ANOMALY_EMA_KEEP: f32 = 0.99;
/// Share of the newest trace (ES-16.3).
pub const ANOMALY_EMA_GAIN: f32 = 0.01;
/// Anomaly rate above which a gateway is suspect.
pub const SUSPECT_RATE: f32 = 0.20;
/// Anomaly rate above which a gateway is unverified.
pub const UNVERIFIED_RATE: f32 = 0.05;
/// Corroboration younger than this, seconds, earns VOUCHED_OK.
pub const CROSS_VALIDATION_WINDOW: u32 = 3600;
/// Gateways a node keeps a profile of (ES-16.3); a fifth one's traces get
/// the single-gateway default [`GATEWAY_VOUCHED_1`] unprofiled.
pub const MONITORED_GATEWAYS: usize = 4;
/// Seconds within which two gateways' copies of one Dust transmission are
/// paired: LoRa airtime plus a BLE hop or two is a few seconds.
pub const CORROBORATION_WINDOW_S: u32 = 30;
/// Dust devices listed per gateway profile (ES-16.3).
pub const MAX_DUST_PER_GATEWAY: usize = 256;
/// Values a 2-byte `sender_id_short` can take.
pub const SHORT_ID_SPACE: u32 = 1 << 16;

/// Signed seconds from `then` to `now`, serial-number order.
fn elapsed(now: Timestamp, then: Timestamp) -> i64 {
    now.wrapping_sub(then) as i32 as i64
}

/// Why a gateway-profile operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum GatewayError {
    /// No profile exists for the gateway that signed the trace.
    UnknownGateway,
    /// The gateway vouches for a Dust device it never declared: a
    /// compromised gateway must not speak for every device (ES-16.1).
    NotServed,
    /// The profile table holds as many gateways as it can.
    GatewayTableFull,
    /// The gateway already has a profile.
    DuplicateGateway,
    /// The profile's Dust list is full.
    DustListFull,
    /// The Dust device is already listed for this gateway.
    DuplicateDust,
}

/// What a Nano knows about one gateway (ES-16.3 `GatewayProfile`).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GatewayProfile<const D: usize = MAX_DUST_PER_GATEWAY> {
    gateway_id: DeviceId,
    dust_devices: heapless::Vec<DeviceId, D>,
    traces_received: u32,
    anomalies_flagged: u32,
    anomaly_rate: f32,
    last_cross_validated: Option<Timestamp>,
}

impl<const D: usize> GatewayProfile<D> {
    /// A fresh profile: no traces, no anomalies, never corroborated.
    pub fn new(gateway_id: DeviceId) -> Self {
        GatewayProfile {
            gateway_id,
            dust_devices: heapless::Vec::new(),
            traces_received: 0,
            anomalies_flagged: 0,
            anomaly_rate: 0.0,
            last_cross_validated: None,
        }
    }

    /// The gateway.
    pub fn gateway_id(&self) -> DeviceId {
        self.gateway_id
    }

    /// Declares a Dust device as served by this gateway.
    pub fn add_dust(&mut self, dust: DeviceId) -> Result<(), GatewayError> {
        if self.serves(&dust) {
            return Err(GatewayError::DuplicateDust);
        }
        self.dust_devices.push(dust).map_err(|_| GatewayError::DustListFull)
    }

    /// True when `dust` is declared for this gateway.
    pub fn serves(&self, dust: &DeviceId) -> bool {
        self.dust_devices.contains(dust)
    }

    /// The declared Dust devices.
    pub fn dust_devices(&self) -> &[DeviceId] {
        &self.dust_devices
    }

    /// Traces seen via this gateway (saturating).
    pub fn traces_received(&self) -> u32 {
        self.traces_received
    }

    /// Of those, the anomalous ones (saturating).
    pub fn anomalies_flagged(&self) -> u32 {
        self.anomalies_flagged
    }

    /// EMA of the anomaly indicator.
    pub fn anomaly_rate(&self) -> f32 {
        self.anomaly_rate
    }

    /// When another gateway last agreed with this one.
    pub fn last_cross_validated(&self) -> Option<Timestamp> {
        self.last_cross_validated
    }

    /// Records a corroboration at `now`.
    pub fn mark_cross_validated(&mut self, now: Timestamp) {
        self.last_cross_validated = Some(now);
    }

    /// The confidence ES-16.3 assigns at `now` from the current state,
    /// without counting a trace. A corroboration time ahead of `now` (our
    /// clock stepped back) does not count as recent.
    pub fn confidence(&self, now: Timestamp) -> Confidence {
        if self.anomaly_rate > SUSPECT_RATE {
            GATEWAY_SUSPECT
        } else if self.anomaly_rate > UNVERIFIED_RATE {
            GATEWAY_UNVERIFIED
        } else if self.last_cross_validated.is_some_and(|t| {
            let age = elapsed(now, t);
            (0..CROSS_VALIDATION_WINDOW as i64).contains(&age)
        }) {
            GATEWAY_VOUCHED_OK
        } else {
            GATEWAY_VOUCHED_1
        }
    }

    /// ES-16.3 `evaluate_gateway_trust`: counts one trace, updates the EMA
    /// (0.99 old, 0.01 new), and returns the confidence for it.
    pub fn evaluate_gateway_trust(&mut self, now: Timestamp, anomalous: bool) -> Confidence {
        self.traces_received = self.traces_received.saturating_add(1);
        if anomalous {
            self.anomalies_flagged = self.anomalies_flagged.saturating_add(1);
        }
        let instant = if anomalous { 1.0 } else { 0.0 };
        self.anomaly_rate = ANOMALY_EMA_KEEP * self.anomaly_rate + ANOMALY_EMA_GAIN * instant;
        self.confidence(now)
    }

    /// Charges one anomaly without counting a trace: another gateway's
    /// copy of a transmission this gateway relayed carries a different
    /// reading (ES-16.3 "gateways disagree"), so the copy this gateway sent,
    /// already counted as clean, turns out to be one side of a lie. The EMA
    /// takes the step an anomalous trace would.
    pub fn record_disagreement(&mut self) {
        self.anomalies_flagged = self.anomalies_flagged.saturating_add(1);
        self.anomaly_rate = ANOMALY_EMA_KEEP * self.anomaly_rate + ANOMALY_EMA_GAIN;
    }
}

/// A Dust trace as a gateway wrapped it. It names the gateway (SPEC-NOTES
/// 21) so a verifier can find the signing key and a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GatewayTrace {
    /// The gateway that wrapped and signed it.
    pub gateway: DeviceId,
    /// The Dust device it speaks for.
    pub device: DeviceId,
    /// The Dust device's frame counter (one per transmission).
    pub frame_counter: u32,
    /// The reading.
    pub reading: Reading,
    /// The gateway's receive time.
    pub received_at: Timestamp,
}

/// What cross-gateway corroboration made of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CrossCheck {
    /// First copy of this transmission seen here; nothing to compare.
    First,
    /// The same gateway sent the same transmission again, unchanged.
    Repeat,
    /// Another gateway relayed the same transmission with the same reading.
    Agree {
        /// The gateway seen first.
        first: DeviceId,
        /// The gateway of this trace.
        second: DeviceId,
    },
    /// Two copies of one transmission carry different readings: one of the
    /// gateways lies (or one gateway contradicts itself, `first == second`).
    Disagree {
        /// The gateway seen first.
        first: DeviceId,
        /// The gateway of this trace.
        second: DeviceId,
    },
}

impl CrossCheck {
    /// The confidence the comparison alone implies (ES-16.3), if any.
    pub fn confidence(&self) -> Option<Confidence> {
        match self {
            CrossCheck::Agree { .. } => Some(GATEWAY_VOUCHED_OK),
            CrossCheck::Disagree { .. } => Some(GATEWAY_UNVERIFIED),
            CrossCheck::First | CrossCheck::Repeat => None,
        }
    }

    /// The gateways to put under inflammation, if the copies disagree.
    pub fn suspects(&self) -> Option<[DeviceId; 2]> {
        match self {
            CrossCheck::Disagree { first, second } => Some([*first, *second]),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct Sighting {
    device: DeviceId,
    frame_counter: u32,
    reading: Reading,
    gateway: DeviceId,
    seen_at: Timestamp,
}

/// Recent Dust transmissions, `C` at most, so that a second gateway's copy
/// of the same transmission (same device and frame counter) can be
/// compared with the first. Copies further apart than `window` seconds are
/// not paired; when full, the oldest sighting makes room (losing a chance
/// to corroborate, never creating a false verdict).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Corroborator<const C: usize = 32> {
    pending: heapless::Vec<Sighting, C>,
    window: u32,
}

impl<const C: usize> Corroborator<C> {
    /// Pairs copies at most `window` seconds apart.
    pub fn new(window: u32) -> Self {
        Corroborator { pending: heapless::Vec::new(), window }
    }

    /// Sightings held.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Compares `t` with the earlier copy of the same transmission, if any,
    /// and remembers it otherwise.
    pub fn observe(&mut self, now: Timestamp, t: &GatewayTrace) -> CrossCheck {
        let window = self.window as i64;
        self.pending.retain(|s| (0..=window).contains(&elapsed(now, s.seen_at)));
        if let Some(s) = self.pending.iter().find(|s| s.device == t.device && s.frame_counter == t.frame_counter) {
            let (first, second) = (s.gateway, t.gateway);
            return match (s.reading == t.reading, first == second) {
                (true, true) => CrossCheck::Repeat,
                (true, false) => CrossCheck::Agree { first, second },
                (false, _) => CrossCheck::Disagree { first, second },
            };
        }
        let new = Sighting {
            device: t.device,
            frame_counter: t.frame_counter,
            reading: t.reading,
            gateway: t.gateway,
            seen_at: now,
        };
        if let Err(new) = self.pending.push(new) {
            let oldest = self.pending.iter_mut().max_by_key(|s| now.wrapping_sub(s.seen_at));
            if let Some(slot) = oldest {
                *slot = new;
            }
        }
        CrossCheck::First
    }
}

/// What a Nano concludes about one gateway-wrapped trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TraceVerdict {
    /// Confidence to attach to the trace.
    pub confidence: Confidence,
    /// What corroboration found; [`CrossCheck::suspects`] names gateways
    /// for the immune side to act on.
    pub cross: CrossCheck,
}

/// All gateway profiles of a Nano (`G` gateways of `D` Dust devices each)
/// plus the corroboration table (`C` sightings).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GatewayMonitor<const G: usize = 4, const D: usize = MAX_DUST_PER_GATEWAY, const C: usize = 32> {
    profiles: heapless::Vec<GatewayProfile<D>, G>,
    corroborator: Corroborator<C>,
}

impl<const G: usize, const D: usize, const C: usize> GatewayMonitor<G, D, C> {
    /// No gateways yet; copies at most `window` seconds apart are paired.
    pub fn new(window: u32) -> Self {
        GatewayMonitor { profiles: heapless::Vec::new(), corroborator: Corroborator::new(window) }
    }

    /// Creates the profile of a newly recognised gateway (ES-16.4 step 3).
    pub fn add_gateway(&mut self, id: DeviceId) -> Result<&mut GatewayProfile<D>, GatewayError> {
        if self.profile(&id).is_some() {
            return Err(GatewayError::DuplicateGateway);
        }
        self.profiles.push(GatewayProfile::new(id)).map_err(|_| GatewayError::GatewayTableFull)?;
        self.profiles.last_mut().ok_or(GatewayError::GatewayTableFull)
    }

    /// The profile of `id`.
    pub fn profile(&self, id: &DeviceId) -> Option<&GatewayProfile<D>> {
        self.profiles.iter().find(|p| &p.gateway_id == id)
    }

    /// The profile of `id`, mutable (e.g. to declare Dust devices).
    pub fn profile_mut(&mut self, id: &DeviceId) -> Option<&mut GatewayProfile<D>> {
        self.profiles.iter_mut().find(|p| &p.gateway_id == id)
    }

    /// Every profile, in the order the gateways were recognised.
    pub fn profiles(&self) -> &[GatewayProfile<D>] {
        &self.profiles
    }

    /// The profile of `id`, created if there is none yet (ES-16.4 step 3
    /// for a node that learns its gateways from the traces they vouch for).
    pub fn ensure_gateway(&mut self, id: DeviceId) -> Result<&mut GatewayProfile<D>, GatewayError> {
        match self.profiles.iter().position(|p| p.gateway_id == id) {
            Some(i) => self.profiles.get_mut(i).ok_or(GatewayError::UnknownGateway),
            None => self.add_gateway(id),
        }
    }

    /// ES-16.3 cross-gateway validation of a trace the caller has already
    /// admitted (its own table says `t.gateway` serves `t.device`): the
    /// gateway's profile is created if needed and lists the device while it
    /// has room. The trace is compared with the earlier copy of the same
    /// transmission: an agreement marks both gateways cross-validated, a
    /// disagreement charges each of them one anomaly
    /// ([`GatewayProfile::record_disagreement`], once if it is the same
    /// gateway). The trace itself is not counted; see [`Self::evaluate`].
    pub fn corroborate(&mut self, now: Timestamp, t: &GatewayTrace) -> Result<CrossCheck, GatewayError> {
        let p = self.ensure_gateway(t.gateway)?;
        if !p.serves(&t.device) {
            // The list is informational (ES-16.3); a full one costs nothing.
            let _ = p.add_dust(t.device);
        }
        let cross = self.corroborator.observe(now, t);
        match cross {
            CrossCheck::Agree { first, second } => {
                for g in [first, second] {
                    if let Some(p) = self.profile_mut(&g) {
                        p.mark_cross_validated(now);
                    }
                }
            }
            CrossCheck::Disagree { first, second } => {
                let others = (second != first).then_some(second);
                for g in core::iter::once(first).chain(others) {
                    if let Some(p) = self.profile_mut(&g) {
                        p.record_disagreement();
                    }
                }
            }
            CrossCheck::First | CrossCheck::Repeat => {}
        }
        Ok(cross)
    }

    /// Counts one trace via `gateway` (ES-16.3 `evaluate_gateway_trust`)
    /// and returns the gateway's confidence before and after it, so a
    /// caller can tell when a gateway changes trust level.
    pub fn evaluate(
        &mut self,
        now: Timestamp,
        gateway: DeviceId,
        anomalous: bool,
    ) -> Result<(Confidence, Confidence), GatewayError> {
        let p = self.profile_mut(&gateway).ok_or(GatewayError::UnknownGateway)?;
        let before = p.confidence(now);
        Ok((before, p.evaluate_gateway_trust(now, anomalous)))
    }

    /// Handles one verified gateway trace at `now`; `anomalous` is what the
    /// immune checks said about it. Corroboration runs first, and an
    /// agreement marks both gateways before the confidence is read, so the
    /// agreeing trace itself earns VOUCHED_OK; a disagreement caps the
    /// confidence at UNVERIFIED (and has charged both gateways one
    /// anomaly). A high anomaly rate still wins.
    pub fn on_trace(
        &mut self,
        now: Timestamp,
        t: &GatewayTrace,
        anomalous: bool,
    ) -> Result<TraceVerdict, GatewayError> {
        let served = self.profile(&t.gateway).ok_or(GatewayError::UnknownGateway)?.serves(&t.device);
        if !served {
            return Err(GatewayError::NotServed);
        }
        let cross = self.corroborate(now, t)?;
        let (_, mut confidence) = self.evaluate(now, t.gateway, anomalous)?;
        if let CrossCheck::Disagree { .. } = cross {
            confidence = confidence.min(GATEWAY_UNVERIFIED);
        }
        Ok(TraceVerdict { confidence, cross })
    }
}

/// The confidence a monitor gives a vouched trace: its own figure for the
/// gateway ([`GatewayMonitor::evaluate`]), except that a gateway claiming
/// less than [`GATEWAY_VOUCHED_1`] (it saw something off itself: a CRC
/// failure, a timing anomaly, ES-16.2) is believed. A claim at or above
/// VOUCHED_1 is not a cap: a gateway cannot know that another one
/// corroborated it, so its claim never exceeds VOUCHED_1 and would forbid
/// VOUCHED_OK.
pub fn vouched_confidence(assessed: Confidence, claimed: Confidence) -> Confidence {
    if claimed < GATEWAY_VOUCHED_1 {
        assessed.min(claimed)
    } else {
        assessed
    }
}

/// Accepted uplinks that pay for one downlink (ES-12.4 "max 1 downlink per
/// 10 uplinks").
pub const UPLINKS_PER_DOWNLINK: u16 = 10;
/// Most downlink credit a gateway saves up: two downlinks' worth, so a quiet
/// spell does not buy a burst.
pub const DOWNLINK_CREDIT_CAP: u16 = 2 * UPLINKS_PER_DOWNLINK;

/// A gateway's REJECTION_NOTICE downlinks to its Dust devices (ES-12.4,
/// ES-10.6 step 4), `P` devices at a time.
///
/// A Dust node listens only right after its own uplink (ES-10.6:
/// `recv_with_timeout(500)` after `send`), so a rejection is *queued* and
/// the notice goes out in answer to the device's next accepted uplink.
/// It is sent again after every later uplink the budget allows, until the
/// device falls silent (a quarantined Dust node sends nothing) or the
/// entry expires: a lost downlink is repaired without any acknowledgement.
/// The budget is ES-12.4's: every accepted uplink, from any device, earns
/// one credit (at most [`DOWNLINK_CREDIT_CAP`]), a downlink costs
/// [`UPLINKS_PER_DOWNLINK`].
///
/// Downlink counters are `max(last + 1, now)` in Unix seconds: they
/// increase across reboots of the gateway (with a synced clock) and stay
/// close between gateways serving the same device, whose Dust node accepts
/// only increasing counters from all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct DownlinkPlanner<const P: usize> {
    pending: heapless::Vec<(DeviceId, u64), P>,
    notices: heapless::Vec<(DeviceId, DeviceId, u64), P>,
    credits: u16,
    last_counter: u32,
}

impl<const P: usize> Default for DownlinkPlanner<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const P: usize> DownlinkPlanner<P> {
    /// Nothing queued, no credit.
    pub fn new() -> Self {
        DownlinkPlanner { pending: heapless::Vec::new(), notices: heapless::Vec::new(), credits: 0, last_counter: 0 }
    }

    /// Queues a rejection of `device` decided at `now_ms`; false if it was
    /// queued already or the queue is full.
    pub fn queue(&mut self, device: DeviceId, now_ms: u64) -> bool {
        if self.is_pending(&device) {
            return false;
        }
        self.pending.push((device, now_ms)).is_ok()
    }

    /// True while a rejection of `device` is queued.
    pub fn is_pending(&self, device: &DeviceId) -> bool {
        self.pending.iter().any(|(d, _)| d == device)
    }

    /// Forgets everything about `device` (its rejection ended, it died).
    pub fn cancel(&mut self, device: &DeviceId) {
        self.pending.retain(|(d, _)| d != device);
        self.notices.retain(|(d, _, _)| d != device);
    }

    /// Drops rejections queued more than `lifetime_ms` ago.
    pub fn expire(&mut self, now_ms: u64, lifetime_ms: u64) {
        self.pending.retain(|(_, at)| now_ms.saturating_sub(*at) < lifetime_ms);
    }

    /// An uplink was accepted: one credit.
    pub fn earn(&mut self) {
        self.credits = self.credits.saturating_add(1).min(DOWNLINK_CREDIT_CAP);
    }

    /// Credit saved, in uplinks.
    pub fn credits(&self) -> u16 {
        self.credits
    }

    /// If a rejection of `device` is queued and the budget allows, spends
    /// the credit and returns the counter for the downlink (Unix seconds
    /// `now_s`, above the last one).
    pub fn take(&mut self, device: &DeviceId, now_s: Timestamp) -> Option<u32> {
        if !self.is_pending(device) || self.credits < UPLINKS_PER_DOWNLINK {
            return None;
        }
        let counter = self.last_counter.checked_add(1)?.max(now_s);
        self.credits -= UPLINKS_PER_DOWNLINK;
        self.last_counter = counter;
        Some(counter)
    }

    /// Distinct senders of the notices about `device` held now.
    pub fn notices_about(&self, device: &DeviceId) -> usize {
        self.notices.iter().filter(|(d, _, _)| d == device).count()
    }

    /// Records `by`'s REJECTION_NOTICE about `device` at `now_ms`, keeping
    /// notices younger than `window_ms`; returns the distinct senders about
    /// `device`. When full, the oldest notice makes room.
    pub fn add_notice(&mut self, device: DeviceId, by: DeviceId, now_ms: u64, window_ms: u64) -> usize {
        self.notices.retain(|(_, _, at)| now_ms.saturating_sub(*at) <= window_ms);
        if let Some(e) = self.notices.iter_mut().find(|(d, b, _)| *d == device && *b == by) {
            e.2 = now_ms;
        } else if let Err(new) = self.notices.push((device, by, now_ms)) {
            if let Some(e) = self.notices.iter_mut().min_by_key(|(_, _, at)| *at) {
                *e = new;
            }
        }
        self.notices.iter().filter(|(d, _, _)| *d == device).count()
    }
}

/// A Dust device's AES-128 key. `Debug` does not print it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DustKey(pub [u8; 16]);

impl fmt::Debug for DustKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DustKey(..)")
    }
}

/// One registered Dust device (ES-13.3 table, plus the frame counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DustEntry {
    /// Its short id on the LoRa link.
    pub short_id: u16,
    /// Its full identity.
    pub device_id: DeviceId,
    /// Its AES-128 key, for the frame MAC.
    pub key: DustKey,
    /// The highest frame counter accepted so far.
    pub last_counter: Option<u32>,
}

/// Why a Dust device could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RegistryError {
    /// The table holds as many devices as it can.
    TableFull,
    /// Every short id in the registry's range is taken.
    IdSpaceExhausted,
    /// The device is already registered (under another short id).
    DuplicateDevice,
    /// The requested short id belongs to another device.
    ShortIdTaken,
}

/// Why an uplink frame was not wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum FrameError {
    /// No device holds this short id here.
    UnknownShortId,
    /// The counter is not above the last accepted one: a replay (or a
    /// device whose counter ran out and must be re-keyed).
    Replay,
    /// The MAC check given by the caller failed; the counter is unchanged.
    BadMac,
}

/// The fields of a Dust uplink the registry needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DustFrame {
    /// Sender's short id.
    pub short_id: u16,
    /// Sender's frame counter.
    pub frame_counter: u32,
    /// The reading.
    pub reading: Reading,
}

/// A gateway's Dust devices (ES-13.3, ES-16.4), `N` at most, kept sorted by
/// short id. The gateway ASSIGNS short ids (SPEC-NOTES 38): the smallest
/// free one in its range, so no two devices ever share one. Gateways that
/// serve the same zone register each device under the same short id with
/// [`DustRegistry::register_as`], so either can receive it.
#[derive(Clone, Debug, PartialEq)]
pub struct DustRegistry<const N: usize = 1024> {
    gateway_id: DeviceId,
    first_id: u16,
    last_id: u16,
    entries: heapless::Vec<DustEntry, N>,
}

impl<const N: usize> DustRegistry<N> {
    /// A registry assigning from the whole 16-bit space.
    pub fn new(gateway_id: DeviceId) -> Self {
        Self::with_id_range(gateway_id, 0, u16::MAX)
    }

    /// A registry assigning short ids in `first..=last` only (e.g. one
    /// block per gateway). An empty range assigns nothing.
    pub fn with_id_range(gateway_id: DeviceId, first: u16, last: u16) -> Self {
        DustRegistry { gateway_id, first_id: first, last_id: last, entries: heapless::Vec::new() }
    }

    /// The gateway this registry belongs to.
    pub fn gateway_id(&self) -> DeviceId {
        self.gateway_id
    }

    /// Devices registered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, short_id: u16) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&short_id, |e| e.short_id)
    }

    fn admit(&self, device: &DeviceId) -> Result<(), RegistryError> {
        if self.entries.iter().any(|e| &e.device_id == device) {
            return Err(RegistryError::DuplicateDevice);
        }
        if self.entries.is_full() {
            return Err(RegistryError::TableFull);
        }
        Ok(())
    }

    fn insert_at(&mut self, at: usize, e: DustEntry) -> Result<(), RegistryError> {
        self.entries.insert(at, e).map_err(|_| RegistryError::TableFull)
    }

    /// Registers a device and returns the short id assigned to it: the
    /// smallest one in range that no device holds.
    pub fn register(&mut self, device: DeviceId, key: DustKey) -> Result<u16, RegistryError> {
        self.admit(&device)?;
        let mut candidate = self.first_id as u32;
        for e in self.entries.iter() {
            let id = e.short_id as u32;
            if id == candidate {
                candidate += 1;
            } else if id > candidate {
                break;
            }
        }
        if candidate > self.last_id as u32 {
            return Err(RegistryError::IdSpaceExhausted);
        }
        let short_id = candidate as u16;
        let at = match self.position(short_id) {
            Ok(_) => return Err(RegistryError::ShortIdTaken),
            Err(at) => at,
        };
        let e = DustEntry { short_id, device_id: device, key, last_counter: None };
        self.insert_at(at, e)?;
        Ok(short_id)
    }

    /// Registers a device under a short id assigned elsewhere (another
    /// gateway of the zone, or the operator); the range does not apply.
    pub fn register_as(&mut self, short_id: u16, device: DeviceId, key: DustKey) -> Result<(), RegistryError> {
        let at = match self.position(short_id) {
            Ok(_) => return Err(RegistryError::ShortIdTaken),
            Err(at) => at,
        };
        self.admit(&device)?;
        let e = DustEntry { short_id, device_id: device, key, last_counter: None };
        self.insert_at(at, e)
    }

    /// Forgets a device; its short id becomes free again.
    pub fn unregister(&mut self, short_id: u16) -> Option<DustEntry> {
        let at = self.position(short_id).ok()?;
        Some(self.entries.remove(at))
    }

    /// The device behind a short id.
    pub fn lookup(&self, short_id: u16) -> Option<&DustEntry> {
        let at = self.position(short_id).ok()?;
        self.entries.get(at)
    }

    /// The short id of a device.
    pub fn short_id_of(&self, device: &DeviceId) -> Option<u16> {
        self.entries.iter().find(|e| &e.device_id == device).map(|e| e.short_id)
    }

    /// Accepts an uplink received at `received_at` and wraps it.
    ///
    /// The counter must exceed the last accepted one. `mac_ok` is the
    /// caller's MAC verification with the device's key (AES-CMAC, from the
    /// crypto layer); the counter advances only when it passes, so a forged
    /// frame cannot burn counters.
    pub fn accept_frame(
        &mut self,
        frame: &DustFrame,
        received_at: Timestamp,
        mac_ok: impl FnOnce(&DustEntry) -> bool,
    ) -> Result<GatewayTrace, FrameError> {
        let at = self.position(frame.short_id).map_err(|_| FrameError::UnknownShortId)?;
        let gateway = self.gateway_id;
        let e = self.entries.get_mut(at).ok_or(FrameError::UnknownShortId)?;
        if e.last_counter.is_some_and(|last| frame.frame_counter <= last) {
            return Err(FrameError::Replay);
        }
        if !mac_ok(e) {
            return Err(FrameError::BadMac);
        }
        e.last_counter = Some(frame.frame_counter);
        Ok(GatewayTrace {
            gateway,
            device: e.device_id,
            frame_counter: frame.frame_counter,
            reading: frame.reading,
            received_at,
        })
    }
}

/// Birthday bound: the probability that `devices` ids drawn uniformly from
/// `space` values are not all distinct, `1 − Π (1 − i/space)`. 1000 devices
/// in 65 536 short ids: 0.9995 (SPEC-NOTES 38), not "< 1 %".
pub fn short_id_collision_probability(devices: u32, space: u32) -> f64 {
    if devices > space {
        return 1.0;
    }
    let mut all_distinct = 1.0f64;
    for i in 0..devices {
        all_distinct *= 1.0 - i as f64 / space as f64;
    }
    1.0 - all_distinct
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u8) -> DeviceId {
        DeviceId([n; 8])
    }

    fn anomalies_until(threshold: f32) -> u32 {
        let mut p: GatewayProfile<1> = GatewayProfile::new(id(1));
        let mut k = 0;
        while p.anomaly_rate() <= threshold {
            p.evaluate_gateway_trust(0, true);
            k += 1;
        }
        k
    }

    #[test]
    fn ema_crosses_five_percent_after_6_and_twenty_after_23() {
        assert_eq!(anomalies_until(UNVERIFIED_RATE), 6);
        assert_eq!(anomalies_until(SUSPECT_RATE), 23);
        let mut p: GatewayProfile<1> = GatewayProfile::new(id(1));
        let got: std::vec::Vec<Confidence> = (0..23).map(|_| p.evaluate_gateway_trust(0, true)).collect();
        assert_eq!(got[4], GATEWAY_VOUCHED_1);
        assert_eq!(got[5], GATEWAY_UNVERIFIED);
        assert_eq!(got[21], GATEWAY_UNVERIFIED);
        assert_eq!(got[22], GATEWAY_SUSPECT);
        assert_eq!(p.anomalies_flagged(), 23);
    }

    #[test]
    fn cross_validation_expires_after_an_hour() {
        let mut p: GatewayProfile<1> = GatewayProfile::new(id(1));
        p.mark_cross_validated(1000);
        assert_eq!(p.evaluate_gateway_trust(4599, false), GATEWAY_VOUCHED_OK);
        assert_eq!(p.evaluate_gateway_trust(4600, false), GATEWAY_VOUCHED_1);
        assert_eq!(p.evaluate_gateway_trust(999, false), GATEWAY_VOUCHED_1);
        assert_eq!(p.traces_received(), 3);
    }

    fn trace(gw: u8, counter: u32, reading: Reading) -> GatewayTrace {
        GatewayTrace { gateway: id(gw), device: id(9), frame_counter: counter, reading, received_at: 0 }
    }

    fn monitor() -> GatewayMonitor<2, 4, 4> {
        let mut m = GatewayMonitor::new(30);
        for g in [1, 2] {
            m.add_gateway(id(g)).unwrap().add_dust(id(9)).unwrap();
        }
        m
    }

    #[test]
    fn agreeing_gateways_vouch_and_are_both_marked() {
        let mut m = monitor();
        let a = m.on_trace(100, &trace(1, 7, 2310), false).unwrap();
        assert_eq!(a, TraceVerdict { confidence: GATEWAY_VOUCHED_1, cross: CrossCheck::First });
        let b = m.on_trace(101, &trace(2, 7, 2310), false).unwrap();
        assert_eq!(b.cross, CrossCheck::Agree { first: id(1), second: id(2) });
        assert_eq!(b.confidence, GATEWAY_VOUCHED_OK);
        assert_eq!(m.profile(&id(1)).unwrap().last_cross_validated(), Some(101));
        assert_eq!(m.profile(&id(2)).unwrap().last_cross_validated(), Some(101));
    }

    #[test]
    fn disagreeing_gateways_are_both_suspects() {
        let mut m = monitor();
        m.on_trace(100, &trace(1, 7, 2310), false).unwrap();
        let b = m.on_trace(101, &trace(2, 7, 9999), false).unwrap();
        assert_eq!(b.confidence, GATEWAY_UNVERIFIED);
        assert_eq!(b.cross.suspects(), Some([id(1), id(2)]));
        assert_eq!(m.profile(&id(1)).unwrap().last_cross_validated(), None);
    }

    #[test]
    fn copies_outside_the_window_are_not_paired() {
        let mut m = monitor();
        m.on_trace(100, &trace(1, 7, 2310), false).unwrap();
        let b = m.on_trace(131, &trace(2, 7, 9999), false).unwrap();
        assert_eq!(b.cross, CrossCheck::First);
    }

    #[test]
    fn undeclared_device_or_gateway_is_refused() {
        let mut m = monitor();
        let mut t = trace(1, 7, 0);
        t.device = id(8);
        assert_eq!(m.on_trace(0, &t, false), Err(GatewayError::NotServed));
        assert_eq!(m.on_trace(0, &trace(3, 7, 0), false), Err(GatewayError::UnknownGateway));
        assert_eq!(m.add_gateway(id(1)).err(), Some(GatewayError::DuplicateGateway));
        assert_eq!(m.add_gateway(id(3)).err(), Some(GatewayError::GatewayTableFull));
    }

    #[test]
    fn corroborate_profiles_new_gateways_and_charges_both_on_disagreement() {
        let mut m: GatewayMonitor<2, 1, 4> = GatewayMonitor::new(30);
        let mut t = trace(1, 7, 2310);
        assert_eq!(m.corroborate(100, &t), Ok(CrossCheck::First));
        t.device = id(8);
        t.frame_counter = 8;
        assert_eq!(m.corroborate(100, &t), Ok(CrossCheck::First), "a full Dust list is no refusal");
        assert_eq!(m.profile(&id(1)).unwrap().dust_devices(), &[id(9)]);
        let c = m.corroborate(101, &trace(2, 7, 2400)).unwrap();
        assert_eq!(c, CrossCheck::Disagree { first: id(1), second: id(2) });
        for g in [1, 2] {
            let p = m.profile(&id(g)).unwrap();
            assert_eq!((p.anomalies_flagged(), p.traces_received()), (1, 0));
            assert!((p.anomaly_rate() - ANOMALY_EMA_GAIN).abs() < 1e-6);
        }
        // Self-contradiction is charged once.
        m.corroborate(102, &trace(1, 9, 1)).unwrap();
        m.corroborate(103, &trace(1, 9, 2)).unwrap();
        assert_eq!(m.profile(&id(1)).unwrap().anomalies_flagged(), 2);
        assert_eq!(m.corroborate(104, &trace(3, 10, 0)), Err(GatewayError::GatewayTableFull));
        assert_eq!(m.evaluate(104, id(3), false), Err(GatewayError::UnknownGateway));
        assert_eq!(m.evaluate(104, id(2), false), Ok((GATEWAY_VOUCHED_1, GATEWAY_VOUCHED_1)));
    }

    #[test]
    fn claimed_confidence_caps_only_below_vouched_1() {
        assert_eq!(vouched_confidence(GATEWAY_VOUCHED_OK, GATEWAY_VOUCHED_1), GATEWAY_VOUCHED_OK);
        assert_eq!(vouched_confidence(GATEWAY_VOUCHED_OK, 200), GATEWAY_VOUCHED_OK);
        assert_eq!(vouched_confidence(GATEWAY_VOUCHED_OK, GATEWAY_UNVERIFIED), GATEWAY_UNVERIFIED);
        assert_eq!(vouched_confidence(GATEWAY_SUSPECT, GATEWAY_UNVERIFIED), GATEWAY_SUSPECT);
    }

    #[test]
    fn downlinks_wait_for_budget_and_counters_increase() {
        let mut d: DownlinkPlanner<2> = DownlinkPlanner::new();
        assert!(d.queue(id(1), 0));
        assert!(!d.queue(id(1), 5), "queued once");
        for _ in 0..UPLINKS_PER_DOWNLINK - 1 {
            d.earn();
        }
        assert_eq!(d.take(&id(1), 1000), None, "nine uplinks do not pay for a downlink");
        d.earn();
        assert_eq!(d.take(&id(2), 1000), None, "nothing queued for it");
        assert_eq!(d.take(&id(1), 1000), Some(1000));
        assert_eq!(d.credits(), 0);
        for _ in 0..100 {
            d.earn();
        }
        assert_eq!(d.credits(), DOWNLINK_CREDIT_CAP);
        // Still queued (resent until cancelled), counter above the last even
        // if the clock stepped back.
        assert_eq!(d.take(&id(1), 900), Some(1001));
        assert_eq!(d.take(&id(1), 5000), Some(5000));
        assert_eq!(d.take(&id(1), 6000), None, "budget spent");
        d.expire(100, 100);
        assert!(!d.is_pending(&id(1)), "expired");
        assert!(d.queue(id(1), 200));
        d.cancel(&id(1));
        assert!(!d.is_pending(&id(1)));
    }

    #[test]
    fn notices_count_distinct_senders_in_the_window() {
        let mut d: DownlinkPlanner<3> = DownlinkPlanner::new();
        assert_eq!(d.add_notice(id(9), id(1), 0, 100), 1);
        assert_eq!(d.add_notice(id(9), id(1), 10, 100), 1, "same sender again");
        assert_eq!(d.add_notice(id(9), id(2), 20, 100), 2);
        assert_eq!(d.add_notice(id(8), id(2), 20, 100), 1, "another device");
        assert_eq!(d.add_notice(id(9), id(3), 30, 100), 2, "full: the oldest notice made room");
        assert_eq!(d.add_notice(id(9), id(3), 200, 100), 1, "the others are stale");
        assert_eq!(d.notices_about(&id(9)), 1);
    }

    #[test]
    fn full_corroborator_drops_the_oldest() {
        let mut c: Corroborator<2> = Corroborator::new(100);
        c.observe(0, &trace(1, 1, 0));
        c.observe(1, &trace(1, 2, 0));
        c.observe(2, &trace(1, 3, 0));
        assert_eq!(c.len(), 2);
        assert_eq!(c.observe(3, &trace(2, 1, 0)), CrossCheck::First);
        assert_eq!(c.observe(3, &trace(2, 3, 0)), CrossCheck::Agree { first: id(1), second: id(2) });
    }

    #[test]
    fn short_ids_are_assigned_uniquely_and_reused() {
        let mut r: DustRegistry<4> = DustRegistry::new(id(1));
        let k = DustKey([7; 16]);
        assert_eq!(r.register(id(10), k), Ok(0));
        assert_eq!(r.register(id(11), k), Ok(1));
        assert_eq!(r.register(id(11), k), Err(RegistryError::DuplicateDevice));
        assert_eq!(r.register_as(5, id(12), k), Ok(()));
        assert_eq!(r.register_as(5, id(13), k), Err(RegistryError::ShortIdTaken));
        assert_eq!(r.unregister(0).map(|e| e.device_id), Some(id(10)));
        assert_eq!(r.register(id(13), k), Ok(0));
        assert_eq!(r.register(id(14), k), Ok(2));
        assert_eq!(r.register(id(15), k), Err(RegistryError::TableFull));
        assert_eq!(r.lookup(5).map(|e| e.device_id), Some(id(12)));
        assert_eq!(r.short_id_of(&id(14)), Some(2));
    }

    #[test]
    fn exhausted_range_is_an_error() {
        let mut r: DustRegistry<8> = DustRegistry::with_id_range(id(1), 0xFFFE, 0xFFFF);
        let k = DustKey([0; 16]);
        assert_eq!(r.register(id(10), k), Ok(0xFFFE));
        assert_eq!(r.register(id(11), k), Ok(0xFFFF));
        assert_eq!(r.register(id(12), k), Err(RegistryError::IdSpaceExhausted));
    }

    #[test]
    fn counter_must_increase_and_bad_mac_burns_nothing() {
        let mut r: DustRegistry<4> = DustRegistry::new(id(1));
        let s = r.register(id(10), DustKey([3; 16])).unwrap();
        let f = |c| DustFrame { short_id: s, frame_counter: c, reading: 5 };
        let t = r.accept_frame(&f(10), 50, |e| e.key == DustKey([3; 16])).unwrap();
        assert_eq!((t.gateway, t.device, t.frame_counter), (id(1), id(10), 10));
        assert_eq!(r.accept_frame(&f(10), 51, |_| true), Err(FrameError::Replay));
        assert_eq!(r.accept_frame(&f(9), 51, |_| true), Err(FrameError::Replay));
        assert_eq!(r.accept_frame(&f(100), 51, |_| false), Err(FrameError::BadMac));
        assert!(r.accept_frame(&f(11), 52, |_| true).is_ok());
        assert_eq!(
            r.accept_frame(&DustFrame { short_id: 999, ..f(12) }, 52, |_| true),
            Err(FrameError::UnknownShortId)
        );
    }

    #[test]
    fn key_is_not_printed() {
        let k = DustKey([0xAB; 16]);
        assert_eq!(std::format!("{k:?}"), "DustKey(..)");
    }

    #[test]
    fn birthday_figures() {
        let p36 = short_id_collision_probability(36, SHORT_ID_SPACE);
        let p37 = short_id_collision_probability(37, SHORT_ID_SPACE);
        let p1000 = short_id_collision_probability(1000, SHORT_ID_SPACE);
        assert!(p36 < 0.01 && p37 > 0.01, "{p36} {p37}");
        assert!((p1000 - 0.9995).abs() < 0.0001, "{p1000}");
        assert_eq!(short_id_collision_probability(1, SHORT_ID_SPACE), 0.0);
        assert_eq!(short_id_collision_probability(3, 2), 1.0);
    }

    proptest! {
        #[test]
        fn assigned_short_ids_never_collide(ops in proptest::collection::vec((any::<bool>(), 0u8..40), 1..200)) {
            let mut r: DustRegistry<16> = DustRegistry::with_id_range(id(1), 100, 119);
            for (add, n) in ops {
                if add {
                    let _ = r.register(id(n), DustKey([n; 16]));
                } else if let Some(s) = r.short_id_of(&id(n)) {
                    r.unregister(s);
                }
                let ids: std::vec::Vec<u16> = r.entries.iter().map(|e| e.short_id).collect();
                prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(ids.iter().all(|s| (100..=119).contains(s)));
                for e in r.entries.iter() {
                    prop_assert_eq!(r.lookup(e.short_id).map(|x| x.device_id), Some(e.device_id));
                }
            }
        }

        #[test]
        fn accepted_counters_strictly_increase(cs in proptest::collection::vec(any::<u32>(), 1..50)) {
            let mut r: DustRegistry<1> = DustRegistry::new(id(1));
            let s = r.register(id(2), DustKey([0; 16])).unwrap();
            let mut last: Option<u32> = None;
            for c in cs {
                let ok = r.accept_frame(&DustFrame { short_id: s, frame_counter: c, reading: 0 }, 0, |_| true).is_ok();
                prop_assert_eq!(ok, last.is_none_or(|l| c > l));
                if ok { last = Some(c); }
            }
        }

        #[test]
        fn anomaly_rate_stays_a_fraction(flags in proptest::collection::vec(any::<bool>(), 0..500)) {
            let mut p: GatewayProfile<1> = GatewayProfile::new(id(1));
            for f in flags {
                let c = p.evaluate_gateway_trust(0, f);
                prop_assert!((0.0..=1.0).contains(&p.anomaly_rate()));
                prop_assert!([GATEWAY_SUSPECT, GATEWAY_UNVERIFIED, GATEWAY_VOUCHED_1].contains(&c));
            }
        }
    }
}
