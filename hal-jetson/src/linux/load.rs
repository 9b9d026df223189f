//! Load sensing: the GPU's `load` file (per mille, averaged by the driver) and CPU utilisation from
//! `/proc/stat` deltas.

use std::path::{Path, PathBuf};

use dynofa_core::hal::{ErrorType, LoadSensor};
use dynofa_core::lut::Unit;

use super::{SysfsError, fs};

/// The GPU's busy share from nvgpu's `load` file.
///
/// The driver averages over its own window, so a reading is "recently" rather than exactly "since the
/// previous call" as the trait puts it; that is the best the kernel offers without root.
#[derive(Debug, Clone)]
pub struct GpuLoad {
    path: PathBuf,
}

impl GpuLoad {
    /// The `load` file beside the GPU devfreq node's device (`<node>/device/load`: Orin), else nvgpu's
    /// platform device (`/sys/devices/gpu.0/load`: Xavier and older).
    pub fn open(root: &Path, devfreq_dir: Option<&Path>) -> Result<Self, SysfsError> {
        let fallback = root.join("sys/devices/gpu.0/load");
        let candidates = devfreq_dir.map(|d| d.join("device/load")).into_iter().chain([fallback.clone()]);
        for path in candidates {
            if fs::read(&path).is_ok() {
                return Ok(Self { path });
            }
        }
        Err(SysfsError::Missing { path: fallback, what: "no readable GPU load file (nvgpu not loaded?)" })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ErrorType for GpuLoad {
    type Error = SysfsError;
}

impl LoadSensor for GpuLoad {
    fn unit(&self) -> Unit {
        Unit::Gpu
    }

    fn load_permille(&mut self) -> Result<u16, SysfsError> {
        let load = fs::read_u64(&self.path, "a load in per mille")?;
        Ok(load.min(1000) as u16)
    }
}

/// Busy and total jiffies of all CPUs from the first line of `/proc/stat`.
fn cpu_times(path: &Path) -> Result<(u64, u64), SysfsError> {
    let text = fs::read(path)?;
    let parse_err = || SysfsError::Parse {
        path: path.to_path_buf(),
        content: text.lines().next().unwrap_or_default().to_owned(),
        expected: "a `cpu` line of jiffies",
    };
    let line = text.lines().next().filter(|l| l.starts_with("cpu ")).ok_or_else(parse_err)?;
    let fields: Vec<u64> =
        line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().map_err(|_| parse_err())?;
    if fields.len() < 4 {
        return Err(parse_err());
    }
    // user nice system idle iowait irq softirq steal; guest time is already counted in user and nice.
    // Checked: counters that add past u64 are not a kernel's.
    let total = fields.iter().take(8).try_fold(0u64, |a, &f| a.checked_add(f)).ok_or_else(parse_err)?;
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// CPU utilisation of all CPUs since the previous reading, from `/proc/stat`.
#[derive(Debug, Clone)]
pub struct CpuLoad {
    path: PathBuf,
    last: (u64, u64),
    last_permille: u16,
}

impl CpuLoad {
    /// Read `<root>/proc/stat` once so that the first load covers the time since now.
    pub fn open(root: &Path) -> Result<Self, SysfsError> {
        let path = root.join("proc/stat");
        let last = cpu_times(&path)?;
        Ok(Self { path, last, last_permille: 0 })
    }
}

impl ErrorType for CpuLoad {
    type Error = SysfsError;
}

impl LoadSensor for CpuLoad {
    fn unit(&self) -> Unit {
        Unit::Cpu
    }

    /// Between two readings in the same clock tick nothing was counted: the previous load is repeated.
    fn load_permille(&mut self) -> Result<u16, SysfsError> {
        let now = cpu_times(&self.path)?;
        let busy = now.0.saturating_sub(self.last.0);
        let total = now.1.saturating_sub(self.last.1);
        // In u128: the product of counters that jumped (a rewritten or fake file) must not overflow.
        if let Some(permille) = (u128::from(busy.min(total)) * 1000).checked_div(u128::from(total)) {
            self.last_permille = permille as u16;
            self.last = now;
        }
        Ok(self.last_permille)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_line_splits_busy_from_idle() {
        let dir = tempfile::tempdir().unwrap();
        let stat = dir.path().join("stat");
        std::fs::write(&stat, "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(cpu_times(&stat).unwrap(), (160, 1000));
        std::fs::write(&stat, "intr 1 2 3\n").unwrap();
        assert!(matches!(cpu_times(&stat), Err(SysfsError::Parse { .. })));
        std::fs::write(&stat, format!("cpu  {} 1 1 {}\n", u64::MAX, u64::MAX)).unwrap();
        assert!(matches!(cpu_times(&stat), Err(SysfsError::Parse { .. })));
        // Counters that jump by more than u64::MAX / 1000 between readings still give a load.
        std::fs::write(&stat, "cpu  1 0 0 1\n").unwrap();
        let mut load = CpuLoad { path: stat.clone(), last: cpu_times(&stat).unwrap(), last_permille: 0 };
        std::fs::write(&stat, format!("cpu  {} 0 0 {}\n", u64::MAX / 4, u64::MAX / 4)).unwrap();
        assert_eq!(load.load_permille().unwrap(), 500);
    }
}
