//! TraceBatch and its TCP framing: no panic on any input, and an accepted
//! batch re-emits to the same bytes.
#![no_main]

use krill_core::wire::batch::{decode_length_prefixed, TraceBatch, MAX_BATCH_LEN};
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
    if let Ok(b) = TraceBatch::<256>::parse(data) {
        let mut out = vec![0u8; MAX_BATCH_LEN];
        let n = b.emit(&mut out).expect("a parsed batch emits");
        assert_eq!(&out[..n], data);
        assert_eq!(b.signed_len() + 64, n);
    }
    if let Ok(Some((payload, used))) = decode_length_prefixed(data) {
        assert_eq!(payload.len() + 4, used);
        let _ = TraceBatch::<256>::parse(payload);
    }
}
