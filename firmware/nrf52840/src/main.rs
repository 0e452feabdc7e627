//! krill-core on the nRF52840 (RAK4631). Glue only: the board's clock, RNG,
//! TEMP sensor, NVMC flash and radios behind the core's boundaries, and a
//! run loop that sleeps until the node's next deadline and carries out its
//! actions. One role per image, chosen by feature: `dust` (default,
//! ES-10.6, LoRa through the SX1262) or `nano` (`--no-default-features
//! --features nano`: BLE legacy advertising on the bare RADIO).
#![no_std]
#![no_main]

#[cfg(all(feature = "dust", feature = "nano"))]
compile_error!("pick one role: features `dust` and `nano` are exclusive");
#[cfg(not(any(feature = "dust", feature = "nano")))]
compile_error!("pick a role: feature `dust` or `nano`");

#[macro_use]
mod fmt;
#[cfg(feature = "nano")]
mod ble;
mod board;
#[cfg(feature = "dust")]
mod dust;
#[cfg(feature = "nano")]
mod nano;
mod platform;

use defmt_rtt as _;
use embassy_executor::Spawner;
use embassy_nrf::nvmc::Nvmc;
use embassy_nrf::rng::Rng;
use embassy_nrf::temp::Temp;
use embassy_nrf::{bind_interrupts, temp};
#[cfg(feature = "dust")]
use embassy_nrf::{peripherals, spim};
use krill_board::WordFlash;
use krill_core::node::Rng as _;
use krill_core::persist::NRF52840_LAYOUT;
use platform::{Clock, HwRng, TempSensor};

#[cfg(feature = "dust")]
bind_interrupts!(struct Irqs {
    TEMP => temp::InterruptHandler;
    SPIM3 => spim::InterruptHandler<peripherals::SPI3>;
});
#[cfg(feature = "nano")]
bind_interrupts!(struct Irqs {
    TEMP => temp::InterruptHandler;
    RADIO => ble::RadioIrq;
});

#[embassy_executor::main]
async fn main(_spawner: Spawner) {
    #[allow(unused_mut)]
    let mut config = embassy_nrf::config::Config::default();
    // The BLE radio needs the crystal (the RC oscillator drifts off
    // channel); the Dust role's SX1262 has its own TCXO.
    #[cfg(feature = "nano")]
    {
        config.hfclk_source = embassy_nrf::config::HfclkSource::ExternalXtal;
    }
    let p = embassy_nrf::init(config);
    let clock = Clock::new();
    let mut rng = HwRng::new(Rng::new_blocking(p.RNG));
    let temp = TempSensor(Temp::new(p.TEMP, Irqs));

    #[cfg(feature = "dust")]
    {
        use krill_core::crypto::DustIdentity;
        use krill_core::node::{DustLink, DustSizedNode, Node, NodeConfig};
        use krill_core::persist::{DustCounterStore, DustMeta, Status, NRF52840_DUST};
        let mut flash = WordFlash::new(Nvmc::new(p.NVMC), &NRF52840_LAYOUT, Some(NRF52840_DUST.state));
        let meta = match DustMeta::read(&mut flash, NRF52840_DUST.meta) {
            Ok(Some(m)) => m,
            Ok(None) => {
                error!("not provisioned: write the dust_meta record at {=u32:#x}", NRF52840_DUST.meta.offset);
                park().await
            }
            Err(_) => {
                error!("the dust_meta record at {=u32:#x} is damaged", NRF52840_DUST.meta.offset);
                park().await
            }
        };
        let (counters, status) = DustCounterStore::restore(&mut flash, NRF52840_DUST.state);
        if let Status::Fallback { .. } = status {
            warn!("dust_state unreadable: the uplink counter restarts at 1 and the gateway will refuse it for a while");
        }
        let lora = match dust::LoraLink::new(board::sx1262_pins!(p), Irqs).await {
            Ok(l) => Some(l),
            Err(_) => {
                error!("SX1262 did not come up; uplinks will be dropped");
                None
            }
        };
        let mut cfg = NodeConfig::dust(DustLink { short_id: meta.short_id, key: meta.key });
        cfg.timers.sensor_read_ms = board::DUST_READ_MS;
        let first_query_id = rng.next_u32();
        let mut node: DustSizedNode<DustIdentity> =
            Node::new(cfg, DustIdentity(meta.device_id), clock.now(), first_query_id);
        node.resume_dust_counter(counters.reserved());
        info!(
            "dust node, short id {=u16}, uplink counter from {=u32}",
            meta.short_id,
            counters.reserved().saturating_add(1)
        );
        dust::run(&mut node, clock, rng, temp, lora, flash, counters).await
    }

    #[cfg(feature = "nano")]
    {
        use krill_core::crypto::{Identity, RealCrypto, Seed};
        use krill_core::node::{BoardNode, Node, NodeConfig};
        use krill_core::persist::{restore, Restored};
        let mut flash = WordFlash::new(Nvmc::new(p.NVMC), &NRF52840_LAYOUT, Some(board::NANO_SEED_RECORD));
        let seed = match krill_board::load_or_create_seed(&mut flash, board::NANO_SEED_RECORD.offset, &mut rng) {
            Ok(s) => s,
            Err(_) => {
                error!("identity seed record unusable; refusing to invent a new identity");
                park().await
            }
        };
        let identity = Identity::from_seed(&Seed(seed));
        let mut restored: Restored<256, { nano::PROFILES }> = restore(&mut flash, &NRF52840_LAYOUT, clock.now().unix_s);
        let first_query_id = rng.next_u32();
        let mut node: BoardNode<RealCrypto> = Node::restore(
            NodeConfig::default(),
            RealCrypto::new(&identity),
            clock.now(),
            first_query_id,
            restored.node_image(),
        );
        info!("nano node up");
        let ble = ble::AdvBearer::new(p.RADIO, node.id(), rng.next_u32() as u16);
        let persist = krill_board::Persistence { flash, store: restored.store, failures: 0 };
        nano::run(&mut node, clock, rng, temp, ble, persist).await
    }
}

/// Nothing useful can run: stay idle (a watchdog or an operator resets us).
async fn park() -> ! {
    loop {
        embassy_time::Timer::after_secs(3600).await;
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    error!("panic; resetting");
    cortex_m::peripheral::SCB::sys_reset()
}
