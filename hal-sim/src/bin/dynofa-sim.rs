//! `dynofa-sim`: run a scenario on the simulated Jetson Xavier NX under a policy.
//!
//! ```text
//! dynofa-sim --scenario fig7 --policy dynofa --summary-json s.json --trace-csv t.csv --plot fig7.svg
//! dynofa-sim table            # every scenario x policy, as markdown, with the acceptance checks
//! dynofa-sim derive [--check] # the LUT and constants derived from the Dynamic-OFA reference data
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use dynofa_hal_sim::{PolicyKind, Scenario, SimError, derive, load_lut, plot, simulate, table, trace};

#[derive(Parser)]
#[command(name = "dynofa-sim", about = "Run dynofa's runtime policies on a simulated Jetson Xavier NX")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    task: Option<Task>,
    /// A built-in scenario (fig6, fig7, fig8, dvfs-drop, bursty, gpu-cpu, rush-hour, patrol) or a JSON file.
    #[arg(long)]
    scenario: Option<String>,
    /// dynofa, dynofa-energy, dynamic-ofa or oracle.
    #[arg(long, default_value = "dynofa")]
    policy: String,
    /// LUT file (default: luts/xavier-nx.json when it exists, else luts/dynamic-ofa-nx.json).
    #[arg(long)]
    lut: Option<PathBuf>,
    /// Write the summary JSON here.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Write every frame as CSV here.
    #[arg(long)]
    trace_csv: Option<PathBuf>,
    /// Draw the run as SVG here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Task {
    /// Run every built-in scenario under every policy; print the markdown table and check the
    /// acceptance criteria (exit status 1 when one fails).
    Table {
        /// LUT file (default as for a run).
        #[arg(long)]
        lut: Option<PathBuf>,
        /// Also run every scenario under dynofa and the oracle with this many seeds (its own and
        /// ones drawn from it) and print in how many each acceptance bar holds.
        #[arg(long, default_value_t = 0)]
        seeds: usize,
    },
    /// Write luts/dynamic-ofa-nx.json from the reference data and check the simulator's fitted constants.
    Derive {
        /// Reference data folder (default: ../shared/data/dynamic-ofa beside the workspace).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Fail when the committed LUT or the constants are stale instead of writing.
        #[arg(long)]
        check: bool,
    },
}

fn lut_path(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(dynofa_hal_sim::default_lut_path)
}

fn write(path: &Path, text: &str) -> Result<(), SimError> {
    std::fs::write(path, text).map_err(|source| SimError::Write { path: path.into(), source })
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Some(Task::Table { lut, seeds }) => {
            let path = lut_path(lut);
            let lut = load_lut(&path)?;
            let runs = table::run_all(&lut)?;
            println!("LUT: {}\n", path.display());
            print!("{}", table::markdown(&runs));
            if seeds > 0 {
                println!("\nSeed sweep ({seeds} seeds per scenario; the acceptance checks use the first):\n");
                print!("{}", table::sweep_markdown(&table::seed_sweep(&lut, seeds)?));
            }
            let fails = table::acceptance(&runs);
            for f in &fails {
                eprintln!("acceptance: {f}");
            }
            if !fails.is_empty() {
                bail!("{} acceptance checks failed", fails.len());
            }
            eprintln!("acceptance: all checks pass");
        }
        Some(Task::Derive { data, check }) => {
            let dir = data.unwrap_or_else(derive::default_data_dir);
            print!("{}", derive::check_constants(&dir)?);
            let text = derive::lut_text(&derive::dynamic_ofa_lut(&dir)?);
            let path = dynofa_hal_sim::dynamic_ofa_lut_path();
            if check {
                let committed = std::fs::read_to_string(&path).unwrap_or_default();
                if committed != text {
                    bail!("{} is stale: run `cargo run -p dynofa-hal-sim --bin dynofa-sim -- derive`", path.display());
                }
                println!("{} is up to date", path.display());
            } else {
                write(&path, &text)?;
                println!("wrote {}", path.display());
            }
        }
        None => {
            let Some(name) = cli.scenario else {
                bail!("give --scenario NAME|FILE (or a subcommand: table, derive); see --help");
            };
            let Some(policy) = PolicyKind::from_name(&cli.policy) else {
                bail!("unknown policy {:?}: use dynofa, dynofa-energy, dynamic-ofa or oracle", cli.policy);
            };
            let scenario = Scenario::load(&name)?;
            let lut = load_lut(&lut_path(cli.lut))?;
            let run = simulate(&scenario, policy, &lut)?;
            let summary = serde_json::to_string_pretty(&run.summary).context("summary to json")?;
            match cli.summary_json {
                Some(p) => write(&p, &(summary + "\n"))?,
                None => println!("{summary}"),
            }
            if let Some(p) = cli.trace_csv {
                let mut out = Vec::new();
                trace::write_csv(&run, None, &mut out)?;
                std::fs::write(&p, out).with_context(|| format!("cannot write {}", p.display()))?;
            }
            if let Some(p) = cli.plot {
                plot::plot(&run, &p)?;
            }
        }
    }
    Ok(())
}
