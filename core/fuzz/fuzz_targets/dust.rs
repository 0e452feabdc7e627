//! Dust uplinks and downlinks: no panic on any payload, the uplink view's
//! accessors never panic, and whatever parses re-emits to the same bytes
//! (the layouts have exactly one encoding per value).
#![no_main]

use krill_core::wire::dust::{DustDownlink, DustUplink, DustUplinkPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = DustUplinkPacket::new_checked(data) {
        let _ = (p.sender_id_short(), p.reading(), p.timestamp_delta(), p.confidence());
        let _ = (p.carried_crc(), p.computed_crc(), p.check_crc(), p.frame_counter(), p.mac(), p.mac_input());
        assert_eq!(DustUplink::from_packet(&p).buffer_len(), data.len());
    }
    let mut out = [0u8; 64];
    if let Ok(u) = DustUplink::parse(data) {
        let n = u.emit(&mut out).expect("a parsed uplink emits");
        assert_eq!(&out[..n], data);
    }
    if let Ok(d) = DustDownlink::parse(data) {
        let n = d.emit(&mut out).expect("a parsed downlink emits");
        assert_eq!(&out[..n], data);
    }
});
