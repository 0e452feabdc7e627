//! Everything specific to the RAK4631 WisBlock core (nRF52840 + SX1262) in
//! one place: pins, the LoRa channel, and where the board's own record sits
//! in flash (the KRILL partitions are the core's `persist::NRF52840_LAYOUT`
//! and `persist::NRF52840_DUST`). Another nRF52840 + SX1262 board changes only this file.

#[cfg(feature = "dust")]
use lora_phy::mod_params::{Bandwidth, CodingRate, SpreadingFactor};

#[cfg(feature = "dust")]
/// SX1262 wiring on the RAK4631 (RAKwireless datasheet; also Meshtastic's
/// `variants/rak4631`). DIO2 drives the antenna switch and DIO3 the TCXO,
/// both configured over SPI, so P1.07 (antenna switch) stays untouched.
macro_rules! sx1262_pins {
    ($p:ident) => {
        crate::board::Sx1262Pins {
            nss: $p.P1_10,
            sck: $p.P1_11,
            mosi: $p.P1_12,
            miso: $p.P1_13,
            busy: $p.P1_14,
            dio1: $p.P1_15,
            reset: $p.P1_06,
            power_en: $p.P1_05,
            spi: $p.SPI3,
        }
    };
}
#[cfg(feature = "dust")]
pub(crate) use sx1262_pins;

#[cfg(feature = "dust")]
/// The peripherals the SX1262 needs, taken out of `Peripherals` by
/// [`sx1262_pins!`].
pub struct Sx1262Pins {
    pub nss: embassy_nrf::Peri<'static, embassy_nrf::peripherals::P1_10>,
    pub sck: embassy_nrf::Peri<'static, embassy_nrf::peripherals::P1_11>,
    pub mosi: embassy_nrf::Peri<'static, embassy_nrf::peripherals::P1_12>,
    pub miso: embassy_nrf::Peri<'static, embassy_nrf::peripherals::P1_13>,
    pub busy: embassy_nrf::Peri<'static, embassy_nrf::peripherals::P1_14>,
    pub dio1: embassy_nrf::Peri<'static, embassy_nrf::peripherals::P1_15>,
    pub reset: embassy_nrf::Peri<'static, embassy_nrf::peripherals::P1_06>,
    pub power_en: embassy_nrf::Peri<'static, embassy_nrf::peripherals::P1_05>,
    pub spi: embassy_nrf::Peri<'static, embassy_nrf::peripherals::SPI3>,
}

#[cfg(feature = "dust")]
/// ES-12.4: EU868, SF12, 125 kHz, CR 4/5. 869.525 MHz is the EU868 g3
/// sub-band (10 % duty cycle allowed; we keep ES-12.4's 1 % anyway).
pub const LORA_FREQUENCY_HZ: u32 = 869_525_000;
#[cfg(feature = "dust")]
/// Spreading factor (ES-12.4).
pub const LORA_SF: SpreadingFactor = SpreadingFactor::_12;
#[cfg(feature = "dust")]
/// Bandwidth (ES-12.4).
pub const LORA_BW: Bandwidth = Bandwidth::_125KHz;
#[cfg(feature = "dust")]
/// Coding rate (ES-12.4).
pub const LORA_CR: CodingRate = CodingRate::_4_5;
#[cfg(feature = "dust")]
/// Transmit power, dBm (EU868 limit at the antenna is 14 dBm ERP).
pub const LORA_TX_DBM: i32 = 14;
#[cfg(feature = "dust")]
/// Preamble, symbols.
pub const LORA_PREAMBLE: u16 = 8;
#[cfg(feature = "dust")]
/// Duty cycle: after an uplink of airtime `t`, stay silent for `t × (100 / 1 − 1)`.
pub const LORA_DUTY_CYCLE_PERCENT: u32 = 1;
#[cfg(feature = "dust")]
/// Symbols the receiver waits for a downlink preamble after an uplink
/// (SF12: 32.8 ms each, so ~3.3 s).
pub const LORA_RX_WINDOW_SYMBOLS: u16 = 100;

#[cfg(feature = "dust")]
/// A Dust node reads its sensor this often. ES-12.4's 1 % duty cycle at
/// SF12 (~1 s airtime for 16 bytes) allows about one uplink per 100 s.
pub const DUST_READ_MS: u64 = 120_000;

/// TEMP sensor: I30F2 quarter degrees; readings are hundredths of a degree.
pub const TEMP_HUNDREDTHS_PER_LSB: i32 = 25;

#[cfg(feature = "nano")]
/// A Nano's identity seed record (`krill_board::load_or_create_seed`): the
/// page `dust_reserve` of `persist::NRF52840_LAYOUT`, free on a Nano.
pub const NANO_SEED_RECORD: krill_core::persist::Partition =
    krill_core::persist::Partition { offset: 0xF_3000, len: 0x1000 };
