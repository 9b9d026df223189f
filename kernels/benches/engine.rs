//! The CPU engine on the seeded w1.2 weights: median `activate()` time when switching between the
//! max, mid and min sub-networks, and (unless `DYNOFA_BENCH_ACTIVATE_ONLY` is set) median
//! inference time of each on 2 threads. `cargo xtask bench cpu` reads `median_activate_us=<v>`,
//! the last line.

use std::hint::black_box;
use std::time::Instant;

use dynofa_core::hal::InferenceEngine;
use dynofa_core::{SubnetConfig, Supernet};
use dynofa_kernels::{CpuEngine, DEFAULT_SEED, SupernetWeights};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let weights = SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED);
    let mut engine = CpuEngine::with_threads(weights, 2);
    let configs = [
        ("max", SubnetConfig::uniform(7, 6, 4, 224)),
        ("mid", SubnetConfig::uniform(5, 4, 3, 192)),
        ("min", SubnetConfig::uniform(3, 3, 2, 160)),
    ];
    if std::env::var_os("DYNOFA_BENCH_ACTIVATE_ONLY").is_none() {
        let mut out = vec![0.0; 1000];
        for (name, cfg) in &configs {
            let x = vec![0.25; 3 * (cfg.r as usize).pow(2)];
            engine.activate(cfg).expect("valid config");
            engine.infer(&x, &mut out).expect("sizes match");
            let times = (0..200)
                .map(|_| {
                    let start = Instant::now();
                    engine.infer(&x, &mut out).expect("sizes match");
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            println!("{name}: median {:.3} ms on {} threads ({:?})", median(times), engine.threads(), engine.isa());
        }
    }
    let times: Vec<f64> = (0..30_000)
        .map(|i| {
            let cfg = black_box(&configs[i % configs.len()].1);
            let start = Instant::now();
            engine.activate(cfg).expect("valid config");
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    println!("activate(): {} switches between w1.2 max, mid and min", times.len());
    println!("median_activate_us={:.3}", median(times));
}
