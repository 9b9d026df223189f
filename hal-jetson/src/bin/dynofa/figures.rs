//! `dynofa figures`: the Dynamic-OFA paper's figures (1, 3 to 8) as SVG with the CSV behind each.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use dynofa_core::lut::Unit;
use dynofa_hal_jetson::figures::{self, Options, Platform};
use dynofa_hal_sim::PolicyKind;

/// Where Figure 1's latencies come from.
#[derive(Clone, Copy, clap::ValueEnum)]
enum PlatformArg {
    /// The simulated Jetson Xavier NX.
    Sim,
    /// This machine's CPU engine beside the built-in contention generator.
    Host,
    /// A board: the CPU engine at several pinned CPU clocks beside the contention generator.
    Jetson,
}

/// Options of `dynofa figures`.
#[derive(clap::Args)]
pub struct Args {
    /// Where Figure 1's latencies come from (Figures 3 to 8 do not depend on it).
    #[arg(long, value_enum, default_value_t = PlatformArg::Sim)]
    platform: PlatformArg,
    /// The LUT a search wrote (default: luts/xavier-nx.json of the workspace).
    #[arg(long)]
    lut: Option<PathBuf>,
    /// Folder for the SVGs and CSVs (with --check: the folder to compare with).
    #[arg(long, default_value = "figures")]
    out: PathBuf,
    /// GPU per-op tables for Figure 3 (default: ../shared/data/dynamic-ofa/latency_table@jetson_GPU beside the workspace).
    #[arg(long)]
    gpu_tables: Option<PathBuf>,
    /// CPU per-op tables for Figure 3 (default: ../shared/data/dynamic-ofa/latency_table@jetson beside the workspace).
    #[arg(long)]
    cpu_tables: Option<PathBuf>,
    /// Published points of other networks (default: data/published-points.csv of the workspace).
    #[arg(long)]
    published: Option<PathBuf>,
    /// Random sub-networks per unit in Figure 3.
    #[arg(long, default_value_t = 2000)]
    cloud: usize,
    /// Seed of Figure 3's random draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Policy of the runtime traces (dynofa, dynofa-energy, dynamic-ofa or oracle).
    #[arg(long, default_value = "dynofa")]
    policy: String,
    /// Timed frames per point of Figure 1 on host and jetson.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Do not write: fail when the files in --out differ from what this run gives (simulator only).
    #[arg(long)]
    check: bool,
}

pub fn run(args: Args) -> Result<()> {
    let platform = match args.platform {
        PlatformArg::Sim => Platform::Sim,
        PlatformArg::Host => Platform::Host,
        PlatformArg::Jetson => Platform::Jetson,
    };
    if args.check && platform != Platform::Sim {
        bail!("--check compares figures that a rerun reproduces: use it with --platform sim");
    }
    let Some(policy) = PolicyKind::from_name(&args.policy) else {
        bail!("unknown policy {:?}: use dynofa, dynofa-energy, dynamic-ofa or oracle", args.policy);
    };
    let lut = args.lut.unwrap_or_else(figures::default_lut);
    let published = args.published.unwrap_or_else(figures::default_published);
    let gpu_tables = args.gpu_tables.or_else(|| figures::default_tables(Unit::Gpu));
    let cpu_tables = args.cpu_tables.or_else(|| figures::default_tables(Unit::Cpu));
    // The captions name the command by its options, with paths as the workspace sees them, so that
    // the figures are the same from any checkout.
    let command = format!(
        "dynofa figures --platform {} --lut {} --cloud {} --seed {} --policy {}",
        platform.name(),
        figures::shown_path(&lut),
        args.cloud,
        args.seed,
        policy.name()
    );
    let scratch = std::env::temp_dir().join(format!("dynofa-figures-check-{}", std::process::id()));
    let out = if args.check { scratch.clone() } else { args.out.clone() };
    let opts = Options {
        platform,
        lut,
        out,
        gpu_tables,
        cpu_tables,
        published,
        cloud: args.cloud,
        seed: args.seed,
        policy,
        reps: args.reps,
        command,
    };
    let start = Instant::now();
    let result = figures::generate(&opts);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if args.check {
                let _ = std::fs::remove_dir_all(&scratch);
            }
            return Err(e.into());
        }
    };
    println!("{}", report.headline);
    if args.check {
        let stale = figures::stale(&report.files, &args.out);
        let _ = std::fs::remove_dir_all(&scratch);
        let stale = stale?;
        if !stale.is_empty() {
            let list: Vec<String> = stale.iter().map(|p| p.display().to_string()).collect();
            bail!("stale figures (regenerate with `cargo xtask figures`): {}", list.join(", "));
        }
        println!("{} figures and CSVs in {} are up to date", report.files.len(), args.out.display());
    } else {
        for f in &report.files {
            println!("wrote {}", f.display());
        }
    }
    println!("figures took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
