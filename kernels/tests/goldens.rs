//! The CPU engine against the `ofa` package: reference logits committed in `kernels/goldens/`
//! (see its README), for 30 sub-networks of both widths on the seeded weights, inputs recomputed
//! from each case's seed. Tolerance: max |y - ref| / max |ref| <= 1e-4.

use std::path::Path;

use dynofa_core::hal::InferenceEngine;
use dynofa_core::{SubnetConfig, Supernet};
use dynofa_kernels::rng::golden_input;
use dynofa_kernels::{CpuEngine, DEFAULT_SEED, SupernetWeights};
use safetensors::SafeTensors;
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;

fn goldens() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/goldens"))
}

#[test]
fn every_golden_case_matches_ofa() {
    let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(goldens().join("cases.json")).unwrap()).unwrap();
    let bytes = std::fs::read(goldens().join("logits.safetensors")).unwrap();
    let logits = SafeTensors::deserialize(&bytes).unwrap();
    assert!(cases.len() >= 24, "at least 24 golden cases");
    let mut failures = Vec::new();
    for net in [Supernet::W1_0, Supernet::W1_2] {
        let weights = SupernetWeights::seeded(net, DEFAULT_SEED);
        let mut engine = CpuEngine::with_threads(weights, 2);
        for case in cases.iter().filter(|c| c["width"].as_f64() == Some(net.width_mult)) {
            let name = case["name"].as_str().unwrap();
            let cfg = SubnetConfig::from_json(case["config"].to_string().as_bytes(), &net).unwrap();
            if let Some(bn) = case["bn"].as_str() {
                let table = engine.weights().load_bn_statistics(goldens().join(bn), &cfg).unwrap();
                engine.register_bn(&cfg, table).unwrap();
            }
            engine.activate(&cfg).unwrap();
            let input = golden_input(case["seed"].as_u64().unwrap(), cfg.r as usize);
            let mut y = vec![0.0; 1000];
            engine.infer(&input, &mut y).unwrap();
            let view = logits.tensor(name).unwrap_or_else(|_| panic!("{name}: not in logits.safetensors"));
            let want: Vec<f32> =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = y.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
            if err.is_nan() || err > TOLERANCE {
                failures.push(format!("{name}: relative error {err:.3e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden cases differ from ofa (if the seeded weights changed on purpose, run \
         kernels/goldens/regen.sh):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
