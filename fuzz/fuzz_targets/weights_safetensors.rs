//! The safetensors weights loader: any bytes, as a supernet state dict or as a sub-network's BN
//! statistics, give weights or a typed error naming the file, never a panic.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use dynofa_core::{SubnetConfig, Supernet};
use dynofa_kernels::SupernetWeights;
use libfuzzer_sys::fuzz_target;

/// Weights to load BN statistics against, built once per process (deterministic seeded ones).
fn weights() -> &'static SupernetWeights {
    static W: OnceLock<SupernetWeights> = OnceLock::new();
    W.get_or_init(|| SupernetWeights::seeded(Supernet::W1_2, 1))
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    if let Err(e) = SupernetWeights::from_safetensors(data, path) {
        assert!(e.to_string().starts_with("fuzz.safetensors: "), "{e}");
    }
    // The first byte picks the sub-network whose BN layers the statistics are for.
    let cfg = SubnetConfig::uniform(7, 6, 2 + data.first().map_or(0, |b| b % 3), 224);
    if let Err(e) = weights().bn_statistics_from_safetensors(data, path, &cfg) {
        assert!(e.to_string().starts_with("fuzz.safetensors: "), "{e}");
    }
});
