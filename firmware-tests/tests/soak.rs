//! The soak: 10^6 simulated frames of the runtime loop and its policies over random scenarios
//! (1 to 4 models on the GPU and CPU, periods, priorities, other applications taking shares, the
//! governor moving the GPU clock, goals changing), with
//! - zero heap allocations after start-up: none in any frame loop (a counting global allocator);
//! - bounded memory in the whole process: the allocator's high-water mark of live bytes over the
//!   soak stays within [`HEAP_BOUND`] and every scenario gives back what it took;
//! - a deterministic trace: the hash of every frame record for the fixed seed is [`TRACE_HASH`].
//!
//! The hash is the same on x86_64 and aarch64 by construction: the simulator draws from SplitMix64
//! with integer arithmetic and `libm` (pure Rust, no platform maths library), the controllers use
//! only IEEE `+ - * /` and comparisons (Rust never fuses them into FMAs), and the hash reads integers
//! (times in ns, entries, clocks) in little-endian order. A controller or simulator change that
//! moves any frame changes the hash; the failure prints the new one to put in [`TRACE_HASH`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use dynofa_core::control::{DynamicOfa, Dynofa, DynofaParams, Goal, ModelSpec, Policy, StepParams};
use dynofa_core::lut::{OperatingPoint, Unit};
use dynofa_core::runtime::{FrameRecord, Runtime};
use dynofa_hal_sim::SimLut;
use dynofa_hal_sim::board::{Board, runtime_io};
use dynofa_hal_sim::model::{CPU_KHZ, GPU_KHZ, Rng, power_table};
use dynofa_hal_sim::{dynamic_ofa_lut_path, load_lut};

/// Counts this thread's allocations and the whole process's live and peak heap bytes.
struct Counting;

thread_local! {
    // A const-initialised Cell needs no allocation of its own.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(bytes: usize) {
    ALLOCATIONS.with(|c| c.set(c.get() + 1));
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches only
// atomics and a thread-local integer.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, which `System::alloc` shares.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        grow(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Seed of the scenario generator.
const SEED: u64 = 0x50a4_2021;
const SCENARIOS: usize = 100;
const FRAMES_PER_SCENARIO: usize = 10_000;
/// The FNV-1a hash of every frame record of the soak for [`SEED`].
const TRACE_HASH: u64 = 0xbfee_1e8c_07a4_ecbe;
/// Most heap the process may hold above what it held before the soak.
const HEAP_BOUND: usize = 1 << 20;

/// 64-bit FNV-1a over little-endian integers.
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn record(&mut self, r: &FrameRecord, models: usize) {
        for v in [r.model as u64, r.start_ns, r.latency_ns, r.entry as u64, u64::from(r.freq_khz.unwrap_or(0))] {
            self.write(v);
        }
        self.write(u64::from(r.load_permille.unwrap_or(u16::MAX)));
        for k in 0..models {
            self.write(r.decision.switch(k).map_or(u64::MAX, |e| e as u64));
        }
        for unit in Unit::ALL {
            self.write(r.decision.clock(unit).map_or(u64::MAX, u64::from));
        }
        self.write(u64::from(r.clock_error.is_some()));
    }
}

/// Which policy a scenario runs.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Dynofa,
    Energy,
    Step,
}

/// Something that happens during a scenario, at a frame index.
#[derive(Debug, Clone, Copy)]
enum Change {
    Share(Unit, f64),
    Clock(u32),
    Target(usize, f32),
}

#[derive(Debug)]
struct Scenario {
    kind: Kind,
    gpu_khz: u32,
    specs: Vec<ModelSpec>,
    changes: Vec<(usize, Change)>,
    seed: u64,
}

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[(rng.next_u64() % items.len() as u64) as usize]
}

/// The GPU clocks the scenarios run at (the governor moves among them).
const CLOCKS: &[u32] = GPU_KHZ.split_at(5).1;

/// A target between 1.3 times the fastest entry of the profiled LUT on the unit at the lowest clock
/// (what the noise and the planning margin need) and 1.5 times the slowest.
fn target(rng: &mut Rng, profiled: &SimLut, unit: Unit) -> f32 {
    let op = OperatingPoint { unit, freq_khz: if unit == Unit::Gpu { CLOCKS[0] } else { CPU_KHZ[0] } };
    let ms: Vec<f32> = profiled.entries().iter().filter_map(|e| e.mean_ms(op)).collect();
    let (lo, hi) = ms.iter().fold((f32::MAX, 0.0f32), |(lo, hi), &m| (lo.min(m), hi.max(m)));
    1.3 * lo + rng.uniform() as f32 * (1.5 * hi - 1.3 * lo)
}

fn scenario(rng: &mut Rng, profiled: &SimLut) -> Scenario {
    let kind = pick(rng, &[Kind::Dynofa, Kind::Dynofa, Kind::Dynofa, Kind::Energy, Kind::Step]);
    let models = 1 + (rng.next_u64() % 4) as usize;
    let specs: Vec<ModelSpec> = (0..models)
        .map(|_| {
            let unit = if rng.uniform() < 0.75 { Unit::Gpu } else { Unit::Cpu };
            let target_ms = target(rng, profiled, unit);
            // Models that share a unit mostly leave each other room: back to back only when alone.
            let period_ms = if models == 1 && rng.uniform() < 0.5 {
                0.0
            } else {
                target_ms * models as f32 * (1.0 + rng.uniform() as f32)
            };
            let priority = 0.5 + 1.5 * rng.uniform() as f32;
            ModelSpec { unit, goal: Goal { target_ms, period_ms, floor_top1: 0.0, priority } }
        })
        .collect();
    let mut changes = Vec::new();
    let mut at = 0;
    loop {
        at += 200 + (rng.next_u64() % 1800) as usize;
        if at >= FRAMES_PER_SCENARIO {
            break;
        }
        let change = match rng.next_u64() % 3 {
            0 => Change::Share(pick(rng, &Unit::ALL), pick(rng, &[0.0, 0.1, 0.2, 0.3, 0.5])),
            1 => Change::Clock(pick(rng, CLOCKS)),
            _ => {
                let k = (rng.next_u64() % models as u64) as usize;
                Change::Target(k, target(rng, profiled, specs[k].unit))
            }
        };
        changes.push((at, change));
    }
    Scenario { kind, gpu_khz: pick(rng, CLOCKS), specs, changes, seed: rng.next_u64() }
}

/// What one scenario's frame loop gave.
struct Outcome {
    allocations: usize,
    frames: usize,
    misses: usize,
    switches: usize,
}

/// Run `s` on the simulated board, hashing every frame record into `hash`.
fn run(s: &Scenario, lut: &SimLut, profiled: &SimLut, hash: &mut Fnv) -> Outcome {
    let placement: Vec<_> = s.specs.iter().map(|m| (m.unit, f64::from(m.goal.slot_ms()))).collect();
    let board = Board::new(lut, &placement, s.gpu_khz, s.seed).shared();
    let clocks = [s.gpu_khz, CPU_KHZ[0]];
    let params = DynofaParams::default();
    let mut policy: Box<dyn Policy + '_> = match s.kind {
        Kind::Dynofa => Box::new(Dynofa::new(profiled, &s.specs, clocks, params).unwrap()),
        Kind::Energy => {
            Box::new(Dynofa::new(profiled, &s.specs, clocks, params).unwrap().with_power(power_table(Unit::Gpu)))
        }
        Kind::Step => Box::new(DynamicOfa::new(profiled, &s.specs, clocks, StepParams::default()).unwrap()),
    };
    let (mut slots, mut units) = runtime_io(&board, &s.specs);
    let mut rt = Runtime::new(profiled, &mut slots, &mut units, &mut *policy).unwrap();
    let mut goals: [Goal; 4] = [Goal::target(1.0); 4];
    for (g, spec) in goals.iter_mut().zip(&s.specs) {
        *g = spec.goal;
    }

    // Start-up ends here: from now on nothing may allocate.
    let before = allocations();
    let (mut misses, mut switches, mut next) = (0, 0, 0);
    for frame in 0..FRAMES_PER_SCENARIO {
        while let Some(&(_, change)) = s.changes.get(next).filter(|(at, _)| *at == frame) {
            next += 1;
            match change {
                Change::Share(unit, share) => board.borrow_mut().set_share(unit, share),
                Change::Clock(khz) => board.borrow_mut().set_clock_khz(Unit::Gpu, khz),
                Change::Target(k, target_ms) => {
                    goals[k].target_ms = target_ms;
                    board.borrow_mut().set_slot_ms(k, f64::from(goals[k].slot_ms()));
                    let _ = rt.set_goal(k, goals[k]).unwrap();
                }
            }
        }
        let m = rt.next_model().unwrap();
        let r = rt.step(m, &[], &mut []).unwrap();
        assert!(r.entry < profiled.len(), "model {m} ran entry {}", r.entry);
        misses += usize::from(r.latency_ns as f64 > f64::from(goals[m].target_ms) * 1e6);
        switches += (0..s.specs.len()).filter(|&k| r.decision.switch(k).is_some()).count();
        hash.record(&r, s.specs.len());
    }
    Outcome { allocations: allocations() - before, frames: FRAMES_PER_SCENARIO, misses, switches }
}

/// Peak resident set of this process in kB (Linux), for the report.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches(" kB").parse().ok()
}

#[test]
fn a_million_frames_allocate_nothing_stay_bounded_and_hash_the_same() {
    let lut = load_lut(&dynamic_ofa_lut_path()).unwrap();
    let profiled = Board::new(&lut, &[], GPU_KHZ[GPU_KHZ.len() - 1], 1).profile(&lut, 100, 2);
    let mut rng = Rng::new(SEED);
    let scenarios: Vec<Scenario> = (0..SCENARIOS).map(|_| scenario(&mut rng, &profiled)).collect();
    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);

    let start = std::time::Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    // What the first scenario leaves (lazily built statics) is the baseline the others return to.
    let mut baseline = None;
    let (mut frames, mut misses, mut switches) = (0, 0, 0);
    for (i, s) in scenarios.iter().enumerate() {
        let o = run(s, &lut, &profiled, &mut hash);
        assert_eq!(o.allocations, 0, "scenario {i} ({s:?}) allocated in its frame loop");
        let live = LIVE.load(Ordering::Relaxed);
        assert_eq!(live, *baseline.get_or_insert(live), "scenario {i} did not give back its heap");
        (frames, misses, switches) = (frames + o.frames, misses + o.misses, switches + o.switches);
    }
    let peak = PEAK.load(Ordering::Relaxed) - before;
    eprintln!(
        "soak: {frames} frames in {:.2} s, {:.2}% missed, {switches} switches, heap high-water {} kB above start, \
         peak RSS {:?} kB, trace hash {:#018x}",
        start.elapsed().as_secs_f64(),
        100.0 * misses as f64 / frames as f64,
        peak / 1024,
        peak_rss_kb(),
        hash.0
    );
    assert_eq!(frames, 1_000_000);
    assert!(peak <= HEAP_BOUND, "the heap grew {peak} bytes above its start during the soak");
    assert_eq!(
        hash.0, TRACE_HASH,
        "the soak's trace changed (new hash {:#018x}); if a controller or simulator change meant it, put that in TRACE_HASH",
        hash.0
    );
}
