//! Deterministic seeded supernet weights, so the whole project runs without a download.
//!
//! Every tensor draws from its own SplitMix64 stream (seeded from the tensor's name), and values
//! are made with integer arithmetic and IEEE `+ - * / sqrt` only: x86_64 and aarch64 give
//! bit-identical weights. The scales keep activations O(1) through every sub-network although BN
//! statistics are random: conv weights have variance `gain / fan_in` (He-style), a residual block's
//! projection BN is damped, the 7x7 depthwise kernels have most of their energy in the centre so
//! k = 3, 5 and 7 give similar gains, and the transform matrices are identity plus noise.

use std::collections::HashMap;
use std::path::Path;

use dynofa_core::Supernet;
use safetensors::tensor::{Dtype, TensorView};

use crate::rng::{SplitMix64, fnv1a, splitmix64_at};
use crate::statedict::{Role, TensorSpec, tensor_specs};
use crate::weights::SupernetWeights;

/// The seed of the embedded default weights.
pub const DEFAULT_SEED: u64 = 0x0fa_2021;

/// Gain of `first_conv` and the blocks.
const BODY_GAIN: f64 = 1.5;
/// Gain of `final_expand_layer`, `feature_mix_layer` and `classifier`.
const HEAD_GAIN: f64 = 6.0;

/// The values of one tensor.
fn generate(spec: &TensorSpec, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(splitmix64_at(seed, fnv1a(&spec.name)));
    let n = spec.len();
    let mut draw = |f: &mut dyn FnMut(&mut SplitMix64, usize) -> f64| (0..n).map(|i| f(&mut rng, i) as f32).collect();
    match spec.role {
        Role::Weight { fan_in, head } => {
            let std = ((if head { HEAD_GAIN } else { BODY_GAIN }) / fan_in as f64).sqrt();
            draw(&mut |r, _| r.centred(std))
        }
        Role::Depthwise7 => draw(&mut |r, i| {
            // Variance 0.7 in the centre 3x3, 0.2 in the 5x5 ring and 0.1 in the outer ring, times the gain.
            let (dy, dx) = ((i % 49) / 7, i % 7);
            let ring = dy.abs_diff(3).max(dx.abs_diff(3));
            let var = [0.7 / 9.0, 0.7 / 9.0, 0.2 / 16.0, 0.1 / 24.0][ring];
            r.centred((var * BODY_GAIN).sqrt())
        }),
        Role::Transform => {
            let d = spec.shape[0];
            draw(&mut |r, i| if i % d == i / d { 1.0 } else { 0.0 } + r.centred(0.05))
        }
        Role::BnWeight { damped: true } => draw(&mut |r, _| r.uniform(0.3, 0.6)),
        Role::BnWeight { damped: false } => draw(&mut |r, _| r.uniform(0.8, 1.25)),
        Role::Offset => draw(&mut |r, _| r.centred(0.1)),
        Role::RunningVar => draw(&mut |r, _| r.uniform(0.5, 2.0)),
        Role::Tracked => Vec::new(),
    }
}

impl SupernetWeights {
    /// The seeded weights of `net` (w1.0 or w1.2) for `seed`; [`DEFAULT_SEED`] is the default.
    pub fn seeded(net: Supernet, seed: u64) -> Self {
        let specs = tensor_specs(&net);
        let by_name: HashMap<&str, &TensorSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
        Self::build(net, &|name| generate(by_name[name], seed))
    }
}

/// The seeded weights as an OFA state dict in safetensors (float32 tensors, `num_batches_tracked`
/// as int64 zeros), with a `source` entry in the metadata.
pub fn seeded_safetensors(net: Supernet, seed: u64) -> Vec<u8> {
    let specs = tensor_specs(&net);
    let data: Vec<(&TensorSpec, Vec<u8>)> = specs
        .iter()
        .map(|s| {
            let bytes = match s.role {
                Role::Tracked => 0i64.to_le_bytes().to_vec(),
                _ => generate(s, seed).iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            (s, bytes)
        })
        .collect();
    let views = data.iter().map(|(s, bytes)| {
        let dtype = if s.role == Role::Tracked { Dtype::I64 } else { Dtype::F32 };
        (s.name.as_str(), TensorView::new(dtype, s.shape.clone(), bytes).expect("sizes follow the shapes"))
    });
    let source = format!(
        "dynofa seeded OFA MobileNetV3 w{} weights, seed {seed:#x} (dynofa-kernels {}; `dynofa gen-weights`)",
        net.width_mult,
        env!("CARGO_PKG_VERSION")
    );
    let meta = HashMap::from([("source".to_string(), source)]);
    safetensors::serialize(views, Some(meta)).expect("the header of 475 tensors is small")
}

/// Write [`seeded_safetensors`] to `path`.
pub fn write_seeded(net: Supernet, seed: u64, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, seeded_safetensors(net, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_fixed_bit_for_bit() {
        // A fingerprint of a few tensors: any change to the generator (or a platform difference)
        // changes it, and then the committed goldens are stale.
        let specs = tensor_specs(&Supernet::W1_2);
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for s in specs.iter().filter(|s| s.len() < 5000) {
            for v in generate(s, DEFAULT_SEED) {
                h = (h ^ v.to_bits() as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        assert_eq!(
            h, 8_168_340_645_569_566_993,
            "seeded weights changed: regenerate the goldens (kernels/goldens/README.md)"
        );
    }

    #[test]
    fn safetensors_round_trip_gives_the_same_weights() {
        let net = Supernet::W1_0;
        let bytes = seeded_safetensors(net, 5);
        let loaded = SupernetWeights::from_safetensors(&bytes, Path::new("mem")).unwrap();
        let direct = SupernetWeights::seeded(net, 5);
        assert_eq!(loaded.bn_table, direct.bn_table);
        assert_eq!(loaded.blocks[7].project, direct.blocks[7].project);
        assert_eq!(loaded.classifier, direct.classifier);
    }
}
