//! Glue every board needs and none owns: the core's byte-granular
//! [`Flash`] over an `embedded-storage` NOR driver that programs whole
//! words ([`WordFlash`]), and the executor for the node's `Persist*`
//! actions ([`Persistence`]). Candidates for the core once it takes an
//! `embedded-storage` dependency.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use embedded_storage::nor_flash::NorFlash;
use krill_core::crypto::Crypto;
use krill_core::node::{Action, Node, Rng};
use krill_core::persist::{
    crc32, Flash, FlashError, Layout, Partition, Store, StoredProfile, StoredRelative, SubjectStanding, WriteError,
    SECTOR_SIZE,
};
use krill_core::types::DeviceId;

/// Word size both boards' flash controllers program (nRF52840 NVMC,
/// ESP32-C3 SPI flash through the ROM): 4 bytes.
const WORD: u32 = 4;

/// A NOR driver as the core's [`Flash`], addressed like the chip (the
/// offsets of a `persist::Layout`). Writes and erases are refused outside
/// the writable partitions, so a bug can never touch the running image or
/// the bootloader. A byte write becomes a read-modify-write of each word it
/// touches, with 0xFF in the bytes it does not, which NOR programming
/// leaves as they were; reads are word-aligned too (the ESP32-C3 ROM reads
/// words only).
pub struct WordFlash<F> {
    nor: F,
    writable: [Option<Partition>; 5],
}

impl<F: NorFlash> WordFlash<F> {
    /// `nor`, writable only inside `layout`'s partitions and `extra` (a
    /// board's own record).
    pub fn new(nor: F, layout: &Layout, extra: Option<Partition>) -> Self {
        WordFlash { nor, writable: [Some(layout.meta), Some(layout.state), Some(layout.dag), layout.profiles, extra] }
    }

    fn check_writable(&self, offset: u32, len: usize) -> Result<(), FlashError> {
        let end = offset.checked_add(len as u32).ok_or(FlashError::OutOfBounds)?;
        if self.writable.iter().flatten().any(|p| offset >= p.offset && end <= p.end()) {
            Ok(())
        } else {
            Err(FlashError::OutOfBounds)
        }
    }

    fn read_word(&mut self, at: u32) -> Result<[u8; 4], FlashError> {
        let mut w = [0u8; 4];
        self.nor.read(at, &mut w).map_err(|_| FlashError::Device)?;
        Ok(w)
    }
}

impl<F: NorFlash> Flash for WordFlash<F> {
    fn capacity(&self) -> u32 {
        self.nor.capacity() as u32
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        let end = offset.checked_add(buf.len() as u32).ok_or(FlashError::OutOfBounds)?;
        if end > self.capacity() {
            return Err(FlashError::OutOfBounds);
        }
        let mut at = offset;
        let mut filled = 0;
        while filled < buf.len() {
            let word = at & !(WORD - 1);
            let lead = (at - word) as usize;
            let take = (WORD as usize - lead).min(buf.len() - filled);
            let w = self.read_word(word)?;
            buf[filled..filled + take].copy_from_slice(&w[lead..lead + take]);
            filled += take;
            at += take as u32;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        self.check_writable(offset, data.len())?;
        // Check every word before programming any, so a refused write
        // leaves the flash as it was (as the core's model flash does).
        for program in [false, true] {
            let mut at = offset;
            let mut rest = data;
            while !rest.is_empty() {
                let word = at & !(WORD - 1);
                let lead = (at - word) as usize;
                let take = (WORD as usize - lead).min(rest.len());
                let mut new = [0xFFu8; 4];
                new[lead..lead + take].copy_from_slice(&rest[..take]);
                if !program {
                    let old = self.read_word(word)?;
                    let span = lead..lead + take;
                    if old[span.clone()].iter().zip(&new[span]).any(|(o, n)| o & n != *n) {
                        return Err(FlashError::NotErased);
                    }
                } else if new != [0xFF; 4] {
                    self.nor.write(word, &new).map_err(|_| FlashError::Device)?;
                }
                at += take as u32;
                rest = &rest[take..];
            }
        }
        Ok(())
    }

    fn erase(&mut self, sector_offset: u32) -> Result<(), FlashError> {
        if !(sector_offset as usize).is_multiple_of(SECTOR_SIZE) {
            return Err(FlashError::Unaligned);
        }
        self.check_writable(sector_offset, SECTOR_SIZE)?;
        self.nor.erase(sector_offset, sector_offset + SECTOR_SIZE as u32).map_err(|_| FlashError::Device)
    }
}

/// Why no identity seed could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedError {
    /// Something that is not a seed record is there; overwriting it would
    /// silently give the device a new identity.
    Corrupt,
    /// The flash failed.
    Flash(FlashError),
}

/// Bytes of a seed record: `"KRS1"` · seed [32] · CRC-32 of bytes 0..36.
pub const SEED_RECORD_LEN: usize = 40;
const SEED_MAGIC: [u8; 4] = *b"KRS1";

/// The identity seed kept at `at`, or a fresh one drawn from `rng` and
/// written there if the record is blank (first boot). ES-13 derives the
/// seed from a PUF; neither board exposes one to the application (their
/// boot ROMs and loaders overwrite SRAM first), so the seed is stored, in
/// clear: use the chip's flash protection in production.
pub fn load_or_create_seed(flash: &mut impl Flash, at: u32, rng: &mut impl Rng) -> Result<[u8; 32], SeedError> {
    let mut b = [0u8; SEED_RECORD_LEN];
    flash.read(at, &mut b).map_err(SeedError::Flash)?;
    if b.iter().all(|&x| x == 0xFF) {
        for c in b[4..36].chunks_mut(4) {
            c.copy_from_slice(&rng.next_u32().to_le_bytes());
        }
        b[..4].copy_from_slice(&SEED_MAGIC);
        let crc = crc32(&b[..36]);
        b[36..].copy_from_slice(&crc.to_le_bytes());
        flash.write(at, &b).map_err(SeedError::Flash)?;
        let mut check = [0u8; SEED_RECORD_LEN];
        flash.read(at, &mut check).map_err(SeedError::Flash)?;
        if check != b {
            return Err(SeedError::Corrupt);
        }
    }
    if b[..4] != SEED_MAGIC || crc32(&b[..36]).to_le_bytes() != b[36..] {
        return Err(SeedError::Corrupt);
    }
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&b[4..36]);
    Ok(seed)
}

/// A frame bearer (ES-12.1, reduced to what the node's actions need).
pub trait Transport {
    /// Why a send failed.
    type Error;
    /// Sends `frame` to every neighbour (`dest: None`) or to one device.
    fn send(&mut self, dest: Option<DeviceId>, frame: &[u8]) -> Result<(), Self::Error>;
    /// A received frame, if one is waiting: its length in `buf` and RSSI.
    fn receive(&mut self, buf: &mut [u8]) -> Option<(usize, i8)>;
}

/// Carries out the node's persistence actions (ES-14.3) with the [`Store`]
/// that `persist::restore` returned. `P` bounds the profiles written at once.
pub struct Persistence<F: Flash, const P: usize> {
    /// The flash.
    pub flash: F,
    /// Write positions.
    pub store: Store,
    /// Writes that failed since boot (the node keeps running; the next
    /// flush or compaction retries).
    pub failures: u32,
}

impl<F: Flash, const P: usize> Persistence<F, P> {
    /// Handles `action` if it is a `Persist*` one; returns what the store
    /// said, or `None` for any other action.
    pub fn apply<C: Crypto, const N: usize, const D: usize, const G: usize, const B: usize>(
        &mut self,
        node: &Node<C, N, D, G, B>,
        action: &Action,
    ) -> Option<Result<(), WriteError>> {
        let r = match action {
            Action::PersistState(s) => self.store.save_state(&mut self.flash, s).map(|_| ()),
            Action::PersistDagAppend(e) => self.store.record_dag(&mut self.flash, node.dag(), e),
            Action::PersistDagCompact => self.store.compact_dag(&mut self.flash, node.dag().entries()).map(|_| ()),
            Action::PersistProfiles => {
                // At most `P` of each: `take` keeps `collect` from overflowing.
                let v: heapless::Vec<StoredProfile, P> = node.stored_profiles().take(P).collect();
                let standings: heapless::Vec<SubjectStanding, P> = node.stored_standings().take(P).collect();
                let relatives: heapless::Vec<StoredRelative, P> = node.stored_relatives().take(P).collect();
                self.store.save_profile_image(&mut self.flash, &v, &standings, &relatives).map(|_| ())
            }
            _ => return None,
        };
        if r.is_err() {
            self.failures = self.failures.saturating_add(1);
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_storage::nor_flash::{ErrorType, NorFlashError, NorFlashErrorKind, ReadNorFlash};
    use krill_core::persist::{
        restore, DustCounterStore, DustMeta, PersistedState, RamFlash, Restored, Status, DUST_COUNTER_BLOCK,
        NRF52840_DUST, NRF52840_LAYOUT,
    };

    /// A word-programming NOR chip in RAM: 4-byte aligned reads, writes
    /// and at most two programmings per word between erases (nRF52840's
    /// nWRITE), as the real controllers demand.
    struct WordNor {
        mem: Vec<u8>,
        writes: Vec<u8>,
    }

    #[derive(Debug)]
    struct NorErr(NorFlashErrorKind);
    impl NorFlashError for NorErr {
        fn kind(&self) -> NorFlashErrorKind {
            self.0
        }
    }

    impl WordNor {
        fn new(size: usize) -> Self {
            WordNor { mem: vec![0xFF; size], writes: vec![0; size / 4] }
        }
        fn aligned(&self, off: u32, len: usize) -> Result<std::ops::Range<usize>, NorErr> {
            let (o, e) = (off as usize, off as usize + len);
            if !o.is_multiple_of(4) || !len.is_multiple_of(4) {
                return Err(NorErr(NorFlashErrorKind::NotAligned));
            }
            if e > self.mem.len() {
                return Err(NorErr(NorFlashErrorKind::OutOfBounds));
            }
            Ok(o..e)
        }
    }
    impl ErrorType for WordNor {
        type Error = NorErr;
    }
    impl ReadNorFlash for WordNor {
        const READ_SIZE: usize = 4;
        fn read(&mut self, off: u32, buf: &mut [u8]) -> Result<(), NorErr> {
            let r = self.aligned(off, buf.len())?;
            buf.copy_from_slice(&self.mem[r]);
            Ok(())
        }
        fn capacity(&self) -> usize {
            self.mem.len()
        }
    }
    impl NorFlash for WordNor {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 4096;
        fn write(&mut self, off: u32, data: &[u8]) -> Result<(), NorErr> {
            let r = self.aligned(off, data.len())?;
            for w in r.clone().step_by(4) {
                self.writes[w / 4] += 1;
                assert!(self.writes[w / 4] <= 2, "word {w:#x} programmed more than twice");
            }
            for (m, d) in self.mem[r].iter_mut().zip(data) {
                *m &= *d;
            }
            Ok(())
        }
        fn erase(&mut self, from: u32, to: u32) -> Result<(), NorErr> {
            let r = self.aligned(from, (to - from) as usize)?;
            self.mem[r.clone()].fill(0xFF);
            self.writes[r.start / 4..r.end / 4].fill(0);
            Ok(())
        }
    }

    const SIZE: usize = 0x10_0000;

    fn word_flash() -> WordFlash<WordNor> {
        WordFlash::new(WordNor::new(SIZE), &NRF52840_LAYOUT, None)
    }

    /// Runs `f` on a thread with an 8 MiB stack: an unoptimised build passes
    /// a 1 MiB `RamFlash` through the stack more than once on its way into a
    /// box, which overflows a test thread's 2 MiB.
    fn with_room_for_a_ram_flash(f: impl FnOnce() + Send + 'static) {
        let t = std::thread::Builder::new().stack_size(8 << 20).spawn(f).expect("spawn a test thread");
        if let Err(panic) = t.join() {
            std::panic::resume_unwind(panic);
        }
    }

    #[test]
    fn byte_writes_behave_as_on_the_cores_model_flash() {
        with_room_for_a_ram_flash(byte_writes_match_the_model);
    }

    fn byte_writes_match_the_model() {
        let mut w = word_flash();
        let mut r: Box<RamFlash<SIZE>> = Box::default();
        let base = NRF52840_LAYOUT.state.offset;
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            seed >> 8
        };
        for _ in 0..2_000 {
            let off = base + next() % 8_000;
            let len = (next() % 13) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            assert_eq!(w.write(off, &data), r.write(off, &data), "write at {off:#x}");
            let mut a = vec![0u8; 17];
            let mut b = vec![0u8; 17];
            let at = base + next() % 8_000;
            assert_eq!(w.read(at, &mut a), r.read(at, &mut b));
            assert_eq!(a, b, "read at {at:#x}");
            if next() % 50 == 0 {
                assert_eq!(w.erase(base), r.erase(base));
            }
        }
    }

    #[test]
    fn writes_outside_the_partitions_are_refused() {
        let mut w = word_flash();
        assert_eq!(w.write(0x1000, &[0]), Err(FlashError::OutOfBounds), "the image");
        assert_eq!(w.erase(0xF_4000), Err(FlashError::OutOfBounds), "the bootloader");
        let end = NRF52840_LAYOUT.state.end();
        assert_eq!(w.write(end - 2, &[0; 4]), Err(FlashError::OutOfBounds), "straddling the end");
        assert_eq!(w.erase(NRF52840_LAYOUT.state.offset + 1), Err(FlashError::Unaligned));
    }

    struct Counter(u32);
    impl Rng for Counter {
        fn next_u32(&mut self) -> u32 {
            self.0 += 1;
            self.0
        }
    }

    #[test]
    fn a_seed_is_made_once_and_kept() {
        let extra = Partition { offset: 0xF_3000, len: 0x1000 };
        let mut w = WordFlash::new(WordNor::new(SIZE), &NRF52840_LAYOUT, Some(extra));
        let first = load_or_create_seed(&mut w, extra.offset, &mut Counter(0)).unwrap();
        let again = load_or_create_seed(&mut w, extra.offset, &mut Counter(100)).unwrap();
        assert_eq!(first, again, "the second boot reads, not redraws");
        assert_eq!(&first[..4], &1u32.to_le_bytes());
        w.write(extra.offset + 4, &[0]).unwrap(); // a flipped seed bit: the CRC no longer matches
        assert_eq!(load_or_create_seed(&mut w, extra.offset, &mut Counter(0)), Err(SeedError::Corrupt));
    }

    #[test]
    fn dust_counter_reservations_restore_through_word_flash() {
        let mut w = WordFlash::new(WordNor::new(SIZE), &NRF52840_LAYOUT, Some(NRF52840_DUST.state));
        let (mut st, status) = DustCounterStore::restore(&mut w, NRF52840_DUST.state);
        assert_eq!((st.reserved(), status), (0, Status::Blank));
        // Enough blocks to wrap the two-sector ring (256 records a sector).
        let mut next = 1;
        for _ in 0..700 {
            next = st.cover(&mut w, next).unwrap() + 1;
        }
        assert_eq!(next - 1, 700 * DUST_COUNTER_BLOCK);
        let (back, _) = DustCounterStore::restore(&mut w, NRF52840_DUST.state);
        assert_eq!(back.reserved(), 700 * DUST_COUNTER_BLOCK);
        // The factory record stays read-only for the firmware.
        assert_eq!(w.write(NRF52840_DUST.meta.offset, &[0; 4]), Err(FlashError::OutOfBounds));
        assert_eq!(DustMeta::read(&mut w, NRF52840_DUST.meta), Ok(None));
    }

    #[test]
    fn the_cores_journal_restores_through_word_flash() {
        let mut w = word_flash();
        let first: Restored<64, 0> = restore(&mut w, &NRF52840_LAYOUT, 1_000);
        let mut store = first.store;
        let mut last = PersistedState::first_boot(1_000);
        for i in 0..200u32 {
            last.boot_count = i;
            last.last_heartbeat = 1_000 + i;
            store.save_state(&mut w, &last).unwrap();
        }
        let again: Restored<64, 0> = restore(&mut w, &NRF52840_LAYOUT, 2_000);
        assert_eq!(again.state, last);
    }
}
