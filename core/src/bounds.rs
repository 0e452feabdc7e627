//! Physical bounds table, Stratum 0 innate rules (ES-1.4).
//!
//! Values are in each quantity's wire unit ([`QuantityType::scale`],
//! SPEC-NOTES 16) and held in `i32`/`f32`, so ranges such as 1100 hPa fit and
//! a disabled check is `None` rather than the spec's `-1` in a `u16`
//! (SPEC-NOTES 5).

use crate::types::QuantityType;

/// Innate limits of one quantity, in its wire unit.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PhysicalBounds {
    /// The quantity these bounds apply to.
    pub quantity: QuantityType,
    /// Lowest physically possible reading.
    pub absolute_min: i32,
    /// Highest physically possible reading.
    pub absolute_max: i32,
    /// Largest plausible difference per metre; `None` = check disabled.
    pub max_spatial_grad: Option<f32>,
    /// Largest plausible change per second; `None` = check disabled.
    pub max_temporal_rate: Option<f32>,
    /// Manufacturer uncertainty of one sensor; `None` = no σ known.
    pub typical_sigma: Option<u16>,
}

/// The compiled table (ES-1.4), restated in wire units.
///
/// Temperature, humidity and sound keep the spec's numbers (0.01 steps).
/// Pressure is in 0.1 hPa with the hydrostatic-aware 0.15 hPa/m gradient
/// (SPEC-NOTES 36) and 0.001 hPa/s of weather drift instead of "~0"; CO₂ is
/// in 1 ppm, light in 5 lx, PM2.5 in 0.1 µg/m³.
pub const BOUNDS_TABLE: [PhysicalBounds; 7] = [
    PhysicalBounds {
        quantity: QuantityType::Temperature,
        absolute_min: -27_315,
        absolute_max: 100_000,
        max_spatial_grad: Some(500.0),
        max_temporal_rate: Some(83.0),
        typical_sigma: Some(50),
    },
    PhysicalBounds {
        quantity: QuantityType::Humidity,
        absolute_min: 0,
        absolute_max: 10_000,
        max_spatial_grad: Some(1000.0),
        max_temporal_rate: Some(83.0),
        typical_sigma: Some(200),
    },
    PhysicalBounds {
        quantity: QuantityType::Pressure,
        absolute_min: 3_000,
        absolute_max: 11_000,
        max_spatial_grad: Some(1.5),
        max_temporal_rate: Some(0.01),
        typical_sigma: Some(1),
    },
    PhysicalBounds {
        quantity: QuantityType::Co2,
        absolute_min: 0,
        absolute_max: 5_000,
        max_spatial_grad: Some(100.0),
        max_temporal_rate: Some(0.83),
        typical_sigma: Some(30),
    },
    PhysicalBounds {
        quantity: QuantityType::Light,
        absolute_min: 0,
        absolute_max: 2_000_000,
        max_spatial_grad: None,
        max_temporal_rate: None,
        typical_sigma: None,
    },
    PhysicalBounds {
        quantity: QuantityType::SoundLevel,
        absolute_min: 0,
        absolute_max: 19_400,
        max_spatial_grad: Some(2000.0),
        max_temporal_rate: Some(4000.0),
        typical_sigma: Some(150),
    },
    PhysicalBounds {
        quantity: QuantityType::Pm25,
        absolute_min: 0,
        absolute_max: 10_000,
        max_spatial_grad: Some(500.0),
        max_temporal_rate: Some(1666.7),
        typical_sigma: Some(100),
    },
];

/// Looks a quantity up in [`BOUNDS_TABLE`].
pub fn bounds_for(quantity: QuantityType) -> Option<&'static PhysicalBounds> {
    BOUNDS_TABLE.iter().find(|b| b.quantity == quantity)
}

impl PhysicalBounds {
    /// Stratum 0: is this reading physically possible at all?
    pub fn admits(&self, reading: i16) -> bool {
        let r = reading as i32;
        r >= self.absolute_min && r <= self.absolute_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_reachable_by_its_quantity() {
        for b in BOUNDS_TABLE.iter() {
            assert_eq!(bounds_for(b.quantity).map(|x| x.quantity), Some(b.quantity));
            assert!(b.absolute_min < b.absolute_max);
        }
        assert!(bounds_for(QuantityType::Vibration).is_none());
    }

    #[test]
    fn ranges_that_did_not_fit_i16_now_fit_their_scale() {
        // 1100 hPa and 5000 ppm are representable readings (SPEC-NOTES 16).
        let p = bounds_for(QuantityType::Pressure).unwrap();
        assert!(p.admits(QuantityType::Pressure.to_reading(1100.0)));
        assert!(!p.admits(QuantityType::Pressure.to_reading(250.0)));
        let c = bounds_for(QuantityType::Co2).unwrap();
        assert!(c.admits(QuantityType::Co2.to_reading(5000.0)));
        assert!(!c.admits(QuantityType::Co2.to_reading(5001.0)));
    }

    #[test]
    fn light_has_only_absolute_bounds() {
        let l = bounds_for(QuantityType::Light).unwrap();
        assert_eq!((l.max_spatial_grad, l.max_temporal_rate, l.typical_sigma), (None, None, None));
        assert!(!l.admits(-1));
    }
}
