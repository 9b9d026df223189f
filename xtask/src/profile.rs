//! `cargo xtask profile`: build `dynofa` and time sub-networks on this machine. Without arguments
//! it times the sub-networks of `luts/xavier-nx.json` on the CPU engine and writes
//! `luts/host-cpu.json` (or with `--check` verifies that file still lists them).

use anyhow::Result;

use crate::util::{cargo, root, run};

/// The committed host LUT the preset writes.
const HOST_CPU_LUT: &str = "luts/host-cpu.json";
/// The sub-networks it times.
const SUBNETS: &str = "luts/xavier-nx.json";

/// Options of the profile task.
#[derive(clap::Args)]
pub struct Args {
    /// Backend to time.
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// The sub-networks to time (a LUT or a JSON list of OFA configs).
    #[arg(long, default_value = SUBNETS)]
    pub subnets: String,
    /// The LUT to write.
    #[arg(long, default_value = HOST_CPU_LUT)]
    pub out: String,
    /// Check that the LUT lists the sub-networks of --subnets instead of measuring.
    #[arg(long)]
    pub check: bool,
    /// More arguments for `dynofa profile` (after `--`), e.g. `-- --reps 100 --threads 1`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run_task(args: Args) -> Result<()> {
    let root = root();
    let mut cmd = cargo();
    cmd.args(["run", "--release", "-p", "dynofa-hal-jetson", "--bin", "dynofa", "--", "profile"])
        .args(["--backend", &args.backend, "--note", "cargo xtask profile"])
        .arg("--subnets")
        .arg(root.join(&args.subnets))
        .arg("--out")
        .arg(root.join(&args.out));
    if args.check {
        cmd.arg("--check");
    }
    run(cmd.args(args.args))
}
