//! The discrete-event engine: integer µs time, a total and stable event
//! order, and conservative parallel rounds in the manner of Shadow.
//!
//! Every event carries a key `(time, class, node, seq)`; `seq` is handed out
//! when an event enters the queue, in a fixed order, so the order of events
//! never depends on a hash, a thread or the wall clock. A round takes every
//! event that is earlier than `first + lookahead`: no node can affect
//! another inside that window (the lookahead is the smallest latency of any
//! link), so the nodes of a round run in parallel on the engine's own thread
//! pool (`round_pool`) and their outputs are merged at the barrier in node
//! order. With a zero lookahead a round is every event of the earliest
//! `(time, class)`; an event for another node at the same time must then use
//! a later class (a delivery after the tick that caused it). The same events
//! come out in the same order whatever the thread count.

use std::collections::BinaryHeap;

use crate::round_pool::RoundPool;

/// Simulated time, µs.
pub type Micros = u64;

/// Bits of the packed key given to each part.
const TIME_BITS: u32 = 48;
const CLASS_BITS: u32 = 8;
const NODE_BITS: u32 = 24;
const SEQ_BITS: u32 = 48;

/// Latest time the engine can represent (≈ 8.9 years).
pub const MAX_TIME: Micros = (1 << TIME_BITS) - 1;
/// Largest number of nodes.
pub const MAX_NODES: usize = 1 << NODE_BITS;

/// Why the engine refused to go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// An event was scheduled before the event being handled.
    #[error("node {node} scheduled an event at {at} µs (class {class}) while handling {now} µs: that is in the past")]
    Past {
        /// The scheduling node.
        node: u32,
        /// Its current time.
        now: Micros,
        /// The requested time.
        at: Micros,
        /// The requested class.
        class: u8,
    },
    /// An event for another node fell inside the current round's window,
    /// i.e. a link is faster than the engine's lookahead.
    #[error(
        "node {from} scheduled an event for node {to} at {at} µs, inside the round ending at {bound} µs: \
         a link is faster than the lookahead"
    )]
    InsideLookahead {
        /// The scheduling node.
        from: u32,
        /// The target node.
        to: u32,
        /// The requested time.
        at: Micros,
        /// The round's exclusive bound.
        bound: Micros,
    },
    /// A time beyond [`MAX_TIME`].
    #[error("time {0} µs is beyond the engine's range")]
    TimeOverflow(Micros),
    /// A node index beyond the node table.
    #[error("node {0} does not exist")]
    NoSuchNode(u32),
    /// More events than the sequence field can number.
    #[error("event sequence exhausted")]
    SequenceExhausted,
}

/// A packed `(time, class, node, seq)`; comparing the integers compares the
/// tuples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey(u128);

impl EventKey {
    fn new(time: Micros, class: u8, node: u32, seq: u64) -> Self {
        EventKey(
            (u128::from(time) << (CLASS_BITS + NODE_BITS + SEQ_BITS))
                | (u128::from(class) << (NODE_BITS + SEQ_BITS))
                | (u128::from(node) << SEQ_BITS)
                | u128::from(seq),
        )
    }

    /// The event's time.
    pub fn time(self) -> Micros {
        (self.0 >> (CLASS_BITS + NODE_BITS + SEQ_BITS)) as Micros
    }

    /// The event's class.
    pub fn class(self) -> u8 {
        (self.0 >> (NODE_BITS + SEQ_BITS)) as u8
    }

    /// The node that handles it.
    pub fn node(self) -> u32 {
        ((self.0 >> SEQ_BITS) & ((1 << NODE_BITS) - 1)) as u32
    }
}

fn time_class(time: Micros, class: u8) -> u64 {
    (time << CLASS_BITS) | u64::from(class)
}

struct Entry<E> {
    key: EventKey,
    ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed: the heap's top is the earliest key.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key.cmp(&self.key)
    }
}

/// Queued events of one `(time, class)`, in the order they were queued.
/// The queue is a heap of runs rather than of events: the deliveries of
/// one broadcast share a `(time, class)` and enter and leave the heap as
/// one item, and a round takes whole runs (its bound is a `(time, class)`
/// boundary). The order inside a round comes from sorting by key, so the
/// order of equal runs in the heap never shows.
struct Run<E> {
    time_class: u64,
    events: Vec<Entry<E>>,
}

impl<E> PartialEq for Run<E> {
    fn eq(&self, other: &Self) -> bool {
        self.time_class == other.time_class
    }
}
impl<E> Eq for Run<E> {}
impl<E> PartialOrd for Run<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Run<E> {
    /// Reversed: the heap's top is the earliest `(time, class)`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.time_class.cmp(&self.time_class)
    }
}

/// Emptied run buffers kept for reuse; larger ones are freed so that a
/// burst does not pin memory in every spare buffer.
const SPARE_RUNS: usize = 4_096;
const SPARE_RUN_CAPACITY: usize = 64;
/// [`Engine::time_windows`] keeps no window past this many: a width far
/// below the run's length must not grow memory without bound.
const MAX_WINDOWS: usize = 1 << 16;

/// An event produced during a round, queued at the barrier.
struct Out<E> {
    time: Micros,
    class: u8,
    node: u32,
    ev: E,
}

/// What the model sees while handling one event of one node.
pub struct Ctx<'a, E> {
    node: u32,
    now: Micros,
    class: u8,
    /// Exclusive `(time, class)` bound of the round.
    bound: u64,
    bound_time: Micros,
    out: &'a mut Vec<Out<E>>,
    local: &'a mut BinaryHeap<Entry<E>>,
    local_seq: &'a mut u64,
}

impl<E> Ctx<'_, E> {
    /// The node handling the event.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// The event's time.
    pub fn now(&self) -> Micros {
        self.now
    }

    /// Earliest time an event for another node may be scheduled from this
    /// round (the round's end).
    pub fn round_end(&self) -> Micros {
        self.bound_time
    }

    /// Schedules `ev` for `node` at `at` in `class`. Events for the own node
    /// may fall inside the round (they run in it); events for other nodes
    /// must fall at or after the round's end.
    pub fn schedule(&mut self, at: Micros, class: u8, node: u32, ev: E) -> Result<(), EngineError> {
        if at > MAX_TIME {
            return Err(EngineError::TimeOverflow(at));
        }
        let tc = time_class(at, class);
        if tc < time_class(self.now, self.class) {
            return Err(EngineError::Past { node: self.node, now: self.now, at, class });
        }
        if tc < self.bound {
            if node != self.node {
                return Err(EngineError::InsideLookahead { from: self.node, to: node, at, bound: self.bound_time });
            }
            // Local events sort after every queued event of the same
            // (time, class): they were created later.
            let seq = (1 << (SEQ_BITS - 1)) | *self.local_seq;
            *self.local_seq += 1;
            self.local.push(Entry { key: EventKey::new(at, class, node, seq), ev });
            return Ok(());
        }
        self.out.push(Out { time: at, class, node, ev });
        Ok(())
    }
}

/// A simulation: per-node state plus a handler, shared read-only by the
/// threads of a round (and moved to a pool thread for a run).
pub trait Model: Send + Sync {
    /// One node's mutable state.
    type Node: Send;
    /// An event's payload.
    type Event: Send;
    /// Handles one event of one node.
    fn handle(&self, ctx: &mut Ctx<'_, Self::Event>, node: &mut Self::Node, ev: Self::Event)
        -> Result<(), EngineError>;

    /// Fewest events in a round (over at least two nodes) before its nodes
    /// are handed to the thread pool. Handing over costs a few µs, so a
    /// model whose events take nanoseconds wants large rounds, and one whose
    /// events take microseconds gains from parallel rounds of a few events.
    /// Only speed depends on it, never a result.
    const PARALLEL_MIN_EVENTS: usize = 16;

    /// Roughly what an event of `class` costs relative to the others. A
    /// parallel round hands out its costliest nodes first, so the threads
    /// finish together (longest job first). Only speed depends on it.
    fn event_cost(_class: u8) -> u32 {
        1
    }
}

/// Counters of the engine's own work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events handled.
    pub events: u64,
    /// Rounds run.
    pub rounds: u64,
    /// Rounds whose nodes ran on the thread pool.
    pub parallel_rounds: u64,
}

/// Where a sequential run's wall time went, by round shape and event
/// class (see [`Engine::profile_rounds`]): what bounds the speed-up of
/// parallel rounds. With one thread a node's time is its own; on a pool
/// it would include waiting for memory and for the other threads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundProfile {
    /// Wall time inside [`Engine::run_until`], s.
    pub total_s: f64,
    /// Rounds the pool would take (at least
    /// [`Model::PARALLEL_MIN_EVENTS`] events over two or more nodes): wall
    /// time, s.
    pub pooled_s: f64,
    /// Those rounds' shortest possible time on 2 threads, s: per round the
    /// larger of half its node time and its busiest node's time.
    pub pooled_best_2_s: f64,
    /// The same on 4 threads.
    pub pooled_best_4_s: f64,
    /// Sum over those rounds of the busiest node's time, s: no thread
    /// count goes below it.
    pub pooled_busiest_s: f64,
    /// Smaller rounds over several nodes (run sequentially): wall time, s.
    pub small_s: f64,
    /// Rounds of a single node: wall time, s.
    pub single_node_s: f64,
    /// Events and their handling time, s, per event class, in four bands:
    /// under 10 µs, under 100 µs, under 1 ms, 1 ms or more.
    pub by_class: std::collections::BTreeMap<u8, [(u64, f64); 4]>,
}

impl RoundProfile {
    /// The band of an event that took `s` seconds.
    fn band(s: f64) -> usize {
        if s < 10e-6 {
            0
        } else if s < 100e-6 {
            1
        } else if s < 1e-3 {
            2
        } else {
            3
        }
    }

    fn event(&mut self, class: u8, s: f64) {
        let b = &mut self.by_class.entry(class).or_default()[Self::band(s)];
        b.0 += 1;
        b.1 += s;
    }

    /// The shortest possible run on 2 threads with this engine's rounds,
    /// s: pooled rounds at their 2-thread bound, everything else as it was.
    pub fn best_2_thread_s(&self) -> f64 {
        self.total_s - self.pooled_s + self.pooled_best_2_s
    }
}

/// The wall time of the rounds that began in one window of simulated time
/// (see [`Engine::time_windows`]): how a run's cost and speed-up change
/// over its course.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowTime {
    /// Events handled in those rounds.
    pub events: u64,
    /// Their wall time, queue and merge included, s.
    pub wall_s: f64,
    /// While a [`RoundProfile`] is kept: their shortest possible time on 2
    /// threads, s (pooled rounds at their 2-thread bound, the rest as they
    /// were); otherwise 0.
    pub best_2_s: f64,
}

/// One node's event and output buffers, reused across parallel rounds.
type NodeBufs<E> = (Vec<Entry<E>>, Vec<Out<E>>);

/// The engine: a model, its nodes and the event queue.
pub struct Engine<M: Model> {
    model: M,
    nodes: Vec<M::Node>,
    heap: BinaryHeap<Run<M::Event>>,
    spare: Vec<Vec<Entry<M::Event>>>,
    queued: usize,
    seq: u64,
    lookahead: Micros,
    pool: Option<RoundPool>,
    stats: EngineStats,
    now: Micros,
    batch: Vec<Entry<M::Event>>,
    out: Vec<Out<M::Event>>,
    /// Per-node input and output buffers of parallel rounds, for reuse.
    node_bufs: Vec<NodeBufs<M::Event>>,
    local: BinaryHeap<Entry<M::Event>>,
    /// Set by [`Engine::profile_rounds`]; with the node times of the
    /// current round.
    profile: Option<Box<(RoundProfile, Vec<f64>)>>,
    /// Set by [`Engine::time_windows`]: the window width and the windows.
    windows: Option<(Micros, Vec<WindowTime>)>,
}

impl<M: Model> Engine<M> {
    /// An engine over `nodes`, with the given lookahead and thread count
    /// (1 = no pool; no more threads than the machine has cores).
    pub fn new(model: M, nodes: Vec<M::Node>, lookahead: Micros, threads: usize) -> Result<Self, EngineError> {
        if nodes.len() > MAX_NODES {
            return Err(EngineError::NoSuchNode(nodes.len() as u32));
        }
        // The pool's threads wait for rounds awake, so more of them than
        // cores only take turns with the thread that has the round's work.
        let cores = std::thread::available_parallelism().map_or(threads, |n| n.get());
        let pool = RoundPool::new(threads.min(cores));
        Ok(Engine {
            model,
            nodes,
            heap: BinaryHeap::new(),
            spare: Vec::new(),
            queued: 0,
            seq: 0,
            lookahead,
            pool,
            stats: EngineStats::default(),
            now: 0,
            batch: Vec::new(),
            out: Vec::new(),
            node_bufs: Vec::new(),
            local: BinaryHeap::new(),
            profile: None,
            windows: None,
        })
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The model, mutably (between runs only).
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// The nodes.
    pub fn nodes(&self) -> &[M::Node] {
        &self.nodes
    }

    /// The nodes, mutably (between runs only).
    pub fn nodes_mut(&mut self) -> &mut [M::Node] {
        &mut self.nodes
    }

    /// Takes the model and nodes back.
    pub fn into_parts(self) -> (M, Vec<M::Node>) {
        (self.model, self.nodes)
    }

    /// The engine's counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Times every event, node and round from now on (`true`) and keeps a
    /// [`RoundProfile`]; for an engine without a pool only (it has no
    /// effect on one with a pool, whose node times would include waiting).
    /// Costs two clock reads per event. Nothing but the profile depends on
    /// it.
    pub fn profile_rounds(&mut self, on: bool) {
        self.profile = (on && self.pool.is_none()).then(|| Box::new((RoundProfile::default(), Vec::new())));
    }

    /// The profile kept since [`Engine::profile_rounds`].
    pub fn round_profile(&self) -> Option<&RoundProfile> {
        self.profile.as_deref().map(|(p, _)| p)
    }

    /// Times every round from now on and adds it to the window of `width`
    /// µs of simulated time its first event falls in; `None` stops. Works
    /// with or without a pool, at two clock reads per round.
    pub fn time_windows(&mut self, width: Option<Micros>) {
        self.windows = width.filter(|&w| w > 0).map(|w| (w, Vec::new()));
    }

    /// The windows timed since [`Engine::time_windows`], the first from
    /// simulated time 0.
    pub fn window_times(&self) -> &[WindowTime] {
        self.windows.as_ref().map_or(&[], |(_, w)| w)
    }

    /// Time of the last handled event.
    pub fn now(&self) -> Micros {
        self.now
    }

    /// Events waiting.
    pub fn pending(&self) -> usize {
        self.queued
    }

    /// Queues an event from outside the model (initial events, injected
    /// faults). It may not lie before the last handled event.
    pub fn schedule(&mut self, at: Micros, class: u8, node: u32, ev: M::Event) -> Result<(), EngineError> {
        if at > MAX_TIME {
            return Err(EngineError::TimeOverflow(at));
        }
        if at < self.now {
            return Err(EngineError::Past { node, now: self.now, at, class });
        }
        if node as usize >= self.nodes.len() {
            return Err(EngineError::NoSuchNode(node));
        }
        let entry = self.entry(at, class, node, ev)?;
        let mut events = self.spare.pop().unwrap_or_default();
        events.push(entry);
        self.queue(Run { time_class: time_class(at, class), events });
        Ok(())
    }

    /// The queued form of an event: its key takes the next sequence number.
    fn entry(&mut self, at: Micros, class: u8, node: u32, ev: M::Event) -> Result<Entry<M::Event>, EngineError> {
        if self.seq >= (1 << (SEQ_BITS - 1)) {
            return Err(EngineError::SequenceExhausted);
        }
        let key = EventKey::new(at, class, node, self.seq);
        self.seq += 1;
        Ok(Entry { key, ev })
    }

    fn queue(&mut self, run: Run<M::Event>) {
        self.queued += run.events.len();
        self.heap.push(run);
    }

    fn recycle(&mut self, mut events: Vec<Entry<M::Event>>) {
        if events.capacity() <= SPARE_RUN_CAPACITY && self.spare.len() < SPARE_RUNS {
            events.clear();
            self.spare.push(events);
        }
    }

    /// Time of the earliest waiting event.
    pub fn next_time(&self) -> Option<Micros> {
        self.heap.peek().map(|r| r.time_class >> CLASS_BITS)
    }

    /// Runs every event at or before `end`.
    pub fn run_until(&mut self, end: Micros) -> Result<(), EngineError> {
        let start = self.profile.is_some().then(std::time::Instant::now);
        let r = loop {
            match self.round(end) {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let (Some(start), Some(p)) = (start, self.profile.as_deref_mut()) {
            p.0.total_s += start.elapsed().as_secs_f64();
        }
        r
    }

    /// Runs one round; false when nothing is due by `end`.
    pub fn round(&mut self, end: Micros) -> Result<bool, EngineError> {
        let Some(first_tc) = self.heap.peek().map(|r| r.time_class) else { return Ok(false) };
        let first_time = first_tc >> CLASS_BITS;
        if first_time > end {
            return Ok(false);
        }
        let window_start = self.windows.is_some().then(std::time::Instant::now);
        let (bound, bound_time) = if self.lookahead > 0 {
            let t = first_time.saturating_add(self.lookahead).min(end.saturating_add(1));
            (time_class(t, 0), t)
        } else {
            (first_tc + 1, first_time)
        };
        let mut batch = std::mem::take(&mut self.batch);
        while self.heap.peek().is_some_and(|r| r.time_class < bound) {
            if let Some(mut run) = self.heap.pop() {
                self.queued -= run.events.len();
                if batch.is_empty() {
                    std::mem::swap(&mut batch, &mut run.events);
                } else {
                    batch.append(&mut run.events);
                }
                self.recycle(run.events);
            }
        }
        self.stats.rounds += 1;
        let round_events = batch.len() as u64;
        self.stats.events += round_events;
        // A node's events must be contiguous and in key order.
        if !batch.is_sorted_by_key(|e| (e.key.node(), e.key)) {
            batch.sort_unstable_by_key(|e| (e.key.node(), e.key));
        }
        let several_nodes = batch.first().map(|e| e.key.node()) != batch.last().map(|e| e.key.node());
        let poolable = batch.len() >= M::PARALLEL_MIN_EVENTS && several_nodes;
        let round_start = self.profile.is_some().then(std::time::Instant::now);
        // Lent to the round, which also borrows the nodes mutably.
        let pool = if poolable { self.pool.take() } else { None };
        let result = match pool {
            Some(mut pool) => {
                self.stats.parallel_rounds += 1;
                let r = self.run_parallel(&mut pool, &mut batch, bound, bound_time);
                self.pool = Some(pool);
                r
            }
            None => self.run_sequential(&mut batch, bound, bound_time),
        };
        self.batch = batch;
        self.now = self.now.max(first_time);
        // What the profile would save on 2 threads in this round, s.
        let mut saved_2 = 0.0;
        if let (Some(start), Some(p)) = (round_start, self.profile.as_deref_mut()) {
            let (prof, nodes) = &mut *p;
            let wall = start.elapsed().as_secs_f64();
            let busiest = nodes.iter().copied().fold(0.0, f64::max);
            let sum: f64 = nodes.iter().sum();
            if poolable {
                // On k threads: the node time shared out, but no less than
                // the busiest node, plus the round's time outside nodes.
                let best = |k: f64| (sum / k).max(busiest) + (wall - sum).max(0.0);
                prof.pooled_s += wall;
                prof.pooled_busiest_s += busiest;
                prof.pooled_best_2_s += best(2.0);
                prof.pooled_best_4_s += best(4.0);
                saved_2 = wall - best(2.0);
            } else if several_nodes {
                prof.small_s += wall;
            } else {
                prof.single_node_s += wall;
            }
            nodes.clear();
        }
        result?;
        let mut out = std::mem::take(&mut self.out);
        let result = self.merge(&mut out);
        out.clear();
        self.out = out;
        if let (Some(start), Some((width, windows))) = (window_start, self.windows.as_mut()) {
            let wall = start.elapsed().as_secs_f64();
            let i = usize::try_from(first_time / *width).unwrap_or(usize::MAX);
            if windows.len() <= i && i < MAX_WINDOWS {
                windows.resize(i + 1, WindowTime::default());
            }
            if let Some(w) = windows.get_mut(i) {
                w.events += round_events;
                w.wall_s += wall;
                if self.profile.is_some() {
                    w.best_2_s += wall - saved_2;
                }
            }
        }
        result.map(|()| true)
    }

    /// Queues a round's outputs in their barrier order; consecutive events
    /// of one `(time, class)` (a broadcast's deliveries) share a run.
    fn merge(&mut self, out: &mut Vec<Out<M::Event>>) -> Result<(), EngineError> {
        let mut run: Option<Run<M::Event>> = None;
        let mut result = Ok(());
        for o in out.drain(..) {
            if o.node as usize >= self.nodes.len() {
                result = Err(EngineError::NoSuchNode(o.node));
                break;
            }
            let tc = time_class(o.time, o.class);
            let entry = match self.entry(o.time, o.class, o.node, o.ev) {
                Ok(e) => e,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            match &mut run {
                Some(r) if r.time_class == tc => r.events.push(entry),
                _ => {
                    let mut events = self.spare.pop().unwrap_or_default();
                    events.push(entry);
                    if let Some(done) = run.replace(Run { time_class: tc, events }) {
                        self.queue(done);
                    }
                }
            }
        }
        if let Some(done) = run {
            self.queue(done);
        }
        result
    }

    fn run_sequential(
        &mut self,
        batch: &mut Vec<Entry<M::Event>>,
        bound: u64,
        bound_time: Micros,
    ) -> Result<(), EngineError> {
        let mut events = batch.drain(..).peekable();
        while let Some(first) = events.next() {
            let node_idx = first.key.node();
            let Some(node) = self.nodes.get_mut(node_idx as usize) else {
                return Err(EngineError::NoSuchNode(node_idx));
            };
            let mut pending = Some(first);
            let mut local_seq = 0;
            let node_start = self.profile.is_some().then(std::time::Instant::now);
            loop {
                let next = match (pending.take(), self.local.peek()) {
                    (Some(p), Some(l)) if l.key < p.key => {
                        pending = Some(p);
                        self.local.pop()
                    }
                    (Some(p), _) => Some(p),
                    (None, Some(_)) => self.local.pop(),
                    (None, None) => None,
                };
                let Some(e) = next else { break };
                let mut ctx = Ctx {
                    node: node_idx,
                    now: e.key.time(),
                    class: e.key.class(),
                    bound,
                    bound_time,
                    out: &mut self.out,
                    local: &mut self.local,
                    local_seq: &mut local_seq,
                };
                let class = e.key.class();
                let event_start = self.profile.is_some().then(std::time::Instant::now);
                self.model.handle(&mut ctx, node, e.ev)?;
                if let (Some(start), Some(p)) = (event_start, self.profile.as_deref_mut()) {
                    p.0.event(class, start.elapsed().as_secs_f64());
                }
                if pending.is_none() && events.peek().is_some_and(|n| n.key.node() == node_idx) {
                    pending = events.next();
                }
            }
            if let (Some(start), Some(p)) = (node_start, self.profile.as_deref_mut()) {
                p.1.push(start.elapsed().as_secs_f64());
            }
        }
        Ok(())
    }

    fn run_parallel(
        &mut self,
        pool: &mut RoundPool,
        batch: &mut Vec<Entry<M::Event>>,
        bound: u64,
        bound_time: Micros,
    ) -> Result<(), EngineError> {
        struct Work<'a, N, E> {
            node_idx: u32,
            node: &'a mut N,
            events: Vec<Entry<E>>,
            out: Vec<Out<E>>,
            result: Result<(), EngineError>,
            cost: u32,
        }
        let spare = &mut self.node_bufs;
        let mut work: Vec<Work<'_, M::Node, M::Event>> = Vec::new();
        let mut rest: &mut [M::Node] = &mut self.nodes;
        let mut base = 0usize;
        for e in batch.drain(..) {
            let idx = e.key.node() as usize;
            if let Some(w) = work.last_mut() {
                if w.node_idx as usize == idx {
                    w.cost = w.cost.saturating_add(M::event_cost(e.key.class()));
                    w.events.push(e);
                    continue;
                }
            }
            let tail = std::mem::take(&mut rest);
            let Some((node, after)) = tail.get_mut(idx - base..).and_then(|s| s.split_first_mut()) else {
                return Err(EngineError::NoSuchNode(idx as u32));
            };
            rest = after;
            base = idx + 1;
            let (mut events, out) = spare.pop().unwrap_or_default();
            let cost = M::event_cost(e.key.class());
            events.push(e);
            work.push(Work { node_idx: idx as u32, node, events, out, result: Ok(()), cost });
        }
        let model = &self.model;
        let run = |w: &mut Work<'_, M::Node, M::Event>| {
            let mut local: BinaryHeap<Entry<M::Event>> = BinaryHeap::new();
            let mut local_seq = 0;
            let mut queued = w.events.drain(..).peekable();
            loop {
                let take_local = match (queued.peek(), local.peek()) {
                    (Some(q), Some(l)) => l.key < q.key,
                    (None, Some(_)) => true,
                    (_, None) => false,
                };
                let next = if take_local { local.pop() } else { queued.next() };
                let Some(e) = next else { break };
                let mut ctx = Ctx {
                    node: w.node_idx,
                    now: e.key.time(),
                    class: e.key.class(),
                    bound,
                    bound_time,
                    out: &mut w.out,
                    local: &mut local,
                    local_seq: &mut local_seq,
                };
                if let Err(err) = model.handle(&mut ctx, w.node, e.ev) {
                    w.result = Err(err);
                    return;
                }
            }
        };
        // Costliest first; the outputs are still merged in node order.
        let mut order: Vec<&mut Work<'_, M::Node, M::Event>> = work.iter_mut().collect();
        order.sort_by_key(|w| std::cmp::Reverse(w.cost));
        pool.for_each(&mut order, &|w: &mut &mut Work<'_, M::Node, M::Event>| run(w));
        let mut result = Ok(());
        for mut w in work {
            if result.is_ok() {
                result = w.result;
                if result.is_ok() {
                    self.out.append(&mut w.out);
                }
            }
            w.events.clear();
            w.out.clear();
            if spare.len() < SPARE_RUNS {
                spare.push((w.events, w.out));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ring model of the engine bench: each tick re-arms itself 1 s later
    /// and delivers to the next `k` nodes at the same time (class 1).
    struct Ring {
        n: u32,
        k: u32,
        latency: Micros,
    }

    #[derive(Default)]
    struct RingNode {
        ticks: u64,
        received: u64,
        /// A running digest of what was received, in order.
        digest: u64,
    }

    enum RingEv {
        Tick,
        Msg(u32),
    }

    impl Model for Ring {
        type Node = RingNode;
        type Event = RingEv;
        /// Small rounds go to the pool too, so that tests exercise it.
        const PARALLEL_MIN_EVENTS: usize = 2;
        fn handle(&self, ctx: &mut Ctx<'_, RingEv>, node: &mut RingNode, ev: RingEv) -> Result<(), EngineError> {
            match ev {
                RingEv::Tick => {
                    node.ticks += 1;
                    ctx.schedule(ctx.now() + 1_000_000, 0, ctx.node(), RingEv::Tick)?;
                    for j in 1..=self.k {
                        let to = (ctx.node() + j) % self.n;
                        ctx.schedule(ctx.now() + self.latency, 1, to, RingEv::Msg(ctx.node()))?;
                    }
                }
                RingEv::Msg(from) => {
                    node.received += 1;
                    node.digest = node.digest.wrapping_mul(1_000_003).wrapping_add(u64::from(from) ^ ctx.now());
                }
            }
            Ok(())
        }
    }

    fn ring(n: u32, latency: Micros, threads: usize) -> Engine<Ring> {
        let nodes = (0..n).map(|_| RingNode::default()).collect();
        let mut e = Engine::new(Ring { n, k: 8, latency }, nodes, latency, threads).unwrap();
        for i in 0..n {
            e.schedule(u64::from(i) * 1_000_000 / u64::from(n), 0, i, RingEv::Tick).unwrap();
        }
        e
    }

    #[test]
    fn key_packs_in_tuple_order() {
        let a = EventKey::new(5, 1, 7, 3);
        assert_eq!((a.time(), a.class(), a.node()), (5, 1, 7));
        assert!(EventKey::new(5, 1, 7, 3) < EventKey::new(5, 1, 8, 0));
        assert!(EventKey::new(5, 1, 9, 9) < EventKey::new(5, 2, 0, 0));
        assert!(EventKey::new(5, 9, 9, 9) < EventKey::new(6, 0, 0, 0));
    }

    #[test]
    fn zero_lookahead_ring_counts_every_tick_and_delivery() {
        let mut e = ring(100, 0, 1);
        e.run_until(10_000_000 - 1).unwrap();
        let ticks: u64 = e.nodes().iter().map(|n| n.ticks).sum();
        let recv: u64 = e.nodes().iter().map(|n| n.received).sum();
        assert_eq!(ticks, 1_000);
        assert_eq!(recv, 8_000);
        assert_eq!(e.stats().events, 9_000);
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let digests = |threads| {
            let mut e = ring(300, 2_000, threads);
            e.run_until(5_000_000).unwrap();
            assert_eq!(e.stats().parallel_rounds > 0, threads > 1);
            (e.nodes().iter().map(|n| (n.ticks, n.received, n.digest)).collect::<Vec<_>>(), e.stats().events)
        };
        let one = digests(1);
        assert_eq!(one, digests(2));
        assert_eq!(one, digests(4));
        assert!(one.1 > 10_000);
    }

    #[test]
    fn a_round_profile_accounts_for_every_event_and_bounds_the_speed_up() {
        let mut e = ring(300, 2_000, 1);
        e.profile_rounds(true);
        e.run_until(5_000_000).unwrap();
        let p = e.round_profile().expect("profiled").clone();
        let counted: u64 = p.by_class.values().flat_map(|b| b.iter().map(|x| x.0)).sum();
        assert_eq!(counted, e.stats().events);
        assert_eq!(p.by_class.keys().copied().collect::<Vec<_>>(), vec![0, 1], "ticks, deliveries");
        // Nested clock reads: node times fit in their round, rounds in the run.
        assert!(p.pooled_s > 0.0 && p.pooled_s + p.small_s + p.single_node_s <= p.total_s);
        assert!(p.pooled_busiest_s <= p.pooled_best_4_s && p.pooled_best_4_s <= p.pooled_best_2_s);
        assert!(p.pooled_best_2_s <= p.pooled_s);
        assert!(p.best_2_thread_s() <= p.total_s);
        // Windows of 1 s: every event in one, and their 2-thread bound adds
        // up to the profile's (less queue and merge outside rounds).
        let mut e = ring(300, 2_000, 1);
        e.profile_rounds(true);
        e.time_windows(Some(1_000_000));
        e.run_until(5_000_000).unwrap();
        let p = e.round_profile().expect("profiled");
        let w = e.window_times();
        assert_eq!(w.len(), 5, "rounds begin in 0..5 s");
        assert_eq!(w.iter().map(|w| w.events).sum::<u64>(), e.stats().events);
        assert!(w.iter().all(|w| w.events > 0 && w.best_2_s > 0.0 && w.best_2_s <= w.wall_s));
        let (wall, best_2) = w.iter().fold((0.0, 0.0), |(a, b), w| (a + w.wall_s, b + w.best_2_s));
        assert!(wall <= p.total_s && best_2 <= p.best_2_thread_s());
        assert!((wall - best_2 - (p.pooled_s - p.pooled_best_2_s)).abs() < 1e-9);
        // A pool's node times include waiting: no profile there.
        let mut e = ring(300, 2_000, 2);
        e.profile_rounds(true);
        e.time_windows(Some(400_000));
        e.run_until(1_000_000).unwrap();
        assert!(e.round_profile().is_none());
        // but its windows are timed, with no bound.
        assert_eq!(e.window_times().len(), 3);
        assert_eq!(e.window_times().iter().map(|w| w.events).sum::<u64>(), e.stats().events);
        assert!(e.window_times().iter().all(|w| w.wall_s > 0.0 && w.best_2_s == 0.0));
    }

    #[test]
    fn scheduling_into_the_past_or_inside_the_window_is_an_error() {
        struct Bad(u8);
        impl Model for Bad {
            type Node = ();
            type Event = ();
            fn handle(&self, ctx: &mut Ctx<'_, ()>, _: &mut (), _: ()) -> Result<(), EngineError> {
                match self.0 {
                    0 => ctx.schedule(ctx.now() - 1, 0, 0, ()),
                    _ => ctx.schedule(ctx.now() + 10, 0, 1, ()),
                }
            }
        }
        let mut e = Engine::new(Bad(0), vec![(), ()], 100, 1).unwrap();
        e.schedule(50, 0, 0, ()).unwrap();
        assert!(matches!(e.run_until(1_000), Err(EngineError::Past { at: 49, .. })));
        let mut e = Engine::new(Bad(1), vec![(), ()], 100, 1).unwrap();
        e.schedule(50, 0, 0, ()).unwrap();
        assert!(matches!(e.run_until(1_000), Err(EngineError::InsideLookahead { to: 1, at: 60, .. })));
        let mut e = Engine::new(Bad(0), vec![()], 100, 1).unwrap();
        e.schedule(50, 0, 0, ()).unwrap();
        e.run_until(1_000).unwrap_err();
        assert!(matches!(e.schedule(10, 0, 0, ()), Err(EngineError::Past { .. })));
        assert!(matches!(e.schedule(60, 0, 3, ()), Err(EngineError::NoSuchNode(3))));
    }

    #[test]
    fn events_queued_for_one_time_by_different_rounds_run_in_queue_order() {
        // Nodes 1..=6 each, in its own round (t = 10 µs apart), send one
        // message to node 0 at t = 1,000: six runs of the same (time,
        // class) meet in the heap and must reach node 0 in sending order,
        // with the external one queued last coming last.
        struct Fan;
        impl Model for Fan {
            type Node = Vec<u32>;
            type Event = u32;
            fn handle(&self, ctx: &mut Ctx<'_, u32>, n: &mut Vec<u32>, ev: u32) -> Result<(), EngineError> {
                if ctx.node() == 0 {
                    n.push(ev);
                    Ok(())
                } else {
                    ctx.schedule(1_000, 1, 0, ctx.node())
                }
            }
        }
        for threads in [1, 2] {
            let mut e = Engine::new(Fan, vec![Vec::new(); 7], 5, threads).unwrap();
            for i in [3u32, 1, 6, 2, 5, 4] {
                e.schedule(u64::from(i) * 10, 0, i, 0).unwrap();
            }
            e.run_until(100).unwrap();
            assert_eq!(e.pending(), 6);
            e.schedule(1_000, 1, 0, 99).unwrap();
            e.run_until(2_000).unwrap();
            assert_eq!(e.nodes()[0], vec![1, 2, 3, 4, 5, 6, 99], "threads {threads}");
            assert_eq!(e.pending(), 0);
        }
    }

    #[test]
    fn own_events_inside_the_window_run_in_the_same_round_in_order() {
        struct Chain;
        impl Model for Chain {
            type Node = Vec<Micros>;
            type Event = ();
            fn handle(&self, ctx: &mut Ctx<'_, ()>, n: &mut Vec<Micros>, _: ()) -> Result<(), EngineError> {
                n.push(ctx.now());
                if n.len() < 5 {
                    ctx.schedule(ctx.now() + 10, 0, ctx.node(), ())?;
                }
                Ok(())
            }
        }
        let mut e = Engine::new(Chain, vec![Vec::new()], 1_000, 1).unwrap();
        e.schedule(0, 0, 0, ()).unwrap();
        e.run_until(10_000).unwrap();
        assert_eq!(e.nodes()[0], vec![0, 10, 20, 30, 40]);
        assert_eq!(e.stats().rounds, 1);
    }
}
