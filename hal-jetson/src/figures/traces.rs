//! Figures 6, 7 and 8: the runtime traces of the `fig6`, `fig7` and `fig8` scenarios on the
//! simulated Xavier NX, drawn by the simulator's own trace plot, with the trace CSV behind each.

use std::path::PathBuf;

use dynofa_hal_sim::{Scenario, SimError, plot, simulate, trace};

use super::chart::add_caption;
use super::{FigureError, Options, shown_path, write};
use crate::design::lutgen::DesignLut;

/// The scenarios, by figure.
pub const SCENARIOS: [&str; 3] = ["fig6", "fig7", "fig8"];

pub(super) fn figures(opts: &Options, lut: &DesignLut) -> Result<Vec<PathBuf>, FigureError> {
    let mut files = Vec::new();
    for name in SCENARIOS {
        let scenario = Scenario::load(name)?;
        let run = simulate(&scenario, opts.policy, lut)?;
        let csv_path = opts.out.join(format!("{name}.csv"));
        let svg_path = opts.out.join(format!("{name}.svg"));
        let produced = format!("`{}` from {}", opts.command, shown_path(&opts.lut));
        let mut csv = super::csv_comments(
            &format!(
                "Figure {}: scenario {name} on the simulated Xavier NX under policy {}, one row per frame: {}",
                &name[3..],
                opts.policy.name(),
                scenario.description
            ),
            &produced,
        );
        let mut rows = Vec::new();
        trace::write_csv(&run, None, &mut rows).map_err(|source| FigureError::Io { path: csv_path.clone(), source })?;
        csv.push_str(&String::from_utf8_lossy(&rows));
        write(&csv_path, &csv)?;
        plot::plot(&run, &svg_path)?;
        let svg =
            std::fs::read_to_string(&svg_path).map_err(|source| FigureError::Io { path: svg_path.clone(), source })?;
        let summary: Vec<String> = run
            .summary
            .models
            .iter()
            .map(|m| {
                format!(
                    "{}: {} frames, {:.1} % within target, mean top-1 {:.2} %, sub-network switches: {}",
                    m.name,
                    m.frames,
                    100.0 * m.deadline_met_frac,
                    m.mean_top1,
                    m.switches
                )
            })
            .collect();
        let caption = vec![
            format!("Scenario {name}: {}", scenario.description),
            format!("Policy {}; {}.", opts.policy.name(), summary.join("; ")),
            format!("Produced by {produced} on the simulated Xavier NX; data in {name}.csv."),
        ];
        let svg = add_caption(&svg, &caption)
            .map_err(|reason| FigureError::Sim(SimError::Plot { path: svg_path.clone(), reason }))?;
        write(&svg_path, &svg)?;
        files.extend([svg_path, csv_path]);
    }
    Ok(files)
}
