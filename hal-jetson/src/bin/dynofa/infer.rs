//! `dynofa infer`: run one sub-network on an input with the CPU or the CUDA engine.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use dynofa_core::arch::NUM_CLASSES;
use dynofa_core::hal::InferenceEngine;
use dynofa_core::{SubnetConfig, Supernet};
use dynofa_hal_jetson::run::backend::Backend;
use dynofa_kernels::{CpuEngine, DEFAULT_SEED, SupernetWeights, load_tensor, save_tensor};

/// Options of `dynofa infer`.
#[derive(clap::Args)]
pub struct Args {
    /// Supernet weights: OFA's state dict as safetensors (w1.0 or w1.2, detected); default: the
    /// built-in seeded w1.2 weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// The sub-network's own BN statistics: safetensors with `<BN layer>.running_mean` and
    /// `.running_var` at its active widths.
    #[arg(long)]
    bn: Option<PathBuf>,
    /// Sub-network as OFA's JSON dict: {"ks": [20], "e": [20], "d": [5], "r": R or [R]}.
    #[arg(long)]
    config: PathBuf,
    /// Input safetensors with tensor `input`, f32 [1, 3, r, r], NCHW, already normalised.
    #[arg(long)]
    input: PathBuf,
    /// Output safetensors; receives tensor `logits`, f32 [1, 1000].
    #[arg(long)]
    output: PathBuf,
    /// Backend.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// Run the inference N more times after the first and print `median_ms=<value>` last.
    #[arg(long)]
    repeat: Option<usize>,
    /// Threads of the CPU engine (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// CUDA engine: time each layer's alternatives (kernel, tiling, split) on this GPU before
    /// capturing, and keep the fastest rather than the ones the plan's models pick.
    #[arg(long)]
    tune: bool,
    /// CUDA engine: run every layer in one persistent kernel, with a barrier across the GPU
    /// between layers, rather than a graph node per layer (slower on an H100 and an H200); with
    /// --tune, whichever of the two is faster here.
    #[arg(long)]
    persistent: bool,
}

pub fn run(args: Args) -> Result<()> {
    let weights = match &args.weights {
        Some(path) => SupernetWeights::load(path)?,
        None => SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED),
    };
    let net = *weights.supernet();
    let text =
        std::fs::read(&args.config).map_err(|e| anyhow!("{}: cannot read the config: {e}", args.config.display()))?;
    let cfg = SubnetConfig::from_json(&text, &net).map_err(|e| {
        anyhow!("{}: not a sub-network of OFA MobileNetV3 w{}: {e}", args.config.display(), net.width_mult)
    })?;
    let r = cfg.r as usize;
    let input = load_tensor(&args.input, "input", &[1, 3, r, r]).map_err(|e| anyhow!("{e} (the config's r = {r})"))?;
    let bn = args.bn.as_ref().map(|path| weights.load_bn_statistics(path, &cfg)).transpose()?;

    match args.backend {
        Backend::Cpu => {
            let mut engine = match args.threads {
                Some(t) => CpuEngine::with_threads(weights, t),
                None => CpuEngine::new(weights),
            };
            if let Some(table) = bn {
                engine.register_bn(&cfg, table)?;
            }
            let desc = format!("threads={} isa={:?}", engine.threads(), engine.isa());
            infer(engine, &cfg, &input, &args, &desc)
        }
        Backend::Cuda => cuda(weights, bn, &cfg, &input, &args),
    }
}

#[cfg(feature = "cuda")]
fn cuda(
    weights: SupernetWeights,
    bn: Option<dynofa_kernels::BnTable>,
    cfg: &SubnetConfig,
    input: &[f32],
    args: &Args,
) -> Result<()> {
    use dynofa_hal_jetson::gpu::{GpuEngine, GpuOptions};
    let options = GpuOptions { tune: args.tune, persistent: args.persistent, ..GpuOptions::default() };
    let mut engine = GpuEngine::with_options(weights, options)?;
    let report = engine.compile_report().clone();
    let cache = report.cache.as_ref().map_or("not cached".into(), |p| p.display().to_string());
    if report.cached {
        eprintln!("{}: kernels for {} from {cache}", report.device, report.arch);
    } else {
        eprintln!("{}: kernels compiled for {} in {:.2} s ({cache})", report.device, report.arch, report.compile_s);
    }
    if let Some(table) = &bn {
        engine.register_bn(cfg, table)?;
    }
    engine.prepare(std::slice::from_ref(cfg))?;
    if let Some(t) = engine.tuning(cfg) {
        eprintln!(
            "tuned in {:.2} s: {} of {} layers measured faster with another kernel or tiling ({:.1} -> {:.1} us)",
            t.seconds, t.changed, t.measured, t.planned_us, t.picked_us
        );
    }
    let (programmatic, refused) = engine.programmatic_launch();
    if let Some(e) = refused {
        eprintln!("the driver refused programmatic dependent launch, so the graph does without: {e}");
    }
    let desc = format!(
        "device={:?} arch={} multiprocessors={} programmatic_launch={programmatic}",
        report.device,
        report.arch,
        engine.target().sms
    );
    infer(engine, cfg, input, args, &desc)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: SupernetWeights, _: Option<dynofa_kernels::BnTable>, _: &SubnetConfig, _: &[f32], _: &Args) -> Result<()> {
    Err(dynofa_hal_jetson::gpu::GpuError::NotBuilt.into())
}

/// Activate `cfg`, infer once into `--output`, then time `--repeat` more runs.
fn infer<E>(mut engine: E, cfg: &SubnetConfig, input: &[f32], args: &Args, desc: &str) -> Result<()>
where
    E: InferenceEngine,
    E::Error: std::error::Error + Send + Sync + 'static,
{
    engine.activate(cfg)?;
    let mut logits = vec![0.0; NUM_CLASSES];
    engine.infer(input, &mut logits)?;
    save_tensor(&args.output, "logits", &[1, NUM_CLASSES], &logits)?;

    if let Some(n) = args.repeat.filter(|&n| n > 0) {
        let mut times: Vec<f64> = (0..n)
            .map(|_| {
                let start = Instant::now();
                engine.infer(input, &mut logits).map(|()| start.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_, _>>()?;
        times.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 { times[n / 2] } else { (times[n / 2 - 1] + times[n / 2]) / 2.0 };
        println!("{desc} runs={n}");
        println!("median_ms={median:.3}");
    }
    Ok(())
}
