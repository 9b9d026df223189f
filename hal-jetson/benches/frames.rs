//! What `dynofa run` adds to a frame before the engine sees it: the bilinear resample of the 224
//! frame to the active sub-network's resolution, beside the CPU engine's frame of the smallest
//! sub-network at that resolution (one thread), for its share.
//! `cargo bench -p dynofa-hal-jetson --bench frames`

use std::hint::black_box;

use dynofa_core::SubnetConfig;
use dynofa_core::arch::NUM_CLASSES;
use dynofa_core::hal::InferenceEngine;
use dynofa_hal_jetson::run::frames::{FRAME_LEN, FRAME_SIZE, resample};
use dynofa_kernels::{CpuEngine, DEFAULT_SEED, SupernetWeights};
use support::best_ns;

mod support;

fn main() {
    let frame: Vec<f32> = (0..FRAME_LEN).map(|i| (i % 251) as f32 / 251.0 - 0.5).collect();
    let mut engine = CpuEngine::with_threads(SupernetWeights::seeded(dynofa_core::Supernet::W1_2, DEFAULT_SEED), 1);
    let mut logits = vec![0.0; NUM_CLASSES];
    println!(
        "resample of the {FRAME_SIZE} frame, us (best of 5), against the smallest sub-network's CPU frame (1 thread):"
    );
    for r in [160usize, 176, 192, 208] {
        let mut dst = vec![0.0; 3 * r * r];
        let resampled = 1e-3
            * best_ns(200, || {
                resample(black_box(&frame), FRAME_SIZE, &mut dst, r);
                black_box(&dst);
            });
        engine.activate(&SubnetConfig::uniform(3, 3, 2, r as u16)).expect("a valid sub-network");
        let inferred = 1e-3 * best_ns(3, || engine.infer(black_box(&dst), &mut logits).expect("sizes match"));
        println!(
            "  r {r:>3}: resample {resampled:>7.1} us, frame {inferred:>8.1} us ({:.1} % of it)",
            100.0 * resampled / inferred
        );
    }
}
