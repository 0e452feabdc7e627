//! The two power-cut-safe storage schemes: a journal ring of fixed-size
//! records (critical state) and A/B image banks with an append log (meta,
//! DAG, profiles).

use super::flash::{crc32, Crc32, Flash, FlashError, ERASED, SECTOR_SIZE};
use crate::types::le;

/// A byte range of the flash, sector-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Partition {
    /// First byte, a multiple of [`SECTOR_SIZE`].
    pub offset: u32,
    /// Length in bytes, a multiple of [`SECTOR_SIZE`].
    pub len: u32,
}

impl Partition {
    /// One past the last byte.
    pub const fn end(&self) -> u32 {
        self.offset + self.len
    }
    /// Sectors in the partition.
    pub const fn sectors(&self) -> u32 {
        self.len / SECTOR_SIZE as u32
    }
    /// Usable as a journal or a bank pair: aligned, at least two sectors, and
    /// an even number of them.
    pub const fn is_well_formed(&self) -> bool {
        self.offset.is_multiple_of(SECTOR_SIZE as u32)
            && self.len.is_multiple_of(SECTOR_SIZE as u32)
            && self.sectors() >= 2
            && self.sectors().is_multiple_of(2)
    }
}

/// Why a stored copy was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Invalid {
    /// Not erased but no record magic: torn header or foreign data.
    BadMagic,
    /// The record is for another partition or format version.
    WrongKind,
    /// A length field does not fit the partition or the format.
    BadLength,
    /// The checksum does not match: torn write or flipped bits.
    BadChecksum,
    /// Checksum fine but a field holds a value no writer produces
    /// (e.g. a lifecycle code above 8): refused rather than guessed.
    BadField,
    /// The flash could not be read.
    Flash(FlashError),
}

/// Why a write to a partition did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum WriteError {
    /// The flash driver failed (or power was cut); the previous valid copy is intact.
    Flash(FlashError),
    /// The data is larger than the partition's slot or bank.
    TooLarge,
    /// The append log of the active bank is full or its next slot is not
    /// erased: write a fresh image ([`super::Store::compact_dag`]).
    NeedsCompaction,
    /// Read-back after programming differed: a worn sector. The next write
    /// uses another slot.
    VerifyFailed,
}

impl From<FlashError> for WriteError {
    fn from(e: FlashError) -> Self {
        WriteError::Flash(e)
    }
}

/// `a` is newer than `b` on a wrapping u32 sequence.
pub(crate) fn seq_newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

fn is_blank(b: &[u8]) -> bool {
    b.iter().all(|&x| x == ERASED)
}

/// Largest journal record (header + payload + CRC).
pub const MAX_JOURNAL_RECORD: usize = 128;
/// Journal record header: magic, kind, payload length, sequence.
pub const JOURNAL_HEADER: usize = 8;
const JOURNAL_MAGIC: u8 = 0x4B;

/// Total size of a journal record with a `payload`-byte payload.
pub const fn journal_record_len(payload: usize) -> usize {
    JOURNAL_HEADER + payload + 4
}

/// Write position and sequence of a journal ring. Records are
/// `[0x4B][kind][payload_len u16][seq u32][payload][crc32]`, never crossing a
/// sector; the newest valid sequence wins. A new record goes into erased
/// space after the newest one; moving into a sector erases it first, which
/// only ever destroys the oldest records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Journal {
    part: Partition,
    kind: u8,
    payload: usize,
    next: u32,
    seq: u32,
}

impl Journal {
    fn rec_len(&self) -> usize {
        journal_record_len(self.payload)
    }
    fn per_sector(&self) -> u32 {
        (SECTOR_SIZE / self.rec_len()) as u32
    }
    fn slot_offset(&self, slot: u32) -> u32 {
        let ps = self.per_sector();
        self.part.offset + (slot / ps) * SECTOR_SIZE as u32 + (slot % ps) * self.rec_len() as u32
    }
    fn slots(&self) -> u32 {
        self.part.sectors() * self.per_sector()
    }

    /// Scans the ring; the newest valid payload goes into `out` (which must be
    /// `payload` bytes). Returns the cursor, the newest valid sequence, the
    /// number of non-erased invalid slots, and the first reason seen.
    pub fn scan<F: Flash>(
        flash: &mut F,
        part: Partition,
        kind: u8,
        out: &mut [u8],
    ) -> (Journal, Option<u32>, u16, Option<Invalid>) {
        let mut j = Journal { part, kind, payload: out.len(), next: 0, seq: 0 };
        let mut best: Option<(u32, u32)> = None;
        let mut bad = 0u16;
        let mut why = None;
        if j.rec_len() > MAX_JOURNAL_RECORD || !part.is_well_formed() {
            return (j, None, 0, Some(Invalid::BadLength));
        }
        let mut buf = [0u8; MAX_JOURNAL_RECORD];
        for slot in 0..j.slots() {
            let rec = &mut buf[..j.rec_len()];
            if let Err(e) = flash.read(j.slot_offset(slot), rec) {
                bad = bad.saturating_add(1);
                why = why.or(Some(Invalid::Flash(e)));
                continue;
            }
            if is_blank(rec) {
                continue;
            }
            match j.check(rec) {
                Ok(seq) => {
                    if best.is_none_or(|(s, _)| seq_newer(seq, s)) {
                        best = Some((seq, slot));
                        out.copy_from_slice(&rec[JOURNAL_HEADER..JOURNAL_HEADER + j.payload]);
                    }
                }
                Err(e) => {
                    bad = bad.saturating_add(1);
                    why = why.or(Some(e));
                }
            }
        }
        if let Some((seq, slot)) = best {
            j.seq = seq;
            j.next = (slot + 1) % j.slots();
        }
        (j, best.map(|b| b.0), bad, why)
    }

    fn check(&self, rec: &[u8]) -> Result<u32, Invalid> {
        let n = rec.len();
        if rec.first() != Some(&JOURNAL_MAGIC) {
            return Err(Invalid::BadMagic);
        }
        if rec.get(1) != Some(&self.kind) {
            return Err(Invalid::WrongKind);
        }
        if le::u16_at(rec, 2) != Some(self.payload as u16) {
            return Err(Invalid::BadLength);
        }
        let stored = le::u32_at(rec, n - 4).ok_or(Invalid::BadLength)?;
        if crc32(rec.get(..n - 4).ok_or(Invalid::BadLength)?) != stored {
            return Err(Invalid::BadChecksum);
        }
        le::u32_at(rec, 4).ok_or(Invalid::BadLength)
    }

    /// Appends `payload` as the newest record; returns its sequence.
    pub fn append<F: Flash>(&mut self, flash: &mut F, payload: &[u8]) -> Result<u32, WriteError> {
        if payload.len() != self.payload || self.rec_len() > MAX_JOURNAL_RECORD {
            return Err(WriteError::TooLarge);
        }
        let seq = self.seq.wrapping_add(1);
        let mut buf = [0u8; MAX_JOURNAL_RECORD];
        let n = self.rec_len();
        buf[0] = JOURNAL_MAGIC;
        buf[1] = self.kind;
        buf[2..4].copy_from_slice(&(self.payload as u16).to_le_bytes());
        buf[4..8].copy_from_slice(&seq.to_le_bytes());
        buf[JOURNAL_HEADER..JOURNAL_HEADER + self.payload].copy_from_slice(payload);
        let crc = crc32(&buf[..n - 4]);
        buf[n - 4..n].copy_from_slice(&crc.to_le_bytes());
        let rec = &buf[..n];
        let mut check = [0u8; MAX_JOURNAL_RECORD];
        for _ in 0..=self.per_sector() {
            let slot = self.next;
            let at = self.slot_offset(slot);
            self.next = (slot + 1) % self.slots();
            if slot.is_multiple_of(self.per_sector()) {
                flash.erase(at)?;
            } else {
                flash.read(at, &mut check[..n])?;
                if !is_blank(&check[..n]) {
                    continue;
                }
            }
            flash.write(at, rec)?;
            flash.read(at, &mut check[..n])?;
            if check[..n] == *rec {
                self.seq = seq;
                return Ok(seq);
            }
        }
        Err(WriteError::VerifyFailed)
    }
}

/// `Ok(None)` erased, `Ok(Some((seq, len)))` valid, `Err((why, header seq))`.
type BankCheck = Result<Option<(u32, u32)>, (Invalid, Option<u32>)>;

/// Bank image header length.
pub const BANK_HEADER: usize = 32;
const BANK_MAGIC: [u8; 2] = *b"KB";
/// Format version of bank headers and payloads.
pub const BANK_FORMAT: u8 = 1;

/// A/B image banks. The partition is split in two halves; each holds
/// `[header 32][payload][append records...]`. The header is
/// `magic "KB" | kind | format | seq u32 | payload_len u32 | payload_crc u32 |
/// 12 zero bytes | header_crc u32` and is written last, after the bank was
/// erased and the payload programmed, so a torn image never has a valid
/// header and the other bank keeps the previous image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Banks {
    part: Partition,
    kind: u8,
    active: Option<u8>,
    seq: u32,
    high: Option<u32>,
    payload_len: u32,
    append_next: u32,
}

/// What [`Banks::scan`] found in the active bank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BankScan {
    /// Sequence of the valid image used, if any.
    pub seq: Option<u32>,
    /// Headers that were not erased but not valid (0–2).
    pub invalid: u16,
    /// First reason a copy was refused.
    pub why: Option<Invalid>,
}

impl Banks {
    /// Bytes per bank.
    pub fn bank_len(&self) -> u32 {
        self.part.len / 2
    }
    fn base(&self, bank: u8) -> u32 {
        self.part.offset + bank as u32 * self.bank_len()
    }
    /// Largest payload a bank can hold.
    pub fn capacity(&self) -> u32 {
        self.bank_len().saturating_sub(BANK_HEADER as u32)
    }
    /// Length of the active payload.
    pub fn payload_len(&self) -> u32 {
        self.payload_len
    }
    /// True when a valid image exists.
    pub fn has_image(&self) -> bool {
        self.active.is_some()
    }

    /// Finds the newest bank whose header and payload checksums hold.
    pub fn scan<F: Flash>(flash: &mut F, part: Partition, kind: u8) -> (Banks, BankScan) {
        let mut b = Banks { part, kind, active: None, seq: 0, high: None, payload_len: 0, append_next: 0 };
        let mut r = BankScan { seq: None, invalid: 0, why: None };
        if !part.is_well_formed() {
            r.why = Some(Invalid::BadLength);
            return (b, r);
        }
        for bank in 0..2u8 {
            match b.check_bank(flash, bank) {
                Ok(None) => {}
                Ok(Some((seq, len))) => {
                    b.note_seq(seq);
                    if r.seq.is_none_or(|s| seq_newer(seq, s)) {
                        r.seq = Some(seq);
                        b.active = Some(bank);
                        b.seq = seq;
                        b.payload_len = len;
                    }
                }
                Err((e, seq)) => {
                    r.invalid += 1;
                    r.why = r.why.or(Some(e));
                    if let Some(s) = seq {
                        b.note_seq(s);
                    }
                }
            }
        }
        if b.active.is_some() {
            b.append_next = BANK_HEADER as u32 + b.payload_len;
        }
        (b, r)
    }

    /// `Ok(None)` erased, `Ok(Some((seq, len)))` valid, `Err` invalid with
    /// the header's sequence when the header itself was sound.
    fn note_seq(&mut self, seq: u32) {
        if self.high.is_none_or(|h| seq_newer(seq, h)) {
            self.high = Some(seq);
        }
    }

    fn check_bank<F: Flash>(&self, flash: &mut F, bank: u8) -> BankCheck {
        let mut h = [0u8; BANK_HEADER];
        flash.read(self.base(bank), &mut h).map_err(|e| (Invalid::Flash(e), None))?;
        if is_blank(&h) {
            return Ok(None);
        }
        if h[0..2] != BANK_MAGIC {
            return Err((Invalid::BadMagic, None));
        }
        let stored = le::u32_at(&h, 28).unwrap_or(0);
        if crc32(&h[..28]) != stored {
            return Err((Invalid::BadChecksum, None));
        }
        let seq = le::u32_at(&h, 4).unwrap_or(0);
        if h[2] != self.kind || h[3] != BANK_FORMAT {
            return Err((Invalid::WrongKind, Some(seq)));
        }
        let len = le::u32_at(&h, 8).unwrap_or(u32::MAX);
        if len > self.capacity() {
            return Err((Invalid::BadLength, Some(seq)));
        }
        let want = le::u32_at(&h, 12).unwrap_or(0);
        let mut crc = Crc32::new();
        let mut chunk = [0u8; 64];
        let mut pos = 0u32;
        let start = self.base(bank) + BANK_HEADER as u32;
        while pos < len {
            let n = (len - pos).min(chunk.len() as u32) as usize;
            flash.read(start + pos, &mut chunk[..n]).map_err(|e| (Invalid::Flash(e), Some(seq)))?;
            crc.update(&chunk[..n]);
            pos += n as u32;
        }
        if crc.finish() != want {
            return Err((Invalid::BadChecksum, Some(seq)));
        }
        Ok(Some((seq, len)))
    }

    /// Reads `buf.len()` bytes of the active payload at `at`.
    pub fn read_payload<F: Flash>(&self, flash: &mut F, at: u32, buf: &mut [u8]) -> Result<(), Invalid> {
        let bank = self.active.ok_or(Invalid::BadLength)?;
        let end = at.checked_add(buf.len() as u32).ok_or(Invalid::BadLength)?;
        if end > self.payload_len {
            return Err(Invalid::BadLength);
        }
        flash.read(self.base(bank) + BANK_HEADER as u32 + at, buf).map_err(Invalid::Flash)
    }

    /// Starts a new image in the inactive bank (erasing it).
    pub fn begin<F: Flash>(&self, flash: &mut F) -> Result<ImageWriter, WriteError> {
        let target = match self.active {
            Some(b) => 1 - b,
            None => 0,
        };
        let base = self.base(target);
        for s in 0..self.bank_len() / SECTOR_SIZE as u32 {
            flash.erase(base + s * SECTOR_SIZE as u32)?;
        }
        Ok(ImageWriter { target, base, pos: 0, crc: Crc32::new(), cap: self.capacity() })
    }

    /// Writes the header of a finished image, making it the active one.
    pub fn commit<F: Flash>(&mut self, flash: &mut F, w: ImageWriter) -> Result<u32, WriteError> {
        let seq = self.high.unwrap_or(0).wrapping_add(1);
        let mut h = [0u8; BANK_HEADER];
        h[0..2].copy_from_slice(&BANK_MAGIC);
        h[2] = self.kind;
        h[3] = BANK_FORMAT;
        h[4..8].copy_from_slice(&seq.to_le_bytes());
        h[8..12].copy_from_slice(&w.pos.to_le_bytes());
        h[12..16].copy_from_slice(&w.crc.finish().to_le_bytes());
        let c = crc32(&h[..28]);
        h[28..32].copy_from_slice(&c.to_le_bytes());
        flash.write(w.base, &h)?;
        let mut back = [0u8; BANK_HEADER];
        flash.read(w.base, &mut back)?;
        if back != h {
            return Err(WriteError::VerifyFailed);
        }
        self.active = Some(w.target);
        self.seq = seq;
        self.high = Some(seq);
        self.payload_len = w.pos;
        self.append_next = BANK_HEADER as u32 + w.pos;
        Ok(seq)
    }

    /// Appends one `[tag u16][data][crc32]` record after the active image;
    /// `tag` is the low 16 bits of the image sequence so records of an older
    /// generation are never taken for this one's.
    pub fn append<F: Flash>(&mut self, flash: &mut F, data: &[u8]) -> Result<(), WriteError> {
        let bank = self.active.ok_or(WriteError::NeedsCompaction)?;
        let mut buf = [0u8; MAX_JOURNAL_RECORD];
        let n = data.len() + 6;
        if n > MAX_JOURNAL_RECORD {
            return Err(WriteError::TooLarge);
        }
        if self.append_next + n as u32 > self.bank_len() {
            return Err(WriteError::NeedsCompaction);
        }
        let at = self.base(bank) + self.append_next;
        flash.read(at, &mut buf[..n])?;
        if !is_blank(&buf[..n]) {
            return Err(WriteError::NeedsCompaction);
        }
        buf[0..2].copy_from_slice(&(self.seq as u16).to_le_bytes());
        buf[2..2 + data.len()].copy_from_slice(data);
        let c = crc32(&buf[..n - 4]);
        buf[n - 4..n].copy_from_slice(&c.to_le_bytes());
        flash.write(at, &buf[..n])?;
        let mut back = [0u8; MAX_JOURNAL_RECORD];
        flash.read(at, &mut back[..n])?;
        self.append_next += n as u32;
        if back[..n] != buf[..n] {
            return Err(WriteError::VerifyFailed);
        }
        Ok(())
    }

    /// Reads the appended record at `*cursor` (bank-relative; starts at
    /// `None`), advancing it. `Ok(false)` at the first erased slot; an
    /// invalid record ends the log too (everything after a torn record is
    /// ignored), reported as `Err`.
    pub fn next_appended<F: Flash>(
        &mut self,
        flash: &mut F,
        cursor: &mut u32,
        out: &mut [u8],
    ) -> Result<bool, Invalid> {
        let bank = self.active.ok_or(Invalid::BadLength)?;
        if *cursor == 0 {
            *cursor = BANK_HEADER as u32 + self.payload_len;
        }
        let n = out.len() + 6;
        let mut buf = [0u8; MAX_JOURNAL_RECORD];
        if n > MAX_JOURNAL_RECORD || *cursor + n as u32 > self.bank_len() {
            self.append_next = *cursor;
            return Ok(false);
        }
        flash.read(self.base(bank) + *cursor, &mut buf[..n]).map_err(Invalid::Flash)?;
        self.append_next = *cursor;
        if is_blank(&buf[..n]) {
            return Ok(false);
        }
        if le::u16_at(&buf, 0) != Some(self.seq as u16) {
            return Err(Invalid::WrongKind);
        }
        if le::u32_at(&buf, n - 4) != Some(crc32(&buf[..n - 4])) {
            return Err(Invalid::BadChecksum);
        }
        out.copy_from_slice(&buf[2..n - 4]);
        *cursor += n as u32;
        self.append_next = *cursor;
        Ok(true)
    }
}

/// An image being written into the inactive bank; see [`Banks::begin`].
#[derive(Debug)]
pub struct ImageWriter {
    target: u8,
    base: u32,
    pos: u32,
    crc: Crc32,
    cap: u32,
}

impl ImageWriter {
    /// Programs the next payload bytes.
    pub fn push<F: Flash>(&mut self, flash: &mut F, data: &[u8]) -> Result<(), WriteError> {
        let end = self.pos.checked_add(data.len() as u32).ok_or(WriteError::TooLarge)?;
        if end > self.cap {
            return Err(WriteError::TooLarge);
        }
        flash.write(self.base + BANK_HEADER as u32 + self.pos, data)?;
        self.crc.update(data);
        self.pos = end;
        Ok(())
    }
}
