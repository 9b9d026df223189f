//! The controllers and the runtime loop never allocate: a counting global allocator sees no
//! allocation over 10^5 controller steps of each policy (and 10^4 runtime frames on the simulator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use dynofa_core::control::{DynamicOfa, Dynofa, DynofaParams, Goal, ModelSpec, Policy, StepParams};
use dynofa_core::lut::Unit;
use dynofa_core::runtime::{ModelSlot, Runtime, UnitIo};
use dynofa_hal_sim::board::{Board, model_hal, unit_hal};
use dynofa_hal_sim::model::{GPU_KHZ, Rng, power_table};
use dynofa_hal_sim::{SimLut, dynamic_ofa_lut_path, load_lut};

struct Counting;

thread_local! {
    // Per thread, so that tests running beside each other do not count each other's allocations;
    // a const-initialised Cell needs no allocation of its own.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn count() {
    ALLOCATIONS.with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// thread-local integer.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `alloc`'s contract, which `System::alloc` shares.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const STEPS: usize = 100_000;
const TOP: u32 = GPU_KHZ[GPU_KHZ.len() - 1];

fn profiled() -> SimLut {
    let lut = load_lut(&dynamic_ofa_lut_path()).unwrap();
    Board::new(&lut, &[], TOP, 1).profile(&lut, 50, 2)
}

/// Feed `policy` frames that are now and then slowed by another application, and goal changes;
/// return the allocations counted meanwhile.
fn drive(policy: &mut dyn Policy, lut: &SimLut) -> usize {
    let mut rng = Rng::new(3);
    let n = policy.models();
    let before = allocations();
    for i in 0..STEPS {
        let model = i % n;
        let contention = if (i / 5_000) % 2 == 1 { 1.4 } else { 1.0 };
        let mean = lut.entries()[policy.entry(model)].latency.last().map_or(50.0, |l| l.mean_ms);
        let _ = policy.observe(model, (f64::from(mean) * contention * (0.95 + 0.1 * rng.uniform())) as f32);
        if i.is_multiple_of(20_000) {
            let _ = policy.set_goal(model, Goal { target_ms: 60.0 + (i / 20_000) as f32, ..Goal::target(60.0) });
        }
        if i.is_multiple_of(30_000) {
            let _ = policy.clock_changed(Unit::Gpu, if i.is_multiple_of(60_000) { TOP } else { GPU_KHZ[8] });
        }
    }
    allocations() - before
}

#[test]
fn controllers_do_not_allocate() {
    let before = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert_eq!(allocations() - before, 1, "the counting allocator counts");
    let lut = profiled();
    let one = [ModelSpec { unit: Unit::Gpu, goal: Goal::target(65.0) }];
    let paced =
        |t, p| ModelSpec { unit: Unit::Gpu, goal: Goal { target_ms: t, period_ms: p, floor_top1: 0.0, priority: 1.0 } };
    let two = [paced(100.0, 150.0), paced(120.0, 200.0)];
    let clocks = [TOP, 0];
    let mut dynofa = Dynofa::new(&lut, &one, clocks, DynofaParams::default()).unwrap();
    assert_eq!(drive(&mut dynofa, &lut), 0, "dynofa, one model");
    let mut joint = Dynofa::new(&lut, &two, clocks, DynofaParams::default()).unwrap();
    assert_eq!(drive(&mut joint, &lut), 0, "dynofa, two models");
    let mut energy =
        Dynofa::new(&lut, &two, clocks, DynofaParams::default()).unwrap().with_power(power_table(Unit::Gpu));
    assert_eq!(drive(&mut energy, &lut), 0, "dynofa, energy mode");
    let mut step = DynamicOfa::new(&lut, &one, clocks, StepParams::default()).unwrap();
    assert_eq!(drive(&mut step, &lut), 0, "dynamic-ofa");
}

#[test]
fn the_runtime_loop_does_not_allocate_on_the_simulator() {
    let lut = load_lut(&dynamic_ofa_lut_path()).unwrap();
    let board = Board::new(&lut, &[(Unit::Gpu, 100.0)], TOP, 4);
    let profiled = board.profile(&lut, 50, 5);
    let board = board.shared();
    let spec = [ModelSpec {
        unit: Unit::Gpu,
        goal: Goal { target_ms: 70.0, period_ms: 100.0, floor_top1: 0.0, priority: 1.0 },
    }];
    let policy = Dynofa::new(&profiled, &spec, [TOP, 0], DynofaParams::default()).unwrap();
    let (clock, engine, delay) = model_hal(&board, 0);
    let mut slots = [ModelSlot::new(clock, engine, delay, Unit::Gpu, 100_000_000)];
    let (f, l) = unit_hal(&board, Unit::Gpu);
    let mut units = [UnitIo::new(Unit::Gpu, Some(f), Some(l))];
    let mut rt = Runtime::new(&profiled, &mut slots, &mut units, policy).unwrap();
    let before = allocations();
    for i in 0..10_000 {
        board.borrow_mut().set_share(Unit::Gpu, if (i / 500) % 2 == 1 { 0.25 } else { 0.0 });
        rt.step(0, &[], &mut []).unwrap();
    }
    assert_eq!(allocations() - before, 0);
}
