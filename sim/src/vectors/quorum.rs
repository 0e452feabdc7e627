//! Quorum-sensing vectors (ES-3.2, ES-8.5): the mode machine driven by
//! alive counts, the neighbour table driven by pulses, and the per-mode λ.
use super::Outcome;
use krill_core::quorum::{
    Presence, PulseAccepted, PulseRejected, QuorumConfig, QuorumMachine, QuorumMode, QuorumState,
};
use krill_core::DeviceId;
use serde::Deserialize;

/// A case for this module.
#[derive(Debug, Deserialize)]
pub enum Case {
    /// The machine alone, fed alive counts (TV12 style).
    Machine(MachineCase),
    /// Pulses, removals and updates against a whole `QuorumState`.
    Table(TableCase),
    /// Decay rate of a mode (ES-10.2 4d).
    Lambda(LambdaCase),
    /// Decoding the PRESENCE_PULSE mode byte.
    ModeByte(ModeByteCase),
}

/// Inputs and expectations for [`Case::Machine`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineCase {
    /// Configured minimum seconds between mode changes.
    pub min_transition_interval: u32,
    /// Creation time of the machine.
    pub start: u32,
    /// Tolerance on the smoothed count.
    pub tol: f64,
    /// One `update_quorum` per step, in order.
    pub steps: Vec<MachineStep>,
}

/// One step of [`MachineCase`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineStep {
    /// Clock at the update.
    pub t: u32,
    /// Alive neighbours counted.
    pub alive: u32,
    /// Expected smoothed count after the step, if checked.
    #[serde(default)]
    pub count: Option<f64>,
    /// Expected mode after the step.
    pub mode: QuorumMode,
    /// Expected "mode changed" flag, if checked.
    #[serde(default)]
    pub changed: Option<bool>,
}

/// Inputs and expectations for [`Case::Table`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableCase {
    /// Table capacity: 2, 4 or 32.
    pub capacity: usize,
    /// Configured minimum seconds between mode changes.
    pub min_transition_interval: u32,
    /// Creation time.
    pub start: u32,
    /// Events, in order.
    pub events: Vec<Event>,
}

/// One event of [`TableCase`].
#[derive(Debug, Deserialize)]
pub enum Event {
    /// A verified pulse arrives at `t`.
    Pulse {
        /// Receive time.
        t: u32,
        /// Sender.
        sender: DeviceId,
        /// The pulse's own timestamp.
        sent_at: u32,
        /// Relay hops (0 = direct).
        hops: u8,
        /// Signal strength.
        rssi: i8,
        /// What the table must answer.
        expect: Result<PulseAccepted, PulseRejected>,
    },
    /// A DEATH_CERTIFICATE removes `id`.
    Remove {
        /// The dead device.
        id: DeviceId,
        /// Whether it was in the table.
        known: bool,
    },
    /// `update_quorum` at `t`.
    Update {
        /// Clock.
        t: u32,
        /// Expected alive count after pruning.
        alive: usize,
        /// Expected mode afterwards.
        mode: QuorumMode,
    },
}

/// Inputs and expectations for [`Case::Lambda`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaCase {
    /// The mode.
    pub mode: QuorumMode,
    /// Expected λ.
    pub lambda: f64,
    /// Tolerance.
    pub tol: f64,
}

/// Inputs and expectations for [`Case::ModeByte`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeByteCase {
    /// The byte.
    pub byte: u8,
    /// Expected mode, `None` if invalid.
    pub mode: Option<QuorumMode>,
}

fn run_machine(c: &MachineCase, out: &mut Outcome) {
    let mut m = QuorumMachine::new(c.start, c.min_transition_interval);
    for s in &c.steps {
        let changed = m.step(s.t, s.alive as usize);
        match s.count {
            Some(want) => out.close(&format!("t={} count", s.t), m.neighbor_count() as f64, want, c.tol),
            None => out.value(&format!("t={} count", s.t), m.neighbor_count()),
        }
        out.exact(&format!("t={} mode", s.t), m.mode(), s.mode);
        if let Some(want) = s.changed {
            out.exact(&format!("t={} changed", s.t), changed, want);
        }
    }
}

fn run_table<const N: usize>(c: &TableCase, out: &mut Outcome) {
    let cfg = QuorumConfig { min_transition_interval: c.min_transition_interval, ..QuorumConfig::SPEC };
    let mut q: QuorumState<N> = QuorumState::new(c.start, &cfg);
    for (i, e) in c.events.iter().enumerate() {
        match e {
            Event::Pulse { t, sender, sent_at, hops, rssi, expect } => {
                let p = Presence {
                    sender: *sender,
                    sent_at: *sent_at,
                    mode: QuorumMode::Solo,
                    neighbor_count: 0,
                    tx_power: None,
                    rssi: *rssi,
                    hops: *hops,
                };
                out.exact(&format!("#{i} pulse {sender} @{t}"), q.observe(*t, &p, 255), *expect);
            }
            Event::Remove { id, known } => {
                out.exact(&format!("#{i} remove {id}"), q.remove(id).is_some(), *known);
            }
            Event::Update { t, alive, mode } => {
                q.update(*t);
                let got = q.table().iter().filter(|e| e.alive).count();
                out.exact(&format!("#{i} alive @{t}"), got, *alive);
                out.exact(&format!("#{i} mode @{t}"), q.mode(), *mode);
            }
        }
    }
    out.value("entries", q.table().len());
}

/// Runs a case.
pub fn run(c: &Case) -> Outcome {
    let mut out = Outcome::default();
    match c {
        Case::Machine(m) => run_machine(m, &mut out),
        Case::Table(t) => match t.capacity {
            2 => run_table::<2>(t, &mut out),
            4 => run_table::<4>(t, &mut out),
            32 => run_table::<32>(t, &mut out),
            n => out.fail(format!("capacity {n} not supported (2, 4 or 32)")),
        },
        Case::Lambda(l) => out.close("lambda", l.mode.lambda() as f64, l.lambda, l.tol),
        Case::ModeByte(b) => out.exact("mode", QuorumMode::from_u8(b.byte), b.mode),
    }
    out
}
