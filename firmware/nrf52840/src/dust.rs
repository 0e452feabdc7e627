//! The Dust role (ES-10.6, ES-12.4): read the TEMP sensor on the node's
//! timer, send each MACed uplink over LoRa, listen for a downlink right
//! after it, and feed that back. No BLE and no Ed25519 on this board: the
//! node's crypto is the core's keyless `DustIdentity`, so the enrollment
//! path of `Node::handle_timers` is not linked in.

use crate::board;

use crate::platform::{Clock, HwRng, TempSensor};
use embassy_nrf::gpio::{Input, Level, Output, OutputDrive, Pull};
use embassy_nrf::spim::{self, Spim};
use embassy_time::{with_timeout, Delay, Duration, Instant, Timer};
use embedded_hal_bus::spi::ExclusiveDevice;
use heapless::Deque;
use krill_core::crypto::DustIdentity;
use krill_core::node::{Action, AuditEvent, DustDrop, DustSizedNode};
use krill_core::persist::{DustCounterStore, Flash};
use lora_phy::iv::GenericSx126xInterfaceVariant;
use lora_phy::mod_params::{ModulationParams, PacketParams, RadioError, RxMode};
use lora_phy::sx126x::{Config, Sx1262, Sx126x, TcxoCtrlVoltage};
use lora_phy::LoRa;

type Spi = ExclusiveDevice<Spim<'static>, Output<'static>, Delay>;
type Iv = GenericSx126xInterfaceVariant<Output<'static>, Input<'static>>;

/// The SX1262 through lora-phy, plus the duty-cycle bookkeeping.
pub struct LoraLink {
    radio: LoRa<Sx126x<Spi, Iv, Sx1262>, Delay>,
    modulation: ModulationParams,
    tx_params: PacketParams,
    rx_params: PacketParams,
    /// No uplink before this instant (1 % duty cycle).
    quiet_until: Instant,
    _power: Output<'static>,
}

/// Why an uplink was not sent.
#[derive(Debug, defmt::Format)]
pub enum UplinkError {
    /// The duty cycle forbids sending yet.
    DutyCycle,
    /// The radio reported an error.
    Radio,
}

impl From<RadioError> for UplinkError {
    fn from(_: RadioError) -> Self {
        UplinkError::Radio
    }
}

impl LoraLink {
    /// Powers the SX1262, resets and configures it (TCXO 1.8 V on DIO3,
    /// DIO2 as antenna switch, DC-DC on), and prepares ES-12.4's channel.
    pub async fn new(
        pins: board::Sx1262Pins,
        irqs: impl embassy_nrf::interrupt::typelevel::Binding<
                embassy_nrf::interrupt::typelevel::SPIM3,
                spim::InterruptHandler<embassy_nrf::peripherals::SPI3>,
            > + 'static,
    ) -> Result<Self, RadioError> {
        let power = Output::new(pins.power_en, Level::High, OutputDrive::Standard);
        let mut cfg = spim::Config::default();
        cfg.frequency = spim::Frequency::M8;
        let bus = Spim::new(pins.spi, irqs, pins.sck, pins.miso, pins.mosi, cfg);
        let nss = Output::new(pins.nss, Level::High, OutputDrive::Standard);
        let spi = ExclusiveDevice::new(bus, nss, Delay).map_err(|_| RadioError::SPI)?;
        let reset = Output::new(pins.reset, Level::High, OutputDrive::Standard);
        let dio1 = Input::new(pins.dio1, Pull::Down);
        let busy = Input::new(pins.busy, Pull::None);
        let iv = GenericSx126xInterfaceVariant::new(reset, dio1, busy, None, None)?;
        let config =
            Config { chip: Sx1262, tcxo_ctrl: Some(TcxoCtrlVoltage::Ctrl1V8), use_dcdc: true, rx_boost: false };
        let mut radio = LoRa::new(Sx126x::new(spi, iv, config), false, Delay).await?;
        let modulation =
            radio.create_modulation_params(board::LORA_SF, board::LORA_BW, board::LORA_CR, board::LORA_FREQUENCY_HZ)?;
        let tx_params = radio.create_tx_packet_params(board::LORA_PREAMBLE, false, true, false, &modulation)?;
        let rx_params = radio.create_rx_packet_params(
            board::LORA_PREAMBLE,
            false,
            krill_core::node::MAX_FRAME as u8,
            true,
            false,
            &modulation,
        )?;
        Ok(LoraLink { radio, modulation, tx_params, rx_params, quiet_until: Instant::now(), _power: power })
    }

    /// Sends one uplink and keeps the channel free for 99× its airtime.
    pub async fn uplink(&mut self, frame: &[u8]) -> Result<(), UplinkError> {
        if Instant::now() < self.quiet_until {
            return Err(UplinkError::DutyCycle);
        }
        let start = Instant::now();
        self.radio.prepare_for_tx(&self.modulation, &mut self.tx_params, board::LORA_TX_DBM, frame).await?;
        self.radio.tx().await?;
        let airtime = Instant::now() - start;
        let off = airtime * (100 / board::LORA_DUTY_CYCLE_PERCENT - 1);
        self.quiet_until = Instant::now() + off;
        Ok(())
    }

    /// Listens for one downlink right after an uplink; `None` if nothing
    /// (or nothing valid at the radio level) arrived in the window.
    pub async fn rx_window(&mut self, buf: &mut [u8]) -> Option<usize> {
        let mode = RxMode::Single(board::LORA_RX_WINDOW_SYMBOLS);
        self.radio.prepare_for_rx(mode, &self.modulation, &self.rx_params).await.ok()?;
        // The symbol timeout ends a silent window; the time limit is a
        // backstop should DIO1 never fire.
        let window = Duration::from_secs(6);
        let got = with_timeout(window, self.radio.rx(&self.rx_params, buf)).await;
        let _ = self.radio.sleep(true).await;
        match got {
            Ok(Ok((len, _status))) => Some(len as usize),
            _ => None,
        }
    }
}

/// The Dust run loop: sleep until the node's next deadline, run its
/// timers, and carry out what it asks for: read the TEMP sensor (after
/// making sure the next uplink counter is inside a persisted reservation,
/// `persist::dust`), send the MACed uplink, then open a downlink window and
/// hand what arrives back to the node. Never returns.
pub async fn run<F: Flash>(
    node: &mut DustSizedNode<DustIdentity>,
    clock: Clock,
    mut rng: HwRng,
    mut temp: TempSensor,
    mut lora: Option<LoraLink>,
    mut flash: F,
    mut counters: DustCounterStore,
) -> ! {
    let mut queue: Deque<Action, 8> = Deque::new();
    let mut downlink = [0u8; krill_core::node::MAX_FRAME];
    loop {
        // A Dust node always has its sensor timer; the cap only keeps the
        // instant representable should it ever have none.
        let deadline = node.next_deadline().min(Clock::mono_ms().saturating_add(3_600_000));
        Timer::at(Instant::from_millis(deadline)).await;
        node.handle_timers(clock.now(), &mut rng, &mut |a| {
            let _ = queue.push_back(a);
        });
        while let Some(action) = queue.pop_front() {
            match action {
                Action::ReadSensor { quantity } => {
                    let reading = temp.read().await;
                    info!("reading {} (x0.01 C)", reading);
                    if let Some(next) = node.dust_next_counter() {
                        match counters.cover(&mut flash, next) {
                            Ok(bound) => node.allow_dust_counter(bound),
                            Err(_) => warn!("dust_state write failed: counter {} not reserved", next),
                        }
                    }
                    node.handle_reading(clock.now(), quantity, reading, &mut |a| {
                        let _ = queue.push_back(a);
                    });
                }
                Action::LoraUplink(frame) => {
                    let Some(link) = lora.as_mut() else {
                        warn!("uplink dropped: no radio");
                        continue;
                    };
                    match link.uplink(&frame).await {
                        Ok(()) => info!("uplink sent, {} bytes", frame.len()),
                        Err(e) => {
                            warn!("uplink not sent: {}", e);
                            continue;
                        }
                    }
                    if let Some(n) = link.rx_window(&mut downlink).await {
                        node.handle_downlink(&downlink[..n.min(downlink.len())], &mut |a| {
                            let _ = queue.push_back(a);
                        });
                    }
                }
                Action::Audit(AuditEvent::DustQuarantined) => warn!("quarantined by the gateway"),
                Action::Audit(AuditEvent::DustDropped { reason: DustDrop::CounterNotReserved }) => {
                    warn!("uplink withheld: its counter is not reserved")
                }
                Action::Audit(AuditEvent::DustDropped { .. }) => warn!("downlink refused"),
                Action::Audit(AuditEvent::OwnReadingImpossible { reading, .. }) => {
                    warn!("own reading {} out of bounds", reading)
                }
                _ => {}
            }
        }
    }
}
