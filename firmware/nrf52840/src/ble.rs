//! A BLE 1M legacy-advertising bearer on the bare RADIO peripheral (no
//! SoftDevice, no host stack): the core's frames cut into ES-12.2 segments
//! (`krill_core::guards::segment`, v2 headers with the sender's short id),
//! each sent as one ADV_NONCONN_IND on channels 37, 38 and 39, and received
//! by listening on one advertising channel at a time and reassembling.
//!
//! What is real: the BLE 1M PHY settings (access address 0x8E89BED6, CRC-24
//! 0x00065B seeded 0x555555, whitening by channel index), the PDU header,
//! a static random AdvA derived from the device id. What is not standard:
//! the 31-byte segment is the whole AdvData, not wrapped in an AD structure
//! (ES-12.2's segment fills the legacy payload, leaving no room for one), so
//! other scanners see malformed AD data. No scan/advertise interleaving
//! beyond "send when the node asks, listen otherwise", no random
//! advertising delay, no extended advertising.

use core::future::poll_fn;
use core::sync::atomic::{compiler_fence, Ordering};
use core::task::Poll;
use embassy_futures::select::{select, Either};
use embassy_nrf::interrupt::typelevel::{Handler, Interrupt, RADIO};
use embassy_nrf::pac::radio::vals;
use embassy_nrf::{pac, peripherals, Peri};
use embassy_sync::waitqueue::AtomicWaker;
use embassy_time::{Instant, Timer};
use krill_core::guards::segment::{segment, Reassembled, Reassembler, SegLayout, REASSEMBLY_TIMEOUT_MS, SEG_PDU_LEN};
use krill_core::types::DeviceId;

/// BLE advertising access address.
const ACCESS_ADDRESS: u32 = 0x8E89_BED6;
/// ADV_NONCONN_IND with TxAdd = 1 (random address).
const ADV_NONCONN_IND_RANDOM: u8 = 0x02 | 0x40;
/// Advertising channels and their frequencies (MHz − 2400).
const CHANNELS: [(u8, u8); 3] = [(37, 2), (38, 26), (39, 80)];
/// S0 (header), LENGTH, AdvA (6), AdvData (≤ 31).
const BUF_LEN: usize = 2 + 6 + SEG_PDU_LEN;

static WAKER: AtomicWaker = AtomicWaker::new();

/// The RADIO interrupt: wakes whoever waits for the radio to disable.
pub struct RadioIrq;

impl Handler<RADIO> for RadioIrq {
    unsafe fn on_interrupt() {
        pac::RADIO.intenclr().write(|w| w.0 = 0xffff_ffff);
        WAKER.wake();
    }
}

/// The bearer. Lives in the main task's (static) future, so its packet
/// buffer does not move while the radio's DMA uses it.
pub struct AdvBearer {
    buf: [u8; BUF_LEN],
    adv_a: [u8; 6],
    layout: SegLayout,
    msg_id: u16,
    listen_channel: usize,
    reassembler: Reassembler,
    _radio: Peri<'static, peripherals::RADIO>,
}

impl AdvBearer {
    /// Configures the radio for BLE 1M advertising. Needs the HFXO running
    /// (`HfclkSource::ExternalXtal` at init).
    pub fn new(radio: Peri<'static, peripherals::RADIO>, own: DeviceId, first_msg_id: u16) -> Self {
        let r = pac::RADIO;
        r.power().write(|w| w.set_power(false));
        r.power().write(|w| w.set_power(true));
        r.mode().write(|w| w.set_mode(vals::Mode::Ble1mbit));
        r.txpower().write(|w| w.set_txpower(vals::Txpower::_0dBm));
        r.pcnf0().write(|w| {
            w.set_lflen(8);
            w.set_s0len(true);
            w.set_s1len(0);
            w.set_plen(vals::Plen::_8bit);
        });
        r.pcnf1().write(|w| {
            w.set_maxlen((BUF_LEN - 2) as u8);
            w.set_statlen(0);
            w.set_balen(3);
            w.set_endian(vals::Endian::Little);
            w.set_whiteen(true);
        });
        r.base0().write_value(ACCESS_ADDRESS << 8);
        r.prefix0().write(|w| w.set_ap0((ACCESS_ADDRESS >> 24) as u8));
        r.txaddress().write(|w| w.set_txaddress(0));
        r.rxaddresses().write(|w| w.set_addr0(true));
        r.crccnf().write(|w| {
            w.set_len(vals::Len::Three);
            w.set_skipaddr(vals::Skipaddr::Skip);
        });
        r.crcpoly().write(|w| w.set_crcpoly(0x0000_065B));
        r.crcinit().write(|w| w.set_crcinit(0x0055_5555));
        RADIO::unpend();
        // SAFETY: `RadioIrq` is bound to RADIO in main.rs and only touches
        // the interrupt enable register and an AtomicWaker.
        unsafe { RADIO::enable() };
        let mut adv_a = [0u8; 6];
        adv_a.copy_from_slice(&own.0[..6]);
        adv_a[5] |= 0xC0; // static random address: top two bits set
        let sender_short = u16::from_le_bytes([own.0[0], own.0[1]]);
        AdvBearer {
            buf: [0; BUF_LEN],
            adv_a,
            layout: SegLayout::V2 { sender_short },
            msg_id: first_msg_id,
            listen_channel: 0,
            reassembler: Reassembler::new(REASSEMBLY_TIMEOUT_MS),
            _radio: radio,
        }
    }

    fn tune(&mut self, channel: usize) {
        let (index, mhz) = CHANNELS[channel % CHANNELS.len()];
        let r = pac::RADIO;
        r.frequency().write(|w| w.set_frequency(mhz));
        r.datawhiteiv().write(|w| w.set_datawhiteiv(index));
        r.packetptr().write_value(self.buf.as_mut_ptr() as u32);
    }

    /// Waits for EVENTS_DISABLED (the end of a TX or RX with END→DISABLE).
    async fn disabled() {
        let r = pac::RADIO;
        poll_fn(|cx| {
            WAKER.register(cx.waker());
            if r.events_disabled().read() != 0 {
                r.events_disabled().write_value(0);
                Poll::Ready(())
            } else {
                r.intenset().write(|w| w.set_disabled(true));
                Poll::Pending
            }
        })
        .await;
        compiler_fence(Ordering::SeqCst);
    }

    /// Broadcasts `frame`: each segment on all three advertising channels.
    /// Returns the number of PDUs sent (0 if the frame cannot be segmented).
    pub async fn send(&mut self, frame: &[u8]) -> usize {
        self.msg_id = self.msg_id.wrapping_add(1);
        let Ok(segments) = segment(frame, self.msg_id, self.layout) else {
            return 0;
        };
        let r = pac::RADIO;
        let mut sent = 0;
        for pdu in segments {
            self.buf[0] = ADV_NONCONN_IND_RANDOM;
            self.buf[1] = (6 + pdu.len()) as u8;
            self.buf[2..8].copy_from_slice(&self.adv_a);
            self.buf[8..8 + pdu.len()].copy_from_slice(&pdu);
            for ch in 0..CHANNELS.len() {
                self.tune(ch);
                compiler_fence(Ordering::SeqCst);
                r.events_disabled().write_value(0);
                r.shorts().write(|w| {
                    w.set_ready_start(true);
                    w.set_end_disable(true);
                });
                r.tasks_txen().write_value(1);
                Self::disabled().await;
                sent += 1;
            }
        }
        sent
    }

    /// Listens (one advertising channel, the next one each call) until a
    /// frame is complete or `until`; returns the frame and its RSSI.
    pub async fn listen(&mut self, until: Instant) -> Option<(Reassembled, i8)> {
        let r = pac::RADIO;
        self.tune(self.listen_channel);
        self.listen_channel = (self.listen_channel + 1) % CHANNELS.len();
        while Instant::now() < until {
            compiler_fence(Ordering::SeqCst);
            r.events_disabled().write_value(0);
            r.shorts().write(|w| {
                w.set_ready_start(true);
                w.set_end_disable(true);
                w.set_address_rssistart(true);
                w.set_disabled_rssistop(true);
            });
            r.tasks_rxen().write_value(1);
            if let Either::Second(()) = select(Self::disabled(), Timer::at(until)).await {
                r.intenclr().write(|w| w.0 = 0xffff_ffff);
                r.tasks_disable().write_value(1);
                while r.events_disabled().read() == 0 {}
                r.events_disabled().write_value(0);
                return None;
            }
            if r.crcstatus().read().crcstatus() != vals::Crcstatus::CrcOk {
                continue;
            }
            let rssi = -(r.rssisample().read().rssisample().min(127) as i8);
            let len = usize::from(self.buf[1]).min(BUF_LEN - 2);
            if self.buf[0] & 0x0F != ADV_NONCONN_IND_RANDOM & 0x0F || len <= 6 {
                continue;
            }
            let now_ms = Instant::now().as_millis();
            self.reassembler.expire(now_ms);
            if let Ok(Some(frame)) = self.reassembler.push(&self.buf[8..2 + len], now_ms) {
                return Some((frame, rssi));
            }
        }
        None
    }
}
