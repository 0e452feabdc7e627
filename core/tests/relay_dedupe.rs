//! Relayed copies of frames without a sequence number (BLE Mesh relay,
//! ES-12.2) reach a node once per relaying neighbour when the mesh's relay
//! cache has forgotten them. They must cost their origin one rate token,
//! not one per copy: otherwise an honest node is rate-limited and then
//! blacklisted by copies of its own frames.

use krill_core::crypto::{sign_frame, Crypto, RealCrypto};
use krill_core::guards::DropReason;
use krill_core::node::{Action, AuditEvent, FrameDrop, Node};
use krill_core::types::{DeviceId, Signature};
use krill_core::wire::immune::InflammationReplyV2;
use krill_core::wire::{Body, FrameRepr, InflammationReply, Verdict, Version};

mod common;
use common::{fast_config, identity, now_at, Lcg};

type TestNode = Node<RealCrypto, 8, 512, 16, 64>;

/// Node 0 (the origin), node 1 (the receiver), each knowing the other.
fn pair() -> (TestNode, TestNode) {
    let (ia, ib) = (identity(0), identity(1));
    let mut a: TestNode = Node::new(fast_config(), RealCrypto::new(&ia), now_at(0), 1);
    let mut b: TestNode = Node::new(fast_config(), RealCrypto::new(&ib), now_at(0), 2);
    a.register_peer(ib.public_key()).unwrap();
    b.register_peer(ia.public_key()).unwrap();
    (a, b)
}

/// The PRESENCE_PULSE `node` broadcasts when its timers run at `ms`.
fn pulse_at(node: &mut TestNode, ms: u64) -> Vec<u8> {
    let mut out = Vec::new();
    node.handle_timers(now_at(ms), &mut Lcg(3), &mut |x| out.push(x));
    out.iter()
        .find_map(|x| match x {
            Action::Broadcast(f) if f[3] == 0x10 => Some(f.to_vec()),
            _ => None,
        })
        .expect("a pulse is due")
}

/// An INFLAMMATION_REPLY signed by node 0's key.
fn reply(query_id: u32, at: u32) -> Vec<u8> {
    let signer = RealCrypto::new(&identity(0));
    let repr = FrameRepr {
        version: Version::V2,
        sender_id: signer.device_id(),
        body: Body::InflammationReply(InflammationReply {
            suspect_id: DeviceId([9; 8]),
            verdict: Verdict::ContradictsSuspect,
            own_reading: 2150,
            own_confidence: 200,
            v2: Some(InflammationReplyV2 { query_id, timestamp: at }),
        }),
        signature: Signature([0; 64]),
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    let n = repr.emit(&mut buf).unwrap();
    buf.truncate(n);
    sign_frame(&signer, &mut buf, repr.signed_len()).unwrap();
    buf
}

/// Drop reasons `node` gives one copy of `frame` that took `hops` relays.
fn deliver(node: &mut TestNode, ms: u64, frame: &[u8], hops: u8) -> Vec<FrameDrop> {
    let mut drops = Vec::new();
    node.handle_frame(now_at(ms), frame, -70, hops, &mut |a| {
        if let Action::Audit(AuditEvent::Dropped { reason, .. }) = a {
            drops.push(reason)
        }
    });
    drops
}

const DUP: FrameDrop = FrameDrop::Guard(DropReason::Duplicate);

#[test]
fn relayed_pulse_copies_are_duplicates_and_charge_nothing() {
    let (mut a, mut b) = pair();
    // Six pulses a minute against a limit of 8, each heard directly and
    // then relayed by 48 neighbours: 294 copies a minute.
    for k in 1..=6u64 {
        let ms = k * 10_000;
        let p = pulse_at(&mut a, ms);
        assert!(deliver(&mut b, ms, &p, 0).is_empty(), "pulse {k}");
        for copy in 0..48 {
            let hops = 1 + (copy % 3) as u8;
            assert_eq!(deliver(&mut b, ms + 5 + copy, &p, hops), [DUP], "pulse {k} copy {copy}");
        }
    }
    assert_eq!(b.guard_drops().get(DropReason::RateLimited), 0);
    assert_eq!(b.guard_drops().get(DropReason::Flooded), 0);
    assert_eq!(b.guard_drops().get(DropReason::Duplicate), 6 * 48);
    assert!(b.quorum().table().get(&a.id()).is_some(), "still a neighbour");
    // And the origin's next pulse is still welcome.
    let p = pulse_at(&mut a, 70_000);
    assert!(deliver(&mut b, 70_000, &p, 0).is_empty());
}

#[test]
fn relayed_reply_copies_are_duplicates_and_a_forged_copy_poisons_nothing() {
    let (_a, mut b) = pair();
    let t = now_at(20_000).unix_s;
    let r1 = reply(1, t);
    // A forgery with r1's signature prefix and a broken tail: it must not
    // make the genuine reply look like a duplicate.
    let mut forged = r1.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(deliver(&mut b, 20_000, &forged, 1), [FrameDrop::BadSignature]);
    assert!(deliver(&mut b, 20_000, &r1, 2).is_empty(), "the genuine reply, relayed, is admitted");
    // 30 more copies: the INFLAMMATION_REPLY limit is 10 a minute.
    for copy in 0..30 {
        assert_eq!(deliver(&mut b, 20_001 + copy, &r1, 1 + (copy % 3) as u8), [DUP], "copy {copy}");
    }
    // The direct copy after relayed ones is handled (once), not charged.
    assert!(deliver(&mut b, 20_100, &r1, 0).is_empty());
    assert_eq!(deliver(&mut b, 20_200, &r1, 0), [DUP]);
    // Another reply from the same responder is a new frame.
    let r2 = reply(2, t + 1);
    assert!(deliver(&mut b, 21_000, &r2, 0).is_empty());
    assert_eq!(b.guard_drops().get(DropReason::RateLimited), 0);
    assert_eq!(b.frame_drops().bad_signature, 1);
}

#[test]
fn copies_of_an_over_quota_frame_do_not_blacklist_its_sender() {
    let (_a, mut b) = pair();
    let t = now_at(30_000).unix_s;
    // Eleven distinct replies within a minute: the eleventh is over quota.
    for q in 0..10 {
        assert!(deliver(&mut b, 30_000 + q, &reply(q as u32, t), 0).is_empty(), "reply {q}");
    }
    let over = reply(10, t);
    assert_eq!(deliver(&mut b, 30_010, &over, 0), [FrameDrop::Guard(DropReason::RateLimited)]);
    // 60 relayed copies of it, more than the flood threshold (50).
    for copy in 0..60 {
        assert_eq!(deliver(&mut b, 30_011 + copy, &over, 1), [DUP], "copy {copy}");
    }
    assert_eq!(b.guard_drops().get(DropReason::RateLimited), 1);
    assert_eq!(b.guard_drops().get(DropReason::Flooded), 0);
    // Not blacklisted: the next epoch's reply is admitted.
    assert!(deliver(&mut b, 91_000, &reply(11, t + 61), 0).is_empty());
}
