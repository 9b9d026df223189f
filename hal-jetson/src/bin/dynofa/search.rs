//! `dynofa search`: OFA's evolutionary search over latency constraints on per-op tables (or on a
//! latency model fitted on a LUT of measured sub-networks), written as a LUT with a Pareto set per
//! processing unit.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use dynofa_core::lut::{OperatingPoint, Unit};
use dynofa_core::predictor::SUPERNET;
use dynofa_hal_jetson::design::fit::{FEATURE_NAMES, LatencySource};
use dynofa_hal_jetson::design::latency::LatencyModel;
use dynofa_hal_jetson::design::lutgen::{self, UnitTables};
use dynofa_hal_jetson::design::predictor::PredictorWeights;
use dynofa_hal_jetson::design::search::{
    Constraints, SearchParams, UnitSearch, pareto, pareto_sets, predictor_resolutions, search_count,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Options of `dynofa search`.
#[derive(clap::Args)]
pub struct Args {
    /// A processing unit and its latencies as UNIT=PATH@FREQ_KHZ (UNIT gpu or cpu; FREQ_KHZ the
    /// clock they were measured at, 0 if not pinned). PATH is a folder of OFA per-op tables, or a
    /// LUT of measured sub-networks (`dynofa profile`): a latency model is fitted on its entries
    /// measured at UNIT@FREQ_KHZ. Repeat for each unit.
    #[arg(long = "unit", required = true, value_parser = parse_unit)]
    units: Vec<UnitArg>,
    /// Constraints per unit, spanning its range, for units without --at.
    #[arg(long, default_value_t = 10)]
    constraints: usize,
    /// Explicit constraints of a unit in ms, as UNIT=MS,MS,... (repeatable).
    #[arg(long = "at", value_parser = parse_at)]
    at: Vec<(Unit, Vec<f64>)>,
    /// The LUT to write (or, with --check, to compare with).
    #[arg(long)]
    out: PathBuf,
    /// Do not write: fail when --out differs from what this search gives.
    #[arg(long)]
    check: bool,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Population size.
    #[arg(long, default_value_t = 100)]
    population: usize,
    /// Generations per search.
    #[arg(long, default_value_t = 500)]
    generations: usize,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Input resolutions to search (default: the smallest of each predictor bucket that every unit
    /// has tables for or, for a LUT, measured).
    #[arg(long, value_delimiter = ',')]
    resolutions: Vec<u16>,
    /// Independent searches per constraint, the best kept (1: OFA's single run).
    #[arg(long, default_value_t = 1)]
    restarts: usize,
    /// Provenance note that starts the LUT's "source" field (seed, date and machine are appended).
    #[arg(long, default_value = "dynofa search")]
    note: String,
}

#[derive(Clone)]
struct UnitArg {
    unit: Unit,
    path: PathBuf,
    freq_khz: u32,
}

fn parse_unit_name(s: &str) -> Result<Unit, String> {
    match s {
        "gpu" => Ok(Unit::Gpu),
        "cpu" => Ok(Unit::Cpu),
        other => Err(format!("unknown unit \"{other}\": use gpu or cpu")),
    }
}

fn parse_unit(s: &str) -> Result<UnitArg, String> {
    let (unit, rest) = s.split_once('=').ok_or("expected UNIT=PATH@FREQ_KHZ, e.g. gpu=tables/gpu@1109250")?;
    let (path, freq) = rest.rsplit_once('@').ok_or("expected UNIT=PATH@FREQ_KHZ: the @FREQ_KHZ is missing")?;
    let freq_khz = freq.parse().map_err(|_| format!("\"{freq}\" is not a frequency in kHz"))?;
    Ok(UnitArg { unit: parse_unit_name(unit)?, path: path.into(), freq_khz })
}

fn parse_at(s: &str) -> Result<(Unit, Vec<f64>), String> {
    let (unit, list) = s.split_once('=').ok_or("expected UNIT=MS,MS,..., e.g. gpu=18.5,20,24")?;
    let ms = list
        .split(',')
        .map(|v| v.trim().parse::<f64>().map_err(|_| format!("\"{v}\" is not a latency in ms")))
        .collect::<Result<Vec<f64>, String>>()?;
    Ok((parse_unit_name(unit)?, ms))
}

pub fn run(args: Args) -> Result<()> {
    let units: Vec<UnitTables> = args
        .units
        .iter()
        .map(|u| {
            let point = OperatingPoint { unit: u.unit, freq_khz: u.freq_khz };
            Ok(UnitTables { unit: u.unit, freq_khz: u.freq_khz, latency: LatencySource::load(&u.path, point)? })
        })
        .collect::<Result<_>>()?;
    let resolutions = if args.resolutions.is_empty() {
        // Resolutions every unit knows from measurement.
        let mut common = units[0].latency.resolutions();
        common.retain(|r| units.iter().all(|u| u.latency.resolutions().contains(r)));
        predictor_resolutions(&common)
    } else {
        args.resolutions.clone()
    };
    if resolutions.is_empty() {
        bail!("the units' tables and LUTs share no resolution; pick some with --resolutions");
    }
    let mut fitted_notes = Vec::new();
    for u in &units {
        if let LatencySource::Fitted(f) = &u.latency {
            let r = &f.report;
            eprintln!(
                "{}: latency model fitted on {} sub-networks of {} measured at {} kHz (resolutions {:?}): error {:.1} % on them, {:.1} % (max {:.1} %) held out (leave-one-out)",
                u.unit,
                r.n,
                f.path.display(),
                u.freq_khz,
                f.measured_resolutions,
                r.fit_mape_pct,
                r.held_out_mape_pct,
                r.held_out_max_pct
            );
            for (name, c) in FEATURE_NAMES.iter().zip(f.coefficients) {
                eprintln!("  {c:>10.4} {name}");
            }
            let outside: Vec<u16> =
                resolutions.iter().copied().filter(|r| !f.measured_resolutions.contains(r)).collect();
            if !outside.is_empty() {
                eprintln!("  extrapolating to resolutions {outside:?}, which the LUT did not measure");
            }
            let name = f.path.file_name().map_or_else(|| f.path.display().to_string(), |n| n.display().to_string());
            fitted_notes.push(format!("; {} latency fitted on {name} ({:.1} % held out)", u.unit, r.held_out_mape_pct));
        }
    }
    let params = SearchParams {
        population: args.population,
        generations: args.generations,
        resolutions,
        seed: args.seed,
        restarts: args.restarts,
        ..SearchParams::default()
    };
    let models: Vec<LatencyModel> =
        units.iter().map(|u| u.latency.compile(&SUPERNET, &params.resolutions)).collect::<Result<_, _>>()?;
    let searches: Vec<UnitSearch<'_>> = units
        .iter()
        .zip(&models)
        .map(|(u, model)| {
            let list = args.at.iter().find(|(unit, _)| *unit == u.unit).map(|(_, l)| l.clone());
            UnitSearch { model, constraints: list.map_or(Constraints::Auto(args.constraints), Constraints::List) }
        })
        .collect();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let weights = PredictorWeights::embedded()?;

    let count = search_count(&searches, &params);
    eprintln!(
        "{count} searches over {} unit(s): population {}, {} generations, {} restart(s) per constraint, resolutions {:?}, seed {}, {threads} thread(s)",
        units.len(),
        params.population,
        params.generations,
        params.restarts,
        params.resolutions,
        params.seed
    );
    let bar = ProgressBar::new((count * params.generations) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} generations, ETA {eta}")
            .expect("valid template"),
    );
    let start = Instant::now();
    let results = pareto_sets(&searches, &weights, &params, threads, &|| bar.inc(1))?;
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();

    let mut fronts = Vec::new();
    for (u, r) in units.iter().zip(&results) {
        println!("{} ({} kHz), {}:", u.unit, u.freq_khz, u.latency.path().display());
        println!("  constraint ms   latency ms   top-1 %   sub-network");
        for (c, f) in r.constraints.iter().zip(&r.found) {
            println!("  {c:>13.3} {:>12.3} {:>9.3}   {}", f.latency_ms, f.top1, f.config.id());
        }
        let front = pareto(&r.found);
        println!("  Pareto set: {} of {}", front.len(), r.found.len());
        fronts.push(front);
    }
    let source = format!(
        "{}; seed {}{}; {}; {}-{}",
        args.note,
        params.seed,
        fitted_notes.concat(),
        lutgen::today(),
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    let lut = lutgen::build_lut(&SUPERNET, &units, &fronts, &source)?;
    if args.check {
        lutgen::check(&args.out, &lut, lutgen::CheckLatency::Compare)?;
        println!("search took {elapsed:.2} s");
        println!("{} is up to date ({} entries)", args.out.display(), lut.len());
    } else {
        std::fs::write(&args.out, lutgen::to_json(&lut))
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        println!("search took {elapsed:.2} s");
        println!("wrote {}: {} entries", args.out.display(), lut.len());
    }
    Ok(())
}
