//! Settlement and vaccine origination at the node: a Nano's per-epoch
//! TraceBatches (ES-6.1, ES-10.4 step 4), a Full node's validation and
//! PLANKTON settlement of them (ES-6.2), and the VACCINE a monitor sends
//! when its own vote confirms an attack (ES-2.8, ES-10.3).
//!
//! Batches are up to 3.6 KB, so they never go through the 255-byte
//! [`FrameBuf`](super::FrameBuf): the epoch tick keeps the epoch's
//! [`DeviceEpoch`] aggregates and announces each batch with
//! [`Action::SubmitBatch`]; the caller pulls the signed bytes into its own
//! buffer with [`Node::take_batch`]. Rules and pinning tests:
//! `docs/spec-deviations.md`.

use super::action::{Action, AuditEvent, BatchRefusal, Sink, TakeBatchError};
use super::{FrameBuf, Node, Now, Role, MAX_FRAME, VACCINE_INITIAL_STRENGTH};
use crate::crypto::{sign_frame, verify_frame, Crypto};
use crate::lifecycle::SubjectState;
use crate::quorum::QuorumMode;
use crate::settlement::{
    assemble_batches, compute_plankton_settlement, BatchHeader, DeviceEpoch, Settlement, EXPECTED_READINGS_PER_EPOCH,
};
use crate::types::{DeviceId, Signature, Timestamp};
use crate::wire::batch::{TraceBatch, ANOMALY_INFLAMMATION, ANOMALY_PYREXIA, ANOMALY_REJECTION, MAX_BATCH_TRACES};
use crate::wire::immune::AttackType;
use crate::wire::{Bytes, Header, VaccineV2Frame};

/// (Nano, batch id) pairs a Full node remembers having settled, so a
/// replayed batch is not paid twice.
pub const SETTLED_MEMORY: usize = 64;

/// A subject sending more than this many traces in the epoch of its
/// rejection is classed a flood (twice the nominal schedule).
pub const FLOOD_TRACES_PER_EPOCH: u16 = 2 * EXPECTED_READINGS_PER_EPOCH as u16;

/// The ES-6.1 anomaly bits a subject's record state stands for.
pub fn anomaly_flags_of(state: SubjectState) -> u8 {
    match state {
        SubjectState::Pyrexia => ANOMALY_PYREXIA,
        SubjectState::Inflammation => ANOMALY_INFLAMMATION,
        SubjectState::Rejection | SubjectState::Quarantine => ANOMALY_REJECTION,
        SubjectState::Neonatal | SubjectState::Normal | SubjectState::Apoptotic => 0,
    }
}

/// What kind of deviation was last recorded against a subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    /// A trace far from the profile or from our own reading.
    Spike,
    /// The NK audit found the running profile drifted from the baseline.
    Drift,
}

/// Offsets below which a vaccine's spread is not taken as measured (see
/// `Node::originate_vaccine`).
const MIN_SPREAD_SAMPLES: u32 = 3;

/// The deviating readings since the subject last was NORMAL: the figures
/// an originated vaccine carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct AttackEvidence {
    cause: Option<Cause>,
    n: u32,
    sum: i64,
    sum_sq: u64,
    pub(super) relative: bool,
}

impl AttackEvidence {
    /// A drift of the subject's level against ours was acted on
    /// ([`super::RelativeLevel`]): its offsets from its own profile are no
    /// signature of it.
    pub(super) fn mark_relative(&mut self) {
        self.relative = true;
    }

    /// Adds one deviating offset (reading − expected, reading units).
    pub(super) fn record(&mut self, cause: Cause, offset: i32) {
        self.cause = Some(cause);
        self.n = self.n.saturating_add(1);
        self.sum = self.sum.saturating_add(offset as i64);
        self.sum_sq =
            self.sum_sq.saturating_add((offset as i64).unsigned_abs().saturating_mul(offset.unsigned_abs() as u64));
    }

    /// True before any offset.
    pub(super) fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Offsets recorded.
    pub(super) fn samples(&self) -> u32 {
        self.n
    }

    /// Forgets everything (the subject is NORMAL again).
    pub(super) fn clear(&mut self) {
        *self = AttackEvidence::default();
    }

    #[cfg(test)]
    pub(super) fn mean_std_for_test(&self) -> Option<(i16, u16)> {
        self.mean_std()
    }

    /// Mean and standard deviation of the offsets, saturated to the wire
    /// types; `None` before any offset.
    fn mean_std(&self) -> Option<(i16, u16)> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f32;
        let mean = self.sum as f32 / n;
        let var = (self.sum_sq as f32 / n - mean * mean).max(0.0);
        let std = libm::sqrtf(var);
        Some((
            libm::roundf(mean).clamp(i16::MIN as f32, i16::MAX as f32) as i16,
            libm::roundf(std).min(u16::MAX as f32) as u16,
        ))
    }
}

/// The epoch's batches waiting to be taken, and (at a Full node) the
/// batches already settled.
#[derive(Clone, Debug)]
pub(super) struct Outbox<const N: usize> {
    devices: heapless::Vec<DeviceEpoch, N>,
    header: Option<BatchHeader>,
    made: u32,
    taken: u32,
    next_batch_id: u32,
    epoch_start: Timestamp,
    settled: heapless::Deque<(DeviceId, u32), SETTLED_MEMORY>,
}

impl<const N: usize> Outbox<N> {
    pub(super) fn new(now: Timestamp) -> Self {
        Outbox {
            devices: heapless::Vec::new(),
            header: None,
            made: 0,
            taken: 0,
            next_batch_id: 0,
            epoch_start: now,
            settled: heapless::Deque::new(),
        }
    }
}

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> Node<C, N, D, G, B> {
    /// ES-10.4 step 4 at the epoch tick: every subject's accumulator is
    /// closed (anomaly bits of its state OR-ed in, weight as the epoch
    /// ends) and reset. A Nano or gateway in QUORUM or SWARM keeps them
    /// and announces each batch; a SOLO node has nobody to relay through,
    /// and Full and Dust nodes make none. Batches not taken by the next
    /// tick are replaced.
    pub(super) fn close_epoch_batches(&mut self, now: Now, out: &mut impl Sink) {
        let eligible = matches!(self.cfg.role, Role::Nano | Role::Gateway) && self.quorum.mode() != QuorumMode::Solo;
        let start = core::mem::replace(&mut self.batches.epoch_start, now.unix_s);
        self.batches.devices.clear();
        self.batches.header = None;
        self.batches.made = 0;
        self.batches.taken = 0;
        for (_, s) in self.subjects.iter_mut() {
            let Some(mut acc) = s.acc.take() else {
                continue;
            };
            acc.anomaly_flags |= anomaly_flags_of(s.record.state());
            acc.weight = if s.isolated { 0 } else { s.record.assessed_weight() };
            if eligible {
                let _ = self.batches.devices.push(acc);
            }
        }
        if !eligible || self.batches.devices.is_empty() {
            return;
        }
        let end = if now.unix_s == start { start } else { now.unix_s.wrapping_sub(1) };
        let header = BatchHeader {
            nano_id: self.id,
            first_batch_id: self.batches.next_batch_id,
            epoch_start: start,
            epoch_end: end,
            field_entropy: 0.0,
        };
        let mut made = 0u32;
        for b in assemble_batches(&header, &self.batches.devices) {
            out.push(Action::SubmitBatch { batch_id: b.batch_id, len: b.buffer_len() });
            made = made.wrapping_add(1);
        }
        self.batches.header = Some(header);
        self.batches.made = made;
        self.batches.next_batch_id = self.batches.next_batch_id.wrapping_add(made);
    }

    /// Writes the next signed TraceBatch of the last epoch into `buf` and
    /// returns its length (one call per [`Action::SubmitBatch`]). The
    /// signature covers `bytes[0..signed_len]` (ES-6.1).
    pub fn take_batch(&mut self, buf: &mut [u8]) -> Result<usize, TakeBatchError> {
        let ob = &self.batches;
        let header = ob.header.ok_or(TakeBatchError::NonePending)?;
        if ob.taken >= ob.made {
            return Err(TakeBatchError::NonePending);
        }
        let b = assemble_batches(&header, &ob.devices).nth(ob.taken as usize).ok_or(TakeBatchError::NonePending)?;
        let len = b.buffer_len();
        if buf.len() < len {
            return Err(TakeBatchError::BufferTooSmall { needed: len });
        }
        self.batches.taken = self.batches.taken.saturating_add(1);
        let frame = buf.get_mut(..len).ok_or(TakeBatchError::BufferTooSmall { needed: len })?;
        b.emit(frame).map_err(|_| TakeBatchError::Sign)?;
        sign_frame(&self.crypto, frame, b.signed_len()).map_err(|_| TakeBatchError::Sign)?;
        Ok(len)
    }

    /// A TraceBatch submitted to this Full node (ES-6.2): decoded, the
    /// Nano's signature checked with its registered key, every device id
    /// registered, no clean trace for a device we hold in REJECTION or
    /// QUARANTINE, the aggregate matching the traces, not settled before;
    /// then the PLANKTON settlement. Either outcome is audited
    /// ([`AuditEvent::Settled`] or [`AuditEvent::BatchRefused`]) and returned.
    pub fn handle_batch(&mut self, now: Now, bytes: &[u8], out: &mut impl Sink) -> Result<Settlement, BatchRefusal> {
        let nano = Header::parse(bytes).map(|h| h.sender_id).unwrap_or_default();
        let batch_id = bytes
            .get(crate::wire::HEADER_LEN..crate::wire::HEADER_LEN + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        let r = self.check_batch(now, bytes);
        match r {
            Ok(settlement) => out.push(Action::Audit(AuditEvent::Settled { nano, batch_id, settlement })),
            Err(reason) => out.push(Action::Audit(AuditEvent::BatchRefused { nano, batch_id, reason })),
        }
        r
    }

    fn check_batch(&mut self, now: Now, bytes: &[u8]) -> Result<Settlement, BatchRefusal> {
        if self.cfg.role != Role::Full {
            return Err(BatchRefusal::NotFull);
        }
        let batch = TraceBatch::<MAX_BATCH_TRACES>::parse(bytes).map_err(BatchRefusal::Decode)?;
        if batch.nano_id == self.id {
            return Err(BatchRefusal::OwnBatch);
        }
        let key = self.key_of(batch.nano_id).ok_or(BatchRefusal::UnknownNano)?;
        verify_frame(&self.crypto, &key, bytes, batch.signed_len()).map_err(|_| BatchRefusal::BadSignature)?;
        if (batch.epoch_end.wrapping_sub(batch.epoch_start) as i32) < 0 {
            return Err(BatchRefusal::EpochInverted);
        }
        for t in &batch.traces {
            let d = t.device_id;
            let registered = d == self.id || self.key_of(d).is_some() || self.served.iter().any(|(dust, _)| *dust == d);
            if !registered {
                return Err(BatchRefusal::UnregisteredDevice(d));
            }
            if t.anomaly_flags == 0 && self.rejected_before(d, batch.epoch_end, now) {
                return Err(BatchRefusal::AnomalyHidden(d));
            }
        }
        let traces = batch.traces.as_slice();
        let distinct = traces
            .iter()
            .enumerate()
            .filter(|(i, t)| !traces.get(..*i).unwrap_or(&[]).iter().any(|e| e.device_id == t.device_id))
            .count();
        let anomalies = traces.iter().filter(|t| t.anomaly_flags != 0).count();
        let rejections = traces.iter().filter(|t| t.anomaly_flags & ANOMALY_REJECTION != 0).count();
        let a = &batch.aggregate;
        if a.total_devices as usize != distinct
            || a.anomalies_detected as usize != anomalies
            || a.rejections as usize != rejections.min(u8::MAX as usize)
            || a.healthy_devices > a.total_devices
        {
            return Err(BatchRefusal::AggregateMismatch);
        }
        let id = (batch.nano_id, batch.batch_id);
        if self.batches.settled.iter().any(|s| *s == id) {
            return Err(BatchRefusal::Replayed);
        }
        if self.batches.settled.is_full() {
            self.batches.settled.pop_front();
        }
        let _ = self.batches.settled.push_back(id);
        Ok(compute_plankton_settlement(&batch, &self.cfg.settlement))
    }

    /// True if our record of `d` is in REJECTION or QUARANTINE and entered
    /// it before `epoch_end` (a batch of an earlier epoch was honest then).
    /// The time in the state includes what a reboot carried over, so a
    /// record restored at a board's clock 0 still dates from its rejection.
    fn rejected_before(&self, d: DeviceId, epoch_end: Timestamp, now: Now) -> bool {
        let Some(s) = self.subject(d) else {
            return false;
        };
        if anomaly_flags_of(s.record.state()) & ANOMALY_REJECTION == 0 {
            return false;
        }
        let ago_s = s.record.time_in_state_ms(now.mono_ms) / 1000;
        let since = now.unix_s.wrapping_sub(ago_s.min(u32::MAX as u64) as u32);
        (epoch_end.wrapping_sub(since) as i32) >= 0
    }

    /// ES-2.8: our own vote rejected `subject`; at most once per rejection,
    /// a VACCINE v2 with the deviating readings' figures is signed,
    /// applied here through the same path a received one takes (so our
    /// seen-set drops echoes) and broadcast. The attack type comes from
    /// what was seen: a flood if the subject sent more than
    /// [`FLOOD_TRACES_PER_EPOCH`] traces this epoch, else a slow drift if
    /// the NK audit recorded the last deviation, else a value spike. No
    /// vaccine when the figures' match window
    /// (`crate::vaccine::MATCH_STD_MULTIPLE` σ) contains a zero offset.
    pub(super) fn originate_vaccine(&mut self, subject: DeviceId, now: Now, out: &mut impl Sink) {
        use crate::vaccine::{build_vaccine, on_vaccine, ConfirmedAttack, VACCINE_LIFETIME_S};
        let Some((_, s)) = self.subject_index(subject).and_then(|i| self.subjects.get_mut(i)) else {
            return;
        };
        // A drift against our own level (acted on, or standing now
        // whatever vote confirmed the attack) has no signature: a receiver
        // matches offsets from its own profile of a device, where a slow
        // drift under a day's swing looks like every honest device's
        // weather (drift-long: such vaccines tripled honest votes).
        if s.vaccinated || s.evidence.relative || s.relative.as_ref().and_then(|r| r.drifted()).is_some() {
            return;
        }
        let Some((deviation_mean, deviation_std)) = s.evidence.mean_std() else {
            return;
        };
        // A signature whose match window reaches within
        // MIN_UNEXPLAINED_STEPS of a zero offset would match healthy
        // readings (noise, or a day's swing ahead of a profile's mean) and
        // make every receiver twice as jumpy about them: such an attack is
        // not distinctive enough to vaccinate. Fewer than
        // MIN_SPREAD_SAMPLES offsets do not measure a spread: the window is
        // then taken as at least MIN_UNEXPLAINED_STEPS wide either side.
        let floor = crate::lifecycle::MIN_UNEXPLAINED_STEPS as i32;
        let mut spread = crate::vaccine::MATCH_STD_MULTIPLE.saturating_mul((deviation_std as i32).max(1));
        if s.evidence.samples() < MIN_SPREAD_SAMPLES {
            spread = spread.max(floor);
        }
        if (deviation_mean as i32).abs() - spread < floor {
            return;
        }
        let Some(quantity) = s.last_obs.map(|o| o.quantity).or(s.profile.as_ref().map(|p| p.quantity)) else {
            return;
        };
        let (attack_type, dims) = if s.msgs_epoch > FLOOD_TRACES_PER_EPOCH {
            (AttackType::Flood, crate::profile::DIM_COMM)
        } else if s.evidence.cause == Some(Cause::Drift) {
            (AttackType::SlowDrift, crate::profile::DIM_VALUE)
        } else {
            (AttackType::ValueSpike, crate::profile::DIM_VALUE)
        };
        s.vaccinated = true;
        let attack = ConfirmedAttack {
            detected_at: now.unix_s,
            cluster: Bytes(subject.0),
            attack_type,
            quantity,
            deviation_mean,
            deviation_std,
            temporal_pattern: 0,
            affected_dims: dims as u16,
        };
        let body = build_vaccine(&attack, VACCINE_INITIAL_STRENGTH);
        let unsigned = VaccineV2Frame { sender_id: self.id, body, signature: Signature([0; 64]) };
        let mut buf = [0u8; MAX_FRAME];
        let Ok(len) = unsigned.emit(&mut buf) else {
            return;
        };
        let Some(bytes) = buf.get_mut(..len) else {
            return;
        };
        if sign_frame(&self.crypto, bytes, VaccineV2Frame::SIGNED_LEN).is_err() {
            return;
        }
        let Ok(frame) = VaccineV2Frame::parse(bytes) else {
            return;
        };
        let _ = on_vaccine(&mut self.vaccines, &mut self.vaccines_seen, &frame, now.unix_s, VACCINE_LIFETIME_S);
        out.push(Action::Audit(AuditEvent::VaccineOriginated { subject, attack_type, deviation_mean, deviation_std }));
        if self.own.state() != crate::lifecycle::OwnState::Apoptotic {
            if let Ok(f) = FrameBuf::from_slice(bytes) {
                out.push(Action::Broadcast(f));
            }
        }
    }
}
