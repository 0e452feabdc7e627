//! Received-frame dispatch (ES-10.2 4a, ES-10.3) in the safe order of
//! SPEC-NOTES 20: decode → guard precheck (blacklist, freshness, replay,
//! duplicate; charges nothing) → signature check with the sender's
//! *registered* key (unknown ids stop here) → guard admission (rate, flood)
//! → handler. Every drop is counted with one reason and audited.
//!
//! The TRACE_DEPOSIT handler resolves SPEC-NOTES 7, 18 and 26: the field
//! gets the monitor's assessed weight (never above the claim) on the
//! receiver's clock; the consistency check uses our latest reading of the
//! *same* quantity and `|t_theirs − t_mine|`; the profile deviation is
//! computed before the trace joins the profile, with the previous trace as
//! "previous"; the result goes into the *subject's* record.

use super::action::{Action, AuditEvent, FrameDrop, Sink, TraceAssessment, VaccineOutcome};
use super::{sync_time, Node, Now};
use crate::consistency::{check_physical_consistency, ConsistencyInput};
use crate::crypto::{verify_frame, Crypto};
use crate::dag::Trace;
use crate::distance::{estimate_distance, RssiSample};
use crate::guards::FrameMeta;
use crate::lifecycle::{self, handle_consistency_result, ConsistencyEvent, NodeEvent, SubjectEvent};
use crate::profile::{compute_deviation, BehavioralProfile, Observation, ProfileMode, SubjectKind};
use crate::quorum::Presence;
use crate::types::{sigma_tenths, DeviceId, QuantityType, Reading, Timestamp, SIGMA_INFLAMMATION};
use crate::wire::immune::InflammationReplyV2;
use crate::wire::{
    Body, FrameRepr, Header, InflammationQuery, InflammationReply, MessageType, TimeSyncRequest, TimeSyncResponse,
    TraceDeposit,
};

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> Node<C, N, D, G, B> {
    /// A received frame. `rssi` is this copy's signal strength (dBm),
    /// `hops` the relay hops it took (0 = heard from its sender directly).
    pub fn handle_frame(&mut self, now: Now, bytes: &[u8], rssi: i8, hops: u8, out: &mut impl Sink) {
        if bytes.get(2..4) == Some(&[crate::types::PROTOCOL_VERSION_2, MessageType::Vaccine.to_u8()]) {
            return self.handle_vaccine(now, bytes, out);
        }
        let repr = match FrameRepr::parse(bytes) {
            Ok(r) => r,
            Err(e) => {
                let (sender, msg_type) = match Header::parse(bytes) {
                    Ok(h) => (h.sender_id, h.msg_type.to_u8()),
                    Err(_) => (DeviceId::default(), bytes.get(3).copied().unwrap_or(0)),
                };
                return self.drop_frame(sender, msg_type, FrameDrop::Decode(e), out);
            }
        };
        let sender = repr.sender_id;
        let msg_type = repr.body.msg_type().to_u8();
        if sender == self.id {
            return self.drop_frame(sender, msg_type, FrameDrop::OwnEcho, out);
        }
        let meta = FrameMeta { sender, msg_type, seq: seq_of(&repr.body), timestamp: timestamp_of(&repr.body) };
        let unverified = match self.guards.precheck(meta, now.unix_s) {
            Ok(u) => u,
            Err(r) => return self.drop_frame(sender, msg_type, FrameDrop::Guard(r), out),
        };
        // A gateway-vouched Dust trace is signed by the gateway it names.
        let signer = match &repr.body {
            Body::TraceDeposit(TraceDeposit { vouch: Some(v), .. }) => {
                if !self.serves(sender, v.gateway_id) {
                    return self.drop_frame(sender, msg_type, FrameDrop::NotServed, out);
                }
                v.gateway_id
            }
            _ => sender,
        };
        let Some(key) = self.key_of(signer) else {
            return self.drop_frame(sender, msg_type, FrameDrop::UnknownSender, out);
        };
        if verify_frame(&self.crypto, &key, bytes, repr.signed_len()).is_err() {
            return self.drop_frame(sender, msg_type, FrameDrop::BadSignature, out);
        }
        if let Err(r) = self.guards.admit_verified(unverified.signature_verified(), now.unix_s) {
            return self.drop_frame(sender, msg_type, FrameDrop::Guard(r), out);
        }
        self.dispatch(now, sender, repr.body, rssi, hops, out);
    }

    /// A VACCINE v2 frame (signed body + unsigned relay tail, SPEC-NOTES
    /// 31): verified with the *origin's* key, whoever relayed it; a copy
    /// already seen is dropped as a duplicate before it is charged; then the
    /// vaccine module's relay rules, the table, and the relay copy.
    fn handle_vaccine(&mut self, now: Now, bytes: &[u8], out: &mut impl Sink) {
        use crate::vaccine::{on_vaccine, VaccineAction, VaccineKey, VACCINE_LIFETIME_S};
        use crate::wire::VaccineV2Frame;
        let msg_type = MessageType::Vaccine.to_u8();
        let frame = match VaccineV2Frame::parse(bytes) {
            Ok(f) => f,
            Err(e) => {
                let sender = Header::parse(bytes).map(|h| h.sender_id).unwrap_or_default();
                return self.drop_frame(sender, msg_type, FrameDrop::Decode(e), out);
            }
        };
        let origin = frame.sender_id;
        if origin == self.id {
            return self.drop_frame(origin, msg_type, FrameDrop::OwnEcho, out);
        }
        let meta = FrameMeta { sender: origin, msg_type, seq: None, timestamp: None };
        let unverified = match self.guards.precheck(meta, now.unix_s) {
            Ok(u) => u,
            Err(r) => return self.drop_frame(origin, msg_type, FrameDrop::Guard(r), out),
        };
        let Some(key) = self.key_of(origin) else {
            return self.drop_frame(origin, msg_type, FrameDrop::UnknownSender, out);
        };
        if verify_frame(&self.crypto, &key, bytes, VaccineV2Frame::SIGNED_LEN).is_err() {
            return self.drop_frame(origin, msg_type, FrameDrop::BadSignature, out);
        }
        if self.vaccines_seen.contains(&VaccineKey::of(&frame)) {
            return self.drop_frame(origin, msg_type, FrameDrop::Guard(crate::guards::DropReason::Duplicate), out);
        }
        if let Err(r) = self.guards.admit_verified(unverified.signature_verified(), now.unix_s) {
            return self.drop_frame(origin, msg_type, FrameDrop::Guard(r), out);
        }
        let outcome =
            match on_vaccine(&mut self.vaccines, &mut self.vaccines_seen, &frame, now.unix_s, VACCINE_LIFETIME_S) {
                Ok(VaccineAction::Applied { stored, relay }) => {
                    let mut relayed = false;
                    if let Some(copy) = relay {
                        let mut buf = [0u8; super::MAX_FRAME];
                        if let Ok(n) = copy.emit(&mut buf) {
                            if let Some(f) = buf.get(..n).and_then(|b| super::FrameBuf::from_slice(b).ok()) {
                                out.push(Action::Broadcast(f));
                                relayed = true;
                            }
                        }
                    }
                    VaccineOutcome::Applied { stored, relayed }
                }
                Ok(VaccineAction::DuplicateDropped) => {
                    return self.drop_frame(
                        origin,
                        msg_type,
                        FrameDrop::Guard(crate::guards::DropReason::Duplicate),
                        out,
                    )
                }
                Err(e) => VaccineOutcome::Refused(e),
            };
        out.push(Action::Audit(AuditEvent::Vaccine { origin, outcome }));
    }

    fn drop_frame(&mut self, sender: DeviceId, msg_type: u8, reason: FrameDrop, out: &mut impl Sink) {
        match reason {
            FrameDrop::Guard(r) => self.guard_drops.record(r),
            other => self.frame_drops.record(other),
        }
        out.push(Action::Audit(AuditEvent::Dropped { sender, msg_type, reason }));
    }

    /// ES-10.3 for a verified, admitted frame.
    fn dispatch(&mut self, now: Now, sender: DeviceId, body: Body, rssi: i8, hops: u8, out: &mut impl Sink) {
        if let Some(i) = self.subject_index(sender) {
            self.feed_subject(i, SubjectEvent::Heard, now, out);
        }
        match body {
            Body::TraceDeposit(t) => {
                let kind = if t.vouch.is_some() { SubjectKind::Dust } else { SubjectKind::Nano };
                self.on_trace(now, sender, &t, kind, out)
            }
            Body::PresencePulse(p) => {
                let presence = Presence {
                    sender,
                    sent_at: p.v2.map_or(now.unix_s, |v| v.timestamp),
                    mode: p.mode,
                    neighbor_count: p.neighbor_count,
                    tx_power: p.v2.map(|v| v.tx_power_dbm),
                    rssi,
                    hops,
                };
                self.on_presence(now, &presence);
            }
            Body::Heartbeat(h) => {
                let reported = self.quorum.table().get(&sender).map_or(0, |e| e.reported_count);
                let tx_power = self.quorum.table().get(&sender).and_then(|e| e.tx_power);
                let presence = Presence {
                    sender,
                    sent_at: h.timestamp,
                    mode: h.mode,
                    neighbor_count: reported,
                    tx_power,
                    rssi,
                    hops,
                };
                self.on_presence(now, &presence);
            }
            Body::InflammationQuery(q) => self.on_query(now, sender, &q, out),
            Body::InflammationReply(r) => {
                if let Some(i) = self.subject_index(r.suspect_id) {
                    self.feed_subject(i, SubjectEvent::Reply { responder: sender, reply: r }, now, out);
                }
            }
            Body::RejectionNotice(n) if n.subject_id == self.id => {
                out.push(Action::Audit(AuditEvent::RejectedBy { by: sender }));
            }
            Body::DeathCertificate(_) => {
                self.forget(sender);
                out.push(Action::Audit(AuditEvent::Died { device: sender }));
            }
            Body::ProfileSync(ps) => self.on_profile_sync(sender, &ps, out),
            Body::TimeSyncRequest(r) if r.target_id == self.id => self.on_sync_request(now, sender, &r, out),
            Body::TimeSyncResponse(r) => self.on_sync_response(now, sender, &r, out),
            _ => {}
        }
    }

    /// PRESENCE_PULSE / HEARTBEAT → neighbour table; relayed copies do not
    /// count (SPEC-NOTES 33) and only direct copies feed the RSSI distance.
    fn on_presence(&mut self, now: Now, p: &Presence) {
        let weight = self.subject(p.sender).map_or(lifecycle::NEONATAL_WEIGHT, |s| s.record().assessed_weight());
        let _ = self.quorum.observe(now.unix_s, p, weight);
        if p.hops == 0 {
            if let Some(tx_power) = p.tx_power {
                if let Some((_, s)) = self.subject_index(p.sender).and_then(|i| self.subjects.get_mut(i)) {
                    s.rssi.push(RssiSample { rssi: p.rssi, tx_power });
                }
            }
        }
    }

    /// Our latest own reading of `quantity` and its timestamp (SPEC-NOTES 26).
    fn my_latest(&self, quantity: QuantityType) -> Option<(Reading, Timestamp)> {
        self.dag.recent_by_device(self.id, quantity).next().map(|e| (e.reading, e.timestamp))
    }

    fn distance_to(&self, them: DeviceId) -> crate::distance::DistanceEstimate {
        let tracker = self.subject(them).map(|s| &s.rssi);
        estimate_distance(&self.id, &them, &[], tracker, self.cfg.environment, &self.cfg.rssi_calibration)
    }

    pub(super) fn on_trace(
        &mut self,
        now: Now,
        sender: DeviceId,
        t: &TraceDeposit,
        kind: SubjectKind,
        out: &mut impl Sink,
    ) {
        let trace = Trace {
            device: sender,
            timestamp: t.timestamp,
            quantity: t.quantity,
            reading: t.reading,
            confidence: t.confidence,
            weight: t.weight,
            seq: t.seq,
            prev_hash: t.prev_hash,
        };
        let Some(i) = self.subject_slot(sender, kind, now) else {
            // No room to assess it: keep it out of the field rather than
            // trusting its own claim (SPEC-NOTES 7).
            let _ = self.dag.append(&trace, now.unix_s);
            return;
        };
        let obs = Observation { reading: t.reading, quantity: t.quantity, timestamp: t.timestamp, rx_ms: now.mono_ms };

        let mine = self.my_latest(t.quantity);
        let distance = self.distance_to(sender);
        let time_delta_ms = mine.map_or(0, |(_, ts)| {
            let secs = (t.timestamp.wrapping_sub(ts) as i32).unsigned_abs();
            secs.saturating_mul(1000)
        });
        let (consistency, event) = match mine {
            Some((my_reading, _)) => {
                let input = ConsistencyInput {
                    my_reading,
                    their_reading: t.reading,
                    quantity: t.quantity,
                    distance_cm: distance.cm,
                    time_delta_ms,
                };
                let check = check_physical_consistency(&input);
                (Some(check), handle_consistency_result(check.result, &input))
            }
            None => (None, ConsistencyEvent::Nothing),
        };

        let Some((_, s)) = self.subjects.get_mut(i) else {
            return;
        };
        s.msgs_epoch = s.msgs_epoch.saturating_add(1);
        // Deviation first, against the profile without this trace and with
        // the previous trace as "previous" (SPEC-NOTES 26).
        let deviation = s
            .profile
            .as_ref()
            .filter(|p| p.quantity == t.quantity)
            .and_then(|p| compute_deviation(p, &obs, s.last_obs.as_ref(), &[]).ok());
        let used_weight = if s.isolated { 0 } else { s.record.effective_weight(t.weight) };
        let learning = s.record.state() == lifecycle::SubjectState::Neonatal;
        let below_inflammation = deviation.is_none_or(|d| d.total < sigma_tenths(SIGMA_INFLAMMATION));
        let consistent =
            consistency.and_then(|c| c.result.sigma()).is_none_or(|x| x < sigma_tenths(SIGMA_INFLAMMATION));
        let mut profile_updated = false;
        if learning || (below_inflammation && consistent) {
            let prev = s.last_obs;
            let p = s.profile.get_or_insert_with(|| {
                let mode = if learning { ProfileMode::Learning } else { ProfileMode::Running };
                BehavioralProfile::new(sender, t.quantity, mode)
            });
            profile_updated = p.update(&obs, prev.as_ref(), &[]).is_ok();
        }
        s.last_obs = Some(obs);

        let _ = self.dag.append(&trace, now.unix_s);
        let _ = self.field.deposit(&trace, used_weight, now.unix_s);

        let profile_sigma = deviation.map_or(0.0, |d| d.total);
        let my_reading = mine.map(|(r, _)| r);
        let sample = |sigma: f32| lifecycle::DeviationSample {
            sigma,
            quantity: t.quantity,
            suspect_reading: t.reading,
            my_reading: my_reading.unwrap_or(t.reading),
        };
        // Active vaccines make a matching deviation count more (ES-2.8).
        let offset = deviation.and_then(|_| {
            let p = self.subject(sender)?.profile.as_ref()?;
            let mean = p.value_mean / p.quantity.scale().unit_per_step;
            Some(t.reading as i32 - mean as i32)
        });
        let vobs = crate::vaccine::Observation {
            quantity: t.quantity,
            offset: offset.unwrap_or_else(|| my_reading.map_or(0, |m| t.reading as i32 - m as i32)),
            dims: crate::profile::DIM_VALUE as u16,
        };
        let scale = |x: f32| self.vaccines.scaled_deviation(&vobs, x, now.unix_s);
        let profile_sigma = scale(profile_sigma);
        let event = match event {
            ConsistencyEvent::Subject(SubjectEvent::Deviation(d)) => {
                ConsistencyEvent::Subject(SubjectEvent::Deviation(lifecycle::DeviationSample {
                    sigma: scale(d.sigma),
                    ..d
                }))
            }
            other => other,
        };
        let deviation_total = deviation.map(|d| scale(d.total));
        let (fed_sigma, event) = match event {
            ConsistencyEvent::Subject(SubjectEvent::Deviation(d)) => {
                let sigma = d.sigma.max(profile_sigma);
                (Some(sigma), Some(SubjectEvent::Deviation(lifecycle::DeviationSample { sigma, ..d })))
            }
            ConsistencyEvent::Subject(e) => (Some(f32::INFINITY), Some(e)),
            ConsistencyEvent::OwnSensorFault => {
                self.feed_own(NodeEvent::OwnReading { plausible: false }, now, out);
                (deviation_total, deviation_total.map(|d| SubjectEvent::Deviation(sample(d))))
            }
            ConsistencyEvent::Nothing => (deviation_total, deviation_total.map(|d| SubjectEvent::Deviation(sample(d)))),
        };
        out.push(Action::Audit(AuditEvent::Trace(TraceAssessment {
            subject: sender,
            quantity: t.quantity,
            reading: t.reading,
            claimed_weight: t.weight,
            used_weight,
            deviation,
            my_reading,
            consistency,
            distance,
            time_delta_ms,
            fed_sigma: fed_sigma.unwrap_or(0.0),
            profile_updated,
        })));
        if let Some(e) = event {
            self.feed_subject(i, e, now, out);
        }
    }

    /// INFLAMMATION_QUERY: judge the suspect's reading against our own of
    /// the same quantity and answer the querier (ES-10.3, SPEC-NOTES 42).
    fn on_query(&mut self, now: Now, sender: DeviceId, q: &InflammationQuery, out: &mut impl Sink) {
        if q.suspect_id == self.id {
            return;
        }
        let mine = self.my_latest(q.quantity);
        let distance = self.distance_to(q.suspect_id);
        let time_delta_ms =
            mine.map_or(0, |(_, ts)| (q.timestamp.wrapping_sub(ts) as i32).unsigned_abs().saturating_mul(1000));
        let verdict = lifecycle::evaluate_inflammation_locally(
            mine.map(|(r, _)| r),
            q.suspect_reading,
            q.quantity,
            distance.cm,
            time_delta_ms,
        );
        let reply = InflammationReply {
            suspect_id: q.suspect_id,
            verdict,
            own_reading: mine.map_or(0, |(r, _)| r),
            own_confidence: self.cfg.confidence,
            v2: q.v2.map(|v| InflammationReplyV2 { query_id: v.query_id, timestamp: now.unix_s }),
        };
        self.unicast(sender, Body::InflammationReply(reply), out);
    }

    /// PROFILE_SYNC (ES-10.3, ES-7.4): merged only into a profile we are
    /// still learning (our record of the subject is NEONATAL), never about
    /// the sender itself or about us, and never into a running profile: a
    /// "newer" remote version wins 70 % of the merge, so one liar could
    /// otherwise pull a monitored subject's profile wherever it likes.
    fn on_profile_sync(&mut self, sender: DeviceId, ps: &crate::wire::ProfileSync, out: &mut impl Sink) {
        use crate::profile::{merge_profiles, ProfileSummary};
        use crate::wire::immune::ProfileComponent;
        if ps.subject_id == sender || ps.subject_id == self.id || ps.component != ProfileComponent::Values {
            return;
        }
        let Some(v2) = ps.v2 else {
            return;
        };
        let Some((_, s)) = self.subject_index(ps.subject_id).and_then(|i| self.subjects.get_mut(i)) else {
            return;
        };
        if s.record.state() != lifecycle::SubjectState::Neonatal {
            return;
        }
        let Some(local) = s.profile.as_ref() else {
            return;
        };
        let mut bins = [0u16; crate::types::MAX_PROFILE_BINS];
        for (b, v) in bins.iter_mut().zip(ps.bins.iter()) {
            *b = *v;
        }
        let summary = ProfileSummary {
            profile_version: ps.profile_version,
            value_count: v2.value_count,
            value_mean: v2.value_mean,
            value_var: v2.value_var,
            value_min: v2.value_min,
            value_max: v2.value_max,
            last_updated: v2.last_updated,
            bins,
        };
        let Ok(remote) = BehavioralProfile::from_summary(ps.subject_id, local.quantity, &summary) else {
            return;
        };
        if let Ok(mut merged) = merge_profiles(local, &remote) {
            merged.mode = local.mode;
            s.profile = Some(merged);
            out.push(Action::Audit(AuditEvent::ProfileMerged { subject: ps.subject_id, from: sender }));
        }
    }

    fn on_sync_request(&mut self, now: Now, sender: DeviceId, r: &TimeSyncRequest, out: &mut impl Sink) {
        let t = sync_time(now);
        let resp = TimeSyncResponse { requester_id: sender, nonce: r.nonce, t1: r.t1, t2: t, t3: t, stratum: 1 };
        self.unicast(sender, Body::TimeSyncResponse(resp), out);
    }

    /// A response answers our pending request only (nonce, source,
    /// addressee), so a replay cannot set an old time (SPEC-NOTES 33).
    fn on_sync_response(&mut self, now: Now, sender: DeviceId, r: &TimeSyncResponse, out: &mut impl Sink) {
        if r.requester_id != self.id || self.pending_sync != Some((sender, r.nonce)) {
            return;
        }
        self.pending_sync = None;
        let t4 = sync_time(now).as_millis() as i64;
        let (t1, t2, t3) = (r.t1.as_millis() as i64, r.t2.as_millis() as i64, r.t3.as_millis() as i64);
        let offset_ms = ((t2 - t1) + (t3 - t4)) / 2;
        let rtt_ms = (t4 - t1) - (t3 - t2);
        out.push(Action::ClockOffset { source: sender, offset_ms, rtt_ms });
    }
}

/// The sequence number the duplicate window tracks.
fn seq_of(body: &Body) -> Option<u8> {
    match body {
        Body::TraceDeposit(t) => Some(t.seq),
        _ => None,
    }
}

/// The signed send time the freshness window checks (not VACCINE's origin
/// time or a DEATH_CERTIFICATE's "valid since": those are old by design).
fn timestamp_of(body: &Body) -> Option<Timestamp> {
    match body {
        Body::TraceDeposit(t) => Some(t.timestamp),
        Body::Heartbeat(h) => Some(h.timestamp),
        _ => None,
    }
}
