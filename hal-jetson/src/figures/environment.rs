//! Figure 1: one sub-network's latency across operating points and co-running load, against the
//! latency it was chosen with at design time. On the simulator from its latency, DVFS and contention
//! models; on `host` and `jetson` timed on the CPU engine while the built-in contention generator
//! keeps cores busy (on `jetson` at several pinned CPU clocks too).

use std::path::PathBuf;
use std::time::Duration;

use dynofa_core::hal::FrequencyControl;
use dynofa_core::lut::{Top1Source, Unit};
use dynofa_core::{SubnetConfig, Supernet};
use dynofa_hal_sim::board::Board;
use dynofa_hal_sim::model::operating_points;
use dynofa_kernels::{CpuEngine, DEFAULT_SEED, SupernetWeights};
use plotters::prelude::SeriesLabelPosition;

use super::chart::{Axis, COLORS, Figure, Panel, Series, Style};
use super::{FigureError, Options, Platform, csv_header, lut_point, shown_path, write};
use crate::design::lutgen::DesignLut;
use crate::design::profile::{ProfileParams, measure};
use crate::linux::Platform as LinuxPlatform;
use crate::run::contend::{Contention, spin};

/// Shares of a unit that co-running applications take on the simulator.
const SIM_SHARES: [f64; 9] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
/// The simulated GPU clocks drawn (indices into its operating points; the CSV has all of them).
const SIM_GPU_DRAWN: [usize; 5] = [10, 8, 6, 4, 2];
/// CPU clocks pinned on a board: this many, spread over its operating points.
const BOARD_CPU_CLOCKS: usize = 4;

/// One measured or modelled point.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    unit: Unit,
    /// 0: left to the governor.
    clock_khz: u32,
    /// Co-running load: a share in percent (simulator) or busy threads (host, jetson).
    load: f64,
    mean_ms: f64,
    /// 99th percentile (simulator) or standard deviation (timed).
    spread_ms: f64,
}

struct Data {
    entry: usize,
    rows: Vec<Row>,
    /// Per unit: the latency the design-time tools recorded for the sub-network.
    design_ms: Vec<(Unit, f64)>,
    load_desc: &'static str,
    spread_desc: &'static str,
    how: String,
}

/// The middle entry of a unit's Pareto front in the LUT.
fn middle_of_front(lut: &DesignLut, unit: Unit) -> Option<usize> {
    let front = lut.pareto(lut_point(lut, unit)?);
    front.get(front.len() / 2).copied()
}

fn no_unit(opts: &Options, unit: Unit) -> FigureError {
    FigureError::Lut { path: opts.lut.clone(), reason: format!("figure 1 needs {unit} latencies and the LUT has none") }
}

pub(super) fn figure(opts: &Options, lut: &DesignLut) -> Result<Vec<PathBuf>, FigureError> {
    let data = match opts.platform {
        Platform::Sim => simulated(opts, lut)?,
        Platform::Host | Platform::Jetson => timed(opts, lut)?,
    };
    let entry = &lut.entries()[data.entry];
    let id = entry.config.id();
    let csv_path = opts.out.join("fig1.csv");
    let svg_path = opts.out.join("fig1.svg");
    let mut csv = csv_header(
        &format!(
            "Figure 1: latency of sub-network {id} (r {}, top-1 {:.2} % {}) at run time on {}; load: {}; spread_ms: {}; design_ms: latency recorded at design time",
            entry.config.r,
            entry.top1,
            top1_word(entry.top1_source),
            opts.platform.name(),
            data.load_desc,
            data.spread_desc
        ),
        &format!("`{}` from {}; {}", opts.command, shown_path(&opts.lut), data.how),
        "unit,clock_khz,load,mean_ms,spread_ms,design_ms",
    );
    for r in &data.rows {
        let design = data.design_ms.iter().find(|(u, _)| *u == r.unit).map_or(f64::NAN, |d| d.1);
        csv.push_str(&format!(
            "{},{},{},{:.3},{:.3},{:.3}\n",
            r.unit, r.clock_khz, r.load, r.mean_ms, r.spread_ms, design
        ));
    }
    write(&csv_path, &csv)?;

    let drawn = |r: &Row| match opts.platform {
        Platform::Sim if r.unit == Unit::Gpu => {
            SIM_GPU_DRAWN.iter().any(|&i| operating_points(Unit::Gpu).get(i) == Some(&r.clock_khz))
        }
        _ => true,
    };
    let mut panels = Vec::new();
    for &(unit, design) in &data.design_ms {
        let mut clocks: Vec<u32> =
            data.rows.iter().filter(|r| r.unit == unit && drawn(r)).map(|r| r.clock_khz).collect();
        clocks.sort_unstable_by(|a, b| b.cmp(a));
        clocks.dedup();
        let mut series: Vec<Series> = clocks
            .iter()
            .enumerate()
            .map(|(i, &khz)| Series {
                label: if khz == 0 {
                    "clock set by the governor".into()
                } else {
                    format!("{} clock {} MHz", unit, khz / 1000)
                },
                color: COLORS[i % COLORS.len()],
                style: Style::LinePoints,
                points: data
                    .rows
                    .iter()
                    .filter(|r| r.unit == unit && r.clock_khz == khz)
                    .map(|r| (r.load, r.mean_ms))
                    .collect(),
            })
            .collect();
        let loads = data.rows.iter().filter(|r| r.unit == unit).map(|r| r.load);
        let (lo, hi) = loads.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| (lo.min(l), hi.max(l)));
        series.push(Series {
            label: format!("design-time latency {design:.1} ms"),
            color: COLORS[8],
            style: Style::Dashed,
            points: vec![(lo, design), (hi, design)],
        });
        panels.push(Panel {
            title: format!("{} of {}", if unit == Unit::Gpu { "GPU" } else { "CPU" }, device(opts.platform)),
            x: Axis::linear(data.load_desc),
            y: Axis::log("frame latency (ms)"),
            series,
            legend: SeriesLabelPosition::UpperLeft,
        });
    }
    let figure = Figure {
        title: format!("Figure 1: sub-network {id} at run time on {}", device(opts.platform)),
        panels,
        caption: vec![
            format!(
                "Sub-network {id} (r {}, top-1 {:.2} % {}) from {}. {}",
                entry.config.r,
                entry.top1,
                top1_word(entry.top1_source),
                shown_path(&opts.lut),
                data.how
            ),
            "Frames above the dashed design-time latency miss a target set from it: DVFS and co-running work change the hardware after design time.".into(),
            format!("Produced by `{}`; data in fig1.csv.", opts.command),
        ],
        panel_size: (720, 520),
    };
    figure.write(&svg_path)?;
    Ok(vec![svg_path, csv_path])
}

fn top1_word(source: Top1Source) -> &'static str {
    match source {
        Top1Source::Measured => "measured",
        Top1Source::Predicted => "predicted",
    }
}

fn device(platform: Platform) -> &'static str {
    match platform {
        Platform::Sim => "the simulated Jetson Xavier NX",
        Platform::Host => "this machine",
        Platform::Jetson => "this board",
    }
}

/// The simulator's mean and 99th percentile frame latency for every operating point and share.
fn simulated(opts: &Options, lut: &DesignLut) -> Result<Data, FigureError> {
    let entry = middle_of_front(lut, Unit::Gpu)
        .or_else(|| middle_of_front(lut, Unit::Cpu))
        .ok_or_else(|| no_unit(opts, Unit::Gpu))?;
    let (mut rows, mut design_ms) = (Vec::new(), Vec::new());
    for unit in Unit::ALL {
        let points = operating_points(unit);
        let top = points[points.len() - 1];
        let mut board = Board::new(lut, &[(unit, 1000.0)], operating_points(Unit::Gpu)[0], opts.seed);
        let noise = board.noise();
        let Some(alone) = board.nominal_ms(entry, unit, top) else { continue };
        // What `cargo xtask profile` would have measured: the mean frame, alone, at the top clock.
        design_ms.push((unit, alone * noise.mean()));
        for &khz in points {
            let nominal = board.nominal_ms(entry, unit, khz).unwrap_or(alone);
            for share in SIM_SHARES {
                board.set_share(unit, share);
                let stretch = board.stretch(0);
                rows.push(Row {
                    unit,
                    clock_khz: khz,
                    load: (share * 100.0).round(),
                    mean_ms: nominal * noise.mean() * stretch,
                    spread_ms: nominal * noise.quantile(0.99) * stretch,
                });
            }
        }
    }
    Ok(Data {
        entry,
        rows,
        design_ms,
        load_desc: "share of the unit taken by co-running applications (%)",
        spread_desc: "99th percentile frame latency in ms",
        how: "Latency: the simulator's mean frame (hal-sim model: per-op table sums calibrated on Dynamic-OFA's measurements, scaled by 1/f, stretched by 1/(1 - share)).".into(),
    })
}

/// Time the sub-network on the CPU engine with 0 to two-per-core busy threads beside it.
fn timed(opts: &Options, lut: &DesignLut) -> Result<Data, FigureError> {
    let platform_err = |reason: String| FigureError::Platform { platform: opts.platform.name(), reason };
    let entry = middle_of_front(lut, Unit::Cpu)
        .or_else(|| middle_of_front(lut, Unit::Gpu))
        .ok_or_else(|| no_unit(opts, Unit::Cpu))?;
    let config: SubnetConfig = lut.entries()[entry].config;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // On a board the clock is pinned; dropping the control restores the governor's settings.
    let mut cpufreq = match opts.platform {
        Platform::Jetson => {
            let cpu = LinuxPlatform::host().cpu.map_err(|e| platform_err(e.to_string()))?;
            cpu.dvfs().map_err(|e| platform_err(format!("{e} (CPU clocks cannot be pinned)")))?;
            Some(cpu)
        }
        _ => None,
    };
    let clocks: Vec<u32> = match &cpufreq {
        Some(cpu) => spread(cpu.operating_points(), BOARD_CPU_CLOCKS),
        None => vec![0],
    };
    if clocks.is_empty() {
        return Err(platform_err("cpufreq lists no operating points to pin".into()));
    }
    let weights = SupernetWeights::seeded(Supernet::W1_2, DEFAULT_SEED);
    let mut engine = CpuEngine::new(weights);
    let contention = Contention::new((0..2 * cores).map(spin).collect())
        .map_err(|e| platform_err(format!("cannot start busy threads: {e}")))?;
    let params = ProfileParams { warmup: 2, reps: opts.reps.max(2) };
    let mut rows = Vec::new();
    for &khz in &clocks {
        if let Some(cpu) = cpufreq.as_mut() {
            cpu.set_khz(khz).map_err(|e| platform_err(format!("cannot pin the CPU at {khz} kHz: {e}")))?;
        }
        for busy in 0..=2 * cores {
            contention.set(busy);
            // Let the busy threads get going before the first timed frame.
            std::thread::sleep(Duration::from_millis(50));
            let m = measure(&mut engine, &config, &params, &|| {})?;
            rows.push(Row {
                unit: Unit::Cpu,
                clock_khz: khz,
                load: busy as f64,
                mean_ms: m.latency.mean_ms,
                spread_ms: m.latency.std_ms,
            });
        }
        contention.set(0);
    }
    drop(cpufreq);
    // Design time times a sub-network alone at the highest clock: the first row.
    let design = rows.first().map_or(f64::NAN, |r| r.mean_ms);
    Ok(Data {
        entry,
        rows,
        design_ms: vec![(Unit::Cpu, design)],
        load_desc: "busy contention threads beside the model",
        spread_desc: "standard deviation of the timed frames in ms",
        how: format!(
            "Latency: mean of {} timed frames on dynofa's CPU engine ({} threads, seeded weights) beside the built-in contention generator{}.",
            params.reps,
            engine.threads(),
            if clocks == [0] { ", clocks left to the governor" } else { ", CPU clocks pinned through cpufreq" }
        ),
    })
}

/// `n` operating points spread over `points` (ascending), highest first.
fn spread(points: &[u32], n: usize) -> Vec<u32> {
    let Some(last) = points.len().checked_sub(1) else { return Vec::new() };
    let n = n.clamp(1, points.len());
    let mut out: Vec<u32> = (0..n).map(|i| points[last - if n == 1 { 0 } else { i * last / (n - 1) }]).collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_clocks_start_at_the_top_and_reach_the_bottom() {
        assert_eq!(spread(&[1, 2, 3, 4, 5, 6, 7], 4), vec![7, 5, 3, 1]);
        assert_eq!(spread(&[1, 2], 4), vec![2, 1]);
        assert_eq!(spread(&[9], 4), vec![9]);
        assert_eq!(spread(&[], 4), Vec::<u32>::new());
    }
}
