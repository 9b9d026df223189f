//! `cargo xtask search`: build `dynofa` and run its evolutionary search. Without arguments it
//! regenerates (or with `--check` verifies) `luts/xavier-nx.json` from the Xavier NX per-op tables
//! in `../shared/data/dynamic-ofa`.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

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
    /// Time a 10-constraint search on the Xavier NX GPU tables: dynofa (2 threads, then 1) and
    /// OFA's Python EvolutionFinder (scripts/bench/ofa_search.py), each in its own process.
    #[arg(long, conflicts_with = "check")]
    pub bench: bool,
    /// Arguments for `dynofa search` instead of the Xavier NX preset (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// The preset's arguments: both Xavier NX units, 10 constraints each, best of 4 runs per constraint.
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
        "--restarts".into(),
        "4".into(),
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

/// The benchmark's constraints (ms on the Xavier NX GPU tables), spanning Dynamic-OFA's levels.
const BENCH_CONSTRAINTS: &str = "18,19.5,21,22.5,24,25.5,27,28.5,30,31.5";

/// Run a command to completion, returning its wall time in seconds.
fn timed(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    run(cmd)?;
    Ok(start.elapsed().as_secs_f64())
}

fn bench() -> Result<()> {
    let root = root();
    let gpu = root.join("../shared/data/dynamic-ofa/latency_table@jetson_GPU");
    let python = root.join("scripts/ref/.venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run scripts/ref/setup-venv.sh first", python.display());
    }
    run(cargo().args(["build", "--release", "-p", "dynofa-hal-jetson", "--bin", "dynofa"]))?;
    let out = root.join("target/bench-search.json");
    let dynofa = |threads: &str| {
        let mut cmd = Command::new(root.join("target/release/dynofa"));
        cmd.args(["search", "--unit", &format!("gpu={}@{XAVIER_NX_GPU_KHZ}", gpu.display())])
            .args(["--at", &format!("gpu={BENCH_CONSTRAINTS}"), "--threads", threads, "--out"])
            .arg(&out)
            .current_dir(&root);
        cmd
    };
    let rust2 = timed(&mut dynofa("2"))?;
    let rust1 = timed(&mut dynofa("1"))?;
    let mut py = Command::new(&python);
    py.arg("scripts/bench/ofa_search.py").arg("--tables").arg(&gpu).args(["--constraints", BENCH_CONSTRAINTS]);
    let python_s = timed(py.current_dir(&root)).context("the OFA python search failed")?;
    println!("10-constraint search, population 100, 500 generations, Xavier NX GPU tables (process wall time):");
    println!("  dynofa search, 2 threads: {rust2:8.2} s");
    println!("  dynofa search, 1 thread:  {rust1:8.2} s");
    println!("  ofa EvolutionFinder:      {python_s:8.2} s");
    println!("  speed-up: {:.0}x (2 threads), {:.0}x (1 thread)", python_s / rust2, python_s / rust1);
    Ok(())
}

pub fn run_task(args: Args) -> Result<()> {
    if args.bench {
        return bench();
    }
    let search_args = if args.args.is_empty() { xavier_nx(args.check) } else { args.args };
    run(cargo()
        .args(["run", "--release", "-p", "dynofa-hal-jetson", "--bin", "dynofa", "--", "search"])
        .args(search_args))
}
