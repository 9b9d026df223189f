//! What the GPU and CPU controls share: operating-point tables, write access, read-back.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dynofa_core::lut::Unit;

use super::restore::{Claim, ClockOverride, Knob, Registry};
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

/// What the GPU and CPU controls both keep: the table, write access, the saved settings, the pin.
#[derive(Debug)]
pub(crate) struct Pinning {
    unit: Unit,
    points: Points,
    access: Access,
    claim: Claim,
    pinned: Option<u32>,
}

impl Pinning {
    pub(crate) fn new(unit: Unit, points: Points, access: Access) -> Self {
        Self { unit, points, access, claim: Claim::new(unit), pinned: None }
    }

    pub(crate) fn available_khz(&self) -> &[u32] {
        self.points.khz()
    }

    /// The points a pin may use: none without write access, as `FrequencyControl` asks.
    pub(crate) fn operating_points(&self) -> &[u32] {
        if self.access.check().is_ok() { self.points.khz() } else { &[] }
    }

    pub(crate) fn dvfs(&self) -> Result<(), SysfsError> {
        self.access.check()
    }

    pub(crate) fn pinned_khz(&self) -> Option<u32> {
        self.pinned
    }

    /// The clock in kHz from a current-frequency file.
    pub(crate) fn current_khz(&self, cur: &Path) -> Result<u32, SysfsError> {
        Ok(self.points.to_khz(fs::read_u64(cur, "a frequency")?))
    }

    /// Saved knobs another tool rewrote, and current-frequency files `curs` that left the pinned point.
    pub(crate) fn overrides(&self, curs: impl IntoIterator<Item = PathBuf>) -> Result<Vec<ClockOverride>, SysfsError> {
        let mut found = self.claim.overrides()?;
        if let Some(khz) = self.pinned {
            for cur in curs {
                if let Some(now) = self.points.drifted(&cur, khz)? {
                    let (wrote, found_now) = (format!("{khz} kHz"), format!("{now} kHz"));
                    found.push(ClockOverride { unit: self.unit, path: cur, wrote, found: found_now });
                }
            }
        }
        Ok(found)
    }

    /// Put the saved settings back (idempotent).
    pub(crate) fn restore(&mut self) -> Result<Vec<ClockOverride>, SysfsError> {
        self.pinned = None;
        self.claim.restore()
    }

    /// Pin `khz`: `apply` writes the raw value through the registry, then every file of `curs` must read
    /// back as `khz`. `knobs` are saved before the first pin.
    pub(crate) fn pin(
        &mut self,
        khz: u32,
        knobs: impl FnOnce() -> Vec<Knob>,
        curs: &[PathBuf],
        apply: impl Fn(&mut Registry, u64, u64) -> Result<(), SysfsError>,
    ) -> Result<(), SysfsError> {
        self.points.raw(self.unit, khz)?;
        self.access.check()?;
        let (unit, points) = (self.unit, &self.points);
        self.claim.pin(knobs, self.pinned, khz, |registry, id, khz| {
            apply(registry, id, points.raw(unit, khz)?)?;
            curs.iter().try_for_each(|cur| points.read_back(unit, cur, khz))
        })?;
        self.pinned = Some(khz);
        Ok(())
    }

    /// Pin `khz` by setting both limits of every `(min, max)` file pair of `limits` to it, each pair in an
    /// order the kernel accepts; then every file of `curs` must read back as `khz`. The pairs are saved
    /// before the first pin.
    pub(crate) fn pin_limits(
        &mut self,
        khz: u32,
        limits: &[(PathBuf, PathBuf)],
        curs: &[PathBuf],
    ) -> Result<(), SysfsError> {
        let knobs = || limits.iter().map(|(min, max)| Knob::Range { min: min.clone(), max: max.clone() }).collect();
        self.pin(khz, knobs, curs, |registry, id, raw| {
            (0..limits.len()).try_for_each(|i| registry.set_range(id, i, raw, raw))
        })
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
