//! A run as an SVG: one panel per model (latency and target in ms, the chosen sub-network's top-1
//! in %), and one for the board (each unit's clock in MHz and the share other applications take).

use std::ops::Range;
use std::path::Path;

use dynofa_core::lut::Unit;
use plotters::chart::DualCoordChartContext;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::SimError;
use crate::sim::{FrameRow, Run};

const PANEL_HEIGHT: u32 = 300;
const WIDTH: u32 = 1200;
const FONT: (&str, u32) = ("sans-serif", 16);

type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
type Coords = Cartesian2d<RangedCoordf64, RangedCoordf64>;
type Chart<'a, 'b> = DualCoordChartContext<'a, SVGBackend<'b>, Coords, Coords>;

/// Draw `run` into the SVG file `path`.
pub fn plot(run: &Run, path: &Path) -> Result<(), SimError> {
    draw(run, path).map_err(|reason| SimError::Plot { path: path.into(), reason })
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn step(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        if let Some(&(_, prev)) = out.last() {
            out.push((x, prev));
        }
        out.push((x, y));
    }
    out
}

/// The y axis a series is drawn against.
#[derive(Clone, Copy)]
enum Axis {
    Left,
    Right,
}

/// A panel over `0..end_s` seconds with a left and a right y axis, each a range and a description.
fn panel<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    end_s: f64,
    (left, left_desc): (Range<f64>, &str),
    (right, right_desc): (Range<f64>, &str),
) -> Result<Chart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, FONT)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0.0..end_s, left)
        .map_err(err)?
        .set_secondary_coord(0.0..end_s, right);
    chart.configure_mesh().x_desc("time (s)").y_desc(left_desc).label_style(FONT).draw().map_err(err)?;
    chart.configure_secondary_axes().y_desc(right_desc).label_style(FONT).draw().map_err(err)?;
    Ok(chart)
}

/// Draw one line against `axis` and give it a legend entry named `label`.
fn series(
    chart: &mut Chart<'_, '_>,
    axis: Axis,
    points: impl IntoIterator<Item = (f64, f64)>,
    style: impl Into<ShapeStyle>,
    label: impl Into<String>,
) -> Result<(), String> {
    let style = style.into();
    let line = LineSeries::new(points, style);
    let anno = match axis {
        Axis::Left => chart.draw_series(line),
        Axis::Right => chart.draw_secondary_series(line),
    }
    .map_err(err)?;
    // The swatch takes the line's colour, opaque and thin, so a faint line still reads in the legend.
    let (r, g, b) = style.color.rgb();
    anno.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(r, g, b)));
    Ok(())
}

/// The legend of every series drawn so far, in the panel's lower left.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(FONT)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

fn draw(run: &Run, path: &Path) -> Result<(), String> {
    let n = run.scenario.models.len();
    let root = SVGBackend::new(path, (WIDTH, PANEL_HEIGHT * (n as u32 + 1))).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((n + 1, 1));
    let end_s = run.scenario.duration_s;
    for (k, (area, def)) in panels.iter().zip(&run.scenario.models).enumerate() {
        let rows: Vec<&FrameRow> = run.frames.iter().filter(|f| f.model == k).collect();
        let y_max = rows.iter().map(|f| f.latency_ms.max(f64::from(f.target_ms))).fold(10.0, f64::max) * 1.1;
        let (t_lo, t_hi) = rows.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), f| {
            (lo.min(f64::from(f.top1)), hi.max(f64::from(f.top1)))
        });
        let caption = format!("{} / {}: {} on the {}", run.scenario.name, run.policy.name(), def.name, def.unit);
        let top1_desc = "top-1 of the chosen sub-network (%)";
        let mut chart = panel(
            area,
            &caption,
            end_s,
            (0.0..y_max, "latency (ms)"),
            ((t_lo - 1.0).floor()..(t_hi + 1.0).ceil(), top1_desc),
        )?;
        let latency = rows.iter().map(|f| (f.t_ms * 1e-3, f.latency_ms));
        series(&mut chart, Axis::Left, latency, BLUE.mix(0.6), "frame latency (ms)")?;
        let target = step(rows.iter().map(|f| (f.t_ms * 1e-3, f64::from(f.target_ms))));
        series(&mut chart, Axis::Left, target, RED.stroke_width(2), "target (ms)")?;
        let top1 = step(rows.iter().map(|f| (f.t_ms * 1e-3, f64::from(f.top1))));
        series(&mut chart, Axis::Right, top1, GREEN.stroke_width(2), top1_desc)?;
        legend(&mut chart)?;
    }
    board_panel(run, &panels[n], end_s)
}

fn board_panel(run: &Run, area: &Area<'_>, end_s: f64) -> Result<(), String> {
    let mhz_max = run.frames.iter().map(|f| f.clock_mhz).fold(1200.0, f64::max);
    let mut chart = panel(
        area,
        "board: clocks and the share other applications take",
        end_s,
        (0.0..mhz_max * 1.1, "clock (MHz)"),
        (0.0..100.0, "share taken by others (%)"),
    )?;
    for (unit, color) in [(Unit::Gpu, MAGENTA), (Unit::Cpu, CYAN)] {
        let rows: Vec<&FrameRow> = run.frames.iter().filter(|f| run.scenario.models[f.model].unit == unit).collect();
        if rows.is_empty() {
            continue;
        }
        // A clock of 0 is one nobody could read (a machine without cpufreq): no line rather than a false one.
        if rows.iter().any(|f| f.clock_mhz > 0.0) {
            let clock = step(rows.iter().map(|f| (f.t_ms * 1e-3, f.clock_mhz)));
            series(&mut chart, Axis::Left, clock, color.stroke_width(2), format!("{unit} clock (MHz)"))?;
        }
        let share = step(rows.iter().map(|f| (f.t_ms * 1e-3, 100.0 * f.share)));
        series(&mut chart, Axis::Right, share, BLACK.mix(0.7), format!("{unit} share taken by others (%)"))?;
    }
    legend(&mut chart)
}
