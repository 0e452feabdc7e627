//! KRILL-BIA protocol core (spec v0.2, "ES-n" below), as a `no_std`, heap-free,
//! sans-IO crate: the same code runs in the simulator and on the boards.
//!
//! Nothing here reads a clock, a radio or an RNG. Time, received bytes and
//! random draws are passed in; what the protocol wants done comes back as
//! values. Where the spec is wrong or ambiguous, `docs/spec-deviations.md`
//! says what this crate does instead and which test pins it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bounds;
pub mod consistency;
pub mod crypto;
pub mod dag;
pub mod distance;
pub mod field;
pub mod gateway;
pub mod guards;
pub mod lifecycle;
pub mod metabolic;
pub mod morphogen;
pub mod node;
pub mod persist;
pub mod profile;
pub mod quorum;
pub mod settlement;
pub mod types;
pub mod vaccine;
pub mod valuation;
pub mod wire;

pub use types::*;
