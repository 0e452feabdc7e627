//! The flash boundary: a NOR-flash trait, CRC-32, and [`RamFlash`], an
//! in-memory device that enforces NOR rules and simulates power cuts and bit
//! flips.

/// Erase unit of both target chips (ESP32-C3 SPI flash, nRF52840 NVMC page).
pub const SECTOR_SIZE: usize = 4096;
/// What an erased byte reads as.
pub const ERASED: u8 = 0xFF;

/// Why a flash operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum FlashError {
    /// The range runs past the end of the device or partition.
    OutOfBounds,
    /// An erase offset is not on a sector boundary; NOR erases whole sectors.
    Unaligned,
    /// The write would have to turn a 0 bit back into 1, which NOR flash can
    /// only do by erasing the sector first.
    NotErased,
    /// Power was lost during the operation; the flash holds whatever had been
    /// programmed up to then.
    PowerLoss,
    /// The driver reported a hardware fault.
    Device,
}

/// A NOR flash device (the shape of `embedded-storage`'s `NorFlash`).
///
/// Writes may only clear bits (1 → 0); a byte that must go back to 1 needs
/// [`Flash::erase`] of its whole sector first. `read` takes `&mut self`
/// because real SPI/NVMC drivers need the bus.
pub trait Flash {
    /// Size of the device in bytes.
    fn capacity(&self) -> u32;
    /// Reads `buf.len()` bytes at `offset`.
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError>;
    /// Programs `data` at `offset` (only 1 → 0 bit changes).
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError>;
    /// Erases the [`SECTOR_SIZE`] sector starting at `sector_offset` to 0xFF.
    fn erase(&mut self, sector_offset: u32) -> Result<(), FlashError>;
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// Slicing-by-4 tables: `CRC_TABLES[k][b]` is the CRC state change of byte
/// `b` followed by `k` zero bytes, so four bytes take one step. A flash
/// compaction checksums a whole DAG image (up to ~280 KB); a byte at a time
/// that was most of its CPU time in the simulator's city profile. 3 KB more
/// flash than one table; 8 tables would be faster again but cost 7 KB of a
/// Dust image's headroom.
static CRC_TABLES: [[u32; 256]; 4] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 4] {
    let mut t = [[0u32; 256]; 4];
    t[0] = crc_table();
    let mut i = 0;
    while i < 256 {
        let mut k = 1;
        while k < 4 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            k += 1;
        }
        i += 1;
    }
    t
}

/// Incremental CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320, init and
/// final XOR 0xFFFFFFFF; check value of "123456789" is 0xCBF43926).
///
/// Chosen over a truncated BLAKE2s because it is guaranteed (not just likely)
/// to detect every single-bit error and every burst of up to 32 bits, the
/// typical results of a torn program or a worn cell; the records are not
/// protected against a deliberate forger, who could rewrite any checksum.
#[derive(Clone, Copy, Debug)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A fresh computation.
    pub const fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        let [t0, t1, t2, t3] = &CRC_TABLES;
        let mut c = self.0;
        let mut words = data.chunks_exact(4);
        for w in &mut words {
            let x = c ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            c = t3[(x & 0xFF) as usize]
                ^ t2[((x >> 8) & 0xFF) as usize]
                ^ t1[((x >> 16) & 0xFF) as usize]
                ^ t0[(x >> 24) as usize];
        }
        for &b in words.remainder() {
            c = t0[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }
    /// The checksum of everything fed so far.
    pub fn finish(&self) -> u32 {
        !self.0
    }
}

/// CRC-32 of one slice.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(data);
    c.finish()
}

/// An in-memory NOR flash of `SIZE` bytes for tests and the simulator.
///
/// It refuses writes that need a 0 → 1 change ([`FlashError::NotErased`],
/// nothing written), so a persistence bug that relies on overwriting shows
/// up as an error rather than as silently ANDed data. A power cut is armed
/// with [`RamFlash::cut_power_after`]: the budget counts one unit per
/// programmed byte and two per erase; when it runs out mid-write the first
/// bytes are programmed and the rest are not (a torn write), mid-erase the
/// first half of the sector is erased and the second half keeps its old
/// content (a torn erase). After a cut every operation fails with
/// [`FlashError::PowerLoss`] until [`RamFlash::power_on`].
#[derive(Clone, Debug)]
pub struct RamFlash<const SIZE: usize> {
    mem: [u8; SIZE],
    budget: Option<usize>,
    dead: bool,
    used: usize,
}

impl<const SIZE: usize> Default for RamFlash<SIZE> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SIZE: usize> RamFlash<SIZE> {
    /// A fully erased device.
    pub const fn new() -> Self {
        RamFlash { mem: [ERASED; SIZE], budget: None, dead: false, used: 0 }
    }

    /// Cuts power after `units` more units of work (bytes programmed, two
    /// per erase).
    pub fn cut_power_after(&mut self, units: usize) {
        self.budget = Some(units);
    }

    /// Restores power and disarms any pending cut; the contents stay as the
    /// cut left them.
    pub fn power_on(&mut self) {
        self.budget = None;
        self.dead = false;
    }

    /// True when a power cut has happened and [`RamFlash::power_on`] was not
    /// called since.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Units of work done since creation (to find how many cut points an
    /// operation has).
    pub fn work_done(&self) -> usize {
        self.used
    }

    /// Flips one bit, as a worn or disturbed cell would; out of range is a no-op.
    pub fn flip_bit(&mut self, offset: usize, bit: u8) {
        if let Some(b) = self.mem.get_mut(offset) {
            *b ^= 1 << (bit & 7);
        }
    }

    /// The raw contents.
    pub fn bytes(&self) -> &[u8] {
        &self.mem
    }

    /// Takes `units` from the budget; returns how many were granted.
    fn spend(&mut self, units: usize) -> usize {
        let granted = match self.budget {
            None => units,
            Some(b) => {
                let g = b.min(units);
                self.budget = Some(b - g);
                g
            }
        };
        self.used += granted;
        if granted < units {
            self.dead = true;
        }
        granted
    }

    fn range(&self, offset: u32, len: usize) -> Result<core::ops::Range<usize>, FlashError> {
        let start = offset as usize;
        let end = start.checked_add(len).ok_or(FlashError::OutOfBounds)?;
        if end > SIZE {
            return Err(FlashError::OutOfBounds);
        }
        Ok(start..end)
    }
}

impl<const SIZE: usize> Flash for RamFlash<SIZE> {
    fn capacity(&self) -> u32 {
        SIZE as u32
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        if self.dead {
            return Err(FlashError::PowerLoss);
        }
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.mem[r]);
        Ok(())
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        if self.dead {
            return Err(FlashError::PowerLoss);
        }
        let r = self.range(offset, data.len())?;
        if self.mem[r.clone()].iter().zip(data).any(|(old, new)| old & new != *new) {
            return Err(FlashError::NotErased);
        }
        let granted = self.spend(data.len());
        for (old, new) in self.mem[r].iter_mut().zip(data).take(granted) {
            *old &= *new;
        }
        if self.dead {
            Err(FlashError::PowerLoss)
        } else {
            Ok(())
        }
    }

    fn erase(&mut self, sector_offset: u32) -> Result<(), FlashError> {
        if self.dead {
            return Err(FlashError::PowerLoss);
        }
        if !(sector_offset as usize).is_multiple_of(SECTOR_SIZE) {
            return Err(FlashError::Unaligned);
        }
        let r = self.range(sector_offset, SECTOR_SIZE)?;
        let granted = self.spend(2);
        let erased = match granted {
            0 => 0,
            1 => SECTOR_SIZE / 2,
            _ => SECTOR_SIZE,
        };
        self.mem[r].iter_mut().take(erased).for_each(|b| *b = ERASED);
        if self.dead {
            Err(FlashError::PowerLoss)
        } else {
            Ok(())
        }
    }
}
