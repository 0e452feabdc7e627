//! The TRACE_DEPOSIT zero-copy view: no accessor may panic once
//! `new_checked` accepted a buffer, and every accessor must agree with the
//! repr parsed from the same bytes.
#![no_main]

use krill_core::wire::{Body, FrameRepr, TraceDepositPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    // Raw bytes rarely start with the magic, which would leave every body
    // decoder unexplored: also try the input behind "KB".
    let mut framed = b"KB".to_vec();
    framed.extend_from_slice(data);
    check(&framed);
});

fn check(data: &[u8]) {
    let Ok(p) = TraceDepositPacket::new_checked(data) else {
        return;
    };
    let view = (p.timestamp(), p.quantity(), p.reading(), p.confidence(), p.weight(), p.seq(), p.prev_hash());
    let _ = (p.frame().header(), p.frame().signed_bytes(), p.frame().signature());
    if let Ok(FrameRepr { body: Body::TraceDeposit(t), .. }) = FrameRepr::parse(data) {
        assert_eq!(view, (t.timestamp, t.quantity, t.reading, t.confidence, t.weight, t.seq, t.prev_hash));
    }
}
