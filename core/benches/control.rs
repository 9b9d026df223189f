//! Decision cost of the runtime policies: `cargo bench -p dynofa-core --bench control`.
//!
//! Each case runs a policy in a closed loop (a frame takes the LUT mean of the entry the policy
//! runs, times 5% noise, occasional spikes and contention that comes and goes every 500 frames)
//! and reports the mean time of one `observe`, the median of 15 batches. The LUTs are synthetic Pareto sets profiled at the Xavier NX GPU's
//! 11 operating points, as the simulator's profile writes them.

use std::hint::black_box;
use std::time::Instant;

use dynofa_core::config::SubnetConfig;
use dynofa_core::control::{
    DynamicOfa, Dynofa, DynofaParams, Goal, ModelSpec, Policy, PowerPoint, PowerTable, StepParams,
};
use dynofa_core::lut::{LatencyPoint, Lut, LutEntry, OperatingPoint, Top1Source, Unit};

const GPU_KHZ: [u32; 11] =
    [114_750, 204_000, 306_000, 408_000, 510_000, 599_250, 701_250, 803_250, 905_250, 1_007_250, 1_109_250];
const TOP: u32 = GPU_KHZ[10];
const TOP_OP: OperatingPoint = OperatingPoint { unit: Unit::Gpu, freq_khz: TOP };
const FRAMES: usize = 20_000;

/// `n` entries from 40 to 60 ms at the top clock, top-1 rising with latency.
fn lut(n: usize) -> Lut<64> {
    let mut lut = Lut::new(1.2);
    for i in 0..n {
        let mut c = SubnetConfig::uniform(3, 3, 2, 160 + 4 * (i % 17) as u16);
        c.d[1 + i / 17] = 3;
        let mut e = LutEntry::new(c, 74.0 + 5.0 * i as f32 / n as f32, Top1Source::Measured);
        let top_ms = 40.0 + 20.0 * i as f32 / n as f32;
        for khz in GPU_KHZ {
            let ms = 12.0 + (top_ms - 12.0) * TOP as f32 / khz as f32;
            e.set_latency(LatencyPoint { unit: Unit::Gpu, freq_khz: khz, mean_ms: ms, std_ms: 0.07 * ms }).unwrap();
        }
        lut.push(e).unwrap();
    }
    lut
}

/// Per frame, the factor by which a frame runs slower than its LUT mean: noise, spikes, and
/// contention that comes and goes.
fn factors() -> Vec<f32> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    (0..FRAMES)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            let contention = if (i / 500) % 2 == 1 { 1.35 } else { 1.0 };
            let spike = if u < 0.04 { 1.25 } else { 1.0 };
            contention * spike * (0.95 + 0.1 * u)
        })
        .collect()
}

/// Closed loop: each frame takes the LUT mean of the entry the policy runs, times the factor.
fn bench(name: &str, lut: &Lut<64>, policy: &mut dyn Policy, factors: &[f32]) {
    let n = policy.models();
    let means: Vec<f32> = lut.entries().iter().map(|e| e.mean_ms(TOP_OP).unwrap()).collect();
    let mut batches: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for (i, &f) in factors.iter().enumerate() {
                let model = i % n;
                let _ = black_box(policy.observe(model, black_box(means[policy.entry(model)] * f)));
            }
            start.elapsed().as_nanos() as f64 / factors.len() as f64
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    println!("{name:<44} {:>8.1} ns/decision", batches[batches.len() / 2]);
}

fn main() {
    let lat = factors();
    let one = |t| [ModelSpec { unit: Unit::Gpu, goal: Goal::target(t) }];
    let paced =
        |t, p| ModelSpec { unit: Unit::Gpu, goal: Goal { target_ms: t, period_ms: p, floor_top1: 0.0, priority: 1.0 } };
    let clocks = [TOP, 0];
    let p = DynofaParams::default();
    let power: Vec<PowerPoint> = GPU_KHZ
        .iter()
        .map(|&f| PowerPoint { freq_khz: f, active_w: 0.5 + 5.5 * (f as f32 / TOP as f32).powi(2), idle_w: 0.3 })
        .collect();
    let power = PowerTable::new(Unit::Gpu, &power).unwrap();
    for n in [10, 64] {
        let lut = lut(n);
        bench(
            &format!("dynofa, 1 model, {n} entries"),
            &lut,
            &mut Dynofa::new(&lut, &one(75.0), clocks, p).unwrap(),
            &lat,
        );
        let two = [paced(110.0, 150.0), paced(140.0, 200.0)];
        bench(
            &format!("dynofa, 2 models sharing the GPU, {n} entries"),
            &lut,
            &mut Dynofa::new(&lut, &two, clocks, p).unwrap(),
            &lat,
        );
        let energy = Dynofa::new(&lut, &[paced(90.0, 100.0)], clocks, p).unwrap().with_power(power.clone());
        bench(&format!("dynofa energy mode, 1 model, {n} entries"), &lut, &mut energy.clone(), &lat);
        let step = DynamicOfa::new(&lut, &one(75.0), clocks, StepParams::default()).unwrap();
        bench(&format!("dynamic-ofa step policy, {n} entries"), &lut, &mut step.clone(), &lat);
    }
}
