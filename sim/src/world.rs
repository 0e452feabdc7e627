//! Ground truth and sensors: a physical field per quantity over space and
//! time (base, gradients, a daily swing, and events: fire, HVAC step, wall,
//! door), sampled by sensors with noise and a fixed bias, quantised to the
//! quantity's `reading_t` scale.

use crate::rng::SimRng;
use crate::scenario::{FieldConfig, Quantity, WorldConfig, WorldEvent, Zone};
use krill_core::types::Reading;

/// The truth of a scenario.
#[derive(Clone, Debug)]
pub struct World {
    fields: Vec<FieldConfig>,
    zones: Vec<Zone>,
    /// Radio walls: distinct x with their attenuation, dB.
    walls: Vec<(f64, f64)>,
}

/// A value typical of a quantity, for quantities without a field.
fn typical(q: Quantity) -> f64 {
    match q {
        Quantity::Temperature => 22.0,
        Quantity::Humidity => 45.0,
        Quantity::Pressure => 1013.0,
        Quantity::Co2 => 420.0,
        Quantity::Light => 300.0,
    }
}

impl World {
    /// The world of a scenario.
    pub fn new(cfg: &WorldConfig) -> Self {
        // One physical wall is usually declared in every field it splits
        // (temperature and humidity both step at it); it attenuates once.
        let mut walls: Vec<(f64, f64)> = Vec::new();
        for f in &cfg.fields {
            for e in &f.events {
                if let WorldEvent::Wall { x, attenuation_db, .. } = e {
                    match walls.iter_mut().find(|w| (w.0 - x).abs() < 1e-9) {
                        Some(w) => w.1 = w.1.max(*attenuation_db),
                        None => walls.push((*x, *attenuation_db)),
                    }
                }
            }
        }
        World { fields: cfg.fields.clone(), zones: cfg.zones.clone(), walls }
    }

    /// The named zones.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The field of `q`, if configured.
    pub fn field(&self, q: Quantity) -> Option<&FieldConfig> {
        self.fields.iter().find(|f| f.quantity == q)
    }

    /// The true value of `q` at `(x, y)` and scenario time `t_s` (s after
    /// warm-up; negative during warm-up, when events have not started).
    pub fn truth(&self, q: Quantity, x: f64, y: f64, t_s: f64) -> f64 {
        let Some(f) = self.field(q) else { return typical(q) };
        let mut v = f.base + f.gradient.0 * x + f.gradient.1 * y;
        if f.diurnal_amplitude != 0.0 {
            // Peak at 15:00 of scenario time (t = 0 is midnight).
            let day = (t_s / 86_400.0 - 15.0 / 24.0) * std::f64::consts::TAU;
            v += f.diurnal_amplitude * day.cos();
        }
        for e in &f.events {
            v += self.event_delta(e, f, x, y, t_s);
        }
        v
    }

    fn event_delta(&self, e: &WorldEvent, f: &FieldConfig, x: f64, y: f64, t_s: f64) -> f64 {
        match e {
            WorldEvent::Fire { at, start_s, growth_m_per_s, peak, falloff_m } => {
                let dt = t_s - *start_s as f64;
                if dt < 0.0 {
                    return 0.0;
                }
                let falloff = falloff_m.max(1e-3);
                let front = growth_m_per_s * dt;
                let d = ((x - at.0).powi(2) + (y - at.1).powi(2)).sqrt();
                let shape = if d <= front { 1.0 } else { (-(d - front) / falloff).exp() };
                // The seat builds up over the time the front takes to cross
                // one fall-off length, so no point warms faster than
                // peak·growth/falloff (a spreading fire does not jump to its
                // peak in one reading); a fire that does not spread is there
                // at once.
                let build = if *growth_m_per_s > 0.0 { 1.0 - (-dt * growth_m_per_s / falloff).exp() } else { 1.0 };
                peak * build * shape
            }
            WorldEvent::HvacStep { zone, start_s, delta, tau_s } => {
                let dt = t_s - *start_s as f64;
                let inside = self.zones.iter().any(|z| &z.name == zone && z.rect.contains(x, y));
                if dt < 0.0 || !inside {
                    0.0
                } else {
                    delta * (1.0 - (-dt / tau_s.max(1e-3)).exp())
                }
            }
            WorldEvent::Wall { x: wx, delta, .. } => {
                let behind = if x > *wx { *delta } else { 0.0 };
                behind - self.door_mixing(f, *wx, *delta, x, y, t_s)
            }
            WorldEvent::Door { .. } => 0.0,
        }
    }

    /// How far an open door has pulled the two sides of the wall at `wx`
    /// towards their mean at `(x, y)`: subtracted from the wall's step.
    fn door_mixing(&self, f: &FieldConfig, wx: f64, delta: f64, x: f64, y: f64, t_s: f64) -> f64 {
        let mut pull = 0.0;
        for e in &f.events {
            let WorldEvent::Door { x: dx, y0, y1, open_s, close_s, reach_m, tau_s } = e else { continue };
            if (dx - wx).abs() > 1e-9 {
                continue;
            }
            let dt = t_s - *open_s as f64;
            if dt < 0.0 {
                continue;
            }
            // Mixing grows while open and relaxes back after closing.
            let tau = tau_s.max(1e-3);
            let open_for = dt.min((*close_s as f64 - *open_s as f64).max(0.0));
            let mut m = 1.0 - (-open_for / tau).exp();
            if t_s > *close_s as f64 {
                m *= (-(t_s - *close_s as f64) / tau).exp();
            }
            let dy = if y < *y0 {
                y0 - y
            } else if y > *y1 {
                y - y1
            } else {
                0.0
            };
            let d = ((x - dx).powi(2) + dy.powi(2)).sqrt();
            let near = (1.0 - d / reach_m.max(1e-3)).max(0.0);
            // Each side moves half the step towards the mean.
            let sign = if x > wx { 1.0 } else { -1.0 };
            pull += sign * 0.5 * delta * m * near;
        }
        pull
    }

    /// Radio loss of the walls crossed between two points, dB. A wall
    /// named in several fields counts once, with its largest attenuation;
    /// an open door does not lower it (the link table is static).
    pub fn wall_loss_db(&self, a: (f64, f64), b: (f64, f64)) -> f64 {
        self.walls.iter().filter(|(x, _)| (a.0 - x) * (b.0 - x) < 0.0).map(|(_, db)| db).sum()
    }

    /// Index of the first zone containing `(x, y)`.
    pub fn zone_of(&self, x: f64, y: f64) -> Option<usize> {
        self.zones.iter().position(|z| z.rect.contains(x, y))
    }
}

/// One device's sensor: truth + fixed bias + noise, quantised.
#[derive(Clone, Debug)]
pub struct Sensor {
    /// What it measures.
    pub quantity: Quantity,
    /// Its fixed bias, quantity units.
    pub bias: f64,
    noise_sd: f64,
    rng: SimRng,
}

impl Sensor {
    /// A sensor for `quantity`; `bias_rng` draws its bias once.
    pub fn new(world: &World, quantity: Quantity, bias_rng: &mut SimRng, noise_rng: SimRng) -> Self {
        let (bias_sd, noise_sd) = world.field(quantity).map_or((0.0, 0.0), |f| (f.bias_sd, f.noise_sd));
        Sensor { quantity, bias: bias_sd * bias_rng.normal(), noise_sd, rng: noise_rng }
    }

    /// The physical value it would report (before quantisation) for a truth.
    pub fn sample(&mut self, truth: f64) -> f64 {
        truth + self.bias + self.noise_sd * self.rng.normal()
    }

    /// A reading of `value` in the quantity's wire scale.
    pub fn quantise(quantity: Quantity, value: f64) -> Reading {
        quantity.core().to_reading(value as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Purpose;
    use crate::scenario::Rect;

    fn world(events: Vec<WorldEvent>) -> World {
        World::new(&WorldConfig {
            fields: vec![FieldConfig {
                quantity: Quantity::Temperature,
                base: 20.0,
                gradient: (0.1, 0.0),
                diurnal_amplitude: 0.0,
                noise_sd: 0.1,
                bias_sd: 0.0,
                events,
            }],
            zones: vec![Zone { name: "east".into(), rect: Rect { x0: 50.0, y0: 0.0, x1: 100.0, y1: 100.0 } }],
        })
    }

    #[test]
    fn gradient_and_typical_values() {
        let w = world(vec![]);
        assert!((w.truth(Quantity::Temperature, 10.0, 0.0, 0.0) - 21.0).abs() < 1e-9);
        assert_eq!(w.truth(Quantity::Co2, 0.0, 0.0, 0.0), 420.0);
    }

    #[test]
    fn fire_spreads_from_its_start() {
        let fire = WorldEvent::Fire { at: (0.0, 0.0), start_s: 100, growth_m_per_s: 0.1, peak: 300.0, falloff_m: 5.0 };
        let w = world(vec![fire]);
        let t = |x, s| w.truth(Quantity::Temperature, x, 0.0, s) - 0.1 * x - 20.0;
        assert_eq!(t(20.0, 50.0), 0.0);
        // 50 s in (one build-up time, 5 m / 0.1 m/s), the front is 5 m out:
        // 15 m beyond it is three fall-off lengths.
        let built = |s: f64| 1.0 - (-(s - 100.0) / 50.0).exp();
        assert!((t(20.0, 150.0) - 300.0 * built(150.0) * (-3.0f64).exp()).abs() < 1e-9);
        assert!((t(20.0, 400.0) - 300.0 * built(400.0)).abs() < 1e-9);
        assert!(t(10.0, 150.0) > t(20.0, 150.0));
        assert!(t(0.0, 101.0) < 10.0, "the seat builds up, it does not jump");
    }

    #[test]
    fn no_point_warms_faster_than_peak_growth_over_falloff() {
        let fire = WorldEvent::Fire { at: (0.0, 0.0), start_s: 0, growth_m_per_s: 0.02, peak: 60.0, falloff_m: 4.0 };
        let w = world(vec![fire]);
        let bound = 60.0 * 0.02 / 4.0;
        let mut fastest: f64 = 0.0;
        for d in [0.0, 1.0, 3.0, 7.0, 15.0, 30.0] {
            for k in 0..3_000 {
                let s = f64::from(k);
                let rate = w.truth(Quantity::Temperature, d, 0.0, s + 1.0) - w.truth(Quantity::Temperature, d, 0.0, s);
                fastest = fastest.max(rate);
            }
        }
        assert!(fastest <= bound + 1e-9 && fastest > 0.9 * bound, "{fastest} vs {bound}");
    }

    #[test]
    fn hvac_step_only_in_its_zone_and_approaches_delta() {
        let w = world(vec![WorldEvent::HvacStep { zone: "east".into(), start_s: 0, delta: -4.0, tau_s: 60.0 }]);
        assert_eq!(w.truth(Quantity::Temperature, 10.0, 0.0, 1e4), 21.0);
        let east = w.truth(Quantity::Temperature, 60.0, 0.0, 1e4) - 26.0;
        assert!((east + 4.0).abs() < 1e-6, "{east}");
    }

    #[test]
    fn open_door_mixes_the_wall_step_near_it() {
        let wall = WorldEvent::Wall { x: 50.0, delta: 6.0, attenuation_db: 10.0 };
        let door =
            WorldEvent::Door { x: 50.0, y0: 40.0, y1: 60.0, open_s: 0, close_s: 10_000, reach_m: 10.0, tau_s: 60.0 };
        let w = world(vec![wall, door]);
        let step = |y, t| w.truth(Quantity::Temperature, 50.5, y, t) - w.truth(Quantity::Temperature, 49.5, y, t) - 0.1;
        assert!((step(50.0, -1.0) - 6.0).abs() < 1e-6);
        assert!(step(50.0, 5_000.0) < 1.0);
        assert!((step(0.0, 5_000.0) - 6.0).abs() < 1e-6);
        assert_eq!(w.wall_loss_db((0.0, 0.0), (100.0, 0.0)), 10.0);
        assert_eq!(w.wall_loss_db((0.0, 0.0), (40.0, 0.0)), 0.0);
    }

    #[test]
    fn a_wall_in_two_fields_attenuates_once_and_two_walls_add() {
        let wall = |x| WorldEvent::Wall { x, delta: 1.0, attenuation_db: 8.0 };
        let field = |q, events| FieldConfig {
            quantity: q,
            base: 0.0,
            gradient: (0.0, 0.0),
            diurnal_amplitude: 0.0,
            noise_sd: 0.0,
            bias_sd: 0.0,
            events,
        };
        let w = World::new(&WorldConfig {
            fields: vec![
                field(Quantity::Temperature, vec![wall(10.0), wall(20.0)]),
                field(Quantity::Humidity, vec![wall(10.0)]),
            ],
            zones: vec![],
        });
        assert_eq!(w.wall_loss_db((0.0, 0.0), (15.0, 5.0)), 8.0);
        assert_eq!(w.wall_loss_db((25.0, 0.0), (0.0, 0.0)), 16.0);
        assert_eq!(w.wall_loss_db((11.0, 0.0), (19.0, 0.0)), 0.0);
        // The step is per field: humidity steps at 10 only.
        assert_eq!(w.truth(Quantity::Humidity, 25.0, 0.0, 0.0), 1.0);
        assert_eq!(w.truth(Quantity::Temperature, 25.0, 0.0, 0.0), 2.0);
    }

    #[test]
    fn door_mixing_relaxes_after_closing_and_ignores_other_walls() {
        let wall = WorldEvent::Wall { x: 50.0, delta: 6.0, attenuation_db: 0.0 };
        let door = |x| WorldEvent::Door { x, y0: 0.0, y1: 100.0, open_s: 0, close_s: 600, reach_m: 20.0, tau_s: 100.0 };
        let w = world(vec![wall.clone(), door(50.0)]);
        let step = |t| w.truth(Quantity::Temperature, 51.0, 50.0, t) - w.truth(Quantity::Temperature, 49.0, 50.0, t);
        let (open, closed_long) = (step(600.0), step(5_000.0));
        assert!(open < 1.5, "{open}");
        assert!((closed_long - 6.0 - 0.2).abs() < 0.05, "{closed_long}");
        assert!(step(700.0) > open && step(700.0) < closed_long);
        // A door in another wall leaves this one's step alone.
        let w2 = world(vec![wall, door(30.0)]);
        let s2 =
            w2.truth(Quantity::Temperature, 51.0, 50.0, 300.0) - w2.truth(Quantity::Temperature, 49.0, 50.0, 300.0);
        assert!((s2 - 6.2).abs() < 1e-9, "{s2}");
    }

    #[test]
    fn sensor_noise_and_quantisation() {
        let w = world(vec![]);
        let mut b = SimRng::stream(1, Purpose::Bias, 0);
        let mut s = Sensor::new(&w, Quantity::Temperature, &mut b, SimRng::stream(1, Purpose::Sensor, 0));
        let xs: Vec<f64> = (0..5000).map(|_| s.sample(20.0)).collect();
        let mean = xs.iter().sum::<f64>() / 5000.0;
        assert!((mean - 20.0).abs() < 0.01);
        assert_eq!(Sensor::quantise(Quantity::Temperature, 21.234), 2123);
    }
}
