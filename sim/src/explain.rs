//! `krill explain RUN --node N`: the audit trail of a run directory told
//! in plain sentences — what the node's monitors saw of it and decided,
//! with the figures and thresholds behind each decision, and what the node
//! itself saw and decided.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::output::AuditRecord;

/// Why a run directory could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A line of `audit.jsonl` or `nodes.csv` is malformed.
    #[error("{path}:{line}: {msg}")]
    Malformed {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// The run has no such node.
    #[error("node {node} is not in this run (it has nodes 0..{count})")]
    NoNode {
        /// Asked for.
        node: u32,
        /// Nodes in the run.
        count: usize,
    },
}

/// A row of `nodes.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRow {
    /// Index.
    pub node: u32,
    /// Device id, hex.
    pub id: String,
    /// Class.
    pub class: String,
    /// Quantity.
    pub quantity: String,
    /// Position, m.
    pub pos: (f64, f64),
    /// Zone name, empty if none.
    pub zone: String,
    /// True for attackers.
    pub attacker: bool,
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(s) = out.last_mut() {
                    s.push('"');
                }
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => {
                if let Some(s) = out.last_mut() {
                    s.push(c);
                }
            }
        }
    }
    out
}

/// Reads `nodes.csv`.
pub fn read_nodes(path: &Path) -> Result<Vec<NodeRow>, ExplainError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ExplainError::Io { path: p.clone(), source })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = |msg: &str| ExplainError::Malformed { path: p.clone(), line: i + 1, msg: msg.into() };
        let f = split_csv(line);
        if f.len() != 8 {
            return Err(bad("expected 8 fields"));
        }
        rows.push(NodeRow {
            node: f[0].parse().map_err(|_| bad("node index"))?,
            id: f[1].clone(),
            class: f[2].clone(),
            quantity: f[3].clone(),
            pos: (f[4].parse().map_err(|_| bad("x_m"))?, f[5].parse().map_err(|_| bad("y_m"))?),
            zone: f[6].clone(),
            attacker: f[7] == "true",
        });
    }
    Ok(rows)
}

/// Reads `audit.jsonl`, keeping the records `keep` accepts.
pub fn read_audit(path: &Path, keep: impl Fn(&AuditRecord) -> bool) -> Result<Vec<AuditRecord>, ExplainError> {
    use std::io::BufRead as _;
    let p = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|source| ExplainError::Io { path: p.clone(), source })?;
    let mut v = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|source| ExplainError::Io { path: p.clone(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        let r: AuditRecord = serde_json::from_str(&line).map_err(|e| ExplainError::Malformed {
            path: p.clone(),
            line: i + 1,
            msg: e.to_string(),
        })?;
        if keep(&r) {
            v.push(r);
        }
    }
    Ok(v)
}

/// A sentence starting with a capital letter.
fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn words(snake: &str) -> String {
    snake.replace('_', " ")
}

fn f1(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.1}"))
}

fn f2(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.2}"))
}

/// Why a lifecycle record moved, in words.
fn reason(r: &AuditRecord) -> String {
    let what = r.what.as_deref().unwrap_or("");
    match what {
        "deviation_band" => {
            format!("a deviation of {}σ fell in the {} band", f1(r.sigma), r.to.as_deref().unwrap_or("?"))
        }
        "deviation_recorded" => format!("a deviation of {}σ was recorded", f1(r.sigma)),
        "vote_decided" => format!(
            "its INFLAMMATION vote decided \"{}\"{}: {} of {} asked contradicted the subject, {} saw the same change, \
             {} abstained; latest deviation {}σ{}",
            words(r.outcome.as_deref().unwrap_or("?")),
            if r.at_timeout == Some(true) { " at the vote's timeout" } else { " at quorum" },
            r.contradicts.unwrap_or(0),
            r.asked.unwrap_or(0),
            r.sees_change.unwrap_or(0),
            r.abstains.unwrap_or(0),
            f1(r.sigma),
            if r.outcome.as_deref() == Some("outgrown") {
                " (the subject had moved on from the reading the answers judged, so it will be asked again)"
            } else {
                ""
            }
        ),
        "reply_counted" => format!(
            "a reply was counted (so far {} contradicted, {} saw the change, {} abstained, of {} asked)",
            r.contradicts.unwrap_or(0),
            r.sees_change.unwrap_or(0),
            r.abstains.unwrap_or(0),
            r.asked.unwrap_or(0)
        ),
        "timeout" => format!(
            "{} s in {} exceeded the {} s limit",
            f1(r.elapsed_s),
            r.from.as_deref().unwrap_or("the state"),
            f1(r.limit_s)
        ),
        "heartbeat_timeout" => format!("nothing was heard from it for {} s", f1(r.elapsed_s)),
        "innate_violation" => "it reported a physically impossible value".into(),
        "deferred_rejection_admitted" => format!("a deferred rejection ({}σ) fit into this epoch's cap", f1(r.sigma)),
        "rejection_deferred" => format!(
            "the rejection had to wait: {} of this epoch's {} rejections were used",
            r.count.unwrap_or(0),
            r.needed.unwrap_or(0)
        ),
        "profile_frozen" => "its profile was frozen, ending NEONATAL".into(),
        "" => "no reason recorded".into(),
        other => words(other),
    }
}

/// The sentence of one trace assessment.
fn trace_sentence(r: &AuditRecord, who: &str, about: &str) -> String {
    let u = r.unit.as_deref().unwrap_or("");
    let mut s = format!("At {:.0} s {who} judged a trace from {about}: it read {} {u}", r.t_s, f2(r.reading));
    if let Some(m) = r.my_reading {
        let _ = write!(s, " where {who} read {m:.2} {u}");
    }
    if let Some(c) = &r.consistency {
        let _ = write!(s, "; physical consistency said \"{}\"", words(c));
        match r.allowed_diff {
            Some(a) => {
                let _ = write!(s, " (difference {} {u}, allowed {a:.2} {u}", f2(r.actual_diff));
            }
            None => {
                let _ = write!(s, " (difference {} {u}, no spatial limit", f2(r.actual_diff));
            }
        }
        let _ = write!(
            s,
            " at {} m, {})",
            f1(r.distance_m),
            if r.distance_known == Some(true) { "measured" } else { "the 30 m fallback" }
        );
    }
    if let Some(p) = r.profile_sigma {
        let _ = write!(s, "; its profile deviation was {p:.1}σ");
        if let Some(e) = r.expected {
            let _ = write!(s, " (neighbours predicted {e:.2} {u})");
        }
    }
    let _ = write!(
        s,
        "; {}σ went to its record, and the field weighed it {} of the {} claimed.",
        f1(r.sigma),
        r.used_weight.map_or("?".into(), |w| w.to_string()),
        r.claimed_weight.map_or("?".into(), |w| w.to_string())
    );
    s
}

fn name(n: u32, nodes: &[NodeRow]) -> String {
    match nodes.get(n as usize) {
        Some(r) if r.attacker => format!("node {n} (attacker)"),
        _ => format!("node {n}"),
    }
}

fn subject_text(r: &AuditRecord, nodes: &[NodeRow]) -> String {
    match (r.subject, &r.subject_id) {
        (Some(s), _) => name(s, nodes),
        (None, Some(id)) => format!("device {id}"),
        (None, None) => "an unnamed device".into(),
    }
}

/// Severity of a state name: 0 NEONATAL/NORMAL (and own states), 1
/// PYREXIA, 2 INFLAMMATION, 3 REJECTION, 4 QUARANTINE, 5 APOPTOTIC.
fn rank(state: Option<&str>) -> u8 {
    match state {
        Some("PYREXIA") => 1,
        Some("INFLAMMATION") => 2,
        Some("REJECTION") => 3,
        Some("QUARANTINE") => 4,
        Some("APOPTOTIC") => 5,
        _ => 0,
    }
}

/// A transition worth a sentence of its own: one that involves a vote or
/// isolation, or ends NEONATAL; NORMAL↔PYREXIA moves are summarised.
fn significant(r: &AuditRecord) -> bool {
    rank(r.from.as_deref()) >= 2 || rank(r.to.as_deref()) >= 2 || r.from.as_deref() == Some("NEONATAL")
}

/// One line for a run of NORMAL↔PYREXIA moves.
fn flicker_sentence(who: &str, whom: &str, moves: &[&AuditRecord]) -> Option<String> {
    let first = moves.first()?;
    let last = moves[moves.len() - 1];
    let sig: Vec<f64> = moves.iter().filter_map(|r| r.sigma).collect();
    let lo = sig.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = sig.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = if sig.is_empty() { String::new() } else { format!(" on deviations of {lo:.1}–{hi:.1}σ") };
    Some(if moves.len() == 1 {
        format!(
            "At {:.0} s {who} moved {whom} from {} to {}: {}.",
            first.t_s,
            first.from.as_deref().unwrap_or("?"),
            first.to.as_deref().unwrap_or("?"),
            reason(first)
        )
    } else {
        format!(
            "From {:.0} s to {:.0} s {who} moved {whom} between NORMAL and PYREXIA {} times{range}.",
            first.t_s,
            last.t_s,
            moves.len()
        )
    })
}

/// Sentences for what `who` decided about `whom`: minor moves summarised,
/// the strongest trace and every significant move told in full.
fn monitor_story(
    who: &str,
    whom: &str,
    list: &[&AuditRecord],
    answers: &[&AuditRecord],
    nodes: &[NodeRow],
) -> Vec<String> {
    let mut out = Vec::new();
    let traces: Vec<&&AuditRecord> = list.iter().filter(|r| r.kind == "trace").collect();
    if let Some(top) = traces.iter().max_by(|a, b| a.sigma.unwrap_or(0.0).total_cmp(&b.sigma.unwrap_or(0.0))) {
        out.push(trace_sentence(top, who, whom));
        if traces.len() > 1 {
            out.push(format!(
                "{who} judged {} traces of {whom} at 1σ or more between {:.0} s and {:.0} s.",
                traces.len(),
                traces[0].t_s,
                traces[traces.len() - 1].t_s
            ));
        }
    }
    // In time order; runs of NORMAL↔PYREXIA moves become one sentence.
    let mut minor: Vec<&AuditRecord> = Vec::new();
    let mut replies: Vec<&AuditRecord> = Vec::new();
    let mut opened_s = f64::NEG_INFINITY;
    for r in list.iter().copied().filter(|r| r.kind == "lifecycle") {
        if r.to.as_deref() == Some("INFLAMMATION") && r.from != r.to {
            opened_s = r.t_s;
        }
        if r.what.as_deref() == Some("reply_counted") {
            replies.push(r);
            continue;
        }
        if r.from == r.to {
            continue;
        }
        if !significant(r) {
            minor.push(r);
            continue;
        }
        out.extend(flicker_sentence(who, whom, &minor));
        minor.clear();
        if !replies.is_empty() {
            out.push(replies_sentence(who, &replies));
            replies.clear();
        }
        out.push(format!(
            "At {:.0} s {who} moved {whom} from {} to {}: {}.",
            r.t_s,
            r.from.as_deref().unwrap_or("?"),
            r.to.as_deref().unwrap_or("?"),
            reason(r)
        ));
        if r.what.as_deref() == Some("vote_decided") {
            let voters = vote_answers(opened_s, r, r.node, answers);
            if !voters.is_empty() {
                let clauses: Vec<String> = voters.iter().map(|a| answer_clause(a, nodes)).collect();
                out.push(format!("The answers it was sent: {}.", clauses.join("; ")));
                out.extend(uncounted_sentence(r, &voters, nodes));
            }
        }
    }
    out.extend(flicker_sentence(who, whom, &minor));
    if !replies.is_empty() {
        out.push(replies_sentence(who, &replies));
    }
    for r in list.iter().filter(|r| !matches!(r.kind.as_str(), "trace" | "lifecycle" | "dropped" | "answered")) {
        out.push(peer_sentence(r, nodes));
    }
    out
}

/// Explains `node` from the run directory `dir`, from scenario time
/// `since_s` on: at most `limit` monitors in the first part and `limit`
/// subjects in the second.
pub fn explain(dir: &Path, node: u32, since_s: f64, limit: usize) -> Result<String, ExplainError> {
    let nodes = read_nodes(&dir.join("nodes.csv"))?;
    let Some(me) = nodes.get(node as usize) else {
        return Err(ExplainError::NoNode { node, count: nodes.len() });
    };
    let recs =
        read_audit(&dir.join("audit.jsonl"), |r| r.t_s >= since_s && (r.node == node || r.subject == Some(node)))?;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Node {node} (id {}, {} measuring {}, at ({:.1}, {:.1}) m{}) is {} in this run.",
        me.id,
        me.class,
        me.quantity,
        me.pos.0,
        me.pos.1,
        if me.zone.is_empty() { String::new() } else { format!(", zone {}", me.zone) },
        if me.attacker { "an attacker" } else { "honest" }
    );
    let _ = writeln!(o, "Times are scenario seconds (0 = end of warm-up); from {since_s:.0} s on.");
    let about = name(node, &nodes);

    // Monitors that escalated come first, in the order they did.
    let mut by_monitor: BTreeMap<u32, Vec<&AuditRecord>> = BTreeMap::new();
    let answers: Vec<&AuditRecord> = recs.iter().filter(|r| r.kind == "answered" && r.subject == Some(node)).collect();
    for r in recs.iter().filter(|r| r.node != node && r.subject == Some(node) && r.kind != "answered") {
        by_monitor.entry(r.node).or_default().push(r);
    }
    let mut monitors: Vec<(bool, f64, u32)> = by_monitor
        .iter()
        .map(|(m, v)| {
            let esc = v.iter().find(|r| r.kind == "lifecycle" && r.from != r.to && rank(r.to.as_deref()) >= 2);
            match esc {
                Some(r) => (false, r.t_s, *m),
                None => (true, v.first().map_or(f64::INFINITY, |r| r.t_s), *m),
            }
        })
        .collect();
    monitors.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    let escalated = monitors.iter().filter(|m| !m.0).count();
    let _ = writeln!(
        o,
        "\nWhat other nodes saw of {about} and decided ({} monitor(s) recorded decisions, {escalated} escalated past PYREXIA):",
        monitors.len()
    );
    for (_, _, m) in monitors.iter().take(limit) {
        let who = name(*m, &nodes);
        for line in monitor_story(&who, &about, &by_monitor[m], &answers, &nodes) {
            let _ = writeln!(o, "  {}", capital(&line));
        }
    }
    if monitors.len() > limit {
        let _ = writeln!(o, "  … and {} more monitor(s) (raise --limit).", monitors.len() - limit);
    }

    let _ = writeln!(o, "\nWhat {about} saw and decided:");
    let mine: Vec<&AuditRecord> = recs.iter().filter(|r| r.node == node).collect();
    if mine.is_empty() {
        let _ = writeln!(o, "  It recorded no decision.");
    }
    for r in mine.iter().filter(|r| r.kind == "lifecycle" && r.subject == Some(node) && r.from != r.to) {
        let _ = writeln!(
            o,
            "  At {:.0} s it moved itself from {} to {}: {}.",
            r.t_s,
            r.from.as_deref().unwrap_or("?"),
            r.to.as_deref().unwrap_or("?"),
            reason(r)
        );
    }
    let mut by_subject: BTreeMap<String, Vec<&AuditRecord>> = BTreeMap::new();
    let mut drops: BTreeMap<String, u64> = BTreeMap::new();
    let mut others: Vec<&AuditRecord> = Vec::new();
    let mut answered: BTreeMap<String, u64> = BTreeMap::new();
    for r in mine.iter().copied() {
        if r.kind == "answered" {
            *answered.entry(r.what.clone().unwrap_or_default()).or_default() += 1;
        } else if r.kind == "dropped" {
            *drops.entry(r.what.clone().unwrap_or_default()).or_default() += 1;
        } else if r.subject.is_none() && r.subject_id.is_none() {
            others.push(r);
        } else if r.subject != Some(node) {
            let key = match r.subject {
                Some(s) => format!("{s:>10}"),
                None => r.subject_id.clone().unwrap_or_default(),
            };
            by_subject.entry(key).or_default().push(r);
        }
    }
    let mut subjects: Vec<(&String, &Vec<&AuditRecord>)> = by_subject.iter().collect();
    // Subjects it escalated first.
    subjects.sort_by_key(|(_, v)| !v.iter().any(|r| r.kind == "lifecycle" && rank(r.to.as_deref()) >= 2));
    for (_, list) in subjects.iter().take(limit) {
        let whom = list.first().map_or("?".into(), |r| subject_text(r, &nodes));
        for line in monitor_story("it", &whom, list, &[], &nodes) {
            let _ = writeln!(o, "  {}", capital(&line));
        }
    }
    if subjects.len() > limit {
        let _ = writeln!(o, "  … and {} more subject(s) (raise --limit).", subjects.len() - limit);
    }
    for r in others.iter().take(limit) {
        let _ = writeln!(o, "  {}", peer_sentence(r, &nodes));
    }
    if others.len() > limit {
        let _ = writeln!(o, "  … and {} more event(s) (raise --limit).", others.len() - limit);
    }
    if !answered.is_empty() {
        let total: u64 = answered.values().sum();
        let parts: Vec<String> = answered.iter().map(|(k, v)| format!("{v} {}", words(k))).collect();
        let _ = writeln!(o, "  It answered {total} INFLAMMATION_QUERY(s) about other nodes: {}.", parts.join(", "));
    }
    if !drops.is_empty() {
        let total: u64 = drops.values().sum();
        let parts: Vec<String> = drops.iter().map(|(k, v)| format!("{v} {}", words(k))).collect();
        let _ = writeln!(o, "  It dropped {total} recorded frame(s): {}.", parts.join(", "));
    }
    Ok(o)
}

/// One responder's answer, as a clause: who, how far, what it said and why.
fn answer_clause(a: &AuditRecord, nodes: &[NodeRow]) -> String {
    let unit = a.unit.as_deref().unwrap_or("");
    let verdict = match a.what.as_deref() {
        Some("contradicts_suspect") => "contradicted",
        Some("sees_change") => "saw the same change",
        Some("abstain") => "abstained",
        _ => "answered",
    };
    let mut why = Vec::new();
    if let (Some(shift), Some(own)) = (a.shift, a.own_shift) {
        why.push(format!("suspect moved {shift:+.2} {unit} from its slow average, the responder {own:+.2} {unit}"));
    } else if a.what.as_deref() != Some("contradicts_suspect") {
        why.push("no usable history of the suspect".into());
    }
    if let Some(c) = a.corroborating.filter(|c| *c > 0) {
        why.push(format!("{c} device(s) it hears moved that way"));
    }
    if a.far == Some(true) {
        why.push("far from the suspect".into());
    }
    if a.field_explains == Some(true) {
        why.push("the devices around, placed by the manifest, form a slope or peak that explains it".into());
    }
    let at = a.distance_m.map_or(String::new(), |d| format!(" at {d:.1} m"));
    let why = if why.is_empty() { String::new() } else { format!(" ({})", why.join("; ")) };
    format!("{}{at} {verdict}{why}", name(a.node, nodes))
}

/// The answers `monitor`'s vote, opened at `opened_s` and decided by
/// `decided`, was built from: those sent to it about the same subject in
/// between (a reply arrives after its answer was sent, never before).
fn vote_answers<'a>(
    opened_s: f64,
    decided: &AuditRecord,
    monitor: u32,
    answers: &[&'a AuditRecord],
) -> Vec<&'a AuditRecord> {
    answers.iter().copied().filter(|a| a.peer == Some(monitor) && a.t_s >= opened_s && a.t_s <= decided.t_s).collect()
}

/// Answers sent to a vote that its final tally does not hold: lost on the
/// radio, refused, or still on the way when it was decided. The tally
/// counts verdicts, not responders, so a responder is named only when no
/// answer of its kind was counted.
fn uncounted_sentence(decided: &AuditRecord, sent: &[&AuditRecord], nodes: &[NodeRow]) -> Option<String> {
    let kinds = [
        ("sees_change", "saw the same change", decided.sees_change),
        ("contradicts_suspect", "contradicted", decided.contradicts),
        ("abstain", "abstained", decided.abstains),
    ];
    let mut parts = Vec::new();
    for (what, words, counted) in kinds {
        let of_kind: Vec<&&AuditRecord> = sent.iter().filter(|a| a.what.as_deref() == Some(what)).collect();
        let counted = counted.unwrap_or(0) as usize;
        if of_kind.len() <= counted {
            continue;
        }
        parts.push(if counted == 0 {
            let names: Vec<String> = of_kind.iter().map(|a| name(a.node, nodes)).collect();
            format!("{} ({words})", names.join(", "))
        } else {
            format!("{} of the {} that {words}", of_kind.len() - counted, of_kind.len())
        });
    }
    (!parts.is_empty()).then(|| {
        format!(
            "Not in its tally: {}; lost on the radio, refused, or still on the way when the vote was decided.",
            parts.join("; ")
        )
    })
}

fn replies_sentence(who: &str, replies: &[&AuditRecord]) -> String {
    let times: Vec<String> = replies.iter().map(|r| format!("{:.0}", r.t_s)).collect();
    let last = replies[replies.len() - 1];
    format!(
        "{who} counted {} INFLAMMATION_REPLY(s) at {} s; the tally then stood at {} contradicting, {} seeing the same \
         change, {} abstaining, of {} asked.",
        replies.len(),
        times.join(", "),
        last.contradicts.unwrap_or(0),
        last.sees_change.unwrap_or(0),
        last.abstains.unwrap_or(0),
        last.asked.unwrap_or(0)
    )
}

fn peer_sentence(r: &AuditRecord, nodes: &[NodeRow]) -> String {
    let who = name(r.node, nodes);
    let peer = r.peer.map_or("an unknown sender".into(), |p| name(p, nodes));
    let what = r.what.as_deref().unwrap_or("");
    match (r.kind.as_str(), what) {
        ("peer", "consistency_alert") => format!(
            "At {:.0} s {who} heard {peer} raise a CONSISTENCY_ALERT about {} ({} distinct alerters so far; kept as evidence only).",
            r.t_s,
            subject_text(r, nodes),
            r.count.unwrap_or(0)
        ),
        ("peer", "rejection_tally") => format!(
            "At {:.0} s {who} weighed a REJECTION_NOTICE from {peer}: {} distinct counted, {} needed.",
            r.t_s,
            r.count.unwrap_or(0),
            r.needed.unwrap_or(0)
        ),
        ("rejected_by", _) => format!("At {:.0} s {who} received a REJECTION_NOTICE naming it from {peer}.", r.t_s),
        ("nk_audit", result) => format!(
            "At {:.0} s {who} ran an NK audit on {}: {}.",
            r.t_s,
            subject_text(r, nodes),
            words(result)
        ),
        ("relative_drift", _) => format!(
            "At {:.0} s {who} found {}'s readings moved {:+.2} {} against its own since it learned their offset, \
             slowly and alone (no weather moves one device against its neighbours): fed as {:.1} σ, it asks its neighbours.",
            r.t_s,
            subject_text(r, nodes),
            r.actual_diff.unwrap_or(0.0),
            r.unit.as_deref().unwrap_or(""),
            r.sigma.unwrap_or(0.0)
        ),
        ("vaccine", outcome) => format!(
            "At {:.0} s {who} received a VACCINE originated by {peer}: {}.",
            r.t_s,
            words(outcome)
        ),
        ("profile_merged", _) => format!(
            "At {:.0} s {who} merged {peer}'s PROFILE_SYNC about {} into a profile still learning.",
            r.t_s,
            subject_text(r, nodes)
        ),
        ("vaccine_originated", attack) => format!(
            "At {:.0} s {who} confirmed an attack by {} and originated a VACCINE ({}).",
            r.t_s,
            subject_text(r, nodes),
            words(attack)
        ),
        (kind, what) => format!(
            "At {:.0} s {who}: {}{} ({}).",
            r.t_s,
            words(kind),
            if what.is_empty() { String::new() } else { format!(", {}", words(what)) },
            r.event
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_split_handles_quotes() {
        assert_eq!(split_csv("1,\"a,\"\"b\",c"), vec!["1", "a,\"b", "c"]);
        assert_eq!(split_csv(""), vec![""]);
    }

    #[test]
    fn vote_reason_names_the_tally_and_the_timeout() {
        let r = AuditRecord {
            what: Some("vote_decided".into()),
            outcome: Some("suspect_anomalous".into()),
            contradicts: Some(3),
            sees_change: Some(1),
            abstains: Some(0),
            asked: Some(5),
            at_timeout: Some(true),
            sigma: Some(4.3),
            ..Default::default()
        };
        let s = reason(&r);
        assert!(s.contains("\"suspect anomalous\" at the vote's timeout"), "{s}");
        assert!(s.contains("3 of 5 asked contradicted") && s.contains("4.3σ") && !s.contains("asked again"), "{s}");
        let s = reason(&AuditRecord { outcome: Some("outgrown".into()), ..r });
        assert!(s.contains("\"outgrown\"") && s.contains("asked again"), "{s}");
    }

    #[test]
    fn a_decided_vote_names_the_answers_it_was_built_from() {
        let life = |t_s: f64, from: &str, to: &str, what: &str| AuditRecord {
            t_s,
            node: 1,
            kind: "lifecycle".into(),
            subject: Some(0),
            from: Some(from.into()),
            to: Some(to.into()),
            what: Some(what.into()),
            outcome: Some("suspect_anomalous".into()),
            ..Default::default()
        };
        let answer = |t_s: f64, node: u32, what: &str, far: bool| AuditRecord {
            t_s,
            node,
            kind: "answered".into(),
            subject: Some(0),
            peer: Some(1),
            what: Some(what.into()),
            unit: Some("°C".into()),
            distance_m: Some(5.5),
            shift: Some(1.41),
            own_shift: Some(0.25),
            corroborating: Some(2),
            far: Some(far),
            field_explains: Some(node == 16),
            ..Default::default()
        };
        let opened = life(610.0, "NORMAL", "INFLAMMATION", "deviation_band");
        let decided = AuditRecord {
            contradicts: Some(1),
            abstains: Some(1),
            sees_change: Some(0),
            ..life(911.0, "INFLAMMATION", "REJECTION", "vote_decided")
        };
        let earlier = answer(605.0, 8, "sees_change", false);
        let (c, a) = (answer(610.2, 7, "contradicts_suspect", false), answer(611.0, 16, "abstain", true));
        let elsewhere = AuditRecord { peer: Some(3), ..answer(700.0, 9, "contradicts_suspect", false) };
        let answers = [&earlier, &c, &a, &elsewhere];
        let story = monitor_story("node 1", "node 0", &[&opened, &decided], &answers, &[]).join("\n");
        for needle in [
            "node 7 at 5.5 m contradicted (suspect moved +1.41 °C from its slow average, the responder +0.25 °C; \
             2 device(s) it hears moved that way)",
            "node 16 at 5.5 m abstained (",
            "far from the suspect; the devices around, placed by the manifest, form a slope or peak that explains it)",
        ] {
            assert!(story.contains(needle), "{needle:?} not in {story}");
        }
        assert!(!story.contains("node 8") && !story.contains("node 9"), "{story}");
        assert!(!story.contains("Not in its tally"), "every answer was counted: {story}");

        // Two more answers that the tally (1 contradiction, 1 abstention)
        // does not hold: a lone confirmation is named, a second
        // contradiction can only be counted.
        let (lost_s, lost_c) =
            (answer(612.0, 11, "sees_change", false), answer(613.0, 12, "contradicts_suspect", false));
        let answers = [&c, &a, &lost_s, &lost_c];
        let story = monitor_story("node 1", "node 0", &[&opened, &decided], &answers, &[]).join("\n");
        let needle = "Not in its tally: node 11 (saw the same change); 1 of the 2 that contradicted; lost on the radio";
        assert!(story.contains(needle), "{needle:?} not in {story}");
    }

    #[test]
    fn relative_drift_sentence_gives_the_drift_and_the_sigma() {
        let r = AuditRecord {
            t_s: 18_721.9,
            node: 4,
            kind: "relative_drift".into(),
            subject: Some(7),
            unit: Some("°C".into()),
            actual_diff: Some(2.01),
            sigma: Some(3.01),
            ..Default::default()
        };
        let s = peer_sentence(&r, &[]);
        for needle in ["At 18722 s node 4", "node 7's readings moved +2.01 °C", "fed as 3.0 σ"] {
            assert!(s.contains(needle), "{needle:?} not in {s}");
        }
    }

    #[test]
    fn trace_sentence_shows_readings_and_the_allowed_difference() {
        let r = AuditRecord {
            t_s: 612.4,
            unit: Some("°C".into()),
            reading: Some(29.61),
            my_reading: Some(21.58),
            consistency: Some("inconsistent".into()),
            allowed_diff: Some(1.2),
            actual_diff: Some(8.03),
            distance_m: Some(7.0),
            distance_known: Some(true),
            sigma: Some(8.3),
            claimed_weight: Some(204),
            used_weight: Some(0),
            ..Default::default()
        };
        let s = trace_sentence(&r, "node 17", "node 24 (attacker)");
        for needle in
            ["At 612 s node 17", "29.61 °C", "21.58 °C", "allowed 1.20 °C", "7.0 m, measured", "8.3σ", "0 of the 204"]
        {
            assert!(s.contains(needle), "{needle:?} not in {s}");
        }
    }
}
