//! Radio models: BLE advertising between Nanos (ES-11.4 log-distance path
//! loss, per-link static shadowing, per-packet fading, sensitivity floor,
//! packet error vs SNR, optional collisions on the three advertising
//! channels with capture), or ESP-NOW on the WiFi PHY in its place (ES-12.3:
//! same 2.4 GHz path loss, 802.11b DSSS airtime and bit errors, MAC
//! acknowledgements and retries for unicasts to peers), LoRa SF12 for Dust uplinks (ES-12.4 airtime, link
//! budget against the SF12 demodulation floor, capture at the gateway), and
//! neighbour finding by a spatial grid.
//!
//! Collisions are judged by the receiver alone, in its own event order, with
//! a [`ReceiverState`]: nodes run in parallel, so a decision may only use what
//! the receiver has already seen (see its docs for the bias this implies).

use std::collections::VecDeque;

use crate::rng::{Purpose, SimRng};
use crate::scenario::{Bearer, BleAdv, RadioConfig};
use crate::world::World;
use krill_core::distance::RssiCalibration;
use krill_core::guards::segment::{SegLayout, SEG_HEADER_V2};

/// A directed link with its mean received power.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// Receiver index.
    pub to: u32,
    /// Mean RSSI at the receiver (path loss + shadowing + walls), dBm.
    pub mean_rssi: f32,
    /// Distance, m.
    pub distance_m: f32,
}

/// Fading beyond this many σ is not considered when finding neighbours.
const FADING_SIGMAS: f64 = 3.0;

/// The three BLE primary advertising channels (ES-12.2).
pub const ADV_CHANNELS: [u8; 3] = [37, 38, 39];
/// Between two network-layer transmissions of one BLE Mesh unicast, µs
/// (Zephyr's default Network Transmit interval, 20 ms), before each one's
/// advertising delay.
pub const NETWORK_TRANSMIT_INTERVAL_US: u64 = 20_000;
/// ES-12.2 scan interval: a scanner listens on one primary channel per
/// interval and moves to the next, so two frames overlapping at a receiver
/// are almost always heard on the same channel.
pub const SCAN_INTERVAL_US: u64 = 60_000;
/// A frame survives an overlap when it is at least this much stronger than
/// every frame it overlaps (co-channel capture, BLE GFSK and LoRa alike).
pub const CAPTURE_DB: f32 = 6.0;
/// Longest BLE frame: an extended advertising PDU of 255 bytes.
pub const BLE_MAX_FRAME: usize = 255;
/// Longest LoRa uplink at SF12 in EU868 (ES-12.4).
pub const LORA_MAX_FRAME: usize = 51;

/// LoRa transmit power of a Dust node, dBm (EU868 limit, 14 dBm ERP).
pub const LORA_TX_DBM: f64 = 14.0;
/// LoRa noise floor in 125 kHz: −174 dBm/Hz + 10·log10(125 kHz) + 6 dB
/// receiver noise figure.
pub const LORA_NOISE_FLOOR_DBM: f64 = -117.0;
/// Lowest SNR SF12 demodulates (Semtech SX127x datasheet, table 13).
pub const LORA_SF12_MIN_SNR_DB: f64 = -20.0;
/// SF12/125 kHz sensitivity: the noise floor plus the demodulation floor.
pub const LORA_SENSITIVITY_DBM: f64 = LORA_NOISE_FLOOR_DBM + LORA_SF12_MIN_SNR_DB;
/// EU868's three default uplink channels; a Dust node picks one per uplink.
pub const LORA_CHANNELS: u8 = 3;
/// Salt that keeps LoRa shadowing independent of the BLE shadowing of the
/// same pair (different band, antennas and heights).
const LORA_SHADOW_SALT: u64 = 0x4C6F_5261_5368_6164;

/// Most nodes [`Radio::within_hops`] returns.
pub const WITHIN_HOPS_MAX: usize = 256;

/// BLE 1M PHY: 8 µs per byte, plus preamble, access address, header and
/// CRC (1 + 4 + 2 + 3 bytes).
pub fn ble_airtime_us(payload_len: usize) -> u64 {
    (payload_len as u64 + 10) * 8
}

/// Bytes of a legacy advertising PDU around a segment: header and length
/// (2) and AdvA (6).
const LEGACY_PDU_OVERHEAD: usize = 2 + 6;
/// Radio turnaround between two back-to-back advertising PDUs, µs (the
/// nRF52840's ramp-up, ~140 µs).
const LEGACY_TURNAROUND_US: u64 = 150;
/// The segment layout the nRF52840 bearer uses.
const LEGACY_LAYOUT: SegLayout = SegLayout::V2 { sender_short: 0 };

/// The advertising PDUs of a `len`-byte frame in legacy mode: each
/// segment's on-air payload length (one per segment, channels not counted).
pub fn legacy_pdus(len: usize) -> impl Iterator<Item = usize> {
    let per = LEGACY_LAYOUT.payload_len();
    let n = LEGACY_LAYOUT.segments_for(len).max(1);
    (0..n).map(move |i| LEGACY_PDU_OVERHEAD + SEG_HEADER_V2 + per.min(len.saturating_sub(i * per)))
}

/// LoRa airtime of `payload_len` bytes at SF12, 125 kHz, CR 4/5, explicit
/// header, CRC on, 8-symbol preamble, low-data-rate optimisation on
/// (Semtech AN1200.13), µs.
pub fn lora_sf12_airtime_us(payload_len: usize) -> u64 {
    let sf = 12.0f64;
    let t_sym_us = (2f64.powf(sf) / 125_000.0) * 1e6;
    let preamble = (8.0 + 4.25) * t_sym_us;
    let (de, h, cr) = (1.0, 0.0, 1.0);
    let num = 8.0 * payload_len as f64 - 4.0 * sf + 28.0 + 16.0 - 20.0 * h;
    let n_payload = 8.0 + ((num / (4.0 * (sf - 2.0 * de))).ceil() * (cr + 4.0)).max(0.0);
    (preamble + n_payload * t_sym_us).round() as u64
}

/// From this SNR up, ½·exp(−SNR/2) is below half an ulp of 1.0, so the
/// formula below yields exactly 0: skipping it saves three transcendental
/// calls on most receptions without changing a single draw.
const BLE_ERROR_FREE_SNR_DB: f64 = 19.0;

/// Probability that a BLE frame of `len` bytes is lost at `snr_db`:
/// non-coherent GFSK, BER = ½·exp(−SNR/2) with Eb/N0 ≈ SNR at 1 Mb/s.
pub fn ble_packet_error(snr_db: f64, len: usize) -> f64 {
    if snr_db >= BLE_ERROR_FREE_SNR_DB {
        return 0.0;
    }
    let snr = 10f64.powf(snr_db / 10.0);
    let ber = 0.5 * (-snr / 2.0).exp();
    let bits = (len as f64 + 10.0) * 8.0;
    1.0 - (1.0 - ber).powf(bits)
}

/// ESP-NOW's largest payload (ES-12.3: 250 bytes, "all messages fit").
pub const ESPNOW_MAX_FRAME: usize = 250;
/// Bytes an ESP-NOW frame adds around its payload: 802.11 MAC header (24),
/// action category, OUI and random value (8), vendor element header (7),
/// FCS (4).
const ESPNOW_OVERHEAD: usize = 43;
/// 802.11b long PLCP preamble and header at 1 Mb/s, µs.
const DSSS_PLCP_US: u64 = 192;
/// 802.11b timing, µs: SIFS, slot, DIFS, and the initial contention window
/// (CWmin = 31 slots, doubling on every retry up to 1023).
const SIFS_US: u64 = 10;
const SLOT_US: u64 = 20;
const DIFS_US: u64 = SIFS_US + 2 * SLOT_US;
const CW_MIN: u64 = 31;
const CW_MAX: u64 = 1023;
/// An 802.11 ACK frame at 1 Mb/s (14 bytes), µs.
const ACK_US: u64 = DSSS_PLCP_US + 14 * 8;
/// Barker-11 spreading gain of 802.11b at 1 Mb/s (11 chips per bit).
const DSSS_SPREADING_GAIN: f64 = 11.0;
/// Effective WiFi noise floor over the 22 MHz channel, dBm: with the
/// spreading gain it puts a 1,024-byte frame at −98 dBm at about 7 % packet
/// error, the ESP32-C3 datasheet's sensitivity point (8 %).
pub const WIFI_NOISE_FLOOR_DBM: f64 = -98.0;

/// As [`BLE_ERROR_FREE_SNR_DB`], with the spreading gain.
const ESPNOW_ERROR_FREE_SNR_DB: f64 = 6.0;

/// Airtime of an ESP-NOW frame with `payload_len` bytes at 802.11b
/// 1 Mb/s, µs.
pub fn espnow_airtime_us(payload_len: usize) -> u64 {
    DSSS_PLCP_US + 8 * (payload_len + ESPNOW_OVERHEAD) as u64
}

/// Probability that an ESP-NOW frame of `len` payload bytes is lost at
/// `snr_db` (over the 22 MHz channel): DBPSK, BER = ½·exp(−Eb/N0) with
/// Eb/N0 = SNR × the spreading gain.
pub fn espnow_packet_error(snr_db: f64, len: usize) -> f64 {
    if snr_db >= ESPNOW_ERROR_FREE_SNR_DB {
        return 0.0;
    }
    let ebn0 = 10f64.powf(snr_db / 10.0) * DSSS_SPREADING_GAIN;
    let ber = 0.5 * (-ebn0).exp();
    let bits = ((len + ESPNOW_OVERHEAD) as f64 + 24.0) * 8.0;
    1.0 - (1.0 - ber).powf(bits)
}

/// When a frame arrives after it was handed to the radio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTiming {
    /// From the send to the end of the frame (its last segment), µs.
    pub latency_us: u64,
    /// From the end of the first segment to the end of the last, µs (0 for
    /// an unsegmented frame).
    pub reassembly_us: u64,
}

/// One LoRa uplink as a gateway hears it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoraRx {
    /// Received power, dBm (below the BLE `i8` range near the floor).
    pub rssi_dbm: f32,
    /// Signal-to-noise ratio, dB.
    pub snr_db: f32,
}

/// The static radio picture of a scenario: positions and every usable link.
pub struct Radio {
    cfg: RadioConfig,
    positions: Vec<(f64, f64)>,
    links: Vec<Vec<Link>>,
    /// ESP-NOW peer tables: each node's `max_peers` strongest links, by
    /// receiver index (empty under BLE).
    peers: Vec<Vec<u32>>,
    exponent: f64,
    ref_1m: f64,
    /// LoRa path loss at 1 m, dB: calibrated so that the mean budget meets
    /// SF12 sensitivity at `lora_range_m` (`None` when that range is 0).
    lora_loss_1m: Option<f64>,
    lora_exponent: f64,
    /// For the wall losses of LoRa links, computed per uplink (few gateways).
    world: World,
    seed: u64,
}

impl Radio {
    /// Builds the link table of `positions` (node i at `positions[i]`,
    /// transmitting at `tx_dbm[i]`; see [`Radio::node_tx_dbm`]) for the
    /// configured bearer.
    pub fn new(cfg: &RadioConfig, world: &World, positions: &[(f64, f64)], tx_dbm: &[f64], seed: u64) -> Self {
        let sensitivity = Self::sensitivity_of(cfg);
        let cal = RssiCalibration::SPEC;
        let exponent = f64::from(match cfg.environment.core() {
            krill_core::distance::Environment::Indoor => cal.exponent_indoor,
            krill_core::distance::Environment::Outdoor => cal.exponent_outdoor,
        });
        let ref_1m = f64::from(cal.rssi_ref_1m);
        let max_tx = tx_dbm.iter().copied().fold(Self::node_tx_dbm(cfg), f64::max);
        // Farthest distance at which a frame could still arrive.
        let margin = max_tx + ref_1m + FADING_SIGMAS * (cfg.shadowing_sd_db + cfg.fading_sd_db) - sensitivity;
        let range = 10f64.powf(margin.max(0.0) / (10.0 * exponent)).max(1.0);
        let grid = Grid::new(positions, range);
        let mut links = vec![Vec::new(); positions.len()];
        for (i, &(x, y)) in positions.iter().enumerate() {
            for j in grid.near(x, y) {
                if j == i {
                    continue;
                }
                let (xj, yj) = positions[j];
                let d = ((x - xj).powi(2) + (y - yj).powi(2)).sqrt();
                if d > range {
                    continue;
                }
                let shadow = cfg.shadowing_sd_db * link_normal(seed, i as u32, j as u32);
                let pl = -ref_1m + 10.0 * exponent * d.max(0.1).log10();
                let mean = tx_dbm.get(i).copied().unwrap_or(Self::node_tx_dbm(cfg))
                    - pl
                    - shadow
                    - world.wall_loss_db((x, y), (xj, yj));
                if mean + FADING_SIGMAS * cfg.fading_sd_db >= sensitivity {
                    links[i].push(Link { to: j as u32, mean_rssi: mean as f32, distance_m: d as f32 });
                }
            }
            links[i].sort_by_key(|l| l.to);
        }
        let lora_exponent = f64::from(cal.exponent_outdoor);
        let lora_loss_1m = (cfg.lora_range_m > 0.0)
            .then(|| LORA_TX_DBM - LORA_SENSITIVITY_DBM - 10.0 * lora_exponent * cfg.lora_range_m.log10());
        let mut radio = Radio {
            cfg: cfg.clone(),
            positions: positions.to_vec(),
            links,
            peers: Vec::new(),
            exponent,
            ref_1m,
            lora_loss_1m,
            lora_exponent,
            world: world.clone(),
            seed,
        };
        radio.build_peers();
        radio
    }

    /// Transmit power of a node on the configured bearer, dBm.
    pub fn node_tx_dbm(cfg: &RadioConfig) -> f64 {
        match cfg.bearer {
            Bearer::Ble => cfg.tx_power_dbm,
            Bearer::EspNow => cfg.esp_now.tx_power_dbm,
        }
    }

    fn sensitivity_of(cfg: &RadioConfig) -> f64 {
        match cfg.bearer {
            Bearer::Ble => cfg.sensitivity_dbm,
            Bearer::EspNow => cfg.esp_now.sensitivity_dbm,
        }
    }

    /// Removes every link from or to `nodes`: devices without the bearer's
    /// radio (Dust nodes have no WiFi).
    pub fn without_nodes(mut self, nodes: &[u32]) -> Self {
        let off: std::collections::BTreeSet<u32> = nodes.iter().copied().collect();
        for (i, links) in self.links.iter_mut().enumerate() {
            if off.contains(&(i as u32)) {
                links.clear();
            } else {
                links.retain(|l| !off.contains(&l.to));
            }
        }
        self.build_peers();
        self
    }

    fn build_peers(&mut self) {
        self.peers.clear();
        if self.cfg.bearer != Bearer::EspNow {
            return;
        }
        let max = usize::from(self.cfg.esp_now.max_peers);
        self.peers = self
            .links
            .iter()
            .map(|links| {
                let mut by_power: Vec<&Link> = links.iter().collect();
                by_power.sort_by(|a, b| b.mean_rssi.total_cmp(&a.mean_rssi).then(a.to.cmp(&b.to)));
                let mut p: Vec<u32> = by_power.iter().take(max).map(|l| l.to).collect();
                p.sort_unstable();
                p
            })
            .collect();
    }

    /// True if `to` is in `from`'s ESP-NOW peer table.
    pub fn is_peer(&self, from: u32, to: u32) -> bool {
        self.peers.get(from as usize).is_some_and(|p| p.binary_search(&to).is_ok())
    }

    /// The configuration.
    pub fn config(&self) -> &RadioConfig {
        &self.cfg
    }

    /// Node positions.
    pub fn positions(&self) -> &[(f64, f64)] {
        &self.positions
    }

    /// Links out of `from`, by receiver index.
    pub fn links(&self, from: u32) -> &[Link] {
        self.links.get(from as usize).map_or(&[], |v| v.as_slice())
    }

    /// Nodes two to `max_hops` link hops from `from`, nearest hops first
    /// (then in link order), at most [`WITHIN_HOPS_MAX`]: whose frames a
    /// relaying mesh can bring to `from`.
    pub fn within_hops(&self, from: u32, max_hops: u32) -> Vec<u32> {
        let mut seen = std::collections::BTreeSet::from([from]);
        seen.extend(self.links(from).iter().map(|l| l.to));
        let mut frontier: Vec<u32> = self.links(from).iter().map(|l| l.to).collect();
        let mut found = Vec::new();
        for _ in 1..max_hops {
            let mut next = Vec::new();
            for &u in &frontier {
                for l in self.links(u) {
                    if seen.insert(l.to) {
                        next.push(l.to);
                        found.push(l.to);
                        if found.len() >= WITHIN_HOPS_MAX {
                            return found;
                        }
                    }
                }
            }
            frontier = next;
        }
        found
    }

    /// Path-loss exponent and 1 m reference in use.
    pub fn model(&self) -> (f64, f64) {
        (self.exponent, self.ref_1m)
    }

    /// One frame over `link`: its RSSI, or `None` if it is lost. Extended
    /// advertising and ESP-NOW are one packet ([`Radio::receive`]; ESP-NOW
    /// refuses frames over 250 bytes); legacy advertising needs every
    /// segment, each faded and error-checked on its own (the RSSI reported
    /// is the last segment's, as the reassembler reports it).
    pub fn receive_frame(&self, link: &Link, len: usize, rng: &mut SimRng) -> Option<i8> {
        match (self.cfg.bearer, self.cfg.ble_adv) {
            (Bearer::EspNow, _) if len > ESPNOW_MAX_FRAME => None,
            (Bearer::EspNow, _) | (Bearer::Ble, BleAdv::Extended) => self.receive(link, len, rng),
            (Bearer::Ble, BleAdv::Legacy) => {
                let mut rssi = None;
                for pdu in legacy_pdus(len) {
                    rssi = Some(self.receive(link, pdu, rng)?);
                }
                rssi
            }
        }
    }

    /// Airtime of a `len`-byte frame, µs: one packet, or in legacy mode the
    /// sum of its segments' advertising events (three channels each).
    pub fn frame_airtime_us(&self, len: usize) -> u64 {
        match (self.cfg.bearer, self.cfg.ble_adv) {
            (Bearer::EspNow, _) => espnow_airtime_us(len),
            (Bearer::Ble, BleAdv::Extended) => ble_airtime_us(len),
            (Bearer::Ble, BleAdv::Legacy) => {
                legacy_pdus(len).map(|p| 3 * (ble_airtime_us(p) + LEGACY_TURNAROUND_US)).sum()
            }
        }
    }

    /// A scanner for this radio's frames (collisions).
    pub fn ble_receiver(&self) -> ReceiverState {
        ReceiverState::new(self.frame_airtime_us(BLE_MAX_FRAME))
    }

    /// One packet over `link`: its RSSI, or `None` if it is lost (below
    /// sensitivity or a bit error), drawing fading from the sender's stream.
    pub fn receive(&self, link: &Link, len: usize, rng: &mut SimRng) -> Option<i8> {
        let mean = f64::from(link.mean_rssi);
        let (sd, sensitivity) = (self.cfg.fading_sd_db, Self::sensitivity_of(&self.cfg));
        // Only a fade of at least this many σ reaches the floor; the draw is
        // the same either way, the shortcut only skips the math.
        let z = if sd > 0.0 { rng.normal_reaching((sensitivity - mean) / sd)? } else { rng.normal() };
        let rssi = mean + sd * z;
        if rssi < sensitivity {
            return None;
        }
        let per = self.packet_error(rssi, len);
        if rng.chance(per) {
            return None;
        }
        Some(rssi.round().clamp(-128.0, 127.0) as i8)
    }

    fn packet_error(&self, rssi: f64, len: usize) -> f64 {
        match self.cfg.bearer {
            Bearer::Ble => ble_packet_error(rssi - self.cfg.noise_floor_dbm, len),
            Bearer::EspNow => espnow_packet_error(rssi - WIFI_NOISE_FLOOR_DBM, len),
        }
    }

    /// How many times a frame goes on air: BLE Mesh repeats a unicast
    /// [`RadioConfig::ble_unicast_transmits`] times whoever hears it; a
    /// broadcast, and an ESP-NOW frame (retried only when unacknowledged,
    /// counted by [`Radio::receive_unicast`]'s latency), once.
    pub fn transmissions(&self, unicast: bool) -> u64 {
        if unicast && self.cfg.bearer == Bearer::Ble {
            u64::from(self.cfg.ble_unicast_transmits.max(1))
        } else {
            1
        }
    }

    /// One unicast from `from` over `link`, with its delay beyond the first
    /// attempt, µs. Under BLE, Mesh unicast is an advertisement too, sent
    /// [`RadioConfig::ble_unicast_transmits`] times without an ACK: the
    /// first copy that gets through counts. Under ESP-NOW, to a peer, the
    /// MAC retransmits an unacknowledged frame up to `retries` times, each
    /// after an ACK timeout and a backoff from a doubled contention window
    /// (the ACK itself is taken as received: it is short and sent at the
    /// same power); to anyone else the frame takes the multicast fallback:
    /// one attempt.
    pub fn receive_unicast(&self, from: u32, link: &Link, len: usize, rng: &mut SimRng) -> Option<(i8, u64)> {
        if self.cfg.bearer == Bearer::Ble {
            let mut extra = 0;
            for k in 0..self.cfg.ble_unicast_transmits.max(1) {
                if k > 0 {
                    extra += NETWORK_TRANSMIT_INTERVAL_US + rng.below(self.cfg.adv_jitter_us + 1);
                }
                if let Some(rssi) = self.receive_frame(link, len, rng) {
                    return Some((rssi, extra));
                }
            }
            return None;
        }
        if !self.is_peer(from, link.to) {
            return self.receive_frame(link, len, rng).map(|r| (r, 0));
        }
        let mut extra = 0;
        let mut cw = CW_MIN;
        for _ in 0..=self.cfg.esp_now.retries {
            if let Some(rssi) = self.receive_frame(link, len, rng) {
                return Some((rssi, extra));
            }
            cw = (2 * cw + 1).min(CW_MAX);
            extra += SIFS_US + ACK_US + DIFS_US + SLOT_US * rng.below(cw + 1) + espnow_airtime_us(len);
        }
        None
    }

    /// When a frame of `len` bytes arrives, and how long its reassembly
    /// took. Extended advertising and ESP-NOW: stack latency, the BLE
    /// advertising delay or the WiFi channel access (DIFS and a backoff
    /// from the initial contention window), then airtime. Legacy
    /// advertising (ES-12.2, "4 segments → 4 × advertising events"): each
    /// segment is one advertising event on the three channels, the next one
    /// `legacy_interval_ms` plus a fresh advertising delay later; the
    /// reassembly runs from the end of the first segment to the end of the
    /// last.
    pub fn frame_timing(&self, len: usize, rng: &mut SimRng) -> FrameTiming {
        let stack = self.cfg.stack_latency_us;
        match (self.cfg.bearer, self.cfg.ble_adv) {
            (Bearer::EspNow, _) => FrameTiming {
                latency_us: stack + DIFS_US + SLOT_US * rng.below(CW_MIN + 1) + espnow_airtime_us(len),
                reassembly_us: 0,
            },
            (Bearer::Ble, BleAdv::Extended) => FrameTiming {
                latency_us: stack + rng.below(self.cfg.adv_jitter_us + 1) + ble_airtime_us(len),
                reassembly_us: 0,
            },
            (Bearer::Ble, BleAdv::Legacy) => {
                let burst = |p: usize| 3 * (ble_airtime_us(p) + LEGACY_TURNAROUND_US);
                let mut at = stack + rng.below(self.cfg.adv_jitter_us + 1);
                let (mut first_end, mut last_end) = (None, 0);
                for (k, p) in legacy_pdus(len).enumerate() {
                    if k > 0 {
                        at += u64::from(self.cfg.legacy_interval_ms) * 1_000 + rng.below(self.cfg.adv_jitter_us + 1);
                    }
                    last_end = at + burst(p);
                    first_end.get_or_insert(last_end);
                }
                FrameTiming { latency_us: last_end, reassembly_us: last_end - first_end.unwrap_or(last_end) }
            }
        }
    }

    /// True if a frame whose reassembly took `t` is discarded: elapsed ≥
    /// `reassembly_timeout_ms`, as the core's `Reassembler` rules.
    pub fn reassembly_times_out(&self, timing: &FrameTiming) -> bool {
        timing.reassembly_us > 0 && timing.reassembly_us >= u64::from(self.cfg.reassembly_timeout_ms) * 1_000
    }

    /// The smallest latency of any link: the engine's lookahead.
    pub fn min_latency_us(&self) -> u64 {
        self.cfg.stack_latency_us
    }

    /// Probability that a frame of `len` bytes crosses `link` with this
    /// radio's bearer: [`Radio::delivery_probability`] for extended
    /// advertising, the product over its segments for legacy (what
    /// [`Radio::receive_frame`] draws from).
    pub fn frame_delivery_probability(&self, link: &Link, len: usize) -> f64 {
        match (self.cfg.bearer, self.cfg.ble_adv) {
            (Bearer::EspNow, _) if len > ESPNOW_MAX_FRAME => 0.0,
            (Bearer::EspNow, _) | (Bearer::Ble, BleAdv::Extended) => self.delivery_probability(link, len),
            (Bearer::Ble, BleAdv::Legacy) => legacy_pdus(len).map(|p| self.delivery_probability(link, p)).product(),
        }
    }

    /// Probability that one packet of `len` bytes crosses `link`: the fading
    /// distribution integrated against the sensitivity floor and the packet
    /// error rate (what [`Radio::receive`] draws from), by quadrature.
    pub fn delivery_probability(&self, link: &Link, len: usize) -> f64 {
        let mean = f64::from(link.mean_rssi);
        let ok = |rssi: f64| {
            if rssi < Self::sensitivity_of(&self.cfg) {
                0.0
            } else {
                1.0 - self.packet_error(rssi, len)
            }
        };
        let sd = self.cfg.fading_sd_db;
        if sd <= 0.0 {
            return ok(mean);
        }
        // Midpoint rule over ±6 σ: the weights sum to 1 within 1e-8.
        const STEPS: usize = 480;
        let h = 12.0 / STEPS as f64;
        let norm = h / (std::f64::consts::TAU).sqrt();
        (0..STEPS)
            .map(|k| {
                let z = -6.0 + (k as f64 + 0.5) * h;
                norm * (-0.5 * z * z).exp() * ok(mean + sd * z)
            })
            .sum::<f64>()
            .clamp(0.0, 1.0)
    }

    /// The mean RSSI at which a frame of `len` bytes arrives with
    /// probability `p` (delivery rises with the mean), dBm, by bisection.
    pub fn mean_rssi_for_delivery(&self, p: f64, len: usize) -> f64 {
        let prob = |m: f64| self.delivery_probability(&Link { to: 0, mean_rssi: m as f32, distance_m: 0.0 }, len);
        let (mut lo, mut hi) = (self.cfg.noise_floor_dbm - 20.0, self.cfg.noise_floor_dbm + 80.0);
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if prob(mid) >= p {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// Mean LoRa power of `from`'s uplinks at `to`, dBm: log-distance loss
    /// with the ES-11.4 outdoor exponent from a 1 m loss calibrated so that
    /// the budget meets SF12 sensitivity at `lora_range_m`, plus static
    /// shadowing (reciprocal, independent of BLE's) and wall losses.
    pub fn lora_mean_rssi(&self, from: u32, to: u32) -> Option<f64> {
        let loss_1m = self.lora_loss_1m?;
        let &(x, y) = self.positions.get(from as usize)?;
        let &(tx, ty) = self.positions.get(to as usize)?;
        if from == to {
            return None;
        }
        let d = ((x - tx).powi(2) + (y - ty).powi(2)).sqrt().max(1.0);
        let shadow = self.cfg.shadowing_sd_db * link_normal(self.seed ^ LORA_SHADOW_SALT, from, to);
        Some(
            LORA_TX_DBM
                - loss_1m
                - 10.0 * self.lora_exponent * d.log10()
                - shadow
                - self.world.wall_loss_db((x, y), (tx, ty)),
        )
    }

    /// Gateways among `candidates` whose mean LoRa budget from `from`
    /// reaches SF12 sensitivity (half or more of the uplinks arrive),
    /// strongest first. Without shadowing this is "within `lora_range_m`",
    /// nearest first.
    pub fn lora_receivers(&self, from: u32, candidates: &[u32]) -> Vec<u32> {
        let mut v: Vec<(f64, u32)> = candidates
            .iter()
            .filter_map(|&c| {
                let p = self.lora_mean_rssi(from, c)?;
                (p >= LORA_SENSITIVITY_DBM).then_some((p, c))
            })
            .collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, c)| c).collect()
    }

    /// One uplink from `from` at gateway `to`: per-packet fading drawn from
    /// the sender's stream; lost below the SF12 demodulation floor.
    pub fn lora_receive(&self, from: u32, to: u32, rng: &mut SimRng) -> Option<LoraRx> {
        let mean = self.lora_mean_rssi(from, to)?;
        let rssi = mean + self.cfg.fading_sd_db * rng.normal();
        let snr = rssi - LORA_NOISE_FLOOR_DBM;
        (snr >= LORA_SF12_MIN_SNR_DB).then_some(LoraRx { rssi_dbm: rssi as f32, snr_db: snr as f32 })
    }
}

/// The EU868 channel of one uplink, drawn by the sender.
pub fn lora_channel(rng: &mut SimRng) -> u8 {
    rng.below(u64::from(LORA_CHANNELS)) as u8
}

/// The primary advertising channel `receiver` scans at `t_us`: scanners
/// rotate 37 → 38 → 39 once per [`SCAN_INTERVAL_US`], each from its own
/// phase.
pub fn scan_channel(receiver: u32, t_us: u64) -> u8 {
    let k = (t_us / SCAN_INTERVAL_US + u64::from(receiver)) % 3;
    ADV_CHANNELS[k as usize]
}

/// One transmission heard (or sent) at a receiver.
#[derive(Clone, Copy, Debug, PartialEq)]
struct OnAir {
    start_us: u64,
    end_us: u64,
    channel: u8,
    rssi: f32,
}

/// What a receiver has heard lately, to decide collisions.
///
/// Frames reach a receiver as events at the end of their airtime, in time
/// order; the receiver calls [`ReceiverState::admit`] for each. A frame is
/// lost if it overlaps, on the same channel, a frame already heard that it
/// does not beat by [`CAPTURE_DB`], or a transmission of the receiver itself
/// (half duplex, see [`ReceiverState::transmitting`]). Every frame is
/// remembered, lost or not: it was energy on the air.
///
/// Only the past is known at a delivery, so of two overlapping frames the
/// one that ends first has already been passed on when the second arrives:
/// the second is lost unless it captures, the first always survives. Real
/// radios lose both when neither captures, so this model under-counts
/// collision losses by up to half. Deciding both would need a second event
/// per frame at its start; the bias is the price of one event per delivery.
/// Frames the radio model already dropped (fading, bit errors) are never
/// delivered, so they interfere with nothing.
#[derive(Clone, Debug)]
pub struct ReceiverState {
    heard: VecDeque<OnAir>,
    own: VecDeque<(u64, u64)>,
    /// Longest frame expected, µs: older records cannot overlap new frames.
    horizon_us: u64,
    /// Frames lost to an overlap.
    pub collided: u64,
    /// Frames that survived an overlap by capture.
    pub captured: u64,
    /// Frames lost because the receiver was transmitting.
    pub deaf: u64,
}

impl ReceiverState {
    /// A receiver for frames no longer than `horizon_us` of airtime.
    pub fn new(horizon_us: u64) -> Self {
        ReceiverState { heard: VecDeque::new(), own: VecDeque::new(), horizon_us, collided: 0, captured: 0, deaf: 0 }
    }

    /// A BLE scanner (frames up to [`BLE_MAX_FRAME`] bytes).
    pub fn ble() -> Self {
        Self::new(ble_airtime_us(BLE_MAX_FRAME))
    }

    /// A LoRa gateway (uplinks up to [`LORA_MAX_FRAME`] bytes at SF12).
    pub fn lora() -> Self {
        Self::new(lora_sf12_airtime_us(LORA_MAX_FRAME))
    }

    /// Decides the frame on air from `start_us` to `end_us` (its delivery
    /// time) on `channel` at `rssi` dBm: `true` if it is received. Call in
    /// delivery order.
    pub fn admit(&mut self, start_us: u64, end_us: u64, channel: u8, rssi: f32) -> bool {
        let keep_from = end_us.saturating_sub(self.horizon_us);
        while self.heard.front().is_some_and(|h| h.end_us <= keep_from) {
            self.heard.pop_front();
        }
        while self.own.front().is_some_and(|&(_, e)| e <= keep_from) {
            self.own.pop_front();
        }
        let overlaps = |s: u64, e: u64| s < end_us && start_us < e;
        let deaf = self.own.iter().any(|&(s, e)| overlaps(s, e));
        let (mut overlapped, mut beaten) = (false, false);
        for h in self.heard.iter().filter(|h| h.channel == channel && overlaps(h.start_us, h.end_us)) {
            overlapped = true;
            beaten |= rssi < h.rssi + CAPTURE_DB;
        }
        // Deliveries come in end order; keep `heard` sorted by end anyway so
        // pruning stays correct if a caller admits out of order.
        let rec = OnAir { start_us, end_us, channel, rssi };
        let at = self.heard.partition_point(|h| h.end_us <= end_us);
        self.heard.insert(at, rec);
        if deaf {
            self.deaf += 1;
            false
        } else if beaten {
            self.collided += 1;
            false
        } else {
            self.captured += u64::from(overlapped);
            true
        }
    }

    /// A BLE frame with `airtime_us` delivered to `receiver` at `now_us`
    /// at `rssi`: its airtime ends now, and it is heard on the channel the
    /// receiver scans when it starts (a legacy frame's segments count as one
    /// interval on that channel).
    pub fn admit_ble(&mut self, receiver: u32, now_us: u64, airtime_us: u64, rssi: i8) -> bool {
        let start = now_us.saturating_sub(airtime_us);
        self.admit(start, now_us, scan_channel(receiver, start), f32::from(rssi))
    }

    /// The receiver itself is on air from `start_us` to `end_us` (half
    /// duplex): frames overlapping it are lost. Call when it transmits; the
    /// interval may lie in the future.
    pub fn transmitting(&mut self, start_us: u64, end_us: u64) {
        let at = self.own.partition_point(|&(_, e)| e <= end_us);
        self.own.insert(at, (start_us, end_us));
    }
}

/// A standard normal fixed per unordered pair (shadowing is reciprocal).
fn link_normal(seed: u64, a: u32, b: u32) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    // One stream per low end, advanced to the high end's draw would be
    // O(n); hashing the pair into the index keeps it O(1).
    let idx = lo.wrapping_mul(0x9E37_79B9) ^ hi.rotate_left(16) ^ hi;
    let mut r = SimRng::stream(seed ^ (u64::from(lo) << 32 | u64::from(hi)), Purpose::Shadowing, idx);
    r.normal()
}

/// A uniform grid of cells of side `range` over the positions.
struct Grid {
    cell: f64,
    x0: f64,
    y0: f64,
    cols: usize,
    rows: usize,
    cells: Vec<Vec<usize>>,
}

impl Grid {
    fn new(positions: &[(f64, f64)], range: f64) -> Self {
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for &(x, y) in positions {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        if positions.is_empty() {
            (x0, y0, x1, y1) = (0.0, 0.0, 0.0, 0.0);
        }
        let cell = range.max(1.0);
        let cols = (((x1 - x0) / cell).floor() as usize + 1).min(1 << 16);
        let rows = (((y1 - y0) / cell).floor() as usize + 1).min(1 << 16);
        let mut cells = vec![Vec::new(); cols * rows];
        let mut g = Grid { cell, x0, y0, cols, rows, cells: Vec::new() };
        for (i, &(x, y)) in positions.iter().enumerate() {
            let (c, r) = g.cell_of(x, y);
            cells[r * cols + c].push(i);
        }
        g.cells = cells;
        g
    }

    fn cell_of(&self, x: f64, y: f64) -> (usize, usize) {
        let c = (((x - self.x0) / self.cell).floor().max(0.0) as usize).min(self.cols - 1);
        let r = (((y - self.y0) / self.cell).floor().max(0.0) as usize).min(self.rows - 1);
        (c, r)
    }

    /// Every index in the 3×3 cells around `(x, y)`.
    fn near(&self, x: f64, y: f64) -> impl Iterator<Item = usize> + '_ {
        let (c, r) = self.cell_of(x, y);
        let cs = c.saturating_sub(1)..=(c + 1).min(self.cols - 1);
        let rs = r.saturating_sub(1)..=(r + 1).min(self.rows - 1);
        rs.flat_map(move |rr| cs.clone().map(move |cc| rr * self.cols + cc))
            .flat_map(move |k| self.cells[k].iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::WorldConfig;

    fn line(n: usize, spacing: f64, cfg: &RadioConfig) -> Radio {
        let pos: Vec<_> = (0..n).map(|i| (i as f64 * spacing, 0.0)).collect();
        let tx = vec![Radio::node_tx_dbm(cfg); n];
        Radio::new(cfg, &World::new(&WorldConfig::default()), &pos, &tx, 1)
    }

    fn esp_now(environment: crate::scenario::Environment) -> RadioConfig {
        RadioConfig { environment, bearer: Bearer::EspNow, ..RadioConfig::default() }
    }

    #[test]
    fn espnow_airtime_and_sensitivity_match_the_datasheets() {
        // 802.11b 1 Mb/s long preamble: 192 µs + 8 µs per byte of the
        // 293-byte MPDU that carries 250 payload bytes.
        assert_eq!(espnow_airtime_us(250), 192 + 8 * 293);
        // ESP32-C3: −98 dBm sensitivity at 1 Mb/s for ≤ 8 % PER of a
        // 1,024-byte frame (our frames are ≤ 250 bytes, so lower).
        let per = espnow_packet_error(-98.0 - WIFI_NOISE_FLOOR_DBM, 1024 - ESPNOW_OVERHEAD - 24);
        assert!((0.04..=0.10).contains(&per), "{per}");
        assert!(espnow_packet_error(-3.0, 90) > 0.5);
        assert!(espnow_packet_error(6.0, 90) < 1e-9);
    }

    #[test]
    fn espnow_reaches_past_ble_range_and_refuses_oversized_frames() {
        use crate::scenario::Environment::Outdoor;
        let ble = RadioConfig { environment: Outdoor, ..RadioConfig::default() };
        let (b, e) = (line(2, 150.0, &ble), line(2, 150.0, &esp_now(Outdoor)));
        assert!(b.links(0).is_empty(), "BLE at 0 dBm does not reach 150 m outdoors");
        let l = e.links(0)[0];
        assert!(e.frame_delivery_probability(&l, 90) > 0.99);
        assert_eq!(e.frame_delivery_probability(&l, ESPNOW_MAX_FRAME + 1), 0.0);
        let mut rng = SimRng::stream(1, Purpose::Radio, 0);
        assert!(e.receive_frame(&l, ESPNOW_MAX_FRAME + 1, &mut rng).is_none());
        assert_eq!(e.frame_airtime_us(90), espnow_airtime_us(90));
    }

    #[test]
    fn espnow_peers_are_the_strongest_links_and_nodes_without_wifi_have_none() {
        let mut cfg = esp_now(crate::scenario::Environment::Indoor);
        cfg.esp_now.max_peers = 3;
        let r = line(8, 4.0, &cfg);
        assert_eq!(r.links(0).len(), 7);
        let strongest = |r: &Radio| {
            let mut l: Vec<Link> = r.links(0).to_vec();
            l.sort_by(|a, b| b.mean_rssi.total_cmp(&a.mean_rssi));
            let mut top: Vec<u32> = l.iter().take(3).map(|l| l.to).collect();
            top.sort_unstable();
            top
        };
        let peers = |r: &Radio| (0..8).filter(|&j| r.is_peer(0, j)).collect::<Vec<u32>>();
        assert_eq!(peers(&r), strongest(&r));
        let dropped = strongest(&r)[0];
        let r = r.without_nodes(&[dropped]);
        assert!(r.links(dropped).is_empty() && r.links(0).iter().all(|l| l.to != dropped));
        assert_eq!(peers(&r), strongest(&r));
        assert!(!peers(&r).contains(&dropped));
    }

    #[test]
    fn espnow_unicast_to_a_peer_is_retried_and_the_fallback_is_not() {
        use crate::scenario::Environment::Outdoor;
        let mut cfg = esp_now(Outdoor);
        cfg.shadowing_sd_db = 0.0;
        let r = line(2, 100.0, &cfg);
        // Put the link at the edge: one attempt in three arrives.
        let edge = r.mean_rssi_for_delivery(0.3, 90);
        let mut l = r.links(0)[0];
        l.mean_rssi = edge as f32;
        let mut rng = SimRng::stream(7, Purpose::Radio, 0);
        let trials = 4_000;
        let (mut ok, mut delayed) = (0, 0);
        for _ in 0..trials {
            if let Some((_, extra)) = r.receive_unicast(0, &l, 90, &mut rng) {
                ok += 1;
                delayed += usize::from(extra > 0);
            }
        }
        // 8 attempts at 0.3: 1 − 0.7⁸ ≈ 0.94.
        let p = ok as f64 / trials as f64;
        assert!((0.92..=0.96).contains(&p), "{p}");
        assert!(delayed > ok / 2, "most successes needed a retry: {delayed} of {ok}");
        let mut cfg1 = cfg.clone();
        cfg1.esp_now.max_peers = 1;
        let single = Radio { peers: vec![vec![], vec![]], ..line(2, 100.0, &cfg1) };
        let fallback = (0..trials).filter(|_| single.receive_unicast(0, &l, 90, &mut rng).is_some()).count();
        let p = fallback as f64 / trials as f64;
        assert!((0.27..=0.33).contains(&p), "not a peer: one attempt, {p}");
    }

    #[test]
    fn ble_mesh_unicast_goes_out_the_configured_number_of_times() {
        let mut cfg = RadioConfig { shadowing_sd_db: 0.0, ..RadioConfig::default() };
        let edge = line(2, 10.0, &cfg).mean_rssi_for_delivery(0.3, 90);
        let mut rate = |transmits: u8| {
            cfg.ble_unicast_transmits = transmits;
            let r = line(2, 10.0, &cfg);
            let mut l = r.links(0)[0];
            l.mean_rssi = edge as f32;
            let mut rng = SimRng::stream(7, Purpose::Radio, 0);
            let got: Vec<u64> =
                (0..4_000).filter_map(|_| r.receive_unicast(0, &l, 90, &mut rng)).map(|x| x.1).collect();
            let late = got.iter().filter(|&&e| e > 0).count();
            assert!(got.iter().all(|&e| e == 0 || e >= NETWORK_TRANSMIT_INTERVAL_US), "a repeat comes 20 ms on");
            (got.len() as f64 / 4_000.0, late, r.transmissions(true), r.transmissions(false))
        };
        let (p, late, on_air, broadcast) = rate(1);
        assert!((0.27..=0.33).contains(&p) && late == 0 && on_air == 1 && broadcast == 1, "{p} {late}");
        // Three copies at 0.3 each: 1 − 0.7³ ≈ 0.66, over half of them late.
        let (p, late, on_air, broadcast) = rate(3);
        assert!((0.62..=0.70).contains(&p), "{p}");
        assert!(late > 1_000 && on_air == 3 && broadcast == 1, "{late} {on_air}");
    }

    #[test]
    fn airtimes_match_the_datasheets() {
        assert_eq!(ble_airtime_us(37), 376);
        // Semtech calculator: SF12/125 kHz, 20 B payload, CR 4/5 → 1,318.9 ms.
        let t = lora_sf12_airtime_us(20);
        assert!((1_310_000..=1_330_000).contains(&t), "{t}");
    }

    #[test]
    fn the_error_free_shortcut_changes_no_value() {
        let full = |snr_db: f64, len: usize, gain: f64| {
            let ber = 0.5 * (-(10f64.powf(snr_db / 10.0) * gain)).exp();
            1.0 - (1.0 - ber).powf(len as f64)
        };
        for k in 0..4_000 {
            let snr = 5.0 + f64::from(k) * 0.01;
            for len in [10, 90, 255] {
                assert_eq!(ble_packet_error(snr, len), full(snr, (len + 10) * 8, 0.5), "{snr} {len}");
                let bits = (len + ESPNOW_OVERHEAD + 24) * 8;
                assert_eq!(espnow_packet_error(snr, len), full(snr, bits, DSSS_SPREADING_GAIN), "{snr} {len}");
            }
        }
    }

    #[test]
    fn legacy_segments_go_one_per_advertising_event_and_long_frames_time_out() {
        let cfg = RadioConfig { ble_adv: BleAdv::Legacy, ..RadioConfig::default() };
        let r = line(2, 5.0, &cfg);
        let mut rng = SimRng::stream(3, Purpose::Radio, 0);
        let burst = |p: usize| 3 * (ble_airtime_us(p) + LEGACY_TURNAROUND_US);
        for _ in 0..200 {
            // A trace: 4 segments, three intervals of 100 ms + advDelay.
            let t = r.frame_timing(90, &mut rng);
            assert!((302_000..=342_000 + 2 * 3_000).contains(&t.latency_us), "{t:?}");
            // From the end of the first segment (39 B) to the end of the last (29 B).
            let shorter_last = burst(39) - burst(29);
            assert!((300_000 - shorter_last..=330_000 - shorter_last).contains(&t.reassembly_us), "{t:?}");
            assert!(!r.reassembly_times_out(&t), "{t:?}");
            // 200 bytes: 8 segments span at least 700 ms.
            let long = r.frame_timing(200, &mut rng);
            assert!(long.reassembly_us >= 700_000 && r.reassembly_times_out(&long), "{long:?}");
            // A single segment has nothing to reassemble.
            let one = r.frame_timing(20, &mut rng);
            assert_eq!(one.reassembly_us, 0);
            assert!(!r.reassembly_times_out(&one));
        }
        let fast = line(2, 5.0, &RadioConfig { legacy_interval_ms: 20, ..cfg.clone() });
        let t = fast.frame_timing(200, &mut rng);
        assert!(t.reassembly_us < 250_000 && !fast.reassembly_times_out(&t), "{t:?}");
        let patient = line(2, 5.0, &RadioConfig { reassembly_timeout_ms: 3_500, ..cfg });
        assert!(!patient.reassembly_times_out(&patient.frame_timing(200, &mut rng)));
        // Extended advertising: one packet, the old latency draw.
        let ext = line(2, 5.0, &RadioConfig::default());
        let t = ext.frame_timing(90, &mut SimRng::stream(3, Purpose::Radio, 0));
        let jitter = SimRng::stream(3, Purpose::Radio, 0).below(10_001);
        assert_eq!(t, FrameTiming { latency_us: 2_000 + jitter + ble_airtime_us(90), reassembly_us: 0 });
    }

    #[test]
    fn packet_error_falls_with_snr() {
        assert!(ble_packet_error(3.0, 60) > 0.99);
        assert!(ble_packet_error(20.0, 60) < 1e-6);
        assert!(ble_packet_error(12.0, 60) > ble_packet_error(14.0, 60));
    }

    #[test]
    fn links_are_grid_equivalent_to_brute_force_and_shrink_with_distance() {
        let cfg = RadioConfig { shadowing_sd_db: 0.0, ..RadioConfig::default() };
        let r = line(40, 5.0, &cfg);
        let near = r.links(0).len();
        assert!(near > 0 && near < 39, "{near}");
        // No shadowing: a farther node is never linked while a nearer one is not.
        let tos: Vec<u32> = r.links(0).iter().map(|l| l.to).collect();
        assert_eq!(tos, (1..=near as u32).collect::<Vec<_>>());
        assert!(r.links(0)[0].mean_rssi > r.links(0)[near - 1].mean_rssi);
    }

    #[test]
    fn shadowing_is_reciprocal() {
        let r = line(10, 3.0, &RadioConfig::default());
        for l in r.links(2) {
            let back = r.links(l.to).iter().find(|b| b.to == 2).map(|b| b.mean_rssi);
            assert_eq!(back, Some(l.mean_rssi));
        }
    }

    #[test]
    fn delivery_ratio_drops_towards_the_edge() {
        let r = line(60, 2.0, &RadioConfig { shadowing_sd_db: 0.0, ..RadioConfig::default() });
        let mut rng = SimRng::stream(3, Purpose::Radio, 0);
        let ratio = |l: &Link, rng: &mut SimRng| (0..2000).filter(|_| r.receive(l, 60, rng).is_some()).count();
        let links = r.links(0);
        let first = ratio(&links[0], &mut rng);
        let last = ratio(&links[links.len() - 1], &mut rng);
        assert!(first > 1990, "{first}");
        assert!(last < first, "{last} vs {first}");
    }

    #[test]
    fn delivery_probability_matches_the_draws() {
        let r = line(40, 1.5, &RadioConfig { shadowing_sd_db: 0.0, ..RadioConfig::default() });
        let mut rng = SimRng::stream(5, Purpose::Radio, 0);
        for l in r.links(0) {
            let p = r.delivery_probability(l, 90);
            let n = 4000;
            let got = (0..n).filter(|_| r.receive(l, 90, &mut rng).is_some()).count() as f64 / n as f64;
            assert!((p - got).abs() < 0.03, "{} m: analytic {p} vs drawn {got}", l.distance_m);
        }
    }

    #[test]
    fn legacy_frames_are_cut_into_the_nrf_bearers_segments() {
        // 25 frame bytes per segment behind a 6-byte v2 header and the 8-byte
        // PDU header + AdvA: a 90-byte TRACE_DEPOSIT is 4 PDUs.
        assert_eq!(legacy_pdus(90).collect::<Vec<_>>(), vec![39, 39, 39, 29]);
        assert_eq!(legacy_pdus(25).collect::<Vec<_>>(), vec![39]);
        assert_eq!(legacy_pdus(26).collect::<Vec<_>>(), vec![39, 15]);
        let ext = line(2, 1.5, &RadioConfig::default());
        let leg = line(2, 1.5, &RadioConfig { ble_adv: BleAdv::Legacy, ..RadioConfig::default() });
        assert_eq!(ext.frame_airtime_us(90), ble_airtime_us(90));
        // 3 channels × (39 or 29 bytes + 10 on air, 8 µs a byte, + turnaround).
        assert_eq!(leg.frame_airtime_us(90), 3 * (3 * (49 * 8 + 150) + (39 * 8 + 150)));
        assert!(leg.ble_receiver().horizon_us > ReceiverState::ble().horizon_us);
    }

    #[test]
    fn a_legacy_frame_needs_every_segment() {
        let cfg = RadioConfig { shadowing_sd_db: 0.0, ble_adv: BleAdv::Legacy, ..RadioConfig::default() };
        let leg = line(40, 1.5, &cfg);
        let ext = line(40, 1.5, &RadioConfig { ble_adv: BleAdv::Extended, ..cfg.clone() });
        let mut rng = SimRng::stream(6, Purpose::Radio, 0);
        for (l, e) in leg.links(0).iter().zip(ext.links(0)) {
            let p = leg.frame_delivery_probability(l, 90);
            let single: f64 = legacy_pdus(90).map(|n| leg.delivery_probability(l, n)).product();
            assert!((p - single).abs() < 1e-12);
            assert!(p <= ext.frame_delivery_probability(e, 90) + 1e-9, "{} m", l.distance_m);
            let n = 4000;
            let got = (0..n).filter(|_| leg.receive_frame(l, 90, &mut rng).is_some()).count() as f64 / n as f64;
            assert!((p - got).abs() < 0.03, "{} m: analytic {p} vs drawn {got}", l.distance_m);
        }
    }

    #[test]
    fn equal_overlapping_frames_collide_and_a_strong_one_captures() {
        let mut rx = ReceiverState::new(3_000);
        assert!(rx.admit(0, 1_000, 37, -70.0));
        // Overlaps the first at equal power: lost.
        assert!(!rx.admit(500, 1_500, 37, -70.0));
        // Overlaps the second only, 6 dB stronger: captured.
        assert!(rx.admit(1_200, 2_000, 37, -64.0));
        // Another channel or no overlap: received.
        assert!(rx.admit(1_900, 2_500, 38, -90.0));
        assert!(rx.admit(2_600, 3_000, 37, -90.0));
        // 5 dB stronger than a frame it overlaps is not enough.
        assert!(!rx.admit(2_900, 3_100, 37, -85.5));
        assert_eq!((rx.collided, rx.captured, rx.deaf), (2, 1, 0));
    }

    #[test]
    fn a_transmitting_receiver_is_deaf_and_old_records_expire() {
        let mut rx = ReceiverState::new(1_000);
        rx.transmitting(10_000, 10_400);
        assert!(!rx.admit(9_900, 10_100, 37, -40.0));
        assert!(rx.admit(10_400, 10_900, 37, -60.0));
        assert_eq!(rx.deaf, 1);
        for k in 0..100u64 {
            assert!(rx.admit(20_000 + k * 2_000, 20_500 + k * 2_000, 37, -60.0));
        }
        assert!(rx.heard.len() <= 2 && rx.own.is_empty(), "{}", rx.heard.len());
    }

    #[test]
    fn scanners_rotate_over_the_three_channels() {
        let seen: Vec<u8> = (0..3).map(|k| scan_channel(0, k * SCAN_INTERVAL_US + 5)).collect();
        assert_eq!(seen, vec![37, 38, 39]);
        assert_ne!(scan_channel(0, 5), scan_channel(1, 5));
    }

    #[test]
    fn lora_budget_meets_sensitivity_at_the_configured_range() {
        let cfg = RadioConfig { shadowing_sd_db: 0.0, lora_range_m: 2_000.0, ..RadioConfig::default() };
        let pos = vec![(0.0, 0.0), (500.0, 0.0), (1_999.0, 0.0), (2_001.0, 0.0), (-1_000.0, 0.0)];
        let r = Radio::new(&cfg, &World::new(&WorldConfig::default()), &pos, &[0.0; 5], 1);
        let at_range = r.lora_mean_rssi(0, 2).unwrap_or(f64::NAN);
        assert!((at_range - LORA_SENSITIVITY_DBM).abs() < 0.01, "{at_range}");
        // Without shadowing: the old range check, nearest first.
        assert_eq!(r.lora_receivers(0, &[0, 1, 2, 3, 4]), vec![1, 4, 2]);
        // Outdoor exponent: 20·log10(2)·1.1 ≈ 6.6 dB per halving of distance.
        let near = r.lora_mean_rssi(0, 4).unwrap_or(f64::NAN);
        assert!((near - at_range - 22.0 * (2.0f64).log10()).abs() < 0.05, "{near}");
        // Per packet: SNR is rssi − noise, and at the range edge about half arrive.
        let mut rng = SimRng::stream(2, Purpose::Radio, 0);
        let got = (0..4000).filter_map(|_| r.lora_receive(0, 2, &mut rng)).collect::<Vec<_>>();
        assert!((1_800..2_200).contains(&got.len()), "{}", got.len());
        assert!(got.iter().all(|x| (x.snr_db - (x.rssi_dbm - LORA_NOISE_FLOOR_DBM as f32)).abs() < 1e-3));
        assert!(got.iter().all(|x| f64::from(x.snr_db) >= LORA_SF12_MIN_SNR_DB));
        let zero = RadioConfig { lora_range_m: 0.0, ..cfg };
        let r0 = Radio::new(&zero, &World::new(&WorldConfig::default()), &pos, &[0.0; 5], 1);
        assert!(r0.lora_receivers(0, &[1, 2]).is_empty());
    }

    #[test]
    fn lora_uplinks_capture_at_the_gateway() {
        let air = lora_sf12_airtime_us(20);
        let mut gw = ReceiverState::lora();
        assert!(gw.admit(0, air, 0, -120.0));
        // Half a second later on the same channel, 10 dB stronger: captured.
        assert!(gw.admit(500_000, 500_000 + air, 0, -110.0));
        // Same channel, weaker: lost; another channel: fine.
        assert!(!gw.admit(600_000, 600_000 + air, 0, -118.0));
        assert!(gw.admit(700_000, 700_000 + air, 2, -130.0));
    }
}
