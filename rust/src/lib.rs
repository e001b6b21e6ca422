//! seqdistill's Rust core. The modules are pure Rust over slices; `bindings` (built with the
//! `python` feature, as maturin does) is the only place that knows about Python and numpy.

pub mod ids;
pub mod kcore;
pub mod metrics;
pub mod sequences;
pub mod split;

#[cfg(feature = "python")]
mod bindings;
