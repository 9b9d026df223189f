//! `dynofa run`: the main job. With no arguments, the built-in demo: the seeded w1.2 supernet on the
//! CPU engine over synthetic frames, the target stepping and busy threads contending part-way, the
//! runtime manager switching sub-networks live; then a summary, a trace CSV and an SVG plot.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use dynofa_core::lut::Unit;
use dynofa_hal_jetson::linux::restore;
use dynofa_hal_jetson::run::backend::Backend;
use dynofa_hal_jetson::run::console::Console;
use dynofa_hal_jetson::run::schedule::{Ask, DEMO_SECONDS, ModelDef, ScheduleFile};
use dynofa_hal_jetson::run::{Options, run as run_job};

/// Options of `dynofa run`.
#[derive(clap::Args)]
pub struct Args {
    /// A model: a built-in name (detector, classifier) or a model JSON file (name, target_ms or
    /// target_rel, schedule, priority, period_ms or period_rel, lut, unit: gpu or cpu). Repeat for
    /// several models, each in its own thread, planned jointly, on the GPU and the CPU at once if
    /// their units differ. Default: one model, "classifier".
    #[arg(long = "model", value_name = "NAME|FILE")]
    models: Vec<String>,
    /// One latency target in ms for the whole run (instead of the demo's steps).
    #[arg(long)]
    target_ms: Option<f32>,
    /// A schedule JSON file: duration_s, and events at_s with target_ms/target_rel (optionally with a
    /// model's name), contend (busy threads, or GPU streams, on the first model's unit or the
    /// event's "unit"), cpu_khz or gpu_khz (a clock pin).
    #[arg(long, value_name = "FILE")]
    schedule: Option<PathBuf>,
    /// Length of the run in seconds (default: the schedule's, else the demo's 36 s).
    #[arg(long)]
    duration_s: Option<f64>,
    /// Contenders the demo runs part-way on the first model's unit: busy threads (default: one per
    /// core), or on the GPU streams running the largest sub-network (default: 1); 0: none.
    #[arg(long, value_name = "THREADS")]
    contend: Option<usize>,
    /// The engine of the models that name no unit: the CPU engine, or the CUDA engine (the LUT's
    /// GPU latencies plan it; contention is streams running the largest sub-network; a schedule's
    /// gpu_khz events pin the GPU's clock).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// The LUT (default: luts/host-cpu.json or luts/host-gpu.json for the backend if committed,
    /// checked against this machine; else the backend's Pareto set of luts/xavier-nx.json timed here
    /// at start-up).
    #[arg(long)]
    lut: Option<PathBuf>,
    /// Supernet weights (OFA's state dict as safetensors); default: the seeded w1.2 weights.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Frames from the JPEG/PNG images of this folder (resized to 256, centre crop 224, ImageNet
    /// normalisation; each sub-network sees the crop resampled to its resolution) instead of
    /// synthetic frames.
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Most images to load from --images.
    #[arg(long, default_value_t = 256)]
    max_images: usize,
    /// CPU engine threads per model (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Where the trace CSV goes.
    #[arg(long, default_value = "dynofa-run.csv")]
    trace: PathBuf,
    /// Where the SVG plot goes.
    #[arg(long, default_value = "dynofa-run.svg")]
    plot: PathBuf,
    /// Look for sysfs and procfs under this root instead of `/` (a copied or fake tree).
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let models = args.models.iter().map(|m| ModelDef::load(m)).collect::<Result<Vec<_>, _>>()?;
    let schedule = match &args.schedule {
        Some(path) => Some((ScheduleFile::load(path)?, path.display().to_string())),
        None => None,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The demo contends for the first model's unit.
    let first_unit = models.first().and_then(|m| m.unit).unwrap_or(args.backend.unit());
    let ask = Ask {
        models,
        target_ms: args.target_ms,
        schedule,
        duration_s: args.duration_s,
        contend: args.contend.unwrap_or(match first_unit {
            Unit::Cpu => cores,
            Unit::Gpu => 1,
        }),
    };
    // Ctrl-C (or SIGTERM) ends the run after the frames in flight, still writing the summary, the
    // trace and the plot, and restoring any clock a schedule pinned; a second one restores the clocks
    // and ends the process at once.
    let stop = Arc::new(AtomicBool::new(false));
    restore::stop_on_signal(Arc::clone(&stop)).context("cannot install the Ctrl-C handler")?;
    let opts = Options {
        ask,
        backend: args.backend,
        lut: args.lut,
        weights: args.weights,
        images: args.images,
        max_images: args.max_images,
        threads: args.threads,
        trace: args.trace,
        plot: args.plot,
        root: args.root,
        stop,
    };
    let mut console = Console::new();
    if opts.ask.models.is_empty() && opts.ask.target_ms.is_none() && opts.ask.schedule.is_none() {
        console.line(&format!(
            "dynofa run: the built-in demo ({:.0} s; --help for options)",
            opts.ask.duration_s.unwrap_or(DEMO_SECONDS)
        ));
    }
    run_job(&opts, &mut console)?;
    Ok(())
}
