//! krill-core on the ESP32-C3, Nano role. Glue only: the on-chip
//! temperature sensor, the TRNG, the SPI flash through esp-storage laid out
//! per ES-14.1 (`persist::ESP32_C3_LAYOUT`), ESP-NOW (ES-12.3) as the frame
//! transport, and a run loop that polls the transport until the node's next
//! deadline, runs its timers and carries out its actions.
#![no_std]
#![no_main]

use esp_hal::rng::{Trng, TrngSource};
use esp_hal::time::Instant;
use esp_hal::timer::timg::TimerGroup;
use esp_hal::tsens::{Config as TsensConfig, TemperatureSensor};
use esp_println::println;
use esp_radio::esp_now::{EspNow, EspNowError, BROADCAST_ADDRESS};
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{Config as WifiConfig, WifiController, WifiError};
use esp_storage::FlashStorage;
use krill_board::{load_or_create_seed, Persistence, SeedError, Transport, WordFlash};
use krill_core::crypto::{Identity, RealCrypto, Seed};
use krill_core::node::{Action, Node, NodeConfig, Now, Rng};
use krill_core::persist::{restore, Partition, Restored, ESP32_C3_LAYOUT};
use krill_core::types::{DeviceId, Reading};
use static_cell::StaticCell;

esp_bootloader_esp_idf::esp_app_desc!();

/// Capacities: ES-1.2's Nano (32 neighbours, 4096 DAG entries) needs
/// ~530 KB, more than the chip's 400 KB SRAM, of which the app sees 313 KB
/// and Wi-Fi takes its share. Half the neighbours and an eighth of the DAG
/// leave room for the radio's heap and a stack.
type EspNode = Node<RealCrypto, 16, 512, 32, 128>;
/// DAG entries restored at boot (the node's `D`).
const DAG: usize = 512;
/// Stored profiles written at once (one per subject).
const PROFILES: usize = 16;

/// The identity seed record (see `krill_board::load_or_create_seed`): the
/// first page of ES-14.1's `krill_reserve`.
const SEED_RECORD: Partition = Partition { offset: 0x31_9000, len: 0x1000 };

static NODE: StaticCell<EspNode> = StaticCell::new();
static RESTORED: StaticCell<Restored<DAG, PROFILES>> = StaticCell::new();

/// The TRNG (RF noise needs the radio clock or the ADC entropy source, kept
/// alive by `TrngSource`) as the core's Rng.
struct HwRng(Trng);

impl Rng for HwRng {
    fn next_u32(&mut self) -> u32 {
        self.0.random()
    }
}

/// ES-12.3: every frame is an ESP-NOW broadcast on one Wi-Fi channel
/// (the core addresses unicasts inside the frame, and ESP-NOW unicast would
/// need each peer's MAC). Unencrypted: the frames are signed, and ES-12.3's
/// CCMP needs per-peer keys this board does not have yet.
struct EspNowLink {
    esp_now: EspNow,
}

/// Why a frame did not go out.
#[derive(Debug)]
enum LinkError {
    /// Longer than ESP-NOW's 250-byte payload.
    TooLong,
    /// The driver refused or the send callback reported failure.
    Send(EspNowError),
    /// Wi-Fi did not start at boot.
    NoRadio,
}

impl Transport for EspNowLink {
    type Error = LinkError;
    fn send(&mut self, _dest: Option<DeviceId>, frame: &[u8]) -> Result<(), LinkError> {
        if frame.len() > ESP_NOW_MAX_PAYLOAD {
            return Err(LinkError::TooLong);
        }
        self.esp_now.send(&BROADCAST_ADDRESS, frame).and_then(|w| w.wait()).map_err(LinkError::Send)
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<(usize, i8)> {
        let r = self.esp_now.receive()?;
        let n = r.data().len().min(buf.len());
        buf[..n].copy_from_slice(&r.data()[..n]);
        Some((n, r.info.rx_control.rssi.clamp(i8::MIN as i32, i8::MAX as i32) as i8))
    }
}

/// ESP-NOW's payload limit (ES-12.3).
const ESP_NOW_MAX_PAYLOAD: usize = 250;
/// The Wi-Fi channel every node of a deployment uses.
const ESP_NOW_CHANNEL: u8 = 1;

/// Starts the scheduler esp-radio needs, Wi-Fi in station mode, and ESP-NOW.
fn start_radio(
    timg0: esp_hal::peripherals::TIMG0<'static>,
    int0: esp_hal::peripherals::FROM_CPU_INTR0<'static>,
    wifi: esp_hal::peripherals::WIFI<'static>,
) -> Result<EspNowLink, RadioStartError> {
    esp_rtos::start(TimerGroup::new(timg0).timer0, int0);
    let mut controller = WifiController::new(wifi, Default::default()).map_err(RadioStartError::Wifi)?;
    controller.set_config(&WifiConfig::Station(StationConfig::default())).map_err(RadioStartError::Wifi)?;
    let esp_now = controller.esp_now();
    esp_now.set_channel(ESP_NOW_CHANNEL).map_err(RadioStartError::EspNow)?;
    // The controller must outlive ESP-NOW: keep Wi-Fi up for good.
    core::mem::forget(controller);
    Ok(EspNowLink { esp_now })
}

/// Why the radio did not come up.
#[derive(Debug)]
enum RadioStartError {
    /// Wi-Fi init or start failed.
    Wifi(WifiError),
    /// ESP-NOW refused the channel.
    EspNow(EspNowError),
}

/// No radio: what the node gets if Wi-Fi did not start; it then runs SOLO.
struct NoRadio;

impl Transport for NoRadio {
    type Error = LinkError;
    fn send(&mut self, _dest: Option<DeviceId>, _frame: &[u8]) -> Result<(), LinkError> {
        Err(LinkError::NoRadio)
    }
    fn receive(&mut self, _buf: &mut [u8]) -> Option<(usize, i8)> {
        None
    }
}

fn mono_ms() -> u64 {
    Instant::now().duration_since_epoch().as_millis()
}

/// Boot-relative until a time sync supplies the wall clock.
fn now(unix_at_boot_ms: i64) -> Now {
    let wall = (mono_ms() as i64).saturating_add(unix_at_boot_ms).max(0);
    Now { mono_ms: mono_ms(), unix_s: (wall / 1000).min(u32::MAX as i64) as u32, unix_subsec_ms: (wall % 1000) as u16 }
}

/// Hundredths of a degree; the sensor reads the die, a few degrees above
/// ambient (fine for the immune system's relative checks).
fn read_temperature(t: &Option<TemperatureSensor<'_>>) -> Option<Reading> {
    let c = t.as_ref()?.get_temperature().to_celsius() * 100.0;
    c.is_finite().then(|| c.clamp(Reading::MIN as f32, Reading::MAX as f32) as Reading)
}

#[esp_hal::main]
fn main() -> ! {
    let p = esp_hal::init(esp_hal::Config::default());
    // esp-radio allocates: 64 KiB reclaimed from the second-stage
    // bootloader's RAM plus 36 KiB of DRAM (esp-radio's documented sizes).
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 36 * 1024);
    let _entropy = TrngSource::new(p.RNG, p.ADC1);
    let Ok(trng) = Trng::try_new() else {
        println!("krill: the TRNG did not start");
        esp_hal::system::software_reset()
    };
    let mut rng = HwRng(trng);
    let tsens = TemperatureSensor::new(p.TSENS, TsensConfig::default()).ok();
    if tsens.is_none() {
        println!("krill: temperature sensor unavailable; no readings");
    }
    let mut flash = WordFlash::new(FlashStorage::new(p.FLASH), &ESP32_C3_LAYOUT, Some(SEED_RECORD));
    let seed = match load_or_create_seed(&mut flash, SEED_RECORD.offset, &mut rng) {
        Ok(s) => s,
        Err(SeedError::Flash(e)) => {
            println!("krill: cannot read the identity record: {:?}", e);
            esp_hal::system::software_reset()
        }
        Err(SeedError::Corrupt) => {
            println!("krill: the identity record is corrupt; refusing to invent a new identity");
            loop {
                core::hint::spin_loop();
            }
        }
    };
    let identity = Identity::from_seed(&Seed(seed));
    let mut unix_at_boot_ms = 0i64;
    let restored = RESTORED.init(restore(&mut flash, &ESP32_C3_LAYOUT, now(unix_at_boot_ms).unix_s));
    println!("krill: device {}, restore {:?}", identity.device_id(), restored.report);
    let cfg = NodeConfig::default();
    let first_query_id = rng.next_u32();
    let node = NODE.init(Node::restore(
        cfg,
        RealCrypto::new(&identity),
        now(unix_at_boot_ms),
        first_query_id,
        restored.node_image(),
    ));
    let mut persist: Persistence<_, PROFILES> = Persistence { flash, store: restored.store, failures: 0 };
    let mut radio: &mut dyn Transport<Error = LinkError> = &mut NoRadio;
    let mut link = match start_radio(p.TIMG0, p.FROM_CPU_INTR0, p.WIFI) {
        Ok(l) => Some(l),
        Err(RadioStartError::Wifi(e)) => {
            println!("krill: Wi-Fi did not start ({:?}); running SOLO", e);
            None
        }
        Err(RadioStartError::EspNow(e)) => {
            println!("krill: ESP-NOW did not start ({:?}); running SOLO", e);
            None
        }
    };
    if let Some(l) = link.as_mut() {
        radio = l;
    }
    let mut queue: heapless::Deque<Action, 32> = heapless::Deque::new();
    let mut rx = [0u8; krill_core::node::MAX_FRAME];
    let mut batch = [0u8; 4096];

    loop {
        let deadline = node.next_deadline().min(mono_ms().saturating_add(1_000));
        while mono_ms() < deadline {
            if let Some((n, rssi)) = radio.receive(&mut rx) {
                node.handle_frame(now(unix_at_boot_ms), &rx[..n.min(rx.len())], rssi, 0, &mut |a| {
                    let _ = queue.push_back(a);
                });
                break;
            }
        }
        node.handle_timers(now(unix_at_boot_ms), &mut rng, &mut |a| {
            let _ = queue.push_back(a);
        });
        while let Some(action) = queue.pop_front() {
            if persist.apply(node, &action).is_some() {
                continue;
            }
            match action {
                Action::Broadcast(f) => report(radio.send(None, &f)),
                Action::Unicast { dest, frame } => report(radio.send(Some(dest), &frame)),
                Action::ReadSensor { quantity } => {
                    if let Some(r) = read_temperature(&tsens) {
                        node.handle_reading(now(unix_at_boot_ms), quantity, r, &mut |a| {
                            let _ = queue.push_back(a);
                        });
                    }
                }
                Action::ClockOffset { offset_ms, .. } => unix_at_boot_ms = unix_at_boot_ms.saturating_add(offset_ms),
                Action::SubmitBatch { .. } => {
                    // No Full-node link (ES-12.3 TCP/TLS) on this board yet:
                    // take the batch so the next one can be made, and drop it.
                    let _ = node.take_batch(&mut batch);
                }
                Action::Lifecycle(l) => println!("krill: lifecycle request {:?}", l),
                _ => {}
            }
        }
    }
}

/// Logs a failed send; the node does not retry (at-most-once, ES-12.3).
fn report(r: Result<(), LinkError>) {
    match r {
        Ok(()) => {}
        Err(LinkError::Send(e)) => println!("krill: frame not sent: {:?}", e),
        Err(LinkError::TooLong) => println!("krill: frame over ESP-NOW's 250 bytes, not sent"),
        Err(LinkError::NoRadio) => {}
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("krill: panic: {}", info);
    esp_hal::system::software_reset()
}
