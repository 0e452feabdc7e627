//! Primitive types, constants and the quantity enumeration (ES-1.1 – ES-1.3).
//!
//! Readings are `i16` on the wire, but the unit of one step depends on the
//! quantity (SPEC-NOTES 16): a single "× 100" scale cannot hold 1100 hPa or
//! 5000 ppm. [`QuantityType::scale`] says what one step means; arithmetic on
//! readings is done in `i32` so that differences never overflow.

/// Protocol version of the layouts written in the spec.
pub const PROTOCOL_VERSION_1: u8 = 0x01;
/// Protocol version with the fixes of `docs/spec-deviations.md`; nodes send this.
pub const PROTOCOL_VERSION_2: u8 = 0x02;
/// "KB" as a byte string (SPEC-NOTES 27: not a little-endian u16).
pub const MAGIC_BYTES: [u8; 2] = *b"KB";

/// Default pheromone decay rate, T½ = 10 min (ES-1.2).
pub const LAMBDA_DEFAULT: f32 = 0.00116;
/// Pheromone decay rate for LoRa-carried traces (ES-1.2).
pub const LAMBDA_LPWAN: f32 = 0.0000013;

/// Immune thresholds in tenths of σ (ES-1.2); compare with [`sigma_tenths`].
pub const SIGMA_PYREXIA: u8 = 10;
/// 2.0 σ, in tenths.
pub const SIGMA_INFLAMMATION: u8 = 20;
/// 3.0 σ, in tenths.
pub const SIGMA_REJECTION: u8 = 30;
/// 5.0 σ NK-audit drift threshold, in tenths.
pub const DRIFT_THRESHOLD: u8 = 50;

/// Converts a threshold stored in tenths of σ into σ (SPEC-NOTES 23).
pub const fn sigma_tenths(t: u8) -> f32 {
    t as f32 / 10.0
}

/// Neighbours needed for QUORUM mode (ES-1.2).
pub const THETA_LOW: u8 = 3;
/// Neighbours needed for SWARM mode.
pub const THETA_HIGH: u8 = 10;
/// Hysteresis added to upward transitions.
pub const HYSTERESIS_DELTA: u8 = 2;

/// 14 days of observed time, in seconds.
pub const NEONATAL_DURATION: u32 = 1_209_600;
/// One epoch, in seconds.
pub const EPOCH_DURATION: u32 = 60;
/// Seconds between presence pulses.
pub const PRESENCE_INTERVAL: u32 = 10;
/// Seconds between trace deposits.
pub const TRACE_INTERVAL_DEFAULT: u32 = 5;
/// NK audit probability numerator over 256 (see SPEC-NOTES 39).
pub const NK_AUDIT_PROBABILITY: u8 = 3;

/// Metabolic half-life of ephemeral state, seconds.
pub const T_HALF_EPHEMERAL: u32 = 600;
/// Metabolic half-life of operational state, seconds.
pub const T_HALF_OPERATIONAL: u32 = 86_400;
/// Metabolic half-life of structural state, seconds.
pub const T_HALF_STRUCTURAL: u32 = 7_776_000;
/// Archival state never decays.
pub const T_HALF_ARCHIVAL: u32 = u32::MAX;

/// Neighbour table capacity on a Nano (ES-1.2).
pub const MAX_NEIGHBORS: usize = 32;
/// DAG / pheromone-field capacity on a Nano (ES-1.2).
pub const MAX_DAG_ENTRIES: usize = 4096;
/// DAG capacity on a Dust node (ES-1.2).
pub const MAX_DAG_ENTRIES_DUST: usize = 256;
/// Histogram bins per behavioural profile.
pub const MAX_PROFILE_BINS: usize = 50;
/// At most 51/255 (20 %) of a cluster rejected per epoch.
pub const REJECTION_RATE_LIMIT: u8 = 51;

/// Seconds since the Unix epoch, as carried on the wire (wraps in 2106).
pub type Timestamp = u32;
/// A reading in the quantity's wire unit (see [`QuantityType::scale`]).
pub type Reading = i16;
/// Immunological weight, 0–255 for 0.0–1.0.
pub type Weight = u8;
/// Confidence, 0–255 for 0.0–1.0.
pub type Confidence = u8;

/// `weight_t`/`confidence_t` as a fraction.
pub fn unit_fraction(raw: u8) -> f32 {
    raw as f32 / 255.0
}

macro_rules! byte_string {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl Default for $name {
            fn default() -> Self {
                $name([0u8; $len])
            }
        }

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Reads from the first `LEN` bytes; `None` if `bytes` is shorter.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                let mut out = [0u8; $len];
                out.copy_from_slice(bytes.get(..$len)?);
                Some($name(out))
            }

            /// The bytes in wire order.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses lowercase or uppercase hex in wire order.
            pub fn from_hex(s: &str) -> Option<Self> {
                let s = s.trim_start_matches("0x");
                if s.len() != 2 * $len {
                    return None;
                }
                let mut out = [0u8; $len];
                for (i, byte) in out.iter_mut().enumerate() {
                    let hi = $crate::types::hex_val(*s.as_bytes().get(2 * i)?)?;
                    let lo = $crate::types::hex_val(*s.as_bytes().get(2 * i + 1)?)?;
                    *byte = (hi << 4) | lo;
                }
                Some($name(out))
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                core::fmt::Display::fmt(self, f)?;
                write!(f, ")")
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                for b in self.0.iter() {
                    write!(f, "{:02x}", b)?;
                }
                Ok(())
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut buf = [0u8; 2 * $len];
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for (i, b) in self.0.iter().enumerate() {
                    buf[2 * i] = HEX[(b >> 4) as usize];
                    buf[2 * i + 1] = HEX[(b & 0xf) as usize];
                }
                // The buffer only ever holds ASCII hex digits.
                let text = core::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?;
                s.serialize_str(text)
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                        write!(f, "{} hex digits in wire order", 2 * $len)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_hex(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

/// One hex digit's value; shared by every hex byte-string type.
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub(crate) use byte_string;

byte_string!(
    /// `device_id`: the first 8 bytes of BLAKE2s(pubkey), a byte string in
    /// wire order (SPEC-NOTES 27). TV13's `0xA1B2C3D4E5F60718` is the bytes
    /// `18 07 f6 e5 d4 c3 b2 a1`, printed here as `1807f6e5d4c3b2a1`.
    DeviceId,
    8
);
byte_string!(
    /// A full SHA-1 DAG hash (`hash20`, ES-1.1; not security-critical).
    Hash20,
    20
);
byte_string!(
    /// The first 4 bytes of a `hash20`, as carried in TRACE_DEPOSIT.
    HashPrefix4,
    4
);
byte_string!(
    /// The first 2 bytes of a `hash20`, as carried in HEARTBEAT.
    HashPrefix2,
    2
);
byte_string!(
    /// A BLAKE2s-256 hash (`hash32`).
    Hash32,
    32
);
byte_string!(
    /// An Ed25519 public key.
    PublicKey,
    32
);
byte_string!(
    /// An Ed25519 signature, carried verbatim (checked by the crypto layer).
    Signature,
    64
);

impl Hash20 {
    /// The 4-byte prefix a TRACE_DEPOSIT carries as `prev_hash`.
    pub fn prefix4(&self) -> HashPrefix4 {
        HashPrefix4([self.0[0], self.0[1], self.0[2], self.0[3]])
    }
    /// The 2-byte prefix a HEARTBEAT carries as `dag_tip_hash`.
    pub fn prefix2(&self) -> HashPrefix2 {
        HashPrefix2([self.0[0], self.0[1]])
    }
}

/// What one reading step means for a quantity (SPEC-NOTES 16).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// Physical units per wire step (e.g. 0.01 °C).
    pub unit_per_step: f32,
    /// The physical unit's name.
    pub unit: &'static str,
}

/// Sensed quantity (ES-1.3). Unknown codes are kept, not rejected, so a
/// frame from a newer node still decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum QuantityType {
    /// 0x01, °C.
    Temperature,
    /// 0x02, % relative humidity.
    Humidity,
    /// 0x03, hPa.
    Pressure,
    /// 0x04, lux.
    Light,
    /// 0x05.
    Acceleration,
    /// 0x06, ppm.
    Co2,
    /// 0x07.
    SoilMoisture,
    /// 0x08.
    Vibration,
    /// 0x09.
    Voltage,
    /// 0x0A.
    Current,
    /// 0x0B, dBA.
    SoundLevel,
    /// 0x0C, µg/m³.
    Pm25,
    /// 0x0D.
    WaterFlow,
    /// 0x80.
    BinaryDoor,
    /// 0x81.
    BinaryMotion,
    /// 0x82.
    BinaryButton,
    /// 0xFF, user-defined.
    Custom,
    /// A reserved code (0x00, 0x0E–0x7F, 0x83–0xFE).
    Reserved(u8),
}

impl QuantityType {
    /// Decodes a quantity byte; every byte maps to a value.
    pub fn from_u8(v: u8) -> Self {
        use QuantityType::*;
        match v {
            0x01 => Temperature,
            0x02 => Humidity,
            0x03 => Pressure,
            0x04 => Light,
            0x05 => Acceleration,
            0x06 => Co2,
            0x07 => SoilMoisture,
            0x08 => Vibration,
            0x09 => Voltage,
            0x0A => Current,
            0x0B => SoundLevel,
            0x0C => Pm25,
            0x0D => WaterFlow,
            0x80 => BinaryDoor,
            0x81 => BinaryMotion,
            0x82 => BinaryButton,
            0xFF => Custom,
            other => Reserved(other),
        }
    }

    /// The byte on the wire.
    pub fn to_u8(self) -> u8 {
        use QuantityType::*;
        match self {
            Temperature => 0x01,
            Humidity => 0x02,
            Pressure => 0x03,
            Light => 0x04,
            Acceleration => 0x05,
            Co2 => 0x06,
            SoilMoisture => 0x07,
            Vibration => 0x08,
            Voltage => 0x09,
            Current => 0x0A,
            SoundLevel => 0x0B,
            Pm25 => 0x0C,
            WaterFlow => 0x0D,
            BinaryDoor => 0x80,
            BinaryMotion => 0x81,
            BinaryButton => 0x82,
            Custom => 0xFF,
            Reserved(v) => v,
        }
    }

    /// The wire unit of a reading of this quantity (SPEC-NOTES 16).
    ///
    /// Temperature keeps the spec's 0.01 °C so that TV1–TV4 hold as written;
    /// its widest representable value is 327.67 °C. Pressure, CO₂, light and
    /// PM2.5 use coarser steps so that their ES-1.4 ranges fit an `i16`.
    pub fn scale(self) -> Scale {
        use QuantityType::*;
        match self {
            Temperature => Scale { unit_per_step: 0.01, unit: "°C" },
            Humidity => Scale { unit_per_step: 0.01, unit: "%RH" },
            Pressure => Scale { unit_per_step: 0.1, unit: "hPa" },
            Light => Scale { unit_per_step: 5.0, unit: "lx" },
            Co2 => Scale { unit_per_step: 1.0, unit: "ppm" },
            SoundLevel => Scale { unit_per_step: 0.01, unit: "dBA" },
            Pm25 => Scale { unit_per_step: 0.1, unit: "µg/m³" },
            BinaryDoor | BinaryMotion | BinaryButton => Scale { unit_per_step: 1.0, unit: "state" },
            _ => Scale { unit_per_step: 0.01, unit: "units" },
        }
    }

    /// Converts a physical value into the nearest wire reading, saturating.
    pub fn to_reading(self, value: f32) -> Reading {
        let steps = libm::roundf(value / self.scale().unit_per_step);
        if steps.is_nan() {
            0
        } else {
            steps.clamp(i16::MIN as f32, i16::MAX as f32) as i16
        }
    }

    /// Converts a wire reading into the physical value.
    pub fn to_value(self, reading: Reading) -> f32 {
        reading as f32 * self.scale().unit_per_step
    }
}

/// Little-endian field helpers shared by the wire and persistence layouts.
/// Callers check lengths first; these return `None` instead of panicking.
pub mod le {
    /// Reads a `u16` at `at`.
    pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
    }
    /// Reads an `i16` at `at`.
    pub fn i16_at(b: &[u8], at: usize) -> Option<i16> {
        u16_at(b, at).map(|v| v as i16)
    }
    /// Reads a `u32` at `at`.
    pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        let s = b.get(at..at + 4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_codes_round_trip_for_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(QuantityType::from_u8(b).to_u8(), b);
        }
    }

    #[test]
    fn device_id_prints_in_wire_order() {
        let id = DeviceId([0x18, 0x07, 0xF6, 0xE5, 0xD4, 0xC3, 0xB2, 0xA1]);
        assert_eq!(std::format!("{id}"), "1807f6e5d4c3b2a1");
        assert_eq!(DeviceId::from_hex("1807f6e5d4c3b2a1"), Some(id));
        assert_eq!(DeviceId::from_hex("1807f6e5d4c3b2a"), None);
        assert_eq!(DeviceId::from_hex("1807f6e5d4c3b2zz"), None);
    }

    #[test]
    fn readings_saturate_instead_of_wrapping() {
        assert_eq!(QuantityType::Temperature.to_reading(23.1), 2310);
        assert_eq!(QuantityType::Temperature.to_reading(800.0), i16::MAX);
        assert_eq!(QuantityType::Co2.to_reading(890.0), 890);
        assert_eq!(QuantityType::Pressure.to_reading(1013.25), 10133);
        assert_eq!(QuantityType::Temperature.to_reading(f32::NAN), 0);
    }
}
