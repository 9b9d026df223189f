//! A run as an SVG: one panel per model (latency and target in ms, the chosen sub-network's top-1
//! in %), and one for the board (each unit's clock in MHz and the share other applications take).

use std::path::Path;

use dynofa_core::lut::Unit;
use plotters::prelude::*;

use crate::SimError;
use crate::sim::{FrameRow, Run};

const PANEL_HEIGHT: u32 = 300;
const WIDTH: u32 = 1200;
const FONT: (&str, u32) = ("sans-serif", 16);

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
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} / {}: {} on the {}", run.scenario.name, run.policy.name(), def.name, def.unit), FONT)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0.0..end_s, 0.0..y_max)
            .map_err(err)?
            .set_secondary_coord(0.0..end_s, (t_lo - 1.0).floor()..(t_hi + 1.0).ceil());
        chart.configure_mesh().x_desc("time (s)").y_desc("latency (ms)").label_style(FONT).draw().map_err(err)?;
        chart
            .configure_secondary_axes()
            .y_desc("top-1 of the chosen sub-network (%)")
            .label_style(FONT)
            .draw()
            .map_err(err)?;
        let latency = rows.iter().map(|f| (f.t_ms * 1e-3, f.latency_ms));
        chart
            .draw_series(LineSeries::new(latency, BLUE.mix(0.6)))
            .map_err(err)?
            .label("frame latency (ms)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        let target = step(rows.iter().map(|f| (f.t_ms * 1e-3, f64::from(f.target_ms))));
        chart
            .draw_series(LineSeries::new(target, RED.stroke_width(2)))
            .map_err(err)?
            .label("target (ms)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        let top1 = step(rows.iter().map(|f| (f.t_ms * 1e-3, f64::from(f.top1))));
        chart
            .draw_secondary_series(LineSeries::new(top1, GREEN.stroke_width(2)))
            .map_err(err)?
            .label("top-1 of the chosen sub-network (%)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font(FONT)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    board_panel(run, &panels[n], end_s)
}

fn board_panel(
    run: &Run,
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    end_s: f64,
) -> Result<(), String> {
    let mhz_max = run.frames.iter().map(|f| f.clock_mhz).fold(1200.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("board: clocks and the share other applications take", FONT)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0.0..end_s, 0.0..mhz_max * 1.1)
        .map_err(err)?
        .set_secondary_coord(0.0..end_s, 0.0..100.0);
    chart.configure_mesh().x_desc("time (s)").y_desc("clock (MHz)").label_style(FONT).draw().map_err(err)?;
    chart.configure_secondary_axes().y_desc("share taken by others (%)").label_style(FONT).draw().map_err(err)?;
    for (unit, color) in [(Unit::Gpu, MAGENTA), (Unit::Cpu, CYAN)] {
        let rows: Vec<&FrameRow> = run.frames.iter().filter(|f| run.scenario.models[f.model].unit == unit).collect();
        if rows.is_empty() {
            continue;
        }
        // A clock of 0 is one nobody could read (a machine without cpufreq): no line rather than a false one.
        if rows.iter().any(|f| f.clock_mhz > 0.0) {
            let clock = step(rows.iter().map(|f| (f.t_ms * 1e-3, f.clock_mhz)));
            chart
                .draw_series(LineSeries::new(clock, color.stroke_width(2)))
                .map_err(err)?
                .label(format!("{unit} clock (MHz)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        let share = step(rows.iter().map(|f| (f.t_ms * 1e-3, 100.0 * f.share)));
        chart
            .draw_secondary_series(LineSeries::new(share, BLACK.mix(0.7)))
            .map_err(err)?
            .label(format!("{unit} share taken by others (%)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font(FONT)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}
