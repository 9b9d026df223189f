//! A model's slowdown against its LUT: measured latency over the LUT's prediction.
//!
//! Frame latencies are noisy (about 5% spread and occasional spikes of +20% and more on a
//! Jetson), while real changes (another application starting, a clock change) are steps. So the
//! estimate follows small drifts slowly, with each sample clipped so that one spike moves it
//! little, and jumps at once when a few consecutive samples agree on a step: up after
//! `confirm_up` samples above the band (to the second smallest of them, so that neither a spike
//! among them nor one just before the step sets the level), down after `confirm_down` samples
//! below it (to the largest, the cautious side).
//! After a step it averages afresh: the samples since weigh as in a plain mean, down to `gain`,
//! so that it settles on the new level within a few frames yet is steady between changes. A step
//! up stays provisional for one sample: spikes in a row look like a step, but the sample after
//! them falls back, nearer the old level than the new one, and the step is undone.

/// How the slowdown estimate moves.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EstimatorParams {
    /// Smallest weight of a new (clipped) sample in the running estimate, reached once the
    /// estimate has averaged `1 / gain` samples since its last step.
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
        // Three samples above +12% are a step (three spikes in a row happen once in about 10^4
        // frames, two in 500); three below -12% are a step down. Between steps the estimate
        // averages about the last 30 frames: its own error (0.6% on 5% noise) is then small
        // against the margin.
        EstimatorParams { gain: 0.03, band: 0.12, confirm_up: 3, confirm_down: 3 }
    }
}

/// What a sample did to the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// It moved the running average, if at all.
    None,
    /// It confirmed a step up (provisional until the next sample).
    Up,
    /// It confirmed a step down.
    Down,
    /// It showed the last step up to be spikes: the estimate is back where it was before it.
    Undone,
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
    /// Second smallest sample of the current run above the band.
    run_second: f32,
    /// Samples averaged since the last step, counting the step itself as one (saturating: the
    /// starting value, the LUT's word, counts as settled).
    count: u16,
    /// The value and count before the current run above the band began...
    before_run: (f32, u16),
    /// ...kept after a step up that the next sample may still undo.
    before_step: Option<(f32, u16)>,
}

impl Slowdown {
    /// An estimate starting at 1.0.
    pub const fn new(params: EstimatorParams) -> Self {
        Slowdown {
            value: 1.0,
            params,
            run_up: 0,
            run_down: 0,
            run_edge: 1.0,
            run_second: 1.0,
            count: u16::MAX,
            before_run: (1.0, u16::MAX),
            before_step: None,
        }
    }

    /// The current estimate.
    pub fn value(&self) -> f32 {
        self.value
    }

    /// Samples averaged since the last step (counting the step as one; saturates).
    pub fn samples(&self) -> u16 {
        self.count
    }

    /// Whether the last samples run above the band: a step up may be under way.
    pub fn rising(&self) -> bool {
        self.run_up > 0
    }

    /// Re-express the estimate when a known change (such as a co-located model's switch) scales
    /// what the samples will be: a run in progress and a step up still provisional carry on,
    /// scaled alike.
    pub fn set(&mut self, value: f32) {
        if !(value.is_finite() && value > 0.0) {
            return;
        }
        let f = value / self.value;
        self.value = value;
        self.run_edge *= f;
        self.run_second *= f;
        self.before_run.0 *= f;
        if let Some((before, _)) = &mut self.before_step {
            *before *= f;
        }
    }

    /// Jump to `value`, end the runs and average afresh.
    fn step(&mut self, value: f32) {
        self.value = value;
        self.run_up = 0;
        self.run_down = 0;
        self.before_step = None;
        self.count = 1;
    }

    /// Feed one sample (measured / predicted); returns what it did.
    pub fn update(&mut self, sample: f32) -> Step {
        if !(sample.is_finite() && sample > 0.0) {
            return Step::None;
        }
        let p = self.params;
        if let Some((value, count)) = self.before_step.take()
            && sample < 0.5 * (value + self.value)
        {
            self.value = value;
            self.count = count;
            return Step::Undone;
        }
        let hi = self.value * (1.0 + p.band);
        let lo = self.value * (1.0 - p.band);
        if sample > hi {
            self.run_down = 0;
            if self.run_up == 0 {
                (self.run_edge, self.run_second) = (sample, f32::INFINITY);
                self.before_run = (self.value, self.count);
            } else if sample < self.run_edge {
                (self.run_edge, self.run_second) = (sample, self.run_edge);
            } else {
                self.run_second = self.run_second.min(sample);
            }
            self.run_up = self.run_up.saturating_add(1);
            if self.run_up >= p.confirm_up {
                let level = if self.run_second.is_finite() { self.run_second } else { self.run_edge };
                self.step(level);
                self.before_step = Some(self.before_run);
                return Step::Up;
            }
        } else if sample < lo {
            self.run_up = 0;
            self.run_edge = if self.run_down == 0 { sample } else { self.run_edge.max(sample) };
            self.run_down = self.run_down.saturating_add(1);
            if self.run_down >= p.confirm_down {
                self.step(self.run_edge);
                return Step::Down;
            }
        } else {
            self.run_up = 0;
            self.run_down = 0;
        }
        self.count = self.count.saturating_add(1);
        let gain = p.gain.max(1.0 / f32::from(self.count));
        self.value += gain * (sample.clamp(lo, hi) - self.value);
        Step::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `samples`, expecting the last to give `last` and the others nothing.
    fn feed(s: &mut Slowdown, samples: &[f32], last: Step) {
        for (i, &x) in samples.iter().enumerate() {
            let want = if i + 1 == samples.len() { last } else { Step::None };
            assert_eq!(s.update(x), want, "sample {i} ({x})");
        }
    }

    #[test]
    fn one_spike_moves_the_estimate_little_and_a_step_is_followed_at_once() {
        let p = EstimatorParams::default();
        let mut s = Slowdown::new(p);
        assert_eq!(s.update(1.6), Step::None);
        assert!(s.value() < 1.0 + p.gain * p.band + 1e-6);
        assert_eq!(s.update(1.0), Step::None);
        // A step to 1.5: the third sample confirms it, to the second smallest, and the next one,
        // near the new level, keeps it.
        feed(&mut s, &[1.55, 1.6, 1.5], Step::Up);
        assert_eq!(s.value(), 1.55);
        assert_eq!(s.update(1.48), Step::None);
        // Back down takes three samples below the band, to the largest of them.
        feed(&mut s, &[1.0, 1.02, 0.98], Step::Down);
        assert_eq!(s.value(), 1.02);
    }

    #[test]
    fn a_spike_just_before_a_step_does_not_set_its_level() {
        let mut s = Slowdown::new(EstimatorParams::default());
        feed(&mut s, &[1.25, 2.1, 2.05], Step::Up);
        assert_eq!(s.value(), 2.05);
    }

    #[test]
    fn spikes_in_a_row_are_undone_by_the_next_sample() {
        let mut s = Slowdown::new(EstimatorParams::default());
        for _ in 0..50 {
            s.update(1.0);
        }
        let settled = s;
        feed(&mut s, &[1.35, 1.5, 1.25], Step::Up);
        assert_eq!(s.update(1.03), Step::Undone);
        assert_eq!(s.value(), settled.value());
        assert_eq!(s.samples(), settled.samples());
        // Undone once: the next sample is averaged as usual.
        assert_eq!(s.update(0.9), Step::None);
    }

    #[test]
    fn after_a_step_the_estimate_averages_afresh() {
        let mut s = Slowdown::new(EstimatorParams::default());
        feed(&mut s, &[1.3, 1.3, 1.25], Step::Up);
        // Within the band, ten samples at 1.2 weigh as a plain mean with the step's value.
        for _ in 0..10 {
            assert_eq!(s.update(1.2), Step::None);
        }
        assert!((s.value() - (1.3 + 10.0 * 1.2) / 11.0).abs() < 1e-4, "{}", s.value());
    }

    #[test]
    fn a_known_change_keeps_a_provisional_step_in_proportion() {
        let mut s = Slowdown::new(EstimatorParams::default());
        let before = s.value();
        feed(&mut s, &[1.5, 1.5, 1.5], Step::Up);
        // A co-located model's switch makes every sample 10% longer.
        s.set(1.65);
        assert_eq!(s.update(1.1), Step::Undone);
        assert!((s.value() - 1.1 * before).abs() < 1e-5, "{} {before}", s.value());
    }

    #[test]
    fn small_drifts_are_followed_slowly() {
        let mut s = Slowdown::new(EstimatorParams::default());
        for _ in 0..300 {
            s.update(1.08);
        }
        assert!((s.value() - 1.08).abs() < 0.001, "{}", s.value());
    }

    #[test]
    fn bad_samples_are_ignored() {
        let mut s = Slowdown::new(EstimatorParams::default());
        for x in [f32::NAN, f32::INFINITY, -1.0, 0.0] {
            assert_eq!(s.update(x), Step::None);
        }
        assert_eq!(s.value(), 1.0);
        s.set(f32::NAN);
        assert_eq!(s.value(), 1.0);
    }
}
