//! The CPU engine against the `ofa` package: reference logits committed in `kernels/goldens/`
//! (see its README), for 30 sub-networks of both widths on the seeded weights, inputs recomputed
//! from each case's seed. Tolerance: max |y - ref| / max |ref| <= 1e-4.

use dynofa_core::Supernet;
use dynofa_core::hal::InferenceEngine;
use dynofa_kernels::{CpuEngine, DEFAULT_SEED, SupernetWeights, goldens};

#[test]
fn every_golden_case_matches_ofa() {
    let cases = goldens::load().unwrap();
    assert!(cases.len() >= 24, "at least 24 golden cases");
    let mut failures = Vec::new();
    for net in [Supernet::W1_0, Supernet::W1_2] {
        let weights = SupernetWeights::seeded(net, DEFAULT_SEED);
        let mut engine = CpuEngine::with_threads(weights, 2);
        for g in cases.iter().filter(|g| g.net == net) {
            if let Some(bn) = &g.bn {
                let table = engine.weights().load_bn_statistics(bn, &g.config).unwrap();
                engine.register_bn(&g.config, table).unwrap();
            }
            engine.activate(&g.config).unwrap();
            let mut y = vec![0.0; 1000];
            engine.infer(&g.input, &mut y).unwrap();
            let err = g.error(&y);
            if err.is_nan() || err > goldens::TOLERANCE {
                failures.push(format!("{}: relative error {err:.3e}", g.name));
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
