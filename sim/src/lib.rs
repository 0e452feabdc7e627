//! KRILL simulator and CLI support: the conformance vector runner, the frame
//! codec, and the deterministic discrete-event mesh simulator.

pub mod attack;
pub mod check;
pub mod codec;
pub mod engine;
pub mod explain;
pub mod firmware;
pub mod output;
pub mod radio;
pub mod rng;
mod round_pool;
pub mod scenario;
pub mod sim;
pub mod summary;
pub mod sweep;
pub mod topology;
pub mod vectors;
pub mod verify_memo;
pub mod world;
