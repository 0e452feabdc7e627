//! Placeholder, being written.
use super::Outcome;
use serde::Deserialize;

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    match *c {}
}
