//! `cargo xtask figures`: build `dynofa` and draw the Dynamic-OFA paper's figures (1, 3 to 8) with
//! the CSV behind each, by default into `docs/figures/` from `luts/xavier-nx.json` on the simulated
//! Xavier NX; `--check` verifies the committed ones instead.

use anyhow::Result;

use crate::util::{cargo, root, run};

/// Where the committed figures live.
pub const FIGURES: &str = "docs/figures";

/// Options of the figures task.
#[derive(clap::Args)]
pub struct Args {
    /// The LUT the figures draw (default: luts/xavier-nx.json).
    #[arg(long)]
    pub lut: Option<String>,
    /// Folder for the SVGs and CSVs (relative to the workspace root).
    #[arg(long, default_value = FIGURES)]
    pub out: String,
    /// Where Figure 1's latencies come from: sim, host (this machine's CPU engine beside the
    /// contention generator) or jetson (the same at pinned CPU clocks).
    #[arg(long, default_value = "sim")]
    pub platform: String,
    /// Check that the figures in --out are what a run gives, instead of writing them.
    #[arg(long)]
    pub check: bool,
    /// More arguments for `dynofa figures` (after `--`), e.g. `-- --cloud 1000 --policy dynamic-ofa`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run_task(args: Args) -> Result<()> {
    let root = root();
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "dynofa-hal-jetson", "--bin", "dynofa", "--", "figures"])
        .args(["--platform", &args.platform])
        .arg("--out")
        .arg(root.join(&args.out));
    if let Some(lut) = &args.lut {
        cmd.arg("--lut").arg(root.join(lut));
    }
    if args.check {
        cmd.arg("--check");
    }
    run(cmd.args(args.args))
}
