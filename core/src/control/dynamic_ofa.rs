//! The runtime policy of Dynamic-OFA (Lou et al., CVPR-W 2021), for comparison with dynofa.
//!
//! Its published runtime (`runtime_demo/runtime_adjustment` in github.com/UoS-EEC/DynamicOFA)
//! averages the last 20 frame latencies of the running sub-network; when the average is over the
//! latency constraint it steps one level down (the next faster stored sub-network), and when the
//! running sub-network's accuracy is below the accuracy requirement it steps one level up. Each
//! switch restarts the averaging. It knows nothing of why latency moved, handles one model at a
//! time and never touches clocks. Its 5-6 s switching time came from restarting a Python process
//! and is not part of the policy, so it is not modelled. The original also skipped the first 20
//! frames after a switch (a warm-up) and frames over 90 ms (a constant for its demo's targets);
//! the warm-up is a parameter here, the fixed cut-off is left out.

use crate::control::{ControlError, Decision, Goal, MAX_MODELS, ModelSpec, Policy, specs_ok};
use crate::lut::{Lut, OperatingPoint, Unit};

/// Longest averaging window.
pub const MAX_WINDOW: usize = 64;

/// Tuning of [`DynamicOfa`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StepParams {
    /// Frames averaged (1..=[`MAX_WINDOW`]).
    pub window: usize,
    /// Frames ignored after a switch before averaging starts.
    pub warmup: usize,
}

impl Default for StepParams {
    fn default() -> Self {
        StepParams { window: 20, warmup: 0 }
    }
}

/// Per-model state of the step policy.
#[derive(Debug, Clone, Copy)]
struct Track {
    spec: ModelSpec,
    active: usize,
    ring: [f32; MAX_WINDOW],
    /// Frames seen since the last switch.
    seen: usize,
}

/// The Dynamic-OFA step policy behind the [`Policy`] interface, each model on its own.
#[derive(Debug, Clone)]
pub struct DynamicOfa<'l, const N: usize, const P: usize> {
    lut: &'l Lut<N, P>,
    params: StepParams,
    n: usize,
    tracks: [Track; MAX_MODELS],
    clock: [u32; 2],
}

impl<'l, const N: usize, const P: usize> DynamicOfa<'l, N, P> {
    /// The policy for `specs`, each model starting on the most accurate entry whose LUT latency is
    /// within its target (the fastest when none is).
    pub fn new(
        lut: &'l Lut<N, P>,
        specs: &[ModelSpec],
        clocks_khz: [u32; 2],
        params: StepParams,
    ) -> Result<Self, ControlError> {
        specs_ok(specs)?;
        let params = StepParams { window: params.window.clamp(1, MAX_WINDOW), ..params };
        let track = Track { spec: specs[0], active: 0, ring: [0.0; MAX_WINDOW], seen: 0 };
        let mut p = DynamicOfa { lut, params, n: specs.len(), tracks: [track; MAX_MODELS], clock: clocks_khz };
        for (k, spec) in specs.iter().enumerate() {
            let op = p.op(spec.unit);
            let start = lut.best_under(op, spec.goal.target_ms).or_else(|| lut.pareto(op).first().copied());
            let Some(active) = start else {
                return Err(ControlError::NoEntries { model: k });
            };
            p.tracks[k] = Track { spec: *spec, active, ..track };
        }
        Ok(p)
    }

    fn op(&self, unit: Unit) -> OperatingPoint {
        OperatingPoint { unit, freq_khz: self.clock[unit.index()] }
    }
}

impl<const N: usize, const P: usize> Policy for DynamicOfa<'_, N, P> {
    fn models(&self) -> usize {
        self.n
    }

    fn entry(&self, model: usize) -> usize {
        self.tracks.get(model).map_or(0, |t| t.active)
    }

    fn observe(&mut self, model: usize, latency_ms: f32) -> Decision {
        if model >= self.n || !latency_ms.is_finite() {
            return Decision::STAY;
        }
        let StepParams { window, warmup } = self.params;
        let op = self.op(self.tracks[model].spec.unit);
        let t = &mut self.tracks[model];
        t.seen += 1;
        if t.seen <= warmup {
            return Decision::STAY;
        }
        let i = t.seen - warmup - 1;
        t.ring[i % window] = latency_ms;
        if i + 1 < window {
            return Decision::STAY;
        }
        let mean = t.ring[..window].iter().sum::<f32>() / window as f32;
        let goal = t.spec.goal;
        let top1 = self.lut.entries().get(t.active).map_or(0.0, |e| e.top1);
        let next = if mean > goal.target_ms {
            self.lut.next_faster(op, t.active)
        } else if top1 < goal.floor_top1 {
            self.lut.next_more_accurate(op, t.active)
        } else {
            None
        };
        match next {
            Some(e) => {
                debug!("dynamic-ofa: model {=usize} entry {=usize} -> {=usize}", model, t.active, e);
                t.active = e;
                t.seen = 0;
                Decision::STAY.with_switch(model, e)
            }
            None => Decision::STAY,
        }
    }

    fn set_goal(&mut self, model: usize, goal: Goal) -> Decision {
        if model < self.n && goal.is_valid() {
            self.tracks[model].spec.goal = goal;
        }
        // The policy only ever reacts through its averaging window.
        Decision::STAY
    }

    fn clock_changed(&mut self, unit: Unit, khz: u32) -> Decision {
        self.clock[unit.index()] = khz;
        Decision::STAY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::testing::{GPU, lut};

    const LEVELS: [(f32, f32); 4] = [(73.0, 40.0), (75.0, 45.0), (77.0, 50.0), (79.0, 55.0)];

    #[test]
    fn steps_down_after_a_full_window_over_the_target() {
        let lut = lut(&LEVELS);
        let specs = [ModelSpec { unit: Unit::Gpu, goal: Goal::target(52.0) }];
        let mut p = DynamicOfa::new(&lut, &specs, [GPU.freq_khz, 0], StepParams::default()).unwrap();
        assert_eq!(p.entry(0), 2);
        // Slowed by 1.2: 60 ms. The 20th frame's average triggers one step.
        for i in 1..=20 {
            let d = p.observe(0, 60.0);
            assert_eq!(d.switch(0), (i == 20).then_some(1), "frame {i}");
        }
        // A new window on the faster entry: 54 ms still over, one more step after 20 frames.
        for i in 1..=20 {
            assert_eq!(p.observe(0, 54.0).switch(0), (i == 20).then_some(0));
        }
        // At the bottom it cannot step further.
        for _ in 0..40 {
            assert!(p.observe(0, 54.0).is_stay());
        }
    }

    #[test]
    fn steps_up_only_below_the_accuracy_floor() {
        let lut = lut(&LEVELS);
        let goal = Goal { target_ms: 100.0, period_ms: 0.0, floor_top1: 76.0, priority: 1.0 };
        let specs = [ModelSpec { unit: Unit::Gpu, goal: Goal::target(42.0) }];
        let mut p = DynamicOfa::new(&lut, &specs, [GPU.freq_khz, 0], StepParams::default()).unwrap();
        assert_eq!(p.entry(0), 0);
        // A looser target alone does nothing; a floor above the running accuracy steps up.
        assert!(p.set_goal(0, Goal::target(100.0)).is_stay());
        for _ in 0..40 {
            assert!(p.observe(0, 40.0).is_stay());
        }
        assert!(p.set_goal(0, goal).is_stay());
        let ups: usize = (0..60).map(|_| usize::from(p.observe(0, 40.0).switch(0).is_some())).sum();
        assert_eq!((ups, p.entry(0)), (2, 2));
    }

    #[test]
    fn warmup_frames_are_skipped() {
        let lut = lut(&LEVELS);
        let specs = [ModelSpec { unit: Unit::Gpu, goal: Goal::target(52.0) }];
        let mut p = DynamicOfa::new(&lut, &specs, [GPU.freq_khz, 0], StepParams { window: 4, warmup: 3 }).unwrap();
        let switched: usize = (0..7).map(|_| usize::from(p.observe(0, 60.0).switch(0).is_some())).sum();
        assert_eq!(switched, 1);
    }
}
