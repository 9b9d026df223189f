//! Properties of the controllers and the runtime manager over random LUTs, goals and histories
//! (proptest with a fixed seed, so that a CI run is repeatable):
//! - the entry a policy runs always exists in the LUT and has a latency on the model's unit, whatever
//!   it is fed (NaN, negative or huge latencies, refused goals, unknown clocks);
//! - with a constant environment and only frame noise, the runtime switches at most once every
//!   [`FRAMES_PER_SWITCH`] frames;
//! - raising a model's target never makes it run a faster, less accurate entry;
//! - a step in slowdown that makes the running entry miss is answered within [`STEP_FRAMES`] frames.

use dynofa_core::config::SubnetConfig;
use dynofa_core::control::{DynamicOfa, Dynofa, DynofaParams, Goal, ModelSpec, Policy, StepParams};
use dynofa_core::lut::{LatencyPoint, LutEntry, OperatingPoint, Top1Source, Unit};
use dynofa_core::runtime::{ModelSlot, Runtime, UnitIo};
use dynofa_hal_sim::SimLut;
use dynofa_hal_sim::board::{Board, model_hal, unit_hal};
use dynofa_hal_sim::model::{CPU_KHZ, GPU_KHZ, JETSON_NOISE, Rng, power_table};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

const TOP: u32 = GPU_KHZ[GPU_KHZ.len() - 1];
const LOW: u32 = GPU_KHZ[5];
const CPU: u32 = CPU_KHZ[0];
const AT_TOP: OperatingPoint = OperatingPoint { unit: Unit::Gpu, freq_khz: TOP };
/// The relative standard deviation the LUTs carry: about what [`JETSON_NOISE`] gives.
const SPREAD: f32 = 0.05;
/// Under frame noise alone, at most one switch per this many frames.
const FRAMES_PER_SWITCH: usize = 200;
/// Frames within which a step in slowdown is answered (the estimate confirms a step in two).
const STEP_FRAMES: usize = 3;

fn config(cases: u32) -> Config {
    Config { cases, rng_seed: RngSeed::Fixed(0x0fa_2021), failure_persistence: None, ..Config::default() }
}

/// An entry's top-1 and its latencies in ms: GPU at the top clock, CPU; either may be missing.
type Level = (f32, Option<f32>, Option<f32>);

fn levels(min: usize) -> impl Strategy<Value = Vec<Level>> {
    let gpu = prop::option::weighted(0.9, 5.0f32..200.0);
    let cpu = prop::option::weighted(0.5, 50.0f32..900.0);
    prop::collection::vec((60.0f32..82.0, gpu, cpu), min..=16)
}

/// Levels that all run on the GPU.
fn gpu_levels() -> impl Strategy<Value = Vec<Level>> {
    prop::collection::vec((60.0f32..82.0, (5.0f32..200.0).prop_map(Some), Just(None)), 2..=16)
}

/// A LUT of `levels`, each latency with [`SPREAD`]; `low_clock` adds a GPU point at [`LOW`].
fn lut(levels: &[Level], low_clock: bool) -> SimLut {
    let mut lut = SimLut::new(1.2);
    let point = |unit, freq_khz, mean_ms: f32| LatencyPoint { unit, freq_khz, mean_ms, std_ms: SPREAD * mean_ms };
    for (i, &(top1, gpu, cpu)) in levels.iter().enumerate() {
        let mut e = LutEntry::new(SubnetConfig::uniform(3, 3, 2, 160 + 4 * i as u16), top1, Top1Source::Measured);
        if let Some(ms) = gpu {
            e.set_latency(point(Unit::Gpu, TOP, ms)).unwrap();
            if low_clock {
                e.set_latency(point(Unit::Gpu, LOW, 1.8 * ms)).unwrap();
            }
        }
        if let Some(ms) = cpu {
            e.set_latency(point(Unit::Cpu, CPU, ms)).unwrap();
        }
        lut.push(e).unwrap();
    }
    lut
}

fn unit() -> impl Strategy<Value = Unit> {
    prop_oneof![Just(Unit::Gpu), Just(Unit::Cpu)]
}

/// Any goal, refused ones (zero, negative, NaN) included.
fn any_goal() -> impl Strategy<Value = Goal> {
    let target = prop_oneof![8 => 0.5f32..1000.0, 1 => prop::sample::select(vec![0.0, -1.0, f32::NAN, f32::INFINITY])];
    let period = prop_oneof![Just(0.0f32), 5.0f32..1000.0, Just(-3.0)];
    let priority = prop_oneof![8 => 0.1f32..4.0, 1 => Just(0.0)];
    (target, period, 0.0f32..90.0, priority).prop_map(|(target_ms, period_ms, floor_top1, priority)| Goal {
        target_ms,
        period_ms,
        floor_top1,
        priority,
    })
}

fn valid_spec() -> impl Strategy<Value = ModelSpec> {
    (unit(), 1.0f32..900.0, prop_oneof![Just(0.0f32), 50.0f32..1000.0], 0.5f32..3.0).prop_map(
        |(unit, target_ms, period_ms, priority)| ModelSpec {
            unit,
            goal: Goal { target_ms, period_ms, floor_top1: 0.0, priority },
        },
    )
}

/// Something that happens to a policy.
#[derive(Debug, Clone)]
enum Event {
    Frame(usize, f32),
    Goal(usize, Goal),
    Clock(Unit, u32),
}

fn event() -> impl Strategy<Value = Event> {
    let special = prop::sample::select(vec![f32::NAN, f32::INFINITY, -5.0, 0.0, f32::MIN_POSITIVE, f32::MAX]);
    let latency = prop_oneof![8 => 0.01f32..2000.0, 1 => special];
    let khz = prop::sample::select(vec![0, GPU_KHZ[0], LOW, TOP, 123_456, CPU]);
    // Model indices run past the models a policy manages: those must be ignored.
    prop_oneof![
        8 => (0..5usize, latency).prop_map(|(m, l)| Event::Frame(m, l)),
        1 => (0..5usize, any_goal()).prop_map(|(m, g)| Event::Goal(m, g)),
        1 => (unit(), khz).prop_map(|(u, k)| Event::Clock(u, k)),
    ]
}

/// Every model runs an entry of the LUT with a latency on its unit, and a decision's switches are
/// what the policy then runs.
fn check(
    policy: &dyn Policy,
    lut: &SimLut,
    specs: &[ModelSpec],
    switches: &[Option<usize>],
) -> Result<(), TestCaseError> {
    for (k, spec) in specs.iter().enumerate() {
        let e = policy.entry(k);
        let on_unit = lut.entries().get(e).is_some_and(|x| x.latency.iter().any(|l| l.unit == spec.unit));
        prop_assert!(on_unit, "model {} runs entry {}: not a {} entry of the {}-entry lut", k, e, spec.unit, lut.len());
        if let Some(s) = switches.get(k).copied().flatten() {
            prop_assert_eq!(s, e, "model {} was switched to {} but runs {}", k, s, e);
        }
    }
    Ok(())
}

fn top1(lut: &SimLut, entry: usize) -> f32 {
    lut.entries()[entry].top1
}

fn gpu_ms(lut: &SimLut, entry: usize) -> f32 {
    lut.entries()[entry].mean_ms(AT_TOP).expect("a GPU entry")
}

/// Feed `frames` frames of model 0 at `slowdown` times its entry's LUT latency, with frame noise.
fn frames(d: &mut Dynofa<'_, 64, 16>, lut: &SimLut, frames: usize, slowdown: f32, rng: &mut Rng) {
    for _ in 0..frames {
        let noise = JETSON_NOISE.draw(rng) as f32;
        let _ = d.observe(0, gpu_ms(lut, d.entry(0)) * slowdown * noise);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_running_entry_always_exists_in_the_lut(
        levels in levels(1),
        low_clock in any::<bool>(),
        specs in prop::collection::vec(valid_spec(), 1..=4),
        events in prop::collection::vec(event(), 0..200),
    ) {
        let lut = lut(&levels, low_clock);
        let clocks = [TOP, CPU];
        let on_unit = |u: Unit| lut.entries().iter().any(|e| e.latency.iter().any(|l| l.unit == u));
        let dynofa = Dynofa::new(&lut, &specs, clocks, DynofaParams::default());
        let energy = Dynofa::new(&lut, &specs, clocks, DynofaParams::default())
            .map(|d| d.with_power(power_table(Unit::Gpu)));
        let step = DynamicOfa::new(&lut, &specs, clocks, StepParams::default());
        let policies: [Result<Box<dyn Policy + '_>, _>; 3] =
            [dynofa.map(|p| Box::new(p) as _), energy.map(|p| Box::new(p) as _), step.map(|p| Box::new(p) as _)];
        for policy in policies {
            // A policy is refused only when a model's unit has no entry at all.
            let Ok(mut policy) = policy else {
                prop_assert!(specs.iter().any(|s| !on_unit(s.unit)));
                continue;
            };
            check(&*policy, &lut, &specs, &[])?;
            for e in &events {
                let d = match *e {
                    Event::Frame(m, latency) => policy.observe(m, latency),
                    Event::Goal(m, goal) => policy.set_goal(m, goal),
                    Event::Clock(unit, khz) => policy.clock_changed(unit, khz),
                };
                let switches: Vec<_> = (0..specs.len()).map(|k| d.switch(k)).collect();
                check(&*policy, &lut, &specs, &switches)?;
            }
        }
    }

    #[test]
    fn raising_the_target_never_picks_a_faster_less_accurate_entry(
        levels in gpu_levels(),
        target in 5.0f32..400.0,
        raise in 0.001f32..2.0,
        slowdown in 0.7f32..2.5,
        history in 0usize..300,
        seed in any::<u64>(),
    ) {
        let lut = lut(&levels, false);
        let spec = [ModelSpec { unit: Unit::Gpu, goal: Goal::target(target) }];
        let mut d = Dynofa::new(&lut, &spec, [TOP, CPU], DynofaParams::default()).unwrap();
        frames(&mut d, &lut, history, slowdown, &mut Rng::new(seed));
        let before = d.entry(0);
        let mut kept = d.clone();
        let _ = kept.set_goal(0, Goal::target(target));
        let _ = d.set_goal(0, Goal::target(target * (1.0 + raise)));
        let after = d.entry(0);
        let (faster, less_accurate) = (gpu_ms(&lut, after) < gpu_ms(&lut, before), top1(&lut, after) < top1(&lut, before));
        prop_assert!(!(faster && less_accurate), "raised from {} ms: entry {} -> {}", target, before, after);
        prop_assert!(
            top1(&lut, after) >= top1(&lut, kept.entry(0)),
            "the raised target runs entry {}, the same target entry {}", after, kept.entry(0)
        );
    }

    #[test]
    fn a_slowdown_step_is_answered_within_step_frames(
        levels in gpu_levels(),
        at in 0.0f32..1.0,
        slowdown in 1.4f32..3.0,
        seed in any::<u64>(),
    ) {
        let lut = lut(&levels, false);
        let means: Vec<f32> = (0..lut.len()).map(|e| gpu_ms(&lut, e)).collect();
        let (lo, hi) = means.iter().fold((f32::MAX, 0.0f32), |(lo, hi), &m| (lo.min(m), hi.max(m)));
        let target = 1.3 * (lo + at * (hi - lo));
        let spec = [ModelSpec { unit: Unit::Gpu, goal: Goal::target(target) }];
        let mut d = Dynofa::new(&lut, &spec, [TOP, CPU], DynofaParams::default()).unwrap();
        let mut rng = Rng::new(seed);
        frames(&mut d, &lut, 100, 1.0, &mut rng);
        // Only a step that makes the running entry miss needs an answer.
        prop_assume!(means[d.entry(0)] * slowdown > target);
        frames(&mut d, &lut, STEP_FRAMES, slowdown, &mut rng);
        let now = means[d.entry(0)];
        // Answered: the entry now fits the new slowdown (within the noise), or none would and it
        // runs the fastest.
        prop_assert!(
            now * slowdown <= 1.1 * target || now == lo,
            "{} frames after a {}x step, entry {} takes {} ms for a {} ms target",
            STEP_FRAMES, slowdown, d.entry(0), now * slowdown, target
        );
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn frame_noise_alone_switches_rarely(
        levels in gpu_levels(),
        at in 0.0f32..1.0,
        share in 0.0f64..0.5,
        models in 1usize..=2,
        seed in any::<u64>(),
    ) {
        const WARM_UP: usize = 200;
        const FRAMES: usize = 3_000;
        let lut = lut(&levels, false);
        let slot = 1_000.0;
        let board = Board::new(&lut, &vec![(Unit::Gpu, slot); models], TOP, seed);
        let profiled = board.profile(&lut, 100, seed ^ 1);
        let means: Vec<f32> = (0..lut.len()).map(|e| gpu_ms(&profiled, e)).collect();
        let (lo, hi) = means.iter().fold((f32::MAX, 0.0f32), |(lo, hi), &m| (lo.min(m), hi.max(m)));
        let target = (lo + at * (1.5 * hi - lo)) / (1.0 - share as f32);
        let goal = Goal { target_ms: target, period_ms: slot as f32, floor_top1: 0.0, priority: 1.0 };
        let specs = vec![ModelSpec { unit: Unit::Gpu, goal }; models];
        let policy = Dynofa::new(&profiled, &specs, [TOP, CPU], DynofaParams::default()).unwrap();
        let board = board.shared();
        board.borrow_mut().set_share(Unit::Gpu, share);
        let mut slots: Vec<_> = (0..models)
            .map(|k| {
                let (clock, engine, delay) = model_hal(&board, k);
                ModelSlot::new(clock, engine, delay, Unit::Gpu, (slot * 1e6) as u64)
            })
            .collect();
        let (f, l) = unit_hal(&board, Unit::Gpu);
        let mut units = [UnitIo::new(Unit::Gpu, Some(f), Some(l))];
        let mut rt = Runtime::new(&profiled, &mut slots, &mut units, policy).unwrap();
        let mut switches = 0;
        for i in 0..(WARM_UP + FRAMES) * models {
            let m = rt.next_model().unwrap();
            let r = rt.step(m, &[], &mut []).unwrap();
            if i >= WARM_UP * models {
                switches += (0..models).filter(|&k| r.decision.switch(k).is_some()).count();
            }
        }
        prop_assert!(
            switches <= FRAMES * models / FRAMES_PER_SWITCH,
            "{} switches in {} frames of {} model(s) at a constant {:.2} share", switches, FRAMES * models, models, share
        );
    }
}
