//! The TRACE_DEPOSIT zero-copy view: no accessor may panic once
//! `new_checked` accepted a buffer, and every accessor must agree with the
//! repr parsed from the same bytes.
#![no_main]

use krill_core::wire::{Body, FrameRepr, TraceDepositPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = TraceDepositPacket::new_checked(data) else { return };
    let view = (p.timestamp(), p.quantity(), p.reading(), p.confidence(), p.weight(), p.seq(), p.prev_hash());
    let _ = (p.frame().header(), p.frame().signed_bytes(), p.frame().signature());
    if let Ok(FrameRepr { body: Body::TraceDeposit(t), .. }) = FrameRepr::parse(data) {
        assert_eq!(view, (t.timestamp, t.quantity, t.reading, t.confidence, t.weight, t.seq, t.prev_hash));
    }
});
