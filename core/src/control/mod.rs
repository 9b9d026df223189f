//! Runtime controllers: pure state machines that turn what happened (a frame's latency, a new goal,
//! a clock change) into a [`Decision`] (stay, switch a model to LUT entry i, set a unit's clock).
//!
//! They never call the hardware, never allocate and never panic on bad input, so the same code
//! runs on a Jetson, in the simulator and in unit tests. Three policies share the [`Policy`]
//! interface:
//! - [`Dynofa`]: dynofa's manager. Per model it estimates the slowdown against the LUT
//!   ([`Slowdown`]); per processing unit it plans all models that share it jointly ([`plan`]),
//!   since one model's choice takes a share of the unit from the others; it reacts at once to
//!   new goals and to frames that no longer fit, and upgrades only with hysteresis after a dwell.
//!   In energy mode it also picks each unit's clock with a [`PowerTable`].
//! - [`DynamicOfa`]: the step policy of Dynamic-OFA (Lou et al., 2021), for comparison.
//! - the simulator's oracle (in `dynofa-hal-sim`), which knows the true slowdown and uses [`plan`].

mod dynamic_ofa;
mod dynofa;
mod estimate;
mod plan;
mod power;

pub use dynamic_ofa::{DynamicOfa, MAX_WINDOW, StepParams};
pub use dynofa::{Dynofa, DynofaParams};
pub use estimate::{EstimatorParams, Slowdown, Step};
pub use plan::{Candidate, Plan, PlanModel, candidates, plan, shared_latency_ms};
pub use power::{MAX_POWER_POINTS, PowerError, PowerPoint, PowerTable};

use crate::lut::Unit;

/// Most models one policy manages.
pub const MAX_MODELS: usize = 4;

/// What an application asks of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Goal {
    /// Latency target of one frame in ms.
    pub target_ms: f32,
    /// Frame period in ms (0: frames run back to back). Sets the share of its unit a model takes.
    pub period_ms: f32,
    /// Accuracy floor in top-1 percent (0: none). Only the Dynamic-OFA policy steps up on it;
    /// dynofa always runs the most accurate entry that fits.
    pub floor_top1: f32,
    /// Weight of this model's accuracy when models compete for a unit (1: normal).
    pub priority: f32,
}

impl Goal {
    /// A goal with only a latency target: back-to-back frames, no floor, priority 1.
    pub const fn target(target_ms: f32) -> Self {
        Goal { target_ms, period_ms: 0.0, floor_top1: 0.0, priority: 1.0 }
    }

    /// Whether target and priority are finite and positive, the period finite and non-negative and
    /// the floor finite: what every policy requires of a goal.
    pub fn is_valid(&self) -> bool {
        let pos = |v: f32| v.is_finite() && v > 0.0;
        pos(self.target_ms)
            && pos(self.priority)
            && self.period_ms.is_finite()
            && self.period_ms >= 0.0
            && self.floor_top1.is_finite()
    }

    /// The time a frame slot lasts: the period, or the target when frames run back to back.
    pub fn slot_ms(&self) -> f32 {
        if self.period_ms > 0.0 { self.period_ms } else { self.target_ms }
    }
}

/// A model a policy manages: the unit it runs on and its goal.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModelSpec {
    /// The processing unit the model runs on.
    pub unit: Unit,
    /// What the application asks.
    pub goal: Goal,
}

/// What a policy wants changed. Models or units it does not name stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub struct Decision {
    switch: [Option<u16>; MAX_MODELS],
    clock_khz: [Option<u32>; 2],
}

impl Decision {
    /// Change nothing.
    pub const STAY: Decision = Decision { switch: [None; MAX_MODELS], clock_khz: [None; 2] };

    /// This decision with `model` switched to LUT entry `entry` (ignored beyond [`MAX_MODELS`]).
    pub fn with_switch(mut self, model: usize, entry: usize) -> Self {
        if let Some(s) = self.switch.get_mut(model) {
            *s = Some(entry as u16);
        }
        self
    }

    /// This decision with `unit`'s clock set to `khz`.
    pub fn with_clock(mut self, unit: Unit, khz: u32) -> Self {
        self.clock_khz[unit.index()] = Some(khz);
        self
    }

    /// The entry `model` is to switch to, if any.
    pub fn switch(&self, model: usize) -> Option<usize> {
        self.switch.get(model).copied().flatten().map(usize::from)
    }

    /// The clock `unit` is to be set to, if any.
    pub fn clock(&self, unit: Unit) -> Option<u32> {
        self.clock_khz[unit.index()]
    }

    /// Whether nothing changes.
    pub fn is_stay(&self) -> bool {
        *self == Decision::STAY
    }

    /// Both decisions, the later one winning where both name the same model or unit.
    pub fn merge(mut self, later: Decision) -> Self {
        for (a, b) in self.switch.iter_mut().zip(later.switch) {
            *a = b.or(*a);
        }
        for (a, b) in self.clock_khz.iter_mut().zip(later.clock_khz) {
            *a = b.or(*a);
        }
        self
    }
}

/// A runtime policy: told what happened, it answers what to change.
///
/// Model indices are those the policy was built with; an index out of range is ignored (the
/// answer is [`Decision::STAY`]), never a panic. Implementations MUST NOT allocate.
pub trait Policy {
    /// Number of models managed.
    fn models(&self) -> usize;

    /// The LUT entry `model` runs now (after the decisions the policy has given out).
    fn entry(&self, model: usize) -> usize;

    /// A frame of `model` took `latency_ms` on the entry [`Policy::entry`] named.
    fn observe(&mut self, model: usize, latency_ms: f32) -> Decision;

    /// The application changed `model`'s goal.
    fn set_goal(&mut self, model: usize, goal: Goal) -> Decision;

    /// `unit`'s clock now reads `khz` (someone else changed it, or a requested change failed).
    fn clock_changed(&mut self, unit: Unit, khz: u32) -> Decision;

    /// A frame of `model` is about to start. Only a policy that can see the environment directly
    /// (the simulator's oracle) decides here.
    #[inline]
    fn before_frame(&mut self, _model: usize) -> Decision {
        Decision::STAY
    }
}

impl<T: Policy + ?Sized> Policy for &mut T {
    fn models(&self) -> usize {
        (**self).models()
    }
    fn entry(&self, model: usize) -> usize {
        (**self).entry(model)
    }
    fn observe(&mut self, model: usize, latency_ms: f32) -> Decision {
        (**self).observe(model, latency_ms)
    }
    fn set_goal(&mut self, model: usize, goal: Goal) -> Decision {
        (**self).set_goal(model, goal)
    }
    fn clock_changed(&mut self, unit: Unit, khz: u32) -> Decision {
        (**self).clock_changed(unit, khz)
    }
    fn before_frame(&mut self, model: usize) -> Decision {
        (**self).before_frame(model)
    }
}

/// Why a policy could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ControlError {
    /// No model, or more than [`MAX_MODELS`].
    ModelCount {
        /// Models given.
        found: usize,
    },
    /// A model's unit has no profiled entry in the LUT.
    NoEntries {
        /// The model.
        model: usize,
    },
    /// A goal's target, period or priority is not a finite positive number (period may be 0).
    Goal {
        /// The model.
        model: usize,
    },
}

impl core::fmt::Display for ControlError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::ModelCount { found } => {
                write!(f, "a policy manages 1 to {MAX_MODELS} models, {found} given")
            }
            Self::NoEntries { model } => write!(
                f,
                "model {model}: no lut entry has a latency for its unit; profile the lut on that unit (`cargo xtask profile`)"
            ),
            Self::Goal { model } => write!(
                f,
                "model {model}: target and priority must be finite and positive, period finite and non-negative"
            ),
        }
    }
}

impl core::error::Error for ControlError {}

/// Check a model list; shared by every policy's constructor.
pub(crate) fn specs_ok(specs: &[ModelSpec]) -> Result<(), ControlError> {
    if specs.is_empty() || specs.len() > MAX_MODELS {
        return Err(ControlError::ModelCount { found: specs.len() });
    }
    match specs.iter().position(|s| !s.goal.is_valid()) {
        Some(model) => Err(ControlError::Goal { model }),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod testing;
