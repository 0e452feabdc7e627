//! A node rebuilt from flash (ES-14.3) and what it must keep across a
//! reboot besides the profiles: the subjects it holds in REJECTION or
//! QUARANTINE (`persist::SubjectStanding`, `docs/spec-deviations.md`
//! "ES-14.3 — rejected subjects survive a reboot") and their learned
//! relative levels (`persist::StoredRelative`, "ES-14.3 — relative levels
//! survive a reboot").

use super::{Action, BootInfo, DagSynced, Node, Now, Sink};
use crate::crypto::Crypto;
use crate::lifecycle::{self, NodeLifecycle, Step, SubjectRecord, SubjectState};
use crate::persist::{NodeImage, StoredProfile, StoredRelative, SubjectStanding};
use crate::profile::{BehavioralProfile, ProfileMode, SubjectKind};
use crate::types::{DeviceId, Timestamp};

/// When a subject entered REJECTION/QUARANTINE on the Unix clock, for
/// [`Node::stored_standings`] (the record's own entry time is monotonic and
/// means nothing after a reboot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Standing {
    device: DeviceId,
    entered_at: Timestamp,
}

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> Node<C, N, D, G, B> {
    /// A node rebooting from flash (ES-14.3, `persist::restore`, usually
    /// with [`persist::Restored::node_image`](crate::persist::Restored::node_image)):
    /// the DAG comes back as stored and the pheromone field is rebuilt from
    /// it on our clock, so own sequence numbers continue where they stopped
    /// (neighbours' duplicate windows would drop a restart at 0) and the
    /// consensus is there at once. Received entries are re-deposited with at
    /// most the NEONATAL weight: the assessments behind them were not stored
    /// (SPEC-NOTES 7). The own lifecycle continues from the stored state
    /// ([`NodeLifecycle::restore`]); the krill_profiles image rebuilds the
    /// subjects (see `restore_profiles` and `docs/spec-deviations.md` for
    /// what comes back), and its standings bring back, in the same call, the
    /// subjects this node had rejected or quarantined, and its relative
    /// levels the offsets a slow drift is measured against.
    pub fn restore(cfg: super::NodeConfig, crypto: C, now: Now, first_query_id: u32, image: NodeImage<'_, D>) -> Self {
        let NodeImage { state, dag, profiles, standings, relatives } = image;
        let mut node = Self::new(cfg, crypto, now, first_query_id);
        for e in dag.entries() {
            let w = if e.device == node.id { e.weight } else { e.weight.min(lifecycle::NEONATAL_WEIGHT) };
            let _ = node.field.deposit(&e.trace(), w, now.unix_s);
        }
        node.dag_synced = DagSynced::of(dag.entries());
        node.dag = dag;
        node.own = NodeLifecycle::restore(node.id, node.cfg.lifecycle, state, now.mono_ms, now.unix_s);
        node.restore_profiles(profiles, now);
        node.restore_standings(standings, now);
        node.restore_relatives(relatives, now);
        node.boot = BootInfo {
            boot_count: state.boot_count.wrapping_add(1),
            last_boot: now.unix_s,
            neonatal_start: state.neonatal_start,
            last_heartbeat: state.last_heartbeat,
            ber_history: state.ber_history,
            puf_warning: state.puf_warning,
        };
        node
    }

    /// Rebuilds subjects from stored profiles (ES-14.3 step 5). Only the
    /// PROFILE_SYNC summary was stored, so each profile comes back through
    /// `BehavioralProfile::from_summary`: value histogram, count, mean,
    /// variance, range, version. Lost and relearnt: timing (intervals,
    /// hourly activity), message rate, battery/energy trends, neighbour
    /// correlations, the subject's kind (restored as Nano) and its record
    /// state. Records restart NEONATAL (weight 0.3) with the running
    /// profile learning on from the summary, except the rejected and
    /// quarantined ones `restore_standings` brings back; the stored baseline
    /// comes back as the baseline (NK audits run at once) until the record
    /// freezes a new one `subject_neonatal_ms` later. Our own id, invalid
    /// summaries and subjects beyond the table are skipped.
    fn restore_profiles(&mut self, profiles: &[StoredProfile], now: Now) {
        for sp in profiles {
            if sp.device == self.id {
                continue;
            }
            let Ok(mut p) = BehavioralProfile::<N>::from_summary(sp.device, sp.quantity, &sp.summary) else {
                continue;
            };
            let Some((_, s)) =
                self.subject_slot(sp.device, SubjectKind::Nano, now).and_then(|i| self.subjects.get_mut(i))
            else {
                continue;
            };
            if sp.mode == ProfileMode::Frozen {
                p.freeze();
                s.baseline = Some(p);
            } else {
                p.mode = ProfileMode::Learning;
                s.profile = Some(p);
            }
        }
        for (_, s) in self.subjects.iter_mut() {
            if let (None, Some(b)) = (s.profile.as_ref(), s.baseline.as_ref()) {
                let mut p = b.running_copy();
                p.mode = ProfileMode::Learning;
                s.profile = Some(p);
            }
        }
    }

    /// The rejected and quarantined subjects to write with the profiles at
    /// [`Action::PersistProfiles`] (`persist::Store::save_profile_image`),
    /// so a reboot does not hand them their weight back.
    pub fn stored_standings(&self) -> impl Iterator<Item = SubjectStanding> + '_ {
        use crate::persist::lifecycle_code as lc;
        self.subjects.iter().filter_map(|(id, s)| {
            let state = match s.record.state() {
                SubjectState::Rejection => lc::REJECTION,
                SubjectState::Quarantine => lc::QUARANTINE,
                _ => return None,
            };
            let st = self.standings.iter().find(|t| t.device == *id)?;
            Some(SubjectStanding {
                device: *id,
                state,
                kind: s.kind,
                remediation_attempts: s.record.remediation_attempts(),
                entered_at: st.entered_at,
            })
        })
    }

    /// Brings back the subjects this node had rejected or quarantined, in
    /// their state with their stored kind ([`SubjectRecord::restored`]):
    /// weight 0, isolated, their traces out of the rebuilt field. Their age
    /// in the state is boot Unix time − `entered_at` (a stored time ahead of
    /// the clock ages 0), so the REJECTION timeout ends 72 h after the
    /// original rejection (a REJECTION whose 72 h ended while we were off
    /// comes back in the QUARANTINE it entered then) and QUARANTINE keeps
    /// its failed attempts and the ES-3.1 schedule. Our own id and subjects beyond the table are skipped.
    fn restore_standings(&mut self, standings: &[SubjectStanding], now: Now) {
        use crate::persist::lifecycle_code as lc;
        for st in standings {
            let state = match st.state {
                lc::REJECTION => SubjectState::Rejection,
                lc::QUARANTINE => SubjectState::Quarantine,
                _ => continue,
            };
            if st.device == self.id {
                continue;
            }
            let mut age_ms = u64::from(now.unix_s.saturating_sub(st.entered_at)) * 1000;
            let timers = self.cfg.subject_timers;
            let (mut state, mut entered_at, mut attempts) = (state, st.entered_at, st.remediation_attempts);
            // Its 72 h ran out while we were off: it entered QUARANTINE at
            // their end, and the remediation schedule counts from there.
            if state == SubjectState::Rejection && age_ms > timers.rejection_ms {
                state = SubjectState::Quarantine;
                age_ms -= timers.rejection_ms;
                entered_at = entered_at.wrapping_add(u32::try_from(timers.rejection_ms / 1000).unwrap_or(u32::MAX));
                attempts = 0;
            }
            let Some(record) =
                SubjectRecord::restored(st.device, st.kind, state, age_ms, attempts, now.mono_ms, timers)
            else {
                continue;
            };
            let Some((_, s)) = self.subject_slot(st.device, st.kind, now).and_then(|i| self.subjects.get_mut(i)) else {
                continue;
            };
            s.kind = st.kind;
            s.record = record;
            s.isolated = true;
            self.field.invalidate_device(st.device);
            self.standings.retain(|t| t.device != st.device);
            let _ = self.standings.push(Standing { device: st.device, entered_at });
        }
    }

    /// The learned relative levels to write with the profiles (see
    /// `persist::StoredRelative`).
    pub fn stored_relatives(&self) -> impl Iterator<Item = StoredRelative> + '_ {
        self.subjects.iter().filter_map(|(id, s)| s.relative.as_ref().map(|r| r.stored(*id)))
    }

    /// Brings back the subjects' learned offsets from our readings, so a
    /// drift that began before the reboot is still measured from the level
    /// before it. Our own id, invalid records and subjects beyond the table
    /// are skipped.
    fn restore_relatives(&mut self, relatives: &[StoredRelative], now: Now) {
        for r in relatives {
            if r.device == self.id {
                continue;
            }
            let Some(level) = super::RelativeLevel::from_stored(r, now.mono_ms) else {
                continue;
            };
            let Some((_, s)) =
                self.subject_slot(r.device, SubjectKind::Nano, now).and_then(|i| self.subjects.get_mut(i))
            else {
                continue;
            };
            s.relative = Some(level);
        }
    }

    /// Keeps the Unix time a subject entered REJECTION/QUARANTINE and asks
    /// for a krill_profiles write whenever one enters or leaves them, or a
    /// quarantined one fails a remediation, so a reboot right after still
    /// remembers it (the periodic write comes only every 10th epoch).
    pub(super) fn track_standing(&mut self, step: &Step, now: Now, out: &mut impl Sink) {
        let (lifecycle::AnyState::Subject(from), lifecycle::AnyState::Subject(to)) = (step.audit.from, step.audit.to)
        else {
            return;
        };
        let held = |s| matches!(s, SubjectState::Rejection | SubjectState::Quarantine);
        if from == to {
            // A failure is counted either on its own or just before the
            // next attempt is launched (an unanswered one).
            let counted = matches!(
                step.audit.reason,
                lifecycle::Reason::RemediationFailed { .. } | lifecycle::Reason::RemediationDue { attempt: 2.. }
            );
            if to == SubjectState::Quarantine && counted {
                out.push(Action::PersistProfiles);
            }
            return;
        }
        if !(held(from) || held(to)) {
            return;
        }
        let id = step.audit.subject;
        let subjects = &self.subjects;
        self.standings.retain(|t| t.device != id && subjects.iter().any(|(d, _)| *d == t.device));
        if held(to) {
            let _ = self.standings.push(Standing { device: id, entered_at: now.unix_s });
        }
        out.push(Action::PersistProfiles);
    }
}
