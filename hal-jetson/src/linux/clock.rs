//! What the GPU and CPU controls share: operating-point tables, write access, read-back.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dynofa_core::lut::Unit;

use super::{SysfsError, fs};

/// A unit's operating points in kHz beside the raw values its kernel files use (Hz for devfreq, kHz for
/// cpufreq), so that a pin writes exactly what the kernel listed.
#[derive(Debug, Clone)]
pub(crate) struct Points {
    khz: Vec<u32>,
    raw: Vec<u64>,
    raw_per_khz: u64,
}

impl Points {
    /// From ascending raw values, `raw_per_khz` of them to a kHz.
    pub(crate) fn new(raw: Vec<u64>, raw_per_khz: u64) -> Self {
        let mut points = Self { khz: Vec::new(), raw, raw_per_khz };
        points.khz = points.raw.iter().map(|&r| points.to_khz(r)).collect();
        points
    }

    pub(crate) fn khz(&self) -> &[u32] {
        &self.khz
    }

    /// The raw value of operating point `khz`, or the error that refuses it.
    pub(crate) fn raw(&self, unit: Unit, khz: u32) -> Result<u64, SysfsError> {
        match self.khz.binary_search(&khz) {
            Ok(i) => Ok(self.raw[i]),
            Err(_) => Err(SysfsError::NotAnOperatingPoint { unit, khz }),
        }
    }

    /// A raw reading in kHz.
    pub(crate) fn to_khz(&self, raw: u64) -> u32 {
        u32::try_from((raw + self.raw_per_khz / 2) / self.raw_per_khz).unwrap_or(u32::MAX)
    }

    /// The operating point nearest to `khz` (a clock rate reads back rounded by the clock driver).
    fn nearest(&self, khz: u32) -> Option<u32> {
        self.khz.iter().copied().min_by_key(|p| p.abs_diff(khz))
    }

    /// Read `cur` until it shows the pinned point `khz`.
    ///
    /// Devfreq and cpufreq apply new limits before the write returns, but some clock drivers settle a few
    /// milliseconds later, so a mismatch is asked again briefly before it counts.
    pub(crate) fn read_back(&self, unit: Unit, cur: &Path, khz: u32) -> Result<(), SysfsError> {
        let mut found = 0;
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
            found = self.to_khz(fs::read_u64(cur, "a frequency")?);
            if self.nearest(found) == Some(khz) {
                return Ok(());
            }
        }
        Err(SysfsError::ReadBack { unit, path: cur.to_path_buf(), pinned_khz: khz, found_khz: found })
    }

    /// Whether `cur` still shows the pinned point `khz`; if not, what it shows.
    pub(crate) fn drifted(&self, cur: &Path, khz: u32) -> Result<Option<u32>, SysfsError> {
        let found = self.to_khz(fs::read_u64(cur, "a frequency")?);
        Ok((self.nearest(found) != Some(khz)).then_some(found))
    }
}

/// Whether a control may write its files, kept so that every refused pin says which file and why.
#[derive(Debug, Clone)]
pub(crate) struct Access(Option<(PathBuf, io::ErrorKind)>);

impl Access {
    /// Ask the kernel about each file (see [`fs::check_writable`]).
    pub(crate) fn probe<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Self {
        let denied = paths.into_iter().find_map(|p| match fs::check_writable(p) {
            Ok(()) => None,
            Err(SysfsError::Write { path, source }) => Some((path, source.kind())),
            Err(_) => unreachable!("check_writable fails only with a write error"),
        });
        Self(denied)
    }

    /// `Ok` when every file is writable, else the write error of the first that is not.
    pub(crate) fn check(&self) -> Result<(), SysfsError> {
        match &self.0 {
            None => Ok(()),
            Some((path, kind)) => Err(SysfsError::Write { path: path.clone(), source: io::Error::from(*kind) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_map_raw_hz_to_khz_and_back() {
        let p = Points::new(vec![114_750_000, 1_109_250_000], 1000);
        assert_eq!(p.khz(), [114_750, 1_109_250]);
        assert_eq!(p.raw(Unit::Gpu, 1_109_250).unwrap(), 1_109_250_000);
        assert!(matches!(p.raw(Unit::Gpu, 1_000_000), Err(SysfsError::NotAnOperatingPoint { khz: 1_000_000, .. })));
        assert_eq!(p.nearest(1_100_000), Some(1_109_250));
        assert_eq!(p.nearest(200_000), Some(114_750));
    }
}
