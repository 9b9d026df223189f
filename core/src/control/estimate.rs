//! A model's slowdown against its LUT: measured latency over the LUT's prediction.
//!
//! Frame latencies are noisy (about 5% spread and occasional spikes of +20% and more on a
//! Jetson), while real changes (another application starting, a clock change) are steps. So the
//! estimate follows small drifts slowly, with each sample clipped so that one spike moves it
//! little, and jumps at once when a few consecutive samples agree on a step: up after
//! `confirm_up` samples above the band (to the smallest of them, so that a spike among them does
//! not count), down after `confirm_down` samples below it (to the largest, the cautious side).

/// How the slowdown estimate moves.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EstimatorParams {
    /// Weight of a new (clipped) sample in the running estimate.
    pub gain: f32,
    /// Half-width of the band around the estimate, relative: samples outside it count toward a step.
    pub band: f32,
    /// Consecutive samples above the band that make a step up.
    pub confirm_up: u8,
    /// Consecutive samples below the band that make a step down.
    pub confirm_down: u8,
}

impl Default for EstimatorParams {
    fn default() -> Self {
        // Two samples above +12% are a step (two spikes in a row happen about 0.3% of frames);
        // four below -12% are a step down (slower, since stepping down too early costs deadlines).
        EstimatorParams { gain: 0.08, band: 0.12, confirm_up: 2, confirm_down: 4 }
    }
}

/// A running slowdown estimate (1.0: as the LUT says).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Slowdown {
    value: f32,
    params: EstimatorParams,
    run_up: u8,
    run_down: u8,
    /// Smallest sample of the current run above the band, or largest of the run below it.
    run_edge: f32,
}

impl Slowdown {
    /// An estimate starting at 1.0.
    pub const fn new(params: EstimatorParams) -> Self {
        Slowdown { value: 1.0, params, run_up: 0, run_down: 0, run_edge: 1.0 }
    }

    /// The current estimate.
    pub fn value(&self) -> f32 {
        self.value
    }

    /// Replace the estimate (when a known change, such as a co-located model's switch, changes
    /// what the samples will be) and forget any run in progress.
    pub fn set(&mut self, value: f32) {
        if value.is_finite() && value > 0.0 {
            self.value = value;
        }
        self.run_up = 0;
        self.run_down = 0;
    }

    /// Feed one sample (measured / predicted); returns whether the estimate stepped.
    pub fn update(&mut self, sample: f32) -> bool {
        if !(sample.is_finite() && sample > 0.0) {
            return false;
        }
        let p = self.params;
        let hi = self.value * (1.0 + p.band);
        let lo = self.value * (1.0 - p.band);
        if sample > hi {
            self.run_down = 0;
            self.run_edge = if self.run_up == 0 { sample } else { self.run_edge.min(sample) };
            self.run_up = self.run_up.saturating_add(1);
            if self.run_up >= p.confirm_up {
                self.set(self.run_edge);
                return true;
            }
        } else if sample < lo {
            self.run_up = 0;
            self.run_edge = if self.run_down == 0 { sample } else { self.run_edge.max(sample) };
            self.run_down = self.run_down.saturating_add(1);
            if self.run_down >= p.confirm_down {
                self.set(self.run_edge);
                return true;
            }
        } else {
            self.run_up = 0;
            self.run_down = 0;
        }
        self.value += p.gain * (sample.clamp(lo, hi) - self.value);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spike_moves_the_estimate_little_and_a_step_is_followed_at_once() {
        let mut s = Slowdown::new(EstimatorParams::default());
        assert!(!s.update(1.6));
        assert!(s.value() < 1.0 + 0.08 * 0.12 + 1e-6);
        assert!(!s.update(1.0));
        // A step to 1.5: the second sample confirms it, to the smaller of the two.
        assert!(!s.update(1.55));
        assert!(s.update(1.5));
        assert_eq!(s.value(), 1.5);
        // Back down takes four samples below the band, to the largest of them.
        for (i, x) in [1.0, 1.02, 0.98, 1.01].into_iter().enumerate() {
            assert_eq!(s.update(x), i == 3);
        }
        assert_eq!(s.value(), 1.02);
    }

    #[test]
    fn small_drifts_are_followed_slowly() {
        let mut s = Slowdown::new(EstimatorParams::default());
        for _ in 0..100 {
            s.update(1.08);
        }
        assert!((s.value() - 1.08).abs() < 0.001, "{}", s.value());
    }

    #[test]
    fn bad_samples_are_ignored() {
        let mut s = Slowdown::new(EstimatorParams::default());
        for x in [f32::NAN, f32::INFINITY, -1.0, 0.0] {
            assert!(!s.update(x));
        }
        assert_eq!(s.value(), 1.0);
        s.set(f32::NAN);
        assert_eq!(s.value(), 1.0);
    }
}
