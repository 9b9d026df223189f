#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

#[macro_use]
mod log;

pub mod arch;
pub mod config;
pub mod control;
pub mod hal;
pub mod json;
pub mod lut;
pub mod predictor;
pub mod runtime;

pub use arch::{Activation, BlockShape, Cost, Supernet};
pub use config::{ConfigError, ConfigParseError, SubnetConfig, SubnetId};
pub use json::JsonError;
pub use lut::{LatencyPoint, Lut, LutEntry, LutError, OperatingPoint, Top1Source, Unit};
