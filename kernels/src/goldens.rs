//! The golden cases of `kernels/goldens/` (see its README): sub-networks of both widths on the
//! seeded weights with `ofa`'s logits, for the tests of every engine.

use std::path::PathBuf;

use dynofa_core::{SubnetConfig, Supernet};
use safetensors::SafeTensors;
use serde_json::Value;

use crate::rng::golden_input;

/// Largest accepted `max |y - ref| / max |ref|`.
pub const TOLERANCE: f32 = 1e-4;

/// One golden case.
#[derive(Debug, Clone)]
pub struct Golden {
    /// The case's name (its tensor in `logits.safetensors`).
    pub name: String,
    /// The supernet (its seeded weights: [`crate::DEFAULT_SEED`]).
    pub net: Supernet,
    /// The sub-network.
    pub config: SubnetConfig,
    /// The sub-network's own BN statistics, if any.
    pub bn: Option<PathBuf>,
    /// The input, NCHW `[1, 3, r, r]`.
    pub input: Vec<f32>,
    /// `ofa`'s logits.
    pub logits: Vec<f32>,
}

impl Golden {
    /// `max |y - logits| / max |logits|` (NaN stays NaN).
    pub fn error(&self, y: &[f32]) -> f32 {
        let scale = self.logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        y.iter()
            .zip(&self.logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, |m, d| if d.is_nan() { d } else { m.max(d) })
            / scale
    }
}

/// The folder: `$DYNOFA_GOLDENS` when set (a binary run away from its build tree), else this crate's.
pub fn dir() -> PathBuf {
    std::env::var_os("DYNOFA_GOLDENS")
        .map_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/goldens")), PathBuf::from)
}

/// Every case, in `cases.json`'s order.
pub fn load() -> Result<Vec<Golden>, String> {
    let dir = dir();
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
    let cases: Vec<Value> = serde_json::from_slice(&read("cases.json")?).map_err(|e| format!("cases.json: {e}"))?;
    let bytes = read("logits.safetensors")?;
    let logits = SafeTensors::deserialize(&bytes).map_err(|e| format!("logits.safetensors: {e}"))?;
    cases
        .iter()
        .map(|case| {
            let name = case["name"].as_str().ok_or("cases.json: a case without a name")?.to_string();
            let net = match case["width"].as_f64() {
                Some(1.0) => Supernet::W1_0,
                Some(1.2) => Supernet::W1_2,
                w => return Err(format!("{name}: width {w:?} is not 1.0 or 1.2")),
            };
            let config = SubnetConfig::from_json(case["config"].to_string().as_bytes(), &net)
                .map_err(|e| format!("{name}: {e}"))?;
            let seed = case["seed"].as_u64().ok_or_else(|| format!("{name}: no seed"))?;
            let view = logits.tensor(&name).map_err(|_| format!("{name}: not in logits.safetensors"))?;
            Ok(Golden {
                bn: case["bn"].as_str().map(|f| dir.join(f)),
                input: golden_input(seed, config.r as usize),
                logits: view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                name,
                net,
                config,
            })
        })
        .collect()
}
