//! Unit tests of the node: nothing off the air panics, and the dispatch
//! order holds for every kind of junk.

use super::*;
use crate::crypto::{Identity, ModeledAuthority, Seed};
use proptest::prelude::*;

type Small<C> = Node<C, 4, 64, 8, 32>;

fn pair() -> (Small<crate::crypto::ModeledCrypto>, Small<crate::crypto::ModeledCrypto>) {
    let auth = ModeledAuthority::new(&[3; 32]);
    let (ia, ib) = (Identity::from_seed(&Seed([1; 32])), Identity::from_seed(&Seed([2; 32])));
    let now = Now::new(0, 1_700_000_000);
    let mut a = Node::new(NodeConfig::default(), auth.crypto_for(&ia), now, 1);
    let mut b = Node::new(NodeConfig::default(), auth.crypto_for(&ib), now, 2);
    a.register_peer(ib.public_key()).unwrap();
    b.register_peer(ia.public_key()).unwrap();
    (a, b)
}

fn own_trace(a: &mut Small<crate::crypto::ModeledCrypto>, now: Now) -> FrameBuf {
    let mut out: heapless::Vec<Action, 8> = heapless::Vec::new();
    a.handle_reading(now, QuantityType::Temperature, 2200, &mut out);
    out.into_iter()
        .find_map(|x| match x {
            Action::Broadcast(f) => Some(f),
            _ => None,
        })
        .unwrap()
}

#[test]
fn heapless_sink_takes_actions_and_drops_overflow() {
    let (mut a, _) = pair();
    let mut out: heapless::Vec<Action, 1> = heapless::Vec::new();
    a.handle_reading(Now::new(10, 1_700_000_000), QuantityType::Temperature, 2200, &mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn every_drop_is_counted_once() {
    let (mut a, mut b) = pair();
    let now = Now::new(5_000, 1_700_000_005);
    let f = own_trace(&mut a, now);
    let mut out: heapless::Vec<Action, 16> = heapless::Vec::new();
    b.handle_frame(now, &f, -60, 0, &mut out);
    b.handle_frame(now, &f, -60, 0, &mut out);
    b.handle_frame(now, &f[..20], -60, 0, &mut out);
    assert_eq!(b.guard_drops().total(), 1);
    assert_eq!(b.frame_drops().decode, 1);
    let dropped = out.iter().filter(|x| matches!(x, Action::Audit(AuditEvent::Dropped { .. }))).count();
    assert_eq!(dropped, 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), rssi in any::<i8>(), hops in any::<u8>()) {
        let (_, mut b) = pair();
        let mut out: heapless::Vec<Action, 32> = heapless::Vec::new();
        b.handle_frame(Now::new(1_000, 1_700_000_001), &bytes, rssi, hops, &mut out);
        b.handle_downlink(&bytes, &mut out);
        b.handle_uplink(Now::new(1_000, 1_700_000_001), &bytes, &mut out);
        prop_assert!(b.subjects().count() == 0, "junk creates no subject");
    }

    #[test]
    fn mutated_genuine_frames_never_panic_nor_verify(at in 0usize..117, flip in 1u8..=255) {
        let (mut a, mut b) = pair();
        let now = Now::new(5_000, 1_700_000_005);
        let mut f = own_trace(&mut a, now);
        let i = at % f.len();
        f[i] ^= flip;
        let mut out: heapless::Vec<Action, 32> = heapless::Vec::new();
        b.handle_frame(now, &f, -60, 0, &mut out);
        // A flipped byte is either undecodable, or names another sender,
        // or fails the signature: the frame is never handled.
        prop_assert!(b.subjects().count() == 0);
        let dropped = out.iter().any(|x| matches!(x, Action::Audit(AuditEvent::Dropped { .. })));
        prop_assert!(dropped, "the mutated frame was dropped with a reason");
    }
}
