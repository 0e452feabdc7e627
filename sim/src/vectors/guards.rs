//! DoS-guard and segmentation vectors (ES-15, ES-12.2): each case is a short
//! script of steps against one detector, with the expected result per step.
use super::Outcome;
use krill_core::guards::relay::should_relay;
use krill_core::guards::segment::{segment, ReassemblyStats, SegmentPdu};
use krill_core::guards::{
    DropReason, DuplicateDetector, FloodConfig, FloodDetector, FloodVerdict, FrameMeta, Freshness, GuardConfig, Guards,
    RateConfig, RateLimiter, Reassembler, RelayCache, RelayConfig, SegError, SegLayout, SeqVerdict, SeqWindow,
};
use krill_core::DeviceId;
use serde::Deserialize;

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// Token buckets alone (ES-15.1).
    Rate(RateCase),
    /// The spec's sequence window alone (ES-15.2 `is_duplicate`).
    Window(WindowCase),
    /// Sequence window plus timestamp freshness (ES-15.2, SPEC-NOTES 17).
    Dup(DupCase),
    /// Flood counters and blacklist (ES-15.3).
    Flood(FloodCase),
    /// Relay cache and TTL (ES-15.4).
    Relay(RelayCase),
    /// Cutting one frame into PDUs (ES-12.2).
    Segment(SegmentCase),
    /// Reassembly script (ES-12.2).
    Reassembly(ReassemblyCase),
    /// The combined guards in dispatch order (SPEC-NOTES 20).
    Pipeline(PipelineCase),
}

/// Expected outcome of a guard step.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Accepted.
    Ok,
    /// Dropped for this reason.
    Drop(DropReason),
}

impl Expect {
    fn of(r: Result<(), DropReason>) -> Self {
        match r {
            Ok(()) => Expect::Ok,
            Err(d) => Expect::Drop(d),
        }
    }
}

/// Inputs and expectations for [`Case::Rate`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateCase {
    /// Per-type limits replacing the spec's, `(msg_type, per_epoch)`.
    #[serde(default)]
    pub limits: Vec<(u8, u16)>,
    /// Bucket table capacity: 2 or the default.
    #[serde(default)]
    pub capacity: Option<usize>,
    /// Steps in order.
    pub steps: Vec<RateStep>,
}

/// One step of [`RateCase`]: `count` frames at `now`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateStep {
    /// Sender.
    pub device: DeviceId,
    /// ES-2.2 type code.
    pub msg_type: u8,
    /// Receiver clock, Unix seconds.
    pub now: u32,
    /// Frames tried (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// How many are allowed.
    pub allowed: u32,
    /// Drop reason of the refused ones, if checked.
    #[serde(default)]
    pub refused_as: Option<DropReason>,
    /// Tokens left after the step, if checked.
    #[serde(default)]
    pub tokens_after: Option<u16>,
}

fn one() -> u32 {
    1
}

/// Inputs and expectations for [`Case::Window`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowCase {
    /// First sequence number seen (creates the tracker and is accepted).
    pub first: u8,
    /// Accept these in order before the checked steps (no expectation).
    #[serde(default)]
    pub prefill: Vec<u8>,
    /// `(seq, verdict)` in order; `Seen`/`Behind` are duplicates.
    pub steps: Vec<(u8, SeqVerdict)>,
    /// Expected window base afterwards, if checked.
    #[serde(default)]
    pub last_seq: Option<u8>,
}

/// Inputs and expectations for [`Case::Dup`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DupCase {
    /// Freshness window; absent = the spec's sequence window alone.
    #[serde(default)]
    pub freshness: Option<Freshness>,
    /// Steps in order.
    pub steps: Vec<DupStep>,
}

/// One step of [`DupCase`].
#[derive(Debug, Deserialize)]
pub enum DupStep {
    /// `count` in-order frames: seq `first_seq + i`, sent and received at
    /// `t0 + i·interval`; all must be accepted.
    Stream {
        /// Sender.
        device: DeviceId,
        /// First sequence number.
        first_seq: u8,
        /// Frames.
        count: u32,
        /// Time of the first.
        t0: u32,
        /// Seconds between frames.
        interval: u32,
    },
    /// One TRACE_DEPOSIT-type frame.
    Frame {
        /// Sender.
        device: DeviceId,
        /// Sequence number.
        seq: Option<u8>,
        /// Signed timestamp.
        ts: Option<u32>,
        /// Receiver clock.
        now: u32,
        /// Expected verdict.
        expect: Expect,
    },
}

/// Inputs and expectations for [`Case::Flood`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloodCase {
    /// Settings; default the spec's (50, 300 s, 60 s).
    #[serde(default)]
    pub config: Option<FloodConfig>,
    /// Steps in order.
    pub steps: Vec<FloodStep>,
}

/// One step of [`FloodCase`].
#[derive(Debug, Deserialize)]
pub enum FloodStep {
    /// `count` rate-limited frames at `now`; `last` is the verdict of the last.
    Reject {
        /// Sender.
        device: DeviceId,
        /// Clock.
        now: u32,
        /// Rejections recorded.
        count: u32,
        /// Verdict of the last one.
        last: FloodVerdict,
    },
    /// Is the sender blacklisted at `now`?
    Blacklisted {
        /// Sender.
        device: DeviceId,
        /// Clock.
        now: u32,
        /// Expected answer.
        expect: bool,
    },
    /// Rejections counted in the sender's current epoch.
    Counted {
        /// Sender.
        device: DeviceId,
        /// Clock.
        now: u32,
        /// Expected count.
        expect: u16,
    },
    /// Epoch tick: clear counters.
    Tick,
}

/// Inputs and expectations for [`Case::Relay`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayCase {
    /// Steps in order.
    pub steps: Vec<RelayStep>,
}

/// One step of [`RelayCase`]. Keys are written as u32 (little-endian bytes).
#[derive(Debug, Deserialize)]
pub enum RelayStep {
    /// Keys `from..from+count`, each expected new (`true`) or cached.
    Insert {
        /// First key.
        from: u32,
        /// Keys.
        count: u32,
        /// Expected `check_and_insert` result for each.
        new: bool,
    },
    /// `should_relay(ttl)`.
    Ttl {
        /// Received TTL.
        ttl: u8,
        /// Expected new TTL, `None` = not relayed.
        relay: Option<u8>,
    },
    /// Initial TTL for a type.
    Initial {
        /// ES-2.2 type code.
        msg_type: u8,
        /// Expected TTL.
        ttl: u8,
    },
}

/// Inputs and expectations for [`Case::Segment`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentCase {
    /// Frame length; its bytes are `i·7 + seed`.
    pub len: usize,
    /// Byte seed.
    #[serde(default)]
    pub seed: u8,
    /// Header layout.
    pub layout: SegLayout,
    /// Frame id.
    pub msg_id: u16,
    /// Expected error instead of PDUs.
    #[serde(default)]
    pub error: Option<SegError>,
    /// Expected PDU lengths.
    #[serde(default)]
    pub pdu_lens: Option<Vec<usize>>,
    /// Expected hex of each PDU's header.
    #[serde(default)]
    pub headers: Option<Vec<String>>,
}

/// Inputs and expectations for [`Case::Reassembly`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReassemblyCase {
    /// Timeout, default 500 ms.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Frames to cut: `(len, msg_id, layout)`; bytes seeded by index.
    pub frames: Vec<(usize, u16, SegLayout)>,
    /// Steps in order.
    pub steps: Vec<ReStep>,
}

/// One step of [`ReassemblyCase`].
#[derive(Debug, Deserialize)]
pub enum ReStep {
    /// Push segment `seg` of frame `frame` at `at` ms.
    Push {
        /// Index into `frames`.
        frame: usize,
        /// Segment index.
        seg: usize,
        /// Monotonic ms.
        at: u64,
        /// Expected result.
        expect: ReExpect,
    },
    /// Push raw PDU bytes (hex).
    Raw {
        /// PDU hex.
        hex: String,
        /// Monotonic ms.
        at: u64,
        /// Expected result.
        expect: ReExpect,
    },
    /// Check the counters; left-out ones are printed only.
    Stats {
        /// Reassemblies in progress.
        #[serde(default)]
        active: Option<usize>,
        /// Completed frames.
        #[serde(default)]
        completed: Option<u32>,
        /// Timed out.
        #[serde(default)]
        timed_out: Option<u32>,
        /// Evicted.
        #[serde(default)]
        evicted: Option<u32>,
        /// Rejected PDUs.
        #[serde(default)]
        rejected: Option<u32>,
    },
}

/// Expected result of one push.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
pub enum ReExpect {
    /// Stored, not complete.
    Stored,
    /// Completed the frame of the step (or, for `Raw`, any frame).
    Complete,
    /// Completed, but the bytes are not the step's frame (segments of two
    /// senders mixed).
    CompleteOther,
    /// Refused.
    Err(SegError),
}

/// Inputs and expectations for [`Case::Pipeline`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineCase {
    /// Per-type limits replacing the spec's.
    #[serde(default)]
    pub limits: Vec<(u8, u16)>,
    /// True: no freshness (the spec's window alone).
    #[serde(default)]
    pub spec_only: bool,
    /// Steps in order.
    pub steps: Vec<PipeStep>,
}

/// One step of [`PipelineCase`].
#[derive(Debug, Deserialize)]
pub enum PipeStep {
    /// `count` frames whose signature fails: precheck only. Seq advances
    /// by one per frame when present; the timestamp stays.
    Forged {
        /// The first frame.
        frame: FrameMeta,
        /// Frames.
        count: u32,
        /// Clock.
        now: u32,
        /// Expected precheck verdict of each.
        expect: Expect,
    },
    /// `count` verified frames: precheck, verify, admit. Seq advances by one
    /// per frame when present; the timestamp stays.
    Verified {
        /// The first frame.
        frame: FrameMeta,
        /// Frames (default 1).
        #[serde(default = "one")]
        count: u32,
        /// Clock.
        now: u32,
        /// Expected drops by reason (admitted = count − drops), if checked.
        #[serde(default)]
        drops: Option<Vec<(DropReason, u32)>>,
        /// Expected verdict of the last frame, if checked.
        #[serde(default)]
        last: Option<Expect>,
    },
    /// Tokens in a bucket (`None` = no bucket).
    Tokens {
        /// Sender.
        device: DeviceId,
        /// Type.
        msg_type: u8,
        /// Clock.
        now: u32,
        /// Expected.
        tokens: Option<u16>,
    },
    /// Blacklist state.
    Blacklisted {
        /// Sender.
        device: DeviceId,
        /// Clock.
        now: u32,
        /// Expected.
        expect: bool,
    },
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut o = Outcome::default();
    match c {
        Case::Rate(c) => run_rate(c, &mut o),
        Case::Window(c) => run_window(c, &mut o),
        Case::Dup(c) => run_dup(c, &mut o),
        Case::Flood(c) => run_flood(c, &mut o),
        Case::Relay(c) => run_relay(c, &mut o),
        Case::Segment(c) => run_segment(c, &mut o),
        Case::Reassembly(c) => run_reassembly(c, &mut o),
        Case::Pipeline(c) => run_pipeline(c, &mut o),
    }
    o
}

fn rate_config(limits: &[(u8, u16)], o: &mut Outcome) -> RateConfig {
    let mut cfg = RateConfig::spec();
    for &(t, l) in limits {
        if cfg.set_limit(t, l).is_err() {
            o.fail(format!("cannot set limit for type {t:#04x}"));
        }
    }
    cfg
}

fn run_rate(c: &RateCase, o: &mut Outcome) {
    let cfg = rate_config(&c.limits, o);
    match c.capacity {
        Some(2) => rate_steps::<2>(c, &cfg, o),
        None => rate_steps::<{ krill_core::guards::RATE_BUCKETS }>(c, &cfg, o),
        Some(n) => o.fail(format!("capacity {n} not supported (2 or default)")),
    }
}

fn rate_steps<const N: usize>(c: &RateCase, cfg: &RateConfig, o: &mut Outcome) {
    let mut r: RateLimiter<N> = RateLimiter::new();
    for (i, s) in c.steps.iter().enumerate() {
        let mut allowed = 0;
        let mut refused = None;
        for _ in 0..s.count {
            match r.check(s.device, s.msg_type, s.now, cfg) {
                Ok(()) => allowed += 1,
                Err(d) => refused = Some(d),
            }
        }
        o.exact(&format!("step {i} allowed"), allowed, s.allowed);
        if let Some(want) = s.refused_as {
            o.exact(&format!("step {i} refused as"), refused, Some(want));
        }
        let tokens = r.tokens(s.device, s.msg_type, s.now, cfg);
        match s.tokens_after {
            Some(want) => o.exact(&format!("step {i} tokens"), tokens, Some(want)),
            None => o.value(&format!("step {i} tokens"), tokens),
        }
    }
}

fn run_window(c: &WindowCase, o: &mut Outcome) {
    let mut w = SeqWindow::starting_at(c.first);
    if w.is_duplicate(c.first) {
        o.fail("first number refused");
    }
    for &s in &c.prefill {
        w.is_duplicate(s);
    }
    for &(seq, want) in &c.steps {
        let got = w.check(seq);
        let dup = w.is_duplicate(seq);
        o.exact(&format!("seq {seq}"), got, want);
        o.exact(&format!("seq {seq} duplicate"), dup, want.is_duplicate());
    }
    match c.last_seq {
        Some(want) => o.exact("last_seq", w.last_seq, want),
        None => o.value("last_seq", w.last_seq),
    }
}

fn run_dup(c: &DupCase, o: &mut Outcome) {
    let mut d: DuplicateDetector = DuplicateDetector::new();
    let ty = krill_core::guards::msg::TRACE_DEPOSIT;
    for (i, s) in c.steps.iter().enumerate() {
        match s {
            DupStep::Stream { device, first_seq, count, t0, interval } => {
                let mut refused = 0u32;
                for k in 0..*count {
                    let seq = first_seq.wrapping_add(k as u8);
                    let t = t0.wrapping_add(k.wrapping_mul(*interval));
                    refused += d.accept(*device, ty, Some(seq), Some(t), t, c.freshness).is_err() as u32;
                }
                o.exact(&format!("step {i} stream refused"), refused, 0);
            }
            DupStep::Frame { device, seq, ts, now, expect } => {
                let got = Expect::of(d.accept(*device, ty, *seq, *ts, *now, c.freshness));
                o.exact(&format!("step {i} frame"), got, *expect);
            }
        }
    }
}

fn run_flood(c: &FloodCase, o: &mut Outcome) {
    let cfg = c.config.unwrap_or_default();
    let mut f: FloodDetector = FloodDetector::new();
    for (i, s) in c.steps.iter().enumerate() {
        match s {
            FloodStep::Reject { device, now, count, last } => {
                let mut v = None;
                for _ in 0..*count {
                    v = Some(f.record_rejection(*device, *now, &cfg));
                }
                o.exact(&format!("step {i} last verdict"), v, Some(*last));
            }
            FloodStep::Blacklisted { device, now, expect } => {
                o.exact(&format!("step {i} blacklisted"), f.is_blacklisted(*device, *now), *expect);
            }
            FloodStep::Counted { device, now, expect } => {
                o.exact(&format!("step {i} counted"), f.rejected_this_epoch(*device, *now, &cfg), *expect);
            }
            FloodStep::Tick => f.clear_counters(),
        }
    }
}

fn run_relay(c: &RelayCase, o: &mut Outcome) {
    let mut cache: RelayCache = RelayCache::new();
    let cfg = RelayConfig::default();
    for (i, s) in c.steps.iter().enumerate() {
        match s {
            RelayStep::Insert { from, count, new } => {
                let mut wrong = Vec::new();
                for k in *from..from.saturating_add(*count) {
                    if cache.check_and_insert(k.to_le_bytes()) != *new {
                        wrong.push(k);
                    }
                }
                o.exact(&format!("step {i} keys not {}", if *new { "new" } else { "cached" }), wrong, Vec::new());
            }
            RelayStep::Ttl { ttl, relay } => o.exact(&format!("step {i} relay ttl {ttl}"), should_relay(*ttl), *relay),
            RelayStep::Initial { msg_type, ttl } => {
                o.exact(&format!("step {i} initial ttl {msg_type:#04x}"), cfg.initial_ttl(*msg_type), *ttl)
            }
        }
    }
}

fn frame_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
}

fn run_segment(c: &SegmentCase, o: &mut Outcome) {
    let f = frame_bytes(c.len, c.seed);
    let pdus: Vec<SegmentPdu> = match segment(&f, c.msg_id, c.layout) {
        Ok(s) => s.collect(),
        Err(e) => {
            o.exact("error", Some(e), c.error);
            return;
        }
    };
    o.exact("error", None, c.error);
    let lens: Vec<usize> = pdus.iter().map(|p| p.len()).collect();
    match &c.pdu_lens {
        Some(want) => o.exact("pdu lengths", lens, want.clone()),
        None => o.value("pdu lengths", lens),
    }
    let hl = c.layout.header_len();
    let headers: Vec<String> = pdus.iter().map(|p| hex::encode(&p[..hl.min(p.len())])).collect();
    match &c.headers {
        Some(want) => o.exact("headers", headers, want.clone()),
        None => o.value("headers", headers),
    }
    let mut r: Reassembler = Reassembler::default();
    let mut out = None;
    for p in pdus.iter().rev() {
        if let Ok(Some(x)) = r.push(p, 0) {
            out = Some(x.frame.to_vec());
        }
    }
    o.exact("reassembled in reverse == frame", out.as_deref() == Some(f.as_slice()), true);
}

fn run_reassembly(c: &ReassemblyCase, o: &mut Outcome) {
    let mut r: Reassembler = Reassembler::new(c.timeout_ms.unwrap_or(500));
    let mut frames = Vec::new();
    for (k, &(len, id, layout)) in c.frames.iter().enumerate() {
        let bytes = frame_bytes(len, k as u8);
        match segment(&bytes, id, layout) {
            Ok(s) => frames.push((bytes.clone(), s.collect::<Vec<SegmentPdu>>())),
            Err(e) => {
                o.fail(format!("frame {k}: {e:?}"));
                return;
            }
        }
    }
    for (i, s) in c.steps.iter().enumerate() {
        match s {
            ReStep::Push { frame, seg, at, expect } => {
                let Some((bytes, pdu)) = frames.get(*frame).and_then(|(b, p)| Some((b, p.get(*seg)?))) else {
                    o.fail(format!("step {i}: no frame {frame} segment {seg}"));
                    continue;
                };
                let got = match r.push(pdu, *at) {
                    Ok(None) => ReExpect::Stored,
                    Ok(Some(x)) if x.frame.as_slice() == bytes.as_slice() => ReExpect::Complete,
                    Ok(Some(_)) => ReExpect::CompleteOther,
                    Err(e) => ReExpect::Err(e),
                };
                o.exact(&format!("step {i} frame {frame} seg {seg} @{at}"), got, *expect);
            }
            ReStep::Raw { hex: h, at, expect } => {
                let Ok(pdu) = hex::decode(h) else {
                    o.fail(format!("step {i}: bad hex"));
                    continue;
                };
                let got = match r.push(&pdu, *at) {
                    Ok(None) => ReExpect::Stored,
                    Ok(Some(_)) => ReExpect::Complete,
                    Err(e) => ReExpect::Err(e),
                };
                o.exact(&format!("step {i} raw {h}"), got, *expect);
            }
            ReStep::Stats { active, completed, timed_out, evicted, rejected } => {
                let st: ReassemblyStats = r.stats();
                let checks = [
                    ("active", r.active() as u64, active.map(|v| v as u64)),
                    ("completed", u64::from(st.completed), completed.map(u64::from)),
                    ("timed_out", u64::from(st.timed_out), timed_out.map(u64::from)),
                    ("evicted", u64::from(st.evicted), evicted.map(u64::from)),
                    ("rejected", u64::from(st.rejected), rejected.map(u64::from)),
                ];
                for (name, got, want) in checks {
                    let name = format!("step {i} {name}");
                    match want {
                        Some(w) => o.exact(&name, got, w),
                        None => o.value(&name, got),
                    }
                }
            }
        }
    }
}

fn run_pipeline(c: &PipelineCase, o: &mut Outcome) {
    let mut cfg = if c.spec_only { GuardConfig::default() } else { GuardConfig::recommended() };
    cfg.rate = rate_config(&c.limits, o);
    let mut g: Guards = Guards::new(cfg);
    for (i, s) in c.steps.iter().enumerate() {
        match s {
            PipeStep::Forged { frame, count, now, expect } => {
                let mut wrong = 0u32;
                for k in 0..*count {
                    let f = FrameMeta { seq: frame.seq.map(|s| s.wrapping_add(k as u8)), ..*frame };
                    // The signature check fails: the Unverified is dropped.
                    let got = Expect::of(g.precheck(f, *now).map(|_| ()));
                    wrong += (got != *expect) as u32;
                }
                o.exact(&format!("step {i} forged frames with another verdict"), wrong, 0);
            }
            PipeStep::Verified { frame, count, now, drops, last } => {
                let mut counts = krill_core::guards::DropCounts::default();
                let mut got_last = Expect::Ok;
                for k in 0..*count {
                    let f = FrameMeta { seq: frame.seq.map(|s| s.wrapping_add(k as u8)), ..*frame };
                    let r = g.precheck(f, *now).and_then(|u| g.admit_verified(u.signature_verified(), *now));
                    if let Err(d) = r {
                        counts.record(d);
                    }
                    got_last = Expect::of(r);
                }
                match drops {
                    Some(drops) => {
                        let mut want = krill_core::guards::DropCounts::default();
                        for &(d, n) in drops {
                            for _ in 0..n {
                                want.record(d);
                            }
                        }
                        for d in DropReason::ALL {
                            if counts.get(d) != 0 || want.get(d) != 0 {
                                o.exact(&format!("step {i} {d:?}"), counts.get(d), want.get(d));
                            }
                        }
                        o.exact(&format!("step {i} admitted"), count - counts.total(), count - want.total());
                    }
                    None => o.value(&format!("step {i} admitted"), count - counts.total()),
                }
                if let Some(w) = last {
                    o.exact(&format!("step {i} last"), got_last, *w);
                }
            }
            PipeStep::Tokens { device, msg_type, now, tokens } => {
                let got = g.rate().tokens(*device, *msg_type, *now, &g.config().rate);
                o.exact(&format!("step {i} tokens"), got, *tokens);
            }
            PipeStep::Blacklisted { device, now, expect } => {
                o.exact(&format!("step {i} blacklisted"), g.is_blacklisted(*device, *now), *expect);
            }
        }
    }
}
