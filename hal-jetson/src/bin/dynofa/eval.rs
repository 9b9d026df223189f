//! `dynofa eval`: top-1 and top-5 of sub-networks over an ImageNet-style folder with the CPU or
//! the CUDA engine, OFA's evaluation preprocessing and each sub-network's own BN statistics;
//! optionally written back into the LUT as measured accuracies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use dynofa_core::SubnetConfig;
use dynofa_core::arch::NUM_CLASSES;
use dynofa_core::lut::Top1Source;
use dynofa_hal_jetson::design::lutgen;
use dynofa_hal_jetson::run::backend::{self, AnyEngine, Backend, RunEngine};
use dynofa_kernels::dataset::{ImageFolder, prefetch, seeded_subset};
use dynofa_kernels::preprocess::{eval_input, load_image};
use dynofa_kernels::{BnTable, CpuEngine};

use crate::calibrate_bn::{Selected, Subnets, bn_file, image_bar, select};

/// Options of `dynofa eval`.
#[derive(clap::Args)]
pub struct Args {
    /// An ImageNet-style folder: one sub-folder per class, in sorted order the network's classes
    /// (as torchvision's ImageFolder), unless --labels says otherwise.
    #[arg(long)]
    images: PathBuf,
    /// The network's class of each class folder: a JSON object {"<folder>": index} or text whose
    /// line i starts with class i's folder name (as ImageNet's LOC_synset_mapping.txt).
    #[arg(long)]
    labels: Option<PathBuf>,
    #[command(flatten)]
    subnets: Subnets,
    /// The sub-networks' own BN statistics: with --config a file, with --lut the folder that
    /// `dynofa calibrate-bn --lut` wrote; default: the supernet's statistics.
    #[arg(long)]
    bn: Option<PathBuf>,
    /// Supernet weights (OFA's state dict as safetensors, see `dynofa import-ofa`); default: the
    /// seeded weights (of the LUT's width with --lut, else w1.2).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Evaluate a seeded random choice of this many images instead of all.
    #[arg(long)]
    count: Option<usize>,
    /// Seed of --count's choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// With --lut: write the LUT with each entry's measured top-1 (`top1_source: measured`) here
    /// (may be the --lut file itself).
    #[arg(long)]
    write_lut: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The engine that runs the sub-networks (the CUDA engine captures a graph per sub-network
    /// first).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// CPU engine threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// An engine that takes a sub-network's own BN statistics.
trait OwnBn: RunEngine {
    /// Use `table` whenever `config` is active.
    fn own_bn(&mut self, config: &SubnetConfig, table: BnTable) -> Result<()>;
}

impl OwnBn for CpuEngine {
    fn own_bn(&mut self, config: &SubnetConfig, table: BnTable) -> Result<()> {
        Ok(self.register_bn(config, table)?)
    }
}

#[cfg(feature = "cuda")]
impl OwnBn for dynofa_hal_jetson::gpu::GpuEngine {
    fn own_bn(&mut self, config: &SubnetConfig, table: BnTable) -> Result<()> {
        Ok(self.register_bn(config, &table)?)
    }
}

/// The rank of class `target` among the logits, ties broken by class index (a stable sort).
fn rank(logits: &[f32], target: usize) -> usize {
    let t = logits[target];
    logits.iter().enumerate().filter(|&(j, &v)| v > t || (v == t && j < target)).count()
}

pub fn run(args: Args) -> Result<()> {
    let Selected { net, configs, lut } = select(args.weights.as_deref(), &args.subnets)?;
    if args.write_lut.is_some() && lut.is_none() {
        bail!("--write-lut writes a LUT's accuracies: give the sub-networks with --lut");
    }
    let weights = net.into_weights();
    // The engine first: a machine without CUDA gets its one-line reason before anything else.
    let engine = backend::build(args.backend, &weights, args.threads)?;
    let tables = configs
        .iter()
        .enumerate()
        .map(|(i, cfg)| match (&args.bn, &lut) {
            (None, _) => Ok(None),
            (Some(file), None) => Ok(Some(weights.load_bn_statistics(file, cfg)?)),
            (Some(dir), Some(_)) => {
                let file = bn_file(dir, cfg);
                if !file.exists() {
                    bail!(
                        "{}: no BN statistics for LUT entry {i}; make them with `dynofa calibrate-bn --lut <LUT> --out {}`",
                        file.display(),
                        dir.display()
                    );
                }
                Ok(Some(weights.load_bn_statistics(&file, cfg)?))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    if args.bn.is_none() {
        eprintln!("no --bn: using the supernet's BN statistics (OFA sub-networks need their own: dynofa calibrate-bn)");
    }
    match engine {
        AnyEngine::Cpu(e) => evaluate(&args, &configs, tables, lut, *e),
        #[cfg(feature = "cuda")]
        AnyEngine::Cuda(e) => evaluate(&args, &configs, tables, lut, *e),
    }
}

/// Evaluate `configs` (with their own BN `tables`) on `engine`, and write what `args` asks.
fn evaluate<E: OwnBn>(
    args: &Args,
    configs: &[SubnetConfig],
    tables: Vec<Option<BnTable>>,
    lut: Option<lutgen::DesignLut>,
    mut engine: E,
) -> Result<()>
where
    E::Error: std::error::Error + Send + Sync + 'static,
{
    for (cfg, table) in configs.iter().zip(tables) {
        if let Some(table) = table {
            engine.own_bn(cfg, table)?;
        }
    }
    engine.ready(configs)?;
    let folder = ImageFolder::open(&args.images)?;
    let targets = folder.targets(args.labels.as_deref())?;
    let chosen: Vec<usize> = match args.count {
        Some(n) => seeded_subset(folder.samples.len(), n, args.seed),
        None => (0..folder.samples.len()).collect(),
    };
    if chosen.is_empty() {
        bail!("--count 0: nothing to evaluate");
    }
    let resolutions: Vec<usize> =
        configs.iter().map(|c| c.r as usize).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let bar = image_bar(chosen.len(), &format!("{} sub-networks", configs.len()));
    let start = Instant::now();
    let paths = chosen.iter().map(|&i| folder.samples[i].0.clone()).collect();
    let (mut top1, mut top5) = (vec![0usize; configs.len()], vec![0usize; configs.len()]);
    let mut logits = vec![0.0; NUM_CLASSES];
    for (loaded, &i) in prefetch(paths, 8, load_image).zip(&chosen) {
        let img = loaded?;
        let inputs: BTreeMap<usize, Vec<f32>> = resolutions.iter().map(|&r| (r, eval_input(&img, r))).collect();
        let target = targets[folder.samples[i].1];
        for (k, cfg) in configs.iter().enumerate() {
            engine.activate(cfg)?;
            engine.infer(&inputs[&(cfg.r as usize)], &mut logits)?;
            let rank = rank(&logits, target);
            top1[k] += usize::from(rank == 0);
            top5[k] += usize::from(rank < 5);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let n = chosen.len();
    let pct = |c: usize| 100.0 * c as f64 / n as f64;

    println!("{:<3} {:<16} {:>4} {:<11} {:>7} {:>7}", "#", "id", "r", "d", "top-1", "top-5");
    for (k, cfg) in configs.iter().enumerate() {
        let d = format!("{:?}", cfg.d).replace(' ', "");
        println!(
            "{k:<3} {:<16} {:>4} {d:<11} {:>6.2}% {:>6.2}%",
            cfg.id().to_string(),
            cfg.r,
            pct(top1[k]),
            pct(top5[k])
        );
    }
    println!(
        "{n} images x {} sub-networks in {secs:.1} s: {:.1} images/s ({:.1} inferences/s), {}",
        configs.len(),
        n as f64 / secs,
        (n * configs.len()) as f64 / secs,
        engine.describe()
    );

    if let Some(path) = &args.json {
        let subnets: Vec<serde_json::Value> = configs
            .iter()
            .enumerate()
            .map(|(k, cfg)| {
                let mut buf = [0u8; 512];
                let len = cfg.to_json(&mut buf).expect("a config fits 512 bytes");
                let config: serde_json::Value = serde_json::from_slice(&buf[..len]).expect("valid JSON");
                serde_json::json!({
                    "id": cfg.id().to_string(), "config": config, "top1": pct(top1[k]), "top5": pct(top5[k]),
                    "correct1": top1[k], "correct5": top5[k],
                })
            })
            .collect();
        let doc = serde_json::json!({
            "images": n, "folder": args.images.display().to_string(), "seconds": secs, "images_per_s": n as f64 / secs,
            "subnets": subnets,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if let (Some(path), Some(mut lut)) = (&args.write_lut, lut) {
        for (k, entry) in lut.entries_mut().iter_mut().enumerate() {
            entry.top1 = pct(top1[k]) as f32;
            entry.top1_source = Top1Source::Measured;
        }
        // Say where the accuracies came from when the note has room for it.
        let note = format!("; top-1 by dynofa eval on {n} images, {}", lutgen::today());
        let _ = lut.source.push_str(&note);
        std::fs::write(path, lutgen::to_json(&lut)).with_context(|| format!("{}: cannot write", path.display()))?;
        println!("wrote measured top-1 of {} entries to {}", lut.len(), path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rank;

    #[test]
    fn rank_breaks_ties_by_class_index() {
        let y = [0.5, 2.0, 2.0, 1.0, -1.0];
        assert_eq!([0, 1, 2, 3, 4].map(|t| rank(&y, t)), [3, 0, 1, 2, 4]);
    }
}
