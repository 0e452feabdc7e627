//! Attackers: wrappers around an otherwise honest firmware that change what
//! it reports or sends (value spike, slow drift, pattern change, flood,
//! replay, forgery, Sybil, weight inflation, collusion, compromised
//! gateway, selective relay, forged death certificate).
//!
//! The honest firmware keeps running underneath: it still signs with its
//! own key, answers queries and deposits traces. An [`Attacker`] only
//! changes the readings handed to it, rewrites frames it emits, and adds
//! frames of its own between each attack's start and end. All its choices
//! come from the node's `Purpose::Attack` stream, so a run stays a pure
//! function of (scenario, seed, code).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use krill_core::crypto::{blake2s256, sign_frame, Crypto, Identity, Seed};
use krill_core::lifecycle::{OwnState, SubjectState, NORMAL_WEIGHT};
use krill_core::node::{Action, FrameBuf, Now, Role, MAX_FRAME};
use krill_core::types::{DeviceId, Hash32, HashPrefix4, PublicKey, QuantityType, Reading, Signature};
use krill_core::wire::metabolic::DeathReason;
use krill_core::wire::{Body, DeathCertificate, FrameRepr, TraceDeposit, Version};

use crate::engine::Micros;
use crate::firmware::Firmware;
use crate::rng::{Purpose, SimRng};
use crate::scenario::{Attack, AttackKind, Quantity};

/// A `Crypto` that can be boxed and sent between threads.
pub trait DynCrypto: Crypto + Send {}
impl<C: Crypto + Send> DynCrypto for C {}

/// Makes a crypto for a fresh identity under the scenario's scheme (Sybil
/// identities: valid keys nobody enrolled).
pub type CryptoFor = Arc<dyn Fn(&Identity) -> Box<dyn DynCrypto> + Send + Sync>;

/// What an attacker knows about itself and the deployment.
pub struct AttackEnv {
    /// Its node index.
    pub node: u32,
    /// Its device id.
    pub id: DeviceId,
    /// What its sensor measures.
    pub quantity: Quantity,
    /// Warm-up length, µs: attack times count from its end.
    pub warmup_us: Micros,
    /// When the node booted, µs: its monotonic clock is `(t − boot_us)/1000` ms.
    pub boot_us: Micros,
    /// Scenario seed (for `Purpose::Attack` streams).
    pub seed: u64,
    /// Its own signing key.
    pub crypto: Box<dyn DynCrypto>,
    /// Every node's device id, by index.
    pub ids: Arc<Vec<DeviceId>>,
    /// Crypto for identities it makes up.
    pub crypto_for: CryptoFor,
}

/// Wraps `inner` with the behaviour of `attacks` (all on this node).
pub fn wrap(inner: Box<dyn Firmware>, attacks: &[Attack], env: AttackEnv) -> Box<dyn Firmware> {
    Box::new(Attacker::new(inner, attacks, env))
}

/// Weight a weight-inflating attacker claims (the field's maximum).
pub const INFLATED_WEIGHT: u8 = u8::MAX;
/// Confidence on traces the attacker makes up.
const MADE_UP_CONFIDENCE: u8 = 200;
/// Interval between forged death certificates, ms: one would do; repeating
/// it shows that no copy ever gets through.
const DEATH_INTERVAL_MS: i64 = 60_000;
/// Neighbours a forged-id flood impersonates: its strongest, so that the
/// nodes that hear the flood also hear the victims' real frames.
const FLOOD_VICTIMS: usize = 4;
/// Frames a replayer keeps; later ones are not recorded (bounds memory).
const REPLAY_BUFFER: usize = 50_000;
/// Most frames one flood wake sends after a late wake-up.
const FLOOD_BURST: u32 = 1_000;

/// Converts between the node's monotonic clock and scenario time.
///
/// Exact until the node reboots; its monotonic clock then restarts at a
/// simulation time the firmware is not told, so the anchor is re-estimated
/// from the node's wall clock (off by its clock error: ~0.2 s, plus any
/// clock-step fault).
#[derive(Clone, Copy, Debug)]
struct Clock {
    warmup_us: Micros,
    boot_us: Micros,
}

impl Clock {
    /// Scenario ms (negative during warm-up) at `now`.
    fn scenario_ms(&self, now: Now) -> i64 {
        (self.boot_us as i64 - self.warmup_us as i64) / 1_000 + now.mono_ms as i64
    }

    /// The monotonic ms at scenario ms `s` (0 if before boot).
    fn mono_at(&self, s: i64) -> u64 {
        (s + (self.warmup_us as i64 - self.boot_us as i64) / 1_000).max(0) as u64
    }

    fn reanchor(&mut self, now: Now) {
        let wall_us =
            u64::from(now.unix_s.wrapping_sub(crate::sim::UNIX0)) * 1_000_000 + u64::from(now.unix_subsec_ms) * 1_000;
        self.boot_us = wall_us.saturating_sub(now.mono_ms * 1_000);
    }
}

/// An attack's window in scenario ms, `[start, end)`.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: i64,
    end: Option<i64>,
}

impl Window {
    fn of(a: &Attack) -> Window {
        let ms = |s: u64| i64::try_from(s.saturating_mul(1_000)).unwrap_or(i64::MAX);
        Window { start: ms(a.start_s), end: a.end_s.map(ms) }
    }
    fn contains(&self, s: i64) -> bool {
        s >= self.start && self.end.is_none_or(|e| s < e)
    }
    fn before_end(&self, s: i64) -> bool {
        self.end.is_none_or(|e| s < e)
    }
}

/// An identity the attacker made up (Sybil).
struct Fake {
    id: DeviceId,
    crypto: Box<dyn DynCrypto>,
    seq: u8,
}

/// One attack's behaviour and state.
enum Act {
    /// Adds `offset(elapsed)` to every reading (Spike, Drift, Pattern,
    /// Collusion).
    Offset(AttackKind),
    /// Offset readings and traces re-signed with the maximum weight.
    WeightInflation { offset: f64 },
    /// Extra TRACE_DEPOSITs every `interval_ms`.
    Flood { interval_ms: f64, forged: bool, next: f64, seq: u8 },
    /// Frames heard, re-broadcast `delay_ms` later: (heard at, bytes); and
    /// when each frame was first recorded, by content, so that a copy heard
    /// again (another replayer's, or its own echo) is not replayed twice.
    Replay { delay_ms: i64, heard: VecDeque<(i64, Arc<[u8]>)>, recorded: BTreeMap<[u8; 8], i64> },
    /// Traces in the victim's name, signed with the attacker's own key.
    Forgery { victim: Option<DeviceId>, offset: f64, seq: u8 },
    /// Traces from identities nobody enrolled.
    Sybil { fakes: Vec<Fake>, offset: f64 },
    /// Vouched Dust traces rewritten by `offset` and re-signed.
    GatewayCompromise { offset: f64 },
    /// Drops this fraction of the frames it broadcasts for others: frames
    /// under another sender id (VACCINE relay copies, a gateway's wrapped
    /// Dust traces). The simulator's radio relays nothing by itself.
    SelectiveRelay { drop_fraction: f64 },
    /// DEATH_CERTIFICATEs in the victim's name every [`DEATH_INTERVAL_MS`].
    ForgedDeath { victim: Option<DeviceId>, next: i64 },
}

struct Play {
    window: Window,
    act: Act,
}

/// An honest firmware with one or more attacks layered on it.
pub struct Attacker {
    inner: Box<dyn Firmware>,
    me: DeviceId,
    quantity: QuantityType,
    clock: Clock,
    crypto: Box<dyn DynCrypto>,
    ids: Arc<Vec<DeviceId>>,
    rng: SimRng,
    plays: Vec<Play>,
    /// The last true reading, the base of every made-up trace.
    last_reading: Option<Reading>,
    /// Senders heard: frames and summed RSSI (forged-id flood victims).
    heard: BTreeMap<DeviceId, (u64, i64)>,
}

impl Attacker {
    /// Wraps `inner` with `attacks`.
    pub fn new(inner: Box<dyn Firmware>, attacks: &[Attack], env: AttackEnv) -> Attacker {
        let mut rng = SimRng::stream(env.seed, Purpose::Attack, env.node);
        let victim = |k: u32| env.ids.get(k as usize).copied();
        let plays = attacks
            .iter()
            .map(|a| {
                let window = Window::of(a);
                let act = match &a.kind {
                    AttackKind::Spike { .. }
                    | AttackKind::Drift { .. }
                    | AttackKind::Pattern { .. }
                    | AttackKind::Collusion { .. } => Act::Offset(a.kind.clone()),
                    AttackKind::WeightInflation { offset } => Act::WeightInflation { offset: *offset },
                    AttackKind::Flood { rate_per_s, forged_ids } => Act::Flood {
                        interval_ms: 1_000.0 / rate_per_s.max(1e-6),
                        forged: *forged_ids,
                        next: window.start as f64,
                        seq: 0,
                    },
                    AttackKind::Replay { delay_s } => Act::Replay {
                        delay_ms: i64::try_from(delay_s.saturating_mul(1_000)).unwrap_or(i64::MAX),
                        heard: VecDeque::new(),
                        recorded: BTreeMap::new(),
                    },
                    AttackKind::Forgery { victim: v, offset } => {
                        Act::Forgery { victim: victim(*v), offset: *offset, seq: 0 }
                    }
                    AttackKind::Sybil { identities, offset } => {
                        let fakes = (0..*identities)
                            .map(|_| {
                                let mut s = [0u8; 32];
                                for c in s.chunks_mut(8) {
                                    c.copy_from_slice(&rng.next_u64().to_le_bytes());
                                }
                                let identity = Identity::from_seed(&Seed(s));
                                Fake { id: identity.device_id(), crypto: (env.crypto_for)(&identity), seq: 0 }
                            })
                            .collect();
                        Act::Sybil { fakes, offset: *offset }
                    }
                    AttackKind::GatewayCompromise { offset } => Act::GatewayCompromise { offset: *offset },
                    AttackKind::SelectiveRelay { drop_fraction } => {
                        Act::SelectiveRelay { drop_fraction: *drop_fraction }
                    }
                    AttackKind::ForgedDeathCertificate { victim: v } => {
                        Act::ForgedDeath { victim: victim(*v), next: window.start }
                    }
                };
                Play { window, act }
            })
            .collect();
        Attacker {
            inner,
            me: env.id,
            quantity: env.quantity.core(),
            clock: Clock { warmup_us: env.warmup_us, boot_us: env.boot_us },
            crypto: env.crypto,
            ids: env.ids,
            rng,
            plays,
            last_reading: None,
            heard: BTreeMap::new(),
        }
    }

    /// The reading offset of the active reading attacks at scenario ms `s`.
    fn offset_at(&self, s: i64) -> f64 {
        let mut total = 0.0;
        for p in self.plays.iter().filter(|p| p.window.contains(s)) {
            let since_s = (s - p.window.start) as f64 / 1_000.0;
            total += match &p.act {
                Act::Offset(AttackKind::Spike { offset }) | Act::Offset(AttackKind::Collusion { offset, .. }) => {
                    *offset
                }
                Act::Offset(AttackKind::Drift { rate_per_h }) => rate_per_h * since_s / 3_600.0,
                Act::Offset(AttackKind::Pattern { amplitude, period_s }) => {
                    let period = (*period_s).max(1) as f64;
                    if since_s.rem_euclid(period) < period / 2.0 {
                        *amplitude
                    } else {
                        -*amplitude
                    }
                }
                Act::WeightInflation { offset } => *offset,
                _ => 0.0,
            };
        }
        total
    }

    /// Rewrites and filters what the honest firmware emitted from `from` on.
    fn tamper(&mut self, now: Now, out: &mut Vec<Action>, from: usize) {
        let s = self.clock.scenario_ms(now);
        let mut inflate = false;
        let mut gateway_offset = None;
        let mut drop_fraction = None;
        for p in self.plays.iter().filter(|p| p.window.contains(s)) {
            match p.act {
                Act::WeightInflation { .. } => inflate = true,
                Act::GatewayCompromise { offset } => gateway_offset = Some(offset),
                Act::SelectiveRelay { drop_fraction: f } => drop_fraction = Some(f),
                _ => {}
            }
        }
        if !inflate && gateway_offset.is_none() && drop_fraction.is_none() {
            return;
        }
        let tail = out.split_off(from.min(out.len()));
        for a in tail {
            let Action::Broadcast(f) = &a else {
                out.push(a);
                continue;
            };
            // The header names the origin, also for VACCINE v2 relay copies,
            // which `FrameRepr` does not parse.
            let relayed = f.get(4..12).is_some_and(|id| id != self.me.as_bytes());
            if relayed && drop_fraction.is_some_and(|p| self.rng.chance(p)) {
                continue;
            }
            let Ok(mut repr) = FrameRepr::parse(f) else {
                out.push(a);
                continue;
            };
            let changed = match &mut repr.body {
                Body::TraceDeposit(t) if t.vouch.is_none() && !relayed && inflate => {
                    t.weight = INFLATED_WEIGHT;
                    true
                }
                Body::TraceDeposit(t) if t.vouch.is_some_and(|v| v.gateway_id == self.me) => match gateway_offset {
                    Some(offset) => {
                        t.reading = shifted(t.quantity, t.reading, offset);
                        true
                    }
                    None => false,
                },
                _ => false,
            };
            match changed.then(|| signed(self.crypto.as_ref(), &repr)).flatten() {
                Some(f) => out.push(Action::Broadcast(f)),
                None => out.push(a),
            }
        }
    }

    /// A TRACE_DEPOSIT from `sender` signed by `crypto` (not necessarily
    /// the sender's key).
    fn trace(
        crypto: &dyn DynCrypto,
        sender: DeviceId,
        now: Now,
        q: QuantityType,
        r: Reading,
        seq: u8,
    ) -> Option<FrameBuf> {
        let t = TraceDeposit {
            timestamp: now.unix_s,
            quantity: q,
            reading: r,
            confidence: MADE_UP_CONFIDENCE,
            weight: NORMAL_WEIGHT,
            seq,
            prev_hash: HashPrefix4::default(),
            vouch: None,
        };
        let repr = FrameRepr {
            version: Version::V2,
            sender_id: sender,
            body: Body::TraceDeposit(t),
            signature: Signature([0; 64]),
        };
        signed(crypto, &repr)
    }

    /// The extra traces sent with each own reading (forgery, Sybil).
    fn on_own_reading(&mut self, now: Now, honest: Reading, out: &mut Vec<Action>) {
        let s = self.clock.scenario_ms(now);
        let q = self.quantity;
        for p in self.plays.iter_mut().filter(|p| p.window.contains(s)) {
            match &mut p.act {
                Act::Forgery { victim: Some(victim), offset, seq } => {
                    *seq = seq.wrapping_add(1);
                    let r = shifted(q, honest, *offset);
                    out.extend(Self::trace(self.crypto.as_ref(), *victim, now, q, r, *seq).map(Action::Broadcast));
                }
                Act::Sybil { fakes, offset } => {
                    let r = shifted(q, honest, *offset);
                    for f in fakes.iter_mut() {
                        f.seq = f.seq.wrapping_add(1);
                        out.extend(Self::trace(f.crypto.as_ref(), f.id, now, q, r, f.seq).map(Action::Broadcast));
                    }
                }
                _ => {}
            }
        }
    }

    /// The neighbours a forged-id flood speaks for: the strongest heard.
    fn flood_victims(&self) -> Vec<DeviceId> {
        let mut v: Vec<(f64, DeviceId)> = self
            .heard
            .iter()
            .filter(|(id, _)| **id != self.me && self.ids.contains(id))
            .map(|(id, &(n, sum))| (sum as f64 / n.max(1) as f64, *id))
            .collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        v.truncate(FLOOD_VICTIMS);
        v.into_iter().map(|(_, id)| id).collect()
    }

    /// Scenario ms of the next frame an attack sends on its own timer.
    fn next_own_ms(&self) -> Option<i64> {
        self.plays
            .iter()
            .filter_map(|p| {
                let due = match &p.act {
                    Act::Flood { next, .. } => next.ceil() as i64,
                    Act::ForgedDeath { victim: Some(_), next } => *next,
                    Act::Replay { delay_ms, heard, .. } => {
                        heard.front()?.0.saturating_add(*delay_ms).max(p.window.start)
                    }
                    _ => return None,
                };
                p.window.before_end(due).then_some(due)
            })
            .min()
    }

    /// Sends what the attacks' own timers have due at `now`.
    fn run_own_timers(&mut self, now: Now, out: &mut Vec<Action>) {
        let s = self.clock.scenario_ms(now);
        let victims = self.flood_victims();
        let q = self.quantity;
        let base = self.last_reading;
        for p in self.plays.iter_mut() {
            let w = p.window;
            match &mut p.act {
                Act::Flood { interval_ms, forged, next, seq } => {
                    let mut sent = 0;
                    while *next <= s as f64 && sent < FLOOD_BURST {
                        *next += *interval_ms;
                        sent += 1;
                        let (Some(r), true) = (base, w.contains(s)) else { continue };
                        *seq = seq.wrapping_add(1);
                        let sender = if *forged {
                            match victims.get(usize::from(*seq) % victims.len().max(1)) {
                                Some(v) => *v,
                                None => continue,
                            }
                        } else {
                            self.me
                        };
                        out.extend(Self::trace(self.crypto.as_ref(), sender, now, q, r, *seq).map(Action::Broadcast));
                    }
                    if *next <= s as f64 {
                        // Too far behind (a reboot or a clock step): resume from now.
                        *next = s as f64 + *interval_ms;
                    }
                }
                Act::ForgedDeath { victim: Some(victim), next } if *next <= s => {
                    while *next <= s {
                        *next += DEATH_INTERVAL_MS;
                    }
                    if w.contains(s) {
                        out.extend(death_certificate(self.crypto.as_ref(), *victim, now).map(Action::Broadcast));
                    }
                }
                Act::Replay { delay_ms, heard, .. } => {
                    while let Some((at, bytes)) = heard.front() {
                        if at.saturating_add(*delay_ms) > s {
                            break;
                        }
                        if w.contains(s) {
                            if let Ok(f) = FrameBuf::from_slice(bytes) {
                                out.push(Action::Broadcast(f));
                            }
                        }
                        heard.pop_front();
                    }
                }
                _ => {}
            }
        }
    }
}

/// `r` moved by `offset` quantity units.
fn shifted(q: QuantityType, r: Reading, offset: f64) -> Reading {
    q.to_reading((f64::from(q.to_value(r)) + offset) as f32)
}

/// Emits `repr` and signs it with `crypto`.
fn signed(crypto: &dyn DynCrypto, repr: &FrameRepr) -> Option<FrameBuf> {
    let mut buf = [0u8; MAX_FRAME];
    let len = repr.emit(&mut buf).ok()?;
    let frame = buf.get_mut(..len)?;
    sign_frame(crypto, frame, repr.signed_len()).ok()?;
    FrameBuf::from_slice(frame).ok()
}

/// A DEATH_CERTIFICATE with `victim` as sender, signed with the attacker's
/// key. The attacker does not hold the victim's public key (`AttackEnv`
/// has none), so `old_pubkey_hash` is a guess; receivers that check the
/// signature first never get to the hash.
fn death_certificate(crypto: &dyn DynCrypto, victim: DeviceId, now: Now) -> Option<FrameBuf> {
    let cert = DeathCertificate {
        reason: DeathReason::OperatorCommand,
        timestamp: now.unix_s,
        old_pubkey_hash: Hash32(blake2s256(victim.as_bytes())),
    };
    let repr = FrameRepr {
        version: Version::V2,
        sender_id: victim,
        body: Body::DeathCertificate(cert),
        signature: Signature([0; 64]),
    };
    signed(crypto, &repr)
}

impl Firmware for Attacker {
    fn id(&self) -> DeviceId {
        self.inner.id()
    }
    fn role(&self) -> Role {
        self.inner.role()
    }
    fn next_deadline_ms(&self) -> u64 {
        let inner = self.inner.next_deadline_ms();
        match self.next_own_ms() {
            Some(s) => inner.min(self.clock.mono_at(s)),
            None => inner,
        }
    }
    fn handle_timers(&mut self, now: Now, rng: &mut SimRng, out: &mut Vec<Action>) {
        let from = out.len();
        // Only when due: an early call could shift the honest firmware's
        // own random draws and timers.
        if now.mono_ms >= self.inner.next_deadline_ms() {
            self.inner.handle_timers(now, rng, out);
        }
        self.tamper(now, out, from);
        self.run_own_timers(now, out);
    }
    fn handle_frame(&mut self, now: Now, bytes: &[u8], rssi: i8, hops: u8, out: &mut Vec<Action>) {
        let s = self.clock.scenario_ms(now);
        if let Some(sender) = bytes.get(4..12).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            let e = self.heard.entry(DeviceId(sender)).or_default();
            *e = (e.0 + 1, e.1 + i64::from(rssi));
        }
        for p in self.plays.iter_mut() {
            if let Act::Replay { delay_ms, heard, recorded } = &mut p.act {
                if !p.window.contains(s.saturating_add(*delay_ms)) || heard.len() >= REPLAY_BUFFER {
                    continue;
                }
                let mut key = [0u8; 8];
                key.copy_from_slice(&blake2s256(bytes)[..8]);
                if recorded.insert(key, s).is_none() {
                    heard.push_back((s, Arc::from(bytes)));
                }
                if recorded.len() > 2 * REPLAY_BUFFER {
                    // Copies come back within about one delay of the first.
                    let horizon = s.saturating_sub(delay_ms.saturating_mul(2));
                    recorded.retain(|_, at| *at >= horizon);
                }
            }
        }
        let from = out.len();
        self.inner.handle_frame(now, bytes, rssi, hops, out);
        self.tamper(now, out, from);
    }
    fn handle_reading(&mut self, now: Now, quantity: QuantityType, reading: Reading, out: &mut Vec<Action>) {
        self.last_reading = Some(reading);
        let offset = self.offset_at(self.clock.scenario_ms(now));
        let reported = if offset == 0.0 { reading } else { shifted(quantity, reading, offset) };
        let from = out.len();
        self.inner.handle_reading(now, quantity, reported, out);
        self.tamper(now, out, from);
        self.on_own_reading(now, reading, out);
    }
    fn handle_uplink(&mut self, now: Now, bytes: &[u8], out: &mut Vec<Action>) {
        let from = out.len();
        self.inner.handle_uplink(now, bytes, out);
        self.tamper(now, out, from);
    }
    fn handle_batch(&mut self, now: Now, bytes: &[u8], out: &mut Vec<Action>) {
        let from = out.len();
        self.inner.handle_batch(now, bytes, out);
        self.tamper(now, out, from);
    }
    fn take_batch(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.inner.take_batch(buf)
    }
    fn consensus(&mut self, quantity: QuantityType, now: Now) -> Option<f32> {
        self.inner.consensus(quantity, now)
    }
    fn subject_state(&self, subject: DeviceId) -> Option<SubjectState> {
        self.inner.subject_state(subject)
    }
    fn own_state(&self) -> OwnState {
        self.inner.own_state()
    }
    fn register_peer(&mut self, key: PublicKey) {
        self.inner.register_peer(key)
    }
    fn register_dust(&mut self, device: DeviceId, key: krill_core::gateway::DustKey) {
        self.inner.register_dust(device, key)
    }
    fn register_dust_served(&mut self, dust: DeviceId, gateway: DeviceId) {
        self.inner.register_dust_served(dust, gateway)
    }
    fn request_time_sync(&mut self, now: Now, source: DeviceId, rng: &mut SimRng, out: &mut Vec<Action>) {
        self.inner.request_time_sync(now, source, rng, out)
    }
    fn reboot(&mut self, now: Now) -> Result<String, String> {
        self.clock.reanchor(now);
        self.inner.reboot(now)
    }
    /// A selective relay drops its share of the frames its mesh relay
    /// should pass on for others.
    fn relays(&mut self, now: Now, frame: &[u8]) -> bool {
        let s = self.clock.scenario_ms(now);
        let drop = self.plays.iter().filter(|p| p.window.contains(s)).find_map(|p| match p.act {
            Act::SelectiveRelay { drop_fraction } => Some(drop_fraction),
            _ => None,
        });
        if drop.is_some_and(|p| self.rng.chance(p)) {
            return false;
        }
        self.inner.relays(now, frame)
    }
    fn corrupt_flash(&mut self, rng: &mut SimRng, bytes: u32) -> u32 {
        self.inner.corrupt_flash(rng, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::BaselineFirmware;
    use krill_core::crypto::{verify_frame, ModeledAuthority, ModeledCrypto};
    use krill_core::node::NodeConfig;

    const WARMUP_US: Micros = 1_000_000_000;
    const BOOT_US: Micros = 3_000_000;

    fn identity(n: u8) -> Identity {
        Identity::from_seed(&Seed([n; 32]))
    }

    fn authority() -> ModeledAuthority {
        ModeledAuthority::new(&[5; 32])
    }

    /// Node 0 of a four-node deployment, running the baseline firmware.
    fn attacker(kinds: &[(u64, Option<u64>, AttackKind)]) -> Attacker {
        let auth = authority();
        let ids: Vec<DeviceId> = (0..4).map(|i| identity(i).device_id()).collect();
        let crypto_for: CryptoFor = {
            let a = auth.clone();
            Arc::new(move |id: &Identity| Box::new(a.crypto_for(id)) as Box<dyn DynCrypto>)
        };
        let inner = BaselineFirmware::new(&NodeConfig::default(), auth.crypto_for(&identity(0)), Now::new(0, 0));
        let attacks: Vec<Attack> = kinds
            .iter()
            .map(|(start_s, end_s, kind)| Attack { node: 0, start_s: *start_s, end_s: *end_s, kind: kind.clone() })
            .collect();
        let env = AttackEnv {
            node: 0,
            id: ids[0],
            quantity: Quantity::Temperature,
            warmup_us: WARMUP_US,
            boot_us: BOOT_US,
            seed: 9,
            crypto: Box::new(auth.crypto_for(&identity(0))),
            ids: Arc::new(ids),
            crypto_for,
        };
        Attacker::new(Box::new(inner), &attacks, env)
    }

    /// The node's `Now` at scenario ms `s` (wall clock exact).
    fn at(s: i64) -> Now {
        let t_us = (WARMUP_US as i64 + s * 1_000) as u64;
        Now {
            mono_ms: (t_us - BOOT_US) / 1_000,
            unix_s: crate::sim::UNIX0 + (t_us / 1_000_000) as u32,
            unix_subsec_ms: ((t_us / 1_000) % 1_000) as u16,
        }
    }

    fn traces(out: &[Action]) -> Vec<(FrameRepr, FrameBuf)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Broadcast(f) => FrameRepr::parse(f).ok().map(|r| (r, f.clone())),
                _ => None,
            })
            .collect()
    }

    fn reported(a: &mut Attacker, s: i64, reading: Reading) -> Reading {
        let mut out = Vec::new();
        a.handle_reading(at(s), QuantityType::Temperature, reading, &mut out);
        match traces(&out).first().map(|t| &t.0.body) {
            Some(Body::TraceDeposit(t)) => t.reading,
            other => panic!("no trace: {other:?}"),
        }
    }

    fn key(n: u8) -> PublicKey {
        identity(n).public_key()
    }

    fn verifies(f: &[u8], r: &FrameRepr, signer: &PublicKey) -> bool {
        let c: ModeledCrypto = authority().crypto_for(&identity(3));
        verify_frame(&c, signer, f, r.signed_len()).is_ok()
    }

    #[test]
    fn reading_attacks_shift_reports_inside_their_window_only() {
        let mut a = attacker(&[(100, Some(200), AttackKind::Spike { offset: 2.0 })]);
        assert_eq!(reported(&mut a, 99_999, 2_150), 2_150);
        assert_eq!(reported(&mut a, 100_000, 2_150), 2_350);
        assert_eq!(reported(&mut a, 199_999, 2_150), 2_350);
        assert_eq!(reported(&mut a, 200_000, 2_150), 2_150);

        let mut a = attacker(&[(100, None, AttackKind::Drift { rate_per_h: 3.6 })]);
        assert_eq!(reported(&mut a, 100_000, 2_000), 2_000);
        assert_eq!(reported(&mut a, 200_000, 2_000), 2_010);
        assert_eq!(reported(&mut a, 1_100_000, 2_000), 2_100);

        let mut a = attacker(&[(0, None, AttackKind::Pattern { amplitude: 1.5, period_s: 60 })]);
        assert_eq!(reported(&mut a, 10_000, 2_000), 2_150);
        assert_eq!(reported(&mut a, 40_000, 2_000), 1_850);
        assert_eq!(reported(&mut a, 70_000, 2_000), 2_150);

        let collusion = AttackKind::Collusion { members: vec![1, 2], offset: -3.0 };
        let mut a = attacker(&[(0, None, collusion), (0, None, AttackKind::Spike { offset: 1.0 })]);
        assert_eq!(reported(&mut a, 5_000, 2_000), 1_800, "offsets of attacks on one node add up");
    }

    #[test]
    fn weight_inflation_claims_255_under_a_valid_signature() {
        let mut a = attacker(&[(0, None, AttackKind::WeightInflation { offset: 1.0 })]);
        let mut out = Vec::new();
        a.handle_reading(at(-1_000), QuantityType::Temperature, 2_000, &mut out);
        a.handle_reading(at(1_000), QuantityType::Temperature, 2_000, &mut out);
        let t = traces(&out);
        let weights: Vec<(u8, Reading)> = t
            .iter()
            .filter_map(|(r, _)| match &r.body {
                Body::TraceDeposit(d) => Some((d.weight, d.reading)),
                _ => None,
            })
            .collect();
        assert_eq!(weights, vec![(NORMAL_WEIGHT, 2_000), (INFLATED_WEIGHT, 2_100)]);
        assert!(t.iter().all(|(r, f)| verifies(f, r, &key(0))), "re-signed with its own key");
    }

    #[test]
    fn forged_traces_name_the_victim_and_sybils_fresh_ids() {
        let mut a = attacker(&[
            (0, None, AttackKind::Forgery { victim: 2, offset: 5.0 }),
            (0, None, AttackKind::Sybil { identities: 3, offset: -1.0 }),
        ]);
        let mut out = Vec::new();
        a.handle_reading(at(0), QuantityType::Temperature, 2_000, &mut out);
        let t = traces(&out);
        assert_eq!(t.len(), 1 + 1 + 3, "own trace, one forgery, three Sybils");
        let victim = identity(2).device_id();
        let forged: Vec<_> = t.iter().filter(|(r, _)| r.sender_id == victim).collect();
        assert_eq!(forged.len(), 1);
        let (r, f) = forged[0];
        assert!(matches!(r.body, Body::TraceDeposit(TraceDeposit { reading: 2_500, .. })));
        assert!(verifies(f, r, &key(0)) && !verifies(f, r, &key(2)), "signed by the forger, not the victim");
        let known: Vec<DeviceId> = (0..4).map(|i| identity(i).device_id()).collect();
        let sybils: Vec<_> = t.iter().filter(|(r, _)| !known.contains(&r.sender_id)).collect();
        assert_eq!(sybils.len(), 3);
        let mut ids: Vec<DeviceId> = sybils.iter().map(|(r, _)| r.sender_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), 3, "distinct identities");
        assert!(sybils.iter().all(|(r, _)| matches!(r.body, Body::TraceDeposit(TraceDeposit { reading: 1_900, .. }))));
    }

    #[test]
    fn flood_and_death_certificates_run_on_their_own_timer() {
        let flood = AttackKind::Flood { rate_per_s: 4.0, forged_ids: true };
        let death = AttackKind::ForgedDeathCertificate { victim: 3 };
        let mut a = attacker(&[(10, Some(20), flood), (10, Some(200), death)]);
        let mut rng = SimRng::stream(1, Purpose::Firmware, 0);
        let mut out = Vec::new();
        // Hear two neighbours, read once: the flood speaks for the stronger.
        let mut heard = Vec::new();
        a.handle_reading(at(0), QuantityType::Temperature, 2_000, &mut heard);
        for (n, rssi) in [(1u8, -80i8), (2, -50)] {
            let sender = identity(n).device_id();
            let c = authority().crypto_for(&identity(n));
            let f = Attacker::trace(&c, sender, at(0), QuantityType::Temperature, 2_000, 1).expect("trace");
            a.handle_frame(at(1_000), &f, rssi, 0, &mut Vec::new());
        }
        assert_eq!(a.next_deadline_ms(), at(10_000).mono_ms.min(a.inner.next_deadline_ms()));
        let mut s = 10_000;
        while s < 30_000 {
            let now = at(s);
            if now.mono_ms >= a.next_deadline_ms() {
                a.handle_timers(now, &mut rng, &mut out);
            }
            s += 1;
        }
        let t = traces(&out);
        let flood: Vec<_> = t.iter().filter(|(r, _)| matches!(r.body, Body::TraceDeposit(_))).collect();
        let deaths: Vec<_> = t.iter().filter(|(r, _)| matches!(r.body, Body::DeathCertificate(_))).collect();
        assert_eq!(flood.len(), 40, "4/s for 10 s");
        assert!(flood
            .iter()
            .all(|(r, _)| r.sender_id == identity(2).device_id() || r.sender_id == identity(1).device_id()));
        assert_eq!(deaths.len(), 1, "one certificate a minute");
        assert_eq!(deaths[0].0.sender_id, identity(3).device_id());
        assert!(!verifies(&deaths[0].1, &deaths[0].0, &key(3)));
    }

    #[test]
    fn replays_go_out_once_after_the_delay() {
        let mut a = attacker(&[(100, None, AttackKind::Replay { delay_s: 30 })]);
        let c = authority().crypto_for(&identity(1));
        let sender = identity(1).device_id();
        let mut rng = SimRng::stream(1, Purpose::Firmware, 0);
        let early = Attacker::trace(&c, sender, at(0), QuantityType::Temperature, 2_000, 1).expect("trace");
        let late = Attacker::trace(&c, sender, at(0), QuantityType::Temperature, 2_000, 2).expect("trace");
        a.handle_frame(at(60_000), &early, -60, 0, &mut Vec::new());
        a.handle_frame(at(80_000), &late, -60, 0, &mut Vec::new());
        a.handle_frame(at(81_000), &late, -60, 0, &mut Vec::new());
        let mut out = Vec::new();
        for s in (60_000..200_000).step_by(500) {
            let now = at(s);
            if now.mono_ms >= a.next_deadline_ms() {
                a.handle_timers(now, &mut rng, &mut out);
            }
        }
        let sent: Vec<&FrameBuf> = out
            .iter()
            .filter_map(|x| match x {
                Action::Broadcast(f) => Some(f),
                _ => None,
            })
            .filter(|f| f.get(4..12) == Some(sender.as_bytes()))
            .collect();
        assert_eq!(sent, vec![&late], "heard before start − delay: not replayed; the copy: replayed once");
    }

    /// A gateway stand-in: broadcasts the frames it is given on an uplink.
    struct Scripted {
        id: DeviceId,
        frames: Vec<FrameBuf>,
    }

    impl Firmware for Scripted {
        fn id(&self) -> DeviceId {
            self.id
        }
        fn role(&self) -> Role {
            Role::Gateway
        }
        fn next_deadline_ms(&self) -> u64 {
            u64::MAX
        }
        fn handle_timers(&mut self, _: Now, _: &mut SimRng, _: &mut Vec<Action>) {}
        fn handle_frame(&mut self, _: Now, _: &[u8], _: i8, _: u8, _: &mut Vec<Action>) {}
        fn handle_reading(&mut self, _: Now, _: QuantityType, _: Reading, _: &mut Vec<Action>) {}
        fn handle_uplink(&mut self, _: Now, _: &[u8], out: &mut Vec<Action>) {
            out.extend(self.frames.iter().cloned().map(Action::Broadcast));
        }
        fn consensus(&mut self, _: QuantityType, _: Now) -> Option<f32> {
            None
        }
        fn subject_state(&self, _: DeviceId) -> Option<SubjectState> {
            None
        }
        fn own_state(&self) -> OwnState {
            OwnState::Normal
        }
        fn register_peer(&mut self, _: PublicKey) {}
    }

    /// Gateway node 0 broadcasting its own trace and a vouched trace of Dust
    /// device 3, under `kind`.
    fn gateway(kind: AttackKind) -> (Attacker, Vec<Action>) {
        let gw = authority().crypto_for(&identity(0));
        let own = Attacker::trace(&gw, gw.device_id(), at(0), QuantityType::Temperature, 2_000, 1).expect("trace");
        let vouch = krill_core::wire::trace::GatewayVouch { gateway_id: gw.device_id(), dust_counter: 7 };
        let t = TraceDeposit {
            timestamp: at(0).unix_s,
            quantity: QuantityType::Temperature,
            reading: 2_000,
            confidence: 100,
            weight: NORMAL_WEIGHT,
            seq: 7,
            prev_hash: HashPrefix4::default(),
            vouch: Some(vouch),
        };
        let repr = FrameRepr {
            version: Version::V2,
            sender_id: identity(3).device_id(),
            body: Body::TraceDeposit(t),
            signature: Signature([0; 64]),
        };
        let dust = signed(&gw, &repr).expect("vouched trace");
        let mut a = attacker(&[(0, None, kind)]);
        a.inner = Box::new(Scripted { id: gw.device_id(), frames: vec![own, dust] });
        let mut out = Vec::new();
        a.handle_uplink(at(1_000), &[], &mut out);
        (a, out)
    }

    #[test]
    fn a_compromised_gateway_rewrites_and_resigns_only_vouched_traces() {
        let (_, out) = gateway(AttackKind::GatewayCompromise { offset: 5.0 });
        let t = traces(&out);
        let readings: Vec<(DeviceId, Reading)> = t
            .iter()
            .filter_map(|(r, _)| match &r.body {
                Body::TraceDeposit(d) => Some((r.sender_id, d.reading)),
                _ => None,
            })
            .collect();
        assert_eq!(readings, vec![(identity(0).device_id(), 2_000), (identity(3).device_id(), 2_500)]);
        assert!(t.iter().all(|(r, f)| verifies(f, r, &key(0))), "the gateway's key signs both");
    }

    #[test]
    fn a_selective_relay_drops_what_it_forwards_for_others() {
        let (_, out) = gateway(AttackKind::SelectiveRelay { drop_fraction: 1.0 });
        let senders: Vec<DeviceId> = traces(&out).iter().map(|(r, _)| r.sender_id).collect();
        assert_eq!(senders, vec![identity(0).device_id()], "its own trace stays, the Dust device's is dropped");
        let (_, out) = gateway(AttackKind::SelectiveRelay { drop_fraction: 0.0 });
        assert_eq!(traces(&out).len(), 2);
    }

    #[test]
    fn the_clock_is_reanchored_from_the_wall_clock_after_a_reboot() {
        let mut c = Clock { warmup_us: WARMUP_US, boot_us: BOOT_US };
        assert_eq!(c.scenario_ms(at(1_234)), 1_234);
        assert_eq!(c.mono_at(1_234), at(1_234).mono_ms);
        // Powered on again at scenario 500 s: mono restarts at 0.
        let wall = at(500_000);
        c.reanchor(Now { mono_ms: 0, ..wall });
        let later = Now { mono_ms: 20_000, ..at(520_000) };
        assert_eq!(c.scenario_ms(later), 520_000);
        assert_eq!(c.mono_at(520_000), 20_000);
    }
}
