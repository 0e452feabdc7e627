//! Enrollment and NetKey rotation in the node (ES-13.2), with the
//! deployment root of trust of SPEC-NOTES 41 (`crypto::enroll`).
//!
//! **Device.** A node configured with an [`EnrollConfig`] that is not
//! `enrolled` broadcasts a self-signed ENROLLMENT_REQUEST v2 (its X25519 key
//! from [`Node::set_enroll_identity`] and one nonce per boot) from
//! [`Node::handle_timers`], doubling the interval from `retry_min_ms` to
//! `retry_max_ms`. It keeps the last PROVISIONER_CERTIFICATEs whose root
//! signature verifies, and accepts an ENROLLMENT_RESPONSE only when that
//! sender's certificate verifies at the response's `time_sync`, the frame is
//! signed by the certified key, the nonce is echoed and the NetKey opens.
//! Then it emits [`Action::NetworkKey`] and an [`Action::ClockOffset`] (the
//! node never sets a clock), registers the provisioner's key and restarts
//! its own lifecycle in NEONATAL. Every refusal is audited with a reason.
//!
//! **Provisioner.** A Nano (or Full/Gateway) with a certificate and a
//! NetKey ([`Node::set_network_key`]) answers a request only in NORMAL, with
//! weight ≥ 204 (0.8), in QUORUM or SWARM with ≥ 3 live non-Dust neighbours,
//! for an id not already registered, and only if the id is in the
//! deployment manifest or the operator pressed the button
//! ([`Node::operator_enroll_button`]) less than `button_window_ms` ago.
//! The answer needs an ephemeral X25519 secret, so an accepted request is
//! queued and answered at the next [`Node::handle_timers`] (whose caller
//! supplies the randomness; [`Node::next_deadline`] asks for it at once).
//!
//! **Rotation.** [`Node::rotate_network_key`] seals the new key to every
//! device this node enrolled; a device accepts it from any certified
//! provisioner, for itself, with an epoch above its current one.

use super::action::{Action, AuditEvent, FrameDrop};
use super::{Node, Now, Rng, Sink};
use crate::crypto::{
    device_id_of, open_netkey, seal_netkey, verify_frame, verify_provisioned_frame, Crypto, DhPublicKey, EnrollError,
    Identity, NetKey, ProvisionerCertificate, SealContext, SealedNetKey,
};
use crate::guards::Unverified;
use crate::lifecycle::{NodeEvent, NodeLifecycle, OwnState};
use crate::profile::SubjectKind;
use crate::quorum::QuorumMode;
use crate::types::{DeviceId, PublicKey, Timestamp};
use crate::wire::enroll::{EnrollmentRequestV2, EnrollmentResponseV2};
use crate::wire::{Body, EnrollmentRequest, EnrollmentResponse, FrameRepr, KeyRotation};

/// Most device ids a deployment manifest lists.
pub const MAX_MANIFEST: usize = 16;
/// Certificates a device remembers (one per provisioner heard lately).
pub const CERT_SLOTS: usize = 4;
/// Accepted requests waiting for the next `handle_timers`.
pub const PENDING_SLOTS: usize = 4;
/// Fewest other Nano neighbours a provisioner needs (ES-13.2).
pub const PROVISIONER_MIN_NEIGHBOURS: usize = 3;

/// Enrollment settings (SPEC-NOTES 41: the root key is written into every
/// device before it ships).
#[derive(Clone, Debug, PartialEq)]
pub struct EnrollConfig {
    /// The deployment root's Ed25519 public key.
    pub root: PublicKey,
    /// False: the node must enroll before it joins the mesh.
    pub enrolled: bool,
    /// The root's certificate for this node's key; `None`: not a provisioner.
    pub certificate: Option<ProvisionerCertificate>,
    /// Device ids accepted without an operator button press.
    pub manifest: heapless::Vec<DeviceId, MAX_MANIFEST>,
    /// Zone handed to enrolled devices.
    pub deployment_zone: u16,
    /// Capability bits put into our request.
    pub capability_flags: u8,
    /// Hardware revision put into our request.
    pub hw_version: u16,
    /// How long a button press accepts requests, ms.
    pub button_window_ms: u64,
    /// First request retry interval, ms. The guards admit one
    /// ENROLLMENT_REQUEST per device and epoch (60 s), so less is wasted air.
    pub retry_min_ms: u64,
    /// Longest request retry interval, ms.
    pub retry_max_ms: u64,
}

impl EnrollConfig {
    /// A device that still has to enroll under `root`.
    pub fn device(root: PublicKey) -> Self {
        EnrollConfig {
            root,
            enrolled: false,
            certificate: None,
            manifest: heapless::Vec::new(),
            deployment_zone: 0,
            capability_flags: crate::wire::capability::BLE,
            hw_version: 1,
            button_window_ms: 60_000,
            retry_min_ms: 60_000,
            retry_max_ms: 600_000,
        }
    }

    /// An enrolled node that may provision with `certificate`.
    pub fn provisioner(root: PublicKey, certificate: ProvisionerCertificate) -> Self {
        EnrollConfig { enrolled: true, certificate: Some(certificate), ..EnrollConfig::device(root) }
    }
}

/// How an accepted request was authorised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Authorised {
    /// The id is in the deployment manifest.
    Manifest,
    /// The operator pressed the enroll button.
    Button,
}

/// Why an enrollment or rotation step was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EnrollRefusal {
    /// We hold no certificate (or no enrollment config): not a provisioner.
    NoCertificate,
    /// Our certificate names another key: a misconfiguration that every
    /// device would refuse anyway.
    CertificateNotOurs,
    /// We are not NORMAL (ES-13.2: only a settled node provisions). This
    /// also covers ES-13.2's "weight ≥ 0.8": the own weight follows the
    /// state (ES-3.1), and only NORMAL carries 0.8.
    NotNormal,
    /// Fewer than 3 live Nano neighbours, or SOLO: no quorum watches us.
    TooFewNeighbours,
    /// No NetKey to hand out (see `Node::set_network_key`).
    NoNetKey,
    /// A version-1 request: no X25519 key to seal to and no nonce.
    NotV2,
    /// The id is neither in the manifest nor covered by a button press.
    NotAuthorised,
    /// The id already has a registered key (ES-13.2 validation).
    AlreadyRegistered,
    /// Too many requests waiting for an answer.
    PendingFull,
    /// We are already enrolled; a second response would swap our NetKey.
    AlreadyEnrolled,
    /// We have no request outstanding (no identity set, or not started).
    NotEnrolling,
    /// No X25519 identity set, so nothing sealed to us can be opened.
    NoIdentity,
    /// No verified certificate from this sender is held.
    NoCertificateHeld,
    /// The certificate, sender or frame signature failed, or the NetKey did
    /// not open.
    Crypto(EnrollError),
    /// The response echoes another nonce: a replay of an old exchange.
    NonceMismatch,
    /// A rotation to an epoch not above ours: a replay or a downgrade.
    StaleEpoch,
    /// We are not enrolled, so there is no key to rotate.
    NotEnrolled,
    /// The key table is full; the provisioner could not be registered.
    KeyTableFull,
    /// A rotation whose deadline is already past would exclude every device.
    DeadlinePassed,
}

/// One enrollment decision, for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EnrollEvent {
    /// We broadcast an ENROLLMENT_REQUEST.
    RequestSent {
        /// Its nonce.
        nonce: u32,
    },
    /// A device's request was accepted and queued for an answer.
    RequestAccepted {
        /// The device.
        device: DeviceId,
        /// Why it may enroll.
        by: Authorised,
    },
    /// A device's request was not answered.
    RequestRefused {
        /// The device.
        device: DeviceId,
        /// Why.
        reason: EnrollRefusal,
    },
    /// We sent a certificate and a response, and registered the device.
    Provisioned {
        /// The device.
        device: DeviceId,
    },
    /// A PROVISIONER_CERTIFICATE was not kept.
    CertificateRefused {
        /// Its sender.
        from: DeviceId,
        /// Why.
        reason: EnrollRefusal,
    },
    /// We enrolled.
    Enrolled {
        /// The provisioner.
        provisioner: DeviceId,
        /// The zone it assigned.
        zone: u16,
    },
    /// An ENROLLMENT_RESPONSE for us was refused.
    ResponseRefused {
        /// Its sender.
        from: DeviceId,
        /// Why.
        reason: EnrollRefusal,
    },
    /// We sent a KEY_ROTATION to every device we enrolled.
    RotationSent {
        /// The new epoch.
        epoch: u32,
        /// Copies sent.
        devices: u16,
    },
    /// A KEY_ROTATION for us was opened.
    RotationApplied {
        /// The provisioner.
        from: DeviceId,
        /// The new epoch.
        epoch: u32,
        /// True if it arrived after its deadline.
        late: bool,
    },
    /// A KEY_ROTATION for us was refused.
    RotationRefused {
        /// Its sender.
        from: DeviceId,
        /// Why.
        reason: EnrollRefusal,
    },
}

/// A request accepted but not yet answered.
#[derive(Clone, Copy, Debug)]
struct Pending {
    pubkey: PublicKey,
    dh: DhPublicKey,
    nonce: u32,
}

/// An enrollment frame past the precheck. A response or rotation is
/// admitted by the guards only once its certificate and signature checked
/// out, so forged copies cannot spend the real provisioner's rate budget.
struct Checked<'a> {
    sender: DeviceId,
    msg_type: u8,
    bytes: &'a [u8],
    signed_len: usize,
    unverified: Unverified,
}

/// The node's enrollment state.
pub(super) struct EnrollState<const N: usize> {
    enrolled: bool,
    identity: Option<Identity>,
    netkey: Option<(NetKey, u32)>,
    nonce: Option<u32>,
    next_request_ms: u64,
    retry_ms: u64,
    certs: heapless::Vec<(DeviceId, ProvisionerCertificate), CERT_SLOTS>,
    button_until_ms: u64,
    pending: heapless::Vec<Pending, PENDING_SLOTS>,
    devices: heapless::Vec<(DeviceId, DhPublicKey), N>,
}

impl<const N: usize> EnrollState<N> {
    pub(super) fn new(cfg: Option<&EnrollConfig>, now: Now) -> Self {
        EnrollState {
            enrolled: cfg.is_none_or(|c| c.enrolled),
            identity: None,
            netkey: None,
            nonce: None,
            next_request_ms: now.mono_ms,
            retry_ms: cfg.map_or(0, |c| c.retry_min_ms),
            certs: heapless::Vec::new(),
            button_until_ms: 0,
            pending: heapless::Vec::new(),
            devices: heapless::Vec::new(),
        }
    }

    /// True once enrolled (or never needing to): the node may join the mesh.
    pub(super) fn enrolled(&self) -> bool {
        self.enrolled
    }

    /// When `handle_timers` has enrollment work: at once with queued
    /// answers, at the next request retry while enrolling.
    pub(super) fn deadline(&self) -> Option<u64> {
        if !self.pending.is_empty() {
            Some(0)
        } else if !self.enrolled && self.identity.is_some() {
            Some(self.next_request_ms)
        } else {
            None
        }
    }

    fn cert_of(&self, id: DeviceId) -> Option<ProvisionerCertificate> {
        self.certs.iter().find(|(d, _)| *d == id).map(|(_, c)| *c)
    }
}

/// True for the four enrollment messages, which are verified with keys
/// they carry (or certify), not with the key table.
pub(super) fn is_enrollment(body: &Body) -> bool {
    matches!(
        body,
        Body::EnrollmentRequest(_)
            | Body::EnrollmentResponse(_)
            | Body::KeyRotation(_)
            | Body::ProvisionerCertificate(_)
    )
}

fn audit(out: &mut impl Sink, e: EnrollEvent) {
    out.push(Action::Audit(AuditEvent::Enrollment(e)));
}

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> Node<C, N, D, G, B> {
    /// Gives the node its identity's X25519 half (RAM only), which opens
    /// NetKeys sealed to it and goes into its ENROLLMENT_REQUEST. A device
    /// that is not enrolled starts requesting at the next `handle_timers`.
    /// Ignored when the node's crypto cannot enroll ([`Crypto::can_enroll`]).
    pub fn set_enroll_identity(&mut self, identity: Identity) {
        if self.crypto.can_enroll() {
            self.enroll.identity = Some(identity);
        }
    }

    /// Sets the NetKey this node hands out as a provisioner (an enrolled
    /// device learns it from its response instead).
    pub fn set_network_key(&mut self, key: NetKey, epoch: u32) {
        self.enroll.netkey = Some((key, epoch));
    }

    /// The current NetKey epoch, if a key is held.
    pub fn network_key_epoch(&self) -> Option<u32> {
        self.enroll.netkey.as_ref().map(|(_, e)| *e)
    }

    /// True once the node is enrolled (always, without an enrollment config).
    pub fn is_enrolled(&self) -> bool {
        self.enroll.enrolled()
    }

    /// The devices this node enrolled, with the X25519 keys rotations are
    /// sealed to.
    pub fn enrolled_devices(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.enroll.devices.iter().map(|(d, _)| *d)
    }

    /// The operator's ENROLL button (ES-13.2 phase 1): requests heard within
    /// `button_window_ms` from now are accepted.
    pub fn operator_enroll_button(&mut self, now: Now) {
        let window = self.cfg.enroll.as_ref().map_or(0, |c| c.button_window_ms);
        self.enroll.button_until_ms = now.mono_ms.saturating_add(window);
    }

    /// Why this node may not provision now, `None` if it may.
    pub fn provisioner_refusal(&self, now: Now) -> Option<EnrollRefusal> {
        let Some(cert) = self.cfg.enroll.as_ref().and_then(|c| c.certificate) else {
            return Some(EnrollRefusal::NoCertificate);
        };
        if cert.provisioner_key != self.crypto.public_key() {
            return Some(EnrollRefusal::CertificateNotOurs);
        }
        if self.own.state() != OwnState::Normal {
            return Some(EnrollRefusal::NotNormal);
        }
        let window = self.cfg.quorum.liveness_window;
        let nanos = self
            .quorum
            .table()
            .iter()
            .filter(|e| e.is_alive(now.unix_s, window))
            .filter(|e| self.subject(e.device_id).is_none_or(|s| s.kind() != SubjectKind::Dust))
            .count();
        if self.quorum.mode() == QuorumMode::Solo || nanos < PROVISIONER_MIN_NEIGHBOURS {
            return Some(EnrollRefusal::TooFewNeighbours);
        }
        if self.enroll.netkey.is_none() {
            return Some(EnrollRefusal::NoNetKey);
        }
        None
    }

    /// An enrollment frame after the guards' precheck: verified with the
    /// key it carries (request), the key it certifies (certificate) or the
    /// certificate held for its sender (response, rotation), then admitted.
    pub(super) fn on_enrollment_frame(
        &mut self,
        now: Now,
        repr: FrameRepr,
        bytes: &[u8],
        unverified: Unverified,
        out: &mut impl Sink,
    ) {
        let sender = repr.sender_id;
        let msg_type = repr.body.msg_type().to_u8();
        let signed_len = repr.signed_len();
        let self_signed = match &repr.body {
            Body::EnrollmentRequest(r) => Some(r.pubkey),
            Body::ProvisionerCertificate(c) => Some(c.provisioner_key),
            _ => None,
        };
        if let Some(key) = self_signed {
            if device_id_of(&key) != sender || verify_frame(&self.crypto, &key, bytes, signed_len).is_err() {
                self.frame_drops.record(FrameDrop::BadSignature);
                out.push(Action::Audit(AuditEvent::Dropped { sender, msg_type, reason: FrameDrop::BadSignature }));
                return;
            }
        }
        let frame = Checked { sender, msg_type, bytes, signed_len, unverified };
        match &repr.body {
            Body::EnrollmentResponse(r) if r.target_device_id == self.id => {
                return self.on_enroll_response(now, r, frame, out);
            }
            Body::KeyRotation(k) if k.target_device_id == self.id => return self.on_key_rotation(now, k, frame, out),
            Body::EnrollmentRequest(_) | Body::ProvisionerCertificate(_) => {}
            _ => return,
        }
        if !self.admit(now, frame, out) {
            return;
        }
        match repr.body {
            Body::EnrollmentRequest(r) => self.on_enroll_request(now, sender, &r, out),
            Body::ProvisionerCertificate(c) => self.on_certificate(sender, c, out),
            _ => {}
        }
    }

    /// The guards' admission (rate, flood) of a frame whose signature
    /// checked out; false (and audited) if refused.
    fn admit(&mut self, now: Now, frame: Checked<'_>, out: &mut impl Sink) -> bool {
        let Checked { sender, msg_type, unverified, .. } = frame;
        match self.guards.admit_verified(unverified.signature_verified(), now.unix_s) {
            Ok(()) => true,
            Err(r) => {
                out.push(Action::Audit(AuditEvent::Dropped { sender, msg_type, reason: FrameDrop::Guard(r) }));
                false
            }
        }
    }

    fn on_enroll_request(&mut self, now: Now, device: DeviceId, r: &EnrollmentRequest, out: &mut impl Sink) {
        let verdict = self.judge_request(now, device, r);
        match verdict {
            Err(reason) => audit(out, EnrollEvent::RequestRefused { device, reason }),
            Ok((by, dh, nonce)) => {
                let p = Pending { pubkey: r.pubkey, dh, nonce };
                if let Some(slot) = self.enroll.pending.iter_mut().find(|q| device_id_of(&q.pubkey) == device) {
                    *slot = p;
                } else if self.enroll.pending.push(p).is_err() {
                    return audit(out, EnrollEvent::RequestRefused { device, reason: EnrollRefusal::PendingFull });
                }
                audit(out, EnrollEvent::RequestAccepted { device, by });
            }
        }
    }

    fn judge_request(
        &self,
        now: Now,
        device: DeviceId,
        r: &EnrollmentRequest,
    ) -> Result<(Authorised, DhPublicKey, u32), EnrollRefusal> {
        if let Some(reason) = self.provisioner_refusal(now) {
            return Err(reason);
        }
        let v2 = r.v2.ok_or(EnrollRefusal::NotV2)?;
        if self.key_of(device).is_some() {
            return Err(EnrollRefusal::AlreadyRegistered);
        }
        let in_manifest = self.cfg.enroll.as_ref().is_some_and(|c| c.manifest.contains(&device));
        let by = if in_manifest {
            Authorised::Manifest
        } else if now.mono_ms < self.enroll.button_until_ms {
            Authorised::Button
        } else {
            return Err(EnrollRefusal::NotAuthorised);
        };
        Ok((by, v2.dh_pubkey, v2.request_nonce))
    }

    fn on_certificate(&mut self, from: DeviceId, cert: ProvisionerCertificate, out: &mut impl Sink) {
        let Some(root) = self.cfg.enroll.as_ref().map(|c| c.root) else {
            return;
        };
        if !self.crypto.verify(&root, &cert.signed_message(), &cert.signature) {
            let reason = EnrollRefusal::Crypto(EnrollError::CertificateForged);
            return audit(out, EnrollEvent::CertificateRefused { from, reason });
        }
        let certs = &mut self.enroll.certs;
        if let Some(slot) = certs.iter_mut().find(|(d, _)| *d == from) {
            slot.1 = cert;
            return;
        }
        if certs.is_full() {
            certs.remove(0);
        }
        let _ = certs.push((from, cert));
    }

    fn on_enroll_response(&mut self, now: Now, r: &EnrollmentResponse, frame: Checked<'_>, out: &mut impl Sink) {
        let from = frame.sender;
        match self.open_response(from, r, frame.bytes, frame.signed_len) {
            Err(reason) => audit(out, EnrollEvent::ResponseRefused { from, reason }),
            Ok(_) if !self.admit(now, frame, out) => {}
            Ok((key, cert)) => {
                if self.register_peer(cert.provisioner_key).is_err() {
                    let reason = EnrollRefusal::KeyTableFull;
                    return audit(out, EnrollEvent::ResponseRefused { from, reason });
                }
                self.enroll.enrolled = true;
                self.enroll.nonce = None;
                self.enroll.netkey = Some((key.clone(), 0));
                out.push(Action::NetworkKey { key, epoch: 0, from, switch_by: None });
                let ahead_s = r.time_sync.wrapping_sub(now.unix_s) as i32 as i64;
                let offset_ms = ahead_s * 1000 - now.unix_subsec_ms as i64;
                out.push(Action::ClockOffset { source: from, offset_ms, rtt_ms: 0 });
                self.own = NodeLifecycle::new(self.id, self.cfg.lifecycle);
                let _ = self.own.handle(NodeEvent::PowerOn, now.mono_ms);
                let _ = self.own.handle(NodeEvent::PufOk, now.mono_ms);
                self.boot.neonatal_start = r.time_sync;
                audit(out, EnrollEvent::Enrolled { provisioner: from, zone: r.deployment_zone });
            }
        }
    }

    /// Every check of the device side; the NetKey and the certificate used.
    fn open_response(
        &self,
        from: DeviceId,
        r: &EnrollmentResponse,
        bytes: &[u8],
        signed_len: usize,
    ) -> Result<(NetKey, ProvisionerCertificate), EnrollRefusal> {
        if self.enroll.enrolled {
            return Err(EnrollRefusal::AlreadyEnrolled);
        }
        let (Some(nonce), Some(identity)) = (self.enroll.nonce, self.enroll.identity.as_ref()) else {
            return Err(EnrollRefusal::NotEnrolling);
        };
        let root = self.cfg.enroll.as_ref().map(|c| c.root).ok_or(EnrollRefusal::NotEnrolling)?;
        let cert = self.enroll.cert_of(from).ok_or(EnrollRefusal::NoCertificateHeld)?;
        verify_provisioned_frame(&self.crypto, &root, &cert, bytes, signed_len, r.time_sync)
            .map_err(EnrollRefusal::Crypto)?;
        if r.v2.map(|v| v.request_nonce) != Some(nonce) {
            return Err(EnrollRefusal::NonceMismatch);
        }
        let sealed = SealedNetKey { ephemeral_public: r.provisioner_pubkey, ciphertext: r.network_key_enc };
        let ctx = SealContext::Enrollment {
            provisioner_id: from,
            target_device_id: self.id,
            time_sync: r.time_sync,
            deployment_zone: r.deployment_zone,
        };
        let key = open_netkey(identity, &sealed, &ctx).map_err(EnrollRefusal::Crypto)?;
        Ok((key, cert))
    }

    fn on_key_rotation(&mut self, now: Now, k: &KeyRotation, frame: Checked<'_>, out: &mut impl Sink) {
        let from = frame.sender;
        match self.open_rotation(now, from, k, frame.bytes, frame.signed_len) {
            Err(reason) => audit(out, EnrollEvent::RotationRefused { from, reason }),
            Ok(_) if !self.admit(now, frame, out) => {}
            Ok(key) => {
                self.enroll.netkey = Some((key.clone(), k.key_epoch));
                out.push(Action::NetworkKey { key, epoch: k.key_epoch, from, switch_by: Some(k.deadline) });
                let late = (now.unix_s.wrapping_sub(k.deadline) as i32) > 0;
                audit(out, EnrollEvent::RotationApplied { from, epoch: k.key_epoch, late });
            }
        }
    }

    fn open_rotation(
        &self,
        now: Now,
        from: DeviceId,
        k: &KeyRotation,
        bytes: &[u8],
        signed_len: usize,
    ) -> Result<NetKey, EnrollRefusal> {
        if !self.enroll.enrolled {
            return Err(EnrollRefusal::NotEnrolled);
        }
        let identity = self.enroll.identity.as_ref().ok_or(EnrollRefusal::NoIdentity)?;
        let root = self.cfg.enroll.as_ref().map(|c| c.root).ok_or(EnrollRefusal::NoCertificateHeld)?;
        let cert = self.enroll.cert_of(from).ok_or(EnrollRefusal::NoCertificateHeld)?;
        verify_provisioned_frame(&self.crypto, &root, &cert, bytes, signed_len, now.unix_s)
            .map_err(EnrollRefusal::Crypto)?;
        if self.enroll.netkey.as_ref().is_some_and(|(_, e)| k.key_epoch <= *e) {
            return Err(EnrollRefusal::StaleEpoch);
        }
        let sealed = SealedNetKey { ephemeral_public: k.ephemeral_pubkey, ciphertext: k.new_netkey_enc };
        let ctx = SealContext::KeyRotation {
            provisioner_id: from,
            target_device_id: self.id,
            key_epoch: k.key_epoch,
            deadline: k.deadline,
        };
        open_netkey(identity, &sealed, &ctx).map_err(EnrollRefusal::Crypto)
    }

    /// The enrollment part of `handle_timers`: a due request retry, and the
    /// answers to accepted requests. Nothing for a crypto that cannot enroll
    /// ([`Crypto::can_enroll`]): queued requests are dropped unanswered (so
    /// they do not keep the deadline at 0), and since the check is a
    /// constant for such a type the rest of this path is not compiled in.
    pub(super) fn enroll_poll(&mut self, now: Now, rng: &mut impl Rng, out: &mut impl Sink) {
        if !self.crypto.can_enroll() {
            self.enroll.pending.clear();
            return;
        }
        if !self.enroll.enrolled && now.mono_ms >= self.enroll.next_request_ms {
            self.send_enroll_request(now, rng, out);
        }
        while let Some(p) = self.enroll.pending.pop() {
            self.answer(now, p, rng, out);
        }
    }

    fn send_enroll_request(&mut self, now: Now, rng: &mut impl Rng, out: &mut impl Sink) {
        let (Some(cfg), Some(identity)) = (self.cfg.enroll.as_ref(), self.enroll.identity.as_ref()) else {
            return;
        };
        let nonce = *self.enroll.nonce.get_or_insert_with(|| rng.next_u32());
        let mut sensor_types = heapless::Vec::new();
        let _ = sensor_types.push(self.cfg.quantity);
        let req = EnrollmentRequest {
            pubkey: self.crypto.public_key(),
            capability_flags: cfg.capability_flags,
            sensor_types,
            hw_version: cfg.hw_version,
            v2: Some(EnrollmentRequestV2 { request_nonce: nonce, dh_pubkey: identity.dh_public() }),
        };
        let (min, max) = (cfg.retry_min_ms.max(1), cfg.retry_max_ms);
        if let Some(f) = self.encode(Body::EnrollmentRequest(req)) {
            out.push(Action::Broadcast(f));
            audit(out, EnrollEvent::RequestSent { nonce });
        }
        self.enroll.next_request_ms = now.mono_ms.saturating_add(self.enroll.retry_ms.max(min));
        self.enroll.retry_ms = self.enroll.retry_ms.max(min).saturating_mul(2).min(max.max(min));
    }

    /// PROVISIONER_CERTIFICATE then ENROLLMENT_RESPONSE for `p`; conditions
    /// are checked again, since they may have changed while it waited.
    fn answer(&mut self, now: Now, p: Pending, rng: &mut impl Rng, out: &mut impl Sink) {
        let device = device_id_of(&p.pubkey);
        let refuse = |out: &mut _, reason| audit(out, EnrollEvent::RequestRefused { device, reason });
        if let Some(reason) = self.provisioner_refusal(now) {
            return refuse(out, reason);
        }
        if self.key_of(device).is_some() {
            return refuse(out, EnrollRefusal::AlreadyRegistered);
        }
        let (Some(cert), Some((key, _))) =
            (self.cfg.enroll.as_ref().and_then(|c| c.certificate), self.enroll.netkey.as_ref())
        else {
            return refuse(out, EnrollRefusal::NoNetKey);
        };
        let zone = self.cfg.enroll.as_ref().map_or(0, |c| c.deployment_zone);
        let eph = random_secret(rng);
        let ctx = SealContext::Enrollment {
            provisioner_id: self.id,
            target_device_id: device,
            time_sync: now.unix_s,
            deployment_zone: zone,
        };
        let sealed = match seal_netkey(&eph, &p.dh, key, &ctx) {
            Ok(s) => s,
            Err(e) => return refuse(out, EnrollRefusal::Crypto(e)),
        };
        let resp = EnrollmentResponse {
            target_device_id: device,
            provisioner_pubkey: sealed.ephemeral_public,
            network_key_enc: sealed.ciphertext,
            time_sync: now.unix_s,
            deployment_zone: zone,
            v2: Some(EnrollmentResponseV2 { request_nonce: p.nonce }),
        };
        if self.register_peer(p.pubkey).is_err() {
            return refuse(out, EnrollRefusal::KeyTableFull);
        }
        if let Some(slot) = self.enroll.devices.iter_mut().find(|(d, _)| *d == device) {
            slot.1 = p.dh;
        } else {
            let _ = self.enroll.devices.push((device, p.dh));
        }
        for body in [Body::ProvisionerCertificate(cert), Body::EnrollmentResponse(resp)] {
            if let Some(f) = self.encode(body) {
                out.push(Action::Broadcast(f));
            }
        }
        audit(out, EnrollEvent::Provisioned { device });
    }

    /// KEY_ROTATION (ES-13.2 step 4): broadcasts our certificate, then the
    /// new key sealed to each device this node enrolled, and switches our
    /// own key (an [`Action::NetworkKey`] with `switch_by = deadline`).
    /// Returns the number of copies sent.
    pub fn rotate_network_key(
        &mut self,
        now: Now,
        key: NetKey,
        epoch: u32,
        deadline: Timestamp,
        rng: &mut impl Rng,
        out: &mut impl Sink,
    ) -> Result<u16, EnrollRefusal> {
        let cert = self.cfg.enroll.as_ref().and_then(|c| c.certificate).ok_or(EnrollRefusal::NoCertificate)?;
        if cert.provisioner_key != self.crypto.public_key() {
            return Err(EnrollRefusal::CertificateNotOurs);
        }
        if self.enroll.netkey.as_ref().is_some_and(|(_, e)| epoch <= *e) {
            return Err(EnrollRefusal::StaleEpoch);
        }
        if (now.unix_s.wrapping_sub(deadline) as i32) > 0 {
            return Err(EnrollRefusal::DeadlinePassed);
        }
        if let Some(f) = self.encode(Body::ProvisionerCertificate(cert)) {
            out.push(Action::Broadcast(f));
        }
        let mut sent: u16 = 0;
        for &(device, dh) in self.enroll.devices.iter() {
            let ctx = SealContext::KeyRotation {
                provisioner_id: self.id,
                target_device_id: device,
                key_epoch: epoch,
                deadline,
            };
            let Ok(sealed) = seal_netkey(&random_secret(rng), &dh, &key, &ctx) else {
                continue;
            };
            let body = KeyRotation {
                target_device_id: device,
                ephemeral_pubkey: sealed.ephemeral_public,
                key_epoch: epoch,
                new_netkey_enc: sealed.ciphertext,
                deadline,
            };
            if let Some(f) = self.encode(Body::KeyRotation(body)) {
                out.push(Action::Broadcast(f));
                sent = sent.saturating_add(1);
            }
        }
        self.enroll.netkey = Some((key.clone(), epoch));
        out.push(Action::NetworkKey { key, epoch, from: self.id, switch_by: Some(deadline) });
        audit(out, EnrollEvent::RotationSent { epoch, devices: sent });
        Ok(sent)
    }
}

/// 32 bytes from the caller's RNG, for one ephemeral X25519 secret.
fn random_secret(rng: &mut impl Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    for c in s.chunks_exact_mut(4) {
        c.copy_from_slice(&rng.next_u32().to_le_bytes());
    }
    s
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::crypto::{issue_provisioner_certificate, RealCrypto, Seed};
    use crate::wire::MessageType;
    use std::vec::Vec;

    type T = Node<RealCrypto, 8, 64, 16, 64>;
    const T0: Timestamp = 1_700_000_000;

    struct Lcg(u64);
    impl Rng for Lcg {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
    }

    fn ident(i: u8) -> Identity {
        Identity::from_seed(&Seed([i; 32]))
    }
    fn root() -> RealCrypto {
        RealCrypto::from_secret_key(&[0x52; 32])
    }
    fn at(ms: u64) -> Now {
        Now::new(ms, T0 + (ms / 1000) as u32)
    }

    fn device() -> T {
        let cfg =
            super::super::NodeConfig { enroll: Some(EnrollConfig::device(root().public_key())), ..Default::default() };
        let mut d = T::new(cfg, RealCrypto::new(&ident(1)), at(0), 1);
        d.set_enroll_identity(ident(1));
        d
    }

    fn provisioner(not_after: Timestamp) -> T {
        let cert = issue_provisioner_certificate(&root(), &ident(2).public_key(), T0, not_after);
        let cfg = super::super::NodeConfig {
            enroll: Some(EnrollConfig::provisioner(root().public_key(), cert)),
            ..Default::default()
        };
        let mut p = T::new(cfg, RealCrypto::new(&ident(2)), at(0), 2);
        p.set_network_key(NetKey([7; 16]), 0);
        p
    }

    fn run_timers(n: &mut T, now: Now) -> Vec<Action> {
        let mut out = Vec::new();
        n.handle_timers(now, &mut Lcg(9), &mut |a| out.push(a));
        out
    }

    fn broadcasts(acts: &[Action], t: MessageType) -> Vec<Vec<u8>> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Broadcast(f) if f.get(3) == Some(&t.to_u8()) => Some(f.to_vec()),
                _ => None,
            })
            .collect()
    }

    fn events(acts: &[Action]) -> Vec<EnrollEvent> {
        acts.iter()
            .filter_map(|a| match a {
                Action::Audit(AuditEvent::Enrollment(e)) => Some(*e),
                _ => None,
            })
            .collect()
    }

    fn feed(n: &mut T, now: Now, frames: &[Vec<u8>]) -> Vec<Action> {
        let mut out = Vec::new();
        for f in frames {
            n.handle_frame(now, f, -60, 0, &mut |a| out.push(a));
        }
        out
    }

    /// The nonce of the device's request frame.
    fn nonce_of(frame: &[u8]) -> u32 {
        match FrameRepr::parse(frame).unwrap().body {
            Body::EnrollmentRequest(r) => r.v2.unwrap().request_nonce,
            other => panic!("{other:?}"),
        }
    }

    /// Certificate and response frames from `p` for `dev`, with `nonce`.
    fn response(p: &T, dev: &T, nonce: u32, time_sync: Timestamp) -> Vec<Vec<u8>> {
        let cert = p.cfg.enroll.as_ref().unwrap().certificate.unwrap();
        let ctx =
            SealContext::Enrollment { provisioner_id: p.id, target_device_id: dev.id, time_sync, deployment_zone: 3 };
        let sealed = seal_netkey(&[5; 32], &ident(1).dh_public(), &NetKey([7; 16]), &ctx).unwrap();
        let resp = EnrollmentResponse {
            target_device_id: dev.id,
            provisioner_pubkey: sealed.ephemeral_public,
            network_key_enc: sealed.ciphertext,
            time_sync,
            deployment_zone: 3,
            v2: Some(EnrollmentResponseV2 { request_nonce: nonce }),
        };
        let c = p.encode(Body::ProvisionerCertificate(cert)).unwrap().to_vec();
        let r = p.encode(Body::EnrollmentResponse(resp)).unwrap().to_vec();
        std::vec![c, r]
    }

    #[test]
    fn device_requests_with_backoff_one_nonce_and_stays_silent() {
        let mut d = device();
        assert_eq!(d.next_deadline(), 0);
        let acts = run_timers(&mut d, at(0));
        let reqs = broadcasts(&acts, MessageType::EnrollmentRequest);
        assert_eq!(reqs.len(), 1);
        let repr = FrameRepr::parse(&reqs[0]).unwrap();
        let Body::EnrollmentRequest(r) = &repr.body else { panic!() };
        assert_eq!(r.v2.unwrap().dh_pubkey, ident(1).dh_public());
        assert!(verify_frame(&d.crypto, &r.pubkey, &reqs[0], repr.signed_len()).is_ok());
        assert_eq!(d.enroll.deadline(), Some(60_000));
        let nonce = nonce_of(&reqs[0]);
        let mut t = 60_000;
        let mut gaps = Vec::new();
        for _ in 0..4 {
            let acts = run_timers(&mut d, at(t));
            let reqs = broadcasts(&acts, MessageType::EnrollmentRequest);
            if let Some(f) = reqs.first() {
                assert_eq!(nonce_of(f), nonce, "one nonce per boot");
                gaps.push(t);
            }
            assert!(acts.iter().all(|a| !matches!(a, Action::Broadcast(f) if f[3] != 0x60)), "silent until enrolled");
            t += 60_000;
        }
        assert_eq!(gaps, std::vec![60_000, 180_000], "60 s, then 120 s");
    }

    #[test]
    fn enrolls_on_a_valid_response_and_refuses_bad_ones() {
        let p = provisioner(T0 + 1_000_000);
        let mut d = device();
        let req = broadcasts(&run_timers(&mut d, at(0)), MessageType::EnrollmentRequest);
        let nonce = nonce_of(&req[0]);
        let now = at(1_000);

        let mut tampered = response(&p, &d, nonce, T0 + 10);
        tampered[1][40] ^= 1;
        let ev = events(&feed(&mut d, now, &tampered));
        assert!(matches!(
            ev.last(),
            Some(EnrollEvent::ResponseRefused { reason: EnrollRefusal::Crypto(EnrollError::Frame(_)), .. })
        ));

        let expired = response(&p, &d, nonce, T0 + 2_000_000);
        let ev = events(&feed(&mut d, now, &expired[1..]));
        assert_eq!(
            ev,
            std::vec![EnrollEvent::ResponseRefused {
                from: p.id,
                reason: EnrollRefusal::Crypto(EnrollError::CertificateExpired)
            }]
        );

        let good = response(&p, &d, nonce, T0 + 10);
        let acts = feed(&mut d, now, &good);
        assert!(acts.iter().any(|a| matches!(a, Action::NetworkKey { key, epoch: 0, .. } if *key == NetKey([7; 16]))));
        assert!(acts.iter().any(|a| matches!(a, Action::ClockOffset { offset_ms: 9_000, .. })));
        assert_eq!(events(&acts).last(), Some(&EnrollEvent::Enrolled { provisioner: p.id, zone: 3 }));
        assert!(d.is_enrolled());
        assert_eq!(d.key_of(p.id), Some(ident(2).public_key()));
        assert_eq!(d.boot.neonatal_start, T0 + 10);

        let again = response(&p, &d, nonce, T0 + 20);
        let ev = events(&feed(&mut d, now, &again[1..]));
        assert_eq!(ev, std::vec![EnrollEvent::ResponseRefused { from: p.id, reason: EnrollRefusal::AlreadyEnrolled }]);
    }

    #[test]
    fn a_response_without_a_request_a_certificate_or_the_nonce_is_refused() {
        let p = provisioner(T0 + 1_000_000);
        let mut d = device();
        let frames = response(&p, &d, 1, T0);
        let ev = events(&feed(&mut d, at(0), &frames));
        assert_eq!(ev, std::vec![EnrollEvent::ResponseRefused { from: p.id, reason: EnrollRefusal::NotEnrolling }]);
        let req = broadcasts(&run_timers(&mut d, at(0)), MessageType::EnrollmentRequest);
        let nonce = nonce_of(&req[0]);
        let stale = response(&p, &d, nonce.wrapping_add(1), T0);
        let ev = events(&feed(&mut d, at(1), &stale[1..]));
        assert_eq!(ev, std::vec![EnrollEvent::ResponseRefused { from: p.id, reason: EnrollRefusal::NonceMismatch }]);
        let cert = issue_provisioner_certificate(&root(), &ident(4).public_key(), T0, T0 + 1_000);
        let cfg = super::super::NodeConfig {
            enroll: Some(EnrollConfig::provisioner(root().public_key(), cert)),
            ..Default::default()
        };
        let q = T::new(cfg, RealCrypto::new(&ident(4)), at(0), 4);
        let uncertified = response(&q, &d, nonce, T0);
        let ev = events(&feed(&mut d, at(2), &uncertified[1..]));
        assert_eq!(
            ev,
            std::vec![EnrollEvent::ResponseRefused { from: q.id, reason: EnrollRefusal::NoCertificateHeld }]
        );
        assert!(!d.is_enrolled());
    }

    #[test]
    fn rotation_needs_our_certificate_a_newer_epoch_and_a_future_deadline() {
        let mut out = Vec::new();
        let mut plain = T::new(Default::default(), RealCrypto::new(&ident(3)), at(0), 3);
        let r = plain.rotate_network_key(at(0), NetKey([1; 16]), 1, T0 + 100, &mut Lcg(1), &mut |a| out.push(a));
        assert_eq!(r, Err(EnrollRefusal::NoCertificate));
        let mut p = provisioner(T0 + 1_000_000);
        let mut sink = |a| out.push(a);
        assert_eq!(
            p.rotate_network_key(at(10_000), NetKey([1; 16]), 1, T0 + 5, &mut Lcg(1), &mut sink),
            Err(EnrollRefusal::DeadlinePassed)
        );
        assert_eq!(
            p.rotate_network_key(at(0), NetKey([1; 16]), 0, T0 + 100, &mut Lcg(1), &mut sink),
            Err(EnrollRefusal::StaleEpoch)
        );
        assert_eq!(p.rotate_network_key(at(0), NetKey([1; 16]), 1, T0 + 100, &mut Lcg(1), &mut sink), Ok(0));
        assert_eq!(p.network_key_epoch(), Some(1));
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::NetworkKey { epoch: 1, switch_by: Some(d), .. } if *d == T0 + 100)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Junk bodies under every enrollment type, and single-byte
        /// corruptions of a valid exchange, are refused without panicking
        /// and never enroll.
        #[test]
        fn junk_and_corrupted_enrollment_frames_never_enroll(
            t in 0x60u8..=0x63,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            at_byte in 0usize..200,
            flip in 1u8..=255,
        ) {
            let p = provisioner(T0 + 1_000_000);
            let mut d = device();
            let req = broadcasts(&run_timers(&mut d, at(0)), MessageType::EnrollmentRequest);
            let mut junk = req[0][..crate::wire::HEADER_LEN].to_vec();
            junk[3] = t;
            junk.extend_from_slice(&body);
            let mut frames = response(&p, &d, nonce_of(&req[0]), T0 + 10);
            let i = at_byte % frames[1].len();
            frames[1][i] ^= flip;
            frames.insert(0, junk);
            let acts = feed(&mut d, at(1_000), &frames);
            proptest::prop_assert!(!d.is_enrolled());
            let keyed = acts.iter().any(|a| matches!(a, Action::NetworkKey { .. }));
            proptest::prop_assert!(!keyed);
        }
    }

    #[test]
    fn a_crypto_that_cannot_enroll_never_requests_nor_asks_for_time() {
        use crate::crypto::DustIdentity;
        let cfg =
            super::super::NodeConfig { enroll: Some(EnrollConfig::device(root().public_key())), ..Default::default() };
        let mut d: Node<DustIdentity, 8, 64, 16, 64> = Node::new(cfg, DustIdentity(ident(1).device_id()), at(0), 1);
        d.set_enroll_identity(ident(1));
        let mut real = device();
        assert_eq!(real.next_deadline(), 0, "a real device wants to request at once");
        assert_eq!(broadcasts(&run_timers(&mut real, at(0)), MessageType::EnrollmentRequest).len(), 1);
        assert!(d.next_deadline() > 0, "enrollment gives a keyless node no deadline");
        for ms in [0, 60_000, 600_000, 3_600_000] {
            let mut out = Vec::new();
            d.handle_timers(at(ms), &mut Lcg(9), &mut |a| out.push(a));
            assert!(broadcasts(&out, MessageType::EnrollmentRequest).is_empty(), "at {ms} ms");
            assert!(events(&out).is_empty(), "at {ms} ms");
        }
        assert!(!d.is_enrolled());
    }

    #[test]
    fn random_secret_fills_all_32_bytes() {
        let s = random_secret(&mut Lcg(1));
        assert!(s.chunks_exact(4).all(|c| c != [0; 4]));
        assert_ne!(s, random_secret(&mut Lcg(2)));
    }
}
