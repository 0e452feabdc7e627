//! Received-frame dispatch (ES-10.2 4a, ES-10.3) in the safe order of
//! SPEC-NOTES 20: decode → guard precheck (blacklist, freshness, replay,
//! duplicate; a pulse or heartbeat older than its sender's last one;
//! charges nothing) → signature check with the sender's
//! *registered* key (unknown ids stop here) → guard admission (relayed
//! copies of sequence-less frames, rate, flood) → handler. Every drop is
//! counted with one reason and audited.
//!
//! The TRACE_DEPOSIT handler resolves SPEC-NOTES 7, 18 and 26: the field
//! gets the monitor's assessed weight (never above the claim) on the
//! receiver's clock; the consistency check uses our latest reading of the
//! *same* quantity and `|t_theirs − t_mine|`; the profile deviation is
//! computed before the trace joins the profile, with the previous trace as
//! "previous"; the result goes into the *subject's* record.
//!
//! Peer statements (ES-10.3, ES-3.1): a CONSISTENCY_ALERT or an
//! NK_AUDIT_RESPONSE reporting drift is recorded and makes us run our own
//! NK audit of the subject, which alone may move our record;
//! DATA_RETRACTION removes the issuer's own covered
//! entries; NK_AUDIT_REQUEST is answered from our own profile of the
//! subject; a DEATH_CERTIFICATE passes `metabolic::plan_death`; REJECTION_NOTICEs
//! naming us quarantine us only from a majority of distinct live neighbours.
//! Rules and pinning tests: `docs/spec-deviations.md`.

use super::action::{
    Action, AuditEvent, FrameDrop, GatewayAssessment, GatewayEvent, NkRefusal, PeerEvent, Sink, TraceAssessment,
    VaccineOutcome,
};
use super::{sync_time, Node, Now};
use crate::consistency::{check_physical_consistency, ConsistencyInput};
use crate::crypto::{verify_frame, Crypto};
use crate::dag::Trace;
use crate::distance::{estimate_distance, RssiSample};
use crate::gateway::GATEWAY_VOUCHED_1;
use crate::guards::FrameMeta;
use crate::lifecycle::{self, handle_consistency_result, ConsistencyEvent, NodeEvent, SubjectEvent};
use crate::profile::{compute_deviation, BehavioralProfile, Observation, ProfileMode, SubjectKind};
use crate::quorum::Presence;
use crate::types::{sigma_tenths, DeviceId, QuantityType, Reading, Timestamp, SIGMA_INFLAMMATION};
use crate::wire::immune::{InflammationReplyV2, NkAuditRequest, NkAuditResponse, RejectionNotice};
use crate::wire::{
    Body, ConsistencyAlert, DataRetraction, FrameRepr, Header, InflammationQuery, InflammationReply, MessageType,
    TimeSyncRequest, TimeSyncResponse, TraceDeposit,
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
            Err(crate::guards::DropReason::Duplicate)
                if matches!(repr.body, Body::TraceDeposit(TraceDeposit { vouch: Some(_), .. })) =>
            {
                return self.on_vouched_duplicate(now, &repr, bytes, out)
            }
            Err(r) => return self.drop_frame(sender, msg_type, FrameDrop::Guard(r), out),
        };
        // A recorded pulse or heartbeat is refused before it is verified or
        // charged to its sender's rate bucket (SPEC-NOTES 33).
        if let Some(sent_at) = presence_time(&repr.body) {
            if let Err(r) = self.quorum.screen(now.unix_s, &sender, sent_at) {
                return self.drop_frame(sender, msg_type, FrameDrop::Guard(presence_drop(r)), out);
            }
        }
        // A v2 query, reply or alert, an NK request or response and a
        // rejection notice are stamped when sent: one outside the freshness
        // window, or a query already answered, is a recording and is
        // refused before it is verified or charged (SPEC-NOTES 33).
        if let (Some(f), Some(sent_at)) = (self.guards.config().freshness, send_time(&repr.body)) {
            if let Err(r) = f.check(sent_at, now.unix_s) {
                return self.drop_frame(sender, msg_type, FrameDrop::Guard(r), out);
            }
        }
        if let Body::InflammationQuery(InflammationQuery { v2: Some(v), .. }) = &repr.body {
            if self.answered.iter().any(|a| *a == (sender, v.query_id)) {
                return self.drop_frame(sender, msg_type, FrameDrop::Guard(crate::guards::DropReason::Duplicate), out);
            }
        }
        // Enrollment frames carry (or certify) their own keys (ES-13.2).
        if super::enroll::is_enrollment(&repr.body) {
            return self.on_enrollment_frame(now, repr, bytes, unverified, out);
        }
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
        // A PROFILE_SYNC we would not merge is left unverified and
        // uncharged: a replayed one then costs its honest sender nothing
        // (SPEC-NOTES 33; a sync carries no send time to screen it by).
        if let Body::ProfileSync(ps) = &repr.body {
            if self.mergeable_sync(sender, ps).is_none() {
                return;
            }
        }
        if verify_frame(&self.crypto, &key, bytes, repr.signed_len()).is_err() {
            return self.drop_frame(sender, msg_type, FrameDrop::BadSignature, out);
        }
        // The signature names the signed content: a relayed copy of a frame
        // without a sequence number is a duplicate, not another charge.
        let signature = bytes.get(repr.signed_len()..).unwrap_or_default();
        let verified = unverified.signature_verified_with(signature, hops == 0);
        if let Err(r) = self.guards.admit_verified(verified, now.unix_s) {
            return self.drop_frame(sender, msg_type, FrameDrop::Guard(r), out);
        }
        self.dispatch(now, sender, repr.body, bytes, rssi, hops, out);
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

    /// ES-10.3 for a verified, admitted frame (`bytes` is the frame itself,
    /// which a DEATH_CERTIFICATE is checked on again).
    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        now: Now,
        sender: DeviceId,
        body: Body,
        bytes: &[u8],
        rssi: i8,
        hops: u8,
        out: &mut impl Sink,
    ) {
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
            Body::RejectionNotice(n) if n.subject_id == self.id => self.on_rejection_notice(now, sender, out),
            Body::RejectionNotice(n) if self.serves_over_lora(n.subject_id) => {
                self.on_dust_rejection_notice(now, sender, &n, out)
            }
            Body::ConsistencyAlert(a) => self.on_consistency_alert(now, sender, &a, out),
            Body::DataRetraction(r) => self.on_retraction(now, sender, &r, out),
            Body::NkAuditRequest(r) if r.target_id == self.id => self.on_nk_request(now, sender, &r, out),
            Body::NkAuditResponse(r) if r.requester_id == self.id => self.on_nk_response(now, sender, &r, out),
            Body::DeathCertificate(_) => self.on_death(sender, bytes, out),
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
    pub(super) fn my_latest(&self, quantity: QuantityType) -> Option<(Reading, Timestamp)> {
        self.dag.recent_by_device(self.id, quantity).next().map(|e| (e.reading, e.timestamp))
    }

    /// ES-11.6 distance to `them`: the deployment manifest's when it lists
    /// both of us (a near RSSI median can still shorten it), else RSSI.
    fn distance_to(&self, them: DeviceId) -> crate::distance::DistanceEstimate {
        let tracker = self.subject(them).map(|s| &s.rssi);
        let (env, cal) = (self.cfg.environment, &self.cfg.rssi_calibration);
        estimate_distance(&self.id, &them, &self.cfg.manifest, tracker, env, cal)
    }

    /// A verified TRACE_DEPOSIT (also our own wrapping of a Dust uplink, a
    /// gateway's local copy). A gateway-vouched trace goes through ES-16.3
    /// corroboration first: only the first copy of a Dust transmission is
    /// assessed; an agreeing copy from another gateway vouches for both, a
    /// disagreeing one is assessed by nobody (one gateway lies, the Dust
    /// device is not to blame) and charges both gateways. A gateway that
    /// just wrapped a device's uplink then answers with a queued
    /// REJECTION_NOTICE downlink, in the device's receive window.
    pub(super) fn on_trace(
        &mut self,
        now: Now,
        sender: DeviceId,
        t: &TraceDeposit,
        kind: SubjectKind,
        out: &mut impl Sink,
    ) {
        let Some(v) = t.vouch else {
            return self.assess_trace(now, sender, t, kind, None, out);
        };
        let own = v.gateway_id == self.id && self.cfg.role == super::Role::Gateway;
        if own {
            self.downlinks.earn();
        }
        self.vouched_copy(now, sender, t, v, true, out);
        if own {
            self.send_dust_rejection(now, sender, out);
        }
    }

    /// ES-16.3 for one gateway's copy of a Dust transmission: corroborated
    /// against the other copies, assessed if it is the first one and
    /// `assess` allows, and every gateway whose trust level moved is
    /// audited. Returns false when the copy was the first seen (nothing to
    /// corroborate) but not assessed.
    fn vouched_copy(
        &mut self,
        now: Now,
        sender: DeviceId,
        t: &TraceDeposit,
        v: crate::wire::trace::GatewayVouch,
        assess: bool,
        out: &mut impl Sink,
    ) -> bool {
        use crate::gateway::{CrossCheck, GatewayTrace, MONITORED_GATEWAYS};
        let mut used = true;
        let before: heapless::Vec<(DeviceId, crate::types::Confidence), MONITORED_GATEWAYS> =
            self.gateways.profiles().iter().map(|p| (p.gateway_id(), p.confidence(now.unix_s))).collect();
        let gt = GatewayTrace {
            gateway: v.gateway_id,
            device: sender,
            frame_counter: v.dust_counter,
            reading: t.reading,
            received_at: now.unix_s,
        };
        match self.gateways.corroborate(now.unix_s, &gt) {
            // A full gateway table: assessed unprofiled, at VOUCHED_1.
            Ok(CrossCheck::First) | Err(_) if assess => {
                self.assess_trace(now, sender, t, SubjectKind::Dust, Some(v.gateway_id), out)
            }
            Ok(CrossCheck::First) | Err(_) => used = false,
            Ok(CrossCheck::Repeat) => {}
            Ok(CrossCheck::Agree { second, .. }) => {
                let _ = self.gateways.evaluate(now.unix_s, second, false);
            }
            Ok(CrossCheck::Disagree { first, second }) => {
                let ev = GatewayEvent::Disagreement { device: sender, frame_counter: v.dust_counter, first, second };
                out.push(Action::Audit(AuditEvent::Gateway(ev)));
            }
        }
        for p in self.gateways.profiles() {
            let from = before.iter().find(|(g, _)| *g == p.gateway_id()).map_or(GATEWAY_VOUCHED_1, |(_, c)| *c);
            let to = p.confidence(now.unix_s);
            if from != to {
                let ev =
                    GatewayEvent::TrustChanged { gateway: p.gateway_id(), from, to, anomaly_rate: p.anomaly_rate() };
                out.push(Action::Audit(AuditEvent::Gateway(ev)));
            }
        }
        used
    }

    /// A vouched TRACE_DEPOSIT whose (Dust device, sequence) the guards saw
    /// already: normally another gateway's copy of the same transmission
    /// (ES-16.3), which must reach the corroborator although it is a
    /// duplicate for ES-15. It is verified like a new frame (gateway
    /// registered for the device, its signature), then only corroborated:
    /// never assessed, never charged to the rate limit. A copy with nothing
    /// left to compare against is dropped as the duplicate it is.
    fn on_vouched_duplicate(&mut self, now: Now, repr: &FrameRepr, bytes: &[u8], out: &mut impl Sink) {
        let (sender, msg_type) = (repr.sender_id, MessageType::TraceDeposit.to_u8());
        let Body::TraceDeposit(t @ TraceDeposit { vouch: Some(v), .. }) = repr.body else {
            return;
        };
        if !self.serves(sender, v.gateway_id) {
            return self.drop_frame(sender, msg_type, FrameDrop::NotServed, out);
        }
        let Some(key) = self.key_of(v.gateway_id) else {
            return self.drop_frame(sender, msg_type, FrameDrop::UnknownSender, out);
        };
        if verify_frame(&self.crypto, &key, bytes, repr.signed_len()).is_err() {
            return self.drop_frame(sender, msg_type, FrameDrop::BadSignature, out);
        }
        if !self.vouched_copy(now, sender, &t, v, false, out) {
            self.drop_frame(sender, msg_type, FrameDrop::Guard(crate::guards::DropReason::Duplicate), out);
        }
    }

    /// ES-10.3 TRACE_DEPOSIT: consistency, deviation, profile, DAG, field,
    /// lifecycle. `gateway` names the gateway of a vouched trace, whose
    /// ES-16 confidence replaces the claimed one in the field.
    fn assess_trace(
        &mut self,
        now: Now,
        sender: DeviceId,
        t: &TraceDeposit,
        kind: SubjectKind,
        gateway: Option<DeviceId>,
        out: &mut impl Sink,
    ) {
        let trace = Trace::from_deposit(sender, t);
        let Some(i) = self.subject_slot(sender, kind, now) else {
            // No room to assess it: keep it out of the field rather than
            // trusting its own claim (SPEC-NOTES 7).
            let _ = self.dag_append(&trace, now, out);
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
        super::SlowTrend::update(&mut s.trend, t.quantity, t.quantity.to_value(t.reading), now.mono_ms);
        if let Some((m, _)) = mine.filter(|_| time_delta_ms <= super::PAIR_MAX_DELTA_MS) {
            let r = s.relative.get_or_insert_with(|| super::RelativeLevel::new(t.quantity));
            if r.quantity() != t.quantity {
                *r = super::RelativeLevel::new(t.quantity);
            }
            r.observe(t.quantity.to_value(t.reading), t.quantity.to_value(m), now.mono_ms);
        }
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
            if profile_updated {
                s.profile_updated_ms = now.mono_ms;
            }
        }
        s.last_obs = Some(obs);

        let _ = self.dag_append(&trace, now, out);

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
        // ES-16.2: the field multiplies the gateway's confidence into the
        // weight; a trace that reached the Dust INFLAMMATION band counts as
        // an anomaly against its gateway (ES-16.3).
        let gateway = gateway.map(|g| {
            use crate::profile::DeviationVerdict;
            let anomalous =
                fed_sigma.is_some_and(|x| DeviationVerdict::classify(x, kind) >= DeviationVerdict::Inflammation);
            let assessed = self.gateways.evaluate(now.unix_s, g, anomalous).map_or(GATEWAY_VOUCHED_1, |(_, c)| c);
            let anomaly_rate = self.gateways.profile(&g).map_or(0.0, |p| p.anomaly_rate());
            let confidence = crate::gateway::vouched_confidence(assessed, t.confidence);
            GatewayAssessment { gateway: g, confidence, anomalous, anomaly_rate }
        });
        let confidence = gateway.map_or(t.confidence, |g| g.confidence);
        let _ = self.field.deposit(&Trace { confidence, ..trace }, used_weight, now.unix_s);
        if let Some((_, s)) = self.subjects.get_mut(i) {
            // ES-10.4 step 4: the epoch aggregate of accepted traces.
            let flags = super::batch::anomaly_flags_of(s.record.state());
            let acc = s.acc.get_or_insert_with(|| crate::settlement::DeviceEpoch::new(sender, t.quantity));
            if acc.quantity == t.quantity {
                acc.add(t.reading, confidence, used_weight);
                acc.anomaly_flags |= flags;
            }
        }
        if let Some((_, s)) = self.subjects.get_mut(i) {
            // The figures a vaccine would carry (ES-2.8): deviating offsets
            // since the subject was last NORMAL.
            if s.record.state() == lifecycle::SubjectState::Normal {
                s.evidence.clear();
            }
            if fed_sigma.is_some_and(|x| x >= sigma_tenths(crate::types::SIGMA_PYREXIA)) {
                s.evidence.record(super::batch::Cause::Spike, vobs.offset);
            }
        }
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
            gateway,
        })));
        if let Some(e) = event {
            self.feed_subject(i, e, now, out);
        }
    }

    /// What we learned of `suspect` for a vote reply: its slow average
    /// (same time constant as our own, see [`super::SlowTrend`]), its
    /// spread from its baseline (else a profile with enough samples), how
    /// many devices we hear moved the way `suspect_reading` did, and
    /// whether it is far from us: beyond [`lifecycle::FAR_RESPONDER_CM`],
    /// or a Nano none of whose presence pulses reached us directly (at the
    /// edge of our range; a Dust device is never measured, so it is not).
    pub(super) fn history_of(
        &self,
        suspect: DeviceId,
        quantity: QuantityType,
        suspect_reading: Reading,
        distance: crate::distance::DistanceEstimate,
        now_ms: u64,
    ) -> Option<lifecycle::LocalHistory> {
        let s = self.subject(suspect)?;
        let p = s.baseline().or(s.profile())?;
        if p.quantity != quantity || p.value_count < self.cfg.min_profile_samples {
            return None;
        }
        let theirs = s.trend.filter(|t| t.quantity == quantity)?;
        let own = self.own_trend.filter(|t| t.quantity == quantity)?;
        let shift = quantity.to_value(suspect_reading) - theirs.mean;
        let own_latest = self.my_latest(quantity).map(|(r, _)| quantity.to_value(r));
        let own_moved = own_latest.is_some_and(|v| moved_with(shift, v - own.mean, quantity));
        let others = self.corroborating(suspect, quantity, shift, now_ms);
        let level = quantity.to_value(suspect_reading);
        let own_beyond = own_latest.is_some_and(|v| reads_beyond(level, shift, v, quantity));
        let beyond = self.bracketing(suspect, quantity, level, shift, now_ms);
        let explained = self.field_explains(suspect, quantity, shift, own_latest.map(|v| v - own.mean), now_ms);
        Some(lifecycle::LocalHistory {
            suspect_mean: theirs.mean,
            suspect_sigma: libm::sqrtf(p.value_var.max(0.0)),
            own_mean: own.mean,
            corroborating: others.saturating_add(u8::from(own_moved)),
            bracketing: beyond.saturating_add(u8::from(own_beyond)),
            drifted: drifted_with(suspect, s, quantity, shift),
            field_explains: explained,
            relative_drift: self
                .subject_index(suspect)
                .and_then(|i| self.relative_drift(i))
                .is_some_and(|(q, _)| q == quantity),
            far: if distance.is_known() {
                distance.cm > lifecycle::FAR_RESPONDER_CM
            } else {
                s.kind == SubjectKind::Nano
            },
        })
    }

    /// Subjects other than `suspect` whose latest reading of `quantity`
    /// moved from their slow average the way the suspect's did (`shift`,
    /// physical units): only subjects in good standing (not isolated, not
    /// REJECTED or worse), and only readings heard within the last
    /// [`CORROBORATION_WINDOW_MS`] (a silent device says nothing of now).
    fn corroborating(&self, suspect: DeviceId, quantity: QuantityType, shift: f32, now_ms: u64) -> u8 {
        let n = self
            .witnesses(suspect, quantity, now_ms)
            .filter_map(|(_, s, value)| Some(value - s.trend.filter(|t| t.quantity == quantity)?.mean))
            .filter(|x| moved_with(shift, *x, quantity))
            .count();
        n.min(u8::MAX as usize) as u8
    }

    /// Subjects other than `suspect` in good standing (not isolated, not
    /// REJECTED or worse) with a reading of `quantity` heard within the last
    /// [`CORROBORATION_WINDOW_MS`], and that reading in physical units.
    fn witnesses(
        &self,
        suspect: DeviceId,
        quantity: QuantityType,
        now_ms: u64,
    ) -> impl Iterator<Item = (DeviceId, &super::Subject<N>, f32)> + '_ {
        use lifecycle::SubjectState as St;
        self.subjects
            .iter()
            .filter(move |(id, s)| {
                *id != suspect && !s.isolated && matches!(s.record.state(), St::Normal | St::Pyrexia | St::Inflammation)
            })
            .filter_map(move |(id, s)| {
                let o = s.last_obs.filter(|o| o.quantity == quantity)?;
                (now_ms.saturating_sub(o.rx_ms) <= CORROBORATION_WINDOW_MS).then_some((
                    *id,
                    s,
                    quantity.to_value(o.reading),
                ))
            })
    }

    /// Whether the devices we hear, placed by the deployment manifest
    /// (ES-11.3), describe a field that explains `suspect`'s shift: at
    /// least [`lifecycle::MIN_CORROBORATING`] of them (we count too, with
    /// our `own_shift`) within [`lifecycle::FAR_RESPONDER_CM`] of it moved
    /// its way beyond [`lifecycle::MIN_UNEXPLAINED_STEPS`], and either a
    /// plane through their shifts (a slope: the suspect between a fire and
    /// the cold side) reaches [`PLANE_SHARE`] of the suspect's shift at its
    /// spot, or a line of their shifts against distance that falls away
    /// from the suspect (a peak: the seat of a fire) reaches
    /// [`PEAK_SHARE`] of it at distance 0. A lie on top of a zone's
    /// uniform change (an HVAC step) is neither: both stay at the zone's
    /// level. A colluding group smaller than the count moves too few
    /// devices.
    pub(super) fn field_explains(
        &self,
        suspect: DeviceId,
        quantity: QuantityType,
        shift: f32,
        own_shift: Option<f32>,
        now_ms: u64,
    ) -> bool {
        use crate::distance::{find_entry, position_distance_cm};
        let manifest = &self.cfg.manifest;
        let Some(at) = find_entry(manifest, &suspect).map(|e| e.position_cm) else {
            return false;
        };
        let floor = lifecycle::MIN_UNEXPLAINED_STEPS * quantity.scale().unit_per_step;
        let sign = libm::copysignf(1.0, shift);
        let mut fit = FieldFit::default();
        let mut add = |id: &DeviceId, x: f32| {
            let Some(e) = find_entry(manifest, id) else {
                return;
            };
            let d_cm = position_distance_cm(e.position_cm, at);
            if d_cm <= lifecycle::FAR_RESPONDER_CM && x.is_finite() {
                let metres = |k: usize| (e.position_cm[k] as f64 - at[k] as f64) / 100.0;
                fit.add(metres(0), metres(1), f64::from(d_cm) / 100.0, f64::from(sign * x), f64::from(floor));
            }
        };
        if let Some(x) = own_shift {
            add(&self.id, x);
        }
        for (id, s, value) in self.witnesses(suspect, quantity, now_ms) {
            if let Some(t) = s.trend.filter(|t| t.quantity == quantity) {
                add(&id, value - t.mean);
            }
        }
        let s = f64::from(libm::fabsf(shift));
        fit.moved >= u16::from(lifecycle::MIN_CORROBORATING)
            && (fit.peak().is_some_and(|y| y >= PEAK_SHARE * s) || fit.plane().is_some_and(|y| y >= PLANE_SHARE * s))
    }

    /// Subjects other than `suspect`, in the standing and recency of
    /// [`Node::corroborating`], whose latest reading of `quantity` is at
    /// least as far out as the suspect's `level` in the direction of its
    /// `shift` ([`reads_beyond`]).
    fn bracketing(&self, suspect: DeviceId, quantity: QuantityType, level: f32, shift: f32, now_ms: u64) -> u8 {
        let n = self
            .witnesses(suspect, quantity, now_ms)
            .filter(|(_, _, v)| reads_beyond(level, shift, *v, quantity))
            .count();
        n.min(u8::MAX as usize) as u8
    }

    /// INFLAMMATION_QUERY: judge the suspect's reading against our own of
    /// the same quantity and answer the querier (ES-10.3, SPEC-NOTES 42).
    fn on_query(&mut self, now: Now, sender: DeviceId, q: &InflammationQuery, out: &mut impl Sink) {
        if let Some(v) = q.v2 {
            if self.answered.is_full() {
                self.answered.pop_front();
            }
            let _ = self.answered.push_back((sender, v.query_id));
        }
        if q.suspect_id == self.id {
            return;
        }
        let mine = self.my_latest(q.quantity);
        let distance = self.distance_to(q.suspect_id);
        let time_delta_ms =
            mine.map_or(0, |(_, ts)| (q.timestamp.wrapping_sub(ts) as i32).unsigned_abs().saturating_mul(1000));
        let history = self.history_of(q.suspect_id, q.quantity, q.suspect_reading, distance, now.mono_ms);
        let verdict = lifecycle::evaluate_inflammation_with_history(
            mine.map(|(r, _)| r),
            q.suspect_reading,
            q.quantity,
            distance.cm,
            time_delta_ms,
            history,
        );
        out.push(Action::Audit(AuditEvent::Answered {
            querier: sender,
            suspect: q.suspect_id,
            quantity: q.quantity,
            suspect_reading: q.suspect_reading,
            my_reading: mine.map(|(r, _)| r),
            distance_cm: distance.cm,
            history,
            verdict,
        }));
        let reply = InflammationReply {
            suspect_id: q.suspect_id,
            verdict,
            own_reading: mine.map_or(0, |(r, _)| r),
            own_confidence: self.cfg.confidence,
            v2: q.v2.map(|v| InflammationReplyV2 { query_id: v.query_id, timestamp: now.unix_s }),
        };
        self.unicast(sender, Body::InflammationReply(reply), out);
    }

    /// The index of the subject a PROFILE_SYNC from `sender` could be
    /// merged into ([`Node::on_profile_sync`]'s rules): a v2 values sync
    /// about a third device whose profile we are still learning.
    fn mergeable_sync(&self, sender: DeviceId, ps: &crate::wire::ProfileSync) -> Option<usize> {
        use crate::wire::immune::ProfileComponent;
        let about_third = ps.subject_id != sender && ps.subject_id != self.id;
        if !about_third || ps.component != ProfileComponent::Values || ps.v2.is_none() {
            return None;
        }
        let i = self.subject_index(ps.subject_id)?;
        let (_, s) = self.subjects.get(i)?;
        (s.record.state() == lifecycle::SubjectState::Neonatal && s.profile.is_some()).then_some(i)
    }

    /// PROFILE_SYNC (ES-10.3, ES-7.4): merged only into a profile we are
    /// still learning (our record of the subject is NEONATAL), never about
    /// the sender itself or about us, and never into a running profile: a
    /// "newer" remote version wins 70 % of the merge, so one liar could
    /// otherwise pull a monitored subject's profile wherever it likes.
    fn on_profile_sync(&mut self, sender: DeviceId, ps: &crate::wire::ProfileSync, out: &mut impl Sink) {
        use crate::profile::{merge_profiles, ProfileSummary};
        let Some(i) = self.mergeable_sync(sender, ps) else {
            return;
        };
        let (Some(v2), Some((_, s))) = (ps.v2, self.subjects.get_mut(i)) else {
            return;
        };
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

/// How recent a subject's reading must be to corroborate a change, ms.
const CORROBORATION_WINDOW_MS: u64 = 120_000;

/// Share of the suspect's shift the peak's line must reach at its spot: a
/// straight line under-reaches a field that falls off exponentially from
/// its seat, so half.
const PEAK_SHARE: f64 = 0.5;

/// Share of the suspect's shift the plane must reach at its spot: a plane
/// interpolates a slope, so the suspect should read about what it says.
const PLANE_SHARE: f64 = 0.75;

/// Least-squares fits through the devices around a suspect: points at
/// (east, north) offsets and distance from it, m, with their shift toward
/// the suspect's way; and how many of the shifts passed the floor.
#[derive(Default)]
struct FieldFit {
    n: u16,
    moved: u16,
    /// Sums for the plane w = a + b·u + c·v.
    su: f64,
    sv: f64,
    suu: f64,
    svv: f64,
    suv: f64,
    sw: f64,
    suw: f64,
    svw: f64,
    /// Sums for the line w = a + b·d.
    sd: f64,
    sdd: f64,
    sdw: f64,
}

impl FieldFit {
    fn add(&mut self, u: f64, v: f64, d: f64, w: f64, floor: f64) {
        self.n = self.n.saturating_add(1);
        self.moved = self.moved.saturating_add(u16::from(w >= floor));
        self.su += u;
        self.sv += v;
        self.suu += u * u;
        self.svv += v * v;
        self.suv += u * v;
        self.sw += w;
        self.suw += u * w;
        self.svw += v * w;
        self.sd += d;
        self.sdd += d * d;
        self.sdw += d * w;
    }

    /// The line against distance at distance 0, if it falls from there to
    /// [`lifecycle::FAR_RESPONDER_CM`] by at least half its height: a
    /// peak, not a slope the suspect sits on (devices above it on one side
    /// and below on the other give a line that barely falls).
    fn peak(&self) -> Option<f64> {
        let n = f64::from(self.n);
        let det = n * self.sdd - self.sd * self.sd;
        if self.n < 3 || det <= 1e-9 * n * self.sdd {
            return None;
        }
        let slope = (n * self.sdw - self.sd * self.sw) / det;
        let top = (self.sw - slope * self.sd) / n;
        let radius = f64::from(lifecycle::FAR_RESPONDER_CM) / 100.0;
        (top > 0.0 && -slope * radius >= 0.5 * top).then_some(top)
    }

    /// The plane at the suspect's spot (offset 0, 0), if the points span one.
    fn plane(&self) -> Option<f64> {
        let n = f64::from(self.n);
        let det3 = |m: [[f64; 3]; 3]| {
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        };
        let a = [[n, self.su, self.sv], [self.su, self.suu, self.suv], [self.sv, self.suv, self.svv]];
        let det = det3(a);
        let scale = n * self.suu.max(1.0) * self.svv.max(1.0);
        if self.n < 4 || det.abs() <= 1e-9 * scale {
            return None;
        }
        let with_w = [[self.sw, self.su, self.sv], [self.suw, self.suu, self.suv], [self.svw, self.suv, self.svv]];
        Some(det3(with_w) / det)
    }
}

/// Smallest shift, in reading steps, that counts as a device having moved
/// (0.25 °C: five times the noise of one reading against a slow average).
pub(super) const CORROBORATION_FLOOR_STEPS: f32 = 25.0;

/// True if a device's shift `x` from its slow average goes the way of the
/// suspect's `shift`, by at least half as much and beyond noise
/// ([`CORROBORATION_FLOOR_STEPS`]): a change still spreading has not
/// reached its full size everywhere.
fn moved_with(shift: f32, x: f32, quantity: QuantityType) -> bool {
    let floor = (CORROBORATION_FLOOR_STEPS * quantity.scale().unit_per_step).max(0.5 * libm::fabsf(shift));
    shift * x > 0.0 && libm::fabsf(x) >= floor
}

/// True if our own NK audit of `s` finds its value level drifted from its
/// baseline, the way of `shift`: the shift is no local gradient we cannot
/// see but a level the suspect left behind while we watched.
fn drifted_with<const N: usize>(id: DeviceId, s: &super::Subject<N>, quantity: QuantityType, shift: f32) -> bool {
    use crate::profile::{run_nk_audit, NkAuditResult, DIM_VALUE};
    let (Some(b), Some(c)) = (s.baseline(), s.profile()) else {
        return false;
    };
    b.quantity == quantity
        && c.quantity == quantity
        && (c.value_mean - b.value_mean) * shift > 0.0
        && matches!(run_nk_audit(id, b, c, s.kind),
            NkAuditResult::DriftDetected { dimensions, .. } if dimensions & DIM_VALUE != 0)
}

/// True if a device reading `value` reads at least as far out as a suspect
/// at `level` that moved by `shift`, up to [`CORROBORATION_FLOOR_STEPS`]:
/// the suspect's new level is one the neighbourhood already measures (a
/// door mixing two rooms moves a device toward its neighbours across the
/// wall, never beyond them).
fn reads_beyond(level: f32, shift: f32, value: f32, quantity: QuantityType) -> bool {
    let floor = CORROBORATION_FLOOR_STEPS * quantity.scale().unit_per_step;
    shift != 0.0 && (value - level) * libm::copysignf(1.0, shift) >= -floor
}

/// How long peer statements count as corroborating each other, ms: two
/// inflammation timeouts, so the notices of one vote always fall together
/// and an old grudge does not add up with a new one.
pub const PEER_EVIDENCE_WINDOW_MS: u64 = 600_000;

/// Fewest distinct REJECTION_NOTICE senders that quarantine this node.
pub const MIN_REJECTION_NOTICES: usize = 3;

/// Issuer entries a DATA_RETRACTION can keep while the rest are removed
/// (stack buffer; see [`Node::handle_frame`]'s retraction rule).
const RETRACTION_KEEP: usize = 64;

/// Outstanding NK_AUDIT_REQUESTs of ours.
const PENDING_NK: usize = 4;

/// Peer statements kept between frames: who sent us a REJECTION_NOTICE,
/// who alerted about whom, and our own NK requests still unanswered.
#[derive(Clone, Debug, Default)]
pub(super) struct PeerEvidence<const N: usize> {
    notices: heapless::Vec<(DeviceId, u64), N>,
    alerts: heapless::Vec<(DeviceId, DeviceId, u64), N>,
    pending_nk: heapless::Vec<(DeviceId, DeviceId, u32), PENDING_NK>,
}

impl<const N: usize> PeerEvidence<N> {
    fn prune(&mut self, now_ms: u64) {
        let fresh = |at: u64| now_ms.saturating_sub(at) <= PEER_EVIDENCE_WINDOW_MS;
        self.notices.retain(|(_, at)| fresh(*at));
        self.alerts.retain(|(_, _, at)| fresh(*at));
    }

    /// Records `by`'s notice; returns the distinct senders in the window.
    fn add_notice(&mut self, by: DeviceId, now_ms: u64) -> usize {
        self.prune(now_ms);
        if let Some(e) = self.notices.iter_mut().find(|(d, _)| *d == by) {
            e.1 = now_ms;
        } else if self.notices.push((by, now_ms)).is_err() {
            // Full of fresh notices: replace the oldest, the count is at N.
            if let Some(e) = self.notices.iter_mut().min_by_key(|(_, at)| *at) {
                *e = (by, now_ms);
            }
        }
        self.notices.len()
    }

    /// Records `from`'s alert about `suspect`; returns the distinct alerters.
    fn add_alert(&mut self, from: DeviceId, suspect: DeviceId, now_ms: u64) -> usize {
        self.prune(now_ms);
        if let Some(e) = self.alerts.iter_mut().find(|(f, s, _)| *f == from && *s == suspect) {
            e.2 = now_ms;
        } else if self.alerts.push((from, suspect, now_ms)).is_err() {
            if let Some(e) = self.alerts.iter_mut().min_by_key(|(_, _, at)| *at) {
                *e = (from, suspect, now_ms);
            }
        }
        self.alerts.iter().filter(|(_, s, _)| *s == suspect).count()
    }
}

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> Node<C, N, D, G, B> {
    /// Asks `target` for its NK audit of `subject` (NK_AUDIT_REQUEST); its
    /// answer comes back as `AuditEvent::Peer(PeerEvent::NkReport)` with
    /// `solicited: true`. At most four requests are outstanding (the oldest
    /// is forgotten).
    pub fn request_nk_audit(
        &mut self,
        now: Now,
        target: DeviceId,
        subject: DeviceId,
        rng: &mut impl super::Rng,
        out: &mut impl Sink,
    ) {
        let nonce = rng.next_u32();
        if self.peers.pending_nk.is_full() {
            self.peers.pending_nk.remove(0);
        }
        let _ = self.peers.pending_nk.push((target, subject, nonce));
        let req = NkAuditRequest { target_id: target, subject_id: subject, nonce, timestamp: now.unix_s };
        self.unicast(target, Body::NkAuditRequest(req), out);
    }

    /// CONSISTENCY_ALERT: evidence about the suspect, never a decision. The
    /// alert is a third party's unverifiable claim (its reading, its
    /// distance), so it is recorded with the distinct alerters in the window
    /// and our own view of the suspect, and answered by our own audit
    /// ([`Node::follow_up_audit`]); our record of the suspect moves only on
    /// what we measure ourselves. Alerts about the alerter itself are
    /// ignored, alerts about us are recorded like any other.
    fn on_consistency_alert(&mut self, now: Now, sender: DeviceId, a: &ConsistencyAlert, out: &mut impl Sink) {
        if a.suspect_id == sender {
            return;
        }
        let alerters = self.peers.add_alert(sender, a.suspect_id, now.mono_ms);
        let ev = PeerEvent::ConsistencyAlert {
            from: sender,
            suspect: a.suspect_id,
            reading: a.suspect_reading,
            expected: (a.expected_min, a.expected_max),
            severity: a.severity.to_u8(),
            alerters: alerters.min(u8::MAX as usize) as u8,
            our_view: self.subject_state(a.suspect_id),
        };
        out.push(Action::Audit(AuditEvent::Peer(ev)));
        self.follow_up_audit(now, sender, a.suspect_id, out);
    }

    /// What a peer's CONSISTENCY_ALERT or drift report makes us do: audit
    /// the suspect ourselves now, whatever the epoch's draw (ES-4.3
    /// `run_nk_audit` against our own baseline). Our record moves only if
    /// our own audit finds the drift; the peer's claim decides nothing.
    /// Ignored from senders we isolate, about subjects we do not profile,
    /// and more than once per subject per epoch, so a flood of claims costs
    /// one audit. A drift found this way is not alerted again (the
    /// neighbours heard the first alert).
    pub(super) fn follow_up_audit(&mut self, now: Now, from: DeviceId, suspect: DeviceId, out: &mut impl Sink) {
        use crate::profile::{run_nk_audit, NkAuditResult};
        if self.subject(from).is_some_and(|s| s.isolated) {
            return;
        }
        let epoch = self.epoch;
        let Some(i) = self.subject_index(suspect) else {
            return;
        };
        let Some((id, s)) = self.subjects.get_mut(i) else {
            return;
        };
        let (Some(base), Some(cur)) = (s.baseline.as_ref(), s.profile.as_ref()) else {
            return;
        };
        if s.followed_up == Some(epoch) {
            return;
        }
        s.followed_up = Some(epoch);
        let result = run_nk_audit(*id, base, cur, s.kind);
        out.push(Action::Audit(AuditEvent::NkAuditTriggered { subject: suspect, by: from, result }));
        if let NkAuditResult::DriftDetected { drift_sigma, .. } = result {
            self.act_on_drift(i, drift_sigma, false, now, out);
        }
    }

    /// DATA_RETRACTION: the issuer's own entries that
    /// `metabolic::retraction_covers` names leave the DAG and the field;
    /// nobody else's data is touched. The DAG and field only remove whole
    /// devices, so the issuer's uncovered entries are set aside (at most
    /// [`RETRACTION_KEEP`], the newest), the issuer is removed, and they are
    /// put back: into the DAG as stored, into the field with our current
    /// assessed weight. Uncovered entries beyond the buffer are lost with
    /// the covered ones and counted as `collateral`.
    fn on_retraction(&mut self, now: Now, issuer: DeviceId, r: &DataRetraction, out: &mut impl Sink) {
        use crate::metabolic::retraction_covers;
        let covered = |e: &crate::dag::DagEntry| retraction_covers(issuer, r, e.device, e.quantity, e.timestamp);
        let any_covered = self.dag.entries().iter().any(|e| e.device == issuer && covered(e));
        let field_covered =
            self.field.entries().any(|e| retraction_covers(issuer, r, e.device, e.quantity, e.timestamp));
        if !any_covered && !field_covered {
            out.push(Action::Audit(AuditEvent::Peer(PeerEvent::Retracted {
                issuer,
                dag_removed: 0,
                field_removed: 0,
                collateral: 0,
            })));
            return;
        }
        let mut keep: heapless::Vec<Trace, RETRACTION_KEEP> = heapless::Vec::new();
        let mut collateral = 0u16;
        for e in self.dag.entries().iter().rev().filter(|e| e.device == issuer && !covered(e)) {
            if keep.push(e.trace()).is_err() {
                collateral = collateral.saturating_add(1);
            }
        }
        let dag_before = self.dag.invalidate_device(issuer);
        let field_before = self.field.invalidate_device(issuer);
        let weight = self.subject(issuer).map_or(0, |s| if s.isolated { 0 } else { s.record.assessed_weight() });
        let mut field_back = 0usize;
        for t in keep.iter().rev() {
            let _ = self.dag.append(t, now.unix_s);
            if self.field.deposit(t, weight, now.unix_s).is_ok() {
                field_back += 1;
            }
        }
        let sat = |x: usize| x.min(u16::MAX as usize) as u16;
        let ev = PeerEvent::Retracted {
            issuer,
            dag_removed: sat(dag_before.saturating_sub(keep.len())),
            field_removed: sat(field_before.saturating_sub(field_back)),
            collateral,
        };
        out.push(Action::Audit(AuditEvent::Peer(ev)));
    }

    /// NK_AUDIT_REQUEST addressed to us: if we profile the subject (frozen
    /// baseline and running profile) we run the audit now, whatever the
    /// epoch draw, and answer with the drift figures. Not about the
    /// requester itself (a drifting device could measure its margin), not
    /// about us.
    fn on_nk_request(&mut self, now: Now, sender: DeviceId, r: &NkAuditRequest, out: &mut impl Sink) {
        use crate::profile::{compute_profile_drift, run_nk_audit, NkAuditResult};
        use crate::wire::immune::AuditResult;
        let refuse = |reason| AuditEvent::Peer(PeerEvent::NkRefused { from: sender, subject: r.subject_id, reason });
        if r.subject_id == sender {
            return out.push(Action::Audit(refuse(NkRefusal::AboutItself)));
        }
        if r.subject_id == self.id {
            return out.push(Action::Audit(refuse(NkRefusal::AboutUs)));
        }
        let Some(s) = self.subject(r.subject_id) else {
            return out.push(Action::Audit(refuse(NkRefusal::NotProfiled)));
        };
        let (Some(base), Some(cur)) = (s.baseline.as_ref(), s.profile.as_ref()) else {
            return out.push(Action::Audit(refuse(NkRefusal::NotProfiled)));
        };
        let result = run_nk_audit(r.subject_id, base, cur, s.kind);
        let drift_sigma = compute_profile_drift(base, cur);
        let (verdict, dims) = match result {
            NkAuditResult::Pass => (AuditResult::Pass, 0),
            NkAuditResult::DriftDetected { dimensions, .. } => (AuditResult::DriftDetected, dimensions),
        };
        let resp = NkAuditResponse {
            requester_id: sender,
            subject_id: r.subject_id,
            nonce: r.nonce,
            result: verdict,
            drift_tenths: (drift_sigma * 10.0) as u16,
            drifted_dims: dims,
            timestamp: now.unix_s,
        };
        self.unicast(sender, Body::NkAuditResponse(resp), out);
        let ev = PeerEvent::NkAnswered { to: sender, subject: r.subject_id, result, drift_sigma };
        out.push(Action::Audit(AuditEvent::Peer(ev)));
    }

    /// NK_AUDIT_RESPONSE addressed to us: recorded, and marked solicited
    /// when it answers an outstanding request of ours (target, subject and
    /// nonce). One peer's audit is its opinion: a drift verdict makes us
    /// audit the subject ourselves, it never moves a record by itself.
    fn on_nk_response(&mut self, now: Now, sender: DeviceId, r: &NkAuditResponse, out: &mut impl Sink) {
        use crate::wire::immune::AuditResult;
        let pending = self.peers.pending_nk.iter().position(|p| *p == (sender, r.subject_id, r.nonce));
        if let Some(i) = pending {
            self.peers.pending_nk.remove(i);
        }
        let ev = PeerEvent::NkReport {
            from: sender,
            subject: r.subject_id,
            solicited: pending.is_some(),
            drift: r.result == AuditResult::DriftDetected,
            drift_tenths: r.drift_tenths,
            dims: r.drifted_dims,
        };
        out.push(Action::Audit(AuditEvent::Peer(ev)));
        if r.result == AuditResult::DriftDetected {
            self.follow_up_audit(now, sender, r.subject_id, out);
        }
    }

    /// A REJECTION_NOTICE naming us (a stale one never gets here: see
    /// [`send_time`]). One peer must not quarantine a node, so the rule
    /// is: a notice counts if its sender is a
    /// Nano we hear directly (in the neighbour table) and have not rejected
    /// ourselves; when the distinct counted senders within
    /// [`PEER_EVIDENCE_WINDOW_MS`] reach max([`MIN_REJECTION_NOTICES`],
    /// a majority of our live neighbours), the own lifecycle gets
    /// `RejectedByPeers` (→ QUARANTINE, traces suppressed, ES-3.1). The
    /// senders' NORMAL state is deliberately not required: a node whose
    /// sensor is wrong sees its honest neighbours as deviant, and would
    /// otherwise never accept their verdict.
    fn on_rejection_notice(&mut self, now: Now, sender: DeviceId, out: &mut impl Sink) {
        out.push(Action::Audit(AuditEvent::RejectedBy { by: sender }));
        let credible = self.credible_notice_sender(sender);
        let needed = self.notices_needed(now);
        let distinct = if credible {
            self.peers.add_notice(sender, now.mono_ms)
        } else {
            self.peers.prune(now.mono_ms);
            self.peers.notices.len()
        };
        let sat = |x: usize| x.min(u8::MAX as usize) as u8;
        let ev =
            PeerEvent::RejectionTally { by: sender, counted: credible, distinct: sat(distinct), needed: sat(needed) };
        out.push(Action::Audit(AuditEvent::Peer(ev)));
        if credible && distinct >= needed {
            self.peers.notices.clear();
            self.feed_own(NodeEvent::RejectedByPeers, now, out);
        }
    }

    /// A peer's REJECTION_NOTICE counts only from a Nano we hear directly
    /// (in the neighbour table), do not isolate and have not rejected.
    fn credible_notice_sender(&self, sender: DeviceId) -> bool {
        self.quorum.table().get(&sender).is_some()
            && self.subject(sender).is_some_and(|s| {
                s.kind == SubjectKind::Nano && !s.isolated && s.record.state() != lifecycle::SubjectState::Rejection
            })
    }

    /// Distinct credible notices that decide: max([`MIN_REJECTION_NOTICES`],
    /// a majority of our live neighbours).
    fn notices_needed(&self, now: Now) -> usize {
        let alive = self.quorum.table().alive_count(now.unix_s);
        MIN_REJECTION_NOTICES.max(alive / 2 + 1)
    }

    /// True for a gateway and a Dust device registered with it.
    fn serves_over_lora(&self, device: DeviceId) -> bool {
        self.cfg.role == super::Role::Gateway && self.registry.short_id_of(&device).is_some()
    }

    /// A REJECTION_NOTICE about a Dust device this gateway serves: the
    /// device cannot hear the mesh, so the gateway relays the verdict by
    /// downlink, but only on the rule that quarantines a node named in
    /// notices ([`Node::on_rejection_notice`]): fresh notices from distinct
    /// credible senders, max(3, majority of live neighbours), within
    /// [`PEER_EVIDENCE_WINDOW_MS`]. One Nano (or a few liars) must not be
    /// able to silence a Dust device. Our own REJECTION of the device
    /// queues the downlink without any notice.
    fn on_dust_rejection_notice(&mut self, now: Now, sender: DeviceId, n: &RejectionNotice, out: &mut impl Sink) {
        let device = n.subject_id;
        let credible = self.credible_notice_sender(sender);
        let needed = self.notices_needed(now);
        let distinct = if credible {
            self.downlinks.add_notice(device, sender, now.mono_ms, PEER_EVIDENCE_WINDOW_MS)
        } else {
            self.downlinks.notices_about(&device)
        };
        let sat = |x: usize| x.min(u8::MAX as usize) as u8;
        let ev = GatewayEvent::NoticeTally {
            device,
            by: sender,
            counted: credible,
            distinct: sat(distinct),
            needed: sat(needed),
        };
        out.push(Action::Audit(AuditEvent::Gateway(ev)));
        if credible && distinct >= needed {
            self.queue_dust_rejection(device, sat(distinct), now, out);
        }
    }

    /// Queues a REJECTION_NOTICE downlink for a Dust device we serve
    /// (`by_peers`: the notices that decided it, 0 for our own verdict);
    /// anything else is ignored.
    pub(super) fn queue_dust_rejection(&mut self, device: DeviceId, by_peers: u8, now: Now, out: &mut impl Sink) {
        if !self.serves_over_lora(device) {
            return;
        }
        if self.downlinks.queue(device, now.mono_ms) {
            out.push(Action::Audit(AuditEvent::Gateway(GatewayEvent::RejectionQueued { device, by_peers })));
        }
    }

    /// Sends the queued REJECTION_NOTICE for `device`, if any, as a v2 Dust
    /// downlink (counter + AES-CMAC under the device's key, the checks of
    /// the Dust side's `handle_downlink`) when ES-12.4's budget allows.
    /// Queued rejections expire with the REJECTION timeout.
    fn send_dust_rejection(&mut self, now: Now, device: DeviceId, out: &mut impl Sink) {
        use crate::wire::dust::{DustAuth, DustDownlink, DustRejection, Mac4, ShortId, MAC_LEN, REJECTION_V2_LEN};
        self.downlinks.expire(now.mono_ms, self.cfg.subject_timers.rejection_ms);
        if self.own.state() == lifecycle::OwnState::Apoptotic || !self.enroll.enrolled() {
            return;
        }
        let Some(entry) = self.registry.short_id_of(&device).and_then(|s| self.registry.lookup(s)).copied() else {
            return;
        };
        let Some(counter) = self.downlinks.take(&device, now.unix_s) else {
            return;
        };
        let dl = DustDownlink::Rejection(DustRejection {
            version: crate::wire::Version::V2,
            target: ShortId(entry.short_id.to_le_bytes()),
            auth: Some(DustAuth { counter, mac: Mac4([0; MAC_LEN]) }),
        });
        let mut buf = [0u8; REJECTION_V2_LEN];
        let (Ok(len), Some(covered)) = (dl.emit(&mut buf), dl.mac_input_len()) else {
            return;
        };
        let mac = crate::crypto::dust_mac(&entry.key.0, buf.get(..covered).unwrap_or(&[]));
        let Some(frame) = buf.get_mut(..len) else {
            return;
        };
        if crate::wire::dust::set_mac(frame, &Mac4(mac)).is_err() {
            return;
        }
        if let Ok(frame) = super::FrameBuf::from_slice(frame) {
            out.push(Action::LoraDownlink { dest: device, frame });
            let ev = GatewayEvent::RejectionSent { device, short_id: entry.short_id, counter };
            out.push(Action::Audit(AuditEvent::Gateway(ev)));
        }
    }

    /// DEATH_CERTIFICATE: checked again by `metabolic::plan_death` against
    /// the key on file (it must name that key, ES-2.9), then the device is
    /// forgotten (neighbour table, subject record and profile, DAG, field)
    /// and its key dropped, so nothing signed with it is heard again.
    fn on_death(&mut self, sender: DeviceId, bytes: &[u8], out: &mut impl Sink) {
        let Some(key) = self.key_of(sender) else {
            return;
        };
        match crate::metabolic::plan_death(&self.crypto, bytes, &key) {
            Ok(plan) => {
                if plan.remove_neighbor || plan.invalidate_traces || plan.drop_profile {
                    self.forget(plan.device);
                }
                self.keys.retain(|(d, _)| *d != plan.device);
                out.push(Action::Audit(AuditEvent::Died { device: plan.device }));
            }
            Err(reason) => {
                out.push(Action::Audit(AuditEvent::Peer(PeerEvent::DeathRefused { device: sender, reason })));
            }
        }
    }
}

/// The sequence number the duplicate window tracks.
fn seq_of(body: &Body) -> Option<u8> {
    match body {
        Body::TraceDeposit(t) => Some(t.seq),
        _ => None,
    }
}

/// The send time of a frame that refreshes the neighbour table: a
/// PRESENCE_PULSE v2 or a HEARTBEAT (a v1 pulse has none).
fn presence_time(body: &Body) -> Option<Timestamp> {
    match body {
        Body::PresencePulse(p) => p.v2.map(|v| v.timestamp),
        Body::Heartbeat(h) => Some(h.timestamp),
        _ => None,
    }
}

/// The send time of a v2 INFLAMMATION_QUERY or INFLAMMATION_REPLY (v1 has
/// none: a v1 query's time is when the anomaly was observed). Alerts, NK
/// audits and rejection notices are checked by their handlers, which audit
/// a stale one as a peer statement.
fn send_time(body: &Body) -> Option<Timestamp> {
    match body {
        Body::InflammationQuery(q) => q.v2.map(|_| q.timestamp),
        Body::InflammationReply(r) => r.v2.map(|v| v.timestamp),
        Body::ConsistencyAlert(a) => a.v2.map(|v| v.timestamp),
        Body::NkAuditRequest(r) => Some(r.timestamp),
        Body::NkAuditResponse(r) => Some(r.timestamp),
        Body::RejectionNotice(n) => Some(n.timestamp),
        _ => None,
    }
}

/// The guard reason a screened pulse is counted under.
fn presence_drop(r: crate::quorum::PulseRejected) -> crate::guards::DropReason {
    use crate::guards::DropReason as D;
    use crate::quorum::PulseRejected as P;
    match r {
        P::TooOld => D::Stale,
        P::FromFuture => D::FromFuture,
        P::Replayed | P::Relayed | P::TableFull => D::Replay,
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
