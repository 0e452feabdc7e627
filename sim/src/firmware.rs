//! What the engine drives on each simulated device: the `Firmware` trait,
//! `krill-core`'s node behind it, and a no-immunity baseline to compare with.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use krill_core::crypto::Crypto;
use krill_core::gateway::DustKey;
use krill_core::lifecycle::{OwnState, SubjectState};
use krill_core::node::{Action, Node, NodeConfig, Now, Rng, Role};
use krill_core::persist::{
    restore, Flash, FlashError, Layout, RestoreReport, Restored, Status, Store, StoredProfile, StoredRelative,
    SubjectStanding, ERASED, ESP32_C3_LAYOUT, NRF52840_LAYOUT, SECTOR_SIZE,
};
use krill_core::types::{DeviceId, PublicKey, QuantityType, Reading, Signature};
use krill_replay::{Capacities, ConfigSpec, CryptoSpec, Entry, Header, Recorder};

use crate::rng::SimRng;

/// A device's software as the simulator sees it: inputs in, actions out.
/// Every method is deterministic in its arguments and the firmware's state.
pub trait Firmware: Send {
    /// The device id it signs with.
    fn id(&self) -> DeviceId;
    /// Its role.
    fn role(&self) -> Role;
    /// Monotonic ms of the next timer.
    fn next_deadline_ms(&self) -> u64;
    /// Runs due timers.
    fn handle_timers(&mut self, now: Now, rng: &mut SimRng, out: &mut Vec<Action>);
    /// A received frame.
    fn handle_frame(&mut self, now: Now, bytes: &[u8], rssi: i8, hops: u8, out: &mut Vec<Action>);
    /// An own sensor reading (answer to [`Action::ReadSensor`]).
    fn handle_reading(&mut self, now: Now, quantity: QuantityType, reading: Reading, out: &mut Vec<Action>);
    /// A LoRa uplink received by a gateway; others ignore it.
    fn handle_uplink(&mut self, _now: Now, _bytes: &[u8], _out: &mut Vec<Action>) {}
    /// A LoRa downlink ([`Action::LoraDownlink`]) received by a Dust node;
    /// others ignore it.
    fn handle_downlink(&mut self, _now: Now, _bytes: &[u8], _out: &mut Vec<Action>) {}
    /// A TraceBatch delivered to a Full node; others ignore it.
    fn handle_batch(&mut self, _now: Now, _bytes: &[u8], _out: &mut Vec<Action>) {}
    /// Takes the batch announced by [`Action::SubmitBatch`].
    fn take_batch(&mut self, _buf: &mut [u8]) -> Option<usize> {
        None
    }
    /// The local consensus estimate of `quantity` (reading units), if any.
    fn consensus(&mut self, quantity: QuantityType, now: Now) -> Option<f32>;
    /// What this device thinks of `subject`.
    fn subject_state(&self, subject: DeviceId) -> Option<SubjectState>;
    /// Its own lifecycle state.
    fn own_state(&self) -> OwnState;
    /// Lets it verify `key`'s frames (the deployment's enrolled keys).
    fn register_peer(&mut self, key: PublicKey);
    /// Gateway: serves this Dust device.
    fn register_dust(&mut self, _device: DeviceId, _key: DustKey) {}
    /// Accepts `gateway`'s vouched traces for `dust`.
    fn register_dust_served(&mut self, _dust: DeviceId, _gateway: DeviceId) {}
    /// Starts an ES-10.2 phase-3 time sync with `source`; the answer comes
    /// back as [`Action::ClockOffset`] when its response arrives.
    fn request_time_sync(&mut self, _now: Now, _source: DeviceId, _rng: &mut SimRng, _out: &mut Vec<Action>) {}
    /// Power came back after a crash: boot again from whatever the flash
    /// holds (ES-14.3). Returns a one-line account of what was restored.
    fn reboot(&mut self, _now: Now) -> Result<String, String> {
        Err("this firmware keeps no flash; it restarts empty".into())
    }
    /// Flips `bytes` random bytes of the persisted flash; returns how many
    /// were flipped.
    fn corrupt_flash(&mut self, _rng: &mut SimRng, _bytes: u32) -> u32 {
        0
    }
    /// What it wrote to its flash so far; `None` if it keeps none.
    fn flash_stats(&self) -> Option<FlashStats> {
        None
    }
    /// Whether it passes on `frame`, which its BLE Mesh relay would
    /// rebroadcast (ES-12.2); an honest device always does.
    fn relays(&mut self, _now: Now, _frame: &[u8]) -> bool {
        true
    }
    /// Starts recording every call into the node as a replay log (the
    /// format the QEMU image replays), from boot: `crypto` and
    /// `identity_seed` let a replayer rebuild the same keys.
    fn start_recording(&mut self, _crypto: CryptoSpec, _identity_seed: [u8; 32]) -> Result<(), String> {
        Err("only krill-core's node can be recorded (not the baseline firmware)".into())
    }
    /// The log recorded since [`Firmware::start_recording`]; `None` if
    /// nothing was recorded.
    fn finish_recording(&mut self) -> Option<Result<RecordedLog, String>> {
        None
    }
}

/// A node's recorded input log (see [`Firmware::start_recording`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedLog {
    /// The log, in `krill-replay`'s format.
    pub bytes: Vec<u8>,
    /// Calls it holds.
    pub entries: u64,
    /// Actions the node emitted during them.
    pub actions: u64,
    /// Why it ends before the run did, if it does.
    pub cut_short: Option<String>,
}

/// Replays `log` on the host and checks that the node emits exactly the
/// actions it emitted during the run (count and digest).
pub fn verify_recording(log: &RecordedLog) -> Result<krill_replay::Report, String> {
    let report = krill_replay::replay(&log.bytes, |_, _| {}).map_err(|e| format!("the log does not replay: {e:?}"))?;
    if !report.matches_recording() || report.actions != log.actions {
        return Err(format!("{}", krill_replay::Verdict(&report)));
    }
    Ok(report)
}

/// The RNG of calls that draw nothing.
struct NoDraws;

impl Rng for NoDraws {
    fn next_u32(&mut self) -> u32 {
        0
    }
}

/// Profiles a reboot can bring back: a baseline and a running profile for
/// each of a Nano's `MAX_NEIGHBORS` subjects.
const MAX_STORED_PROFILES: usize = 2 * krill_core::types::MAX_NEIGHBORS;
/// Stack of the thread a reboot restores on: a Nano and its DAG are built by
/// value, which overflows a pool worker's default stack in debug builds.
const RESTORE_STACK: usize = 64 << 20;

/// The signing key shared by a node and the nodes its reboots build: a board
/// re-derives the same key from its PUF at every boot, and sharing it here
/// spares every `Crypto` a `Clone`. The mutex is never contended (a node runs
/// on one thread at a time).
pub struct SharedCrypto<C>(Arc<Mutex<C>>);

impl<C> Clone for SharedCrypto<C> {
    fn clone(&self) -> Self {
        SharedCrypto(Arc::clone(&self.0))
    }
}

impl<C: Crypto> SharedCrypto<C> {
    fn with<T>(&self, f: impl FnOnce(&C) -> T) -> T {
        f(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<C: Crypto> Crypto for SharedCrypto<C> {
    fn device_id(&self) -> DeviceId {
        self.with(|c| c.device_id())
    }
    fn public_key(&self) -> PublicKey {
        self.with(|c| c.public_key())
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        self.with(|c| c.sign(msg))
    }
    fn verify(&self, signer: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
        self.with(|c| c.verify(signer, msg, sig))
    }
}

/// How much a node wrote to its flash, and how often each kind of
/// persistence ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlashStats {
    /// Bytes programmed.
    pub bytes_programmed: u64,
    /// Sector erases.
    pub sector_erases: u64,
    /// Erases of the most-erased sector (NOR endurance ≈ 100 000).
    pub max_sector_erases: u32,
    /// Critical-state journal records written (ES-14.3 item 1).
    pub state_saves: u64,
    /// DAG entries appended (item 2).
    pub dag_appends: u64,
    /// DAG compactions the node asked for (appends that overflow the log
    /// compact inside `record_dag` and are not counted here).
    pub dag_compactions: u64,
    /// Profile images written (item 3).
    pub profile_saves: u64,
    /// Persist actions that failed; the previous copy stays valid.
    pub write_errors: u64,
    /// Boots from flash.
    pub reboots: u32,
}

/// Sectors a [`SimFlash`] keeps in memory after writing to them: a board's
/// writers work on a few at a time (the DAG log's tail, the state journal,
/// an image being written). Older sectors go to the spill file.
const HOT_SECTORS: usize = 4;

/// One sector of a [`SimFlash`].
#[derive(Debug)]
enum Sector {
    /// Every byte 0xFF; holds no memory.
    Erased,
    /// Written lately, or kept because the spill file could not take it.
    Ram(Box<[u8; SECTOR_SIZE]>),
    /// In this slot of the [`Spill`] file.
    Spilled(u32),
}

/// Where sectors that a simulated board has not written lately wait: one
/// unlinked temporary file per process, in 4 KiB slots reused through a
/// free list. A day of a thousand Nanos keeps about 0.7 GB of DAG images in
/// their A/B banks that only a reboot reads back; in memory they would
/// double the run's footprint (issue #4: peak RSS ≤ 1 GiB).
struct Spill {
    file: std::fs::File,
    free: Vec<u32>,
    next: u32,
}

impl Spill {
    /// The process's spill file; `None` if none could be created (every
    /// sector then stays in memory).
    fn get() -> Option<&'static Mutex<Spill>> {
        static SPILL: OnceLock<Option<Mutex<Spill>>> = OnceLock::new();
        SPILL.get_or_init(|| Spill::create().ok().map(Mutex::new)).as_ref()
    }

    fn create() -> std::io::Result<Spill> {
        static NAMES: AtomicU64 = AtomicU64::new(0);
        let name = format!("krill-simflash-{}-{}", std::process::id(), NAMES.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        // Unlinked, the file lives as long as the process and no longer.
        std::fs::remove_file(&path)?;
        Ok(Spill { file, free: Vec::new(), next: 0 })
    }

    fn lock() -> Option<MutexGuard<'static, Spill>> {
        Spill::get().map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Stores `data`; `None` if it could not (the caller keeps it).
    fn put(data: &[u8; SECTOR_SIZE]) -> Option<u32> {
        let mut sp = Spill::lock()?;
        let slot = match sp.free.pop() {
            Some(s) => s,
            None => {
                let s = sp.next;
                sp.next = sp.next.checked_add(1)?;
                s
            }
        };
        let at = SeekFrom::Start(u64::from(slot) * SECTOR_SIZE as u64);
        match (&sp.file).seek(at).and_then(|_| (&sp.file).write_all(data)) {
            Ok(()) => Some(slot),
            Err(_) => {
                sp.free.push(slot);
                None
            }
        }
    }

    /// Reads `buf.len()` bytes at `at` of `slot`.
    fn read(slot: u32, at: usize, buf: &mut [u8]) -> Result<(), FlashError> {
        let sp = Spill::lock().ok_or(FlashError::Device)?;
        // A host read failure is the simulated chip's fault as far as the
        // node can tell; it never happens on a healthy disk.
        let at = SeekFrom::Start(u64::from(slot) * SECTOR_SIZE as u64 + at as u64);
        (&sp.file).seek(at).and_then(|_| (&sp.file).read_exact(buf)).map_err(|_| FlashError::Device)
    }

    fn release(slot: u32) {
        if let Some(mut sp) = Spill::lock() {
            sp.free.push(slot);
        }
    }
}

/// A NOR flash the size of a board's chip that keeps only the sectors
/// holding data, so that a thousand simulated ESP32-C3s do not need 4 MB of
/// RAM each, and only the [`HOT_SECTORS`] written last in memory: the rest
/// is in a spill file until it is read or written again. Same rules as
/// `krill_core::persist::RamFlash` (writes only clear bits, erases are
/// whole aligned sectors; tested against it); it adds wear counters and the
/// bit flips of [`Firmware::corrupt_flash`].
#[derive(Debug)]
pub struct SimFlash {
    sectors: Vec<Sector>,
    erases: Vec<u32>,
    programmed: u64,
    /// Sectors in memory, written last at the end.
    hot: Vec<usize>,
}

impl Clone for SimFlash {
    /// A copy with every sector in memory: a spill slot has one owner.
    fn clone(&self) -> Self {
        let sectors = (0..self.sectors.len())
            .map(|i| match &self.sectors[i] {
                Sector::Erased => Sector::Erased,
                Sector::Ram(b) => Sector::Ram(b.clone()),
                Sector::Spilled(_) => {
                    let mut b = Box::new([ERASED; SECTOR_SIZE]);
                    match self.read_sector(i, 0, &mut b[..]) {
                        Ok(()) => Sector::Ram(b),
                        // Unreadable on the host: the copy reads as a dead chip would.
                        Err(_) => Sector::Ram(Box::new([0; SECTOR_SIZE])),
                    }
                }
            })
            .collect();
        SimFlash { sectors, erases: self.erases.clone(), programmed: self.programmed, hot: self.hot.clone() }
    }
}

impl Drop for SimFlash {
    fn drop(&mut self) {
        for s in &self.sectors {
            if let Sector::Spilled(slot) = s {
                Spill::release(*slot);
            }
        }
    }
}

impl SimFlash {
    /// An erased device of `size` bytes (rounded down to whole sectors).
    pub fn new(size: u32) -> Self {
        let n = size as usize / SECTOR_SIZE;
        SimFlash {
            sectors: (0..n).map(|_| Sector::Erased).collect(),
            erases: vec![0; n],
            programmed: 0,
            hot: Vec::with_capacity(HOT_SECTORS + 1),
        }
    }

    /// Bytes programmed so far.
    pub fn bytes_programmed(&self) -> u64 {
        self.programmed
    }

    /// Sector erases so far, and those of the most-erased sector.
    pub fn erases(&self) -> (u64, u32) {
        (self.erases.iter().map(|&e| u64::from(e)).sum(), self.erases.iter().copied().max().unwrap_or(0))
    }

    /// Sectors holding data: (in memory, in the spill file).
    pub fn resident_sectors(&self) -> (usize, usize) {
        let ram = self.sectors.iter().filter(|s| matches!(s, Sector::Ram(_))).count();
        let spilled = self.sectors.iter().filter(|s| matches!(s, Sector::Spilled(_))).count();
        (ram, spilled)
    }

    /// Offsets of every byte that is not erased, in address order.
    pub fn data_offsets(&self) -> Vec<u32> {
        let mut v = Vec::new();
        let mut buf = [ERASED; SECTOR_SIZE];
        for i in 0..self.sectors.len() {
            if matches!(self.sectors[i], Sector::Erased) || self.read_sector(i, 0, &mut buf).is_err() {
                continue;
            }
            let base = (i * SECTOR_SIZE) as u32;
            v.extend(buf.iter().enumerate().filter(|(_, &b)| b != ERASED).map(|(j, _)| base + j as u32));
        }
        v
    }

    /// Flips one bit, as a worn or disturbed cell would; out of range is a no-op.
    pub fn flip_bit(&mut self, offset: u32, bit: u8) {
        let (i, j) = (offset as usize / SECTOR_SIZE, offset as usize % SECTOR_SIZE);
        if i < self.sectors.len() {
            if let Ok(s) = self.sector_mut(i) {
                s[j] ^= 1 << (bit & 7);
            }
        }
    }

    /// `buf.len()` bytes at `at` of sector `i`, wherever it is.
    fn read_sector(&self, i: usize, at: usize, buf: &mut [u8]) -> Result<(), FlashError> {
        match &self.sectors[i] {
            Sector::Erased => buf.fill(ERASED),
            Sector::Ram(s) => buf.copy_from_slice(&s[at..at + buf.len()]),
            Sector::Spilled(slot) => Spill::read(*slot, at, buf)?,
        }
        Ok(())
    }

    /// Sector `i` in memory for writing (an erased one materialised): it
    /// becomes the newest hot sector, and the oldest beyond
    /// [`HOT_SECTORS`] goes to the spill file.
    fn sector_mut(&mut self, i: usize) -> Result<&mut [u8; SECTOR_SIZE], FlashError> {
        match self.sectors[i] {
            Sector::Ram(_) => {}
            Sector::Erased => self.sectors[i] = Sector::Ram(Box::new([ERASED; SECTOR_SIZE])),
            Sector::Spilled(slot) => {
                let mut b = Box::new([ERASED; SECTOR_SIZE]);
                Spill::read(slot, 0, &mut b[..])?;
                Spill::release(slot);
                self.sectors[i] = Sector::Ram(b);
            }
        }
        if self.hot.last() != Some(&i) {
            self.hot.retain(|&h| h != i);
            self.hot.push(i);
            if self.hot.len() > HOT_SECTORS {
                let cold = self.hot.remove(0);
                if let Sector::Ram(b) = &self.sectors[cold] {
                    if let Some(slot) = Spill::put(b) {
                        self.sectors[cold] = Sector::Spilled(slot);
                    }
                }
            }
        }
        match &mut self.sectors[i] {
            Sector::Ram(b) => Ok(b),
            _ => Err(FlashError::Device),
        }
    }

    /// `(sector, offset in it, length)` pieces of `len` bytes at `offset`,
    /// computed as they are walked (every record write reads and writes a
    /// few: no allocation).
    fn pieces(&self, offset: u32, len: usize) -> Result<Pieces, FlashError> {
        let end = (offset as usize).checked_add(len).ok_or(FlashError::OutOfBounds)?;
        if end > self.sectors.len() * SECTOR_SIZE {
            return Err(FlashError::OutOfBounds);
        }
        Ok(Pieces { at: offset as usize, end })
    }

    /// Whether programming `data` at `at` of sector `i` needs no 0 → 1 bit.
    fn programmable(&self, i: usize, at: usize, data: &[u8]) -> Result<bool, FlashError> {
        let fits = |old: &[u8]| old.iter().zip(data).all(|(old, new)| old & new == *new);
        Ok(match &self.sectors[i] {
            Sector::Erased => true,
            Sector::Ram(s) => fits(&s[at..at + data.len()]),
            Sector::Spilled(slot) => {
                let mut old = [ERASED; SECTOR_SIZE];
                Spill::read(*slot, at, &mut old[..data.len()])?;
                fits(&old[..data.len()])
            }
        })
    }
}

/// See [`SimFlash::pieces`].
struct Pieces {
    at: usize,
    end: usize,
}

impl Iterator for Pieces {
    type Item = (usize, usize, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.end {
            return None;
        }
        let at = self.at;
        let n = (SECTOR_SIZE - at % SECTOR_SIZE).min(self.end - at);
        self.at += n;
        Some((at / SECTOR_SIZE, at % SECTOR_SIZE, n))
    }
}

impl Flash for SimFlash {
    fn capacity(&self) -> u32 {
        (self.sectors.len() * SECTOR_SIZE) as u32
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        let mut k = 0;
        for (i, j, n) in self.pieces(offset, buf.len())? {
            self.read_sector(i, j, &mut buf[k..k + n])?;
            k += n;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        let mut k = 0;
        for (i, j, n) in self.pieces(offset, data.len())? {
            if !self.programmable(i, j, &data[k..k + n])? {
                return Err(FlashError::NotErased);
            }
            k += n;
        }
        k = 0;
        for (i, j, n) in self.pieces(offset, data.len())? {
            let s = self.sector_mut(i)?;
            s[j..j + n].iter_mut().zip(&data[k..k + n]).for_each(|(old, new)| *old &= *new);
            k += n;
        }
        self.programmed += data.len() as u64;
        Ok(())
    }

    fn erase(&mut self, sector_offset: u32) -> Result<(), FlashError> {
        if !(sector_offset as usize).is_multiple_of(SECTOR_SIZE) {
            return Err(FlashError::Unaligned);
        }
        let i = sector_offset as usize / SECTOR_SIZE;
        let slot = self.sectors.get_mut(i).ok_or(FlashError::OutOfBounds)?;
        if let Sector::Spilled(s) = std::mem::replace(slot, Sector::Erased) {
            Spill::release(s);
        }
        self.hot.retain(|&h| h != i);
        self.erases[i] = self.erases[i].saturating_add(1);
        Ok(())
    }
}

/// `krill-core`'s node on a simulated board: it carries out the node's
/// persist actions on a [`SimFlash`] laid out like the board's chip (an
/// ESP32-C3 for Nano, Gateway and Full, an nRF52840 for Dust) and reboots
/// from it (ES-14.3). `N`, `D`, `G`, `B` are the node's capacities.
pub struct CoreFirmware<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> {
    node: Box<Node<SharedCrypto<C>, N, D, G, B>>,
    cfg: NodeConfig,
    crypto: SharedCrypto<C>,
    first_query_id: u32,
    /// What the board re-reads from its provisioning at every boot.
    peers: Vec<PublicKey>,
    dust: Vec<(DeviceId, DustKey)>,
    served: Vec<(DeviceId, DeviceId)>,
    layout: &'static Layout,
    flash: SimFlash,
    store: Store,
    stats: FlashStats,
    last_restore: Option<RestoreReport>,
    boot: Now,
    called: bool,
    recorder: Option<Recorder>,
    recorded: Option<Result<RecordedLog, String>>,
    /// The batch the recorder took for the node's last `SubmitBatch`.
    recorded_batch: Option<Vec<u8>>,
}

impl<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize> CoreFirmware<C, N, D, G, B> {
    /// A freshly booted node with an erased flash.
    pub fn new(cfg: NodeConfig, crypto: C, now: Now, first_query_id: u32) -> Self {
        let crypto = SharedCrypto(Arc::new(Mutex::new(crypto)));
        let layout = if cfg.role == Role::Dust { &NRF52840_LAYOUT } else { &ESP32_C3_LAYOUT };
        let mut flash = SimFlash::new(layout.flash_size);
        // An erased flash restores as blank everywhere; this only positions the writers.
        let store = restore::<_, 1, 0>(&mut flash, layout, now.unix_s).store;
        CoreFirmware {
            node: Box::new(Node::new(cfg.clone(), crypto.clone(), now, first_query_id)),
            cfg,
            crypto,
            first_query_id,
            peers: Vec::new(),
            dust: Vec::new(),
            served: Vec::new(),
            layout,
            flash,
            store,
            stats: FlashStats::default(),
            last_restore: None,
            boot: now,
            called: false,
            recorder: None,
            recorded: None,
            recorded_batch: None,
        }
    }

    /// The node itself.
    pub fn node(&self) -> &Node<SharedCrypto<C>, N, D, G, B> {
        &self.node
    }

    /// The node itself, mutably.
    pub fn node_mut(&mut self) -> &mut Node<SharedCrypto<C>, N, D, G, B> {
        &mut self.node
    }

    /// The flash.
    pub fn flash(&self) -> &SimFlash {
        &self.flash
    }

    /// The flash, mutably (to damage it in tests).
    pub fn flash_mut(&mut self) -> &mut SimFlash {
        &mut self.flash
    }

    /// What the last reboot found on the flash.
    pub fn last_restore(&self) -> Option<&RestoreReport> {
        self.last_restore.as_ref()
    }

    /// Makes `entry`'s call through the recorder, if one runs; false if none
    /// does (the caller then calls the node itself). A log that cannot be
    /// written ends the recording with the reason.
    fn recorded_call(&mut self, entry: Entry<'_>, rng: &mut impl Rng, out: &mut Vec<Action>) -> bool {
        self.called = true;
        let Some(rec) = self.recorder.as_mut() else {
            return false;
        };
        match rec.call(&mut *self.node, entry, rng, &mut |a| out.push(a.clone())) {
            Ok(batch) => {
                if batch.is_some() {
                    self.recorded_batch = batch;
                }
            }
            Err(e) => {
                self.recorder = None;
                self.recorded = Some(Err(format!("the replay log could not be written ({e:?})")));
            }
        }
        true
    }

    /// Ends a running recording; `why` says why before the run's end.
    fn end_recording(&mut self, why: Option<String>) {
        if let Some(rec) = self.recorder.take() {
            let (entries, actions) = (rec.entries(), rec.actions());
            self.recorded = Some(
                rec.finish()
                    .map(|bytes| RecordedLog { bytes, entries, actions, cut_short: why })
                    .map_err(|e| format!("the replay log could not be finished ({e:?})")),
            );
        }
    }

    /// Carries out the persist actions the node just emitted, in order, as
    /// a board's main loop does after each call.
    fn persist(&mut self, actions: &[Action]) {
        for a in actions {
            let r = match a {
                Action::PersistState(s) => {
                    self.stats.state_saves += 1;
                    self.store.save_state(&mut self.flash, s).map(drop)
                }
                Action::PersistDagAppend(e) => {
                    self.stats.dag_appends += 1;
                    self.store.record_dag(&mut self.flash, self.node.dag(), e)
                }
                Action::PersistDagCompact => {
                    self.stats.dag_compactions += 1;
                    self.store.compact_dag(&mut self.flash, self.node.dag().entries()).map(drop)
                }
                // A Dust board has no profile partition: it profiles nobody.
                Action::PersistProfiles if self.layout.profiles.is_some() => {
                    self.stats.profile_saves += 1;
                    let profiles: Vec<StoredProfile> = self.node.stored_profiles().collect();
                    let standings: Vec<SubjectStanding> = self.node.stored_standings().collect();
                    let relatives: Vec<StoredRelative> = self.node.stored_relatives().collect();
                    self.store.save_profile_image(&mut self.flash, &profiles, &standings, &relatives).map(drop)
                }
                _ => continue,
            };
            if r.is_err() {
                self.stats.write_errors += 1;
            }
        }
    }
}

/// Runs `f` on a thread with [`RESTORE_STACK`] bytes of stack.
fn on_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .stack_size(RESTORE_STACK)
            .spawn_scoped(s, f)
            .map_err(|e| format!("cannot start the restore thread: {e}"))?;
        h.join().map_err(|_| "restore panicked".to_string())
    })
}

/// A partition's restore status in words, when it is worth saying.
fn status_note(name: &str, s: Status) -> Option<String> {
    match s {
        Status::Blank => Some(format!("{name} blank")),
        Status::Restored { skipped: 0, .. } => None,
        Status::Restored { skipped, why, .. } => {
            Some(format!("{name}: {skipped} invalid cop{} skipped ({why:?})", if skipped == 1 { "y" } else { "ies" }))
        }
        Status::Fallback { why } => Some(format!("{name} fallback ({why:?})")),
    }
}

/// The one-line account of a reboot.
fn reboot_account(
    boot: u32,
    state: OwnState,
    weight: u8,
    r: &RestoreReport,
    dag: usize,
    profiles: usize,
    wear: &FlashStats,
) -> String {
    let mut notes: Vec<String> = [("state", r.state), ("dag", r.dag), ("profiles", r.profiles)]
        .into_iter()
        .filter_map(|(name, s)| status_note(name, s))
        .collect();
    if let Some(why) = r.dag_tail {
        notes.push(format!("dag log torn ({why:?})"));
    }
    if r.profiles_dropped > 0 {
        notes.push(format!("{} profiles dropped", r.profiles_dropped));
    }
    format!(
        "boot {boot}: {state:?} weight {weight}; DAG {dag} entries ({} from the log, {} expired); {profiles} profiles; \
         {}; flash so far {} B programmed, {} erases (at most {} of one sector)",
        r.dag_appended,
        r.dag_load.out_of_window,
        if notes.is_empty() { "every copy valid".to_string() } else { notes.join(", ") },
        wear.bytes_programmed,
        wear.sector_erases,
        wear.max_sector_erases,
    )
}

impl<C, const N: usize, const D: usize, const G: usize, const B: usize> Firmware for CoreFirmware<C, N, D, G, B>
where
    C: Crypto + Send,
{
    fn id(&self) -> DeviceId {
        self.node.id()
    }
    fn role(&self) -> Role {
        self.node.config().role
    }
    fn next_deadline_ms(&self) -> u64 {
        self.node.next_deadline()
    }
    fn handle_timers(&mut self, now: Now, rng: &mut SimRng, out: &mut Vec<Action>) {
        let start = out.len();
        if !self.recorded_call(Entry::Timers { now: now.into(), draws: Vec::new() }, rng, out) {
            self.node.handle_timers(now, rng, &mut |a| out.push(a));
        }
        self.persist(&out[start..]);
    }
    fn handle_frame(&mut self, now: Now, bytes: &[u8], rssi: i8, hops: u8, out: &mut Vec<Action>) {
        let start = out.len();
        if !self.recorded_call(Entry::Frame { now: now.into(), rssi, hops, bytes }, &mut NoDraws, out) {
            self.node.handle_frame(now, bytes, rssi, hops, &mut |a| out.push(a));
        }
        self.persist(&out[start..]);
    }
    fn handle_reading(&mut self, now: Now, quantity: QuantityType, reading: Reading, out: &mut Vec<Action>) {
        let start = out.len();
        let entry = Entry::Reading { now: now.into(), quantity: quantity.to_u8(), value: reading };
        if !self.recorded_call(entry, &mut NoDraws, out) {
            self.node.handle_reading(now, quantity, reading, &mut |a| out.push(a));
        }
        self.persist(&out[start..]);
    }
    /// The simulator delivers every LoRa frame as `SimEvent::Uplink`: at a
    /// Dust node it is a gateway's downlink.
    fn handle_uplink(&mut self, now: Now, bytes: &[u8], out: &mut Vec<Action>) {
        if self.node.config().role == Role::Dust {
            return self.handle_downlink(now, bytes, out);
        }
        let start = out.len();
        if !self.recorded_call(Entry::Uplink { now: now.into(), bytes }, &mut NoDraws, out) {
            self.node.handle_uplink(now, bytes, &mut |a| out.push(a));
        }
        self.persist(&out[start..]);
    }
    fn handle_downlink(&mut self, _now: Now, bytes: &[u8], out: &mut Vec<Action>) {
        let start = out.len();
        if !self.recorded_call(Entry::Downlink { bytes }, &mut NoDraws, out) {
            self.node.handle_downlink(bytes, &mut |a| out.push(a));
        }
        self.persist(&out[start..]);
    }
    fn handle_batch(&mut self, now: Now, bytes: &[u8], out: &mut Vec<Action>) {
        let start = out.len();
        if !self.recorded_call(Entry::Batch { now: now.into(), bytes }, &mut NoDraws, out) {
            let _ = self.node.handle_batch(now, bytes, &mut |a| out.push(a));
        }
        self.persist(&out[start..]);
    }
    /// While recording, the recorder has already taken the batch (to digest
    /// it) and hands it on here.
    fn take_batch(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.recorded_batch.take() {
            Some(b) => {
                let dst = buf.get_mut(..b.len())?;
                dst.copy_from_slice(&b);
                Some(b.len())
            }
            None => self.node.take_batch(buf).ok(),
        }
    }
    /// A query expires field entries, so a recording logs it; asking again
    /// at the same instant changes nothing more.
    fn consensus(&mut self, quantity: QuantityType, now: Now) -> Option<f32> {
        let entry = Entry::Query { now: now.into(), quantity: quantity.to_u8() };
        self.recorded_call(entry, &mut NoDraws, &mut Vec::new());
        self.node.query_field(quantity, now).consensus_value.map(f32::from)
    }
    fn subject_state(&self, subject: DeviceId) -> Option<SubjectState> {
        self.node.subject_state(subject)
    }
    fn own_state(&self) -> OwnState {
        self.node.own().state()
    }
    fn register_peer(&mut self, key: PublicKey) {
        if !self.peers.contains(&key) {
            self.peers.push(key);
        }
        if !self.recorded_call(Entry::RegisterPeer { key: key.0 }, &mut NoDraws, &mut Vec::new()) {
            let _ = self.node.register_peer(key);
        }
    }
    fn register_dust(&mut self, device: DeviceId, key: DustKey) {
        if !self.dust.iter().any(|d| d.0 == device) {
            self.dust.push((device, key));
        }
        let entry = Entry::RegisterDust { device: device.0, key: key.0 };
        if !self.recorded_call(entry, &mut NoDraws, &mut Vec::new()) {
            let _ = self.node.register_dust(device, key);
        }
    }
    fn request_time_sync(&mut self, now: Now, source: DeviceId, rng: &mut SimRng, out: &mut Vec<Action>) {
        let entry = Entry::TimeSync { now: now.into(), source: source.0, draws: Vec::new() };
        if !self.recorded_call(entry, rng, out) {
            self.node.request_time_sync(now, source, rng, &mut |a| out.push(a));
        }
    }
    fn register_dust_served(&mut self, dust: DeviceId, gateway: DeviceId) {
        if !self.served.contains(&(dust, gateway)) {
            self.served.push((dust, gateway));
        }
        let entry = Entry::RegisterDustServed { dust: dust.0, gateway: gateway.0 };
        if !self.recorded_call(entry, &mut NoDraws, &mut Vec::new()) {
            let _ = self.node.register_dust_served(dust, gateway);
        }
    }
    /// ES-14.3: restore every partition (falling back per component), build
    /// the node from it, then re-register the provisioned keys and Dust
    /// devices. Whatever the node held in RAM and did not persist is lost.
    fn reboot(&mut self, now: Now) -> Result<String, String> {
        // A log replays one boot: the restored node is built from flash.
        self.end_recording(Some(format!("the node rebooted at mono {} ms", now.mono_ms)));
        self.stats.reboots = self.stats.reboots.saturating_add(1);
        // Vote ids must not repeat across boots; a board draws them at random.
        let qid = self.first_query_id ^ self.stats.reboots.wrapping_mul(0x9E37_79B9);
        let (cfg, crypto, layout) = (self.cfg.clone(), self.crypto.clone(), self.layout);
        let flash = &mut self.flash;
        let (node, report, store, dag, profiles) = on_big_stack(move || {
            let mut r: Restored<D, MAX_STORED_PROFILES> = restore(flash, layout, now.unix_s);
            let (dag, profiles) = (r.dag.entries().len(), r.profiles.len());
            let node = Box::new(Node::restore(cfg, crypto, now, qid, r.node_image()));
            (node, r.report, r.store, dag, profiles)
        })?;
        self.node = node;
        self.store = store;
        self.last_restore = Some(report);
        for &key in &self.peers {
            let _ = self.node.register_peer(key);
        }
        for &(device, key) in &self.dust {
            let _ = self.node.register_dust(device, key);
        }
        for &(dust, gateway) in &self.served {
            let _ = self.node.register_dust_served(dust, gateway);
        }
        let boot = self.node.persisted_state(now).boot_count;
        let wear = self.flash_stats().unwrap_or_default();
        let own = self.node.own();
        Ok(reboot_account(boot, own.state(), own.weight(), &report, dag, profiles, &wear))
    }
    /// Flips one random bit in each of `bytes` distinct bytes that hold
    /// data (not erased), anywhere in the KRILL partitions.
    fn corrupt_flash(&mut self, rng: &mut SimRng, bytes: u32) -> u32 {
        let mut data = self.flash.data_offsets();
        let mut flipped = 0;
        while flipped < bytes && !data.is_empty() {
            let at = data.swap_remove(rng.below(data.len() as u64) as usize);
            self.flash.flip_bit(at, rng.below(8) as u8);
            flipped += 1;
        }
        flipped
    }
    fn start_recording(&mut self, crypto: CryptoSpec, identity_seed: [u8; 32]) -> Result<(), String> {
        if self.called {
            return Err("the node has already been called; a recording starts at boot".into());
        }
        let config = ConfigSpec::of(&self.cfg)
            .map_err(|e| format!("its configuration cannot be written to a replay log ({e:?})"))?;
        let header = Header {
            capacities: Capacities::of::<N, D, G, B>(),
            crypto,
            identity_seed,
            peers: Vec::new(),
            first_query_id: self.first_query_id,
            boot: self.boot.into(),
            config,
        };
        self.recorder = Some(Recorder::new(&header).map_err(|e| format!("the log header: {e:?}"))?);
        Ok(())
    }
    fn finish_recording(&mut self) -> Option<Result<RecordedLog, String>> {
        self.end_recording(None);
        self.recorded.take()
    }
    fn flash_stats(&self) -> Option<FlashStats> {
        let (sector_erases, max_sector_erases) = self.flash.erases();
        Some(FlashStats {
            bytes_programmed: self.flash.bytes_programmed(),
            sector_erases,
            max_sector_erases,
            ..self.stats
        })
    }
}

/// How long the baseline keeps a neighbour's last trace, s.
const BASELINE_WINDOW_S: u32 = 60;

/// The firmware without an immune system: it broadcasts its readings as
/// TRACE_DEPOSITs the core accepts, believes every trace it hears (no
/// signature check, no consistency check, no profile), and reports the plain
/// mean of the claimed weights — what a naive mesh would do.
pub struct BaselineFirmware<C: Crypto> {
    crypto: C,
    id: DeviceId,
    role: Role,
    quantity: QuantityType,
    sensor_ms: u64,
    next_read_ms: u64,
    seq: u8,
    /// Last trace per sender: (sender, quantity, reading, weight, timestamp).
    heard: Vec<(DeviceId, QuantityType, Reading, u8, u32)>,
}

impl<C: Crypto> BaselineFirmware<C> {
    /// A baseline device reading `cfg.quantity` every `cfg.timers.sensor_read_ms`.
    pub fn new(cfg: &NodeConfig, crypto: C, now: Now) -> Self {
        let id = crypto.device_id();
        BaselineFirmware {
            crypto,
            id,
            role: cfg.role,
            quantity: cfg.quantity,
            sensor_ms: cfg.timers.sensor_read_ms.max(1),
            next_read_ms: now.mono_ms + cfg.timers.sensor_read_ms.max(1),
            seq: 0,
            heard: Vec::new(),
        }
    }

    fn deposit(&mut self, sender: DeviceId, q: QuantityType, r: Reading, w: u8, ts: u32) {
        match self.heard.iter_mut().find(|h| h.0 == sender && h.1 == q) {
            Some(h) => *h = (sender, q, r, w, ts),
            None => self.heard.push((sender, q, r, w, ts)),
        }
    }
}

impl<C: Crypto + Send> Firmware for BaselineFirmware<C> {
    fn id(&self) -> DeviceId {
        self.id
    }
    fn role(&self) -> Role {
        self.role
    }
    fn next_deadline_ms(&self) -> u64 {
        self.next_read_ms
    }
    fn handle_timers(&mut self, now: Now, _rng: &mut SimRng, out: &mut Vec<Action>) {
        if now.mono_ms >= self.next_read_ms {
            self.next_read_ms = now.mono_ms + self.sensor_ms;
            out.push(Action::ReadSensor { quantity: self.quantity });
        }
    }
    fn handle_frame(&mut self, _now: Now, bytes: &[u8], _rssi: i8, _hops: u8, _out: &mut Vec<Action>) {
        use krill_core::wire::{Body, FrameRepr};
        if let Ok(f) = FrameRepr::parse(bytes) {
            if let Body::TraceDeposit(t) = f.body {
                self.deposit(f.sender_id, t.quantity, t.reading, t.weight, t.timestamp);
            }
        }
    }
    fn handle_reading(&mut self, now: Now, quantity: QuantityType, reading: Reading, out: &mut Vec<Action>) {
        use krill_core::wire::{Body, FrameRepr, TraceDeposit, Version};
        self.seq = self.seq.wrapping_add(1);
        let weight = krill_core::lifecycle::NORMAL_WEIGHT;
        let t = TraceDeposit {
            timestamp: now.unix_s,
            quantity,
            reading,
            confidence: 200,
            weight,
            seq: self.seq,
            prev_hash: Default::default(),
            vouch: None,
        };
        self.deposit(self.id, quantity, reading, weight, now.unix_s);
        let repr = FrameRepr {
            version: Version::V2,
            sender_id: self.id,
            body: Body::TraceDeposit(t),
            signature: krill_core::types::Signature([0; 64]),
        };
        let mut buf = [0u8; krill_core::node::MAX_FRAME];
        let Ok(len) = repr.emit(&mut buf) else { return };
        let frame = &mut buf[..len];
        if krill_core::crypto::sign_frame(&self.crypto, frame, repr.signed_len()).is_ok() {
            if let Ok(f) = krill_core::node::FrameBuf::from_slice(frame) {
                out.push(Action::Broadcast(f));
            }
        }
    }
    fn consensus(&mut self, quantity: QuantityType, now: Now) -> Option<f32> {
        let (mut sw, mut swr) = (0.0f64, 0.0f64);
        for &(_, q, r, w, ts) in &self.heard {
            if q == quantity && now.unix_s.wrapping_sub(ts) <= BASELINE_WINDOW_S {
                sw += f64::from(w);
                swr += f64::from(w) * f64::from(r);
            }
        }
        (sw > 0.0).then(|| (swr / sw) as f32)
    }
    fn subject_state(&self, _subject: DeviceId) -> Option<SubjectState> {
        None
    }
    fn own_state(&self) -> OwnState {
        OwnState::Normal
    }
    fn register_peer(&mut self, _key: PublicKey) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use krill_core::persist::RamFlash;

    const SECTORS: usize = 6;
    const SIZE: usize = SECTORS * SECTOR_SIZE;

    /// Random writes, erases and reads on both devices give the same
    /// results and contents: `SimFlash` follows `RamFlash`'s NOR rules.
    #[test]
    fn sim_flash_behaves_like_ram_flash() {
        let mut rng = SimRng::stream(7, crate::rng::Purpose::Firmware, 0);
        let mut sim = SimFlash::new(SIZE as u32);
        let mut ram: Box<RamFlash<SIZE>> = Box::default();
        let (mut ok, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let offset = rng.below(SIZE as u64 + 64) as u32;
            match rng.below(10) {
                0 => {
                    let at = if rng.chance(0.8) { offset - offset % SECTOR_SIZE as u32 } else { offset };
                    assert_eq!(sim.erase(at), ram.erase(at), "erase {at}");
                }
                1..=5 => {
                    let len = rng.below(300) as usize;
                    // Mostly bytes that only clear bits of erased flash.
                    let data: Vec<u8> =
                        (0..len).map(|_| !(1u8 << rng.below(8)) | (rng.below(2) as u8 * 0xFF)).collect();
                    let (a, b) = (sim.write(offset, &data), ram.write(offset, &data));
                    assert_eq!(a, b, "write {len} at {offset}");
                    if a.is_ok() {
                        ok += 1;
                    } else {
                        refused += 1;
                    }
                }
                _ => {
                    let len = rng.below(600) as usize;
                    let (mut a, mut b) = (vec![0; len], vec![0; len]);
                    assert_eq!(sim.read(offset, &mut a), ram.read(offset, &mut b));
                    assert_eq!(a, b, "read {len} at {offset}");
                }
            }
        }
        let mut all = vec![0; SIZE];
        sim.read(0, &mut all).unwrap();
        assert_eq!(all, ram.bytes());
        assert!(ok > 1_000 && refused > 1_000, "both paths exercised: {ok} written, {refused} refused");
        let data = sim.data_offsets();
        assert_eq!(data.len(), ram.bytes().iter().filter(|&&b| b != ERASED).count());
    }

    /// Sectors written long ago leave memory for the spill file and come
    /// back unchanged for reads, writes, bit flips and clones.
    #[test]
    fn cold_sectors_spill_and_come_back_unchanged() {
        const N: usize = 12;
        let byte = |i: usize, k: usize| ((k * 7 + i) as u8) & 0xFE;
        let mut f = SimFlash::new((N * SECTOR_SIZE) as u32);
        for i in 0..N {
            let data: Vec<u8> = (0..SECTOR_SIZE).map(|k| byte(i, k)).collect();
            f.write((i * SECTOR_SIZE) as u32, &data).unwrap();
        }
        assert!(Spill::get().is_some(), "no spill file in {}", std::env::temp_dir().display());
        assert_eq!(f.resident_sectors(), (HOT_SECTORS, N - HOT_SECTORS));
        let mut all = vec![0; N * SECTOR_SIZE];
        f.read(0, &mut all).unwrap();
        assert!(all.iter().enumerate().all(|(a, &b)| b == byte(a / SECTOR_SIZE, a % SECTOR_SIZE)));
        // Sector 0 is in the spill file: NOR rules still hold there.
        assert_eq!(f.write(0, &[0xFF]), Err(FlashError::NotErased));
        f.write(3, &[0]).unwrap();
        f.flip_bit(SECTOR_SIZE as u32 + 5, 0);
        assert_eq!(f.resident_sectors(), (HOT_SECTORS, N - HOT_SECTORS), "two came back, two went out");
        let mut b = [0u8; 2];
        f.read(3, &mut b[..1]).unwrap();
        f.read(SECTOR_SIZE as u32 + 5, &mut b[1..]).unwrap();
        assert_eq!(b, [0, byte(1, 5) ^ 1]);
        let c = f.clone();
        assert_eq!(c.resident_sectors(), (N, 0), "a clone owns no spill slot");
        assert_eq!(c.data_offsets(), f.data_offsets());
        drop(c);
        for i in 0..N {
            f.erase((i * SECTOR_SIZE) as u32).unwrap();
        }
        assert_eq!(f.resident_sectors(), (0, 0));
        assert!(f.data_offsets().is_empty());
    }

    #[test]
    fn sim_flash_counts_wear_and_frees_erased_sectors() {
        let mut f = SimFlash::new(SIZE as u32);
        f.write(SECTOR_SIZE as u32 - 2, &[0, 1, 2, 3]).unwrap();
        assert_eq!(f.bytes_programmed(), 4);
        assert_eq!(f.resident_sectors(), (2, 0), "a write across a boundary");
        f.erase(0).unwrap();
        f.erase(0).unwrap();
        f.erase(SECTOR_SIZE as u32).unwrap();
        assert_eq!(f.erases(), (3, 2));
        assert_eq!(f.resident_sectors(), (0, 0), "erased sectors hold no memory");
        assert_eq!(f.erase(SIZE as u32), Err(FlashError::OutOfBounds));
        f.write(10, &[0x0F]).unwrap();
        f.flip_bit(10, 7);
        let mut b = [0];
        f.read(10, &mut b).unwrap();
        assert_eq!(b, [0x8F]);
        assert_eq!(f.write(10, &[0xFF]), Err(FlashError::NotErased));
    }
}
