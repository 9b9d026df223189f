//! Power of a processing unit per operating point, for the energy mode.

use crate::lut::Unit;

/// Most operating points a [`PowerTable`] holds.
pub const MAX_POWER_POINTS: usize = 16;

/// Power drawn by a unit at one clock.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PowerPoint {
    /// The clock in kHz.
    pub freq_khz: u32,
    /// Watts while running a frame.
    pub active_w: f32,
    /// Watts while idle between frames.
    pub idle_w: f32,
}

/// Why a power table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PowerError {
    /// No points, or more than [`MAX_POWER_POINTS`].
    Count {
        /// Points given.
        found: usize,
    },
    /// Clocks not strictly ascending, or a power not finite and non-negative.
    Point {
        /// Index of the point.
        index: usize,
    },
}

impl core::fmt::Display for PowerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Count { found } => {
                write!(f, "a power table holds 1 to {MAX_POWER_POINTS} operating points, {found} given")
            }
            Self::Point { index } => {
                write!(f, "power point {index}: clocks must ascend strictly and powers be finite and non-negative")
            }
        }
    }
}

impl core::error::Error for PowerError {}

/// Active and idle power of one unit at each of its operating points, clocks ascending.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PowerTable {
    unit: Unit,
    points: heapless::Vec<PowerPoint, MAX_POWER_POINTS>,
}

impl PowerTable {
    /// A table for `unit`, checked.
    pub fn new(unit: Unit, points: &[PowerPoint]) -> Result<Self, PowerError> {
        if points.is_empty() || points.len() > MAX_POWER_POINTS {
            return Err(PowerError::Count { found: points.len() });
        }
        let ok = |v: f32| v.is_finite() && v >= 0.0;
        for (index, p) in points.iter().enumerate() {
            let ascending = index == 0 || points[index - 1].freq_khz < p.freq_khz;
            if !(ascending && ok(p.active_w) && ok(p.idle_w)) {
                return Err(PowerError::Point { index });
            }
        }
        let mut v = heapless::Vec::new();
        // Cannot fail: the length was checked above.
        let _ = v.extend_from_slice(points);
        Ok(PowerTable { unit, points: v })
    }

    /// The unit.
    pub fn unit(&self) -> Unit {
        self.unit
    }

    /// The points, clocks ascending.
    pub fn points(&self) -> &[PowerPoint] {
        &self.points
    }

    /// The point at `khz`, if listed.
    pub fn at(&self, khz: u32) -> Option<&PowerPoint> {
        self.points.iter().find(|p| p.freq_khz == khz)
    }

    /// Joules charged to a frame that keeps the unit busy for `busy_ms` (its own work) and leaves
    /// it idle for `idle_ms` before the next frame. Time the frame waits while others use the unit
    /// is theirs. The simulator charges energy with this too, so the energy mode optimises what is
    /// reported.
    pub fn frame_energy_j(point: &PowerPoint, busy_ms: f32, idle_ms: f32) -> f32 {
        (point.active_w * busy_ms.max(0.0) + point.idle_w * idle_ms.max(0.0)) * 1e-3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_checked() {
        let p = |f, a| PowerPoint { freq_khz: f, active_w: a, idle_w: 0.1 };
        assert_eq!(PowerTable::new(Unit::Gpu, &[]), Err(PowerError::Count { found: 0 }));
        assert_eq!(PowerTable::new(Unit::Gpu, &[p(2, 1.0), p(1, 1.0)]), Err(PowerError::Point { index: 1 }));
        assert_eq!(PowerTable::new(Unit::Gpu, &[p(1, f32::NAN)]), Err(PowerError::Point { index: 0 }));
        let t = PowerTable::new(Unit::Gpu, &[p(1, 1.0), p(2, 2.0)]).unwrap();
        assert_eq!(t.at(2).map(|p| p.active_w), Some(2.0));
        assert!(t.at(3).is_none());
        // 10 ms at 2 W and 10 ms at 0.1 W.
        assert!((PowerTable::frame_energy_j(t.at(2).unwrap(), 10.0, 10.0) - 0.021).abs() < 1e-6);
    }
}
