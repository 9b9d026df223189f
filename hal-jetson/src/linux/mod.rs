//! The Linux platform: DVFS through sysfs (GPU devfreq, CPU cpufreq), load sensing (nvgpu's `load`,
//! `/proc/stat`), the EMC where readable, and board detection, all implementing the core's HAL traits.
//!
//! Every path is looked up under a root (`/` on a board), so that tests run on fake trees ([`fake`]).
//! Nothing here needs root: where sysfs is missing or not writable, [`Platform::probe`] says which file,
//! what failed and what to do (usually the udev rule in `deploy/`, see `docs/jetson.md`), and the rest
//! works. Clocks a control pinned are restored when it is dropped and when the process gets SIGINT,
//! SIGTERM or SIGHUP ([`restore`]); a setting another tool changed meanwhile is reported, not undone.

mod board;
mod clock;
mod cpufreq;
mod devfreq;
mod emc;
mod error;
pub mod fake;
mod fs;
mod load;
mod platform;
pub mod restore;

pub use board::{Board, BoardKind, L4t};
pub use cpufreq::{CpuFreq, CpuPinMode, Policy};
pub use devfreq::GpuDevfreq;
pub use emc::{Emc, EmcReading};
pub use error::SysfsError;
pub use load::{CpuLoad, GpuLoad};
pub use platform::Platform;
pub use restore::ClockOverride;
