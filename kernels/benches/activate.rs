//! Median time of `CpuEngine::activate` when switching between the w1.2 max, mid and min
//! sub-networks (run by `cargo xtask bench cpu`). Prints `median_activate_us=<v>` last.

use std::hint::black_box;
use std::time::Instant;

use dynofa_core::hal::InferenceEngine;
use dynofa_core::{SubnetConfig, Supernet};
use dynofa_kernels::{CpuEngine, DEFAULT_SEED, SupernetWeights};

fn main() {
    let mut engine = CpuEngine::with_threads(SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED), 1);
    let configs =
        [SubnetConfig::uniform(7, 6, 4, 224), SubnetConfig::uniform(5, 4, 3, 192), SubnetConfig::uniform(3, 3, 2, 160)];
    let mut times: Vec<f64> = (0..30_000)
        .map(|i| {
            let cfg = black_box(&configs[i % configs.len()]);
            let start = Instant::now();
            engine.activate(cfg).expect("valid config");
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let (p50, p99) = (times[times.len() / 2], times[times.len() * 99 / 100]);
    if std::env::var_os("DYNOFA_BENCH_QUIET").is_none() {
        println!("activate(): {} switches between w1.2 max, mid and min; p99 {p99:.3} µs", times.len());
    }
    println!("median_activate_us={p50:.3}");
}
