//! The inflammation vote (ES-3.1 `evaluate_inflammation`, SPEC-NOTES 22),
//! the responder's side of it (`evaluate_inflammation_locally`) and the
//! mapping of a consistency verdict into a subject event
//! (`handle_consistency_result`), both undefined in the spec (SPEC-NOTES 42).
//!
//! A vote collects replies from DISTINCT responders other than the suspect
//! that echo the query id and name the suspect; anything else is dropped
//! with a [`DropReason`]. It decides early only when one verdict already has
//! a strict majority of the EXPECTED responders (the rest can't overturn
//! it), or once every expected responder has answered; otherwise at the
//! timeout, by strict majority of the non-abstaining voters. Fewer than
//! `min_voters` voters, or a tie, is [`VoteOutcome::Inconclusive`].

use super::subject::{DeviationSample, SubjectEvent};
use crate::consistency::{check_physical_consistency, ConsistencyInput, ConsistencyResult, InnateFailure};
use crate::types::{DeviceId, QuantityType, Reading, MAX_NEIGHBORS};
use crate::wire::immune::{InflammationReply, Verdict};

/// Counts of one vote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Tally {
    /// Responders that see the same change (environment changed).
    pub sees_change: u8,
    /// Responders that contradict the suspect (suspect anomalous).
    pub contradicts: u8,
    /// Responders without a comparable reading.
    pub abstains: u8,
    /// Responders the query went out to (neighbours other than the suspect).
    pub expected: u8,
}

impl Tally {
    /// Distinct responders counted so far.
    pub fn responded(&self) -> u8 {
        self.sees_change.saturating_add(self.contradicts).saturating_add(self.abstains)
    }

    /// Non-abstaining responders.
    pub fn voters(&self) -> u8 {
        self.sees_change.saturating_add(self.contradicts)
    }

    /// The decision, if one can be made now. `final_` is true at the
    /// timeout; the vote is also final once every expected responder answered.
    ///
    /// Believing the suspect takes a strict majority of the voters; calling
    /// it anomalous takes more than twice as many contradictions as
    /// confirmations ([`ANOMALY_MARGIN`]), so a change seen by a large
    /// minority (the responders on the suspect's side of a boundary) leaves
    /// the vote inconclusive instead of rejecting an honest device.
    pub fn outcome(&self, final_: bool, min_voters: u8) -> Option<VoteOutcome> {
        let (s, c, e) = (self.sees_change as u16, self.contradicts as u16, self.expected as u16);
        let a = self.abstains as u16;
        let min = min_voters as u16;
        let margin = ANOMALY_MARGIN as u16;
        if !final_ && self.responded() < self.expected {
            let unanswered = e.saturating_sub(self.responded() as u16);
            return if s * 2 > e && s >= min {
                Some(VoteOutcome::EnvironmentChanged)
            } else if c > margin * (s + unanswered) && c > a && c >= min {
                Some(VoteOutcome::SuspectAnomalous)
            } else {
                None
            };
        }
        let voters = s + c;
        Some(if voters < min.max(1) {
            VoteOutcome::Inconclusive
        } else if s * 2 > voters {
            VoteOutcome::EnvironmentChanged
        } else if c > margin * s {
            VoteOutcome::SuspectAnomalous
        } else {
            VoteOutcome::Inconclusive
        })
    }
}

/// Contradictions per confirmation a vote needs to call the suspect
/// anomalous (strictly more than this many times the confirmations).
pub const ANOMALY_MARGIN: u8 = 2;

/// What a vote decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum VoteOutcome {
    /// A majority sees the change: update the profile, back to NORMAL.
    EnvironmentChanged,
    /// A majority contradicts the suspect: REJECTION at ≥ 3σ, else PYREXIA.
    SuspectAnomalous,
    /// Tie or too few voters: PYREXIA and boundary learning (ES-7.6).
    Inconclusive,
    /// The vote would call the suspect anomalous at its timeout, but the
    /// suspect moved on from the reading it asked about while it ran (the
    /// record's `outgrown` rule): the answers judged a reading that is gone
    /// (a fire's seat five minutes on). PYREXIA, and a new vote on the
    /// current reading. Only a record decides this, never a [`Tally`].
    Outgrown,
}

/// Why a reply was not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DropReason {
    /// No vote is open for this subject.
    NoActiveQuery,
    /// A version-1 reply carries no query id, so it can't be matched (or
    /// told apart from a replay).
    NoQueryId,
    /// The query id is not the open vote's.
    WrongQueryId,
    /// The reply names another suspect.
    WrongSuspect,
    /// The suspect voted on itself.
    FromSuspect,
    /// This responder already voted.
    DuplicateResponder,
    /// The reply set is full (more responders than it was sized for).
    ReplySetFull,
}

/// An open inflammation vote.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ActiveQuery<const R: usize = MAX_NEIGHBORS> {
    /// Id the replies must echo (never 0).
    pub query_id: u32,
    /// The suspect.
    pub suspect: DeviceId,
    /// Quantity of the readings.
    pub quantity: QuantityType,
    /// The suspect's reading that raised the query.
    pub suspect_reading: Reading,
    /// Our reading at the time.
    pub my_reading: Reading,
    /// The deviation, σ, that raised the query.
    pub sigma: f32,
    /// When the query went out, monotonic ms.
    pub started_ms: u64,
    /// Counts so far.
    pub tally: Tally,
    responders: heapless::Vec<DeviceId, R>,
}

impl<const R: usize> ActiveQuery<R> {
    /// Opens a vote expecting `expected` responders.
    pub fn new(query_id: u32, sample: &DeviationSample, suspect: DeviceId, expected: u8, started_ms: u64) -> Self {
        ActiveQuery {
            query_id,
            suspect,
            quantity: sample.quantity,
            suspect_reading: sample.suspect_reading,
            my_reading: sample.my_reading,
            sigma: sample.sigma,
            started_ms,
            tally: Tally { expected, ..Tally::default() },
            responders: heapless::Vec::new(),
        }
    }

    /// The distinct responders counted, in arrival order.
    pub fn responders(&self) -> &[DeviceId] {
        &self.responders
    }

    /// Counts a reply from `responder`, or says why not.
    pub fn count(&mut self, responder: DeviceId, reply: &InflammationReply) -> Result<Tally, DropReason> {
        let id = reply.v2.map(|v| v.query_id).ok_or(DropReason::NoQueryId)?;
        if id != self.query_id {
            return Err(DropReason::WrongQueryId);
        }
        if reply.suspect_id != self.suspect {
            return Err(DropReason::WrongSuspect);
        }
        if responder == self.suspect {
            return Err(DropReason::FromSuspect);
        }
        if self.responders.contains(&responder) {
            return Err(DropReason::DuplicateResponder);
        }
        self.responders.push(responder).map_err(|_| DropReason::ReplySetFull)?;
        let t = &mut self.tally;
        match reply.verdict {
            Verdict::SeesChange => t.sees_change = t.sees_change.saturating_add(1),
            Verdict::ContradictsSuspect => t.contradicts = t.contradicts.saturating_add(1),
            Verdict::Abstain => t.abstains = t.abstains.saturating_add(1),
        }
        Ok(*t)
    }
}

/// The responder's verdict on an INFLAMMATION_QUERY (SPEC-NOTES 42), by the
/// ES-4.1 check of our own reading against the suspect's:
/// - within tolerance or less than 2σ beyond it → [`Verdict::SeesChange`]
///   (we see what the suspect sees, up to what only raises PYREXIA);
/// - 2σ or more beyond, or the suspect's value is physically impossible →
///   [`Verdict::ContradictsSuspect`];
/// - no reading of that quantity, unknown bounds, or our own reading is
///   impossible (our sensor is the broken one) → [`Verdict::Abstain`].
pub fn evaluate_inflammation_locally(
    my_reading: Option<Reading>,
    suspect_reading: Reading,
    quantity: QuantityType,
    distance_cm: u32,
    time_delta_ms: u32,
) -> Verdict {
    let Some(my_reading) = my_reading else {
        return Verdict::Abstain;
    };
    let input = ConsistencyInput { my_reading, their_reading: suspect_reading, quantity, distance_cm, time_delta_ms };
    match check_physical_consistency(&input).result {
        ConsistencyResult::Consistent | ConsistencyResult::Pyrexia(_) => Verdict::SeesChange,
        ConsistencyResult::Inflammation(_)
        | ConsistencyResult::Rejection(_)
        | ConsistencyResult::RejectInnate(InnateFailure::Theirs) => Verdict::ContradictsSuspect,
        ConsistencyResult::RejectInnate(InnateFailure::Mine) | ConsistencyResult::Unknown => Verdict::Abstain,
    }
}

/// What a responder remembers besides the two readings: the suspect's
/// learned level and spread, and its own recent level, physical units.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LocalHistory {
    /// The suspect's recent level: the node passes its slow average of the
    /// suspect's readings, with the same time constant as `own_mean`.
    pub suspect_mean: f32,
    /// Its standard deviation.
    pub suspect_sigma: f32,
    /// The responder's own slow average of the same quantity.
    pub own_mean: f32,
    /// Other devices the responder hears (itself included) whose latest
    /// reading moved from their own slow average in the suspect's direction
    /// by at least the [`MIN_UNEXPLAINED_STEPS`] floor, not counting devices
    /// it has rejected or isolated: the change seen around the responder.
    pub corroborating: u8,
    /// Devices the responder hears (itself included, same standing and
    /// recency as `corroborating`, the suspect excluded) whose latest
    /// reading is at least as far out as the suspect's, in the direction of
    /// the suspect's shift, up to the corroboration floor: the suspect now
    /// reads what that many devices around the responder read.
    pub bracketing: u8,
    /// The responder's own NK audit of the suspect finds its level drifted
    /// from its baseline the way of the shift.
    pub drifted: bool,
    /// The devices the responder hears, placed by the deployment manifest,
    /// describe a field that explains the suspect's shift at its spot: a
    /// slope it sits on or a peak at it, such as a fire's (the node's
    /// `field_explains`), not a lie on top of a uniform change.
    pub field_explains: bool,
    /// True when the responder is more than [`FAR_RESPONDER_CM`] from the
    /// suspect, or at the edge of its radio range (see the node's rule).
    pub far: bool,
    /// The suspect's readings moved away from ours by the relative-drift
    /// floor since we learned their offset, and few other devices we hear
    /// moved that way (the node's `RelativeLevel`): a slow drift the
    /// weather does not explain, whatever the suspect's recent shift.
    pub relative_drift: bool,
}

/// Distance to the suspect, cm, beyond which a responder does not hold a
/// shift it cannot explain against the suspect ([`Verdict::Abstain`]): a
/// change may have happened between the two, out of the responder's
/// reach (the far side of a zone boundary it barely hears). Two grid
/// spacings of the 49-node rooms; the nearer responders still judge.
pub const FAR_RESPONDER_CM: u32 = 1_500;

/// Corroborating devices (see [`LocalHistory::corroborating`]) from which a
/// responder calls a shift it cannot explain with its own reading an
/// environment change. A change that reaches only the far side of a wall or
/// zone boundary moves many devices the responder hears; a coordinated lie
/// moves only the liars, so a colluding group of up to this many devices in
/// one responder's range still cannot vouch each other past it.
pub const MIN_CORROBORATING: u8 = 4;

/// Smallest shift, in reading steps, that a responder calls a change the
/// suspect saw alone (0.5 °C, 5 hPa, 50 ppm CO₂): quantisation and sensor
/// bias stay well under it.
pub const MIN_UNEXPLAINED_STEPS: f32 = 50.0;

/// Difference, in reading steps per metre between responder and suspect,
/// that a responder leaves to a local gradient it cannot see.
pub const LOCAL_GRADIENT_STEPS_PER_M: f32 = 7.0;

/// [`evaluate_inflammation_locally`] with memory (SPEC-NOTES 42, refined in
/// `docs/spec-deviations.md`): the ES-4.1 check alone allows tens of
/// degrees over ten metres, so a physically possible lie would always be
/// "seen" by every responder. With a history, the responder asks whether
/// its own readings moved with the suspect's: the suspect's shift from its
/// recent level, minus our own shift from our slow average, is what we cannot
/// explain; if that is at least 2σ of the suspect, [`MIN_UNEXPLAINED_STEPS`]
/// and half the suspect's shift, we contradict. A real event near both of
/// us moves both and is seen; a lie (or a fire only the suspect is next to,
/// when we are far) is contradicted. A shift in our direction but no larger
/// than ours is a lagging view of the change we saw (the query's reading is
/// the one that opened the vote, often a minute or more before our own
/// latest), never a contradiction. Without a usable history of the suspect
/// (we do not profile it) a physically possible reading is
/// [`Verdict::Abstain`]: the ES-4.1 check alone would "see" any lie. A
/// shift we cannot explain is still seen
/// when at least [`MIN_CORROBORATING`] devices we hear moved the same way
/// (the change happened beyond us: the far side of a zone boundary, a door),
/// or when that many devices we hear already read the suspect's new level or
/// beyond (a door mixing two rooms moves a device toward the other room,
/// never past it; a liar or a colluding group of up to three reads alone).
/// The floor also grows by [`LOCAL_GRADIENT_STEPS_PER_M`] per metre between
/// us (capped at [`FAR_RESPONDER_CM`]): a gradient between the suspect and
/// us that we cannot see; waived when our own NK audit finds the suspect
/// drifted from its baseline that way (a drift vote). A suspect whose level
/// drifted against ours ([`LocalHistory::relative_drift`]) is contradicted
/// whatever its recent shift, near or far: a slow drift never shifts fast,
/// and the shared weather and any standing gradient between us cancel from
/// the offset.
pub fn evaluate_inflammation_with_history(
    my_reading: Option<Reading>,
    suspect_reading: Reading,
    quantity: QuantityType,
    distance_cm: u32,
    time_delta_ms: u32,
    history: Option<LocalHistory>,
) -> Verdict {
    let physics = evaluate_inflammation_locally(my_reading, suspect_reading, quantity, distance_cm, time_delta_ms);
    let usable =
        history.filter(|h| h.suspect_mean.is_finite() && h.suspect_sigma.is_finite() && h.own_mean.is_finite());
    if let (Verdict::ContradictsSuspect, Some(mine), Some(h)) = (physics, my_reading, usable) {
        if !h.relative_drift && partway_to_us(quantity.to_value(suspect_reading), quantity.to_value(mine), &h, quantity)
        {
            return Verdict::Abstain;
        }
    }
    let (Verdict::SeesChange, Some(mine)) = (physics, my_reading) else {
        return physics;
    };
    let Some(h) = usable else {
        return Verdict::Abstain;
    };
    if h.relative_drift {
        return Verdict::ContradictsSuspect;
    }
    let shift = quantity.to_value(suspect_reading) - h.suspect_mean;
    let own_shift = quantity.to_value(mine) - h.own_mean;
    let lagging = shift * own_shift >= 0.0 && libm::fabsf(shift) <= libm::fabsf(own_shift);
    let unexplained = if lagging { 0.0 } else { libm::fabsf(shift - own_shift) };
    let step = quantity.scale().unit_per_step;
    let metres = distance_cm.min(FAR_RESPONDER_CM) as f32 / 100.0;
    let gradient = if h.drifted { 0.0 } else { LOCAL_GRADIENT_STEPS_PER_M * step * metres };
    let floor = (crate::types::sigma_tenths(crate::types::SIGMA_INFLAMMATION) * h.suspect_sigma)
        .max(MIN_UNEXPLAINED_STEPS * step)
        .max(gradient)
        .max(0.5 * libm::fabsf(shift));
    if unexplained < floor
        || h.corroborating >= MIN_CORROBORATING
        || h.bracketing >= MIN_CORROBORATING
        || h.field_explains
    {
        Verdict::SeesChange
    } else if h.far {
        Verdict::Abstain
    } else {
        Verdict::ContradictsSuspect
    }
}

/// True when the suspect, at `theirs`, moved from its recent level our way
/// (the way we moved from ours) by a real amount ([`MIN_UNEXPLAINED_STEPS`]
/// and 2σ of the suspect) but no further than we did: its reading lies
/// between where it was and where we now are. A physical inconsistency
/// between us is then as much our own move as its (next to a fire's seat,
/// the air can cool by tens of degrees within metres, beyond ES-4.1's
/// gradient), so we abstain instead of contradicting it.
fn partway_to_us(theirs: f32, mine: f32, h: &LocalHistory, quantity: QuantityType) -> bool {
    let shift = theirs - h.suspect_mean;
    let own_shift = mine - h.own_mean;
    let real = (MIN_UNEXPLAINED_STEPS * quantity.scale().unit_per_step)
        .max(crate::types::sigma_tenths(crate::types::SIGMA_INFLAMMATION) * h.suspect_sigma);
    shift * own_shift > 0.0 && libm::fabsf(shift) >= real && libm::fabsf(shift) <= libm::fabsf(own_shift)
}

/// Where a consistency verdict goes (ES-10.3 `handle_consistency_result`).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ConsistencyEvent {
    /// Feed this into the sender's [`SubjectRecord`](super::SubjectRecord).
    Subject(SubjectEvent),
    /// Our own reading is impossible: feed
    /// [`NodeEvent::OwnReading`](super::NodeEvent::OwnReading) with `plausible: false`.
    OwnSensorFault,
    /// Nothing to judge (the quantity has no bounds).
    Nothing,
}

/// Maps a [`ConsistencyResult`] of `input` (ours vs the sender's reading)
/// into an event (SPEC-NOTES 42). CONSISTENT becomes a 0σ deviation so a
/// recovering subject leaves PYREXIA; the graded verdicts carry their σ;
/// an impossible sender reading is a Stratum-0 innate violation.
pub fn handle_consistency_result(result: ConsistencyResult, input: &ConsistencyInput) -> ConsistencyEvent {
    let sample = |sigma: f32| DeviationSample {
        sigma,
        quantity: input.quantity,
        suspect_reading: input.their_reading,
        my_reading: input.my_reading,
    };
    match result {
        ConsistencyResult::Consistent => ConsistencyEvent::Subject(SubjectEvent::Deviation(sample(0.0))),
        ConsistencyResult::Pyrexia(s) | ConsistencyResult::Inflammation(s) | ConsistencyResult::Rejection(s) => {
            ConsistencyEvent::Subject(SubjectEvent::Deviation(sample(s)))
        }
        ConsistencyResult::RejectInnate(InnateFailure::Theirs) => {
            ConsistencyEvent::Subject(SubjectEvent::InnateViolation(sample(f32::INFINITY)))
        }
        ConsistencyResult::RejectInnate(InnateFailure::Mine) => ConsistencyEvent::OwnSensorFault,
        ConsistencyResult::Unknown => ConsistencyEvent::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::immune::InflammationReplyV2;
    use proptest::prelude::*;

    const TEMP: QuantityType = QuantityType::Temperature;

    fn hist(suspect_mean: f32, own_mean: f32) -> Option<LocalHistory> {
        Some(LocalHistory {
            suspect_mean,
            suspect_sigma: 0.05,
            own_mean,
            corroborating: 0,
            bracketing: 0,
            drifted: false,
            field_explains: false,
            far: false,
            relative_drift: false,
        })
    }

    #[test]
    fn an_early_anomalous_call_needs_more_contradictions_than_abstentions() {
        // The fire seat's first vote: 3 contradict, 8 cannot judge, 1 to come.
        let thin = Tally { sees_change: 0, contradicts: 3, abstains: 8, expected: 12 };
        assert_eq!(thin.outcome(false, 2), None, "the timeout decides, on the answers it has by then");
        assert_eq!(thin.outcome(true, 2), Some(VoteOutcome::SuspectAnomalous));
        let clear = Tally { sees_change: 0, contradicts: 5, abstains: 2, expected: 8 };
        assert_eq!(clear.outcome(false, 2), Some(VoteOutcome::SuspectAnomalous));
    }

    #[test]
    fn a_suspect_partway_to_our_own_move_is_not_contradicted() {
        // Next to a fire's seat we rose 45 °C; the suspect 3.9 m away rose
        // 15 °C. ES-4.1 alone finds 30 °C over 3.9 m impossible.
        let h = hist(22.0, 22.0);
        assert_eq!(evaluate_inflammation_locally(Some(6700), 3700, TEMP, 390, 0), Verdict::ContradictsSuspect);
        assert_eq!(evaluate_inflammation_with_history(Some(6700), 3700, TEMP, 390, 0, h), Verdict::Abstain);
        // One that stayed where it was while we rose (a suppressed alarm).
        assert_eq!(evaluate_inflammation_with_history(Some(6700), 2220, TEMP, 390, 0, h), Verdict::ContradictsSuspect);
        // One that rose beyond us.
        assert_eq!(evaluate_inflammation_with_history(Some(3700), 6700, TEMP, 390, 0, h), Verdict::ContradictsSuspect);
        // One that went the other way.
        assert_eq!(evaluate_inflammation_with_history(Some(6700), 1500, TEMP, 390, 0, h), Verdict::ContradictsSuspect);
        let drift = Some(LocalHistory { relative_drift: true, ..h.unwrap() });
        assert_eq!(
            evaluate_inflammation_with_history(Some(6700), 3700, TEMP, 390, 0, drift),
            Verdict::ContradictsSuspect
        );
    }

    #[test]
    fn a_field_that_explains_the_shift_is_seen() {
        // We rose 0.3 °C, the suspect 5 °C: alone, a contradiction.
        let h = hist(22.0, 22.0);
        assert_eq!(evaluate_inflammation_with_history(Some(2230), 2700, TEMP, 700, 0, h), Verdict::ContradictsSuspect);
        let explained = Some(LocalHistory { field_explains: true, ..h.unwrap() });
        assert_eq!(evaluate_inflammation_with_history(Some(2230), 2700, TEMP, 700, 0, explained), Verdict::SeesChange);
        // Physics still wins.
        assert_eq!(
            evaluate_inflammation_with_history(Some(2230), 9000, TEMP, 100, 0, explained),
            Verdict::ContradictsSuspect
        );
    }

    #[test]
    fn a_lie_only_the_suspect_tells_is_contradicted() {
        // Suspect used to read 22 °C and now says 30; we still read 22.
        let v = evaluate_inflammation_with_history(Some(2200), 3000, TEMP, 1_000, 0, hist(22.0, 22.0));
        assert_eq!(v, Verdict::ContradictsSuspect);
        // Without history the ES-4.1 check alone finds 8 °C at 10 m consistent.
        assert_eq!(evaluate_inflammation_locally(Some(2200), 3000, TEMP, 1_000, 0), Verdict::SeesChange);
    }

    #[test]
    fn a_change_we_share_is_seen() {
        // A fire: the suspect rose 5 °C, we rose 4 °C.
        let v = evaluate_inflammation_with_history(Some(2600), 2700, TEMP, 1_000, 0, hist(22.0, 22.0));
        assert_eq!(v, Verdict::SeesChange);
        // Small shifts (bias, quantisation) are never held against anyone.
        let v = evaluate_inflammation_with_history(Some(2200), 2240, TEMP, 1_000, 0, hist(22.0, 22.0));
        assert_eq!(v, Verdict::SeesChange);
    }

    #[test]
    fn a_lagging_view_of_our_own_change_is_seen() {
        // HVAC step: the vote opened when the suspect had risen 0.35 °C; the
        // query reached us after we had risen 1.15 °C.
        let v = evaluate_inflammation_with_history(Some(2265), 2185, TEMP, 700, 0, hist(21.5, 21.5));
        assert_eq!(v, Verdict::SeesChange);
        // The same lag the other way (a drop) is seen too.
        let v = evaluate_inflammation_with_history(Some(2035), 2115, TEMP, 700, 0, hist(21.5, 21.5));
        assert_eq!(v, Verdict::SeesChange);
        // Opposite directions, or a suspect that moved well past us, stay contradicted.
        let v = evaluate_inflammation_with_history(Some(2265), 2050, TEMP, 700, 0, hist(21.5, 21.5));
        assert_eq!(v, Verdict::ContradictsSuspect);
        let v = evaluate_inflammation_with_history(Some(2265), 2600, TEMP, 700, 0, hist(21.5, 21.5));
        assert_eq!(v, Verdict::ContradictsSuspect);
    }

    #[test]
    fn a_change_many_others_share_is_seen() {
        // HVAC on the far side of a zone boundary: the suspect rose 2 °C,
        // we did not, but five devices we hear rose with it.
        let with = |n| Some(LocalHistory { corroborating: n, ..hist(21.5, 21.5).unwrap() });
        let v = evaluate_inflammation_with_history(Some(2150), 2350, TEMP, 1_400, 0, with(5));
        assert_eq!(v, Verdict::SeesChange);
        // Three colluders besides the suspect are not enough to vouch for it.
        let v = evaluate_inflammation_with_history(Some(2150), 2550, TEMP, 1_000, 0, with(MIN_CORROBORATING - 1));
        assert_eq!(v, Verdict::ContradictsSuspect);
        // A responder beyond two grid spacings does not hold what it cannot
        // explain against the suspect: the change may lie between them.
        let far = Some(LocalHistory { far: true, ..hist(21.5, 21.5).unwrap() });
        let v = evaluate_inflammation_with_history(Some(2150), 2550, TEMP, FAR_RESPONDER_CM + 1, 0, far);
        assert_eq!(v, Verdict::Abstain);
        // Corroboration never overrides physics.
        let v = evaluate_inflammation_with_history(Some(2200), i16::MAX, TEMP, 1_000, 0, with(20));
        assert_eq!(v, Verdict::ContradictsSuspect);
    }

    #[test]
    fn a_level_the_neighbourhood_already_reads_is_seen() {
        // A door opens: the suspect, east of the wall, fell from 24.5 to
        // 23.8 °C; we did not move, but four devices we hear (across the
        // wall) read 23.8 or less.
        let with = |n| Some(LocalHistory { bracketing: n, ..hist(24.5, 24.5).unwrap() });
        let v = evaluate_inflammation_with_history(Some(2450), 2380, TEMP, 300, 0, with(MIN_CORROBORATING));
        assert_eq!(v, Verdict::SeesChange);
        // Three (a colluding group besides the suspect) are not enough.
        let v = evaluate_inflammation_with_history(Some(2450), 2380, TEMP, 300, 0, with(MIN_CORROBORATING - 1));
        assert_eq!(v, Verdict::ContradictsSuspect);
    }

    #[test]
    fn a_small_shift_far_away_is_left_to_a_gradient_we_cannot_see() {
        // 0.6 °C we cannot explain: within the 0.7 °C a 10 m gap allows.
        let v = evaluate_inflammation_with_history(Some(2150), 2210, TEMP, 1_000, 0, hist(21.5, 21.5));
        assert_eq!(v, Verdict::SeesChange);
        // The same shift 3 m away is held against the suspect.
        let v = evaluate_inflammation_with_history(Some(2150), 2210, TEMP, 300, 0, hist(21.5, 21.5));
        assert_eq!(v, Verdict::ContradictsSuspect);
        // Unless our own audit finds the suspect drifted that way.
        let drifted = Some(LocalHistory { drifted: true, ..hist(21.5, 21.5).unwrap() });
        let v = evaluate_inflammation_with_history(Some(2150), 2210, TEMP, 1_000, 0, drifted);
        assert_eq!(v, Verdict::ContradictsSuspect);
        // The allowance stops growing at FAR_RESPONDER_CM: 1.05 °C, so a
        // 1.5 °C spike is contradicted from any distance.
        let v = evaluate_inflammation_with_history(Some(2150), 2300, TEMP, 3_000, 0, hist(21.5, 21.5));
        assert_eq!(v, Verdict::ContradictsSuspect);
    }

    #[test]
    fn history_never_overrides_physics_or_abstention() {
        assert_eq!(evaluate_inflammation_with_history(None, 3000, TEMP, 1_000, 0, hist(22.0, 22.0)), Verdict::Abstain);
        // Impossible suspect reading: contradicted whatever the history says.
        let v = evaluate_inflammation_with_history(Some(2200), i16::MAX, TEMP, 1_000, 0, hist(300.0, 22.0));
        assert_eq!(v, Verdict::ContradictsSuspect);
        // Without a usable history of the suspect, a physically possible
        // reading says nothing either way.
        let nan = Some(LocalHistory {
            suspect_mean: f32::NAN,
            suspect_sigma: 0.1,
            own_mean: 22.0,
            corroborating: 0,
            bracketing: 0,
            drifted: false,
            field_explains: false,
            far: false,
            relative_drift: false,
        });
        assert_eq!(evaluate_inflammation_with_history(Some(2200), 3000, TEMP, 1_000, 0, nan), Verdict::Abstain);
        assert_eq!(evaluate_inflammation_with_history(Some(2200), 2210, TEMP, 1_000, 0, None), Verdict::Abstain);
    }

    /// A suspect that drifted against our level is contradicted even when
    /// its reading barely moved from its recent level (a slow drift) and
    /// even from far; without that flag the same reading is seen.
    #[test]
    fn a_relative_drift_is_contradicted_near_and_far() {
        for far in [false, true] {
            let h = |relative_drift| Some(LocalHistory { relative_drift, far, ..hist(24.4, 22.0).unwrap() });
            let v = evaluate_inflammation_with_history(Some(2200), 2450, TEMP, 2_000, 0, h(true));
            assert_eq!(v, Verdict::ContradictsSuspect, "far {far}");
            let v = evaluate_inflammation_with_history(Some(2200), 2450, TEMP, 2_000, 0, h(false));
            assert_eq!(v, Verdict::SeesChange, "far {far}");
        }
    }

    fn id(b: u8) -> DeviceId {
        DeviceId([b; 8])
    }

    fn reply(suspect: DeviceId, verdict: Verdict, query_id: Option<u32>) -> InflammationReply {
        InflammationReply {
            suspect_id: suspect,
            verdict,
            own_reading: 0,
            own_confidence: 200,
            v2: query_id.map(|query_id| InflammationReplyV2 { query_id, timestamp: 0 }),
        }
    }

    fn query(expected: u8) -> ActiveQuery<4> {
        let s = DeviationSample {
            sigma: 3.5,
            quantity: QuantityType::Temperature,
            suspect_reading: 4000,
            my_reading: 2300,
        };
        ActiveQuery::new(7, &s, id(0xEE), expected, 0)
    }

    #[test]
    fn replies_are_matched_distinct_and_bounded() {
        let mut q = query(8);
        let s = id(0xEE);
        assert_eq!(q.count(id(1), &reply(s, Verdict::SeesChange, None)), Err(DropReason::NoQueryId));
        assert_eq!(q.count(id(1), &reply(s, Verdict::SeesChange, Some(8))), Err(DropReason::WrongQueryId));
        assert_eq!(q.count(id(1), &reply(id(2), Verdict::SeesChange, Some(7))), Err(DropReason::WrongSuspect));
        assert_eq!(q.count(s, &reply(s, Verdict::SeesChange, Some(7))), Err(DropReason::FromSuspect));
        assert!(q.count(id(1), &reply(s, Verdict::ContradictsSuspect, Some(7))).is_ok());
        assert_eq!(q.count(id(1), &reply(s, Verdict::SeesChange, Some(7))), Err(DropReason::DuplicateResponder));
        for b in 2..=4 {
            assert!(q.count(id(b), &reply(s, Verdict::Abstain, Some(7))).is_ok());
        }
        assert_eq!(q.count(id(5), &reply(s, Verdict::SeesChange, Some(7))), Err(DropReason::ReplySetFull));
        assert_eq!(q.tally, Tally { sees_change: 0, contradicts: 1, abstains: 3, expected: 8 });
    }

    #[test]
    fn one_early_reply_no_longer_decides() {
        let t = Tally { contradicts: 1, expected: 6, ..Tally::default() };
        assert_eq!(t.outcome(false, 2), None, "the spec's total/2 let the first DENY decide");
        let t = Tally { contradicts: 5, sees_change: 1, expected: 7, ..Tally::default() };
        assert_eq!(t.outcome(false, 2), Some(VoteOutcome::SuspectAnomalous));
        let t = Tally { contradicts: 4, sees_change: 1, expected: 6, ..Tally::default() };
        assert_eq!(t.outcome(false, 2), None, "one more confirmation would leave it 4 to 2");
        let tie = Tally { contradicts: 2, sees_change: 2, abstains: 1, expected: 5 };
        assert_eq!(tie.outcome(false, 2), Some(VoteOutcome::Inconclusive), "everyone answered: final");
        assert_eq!(Tally::default().outcome(true, 2), Some(VoteOutcome::Inconclusive), "zero replies");
        let lone = Tally { contradicts: 1, expected: 1, ..Tally::default() };
        assert_eq!(lone.outcome(true, 2), Some(VoteOutcome::Inconclusive), "ES-7.6 two sensors alone");
    }

    #[test]
    fn a_large_minority_that_sees_the_change_prevents_rejection() {
        // Far-side responders outnumber those who saw an HVAC step, but
        // not two to one: inconclusive (PYREXIA), not anomalous.
        let t = Tally { contradicts: 6, sees_change: 5, abstains: 0, expected: 16 };
        assert_eq!(t.outcome(true, 2), Some(VoteOutcome::Inconclusive));
        let t = Tally { contradicts: 4, sees_change: 2, abstains: 0, expected: 12 };
        assert_eq!(t.outcome(true, 2), Some(VoteOutcome::Inconclusive));
        // A spiker's or a colluding minority's vote stays anomalous.
        let t = Tally { contradicts: 10, sees_change: 3, abstains: 1, expected: 16 };
        assert_eq!(t.outcome(true, 2), Some(VoteOutcome::SuspectAnomalous));
    }

    #[test]
    fn local_verdict_by_meaning() {
        let t = QuantityType::Temperature;
        assert_eq!(evaluate_inflammation_locally(Some(2310), 2340, t, 200, 5000), Verdict::SeesChange);
        assert_eq!(evaluate_inflammation_locally(Some(2310), 8500, t, 100, 2000), Verdict::ContradictsSuspect);
        assert_eq!(evaluate_inflammation_locally(None, 2340, t, 200, 5000), Verdict::Abstain);
        assert_eq!(evaluate_inflammation_locally(Some(-30_000), 2340, t, 200, 5000), Verdict::Abstain);
        assert_eq!(evaluate_inflammation_locally(Some(2310), -30_000, t, 200, 5000), Verdict::ContradictsSuspect);
    }

    #[test]
    fn consistency_results_map_to_events() {
        let input = ConsistencyInput {
            my_reading: 2310,
            their_reading: 8500,
            quantity: QuantityType::Temperature,
            distance_cm: 100,
            time_delta_ms: 2000,
        };
        let ev = handle_consistency_result(check_physical_consistency(&input).result, &input);
        match ev {
            ConsistencyEvent::Subject(SubjectEvent::Deviation(d)) => {
                assert!((d.sigma - 108.48).abs() < 1e-3);
                assert_eq!((d.suspect_reading, d.my_reading), (8500, 2310));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            handle_consistency_result(ConsistencyResult::RejectInnate(InnateFailure::Mine), &input),
            ConsistencyEvent::OwnSensorFault
        );
        assert_eq!(handle_consistency_result(ConsistencyResult::Unknown, &input), ConsistencyEvent::Nothing);
        assert!(matches!(
            handle_consistency_result(ConsistencyResult::RejectInnate(InnateFailure::Theirs), &input),
            ConsistencyEvent::Subject(SubjectEvent::InnateViolation(_))
        ));
    }

    proptest! {
        #[test]
        fn an_early_decision_is_never_overturned(s in 0u8..12, c in 0u8..12, a in 0u8..12, extra in 0u8..12, min in 1u8..4) {
            let expected = s.saturating_add(c).saturating_add(a).saturating_add(extra);
            let t = Tally { sees_change: s, contradicts: c, abstains: a, expected };
            if let Some(early) = t.outcome(false, min) {
                if t.responded() < expected {
                    for more_s in 0..=extra {
                        let more_c = extra - more_s;
                        let end = Tally { sees_change: s + more_s, contradicts: c + more_c, ..t };
                        prop_assert_eq!(end.outcome(true, min), Some(early));
                    }
                }
            }
        }

        #[test]
        fn a_decision_is_a_majority_of_voters(s in 0u8..40, c in 0u8..40, min in 0u8..4) {
            let t = Tally { sees_change: s, contradicts: c, abstains: 0, expected: 40 };
            match t.outcome(true, min) {
                Some(VoteOutcome::EnvironmentChanged) => prop_assert!(s > c && s + c >= min),
                Some(VoteOutcome::SuspectAnomalous) => prop_assert!(c > 2 * s && s + c >= min),
                Some(VoteOutcome::Inconclusive) => prop_assert!((s <= c && c <= 2 * s) || s + c < min.max(1)),
                Some(VoteOutcome::Outgrown) => prop_assert!(false, "only a record finds a vote outgrown"),
                None => prop_assert!(false, "a final tally always decides"),
            }
        }
    }
}
