//! Drawing the figures: panels of series side by side under a title, with a caption underneath
//! saying what produced them. The caption is appended to the SVG text, so that plots drawn
//! elsewhere (the simulator's trace plot) get the same caption line.

use std::path::Path;

use dynofa_hal_sim::SimError;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::prelude::*;

use super::{FigureError, write};

const FONT: (&str, u32) = ("sans-serif", 15);
const TITLE_FONT: (&str, u32) = ("sans-serif", 20);
/// Height of one caption line in pixels.
const CAPTION_LINE: u32 = 18;
/// Width of an average caption character in pixels (13 px sans-serif), for wrapping.
const CAPTION_CHAR: u32 = 7;

/// Series colours, in order of use.
pub const COLORS: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(80, 80, 80),
];

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Small translucent dots (a cloud).
    Dots,
    /// Filled markers.
    Points,
    /// Hollow markers.
    Hollow,
    /// Triangles.
    Triangles,
    /// Crosses.
    Crosses,
    /// A line through filled markers.
    LinePoints,
    /// A dashed line.
    Dashed,
}

/// One series of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its legend entry.
    pub label: String,
    /// Its colour.
    pub color: RGBColor,
    /// How it is drawn.
    pub style: Style,
    /// Its points (x, y).
    pub points: Vec<(f64, f64)>,
}

/// An axis.
#[derive(Debug, Clone)]
pub struct Axis {
    /// Its label, with the unit.
    pub desc: String,
    /// Logarithmic.
    pub log: bool,
}

impl Axis {
    /// A linear axis.
    pub fn linear(desc: impl Into<String>) -> Self {
        Axis { desc: desc.into(), log: false }
    }

    /// A logarithmic axis.
    pub fn log(desc: impl Into<String>) -> Self {
        Axis { desc: desc.into(), log: true }
    }
}

/// One chart.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Its title.
    pub title: String,
    /// The x axis.
    pub x: Axis,
    /// The y axis.
    pub y: Axis,
    /// Its series, drawn in order.
    pub series: Vec<Series>,
    /// Where the legend goes.
    pub legend: SeriesLabelPosition,
}

/// A figure: panels side by side under a title, a caption underneath.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The title.
    pub title: String,
    /// The panels, left to right.
    pub panels: Vec<Panel>,
    /// The caption lines.
    pub caption: Vec<String>,
    /// Size of one panel in pixels.
    pub panel_size: (u32, u32),
}

impl Figure {
    /// Draw the figure as SVG into `path`.
    pub fn write(&self, path: &Path) -> Result<(), FigureError> {
        let plot_err = |reason: String| FigureError::Sim(SimError::Plot { path: path.into(), reason });
        let svg = self.render().map_err(plot_err)?;
        write(path, &add_caption(&svg, &self.caption).map_err(plot_err)?)
    }

    fn render(&self) -> Result<String, String> {
        let mut svg = String::new();
        let size = (self.panel_size.0 * self.panels.len().max(1) as u32, self.panel_size.1 + 40);
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            root.fill(&WHITE).map_err(err)?;
            let body = root.titled(&self.title, TITLE_FONT).map_err(err)?;
            for (area, panel) in body.split_evenly((1, self.panels.len().max(1))).iter().zip(&self.panels) {
                draw_panel(area, panel)?;
            }
            root.present().map_err(err)?;
        }
        Ok(svg)
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The span of `values` with some room around it (a log axis keeps to positive values).
fn span(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        (lo / 1.25, hi * 1.25)
    } else {
        let pad = ((hi - lo) * 0.06).max(hi.abs() * 0.02).max(1e-3);
        (lo - pad, hi + pad)
    }
}

/// A tick label: no decimals where none are needed.
fn tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Whether a log axis is worth it: the values span more than a factor of 8.
fn worth_log(axis: &Axis, (lo, hi): (f64, f64)) -> bool {
    axis.log && hi / lo > 8.0
}

fn draw_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, panel: &Panel) -> Result<(), String> {
    let points = || panel.series.iter().flat_map(|s| s.points.iter().copied());
    let x_log = worth_log(&panel.x, span(points().map(|p| p.0), true));
    let y_log = worth_log(&panel.y, span(points().map(|p| p.1), true));
    let (x0, x1) = span(points().map(|p| p.0), x_log);
    let (y0, y1) = span(points().map(|p| p.1), y_log);
    let mut builder = ChartBuilder::on(area);
    builder.caption(&panel.title, FONT).margin(14).x_label_area_size(48).y_label_area_size(70);
    let desc = |axis: &Axis, log: bool| if log { format!("{} [log scale]", axis.desc) } else { axis.desc.clone() };
    let descs = (desc(&panel.x, x_log), desc(&panel.y, y_log));
    // Integer data over a short range (counts) gets one label per integer, no fractions.
    let whole = points().all(|p| p.0 == p.0.round()) && x1 - x0 <= 21.0;
    let x_labels = if whole { (x1 - x0).floor() as usize + 1 } else { 10 };
    match (x_log, y_log) {
        (false, false) => fill(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?, panel, descs, x_labels),
        (false, true) => {
            fill(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).map_err(err)?, panel, descs, x_labels)
        }
        (true, false) => {
            fill(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1).map_err(err)?, panel, descs, x_labels)
        }
        (true, true) => fill(
            builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()).map_err(err)?,
            panel,
            descs,
            x_labels,
        ),
    }
}

fn fill<'a, X, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    panel: &Panel,
    (x_desc, y_desc): (String, String),
    x_labels: usize,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .x_labels(x_labels)
        .y_labels(12)
        .label_style(FONT)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    for s in &panel.series {
        let c = s.color;
        let pts = s.points.clone();
        let anno = match s.style {
            Style::Dots => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 2, c.mix(0.35).filled()))),
            Style::Points => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 5, c.filled()))),
            Style::Hollow => chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 5, c.stroke_width(2)))),
            Style::Triangles => chart.draw_series(pts.into_iter().map(|p| TriangleMarker::new(p, 6, c.filled()))),
            Style::Crosses => chart.draw_series(pts.into_iter().map(|p| Cross::new(p, 5, c.stroke_width(2)))),
            Style::LinePoints => {
                chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2))).map_err(err)?;
                chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            }
            Style::Dashed => chart.draw_series(DashedLineSeries::new(pts, 8, 5, c.stroke_width(2))),
        }
        .map_err(err)?;
        let m = legend_mark(s.style, c);
        anno.label(s.label.as_str()).legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (m.line, 0)], c.stroke_width(2))
                + Circle::new((10, 0), m.circle.0, m.circle.1)
                + TriangleMarker::new((10, 0), m.triangle, c.filled())
                + Cross::new((10, 0), m.cross, c.stroke_width(2))
        });
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .label_font(FONT)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The legend's sample of a series: a line of some length and one marker (the others of size 0).
struct LegendMark {
    line: i32,
    circle: (u32, ShapeStyle),
    triangle: u32,
    cross: u32,
}

fn legend_mark(style: Style, c: RGBColor) -> LegendMark {
    let none = LegendMark { line: 0, circle: (0, c.filled()), triangle: 0, cross: 0 };
    match style {
        Style::Dots => LegendMark { circle: (3, c.mix(0.5).filled()), ..none },
        Style::Points => LegendMark { circle: (5, c.filled()), ..none },
        Style::Hollow => LegendMark { circle: (5, c.stroke_width(2)), ..none },
        Style::Triangles => LegendMark { triangle: 6, ..none },
        Style::Crosses => LegendMark { cross: 5, ..none },
        Style::LinePoints => LegendMark { line: 20, circle: (4, c.filled()), ..none },
        Style::Dashed => LegendMark { line: 20, ..none },
    }
}

/// `svg` (as plotters writes it) made `lines.len()` caption lines taller, the lines written in the
/// new space at the bottom.
pub fn add_caption(svg: &str, lines: &[String]) -> Result<String, String> {
    let (width, _) = size_of(svg)?;
    let lines = wrap(lines, ((width.saturating_sub(24)) / CAPTION_CHAR) as usize);
    grow(svg, &lines)
}

/// Width and height of an SVG as plotters writes its root element.
fn size_of(svg: &str) -> Result<(u32, u32), String> {
    let open = &svg[..svg.find('>').ok_or("no <svg> element")?];
    let number = |attr: &str| -> Result<u32, String> {
        let start = open.find(attr).ok_or_else(|| format!("the <svg> element has no {attr}"))? + attr.len();
        let rest = &open[start..];
        let end = rest.find('"').ok_or("unterminated attribute")?;
        rest[..end].trim().parse().map_err(|_| format!("{attr}{} is not a number", &rest[..end]))
    };
    Ok((number("width=\"")?, number("height=\"")?))
}

/// Lines broken at spaces so that none is longer than `max` characters.
fn wrap(lines: &[String], max: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        let mut current = String::new();
        for word in line.split(' ') {
            if !current.is_empty() && current.len() + 1 + word.len() > max.max(20) {
                out.push(std::mem::take(&mut current));
                current.push_str("    ");
            } else if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push(current);
    }
    out
}

fn grow(svg: &str, lines: &[String]) -> Result<String, String> {
    let open_end = svg.find('>').ok_or("no <svg> element")?;
    let open = &svg[..open_end];
    let (width, height) = size_of(svg)?;
    let extra = CAPTION_LINE * lines.len() as u32 + if lines.is_empty() { 0 } else { 10 };
    let new_height = height + extra;
    let new_open = open.replacen(&format!("height=\"{height}\""), &format!("height=\"{new_height}\""), 1).replacen(
        &format!("viewBox=\"0 0 {width} {height}\""),
        &format!("viewBox=\"0 0 {width} {new_height}\""),
        1,
    );
    let close = svg.rfind("</svg>").ok_or("no </svg>")?;
    let mut out = String::with_capacity(svg.len() + 200 * lines.len());
    out.push_str(&new_open);
    out.push_str(&svg[open_end..close]);
    out.push_str(&format!("<rect x=\"0\" y=\"{height}\" width=\"{width}\" height=\"{extra}\" fill=\"#FFFFFF\"/>\n"));
    for (i, line) in lines.iter().enumerate() {
        let y = height + 4 + CAPTION_LINE * (i as u32 + 1);
        out.push_str(&format!(
            "<text x=\"12\" y=\"{y}\" font-family=\"sans-serif\" font-size=\"13\" fill=\"#333333\">{}</text>\n",
            escape(line)
        ));
    }
    out.push_str(&svg[close..]);
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_grow_the_svg_and_escape_text() {
        let svg = "<svg width=\"100\" height=\"50\" viewBox=\"0 0 100 50\" xmlns=\"http://www.w3.org/2000/svg\">\n<rect/>\n</svg>\n";
        let out = add_caption(svg, &["a < b & c".into(), "two".into()]).unwrap();
        assert_eq!(wrap(&["aaaa bbbb cccc dddd eeee ffff".into()], 20), vec!["aaaa bbbb cccc dddd", "    eeee ffff"]);
        assert!(out.starts_with("<svg width=\"100\" height=\"96\" viewBox=\"0 0 100 96\""), "{out}");
        assert!(out.contains(">a &lt; b &amp; c</text>") && out.contains(">two</text>") && out.ends_with("</svg>\n"));
        assert!(add_caption("<svg>", &[]).is_err());
    }

    #[test]
    fn log_spans_skip_non_positive_values() {
        let (lo, hi) = span([0.0, 2.0, 8.0].into_iter(), true);
        assert!(lo > 0.0 && lo < 2.0 && hi > 8.0);
        assert_eq!(span(std::iter::empty(), false), (0.0, 1.0));
    }
}
