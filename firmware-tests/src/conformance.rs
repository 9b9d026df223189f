//! The HAL conformance suite: the contracts of `dynofa_core::hal` checked on any platform.
//!
//! Each check is a generic function; [`hal_conformance!`](crate::hal_conformance) makes one test
//! per check for a platform. It runs on the simulator (`tests/sim_conformance.rs`) and on the Linux
//! platform with the CPU engine and, where a GPU is present, the CUDA engine, over a fake Jetson
//! sysfs tree (`tests/linux_conformance.rs`).

use dynofa_core::config::SubnetConfig;
use dynofa_core::control::{Dynofa, DynofaParams, Goal, ModelSpec};
use dynofa_core::hal::{Clock, ErrorKind, FrequencyControl, InferenceEngine, LoadSensor};
use dynofa_core::lut::{Lut, OperatingPoint, Unit};
use dynofa_core::runtime::{ModelSlot, Runtime, UnitIo};
use embedded_hal::delay::DelayNs;

/// Most entries a platform's LUT holds here.
pub const ENTRIES: usize = 64;

/// What the suite needs of a platform.
pub trait Platform {
    /// Its clock.
    type Clock: Clock;
    /// Its engine.
    type Engine: InferenceEngine;
    /// Its pacing delay.
    type Delay: DelayNs;
    /// Its clock control.
    type Frequency: FrequencyControl;
    /// Its load sensor.
    type Load: LoadSensor;

    /// The LUT its engine has prepared.
    fn lut(&self) -> &Lut<ENTRIES>;
    /// The unit the suite's model runs on.
    fn unit(&self) -> Unit;
    /// The clock, engine and delay of one model on [`Platform::unit`]; the clock reads about 0 now
    /// (the runtime releases the model's first frame at 0).
    fn model(&mut self) -> (Self::Clock, Self::Engine, Self::Delay);
    /// The unit's clock control and load sensor, where the platform has them.
    fn unit_io(&mut self) -> (Option<Self::Frequency>, Option<Self::Load>);
    /// Length of one input frame (`[1, 3, r, r]` at the LUT's one resolution; 0 if ignored).
    fn input_len(&self) -> usize;

    /// How late after its release a frame may start: 0 on a simulated clock; a wall clock's sleep
    /// overshoots and the scheduler may run the thread late.
    fn release_slack_ns(&self) -> u64 {
        0
    }
}

/// Whether `e`'s kind is `kind`.
fn is<E: dynofa_core::hal::Error>(e: &E, kind: ErrorKind) -> bool {
    e.kind() == kind
}

/// The clock never goes back, and pacing delays move it forward by at least the delay.
pub fn clock_is_monotonic<P: Platform>(p: &mut P) {
    let (mut clock, mut engine, mut delay) = p.model();
    let config = p.lut().entries()[0].config;
    engine.activate(&config).unwrap();
    let (input, mut output) = (vec![0.0; p.input_len()], vec![0.0; 1000]);
    let mut last = clock.now_ns().unwrap();
    for i in 0..20 {
        if i % 2 == 0 {
            engine.infer(&input, &mut output).unwrap();
        } else {
            delay.delay_us(1_000);
        }
        let now = clock.now_ns().unwrap();
        assert!(now >= last, "clock went back from {last} to {now}");
        if i % 2 == 1 {
            assert!(now - last >= 1_000_000, "a 1 ms delay advanced the clock by {} ns", now - last);
        }
        last = now;
    }
    assert!(clock.since_ns(0).unwrap() >= last);
}

/// Every LUT entry activates and runs; a sub-network outside the LUT either runs (an engine that
/// needs no preparation) or is refused with `NotPrepared` and leaves the previous one active.
pub fn engine_runs_every_entry<P: Platform>(p: &mut P) {
    let (mut clock, mut engine, _) = p.model();
    let (input, mut output) = (vec![0.0; p.input_len()], vec![0.0; 1000]);
    for e in p.lut().entries() {
        engine.activate(&e.config).unwrap();
        let start = clock.now_ns().unwrap();
        engine.infer(&input, &mut output).unwrap();
        assert!(clock.since_ns(start).unwrap() > 0, "a frame took no time");
    }
    let stranger = (0..200u16)
        .map(|i| {
            SubnetConfig::uniform(
                3 + 2 * (i % 3) as u8,
                [3, 4, 6][(i / 3 % 3) as usize],
                2 + (i / 9 % 3) as u8,
                160 + 4 * (i / 27 % 17),
            )
        })
        .find(|c| p.lut().find(c).is_none())
        .expect("some uniform sub-network is not in the lut");
    match engine.activate(&stranger) {
        Err(err) => {
            assert!(is(&err, ErrorKind::NotPrepared), "{err:?}");
            engine.infer(&input, &mut output).unwrap();
        }
        Ok(()) if p.input_len() == 0 => engine.infer(&input, &mut output).unwrap(),
        Ok(()) => {
            let r = usize::from(stranger.r);
            engine.infer(&vec![0.0; 3 * r * r], &mut output).unwrap();
        }
    }
}

/// Clock control pins every operating point and reads it back; a clock that is not an operating
/// point is refused with `InvalidInput` and the clock stays.
pub fn frequency_control_pins_points<P: Platform>(p: &mut P) {
    let (Some(mut f), _) = p.unit_io() else {
        eprintln!("skipped: the platform has no clock control");
        return;
    };
    assert_eq!(f.unit(), p.unit());
    let points = f.operating_points().to_vec();
    assert!(points.windows(2).all(|w| w[0] < w[1]), "operating points not ascending: {points:?}");
    for &khz in &points {
        f.set_khz(khz).unwrap();
        assert_eq!(f.current_khz().unwrap(), khz);
    }
    let before = f.current_khz().unwrap();
    let err = f.set_khz(1).unwrap_err();
    assert!(is(&err, ErrorKind::InvalidInput), "{err:?}");
    assert_eq!(f.current_khz().unwrap(), before);
    f.set_max().unwrap();
    assert_eq!(Some(f.current_khz().unwrap()), points.last().copied());
}

/// The load sensor reads within 0..=1000 per mille.
pub fn load_sensor_in_range<P: Platform>(p: &mut P) {
    let (_, Some(mut s)) = p.unit_io() else {
        eprintln!("skipped: the platform has no load sensor");
        return;
    };
    assert_eq!(s.unit(), p.unit());
    for _ in 0..5 {
        let l = s.load_permille().unwrap();
        assert!(l <= 1000, "load {l} per mille");
    }
}

/// The runtime paces frames at the period, feeds dynofa and applies its switches on the platform.
pub fn runtime_paces_and_switches<P: Platform>(p: &mut P) {
    let unit = p.unit();
    let (clock, engine, delay) = p.model();
    let (freq, load) = p.unit_io();
    let khz = freq.as_ref().and_then(|f| f.operating_points().last().copied()).unwrap_or(0);
    let lut = p.lut().clone();
    // A generous target: the most accurate entry runs, and the period leaves idle time to pace.
    let op = OperatingPoint { unit, freq_khz: khz };
    let slowest = lut.entries().iter().filter_map(|e| e.predict_ms(op)).fold(0.0, f32::max);
    let goal = Goal { target_ms: 4.0 * slowest, period_ms: 5.0 * slowest, floor_top1: 0.0, priority: 1.0 };
    let policy = Dynofa::new(&lut, &[ModelSpec { unit, goal }], [khz, khz], DynofaParams::default()).unwrap();
    let best = lut.entries().iter().enumerate().max_by(|a, b| a.1.top1.total_cmp(&b.1.top1)).unwrap().0;
    let period_ns = (goal.period_ms * 1e6) as u64;
    let mut slots = [ModelSlot::new(clock, engine, delay, unit, period_ns)];
    let mut units = [UnitIo::new(unit, freq, load)];
    let mut rt = Runtime::new(&lut, &mut slots, &mut units, policy).unwrap();
    let (input, mut output) = (vec![0.0; p.input_len()], vec![0.0; 1000]);
    // Frame i is released at i periods after the clock's origin, the first release.
    let slack = p.release_slack_ns();
    for i in 0..10u64 {
        let r = rt.step(0, &input, &mut output).unwrap();
        let late = r.start_ns.checked_sub(i * period_ns);
        assert!(late.is_some_and(|l| l <= slack), "frame {i} not released on its period: {late:?} ns late");
        assert_eq!(r.entry, best);
        assert!(r.latency_ns > 0);
    }
    // A target no entry can meet: the runtime switches the engine to the fastest entry.
    let d = rt.set_goal(0, Goal { target_ms: 1e-3, ..goal }).unwrap();
    let fastest = d.switch(0).expect("an impossible target makes dynofa switch");
    assert_eq!(rt.step(0, &input, &mut output).unwrap().entry, fastest);
}

/// One test per conformance check for a platform built by `$make` (an expression); with `maybe`,
/// `$make` is an `Option` of one, and each test returns at once on `None` (a platform this machine
/// lacks; `$make` says why).
#[macro_export]
macro_rules! hal_conformance {
    (maybe $make:expr) => {
        #[test]
        fn clock_is_monotonic() {
            if let Some(mut p) = $make {
                $crate::conformance::clock_is_monotonic(&mut p);
            }
        }
        #[test]
        fn engine_runs_every_entry() {
            if let Some(mut p) = $make {
                $crate::conformance::engine_runs_every_entry(&mut p);
            }
        }
        #[test]
        fn frequency_control_pins_points() {
            if let Some(mut p) = $make {
                $crate::conformance::frequency_control_pins_points(&mut p);
            }
        }
        #[test]
        fn load_sensor_in_range() {
            if let Some(mut p) = $make {
                $crate::conformance::load_sensor_in_range(&mut p);
            }
        }
        #[test]
        fn runtime_paces_and_switches() {
            if let Some(mut p) = $make {
                $crate::conformance::runtime_paces_and_switches(&mut p);
            }
        }
    };
    ($make:expr) => {
        $crate::hal_conformance!(maybe Some($make));
    };
}
