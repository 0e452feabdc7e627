//! Vector cases for enrollment decisions (ES-13.2, SPEC-NOTES 41): real
//! `Node`s with real Ed25519/X25519, driven only through their public API.
//!
//! Keys come from fill bytes: a seed byte `b` is the identity of
//! `Seed([b; 32])`, a root byte `r` the deployment root with secret key
//! `[r; 32]`. A node's clock is `Now::new(s * 1000, start_unix + s)` at
//! second `s` of the case. RNG words are handed out in order and then
//! cycled; a device's first word is its request nonce, a provisioner's first
//! eight words (little endian) are the ephemeral X25519 secret of its answer.
//! Frames the case plays for the other party (pulses, responses, rotations)
//! are encoded and signed here with that party's key.

use super::Outcome;
use krill_core::crypto::enroll::{issue_provisioner_certificate, open_netkey, seal_netkey, NetKey, SealContext};
use krill_core::crypto::sign::{sign_frame, Crypto, RealCrypto};
use krill_core::crypto::{Identity, Seed};
use krill_core::lifecycle::OwnState;
use krill_core::node::{
    Action, AuditEvent, Authorised, EnrollConfig, EnrollEvent, EnrollRefusal, FrameDrop, Node, NodeConfig, Now, Rng,
};
use krill_core::quorum::QuorumMode;
use krill_core::wire::enroll::EnrollmentResponseV2;
use krill_core::wire::presence::{PresencePulse, PresencePulseV2};
use krill_core::wire::{Body, EnrollmentResponse, FrameRepr, KeyRotation, Version};
use krill_core::{DeviceId, Signature, Timestamp};
use serde::Deserialize;

/// The node type under test: small tables (8 neighbours, keys, subjects).
type EnrollNode = Node<RealCrypto, 8, 64, 16, 64>;

/// Neighbours pulse every this many seconds (ES-3.2 PRESENCE_INTERVAL).
const PULSE_EVERY_S: u32 = 10;
/// A provisioner's certificate in `Provision` cases is valid for ten years.
const CERT_YEARS_S: u32 = 10 * 365 * 86_400;
/// Type bytes of the frames read back.
const REQUEST: u8 = 0x60;
const RESPONSE: u8 = 0x61;
const CERTIFICATE: u8 = 0x63;

fn default_start() -> Timestamp {
    1_700_000_000
}

fn default_window() -> u32 {
    60
}

/// One neighbour of the provisioner: its seed byte, and the last second it
/// pulses (`None`: until the request).
#[derive(Debug, Clone, Deserialize)]
pub struct Neighbour(pub u8, pub Option<u32>);

/// What the provisioner does with the request.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Accepted for an answer, authorised this way.
    Accepted(Authorised),
    /// Refused (audited `RequestRefused`) for this reason.
    Refused(EnrollRefusal),
    /// Dropped before any enrollment rule: the request's signature is bad.
    BadSignature,
}

/// The provisioner's state when the request arrives (each field optional).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AtRequest {
    /// Own lifecycle state.
    #[serde(default)]
    pub state: Option<OwnState>,
    /// Quorum mode.
    #[serde(default)]
    pub mode: Option<QuorumMode>,
    /// Live neighbours in the quorum table.
    #[serde(default)]
    pub live: Option<usize>,
}

/// The fields of an accepted request's ENROLLMENT_RESPONSE.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The provisioner's `device_id` (the response's `sender_id`).
    pub provisioner: DeviceId,
    /// The device's `device_id` (`target_device_id`).
    pub target: DeviceId,
    /// The echoed request nonce.
    pub nonce: u32,
    /// `time_sync`: the provisioner's clock when it answered.
    pub time_sync: Timestamp,
    /// `deployment_zone`.
    pub zone: u16,
    /// `provisioner_pubkey`: X25519 public key of the ephemeral secret, hex.
    pub ephemeral_public: String,
    /// `network_key_enc`: ChaCha20-Poly1305 ciphertext ‖ tag, hex.
    pub network_key_enc: String,
    /// The NetKey the device opens (with its own X25519 key), hex.
    pub netkey: String,
}

/// The provisioner's side: a provisioner boots at second 0 with
/// `neighbours` pulsing (all registered with it), runs its timers each
/// second until `request_at_s`, then hears one ENROLLMENT_REQUEST from a
/// real device node and runs its timers once more to answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provision {
    /// Deployment root byte (the provisioner's certificate is its).
    pub root: u8,
    /// The provisioner's seed byte.
    pub provisioner: u8,
    /// Unix time at second 0.
    #[serde(default = "default_start")]
    pub start_unix: Timestamp,
    /// Observed (non-SOLO) neonatal time before NORMAL, s. The quorum's
    /// minimum transition interval is 0 here so the mesh settles quickly.
    pub neonatal_s: u32,
    /// Neighbours pulsing from second 0.
    pub neighbours: Vec<Neighbour>,
    /// Seed bytes of the devices in the manifest.
    pub manifest: Vec<u8>,
    /// Second at which the operator presses the button (before the request).
    #[serde(default)]
    pub button_at_s: Option<u32>,
    /// How long a press accepts requests, s.
    #[serde(default = "default_window")]
    pub button_window_s: u32,
    /// The NetKey handed out, hex (16 bytes).
    pub netkey: String,
    /// Zone handed out.
    pub zone: u16,
    /// The requesting device's seed byte.
    pub device: u8,
    /// The device's key is registered with the provisioner before the start.
    #[serde(default)]
    pub registered: bool,
    /// The device's (unsynced) clock when it sends its request.
    pub device_unix: Timestamp,
    /// The device's RNG words.
    pub device_rng: Vec<u32>,
    /// The last byte of the request's signature is flipped on the way.
    #[serde(default)]
    pub forge_signature: bool,
    /// Second at which the request arrives.
    pub request_at_s: u32,
    /// The provisioner's RNG words for the answer.
    pub provisioner_rng: Vec<u32>,
    /// Expected state at the request.
    #[serde(default)]
    pub at_request: AtRequest,
    /// Expected decision.
    pub decision: Decision,
    /// Expected response (required when accepted; none may be sent otherwise).
    #[serde(default)]
    pub answer: Option<Answer>,
}

/// What a device does with the frames it hears.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq)]
pub enum DeviceDecision {
    /// Enrolled (`Enrolled` audit, a NetworkKey, a ClockOffset, NEONATAL
    /// restarted at the response).
    Enrolled {
        /// The provisioner named in the audit.
        provisioner: DeviceId,
        /// The zone.
        zone: u16,
        /// `ClockOffset::offset_ms`.
        offset_ms: i64,
    },
    /// A KEY_ROTATION was applied.
    Rotated {
        /// New epoch.
        epoch: u32,
        /// Arrived after its deadline.
        late: bool,
    },
    /// Refused (`ResponseRefused` / `RotationRefused`) for this reason.
    Refused(EnrollRefusal),
    /// Not for us: no enrollment audit at all, nothing changes.
    Ignored,
}

/// The device's side of an ENROLLMENT_RESPONSE: a real device node sends
/// its request at second 0 (its clock `device_unix`), then hears a
/// PROVISIONER_CERTIFICATE and a response built from these fields at
/// `answer_at_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    /// The device's deployment root byte.
    pub root: u8,
    /// The device's seed byte.
    pub device: u8,
    /// The device's clock at second 0.
    pub device_unix: Timestamp,
    /// The device's RNG words (first: the nonce).
    pub device_rng: Vec<u32>,
    /// Root byte that signs the provisioner's certificate.
    pub cert_root: u8,
    /// Seed byte of the certified provisioner, also the frames' `sender_id`.
    pub provisioner: u8,
    /// Certificate window.
    pub not_before: Timestamp,
    /// Certificate window end (inclusive).
    pub not_after: Timestamp,
    /// Seed byte whose key signs the response (default: the provisioner).
    #[serde(default)]
    pub signer: Option<u8>,
    /// The response's `time_sync`.
    pub time_sync: Timestamp,
    /// Its zone.
    pub zone: u16,
    /// Echoed nonce (default: the device's).
    #[serde(default)]
    pub nonce: Option<u32>,
    /// Seed byte whose X25519 key the NetKey is sealed to (default: device).
    #[serde(default)]
    pub seal_to: Option<u8>,
    /// Ephemeral X25519 secret of the seal, hex.
    pub ephemeral: String,
    /// NetKey sealed, hex.
    pub netkey: String,
    /// Second at which the frames arrive.
    pub answer_at_s: u32,
    /// Expected decision on the response.
    pub decision: DeviceDecision,
    /// Expected refusal of the certificate (none: it must be kept).
    #[serde(default)]
    pub certificate: Option<EnrollRefusal>,
}

/// KEY_ROTATION at a device that enrolled at second 0 (from `provisioner`,
/// certified by `root`, `time_sync = start_unix`, its clock synced since).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Deployment root byte.
    pub root: u8,
    /// The device's seed byte.
    pub device: u8,
    /// The enrolling provisioner's seed byte.
    pub provisioner: u8,
    /// Synced unix time at second 0.
    #[serde(default = "default_start")]
    pub start_unix: Timestamp,
    /// A rotation to this epoch from the provisioner applied at second 100.
    #[serde(default)]
    pub prior_epoch: Option<u32>,
    /// Seed byte of the rotating node (default: the provisioner); its
    /// certificate is sent along when it is another node.
    #[serde(default)]
    pub rotator: Option<u8>,
    /// Root byte that certifies the rotator (default: `root`).
    #[serde(default)]
    pub rotator_root: Option<u8>,
    /// Second at which the rotation arrives (≥ 200: the guards take one
    /// frame of a type per sender and minute).
    pub at_s: u32,
    /// `key_epoch`.
    pub epoch: u32,
    /// `deadline`.
    pub deadline: Timestamp,
    /// Seed byte of `target_device_id` (default: the device).
    #[serde(default)]
    pub target: Option<u8>,
    /// Seed byte whose X25519 key the key is sealed to (default: the device).
    #[serde(default)]
    pub seal_to: Option<u8>,
    /// Ephemeral X25519 secret, hex.
    pub ephemeral: String,
    /// New NetKey, hex.
    pub netkey: String,
    /// Expected decision.
    pub decision: DeviceDecision,
    /// Expected refusal of the rotator's certificate (none: kept).
    #[serde(default)]
    pub certificate: Option<EnrollRefusal>,
}

/// One enrollment case.
#[derive(Debug, Clone, Deserialize)]
pub enum Case {
    /// A provisioner judging a request.
    Provision(Provision),
    /// A device judging an ENROLLMENT_RESPONSE.
    Respond(Respond),
    /// An enrolled device judging a KEY_ROTATION.
    Rotate(Rotate),
}

/// The vector's words in order, then again.
struct Words<'a> {
    words: &'a [u32],
    next: usize,
}

impl<'a> Words<'a> {
    fn new(words: &'a [u32]) -> Self {
        Words { words, next: 0 }
    }
}

impl Rng for Words<'_> {
    fn next_u32(&mut self) -> u32 {
        let w = self.words.get(self.next % self.words.len().max(1)).copied().unwrap_or(0);
        self.next = self.next.wrapping_add(1);
        w
    }
}

/// The provisioner's draws while it settles (NK audits, query ids): a
/// fixed LCG, so the vector's words all go to the answer.
struct Warmup(u64);

impl Rng for Warmup {
    fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
}

fn ident(b: u8) -> Identity {
    Identity::from_seed(&Seed([b; 32]))
}

fn root_of(b: u8) -> RealCrypto {
    RealCrypto::from_secret_key(&[b; 32])
}

fn unhex_n<const N: usize>(o: &mut Outcome, what: &str, s: &str) -> [u8; N] {
    match hex::decode(s) {
        Ok(v) => v.as_slice().try_into().unwrap_or_else(|_| {
            o.fail(format!("{what}: expected {N} bytes, got {}", v.len()));
            [0u8; N]
        }),
        Err(e) => {
            o.fail(format!("{what}: bad hex: {e}"));
            [0u8; N]
        }
    }
}

/// `body` from `sender_id`, signed with `signer`'s key.
fn frame(signer: &RealCrypto, sender_id: DeviceId, body: Body) -> Option<Vec<u8>> {
    let repr = FrameRepr { version: Version::V2, sender_id, body, signature: Signature([0; 64]) };
    let mut buf = [0u8; 255];
    let len = repr.emit(&mut buf).ok()?;
    let f = buf.get_mut(..len)?;
    sign_frame(signer, f, repr.signed_len()).ok()?;
    Some(f.to_vec())
}

fn feed(node: &mut EnrollNode, now: Now, frames: &[Vec<u8>]) -> Vec<Action> {
    let mut out = Vec::new();
    for f in frames {
        node.handle_frame(now, f, -60, 0, &mut |a| out.push(a));
    }
    out
}

fn timers(node: &mut EnrollNode, now: Now, rng: &mut impl Rng) -> Vec<Action> {
    let mut out = Vec::new();
    node.handle_timers(now, rng, &mut |a| out.push(a));
    out
}

fn frames_of(acts: &[Action], t: u8) -> Vec<Vec<u8>> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Broadcast(f) if f.get(3) == Some(&t) => Some(f.to_vec()),
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

fn new_device(root: u8, seed: u8, now: Now) -> EnrollNode {
    let id = ident(seed);
    let cfg = NodeConfig { enroll: Some(EnrollConfig::device(root_of(root).public_key())), ..NodeConfig::default() };
    let mut d = EnrollNode::new(cfg, RealCrypto::new(&id), now, 1);
    d.set_enroll_identity(id);
    d
}

/// The device's request frame and its nonce.
fn request(o: &mut Outcome, device: &mut EnrollNode, now: Now, rng: &[u32]) -> Option<(Vec<u8>, u32)> {
    let acts = timers(device, now, &mut Words::new(rng));
    let Some(f) = frames_of(&acts, REQUEST).into_iter().next() else {
        o.fail("the device sent no ENROLLMENT_REQUEST");
        return None;
    };
    let nonce = events(&acts).iter().find_map(|e| match e {
        EnrollEvent::RequestSent { nonce } => Some(*nonce),
        _ => None,
    });
    o.value("request nonce", nonce);
    Some((f, nonce.unwrap_or(0)))
}

fn run_provision(c: &Provision) -> Outcome {
    let mut o = Outcome::default();
    let root = root_of(c.root);
    let pid = ident(c.provisioner);
    let netkey = NetKey(unhex_n(&mut o, "netkey", &c.netkey));
    let at = |s: u32| Now::new(u64::from(s) * 1000, c.start_unix.wrapping_add(s));

    let cert = issue_provisioner_certificate(&root, &pid.public_key(), c.start_unix, c.start_unix + CERT_YEARS_S);
    let mut ec = EnrollConfig::provisioner(root.public_key(), cert);
    for &m in &c.manifest {
        if ec.manifest.push(ident(m).device_id()).is_err() {
            o.fail("manifest longer than MAX_MANIFEST");
        }
    }
    ec.deployment_zone = c.zone;
    ec.button_window_ms = u64::from(c.button_window_s) * 1000;
    let mut cfg = NodeConfig { enroll: Some(ec), ..NodeConfig::default() };
    cfg.lifecycle.neonatal_duration_ms = u64::from(c.neonatal_s) * 1000;
    cfg.quorum.min_transition_interval = 0;
    let mut p = Box::new(EnrollNode::new(cfg, RealCrypto::new(&pid), at(0), 1));
    p.set_network_key(netkey.clone(), 0);

    let dev_id = ident(c.device);
    let neighbours: Vec<(RealCrypto, Option<u32>)> =
        c.neighbours.iter().map(|Neighbour(b, until)| (RealCrypto::new(&ident(*b)), *until)).collect();
    for (n, _) in &neighbours {
        if p.register_peer(n.public_key()).is_err() {
            o.fail("neighbour key table full");
        }
    }
    if c.registered && p.register_peer(dev_id.public_key()).is_err() {
        o.fail("key table full registering the device");
    }

    let mut warm = Warmup(0);
    for s in 0..c.request_at_s {
        if s % PULSE_EVERY_S == 0 {
            for (n, until) in &neighbours {
                if until.is_some_and(|u| s > u) {
                    continue;
                }
                let pulse = PresencePulse {
                    mode: QuorumMode::Quorum,
                    neighbor_count: neighbours.len() as u8,
                    v2: Some(PresencePulseV2 { timestamp: at(s).unix_s, tx_power_dbm: 0 }),
                };
                if let Some(f) = frame(n, n.device_id(), Body::PresencePulse(pulse)) {
                    let _ = feed(&mut p, at(s), &[f]);
                }
            }
        }
        if c.button_at_s == Some(s) {
            p.operator_enroll_button(at(s));
        }
        let _ = timers(&mut p, at(s), &mut warm);
    }

    let now = at(c.request_at_s);
    let state = p.own().state();
    let mode = p.quorum().mode();
    let live = p.quorum().table().alive_count(now.unix_s);
    match c.at_request.state {
        Some(want) => o.exact("state at request", state, want),
        None => o.value("state at request", state),
    }
    match c.at_request.mode {
        Some(want) => o.exact("mode at request", mode, want),
        None => o.value("mode at request", mode),
    }
    match c.at_request.live {
        Some(want) => o.exact("live neighbours at request", live, want),
        None => o.value("live neighbours at request", live),
    }
    o.value("weight at request", p.own().weight());

    let mut device = new_device(c.root, c.device, Now::new(0, c.device_unix));
    let Some((mut req, _)) = request(&mut o, &mut device, Now::new(0, c.device_unix), &c.device_rng) else {
        return o;
    };
    if c.forge_signature {
        if let Some(b) = req.last_mut() {
            *b ^= 0x01;
        }
    }
    let heard = feed(&mut p, now, std::slice::from_ref(&req));
    let device_id = dev_id.device_id();
    let bad_sig = heard.iter().any(|a| {
        matches!(a, Action::Audit(AuditEvent::Dropped { sender, reason: FrameDrop::BadSignature, .. })
            if *sender == device_id)
    });
    let decision = match events(&heard).as_slice() {
        [] if bad_sig => Some(Decision::BadSignature),
        [EnrollEvent::RequestAccepted { device, by }] if *device == device_id => Some(Decision::Accepted(*by)),
        [EnrollEvent::RequestRefused { device, reason }] if *device == device_id => Some(Decision::Refused(*reason)),
        other => {
            o.fail(format!("request: unexpected audit {other:?}"));
            None
        }
    };
    o.exact("decision", decision, Some(c.decision));

    let answer = timers(&mut p, now, &mut Words::new(&c.provisioner_rng));
    let certs = frames_of(&answer, CERTIFICATE);
    let responses = frames_of(&answer, RESPONSE);
    o.value("certificates sent", certs.len());
    match (&c.answer, c.decision) {
        (Some(want), Decision::Accepted(_)) => check_answer(&mut o, c, want, &answer, &certs, &responses),
        (None, Decision::Accepted(_)) => o.fail("an accepted case must give its answer"),
        (Some(_), _) => o.fail("only an accepted case has an answer"),
        (None, _) => o.exact("responses sent", responses.len(), 0),
    }
    o
}

fn check_answer(
    o: &mut Outcome,
    c: &Provision,
    want: &Answer,
    answer: &[Action],
    certs: &[Vec<u8>],
    responses: &[Vec<u8>],
) {
    o.exact("responses sent", responses.len(), 1);
    let dev = ident(c.device);
    o.exact("provisioned audit", events(answer).contains(&EnrollEvent::Provisioned { device: dev.device_id() }), true);
    let Some(resp_frame) = responses.first() else { return };
    let repr = match FrameRepr::parse(resp_frame) {
        Ok(r) => r,
        Err(e) => return o.fail(format!("response does not parse: {e:?}")),
    };
    o.exact("sender_id", repr.sender_id, want.provisioner);
    let Body::EnrollmentResponse(r) = repr.body else {
        return o.fail("0x61 frame is not an ENROLLMENT_RESPONSE");
    };
    o.exact("target_device_id", r.target_device_id, want.target);
    o.exact("nonce echo", r.v2.map(|v| v.request_nonce), Some(want.nonce));
    o.exact("time_sync", r.time_sync, want.time_sync);
    o.exact("deployment_zone", r.deployment_zone, want.zone);
    o.exact("provisioner_pubkey", hex::encode(r.provisioner_pubkey.0), want.ephemeral_public.to_lowercase());
    o.exact("network_key_enc", hex::encode(r.network_key_enc.0), want.network_key_enc.to_lowercase());
    let ctx = SealContext::Enrollment {
        provisioner_id: repr.sender_id,
        target_device_id: dev.device_id(),
        time_sync: r.time_sync,
        deployment_zone: r.deployment_zone,
    };
    let sealed =
        krill_core::crypto::SealedNetKey { ephemeral_public: r.provisioner_pubkey, ciphertext: r.network_key_enc };
    let opened = open_netkey(&dev, &sealed, &ctx).map(|k| hex::encode(k.0));
    o.exact("opened netkey", opened, Ok(want.netkey.to_lowercase()));

    // The real device takes the certificate and the response one second later.
    let mut frames = certs.to_vec();
    frames.push(resp_frame.clone());
    let mut device = new_device(c.root, c.device, Now::new(0, c.device_unix));
    let mut sink = Vec::new();
    device.handle_timers(Now::new(0, c.device_unix), &mut Words::new(&c.device_rng), &mut |a| sink.push(a));
    let got = feed(&mut device, Now::new(1_000, c.device_unix.wrapping_add(1)), &frames);
    o.exact(
        "device enrolled",
        events(&got).last().copied(),
        Some(EnrollEvent::Enrolled { provisioner: want.provisioner, zone: want.zone }),
    );
    let key = got.iter().find_map(|a| match a {
        Action::NetworkKey { key, .. } => Some(hex::encode(key.0)),
        _ => None,
    });
    o.exact("device netkey", key, Some(want.netkey.to_lowercase()));
}

/// The certificate and response frames of a `Respond` case.
fn response_frames(o: &mut Outcome, c: &Respond, nonce: u32) -> Vec<Vec<u8>> {
    let prov = ident(c.provisioner);
    let pcrypto = RealCrypto::new(&prov);
    let signer = RealCrypto::new(&ident(c.signer.unwrap_or(c.provisioner)));
    let cert = issue_provisioner_certificate(&root_of(c.cert_root), &prov.public_key(), c.not_before, c.not_after);
    let ctx = SealContext::Enrollment {
        provisioner_id: prov.device_id(),
        target_device_id: ident(c.device).device_id(),
        time_sync: c.time_sync,
        deployment_zone: c.zone,
    };
    let eph = unhex_n::<32>(o, "ephemeral", &c.ephemeral);
    let netkey = NetKey(unhex_n(o, "netkey", &c.netkey));
    let sealed = match seal_netkey(&eph, &ident(c.seal_to.unwrap_or(c.device)).dh_public(), &netkey, &ctx) {
        Ok(s) => s,
        Err(e) => {
            o.fail(format!("seal: {e:?}"));
            return Vec::new();
        }
    };
    let resp = EnrollmentResponse {
        target_device_id: ident(c.device).device_id(),
        provisioner_pubkey: sealed.ephemeral_public,
        network_key_enc: sealed.ciphertext,
        time_sync: c.time_sync,
        deployment_zone: c.zone,
        v2: Some(EnrollmentResponseV2 { request_nonce: c.nonce.unwrap_or(nonce) }),
    };
    let frames: Vec<Vec<u8>> = [
        frame(&pcrypto, prov.device_id(), Body::ProvisionerCertificate(cert)),
        frame(&signer, prov.device_id(), Body::EnrollmentResponse(resp)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if frames.len() != 2 {
        o.fail("could not encode the certificate and response");
    }
    frames
}

/// Compares what a device did with `acts` to `decision`; `from` is the
/// expected sender in refusal audits.
fn check_device(
    o: &mut Outcome,
    device: &EnrollNode,
    acts: &[Action],
    from: DeviceId,
    decision: DeviceDecision,
    certificate: Option<EnrollRefusal>,
) {
    let ev = events(acts);
    let cert_refusal = ev.iter().find_map(|e| match e {
        EnrollEvent::CertificateRefused { from: f, reason } if *f == from => Some(*reason),
        _ => None,
    });
    o.exact("certificate refusal", cert_refusal, certificate);
    let got = ev.iter().rev().find_map(|e| match *e {
        EnrollEvent::Enrolled { provisioner, zone } => {
            let offset_ms = acts
                .iter()
                .find_map(|a| match a {
                    Action::ClockOffset { source, offset_ms, .. } if *source == provisioner => Some(*offset_ms),
                    _ => None,
                })
                .unwrap_or(i64::MIN);
            Some(DeviceDecision::Enrolled { provisioner, zone, offset_ms })
        }
        EnrollEvent::RotationApplied { epoch, late, .. } => Some(DeviceDecision::Rotated { epoch, late }),
        EnrollEvent::ResponseRefused { from: f, reason } | EnrollEvent::RotationRefused { from: f, reason }
            if f == from =>
        {
            Some(DeviceDecision::Refused(reason))
        }
        _ => None,
    });
    let got = match got {
        Some(d) => d,
        None if ev.iter().all(|e| matches!(e, EnrollEvent::CertificateRefused { .. })) => DeviceDecision::Ignored,
        None => {
            o.fail(format!("unexpected audit {ev:?}"));
            DeviceDecision::Ignored
        }
    };
    o.exact("decision", got, decision);
    let keyed = acts.iter().any(|a| matches!(a, Action::NetworkKey { .. }));
    let changes_key = matches!(decision, DeviceDecision::Enrolled { .. } | DeviceDecision::Rotated { .. });
    o.exact("NetworkKey emitted", keyed, changes_key);
    o.value("enrolled", device.is_enrolled());
}

/// The NetKey a device was handed in `acts`, hex.
fn netkey_in(acts: &[Action]) -> Option<(String, u32, Option<Timestamp>)> {
    acts.iter().find_map(|a| match a {
        Action::NetworkKey { key, epoch, switch_by, .. } => Some((hex::encode(key.0), *epoch, *switch_by)),
        _ => None,
    })
}

fn run_respond(c: &Respond) -> Outcome {
    let mut o = Outcome::default();
    let start = Now::new(0, c.device_unix);
    let mut device = new_device(c.root, c.device, start);
    let Some((_, nonce)) = request(&mut o, &mut device, start, &c.device_rng) else {
        return o;
    };
    let frames = response_frames(&mut o, c, nonce);
    let now = Now::new(u64::from(c.answer_at_s) * 1000, c.device_unix.wrapping_add(c.answer_at_s));
    let acts = feed(&mut device, now, &frames);
    let from = ident(c.provisioner).device_id();
    check_device(&mut o, &device, &acts, from, c.decision, c.certificate);
    let enrolled = matches!(c.decision, DeviceDecision::Enrolled { .. });
    o.exact("is_enrolled", device.is_enrolled(), enrolled);
    if enrolled {
        o.exact("netkey", netkey_in(&acts), Some((c.netkey.to_lowercase(), 0, None)));
        o.exact("own state", device.own().state(), OwnState::Neonatal);
        o.exact("neonatal restarted at (ms)", device.own().entered_at_ms(), now.mono_ms);
    }
    o
}

fn run_rotate(c: &Rotate) -> Outcome {
    let mut o = Outcome::default();
    let at = |s: u32| Now::new(u64::from(s) * 1000, c.start_unix.wrapping_add(s));
    let mut device = new_device(c.root, c.device, at(0));
    let Some((_, nonce)) = request(&mut o, &mut device, at(0), &[0x5eed]) else {
        return o;
    };
    let enrol = Respond {
        root: c.root,
        device: c.device,
        device_unix: c.start_unix,
        device_rng: Vec::new(),
        cert_root: c.root,
        provisioner: c.provisioner,
        not_before: c.start_unix,
        not_after: c.start_unix + CERT_YEARS_S,
        signer: None,
        time_sync: c.start_unix,
        zone: 0,
        nonce: None,
        seal_to: None,
        ephemeral: "11".repeat(32),
        netkey: "00".repeat(16),
        answer_at_s: 0,
        decision: DeviceDecision::Ignored,
        certificate: None,
    };
    let frames = response_frames(&mut o, &enrol, nonce);
    let _ = feed(&mut device, at(0), &frames);
    o.exact("enrolled first", device.is_enrolled(), true);

    let prov = RealCrypto::new(&ident(c.provisioner));
    let rotation = |o: &mut Outcome, from: &RealCrypto, epoch: u32, target: u8, seal_to: u8, eph: &str, key: &str| {
        let ctx = SealContext::KeyRotation {
            provisioner_id: from.device_id(),
            target_device_id: ident(target).device_id(),
            key_epoch: epoch,
            deadline: c.deadline,
        };
        let eph = unhex_n::<32>(o, "ephemeral", eph);
        let key = NetKey(unhex_n(o, "netkey", key));
        let sealed = seal_netkey(&eph, &ident(seal_to).dh_public(), &key, &ctx).ok()?;
        let body = KeyRotation {
            target_device_id: ident(target).device_id(),
            ephemeral_pubkey: sealed.ephemeral_public,
            key_epoch: epoch,
            new_netkey_enc: sealed.ciphertext,
            deadline: c.deadline,
        };
        frame(from, from.device_id(), Body::KeyRotation(body))
    };
    if let Some(e) = c.prior_epoch {
        let f = rotation(&mut o, &prov, e, c.device, c.device, &"22".repeat(32), &"33".repeat(16));
        let acts = feed(&mut device, at(100), &f.into_iter().collect::<Vec<_>>());
        o.exact("prior rotation applied", device.network_key_epoch(), Some(e));
        o.value("prior audit", events(&acts));
    }
    let rot_seed = c.rotator.unwrap_or(c.provisioner);
    let rotator = RealCrypto::new(&ident(rot_seed));
    let mut frames = Vec::new();
    if rot_seed != c.provisioner {
        let cert = issue_provisioner_certificate(
            &root_of(c.rotator_root.unwrap_or(c.root)),
            &rotator.public_key(),
            c.start_unix,
            c.start_unix + CERT_YEARS_S,
        );
        frames.extend(frame(&rotator, rotator.device_id(), Body::ProvisionerCertificate(cert)));
    }
    let (target, seal_to) = (c.target.unwrap_or(c.device), c.seal_to.unwrap_or(c.device));
    match rotation(&mut o, &rotator, c.epoch, target, seal_to, &c.ephemeral, &c.netkey) {
        Some(f) => frames.push(f),
        None => o.fail("could not build the rotation"),
    }
    let before = device.network_key_epoch();
    let acts = feed(&mut device, at(c.at_s), &frames);
    check_device(&mut o, &device, &acts, rotator.device_id(), c.decision, c.certificate);
    match c.decision {
        DeviceDecision::Rotated { epoch, .. } => {
            o.exact("netkey", netkey_in(&acts), Some((c.netkey.to_lowercase(), epoch, Some(c.deadline))));
            o.exact("epoch after", device.network_key_epoch(), Some(epoch));
        }
        _ => o.exact("epoch after", device.network_key_epoch(), before),
    }
    o
}

/// Runs one case.
pub fn run(c: &Case) -> Outcome {
    match c {
        Case::Provision(p) => run_provision(p),
        Case::Respond(r) => run_respond(r),
        Case::Rotate(r) => run_rotate(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A different decision, so every case has a wrong expectation to fail on.
    fn other(d: DeviceDecision) -> DeviceDecision {
        match d {
            DeviceDecision::Refused(EnrollRefusal::StaleEpoch) => DeviceDecision::Ignored,
            _ => DeviceDecision::Refused(EnrollRefusal::StaleEpoch),
        }
    }

    /// Wrong expectations for `c`: its decision, and each checked detail.
    fn mutations(c: &Case) -> Vec<Case> {
        let mut out = Vec::new();
        match c {
            Case::Provision(p) => {
                let mut m = p.clone();
                m.decision = match p.decision {
                    Decision::Refused(EnrollRefusal::NotNormal) => Decision::BadSignature,
                    _ => Decision::Refused(EnrollRefusal::NotNormal),
                };
                m.answer = None;
                out.push(Case::Provision(m));
                let mut m = p.clone();
                m.at_request.live = Some(p.at_request.live.unwrap_or(0) + 1);
                out.push(Case::Provision(m));
                if let Some(a) = &p.answer {
                    for f in 0..5 {
                        let mut m = p.clone();
                        let mut b = a.clone();
                        match f {
                            0 => b.nonce ^= 1,
                            1 => b.time_sync += 1,
                            2 => b.ephemeral_public = b.ephemeral_public.replacen(|_: char| true, "0", 1),
                            3 => b.network_key_enc = format!("00{}", &b.network_key_enc[2..]),
                            _ => b.netkey = "00".repeat(16),
                        }
                        m.answer = Some(b);
                        out.push(Case::Provision(m));
                    }
                }
            }
            Case::Respond(r) => {
                let mut m = r.clone();
                m.decision = other(r.decision);
                out.push(Case::Respond(m));
                if let DeviceDecision::Enrolled { provisioner, zone, offset_ms } = r.decision {
                    let mut m = r.clone();
                    m.decision = DeviceDecision::Enrolled { provisioner, zone, offset_ms: offset_ms + 1000 };
                    out.push(Case::Respond(m));
                }
                let mut m = r.clone();
                m.certificate = match r.certificate {
                    Some(_) => None,
                    None => Some(EnrollRefusal::NoCertificate),
                };
                out.push(Case::Respond(m));
            }
            Case::Rotate(r) => {
                let mut m = r.clone();
                m.decision = other(r.decision);
                out.push(Case::Rotate(m));
                if let DeviceDecision::Rotated { epoch, late } = r.decision {
                    let mut m = r.clone();
                    m.decision = DeviceDecision::Rotated { epoch, late: !late };
                    out.push(Case::Rotate(m));
                }
            }
        }
        out
    }

    /// Every case passes as written and fails under each mutation. Nodes
    /// here are about 40 KB, so the default test stack holds them.
    #[test]
    fn every_case_fails_on_a_wrong_expectation() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/vectors/enroll.ron");
        let file = crate::vectors::load(&path).expect("enroll.ron loads");
        let mut cases = 0;
        for case in &file.cases {
            let crate::vectors::Check::Enroll(c) = &case.check else { continue };
            cases += 1;
            assert!(run(c).passed(), "{} must pass as written", case.name);
            for (i, m) in mutations(c).iter().enumerate() {
                let o = run(m);
                assert!(!o.passed(), "{}: mutation {i} was not caught: {:?}", case.name, o.computed);
            }
        }
        assert!(cases >= 20, "{cases} enroll cases");
    }

    #[test]
    fn rng_words_cycle() {
        let mut w = Words::new(&[1, 2]);
        assert_eq!([w.next_u32(), w.next_u32(), w.next_u32()], [1, 2, 1]);
        assert_eq!(Words::new(&[]).next_u32(), 0);
    }
}
