//! KRILL simulator and CLI support. This scope: the conformance
//! vector runner and the frame codec behind `krill vectors/decode/encode`.

pub mod codec;
pub mod vectors;
