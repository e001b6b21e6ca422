//! seqdistill's Rust core. The modules are pure Rust over slices; `bindings` (built with the
//! `python` feature, as maturin does) is the only place that knows about Python and numpy, and
//! the only place where [`error::CoreError`] becomes a Python exception.

pub mod audit;
pub mod buffer;
pub mod column;
pub mod error;
pub mod ids;
pub mod kcore;
pub mod metrics;
pub mod parquet_log;
pub mod pipeline;
pub mod sequences;
pub mod sort;
pub mod split;
pub mod strings;
pub mod text;

#[cfg(feature = "python")]
mod bindings;
