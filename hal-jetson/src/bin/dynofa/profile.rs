//! `dynofa profile`: time whole sub-networks on this machine's CPU engine (or its GPU, with
//! `--backend cuda`) and write them as a LUT of measured latencies, and/or time every op on the CPU
//! engine into OFA per-op tables; with per-op tables, report how well their sums predict the
//! measured sub-networks.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dynofa_core::SubnetConfig;
use dynofa_core::lut::LatencyPoint;
use dynofa_core::{Supernet, Top1Source};
use dynofa_hal_jetson::design::DesignError;
use dynofa_hal_jetson::design::latency::OpTables;
use dynofa_hal_jetson::design::lutgen::{self, CheckLatency};
use dynofa_hal_jetson::design::predictor::PredictorWeights;
use dynofa_hal_jetson::design::profile::{ProfileParams, agreement, load_average, measure, measure_ops};
use dynofa_hal_jetson::run::backend::{self, AnyEngine, Backend, RunEngine};
use dynofa_kernels::{DEFAULT_SEED, SupernetWeights};
use indicatif::{ProgressBar, ProgressStyle};

/// Options of `dynofa profile`.
#[derive(clap::Args)]
pub struct Args {
    /// Backend to time: its unit's latencies go into the LUT (per-op tables need the CPU engine).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
    /// The sub-networks to time: a LUT (its top-1 is kept) or a JSON list of OFA config dicts
    /// (top-1 from OFA's predictor).
    #[arg(long, required_unless_present = "ops", requires = "out")]
    subnets: Option<PathBuf>,
    /// The LUT of measured latencies to write (or, with --check, to compare with).
    #[arg(long, requires = "subnets")]
    out: Option<PathBuf>,
    /// Also time every op, into OFA per-op tables in this folder (`{r}_lookup_table.yaml`, one per
    /// resolution, with a header saying how they were made); they are then what the measured
    /// sub-networks are compared with.
    #[arg(long, value_name = "DIR", conflicts_with = "tables")]
    ops: Option<PathBuf>,
    /// Resolutions of the per-op tables (default: those of --subnets).
    #[arg(long, value_delimiter = ',', requires = "ops")]
    resolutions: Vec<u16>,
    /// Do not measure: fail when --out does not list the sub-networks and top-1 of --subnets, or
    /// when the tables in --ops lack an op of their resolutions.
    #[arg(long)]
    check: bool,
    /// Supernet weights (OFA state dict as safetensors); default: the built-in seeded w1.2 weights
    /// (latency does not depend on the values).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// CPU engine threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Untimed runs per sub-network.
    #[arg(long, default_value_t = ProfileParams::default().warmup)]
    warmup: usize,
    /// Timed runs per sub-network.
    #[arg(long, default_value_t = ProfileParams::default().reps)]
    reps: usize,
    /// The clock of the backend's unit in kHz if it is pinned (0: not pinned).
    #[arg(long, default_value_t = 0)]
    freq_khz: u32,
    /// Per-op tables of this unit (OFA format) to compare with the measurements.
    #[arg(long)]
    tables: Option<PathBuf>,
    /// Provenance note that starts the LUT's "source" field (machine, engine and date are appended).
    #[arg(long, default_value = "dynofa profile")]
    note: String,
}

pub fn run(args: Args) -> Result<()> {
    let weights = match &args.weights {
        Some(path) => SupernetWeights::load(path)?,
        None => SupernetWeights::seeded(dynofa_core::Supernet::W1_2, DEFAULT_SEED),
    };
    let net = *weights.supernet();
    let predictor_weights = PredictorWeights::embedded()?;
    let predictor = predictor_weights.predictor();
    let mut subnets = match &args.subnets {
        Some(path) => lutgen::read_subnets(path, &net, |c| Ok(predictor.predict(c)?))?,
        None => Vec::new(),
    };
    // Time each sub-network once, however often the list names it.
    let mut seen = std::collections::HashSet::new();
    subnets.retain(|(c, _, _)| seen.insert(c.id()));
    let resolutions = if args.resolutions.is_empty() {
        let mut rs: Vec<u16> = subnets.iter().map(|(c, _, _)| c.r).collect();
        rs.sort_unstable();
        rs.dedup();
        rs
    } else {
        args.resolutions.clone()
    };
    if args.ops.is_some() && resolutions.is_empty() {
        bail!("--ops needs resolutions: give --resolutions or --subnets");
    }
    if args.ops.is_some() && args.backend == Backend::Cuda {
        bail!(
            "--ops times each op inside the CPU engine's frames, and the CUDA engine runs a frame as one graph: \
             drop --backend cuda, or time whole sub-networks (--subnets, --out)"
        );
    }
    if args.check {
        return check(&args, &net, subnets, &resolutions);
    }
    let params = ProfileParams { warmup: args.warmup, reps: args.reps };
    match backend::build(args.backend, &weights, args.threads)? {
        AnyEngine::Cpu(engine) => profile(&args, &net, subnets, &resolutions, *engine, |engine, dir, tick| {
            measure_ops(engine, &net, &resolutions, dir, &params, tick)
        }),
        #[cfg(feature = "cuda")]
        AnyEngine::Cuda(engine) => {
            profile(&args, &net, subnets, &resolutions, *engine, |_, _, _| unreachable!("--ops was refused above"))
        }
    }
}

/// What a LUT's "source" says of how it was made (its engine given by `engine`).
fn source(args: &Args, engine: &str, load: (Option<f64>, Option<f64>)) -> String {
    let load = match load {
        (Some(a), Some(b)) => format!("; load average {a:.1} to {b:.1}"),
        _ => String::new(),
    };
    format!(
        "{}; {engine}, warmup {} reps {}; {}; {}{load}",
        args.note,
        args.warmup,
        args.reps,
        lutgen::machine(),
        lutgen::today()
    )
}

/// `--check`: measure nothing; fail unless `--out` lists the sub-networks of `--subnets` and the
/// tables of `--ops` have every op of the resolutions.
fn check(
    args: &Args,
    net: &Supernet,
    subnets: Vec<(SubnetConfig, f32, Top1Source)>,
    resolutions: &[u16],
) -> Result<()> {
    if let Some(dir) = &args.ops {
        OpTables::load_dir(dir)?.compile(net, resolutions)?;
        println!("{} has every op of resolutions {resolutions:?}", dir.display());
    }
    if let (Some(path), Some(out)) = (&args.subnets, &args.out) {
        let lut = lutgen::lut_of(net, subnets, &source(args, "no engine", (None, None)), |_| Ok(vec![]))?;
        lutgen::check(out, &lut, CheckLatency::Ignore)?;
        println!("{} lists the sub-networks of {} ({} entries)", out.display(), path.display(), lut.len());
    }
    Ok(())
}

/// Time `subnets` (and with `--ops` every op, through `ops`) on `engine`.
fn profile<E: RunEngine>(
    args: &Args,
    net: &Supernet,
    subnets: Vec<(SubnetConfig, f32, Top1Source)>,
    resolutions: &[u16],
    mut engine: E,
    ops: impl FnOnce(&mut E, &Path, &dyn Fn()) -> Result<OpTables, DesignError>,
) -> Result<()> {
    let params = ProfileParams { warmup: args.warmup, reps: args.reps };
    let load_before = load_average();
    let name = engine.describe();
    let source = |load_after: Option<f64>| source(args, &name, (load_before, load_after));
    let point = |mean_ms: f64, std_ms: f64| LatencyPoint {
        unit: E::UNIT,
        freq_khz: args.freq_khz,
        mean_ms: mean_ms as f32,
        std_ms: std_ms as f32,
    };
    let configs: Vec<SubnetConfig> = subnets.iter().map(|s| s.0).collect();
    engine.ready(&configs)?;

    let covering = OpTables::covering_configs(0).count();
    let op_runs = args.ops.as_ref().map_or(0, |_| resolutions.len() * covering);
    eprintln!(
        "timing {} sub-networks and every op of {} resolutions ({op_runs} sub-networks) on the {name}: {} warm-up and {} timed runs each",
        subnets.len(),
        if args.ops.is_some() { resolutions.len() } else { 0 },
        params.warmup,
        params.reps
    );
    let bar = ProgressBar::new(((subnets.len() + op_runs) * (params.warmup + params.reps)) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs, ETA {eta}")
            .expect("valid template"),
    );
    let tables = match &args.ops {
        Some(dir) => {
            let tables = ops(&mut engine, dir, &|| bar.inc(1))?;
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let note = source(load_average());
            for (r, table) in &tables.tables {
                // OFA's format has no room for provenance; YAML comments leave it readable by OFA.
                let header = format!(
                    "# OFA per-op latency table (ms) for resolution {r}: each op timed inside whole sub-networks\n# ({covering} per resolution: full depth, every kernel size and expand ratio).\n# {note}\n"
                );
                std::fs::write(&table.path, header + &table.to_text()?)
                    .with_context(|| format!("cannot write {}", table.path.display()))?;
            }
            println!("wrote {} per-op tables in {}", tables.tables.len(), dir.display());
            Some(tables)
        }
        None => args.tables.as_deref().map(OpTables::load_dir).transpose()?,
    };
    let Some(out) = &args.out else {
        bar.finish_and_clear();
        return Ok(());
    };
    let mut rows = Vec::new();
    for (cfg, _, _) in &subnets {
        let m = measure(&mut engine, cfg, &params, &|| bar.inc(1))?;
        let sum = tables.as_ref().map(|t| t.network(net, cfg)).transpose()?;
        rows.push((*cfg, m, sum));
    }
    bar.finish_and_clear();
    let lut = lutgen::lut_of(net, subnets.iter().copied(), &source(load_average()), |cfg| {
        let m = rows.iter().find(|(c, _, _)| c == cfg).map(|(_, m, _)| m).expect("every sub-network was timed");
        Ok(vec![point(m.latency.mean_ms, m.latency.std_ms)])
    })?;

    println!("  sub-network        r   measured ms (std)   per-op sum ms");
    for (cfg, m, sum) in &rows {
        let sum = sum.map_or("-".to_string(), |s| format!("{:.3}", s.mean_ms));
        println!("  {}  {:>3} {:>10.3} ({:>6.3}) {:>14}", cfg.id(), cfg.r, m.latency.mean_ms, m.latency.std_ms, sum);
    }
    if tables.is_some() && rows.len() >= 2 {
        let pred: Vec<f64> = rows.iter().filter_map(|(_, _, s)| s.map(|s| s.mean_ms)).collect();
        let meas: Vec<f64> = rows.iter().map(|(_, m, _)| m.latency.mean_ms).collect();
        let a = agreement(&pred, &meas);
        println!(
            "per-op sum vs measured over {} sub-networks: measured/sum {:.3}, error {:.1} %, pearson {:.3}; fitted measured = {:.3} x sum + {:.3} ms leaves {:.1} %",
            a.n, a.mean_ratio, a.mape_pct, a.pearson, a.slope, a.intercept, a.fit_mape_pct
        );
    }
    std::fs::write(out, lutgen::to_json(&lut)).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {}: {} entries", out.display(), lut.len());
    Ok(())
}
