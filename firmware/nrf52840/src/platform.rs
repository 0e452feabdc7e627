//! The core's boundaries on the nRF52840: clock, RNG, TEMP sensor (NVMC
//! flash is `krill_board::WordFlash<Nvmc>`).

use embassy_nrf::rng::Rng;
use embassy_nrf::temp::Temp;
use krill_core::node::Now;
use krill_core::types::Reading;

/// The board clock as the core's time: RTC1 ticks since boot for timers,
/// and a wall clock that is boot-relative until a time sync (Nano:
/// `Action::ClockOffset`) or a gateway (Dust: ES-12.4 step 6) supplies one.
pub struct Clock {
    /// Unix seconds at mono 0, once known.
    unix_at_boot_ms: i64,
}

impl Clock {
    /// A clock with no wall time yet.
    pub const fn new() -> Self {
        Clock { unix_at_boot_ms: 0 }
    }

    /// Monotonic ms since boot.
    pub fn mono_ms() -> u64 {
        embassy_time::Instant::now().as_millis()
    }

    /// Now, as the core wants it.
    pub fn now(&self) -> Now {
        let mono = Self::mono_ms();
        let wall = (mono as i64).saturating_add(self.unix_at_boot_ms).max(0);
        Now { mono_ms: mono, unix_s: (wall / 1000).min(u32::MAX as i64) as u32, unix_subsec_ms: (wall % 1000) as u16 }
    }

    /// Applies a time-sync result: our wall clock was `offset_ms` behind.
    #[cfg_attr(not(feature = "nano"), allow(dead_code))]
    pub fn adjust(&mut self, offset_ms: i64) {
        self.unix_at_boot_ms = self.unix_at_boot_ms.saturating_add(offset_ms);
    }
}

/// The RNG peripheral (thermal noise, bias correction on) as the core's Rng.
pub struct HwRng(pub Rng<'static, embassy_nrf::mode::Blocking>);

impl HwRng {
    /// Starts the RNG with bias correction (uniform bits, ~4× slower).
    pub fn new(rng: Rng<'static, embassy_nrf::mode::Blocking>) -> Self {
        rng.set_bias_correction(true);
        HwRng(rng)
    }
}

impl krill_core::node::Rng for HwRng {
    fn next_u32(&mut self) -> u32 {
        self.0.blocking_next_u32()
    }
}

/// The on-die TEMP sensor as a TEMPERATURE source (0.25 °C resolution,
/// ±5 °C accuracy uncalibrated: fine for the immune system's relative
/// checks, not for absolute measurements).
pub struct TempSensor(pub Temp<'static>);

impl TempSensor {
    /// One reading in hundredths of a degree Celsius.
    pub async fn read(&mut self) -> Reading {
        let quarters = self.0.read().await.to_bits();
        let hundredths = quarters.saturating_mul(crate::board::TEMP_HUNDREDTHS_PER_LSB);
        hundredths.clamp(Reading::MIN as i32, Reading::MAX as i32) as Reading
    }
}
