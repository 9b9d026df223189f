//! Figures 4 and 5: the Pareto set's top-1 against latency and against MACs beside published
//! networks, and the paper's headline comparison with AutoSlim-MNasNet computed the same way: the
//! speed-up at similar accuracy (the cheapest of our sub-networks at least as accurate as each of its
//! points) and the accuracy gain at similar cost (our most accurate sub-network at most as costly),
//! the best over its points ("up to").
//!
//! OFA's predictor runs 4.5 to 5.8 points above the top-1 Dynamic-OFA measured for its stored
//! sub-networks, so the comparison uses the predicted top-1 calibrated on those measured points (a
//! least-squares line through the published Dynamic-OFA rows); the predicted values are drawn too.
//! A latency comparison needs published points timed on the figure's device: where the published
//! points have none, it says so rather than mixing devices.

use std::fmt;
use std::path::PathBuf;

use dynofa_core::lut::{Top1Source, Unit};
use dynofa_core::predictor::SUPERNET;
use dynofa_hal_sim::board::Board;
use dynofa_hal_sim::model::operating_points;
use plotters::prelude::SeriesLabelPosition;

use super::chart::{Axis, COLORS, Figure, Panel, Series, Style};
use super::published::{Kind, Point};
use super::{FigureError, Options, Platform, csv_header, lut_point, shown_path, write};
use crate::design::lutgen::DesignLut;
use crate::design::predictor::PredictorWeights;
use crate::design::profile::agreement;

/// The family the headline compares with.
pub const BASELINE: &str = "AutoSlim-MNasNet";
/// The family whose measured points calibrate the predictor.
const CALIBRATION: &str = "Dynamic-OFA";
/// What the paper reports, for reference beside what dynofa computes.
pub const PAPER_CLAIM: &str = "the paper reports up to 2.4x (GPU) and 3.5x (CPU) faster at similar top-1, or 5.1 % (GPU) and 3.8 % (CPU) higher top-1 at similar latency, on a Jetson Xavier NX (Lou et al., CVPR workshops 2021, abstract)";

/// One comparison with the baseline on one cost axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The cost axis, e.g. `MACs` or `latency on xavier-nx-gpu`.
    pub axis: String,
    /// Best cost ratio baseline / ours at no lower top-1, with the points compared.
    pub speedup: Option<(f64, String)>,
    /// Best top-1 gain in points at no higher cost, with the points compared.
    pub gain: Option<(f64, String)>,
    /// Why a comparison could not be made, if it could not.
    pub missing: Option<String>,
}

/// Every comparison, and how our top-1 was obtained.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Headline {
    /// One per cost axis.
    pub comparisons: Vec<Comparison>,
    /// How our top-1 values were obtained.
    pub top1_note: String,
}

impl Comparison {
    /// One line: what was found, or why nothing was.
    pub fn line(&self) -> String {
        match (&self.missing, &self.speedup, &self.gain) {
            (Some(why), _, _) => format!("{}: not computed: {why}", self.axis),
            (None, s, g) => {
                let s = s.as_ref().map_or("none at similar top-1".into(), |(x, d)| format!("{x:.2}x ({d})"));
                let g = g.as_ref().map_or("none at similar cost".into(), |(x, d)| format!("{x:+.2} points ({d})"));
                format!("{}: up to {s} cheaper at similar top-1; up to {g} at similar cost", self.axis)
            }
        }
    }
}

impl fmt::Display for Headline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "headline comparison with {BASELINE} ({})", self.top1_note)?;
        for c in &self.comparisons {
            writeln!(f, "  {}", c.line())?;
        }
        write!(f, "  for reference, {PAPER_CLAIM}")
    }
}

/// One of our sub-networks on one axis.
#[derive(Debug, Clone, Copy)]
struct Ours {
    cost: f64,
    predicted: f64,
    top1: f64,
    index: usize,
}

/// Compare our points with the baseline's (cost, top-1, name) on one axis.
fn compare(axis: &str, ours: &[Ours], baseline: &[(f64, f64, &str)], unit: &str) -> Comparison {
    let mut speedup: Option<(f64, String)> = None;
    let mut gain: Option<(f64, String)> = None;
    for &(cost, top1, name) in baseline {
        let cheapest = ours.iter().filter(|o| o.top1 >= top1).min_by(|a, b| a.cost.total_cmp(&b.cost));
        if let Some(o) = cheapest {
            let x = cost / o.cost;
            if speedup.as_ref().is_none_or(|s| x > s.0) {
                let d = format!("{name} {top1:.1} % at {cost:.1} {unit} vs {:.1} % at {:.1} {unit}", o.top1, o.cost);
                speedup = Some((x, d));
            }
        }
        let best = ours.iter().filter(|o| o.cost <= cost).max_by(|a, b| a.top1.total_cmp(&b.top1));
        if let Some(o) = best {
            let x = o.top1 - top1;
            if gain.as_ref().is_none_or(|g| x > g.0) {
                let d = format!("{:.1} % at {:.1} {unit} vs {name} {top1:.1} % at {cost:.1} {unit}", o.top1, o.cost);
                gain = Some((x, d));
            }
        }
    }
    Comparison { axis: axis.into(), speedup, gain, missing: None }
}

/// Least-squares calibration of the predictor on the published points that carry a config.
fn calibration(published: &[Point], weights: &PredictorWeights) -> Result<Option<(f64, f64, String)>, FigureError> {
    let p = weights.predictor();
    let mut pred = Vec::new();
    let mut meas = Vec::new();
    for point in published.iter().filter(|p| p.family == CALIBRATION) {
        if let Some(c) = &point.config {
            pred.push(f64::from(p.predict(c).map_err(crate::design::DesignError::from)?));
            meas.push(point.top1_pct);
        }
    }
    if pred.len() < 2 {
        return Ok(None);
    }
    let a = agreement(&pred, &meas);
    let note = format!(
        "our top-1: OFA's prediction calibrated as measured = {:.3} x predicted {:+.2} on {} measured {CALIBRATION} sub-networks (error {:.2} %)",
        a.slope, a.intercept, a.n, a.fit_mape_pct
    );
    Ok(Some((a.slope, a.intercept, note)))
}

/// Our latency for entry `i` on `unit` on the figure's axis: the simulator's calibrated noise-free
/// latency at the top clock (what its calibration fits to measured means), else the LUT's.
fn latency(opts: &Options, lut: &DesignLut, board: Option<&Board>, i: usize, unit: Unit) -> Option<f64> {
    match (opts.platform, board) {
        (Platform::Sim, Some(b)) => {
            let points = operating_points(unit);
            b.nominal_ms(i, unit, points[points.len() - 1])
        }
        _ => lut.entries()[i].mean_ms(lut_point(lut, unit)?).map(f64::from),
    }
}

/// The device key of the figure's latency axis for a unit.
fn device_key(platform: Platform, unit: Unit) -> String {
    match platform {
        Platform::Sim => format!("xavier-nx-{unit}"),
        other => format!("{}-{unit}", other.name()),
    }
}

fn family_style(i: usize) -> (Style, plotters::style::RGBColor) {
    const STYLES: [Style; 4] = [Style::Triangles, Style::Crosses, Style::Points, Style::Hollow];
    (STYLES[i % STYLES.len()], COLORS[(i + 2) % COLORS.len()])
}

/// Our series (calibrated, through a line on a front; predicted as hollow markers) and the published families' on one axis.
fn series(ours: &[Ours], calibrated: bool, line: bool, published: &[(String, Vec<(f64, f64)>)]) -> Vec<Series> {
    let mut front: Vec<Ours> = ours.to_vec();
    front.sort_by(|a, b| a.cost.total_cmp(&b.cost));
    let mut out = Vec::new();
    if calibrated {
        out.push(Series {
            label: "dynofa Pareto set, predicted top-1".into(),
            color: COLORS[1],
            style: Style::Hollow,
            points: front.iter().map(|o| (o.cost, o.predicted)).collect(),
        });
    }
    out.push(Series {
        label: if calibrated {
            "dynofa Pareto set, top-1 calibrated on measured sub-networks".into()
        } else {
            "dynofa Pareto set".into()
        },
        color: COLORS[1],
        style: if line { Style::LinePoints } else { Style::Points },
        points: front.iter().map(|o| (o.cost, o.top1)).collect(),
    });
    for (i, (label, points)) in published.iter().enumerate() {
        let (style, color) = family_style(i);
        out.push(Series { label: label.clone(), color, style, points: points.clone() });
    }
    out
}

/// Published points grouped by family, on the axis `value` reads (points without one are left out).
fn families(published: &[Point], value: impl Fn(&Point) -> Option<f64>) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for p in published {
        let Some(x) = value(p) else { continue };
        let label = format!("{} ({}, published)", p.family, if p.kind == Kind::Dynamic { "dynamic" } else { "static" });
        match out.iter_mut().find(|(l, _)| *l == label) {
            Some((_, pts)) => pts.push((x, p.top1_pct)),
            None => out.push((label, vec![(x, p.top1_pct)])),
        }
    }
    out
}

fn baseline_on(published: &[Point], value: impl Fn(&Point) -> Option<f64>) -> Vec<(f64, f64, &str)> {
    published
        .iter()
        .filter(|p| p.family == BASELINE)
        .filter_map(|p| Some((value(p)?, p.top1_pct, p.network.as_str())))
        .collect()
}

pub(super) fn figures(
    opts: &Options,
    lut: &DesignLut,
    published: &[Point],
) -> Result<(Vec<PathBuf>, Headline), FigureError> {
    let weights = PredictorWeights::embedded()?;
    let cal = calibration(published, &weights)?;
    let top1_of = |i: usize| {
        let e = &lut.entries()[i];
        let predicted = f64::from(e.top1);
        match (&cal, e.top1_source) {
            (Some((a, b, _)), Top1Source::Predicted) => (predicted, a * predicted + b),
            _ => (predicted, predicted),
        }
    };
    let calibrated = cal.is_some() && lut.entries().iter().any(|e| e.top1_source == Top1Source::Predicted);
    let top1_note = match &cal {
        Some((_, _, note)) if calibrated => note.clone(),
        _ => "our top-1 as the LUT gives it".into(),
    };
    let board =
        (opts.platform == Platform::Sim).then(|| Board::new(lut, &[], operating_points(Unit::Gpu)[0], opts.seed));
    let mut headline = Headline { comparisons: Vec::new(), top1_note };

    // Figure 4: one panel per unit the LUT has latencies for.
    let mut csv4 = csv_header(
        "Figure 4: top-1 against latency; dynofa rows are the LUT's Pareto set per unit (top1_pct calibrated where predicted_pct differs), published rows those timed on the panel's device",
        &format!("`{}` from {} and {}", opts.command, shown_path(&opts.lut), shown_path(&opts.published)),
        "panel_device,series,network,latency_ms,top1_pct,predicted_pct",
    );
    let mut panels = Vec::new();
    for unit in Unit::ALL {
        let Some(point) = lut_point(lut, unit) else { continue };
        let key = device_key(opts.platform, unit);
        let ours: Vec<Ours> = lut
            .pareto(point)
            .into_iter()
            .filter_map(|i| {
                let (predicted, top1) = top1_of(i);
                Some(Ours { cost: latency(opts, lut, board.as_ref(), i, unit)?, predicted, top1, index: i })
            })
            .collect();
        let on_device = |p: &Point| p.latency_ms.filter(|_| p.device_key == key);
        for o in &ours {
            let id = lut.entries()[o.index].config.id();
            csv4.push_str(&format!("{key},dynofa,{id},{:.3},{:.3},{:.3}\n", o.cost, o.top1, o.predicted));
        }
        for p in published.iter().filter(|p| on_device(p).is_some()) {
            let l = on_device(p).unwrap_or_default();
            csv4.push_str(&format!("{key},{},{},{l:.3},{:.3},\n", p.family, p.network, p.top1_pct));
        }
        let base = baseline_on(published, on_device);
        let axis = format!("latency on {key}");
        headline.comparisons.push(if base.is_empty() {
            Comparison {
                axis,
                speedup: None,
                gain: None,
                missing: Some(format!(
                    "no {BASELINE} latency on {key} in {} (add rows timed on that device)",
                    shown_path(&opts.published)
                )),
            }
        } else {
            compare(&axis, &ours, &base, "ms")
        });
        let desc = match opts.platform {
            Platform::Sim => format!("{unit} latency on the simulated Xavier NX, top clock, alone (ms)"),
            _ => format!("{unit} latency from the LUT (ms)"),
        };
        panels.push(Panel {
            title: format!("{unit}: published points timed on {key}"),
            x: Axis::linear(desc),
            y: Axis::linear("ImageNet top-1 (%)"),
            series: series(&ours, calibrated, true, &families(published, on_device)),
            legend: SeriesLabelPosition::LowerRight,
        });
    }
    if panels.is_empty() {
        return Err(FigureError::Lut {
            path: opts.lut.clone(),
            reason: "figure 4 needs latencies and the LUT has none".into(),
        });
    }
    let csv4_path = opts.out.join("fig4.csv");
    let svg4_path = opts.out.join("fig4.svg");
    write(&csv4_path, &csv4)?;
    let latency_lines: Vec<String> = headline.comparisons.iter().map(comparison_line).collect();
    let mut caption = vec![
        format!("dynofa: the Pareto set of {} per unit; {}.", shown_path(&opts.lut), headline.top1_note),
        format!(
            "Published points only where timed on the panel's device ({}; latencies on other devices are in fig5.csv, not comparable here).",
            shown_path(&opts.published)
        ),
    ];
    caption.extend(latency_lines);
    caption.push(format!("Produced by `{}`; data in fig4.csv.", opts.command));
    Figure {
        title: "Figure 4: top-1 against latency beside published networks".into(),
        panels,
        caption,
        panel_size: (720, 540),
    }
    .write(&svg4_path)?;

    // Figure 5: every LUT entry against MACs.
    let ours: Vec<Ours> = (0..lut.len())
        .map(|i| {
            let (predicted, top1) = top1_of(i);
            Ours { cost: SUPERNET.cost(&lut.entries()[i].config).macs as f64 / 1e6, predicted, top1, index: i }
        })
        .collect();
    let macs = |p: &Point| p.macs_m;
    let comparison = compare("MACs", &ours, &baseline_on(published, macs), "M MACs");
    let mut csv5 = csv_header(
        "Figure 5: top-1 against multiply-accumulates; dynofa rows are every LUT entry (top1_pct calibrated where predicted_pct differs), published rows every point with MACs; latency_ms and latency_device as published",
        &format!("`{}` from {} and {}", opts.command, shown_path(&opts.lut), shown_path(&opts.published)),
        "series,network,macs_m,top1_pct,predicted_pct,latency_ms,latency_device",
    );
    for o in &ours {
        let id = lut.entries()[o.index].config.id();
        csv5.push_str(&format!("dynofa,{id},{:.3},{:.3},{:.3},,\n", o.cost, o.top1, o.predicted));
    }
    for p in published.iter().filter(|p| p.macs_m.is_some()) {
        let l = p.latency_ms.map_or(String::new(), |l| format!("{l}"));
        csv5.push_str(&format!(
            "{},{},{},{},,{l},{}\n",
            p.family,
            p.network,
            p.macs_m.unwrap_or_default(),
            p.top1_pct,
            p.latency_device
        ));
    }
    let csv5_path = opts.out.join("fig5.csv");
    let svg5_path = opts.out.join("fig5.svg");
    write(&csv5_path, &csv5)?;
    let caption = vec![
        format!(
            "dynofa: every entry of {} (OFA w1.2 MACs as OFA counts them); {}.",
            shown_path(&opts.lut),
            headline.top1_note
        ),
        format!("Published: {} (top-1 on ImageNet; sources per point in the file).", shown_path(&opts.published)),
        comparison_line(&comparison),
        format!("For reference, {PAPER_CLAIM}."),
        format!("Produced by `{}`; data in fig5.csv.", opts.command),
    ];
    Figure {
        title: "Figure 5: top-1 against MACs beside published networks".into(),
        panels: vec![Panel {
            title: "ImageNet top-1 against multiply-accumulates".into(),
            x: Axis::linear("multiply-accumulates per image (millions)"),
            y: Axis::linear("ImageNet top-1 (%)"),
            series: series(&ours, calibrated, false, &families(published, macs)),
            legend: SeriesLabelPosition::LowerRight,
        }],
        caption,
        panel_size: (1100, 620),
    }
    .write(&svg5_path)?;
    headline.comparisons.push(comparison);
    Ok((vec![svg4_path, csv4_path, svg5_path, csv5_path], headline))
}

fn comparison_line(c: &Comparison) -> String {
    format!("vs {BASELINE}, {}", c.line())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(cost: f64, top1: f64) -> Ours {
        Ours { cost, predicted: top1 + 5.0, top1, index: 0 }
    }

    #[test]
    fn speedup_at_similar_accuracy_and_gain_at_similar_cost() {
        let ours = [o(100.0, 74.0), o(200.0, 76.0), o(400.0, 78.0)];
        let base = [(300.0, 75.0, "b300"), (500.0, 76.5, "b500"), (50.0, 70.0, "b50")];
        let c = compare("MACs", &ours, &base, "M");
        // b500 (76.5 %) needs our 400 (78 %): 1.25x; b300 (75 %) needs our 200: 1.5x; b50: our 100, 0.5x.
        let (s, d) = c.speedup.unwrap();
        assert!((s - 1.5).abs() < 1e-12 && d.starts_with("b300 75.0 %"), "{s} {d}");
        // At 300 we have 76 % (+1.0); at 500, 78 % (+1.5); at 50 nothing.
        let (g, d) = c.gain.unwrap();
        assert!((g - 1.5).abs() < 1e-12 && d.contains("vs b500"), "{g} {d}");
        let none = compare("MACs", &ours, &[(10.0, 90.0, "x")], "M");
        assert_eq!((none.speedup, none.gain), (None, None));
    }
}
