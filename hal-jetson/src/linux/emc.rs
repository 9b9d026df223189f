//! The external memory controller's clock and activity: reported where readable, never required.

use std::path::{Path, PathBuf};

use super::{SysfsError, fs};

/// Where the EMC clock rate (Hz) may be read: BPMP's debugfs (Xavier, Orin; root only by default), the
/// older clock debugfs.
const RATE_FILES: &[&str] = &["sys/kernel/debug/bpmp/debug/clk/emc/rate", "sys/kernel/debug/clk/emc/clk_rate"];
/// Where the memory controller's average activity may be read (in kHz of the EMC clock).
const ACTIVITY_FILES: &[&str] = &["sys/kernel/actmon_avg_activity/mc_all", "sys/kernel/debug/cactmon/mc_all"];

/// The EMC's readable files.
#[derive(Debug, Clone)]
pub struct Emc {
    rate: PathBuf,
    activity: Option<PathBuf>,
}

/// One EMC reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmcReading {
    /// The EMC clock in kHz.
    pub rate_khz: u32,
    /// Memory-controller activity as a share of that clock, in per mille, where readable.
    pub load_permille: Option<u16>,
}

impl Emc {
    /// The first readable rate file, and an activity file if one is readable.
    pub fn open(root: &Path) -> Result<Self, SysfsError> {
        let readable = |files: &[&str]| files.iter().map(|f| root.join(f)).find(|p| fs::read(p).is_ok());
        let rate = readable(RATE_FILES).ok_or_else(|| SysfsError::Missing {
            path: root.join(RATE_FILES[0]),
            what: "EMC clock not readable (it lives in debugfs, root only); dynofa runs without it",
        })?;
        Ok(Self { rate, activity: readable(ACTIVITY_FILES) })
    }

    /// The rate file read.
    pub fn rate_path(&self) -> &Path {
        &self.rate
    }

    /// Read the clock and, where possible, the activity.
    pub fn read(&self) -> Result<EmcReading, SysfsError> {
        let rate_khz = u32::try_from(fs::read_u64(&self.rate, "a rate in Hz")? / 1000).unwrap_or(u32::MAX);
        let load_permille = match &self.activity {
            Some(path) if rate_khz > 0 => {
                let activity = fs::read_u64(path, "an activity in kHz")?;
                Some((activity * 1000 / u64::from(rate_khz)).min(1000) as u16)
            }
            _ => None,
        };
        Ok(EmcReading { rate_khz, load_permille })
    }
}
