//! GPU DVFS through devfreq: `/sys/class/devfreq/<gpu>/{available_frequencies,cur_freq,min_freq,max_freq}`.

use std::path::{Path, PathBuf};

use dynofa_core::hal::{ErrorType, FrequencyControl};
use dynofa_core::lut::Unit;

use super::clock::{Access, Pinning, Points};
use super::restore::ClockOverride;
use super::{SysfsError, fs};

/// Names of Tegra GPUs as their devfreq nodes end (`17000000.gv11b` on Xavier, `17000000.ga10b` on Orin
/// with JetPack 5, `17000000.gpu` with JetPack 6; older boards' `gp10b` and `gm20b`).
const GPU_NODES: &[&str] = &["gv11b", "ga10b", "gpu", "gp10b", "gm20b"];

/// Whether a devfreq node's name is a GPU's.
pub(crate) fn is_gpu_node(name: &str) -> bool {
    GPU_NODES.contains(&name.rsplit('.').next().unwrap_or(name))
}

/// The GPU's clock, pinned by setting devfreq's `min_freq` and `max_freq` to one operating point.
///
/// Pinning saves the original limits; they come back on [`GpuDevfreq::restore`], on drop, and on
/// SIGINT/SIGTERM/SIGHUP. When this process may not write the limits (no udev rule, a read-only `/sys`),
/// [`FrequencyControl::operating_points`] is empty, as the trait asks, and [`GpuDevfreq::dvfs`] says why.
#[derive(Debug)]
pub struct GpuDevfreq {
    dir: PathBuf,
    pinning: Pinning,
}

impl GpuDevfreq {
    /// Find the GPU's devfreq node under `<root>/sys/class/devfreq`.
    pub fn open(root: &Path) -> Result<Self, SysfsError> {
        let class = root.join("sys/class/devfreq");
        let dir = fs::entries(&class, is_gpu_node).into_iter().next().ok_or(SysfsError::NoGpu { dir: class })?;
        let list = dir.join("available_frequencies");
        let hz = fs::read_list(&list, "frequencies in Hz")?;
        if hz.is_empty() {
            return Err(SysfsError::NoOperatingPoints { path: list, driver: "devfreq".into() });
        }
        let access = Access::probe([dir.join("min_freq").as_path(), dir.join("max_freq").as_path()]);
        Ok(Self { pinning: Pinning::new(Unit::Gpu, Points::new(hz, 1000), access), dir })
    }

    /// The devfreq node's name, such as `17000000.gv11b`.
    pub fn name(&self) -> &str {
        self.dir.file_name().and_then(|n| n.to_str()).unwrap_or_default()
    }

    /// The devfreq node's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every frequency the GPU offers in kHz, ascending, whether or not this process may pin them.
    pub fn available_khz(&self) -> &[u32] {
        self.pinning.available_khz()
    }

    /// `Ok` when this process may pin the clock, else the error that says which file refused and why.
    pub fn dvfs(&self) -> Result<(), SysfsError> {
        self.pinning.dvfs()
    }

    /// The devfreq governor (`nvhost_podgov` on a Jetson).
    pub fn governor(&self) -> Result<String, SysfsError> {
        fs::read(&self.dir.join("governor"))
    }

    /// The pinned point in kHz, if pinned.
    pub fn pinned_khz(&self) -> Option<u32> {
        self.pinning.pinned_khz()
    }

    /// What another tool (nvpmodel, jetson_clocks) changed since the last pin: rewritten limits, or a clock
    /// that no longer reads back as the pinned point. Empty when nothing changed or nothing is pinned.
    pub fn overrides(&mut self) -> Result<Vec<ClockOverride>, SysfsError> {
        self.pinning.overrides([self.dir.join("cur_freq")])
    }

    /// Put the original limits back (idempotent); returns the limits left alone because another tool
    /// changed them since.
    pub fn restore(&mut self) -> Result<Vec<ClockOverride>, SysfsError> {
        self.pinning.restore()
    }
}

impl ErrorType for GpuDevfreq {
    type Error = SysfsError;
}

impl FrequencyControl for GpuDevfreq {
    fn unit(&self) -> Unit {
        Unit::Gpu
    }

    fn operating_points(&self) -> &[u32] {
        self.pinning.operating_points()
    }

    fn current_khz(&mut self) -> Result<u32, SysfsError> {
        self.pinning.current_khz(&self.dir.join("cur_freq"))
    }

    fn set_khz(&mut self, khz: u32) -> Result<(), SysfsError> {
        let dir = &self.dir;
        self.pinning.pin_limits(khz, &[(dir.join("min_freq"), dir.join("max_freq"))], &[dir.join("cur_freq")])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_nodes_are_recognised_by_name() {
        for name in ["17000000.gv11b", "17000000.ga10b", "17000000.gpu", "57000000.gpu", "gpu"] {
            assert!(is_gpu_node(name), "{name}");
        }
        for name in ["15340000.vic", "158c0000.nvdla1", "13e10000.host1x", "gpu.0", "17000000.gpux"] {
            assert!(!is_gpu_node(name), "{name}");
        }
    }
}
