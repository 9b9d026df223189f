//! Several models, each in its own thread with its own [`Runtime`](dynofa_core::runtime::Runtime),
//! managed by one policy: the joint plan sees every model, and each thread applies what concerns its
//! own. Also the wall clock and a clock control that threads share.
//!
//! A decision made on one model's frame may switch another model (the joint plan gives room to one
//! by slowing another); that switch waits in the other model's mailbox and its runtime applies it
//! before its next frame ([`Policy::before_frame`]).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dynofa_core::control::{Decision, Goal, MAX_MODELS, Policy};
use dynofa_core::hal::{Clock, ErrorType, FrequencyControl};
use dynofa_core::lut::Unit;
use embedded_hal::delay::DelayNs;

/// One policy over several models, with a mailbox per model for switches made on others' frames.
#[derive(Debug)]
pub struct Joint<P> {
    policy: P,
    pending: [Option<usize>; MAX_MODELS],
}

impl<P: Policy> Joint<P> {
    /// Share `policy` between its models' threads.
    pub fn new(policy: P) -> Mutex<Self> {
        Mutex::new(Joint { policy, pending: [None; MAX_MODELS] })
    }

    /// The policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// `d`, made on `me`'s behalf, as `me`'s runtime sees it: its own switch as model 0, and the
    /// clocks; other models' switches go to their mailboxes.
    fn route(&mut self, d: Decision, me: usize) -> Decision {
        let mut own = Decision::STAY;
        for k in 0..self.policy.models().min(MAX_MODELS) {
            let Some(entry) = d.switch(k) else { continue };
            if k == me {
                own = own.with_switch(0, entry);
                self.pending[me] = None;
            } else {
                self.pending[k] = Some(entry);
            }
        }
        for unit in Unit::ALL {
            if let Some(khz) = d.clock(unit) {
                own = own.with_clock(unit, khz);
            }
        }
        own
    }
}

/// One model's view of a shared [`Joint`] policy: a policy of one model for that model's runtime.
#[derive(Debug)]
pub struct ModelView<'a, P> {
    joint: &'a Mutex<Joint<P>>,
    model: usize,
}

impl<'a, P> ModelView<'a, P> {
    /// Model `model` of `joint`.
    pub fn new(joint: &'a Mutex<Joint<P>>, model: usize) -> Self {
        ModelView { joint, model }
    }

    fn lock(&self) -> MutexGuard<'a, Joint<P>> {
        // A thread that panicked mid-decision leaves a policy that is still consistent enough to use.
        self.joint.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<P: Policy> Policy for ModelView<'_, P> {
    fn models(&self) -> usize {
        1
    }

    fn entry(&self, _model: usize) -> usize {
        self.lock().policy.entry(self.model)
    }

    fn observe(&mut self, _model: usize, latency_ms: f32) -> Decision {
        let mut j = self.lock();
        let d = j.policy.observe(self.model, latency_ms);
        j.route(d, self.model)
    }

    fn set_goal(&mut self, _model: usize, goal: Goal) -> Decision {
        let mut j = self.lock();
        let d = j.policy.set_goal(self.model, goal);
        j.route(d, self.model)
    }

    fn clock_changed(&mut self, unit: Unit, khz: u32) -> Decision {
        let mut j = self.lock();
        let d = j.policy.clock_changed(unit, khz);
        j.route(d, self.model)
    }

    fn before_frame(&mut self, _model: usize) -> Decision {
        let mut j = self.lock();
        let waiting = j.pending[self.model].take().map_or(Decision::STAY, |e| Decision::STAY.with_switch(0, e));
        let d = j.policy.before_frame(self.model);
        waiting.merge(j.route(d, self.model))
    }
}

/// The wall clock since a shared origin (all models' timelines line up), and sleeping for pacing.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    origin: Instant,
}

impl WallClock {
    /// A clock whose time 0 is `origin`.
    pub const fn new(origin: Instant) -> Self {
        WallClock { origin }
    }
}

impl ErrorType for WallClock {
    type Error = core::convert::Infallible;
}

impl Clock for WallClock {
    fn now_ns(&mut self) -> Result<u64, Self::Error> {
        Ok(self.origin.elapsed().as_nanos() as u64)
    }
}

impl DelayNs for WallClock {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(u64::from(ns)));
    }
}

/// One clock control used by several threads (each model's runtime reads the clock before its frames).
#[derive(Debug)]
pub struct SharedFreq<'a, F> {
    inner: &'a Mutex<F>,
    unit: Unit,
    points: Vec<u32>,
}

impl<'a, F: FrequencyControl> SharedFreq<'a, F> {
    /// A handle on `inner`.
    pub fn new(inner: &'a Mutex<F>) -> Self {
        let f = inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (unit, points) = (f.unit(), f.operating_points().to_vec());
        drop(f);
        SharedFreq { inner, unit, points }
    }

    fn lock(&self) -> MutexGuard<'a, F> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F: FrequencyControl> ErrorType for SharedFreq<'_, F> {
    type Error = F::Error;
}

impl<F: FrequencyControl> FrequencyControl for SharedFreq<'_, F> {
    fn unit(&self) -> Unit {
        self.unit
    }

    fn operating_points(&self) -> &[u32] {
        &self.points
    }

    fn current_khz(&mut self) -> Result<u32, Self::Error> {
        self.lock().current_khz()
    }

    fn set_khz(&mut self, khz: u32) -> Result<(), Self::Error> {
        self.lock().set_khz(khz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy of three models that switches the others when one observes, and records goals.
    #[derive(Debug, Default)]
    struct Script {
        entries: [usize; 3],
        goals: Vec<(usize, f32)>,
    }

    impl Policy for Script {
        fn models(&self) -> usize {
            3
        }
        fn entry(&self, model: usize) -> usize {
            self.entries[model]
        }
        fn observe(&mut self, model: usize, latency_ms: f32) -> Decision {
            // A slow frame of model m moves every model to entry m + 1 and pins the CPU.
            if latency_ms < 100.0 {
                return Decision::STAY;
            }
            let mut d = Decision::STAY.with_clock(Unit::Cpu, 1000);
            for k in 0..3 {
                self.entries[k] = model + 1;
                d = d.with_switch(k, model + 1);
            }
            d
        }
        fn set_goal(&mut self, model: usize, goal: Goal) -> Decision {
            self.goals.push((model, goal.target_ms));
            Decision::STAY
        }
        fn clock_changed(&mut self, _unit: Unit, _khz: u32) -> Decision {
            Decision::STAY.with_switch(2, 7)
        }
    }

    #[test]
    fn decisions_reach_the_model_they_concern() {
        let joint = Joint::new(Script::default());
        let (mut a, mut b, mut c) = (ModelView::new(&joint, 0), ModelView::new(&joint, 1), ModelView::new(&joint, 2));
        assert_eq!((a.models(), b.entry(0)), (1, 0));
        assert!(a.observe(0, 10.0).is_stay());
        // Model 1's slow frame: its own switch comes back as model 0 of its view, with the clock...
        let d = b.observe(0, 500.0);
        assert_eq!((d.switch(0), d.switch(1), d.clock(Unit::Cpu)), (Some(2), None, Some(1000)));
        // ...and the others find theirs before their next frame, once.
        assert_eq!(a.before_frame(0).switch(0), Some(2));
        assert!(a.before_frame(0).is_stay());
        assert!(b.before_frame(0).is_stay());
        // A newer decision for a model replaces what waits for it.
        assert_eq!(c.clock_changed(Unit::Cpu, 5).switch(0), Some(7));
        assert!(c.before_frame(0).is_stay());
        assert_eq!(c.entry(0), 2);
        assert!(a.set_goal(0, Goal::target(42.0)).is_stay());
        assert_eq!(joint.lock().unwrap().policy().goals, vec![(0, 42.0)]);
    }

    #[test]
    fn the_wall_clock_moves_and_sleeps() {
        let mut clock = WallClock::new(Instant::now());
        let a = clock.now_ns().unwrap();
        clock.delay_ms(2);
        assert!(clock.since_ns(a).unwrap() >= 2_000_000);
    }
}
