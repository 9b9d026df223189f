//! `cargo xtask search`: build `dynofa` and run its evolutionary search. Without arguments it
//! regenerates (or with `--check` verifies) `luts/xavier-nx.json` from the Xavier NX per-op tables
//! in `../shared/data/dynamic-ofa`.

use anyhow::Result;

use crate::util::{cargo, root, run};

/// The committed LUT the preset writes.
pub const XAVIER_NX_LUT: &str = "luts/xavier-nx.json";
/// Xavier NX GPU maximum clock (kHz); the tables were presumably measured at maximum clocks.
const XAVIER_NX_GPU_KHZ: u32 = 1_109_250;
/// Xavier NX CPU maximum clock (kHz).
const XAVIER_NX_CPU_KHZ: u32 = 1_907_200;
/// Provenance of the preset's latencies (the LUT's "source" field).
const XAVIER_NX_NOTE: &str = "cargo xtask search; latency derived from github.com/UoS-EEC/DynamicOFA @349461f latency tables (no licence; research reference); top1 predicted";

/// Options of the search task.
#[derive(clap::Args)]
pub struct Args {
    /// Check that the committed Xavier NX LUT is what the search gives, instead of writing it.
    #[arg(long)]
    pub check: bool,
    /// Arguments for `dynofa search` instead of the Xavier NX preset (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// The preset's arguments: both Xavier NX units, 10 constraints each.
fn xavier_nx(check: bool) -> Vec<String> {
    let tables = root().join("../shared/data/dynamic-ofa");
    let unit = |name: &str, dir: &str, khz: u32| format!("{name}={}@{khz}", tables.join(dir).display());
    let mut args = vec![
        "--unit".into(),
        unit("gpu", "latency_table@jetson_GPU", XAVIER_NX_GPU_KHZ),
        "--unit".into(),
        unit("cpu", "latency_table@jetson", XAVIER_NX_CPU_KHZ),
        "--constraints".into(),
        "10".into(),
        "--out".into(),
        root().join(XAVIER_NX_LUT).display().to_string(),
        "--note".into(),
        XAVIER_NX_NOTE.into(),
    ];
    if check {
        args.push("--check".into());
    }
    args
}

pub fn run_task(args: Args) -> Result<()> {
    let search_args = if args.args.is_empty() { xavier_nx(args.check) } else { args.args };
    run(cargo()
        .args(["run", "--release", "-p", "dynofa-hal-jetson", "--bin", "dynofa", "--", "search"])
        .args(search_args))
}
