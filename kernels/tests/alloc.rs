//! `activate` and `infer` never allocate: a counting global allocator sees zero allocations
//! across 1,000 switches and inferences after start-up.
//!
//! Without libtest (`harness = false`): the allocator counts every thread of the process, and
//! libtest's own threads allocate (its "running for over 60 seconds" note on a busy machine).

use dynofa_core::hal::InferenceEngine;
use dynofa_core::{SubnetConfig, Supernet};
use dynofa_kernels::counting::{Counting, allocations};
use dynofa_kernels::{CpuEngine, SupernetWeights};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let net = Supernet::W1_0;
    let mut engine = CpuEngine::with_threads(SupernetWeights::seeded(net, 9), 2);
    // Small sub-networks keep 1,000 inferences quick; they differ in every elastic dimension.
    let mut mixed = SubnetConfig::uniform(7, 3, 2, 128);
    (mixed.ks[0], mixed.e[1], mixed.d[4]) = (5, 6, 3);
    let configs = [SubnetConfig::uniform(3, 3, 2, 128), mixed, SubnetConfig::uniform(5, 4, 2, 132)];
    let table = engine.weights().bn_statistics_from_safetensors(&bn_file(), "bn".as_ref(), &configs[2]).unwrap();
    engine.register_bn(&configs[2], table).unwrap();
    let inputs: Vec<Vec<f32>> = configs.iter().map(|c| vec![0.5; 3 * (c.r as usize).pow(2)]).collect();
    let mut out = vec![0.0; 1000];
    // Start-up: the first inference of each network may touch lazily initialised runtime state.
    for (c, x) in configs.iter().zip(&inputs) {
        engine.activate(c).unwrap();
        engine.infer(x, &mut out).unwrap();
    }
    // Natively 1,000 rounds take about a second; under qemu (CI's aarch64 run) minutes.
    let rounds = if cfg!(target_arch = "x86_64") { 1000 } else { 30 };
    let before = allocations();
    for i in 0..rounds {
        if i % (rounds / 4) == 0 {
            // Idle long enough for the worker threads to park; the next inference wakes them.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let k = i % configs.len();
        engine.activate(&configs[k]).unwrap();
        engine.infer(&inputs[k], &mut out).unwrap();
    }
    let after = allocations();
    assert!(out.iter().all(|v| v.is_finite()));
    assert_eq!(after - before, 0, "allocations during {rounds} activate() + infer()");
    println!("alloc: 0 allocations in {rounds} activate() + infer() after start-up");
    println!("1 passed, 0 failed");
}

/// A BN-statistics file for `uniform(5, 4, 2, 132)` that overrides one layer.
fn bn_file() -> Vec<u8> {
    let mean: Vec<u8> = (0..96).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![96], &mean).unwrap();
    safetensors::serialize([("blocks.2.conv.depth_conv.bn.bn.running_mean", view)], None).unwrap()
}
