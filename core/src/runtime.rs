//! The one loop that ties a platform to a policy: pace a frame, run it, time it with the clock,
//! feed the policy, apply its decision. Written once, generic over the HAL traits, so that the
//! simulator, `dynofa run` and the conformance tests run the same code.
//!
//! ```text
//! frame ──> InferenceEngine::infer ──> Clock: latency ──> Policy::observe ──> Decision
//!       ──> InferenceEngine::activate(entry) and/or FrequencyControl::set_khz(clock)
//! ```
//!
//! Several models are several [`ModelSlot`]s, each with its own clock, engine and pacing delay
//! (one thread each on a board; one timeline each in the simulator). [`Runtime::next_model`]
//! names the model whose frame is due first. Before each frame the runtime reads the clock of the
//! model's unit and tells the policy when someone else (a governor) changed it.

use embedded_hal::delay::DelayNs;

use crate::control::{Decision, Goal, Policy};
use crate::hal::{Clock, Error as _, ErrorKind, FrequencyControl, InferenceEngine, LoadSensor};
use crate::lut::{Lut, Unit};

/// One model's share of the platform.
#[derive(Debug)]
pub struct ModelSlot<C, E, D> {
    /// Its clock.
    pub clock: C,
    /// Its engine.
    pub engine: E,
    /// Its pacing delay.
    pub delay: D,
    /// The unit it runs on.
    pub unit: Unit,
    /// Frame period in ns (0: frames run back to back).
    pub period_ns: u64,
    next_release_ns: u64,
    active: usize,
    frames: u64,
}

impl<C, E, D> ModelSlot<C, E, D> {
    /// A slot whose first frame is due at time 0 of its clock.
    pub const fn new(clock: C, engine: E, delay: D, unit: Unit, period_ns: u64) -> Self {
        ModelSlot { clock, engine, delay, unit, period_ns, next_release_ns: 0, active: 0, frames: 0 }
    }

    /// When its next frame is due, in its clock's ns.
    pub fn next_release_ns(&self) -> u64 {
        self.next_release_ns
    }

    /// The LUT entry its engine runs.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Frames run so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

/// A processing unit's optional clock control and load sensor.
#[derive(Debug)]
pub struct UnitIo<F, S> {
    /// The unit.
    pub unit: Unit,
    /// Its clock control, where the platform has one.
    pub freq: Option<F>,
    /// Its load sensor, where the platform has one.
    pub load: Option<S>,
    /// The clock last read or set; `None` forces the next read to be passed to the policy.
    last_khz: Option<u32>,
}

impl<F, S> UnitIo<F, S> {
    /// A unit's I/O.
    pub const fn new(unit: Unit, freq: Option<F>, load: Option<S>) -> Self {
        UnitIo { unit, freq, load, last_khz: None }
    }
}

/// What happened in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameRecord {
    /// The model.
    pub model: usize,
    /// When the frame started, in the model's clock's ns.
    pub start_ns: u64,
    /// How long it took.
    pub latency_ns: u64,
    /// The LUT entry that ran it.
    pub entry: usize,
    /// The clock of the model's unit during the frame, where readable.
    pub freq_khz: Option<u32>,
    /// The unit's load after the frame, where a sensor exists.
    pub load_permille: Option<u16>,
    /// What the policy decided after the frame (and before it, on a clock change).
    pub decision: Decision,
    /// A clock change the policy asked for that the platform refused (the policy has been told).
    pub clock_error: Option<ErrorKind>,
}

/// Why the runtime stopped a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RuntimeError {
    /// The policy manages another number of models than there are slots.
    ModelCount {
        /// Models the policy manages.
        policy: usize,
        /// Slots given.
        slots: usize,
    },
    /// There is no such model.
    Model {
        /// The index asked for.
        model: usize,
    },
    /// The policy named an entry the LUT does not hold.
    Entry {
        /// The model.
        model: usize,
        /// The entry.
        entry: usize,
    },
    /// A model's clock failed.
    Clock {
        /// The model.
        model: usize,
        /// What failed.
        kind: ErrorKind,
    },
    /// A model's engine failed to activate or run (the previous sub-network stays active).
    Engine {
        /// The model.
        model: usize,
        /// What failed.
        kind: ErrorKind,
    },
    /// Reading a unit's clock or load failed.
    Unit {
        /// The unit.
        unit: Unit,
        /// What failed.
        kind: ErrorKind,
    },
}

impl core::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::ModelCount { policy, slots } => {
                write!(f, "the policy manages {policy} models but the runtime was given {slots} model slots")
            }
            Self::Model { model } => write!(f, "there is no model {model}"),
            Self::Entry { model, entry } => write!(f, "model {model}: the policy chose entry {entry}, not in the lut"),
            Self::Clock { model, kind } => write!(f, "model {model}: clock failed: {kind}"),
            Self::Engine { model, kind } => write!(f, "model {model}: engine failed: {kind}"),
            Self::Unit { unit, kind } => write!(f, "{unit}: reading clock or load failed: {kind}"),
        }
    }
}

impl core::error::Error for RuntimeError {}

/// The runtime: model slots, unit I/O and a policy, over one LUT.
#[derive(Debug)]
pub struct Runtime<'a, const N: usize, const P: usize, C, E, D, F, S, Pol> {
    lut: &'a Lut<N, P>,
    slots: &'a mut [ModelSlot<C, E, D>],
    units: &'a mut [UnitIo<F, S>],
    policy: Pol,
}

impl<'a, const N: usize, const P: usize, C, E, D, F, S, Pol> Runtime<'a, N, P, C, E, D, F, S, Pol>
where
    C: Clock,
    E: InferenceEngine,
    D: DelayNs,
    F: FrequencyControl,
    S: LoadSensor,
    Pol: Policy,
{
    /// Activate each model's starting entry and tell the policy the units' clocks.
    pub fn new(
        lut: &'a Lut<N, P>,
        slots: &'a mut [ModelSlot<C, E, D>],
        units: &'a mut [UnitIo<F, S>],
        policy: Pol,
    ) -> Result<Self, RuntimeError> {
        if policy.models() != slots.len() {
            return Err(RuntimeError::ModelCount { policy: policy.models(), slots: slots.len() });
        }
        let mut rt = Runtime { lut, slots, units, policy };
        for m in 0..rt.slots.len() {
            let entry = rt.policy.entry(m);
            rt.activate(m, entry)?;
        }
        for unit in Unit::ALL {
            let _ = rt.poll_clock(unit)?;
        }
        Ok(rt)
    }

    /// The policy.
    pub fn policy(&self) -> &Pol {
        &self.policy
    }

    /// The model slots.
    pub fn slots(&self) -> &[ModelSlot<C, E, D>] {
        self.slots
    }

    /// The model whose next frame is due first (the lowest index among equals).
    pub fn next_model(&self) -> Option<usize> {
        (0..self.slots.len()).min_by_key(|&m| (self.slots[m].next_release_ns, m))
    }

    /// The application changed `model`'s goal: tell the policy and apply its decision.
    pub fn set_goal(&mut self, model: usize, goal: Goal) -> Result<Decision, RuntimeError> {
        if model >= self.slots.len() {
            return Err(RuntimeError::Model { model });
        }
        let d = self.policy.set_goal(model, goal);
        self.apply(d).map(|_| d)
    }

    /// Run one frame of `model` on `input` into `output` (an engine that only models time may
    /// take empty buffers): wait for its release, run it, feed the policy, apply the decision.
    pub fn step(&mut self, model: usize, input: &[f32], output: &mut [f32]) -> Result<FrameRecord, RuntimeError> {
        let Some(slot) = self.slots.get_mut(model) else {
            return Err(RuntimeError::Model { model });
        };
        let clock_err = |kind| RuntimeError::Clock { model, kind };
        let now = slot.clock.now_ns().map_err(|e| clock_err(e.kind()))?;
        if slot.period_ns > 0 && now < slot.next_release_ns {
            let mut wait = slot.next_release_ns - now;
            while wait > 0 {
                let chunk = wait.min(u64::from(u32::MAX));
                slot.delay.delay_ns(chunk as u32);
                wait -= chunk;
            }
        }
        let unit = slot.unit;
        let (mut decision, mut clock_error) = self.poll_clock(unit)?;
        let before = self.policy.before_frame(model);
        let (before, e) = self.apply(before)?;
        decision = decision.merge(before);
        clock_error = clock_error.or(e);

        let slot = &mut self.slots[model];
        let entry = slot.active;
        let start = slot.clock.now_ns().map_err(|e| clock_err(e.kind()))?;
        slot.engine.infer(input, output).map_err(|e| RuntimeError::Engine { model, kind: e.kind() })?;
        let latency_ns = slot.clock.since_ns(start).map_err(|e| clock_err(e.kind()))?;
        slot.frames += 1;
        let end = start + latency_ns;
        slot.next_release_ns = if slot.period_ns == 0 { end } else { (slot.next_release_ns + slot.period_ns).max(end) };

        let io = self.units.iter_mut().find(|io| io.unit == unit);
        let freq_khz = io.as_ref().and_then(|io| io.last_khz);
        let load_permille = match io.and_then(|io| io.load.as_mut()) {
            Some(s) => Some(s.load_permille().map_err(|e| RuntimeError::Unit { unit, kind: e.kind() })?),
            None => None,
        };
        let after = self.policy.observe(model, latency_ns as f32 * 1e-6);
        let (after, e) = self.apply(after)?;
        Ok(FrameRecord {
            model,
            start_ns: start,
            latency_ns,
            entry,
            freq_khz,
            load_permille,
            decision: decision.merge(after),
            clock_error: clock_error.or(e),
        })
    }

    /// Read `unit`'s clock; when it moved since last seen, tell the policy and apply its answer.
    fn poll_clock(&mut self, unit: Unit) -> Result<(Decision, Option<ErrorKind>), RuntimeError> {
        let Some(io) = self.units.iter_mut().find(|io| io.unit == unit) else {
            return Ok((Decision::STAY, None));
        };
        let Some(f) = io.freq.as_mut() else {
            return Ok((Decision::STAY, None));
        };
        let khz = f.current_khz().map_err(|e| RuntimeError::Unit { unit, kind: e.kind() })?;
        if io.last_khz == Some(khz) {
            return Ok((Decision::STAY, None));
        }
        io.last_khz = Some(khz);
        let d = self.policy.clock_changed(unit, khz);
        let (_, e) = self.apply(d)?;
        Ok((d, e))
    }

    fn activate(&mut self, model: usize, entry: usize) -> Result<(), RuntimeError> {
        let Some(e) = self.lut.entries().get(entry) else {
            return Err(RuntimeError::Entry { model, entry });
        };
        let slot = &mut self.slots[model];
        slot.engine.activate(&e.config).map_err(|e| RuntimeError::Engine { model, kind: e.kind() })?;
        slot.active = entry;
        Ok(())
    }

    /// Carry out a decision. A refused clock change is returned as its kind, and the unit is
    /// marked so that the next frame tells the policy the clock that really holds.
    fn apply(&mut self, d: Decision) -> Result<(Decision, Option<ErrorKind>), RuntimeError> {
        for m in 0..self.slots.len() {
            if let Some(entry) = d.switch(m) {
                self.activate(m, entry)?;
            }
        }
        let mut refused = None;
        for unit in Unit::ALL {
            let controllable = self.units.iter().any(|io| io.unit == unit && io.freq.is_some());
            if d.clock(unit).is_some() && !controllable {
                refused = Some(ErrorKind::Unsupported);
            }
        }
        for io in self.units.iter_mut() {
            let (Some(khz), Some(f)) = (d.clock(io.unit), io.freq.as_mut()) else { continue };
            match f.set_khz(khz) {
                Ok(()) => io.last_khz = Some(khz),
                Err(e) => {
                    refused = Some(e.kind());
                    io.last_khz = None;
                }
            }
        }
        Ok((d, refused))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::config::SubnetConfig;
    use crate::control::testing::{GPU, lut};
    use crate::control::{Dynofa, DynofaParams, ModelSpec};
    use crate::hal::ErrorType;

    /// Virtual time shared by the fakes, and how much slower than the LUT frames run.
    #[derive(Clone, Default)]
    struct World {
        now: Rc<Cell<u64>>,
        slowdown: Rc<Cell<f32>>,
        khz: Rc<Cell<u32>>,
    }

    impl ErrorType for World {
        type Error = ErrorKind;
    }
    impl Clock for World {
        fn now_ns(&mut self) -> Result<u64, ErrorKind> {
            Ok(self.now.get())
        }
    }
    impl DelayNs for World {
        fn delay_ns(&mut self, ns: u32) {
            self.now.set(self.now.get() + u64::from(ns));
        }
    }

    struct Engine {
        world: World,
        lut: Lut<16>,
        active: Option<usize>,
    }
    impl ErrorType for Engine {
        type Error = ErrorKind;
    }
    impl InferenceEngine for Engine {
        fn activate(&mut self, config: &SubnetConfig) -> Result<(), ErrorKind> {
            self.active = Some(self.lut.find(config).ok_or(ErrorKind::NotPrepared)?);
            Ok(())
        }
        fn infer(&mut self, _: &[f32], _: &mut [f32]) -> Result<(), ErrorKind> {
            let ms = self.lut.entries()[self.active.ok_or(ErrorKind::NotPrepared)?].mean_ms(GPU).unwrap();
            let w = &self.world;
            w.now.set(w.now.get() + (ms * w.slowdown.get() * 1e6) as u64);
            Ok(())
        }
    }

    /// Clock control that refuses every change: its clock is moved only by the test.
    impl FrequencyControl for World {
        fn unit(&self) -> Unit {
            Unit::Gpu
        }
        fn operating_points(&self) -> &[u32] {
            &[]
        }
        fn current_khz(&mut self) -> Result<u32, ErrorKind> {
            Ok(self.khz.get())
        }
        fn set_khz(&mut self, _: u32) -> Result<(), ErrorKind> {
            Err(ErrorKind::PermissionDenied)
        }
    }
    impl LoadSensor for World {
        fn unit(&self) -> Unit {
            Unit::Gpu
        }
        fn load_permille(&mut self) -> Result<u16, ErrorKind> {
            Ok(500)
        }
    }

    const LEVELS: [(f32, f32); 3] = [(73.0, 20.0), (75.0, 30.0), (77.0, 40.0)];

    #[test]
    fn paces_frames_feeds_the_policy_and_applies_switches() {
        let lut = lut(&LEVELS);
        let world = World::default();
        world.slowdown.set(1.0);
        world.khz.set(GPU.freq_khz);
        let engine = Engine { world: world.clone(), lut: lut.clone(), active: None };
        let mut slots = [ModelSlot::new(world.clone(), engine, world.clone(), Unit::Gpu, 100_000_000)];
        let mut units = [UnitIo::new(Unit::Gpu, Some(world.clone()), Some(world.clone()))];
        let spec = [ModelSpec { unit: Unit::Gpu, goal: Goal::target(55.0) }];
        let policy = Dynofa::new(&lut, &spec, [GPU.freq_khz, 0], DynofaParams::default()).unwrap();
        let mut rt = Runtime::new(&lut, &mut slots, &mut units, policy).unwrap();
        assert_eq!(rt.slots()[0].active(), 2);
        for i in 0..5u64 {
            let r = rt.step(0, &[], &mut []).unwrap();
            assert_eq!((r.start_ns, r.latency_ns, r.entry), (i * 100_000_000, 40_000_000, 2));
            assert_eq!((r.freq_khz, r.load_permille), (Some(GPU.freq_khz), Some(500)));
        }
        // Twice as slow: three frames confirm it and the engine runs the fastest entry next.
        world.slowdown.set(2.0);
        for _ in 0..2 {
            let _ = rt.step(0, &[], &mut []).unwrap();
        }
        let r = rt.step(0, &[], &mut []).unwrap();
        assert_eq!(r.decision.switch(0), Some(0));
        assert_eq!(rt.step(0, &[], &mut []).unwrap().entry, 0);
        // A new goal applies at once; an unknown model is an error, not a panic.
        assert_eq!(rt.set_goal(0, Goal::target(200.0)).unwrap().switch(0), Some(2));
        assert_eq!(rt.step(9, &[], &mut []), Err(RuntimeError::Model { model: 9 }));
        // A clock moved by someone else is passed to the policy before the next frame.
        world.khz.set(599_250);
        let r = rt.step(0, &[], &mut []).unwrap();
        assert_eq!(r.freq_khz, Some(599_250));
        assert_eq!(rt.policy().clock_khz(Unit::Gpu), 599_250);
    }
}
