//! `dynofa predict`: OFA's accuracy predictor on one sub-network config.

use std::path::PathBuf;

use anyhow::{Context, Result};
use dynofa_core::SubnetConfig;
use dynofa_core::predictor::SUPERNET;
use dynofa_hal_jetson::design::latency::OpTables;
use dynofa_hal_jetson::design::predictor::PredictorWeights;

/// Options of `dynofa predict`.
#[derive(clap::Args)]
pub struct Args {
    /// Sub-network config as OFA's JSON dict: {"ks": [20], "e": [20], "d": [5], "r": R or [R]}.
    #[arg(long)]
    config: PathBuf,
    /// Predictor weights (safetensors with OFA's names); default: OFA's published ones, built in.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Also print the latency summed over the per-op tables in this folder (repeatable).
    #[arg(long)]
    tables: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let text = std::fs::read(&args.config).with_context(|| format!("cannot read {}", args.config.display()))?;
    let cfg =
        SubnetConfig::from_json(&text, &SUPERNET).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let weights = match &args.weights {
        Some(path) => PredictorWeights::load(path)?,
        None => PredictorWeights::embedded()?,
    };
    let cost = SUPERNET.cost(&cfg);
    println!("sub-network {} (w1.2): r {}, depths {:?}", cfg.id(), cfg.r, cfg.d);
    println!("{:.3} M parameters, {:.3} M MACs", cost.params as f64 / 1e6, cost.macs as f64 / 1e6);
    for dir in &args.tables {
        let l = OpTables::load_dir(dir)?.network(&SUPERNET, &cfg)?;
        println!("per-op table sum {}: {:.3} ms (std {:.3} ms)", dir.display(), l.mean_ms, l.std_ms);
    }
    let top1 = weights.predictor().predict(&cfg)?;
    println!("predicted top-1 (%):");
    println!("{top1:.3}");
    Ok(())
}
