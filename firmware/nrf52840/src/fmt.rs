//! Logging shim: defmt over RTT (`probe-rs run` decodes it), so the glue
//! never names a logger and the strings stay out of flash.

macro_rules! info {
    ($($t:tt)*) => { defmt::info!($($t)*) };
}
macro_rules! warn {
    ($($t:tt)*) => { defmt::warn!($($t)*) };
}
macro_rules! error {
    ($($t:tt)*) => { defmt::error!($($t)*) };
}
