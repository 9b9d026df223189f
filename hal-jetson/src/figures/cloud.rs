//! Figure 3: a cloud of random sub-networks, OFA's predicted top-1 against their latency from the
//! per-op tables, with the Pareto front of the LUT the search wrote. Where the LUT's latencies are
//! not the table sums (a LUT profiled on a machine), the cloud's table sums are mapped onto the
//! LUT's scale by a least-squares fit over the LUT's own entries, and the caption says how well it fits.

use std::path::{Path, PathBuf};

use dynofa_core::SubnetConfig;
use dynofa_core::lut::Unit;
use dynofa_core::predictor::SUPERNET;
use plotters::prelude::SeriesLabelPosition;

use super::chart::{Axis, COLORS, Figure, Panel, Series, Style};
use super::{FigureError, Options, csv_header, lut_point, shown_path, write};
use crate::design::DesignError;
use crate::design::latency::OpTables;
use crate::design::lutgen::DesignLut;
use crate::design::predictor::{BatchPredictor, PredictorWeights};
use crate::design::profile::agreement;
use crate::design::search::{SearchParams, predictor_resolutions, random_configs};

/// Random stream of the cloud of unit `u` (apart from the search's streams).
const CLOUD_STREAM: u64 = 1 << 40;

/// The columns of `fig3.csv`.
pub const COLUMNS: &str = "unit,kind,latency_ms,top1_pct,table_sum_ms,subnet";

/// One unit's cloud and front.
struct UnitCloud {
    unit: Unit,
    tables: PathBuf,
    /// (latency on the LUT's scale, top-1, table sum, config).
    cloud: Vec<(f64, f32, f64, SubnetConfig)>,
    front: Vec<(f64, f32, f64, SubnetConfig)>,
    fit: String,
}

fn tables_of(opts: &Options, unit: Unit) -> Option<&Path> {
    match unit {
        Unit::Gpu => opts.gpu_tables.as_deref(),
        Unit::Cpu => opts.cpu_tables.as_deref(),
    }
}

fn unit_cloud(
    opts: &Options,
    lut: &DesignLut,
    unit: Unit,
    dir: &Path,
    weights: &PredictorWeights,
) -> Result<Option<UnitCloud>, FigureError> {
    let Some(point) = lut_point(lut, unit) else { return Ok(None) };
    let tables = OpTables::load_dir(dir)?;
    let params = SearchParams {
        resolutions: predictor_resolutions(&tables.resolutions()),
        seed: opts.seed,
        ..SearchParams::default()
    };
    let model = tables.compile(&SUPERNET, &params.resolutions)?;
    let mut front = Vec::new();
    for i in lut.pareto(point) {
        let e = &lut.entries()[i];
        let sum = tables.network(&SUPERNET, &e.config)?.mean_ms;
        let latency = e.mean_ms(point).map_or(sum, f64::from);
        front.push((latency, e.top1, sum, e.config));
    }
    // Map table sums onto the LUT's scale (the identity, up to rounding, for a LUT of table sums).
    let (sums, lats): (Vec<f64>, Vec<f64>) = front.iter().map(|f| (f.2, f.0)).unzip();
    let (slope, intercept, fit) = if front.len() >= 2 {
        let a = agreement(&sums, &lats);
        (
            a.slope,
            a.intercept,
            format!(
                "LUT latency = {:.4} x table sum {:+.3} ms over its {} front entries (error {:.2} %)",
                a.slope, a.intercept, a.n, a.fit_mape_pct
            ),
        )
    } else {
        (1.0, 0.0, "LUT latency taken as the table sum".into())
    };
    let configs = random_configs(&params, CLOUD_STREAM + unit.index() as u64, opts.cloud);
    let predictor = weights.predictor();
    let mut top1 = Vec::with_capacity(configs.len());
    BatchPredictor::new(&predictor).predict(&configs, &mut top1).map_err(DesignError::from)?;
    let cloud = configs
        .iter()
        .zip(top1)
        .map(|(c, t)| {
            // Every drawn resolution was compiled, so the model covers every config.
            let sum = model.latency(c).unwrap_or(f64::NAN);
            (slope * sum + intercept, t, sum, *c)
        })
        .collect();
    Ok(Some(UnitCloud { unit, tables: dir.into(), cloud, front, fit }))
}

pub(super) fn figure(opts: &Options, lut: &DesignLut) -> Result<Vec<PathBuf>, FigureError> {
    let weights = PredictorWeights::embedded()?;
    let mut units = Vec::new();
    for unit in Unit::ALL {
        if let Some(dir) = tables_of(opts, unit)
            && let Some(u) = unit_cloud(opts, lut, unit, dir, &weights)?
        {
            units.push(u);
        }
    }
    if units.is_empty() {
        return Err(FigureError::Lut {
            path: opts.lut.clone(),
            reason: "figure 3 needs per-op tables of a unit the LUT has latencies for: pass --gpu-tables or --cpu-tables (OFA format), or put the Dynamic-OFA reference data in ../shared/data/dynamic-ofa beside the workspace".into(),
        });
    }
    let csv_path = opts.out.join("fig3.csv");
    let svg_path = opts.out.join("fig3.svg");
    let mut csv = csv_header(
        &format!(
            "Figure 3: {} random sub-networks per unit (kind cloud) and the Pareto front of the LUT (kind front); top1_pct from OFA's accuracy predictor; latency_ms on the LUT's scale; table_sum_ms the per-op table sum",
            opts.cloud
        ),
        &format!(
            "`{}` from {}, tables {}; seed {}",
            opts.command,
            shown_path(&opts.lut),
            units.iter().map(|u| format!("{}={}", u.unit, shown_path(&u.tables))).collect::<Vec<_>>().join(" "),
            opts.seed
        ),
        COLUMNS,
    );
    for u in &units {
        for (kind, rows) in [("cloud", &u.cloud), ("front", &u.front)] {
            for (lat, top1, sum, c) in rows.iter() {
                csv.push_str(&format!("{},{kind},{lat:.3},{top1:.3},{sum:.3},{}\n", u.unit, c.id()));
            }
        }
    }
    write(&csv_path, &csv)?;

    let panels = units
        .iter()
        .map(|u| {
            let points = |rows: &[(f64, f32, f64, SubnetConfig)]| rows.iter().map(|r| (r.0, f64::from(r.1))).collect();
            Panel {
                title: format!("{}: {} random sub-networks and the search's front", u.unit, u.cloud.len()),
                x: Axis::linear(format!("{} latency from the per-op tables (ms)", u.unit)),
                y: Axis::linear("predicted ImageNet top-1 (%)"),
                series: vec![
                    Series {
                        label: format!("random sub-networks ({})", u.cloud.len()),
                        color: COLORS[0],
                        style: Style::Dots,
                        points: points(&u.cloud),
                    },
                    Series {
                        label: format!("Pareto front of the LUT ({} sub-networks)", u.front.len()),
                        color: COLORS[1],
                        style: Style::LinePoints,
                        points: points(&u.front),
                    },
                ],
                legend: SeriesLabelPosition::LowerRight,
            }
        })
        .collect();
    let mut caption = vec![format!(
        "Top-1 from OFA's accuracy predictor (MIT, Cai et al.); latency summed over per-op tables; front: the LUT {} written by the evolutionary search.",
        shown_path(&opts.lut)
    )];
    caption.extend(units.iter().map(|u| format!("{}: tables {}; {}.", u.unit, shown_path(&u.tables), u.fit)));
    caption.push(format!("Produced by `{}`; data in fig3.csv.", opts.command));
    let figure = Figure {
        title: "Figure 3: the search space and the Pareto front the search found".into(),
        panels,
        caption,
        panel_size: (720, 520),
    };
    figure.write(&svg_path)?;
    Ok(vec![svg_path, csv_path])
}
