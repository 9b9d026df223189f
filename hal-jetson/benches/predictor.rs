//! Accuracy predictor throughput: the core's one-at-a-time MLP against the batched matrix-matrix
//! form the search uses. `cargo bench -p dynofa-hal-jetson --bench predictor`

use std::hint::black_box;

use dynofa_core::SubnetConfig;
use dynofa_hal_jetson::design::predictor::{BatchPredictor, PredictorWeights};
use support::best_ns;

mod support;

/// Deterministic, varied w1.2 configs.
fn configs(n: usize) -> Vec<SubnetConfig> {
    (0..n)
        .map(|i| {
            let mut c = SubnetConfig::uniform(3, 3, 2, 160 + 16 * (i % 5) as u16);
            for b in 0..20 {
                c.ks[b] = [3, 5, 7][(i * 7 + b) % 3];
                c.e[b] = [3, 4, 6][(i + b * b) % 3];
            }
            c.d = [2 + (i % 3) as u8, 2 + (i / 3 % 3) as u8, 4, 3, 2 + (i / 9 % 3) as u8];
            c
        })
        .collect()
}

fn main() {
    let weights = PredictorWeights::embedded().expect("embedded weights load");
    let p = weights.predictor();
    let mut batch = BatchPredictor::new(&p);
    let mut out = Vec::new();
    println!("accuracy predictor, ns per sub-network (best of 5):");
    for n in [1usize, 16, 50, 100, 400] {
        let cfgs = configs(n);
        let reps = (20_000 / n).max(20);
        let single = best_ns(reps, || {
            for c in &cfgs {
                black_box(p.predict(black_box(c)).expect("valid config"));
            }
        }) / n as f64;
        let batched = best_ns(reps, || {
            batch.predict(black_box(&cfgs), &mut out).expect("valid configs");
            black_box(&out);
        }) / n as f64;
        println!(
            "  batch {n:>4}: one at a time {single:>8.0} ns, batched {batched:>8.0} ns ({:.1}x)",
            single / batched
        );
    }
}
