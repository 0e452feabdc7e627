//! Radio models: BLE advertising between Nanos (ES-11.4 log-distance path
//! loss, per-link static shadowing, per-packet fading, sensitivity floor,
//! packet error vs SNR), LoRa SF12 for Dust uplinks (ES-12.4 airtime and
//! the 1 % duty cycle), and neighbour finding by a spatial grid.

use crate::rng::{Purpose, SimRng};
use crate::scenario::RadioConfig;
use crate::world::World;
use krill_core::distance::RssiCalibration;

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

/// BLE 1M PHY: 8 µs per byte, plus preamble, access address, header and
/// CRC (1 + 4 + 2 + 3 bytes).
pub fn ble_airtime_us(payload_len: usize) -> u64 {
    (payload_len as u64 + 10) * 8
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

/// Probability that a BLE frame of `len` bytes is lost at `snr_db`:
/// non-coherent GFSK, BER = ½·exp(−SNR/2) with Eb/N0 ≈ SNR at 1 Mb/s.
pub fn ble_packet_error(snr_db: f64, len: usize) -> f64 {
    let snr = 10f64.powf(snr_db / 10.0);
    let ber = 0.5 * (-snr / 2.0).exp();
    let bits = (len as f64 + 10.0) * 8.0;
    1.0 - (1.0 - ber).powf(bits)
}

/// The static radio picture of a scenario: positions and every usable link.
pub struct Radio {
    cfg: RadioConfig,
    positions: Vec<(f64, f64)>,
    links: Vec<Vec<Link>>,
    exponent: f64,
    ref_1m: f64,
}

impl Radio {
    /// Builds the link table of `positions` (node i at `positions[i]`,
    /// transmitting at `tx_dbm[i]`).
    pub fn new(cfg: &RadioConfig, world: &World, positions: &[(f64, f64)], tx_dbm: &[f64], seed: u64) -> Self {
        let cal = RssiCalibration::SPEC;
        let exponent = f64::from(match cfg.environment.core() {
            krill_core::distance::Environment::Indoor => cal.exponent_indoor,
            krill_core::distance::Environment::Outdoor => cal.exponent_outdoor,
        });
        let ref_1m = f64::from(cal.rssi_ref_1m);
        let max_tx = tx_dbm.iter().copied().fold(cfg.tx_power_dbm, f64::max);
        // Farthest distance at which a frame could still arrive.
        let margin = max_tx + ref_1m + FADING_SIGMAS * (cfg.shadowing_sd_db + cfg.fading_sd_db) - cfg.sensitivity_dbm;
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
                let mean = tx_dbm.get(i).copied().unwrap_or(cfg.tx_power_dbm)
                    - pl
                    - shadow
                    - world.wall_loss_db((x, y), (xj, yj));
                if mean + FADING_SIGMAS * cfg.fading_sd_db >= cfg.sensitivity_dbm {
                    links[i].push(Link { to: j as u32, mean_rssi: mean as f32, distance_m: d as f32 });
                }
            }
            links[i].sort_by_key(|l| l.to);
        }
        Radio { cfg: cfg.clone(), positions: positions.to_vec(), links, exponent, ref_1m }
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

    /// Path-loss exponent and 1 m reference in use.
    pub fn model(&self) -> (f64, f64) {
        (self.exponent, self.ref_1m)
    }

    /// One packet over `link`: its RSSI, or `None` if it is lost (below
    /// sensitivity or a bit error), drawing fading from the sender's stream.
    pub fn receive(&self, link: &Link, len: usize, rng: &mut SimRng) -> Option<i8> {
        let rssi = f64::from(link.mean_rssi) + self.cfg.fading_sd_db * rng.normal();
        if rssi < self.cfg.sensitivity_dbm {
            return None;
        }
        let per = ble_packet_error(rssi - self.cfg.noise_floor_dbm, len);
        if rng.chance(per) {
            return None;
        }
        Some(rssi.round().clamp(-128.0, 127.0) as i8)
    }

    /// Latency of a BLE frame of `len` bytes: stack latency, advertising
    /// jitter and airtime.
    pub fn ble_latency_us(&self, len: usize, rng: &mut SimRng) -> u64 {
        self.cfg.stack_latency_us + rng.below(self.cfg.adv_jitter_us + 1) + ble_airtime_us(len)
    }

    /// The smallest latency of any link: the engine's lookahead.
    pub fn min_latency_us(&self) -> u64 {
        self.cfg.stack_latency_us
    }

    /// Receivers within LoRa range of `from` among `candidates`, nearest first.
    pub fn lora_receivers(&self, from: u32, candidates: &[u32]) -> Vec<u32> {
        let Some(&(x, y)) = self.positions.get(from as usize) else { return Vec::new() };
        let mut v: Vec<(f64, u32)> = candidates
            .iter()
            .filter_map(|&c| {
                let (cx, cy) = *self.positions.get(c as usize)?;
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                (c != from && d <= self.cfg.lora_range_m).then_some((d, c))
            })
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|(_, c)| c).collect()
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
        let tx = vec![cfg.tx_power_dbm; n];
        Radio::new(cfg, &World::new(&WorldConfig::default()), &pos, &tx, 1)
    }

    #[test]
    fn airtimes_match_the_datasheets() {
        assert_eq!(ble_airtime_us(37), 376);
        // Semtech calculator: SF12/125 kHz, 20 B payload, CR 4/5 → 1,318.9 ms.
        let t = lora_sf12_airtime_us(20);
        assert!((1_310_000..=1_330_000).contains(&t), "{t}");
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
}
