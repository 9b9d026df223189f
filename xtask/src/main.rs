//! `cargo xtask <task>`: dynofa's developer tasks (matklad's cargo-xtask pattern).

mod bench;
mod build_jetson;
mod ci;
mod figures;
mod flash;
mod fuzz;
mod gpu_check;
mod profile;
mod search;
mod sim;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "dynofa developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Everything CI checks: fmt, clippy, tests, bare-metal and aarch64 builds, aarch64 tests under qemu.
    Ci(ci::Args),
    /// Release build of `dynofa` for a Jetson (aarch64, the JetPack's glibc), checked and run under qemu.
    BuildJetson(build_jetson::Args),
    /// Install dynofa on a board over ssh: binary, LUTs, weights; optionally the udev rule and a service.
    Flash(flash::Args),
    /// Evolutionary search into a LUT (default: regenerate luts/xavier-nx.json; --check verifies it).
    Search(search::Args),
    /// Time sub-networks on this machine into a LUT of measured latencies (default: luts/host-cpu.json;
    /// with --backend cuda, the GPU's luts/host-gpu.json).
    Profile(profile::Args),
    /// Every simulator scenario under every policy as a markdown table, with the acceptance checks.
    SimTable,
    /// Refresh the scenario golden traces in firmware-tests/golden/.
    GoldenTraces,
    /// Bounded cargo-fuzz runs of the parsers (LUT, config, weights, per-op tables, scenarios).
    Fuzz(fuzz::Args),
    /// The paper's figures (1, 3 to 8) as SVG and CSV into docs/figures (--check verifies them).
    Figures(figures::Args),
    /// Benchmarks: `cpu` = the CPU engine next to ONNX Runtime and PyTorch (scripts/ref), and activate().
    Bench(bench::Args),
    /// Stage the GPU check (x86_64 release binaries + the `ofa` wheel) for scripts/gpu/check.py.
    GpuCheck(gpu_check::Args),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Ci(args) => ci::run(args),
        Task::BuildJetson(args) => build_jetson::run(args),
        Task::Flash(args) => flash::run(args),
        Task::Search(args) => search::run_task(args),
        Task::Profile(args) => profile::run_task(args),
        Task::SimTable => sim::table(),
        Task::GoldenTraces => sim::golden_traces(),
        Task::Figures(args) => figures::run_task(args),
        Task::Bench(args) => bench::run_task(args),
        Task::Fuzz(args) => fuzz::run_task(args),
        Task::GpuCheck(args) => gpu_check::run_task(args),
    }
}
